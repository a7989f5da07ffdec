#!/usr/bin/env python3
"""Forward throughput of the NCRF model (ResNet-18 + CRF), in patches per second.

Runs ``model(grids)`` on ``[B, 9, 3, C, C]`` grids under ``torch.inference_mode()`` for the paper's crop (224)
and the demo crops (56, 64), on the CPU and on CUDA when present, in float32 and with channels_last and/or bfloat16
autocast. Prints one table; the ratio column compares each variant with float32 on the same device and crop,
measured in the same run.

    python bench/model_throughput.py                      # CPU (+ CUDA if available), crops 224 56 64
    python bench/model_throughput.py --devices cuda --batch 20 --seconds 5
"""

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import os
import platform
import time

import torch

from wsi.model import MODELS

VARIANTS = {
    "float32": (False, False),
    "channels_last": (True, False),
    "bf16 autocast": (False, True),
    "channels_last + bf16 autocast": (True, True),
}


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="resnet18", choices=list(MODELS), help="default: resnet18")
    parser.add_argument("--no-crf", action="store_true", help="benchmark the baseline (use_crf false)")
    parser.add_argument("--crops", type=int, nargs="+", default=[224, 56, 64], help="default: 224 56 64")
    parser.add_argument("--devices", nargs="+", default=None, help="default: cpu, plus cuda when available")
    parser.add_argument(
        "--batch", type=int, default=None, help="grids per forward (9 patches each); default 4 on CPU, 20 on CUDA"
    )
    parser.add_argument(
        "--variants",
        nargs="+",
        default=None,
        choices=list(VARIANTS),
        metavar="VARIANT",
        help=f"any of {list(VARIANTS)}; default: all on CUDA and on CPUs with native bfloat16, "
        "float32 and channels_last on other CPUs (their bfloat16 is emulated, many times slower)",
    )
    parser.add_argument("--seconds", type=float, default=2.0, help="timed seconds per measurement (default 2)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    return parser


def _cpu_has_bf16():
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(model, device, crop, batch, channels_last, autocast, seconds):
    """Patches per second of ``model`` on random ``[batch, 9, 3, crop, crop]`` grids."""
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(device=device, memory_format=memory_format)
    grids = torch.rand(batch, model.num_nodes, 3, crop, crop, device=device) * 2 - 1
    if channels_last:  # channels_last is a 4-D layout: lay out each patch NHWC inside the 5-D grid tensor
        grids = grids.flatten(0, 1).contiguous(memory_format=torch.channels_last).unflatten(0, (batch, -1))
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
        for _ in range(2):  # warm-up: cuDNN autotuning, allocator, oneDNN primitive caches
            model(grids)
        _sync(device)
        runs, start = 0, time.perf_counter()
        while True:
            out = model(grids)
            runs += 1
            _sync(device)
            elapsed = time.perf_counter() - start
            if elapsed >= seconds and runs >= 3:
                break
    assert out.shape == (batch, model.num_nodes) and torch.isfinite(out.float()).all()
    return runs * batch * model.num_nodes / elapsed


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = args.devices or ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    torch.manual_seed(0)
    model = MODELS[args.model](num_nodes=9, use_crf=not args.no_crf).eval()

    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",)
    print(f"# torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads, load average {load[0]:.2f} at start")
    for name in devices:
        if name.startswith("cuda"):
            print(f"# {name}: {torch.cuda.get_device_name(torch.device(name))}")
    print(f"# {args.model}{' (no CRF)' if args.no_crf else ' + CRF'}, grids of 9 patches, inference_mode; "
          "batch = patches per forward; ratio = patches/s over float32 at the same device and crop")
    header = f"{'device':<8}{'crop':>6}{'batch':>7}  {'variant':<31}{'patches/s':>11}{'ratio':>8}"
    print(header)
    print("-" * len(header))
    for name in devices:
        device = torch.device(name)
        batch = args.batch or (20 if device.type == "cuda" else 4)
        variants = args.variants or [
            v for v in VARIANTS if device.type != "cpu" or _cpu_has_bf16() or not VARIANTS[v][1]
        ]
        for crop in args.crops:
            base = None
            for variant in variants:
                channels_last, autocast = VARIANTS[variant]
                rate = measure(model, device, crop, batch, channels_last, autocast, args.seconds)
                base = base or (rate if variant == "float32" else None)
                ratio = f"{rate / base:7.2f}x" if base else "      -"
                print(f"{name:<8}{crop:>6}{batch * 9:>7}  {variant:<31}{rate:>11.1f}{ratio}", flush=True)
    if hasattr(os, "getloadavg"):
        print(f"# load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    sys.exit(main())
