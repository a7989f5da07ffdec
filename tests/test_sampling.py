"""Random coordinate sampling (wsi/data/sampling.py, wsi/bin/sample_coords.py) on synthetic slides.

The slides are OpenSlide-readable pyramids of the synthetic layouts of :func:`wsi.synthetic.plan_slide`
(tissue blobs, tumour polygons, one exclusion hole); the tissue masks are that tissue at the mask pixels' centres.
"""

import numpy as np
import pytest

from tests.helpers import SLIDES, make_dataset
from wsi.bin import sample_coords
from wsi.data.annotation import Annotation, Polygon
from wsi.data.coords import read_coords
from wsi.data.labels import distance_to_boundary, grid_labels, is_normal
from wsi.data.sampling import normal_candidates, spread, tissue_fraction, tumour_candidates
from wsi.geometry import MaskGeometry
from wsi.geometry import mask_geometry as slide_mask_geometry


def mask_geometry(mask_shape, level0):
    """The geometry of a mask on a slide known by its level-0 size only."""
    return slide_mask_geometry([level0], [1.0], mask_shape)



@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("sampling")
    return root, make_dataset(root)


def run_sampler(root, out, *extra):
    args = [str(root / "wsi"), str(root / "json"), str(out), "--mask_path", str(root / "mask"),
            "--tumor_per_slide", "150", "--num_normal", "400", *extra]
    return sample_coords.main(args)


def by_pid(rows):
    out = {}
    for pid, x, y in rows:
        out.setdefault(pid, []).append((x, y))
    return {pid: np.array(xy) for pid, xy in out.items()}


def in_mask(mask, level0, xy):
    geometry = mask_geometry(mask.shape, level0)
    ij = geometry.pixel(xy)
    return mask[ij[:, 0], ij[:, 1]]


@pytest.fixture(scope="module")
def sampled(dataset, tmp_path_factory):
    root, truth = dataset
    out = tmp_path_factory.mktemp("lists")
    assert run_sampler(root, out, "--pids", *[s[0] for s in SLIDES]) == 0
    return out, read_coords(out / "tumor_train.txt"), read_coords(out / "normal_train.txt")


def test_grid_labels_rows_follow_y():
    band = Annotation([Polygon("t", [[1000, 200], [2000, 200], [2000, 400], [1000, 400]])], [])
    labels = grid_labels(band, [(1000 - 10, 300)])[0]  # only the cell (row y, column x + 256) is inside
    assert labels.tolist() == [[False, False, False], [False, False, True], [False, False, False]]
    labels = grid_labels(band, [(1500, 300 + 256)])[0]  # only the row y - 256 is inside
    assert labels.tolist() == [[True, True, True], [False, False, False], [False, False, False]]


def test_tumour_and_normal_centres_are_labelled_by_the_annotation(dataset, sampled):
    root, truth = dataset
    out, tumour, normal = sampled
    tumour, normal = by_pid(tumour), by_pid(normal)
    assert sorted(tumour) == ["Tumor_001", "Tumor_002"]
    assert all(len(xy) == 150 for xy in tumour.values())
    assert sorted(normal) == sorted(s[0] for s in SLIDES)  # tumour slides give normal tissue too
    assert sum(len(xy) for xy in normal.values()) == 400
    assert {len(xy) for xy in normal.values()} == {100}
    for pid, xy in tumour.items():
        annotation, mask, level0 = truth[pid]
        assert grid_labels(annotation, xy)[:, 1, 1].all()  # the centre's training label is 1
        assert annotation.tumour_label(xy).all()  # and it is outside the exclusion hole
        assert in_mask(mask, level0, xy).all()
        assert len(set(map(tuple, xy.tolist()))) == len(xy)
    for pid, xy in normal.items():
        annotation, mask, level0 = truth[pid]
        assert not grid_labels(annotation, xy)[:, 1, 1].any()
        assert in_mask(mask, level0, xy).all()
        assert ((xy >= 0) & (xy < np.array(level0))).all()


@pytest.mark.parametrize("pid", ["Tumor_001", "Tumor_002"])
def test_candidate_pixels_hold_every_valid_point(dataset, pid):
    # The rasterised candidates only speed sampling up: every valid point must lie in a candidate pixel, or
    # parts of the tumour (or of the normal tissue near it) could never be drawn. Tumor_002's mask has
    # different down-samples along x and y.
    _, truth = dataset
    annotation, mask, level0 = truth[pid]
    geometry = mask_geometry(mask.shape, level0)
    rng = np.random.default_rng(0)
    # Points near the polygon boundaries, where the rasters are approximate.
    vertices = np.concatenate([p.vertices() for p in annotation.positive + annotation.negative])
    points = (vertices[rng.integers(len(vertices), size=20000)] + rng.uniform(-400, 400, (20000, 2))).astype(int)
    points = points[((points >= 0) & (points < np.array(level0))).all(axis=1)]
    ij = geometry.pixel(points)
    in_tissue = mask[ij[:, 0], ij[:, 1]]
    tumour = annotation.tumour_label(points) & in_tissue
    assert tumour.sum() > 500
    assert tumour_candidates(annotation, mask, geometry)[ij[tumour, 0], ij[tumour, 1]].all()
    for margin in (0, 300):
        normal = is_normal(annotation, points, margin) & in_tissue
        assert normal.sum() > 500
        assert normal_candidates(annotation, mask, geometry, margin)[ij[normal, 0], ij[normal, 1]].all()


def test_tumour_centres_cover_the_tumour_uniformly(dataset, sampled):
    # Both tumours of Tumor_001 get centres, in proportion to their area in tissue (within sampling noise).
    root, truth = dataset
    annotation = truth["Tumor_001"][0]
    xy = by_pid(sampled[1])["Tumor_001"]
    first = annotation.positive[0].inside(xy)
    area = [Annotation([p], annotation.negative if k == 0 else []) for k, p in enumerate(annotation.positive)]
    grid = np.stack(np.meshgrid(np.arange(0, 2048, 8), np.arange(0, 2048, 8)), axis=-1).reshape(-1, 2)
    share = area[0].tumour_label(grid).sum() / sum(a.tumour_label(grid).sum() for a in area)
    assert abs(first.mean() - share) < 0.15


def test_lists_are_shuffled_and_reproducible(dataset, sampled, tmp_path):
    root, _ = dataset
    out, tumour, normal = sampled
    assert run_sampler(root, tmp_path / "same", "--pids", *[s[0] for s in SLIDES]) == 0
    assert read_coords(tmp_path / "same" / "tumor_train.txt") == tumour
    assert read_coords(tmp_path / "same" / "normal_train.txt") == normal
    pids = [pid for pid, _, _ in tumour]
    assert pids != sorted(pids)  # shuffled, not grouped by slide
    assert run_sampler(root, tmp_path / "other", "--pids", *[s[0] for s in SLIDES], "--seed", "1") == 0
    assert read_coords(tmp_path / "other" / "tumor_train.txt") != tumour


def test_split_keeps_slides_apart(dataset, tmp_path):
    root, _ = dataset
    assert run_sampler(root, tmp_path, "--valid_fraction", "0.5", "--name", "fit") == 0
    lists = {name: {pid for pid, _, _ in read_coords(tmp_path / f"{name}.txt")}
             for name in ("tumor_fit", "normal_fit", "tumor_valid", "normal_valid")}
    fit, valid = lists["tumor_fit"] | lists["normal_fit"], lists["tumor_valid"] | lists["normal_valid"]
    assert not fit & valid
    assert fit | valid == {"Tumor_001", "Tumor_002", "Normal_001"}  # the JSONs of the folder
    assert len(lists["tumor_fit"]) == len(lists["tumor_valid"]) == 1  # one tumour slide each side

    assert run_sampler(root, tmp_path / "l", "--valid_pids", "Normal_001") == 0
    assert {p for p, _, _ in read_coords(tmp_path / "l" / "normal_valid.txt")} == {"Normal_001"}
    assert read_coords(tmp_path / "l" / "tumor_valid.txt") == []
    assert "Normal_001" not in {p for p, _, _ in read_coords(tmp_path / "l" / "normal_train.txt")}


def test_margin_keeps_normals_away_from_tumour(dataset, tmp_path):
    root, truth = dataset
    assert run_sampler(root, tmp_path, "--pids", "Tumor_001", "--margin", "300", "--num_normal", "300") == 0
    xy = by_pid(read_coords(tmp_path / "normal_train.txt"))["Tumor_001"]
    annotation = truth["Tumor_001"][0]
    assert len(xy) == 300
    assert (distance_to_boundary(annotation.positive, xy, 300) >= 300).all()
    assert not annotation.inside_polygons(xy).any()


def test_min_tissue_fraction_of_the_grid(dataset, tmp_path):
    root, truth = dataset
    assert run_sampler(root, tmp_path, "--pids", "Normal_001", "--min_tissue", "0.9") == 0
    xy = by_pid(read_coords(tmp_path / "normal_train.txt"))["Normal_001"]
    _, mask, level0 = truth["Normal_001"]
    assert (tissue_fraction(mask, mask_geometry(mask.shape, level0), xy) >= 0.9).all()
    # Without the option, some centres sit near the tissue's edge.
    assert run_sampler(root, tmp_path / "all", "--pids", "Normal_001") == 0
    xy = by_pid(read_coords(tmp_path / "all" / "normal_train.txt"))["Normal_001"]
    assert (tissue_fraction(mask, mask_geometry(mask.shape, level0), xy) < 0.9).any()


def test_tissue_fraction_counts_pixels_under_the_grid():
    mask = np.zeros((100, 100), dtype=bool)
    mask[:50] = True  # x < 50 mask pixels = x < 800 level 0
    geometry = MaskGeometry((1600, 1600), (100, 100), 16.0)
    assert tissue_fraction(mask, geometry, [(800, 800)]).tolist() == [0.5]
    assert tissue_fraction(mask, geometry, [(400, 800), (1200, 800)]).tolist() == [1.0, 0.0]
    assert tissue_fraction(mask, geometry, [(0, 800)]).tolist() == [0.5]  # half the grid is off the slide


def test_spread_is_even():
    assert spread(10, ["b", "a", "c"]) == {"a": 4, "b": 3, "c": 3}


def test_missing_annotation_is_one_line_and_writes_nothing(dataset, tmp_path, capsys):
    root, _ = dataset
    (root / "wsi" / "Tumor_009.tif").write_bytes((root / "wsi" / "Normal_002.tif").read_bytes())
    try:
        status = run_sampler(root, tmp_path / "out", "--pids", "Tumor_001", "Tumor_009")
    finally:
        (root / "wsi" / "Tumor_009.tif").unlink()
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1
    assert "Tumor_009.json" in err and "--assume_normal" in err
    assert not (tmp_path / "out").exists()


def test_assume_normal_takes_slides_without_json(dataset, tmp_path):
    root, _ = dataset
    (root / "wsi" / "Slide_1.tif").write_bytes((root / "wsi" / "Normal_002.tif").read_bytes())
    (root / "mask" / "Slide_1.npy").write_bytes((root / "mask" / "Normal_002.npy").read_bytes())
    try:
        assert run_sampler(root, tmp_path, "--pids", "Slide_1", "--assume_normal", "--num_normal", "20") == 0
    finally:
        (root / "wsi" / "Slide_1.tif").unlink()
        (root / "mask" / "Slide_1.npy").unlink()
    assert {p for p, _, _ in read_coords(tmp_path / "normal_train.txt")} == {"Slide_1"}


@pytest.mark.parametrize("problem, message", [
    ("transposed", "(is the array transposed?)"),
    ("3d", "2-D [x, y] tissue mask"),
    ("missing", "no such tissue mask"),
])
def test_bad_tissue_mask_is_one_line_and_writes_nothing(dataset, tmp_path, capsys, problem, message):
    root, truth = dataset
    masks = tmp_path / "masks"
    masks.mkdir()
    for pid in ("Tumor_001", "Tumor_002"):
        np.save(masks / f"{pid}.npy", truth[pid][1])
    if problem == "transposed":
        np.save(masks / "Tumor_002.npy", truth["Tumor_002"][1].T)
    elif problem == "3d":
        np.save(masks / "Tumor_002.npy", truth["Tumor_002"][1][..., None])
    else:
        (masks / "Tumor_002.npy").unlink()
    status = sample_coords.main([str(root / "wsi"), str(root / "json"), str(tmp_path / "out"), "--mask_path",
                                 str(masks), "--pids", "Tumor_001", "Tumor_002", "--tumor_per_slide", "10"])
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1
    assert "Tumor_002.npy" in err and message in err
    assert not (tmp_path / "out").exists()


def test_bad_options_are_one_line(dataset, tmp_path, capsys):
    root, _ = dataset
    with pytest.raises(SystemExit) as exit_info:  # out of [0, 1]: refused by the parser (wsi.cli.probability)
        run_sampler(root, tmp_path, "--valid_fraction", "1.5")
    assert exit_info.value.code == 2
    assert "argument --valid_fraction: must be in [0, 1], got 1.5" in capsys.readouterr().err
    assert run_sampler(root, tmp_path, "--valid_pids", "Tumor_077") == 2
    assert "Tumor_077" in capsys.readouterr().err
    assert sample_coords.main([str(root / "json"), str(root / "json"), str(tmp_path)]) == 2
    assert "no such slide file" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_tissue_masks_computed_on_the_fly(tmp_path):
    tissue_module = pytest.importorskip("wsi.data.tissue")  # written by the tissue-mask stage
    from wsi.data.slide import open_slide
    from wsi.synthetic import make_synthetic_slide

    (tmp_path / "wsi").mkdir()
    made = make_synthetic_slide(tmp_path / "wsi" / "Tumor_001.tif", width=1536, height=1536, seed=5,
                                num_tumours=1, tumour_size=(500, 700), json_path=tmp_path / "json" / "Tumor_001.json")
    assert sample_coords.main([str(tmp_path / "wsi"), str(tmp_path / "json"), str(tmp_path / "out"), "--level",
                               "3", "--tumor_per_slide", "50"]) == 0
    with open_slide(made.slide_path) as slide:
        mask = tissue_module.tissue_mask(slide, level=3)
    for name, label in (("tumor_train.txt", True), ("normal_train.txt", False)):
        xy = by_pid(read_coords(tmp_path / "out" / name))["Tumor_001"]
        assert len(xy) == 50
        assert in_mask(mask, (1536, 1536), xy).all()
        assert (made.annotation.inside_polygons(xy) == label).all()
