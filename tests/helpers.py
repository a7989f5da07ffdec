"""Helpers the test files share: paths to the fixtures and the reference data, small synthetic slides and models,
and the fault cases' tools (run a script's ``main`` and read its one error line, find temporaries, damage a tile).

Fixtures live in ``tests/conftest.py``; everything importable lives here (``from tests.helpers import ...``).
"""

import importlib.metadata
import json
import os
import pickle
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from scipy import ndimage

from wsi.config import DATASETS
from wsi.data.coords import read_coords, write_coords
from wsi.data.pyramid import pyramid_dimensions, write_pyramid, write_pyramid_from_array
from wsi.data.slide import open_slide
from wsi.model import MODELS
from wsi.synthetic import plan_slide

ROOT = Path(__file__).resolve().parents[1]

# The scripts that tests run as processes (`python wsi/bin/X.py`, the stage scripts, the benches) import the
# installed package, as they do after the README's install command. In an environment where it is not installed
# (a checkout used in place), the repository root goes on their path instead.
try:
    importlib.metadata.distribution("ncrf")
except importlib.metadata.PackageNotFoundError:
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
DATA = Path(__file__).resolve().parent / "data"
# The original's data files shipped in the repository (the design card's layout): its 268 annotation JSONs and its
# two validation coordinate lists, each folder with a MANIFEST.tsv of the original's git blob SHA-1s.
JSONS = ROOT / "jsons"
COORDS = ROOT / "coords"
# The original NCRF's repository files as copied beside the project in ../shared on the development machines (a
# user's clone has none: tests that need them skip). The files the tests read are now in the repository (above).
SHARED = Path(os.environ.get("NCRF_SHARED", ROOT.parent / "shared"))
NCRF_REFERENCE = SHARED / "ncrf-reference"

requires_reference = pytest.mark.skipif(
    not NCRF_REFERENCE.is_dir(), reason=f"reference data not found at {NCRF_REFERENCE} (skip: ../shared absent)"
)


def data_path(name):
    """Path of a committed test fixture under tests/data."""
    return DATA / name


# Models ------------------------------------------------------------------------------------------------------------
def randomise(model, seed=0):
    """Non-trivial BatchNorm statistics and CRF weights, so that eval-mode logits depend on every tensor."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith(("running_var", "bn1.weight", "bn2.weight", "bn3.weight")) or name.endswith(
                "downsample.1.weight"
            ):
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=gen))
            elif name.endswith(("running_mean", ".bias")) or name == "crf.W":
                tensor.copy_(torch.rand(tensor.shape, generator=gen) - 0.5)
    return model


def randomised_model(use_crf=True, seed=0):
    """ResNet-18 (+ CRF) in eval mode with random BatchNorm statistics and affine terms and a random CRF W."""
    torch.manual_seed(seed)
    model = MODELS["resnet18"](num_nodes=9, use_crf=use_crf)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith(("running_var", "bn1.weight", "bn2.weight", "downsample.1.weight")):
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=gen))
            elif name.endswith(("running_mean", ".bias")):
                tensor.copy_(torch.rand(tensor.shape, generator=gen) - 0.5)
            elif name == "crf.W":
                tensor.normal_(0.0, 1.0, generator=gen)
    return model.eval()


# ------------------------------------------------------------------------ a PyTorch 0.3.1 `torch.save`, by hand
# torch 0.3 wrote the legacy format: three small pickles (magic number, protocol 1001, system info), the pickled
# object whose tensors are `torch._utils._rebuild_tensor(storage, offset, size, stride)` (no `_v2`) with storages
# as persistent ids ('storage', <storage class>, key, location, numel, None), the pickled list of storage keys,
# then for each storage its element count (int64) and raw bytes. The NCRF checkpoints were saved from GPUs, so the
# storage classes are torch.cuda.*Storage at 'cuda:0'; the state_dict is a plain OrderedDict (no `_metadata`).
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_CUDA_STORAGE = {torch.float32: torch.cuda.FloatStorage, torch.int64: torch.cuda.LongStorage}


class _LegacyStorage:
    def __init__(self, key, tensor):
        self.key, self.tensor = key, tensor


def write_torch03_checkpoint(path, obj):
    """Write ``obj`` as PyTorch 0.3.1 did (legacy format, pickle protocol 2, CUDA storages)."""
    storages = []

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, _LegacyStorage):
                return ("storage", _CUDA_STORAGE[obj.tensor.dtype], obj.key, "cuda:0", obj.tensor.numel(), None)
            return None

        def reducer_override(self, obj):
            if isinstance(obj, torch.Tensor):
                tensor = obj.detach().cpu().contiguous()
                storage = _LegacyStorage(str(len(storages)), tensor)
                storages.append(storage)
                return torch._utils._rebuild_tensor, (storage, 0, tuple(tensor.shape), tuple(tensor.stride()))
            return NotImplemented

    with open(path, "wb") as handle:
        pickle.dump(_LEGACY_MAGIC, handle, protocol=2)
        pickle.dump(1001, handle, protocol=2)
        sys_info = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 8}}
        pickle.dump(sys_info, handle, protocol=2)
        Pickler(handle, protocol=2).dump(obj)
        storages.sort(key=lambda s: s.key)
        pickle.dump([s.key for s in storages], handle, protocol=2)
        for storage in storages:
            handle.write(storage.tensor.numel().to_bytes(8, "little"))
            handle.write(storage.tensor.numpy().tobytes())


# Slides --------------------------------------------------------------------------------------------------------------
def save_grid_model(path, cfg):
    """A ResNet-18 + CRF of seed 0 with W ~ N(0, 1) (a CRF that moves the logits), saved as a checkpoint of ``cfg``."""
    from wsi.model.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = MODELS["resnet18"](num_nodes=9, use_crf=True)
    with torch.no_grad():
        model.crf.W.normal_(0.0, 1.0)
    save_checkpoint(path, model.eval(), epoch=1, step=1, cfg=cfg)


def texture(height, width, seed):
    """Smooth random RGB texture ``[h, w, 3]`` uint8: every patch looks different to the network."""
    rng = np.random.default_rng(seed)
    img = ndimage.gaussian_filter(rng.integers(0, 256, (height, width, 3)).astype(float), (2, 2, 0))
    img = (img - img.min()) / (img.max() - img.min()) * 255
    return img.round().astype(np.uint8)


def make_slide(path, width=600, height=420, seed=0):
    """A lossless pyramid of :func:`texture` (600 × 420 by default: level 4 is 38 × 27, rounded up)."""
    # Lossless, so that every read of a pixel gives the same value whatever the region read.
    write_pyramid_from_array(path, texture(height, width, seed), compression="zlib")
    return path


def cmu_pyramid(path, factor):
    """The real H&E crop (2220×2967) as a JPEG pyramid whose levels step by ``factor``."""
    with open_slide(data_path("cmu_small_region.svs")) as slide:
        image = slide.read_level(0)
    write_pyramid_from_array(path, image, factor=factor, mpp=0.499)
    return path


# The sampling slides (test_sampling, test_coords_report): pid, width, height, seed, tumours, hole, JSON written
SLIDES = [
    ("Tumor_001", 2048, 2048, 1, 2, True, True),
    ("Tumor_002", 2000, 1900, 2, 1, False, True),  # level sizes not powers of two: 2000/125 ≠ 1900/119
    ("Normal_001", 2048, 2048, 3, 0, False, True),
    ("Normal_002", 1536, 1536, 4, 0, False, False),  # no JSON: normal by its name
]
MASK_LEVEL = 4  # 16 level-0 pixels per mask pixel (the sampling slides' masks; stride 16 for the fault world's map)


def tissue_mask_of(tissue, width, height, level=MASK_LEVEL):
    """Boolean [x, y] mask at ``level``: the synthetic tissue at the pixel centres."""
    mw, mh = pyramid_dimensions(width, height)[level]
    xs = (np.arange(mw) + 0.5) * width / mw
    ys = (np.arange(mh) + 0.5) * height / mh
    points = np.stack(np.meshgrid(xs, ys, indexing="ij"), axis=-1).reshape(-1, 2)
    return tissue.contains(points).reshape(mw, mh)


def make_dataset(root, slides=SLIDES, level=MASK_LEVEL):
    """Write blank slides, JSONs and tissue masks under ``root``; return {pid: (annotation, mask, level0)}."""
    (root / "wsi").mkdir(parents=True, exist_ok=True)
    (root / "json").mkdir(exist_ok=True)
    (root / "mask").mkdir(exist_ok=True)
    truth = {}
    for pid, width, height, seed, tumours, hole, with_json in slides:
        tissue, annotation, _ = plan_slide(width, height, seed=seed, num_tumours=max(tumours, 1),
                                           tumour_size=(500, 800), with_hole=hole, normal=tumours == 0)
        write_pyramid(root / "wsi" / f"{pid}.tif", lambda lv, x, y, w, h: np.full((h, w, 3), 240, np.uint8),
                      width, height)
        if with_json:
            annotation.to_json(root / "json" / f"{pid}.json")
        mask = tissue_mask_of(tissue, width, height, level)
        np.save(root / "mask" / f"{pid}.npy", mask)
        truth[pid] = (annotation, mask, (width, height))
    return truth


# Faults: the synthetic world of the fault cases (conftest.py's ``world``) and the checks every case makes --------
SIZE = 512  # level-0 side of the synthetic slide: levels 512, 256, ..., 16
TILE = 64  # its JPEG tile side, so that a damaged tile is small
DAMAGED_TILE = (3, 3)  # (column, row) of the level-0 tile zeroed: level-0 pixels [192, 256)²
GRID_CFG = {"model": "resnet18", "use_crf": True, "batch_size": 2, "image_size": 48, "patch_size": 16,
            "crop_size": 16, "lr": 0.001, "momentum": 0.9, "epoch": 1, "log_every": 1}


def zero_tile(path, page, index):
    """Overwrite the bytes of tile ``index`` of TIFF page ``page`` with zeros (a tile that cannot be decoded)."""
    with tifffile.TiffFile(path) as tif:
        offset, count = tif.pages[page].dataoffsets[index], tif.pages[page].databytecounts[index]
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(b"\0" * count)


def tiles_across(path, page):
    with tifffile.TiffFile(path) as tif:
        p = tif.pages[page]
        return -(-p.imagewidth // p.tilewidth)


#: probs_map.py options of the runs that are not about the runtime: PyTorch's own CPU pass. OpenVINO (the
#: default where installed) converts the network first, seconds per run; its own tests are test_runtime.py and
#: test_inference_model.py, and the demo (test_demo.py) keeps the default a user gets.
TORCH_PASS = ("--runtime", "torch")


def with_torch_pass(script, argv):
    """``argv`` of ``script`` with :data:`TORCH_PASS` added when it is probs_map's and names no runtime."""
    argv = [str(a) for a in argv]
    return argv + list(TORCH_PASS) if script == "probs_map" and "--runtime" not in argv else argv


def call(main, argv, capsys):
    """``(status, stderr)`` of ``main(argv)``; argparse's SystemExit is a status too. probs_map runs PyTorch's
    pass unless ``argv`` names a runtime (:data:`TORCH_PASS`)."""
    try:
        status = main(with_torch_pass(main.__module__.rsplit(".", 1)[-1], argv))
    except SystemExit as exit_info:
        status = exit_info.code
    return status, capsys.readouterr().err


def assert_one_error(err, *fragments):
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if " error: " in line or line.startswith("error:")]
    assert len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def temporaries(folder):
    """Temporary files (atomic writes, probes) anywhere under ``folder``."""
    return [p for p in folder.rglob(".*") if ".tmp" in p.name or p.name.startswith(".wsi-probe.")]


UNWRITABLE = ("under_a_file", "on_proc")


def unwritable(world, kind, name):
    """An output path that cannot be written: under a regular file, or under /proc (a virtual file system)."""
    return world / "a_file" / name if kind == "under_a_file" else f"/proc/wsi-fault-test/{name}"


def write_train_config(world, tmp_path, slides="slides", valid_coords=None):
    """An on-the-fly training config: 4 + 4 training grids, 2 + 2 validation grids, on ``world/<slides>``."""
    rows = read_coords(world / "coords.txt")
    # Tumour training grids on the row y = 224: the grid at (224, 224) covers the damaged tile.
    lists = {"tumor_train": rows[8:12], "normal_train": rows[:4], "tumor_valid": rows[4:6],
             "normal_valid": rows[12:14]}
    cfg = dict(GRID_CFG)
    for name, chosen in lists.items():
        write_coords(tmp_path / f"{name}.txt", chosen)
        cfg[f"coords_{name}"] = str(tmp_path / f"{name}.txt")
    if valid_coords is not None:
        cfg["coords_tumor_valid"] = str(valid_coords)
    cfg.update(wsi_path_train=str(world / slides), wsi_path_valid=str(world / slides),
               json_path_train=str(world / "jsons"), json_path_valid=str(world / "jsons"))
    (tmp_path / "cfg.json").write_text(json.dumps(cfg, indent=1))
    return tmp_path / "cfg.json"


#: (signal, status, last line): SIGTERM to the process (kill), Ctrl-C to the whole process group (a terminal).
STOPS = {"sigterm": (signal.SIGTERM, 143, "terminated"), "ctrl_c": (signal.SIGINT, 130, "interrupted")}


def start(script, *argv):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, str(ROOT / "wsi" / "bin" / f"{script}.py"), *with_torch_pass(script, argv)]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=_default_sigint)


def _default_sigint():
    """Ctrl-C as a terminal delivers it: a suite started in the background of a shell without job control (a CI
    runner's `cmd &`) inherits SIGINT ignored, which the child would keep, and then finish instead of stopping."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def stop_when(process, condition, stop, timeout=60):
    """Send ``stop`` once ``condition()`` holds (SIGTERM to the process, Ctrl-C to its group, workers included);
    returns (status, stderr), after checking the status and the one closing line."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline
        time.sleep(0.01)
    signum, status, word = STOPS[stop]
    # Not at the very moment a new slide's DataLoader forks its workers: CPython drops a KeyboardInterrupt raised
    # inside an at-fork hook ("Exception ignored in _releaseLock"), so that one Ctrl-C in a thousand is lost.
    time.sleep(0.3)
    if stop == "ctrl_c":
        os.killpg(process.pid, signum)
    else:
        process.send_signal(signum)
    _, err = process.communicate(timeout=60)
    assert process.returncode == status, err
    assert "Traceback" not in err and err.rstrip().endswith(word), err
    return process.returncode, err


#: This machine's name as temporary names spell it (wsi.fileio).
HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())


def dead_pid():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


# Training (test_train*.py, test_lr_schedule.py; the ``data`` fixture is conftest.py's) --------------------------------
# Grids of 3×3 cells of 16 px (the smallest that runs quickly through ResNet-18), batch 2: 4 training grids per
# class make 2 steps, 2 validation grids 1 step.
SMALL = {"model": "resnet18", "use_crf": True, "batch_size": 2, "image_size": 48, "patch_size": 16, "crop_size": 16,
         "lr": 0.001, "momentum": 0.9, "epoch": 1, "log_every": 1}


def write_config(data, path, on_the_fly=False, **changes):
    cfg = dict(SMALL)
    for name in DATASETS:
        if on_the_fly:
            cfg[f"coords_{name}"] = str(data / f"{name}.txt")
        else:
            cfg[f"data_path_{name}"] = str(data / "patches" / name)
    if on_the_fly:
        cfg.update(wsi_path_train=str(data / "slides"), wsi_path_valid=str(data / "slides"))
    cfg.update(json_path_train=str(data / "jsons"), json_path_valid=str(data / "jsons"), **changes)
    path.write_text(json.dumps(cfg, indent=1))
    return path, cfg
