"""Annotations (wsi.data.annotation): the 268 original JSONs, the inside test, the XML round trip."""

import json
import re

import numpy as np
import pytest

from tests.helpers import JSONS
from wsi.data.annotation import (Annotation, AnnotationError, Polygon, camelyon16xml2json, load_annotations,
                                 write_asap_xml)

# Contract §1.2: files with negative (exclusion) polygons and their counts.
NEGATIVES = {
    "train": {"Tumor_003": 1, "Tumor_007": 1, "Tumor_014": 6, "Tumor_016": 2, "Tumor_021": 19, "Tumor_025": 26,
              "Tumor_031": 14, "Tumor_034": 90, "Tumor_036": 2, "Tumor_037": 5, "Tumor_038": 1, "Tumor_039": 144,
              "Tumor_056": 9, "Tumor_064": 24, "Tumor_078": 27, "Tumor_083": 3, "Tumor_088": 7, "Tumor_091": 1,
              "Tumor_095": 20},
    "valid": {"Tumor_105": 1, "Tumor_107": 3, "Tumor_108": 1, "Tumor_110": 18},
}


@pytest.fixture(scope="module")
def reference():
    """{split: {pid: Annotation}} of the original JSONs."""
    return {split: load_annotations(JSONS / split) for split in ("train", "valid")}


def test_all_268_reference_jsons_load_with_the_contract_counts(reference):
    train, valid = reference["train"], reference["valid"]
    assert len(train) == 239 and len(valid) == 29
    assert sorted(p for p in train if p.startswith("Normal")) == [
        f"Normal_{i:03d}" for i in range(1, 141) if i != 86]
    assert sorted(p for p in valid if p.startswith("Normal")) == [
        f"Normal_{i:03d}" for i in range(141, 161) if i != 144]
    assert sorted(p for p in train if p.startswith("Tumor")) == [f"Tumor_{i:03d}" for i in range(1, 101)]
    assert sorted(p for p in valid if p.startswith("Tumor")) == [f"Tumor_{i:03d}" for i in range(101, 111)]

    def totals(annotations, prefix):
        chosen = [a for pid, a in annotations.items() if pid.startswith(prefix)]
        return sum(len(a.positive) for a in chosen), sum(len(a.negative) for a in chosen)

    assert totals(train, "Tumor") == (1637, 402)
    assert totals(valid, "Tumor") == (526, 23)
    assert totals(train, "Normal") == (0, 1324)
    assert totals(valid, "Normal") == (0, 221)
    for split, annotations in reference.items():
        with_negatives = {pid: len(a.negative) for pid, a in annotations.items()
                          if pid.startswith("Tumor") and a.negative}
        assert with_negatives == NEGATIVES[split]
        for pid, annotation in annotations.items():
            short = [(pid, p.name, len(p)) for p in annotation.positive + annotation.negative if len(p) < 3]
            # One degenerate polygon in the whole set: Tumor_054's positive "_8" has 2 vertices (never inside).
            assert short == ([("Tumor_054", "_8", 2)] if pid == "Tumor_054" else []), pid
            assert all(p.vertices().dtype == np.int64 for p in annotation.positive), pid
            if pid.startswith("Normal"):
                # Contours of a low-resolution tissue mask: every coordinate a multiple of 128.
                assert all((p.vertices() % 128 == 0).all() for p in annotation.negative), pid


def sample_pids():
    """A sample covering Tumor files with and without negatives, train and valid, and Normal files."""
    return [("train", "Tumor_003"), ("train", "Tumor_012"), ("train", "Tumor_091"), ("valid", "Tumor_105"),
            ("valid", "Tumor_107"), ("valid", "Tumor_109"), ("train", "Normal_001"), ("valid", "Normal_160")]


@pytest.mark.parametrize("split, pid", sample_pids())
def test_json_and_xml_round_trips_are_byte_identical(tmp_path, split, pid):
    """JSON -> Annotation -> JSON and JSON -> ASAP XML -> camelyon16xml2json give the original file's bytes."""
    original = JSONS / split / f"{pid}.json"
    annotation = Annotation.from_json(original)
    annotation.to_json(tmp_path / "again.json")
    assert (tmp_path / "again.json").read_bytes() == original.read_bytes()
    write_asap_xml(tmp_path / f"{pid}.xml", annotation)
    converted = camelyon16xml2json(tmp_path / f"{pid}.xml", tmp_path / f"{pid}.json")
    assert converted.to_dict() == json.loads(original.read_text())
    assert (tmp_path / f"{pid}.json").read_bytes() == original.read_bytes()


@pytest.mark.slow
def test_every_reference_json_rewrites_byte_identical(reference):
    """All 268 files: our writer (json.dump indent=1) reproduces the original bytes (~20 s)."""
    for split, annotations in reference.items():
        for pid, annotation in annotations.items():
            original = (JSONS / split / f"{pid}.json").read_text()
            assert json.dumps(annotation.to_dict(), indent=1) == original, pid


def even_odd(points, vertices):
    """Reference crossing-number test, written independently: a ray towards +x, half-open in y."""
    x, y = points[:, 0][:, None], points[:, 1][:, None]
    x1, y1 = vertices[:, 0][None, :], vertices[:, 1][None, :]
    x2, y2 = np.roll(vertices[:, 0], -1)[None, :], np.roll(vertices[:, 1], -1)[None, :]
    spans = (y1 > y) != (y2 > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_cross = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
    return ((spans & (x < x_cross)).sum(axis=1) % 2) == 1


def distance_to_outline(points, vertices):
    """Distance of each point ``[M, 2]`` to the closed outline (its nearest edge)."""
    a = vertices[None, :, :]
    ab = np.roll(vertices, -1, axis=0)[None, :, :] - a
    ap = points[:, None, :] - a
    t = np.clip((ap * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-12), 0, 1)
    return np.hypot(*(ap - t[..., None] * ab).transpose(2, 0, 1)).min(axis=1)


def test_inside_equals_even_odd_reference_away_from_edges(reference):
    """Real outlines (with their duplicate and back-tracking vertices): same answer as an independent even-odd
    test for every point more than half a pixel from the outline."""
    rng = np.random.default_rng(0)
    annotation = reference["valid"]["Tumor_110"]  # 18 exclusion polygons inside its tumour outlines
    polygons = [p for p in annotation.positive + annotation.negative if len(p) <= 1500][:12]
    assert len(polygons) == 12
    for polygon in polygons:
        vertices = polygon.vertices().astype(np.float64)
        x0, y0, x1, y1 = polygon.bbox
        points = np.stack([rng.uniform(x0 - 20, x1 + 20, 1500), rng.uniform(y0 - 20, y1 + 20, 1500)], axis=1)
        # Integer points too: on the pixel lattice where the outline's vertices are.
        points = np.concatenate([points, np.round(points[:500])])
        away = distance_to_outline(points, vertices) > 0.5
        expected = even_odd(points[away], vertices)
        np.testing.assert_array_equal(polygon.inside(points[away]), expected)
        assert 0 < expected.sum() < away.sum()
    # Over the whole annotation: inside any positive polygon, and the Camelyon16 label.
    pos = [p.vertices().astype(np.float64) for p in annotation.positive]
    neg = [p.vertices().astype(np.float64) for p in annotation.negative]
    x0, y0 = np.min([v.min(axis=0) for v in neg], axis=0)
    x1, y1 = np.max([v.max(axis=0) for v in neg], axis=0)
    points = np.stack([rng.uniform(x0, x1, 3000), rng.uniform(y0, y1, 3000)], axis=1)
    away = np.ones(len(points), bool)
    for v in pos + neg:
        near = np.all((points >= v.min(axis=0) - 1) & (points <= v.max(axis=0) + 1), axis=1)
        if near.any():
            for chunk in np.array_split(np.flatnonzero(near), max(1, near.sum() * len(v) // 2_000_000)):
                away[chunk] &= distance_to_outline(points[chunk], v) > 0.5
    points = points[away]
    in_pos = np.any([even_odd(points, v) for v in pos], axis=0)
    in_neg = np.any([even_odd(points, v) for v in neg], axis=0)
    np.testing.assert_array_equal(annotation.inside_polygons(points), in_pos)
    np.testing.assert_array_equal(annotation.tumour_label(points), in_pos & ~in_neg)
    assert (in_pos & in_neg).sum() > 10 and (in_pos & ~in_neg).sum() > 10


def test_inside_polygons_single_point_and_many():
    square = Polygon("sq", [[0, 0], [100, 0], [100, 100], [0, 100]])
    hole = Polygon("hole", [[40, 40], [60, 40], [60, 60], [40, 60]])
    annotation = Annotation([square], [hole])
    assert annotation.inside_polygons((50, 50)) is True
    assert annotation.inside_polygons((150, 50)) is False
    points = np.array([[50, 50], [10, 10], [150, 50], [100, 50], [0, 0]])
    np.testing.assert_array_equal(annotation.inside_polygons(points), [True, True, False, True, True])
    np.testing.assert_array_equal(annotation.inside_polygons(points, is_positive=False),
                                  [True, False, False, False, False])
    # Camelyon16 meaning: tumour = inside positive and not inside negative (edges count as inside).
    np.testing.assert_array_equal(annotation.tumour_label(points), [False, True, False, True, True])
    # Implicitly closed: a repeated first vertex changes nothing.
    closed = Polygon("sq", [[0, 0], [100, 0], [100, 100], [0, 100], [0, 0]])
    np.testing.assert_array_equal(closed.inside(points), square.inside(points))
    assert not Polygon("line", [[0, 0], [5, 5]]).inside(points).any()


def test_inside_is_vectorised_over_many_points():
    rng = np.random.default_rng(1)
    theta = np.linspace(0, 2 * np.pi, 5000, endpoint=False)
    polygon = Polygon("circle", np.round(np.stack([5000 + 3000 * np.cos(theta), 5000 + 3000 * np.sin(theta)], 1)))
    points = rng.uniform(0, 10000, (200_000, 2))
    inside = Annotation([polygon]).inside_polygons(points)
    radius = np.hypot(points[:, 0] - 5000, points[:, 1] - 5000)
    far = np.abs(radius - 3000) > 2
    np.testing.assert_array_equal(inside[far], radius[far] < 3000)


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    ('{"positive": []}', "expected an object with 'positive' and 'negative' lists"),
    ('{"positive": [{"name": "a"}], "negative": []}', r"positive\[0\] has no list of \[x, y\] vertices"),
    ('{"positive": [], "negative": [{"name": "a", "vertices": [[1, "x"]]}]}', r"negative\[0\]"),
])
def test_malformed_json_one_line_error_naming_the_file(tmp_path, content, message):
    path = tmp_path / "Tumor_001.json"
    path.write_text(content)
    with pytest.raises(AnnotationError, match=message) as info:
        Annotation.from_json(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    assert isinstance(info.value, ValueError)


def test_missing_json_and_folder(tmp_path):
    with pytest.raises(AnnotationError, match="no such annotation file"):
        Annotation.from_json(tmp_path / "nope.json")
    with pytest.raises(AnnotationError, match="no such annotation folder"):
        load_annotations(tmp_path / "nope")


def test_load_annotations_keys_are_stems_not_stripped_characters(tmp_path):
    """The original's .strip('.json') would turn 'son.json' into ''; we use the stem."""
    for name in ("son", "Tumor_001"):
        Annotation([Polygon("a", [[0, 0], [1, 0], [1, 1]])]).to_json(tmp_path / f"{name}.json")
    (tmp_path / "notes.txt").write_text("not an annotation")
    assert sorted(load_annotations(tmp_path)) == ["Tumor_001", "son"]


def test_to_json_format_indent_1_keys_in_order(tmp_path):
    annotation = Annotation([Polygon("_0", [[1, 2], [3, 4], [5, 6]])], [Polygon("_2", [[7, 8], [9, 10], [11, 12]])])
    annotation.to_json(tmp_path / "a.json")
    text = (tmp_path / "a.json").read_text()
    assert text.startswith('{\n "positive": [\n  {\n   "name": "_0",\n   "vertices": [\n    [\n     1,\n     2\n')
    assert re.search(r'"negative"', text) and not text.endswith("\n")
    assert list(json.loads(text)) == ["positive", "negative"]
