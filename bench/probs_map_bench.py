#!/usr/bin/env python3
"""Benchmark of probs_map: fast vs faithful mode, on synthetic slides with a randomly initialised ResNet-18 + CRF.

Configs (``--configs``, default ``demo,224``), grids of 3×3 patches whose neighbours are q = patch_size / stride
mask pixels apart:

- demo: image 192, patch 64, crop 56 on a level-6 mask (stride 64, q = 1), as ``configs/demo_crf.json`` and
  ``scripts/demo.sh`` run it;
- demo16: the same crops on a level-4 mask (stride 16, q = 4): the original's geometry with lengths divided by 4;
- 224: image 768, patch 256, crop 224 on a level-6 mask (stride 64, q = 4): the original's config and map level.

For each: a slide holding a disc of tissue of radius ``--radius`` mask pixels; the fast mode computes the whole
disc, the faithful mode (slow: ~9 CNN evaluations per position) a sample of ``--faithful_positions`` positions
of it, and its speed is extrapolated per position. Printed, measured in this one run: positions/s of both and
their ratio, CNN evaluations and bytes decoded per tissue position, and the largest difference between the two
maps at the sampled positions. Then the CNN evaluations per position the fast mode needs on a blobby 40 % tissue
mask (no CNN run), and the peak memory (VmHWM of a subprocess) of the fast mode on a 32768² slide and on an
8192² one with the same tissue pattern (positions every 64 mask pixels and a dense 12² square), at 224.

On a shared machine wall-clock rates follow the load of the moment; the CPU time of the process (all reading and
computing runs in it with the default ``--num_workers 0``) is the steadier measure, and both are printed.

Run: ``python bench/probs_map_bench.py`` (about 20 min on 2 busy CPU cores; ``--quick`` for a smaller disc).
"""
import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy import ndimage  # noqa: E402

from wsi.data.pyramid import write_pyramid  # noqa: E402
from wsi.data.slide import open_slide  # noqa: E402
from wsi.inference.common import InferenceStats  # noqa: E402
from wsi.inference.fast import fast_probs_map  # noqa: E402
from wsi.inference.lattice import PatchLattice  # noqa: E402
from wsi.inference.faithful import faithful_probs_map  # noqa: E402
from wsi.geometry import GridSpec, mask_geometry  # noqa: E402
from wsi.model import MODELS, PassOptions, inference_model  # noqa: E402

CONFIGS = {
    "demo": dict(grid=GridSpec(192, 64, 56), level=6),
    "demo16": dict(grid=GridSpec(192, 64, 56), level=4),
    "224": dict(grid=GridSpec(768, 256, 224), level=6),
}


def make_texture(seed=0, size=1024):
    """A periodic H&E-like RGB texture [size, size, 3] uint8 (pink background, darker purple speckles)."""
    rng = np.random.default_rng(seed)
    noise = ndimage.gaussian_filter(rng.normal(size=(size, size, 3)), (3, 3, 0), mode="wrap")
    noise = (noise - noise.mean()) / noise.std()
    base = np.array([225, 160, 200], dtype=float)
    return np.clip(base + 35 * noise, 0, 255).astype(np.uint8)


def write_slide(path, size, seed=0):
    """A size² JPEG pyramid tiled from a periodic texture (every level rendered directly: bounded memory)."""
    texture = make_texture(seed)
    period = texture.shape[0]

    def render(level, x, y, w, h):
        step = 2 ** level
        ys = (np.arange(y, y + h) * step) % period
        xs = (np.arange(x, x + w) * step) % period
        return texture[ys][:, xs]

    write_pyramid(path, render, size, size, compression="jpeg")
    return path


def make_model(seed=0):
    torch.manual_seed(seed)
    model = MODELS["resnet18"](num_nodes=9, use_crf=True)
    with torch.no_grad():
        model.crf.W.normal_(0.0, 1.0)
    return model.eval()


def disc_mask(shape, radius):
    x, y = np.mgrid[:shape[0], :shape[1]]
    return (x - shape[0] / 2) ** 2 + (y - shape[1] / 2) ** 2 < radius ** 2


def bench_config(name, radius, faithful_positions, workdir, num_workers, device):
    cfg = CONFIGS[name]
    grid, level = cfg["grid"], cfg["level"]
    stride = 2 ** level
    size = (2 * radius + 24) * stride
    slide_path = write_slide(Path(workdir) / f"disc_{name}.tif", size)
    with open_slide(slide_path) as slide:
        mask = disc_mask(slide.level_dimensions[level], radius)
        geometry = mask_geometry(slide.level_dimensions, slide.level_downsamples, mask.shape)
    model = make_model().to(device)

    # The faithful sample, split in two halves run before and after the fast run, so that a change of load on a
    # shared machine affects both modes alike. Times are wall-clock and CPU time of this process (with the
    # default --num_workers 0 everything, reading included, runs in this process).
    xs, ys = np.nonzero(mask)
    pick = np.linspace(0, len(xs) - 1, faithful_positions).round().astype(int)
    halves = [np.zeros_like(mask), np.zeros_like(mask)]
    for k, index in enumerate(pick):
        halves[k % 2][xs[index], ys[index]] = True

    def timed(function, sample):
        stats = InferenceStats()
        wall, cpu = time.perf_counter(), time.process_time()
        probs = function(model, slide_path, sample, grid, geometry, num_workers=num_workers, progress=False,
                         stats=stats)
        return probs, stats, time.perf_counter() - wall, time.process_time() - cpu

    first = timed(faithful_probs_map, halves[0])
    fast, fast_stats, fast_wall, fast_cpu = timed(fast_probs_map, mask)
    second = timed(faithful_probs_map, halves[1])
    sample = halves[0] | halves[1]
    faithful = first[0] + second[0]
    faithful_positions = first[1].positions + second[1].positions
    faithful_wall, faithful_cpu = first[2] + second[2], first[3] + second[3]
    faithful_stats = first[1]
    return {
        "config": f"{name} ({grid.image_size}/{grid.patch_size}/{grid.crop_size}, stride {stride})",
        "slide": f"{size}x{size}",
        "positions": fast_stats.positions,
        "fast pos/s": fast_stats.positions / fast_wall,
        "faithful pos/s": faithful_positions / faithful_wall,
        "fast pos/cpu-s": fast_stats.positions / fast_cpu,
        "faithful pos/cpu-s": faithful_positions / faithful_cpu,
        "CNN evals/pos fast": fast_stats.evaluations_per_position,
        "CNN evals/pos faithful": faithful_stats.evaluations_per_position,
        "bytes/pos fast": fast_stats.bytes_per_position,
        "bytes/pos faithful": faithful_stats.bytes_per_position,
        "max |diff|": float(np.abs(fast[sample] - faithful[sample]).max()),
        "faithful sample": faithful_positions,
    }


def blob_evaluations(shape=(512, 512), tissue=0.4, seed=0):
    """CNN evaluations per position the fast mode needs (q = 4) on a blobby mask with ``tissue`` coverage."""
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.normal(size=shape), 20)
    mask = field > np.quantile(field, 1 - tissue)
    sizes = [(shape[0] * 64, shape[1] * 64), shape]
    geometry = mask_geometry(sizes, [1.0, 64.0], shape)
    lattice = PatchLattice(mask, CONFIGS["224"]["grid"], geometry, [(r, c) for r in range(3) for c in range(3)])
    return lattice.need.sum() / mask.sum(), int(mask.sum())


def peak_rss_mib():
    """This process's peak resident memory (VmHWM), MiB. Not ru_maxrss: on Linux that carries over the peak of the
    process that forked this one."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory_child(slide_path, level, num_workers, device):
    """Run the fast mode at 224 on a sparse mask with the default network; print the peak RSS (MiB), positions and
    blocks read.

    Tissue: one position every 64 mask pixels over the whole slide (every band of the slide is visited) and one
    dense 12 × 12 square in the middle (full batches of crops, hence the activations' peak).
    """
    grid = CONFIGS["224"]["grid"]
    with open_slide(slide_path) as slide:
        mask = np.zeros(slide.level_dimensions[level], dtype=bool)
        geometry = mask_geometry(slide.level_dimensions, slide.level_downsamples, mask.shape)
    mask[32::64, 32::64] = True
    cx, cy = mask.shape[0] // 2, mask.shape[1] // 2
    mask[cx - 6:cx + 6, cy - 6:cy + 6] = True
    stats = InferenceStats()
    # The network probs_map.py runs by default on this device (OpenVINO on a CPU when installed).
    net = inference_model(make_model().to(device), PassOptions.resolve(torch.device(device)), crop=grid.crop_size)
    fast_probs_map(net, slide_path, mask, grid, geometry, num_workers=num_workers, progress=False, stats=stats)
    print(f"{peak_rss_mib():.0f} {stats.positions} {stats.regions_read}")


def bench_memory(size, workdir, num_workers, device):
    slide_path = write_slide(Path(workdir) / f"big_{size}.tif", size)
    done = subprocess.run([sys.executable, __file__, "--_memory_child", str(slide_path), "--num_workers",
                           str(num_workers), "--device", device], capture_output=True, text=True, check=True)
    peak, positions, blocks = done.stdout.split()[-3:]
    os.remove(slide_path)
    return float(peak), int(positions), int(blocks)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a disc of radius 16 (default 40) and no 32768² run")
    parser.add_argument("--radius", type=int, default=None, help="radius of the tissue disc in mask pixels")
    parser.add_argument("--faithful_positions", type=int, default=24)
    parser.add_argument("--num_workers", type=int, default=0,
                        help="reader workers, default 0: all work in one process, so its CPU time is all of it")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--configs", default="demo,224", help="comma list of demo, demo16, 224; empty for none")
    parser.add_argument("--skip_memory", action="store_true")
    parser.add_argument("--_memory_child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._memory_child:
        return memory_child(args._memory_child, CONFIGS["224"]["level"], args.num_workers, args.device)

    radius = args.radius or (16 if args.quick else 40)
    device = torch.device(args.device)
    print(f"device {device}, torch threads {torch.get_num_threads()}, workers {args.num_workers}, "
          f"load average at start {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as workdir:
        for name in filter(None, args.configs.split(",")):
            row = bench_config(name, radius, args.faithful_positions, workdir, args.num_workers, device)
            print(f"\n{row['config']}: slide {row['slide']}, disc of {row['positions']} tissue positions "
                  f"(faithful on {row['faithful sample']} of them)")
            wall = row["fast pos/s"] / row["faithful pos/s"]
            cpu = row["fast pos/cpu-s"] / row["faithful pos/cpu-s"]
            print(f"  positions/s      fast {row['fast pos/s']:8.2f}   faithful {row['faithful pos/s']:8.2f}   "
                  f"ratio {wall:.1f}x (wall clock)")
            print(f"  positions/CPU-s  fast {row['fast pos/cpu-s']:8.2f}   faithful {row['faithful pos/cpu-s']:8.2f}   "
                  f"ratio {cpu:.1f}x (CPU time of the process)")
            print(f"  CNN evals/pos    fast {row['CNN evals/pos fast']:8.3f}   faithful "
                  f"{row['CNN evals/pos faithful']:8.3f}")
            print(f"  bytes/pos        fast {row['bytes/pos fast']:8.0f}   faithful {row['bytes/pos faithful']:8.0f}"
                  f"   ratio {row['bytes/pos faithful'] / row['bytes/pos fast']:.0f}x")
            print(f"  max |fast - faithful| = {row['max |diff|']:.2e}")
        per_position, positions = blob_evaluations()
        print(f"\nblobby 40 % tissue mask 512x512 (a 32768² slide at level 6, {positions} positions): "
              f"fast mode needs {per_position:.3f} CNN evaluations per tissue position")
        if not (args.skip_memory or args.quick):
            for size in (8192, 32768):
                peak, positions, blocks = bench_memory(size, workdir, args.num_workers, args.device)
                print(f"peak RSS of the fast mode at 224, {size}x{size} slide ({positions} positions over the whole "
                      f"slide, {blocks} blocks read): {peak:.0f} MiB "
                      + ("(one process does all)" if args.num_workers == 0
                         else f"(main process; {args.num_workers} reader workers not counted)"))


if __name__ == "__main__":
    main()
