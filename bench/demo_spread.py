#!/usr/bin/env python3
"""The demo's spread: ``scripts/demo.sh`` under three CPU kernel settings × seeds, plus one single-thread run.

The same seed gives bit-identical runs on one machine with one thread count, but other CPUs (AVX-512, AVX2, older
ones), other thread counts and other PyTorch builds round differently, and training amplifies rounding. This
script measures how far that moves the demo's table, on one machine, by forcing the kernels other machines would
pick:

=========  ==========================================================  ===========================================
setting    environment                                                 what it stands for
=========  ==========================================================  ===========================================
default    (none)                                                      this CPU's best kernels (AVX-512 here)
avx2       ``ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2``        a CPU without AVX-512 (most laptops)
sse41      ``ONEDNN_MAX_CPU_ISA=SSE41 ATEN_CPU_CAPABILITY=default``    an old CPU, no AVX
1thread    ``OMP_NUM_THREADS=1 MKL_NUM_THREADS=1``                     another thread count (reductions split
                                                                       differently)
=========  ==========================================================  ===========================================

Each run is the whole demo in its own folder ``OUT/<setting>_seed<k>/`` (``DEMO_SEED=k``: other slides,
coordinates, initial weights and batch order), with ``DEMO_PROBS_ARGS`` (default ``--runtime torch``: PyTorch's
CPU pass, the default install's). Printed: each run's table (FROC, slide AUC, lesions found and FPs at p ≥ 0.5
as the demo prints them, and the validation loss and accuracy of the checkpoint evaluated), the spread (median and
range per model over the runs) and whether each run lies inside :data:`BAND`, the band the README states.
Written: ``OUT/demo_spread.json`` (every run's numbers) and ``OUT/demo_spread.png`` (FPs and FROC per run, both
models). ``--reuse`` keeps runs whose summary exists (an interrupted grid continues).

    python bench/demo_spread.py               # 3 settings × seeds 0 1 2 + 1thread seed 0: 10 demos, ~75 min*
    python bench/demo_spread.py --quick       # tiny slides, untrained control, default and avx2, seed 0

(*) on the development machine's 2 cores, shared with other work (load ~7): 4.5-5.5 min per run, 11-13 min with
SSE4.1 kernels (no AVX: the convolutions run 2-3 times slower).
"""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))  # demo_report.py: the demo's own reading of its results

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from demo_report import NAMES, model_results  # noqa: E402

#: CPU settings: extra environment of each run.
SETTINGS = {
    "default": {},
    "avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"},
    "sse41": {"ONEDNN_MAX_CPU_ISA": "SSE41", "ATEN_CPU_CAPABILITY": "default"},
    "1thread": {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
}
MODELS = ("crf", "base")

#: The band a demo run falls in (README, "What the demo does and prints"), measured with this script's grid: FROC
#: and AUC exactly, FPs (false positives at p >= 0.5 on the 5 test slides) from low to high, inclusive. The grid of
#: the 60-step configs (3 settings × seeds 0 1 2 + one thread, AMD EPYC with AVX-512, PyTorch's pass) gave FROC and
#: AUC 1.000 in all 10 runs for both models and FPs 0-7 for each (seed 0 alone: 0-3; one seed moved by up to 4
#: between CPU settings, seed 1's slides gave 4-7 in every setting). The band's 0-12 adds 5 FPs above the largest
#: count measured, for the CPUs, thread counts and PyTorch builds not measured; FROC and AUC have no margin.
BAND = {
    "crf": {"froc": 1.0, "auc": 1.0, "fps": (0, 12)},
    "base": {"froc": 1.0, "auc": 1.0, "fps": (0, 12)},
}

#: The tiny demo of ``--quick`` (tests/test_demo.py's sizes: 2048² slides, 32-px crops), as the untrained control
#: (``DEMO_UNTRAINED=1``: no training, the tests' time is short); the band test trains.
QUICK_ENV = {
    "DEMO_UNTRAINED": "1",
    "DEMO_SLIDE_SIZE": "2048", "DEMO_NUM_TRAIN_TUMOR": "2", "DEMO_NUM_TRAIN_NORMAL": "1",
    "DEMO_NUM_TEST_TUMOR": "1", "DEMO_NUM_TEST_NORMAL": "1", "DEMO_TUMORS_PER_SLIDE": "1",
    "DEMO_TUMOR_SIZE": "1200 1300", "DEMO_TUMOR_PER_SLIDE": "20", "DEMO_NORMAL_PER_SLIDE": "20",
    "DEMO_CFG": json.dumps({"crop_size": 32, "epoch": 1, "log_every": 1}), "DEMO_NUM_WORKERS": "0",
}

VALIDATION = re.compile(r"Validation Loss : ([0-9.]+), Validation Acc : ([0-9.]+)")


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=None, type=Path,
                        help="folder of the runs and of demo_spread.json/.png, default demo_spread/ (--quick: a "
                             "temporary folder)")
    parser.add_argument("--settings", nargs="+", default=["default", "avx2", "sse41"], choices=SETTINGS,
                        help="CPU settings, each run with every seed (default: default avx2 sse41)")
    parser.add_argument("--seeds", nargs="+", default=[0, 1, 2], type=int, help="DEMO_SEED values, default 0 1 2")
    parser.add_argument("--single_thread", default=0, type=int, metavar="SEED",
                        help="add one run with one thread and this seed, default 0; -1: none")
    parser.add_argument("--probs_args", default="--runtime torch",
                        help="DEMO_PROBS_ARGS of every run, default '--runtime torch' (PyTorch's CPU pass)")
    parser.add_argument("--reuse", action="store_true", help="keep the runs whose results exist in OUT")
    parser.add_argument("--quick", action="store_true",
                        help="tiny demo (2048² slides, untrained control), settings default and avx2, seed 0, no "
                             "single-thread run: checks the script, not the band")
    return parser


def grid(args):
    """``[(setting, seed), ...]``: every setting with every seed, then the single-thread run."""
    runs = [(setting, seed) for setting in args.settings for seed in args.seeds]
    if args.single_thread >= 0:
        runs.append(("1thread", args.single_thread))
    return runs


def run_demo(folder, setting, seed, probs_args, extra_env, reuse=False):
    """Run scripts/demo.sh into ``folder`` (its output in ``folder.log``); returns the wall time in s (None when
    reused)."""
    if reuse and list((folder / "results").glob("summary*.txt")):
        return None
    env = {**os.environ, "PYTHON": os.environ.get("PYTHON", sys.executable), **extra_env, **SETTINGS[setting],
           "DEMO_DIR": str(folder), "DEMO_SEED": str(seed), "DEMO_PROBS_ARGS": probs_args}
    log = folder.with_name(folder.name + ".log")
    start = time.perf_counter()
    with open(log, "w") as handle:
        proc = subprocess.run(["bash", str(ROOT / "scripts" / "demo.sh")], env=env, stdout=handle,
                              stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise SystemExit(f"demo_spread.py: the demo {folder.name} failed (exit {proc.returncode}); see {log}")
    return time.perf_counter() - start


def read_run(folder, setting, seed, seconds):
    """One run's numbers: per model the demo's table row plus the validation loss and accuracy of best.ckpt (the
    lowest validation loss of the run; None for the untrained control)."""
    row = {"run": folder.name, "setting": setting, "seed": seed, "seconds": seconds, "models": {}}
    suffix = "" if (folder / "results" / "summary.txt").exists() else "_untrained"
    for tag in MODELS:
        numbers = model_results(folder / "results", tag + suffix)
        log = folder / "logs" / f"05_train_{tag}.log"
        validations = [tuple(map(float, m)) for m in VALIDATION.findall(log.read_text() if log.exists() else "")]
        numbers["valid_loss"], numbers["valid_acc"] = min(validations) if validations else (None, None)
        row["models"][tag] = numbers
    stages = (folder / "results" / f"timings{suffix}.tsv").read_text().split("\n")
    row["stage_seconds"] = sum(float(line.split("\t")[1]) for line in stages if line)
    return row


def in_band(tag, numbers):
    band = BAND[tag]
    low, high = band["fps"]
    return numbers["froc"] == band["froc"] and numbers["auc"] == band["auc"] and low <= numbers["fps"] <= high


def print_runs(rows, band=True):
    print(f"{'run':<16} {'model':<24} {'FROC':>6} {'AUC':>6} {'found':>6} {'FPs':>4} {'valid loss':>10} "
          f"{'valid acc':>9} {'stages s':>8}" + ("  in band" if band else ""))
    for row in rows:
        for tag, n in row["models"].items():
            auc = "n/a" if n["auc"] is None else f"{n['auc']:.3f}"
            loss = "n/a" if n["valid_loss"] is None else f"{n['valid_loss']:.4f}"
            acc = "n/a" if n["valid_acc"] is None else f"{n['valid_acc']:.3f}"
            print(f"{row['run']:<16} {NAMES[tag]:<24} {n['froc']:6.3f} {auc:>6} {n['found']:>3}/{n['num_tumours']:<2}"
                  f" {n['fps']:>4} {loss:>10} {acc:>9} {row['stage_seconds']:8.1f}"
                  + (f"  {'yes' if in_band(tag, n) else 'NO'}" if band else ""))


def spread(rows):
    """Per model and quantity: ``(median, min, max)`` over the runs."""
    out = {}
    for tag in MODELS:
        out[tag] = {}
        for key in ("froc", "auc", "found", "fps", "valid_loss", "valid_acc"):
            values = [row["models"][tag][key] for row in rows if row["models"][tag][key] is not None]
            out[tag][key] = (statistics.median(values), min(values), max(values)) if values else None
    return out


def print_spread(table):
    print("\nSpread over the runs: median [min, max]")
    print(f"{'model':<24} {'FROC':>20} {'AUC':>20} {'FPs':>16} {'valid loss':>24}")
    for tag, q in table.items():
        def fmt(key, digits=3):
            if q[key] is None:
                return "n/a"
            med, low, high = q[key]
            if digits == 0:  # counts: the median of an even number of runs may be a half
                return f"{med:g} [{low}, {high}]"
            return f"{med:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"
        print(f"{NAMES[tag]:<24} {fmt('froc'):>20} {fmt('auc'):>20} {fmt('fps', 0):>16} {fmt('valid_loss', 4):>24}")


def plot(rows, path, band=True):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [row["run"] for row in rows]
    x = range(len(rows))
    fig, (ax_fp, ax_froc) = plt.subplots(2, 1, figsize=(max(6, 0.8 * len(rows) + 2), 6), sharex=True)
    for tag, marker, shift in (("crf", "o", -0.1), ("base", "s", 0.1)):
        ax_fp.plot([i + shift for i in x], [row["models"][tag]["fps"] for row in rows], marker, label=NAMES[tag])
        ax_froc.plot([i + shift for i in x], [row["models"][tag]["froc"] for row in rows], marker, label=NAMES[tag])
        if band:
            low, high = BAND[tag]["fps"]
            ax_fp.axhspan(low - 0.5, high + 0.5, alpha=0.08, color="C0" if tag == "crf" else "C1")
    ax_fp.set_ylabel("FPs (p ≥ 0.5, all test slides)")
    ax_fp.set_ylim(bottom=0)
    ax_froc.set_ylabel("FROC")
    ax_froc.set_ylim(-0.05, 1.05)
    ax_froc.set_xticks(list(x), labels, rotation=45, ha="right")
    ax_fp.legend()
    ax_fp.set_title("scripts/demo.sh per CPU setting and seed" + (" (shaded: the stated FP band)" if band else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    extra_env = {}
    if args.quick:
        args.settings, args.seeds, args.single_thread = ["default", "avx2"], [0], -1
        extra_env = QUICK_ENV
    tmp = None
    if args.out is None:
        if args.quick:
            tmp = tempfile.TemporaryDirectory(prefix="demo_spread_")
            args.out = Path(tmp.name)
        else:
            args.out = ROOT / "demo_spread"
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        rows = []
        for setting, seed in grid(args):
            folder = args.out / f"{setting}_seed{seed}"
            print(f"{folder.name}: running scripts/demo.sh", file=sys.stderr, flush=True)
            seconds = run_demo(folder, setting, seed, args.probs_args, extra_env, reuse=args.reuse)
            rows.append(read_run(folder, setting, seed, seconds))
        band = not args.quick  # the band is the full demo's
        print(f"scripts/demo.sh, DEMO_PROBS_ARGS={args.probs_args!r}" + (" (quick: tiny slides)" if args.quick else ""))
        print_runs(rows, band=band)
        table = spread(rows)
        print_spread(table)
        if band:
            inside = sum(in_band(tag, row["models"][tag]) for row in rows for tag in MODELS)
            print(f"\nInside the stated band ({json.dumps(BAND)}): {inside} of {len(rows) * len(MODELS)}")
        (args.out / "demo_spread.json").write_text(json.dumps({"rows": rows, "spread": table}, indent=1))
        plot(rows, args.out / "demo_spread.png", band=band)
        print(f"Wrote {args.out / 'demo_spread.json'} and {args.out / 'demo_spread.png'}")
        return rows, table
    finally:
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    main()
