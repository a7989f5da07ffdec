"""Maps that know their slide (sidecars) and one geometry for the whole pipeline, on any pyramid.

The real H&E fixture written as an Aperio-style pyramid with 4× level steps (downsamples 1, 4, 16, 64): the
tissue mask at level 3 (64×), a probability map, nms.py and export.py must put every detection on the tissue it
came from, with or without ``--level``; the original's ``2**level`` rule would put them at 1/8 of their place.
"""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers import ROOT, TORCH_PASS, cmu_pyramid
from wsi.arrays import load_array, read_sidecar, save_array, sidecar_path
from wsi.bin import export as export_cli
from wsi.bin import nms as nms_cli
from wsi.bin import probs_map as probs_map_cli
from wsi.bin import tissue_mask as tissue_mask_cli
from wsi.config import save_config
from wsi.data.pyramid import write_pyramid_from_array
from wsi.data.slide import open_slide
from wsi.eval.detections import read_detections
from wsi.model import MODELS
from wsi.model.checkpoint import save_checkpoint

CFG = {"model": "resnet18", "use_crf": True, "batch_size": 4, "image_size": 192, "patch_size": 64,
       "crop_size": 56, "lr": 0.001, "momentum": 0.9, "epoch": 1, "log_every": 1,
       "data_path_tumor_train": "x", "data_path_normal_train": "x", "data_path_tumor_valid": "x",
       "data_path_normal_valid": "x", "json_path_train": "x", "json_path_valid": "x"}


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    model = MODELS["resnet18"](num_nodes=9, use_crf=True)
    save_checkpoint(root / "crf.ckpt", model, epoch=0, step=0, cfg=CFG)
    save_config(CFG, root / "crf.json")
    return root / "crf.ckpt", root / "crf.json"


@pytest.fixture(scope="module")
def aperio(tmp_path_factory, model_files):
    """A 4× pyramid of the fixture, its level-3 tissue mask (thinned to a few positions) and its map."""
    root = tmp_path_factory.mktemp("aperio")
    slide = cmu_pyramid(root / "cmu4.tif", factor=4)
    with open_slide(slide) as opened:
        assert list(opened.level_downsamples) == pytest.approx([1, 4, 16, 64], rel=0.02)  # 63.4 at level 3
    assert tissue_mask_cli.main([str(slide), str(root / "mask.npy"), "--level", "3"]) == 0
    mask, info = load_array(root / "mask.npy")
    assert info.level == 3 and info.stride == 64 and info.kind == "tissue_mask"
    # Keep 25 tissue positions 3 cells apart (NMS of radius 1 keeps each), so that the map is quick; the
    # sidecar stays the mask's.
    xs, ys = np.nonzero(mask & (np.arange(mask.shape[0]) % 3 == 0)[:, None] & (np.arange(mask.shape[1]) % 3 == 0))
    keep = np.random.default_rng(0).choice(len(xs), 25, replace=False)
    thin = np.zeros_like(mask)
    thin[xs[keep], ys[keep]] = True
    save_array(root / "thin.npy", thin, info)
    ckpt, cfg = model_files
    assert probs_map_cli.main([str(slide), str(ckpt), str(cfg), str(root / "thin.npy"), str(root / "map.npy"),
                               "--num_workers", "0", *TORCH_PASS]) == 0
    return root, slide, mask, thin


def test_sidecars_say_which_slide_and_scale(aperio, model_files):
    root, slide, mask, _ = aperio
    record = json.loads(sidecar_path(root / "map.npy").read_text())
    with open_slide(slide) as opened:
        quickhash = opened.properties["openslide.quickhash-1"]
        assert record["slide"] == {"name": "cmu4.tif", "level0_size": [2220, 2967], "quickhash": quickhash,
                                   "mpp": pytest.approx(0.499)}
        assert record["downsample"] == [pytest.approx(opened.level_downsamples[3])] * 2
    assert record["kind"] == "probs_map" and record["axes"] == "xy" and record["level"] == 3
    assert record["stride"] == 64 and record["shape"] == list(mask.shape)
    assert record["ckpt"] == str(model_files[0]) and record["cfg"] == str(model_files[1])
    assert record["mask"] == str(root / "thin.npy") and record["mode"] == "fast"
    # The .npy itself is the original's format: a plain float64 [x, y] array that np.load reads.
    assert np.load(root / "map.npy").dtype == np.float64


@pytest.mark.parametrize("level", [None, "3"])
def test_detections_land_on_their_tissue_on_a_4x_pyramid(aperio, tmp_path, level):
    root, _, mask, thin = aperio
    extra = [] if level is None else ["--level", level]
    assert nms_cli.main([str(root / "map.npy"), str(tmp_path / "det.csv"), "--prob_thred", "0",
                         "--radius", "1", *extra]) == 0
    probs, xs, ys = read_detections(tmp_path / "det.csv")
    assert len(probs) == int(thin.sum())  # radius 1 keeps every isolated position
    cells = {(int((i + 0.5) * 64), int((j + 0.5) * 64)) for i, j in zip(*np.nonzero(thin))}
    assert set(zip(xs.tolist(), ys.tolist())) == cells
    assert mask[xs // 64, ys // 64].all()  # on the tissue they came from, in level-0 pixels
    # The export puts the same points in the GeoJSON, in level-0 pixels.
    assert export_cli.main(["geojson", str(tmp_path / "det.geojson"), "--csv", str(tmp_path / "det.csv"),
                            "--npy", str(root / "map.npy"), "--threshold", "0.01", *extra]) == 0
    features = json.loads((tmp_path / "det.geojson").read_text())["features"]
    points = {tuple(f["geometry"]["coordinates"]) for f in features if f["geometry"]["type"] == "Point"}
    assert points == cells
    polygons = [f for f in features if f["geometry"]["type"] == "Polygon"]
    for feature in polygons:  # contours around tissue cells, at level-0 scale (the slide is 2220 x 2967)
        ring = np.array(feature["geometry"]["coordinates"][0])
        assert ring.max(axis=0).tolist() <= [2220 + 64, 2967 + 64] and ring.max() > 200


def test_a_level_that_contradicts_the_sidecar_is_refused(aperio, tmp_path, capsys):
    root = aperio[0]
    assert nms_cli.main([str(root / "map.npy"), str(tmp_path / "det.csv"), "--level", "6"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--level 6 disagrees with map.json" in err and "level 3 of cmu4.tif" in err and "\n" not in err
    assert not (tmp_path / "det.csv").exists()
    assert export_cli.main(["heatmap", str(root / "map.npy"), str(tmp_path / "h.png"), "--level", "6"]) == 2
    assert "disagrees" in capsys.readouterr().err


def test_a_2x_pyramid_gives_the_original_csv_byte_for_byte(tmp_path, model_files):
    # Camelyon16-style: 2× levels; the map with its sidecar and the same map without one (the original's rule,
    # --level 6) give identical detections.
    slide = cmu_pyramid(tmp_path / "cmu2.tif", factor=2)
    assert tissue_mask_cli.main([str(slide), str(tmp_path / "mask.npy")]) == 0
    mask, info = load_array(tmp_path / "mask.npy")
    assert info.level == 6 and info.stride == 64
    rng = np.random.default_rng(1)
    probs = np.where(mask, rng.random(mask.shape), 0.0)
    save_array(tmp_path / "with.npy", probs, replace(info, kind="probs_map"))  # a map: the mask's scale
    np.save(tmp_path / "without.npy", probs)
    assert nms_cli.main([str(tmp_path / "with.npy"), str(tmp_path / "a.csv"), "--radius", "2"]) == 0
    assert nms_cli.main([str(tmp_path / "without.npy"), str(tmp_path / "b.csv"), "--level", "6", "--radius", "2"]) == 0
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    assert len((tmp_path / "a.csv").read_text().splitlines()) > 3


def test_a_mask_of_another_slide_is_refused_even_when_the_shape_fits(tmp_path, model_files, capsys):
    texture = np.random.default_rng(0).integers(100, 200, (512, 640, 3), dtype=np.uint8)
    write_pyramid_from_array(tmp_path / "A.tif", texture)
    write_pyramid_from_array(tmp_path / "B.tif", 255 - texture)
    assert tissue_mask_cli.main([str(tmp_path / "A.tif"), str(tmp_path / "A.npy"), "--level", "2"]) == 0
    ckpt, cfg = model_files
    status = probs_map_cli.main([str(tmp_path / "B.tif"), str(ckpt), str(cfg), str(tmp_path / "A.npy"),
                                 str(tmp_path / "B_map.npy"), *TORCH_PASS])
    err = capsys.readouterr().err.strip()
    assert status == 2 and "A.npy: made from slide A.tif, not from" in err and "quickhash" in err
    assert not (tmp_path / "B_map.npy").exists()
    # Without the sidecar (the original's masks, hand-made ones) the shape alone decides, as before.
    sidecar_path(tmp_path / "A.npy").unlink()
    assert read_sidecar(tmp_path / "A.npy") is None


def test_folder_modes_of_tissue_mask_and_nms(tmp_path):
    slides = tmp_path / "slides"
    slides.mkdir()
    texture = np.random.default_rng(0).integers(0, 255, (256, 320, 3), dtype=np.uint8)
    write_pyramid_from_array(slides / "a.tif", texture)
    write_pyramid_from_array(slides / "b.svs", texture[::-1])  # any OpenSlide suffix, not only .tif
    (slides / "notes.txt").write_text("not a slide")
    assert tissue_mask_cli.main([str(slides), str(tmp_path / "masks"), "--level", "1"]) == 0
    assert sorted(p.name for p in (tmp_path / "masks").iterdir()) == ["a.json", "a.npy", "b.json", "b.npy"]
    mtime = (tmp_path / "masks" / "a.npy").stat().st_mtime_ns
    assert tissue_mask_cli.main([str(slides), str(tmp_path / "masks"), "--level", "1"]) == 0  # skipped
    assert (tmp_path / "masks" / "a.npy").stat().st_mtime_ns == mtime
    maps = tmp_path / "maps"
    maps.mkdir()
    for stem in ("a", "b"):
        mask, info = load_array(tmp_path / "masks" / f"{stem}.npy")
        save_array(maps / f"{stem}.npy", np.where(mask, 0.9, 0.0), replace(info, kind="probs_map"))
    np.save(maps / "c.npy", np.full((4, 4), np.nan))  # a bad map costs itself only: exit 1, the others done
    assert nms_cli.main([str(maps), str(tmp_path / "csv")]) == 1
    assert sorted(p.name for p in (tmp_path / "csv").iterdir()) == ["a.csv", "b.csv"]
