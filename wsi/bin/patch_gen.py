#!/usr/bin/env python3
"""Cut the grid images of a coordinate list out of the slides, as PNGs for training.

Reads COORDS (``pid,x_center,y_center`` per line, level-0 centres) and, for line i (0-based), writes
``OUT/<i>.png``: the PATCH_SIZE×PATCH_SIZE RGB region of ``WSI_DIR/<pid>.tif`` whose top-left corner is
``centre − patch_size/2`` in level-0 pixels, read at ``--level``. ``OUT/list.txt`` is a byte copy of COORDS (the
training datasets read it). A re-run skips the PNGs already there. Lines whose slide is missing or whose region
fails to decode are listed in ``OUT/failed.txt`` (``<i><TAB><pid>,<x>,<y><TAB><reason>``); the others are
written, and the exit status is 1.
"""
import sys

import logging

from wsi.cli import ArgumentParser, check_outputs, level_index, positive, run_command
from wsi.data.patches import generate_patches, summarize

logger = logging.getLogger(__name__)


def get_args_parser():
    parser = ArgumentParser(description="Generate grid-image PNGs from slides at the centres of a "
                                                 "coordinate list.")
    parser.add_argument("wsi_path", metavar="WSI_DIR", type=str,
                        help="folder of the slides, named <pid>.tif")
    parser.add_argument("coords_path", metavar="COORDS", type=str,
                        help="coordinate list: pid,x_center,y_center per line (level-0 pixels)")
    parser.add_argument("patch_path", metavar="OUT", type=str,
                        help="output folder for <i>.png and list.txt (created if missing)")
    parser.add_argument("--patch_size", default=768, type=positive,
                        help="side of each PNG in pixels, default 768")
    parser.add_argument("--level", default=0, type=level_index,
                        help="pyramid level read, default 0 (the top-left stays centre - patch_size/2 in level-0 "
                             "pixels)")
    parser.add_argument("--num_process", default=5, type=positive,
                        help="worker processes, default 5")
    return parser


def run(args):
    check_outputs(folders=[args.patch_path])
    result = generate_patches(args.wsi_path, args.coords_path, args.patch_path, patch_size=args.patch_size,
                              level=args.level, num_process=args.num_process)
    logger.info(summarize(result, args.patch_path))
    return 0 if result.ok else 1


def main(argv=None):
    return run_command(run, get_args_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
