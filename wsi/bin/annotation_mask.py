#!/usr/bin/env python3
"""Ground-truth tumour masks from annotations, without ASAP: Camelyon16 XML or NCRF JSON in, mask pyramid out.

Input: an annotation, Camelyon16/ASAP XML (groups ``Tumor``, ``_0``, ``_1`` are tumour; ``_2`` and
``Exclusion`` are carved out) or the NCRF JSON (``positive`` / ``negative`` polygons), in level-0 pixels; and
the slide it belongs to (``--wsi``, for its size and µm per pixel) or an explicit ``--size WIDTH HEIGHT``.
Output: a grey, losslessly compressed, OpenSlide-readable pyramidal TIFF of the slide's size, 255 tumour and
0 elsewhere, with a level 5: the mask ``Evaluation_FROC.py`` reads. Written tile by tile (memory stays at one
tile) and atomically. Folder mode: when ANNOTATION is a folder, every ``*.xml`` / ``*.json`` in it gives
``<MASK_PATH>/<stem><suffix>.tif``, with ``--wsi`` the folder of slides ``<stem>.tif``.
"""
import sys
from pathlib import Path

import logging
import math
import time

from wsi.cli import ArgumentParser, check_outputs, positive, positive_float, run_command
from wsi.constants import CAMELYON16_MPP
from wsi.errors import InputError

log = logging.getLogger(__name__)

DEFAULT_MPP = CAMELYON16_MPP


def get_args_parser():
    parser = ArgumentParser(
        description="Rasterise tumour annotations (Camelyon16 XML or NCRF JSON) into Camelyon16-style "
                    "ground-truth mask pyramids (tumour 255, level 5 present).")
    parser.add_argument("annotation_path", metavar="ANNOTATION", type=str,
                        help="annotation .xml or .json, or a folder of them (folder mode)")
    parser.add_argument("mask_path", metavar="MASK_PATH", type=str,
                        help="output mask .tif, or the output folder in folder mode")
    parser.add_argument("--wsi", default=None, type=str, metavar="SLIDE",
                        help="the slide the annotation belongs to (size and µm per pixel taken from it); in "
                             "folder mode the folder of slides <stem>.tif")
    parser.add_argument("--size", default=None, type=positive, nargs=2, metavar=("WIDTH", "HEIGHT"),
                        help="level-0 size of the slide instead of --wsi")
    parser.add_argument("--mpp", default=None, type=positive_float,
                        help=f"µm per level-0 pixel written in the mask; default the slide's, else {DEFAULT_MPP}")
    parser.add_argument("--suffix", default="", type=str,
                        help="folder mode: appended to each output stem, e.g. _Mask; default none "
                             "(<stem>.tif, the name Evaluation_FROC.py looks up first)")
    parser.add_argument("--tile_size", default=512, type=positive, help="TIFF tile size in pixels, default 512")
    return parser


def load_annotation(path):
    """An :class:`Annotation` from a Camelyon16 XML or an NCRF JSON (by suffix)."""
    from wsi.data.annotation import Annotation, read_camelyon16_xml

    path = Path(path)
    if path.suffix.lower() == ".xml":
        return read_camelyon16_xml(path, warn=log.warning)
    if path.suffix.lower() == ".json":
        return Annotation.from_json(path)
    raise InputError(f"{path}: expected a Camelyon16 .xml or an NCRF .json annotation")


def slide_geometry(slide_path, size, mpp):
    """``(width, height, mpp)`` from the slide or from ``--size`` / ``--mpp``."""
    if slide_path is not None:
        from wsi.data.slide import open_slide

        with open_slide(slide_path) as slide:
            width, height = slide.dimensions
            return width, height, mpp or slide.mpp or DEFAULT_MPP
    width, height = size
    if width < 1 or height < 1:
        raise InputError(f"--size must be positive, got {width} {height}")
    return width, height, mpp or DEFAULT_MPP


def make_mask(annotation_path, mask_path, slide_path=None, size=None, mpp=None, tile_size=512):
    """Rasterise one annotation into ``mask_path`` with :func:`wsi.data.mask.write_tumour_mask`."""
    from tqdm import tqdm

    from wsi.data.mask import mask_levels, write_tumour_mask
    from wsi.data.pyramid import check_pyramid_memory

    annotation = load_annotation(annotation_path)
    width, height, mpp = slide_geometry(slide_path, size, mpp)
    polygons = annotation.positive + annotation.negative
    if polygons:
        x_max = max(p.bbox[2] for p in polygons)
        y_max = max(p.bbox[3] for p in polygons)
        if x_max >= width or y_max >= height:
            log.warning("%s: annotations reach (%d, %d), beyond the %d×%d slide: is it the right slide?",
                        annotation_path, x_max, y_max, width, height)
    check_pyramid_memory(mask_levels(width, height), tile_size)  # before the progress bar
    tiles = sum(math.ceil(w / tile_size) * math.ceil(h / tile_size) for w, h in mask_levels(width, height))
    start = time.time()
    with tqdm(total=tiles, desc=Path(annotation_path).stem, unit="tile", leave=False) as bar:
        write_tumour_mask(mask_path, annotation, width, height, mpp=mpp, tile_size=tile_size, progress=bar.update)
    log.info("%s: %d positive, %d negative polygons → %s (%d×%d, %.1f s)", annotation_path,
             len(annotation.positive), len(annotation.negative), mask_path, width, height, time.time() - start)


def run(args):
    if (args.wsi is None) == (args.size is None):
        raise InputError("give the slide (--wsi SLIDE) or its size (--size WIDTH HEIGHT), not both or neither")
    if args.tile_size < 16 or args.tile_size % 16:
        raise InputError(f"--tile_size must be a positive multiple of 16, got {args.tile_size}")
    source = Path(args.annotation_path)
    if not source.exists():
        raise InputError(f"{source}: no such annotation file or folder")
    if not source.is_dir():
        check_outputs(args.mask_path, inputs=[source, args.wsi])
        make_mask(source, args.mask_path, args.wsi, args.size, args.mpp, args.tile_size)
        return
    from wsi.data.slide import find_slide

    annotations = sorted(p for p in source.iterdir() if p.suffix.lower() in (".xml", ".json"))
    if not annotations:
        raise InputError(f"{source}: no .xml or .json annotations in the folder")
    stems = [p.stem for p in annotations]
    repeated = sorted({s for s in stems if stems.count(s) > 1})
    if repeated:
        raise InputError(f"{source}: both an .xml and a .json for {', '.join(repeated)}; keep one of each")
    out_dir = Path(args.mask_path)
    check_outputs(folders=[out_dir])
    if out_dir.is_file():
        raise InputError(f"{out_dir}: is a file; folder mode writes masks into a folder")
    # Check every slide exists before the long work starts.
    slides = {p: (find_slide(args.wsi, p.stem) if args.wsi else None) for p in annotations}
    check_outputs(*(out_dir / f"{p.stem}{args.suffix}.tif" for p in annotations),
                  inputs=[*annotations, *(s for s in slides.values() if s is not None)])
    for path in annotations:
        make_mask(path, out_dir / f"{path.stem}{args.suffix}.tif", slides[path], args.size, args.mpp,
                  args.tile_size)


def main(argv=None):
    return run_command(run, get_args_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
