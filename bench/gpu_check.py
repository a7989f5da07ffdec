#!/usr/bin/env python3
"""One prepared check of every GPU path, for the first minutes a GPU is at hand: JSON and a Markdown table.

Each run is the real command line in a child process (``probs_map.py``, ``train.py``, ``torchrun``), started
through this script so that it reports the child's peak GPU memory (``torch.cuda.max_memory_allocated``):

1. **probs_map** (fast mode, the CRF, grid 768/256/224, level-6 disc mask on a synthetic 8192² JPEG pyramid):
   float32, ``--amp`` and ``--compile`` on the GPU (``--runtime torch``), against MONAI's masked patch inference
   on the same slide, mask and GPU (``bench/peer_bench.py``'s peer: ``MaskedPatchWSIDataset`` + ResNet-18, one
   pass per position, no CRF): positions/s of the map-making (compute only) and of the whole process, the largest
   difference of the ``--amp`` and ``--compile`` maps to the float32 one.
2. **train** (768/256/224 on the H&E fixture, grids read from the slide on the fly, ``log_every`` 1):
   ``--augment cpu``, ``--augment device`` and ``--augment device --amp``: grids/s and the share of each step
   spent waiting for data, read back from ``train.py``'s own TensorBoard tags (``speed/grids_per_s``,
   ``speed/data_wait_share``) after the first ``WARMUP_STEPS`` steps.
3. **torchrun**: ``train.py`` under ``torchrun --nproc_per_node=2`` for 2 steps, NCCL (gloo on the CPU). NCCL puts
   one process on each GPU: with a single GPU the check runs one process (no process group) and a 2-process NCCL
   all-reduce on that GPU, and says so.

Every section writes ``gpu_check.json`` and ``gpu_check.md`` in ``--out`` as soon as it ends, so a run stopped
at its time limit still leaves what it measured; a failed run is recorded (its last log lines) and the check goes
on. ``--budget`` seconds (default 360) bound the whole check: runs that would start after it are skipped.

    python bench/gpu_check.py --out gpu_check_out          # on a GPU machine (bench/README.md): ~5 min
    python bench/gpu_check.py --quick --device cpu         # the test's: tiny sizes, fewer runs, gloo
"""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

#: Steps each train.py run starts with that the speed leaves out (CUDA kernel selection, workers starting).
WARMUP_STEPS = 3
PEAK_LINE = re.compile(r"^peak_gpu_bytes (\d+)$", re.M)


# Children ------------------------------------------------------------------------------------------------------
def child_main(argv):
    """Run ``argv[0]`` (a script) as ``__main__`` with ``argv[1:]``; print its peak GPU memory at the end."""
    import runpy

    import torch

    sys.argv = list(argv)
    code = 0
    try:
        runpy.run_path(argv[0], run_name="__main__")
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    finally:
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            print(f"peak_gpu_bytes {torch.cuda.max_memory_allocated()}", flush=True)
    return code


def nccl_probe():
    """Under torchrun: every process on GPU 0, one NCCL all-reduce; prints the sum rank 0 sees."""
    import torch
    import torch.distributed as dist

    torch.cuda.set_device(0)
    dist.init_process_group("nccl")
    value = torch.ones(1, device="cuda") * (dist.get_rank() + 1)
    dist.all_reduce(value)
    if dist.get_rank() == 0:
        print(f"nccl all_reduce sum {value.item():g} over {dist.get_world_size()} processes", flush=True)
    dist.destroy_process_group()
    return 0


class Clock:
    """The check's time budget."""

    def __init__(self, budget):
        self.end = time.monotonic() + budget

    def left(self):
        return self.end - time.monotonic()


def run_child(argv, clock, limit, env=None, wrap=True):
    """Run a script (through :func:`child_main` when ``wrap``) within ``min(limit, time left)`` seconds.

    Returns ``{"ok", "seconds", "peak_gpu_bytes", "text"}`` (``text``: stdout + stderr); a run past its time or
    with a non-zero exit is ``ok: False`` with an ``error``.
    """
    timeout = min(limit, clock.left())
    if timeout < 5:
        return {"ok": False, "seconds": 0.0, "peak_gpu_bytes": None, "text": "", "error": "skipped: budget spent"}
    command = [sys.executable, str(Path(__file__).resolve()), "--_child", *map(str, argv)] if wrap else list(argv)
    start = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=timeout)
        text, code = done.stdout + done.stderr, done.returncode
    except subprocess.TimeoutExpired as expired:
        text = (expired.stdout or b"").decode(errors="replace") if isinstance(expired.stdout, bytes) else (
            expired.stdout or "")
        text, code = text + f"\ntimed out after {timeout:.0f} s", None
    peaks = [int(v) for v in PEAK_LINE.findall(text)]
    out = {"ok": code == 0, "seconds": time.perf_counter() - start, "peak_gpu_bytes": max(peaks) if peaks else None,
           "text": text}
    if code != 0:
        out["error"] = " | ".join(line for line in text.strip().splitlines()[-3:])[-600:]
    return out


def public(run):
    """A run's record for the JSON: everything but the full log."""
    return {k: v for k, v in run.items() if k not in ("text", "map")}


# 1. probs_map against MONAI ------------------------------------------------------------------------------------
def check_probs_map(workdir, args, device, clock):
    from bench.peer_bench import DEMO, PAPER, write_inputs

    grid = DEMO if args.quick else PAPER
    size, radius = (1024, 5.5) if args.quick else (args.slide_size, args.radius)
    started = time.perf_counter()
    slide, mask, cfg, ckpt = write_inputs(workdir, size, radius, grid)
    positions = int(np.load(mask).sum())
    section = {"slide": f"{size}x{size} synthetic JPEG pyramid", "grid": list(grid), "positions": positions,
               "inputs_seconds": time.perf_counter() - started, "runs": {}}
    workers = 0 if args.quick else min(8, max(1, (os.cpu_count() or 2) // 2))
    monai = run_child([ROOT / "bench" / "peer_bench.py", "--_monai_child", slide, mask, grid[2],
                       Path(workdir) / "monai.npy", "--_monai_device", device, "--_monai_workers", workers],
                      clock, 240)
    found = re.search(r"compute ([\d.]+) positions (\d+)", monai["text"])
    if found:
        monai.update(compute_seconds=float(found[1]), positions_s=int(found[2]) / float(found[1]),
                     workers=workers)
    section["runs"]["MONAI MaskedPatchWSIDataset + ResNet-18 (no CRF), float32"] = monai
    variants = [("float32", []), ("--amp", ["--amp"])]
    if not args.quick or device != "cpu":  # torch.compile on a CPU takes minutes: not in the test
        variants.append(("--compile", ["--compile"]))
    reference = None
    for name, extra in variants:
        out = Path(workdir) / f"ours_{name.strip('-')}.npy"
        run = run_child([ROOT / "wsi" / "bin" / "probs_map.py", slide, ckpt, cfg, mask, out, "--device", device,
                         "--runtime", "torch", *extra], clock, 240)
        found = re.search(r"(\d+) tissue positions, (\w+) mode, ([\d.]+) s \(([\d.]+) positions/s\), ([\d.]+) CNN "
                          r"evaluations per position", run["text"])
        if run["ok"] and found:
            run.update(compute_seconds=float(found[3]), positions_s=positions / float(found[3]),
                       passes_per_position=float(found[5]))
            probs = np.load(out)
            if reference is None:
                reference = probs
            else:
                run["max_diff_to_float32"] = float(np.abs(probs - reference).max())
        section["runs"][f"probs_map.py --mode fast (CRF) {name}"] = run
    for run in section["runs"].values():
        if run.get("ok"):
            run["whole_positions_s"] = positions / run["seconds"]
    return section


# 2. train.py grids/s -------------------------------------------------------------------------------------------
def read_speed(folder, warmup):
    """(grids/s, data-wait share) over the steps after ``warmup`` from ``speed/*`` in ``folder``'s events."""
    from wsi.monitor import read_scalars

    values = {tag: dict(points) for tag, points in read_scalars(folder, lambda tag: tag.startswith("speed/")).items()}
    rates, shares = values.get("speed/grids_per_s", {}), values.get("speed/data_wait_share", {})
    steps = [s for s in sorted(rates) if s > warmup] or sorted(rates)
    if not steps:
        return None, None
    seconds = np.array([1.0 / rates[s] for s in steps])  # per grid; every step has the same number of grids
    return float(len(steps) / seconds.sum()), float(sum(shares[s] * t for s, t in zip(steps, seconds)) / seconds.sum())


def train_inputs(root, args, world_size=1):
    """The H&E fixture's data and a train.py config at the paper's (or, quick, the demo's) sizes."""
    from bench.train_throughput import SIZES, config, make_data

    sizes = SIZES["demo" if args.quick else "paper"]
    lines = args.steps * args.batch_size * world_size
    make_data(root, sizes[0], lines)
    for name in ("tumor_valid", "normal_valid"):  # one validation step
        rows = (root / f"{name}.txt").read_text().splitlines()[:2 * args.batch_size * world_size]
        (root / f"{name}.txt").write_text("\n".join(rows) + "\n")
    cfg = {**config(root, sizes, args.batch_size, on_the_fly=True), "log_every": 1}
    path = root / "cfg.json"
    path.write_text(json.dumps(cfg, indent=1))
    return path, sizes


def check_train(workdir, args, device, clock):
    root = Path(workdir) / "train"
    cfg, sizes = train_inputs(root, args)
    warmup = 1 if args.quick else WARMUP_STEPS
    section = {"grid": list(sizes), "steps": args.steps, "grids_per_step": 2 * args.batch_size,
               "warmup_steps": warmup, "runs": {}}
    workers = ["--num_workers", "0"] if args.quick else []
    variants = [("--augment cpu", ["--augment", "cpu"]), ("--augment device", ["--augment", "device"]),
                ("--augment device --amp", ["--augment", "device", "--amp"])]
    for name, extra in variants[2:] if args.quick else variants:  # quick: the loop's code once, both options
        save = root / ("run_" + re.sub(r"\W+", "_", name).strip("_"))
        run = run_child([ROOT / "wsi" / "bin" / "train.py", cfg, save, "--device", device, *workers, *extra],
                        clock, 180)
        if run["ok"]:
            run["grids_s"], run["data_wait_share"] = read_speed(save, warmup)
        section["runs"][f"train.py {name}"] = run
    return section


# 3. torchrun ---------------------------------------------------------------------------------------------------
def check_torchrun(workdir, args, device, clock):
    import torch

    gpus = torch.cuda.device_count() if device == "cuda" else 0
    nproc = 2 if device == "cpu" or gpus >= 2 else 1
    root = Path(workdir) / "ddp"
    quick = argparse.Namespace(**{**vars(args), "steps": 2})
    cfg, _ = train_inputs(root, quick, world_size=nproc)
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    run = run_child([*launcher, str(Path(__file__).resolve()), "--_child", ROOT / "wsi" / "bin" / "train.py", cfg,
                     root / "run", "--device", device, "--num_workers", "0" if args.quick else "2"],
                    clock, 240, env=env, wrap=False)
    section = {"processes": nproc, "backend": "gloo" if device == "cpu" else ("nccl" if nproc > 1 else "none"),
               "runs": {}}
    if run["ok"]:
        ckpt = torch.load(root / "run" / "train.ckpt", map_location="cpu", weights_only=True)
        run["epoch_step"] = [int(ckpt["epoch"]), int(ckpt["step"])]
        run["ok"] = run["epoch_step"] == [1, 2]
    section["runs"][f"torchrun --nproc_per_node={nproc} train.py, 2 steps"] = run
    if device == "cuda" and nproc == 1:
        section["note"] = "one GPU: train.py ran as one process (NCCL needs a GPU per process)"
        probe = run_child([*launcher[:4], "--nproc_per_node=2", str(Path(__file__).resolve()),
                           "--_nccl_probe"], clock, 90, env=env, wrap=False)
        found = re.search(r"nccl all_reduce sum (\S+)", probe["text"])
        probe["ok"] = bool(probe["ok"] and found and float(found[1]) == 3.0)
        section["runs"]["NCCL all-reduce, 2 processes on GPU 0"] = probe
    return section


# Report --------------------------------------------------------------------------------------------------------
def markdown(report):
    """The report as a Markdown table (one row per run)."""
    lines = [f"GPU check on {report['device_name']} (torch {report['torch']}, {report['cpus']} CPUs), "
             f"{report['seconds']:.0f} s{' (--quick)' if report['quick'] else ''}", "",
             "| section | run | ok | speed | data wait | max diff to float32 | peak GPU MiB | wall s |",
             "|---|---|---|---|---|---|---|---|"]
    for section_name, section in report["sections"].items():
        for name, run in section.get("runs", {}).items():
            speed = wait = diff = "-"
            if run.get("positions_s"):
                speed = f"{run['positions_s']:.0f} positions/s (whole process {run['whole_positions_s']:.0f})"
            if run.get("grids_s"):
                speed = f"{run['grids_s']:.1f} grids/s"
            if run.get("data_wait_share") is not None:
                wait = f"{100 * run['data_wait_share']:.0f} %"
            if run.get("max_diff_to_float32") is not None:
                diff = f"{run['max_diff_to_float32']:.1e}"
            if run.get("epoch_step"):
                speed = f"epoch {run['epoch_step'][0]}, step {run['epoch_step'][1]}"
            peak = run.get("peak_gpu_bytes")
            ok = "yes" if run.get("ok") else f"NO: {run.get('error', '')}".replace("|", "/")
            lines.append(f"| {section_name} | {name} | {ok} | {speed} | {wait} | {diff} | "
                         f"{'-' if peak is None else f'{peak / 2**20:.0f}'} | {run.get('seconds', 0):.1f} |")
        if section.get("error"):
            lines.append(f"| {section_name} | - | NO: {section['error']} | - | - | - | - | - |")
    extra = [f"{name}: {s['positions']} level-6 tissue positions of a {s['slide']}, grid {s['grid']}"
             for name, s in report["sections"].items() if "positions" in s]
    extra += [f"{name}: grid {s['grid']}, {s['steps']} steps of {s['grids_per_step']} grids, speed after "
              f"{s['warmup_steps']} warm-up steps" for name, s in report["sections"].items() if "steps" in s]
    extra += [f"{name}: {s['note']}" for name, s in report["sections"].items() if s.get("note")]
    return "\n".join(lines + [""] + [f"- {line}" for line in extra]) + "\n"


def write_report(report, out):
    out.mkdir(parents=True, exist_ok=True)
    report = {**report, "sections": {name: {**section, "runs": {k: public(v) for k, v in section.get("runs",
                                                                                                      {}).items()}}
                                     for name, section in report["sections"].items()}}
    (out / "gpu_check.json").write_text(json.dumps(report, indent=1))
    (out / "gpu_check.md").write_text(markdown(report))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default=None, help="default cuda when available")
    parser.add_argument("--out", default="gpu_check_out", help="folder for gpu_check.json and gpu_check.md")
    parser.add_argument("--budget", type=float, default=360, help="seconds for the whole check, default 360")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, no torch.compile on the CPU (the test)")
    parser.add_argument("--slide_size", type=int, default=8192, help="probs_map slide side, default 8192")
    parser.add_argument("--radius", type=float, default=48, help="disc radius in level-6 pixels, default 48")
    parser.add_argument("--steps", type=int, default=40, help="train.py steps per run, default 40")
    parser.add_argument("--batch_size", type=int, default=10, help="tumour grids per step, default 10")
    parser.add_argument("--sections", nargs="+", default=["train", "torchrun", "probs_map"],
                        choices=("probs_map", "train", "torchrun"))
    parser.add_argument("--_child", nargs=argparse.REMAINDER, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--_nccl_probe", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._child:
        return child_main(args._child)
    if args._nccl_probe:
        return nccl_probe()
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.quick:
        args.steps, args.batch_size = 2, 2
    clock, started = Clock(args.budget), time.perf_counter()
    report = {"device": device, "device_name": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
              "torch": torch.__version__, "cpus": os.cpu_count(), "quick": args.quick, "budget": args.budget,
              "seconds": 0.0, "sections": {}}
    checks = {"probs_map": check_probs_map, "train": check_train, "torchrun": check_torchrun}
    out = Path(args.out)
    with tempfile.TemporaryDirectory() as workdir:
        for name in args.sections:
            try:
                report["sections"][name] = checks[name](workdir, args, device, clock)
            except Exception as error:  # a check that cannot even start is recorded; the others still run
                report["sections"][name] = {"error": f"{type(error).__name__}: {error}"[:600], "runs": {}}
            report["seconds"] = time.perf_counter() - started
            write_report(report, out)
            print(f"{name} done at {report['seconds']:.0f} s", flush=True)
    print((out / "gpu_check.md").read_text())
    return report


if __name__ == "__main__":
    result = main()
    sys.exit(result if isinstance(result, int) else 0)
