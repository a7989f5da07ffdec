#!/usr/bin/env python3
"""Training throughput: grids per second and the share of time spent waiting for data, PNG patch folders
(written by patch_gen) against grids read on the fly from the slide, measured in one run.

The slide is the real H&E fixture ``tests/data/cmu_small_region.svs`` (2220×2967 px, JPEG tiles); the centres
are random points of it. On the CPU it runs the demo size (image 192, patch 64, crop 56); with ``--size paper``
(the default on CUDA) the paper's 768 / 256 / 224. Each step is ``batch_size`` tumour + ``batch_size`` normal
grids, as in ``wsi/bin/train.py``, whose ``train_one_epoch`` is timed.

    python bench/train_throughput.py                 # CPU, demo size
    python bench/train_throughput.py --size paper    # CUDA: the paper's sizes
"""
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import json
import shutil
import tempfile
import time

import numpy as np
import torch

from wsi.bin.train import build_loaders, derive_seed, train_one_epoch
from wsi.config import DATASETS
from wsi.data.annotation import Annotation, Polygon
from wsi.data.coords import write_coords
from wsi.data.image_producer import dataset_from_config
from wsi.data.patches import generate_patches
from wsi.model import build_model

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "data" / "cmu_small_region.svs"
SIZES = {"demo": (192, 64, 56), "paper": (768, 256, 224)}


def make_data(root, image_size, lines, seed=0):
    """Slide folder, annotation folder and one coordinate list per dataset, all on the fixture slide."""
    (root / "slides").mkdir(parents=True)
    shutil.copy(FIXTURE, root / "slides" / "cmu.svs")
    width, height = 2220, 2967
    Annotation([Polygon("tumour", [[600, 800], [1600, 800], [1600, 2200], [600, 2200]])], []).to_json(
        root / "jsons" / "cmu.json")
    rng = np.random.default_rng(seed)
    half = image_size // 2
    for name in DATASETS:
        xs = rng.integers(half, width - half, lines)
        ys = rng.integers(half, height - half, lines)
        write_coords(root / f"{name}.txt", [("cmu", int(x), int(y)) for x, y in zip(xs, ys)])


def config(root, sizes, batch_size, on_the_fly):
    cfg = {"model": "resnet18", "use_crf": True, "batch_size": batch_size, "image_size": sizes[0],
           "patch_size": sizes[1], "crop_size": sizes[2], "lr": 0.001, "momentum": 0.9,
           "json_path_train": str(root / "jsons"), "json_path_valid": str(root / "jsons"), "epoch": 1,
           "log_every": 100}
    for name in DATASETS:
        if on_the_fly:
            cfg[f"coords_{name}"] = str(root / f"{name}.txt")
        else:
            cfg[f"data_path_{name}"] = str(root / "patches" / name)
    if on_the_fly:
        cfg.update(wsi_path_train=str(root / "slides"), wsi_path_valid=str(root / "slides"))
    return cfg


def loaders_for(cfg, num_workers, device, length=None):
    """The four loaders of ``cfg``, each dataset cut to its first ``length`` grids when given."""
    datasets = {name: dataset_from_config(cfg, name, seed=derive_seed(0, k)) for k, name in enumerate(DATASETS)}
    if length is not None:
        datasets = {name: torch.utils.data.Subset(d, range(length)) for name, d in datasets.items()}
    return build_loaders(cfg, datasets, 1, num_workers, 1, 0, pin_memory=device.type == "cuda")


def time_loading(loaders):
    """Grids per second of iterating the two training loaders together, with no model."""
    start, grids = time.perf_counter(), 0
    normal = iter(loaders["normal_train"])
    for tumour_data, _ in loaders["tumor_train"]:
        normal_data, _ = next(normal)
        grids += len(tumour_data) + len(normal_data)
    return grids / (time.perf_counter() - start)


def time_training(cfg, loaders, device):
    """(grids per second, share of the time spent waiting for data) of one epoch of ``train_one_epoch``."""
    torch.manual_seed(0)
    model = build_model(cfg).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg["lr"], momentum=cfg["momentum"])
    criterion = torch.nn.BCEWithLogitsLoss()
    # One warm-up step outside the timing (first-call kernel selection, worker start-up).
    warm = next(iter(loaders["tumor_train"]))[0][:2].to(device)
    criterion(model(warm), torch.zeros(warm.shape[:2], device=device)).backward()
    optimizer.zero_grad()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    _, stats = train_one_epoch(model, criterion, optimizer, loaders["tumor_train"], loaders["normal_train"], device,
                               0, 0, log_every=10**9)
    if device.type == "cuda":
        torch.cuda.synchronize()
    total = time.perf_counter() - start
    return stats["grids"] / total, stats["data_time"] / total


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default=None,
                        help="demo (192/64/56, the CPU default) or paper (768/256/224, the CUDA default)")
    parser.add_argument("--steps", type=int, default=4, help="training steps timed per mode, default 4")
    parser.add_argument("--grids", type=int, default=200,
                        help="grids per dataset for the loading-only timing, default 200")
    parser.add_argument("--batch_size", type=int, default=10, help="tumour grids per step, default 10")
    parser.add_argument("--num_workers", type=int, default=2, help="DataLoader workers per loader, default 2")
    parser.add_argument("--device", choices=("cuda", "cpu"), default=None)
    args = parser.parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    size = args.size or ("paper" if device.type == "cuda" else "demo")
    sizes = SIZES[size]
    lines = max(args.grids, args.steps * args.batch_size)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_data(root, sizes[0], lines)
        start = time.perf_counter()
        for name in DATASETS:
            generate_patches(root / "slides", root / f"{name}.txt", root / "patches" / name, patch_size=sizes[0],
                             num_process=2, progress=False)
        patch_time = time.perf_counter() - start
        png_bytes = sum(p.stat().st_size for p in (root / "patches").rglob("*.png"))
        pngs = 4 * lines

        results = {}
        for mode, on_the_fly in (("png", False), ("slides", True)):
            cfg = config(root, sizes, args.batch_size, on_the_fly)
            load_rate = time_loading(loaders_for(cfg, args.num_workers, device))
            loaders = loaders_for(cfg, args.num_workers, device, length=args.steps * args.batch_size)
            train_rate, data_share = time_training(cfg, loaders, device)
            results[mode] = (load_rate, train_rate, data_share)

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(f"device {name}; image {sizes[0]}, patch {sizes[1]}, crop {sizes[2]}; batch {args.batch_size}+"
          f"{args.batch_size} grids; {args.steps} steps; {args.num_workers} workers per loader")
    print(f"patch_gen: {pngs} PNGs in {patch_time:.2f} s ({pngs / patch_time:.1f} PNG/s), "
          f"{png_bytes / pngs / 1e3:.0f} kB per PNG (x 200 000 = {png_bytes / pngs * 2e5 / 1e9:.0f} GB)")
    for mode, (load_rate, train_rate, data_share) in results.items():
        print(f"{mode:>6}: loading only {load_rate:7.1f} grids/s; training {train_rate:6.2f} grids/s, "
              f"{100 * data_share:4.1f} % of the time waiting for data")
    png, fly = results["png"], results["slides"]
    print(f"ratio on-the-fly / PNG: loading {fly[0] / png[0]:.2f}x, training {fly[1] / png[1]:.2f}x")
    print(json.dumps({"device": name, "sizes": sizes, **{m: dict(zip(("load_grids_s", "train_grids_s",
                                                                          "data_share"), v))
                                                          for m, v in results.items()}}))


if __name__ == "__main__":
    main()
