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

import argparse
import copy
import os
import platform
import time

import torch

from wsi.model import MODELS
from wsi.model.inference import inference_model

#: variant -> (channels_last, bf16 autocast, prepare); prepare(model, example) returns the callable timed.
VARIANTS = {
    "float32": (False, False, None),
    "channels_last": (True, False, None),
    "bf16 autocast": (False, True, None),
    "channels_last + bf16 autocast": (True, True, None),
    "channels_last + folded BN": (True, False, "fold"),
    "cl + folded BN + jit.freeze": (True, False, "jit"),
    "cl + folded BN + torch.compile": (True, False, "compile"),
    "folded BN + OpenVINO f32": (False, False, "openvino"),
}
#: Run unless --variants names them: the float32 variants a CPU runs fast (no emulated bf16, no long compile).
DEFAULT_CPU = ["float32", "channels_last", "channels_last + folded BN", "cl + folded BN + jit.freeze",
               "folded BN + OpenVINO f32"]


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
        help=f"any of {list(VARIANTS)}; default: all but torch.compile on CUDA and on CPUs with native "
        f"bfloat16, {DEFAULT_CPU} on other CPUs (their bfloat16 is emulated, many times slower)",
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


def prepare(model, variant, example):
    """The callable timed for ``variant``: ``run(patches [N, 3, C, C]) -> (feats, logits)``, and its start-up s."""
    channels_last, _, how = VARIANTS[variant]
    start = time.perf_counter()
    if how is None:
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        net = copy.deepcopy(model).to(memory_format=memory_format)
        run = net.embed
    else:
        if how == "openvino":  # probs_map.py's default on a CPU (wsi.model.runtime)
            net = inference_model(model, runtime="openvino", crop=example.shape[-1])
        else:
            net = inference_model(model, compile=how == "compile")
        run = net.embed
        if how == "jit":
            class Embed(torch.nn.Module):
                def __init__(self, inner):
                    super().__init__()
                    self.inner = inner

                def forward(self, patches):
                    return self.inner.embed(patches)

            with torch.no_grad():
                traced = torch.jit.trace(Embed(net.network).eval(), example)
            run = torch.jit.optimize_for_inference(torch.jit.freeze(traced))
    with torch.inference_mode():
        run(example)  # warm-up, and torch.compile's compilation
    return run, time.perf_counter() - start


def measure(model, device, crop, batch, variant, seconds, reference=None):
    """Patches/s of ``variant`` of ``model.embed`` on random ``[batch·9, 3, crop, crop]`` patches; its start-up time
    and largest logit difference to ``reference`` (the float32 logits on the same patches)."""
    channels_last, autocast, _ = VARIANTS[variant]
    model = model.to(device)
    gen = torch.Generator().manual_seed(0)
    patches = (torch.rand(batch * model.num_nodes, 3, crop, crop, generator=gen) * 2 - 1).to(device)
    if channels_last:
        patches = patches.contiguous(memory_format=torch.channels_last)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
        run, startup = prepare(model, variant, patches)
        with torch.inference_mode():
            run(patches)  # warm-up: cuDNN autotuning, allocator, oneDNN primitive caches
            _sync(device)
            runs, start = 0, time.perf_counter()
            while True:
                feats, logits = run(patches)
                runs += 1
                _sync(device)
                elapsed = time.perf_counter() - start
                if elapsed >= seconds and runs >= 3:
                    break
    logits = logits.float()
    assert logits.shape == (len(patches),) and torch.isfinite(logits).all()
    diff = float((logits - reference).abs().max()) if reference is not None else 0.0
    return runs * len(patches) / elapsed, startup, diff, logits


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = args.devices or ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    torch.manual_seed(0)
    model = MODELS[args.model](num_nodes=9, use_crf=not args.no_crf).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics, as a trained model has, so that folding is tested
        gen = torch.Generator().manual_seed(1)
        for name, tensor in model.state_dict().items():
            if name.endswith("running_var"):
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=gen))
            elif name.endswith("running_mean"):
                tensor.copy_(torch.rand(tensor.shape, generator=gen) - 0.5)

    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",)
    print(f"# torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads, load average {load[0]:.2f} at start")
    for name in devices:
        if name.startswith("cuda"):
            print(f"# {name}: {torch.cuda.get_device_name(torch.device(name))}")
    print(f"# {args.model}{' (no CRF)' if args.no_crf else ' + CRF'}: model.embed on patches, inference_mode; "
          "batch = patches per forward; ratio = patches/s over float32 at the same device and crop; start = "
          "seconds to prepare + first call; max diff = largest logit difference to float32")
    header = (f"{'device':<8}{'crop':>6}{'batch':>7}  {'variant':<32}{'patches/s':>11}{'ratio':>8}{'start s':>9}"
              f"{'max diff':>10}")
    print(header)
    print("-" * len(header))
    for name in devices:
        device = torch.device(name)
        batch = args.batch or (20 if device.type == "cuda" else 4)
        variants = args.variants or (DEFAULT_CPU if device.type == "cpu" and not _cpu_has_bf16() else
                                     [v for v in VARIANTS if not v.endswith("compile")
                                      and not (device.type != "cpu" and "OpenVINO" in v)])
        for crop in args.crops:
            base, reference = None, None
            for variant in variants:
                rate, startup, diff, logits = measure(model, device, crop, batch, variant, args.seconds, reference)
                if variant == "float32":
                    base, reference = rate, logits
                ratio = f"{rate / base:7.2f}x" if base else "      -"
                print(f"{name:<8}{crop:>6}{batch * 9:>7}  {variant:<32}{rate:>11.1f}{ratio}{startup:>9.1f}"
                      f"{diff:>10.1e}", flush=True)
    if hasattr(os, "getloadavg"):
        print(f"# load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    sys.exit(main())
