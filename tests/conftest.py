"""Shared fixtures. Importable helpers (paths, synthetic slides and models, the fault cases' checks) are in
``tests/helpers.py``."""

import json
import shutil

import numpy as np
import pytest
import torch

from tests.helpers import (DAMAGED_TILE, GRID_CFG, MASK_LEVEL, SIZE, TILE, data_path, save_grid_model, tiles_across,
                           write_train_config, zero_tile)
from wsi.bin.patch_gen import main as patch_gen
from wsi.config import DATASETS
from wsi.data.coords import write_coords
from wsi.data.slide import open_slide
from wsi.synthetic import make_synthetic_slide


@pytest.fixture
def cmu_svs():
    """The real H&E crop (CMU-1, CC0, OpenSlide test data): 2220×2967 px at 0.499 µm/px, one level."""
    return data_path("cmu_small_region.svs")


@pytest.fixture
def one_torch_thread():
    """One intra-op thread: on a shared 2-core machine, two spinning OpenMP threads make each step 3-5× slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def grids():
    """Two random 3×3 grids of 32-pixel crops ``[2, 9, 3, 32, 32]`` in [-1, 1] (test_model, test_checkpoint)."""
    return torch.rand(2, 9, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1


# The fault cases' world (test_faults*.py) ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tumour slide with its XML, JSON and ground-truth mask; damaged, truncated and 0-byte copies; a tiny
    CRF model and config; coordinate lists; a probability map and detections."""
    root = tmp_path_factory.mktemp("faults")
    slides, damaged = root / "slides", root / "damaged"
    made = make_synthetic_slide(slides / "Tumor_001.tif", width=SIZE, height=SIZE, seed=3, num_tumours=1,
                                tumour_size=(150, 250), tile_size=TILE, xml_path=root / "xml" / "Tumor_001.xml",
                                json_path=root / "jsons" / "Tumor_001.json", mask_path=root / "gt" / "Tumor_001.tif")
    damaged.mkdir()
    shutil.copy(made.slide_path, damaged / "Tumor_001.tif")
    col, row = DAMAGED_TILE
    zero_tile(damaged / "Tumor_001.tif", 0, row * tiles_across(made.slide_path, 0) + col)
    zero_tile(damaged / "Tumor_001.tif", 2, 1)  # level 2 (128 px, 2×2 tiles): its tile (1, 0), for tissue_mask
    blob = made.slide_path.read_bytes()
    (root / "truncated").mkdir()
    (root / "truncated" / "Tumor_001.tif").write_bytes(blob[:len(blob) // 3])
    (root / "empty").mkdir()
    (root / "empty" / "Tumor_001.tif").write_bytes(b"")

    # A tiny model (grid 48/16/16) and its config, for probs_map and plot_W.
    cfg = dict(GRID_CFG)
    for name in DATASETS:
        cfg[f"data_path_{name}"] = "/unused/"
    cfg.update(json_path_train="/unused/", json_path_valid="/unused/")
    (root / "cfg.json").write_text(json.dumps(cfg, indent=1))
    save_grid_model(root / "model.ckpt", cfg)

    # A level-4 mask: a 12×12 block of positions around the damaged tile (centres 128 .. 304).
    with open_slide(made.slide_path) as slide:
        shape = slide.level_dimensions[MASK_LEVEL]
    mask = np.zeros(shape, dtype=bool)
    mask[8:20, 8:20] = True
    np.save(root / "mask.npy", mask)

    # Coordinate lists: 16 centres on a 4×4 lattice, some near the damaged tile.
    centres = [("Tumor_001", 96 + 64 * i, 96 + 64 * j) for j in range(4) for i in range(4)]
    write_coords(root / "coords.txt", centres)
    (root / "maps").mkdir()
    np.save(root / "maps" / "Tumor_001.npy", np.where(mask, 0.9, 0.0))
    (root / "Tumor_001.csv").write_text("0.9,200,200\n")
    (root / "csv").mkdir()
    (root / "csv" / "Tumor_001.csv").write_text("0.9,200,200\n")
    (root / "labels.csv").write_text("Tumor_001,Tumor\n")
    (root / "a_file").write_text("a regular file: no folder can be made under it")
    (root / "train").mkdir()
    write_train_config(root, root / "train")
    return root


# Training (test_train*.py, test_lr_schedule.py) ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Training data (test_train*.py, test_lr_schedule.py): a synthetic tumour slide, its JSON, four coordinate
    lists and their patch folders."""
    root = tmp_path_factory.mktemp("train")
    slide = make_synthetic_slide(root / "slides" / "Tumor_001.tif", width=1024, height=1024, seed=11, num_tumours=1,
                                 tumour_size=(400, 600), json_path=root / "jsons" / "Tumor_001.json")
    cx, cy = (int(v) for v in slide.annotation.positive[0].vertices().mean(axis=0))
    tumour = [("Tumor_001", cx + dx, cy + dy) for dx, dy in [(0, 0), (12, 0), (0, 12), (-12, 0), (6, 6), (-6, -6)]]
    normal = [("Tumor_001", x, y) for x, y in [(60, 60), (960, 60), (60, 960), (960, 960), (100, 100), (900, 900)]]
    lists = {"tumor_train": tumour[:4], "normal_train": normal[:4], "tumor_valid": tumour[4:],
             "normal_valid": normal[4:]}
    for name, rows in lists.items():
        write_coords(root / f"{name}.txt", rows)
        assert patch_gen([str(root / "slides"), str(root / f"{name}.txt"), str(root / "patches" / name),
                          "--patch_size", "48", "--num_process", "1"]) == 0
    return root


# A map whose cell is not 2**level (test_nms.py, test_export.py, test_hard_negatives.py) ------------------------------
@pytest.fixture(scope="session")
def level2_map(tmp_path_factory):
    """The real H&E crop as a 4×-step pyramid ``Tumor_001.tif`` (downsamples 1, 4, 16, 64), its level-2 tissue
    mask (``mask/Tumor_001.npy``, cell 16 level-0 px where ``2**2`` is 4 and the default ``2**6`` is 64) and a
    probability map ``probs/Tumor_001.npy`` with the mask's sidecar: 0 except two tissue cells ``hot`` (x ≠ y,
    apart), at 0.9 and 0.8. Returns ``(root, hot)``."""
    from dataclasses import replace

    from tests.helpers import cmu_pyramid
    from wsi.arrays import load_array, save_array
    from wsi.bin import tissue_mask

    root = tmp_path_factory.mktemp("level2")
    slide = cmu_pyramid(root / "Tumor_001.tif", factor=4)
    assert tissue_mask.main([str(slide), str(root / "mask" / "Tumor_001.npy"), "--level", "2"]) == 0
    mask, info = load_array(root / "mask" / "Tumor_001.npy")
    assert info.level == 2 and info.stride == 16 and mask.shape == (139, 186)
    # Two tissue cells whose 128-px hard-negative cell centre is tissue too, one above the diagonal, one below.
    candidates = [(x, y) for x, y in zip(*np.nonzero(mask)) if x % 8 == 3 and y % 8 == 5
                  and mask[x // 8 * 8 + 4, y // 8 * 8 + 4]]
    hot = [next((int(x), int(y)) for x, y in candidates if x > y + 20),
           next((int(x), int(y)) for x, y in candidates if y > x + 20)]
    probs = np.zeros(mask.shape)
    probs[hot[0]], probs[hot[1]] = 0.9, 0.8
    save_array(root / "probs" / "Tumor_001.npy", probs, replace(info, kind="probs_map", extra={}))
    return root, hot
