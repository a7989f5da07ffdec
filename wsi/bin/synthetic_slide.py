#!/usr/bin/env python3
"""Write synthetic H&E-like slides with tumour annotations and ground-truth masks (demo and test data).

Output, in OUT_DIR: ``Tumor_001.tif`` … (tumour slides: pyramidal generic TIFF, JPEG tiles, 0.243 µm/px),
``Tumor_001.xml`` … (their Camelyon16/ASAP XML: tumours in groups ``_0``/``_1``, holes in ``_2``),
``Normal_001.tif`` … (slides without tumour, no XML), and ``<mask_dir>/Tumor_001.tif`` … (Camelyon16-style
ground-truth masks: grey pyramid, tumour 255, else 0, named as the FROC evaluation looks them up). With
``--json_dir``, also the annotation JSON of every slide (normal slides: empty lists), the same as
``camelyon16xml2json`` gives from the XML. Everything is a function of ``--seed`` and the sizes.
"""
import sys
from pathlib import Path

import logging
import math

import numpy as np
from tqdm import tqdm

from wsi.cli import ArgumentParser, check_outputs, count, positive, positive_float, run_command
from wsi.constants import CAMELYON16_MPP
from wsi.data.pyramid import pyramid_dimensions
from wsi.synthetic import make_synthetic_slide, plan_slide
from wsi.errors import InputError

logger = logging.getLogger(__name__)


def get_args_parser():
    parser = ArgumentParser(description="Write synthetic slides, their XML annotations and GT masks")
    parser.add_argument("out_dir", metavar="OUT_DIR", type=str, help="Output folder (created if needed)")
    parser.add_argument("--num_tumor", default=1, type=count, help="number of tumour slides Tumor_NNN, default 1")
    parser.add_argument("--num_normal", default=1, type=count, help="number of normal slides Normal_NNN, default 1")
    parser.add_argument("--size", default=4096, type=positive, help="level-0 width and height in pixels, default 4096")
    parser.add_argument("--seed", default=0, type=count, help="random seed, default 0")
    parser.add_argument("--with_hole", action="store_true",
                        help="add a _2 (exclusion) polygon inside the first tumour of each tumour slide")
    parser.add_argument("--tumors_per_slide", default=2, type=count, help="tumour nests per tumour slide, default 2")
    parser.add_argument("--tumor_size", default=[1300, 2000], type=positive, nargs=2, metavar=("MIN", "MAX"),
                        help="range of a tumour's major axis in level-0 pixels, default 1300 2000 (keep it "
                             "above 1150 at 0.243 um/px, or the FROC treats it as isolated tumour cells)")
    parser.add_argument("--mpp", default=CAMELYON16_MPP, type=positive_float,
                        help="microns per level-0 pixel, default 0.243")
    parser.add_argument("--start", default=1, type=count, help="number of the first slide of each kind, default 1")
    parser.add_argument("--mask_dir", default=None, type=str,
                        help="folder of the ground-truth masks, default OUT_DIR/masks")
    parser.add_argument("--lymphoid", default=0, type=count,
                        help="lymphoid follicles per slide: normal tissue packed with small dark nuclei, darker "
                             "than tumour (colour alone no longer tells tumour from normal), default 0")
    parser.add_argument("--json_dir", default=None, type=str,
                        help="also write <pid>.json annotations of every slide here, default: none")
    return parser


def slide_seed(seed, kind, index):
    """The seed of one slide: independent streams per (seed, kind, index) (kind 0 tumour, 1 normal)."""
    return int(np.random.SeedSequence([seed, kind, index]).generate_state(1)[0])


def run(args):
    if args.num_tumor < 0 or args.num_normal < 0 or args.num_tumor + args.num_normal == 0:
        raise InputError(f"--num_tumor {args.num_tumor} --num_normal {args.num_normal}: nothing to write")
    if args.size < 64:
        raise InputError(f"--size {args.size}: too small (at least 64)")
    if args.mpp <= 0:
        raise InputError(f"--mpp {args.mpp}: must be positive")
    out_dir = Path(args.out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: is a file, expected an output folder")
    mask_dir = Path(args.mask_dir) if args.mask_dir else out_dir / "masks"
    json_dir = Path(args.json_dir) if args.json_dir else None
    check_outputs(folders=[out_dir, mask_dir if args.num_tumor else None, json_dir])
    plan = [("Tumor", 0, i) for i in range(args.start, args.start + args.num_tumor)]
    plan += [("Normal", 1, i) for i in range(args.start, args.start + args.num_normal)]
    # Draw every layout first: a tumour that does not fit fails here, before anything is written.
    for prefix, kind, index in plan:
        plan_slide(args.size, args.size, seed=slide_seed(args.seed, kind, index),
                   num_tumours=args.tumors_per_slide, tumour_size=tuple(args.tumor_size), normal=kind == 1)
    if args.lymphoid < 0:
        raise InputError(f"--lymphoid {args.lymphoid}: must be at least 0")
    tiles = sum(math.ceil(w / 256) * math.ceil(h / 256) for w, h in pyramid_dimensions(args.size, args.size))
    out_dir.mkdir(parents=True, exist_ok=True)
    with tqdm(total=tiles * len(plan), unit="tile", desc="synthetic slides") as bar:
        for prefix, kind, index in plan:
            pid = f"{prefix}_{index:03d}"
            tumour = kind == 0
            result = make_synthetic_slide(
                out_dir / f"{pid}.tif", width=args.size, height=args.size, seed=slide_seed(args.seed, kind, index),
                num_tumours=args.tumors_per_slide, tumour_size=tuple(args.tumor_size), with_hole=args.with_hole,
                normal=not tumour, mpp=args.mpp, xml_path=out_dir / f"{pid}.xml" if tumour else None,
                mask_path=mask_dir / f"{pid}.tif" if tumour else None,
                json_path=json_dir / f"{pid}.json" if json_dir else None, progress=bar.update,
                lymphoid=args.lymphoid)
            logger.info("%s: %dx%d, tissue %.0f%%, %d tumour / %d exclusion polygons", result.slide_path,
                        result.width, result.height, 100 * result.tissue.fraction(),
                        len(result.annotation.positive), len(result.annotation.negative))


def main(argv=None):
    return run_command(run, get_args_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
