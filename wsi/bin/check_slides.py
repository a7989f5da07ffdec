#!/usr/bin/env python3
"""Preflight check of a slide folder (e.g. the Camelyon16 download) before days of training or inference.

Input: DIR, searched recursively for slides (every suffix OpenSlide reads), annotations (``<stem>.xml`` /
``.json``) and labels (``reference*.csv``; ``Tumor_`` / ``Normal_`` names). Output on stdout: one line per slide
(levels, level-0 size, µm/px, annotation, label, regions decoded), then one line per problem (``PROBLEM``: the
slide cannot be used) or warning (``WARNING``), then a summary. Exit status 0 when every slide is usable, 1 when
at least one is not (or no slide was found).

By default a sample of every level is decoded (the whole coarsest level, the first and last region of each level,
``--share`` of each level's regions (1%) and ``--sample`` random ones); ``--full`` decodes every region of every
level, in parallel (``--workers``). The summary gives the share and the time taken.
"""
import sys
from pathlib import Path

import time

from tqdm import tqdm

from wsi.cli import ArgumentParser, count, level_index, positive, probability, run_command
from wsi.data.check import check_tree, describe, find_slides
from wsi.data.slide import NotAFolderError, SlideNotFoundError


def level_or_test(text):
    """``--level``: a level index, ``auto`` (each slide's level nearest 64), or -1 (no level test)."""
    text = text.strip()
    if text == "auto":
        return "auto"
    return -1 if text == "-1" else level_index(text)


def get_args_parser():
    parser = ArgumentParser(description="Open every slide under DIR and decode its tiles; list damaged "
                                                 "slides and regions (exit status 1 when a slide is unusable)")
    parser.add_argument("root", metavar="DIR", type=str, help="folder searched recursively for slides")
    parser.add_argument("--full", action="store_true",
                        help="decode every region of every level (hours for a 700 GB download on few CPUs), "
                             "default: a sample of each level")
    parser.add_argument("--share", default=0.01, type=probability,
                        help="share of each level's regions decoded at random (besides the coarsest level and each "
                             "level's first and last region), default 0.01: 1%%, which scales with the slide")
    parser.add_argument("--sample", default=64, type=count,
                        help="random regions per slide besides the coarsest level and each level's first and "
                             "last region, default 64")
    parser.add_argument("--region", default=512, type=positive, help="side of a region read, pixels, default 512")
    parser.add_argument("--level", default=6, type=level_or_test,
                        help="level every slide must have (the tissue masks' and maps' level), default 6; auto: "
                             "each slide's level nearest 64 (tissue_mask.py --level auto); -1: no such test")
    parser.add_argument("--workers", default=None, type=positive, help="decoding threads, default: the CPUs")
    parser.add_argument("--seed", default=0, type=count, help="seed of the sample, default 0")
    return parser


def run(args):
    root = Path(args.root)
    if not root.exists():
        raise SlideNotFoundError(f"{root}: no such folder")
    if not root.is_dir():
        raise NotAFolderError(f"{root}: is a file; give the folder that holds the slides")
    started = time.monotonic()
    count = len(find_slides(root))
    bar = tqdm(unit="region", desc=f"check_slides ({count} slides)", disable=None, file=sys.stderr)
    reports = check_tree(root, full=args.full, sample=args.sample, region=args.region,
                         need_level=None if args.level != "auto" and args.level < 0 else args.level,
                         workers=args.workers, seed=args.seed,
                         progress=bar.update, share=0.0 if args.full else args.share)
    bar.close()
    for report in reports:
        print(describe(report, root))
    for report in reports:
        for line in report.problems:
            print(f"PROBLEM {line}")
        for line in report.warnings:
            print(f"WARNING {line}")
    unusable = [report for report in reports if not report.usable]
    read = sum(report.regions_read for report in reports)
    total = sum(report.regions_tried for report in reports)
    annotated = sum(report.annotation is not None for report in reports)
    labelled = sum(report.label is not None for report in reports)
    mode = "every region" if args.full else (f"a sample: {args.share:.0%} of each level's regions, the coarsest "
                                             f"level, each level's ends and {args.sample} more per slide")
    print(f"summary: {len(reports)} slides under {root}, {len(reports) - len(unusable)} usable, {len(unusable)} "
          f"unusable; {annotated} with an annotation, {labelled} with a label; {read} of {total} regions of "
          f"{args.region} px decoded ({mode}), "
          f"{sum(len(r.problems) for r in reports)} problems, {sum(len(r.warnings) for r in reports)} warnings; "
          f"{time.monotonic() - started:.1f} s")
    if unusable:
        print("unusable: " + " ".join(str(report.path.relative_to(root)) for report in unusable))
        damaged = [report for report in unusable if not report.structure or len(report.problems) > 1]
        if damaged:
            print("re-download these files (or move them out of the folder) before running the pipeline: "
                  + " ".join(str(report.path.relative_to(root)) for report in damaged))
        if len(damaged) < len(unusable):
            print("slides without the level asked for are not damaged: run with --level auto (each slide's level "
                  "nearest 64)")
        return 1
    if not reports:
        print(f"no slides found under {root}")
        return 1
    return 0


def main(argv=None):
    parser = get_args_parser()
    args = parser.parse_args(argv)  # the option types range-check every number
    return run_command(run, args)


if __name__ == "__main__":
    sys.exit(main())
