#!/usr/bin/env python3
"""Time ground-truth masks of Camelyon16's largest annotations at the real slide size.

For each annotation JSON (default: the training annotations with the most vertices and exclusions), writes the
full-size mask pyramid with :func:`wsi.data.mask.write_tumour_mask` (the rasteriser behind
``wsi/bin/annotation_mask.py``) and prints the wall time, the tiles per second, and the ratio to an empty
annotation of the same size (the cost of writing the pyramid itself), all measured in this run.

    python bench/annotation_mask_bench.py [--names Tumor_039,Tumor_034] [--size 97792 221184] [--out DIR]

Needs ../shared/ncrf-reference/jsons (or ``--json_dir``). 97792 × 221184 is the size of the Radboudumc
Camelyon16 slides (the larger of the two centres); the annotations' extents fit inside it.
"""
from pathlib import Path

import argparse
import math
import tempfile
import time

from wsi.data.annotation import Annotation
from wsi.data.mask import mask_levels, write_tumour_mask

DEFAULT_JSONS = Path(__file__).resolve().parents[2] / "shared" / "ncrf-reference" / "jsons" / "train"


def time_mask(annotation, width, height, out, tile_size):
    start = time.perf_counter()
    write_tumour_mask(out, annotation, width, height, tile_size=tile_size)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json_dir", default=str(DEFAULT_JSONS))
    parser.add_argument("--names", default="Tumor_039,Tumor_034,Tumor_047,Normal_001",
                        help="comma-separated annotation stems, default Tumor_039,Tumor_034,Tumor_047,Normal_001")
    parser.add_argument("--size", default=(97792, 221184), type=int, nargs=2, metavar=("WIDTH", "HEIGHT"))
    parser.add_argument("--tile_size", default=512, type=int)
    parser.add_argument("--out", default=None, help="folder to keep the masks in; default a temporary folder")
    args = parser.parse_args()
    width, height = args.size
    tiles = sum(math.ceil(w / args.tile_size) * math.ceil(h / args.tile_size) for w, h in mask_levels(width, height))
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = Path(args.out or tmp)
        out_dir.mkdir(parents=True, exist_ok=True)
        baseline = time_mask(Annotation(), width, height, out_dir / "empty.tif", args.tile_size)
        print(f"slide {width}×{height}, {tiles} tiles of {args.tile_size} px over all levels")
        print(f"{'annotation':<12} {'pos':>4} {'neg':>4} {'vertices':>8} {'seconds':>8} {'tiles/s':>8} {'MB':>6} "
              f"{'x empty':>7}")
        print(f"{'(empty)':<12} {0:>4} {0:>4} {0:>8} {baseline:>8.1f} {tiles / baseline:>8.0f} "
              f"{(out_dir / 'empty.tif').stat().st_size / 1e6:>6.1f} {1:>7.2f}")
        for name in args.names.split(","):
            annotation = Annotation.from_json(Path(args.json_dir) / f"{name}.json")
            vertices = sum(len(p) for p in annotation.positive + annotation.negative)
            out = out_dir / f"{name}.tif"
            seconds = time_mask(annotation, width, height, out, args.tile_size)
            print(f"{name:<12} {len(annotation.positive):>4} {len(annotation.negative):>4} {vertices:>8} "
                  f"{seconds:>8.1f} {tiles / seconds:>8.0f} {out.stat().st_size / 1e6:>6.1f} "
                  f"{seconds / baseline:>7.2f}", flush=True)


if __name__ == "__main__":
    main()
