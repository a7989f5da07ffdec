#!/usr/bin/env python3
"""Report on coordinate lists: per slide and in total, how their grids are labelled, to compare with the shipped.

Input: the folder of annotation JSONs (``<pid>.json``) and a tumour and/or a normal list in the coords format
(``<pid>,<x>,<y>``, level-0 grid centres). Output on stdout (and in ``--output``), one line per slide and a total:
tumour centres, how many are inside a positive polygon (``inside``), inside a negative one (``in_neg``), exactly
on a positive polygon's edge (``on_edge``, inside by the project's rule) and the mean fraction of positive cells
of their 3×3 grids (``pos_frac``); normal centres, how many are inside (or on the edge of) a positive polygon, how
many sit on the hard-negative grid (``hard``: x ≡ y ≡ stride/2 mod ``--hard_stride``) and their mean positive
fraction. Then the positive rate of each grid position, row-major. The cell labels are the original's training
labels: the cell centre inside any positive polygon. The shipped validation lists give tumour 20000 all inside,
pos_frac 0.8277; normal none inside (2 on an edge), pos_frac 0.0600, 10002 on the grid.
"""
import sys
from pathlib import Path


from wsi.cli import ArgumentParser, check_outputs, positive, run_command
from wsi.data.coords import read_coords
from wsi.data.annotation import load_annotations
from wsi.data.coords_stats import coords_report
from wsi.data.hard_negatives import HARD_STRIDE
from wsi.data.labels import PATCH_SIZE
from wsi.errors import InputError
from wsi.fileio import atomic_open


def get_args_parser():
    parser = ArgumentParser(
        description="Per-slide statistics of tumour and normal coordinate lists: centre labels, mean positive "
                    "fraction of the 3x3 grids, hard negatives.")
    parser.add_argument("json_path", metavar="JSON_PATH", type=str, help="folder of the annotation JSONs <pid>.json")
    parser.add_argument("--tumor", default=None, type=str, help="tumour coordinate list, e.g. tumor_valid.txt")
    parser.add_argument("--normal", default=None, type=str, help="normal coordinate list, e.g. normal_valid.txt")
    parser.add_argument("--patch_size", default=PATCH_SIZE, type=positive,
                        help=f"distance between grid cell centres, level-0 pixels, default {PATCH_SIZE}")
    parser.add_argument("--hard_stride", default=HARD_STRIDE, type=positive,
                        help=f"grid of the hard negatives (see hard_negatives.py --stride), default {HARD_STRIDE}")
    parser.add_argument("--exclude_negative", action="store_true",
                        help="label a cell positive only outside the negative polygons too, default: the "
                             "original's rule (inside any positive polygon)")
    parser.add_argument("--assume_normal", action="store_true",
                        help="treat every slide without an annotation JSON as normal, default: only Normal_*")
    parser.add_argument("--output", default=None, type=str, help="also write the report to this file")
    return parser


def run(args):
    check_outputs(args.output, inputs=[args.tumor, args.normal, *Path(args.json_path).glob("*.json")])
    if args.tumor is None and args.normal is None:
        raise InputError("give a list to report on: --tumor PATH and/or --normal PATH")
    tumor = read_coords(args.tumor) if args.tumor else []
    normal = read_coords(args.normal) if args.normal else []
    pids = sorted({pid for pid, _, _ in tumor} | {pid for pid, _, _ in normal})
    annotations = load_annotations(args.json_path, pids, assume_normal=args.assume_normal, what="listed slide")
    lines, _ = coords_report(tumor, normal, annotations, patch_size=args.patch_size, hard_stride=args.hard_stride,
                             exclude_negative=args.exclude_negative)
    text = "\n".join(lines) + "\n"
    if args.output:
        with atomic_open(args.output, "w") as handle:
            handle.write(text)
    sys.stdout.write(text)


def main(argv=None):
    return run_command(run, get_args_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
