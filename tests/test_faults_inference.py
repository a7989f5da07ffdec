"""Faults of whole-slide inference (wsi/inference: runner, damaged; probs_map.py): a damaged tile costs only its
positions, a slide that cannot be opened does not stop a folder, a stopped run resumes, junk outputs are redone and
stale temporaries removed, a mask that is not a mask is refused. Part of the fault matrix (tests/test_faults.py);
the world is conftest.py's ``world``.
"""

import os
import shutil

import numpy as np
import pytest

from tests.helpers import (DAMAGED_TILE, GRID_CFG, HOST, TILE, assert_one_error, call, dead_pid, start, stop_when,
                           temporaries)
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
