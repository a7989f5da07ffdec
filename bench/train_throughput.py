#!/usr/bin/env python3
"""Training throughput, measured in one run: what one CPU core does per grid on each augmentation path, the cores
needed to feed a GPU, end-to-end grids/s and the share of time waiting for data, and channels-last training.

The slide is the real H&E fixture ``tests/data/cmu_small_region.svs`` (2220×2967 px, JPEG tiles); the centres
are random points of it, read with OpenSlide's tile cache off (a training set of hundreds of slides rarely hits
it, and the fixture would fit in it whole). Sizes: ``demo`` (image 192, patch 64, crop 56; the CPU default) or
``paper`` (768 / 256 / 224; the CUDA default).

1. **Per core** (one thread, the main process, ``dataset_from_config`` as ``train.py`` builds it): ms per grid to
   read and decode the region; ms per grid of the per-item path's augmentation (``--augment cpu``: PIL jitter,
   flip, rotation, crops, scaling); ms per grid of the device path's CPU share (``--augment device``: read,
   decode, draws, labels, packing); both whole-item figures include the worker's collation into a batch;
   grids/s per core of both paths and the cores each needs to feed ``--target`` grids/s. Also the device path's
   augmentation, ms per grid on the training device (one thread on the CPU).
2. **End to end** (``train.py``'s ``train_one_epoch``, ``--num_workers`` workers per loader): grids/s and the
   share of time waiting for data, for PNG folders (patch_gen) and for grids read on the fly with either
   augmentation path. Runs on CUDA, and on the CPU at the demo size (at the paper's size the CPU is too slow
   for it to mean anything; ``--end_to_end`` forces it).
3. **channels_last** (``--channels_last_check``): training steps of the network alone on a fixed batch, grids/s
   with contiguous and channels-last memory, and how far the loss and gradients move.

    python bench/train_throughput.py --size paper                 # per core at 768/224 (+ end to end on CUDA)
    python bench/train_throughput.py                              # demo size, all sections on the CPU
    python bench/train_throughput.py --quick                      # seconds: what the test runs
"""
from pathlib import Path

import argparse
import json
import shutil
import tempfile
import time

import numpy as np
import openslide
import torch
from torch.utils.data import default_collate

from wsi.bin.train import train_one_epoch
from wsi.config import DATASETS
from wsi.data.annotation import Annotation, Polygon
from wsi.data.coords import write_coords
from wsi.data.grid_augment import augment_grids
from wsi.data.image_producer import make_grid
from wsi.data.patches import generate_patches
from wsi.geometry import GridSpec
from wsi.model import build_model
from wsi.train import BatchPreparer, build_datasets, build_loaders, default_num_workers

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


def uncached(dataset):
    """Open ``dataset``'s slides in this process with OpenSlide's tile cache off: every read decodes its tiles."""
    no_cache = openslide.OpenSlideCache(0)
    for pid, _, _ in dataset.coords:
        dataset._slide(pid)._osr.set_cache(no_cache)  # the handle the dataset keeps open
    return dataset


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# 1. Per core -----------------------------------------------------------------------------------------------------
def per_core(cfg, grids, batch, device):
    """Milliseconds per grid on one thread: read/decode, per-item augmentation, device path's CPU share, and the
    device path's augmentation on ``device``. Each measurement uses its own items (no region is read twice), and
    the measurements alternate item by item."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        per_item = uncached(build_datasets(cfg, 0)["tumor_train"])
        raw = uncached(build_datasets(cfg, 0, raw=True)["tumor_train"])
        ranges = [range(k * grids, (k + 1) * grids) for k in range(3)]
        for dataset in (per_item, raw):  # warm-up outside the timing (first-call imports and allocations)
            dataset[len(dataset) - 1]

        # Interleaved, so that the measurements share whatever load the machine has.
        clock = time.perf_counter
        spent = dict(read=0.0, augment=0.0, per_item=0.0, device_cpu=0.0)
        items = []
        for a, b, c in zip(*ranges):
            start = clock()
            image = per_item.read_image(a)
            spent["read"] += clock() - start
            start = clock()
            make_grid(image, per_item.labels(a), cfg["patch_size"], cfg["crop_size"], draws=per_item.draws(a))
            spent["augment"] += clock() - start
            start = clock()
            per_item[b]
            spent["per_item"] += clock() - start
            start = clock()
            items.append(raw[c])
            spent["device_cpu"] += clock() - start
        read_ms, augment_ms, per_item_ms, device_cpu_ms = (1e3 * spent[k] / grids for k in spent)
        # Workers also collate their items into a batch (one copy: 4 bytes per value per item, 1 for raw).
        per_item_batch = [per_item[i] for i in ranges[1][:batch]]
        collate = {"per_item": 0.0, "raw": 0.0}
        for _ in range(3):
            for kind, batch_items in (("per_item", per_item_batch), ("raw", items[:batch])):
                start = clock()
                default_collate(batch_items)
                collate[kind] += clock() - start
        collate_ms = {k: 1e3 * v / (3 * len(per_item_batch)) for k, v in collate.items()}
        per_item_ms += collate_ms["per_item"]
        device_cpu_ms += collate_ms["raw"]

        # The device path's augmentation of one training step's grids on the device (one thread on the CPU).
        images = torch.stack([image for (image, _), _ in items[:batch]]).to(device)
        draws = torch.stack([d for (_, d), _ in items[:batch]])
        augment_grids(images, draws, cfg["patch_size"], cfg["crop_size"])
        sync(device)
        start = time.perf_counter()
        repeats = 3
        for _ in range(repeats):
            augment_grids(images, draws, cfg["patch_size"], cfg["crop_size"])
        sync(device)
        device_augment_ms = 1e3 * (time.perf_counter() - start) / (repeats * len(images))
    finally:
        torch.set_num_threads(threads)
    per_item.close()
    raw.close()
    return {"read_ms": read_ms, "cpu_augment_ms": augment_ms, "per_item_ms": per_item_ms,
            "device_cpu_ms": device_cpu_ms, "device_augment_ms": device_augment_ms,
            "collate_per_item_ms": collate_ms["per_item"], "collate_raw_ms": collate_ms["raw"]}


# 2. End to end ---------------------------------------------------------------------------------------------------
def loaders_for(cfg, num_workers, device, length, raw=False):
    """The four loaders of ``cfg``, each dataset cut to its first ``length`` grids."""
    datasets = build_datasets(cfg, 0, raw=raw)
    datasets = {name: torch.utils.data.Subset(d, range(length)) for name, d in datasets.items()}
    return build_loaders(cfg, datasets, 1, num_workers, 1, 0, pin_memory=device.type == "cuda")


def time_training(cfg, loaders, device, prepare, amp=False, channels_last=False):
    """(grids per second, share of the time spent waiting for data) of one epoch of ``train_one_epoch``."""
    torch.manual_seed(0)
    memory = torch.channels_last if channels_last else torch.preserve_format
    model = build_model(cfg).to(device, memory_format=memory)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg["lr"], momentum=cfg["momentum"])
    criterion = torch.nn.BCEWithLogitsLoss()
    # One warm-up step outside the timing (first-call kernel selection).
    tumour, _ = next(iter(loaders["tumor_train"]))
    warm = prepare([tumour])[:2]
    criterion(model(warm).float(), torch.zeros(warm.shape[:2], device=device)).backward()
    optimizer.zero_grad()
    sync(device)
    start = time.perf_counter()
    _, stats = train_one_epoch(model, criterion, optimizer, loaders["tumor_train"], loaders["normal_train"], device,
                               0, 0, log_every=10**9, prepare=prepare, amp=amp)
    sync(device)
    total = time.perf_counter() - start
    return stats["grids"] / total, stats["data_time"] / total


def end_to_end(root, sizes, args, device, lines):
    start = time.perf_counter()
    for name in DATASETS:
        generate_patches(root / "slides", root / f"{name}.txt", root / "patches" / name, patch_size=sizes[0],
                         num_process=2, progress=False)
    patch_time = time.perf_counter() - start
    results = {}
    for mode, on_the_fly, raw in (("png, cpu augment", False, False), ("slides, cpu augment", True, False),
                                  ("slides, device augment", True, True)):
        cfg = config(root, sizes, args.batch_size, on_the_fly)
        loaders = loaders_for(cfg, args.num_workers, device, args.steps * args.batch_size, raw=raw)
        prepare = BatchPreparer(device, cfg["patch_size"], cfg["crop_size"])
        results[mode] = time_training(cfg, loaders, device, prepare, amp=args.amp)
    return patch_time, 4 * lines, results


# 3. channels_last ------------------------------------------------------------------------------------------------
def channels_last_check(cfg, device, steps, amp=False):
    """Training steps on a fixed batch of 2·batch_size grids: grids/s contiguous and channels-last, and the
    largest difference of the first step's loss and gradients between the two."""
    generator = torch.Generator().manual_seed(0)
    batch = 2 * cfg["batch_size"]
    shape = (batch, GridSpec.from_config(cfg).num_nodes, 3, cfg["crop_size"], cfg["crop_size"])
    data = (torch.rand(shape, generator=generator) * 2 - 1).to(device)
    target = (torch.rand(shape[:2], generator=generator) > 0.5).float().to(device)
    out = {}
    for name, memory in (("contiguous", torch.preserve_format), ("channels_last", torch.channels_last)):
        torch.manual_seed(0)
        model = build_model(cfg).to(device, memory_format=memory)
        inputs = data if memory is torch.preserve_format else BatchPreparer(device, channels_last=True)([data])
        optimizer = torch.optim.SGD(model.parameters(), lr=cfg["lr"], momentum=cfg["momentum"])
        criterion = torch.nn.BCEWithLogitsLoss()

        def step():
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                output = model(inputs)
            loss = criterion(output.float(), target)
            optimizer.zero_grad()
            loss.backward()
            return loss

        first = step()
        grads = {k: p.grad.detach().clone() for k, p in model.named_parameters()}
        optimizer.step()
        sync(device)
        start = time.perf_counter()
        for _ in range(steps):
            step()
            optimizer.step()
        sync(device)
        out[name] = {"grids_s": steps * batch / (time.perf_counter() - start), "loss": first.item(), "grads": grads}
    a, b = out["contiguous"], out["channels_last"]
    grad_diff = max(float((a["grads"][k] - b["grads"][k]).abs().max()) for k in a["grads"])
    return {"contiguous_grids_s": a["grids_s"], "channels_last_grids_s": b["grids_s"],
            "loss_diff": abs(a["loss"] - b["loss"]), "grad_max_diff": grad_diff}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default=None,
                        help="demo (192/64/56, the CPU default) or paper (768/256/224, the CUDA default)")
    parser.add_argument("--target", type=float, default=400, help="grids/s to feed, default 400")
    parser.add_argument("--grids", type=int, default=40, help="grids per per-core measurement, default 40")
    parser.add_argument("--steps", type=int, default=4, help="training steps timed per mode, default 4")
    parser.add_argument("--batch_size", type=int, default=10, help="tumour grids per step, default 10")
    parser.add_argument("--num_workers", type=int, default=None,
                        help="DataLoader workers per loader, default train.py's (from the CPU count)")
    parser.add_argument("--device", choices=("cuda", "cpu"), default=None)
    parser.add_argument("--amp", action="store_true", help="end to end under bfloat16 autocast")
    parser.add_argument("--end_to_end", action="store_true", help="time end to end also on the CPU at paper size")
    parser.add_argument("--channels_last_check", action="store_true", help="section 3 (network alone)")
    parser.add_argument("--quick", action="store_true", help="a few grids and one step at the demo size")
    args = parser.parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    size = args.size or ("paper" if device.type == "cuda" else "demo")
    if args.quick:
        size, args.grids, args.steps, args.batch_size = "demo", 4, 1, 2
        args.num_workers = 0 if args.num_workers is None else args.num_workers
    if args.num_workers is None:
        args.num_workers = default_num_workers(1)
    sizes = SIZES[size]
    lines = max(3 * args.grids + 1, args.steps * args.batch_size)
    run_end_to_end = device.type == "cuda" or size == "demo" or args.end_to_end

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(f"device {name}; image {sizes[0]}, patch {sizes[1]}, crop {sizes[2]}; H&E fixture, tile cache off")
    report = {"device": name, "sizes": sizes}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_data(root, sizes[0], lines)
        cfg = config(root, sizes, args.batch_size, on_the_fly=True)
        core = per_core(cfg, args.grids, 2 * args.batch_size, device)
        report["per_core"] = core
        per_item_rate, device_rate = 1e3 / core["per_item_ms"], 1e3 / core["device_cpu_ms"]
        print(f"per core, {args.grids} grids each: read/decode {core['read_ms']:.1f} ms/grid; per-item path "
              f"augmentation {core['cpu_augment_ms']:.1f} ms/grid (whole item and collation "
              f"{core['per_item_ms']:.1f} ms); device path CPU share {core['device_cpu_ms']:.1f} ms/grid (read, "
              f"decode, draws, labels, collation); collation {core['collate_per_item_ms']:.2f} vs "
              f"{core['collate_raw_ms']:.2f} ms/grid")
        print(f"per core: per-item path {per_item_rate:.1f} grids/s, device path {device_rate:.1f} grids/s "
              f"({core['per_item_ms'] / core['device_cpu_ms']:.2f}x fewer CPU ms per grid)")
        print(f"cores to feed {args.target:.0f} grids/s: per-item path {args.target / per_item_rate:.1f}, device path "
              f"{args.target / device_rate:.1f}; device-path augmentation on {device.type}: "
              f"{core['device_augment_ms']:.2f} ms/grid")
        if run_end_to_end:
            patch_time, pngs, results = end_to_end(root, sizes, args, device, lines)
            report["end_to_end"] = {m: dict(zip(("train_grids_s", "data_share"), v)) for m, v in results.items()}
            print(f"end to end: batch {args.batch_size}+{args.batch_size} grids, {args.steps} steps, "
                  f"{args.num_workers} workers per loader{', bfloat16 autocast' if args.amp else ''}; patch_gen "
                  f"{pngs / patch_time:.1f} PNG/s")
            for mode, (rate, share) in results.items():
                print(f"  {mode:>22}: {rate:7.2f} grids/s, {100 * share:4.1f} % of the time waiting for data")
        else:
            print("end to end: skipped (CPU at the paper's size; --end_to_end runs it)")
    if args.channels_last_check:
        check = channels_last_check(config(Path("."), sizes, args.batch_size, False), device, args.steps, args.amp)
        report["channels_last"] = check
        print(f"channels_last, network alone, {args.steps} steps of {2 * args.batch_size} grids: contiguous "
              f"{check['contiguous_grids_s']:.2f} grids/s, channels_last {check['channels_last_grids_s']:.2f} grids/s "
              f"({check['channels_last_grids_s'] / check['contiguous_grids_s']:.2f}x); first step: loss differs by "
              f"{check['loss_diff']:.1e}, gradients by at most {check['grad_max_diff']:.1e}")
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
