#!/usr/bin/env python3
"""Non-maximum suppression: turn a probability map into a CSV of tumour detections.

Input: a probability map ``.npy`` as ``probs_map.py`` writes it, a 2-D float ``[x, y]`` array (first axis x).
Output: a CSV without header, one detection per line ``<prob %.5f>,<x>,<y>`` with integer level-0 coordinates
``int((i + 0.5)·c)`` for the map's cell size ``c``, in descending order of probability; an empty file when no
value is above ``--prob_thred``. Repeatedly takes the map's maximum while it is strictly above the threshold
and zeroes the window ``[i − radius, i + radius)`` around it (see :mod:`wsi.eval.nms`).

The cell size: a map with a sidecar (``X.json`` beside ``X.npy``, written by ``probs_map.py``) gives its own;
without one, ``2**level`` as in the original (``--level``, default 6). A ``--level`` that disagrees with the
sidecar is refused. PROBS_MAP_PATH may also be a folder of maps; COORD_PATH is then the output folder
(``<stem>.csv`` per map).
"""
import sys
from pathlib import Path

import logging

from wsi.arrays import cell_size, load_array, sidecar_path
from wsi.cli import (ArgumentParser, check_outputs, count, for_each_input, level_index, non_negative, probability,
                     run_command)
from wsi.eval.detections import write_detections
from wsi.eval.nms import nms

logger = logging.getLogger(__name__)


def get_args_parser():
    parser = ArgumentParser(
        description="Get the tumour detections (prob, x, y at level 0) of a probability map by non-maximum "
                    "suppression.")
    parser.add_argument("probs_map_path", metavar="PROBS_MAP_PATH", type=str,
                        help="input probability map, .npy [x, y] array; or a folder of them")
    parser.add_argument("coord_path", metavar="COORD_PATH", type=str,
                        help="output CSV of detections: prob,x,y per line (level 0), no header; with a folder of "
                             "maps, the output folder (<stem>.csv)")
    parser.add_argument("--level", default=None, type=level_index,
                        help="level of the probability map: a cell is 2**level level-0 pixels (the original's "
                             "rule), default 6; a map with a sidecar gives its own scale, and a --level that "
                             "disagrees with it is refused")
    parser.add_argument("--radius", default=12, type=count,
                        help="radius of the suppression window in map cells, default 12 "
                             "(6 used in Google paper at level 7, i.e. 12 at level 6)")
    parser.add_argument("--prob_thred", default=0.5, type=probability,
                        help="probability threshold: stop when no value is above it, default 0.5")
    parser.add_argument("--sigma", default=0.0, type=non_negative,
                        help="sigma of the Gaussian smoothing before the search, in map cells, default 0 "
                             "(no smoothing)")
    return parser


def detect(args, probs_map_path, coord_path):
    """The detections CSV of one map."""
    probs_map, info = load_array(probs_map_path, "probability map")
    cell = cell_size(info, args.level, probs_map_path)
    detections = nms(probs_map, radius=args.radius, prob_thred=args.prob_thred, sigma=args.sigma, cell=cell,
                     checked=True)  # load_array checked the map: one scan
    write_detections(coord_path, detections)


def run(args):
    source = Path(args.probs_map_path)
    if not source.is_dir():
        check_outputs(args.coord_path, inputs=[source, sidecar_path(source)])
        detect(args, source, args.coord_path)
        return 0
    check_outputs(folders=[Path(args.coord_path)])
    maps = sorted(p for p in source.glob("*.npy") if not p.name.startswith("."))
    check_outputs(*(Path(args.coord_path) / f"{p.stem}.csv" for p in maps), inputs=maps)
    return for_each_input(maps, lambda path: detect(args, path, Path(args.coord_path) / f"{path.stem}.csv"),
                          what="probability maps", empty=f"{source}: no .npy probability maps in this folder")


def main(argv=None):
    return run_command(run, get_args_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
