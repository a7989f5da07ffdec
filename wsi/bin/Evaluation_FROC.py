#!/usr/bin/env python3
"""Camelyon16 FROC: score the detection CSVs of a result folder against the ground-truth masks.

Inputs: MASK_DIR holds the ground-truth masks, OpenSlide-readable pyramids with a level 5, tumour 255 (or 1)
on 0, named ``<slide>.tif`` or ``<slide>_Mask.tif``; CSV_DIR holds one ``<slide>.csv`` per evaluated slide
(``prob,x,y`` per line, level-0 pixels, no header; an empty file for no detections), e.g. from ``nms.py``. A
slide without a mask is a normal slide. Prints ``Evaluating Performance on image: <slide>`` per slide, then the
sensitivity at 0.25, 0.5, 1, 2, 4 and 8 average false positives per slide and their mean, the FROC score, in
the original's format (``Avg Sensivity =  <mean>``, sic). See :mod:`wsi.eval.froc` for the rules.
"""
import sys
from pathlib import Path

import json

from wsi.cli import ArgumentParser, check_outputs, run_command
from wsi.eval.froc import check_plot_path, evaluate_froc, plot_froc
from wsi.fileio import atomic_open


def get_args_parser():
    parser = ArgumentParser(
        description="Camelyon16 lesion-level evaluation (FROC) of detection CSVs against ground-truth masks.")
    parser.add_argument("mask_folder", metavar="MASK_DIR", type=str,
                        help="folder of ground-truth masks <slide>.tif or <slide>_Mask.tif (level 5, tumour 255)")
    parser.add_argument("result_folder", metavar="CSV_DIR", type=str,
                        help="folder of detection CSVs <slide>.csv (prob,x,y per line at level 0, no header)")
    parser.add_argument("--exclude", default="", type=str,
                        help="comma-separated slides to leave out, e.g. Test_049,Test_114 (the Camelyon16 "
                             "organisers' exclusions); default none: every CSV is evaluated")
    parser.add_argument("--plot", default=None, type=str, metavar="PNG",
                        help="save the FROC curve to this image file (never opens a window); default no plot")
    parser.add_argument("--json", default=None, type=str, metavar="OUT",
                        help="write the score, the curve and per-slide TP/FP details to this JSON file; "
                             "default none")
    return parser


def run(args):
    inputs = [*Path(args.mask_folder).glob("*"), *Path(args.result_folder).glob("*")]
    check_outputs(args.plot, args.json, inputs=inputs)  # fail before the long evaluation, not after
    if args.plot:
        check_plot_path(args.plot)  # fail before the long evaluation, not after
    exclude = [s.strip() for s in args.exclude.split(",") if s.strip()]

    def on_slide(name):
        print("Evaluating Performance on image:", name, flush=True)

    result = evaluate_froc(args.mask_folder, args.result_folder, exclude=exclude, on_slide=on_slide)
    for rate, sensitivity in zip(result.fp_rates, result.eval_sensitivities):
        print("Avg FP = ", str(rate))
        print("Sensitivity = ", str(sensitivity))
    print("Avg Sensivity = ", result.score)
    if args.plot:
        plot_froc(result, args.plot)
    if args.json:
        with atomic_open(args.json, "w") as handle:
            json.dump(result.to_dict(), handle, indent=1)


def main(argv=None):
    return run_command(run, get_args_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
