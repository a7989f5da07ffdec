#!/usr/bin/env python3
"""Peer benchmark: ``probs_map.py`` (fast, with the CRF) against MONAI's masked patch inference, same slide and mask.

The peer is what a user who picks MONAI instead runs: ``monai.data.MaskedPatchWSIDataset`` with MONAI's OpenSlide
reader, one ``crop``² patch centred on each tissue position of the mask (MONAI's own placement formula), a
torchvision ResNet-18 in eval mode, float32, eager, ``monai.data.DataLoader`` (batch 32, 2 workers): one CNN pass
per position, no CRF. The only change to MONAI is that its dataset takes our tissue mask instead of computing an
Otsu one, so both runs see the same positions. Ours is ``python wsi/bin/probs_map.py`` with its defaults (fast
mode, the CRF, the network with BatchNorm folded), once per install: ``pip install .`` runs PyTorch's folded
channels_last pass (``--runtime torch``), ``pip install .[openvino]`` runs the backbone on OpenVINO (``--runtime
openvino``, what ``auto`` picks on a CPU with the extra); both in this one run when the extra is installed
(``--runtimes`` chooses), a randomly initialised ResNet-18 + CRF checkpoint; and the faithful mode (``--mode faithful``'s algorithm) on a sample of positions, in this process, for
its speed and the largest difference to the fast map.

Each run is one child process; printed per slide, measured in this one run on this CPU:

- whole process: wall time from spawning the interpreter to its exit (imports, model, map, output);
- compute only: the map-making time the process reports (ours: ``compute_probs_map`` as logged; MONAI: building
  the dataset and the loop over it), i.e. without interpreter start-up, imports and model loading;
- positions/s of both and their ratio to MONAI, CNN passes per position, max |fast − faithful| on the sample.

Slides (synthetic JPEG pyramids with an H&E-like texture, level-6 masks, the paper's 768/256/224 with the CRF):
3072² with a disc of ~1 300 tissue positions (border-heavy: 1.6 passes per position), 8192² with a disc of
``--big_radius`` (default 32, ~3 200 positions). ``--quick``: one 1024² slide at the demo grid (192/64/48) for a
test. Needs the bench extra (MONAI): ``pip install -e .[bench,openvino]`` (or ``.[dev]``) for both rows.

    python bench/peer_bench.py            # ~10 min on 2 cores
    python bench/peer_bench.py --quick    # seconds
"""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
import argparse  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from wsi.constants import RUNTIMES  # noqa: E402

#: Grids: (image_size, patch_size, crop_size) at a level-6 mask (stride 64).
PAPER, DEMO = (768, 256, 224), (192, 64, 48)
LEVEL = 6
MONAI_BATCH, MONAI_WORKERS = 32, 2
#: The install each --runtime value stands for in the table.
INSTALLS = {"torch": "pip install . (PyTorch's pass)", "openvino": "pip install .[openvino] (OpenVINO)",
            "auto": "--runtime auto"}


# The MONAI run (a child process) ------------------------------------------------------------------------------
def monai_child(slide, mask_path, crop, out_path, device="cpu", workers=MONAI_WORKERS):
    """MONAI's masked patch inference on ``slide`` at the tissue positions of ``mask_path`` ([x, y] bool, level 6),
    the network on ``device`` (bench/gpu_check.py runs it on CUDA), ``workers`` loader processes.

    Prints ``compute <seconds> positions <n>`` and saves the map ([x, y] float64, sigmoid of the logit).
    """
    import torch
    import torchvision
    from monai.data import DataLoader, MaskedPatchWSIDataset
    from monai.transforms import Lambdad

    class GivenMaskPatchWSIDataset(MaskedPatchWSIDataset):
        """MaskedPatchWSIDataset at the positions of a given mask instead of an Otsu one (same location formula)."""

        def __init__(self, data, mask_yx, **kwargs):
            self.mask_yx = mask_yx
            super().__init__(data, **kwargs)

        def _evaluate_patch_locations(self, sample):
            from monai.utils import ProbMapKeys, WSIPatchKeys

            patch_size = self._get_size(sample)
            patch_level = self._get_level(sample)
            wsi_obj = self._get_wsi_object(sample)
            mask_locations = np.vstack(self.mask_yx.nonzero()).T  # (row, col) = (y, x), as MONAI's own
            mask_ratio = self.wsi_reader.get_downsample_ratio(wsi_obj, self.mask_level)
            patch_ratio = self.wsi_reader.get_downsample_ratio(wsi_obj, patch_level)
            patch_size_0 = np.array([p * patch_ratio for p in patch_size])
            patch_locations = np.round((mask_locations + 0.5) * float(mask_ratio) - patch_size_0 // 2).astype(int)
            sample[WSIPatchKeys.SIZE.value] = patch_size
            sample[WSIPatchKeys.LEVEL.value] = patch_level
            sample[ProbMapKeys.NAME.value] = os.path.basename(sample["image"])
            sample[ProbMapKeys.COUNT.value] = len(patch_locations)
            sample[ProbMapKeys.SIZE.value] = self.mask_yx.shape
            return [{**sample, WSIPatchKeys.LOCATION.value: np.array(loc), ProbMapKeys.LOCATION.value: mask_loc}
                    for loc, mask_loc in zip(patch_locations, mask_locations)]

    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=1).eval().to(device)
    mask = np.load(mask_path, allow_pickle=False)
    start = time.perf_counter()
    scale = Lambdad(keys="image", func=lambda x: (x.float() - 128.0) / 128.0)
    dataset = GivenMaskPatchWSIDataset([{"image": str(slide)}], mask.T, patch_size=crop, patch_level=0,
                                       mask_level=LEVEL, reader="OpenSlide", transform=scale)
    loader = DataLoader(dataset, batch_size=MONAI_BATCH, num_workers=workers)
    probs_map = np.zeros(mask.shape, dtype=np.float64)
    with torch.inference_mode():
        for batch in loader:
            images = batch["image"]
            probs = torch.sigmoid(model(images.as_tensor().to(device))[:, 0]).float().cpu().numpy()
            # MONAI collates each patch's (row, col) mask location into its metadata (as its pathology tutorial
            # reads it).
            ys, xs = np.asarray(images.meta["mask_location"]).T  # [B, 2] of (row, col)
            probs_map[xs, ys] = probs
    seconds = time.perf_counter() - start
    np.save(out_path, probs_map)
    print(f"compute {seconds:.3f} positions {len(dataset)}")


# Inputs --------------------------------------------------------------------------------------------------------
def write_inputs(workdir, size, radius, grid):
    """Slide, level-6 disc mask, config and a randomly initialised ResNet-18 + CRF checkpoint in ``workdir``."""
    import torch

    from bench.probs_map_bench import disc_mask, make_model, write_slide
    from wsi.data.slide import open_slide
    from wsi.model.checkpoint import save_checkpoint

    workdir = Path(workdir)
    slide = write_slide(workdir / f"slide_{size}.tif", size)
    with open_slide(slide) as handle:
        mask = disc_mask(handle.level_dimensions[LEVEL], radius)
    np.save(workdir / f"mask_{size}.npy", mask)
    cfg = {**json.loads((ROOT / "configs" / "resnet18_crf.json").read_text()),
           "image_size": grid[0], "patch_size": grid[1], "crop_size": grid[2]}
    (workdir / "cfg.json").write_text(json.dumps(cfg))
    model = make_model()  # ResNet-18 + CRF, random non-zero W
    with torch.no_grad():  # BatchNorm statistics as a trained model has them, so that folding is exercised
        gen = torch.Generator().manual_seed(1)
        for name, tensor in model.state_dict().items():
            if name.endswith("running_var"):
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=gen))
            elif name.endswith("running_mean"):
                tensor.copy_((torch.rand(tensor.shape, generator=gen) - 0.5) * 0.2)
    save_checkpoint(workdir / "crf.ckpt", model, epoch=0, step=0, cfg=cfg)
    return slide, workdir / f"mask_{size}.npy", workdir / "cfg.json", workdir / "crf.ckpt"


def run_child(argv, env=None):
    """Run ``argv``; returns (whole-process seconds, stdout + stderr). Raises on a non-zero exit."""
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env=env)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{' '.join(map(str, argv))} failed:\n{done.stdout}\n{done.stderr}")
    return seconds, done.stdout + done.stderr


def run_monai(slide, mask, crop, out, device="cpu", workers=MONAI_WORKERS):
    whole, text = run_child([sys.executable, __file__, "--_monai_child", str(slide), str(mask), str(crop), str(out),
                             "--_monai_device", device, "--_monai_workers", str(workers)])
    found = re.search(r"compute ([\d.]+) positions (\d+)", text)
    return {"whole": whole, "compute": float(found[1]), "positions": int(found[2]), "passes": 1.0,
            "map": np.load(out, allow_pickle=False)}


def run_ours(slide, mask, cfg, ckpt, out, extra=()):
    whole, text = run_child([sys.executable, str(ROOT / "wsi" / "bin" / "probs_map.py"), str(slide), str(ckpt),
                             str(cfg), str(mask), str(out), *extra])
    found = re.search(r"(\d+) tissue positions, (\w+) mode, ([\d.]+) s \([\d.]+ positions/s\), ([\d.]+) CNN "
                      r"evaluations per position, CNN busy (\d+)%", text)
    if not found:
        raise SystemExit(f"no timing line in the probs_map.py log:\n{text}")
    return {"whole": whole, "compute": float(found[3]), "positions": int(found[1]), "passes": float(found[4]),
            "busy": int(found[5]) / 100, "map": np.load(out, allow_pickle=False)}


def run_faithful_sample(slide, mask_path, cfg_path, ckpt, fast_map, sample_size):
    """The faithful mode on ``sample_size`` tissue positions in this process, twice: with the network as loaded
    (float32 eager: the reference map and the original's cost) and with the default inference network (what
    ``--mode faithful`` runs: folded, on OpenVINO when installed). Returns {"eager": (positions/s,
    max |fast − faithful|), "default": (...), "passes": CNN passes per position}."""
    import torch

    from wsi.config import load_config
    from wsi.data.slide import open_slide
    from wsi.geometry import GridSpec, mask_geometry
    from wsi.inference import InferenceStats, faithful_probs_map
    from wsi.model import PassOptions, inference_model, load_model

    cfg = load_config(cfg_path)
    mask = np.load(mask_path, allow_pickle=False)
    xs, ys = np.nonzero(mask)
    pick = np.linspace(0, len(xs) - 1, min(sample_size, len(xs))).round().astype(int)
    sample = np.zeros_like(mask)
    sample[xs[pick], ys[pick]] = True
    with open_slide(slide) as handle:
        geometry = mask_geometry(handle.level_dimensions, handle.level_downsamples, mask.shape)
    model = load_model(ckpt, cfg, torch.device("cpu"), source_cfg=str(cfg_path))
    out = {}
    # What --mode faithful runs by default.
    default = inference_model(model, PassOptions.resolve(torch.device("cpu")), crop=cfg["crop_size"])
    for name, net in (("eager", model), ("default", default)):
        stats = InferenceStats()
        start = time.perf_counter()
        faithful = faithful_probs_map(net, slide, sample, GridSpec.from_config(cfg), geometry, batch_size=20,
                                      num_workers=0, progress=False, stats=stats)
        seconds = time.perf_counter() - start
        out[name] = (stats.positions / seconds, float(np.abs(faithful - fast_map)[sample].max()))
        out["passes"] = stats.evaluations_per_position
    return out


def bench_slide(workdir, size, radius, grid, faithful_sample, runtimes):
    slide, mask, cfg, ckpt = write_inputs(workdir, size, radius, grid)
    tissue = np.load(mask, allow_pickle=False)
    monai = run_monai(slide, mask, grid[2], Path(workdir) / f"monai_{size}.npy")
    rows = {"monai": monai}
    for runtime in runtimes:
        ours = run_ours(slide, mask, cfg, ckpt, Path(workdir) / f"ours_{size}_{runtime}.npy",
                        ("--runtime", runtime))
        assert monai["positions"] == ours["positions"] == int(tissue.sum())
        assert np.count_nonzero(monai["map"]) == np.count_nonzero(ours["map"][tissue] > 0)
        rows[f"ours --runtime {runtime}"] = ours
    ours = rows[f"ours --runtime {runtimes[0]}"]
    rows["ours"] = ours
    if faithful_sample:
        sample = run_faithful_sample(slide, mask, cfg, ckpt, ours["map"], faithful_sample)
        rows["faithful"] = {"rate": sample["eager"][0], "diff": sample["eager"][1], "passes": sample["passes"],
                            "sample": faithful_sample, "default_rate": sample["default"][0],
                            "default_diff": sample["default"][1]}
    os.remove(slide)
    return rows


def print_table(size, grid, rows):
    monai, ours = rows["monai"], rows["ours"]
    n = ours["positions"]
    print(f"\n{size}x{size} slide, {n} level-{LEVEL} tissue positions, grid {grid[0]}/{grid[1]}/{grid[2]}")
    print(f"| run | whole process s | positions/s | ratio to MONAI | compute-only s | positions/s | ratio to "
          f"MONAI | CNN passes/position | max diff to faithful |")
    print("|---|---|---|---|---|---|---|---|---|")
    runs = [("MONAI MaskedPatchWSIDataset + ResNet-18 (no CRF)", monai)]
    runs += [(f"probs_map.py --mode fast (CRF), {INSTALLS[name.split()[-1]]}", row) for name, row in rows.items()
             if name.startswith("ours --runtime")]
    for name, row in runs:
        diff = "-"
        if row is not monai and "faithful" in rows:
            diff = (f"{rows['faithful']['diff']:.1e}" if row is ours
                    else f"{np.abs(row['map'] - ours['map']).max():.1e} to the first")
        print(f"| {name} | {row['whole']:.1f} | {n / row['whole']:.1f} | {monai['whole'] / row['whole']:.2f}x | "
              f"{row['compute']:.1f} | {n / row['compute']:.1f} | {monai['compute'] / row['compute']:.2f}x | "
              f"{row['passes']:.2f} | {diff} |")
    if "faithful" in rows:
        f = rows["faithful"]
        for label, rate, diff in (("float32 eager network: the reference", f["rate"], "0"),
                                  ("default network", f["default_rate"], f"{f['default_diff']:.1e}")):
            print(f"| probs_map faithful, {label} (sample of {f['sample']}, in-process) | - | - | - | "
                  f"{n / rate:.1f} (extrapolated) | {rate:.2f} | {rate * monai['compute'] / n:.2f}x | "
                  f"{f['passes']:.2f} | {diff} |")
        print(f"fast (first row) / faithful (compute only): {n / ours['compute'] / f['rate']:.1f}x against the "
              f"original's algorithm and network (eager float32), "
              f"{n / ours['compute'] / f['default_rate']:.1f}x against --mode faithful with the default network")
    print(f"CNN busy in the fast run: {100 * ours['busy']:.0f}% of its compute time")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one 1024² slide at the demo grid (for a test)")
    parser.add_argument("--radius", type=float, default=20.35, help="disc radius on the 3072² slide (1 299 positions)")
    parser.add_argument("--big_radius", type=float, default=32, help="disc radius on the 8192² slide")
    parser.add_argument("--faithful_positions", type=int, default=24)
    parser.add_argument("--skip_big", action="store_true", help="only the 3072² slide")
    both = importlib.util.find_spec("openvino") is not None
    parser.add_argument("--runtimes", nargs="+", default=["openvino", "torch"] if both else ["torch"],
                        choices=RUNTIMES,
                        help="probs_map.py --runtime values, one run each (default: openvino torch when the openvino "
                             "extra is installed, i.e. both installs, else torch); the first is compared with the "
                             "faithful mode")
    parser.add_argument("--_monai_child", nargs=4, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--_monai_device", default="cpu", help=argparse.SUPPRESS)
    parser.add_argument("--_monai_workers", type=int, default=MONAI_WORKERS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._monai_child:
        slide, mask, crop, out = args._monai_child
        return monai_child(slide, mask, int(crop), out, args._monai_device, args._monai_workers)
    import torch

    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, "
          f"load average at start {os.getloadavg()[0]:.1f}; MONAI loader: batch {MONAI_BATCH}, "
          f"{MONAI_WORKERS} workers; probs_map.py defaults")
    runs = [(1024, 5.5, DEMO, 8)] if args.quick else [(3072, args.radius, PAPER, args.faithful_positions)]
    if not (args.quick or args.skip_big):
        runs.append((8192, args.big_radius, PAPER, 0))
    results = []
    with tempfile.TemporaryDirectory() as workdir:
        for size, radius, grid, sample in runs:
            rows = bench_slide(workdir, size, radius, grid, sample, args.runtimes)
            print_table(size, grid, rows)
            results.append(rows)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    return results


if __name__ == "__main__":
    main()
