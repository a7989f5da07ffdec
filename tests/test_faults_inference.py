"""Faults of whole-slide inference (wsi/inference: runner, damaged; probs_map.py): a damaged tile costs only its
positions, a slide that cannot be opened does not stop a folder, a stopped run resumes, junk outputs are redone and
stale temporaries removed, a mask that is not a mask is refused. Part of the fault matrix (tests/test_faults.py);
the world is conftest.py's ``world``.
"""

import json
import os
import shutil

import numpy as np
import pytest

from tests.helpers import (DAMAGED_TILE, GRID_CFG, HOST, TILE, assert_one_error, call, dead_pid, save_grid_model,
                           start, stop_when, temporaries, tiles_across, zero_tile)
from wsi.bin import probs_map


@pytest.fixture(autouse=True)
def one_thread(one_torch_thread):
    """Every test of this file runs with one torch thread (tests/conftest.py)."""


@pytest.mark.parametrize("mode", ["fast", "faithful"])
def test_probs_map_damaged_tile_costs_only_its_positions(world, tmp_path, capsys, mode):
    common = [world / "model.ckpt", world / "cfg.json", world / "mask.npy"]
    clean_status, err = call(probs_map.main, [world / "slides" / "Tumor_001.tif", *common, tmp_path / "clean.npy",
                                              "--mode", mode, "--num_workers", "0"], capsys)
    assert clean_status == 0, err
    status, err = call(probs_map.main, [world / "damaged" / "Tumor_001.tif", *common, tmp_path / "hurt.npy",
                                        "--mode", mode, "--num_workers", "2"], capsys)
    assert status == 1
    assert "Traceback" not in err and " error: " not in err
    clean, hurt = np.load(tmp_path / "clean.npy"), np.load(tmp_path / "hurt.npy")
    lines = (tmp_path / "hurt.failed.txt").read_text().splitlines()
    assert lines[0].startswith("#") and "could not be read" in lines[0]
    failed = np.zeros(clean.shape, dtype=bool)
    for line in lines[1:]:
        xm, ym, region, reason = line.split("\t")
        failed[int(xm), int(ym)] = True
        x, y, w, h = (int(v) for v in region.split(","))
        assert w == h == GRID_CFG["image_size"]
        # The grid region of a failed position overlaps the damaged tile.
        tx, ty = DAMAGED_TILE[0] * TILE, DAMAGED_TILE[1] * TILE
        assert x < tx + TILE and tx < x + w and y < ty + TILE and ty < y + h
    mask = np.load(world / "mask.npy")
    assert 0 < failed.sum() < mask.sum() // 2  # the tile costs its positions, not the slide
    assert np.all(hurt[failed] == 0)
    assert np.abs(hurt - clean)[~failed].max() <= 1e-6  # every other position computed, as on the clean slide
    assert not temporaries(tmp_path)


def test_probs_map_folder_goes_on_after_a_slide_that_cannot_be_opened(world, tmp_path, capsys):
    wsi, masks, out = tmp_path / "wsi", tmp_path / "masks", tmp_path / "out"
    wsi.mkdir()
    masks.mkdir()
    for stem, source in (("A", world / "slides"), ("B", world / "empty"), ("C", world / "slides")):
        shutil.copy(source / "Tumor_001.tif", wsi / f"{stem}.tif")
        shutil.copy(world / "mask.npy", masks / f"{stem}.npy")
    argv = [wsi, world / "model.ckpt", world / "cfg.json", masks, out, "--num_workers", "0"]
    status, err = call(probs_map.main, argv, capsys)
    assert status == 1 and "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == ["A.json", "A.npy", "B.failed.txt", "C.json", "C.npy"]
    assert "no map" in (out / "B.failed.txt").read_text()
    # A re-run skips A and C, tries B again, and still says so.
    status, err = call(probs_map.main, argv, capsys)
    assert status == 1
    assert sorted(p.name for p in out.iterdir()) == ["A.json", "A.npy", "B.failed.txt", "C.json", "C.npy"]


@pytest.mark.parametrize("stop,workers", [("sigterm", 0), ("ctrl_c", 2)])
def test_probs_map_stopped_then_rerun(world, tmp_path, capsys, stop, workers):
    wsi, masks, out = tmp_path / "wsi", tmp_path / "masks", tmp_path / "out"
    wsi.mkdir()
    masks.mkdir()
    for k in range(3):
        shutil.copy(world / "slides" / "Tumor_001.tif", wsi / f"S{k}.tif")
        shutil.copy(world / "mask.npy", masks / f"S{k}.npy")
    argv = [wsi, world / "model.ckpt", world / "cfg.json", masks, out, "--num_workers", workers, "--mode",
            "faithful"]
    stop_when(start("probs_map", *argv), lambda: (out / "S0.npy").exists(), stop)
    assert not temporaries(tmp_path)
    assert (out / "S0.npy").exists() and not (out / "S2.npy").exists()
    status, err = call(probs_map.main, argv, capsys)
    assert status == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["S0.json", "S0.npy", "S1.json", "S1.npy", "S2.json", "S2.npy"]


def test_probs_map_junk_outputs_are_recomputed_and_stale_temporaries_removed(world, tmp_path, capsys):
    wsi, masks, out = tmp_path / "wsi", tmp_path / "masks", tmp_path / "out"
    for folder in (wsi, masks, out):
        folder.mkdir()
    for stem in ("A", "B", "C", "D"):
        shutil.copy(world / "slides" / "Tumor_001.tif", wsi / f"{stem}.tif")
        shutil.copy(world / "mask.npy", masks / f"{stem}.npy")
    shape = np.load(world / "mask.npy").shape
    (out / "A.npy").write_bytes(b"")  # 0 bytes
    (out / "B.npy").write_bytes(b"junk that is no .npy")
    np.save(out / "C.npy", np.zeros((3, 3)))  # a map of another shape
    full = np.full(shape, 0.25)
    np.save(out / "D.npy", full)
    (out / "D.npy").write_bytes((out / "D.npy").read_bytes()[:-8])  # cut short
    host = HOST
    (out / f".A.x1.{host}-{dead_pid()}.tmp.npy").write_bytes(b"left by kill -9")
    live = [f".B.x2.{host}-{os.getpid()}.tmp.npy", ".C.x3.other-machine-1.tmp.npy"]  # concurrent shards' files
    for name in live:
        (out / name).write_bytes(b"being written")
    status, err = call(probs_map.main, [wsi, world / "model.ckpt", world / "cfg.json", masks, out, "--num_workers",
                                        "0"], capsys)
    assert status == 0, err
    for stem in "ABCD":
        probs = np.load(out / f"{stem}.npy")
        assert probs.shape == shape and probs.dtype == np.float64 and np.count_nonzero(probs) > 0
    maps = [f"{stem}{suffix}" for stem in "ABCD" for suffix in (".npy", ".json")]  # each map and its sidecar
    assert sorted(p.name for p in out.iterdir()) == sorted([*live, *maps])


@pytest.mark.parametrize("mask", ["nan", "strings"])
def test_probs_map_refuses_a_mask_that_is_not_a_mask(world, tmp_path, capsys, mask):
    shape = np.load(world / "mask.npy").shape
    array = np.full(shape, np.nan) if mask == "nan" else np.full(shape, "yes")
    np.save(tmp_path / "mask.npy", array)
    status, err = call(probs_map.main, [world / "slides" / "Tumor_001.tif", world / "model.ckpt",
                                        world / "cfg.json", tmp_path / "mask.npy", tmp_path / "p.npy",
                                        "--num_workers", "0"], capsys)
    assert status == 2
    assert_one_error(err, "mask.npy", "NaN" if mask == "nan" else "boolean or numeric")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mask.npy"]


# A damaged tile off the diagonal, read with crop ≠ stride (as every shipped config: crop 224, stride 64) ----------
OFF_TILE = (3, 1)  # (column, row) of the level-0 tile zeroed: x in [192, 256), y in [64, 128)
OFF_LEVEL = 3  # stride 8: patch_size 16 is 2 strides, and the crop (14) is neither the stride nor the patch
OFF_GRID = {**GRID_CFG, "crop_size": 14}


@pytest.fixture(scope="module")
def off_diagonal(world, tmp_path_factory):
    """The world's slide with only tile (3, 1) damaged, a model whose config crops 14 of 16, and a level-3 mask
    of a block of positions wider in x than in y around the tile (x 16..39, y 4..19)."""
    from wsi.data.slide import open_slide

    root = tmp_path_factory.mktemp("off_diagonal")
    (root / "damaged").mkdir()
    shutil.copy(world / "slides" / "Tumor_001.tif", root / "damaged" / "Tumor_001.tif")
    col, row = OFF_TILE
    zero_tile(root / "damaged" / "Tumor_001.tif", 0, row * tiles_across(world / "slides" / "Tumor_001.tif", 0) + col)
    cfg = {**json.loads((world / "cfg.json").read_text()), "crop_size": OFF_GRID["crop_size"]}
    (root / "cfg.json").write_text(json.dumps(cfg, indent=1))
    save_grid_model(root / "model.ckpt", cfg)
    with open_slide(world / "slides" / "Tumor_001.tif") as slide:
        mask = np.zeros(slide.level_dimensions[OFF_LEVEL], dtype=bool)
    mask[16:40, 4:20] = True
    np.save(root / "mask.npy", mask)
    return root


def off_diagonal_expected(mask, mode):
    """Positions ``{(xm, ym)}`` whose reads touch tile OFF_TILE: in the fast mode those with a crop on it (the
    lattice patches), in the faithful mode those whose whole grid region is on it (one read per position)."""
    stride, grid = 2 ** OFF_LEVEL, OFF_GRID
    tx, ty = OFF_TILE[0] * TILE, OFF_TILE[1] * TILE
    side = grid["image_size"] // grid["patch_size"]
    starts = [int((k + 0.5) * grid["patch_size"] - grid["crop_size"] / 2) for k in range(side)]
    if mode == "faithful":
        spans = [(0, grid["image_size"])]
    else:
        spans = [(s, s + grid["crop_size"]) for s in starts]
    hit = set()
    for xm, ym in zip(*np.nonzero(mask)):
        x0 = int((xm + 0.5) * stride - grid["image_size"] / 2)
        y0 = int((ym + 0.5) * stride - grid["image_size"] / 2)
        if any(x0 + a < tx + TILE and tx < x0 + b for a, b in spans) and \
                any(y0 + a < ty + TILE and ty < y0 + b for a, b in spans):
            hit.add((int(xm), int(ym)))
    return hit


@pytest.mark.parametrize("mode", ["fast", "faithful"])
def test_probs_map_damaged_tile_with_crop_unlike_stride_costs_only_its_positions(world, off_diagonal, tmp_path,
                                                                                  capsys, mode):
    common = [off_diagonal / "model.ckpt", off_diagonal / "cfg.json", off_diagonal / "mask.npy"]
    status, err = call(probs_map.main, [world / "slides" / "Tumor_001.tif", *common, tmp_path / "clean.npy",
                                        "--mode", mode, "--num_workers", "0"], capsys)
    assert status == 0, err
    status, err = call(probs_map.main, [off_diagonal / "damaged" / "Tumor_001.tif", *common, tmp_path / "hurt.npy",
                                        "--mode", mode, "--num_workers", "0"], capsys)
    assert status == 1 and "Traceback" not in err
    clean, hurt = np.load(tmp_path / "clean.npy"), np.load(tmp_path / "hurt.npy")
    failed = np.zeros(clean.shape, dtype=bool)
    for line in (tmp_path / "hurt.failed.txt").read_text().splitlines()[1:]:
        xm, ym = (int(v) for v in line.split("\t")[:2])
        failed[xm, ym] = True
    mask = np.load(off_diagonal / "mask.npy")
    assert {(int(x), int(y)) for x, y in zip(*np.nonzero(failed))} == off_diagonal_expected(mask, mode)
    assert np.all(hurt[failed] == 0)
    # Every other position reads whole crops, as on the clean slide: a block split around the damaged tile
    # must read each needed patch at its crop size, not its stride (a wrong read moves a map by far more than 1e-5).
    # Within 1e-5, the project's tolerance between CNN passes: the faithful mode leaves unreadable grids out of their
    # batch, so the other grids run in batches of another size, which float32 kernels round differently (~1e-6).
    assert np.abs(hurt - clean)[~failed].max() <= 1e-5
    assert not temporaries(tmp_path)


@pytest.mark.parametrize("mode", ["fast", "faithful"])
def test_failed_positions_report_off_the_diagonal(off_diagonal, tmp_path, capsys, mode):
    common = [off_diagonal / "model.ckpt", off_diagonal / "cfg.json", off_diagonal / "mask.npy"]
    status, err = call(probs_map.main, [off_diagonal / "damaged" / "Tumor_001.tif", *common, tmp_path / "hurt.npy",
                                        "--mode", mode, "--num_workers", "0"], capsys)
    assert status == 1, err
    lines = (tmp_path / "hurt.failed.txt").read_text().splitlines()
    expected = off_diagonal_expected(np.load(off_diagonal / "mask.npy"), mode)
    assert expected != {(y, x) for x, y in expected}  # the case tells x from y
    assert lines[0].startswith("# ") and f"Tumor_001.tif: {len(expected)} of {16 * 24} tissue positions" in lines[0]
    seen = []
    for line in lines[1:]:
        xm, ym, region, reason = line.split("\t")
        xm, ym = int(xm), int(ym)
        x, y, w, h = (int(v) for v in region.split(","))
        # Column 1 is the mask's x, column 2 its y, and the region is that position's grid, x first.
        assert (x, y, w, h) == (int((xm + 0.5) * 8) - 24, int((ym + 0.5) * 8) - 24, 48, 48)
        tx, ty = OFF_TILE[0] * TILE, OFF_TILE[1] * TILE
        assert x < tx + TILE and tx < x + w and y < ty + TILE and ty < y + h
        assert reason
        seen.append((xm, ym))
    assert seen == sorted(expected)
