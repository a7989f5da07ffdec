#!/usr/bin/env python3
"""Tissue mask of a slide: which pixels of one level hold tissue, saved as a bool ``.npy``.

Input: a slide file (any format OpenSlide reads). Output: ``np.save`` of a bool array of shape
``level_dimensions[level]`` = (width, height) in **[x, y]** order (the transpose of an image), True on tissue.
The rule is the original's: Otsu per RGB channel (background = all three above), Otsu on the HSV saturation,
and every channel above ``--RGB_min``, all strict. Level 6 gives one mask pixel per 64 level-0 pixels.
"""
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python wsi/bin/tissue_mask.py`: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import logging

from wsi.cli import ArgumentParser, check_outputs, count, run_command
from wsi.data.tissue import tissue_mask
from wsi.fileio import npy_path, save_npy

logger = logging.getLogger(__name__)


def get_args_parser():
    parser = ArgumentParser(description="Get tissue mask of WSI and save it in npy format")
    parser.add_argument("wsi_path", metavar="WSI", type=str, help="Path to the WSI file")
    parser.add_argument("npy_path", metavar="NPY", type=str,
                        help="Path to the output npy mask file (.npy is appended when missing)")
    parser.add_argument("--level", default=6, type=count, help="at which WSI level to obtain the mask, default 6")
    parser.add_argument("--RGB_min", default=50, type=count, help="min value for RGB channel, default 50")
    return parser


def run(args):
    check_outputs(args.npy_path, npy_path(args.npy_path))  # an existing folder is refused, not <folder>.npy
    mask = tissue_mask(args.wsi_path, level=args.level, rgb_min=args.RGB_min)
    path = save_npy(args.npy_path, mask)
    logger.info("wrote %s: bool %s [x, y], %d tissue pixels", path, mask.shape, int(mask.sum()))


def main(argv=None):
    return run_command(run, get_args_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
