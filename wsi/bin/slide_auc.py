#!/usr/bin/env python3
"""Slide-level AUC (Camelyon16 task 1): score each slide from its probability map, compare with slide labels.

Inputs: PROBS_MAP_DIR holds one probability map ``<slide>.npy`` per slide (``[x, y]`` arrays, as
``probs_map.py`` writes them); LABELS_CSV has one line ``<slide>,<Tumor|Normal|1|0>[,...]`` per slide (the
Camelyon16 ``reference.csv`` works as it is). Output: SCORES_CSV with a header ``slide,score,label`` and one
line per slide; the ROC AUC (the Mann-Whitney U over the pairs, ties ½, tumour the positive class) is printed as
``AUC = <value>``. The slide score is the map's maximum by default (``--score topk``: the mean of the ``--k``
highest values).
"""
import sys
from pathlib import Path

import logging

from wsi.cli import ArgumentParser, check_outputs, positive, run_command
from wsi.eval.slide_auc import SCORES, read_slide_labels, score_slides, slide_auc, write_slide_scores

logger = logging.getLogger(__name__)


def get_args_parser():
    parser = ArgumentParser(
        description="Slide-level ROC AUC (tumour vs normal) from probability maps and a labels CSV.")
    parser.add_argument("probs_map_dir", metavar="PROBS_MAP_DIR", type=str,
                        help="folder of probability maps <slide>.npy ([x, y] arrays)")
    parser.add_argument("labels_csv", metavar="LABELS_CSV", type=str,
                        help="slide labels, one <slide>,<Tumor|Normal|1|0> per line (Camelyon16 reference.csv)")
    parser.add_argument("scores_csv", metavar="SCORES_CSV", type=str,
                        help="output: slide,score,label per slide (with a header line)")
    parser.add_argument("--score", default="max", choices=SCORES,
                        help="slide score: max = the map's maximum; topk = mean of the k highest values; "
                             "default max")
    parser.add_argument("--k", default=100, type=positive,
                        help="number of values averaged by --score topk, default 100")
    parser.add_argument("--exclude", default="", type=str,
                        help="comma-separated slides to leave out, e.g. Test_049,Test_114; default none")
    return parser


def run(args):
    check_outputs(args.scores_csv, inputs=[args.labels_csv, *Path(args.probs_map_dir).glob("*.npy")])
    labels = read_slide_labels(args.labels_csv)
    exclude = [s.strip() for s in args.exclude.split(",") if s.strip()]
    unknown = [s for s in exclude if s not in labels]
    if unknown:  # a typo would silently keep the slide in: say so, as the FROC does
        logger.warning("--exclude names slides without a label in %s: %s", args.labels_csv, ", ".join(unknown))
    rows = score_slides(args.probs_map_dir, labels, score=args.score, k=args.k, exclude=exclude)
    auc = slide_auc(rows, where=args.labels_csv)
    write_slide_scores(args.scores_csv, rows)
    print(f"AUC = {auc:.6f} ({sum(r[2] for r in rows)} tumour, {sum(1 - r[2] for r in rows)} normal slides, "
          f"score {args.score})")


def main(argv=None):
    return run_command(run, get_args_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
