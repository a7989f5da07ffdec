#!/usr/bin/env python3
"""Tissue mask of a slide: which pixels of one level hold tissue, saved as a bool ``.npy``.

Input: a slide file (any format OpenSlide reads). Output: ``np.save`` of a bool array of shape
``level_dimensions[level]`` = (width, height) in **[x, y]** order (the transpose of an image), True on tissue,
and beside it a sidecar ``<name>.json`` saying which slide, level and scale the mask has (:mod:`wsi.arrays`).
The rule is the original's: Otsu per RGB channel (background = all three above), Otsu on the HSV saturation,
and every channel above ``--RGB_min``, all strict. Level 6 gives one mask pixel per 64 level-0 pixels on a 2×
pyramid; ``--level auto`` picks, per slide, the level whose downsample is nearest 64 (level 3 of a 4× pyramid).

WSI may also be a folder of slides (every OpenSlide suffix) or a ``.txt`` list of slide paths; NPY is then the
output folder (``<stem>.npy`` per slide). Masks that exist are skipped unless ``--overwrite``; a slide that fails
is listed and the others are still done (exit status 1).
"""
import sys
from pathlib import Path

import logging

from wsi.cli import ArgumentParser, channel_value, check_outputs, for_each_input, level_index, run_command
from wsi.data.slide import list_slides, names_many_slides
from wsi.data.tissue import mask_not_done, write_tissue_mask
from wsi.errors import InputError
from wsi.arrays import check_own_sidecar, sidecar_path
from wsi.fileio import npy_path, remove_stale_temporaries

logger = logging.getLogger(__name__)


def level_or_auto(text):
    """``--level``: a level number, or ``auto`` (chosen per slide)."""
    return "auto" if text.strip() == "auto" else level_index(text)


def get_args_parser():
    parser = ArgumentParser(description="Get tissue mask of WSI and save it in npy format")
    parser.add_argument("wsi_path", metavar="WSI", type=str,
                        help="Path to the WSI file; or a folder of slides, or a .txt file listing slide paths")
    parser.add_argument("npy_path", metavar="NPY", type=str,
                        help="Path to the output npy mask file (.npy is appended when missing); with many slides, "
                             "the output folder")
    parser.add_argument("--level", default=6, type=level_or_auto,
                        help="at which WSI level to obtain the mask, default 6; auto: per slide, the level whose "
                             "downsample is nearest 64 (6 on a 2x pyramid, 3 on a 4x one), recorded in the sidecar")
    parser.add_argument("--RGB_min", "--rgb_min", dest="RGB_min", default=50, type=channel_value,
                        help="min value for RGB channel, default 50")
    parser.add_argument("--overwrite", action="store_true",
                        help="with many slides, recompute masks that exist (default: skip them)")
    return parser


def mask_one(args, slide_path, output):
    path, mask = write_tissue_mask(slide_path, output, level=args.level, rgb_min=args.RGB_min)
    logger.info("wrote %s: bool %s [x, y], %d tissue pixels", path, mask.shape, int(mask.sum()))


def run(args):
    if not names_many_slides(args.wsi_path):
        output = npy_path(args.npy_path)  # an existing folder is refused, not <folder>.npy
        check_outputs(args.npy_path, output, sidecar_path(output), inputs=[args.wsi_path])
        check_own_sidecar(sidecar_path(output))
        mask_one(args, args.wsi_path, args.npy_path)
        return 0
    out_dir = Path(args.npy_path)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: with many slides ({args.wsi_path}), NPY must be the output folder, not a file")
    check_outputs(folders=[out_dir])
    slides = sorted(list_slides(args.wsi_path), key=lambda p: (p.stem, str(p)))
    outputs = [npy_path(out_dir / slide.stem) for slide in slides]
    check_outputs(*outputs, *map(sidecar_path, outputs), inputs=slides)
    for output in outputs:  # NPY = the slide folder, where <stem>.json may be the slide's annotation
        check_own_sidecar(sidecar_path(output))
    for path in remove_stale_temporaries(out_dir):  # left by a run killed with kill -9 (live runs' kept)
        logger.info("removed %s, left by an interrupted run", path)
    todo = []
    for slide, output in zip(slides, outputs):
        why = mask_not_done(output, slide, args.level, args.RGB_min) if output.exists() and not args.overwrite \
            else "missing"
        if not why:
            logger.info("%s: %s exists, skipped", slide.name, output)
        else:  # missing, --overwrite, junk, cut short, made otherwise: computed again
            if why != "missing":
                logger.info("%s: %s exists but %s: computing it again", slide.name, output, why)
            todo.append(slide)
    if not todo:
        return 0
    return for_each_input(todo, lambda slide: mask_one(args, slide, out_dir / f"{slide.stem}.npy"),
                          what="slides", empty=f"{args.wsi_path}: no slides")


def main(argv=None):
    return run_command(run, get_args_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
