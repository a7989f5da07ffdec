"""export.py: heatmap orientation, QuPath GeoJSON structure, ASAP XML round trip."""

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image

from wsi.bin.export import main
from wsi.data.annotation import Annotation, camelyon16xml2json
from wsi.data.slide import open_slide
from wsi.eval.export import heatmap_image, tumour_contours


def probs_map_with_regions():
    """A 20 × 12 [x, y] map: a 3 × 2 blob at x 10..12, y 2..3 and a 7 × 7 square at x 2..8, y 4..10 with a
    one-cell hole at (5, 7)."""
    probs_map = np.zeros((20, 12))
    probs_map[10:13, 2:4] = 1.0
    probs_map[2:9, 4:11] = 1.0
    probs_map[5, 7] = 0.0
    return probs_map


@pytest.fixture
def inputs(tmp_path):
    npy = tmp_path / "Test_001.npy"
    np.save(npy, probs_map_with_regions())
    csv = tmp_path / "Test_001.csv"
    csv.write_text("0.90000,704,192\n0.80000,160,288\n")
    return npy, csv


def test_heatmap_image_is_the_transpose():
    probs_map = np.zeros((6, 4))  # [x, y]: 6 columns, 4 rows
    probs_map[5, 1] = 1.0  # x = 5, y = 1
    image = heatmap_image(probs_map)
    assert image.shape == (4, 6, 3)
    hot, cold = image[1, 5], image[0, 0]
    assert hot[0] > 100 and hot[2] == 0  # jet(1): dark red
    assert cold[0] == 0 and cold[2] > 100  # jet(0): dark blue
    assert (image.reshape(-1, 3) == hot).all(axis=1).sum() == 1


def test_heatmap_over_the_slide(tmp_path, cmu_svs, capsys):
    with open_slide(cmu_svs) as slide:
        width, height = slide.dimensions  # 2220 × 2967
    size_x, size_y = round(width / 64), round(height / 64)
    probs_map = np.zeros((size_x, size_y))
    probs_map[size_x - 3, 2] = 1.0  # near the top-right corner of the image
    np.save(tmp_path / "map.npy", probs_map)
    out = tmp_path / "plain.png"
    assert main(["heatmap", str(tmp_path / "map.npy"), str(out), "--wsi", str(cmu_svs), "--plain",
                 "--alpha", "1"]) == 0
    image = np.asarray(Image.open(out).convert("RGB"))
    assert image.shape == (size_y, size_x, 3)
    assert tuple(image[2, size_x - 3]) == (128, 0, 0)  # jet(1.0) at full opacity
    assert image[10:, :].std() > 5  # elsewhere the H&E thumbnail shows through
    figure = tmp_path / "figure.png"
    assert main(["heatmap", str(tmp_path / "map.npy"), str(figure), "--wsi", str(cmu_svs)]) == 0
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # A map of the wrong size for the slide: one line with the numbers.
    np.save(tmp_path / "wrong.npy", np.zeros((size_y, size_x)))
    assert main(["heatmap", str(tmp_path / "wrong.npy"), str(tmp_path / "x.png"), "--wsi", str(cmu_svs)]) == 2
    err = capsys.readouterr().err
    assert f"level-0 size {width}×{height}" in err and f"map is {size_y}×{size_x}" in err
    assert err.count("\n") == 1 and not (tmp_path / "x.png").exists()


def test_contours_with_a_hole():
    regions = tumour_contours(probs_map_with_regions(), threshold=0.5, cell=64)
    assert [len(holes) for _, holes in regions] == [1, 0]  # biggest first
    (square, (hole,)), (blob, _) = regions
    # Iso-lines run half-way between cell centres: a region covers exactly its cells' level-0 extent.
    np.testing.assert_allclose([*blob.min(axis=0), *blob.max(axis=0)], [640, 128, 832, 256])
    np.testing.assert_allclose([*square.min(axis=0), *square.max(axis=0)], [128, 256, 576, 704])
    np.testing.assert_allclose([*hole.min(axis=0), *hole.max(axis=0)], [320, 448, 384, 512])
    assert (square[0] == square[-1]).all()


def test_geojson_structure(inputs, tmp_path):
    npy, csv = inputs
    out = tmp_path / "Test_001.geojson"
    assert main(["geojson", str(out), "--csv", str(csv), "--npy", str(npy)]) == 0
    collection = json.loads(out.read_text())
    assert collection["type"] == "FeatureCollection"
    points = [f for f in collection["features"] if f["geometry"]["type"] == "Point"]
    polygons = [f for f in collection["features"] if f["geometry"]["type"] == "Polygon"]
    assert [p["geometry"]["coordinates"] for p in points] == [[704, 192], [160, 288]]
    assert [p["properties"]["probability"] for p in points] == [0.9, 0.8]
    assert all(p["properties"]["objectType"] == "detection" for p in points)
    assert all(f["properties"]["objectType"] == "annotation" for f in polygons)
    assert all(f["properties"]["classification"]["name"] == "Tumor" for f in collection["features"])
    assert [len(f["geometry"]["coordinates"]) for f in polygons] == [2, 1]  # outer + hole, outer
    for feature in polygons:
        for ring in feature["geometry"]["coordinates"]:
            assert ring[0] == ring[-1] and len(ring) >= 4


def test_xml_converts_back(inputs, tmp_path):
    npy, csv = inputs
    xml, json_path = tmp_path / "Test_001.xml", tmp_path / "Test_001.json"
    assert main(["xml", str(xml), "--csv", str(csv), "--npy", str(npy)]) == 0
    dots = [a for a in ET.parse(xml).getroot().iter("Annotation") if a.get("Type") == "Dot"]
    assert [(d.get("Name"), d.get("PartOfGroup")) for d in dots] == [("0.90000", "detections"),
                                                                     ("0.80000", "detections")]
    warnings = []
    camelyon16xml2json(xml, json_path, warn=warnings.append)
    annotation = Annotation.from_json(json_path)
    assert len(annotation.positive) == 2 and len(annotation.negative) == 1
    assert "detections" in warnings[0]
    # Cell centres: inside the square, in its hole, in the blob, outside.
    centres = np.array([(2, 4), (8, 10), (5, 7), (11, 3), (15, 8)]) * 64 + 32
    np.testing.assert_array_equal(annotation.tumour_label(centres), [True, True, False, True, False])


def test_bad_inputs_give_one_line(inputs, tmp_path, capsys):
    npy, csv = inputs
    out = tmp_path / "out.geojson"
    assert main(["geojson", str(out)]) == 2
    assert "give --csv DETECTIONS, --npy PROBS_MAP or both" in capsys.readouterr().err
    csv.write_text("prob,x,y\n")
    assert main(["geojson", str(out), "--csv", str(csv)]) == 2
    assert "line 1 has a header" in capsys.readouterr().err
    assert main(["xml", str(out), "--npy", str(npy), "--threshold", "0"]) == 2
    assert "--threshold must be above 0" in capsys.readouterr().err
    assert main(["heatmap", str(npy), str(tmp_path / "h.png"), "--cmap", "nope"]) == 2
    assert "unknown colour map 'nope'" in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "h.png").exists()


@pytest.mark.parametrize("level", [None, "2"])
def test_contours_use_the_sidecar_cell_not_2_to_the_level(level2_map, tmp_path, level):
    # Level 2 of a 4×-step pyramid: 16 level-0 px per cell, where 2**2 is 4 and the default 2**6 is 64.
    root, hot = level2_map
    extra = [] if level is None else ["--level", level]
    assert main(["geojson", str(tmp_path / "t.geojson"), "--npy", str(root / "probs" / "Tumor_001.npy"),
                 "--threshold", "0.5", *extra]) == 0
    rings = [np.array(f["geometry"]["coordinates"][0], dtype=float)
             for f in json.loads((tmp_path / "t.geojson").read_text())["features"]]
    assert len(rings) == 2
    # Each single hot cell gives a small ring around its centre, in level-0 pixels, within one cell of it.
    centres = sorted(tuple(ring[:-1].mean(axis=0).round().tolist()) for ring in rings)
    assert centres == sorted(((i + 0.5) * 16, (j + 0.5) * 16) for i, j in hot)
    assert all(np.abs(ring - ring[:-1].mean(axis=0)).max() <= 16 for ring in rings)
