"""The fault matrix (issue 12): every script against every class of fault that applies to it.

Classes: an output that cannot be written (under a regular file, or on /proc), an output that is an existing
folder (or, for folder outputs, an existing file), a damaged tile (one level-0 JPEG tile of a synthetic slide
overwritten with zeros), a truncated and a 0-byte slide, non-UTF-8 text, an interrupted run (SIGTERM, or the
temporaries a ``kill -9`` leaves) then a re-run, junk in an output folder, and out-of-range numbers.

Each case asserts the exit status, exactly one ``error:`` line on stderr and no traceback, no partial or
temporary file left, and, for damaged tiles, that every other position or patch is computed (equal to the run
on the undamaged slide). Scripts run in-process through ``main([...])``; the SIGTERM cases run a subprocess.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tifffile
import torch

from tests.conftest import ROOT
from wsi.bin import (Evaluation_FROC, annotation_mask, camelyon16xml2json, coords_report, export, hard_negatives,
                     nms, patch_gen, plot_W, probs_map, sample_coords, slide_auc, synthetic_slide, tissue_mask,
                     train)
from wsi.data.coords import read_coords, write_coords
from wsi.data.slide import open_slide
from wsi.synthetic import make_synthetic_slide
from wsi.model import MODELS
from wsi.model.checkpoint import save_checkpoint

SIZE = 512  # level-0 side of the synthetic slide: levels 512, 256, ..., 16
TILE = 64  # its JPEG tile side, so that a damaged tile is small
DAMAGED_TILE = (3, 3)  # (column, row) of the level-0 tile zeroed: level-0 pixels [192, 256)²
MASK_LEVEL = 4  # stride 16 for probs_map
GRID_CFG = {"model": "resnet18", "use_crf": True, "batch_size": 2, "image_size": 48, "patch_size": 16,
            "crop_size": 16, "lr": 0.001, "momentum": 0.9, "epoch": 1, "log_every": 1}
INVALID_UTF8 = b"Tumor_001,100,100\nTumor_001,\xff\xfe200,200\n"


# World ------------------------------------------------------------------------------------------------------------
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
    for name in ("tumor_train", "normal_train", "tumor_valid", "normal_valid"):
        cfg[f"data_path_{name}"] = "/unused/"
    cfg.update(json_path_train="/unused/", json_path_valid="/unused/")
    (root / "cfg.json").write_text(json.dumps(cfg, indent=1))
    torch.manual_seed(0)
    model = MODELS["resnet18"](num_nodes=9, use_crf=True)
    with torch.no_grad():
        model.crf.W.normal_(0.0, 1.0)
    save_checkpoint(root / "model.ckpt", model.eval(), epoch=1, step=1, cfg=cfg)

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


@pytest.fixture(autouse=True)
def one_thread(one_torch_thread):
    """Every test of this file runs with one torch thread (tests/conftest.py)."""


# Assertions -------------------------------------------------------------------------------------------------------
def call(main, argv, capsys):
    """``(status, stderr)`` of ``main(argv)``; argparse's SystemExit is a status too."""
    try:
        status = main([str(a) for a in argv])
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


# 1. Outputs that cannot be written, for every script ---------------------------------------------------------------
def output_cases(world, out):
    """``{script: (main, argv)}`` with ``out`` as the (file or folder) output of each script."""
    w = world
    return {
        "camelyon16xml2json": (camelyon16xml2json.main, [w / "xml" / "Tumor_001.xml", out]),
        "annotation_mask": (annotation_mask.main, [w / "jsons" / "Tumor_001.json", out, "--size", "512", "512"]),
        "Evaluation_FROC": (Evaluation_FROC.main, [w / "gt", w / "csv", "--json", out]),
        "coords_report": (coords_report.main, [w / "jsons", "--tumor", w / "coords.txt", "--output", out]),
        "export": (export.main, ["heatmap", w / "maps" / "Tumor_001.npy", out, "--level", "4"]),
        "hard_negatives": (hard_negatives.main, [w / "maps", w / "jsons", w / "coords.txt", "--output", out,
                                                 "--level", "4"]),
        "nms": (nms.main, [w / "maps" / "Tumor_001.npy", out, "--level", "4"]),
        "patch_gen": (patch_gen.main, [w / "slides", w / "coords.txt", out, "--patch_size", "32",
                                       "--num_process", "1"]),
        "plot_W": (plot_W.main, [w / "model.ckpt", "--out", out]),
        "probs_map": (probs_map.main, [w / "slides" / "Tumor_001.tif", w / "model.ckpt", w / "cfg.json",
                                       w / "mask.npy", out, "--num_workers", "0"]),
        "sample_coords": (sample_coords.main, [w / "slides", w / "jsons", out, "--level", "3",
                                               "--tumor_per_slide", "5"]),
        "slide_auc": (slide_auc.main, [w / "maps", w / "labels.csv", out]),
        "synthetic_slide": (synthetic_slide.main, [out, "--size", "256", "--num_normal", "0",
                                                   "--tumor_size", "60", "90"]),
        "tissue_mask": (tissue_mask.main, [w / "slides" / "Tumor_001.tif", out, "--level", "3"]),
        "train": (train.main, [w / "train" / "cfg.json", out, "--num_workers", "0"]),
    }


FOLDER_OUTPUTS = {"patch_gen", "sample_coords", "synthetic_slide", "train"}
SCRIPTS = sorted(output_cases(ROOT, ROOT))


@pytest.mark.parametrize("kind", UNWRITABLE)
@pytest.mark.parametrize("script", SCRIPTS)
def test_unwritable_output_fails_first_in_one_line(world, tmp_path, capsys, script, kind):
    out = unwritable(world, kind, "out.json" if script != "plot_W" else "w.png")
    main, argv = output_cases(world, out)[script]
    start = time.perf_counter()
    status, err = call(main, argv, capsys)
    assert status == 2
    assert_one_error(err, "cannot write")
    assert time.perf_counter() - start < 20  # refused before the work, not after
    assert not temporaries(world)


@pytest.mark.parametrize("script", SCRIPTS)
def test_output_that_is_a_folder_or_a_file_is_refused(world, tmp_path, capsys, script):
    # camelyon16xml2json: an existing folder as JSON is a defined output (<JSON>/<stem>.json); its folder mode's
    # output folder given as an existing file is the fault instead.
    if script in FOLDER_OUTPUTS or script == "camelyon16xml2json":
        out = tmp_path / "out"
        out.write_text("I am a file")
        expected = "is a file"
    else:
        out = tmp_path / ("out.png" if script == "plot_W" else "out.npy")
        out.mkdir()
        expected = "is a folder"
    main, argv = output_cases(world, out)[script]
    if script == "camelyon16xml2json":
        argv = [world / "xml", out]
    status, err = call(main, argv, capsys)
    assert status == 2
    assert_one_error(err, expected)
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # nothing written beside it
    assert not temporaries(tmp_path)


# 2. Damaged tiles -------------------------------------------------------------------------------------------------
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


def test_tissue_mask_names_the_damaged_tile(world, tmp_path, capsys):
    status, err = call(tissue_mask.main, [world / "damaged" / "Tumor_001.tif", tmp_path / "m.npy", "--level", "2"],
                       capsys)
    assert status == 2
    assert_one_error(err, "tile at level-2 pixel (64, 0)", "damaged")
    assert list(tmp_path.iterdir()) == []


def test_patch_gen_damaged_tile_costs_only_its_patches(world, tmp_path, capsys):
    common = ["--patch_size", "32", "--num_process", "2"]
    assert call(patch_gen.main, [world / "slides", world / "coords.txt", tmp_path / "clean", *common], capsys)[0] == 0
    status, err = call(patch_gen.main, [world / "damaged", world / "coords.txt", tmp_path / "hurt", *common], capsys)
    assert status == 1 and "Traceback" not in err
    failed = {int(line.split("\t")[0]) for line in (tmp_path / "hurt" / "failed.txt").read_text().splitlines()}
    rows = read_coords(world / "coords.txt")
    tx, ty = DAMAGED_TILE[0] * TILE, DAMAGED_TILE[1] * TILE
    touching = {i for i, (_, x, y) in enumerate(rows) if x - 16 < tx + TILE and tx < x + 16 and y - 16 < ty + TILE
                and ty < y + 16}
    assert failed == touching and 0 < len(failed) < len(rows)
    for i in set(range(len(rows))) - failed:
        assert (tmp_path / "hurt" / f"{i}.png").read_bytes() == (tmp_path / "clean" / f"{i}.png").read_bytes()
    assert not temporaries(tmp_path)


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


def test_train_skips_unreadable_grids_with_workers(world, tmp_path, capsys, caplog):
    cfg = write_train_config(world, tmp_path, slides="damaged")
    status, err = call(train.main, [cfg, tmp_path / "out", "--num_workers", "2", "--max_failed_share", "0.5"],
                       capsys)
    assert status == 0, err
    assert "Traceback" not in err
    assert (tmp_path / "out" / "train.ckpt").is_file()
    skipped = [r.getMessage() for r in caplog.records if "skipped grid" in r.getMessage()]
    assert skipped and all("Tumor_001.tif centre" in m for m in skipped)
    assert any("could not be read and were skipped" in r.getMessage() for r in caplog.records)
    # More than the allowed share of an epoch failing stops the run in one line.
    status, err = call(train.main, [cfg, tmp_path / "out2", "--num_workers", "2", "--max_failed_share", "0"],
                       capsys)
    assert status == 2
    assert_one_error(err, "could not be read", "--max_failed_share 0")
    assert not temporaries(tmp_path)


# 3. Truncated and 0-byte slides -------------------------------------------------------------------------------------
def slide_cases(world, folder, tmp_path):
    slide = world / folder / "Tumor_001.tif"
    out = tmp_path / "out"
    return {
        "tissue_mask": (tissue_mask.main, [slide, out / "m.npy", "--level", "3"], 2),
        "probs_map": (probs_map.main, [slide, world / "model.ckpt", world / "cfg.json", world / "mask.npy",
                                       out / "p.npy", "--num_workers", "0"], 2),
        "sample_coords": (sample_coords.main, [world / folder, world / "jsons", out, "--level", "3"], 2),
        # annotation_mask reads only the slide's header (size, µm per pixel): a truncated slide still has one.
        "annotation_mask": (annotation_mask.main, [world / "jsons" / "Tumor_001.json", out / "m.tif", "--wsi", slide],
                            0 if folder == "truncated" else 2),
        "export": (export.main, ["heatmap", world / "maps" / "Tumor_001.npy", out / "h.png", "--wsi", slide,
                                 "--level", "4"], 2),
        # patch_gen lists the lines of a slide it cannot open in failed.txt and writes the rest (exit 1).
        "patch_gen": (patch_gen.main, [world / folder, world / "coords.txt", out, "--patch_size", "32",
                                       "--num_process", "1"], 1),
    }


@pytest.mark.parametrize("folder", ["truncated", "empty"])
@pytest.mark.parametrize("script", ["tissue_mask", "probs_map", "sample_coords", "annotation_mask", "export",
                                    "patch_gen", "train"])
def test_truncated_and_empty_slides(world, tmp_path, capsys, script, folder):
    if script == "train":
        main, argv, expected = train.main, [write_train_config(world, tmp_path, slides=folder), tmp_path / "out",
                                            "--num_workers", "0"], 2
    else:
        main, argv, expected = slide_cases(world, folder, tmp_path)[script]
    status, err = call(main, argv, capsys)
    assert status == expected
    if expected == 2:
        assert_one_error(err, "Tumor_001.tif")
        left = sorted(p.name for p in (tmp_path / "out").iterdir()) if (tmp_path / "out").exists() else []
        if script == "train":  # cfg.json and the event file are written when training starts; no checkpoint
            left = [name for name in left if name != "cfg.json" and not name.startswith("events.out")]
        assert left == []
    elif expected == 0:
        assert "Traceback" not in err and (tmp_path / "out" / "m.tif").is_file()
    else:
        assert "Traceback" not in err
        assert len((tmp_path / "out" / "failed.txt").read_text().splitlines()) == 16
    assert not temporaries(tmp_path)


# 4. Text that is not UTF-8 --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("script", ["patch_gen", "coords_report", "hard_negatives", "slide_auc", "export",
                                    "Evaluation_FROC", "probs_map", "train", "camelyon16xml2json"])
def test_non_utf8_text_is_one_line_naming_file_and_line(world, tmp_path, capsys, script):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(INVALID_UTF8)
    out = tmp_path / "out"
    w = world
    if script == "patch_gen":
        main, argv = patch_gen.main, [w / "slides", bad, out, "--patch_size", "32", "--num_process", "1"]
    elif script == "coords_report":
        main, argv = coords_report.main, [w / "jsons", "--tumor", bad]
    elif script == "hard_negatives":
        main, argv = hard_negatives.main, [w / "maps", w / "jsons", bad, "--output", out / "n.txt", "--level", "4"]
    elif script == "slide_auc":
        bad.write_bytes(b"Tumor_001,Tumor\nTumor_\xff02,Normal\n")
        main, argv = slide_auc.main, [w / "maps", bad, out / "s.csv"]
    elif script == "export":
        bad.write_bytes(b"0.9,200,200\n0.8,\xff,1\n")
        main, argv = export.main, ["geojson", out / "d.geojson", "--csv", bad]
    elif script == "Evaluation_FROC":
        (tmp_path / "csv").mkdir()
        (tmp_path / "csv" / "Tumor_001.csv").write_bytes(b"0.9,200,200\n0.8,\xff,1\n")
        main, argv = Evaluation_FROC.main, [w / "gt", tmp_path / "csv"]
        bad = tmp_path / "csv" / "Tumor_001.csv"
    elif script == "probs_map":
        listing = tmp_path / "slides.txt"
        listing.write_bytes(str(w / "slides" / "Tumor_001.tif").encode() + b"\n\xff\n")
        main, argv = probs_map.main, [listing, w / "model.ckpt", w / "cfg.json", w / "maps", out, "--num_workers",
                                      "0"]
        bad = listing
    elif script == "train":
        cfg = write_train_config(world, tmp_path, valid_coords=bad)
        main, argv = train.main, [cfg, out, "--num_workers", "0"]
    else:
        xml = tmp_path / "Tumor_001.xml"
        xml.write_bytes((w / "xml" / "Tumor_001.xml").read_bytes().replace(b"Annotation ", b"Annot\xffation ", 1))
        main, argv, bad = camelyon16xml2json.main, [xml, out / "t.json"], xml
    status, err = call(main, argv, capsys)
    assert status == 2
    line = assert_one_error(err, bad.name)
    if script not in ("camelyon16xml2json",):
        assert "line 2" in line
    assert not out.exists() or not any(out.iterdir())
    assert not temporaries(tmp_path)


# 5. Interrupted runs, then re-runs ----------------------------------------------------------------------------------
#: (signal, status, last line): SIGTERM to the process (kill), Ctrl-C to the whole process group (a terminal).
STOPS = {"sigterm": (signal.SIGTERM, 143, "terminated"), "ctrl_c": (signal.SIGINT, 130, "interrupted")}


def start(script, *argv):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, str(ROOT / "wsi" / "bin" / f"{script}.py"), *map(str, argv)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
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


@pytest.mark.parametrize("stop,workers", [("sigterm", 1), ("ctrl_c", 2)])
def test_patch_gen_stopped_then_rerun(world, tmp_path, capsys, stop, workers):
    rows = [("Tumor_001", 40 + (k * 7) % 430, 40 + (k * 13) % 430) for k in range(1500)]
    write_coords(tmp_path / "many.txt", rows)
    out = tmp_path / "out"
    argv = [world / "slides", tmp_path / "many.txt", out, "--patch_size", "64", "--num_process", workers]
    stop_when(start("patch_gen", *argv), lambda: (out / "20.png").exists(), stop)
    assert not temporaries(tmp_path)
    done = len(list(out.glob("*.png")))
    assert 0 < done < len(rows)
    status, err = call(patch_gen.main, argv, capsys)
    assert status == 0, err
    assert len(list(out.glob("*.png"))) == len(rows) and not temporaries(tmp_path)


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


# 6. Junk in an output folder ------------------------------------------------------------------------------------------
#: This machine's name as temporary names spell it (wsi.fileio).
HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())


def dead_pid():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


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


def test_patch_gen_junk_pngs_are_rewritten_and_stale_temporaries_removed(world, tmp_path, capsys):
    out = tmp_path / "out"
    argv = [world / "slides", world / "coords.txt", out, "--patch_size", "32", "--num_process", "1"]
    assert call(patch_gen.main, argv, capsys)[0] == 0
    good = (out / "3.png").read_bytes()
    (out / "3.png").write_bytes(good[:len(good) // 2])  # cut short
    (out / "4.png").write_bytes(b"")
    shutil.copy(out / "5.png", out / "6.png")  # fine PNG, right size: kept
    (out / f".7.abc.{HOST}-{dead_pid()}.tmp.png").write_bytes(b"x")
    (out / ".8.old.tmp.png").write_bytes(b"x")  # an earlier version's temporary name
    status, err = call(patch_gen.main, argv, capsys)
    assert status == 0, err
    assert (out / "3.png").read_bytes() == good and (out / "4.png").stat().st_size > 0
    assert not temporaries(tmp_path)
    assert len(list(out.glob("*.png"))) == 16


def test_train_junk_checkpoint_on_resume_is_one_line(world, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "train.ckpt").write_bytes(b"not a checkpoint")
    cfg = write_train_config(world, tmp_path)
    status, err = call(train.main, [cfg, out, "--num_workers", "0", "--resume"], capsys)
    assert status == 2
    assert_one_error(err, "train.ckpt")
    assert sorted(p.name for p in out.iterdir()) == ["train.ckpt"]


# 7. Numbers out of range, and masks that are not masks ------------------------------------------------------------
OUT_OF_RANGE = [
    ("probs_map", "--batch_size", "0"), ("probs_map", "--num_workers", "-1"),
    ("sample_coords", "--tumor_per_slide", "-5"), ("sample_coords", "--valid_fraction", "nan"),
    ("hard_negatives", "--threshold", "nan"), ("hard_negatives", "--max_per_slide", "-1"),
    ("nms", "--prob_thred", "nan"), ("nms", "--sigma", "-1"),
    ("export", "--alpha", "2"), ("export", "--dpi", "0"),
    ("patch_gen", "--patch_size", "0"), ("patch_gen", "--level", "-1"),
    ("tissue_mask", "--level", "-1"), ("tissue_mask", "--RGB_min", "-3"),
    ("train", "--max_failed_share", "1.5"), ("train", "--epochs", "-1"),
    ("slide_auc", "--k", "0"), ("synthetic_slide", "--size", "0"), ("synthetic_slide", "--seed", "-1"),
    ("coords_report", "--patch_size", "0"), ("annotation_mask", "--tile_size", "0"),
    ("annotation_mask", "--mpp", "inf"),
]


@pytest.mark.parametrize("script,option,value", OUT_OF_RANGE)
def test_numbers_out_of_range_are_refused_before_any_output(world, tmp_path, capsys, script, option, value):
    out = tmp_path / ("out" if script in FOLDER_OUTPUTS else "out.npy")
    main, argv = output_cases(world, out)[script]
    status, err = call(main, [*argv, option, value], capsys)
    assert status == 2
    assert_one_error(err, option)
    assert err.strip().count("\n") == 0 and "usage:" not in err  # one line: argparse's usage block is not printed
    assert list(tmp_path.iterdir()) == []


def test_patch_gen_refuses_a_level_no_slide_has_before_writing(world, tmp_path, capsys):
    status, err = call(patch_gen.main, [world / "slides", world / "coords.txt", tmp_path / "out", "--patch_size",
                                        "32", "--level", "9", "--num_process", "1"], capsys)
    assert status == 2
    assert_one_error(err, "no level 9")
    assert not (tmp_path / "out").exists()


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


def test_xml_folder_mode_prints_one_line_per_bad_xml(world, tmp_path, capsys):
    xml_dir = tmp_path / "xml"
    xml_dir.mkdir()
    good = (world / "xml" / "Tumor_001.xml").read_bytes()
    (xml_dir / "Tumor_001.xml").write_bytes(good)
    (xml_dir / "Tumor_002.xml").write_bytes(good[:len(good) // 2])
    (xml_dir / "Tumor_003.xml").write_bytes(b"")
    status, err = call(camelyon16xml2json.main, [xml_dir, tmp_path / "json"], capsys)
    assert status == 2 and "Traceback" not in err
    lines = [line for line in err.splitlines() if " error: " in line]
    assert len(lines) == 2 and "Tumor_002.xml" in lines[0] and "Tumor_003.xml" in lines[1]
    assert sorted(p.name for p in (tmp_path / "json").iterdir()) == ["Tumor_001.json"]


def test_read_errors_survive_worker_pickling():
    """A DataLoader or pool worker sends its exception to the main process by pickling: it must rebuild."""
    import pickle

    from wsi.data.image_producer import UnreadableImage
    from wsi.data.slide import LevelError, RegionReadError
    from wsi.errors import OutputError

    for err in (RegionReadError("s.tif", 0, (1, 2), (3, 4), "Not a JPEG file"), LevelError("s.tif", 9, [0, 1]),
                OutputError("/x/y.npy", "Read-only file system"), UnreadableImage("3.png", "truncated")):
        copy = pickle.loads(pickle.dumps(err))
        assert type(copy) is type(err) and str(copy) == str(err)
    assert pickle.loads(pickle.dumps(RegionReadError("s.tif", 0, (1, 2), (3, 4), "bad"))).reason == "bad"
