#!/usr/bin/env python3
"""Non-maximum suppression: turn a probability map into a CSV of tumour detections.

Input: a probability map ``.npy`` as ``probs_map.py`` writes it, a 2-D float ``[x, y]`` array (first axis x) at
level ``--level``. Output: a CSV without header, one detection per line ``<prob %.5f>,<x>,<y>`` with integer
level-0 coordinates ``int((i + 0.5)·2**level)``, in descending order of probability; an empty file when no
value is above ``--prob_thred``. Repeatedly takes the map's maximum while it is strictly above the threshold
and zeroes the window ``[i − radius, i + radius)`` around it (see :mod:`wsi.eval.nms`).
"""
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python wsi/bin/nms.py`: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


from wsi.cli import ArgumentParser, check_outputs, count, non_negative, probability, run_command
from wsi.eval.detections import write_detections
from wsi.eval.nms import load_probs_map, nms


def get_args_parser():
    parser = ArgumentParser(
        description="Get the tumour detections (prob, x, y at level 0) of a probability map by non-maximum "
                    "suppression.")
    parser.add_argument("probs_map_path", metavar="PROBS_MAP_PATH", type=str,
                        help="input probability map, .npy [x, y] array")
    parser.add_argument("coord_path", metavar="COORD_PATH", type=str,
                        help="output CSV of detections: prob,x,y per line (level 0), no header")
    parser.add_argument("--level", default=6, type=count,
                        help="level of the probability map, default 6 (a cell is 2**level level-0 pixels)")
    parser.add_argument("--radius", default=12, type=count,
                        help="radius of the suppression window in map cells, default 12 "
                             "(6 used in Google paper at level 7, i.e. 12 at level 6)")
    parser.add_argument("--prob_thred", default=0.5, type=probability,
                        help="probability threshold: stop when no value is above it, default 0.5")
    parser.add_argument("--sigma", default=0.0, type=non_negative,
                        help="sigma of the Gaussian smoothing before the search, in map cells, default 0 "
                             "(no smoothing)")
    return parser


def run(args):
    check_outputs(args.coord_path)
    probs_map = load_probs_map(args.probs_map_path)
    detections = nms(probs_map, level=args.level, radius=args.radius, prob_thred=args.prob_thred,
                     sigma=args.sigma)
    write_detections(args.coord_path, detections)


def main(argv=None):
    return run_command(run, get_args_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
