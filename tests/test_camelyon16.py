"""scripts/camelyon16.sh rehearsed on a miniature Camelyon16 download made of synthetic slides.

The tree has the challenge's layout (training/tumor, training/normal, training/lesion_annotations, testing/images,
testing/lesion_annotations, testing/reference.csv) and the GigaDB release's lower-case names (tumor_001.tif, ...).
Every stage runs: preflight, layout, XML -> JSON, sampled validation and train lists, hard negatives with a first
model (the baseline), the final models trained on the fly, tissue masks, maps, NMS, ground-truth masks, FROC, AUC,
exports and the final table. The run is killed midway (SIGKILL to its process group) and run again: the finished
stages are skipped (their log says so and their .done files keep their mtimes) and the run completes.

- ``test_rehearsal_ci``: 2048² slides, 192/64/48-px grids (the demo's, through C16_CFG: the override path a user
  would take), one training step per model, NCRF as the one final model (the baseline is trained and mapped as
  the first model of the mining); about 37 s of CPU.
- ``test_rehearsal_paper_config`` (``slow``): 3072² slides with the shipped configs' 768/256/224 grids, level 6,
  two training steps per model, both final models (maps of 224-px crops on the CPU: ~15 min on 2 cores).
"""

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.helpers import ROOT
from wsi.config import DATASETS
from wsi.synthetic import make_synthetic_slide

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="the scripts need bash")

SCRIPT = ROOT / "scripts" / "camelyon16.sh"


def make_tree(root, size, tumour_size, aperio=False):
    """A Camelyon16-shaped folder: training tumor_001 (train), tumor_101 (valid), normal_001 (train),
    normal_141 (valid); test test_001 (tumour, with an exclusion hole) and test_002 (normal); with ``aperio``,
    test_003 too: a tumour slide of odd size (3001 × 2777) with 4×-step levels (downsamples 1, 4, 16, 64), as
    another scanner writes them."""
    tumour_dir, normal_dir = root / "training" / "tumor", root / "training" / "normal"
    xml_train, images, xml_test = (root / "training" / "lesion_annotations", root / "testing" / "images",
                                   root / "testing" / "lesion_annotations")
    for folder in (tumour_dir, normal_dir, xml_train, images, xml_test):
        folder.mkdir(parents=True)
    common = dict(width=size, height=size, tumour_size=tumour_size, num_tumours=1)
    for seed, pid in enumerate(("tumor_001", "tumor_101")):
        make_synthetic_slide(tumour_dir / f"{pid}.tif", seed=seed, xml_path=xml_train / f"{pid}.xml", **common)
    for seed, pid in enumerate(("normal_001", "normal_141"), start=10):
        make_synthetic_slide(normal_dir / f"{pid}.tif", seed=seed, normal=True, **common)
    make_synthetic_slide(images / "test_001.tif", seed=20, with_hole=True, xml_path=xml_test / "test_001.xml",
                         **common)
    make_synthetic_slide(images / "test_002.tif", seed=21, normal=True, **common)
    reference = "test_001,Tumor,Macro,Primary\ntest_002,Normal,None,None\n"
    if aperio:
        make_synthetic_slide(images / "test_003.tif", seed=22, width=3001, height=2777, tumour_size=tumour_size,
                             num_tumours=1, factor=4, xml_path=xml_test / "test_003.xml")
        reference += "test_003,Tumor,Macro,Primary\n"
    (root / "testing" / "reference.csv").write_text(reference)
    return root


def env_for(overrides):
    return {**os.environ, "PYTHON": sys.executable, "C16_JSONS": "xml", "C16_VALID_PIDS": "Tumor_101 Normal_141",
            "C16_VALID_LISTS": "sample", "C16_DEVICE": "cpu", "C16_NUM_WORKERS": "0", "C16_TORCHRUN": "none",
            "OMP_NUM_THREADS": "1", **overrides}


def run_killed_then_resumed(tree, out, overrides, kill_at, timeout):
    """Start the run, SIGKILL its process group once stage ``kill_at`` has started, run it again to the end.

    Returns (first run's stderr, second run's completed process, {stage: .done mtime} before the second run).
    """
    env = env_for(overrides)
    log = out.parent / "first_run.err"
    with open(log, "w") as err:
        proc = subprocess.Popen(["bash", str(SCRIPT), str(tree), str(out)], env=env, stdout=subprocess.DEVNULL,
                                stderr=err, start_new_session=True)
        deadline = time.monotonic() + timeout
        while f"{kill_at} " not in log.read_text() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        # A second run into the same OUT while the first one works is refused in one line, before any work.
        other = subprocess.run(["bash", str(SCRIPT), str(tree), str(out)], env=env, capture_output=True, text=True,
                               timeout=120)
        assert proc.poll() is None, "the first run ended before the second one started"
        assert other.returncode == 2 and "another run is writing into" in other.stderr, other.stderr
        assert len(other.stderr.strip().splitlines()) == 1, other.stderr
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    first = log.read_text()
    assert f"{kill_at} " in first and "started" in first, first
    done_before = {p.name[:-len(".done")]: p.stat().st_mtime_ns for p in (out / "state").glob("*.done")}
    second = subprocess.run(["bash", str(SCRIPT), str(tree), str(out)], env=env, capture_output=True, text=True,
                            timeout=timeout)
    assert second.returncode == 0, second.stderr[-4000:]
    return first, second, done_before


def read_rows(path):
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def stages(models):
    """The stages of a run with hard negatives, in order."""
    return ["00_check", "01_layout", "02_jsons", "03_coords", "04_hnm_train", "04_hnm_tissue_mask",
            "04_hnm_probs_map", "04_hnm_mine", *[f"05_train_{kind}" for kind in models], "06_tissue_mask",
            "09_gt_masks", *[f"{stage}_{kind}" for kind in models
                             for stage in ("07_probs_map", "08_nms", "10_froc", "11_auc", "12_export")]]


def check_run(out, first, second, done_before, kill_at, level, grid, models, extra_test=()):
    """Every stage ran once, the resumed run skipped exactly the stages finished before the kill, the outputs
    have the original's formats."""
    order = stages(models)
    assert order.index(kill_at) >= 4  # the kill came after some stages had finished
    finished_first = [name for name in order if re.search(rf"\] {name} +finished in", first)]
    assert set(done_before) == set(finished_first) and set(done_before) >= set(order[:order.index(kill_at)])
    assert kill_at not in done_before
    for name in order:
        line = next(line for line in second.stderr.splitlines() if f"] {name} " in line)
        if name in done_before:
            assert "done in an earlier run" in line and "skipped" in line, line
            assert (out / "state" / f"{name}.done").stat().st_mtime_ns == done_before[name]
        elif name == kill_at:  # the interrupted stage continues, its earlier attempt's time counted
            assert "resumed" in line and "s in earlier attempts" in line, line
        else:
            assert "started" in line, line
        assert (out / "state" / f"{name}.done").is_file()
    with open(out / "results" / "timings.tsv", newline="") as handle:
        timings = list(csv.reader(handle, delimiter="\t"))
    assert [row[0] for row in timings] == order
    assert {row[0]: row[2] for row in timings}[kill_at] in ("resumed", "this run")
    assert not list(out.rglob("*.tmp*")), list(out.rglob("*.tmp*"))  # no temporaries left by the kill

    # Preflight: every slide of the tree decoded and usable.
    check_log = (out / "logs" / "00_check.log").read_text()
    assert f"summary: {6 + len(extra_test)} slides" in check_log and f"{6 + len(extra_test)} usable" in check_log
    # The original's names, JSONs split as asked, coordinate lists pid,x,y.
    assert sorted(p.name for p in (out / "slides" / "train").iterdir()) == [
        "Normal_001.tif", "Normal_141.tif", "Tumor_001.tif", "Tumor_101.tif"]
    assert read_rows(out / "slides" / "reference.csv")[:2] == [["Test_001", "Tumor", "Macro", "Primary"],
                                                               ["Test_002", "Normal", "None", "None"]]
    assert sorted(p.name for p in (out / "jsons" / "valid").iterdir()) == ["Normal_141.json", "Tumor_101.json"]
    assert json.loads((out / "jsons" / "all" / "Normal_001.json").read_text()) == {"positive": [], "negative": []}
    for name in DATASETS:
        rows = read_rows(out / "coords" / f"{name}.txt")
        assert rows and all(len(row) == 3 and row[1].isdigit() and row[2].isdigit() for row in rows)
        split = name.split("_")[1]
        assert {row[0] for row in rows} <= ({"Tumor_001", "Normal_001"} if split == "train"
                                            else {"Tumor_101", "Normal_141"})
    random_normals = read_rows(out / "coords" / "random" / "normal_train.txt")
    assert len(read_rows(out / "coords" / "normal_train.txt")) >= len(random_normals)
    assert "hard negatives" in (out / "logs" / "04_hnm_mine.log").read_text()
    # Configs: the shipped values, patch folders replaced by lists and slides.
    # (the first model of the hard-negative mining is the baseline)
    for kind, name in [(kind, kind) for kind in models] + [("base", "hnm_base")]:
        cfg = json.loads((out / "configs" / f"{name}.json").read_text())
        assert cfg["use_crf"] is (kind == "crf") and (cfg["image_size"], cfg["patch_size"], cfg["crop_size"]) == grid
        assert not any(key.startswith("data_path_") for key in cfg)
        folder = out / "ckpt" / ("hnm" if name.startswith("hnm") else kind)
        assert (folder / "best.ckpt").is_file() and (folder / "train.ckpt").is_file()
    # Maps [x, y] at the level, masks bool, detections prob,x,y, FROC JSON, slide scores, exports.
    # Each slide's level is the one nearest 64 level-0 pixels per cell (6 on the 2x slides, 3 on the 4x one),
    # carried in the sidecars, which nms and export read.
    import openslide
    for stem in ("Test_001", "Test_002", *extra_test):
        with openslide.OpenSlide(str(out / "slides" / "test" / f"{stem}.tif")) as slide:
            slide_level = level if stem not in extra_test else 3
            assert slide.level_downsamples[slide_level] == pytest.approx(64, rel=0.02)
            shape = slide.level_dimensions[slide_level]
        assert np.load(out / "tissue_masks" / "test" / f"{stem}.npy").dtype == bool
        assert json.loads((out / "tissue_masks" / "test" / f"{stem}.json").read_text())["level"] == slide_level
        for kind in models:
            probs = np.load(out / "probs" / kind / f"{stem}.npy")
            assert json.loads((out / "probs" / kind / f"{stem}.json").read_text())["level"] == slide_level
            assert probs.shape == shape and probs.dtype == np.float64 and 0 <= probs.min() <= probs.max() <= 1
            for row in read_rows(out / "csv" / kind / f"{stem}.csv"):
                assert len(row) == 3 and len(row[0].split(".")[1]) == 5 and row[1].isdigit()
            assert (out / "export" / kind / f"{stem}.geojson").is_file()
    assert (out / "gt_masks" / "Test_001.tif").is_file() and not (out / "gt_masks" / "Test_002.tif").exists()
    for kind in models:
        froc = json.loads((out / "results" / f"{kind}_froc.json").read_text())
        assert 0 <= froc["froc"] <= 1 and froc["num_slides"] == 2 + len(extra_test)
        assert froc["num_tumours"] == 1 + len(extra_test)
        assert "Avg Sensivity" in (out / "logs" / f"10_froc_{kind}.log").read_text()
        assert read_rows(out / "results" / f"{kind}_slide_scores.csv")[0] == ["slide", "score", "label"]
    summary = (out / "results" / "summary.txt").read_text()
    assert summary in second.stdout
    for text in ("Test_049 and Test_114 excluded", "Time per stage", "(an earlier run)"):
        assert text in summary
    if "crf" in models:
        assert "NCRF (ResNet-18 + CRF)" in summary and "0.8096" in summary
    if "base" in models:
        assert "ResNet-18 baseline" in summary and "0.7825" in summary and "0.7478" in summary


def test_rehearsal_ci(tmp_path):
    """The whole command at the default level on 2048² slides and a 4×-step slide, with 192/64/48-px grids,
    killed during the NCRF's NMS (a second run into the same OUT meanwhile is refused), then resumed."""
    # Lesions must be longer than the FROC's isolated-tumour-cell size (~1150 px at 0.243 µm/px).
    tree = make_tree(tmp_path / "CAMELYON16", size=2048, tumour_size=(1200, 1300), aperio=True)
    out = tmp_path / "run"
    overrides = {
        "C16_CFG": json.dumps({"image_size": 192, "patch_size": 64, "crop_size": 48, "batch_size": 4, "epoch": 1,
                               "log_every": 1}),
        "C16_SAMPLE_ARGS": "--tumor_per_slide 4 --normal_per_slide 2",  # one step of 4 + 4 grids
        "C16_VALID_SAMPLE_ARGS": "--tumor_per_slide 2 --normal_per_slide 1",
        "C16_HNM_ARGS": "--threshold 0 --max_per_slide 2",  # an untrained first model: take its highest cells
        "C16_PROB_THRED": "0", "C16_FORMATS": "geojson",
        "C16_PROBS_ARGS": "--num_workers 0 --runtime torch",  # PyTorch's pass: OpenVINO's tests are test_runtime's
        # One final model keeps the test fast; the baseline's config is trained and mapped as the first model of
        # the hard-negative mining, and the slow test runs both final models.
        "C16_MODELS": "crf",
    }
    first, second, done_before = run_killed_then_resumed(tree, out, overrides, "08_nms_crf", timeout=600)
    check_run(out, first, second, done_before, "08_nms_crf", level=6, grid=(192, 64, 48), models=["crf"],
              extra_test=("Test_003",))


@pytest.mark.slow
def test_rehearsal_paper_config(tmp_path):
    """The shipped configs' 768/256/224 grids at the default level (6 on the 2× slides, 3 on the 4×-step one),
    batch 2 (two training steps), killed during training."""
    tree = make_tree(tmp_path / "CAMELYON16", size=3072, tumour_size=(1300, 1600), aperio=True)
    out = tmp_path / "run"
    overrides = {
        "C16_CFG": json.dumps({"batch_size": 2, "epoch": 1, "log_every": 1}),
        "C16_SAMPLE_ARGS": "--tumor_per_slide 4 --normal_per_slide 2",
        "C16_VALID_SAMPLE_ARGS": "--tumor_per_slide 2 --normal_per_slide 1",
        "C16_HNM_ARGS": "--threshold 0 --max_per_slide 2",
        "C16_PROB_THRED": "0", "C16_PROBS_ARGS": "--num_workers 1",
    }
    first, second, done_before = run_killed_then_resumed(tree, out, overrides, "05_train_base", timeout=3000)
    check_run(out, first, second, done_before, "05_train_base", level=6, grid=(768, 256, 224),
              models=["crf", "base"], extra_test=("Test_003",))
    print(second.stdout)  # the summary: its stage table goes into the README


def test_bad_arguments_are_one_line(tmp_path):
    env = env_for({})
    proc = subprocess.run(["bash", str(SCRIPT), str(tmp_path / "nowhere"), str(tmp_path / "out")], env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.strip().endswith("nowhere: no such folder")
    (tmp_path / "c16" / "training").mkdir(parents=True)
    proc = subprocess.run(["bash", str(SCRIPT), str(tmp_path / "c16"), str(tmp_path / "out")], env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "training/tumor: no such folder (expected the Camelyon16 layout)" in proc.stderr
    proc = subprocess.run(["bash", str(SCRIPT), str(tmp_path / "c16")], env=env, capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.startswith("usage:")
    for sub in ("tumor", "normal", "lesion_annotations"):
        (tmp_path / "c16" / "training" / sub).mkdir()
    (tmp_path / "c16" / "testing" / "images").mkdir(parents=True)
    proc = subprocess.run(["bash", str(SCRIPT), str(tmp_path / "c16"), str(ROOT)], env=env, capture_output=True,
                          text=True)
    assert proc.returncode == 2 and "in the repository" in proc.stderr
    assert (ROOT / "jsons" / "train").is_dir() and not (ROOT / "state").exists()


def test_own_lists_and_a_failing_stage(tmp_path):
    """C16_COORDS: the user's train lists are used as they are (no sampling, no mining); a stage that fails stops
    the run with the end of its log, exit 1, and leaves no .done, so the next run retries it."""
    tree = make_tree(tmp_path / "CAMELYON16", size=1024, tumour_size=(300, 400))
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "tumor_train.txt").write_text("Tumor_001,500,500\nTumor_999,500,500\n")  # no such slide
    (lists / "normal_train.txt").write_text("Normal_001,400,400\n")
    out = tmp_path / "run"
    env = env_for({"C16_COORDS": str(lists), "C16_CHECK": "skip", "C16_CFG": SMALL_SETTINGS["C16_CFG"],
                   "C16_VALID_SAMPLE_ARGS": "--tumor_per_slide 1 --normal_per_slide 1"})
    proc = subprocess.run(["bash", str(SCRIPT), str(tree), str(out)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 1
    assert "05_train_crf FAILED" in proc.stderr and "Tumor_999" in proc.stderr and "no such slide" in proc.stderr
    assert "Fix the cause and run the same command again" in proc.stderr
    assert "04_hnm" not in proc.stderr  # own lists: no mining
    for name in ("tumor_train", "normal_train"):
        assert (out / "coords" / f"{name}.txt").read_text() == (lists / f"{name}.txt").read_text()
    assert sorted(p.name for p in (out / "state").glob("*.done")) == ["01_layout.done", "02_jsons.done",
                                                                     "03_coords.done"]
    assert (out / "state" / "05_train_crf.run").is_file()  # the failed attempt: retried by the next run


# Recovery: every case below recovers by running the same command again, or is refused in one line before any work.
SMALL_SETTINGS = {
    "C16_CHECK": "skip", "C16_HNM": "0", "C16_MODELS": "crf", "C16_PROB_THRED": "0", "C16_FORMATS": "geojson",
    "C16_PROBS_ARGS": "--runtime torch",  # PyTorch's pass: OpenVINO's own tests are test_runtime.py's
    "C16_CFG": json.dumps({"image_size": 192, "patch_size": 64, "crop_size": 48, "batch_size": 2, "epoch": 1,
                           "log_every": 1}),
    "C16_SAMPLE_ARGS": "--tumor_per_slide 2 --normal_per_slide 1",
    "C16_VALID_SAMPLE_ARGS": "--tumor_per_slide 1 --normal_per_slide 1",
}


@pytest.fixture(scope="module")
def small_tree(tmp_path_factory):
    """A 1024² miniature download, shared by the recovery tests (each works on its own copy)."""
    return make_tree(tmp_path_factory.mktemp("c16") / "CAMELYON16", size=1024, tumour_size=(300, 400))


def copy_tree(small_tree, tmp_path):
    return shutil.copytree(small_tree, tmp_path / "CAMELYON16", symlinks=True)


def run(tree, out, **overrides):
    return subprocess.run(["bash", str(SCRIPT), str(tree), str(out)], env=env_for({**SMALL_SETTINGS, **overrides}),
                          capture_output=True, text=True, timeout=600)


def stage_line(proc, name):
    return next(line for line in proc.stderr.splitlines() if f"] {name} " in line)


def test_bad_xml_then_fixed_then_changed_settings(small_tree, tmp_path):
    """A truncated XML fails 02_jsons (no .done, nothing sampled); fixed, the same command redoes it and saying why.
    Changed sample settings redo 03_coords alone; sampling validation lists from slides that are not there is one
    line, and 03_coords is not marked done."""
    tree, out = copy_tree(small_tree, tmp_path), tmp_path / "run"
    xml = tree / "training" / "lesion_annotations" / "tumor_001.xml"
    good = xml.read_bytes()
    xml.write_bytes(good[:len(good) // 2])
    proc = run(tree, out, C16_UNTIL="03_coords")
    assert proc.returncode == 1 and "02_jsons FAILED" in proc.stderr, proc.stderr
    assert "Tumor_001.xml" in proc.stderr
    assert sorted(p.name for p in (out / "state").glob("*.done")) == ["01_layout.done"]
    assert not (out / "coords").exists()

    xml.write_bytes(good)  # fixed: the same command again
    proc = run(tree, out, C16_UNTIL="03_coords")
    assert proc.returncode == 0, proc.stderr
    assert "skipped" in stage_line(proc, "01_layout")
    assert re.search(r"redone: .*Tumor_001\.xml.* changed", stage_line(proc, "02_jsons")), proc.stderr
    assert "started" in stage_line(proc, "03_coords") and "stopped after 03_coords" in proc.stderr
    assert sorted(p.name for p in (out / "jsons" / "all").iterdir()) == [
        "Normal_001.json", "Normal_141.json", "Tumor_001.json", "Tumor_101.json"]
    assert len(read_rows(out / "coords" / "random" / "tumor_train.txt")) == 2

    proc = run(tree, out, C16_UNTIL="03_coords", C16_SAMPLE_ARGS="--tumor_per_slide 3 --normal_per_slide 1")
    assert proc.returncode == 0, proc.stderr
    assert "skipped" in stage_line(proc, "02_jsons")
    assert "redone: C16_SAMPLE_ARGS changed" in stage_line(proc, "03_coords")
    assert len(read_rows(out / "coords" / "random" / "tumor_train.txt")) == 3

    # The shipped JSONs (the original's polygons, not this download's): the lists come out empty, and the stage
    # says so instead of finishing.
    proc = run(tree, out, C16_UNTIL="03_coords", C16_JSONS="shipped")
    assert proc.returncode == 1 and "03_coords FAILED" in proc.stderr
    assert re.search(r"coords/\S+\.txt: empty list", proc.stderr), proc.stderr
    assert "redone: C16_JSONS, " in stage_line(proc, "02_jsons")  # and the shipped JSONs it now reads
    assert not (out / "state" / "03_coords.done").exists()


def test_redo_training_with_another_lr(small_tree, tmp_path):
    """Another lr redoes training as a new run (the old one moved aside, not resumed as finished) and the maps
    after it; cfg.json describes the new weights. Deleting a .done by hand redoes that stage the same way."""
    tree, out = copy_tree(small_tree, tmp_path), tmp_path / "run"
    until = {"C16_UNTIL": "07_probs_map_crf"}
    proc = run(tree, out, **until)
    assert proc.returncode == 0, proc.stderr
    ckpt, maps = out / "ckpt" / "crf", out / "probs" / "crf"
    best = (ckpt / "best.ckpt").read_bytes()
    map_time = (maps / "Test_001.npy").stat().st_mtime_ns

    cfg = {**json.loads(SMALL_SETTINGS["C16_CFG"]), "lr": 0.5}
    proc = run(tree, out, C16_CFG=json.dumps(cfg), **until)
    assert proc.returncode == 0, proc.stderr
    assert "redone: config changed" in stage_line(proc, "05_train_crf")
    assert "skipped" in stage_line(proc, "06_tissue_mask")
    assert "redone: 05_train_crf (redone) changed" in stage_line(proc, "07_probs_map_crf")
    aside = [p for p in (out / "ckpt").iterdir() if p.name.startswith("crf.")]
    assert len(aside) == 1 and (aside[0] / "best.ckpt").read_bytes() == best
    assert json.loads((aside[0] / "cfg.json").read_text())["lr"] == 0.001
    assert json.loads((ckpt / "cfg.json").read_text())["lr"] == 0.5
    assert (ckpt / "best.ckpt").read_bytes() != best
    assert "nothing to do" not in (out / "logs" / "05_train_crf.log").read_text()
    assert (maps / "Test_001.npy").stat().st_mtime_ns != map_time
    assert "exists, skipped" not in (out / "logs" / "07_probs_map_crf.log").read_text()

    (out / "state" / "05_train_crf.done").unlink()
    proc = run(tree, out, C16_CFG=json.dumps(cfg), **until)
    assert proc.returncode == 0, proc.stderr
    assert "redone: its .done was deleted" in stage_line(proc, "05_train_crf")
    assert "redone" in stage_line(proc, "07_probs_map_crf")
    assert len([p for p in (out / "ckpt").iterdir() if p.name.startswith("crf.")]) == 2
    # Each run logged to its own file; logs/<stage>.log is the latest.
    assert len(list((out / "logs").glob("05_train_crf.*.log"))) == 3
    assert "05_train_crf redo" in (out / "logs" / "05_train_crf.log").read_text().splitlines()[0]


def test_damaged_test_slide_replaced(small_tree, tmp_path):
    """A test slide with unreadable tiles fails 07 with its positions listed; after a good copy is put back (same
    size and time, so no setting or input changed), the same command computes that map again and completes."""
    from tests.helpers import tiles_across, zero_tile

    tree, out = copy_tree(small_tree, tmp_path), tmp_path / "run"
    slide = tree / "testing" / "images" / "test_001.tif"
    good = slide.read_bytes()
    across = tiles_across(slide, 0)
    for col, row in ((1, 1), (2, 1), (1, 2), (2, 2)):  # the middle of the slide, level 0 only
        zero_tile(slide, 0, row * across + col)
    stat = slide.stat()
    until = {"C16_UNTIL": "07_probs_map_crf"}
    proc = run(tree, out, **until)
    assert proc.returncode == 1 and "07_probs_map_crf FAILED" in proc.stderr, proc.stderr
    assert "Test_001: positions that could not be read" in proc.stderr and "replace it" in proc.stderr
    assert (out / "probs" / "crf" / "Test_001.failed.txt").is_file()
    assert not (out / "state" / "07_probs_map_crf.done").exists()

    slide.write_bytes(good)  # a good copy, same size and time
    os.utime(slide, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    proc = run(tree, out, **until)
    assert proc.returncode == 0, proc.stderr
    assert "resumed" in stage_line(proc, "07_probs_map_crf")
    assert "Test_001.failed.txt lists positions that could not be read: computing it again" in \
        (out / "logs" / "07_probs_map_crf.log").read_text()  # probs_map.py's own rule, not the script's
    assert not list((out / "probs" / "crf").glob("*.failed.txt"))
    assert np.load(out / "probs" / "crf" / "Test_001.npy").shape == (16, 16)


def test_out_dir_and_settings_refused_before_any_work(tmp_path):
    """OUT_DIR that is (or lies in) the repository or the download under any spelling, a folder with the user's
    own files, malformed settings: one line, exit 2, nothing created or removed."""
    c16 = tmp_path / "c16"
    for sub in ("training/tumor", "training/normal", "training/lesion_annotations", "testing/images"):
        (c16 / sub).mkdir(parents=True)
    link = tmp_path / "repo_link"
    link.symlink_to(ROOT)
    c16_link = tmp_path / "c16_link"
    c16_link.symlink_to(c16)
    shipped = sorted(p.name for p in (ROOT / "jsons" / "train").iterdir())

    def refused(out, text, **overrides):
        proc = subprocess.run(["bash", str(SCRIPT), str(c16), str(out)], env=env_for(overrides), capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 2 and text in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        return proc

    for out in (link, f"{link}/", ROOT / "jsons" / "..", link / "run", ROOT / "new_run"):
        refused(out, "in the repository")
    assert not (ROOT / "new_run").exists() and not (ROOT / "state").exists()
    for out in (c16, f"{c16_link}/", c16_link / "testing" / ".." / "run"):
        refused(out, "in the download")
    assert sorted(p.name for p in (ROOT / "jsons" / "train").iterdir()) == shipped

    own = tmp_path / "mine"
    (own / "jsons").mkdir(parents=True)
    (own / "jsons" / "Tumor_001.json").write_text("{}")
    refused(own, "holds files this command did not write")
    assert (own / "jsons" / "Tumor_001.json").read_text() == "{}" and sorted(os.listdir(own)) == ["jsons"]

    fresh = tmp_path / "fresh"
    refused(fresh, "C16_CFG: not valid JSON", C16_CFG='{"epoch": 1')
    refused(fresh, "C16_CFG: expected a JSON object", C16_CFG="[1]")
    refused(fresh, "'lr' must be a number", C16_CFG='{"lr": "fast"}')
    refused(fresh, "unknown key 'epochs'", C16_CFG='{"epochs": 1}')
    refused(fresh, "C16_MODEL: no such setting", C16_MODEL="crf")
    refused(fresh, "C16_LEVEL: auto or a level number", C16_LEVEL="six")
    refused(fresh, "C16_PROB_THRED: a probability", C16_PROB_THRED="2")
    refused(fresh, "C16_SAMPLE_ARGS: sample_coords.py refuses", C16_SAMPLE_ARGS="--tumour_per_slide 3")
    refused(fresh, "C16_UNTIL: '99_x' is not a stage", C16_UNTIL="99_x")
    assert not fresh.exists()


def test_summary_explains_a_froc_without_thresholds_and_resumed_times(tmp_path):
    """Every score equal (all detections 1.00000): the organisers' rule leaves no threshold and FROC 0, and the
    summary says why; a resumed stage's time includes its interrupted attempts."""
    results = tmp_path / "results"
    results.mkdir()
    (results / "crf_froc.json").write_text(json.dumps({"froc": 0.0, "num_slides": 2, "num_tumours": 1,
                                                       "curve": {"thresholds": []}}))
    (results / "crf_slide_scores.csv").write_text("slide,score,label\nTest_001,1.0,Tumor\nTest_002,1.0,Normal\n")
    (results / "timings.tsv").write_text("01_layout\t0.5\tearlier\n05_train_crf\t120.0\tresumed\n")
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "camelyon16_report.py"), str(tmp_path), "", "crf"],
                          capture_output=True, text=True, check=True)
    assert "FROC was computed without thresholds" in proc.stdout and "drops the lowest" in proc.stdout
    assert re.search(r"05_train_crf +120\.0  \(resumed: with the interrupted attempts\)", proc.stdout)
    assert "total" in proc.stdout and "120.5" in proc.stdout


def stage_functions(*names):
    """The bodies of camelyon16.sh's stage functions ``names`` (``froc() { ... }``), as bash source."""
    text = SCRIPT.read_text()
    return "\n".join(re.search(rf"^{name}\(\) {{.*?^}}", text, re.S | re.M).group(0) for name in names)


def test_froc_and_auc_stages_apply_c16_exclude(tmp_path):
    # The stages themselves (camelyon16.sh's froc and auc, running 10_froc.sh and 11_auc.sh for real) on a tiny
    # tree where Test_049 is present: the rehearsal has no Test_049/Test_114, so it cannot tell.
    from wsi.data.pyramid import write_pyramid_from_array

    d = tmp_path / "c16"
    for folder in ("gt_masks", "csv/crf", "probs/crf", "slides", "results"):
        (d / folder).mkdir(parents=True)
    design = np.zeros((64, 64), np.uint8)
    design[4:12, 4:48] = 255  # one lesion; level 5 of a 2048² slide
    write_pyramid_from_array(d / "gt_masks" / "Test_001.tif", np.kron(design, np.ones((32, 32), np.uint8)),
                             compression="zlib", resample="nearest")
    (d / "csv" / "crf" / "Test_001.csv").write_text("0.90000,800,250\n0.40000,800,1500\n")
    (d / "csv" / "crf" / "Test_049.csv").write_text("0.99000,10,10\n0.98000,20,20\n")  # normal: FPs if counted
    for stem, top in (("Test_001", 0.9), ("Test_002", 0.2), ("Test_049", 0.95)):
        np.save(d / "probs" / "crf" / f"{stem}.npy", np.full((4, 4), top))
    (d / "slides" / "reference.csv").write_text("Test_001,Tumor,Macro,Primary\nTest_002,Normal,None,None\n"
                                                "Test_049,Normal,None,None\n")
    script = "\n".join([
        'fail() { echo "error: $*"; return 1; }',
        stage_functions("froc", "auc"),
        "froc crf && auc crf",
    ])
    env = {**os.environ, "PYTHON": sys.executable, "D": str(d), "RESULTS": str(d / "results"),
           "SCRIPTS": str(ROOT / "scripts"), "C16_EXCLUDE": "Test_049,Test_114", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    froc = json.loads((d / "results" / "crf_froc.json").read_text())
    assert sorted(froc["slides"]) == ["Test_001"] and froc["num_slides"] == 1
    scores = (d / "results" / "crf_slide_scores.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in scores] == ["slide", "Test_001", "Test_002"]
