"""The end-to-end demo (scripts/demo.sh and the numbered stage scripts) on a tiny configuration.

The full demo (4096² slides, 56-px crops, two trained models, FROC ≥ 0.7) takes minutes; here the same scripts
run on 2048² slides, 32-px crops and two training steps per model, and every stage's output is checked for
existence, format and sane values (not for accuracy: that is the full demo's job).
"""

import csv
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import openslide
import pytest
import torch
from PIL import Image

from tests.helpers import ROOT
from wsi.config import DATASETS
from wsi.data.annotation import Annotation

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="the demo scripts need bash")

SIZE = 2048
LEVEL = 6
TINY = {
    "DEMO_SLIDE_SIZE": str(SIZE),
    "DEMO_NUM_TRAIN_TUMOR": "2",   # Tumor_001 trains, Tumor_002 validates
    "DEMO_NUM_TRAIN_NORMAL": "1",  # Normal_001 validates (training normals come from Tumor_001's normal tissue)
    "DEMO_NUM_TEST_TUMOR": "1",
    "DEMO_NUM_TEST_NORMAL": "1",
    "DEMO_TUMORS_PER_SLIDE": "1",
    "DEMO_TUMOR_SIZE": "1200 1300",  # above the FROC's isolated-tumour-cell size (~1150 px at 0.243 µm/px)
    "DEMO_TUMOR_PER_SLIDE": "20",    # 20 tumour grids: two training steps of 10
    "DEMO_NORMAL_PER_SLIDE": "20",
    "DEMO_CFG": json.dumps({"crop_size": 32, "epoch": 1, "log_every": 1}),
    "DEMO_NUM_WORKERS": "0",
}
TEST_SLIDES = ["Normal_101", "Tumor_101"]


def run_script(args, env_vars, cwd):
    env = {**os.environ, "PYTHON": sys.executable, **env_vars}
    return subprocess.run(["bash", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """One tiny demo run; returns (demo folder, completed process)."""
    out = tmp_path_factory.mktemp("demo") / "out"
    # Under the network guard, with a fresh $HOME (test_the_demo_opens_no_connection_and_leaves_no_telemetry_state).
    guarded = {"PYTHONPATH": os.pathsep.join([str(ROOT / "tests" / "network_guard"), str(ROOT)]),
               "NETWORK_GUARD_LOG": str(out.parent / "network.log"), "HOME": str(out.parent / "home"),
               "CI": "", "TF_BUILD": "", "JENKINS_URL": ""}
    (out.parent / "home").mkdir()
    proc = run_script([str(ROOT / "scripts" / "demo.sh")], {**TINY, "DEMO_DIR": str(out), **guarded}, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    return out, proc


def read_rows(path, delimiter=","):
    with open(path, newline="") as handle:
        return list(csv.reader(handle, delimiter=delimiter))


def test_demo_prints_the_table_and_the_stage_times(demo):
    out, proc = demo
    summary = (out / "results" / "summary.txt").read_text()
    assert summary in proc.stdout
    for name in ("NCRF (ResNet-18 + CRF)", "ResNet-18 baseline", "Time per stage", "Outputs", str(out)):
        assert name in summary
    timings = read_rows(out / "results" / "timings.tsv", delimiter="\t")
    stages = [row[0] for row in timings]
    assert stages == ["01_synthetic", "02_xml2json", "03_sample_coords", "05_train_crf", "05_train_base",
                      "06_tissue_mask", "09_gt_masks",
                      *[f"{stage}_{tag}" for tag in ("crf", "base")
                        for stage in ("07_probs_map", "08_nms", "10_froc", "11_auc", "12_export")]]
    assert all(float(seconds) >= 0 for _, seconds in timings)
    # each stage also printed its time on stderr
    assert "05_train_crf" in proc.stderr and "12_export_base" in proc.stderr


def test_synthetic_slides_annotations_and_coordinate_lists(demo):
    out, _ = demo
    for pid in ("Tumor_001", "Tumor_002", "Normal_001"):
        with openslide.OpenSlide(str(out / "train" / f"{pid}.tif")) as slide:
            assert slide.dimensions == (SIZE, SIZE)
        annotation = Annotation.from_json(out / "jsons" / f"{pid}.json")
        assert len(annotation.positive) == (1 if pid.startswith("Tumor") else 0)
    assert read_rows(out / "test" / "reference.csv") == [["Normal_101", "Normal"], ["Tumor_101", "Tumor"]]

    lists = {}
    for name in DATASETS:
        rows = read_rows(out / "coords" / f"{name}.txt")
        assert rows and all(len(row) == 3 for row in rows)
        lists[name] = [(pid, int(x), int(y)) for pid, x, y in rows]
    assert {pid for pid, _, _ in lists["tumor_train"]} == {"Tumor_001"}
    assert {pid for pid, _, _ in lists["tumor_valid"]} == {"Tumor_002"}
    assert {pid for pid, _, _ in lists["normal_valid"]} == {"Tumor_002", "Normal_001"}
    assert len(lists["tumor_train"]) == 20
    for name, rows in lists.items():
        for pid in {pid for pid, _, _ in rows}:
            points = np.array([(x, y) for p, x, y in rows if p == pid])
            labels = Annotation.from_json(out / "jsons" / f"{pid}.json").inside_polygons(points)
            assert labels.all() if name.startswith("tumor") else not labels.any()

    # the run's configs: the repository's demo configs with the paths moved into the demo folder
    for kind, crf in (("crf", True), ("base", False)):
        cfg = json.loads((out / "configs" / f"demo_{kind}.json").read_text())
        repo_cfg = json.loads((ROOT / "configs" / f"demo_{kind}.json").read_text())
        assert list(cfg) == list(repo_cfg)
        assert cfg["use_crf"] is crf and cfg["crop_size"] == 32 and cfg["epoch"] == 1
        assert cfg["coords_tumor_train"] == f"{out}/coords/tumor_train.txt"


def test_training_wrote_checkpoints_and_tensorboard(demo):
    out, _ = demo
    for kind, crf in (("crf", True), ("base", False)):
        run = out / "runs" / kind
        assert {"cfg.json", "train.ckpt", "best.ckpt"} <= {p.name for p in run.iterdir()}
        assert list(run.glob("events.out.tfevents.*"))
        ckpt = torch.load(run / "best.ckpt", map_location="cpu", weights_only=True)
        assert ckpt["epoch"] == 1 and ckpt["step"] == 2
        assert ("crf.W" in ckpt["state_dict"]) is crf
        assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())


def test_tissue_masks_probability_maps_and_detections(demo):
    out, _ = demo
    shape = (SIZE >> LEVEL, SIZE >> LEVEL)
    for stem in TEST_SLIDES:
        tissue = np.load(out / "tissue_masks" / f"{stem}.npy")
        assert tissue.dtype == bool and tissue.shape == shape and 0.1 < tissue.mean() < 0.9
        for tag in ("crf", "base"):
            probs = np.load(out / "probs" / tag / f"{stem}.npy")
            assert probs.dtype == np.float64 and probs.shape == shape
            assert np.all(probs[~tissue] == 0) and np.all((probs >= 0) & (probs <= 1))
            assert probs[tissue].min() > 0
            rows = read_rows(out / "csv" / tag / f"{stem}.csv")
            assert all(len(row) == 3 for row in rows)
            values = [float(p) for p, _, _ in rows]
            assert values == sorted(values, reverse=True) and all(v > 0.5 for v in values)
            for p, x, y in rows:
                assert len(p.split(".")[1]) == 5
                i, j = (int(x) - 32) // 64, (int(y) - 32) // 64
                assert tissue[i, j] and (int(x) - 32) % 64 == 0 and (int(y) - 32) % 64 == 0


def test_ground_truth_masks_froc_and_auc(demo):
    out, proc = demo
    with openslide.OpenSlide(str(out / "gt_masks" / "Tumor_101.tif")) as mask:
        assert mask.dimensions == (SIZE, SIZE) and mask.level_count > 5
        level5 = np.asarray(mask.read_region((0, 0), 5, mask.level_dimensions[5]).convert("L"))
        assert set(np.unique(level5)) == {0, 255} and 0.05 < (level5 == 255).mean() < 0.5
    assert not (out / "gt_masks" / "Normal_101.tif").exists()
    for tag in ("crf", "base"):
        froc = json.loads((out / "results" / f"{tag}_froc.json").read_text())
        assert 0 <= froc["froc"] <= 1 and froc["num_slides"] == 2 and froc["num_tumours"] == 1
        assert (out / "results" / f"{tag}_froc.png").stat().st_size > 0
        assert "Avg Sensivity = " in (out / "logs" / f"10_froc_{tag}.log").read_text()
        scores = read_rows(out / "results" / f"{tag}_slide_scores.csv")
        assert scores[0] == ["slide", "score", "label"]
        assert sorted((row[0], row[2]) for row in scores[1:]) == [("Normal_101", "Normal"), ("Tumor_101", "Tumor")]
        assert all(0 <= float(row[1]) <= 1 for row in scores[1:])
        assert "AUC = " in (out / "logs" / f"11_auc_{tag}.log").read_text()


def test_exports_for_viewers(demo, tmp_path):
    out, _ = demo
    assert not list((out / "export").rglob("*.xml"))  # the demo writes heatmaps and GeoJSON
    for tag in ("crf", "base"):
        for stem in TEST_SLIDES:
            with Image.open(out / "export" / tag / f"{stem}.png") as image:
                assert image.size[0] > 100 and image.size[1] > 100
            geojson = json.loads((out / "export" / tag / f"{stem}.geojson").read_text())
            assert geojson["type"] == "FeatureCollection"
            detections = read_rows(out / "csv" / tag / f"{stem}.csv")
            points = [f for f in geojson["features"] if f["geometry"]["type"] == "Point"]
            assert len(points) == len(detections)
            for feature in geojson["features"]:
                assert feature["properties"]["classification"]["name"] == "Tumor"
    # ASAP XML, on request
    proc = run_script([str(ROOT / "scripts" / "12_export.sh")],
                      {"PROBS_DIR": str(out / "probs" / "crf"), "CSV_DIR": str(out / "csv" / "crf"),
                       "WSI_DIR": str(out / "test"), "EXPORT_DIR": str(tmp_path), "FORMATS": "xml"}, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{stem}.xml" for stem in TEST_SLIDES]
    for stem in TEST_SLIDES:
        assert ET.parse(tmp_path / f"{stem}.xml").getroot().tag == "ASAP_Annotations"


def test_untrained_control_and_patch_gen(demo, tmp_path):
    """DEMO_UNTRAINED=1 evaluates randomly initialised models (no training); 04_patch_gen.sh writes PNG folders."""
    out, _ = demo
    control = tmp_path / "control"
    proc = run_script([str(ROOT / "scripts" / "demo.sh")],
                      {**TINY, "DEMO_DIR": str(control), "DEMO_UNTRAINED": "1", "DEMO_MODELS": "crf"}, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "NCRF (ResNet-18 + CRF) untrained" in proc.stdout
    assert "baseline" not in proc.stdout
    assert sorted(p.name for p in (control / "runs").iterdir()) == ["crf_untrained"]
    for tag in ("crf_untrained",):
        ckpt = torch.load(control / "runs" / tag / "best.ckpt", map_location="cpu", weights_only=True)
        assert ckpt["epoch"] == 0 and ckpt["step"] == 0
        assert json.loads((control / "results" / f"{tag}_froc.json").read_text())["num_tumours"] == 1
    assert "05_train" not in (control / "results" / "timings_untrained.tsv").read_text()
    assert (control / "results" / "summary_untrained.txt").read_text() in proc.stdout

    proc = run_script([str(ROOT / "scripts" / "04_patch_gen.sh")],
                      {"WSI_DIR": str(out / "train"), "COORDS_DIR": str(out / "coords"), "LISTS": "tumor_valid",
                       "PATCH_DIR": str(tmp_path / "patches"), "PATCH_SIZE": "192", "NUM_PROCESS": "1"}, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder = tmp_path / "patches" / "tumor_valid"
    assert (folder / "list.txt").read_text() == (out / "coords" / "tumor_valid.txt").read_text()
    pngs = sorted(folder.glob("*.png"))
    assert len(pngs) == 20
    with Image.open(pngs[0]) as image:
        assert image.size == (192, 192) and image.mode == "RGB"


def test_a_stage_script_stops_on_the_first_error(tmp_path):
    proc = run_script([str(ROOT / "scripts" / "06_tissue_mask.sh")],
                      {"WSI_DIR": str(tmp_path / "missing"), "MASK_DIR": str(tmp_path / "masks")}, cwd=tmp_path)
    assert proc.returncode != 0 and "missing: no such folder of slides" in proc.stderr
    proc = run_script([str(ROOT / "scripts" / "08_nms.sh")],
                      {"PROBS_DIR": str(tmp_path), "CSV_DIR": str(tmp_path / "csv")}, cwd=tmp_path)
    assert proc.returncode != 0 and "no .npy probability maps in this folder" in proc.stderr


def test_lymphoid_follicles_are_dark_normal_tissue(tmp_path):
    """The demo's slides have lymphoid follicles (synthetic_slide.py --lymphoid): normal tissue darker than tumour
    at low magnification, outside the annotation and the mask; the rest of the layout is unchanged."""
    from wsi.synthetic import make_synthetic_slide, plan_slide

    kwargs = dict(seed=3, num_tumours=1, tumour_size=(700, 800))
    result = make_synthetic_slide(tmp_path / "Tumor_001.tif", width=SIZE, height=SIZE, lymphoid=2,
                                  mask_path=tmp_path / "Tumor_001_mask.tif", **kwargs)
    tissue, annotation, _ = plan_slide(SIZE, SIZE, **kwargs)
    assert result.annotation.to_dict() == annotation.to_dict()
    assert [b.radius for b in result.tissue.blobs] == [b.radius for b in tissue.blobs]
    assert len(result.tissue.lymphoid) == 2 and tissue.lymphoid == []

    def mean_rgb(slide, x, y, level=0, size=64):
        d = int(slide.level_downsamples[level])
        region = slide.read_region((int(x) - size * d // 2, int(y) - size * d // 2), level, (size, size))
        return np.asarray(region.convert("RGB"), dtype=float).mean()

    tumour_xy = result.annotation.positive[0].vertices().mean(axis=0)
    with openslide.OpenSlide(str(result.slide_path)) as slide, \
            openslide.OpenSlide(str(tmp_path / "Tumor_001_mask.tif")) as mask:
        for follicle in result.tissue.lymphoid:
            xy = (follicle.cx, follicle.cy)
            assert result.tissue.contains([xy])[0] and not result.annotation.inside_polygons([xy])[0]
            assert mask.read_region((int(xy[0]), int(xy[1])), 0, (1, 1)).getpixel((0, 0))[0] == 0
            # darker than tumour at level 0 (nuclei drawn) and level 2 (the textures' average colours)
            for level, size in ((0, 64), (2, 16)):
                assert mean_rgb(slide, *xy, level, size) < mean_rgb(slide, *tumour_xy, level, size)


def test_the_demo_opens_no_connection_and_leaves_no_telemetry_state(demo):
    """Every stage of the CPU default path (OpenVINO's pass where the extra is installed) ran under the network
    guard (tests/network_guard: any AF_INET/AF_INET6 connect or send, or a host-name lookup, ends the process
    and is logged) with a fresh $HOME: nothing was attempted, and no telemetry state (OpenVINO keeps its consent,
    client id and counters under ~/intel) appeared there."""
    out, proc = demo
    runtime = "openvino" if importlib.util.find_spec("openvino") else "channels_last"
    logs = sorted((out / "logs").glob("07_probs_map_*"))
    assert logs and all(f"CNN: BatchNorm folded, {runtime}" in log.read_text() for log in logs)
    assert not (out.parent / "network.log").exists(), (out.parent / "network.log").read_text()
    assert "network guard" not in proc.stderr
    home = out.parent / "home"
    assert not [p for p in home.rglob("*") if "intel" in p.parts or "telemetry" in p.name.lower()]


def test_a_folder_of_the_users_is_refused_before_any_work(tmp_path):
    """DEMO_DIR naming a folder the demo did not make (here one holding the user's jsons/ and coords/, as the
    repository root does) is refused in one line; the demo's rm -rf never reaches it."""
    users = tmp_path / "mine"
    (users / "jsons").mkdir(parents=True)
    (users / "jsons" / "Tumor_001.json").write_text("{}")
    (users / "coords").mkdir()
    proc = run_script([str(ROOT / "scripts" / "demo.sh")], {**TINY, "DEMO_DIR": str(users)}, cwd=ROOT)
    assert proc.returncode == 2 and "holds files the demo did not write" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in users.rglob("*")) == ["Tumor_001.json", "coords", "jsons"]
