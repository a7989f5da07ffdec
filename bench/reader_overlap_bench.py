#!/usr/bin/env python3
"""Does reading overlap the CNN? The fast mode with 0 reader threads (read, then compute) against N threads.

A synthetic JPEG slide with a disc of tissue, a randomly initialised ResNet-18 + CRF (the default inference
model: BatchNorm folded, channels_last), the demo grid (192/64/56, level-6 mask: reading is the largest share of
the work there) and optionally the paper's 224. Runs alternate (0, N, 0, N) so that a change of load on a shared
machine affects both alike. Printed per run: wall seconds, positions/s, the fraction of wall time the CNN was busy.

    python bench/reader_overlap_bench.py                       # demo grid, radius 25, threads 0 vs 5
    python bench/reader_overlap_bench.py --configs 224 --radius 12
"""
from pathlib import Path

import argparse  # noqa: E402
import os  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from bench.probs_map_bench import CONFIGS, disc_mask, make_model, write_slide  # noqa: E402
from wsi.data.slide import open_slide  # noqa: E402
from wsi.geometry import mask_geometry  # noqa: E402
from wsi.inference import InferenceStats, fast_probs_map  # noqa: E402
from wsi.model import inference_model  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="demo", help="comma list of demo, demo16, 224")
    parser.add_argument("--radius", type=int, default=25, help="tissue disc radius in mask pixels")
    parser.add_argument("--threads", type=int, default=5, help="reader threads of the overlapped runs")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    model = inference_model(make_model())
    print(f"load average at start {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as workdir:
        for name in args.configs.split(","):
            grid, level = CONFIGS[name]["grid"], CONFIGS[name]["level"]
            slide = write_slide(Path(workdir) / f"{name}.tif", (2 * args.radius + 24) * 2 ** level)
            with open_slide(slide) as handle:
                mask = disc_mask(handle.level_dimensions[level], args.radius)
                geometry = mask_geometry(handle.level_dimensions, handle.level_downsamples, mask.shape)
            print(f"\n{name} ({grid.image_size}/{grid.patch_size}/{grid.crop_size}), {int(mask.sum())} positions")
            print("| reader threads | wall s | positions/s | CNN busy |")
            print("|---|---|---|---|")
            totals = {}
            for _ in range(args.repeats):
                for threads in (0, args.threads):
                    stats = InferenceStats()
                    start = time.perf_counter()
                    fast_probs_map(model, slide, mask, grid, geometry, num_workers=threads, progress=False,
                                   stats=stats)
                    wall = time.perf_counter() - start
                    totals[threads] = totals.get(threads, 0.0) + wall
                    print(f"| {threads} | {wall:.1f} | {stats.positions / wall:.1f} | "
                          f"{100 * stats.extra['cnn_busy']:.0f}% |", flush=True)
            print(f"threads {args.threads} vs 0: {totals[0] / totals[args.threads]:.2f}x (total wall time)")


if __name__ == "__main__":
    main()
