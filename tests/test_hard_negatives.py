"""Hard-negative mining (wsi/data/sampling.py, wsi/bin/hard_negatives.py) on synthetic maps and annotations."""

import numpy as np
import pytest

from tests.helpers import tissue_mask_of
from wsi.bin import hard_negatives
from wsi.data.coords import read_coords, write_coords
from wsi.data.hard_negatives import hard_negative_centres
from wsi.synthetic import plan_slide

SIZE = 4096  # level 6: a 64 × 64 map; stride 128: 32 × 32 cells


@pytest.fixture(scope="module")
def maps(tmp_path_factory):
    """Probability maps, tissue masks (level 6) and JSONs of a tumour and a normal slide.

    The map is random in tissue and 0 outside, except for a patch of 0.99 outside the tissue that only the
    tissue mask can reject.
    """
    root = tmp_path_factory.mktemp("hard")
    for sub in ("probs", "mask", "json"):
        (root / sub).mkdir()
    truth = {}
    for pid, seed, normal in (("Tumor_001", 1, False), ("Normal_001", 2, True)):
        tissue, annotation, _ = plan_slide(SIZE, SIZE, seed=seed, num_tumours=2, tumour_size=(900, 1400),
                                           normal=normal)
        mask = tissue_mask_of(tissue, SIZE, SIZE, level=6)
        probs = np.random.default_rng(seed).random(mask.shape) * mask
        background = np.argwhere(~mask)[:5]
        probs[background[:, 0], background[:, 1]] = 0.99
        np.save(root / "probs" / f"{pid}.npy", probs)
        np.save(root / "mask" / f"{pid}.npy", mask)
        if not normal:  # Normal_001 has no JSON: normal by its name
            annotation.to_json(root / "json" / f"{pid}.json")
        truth[pid] = (annotation, mask, probs)
    return root, truth


def brute_force(annotation, mask, probs, threshold, stride=128, resolution=64):
    """{(x, y): p} of every qualifying cell, one cell at a time."""
    k = stride // resolution
    out = {}
    for i in range(-(-probs.shape[0] // k)):
        for j in range(-(-probs.shape[1] // k)):
            p = probs[i * k:(i + 1) * k, j * k:(j + 1) * k].max()
            x, y = i * stride + stride // 2, j * stride + stride // 2
            if p >= threshold and mask[x // resolution, y // resolution] and not annotation.inside_polygons((x, y)):
                out[(x, y)] = p
    return out


def run(root, normal_path, *extra):
    return hard_negatives.main([str(root / "probs"), str(root / "json"), str(normal_path), "--mask_path",
                                str(root / "mask"), *extra])


def test_candidates_lie_in_tissue_outside_tumour_above_threshold_on_the_grid(maps):
    root, truth = maps
    annotation, mask, probs = truth["Tumor_001"]
    centres, p = hard_negative_centres(probs, annotation, mask, level=6, stride=128, threshold=0.9)
    expected = brute_force(annotation, mask, probs, 0.9)
    assert len(expected) > 50
    assert dict(zip(map(tuple, centres.tolist()), p.tolist())) == expected
    assert ((centres % 128) == 64).all()  # as the shipped lists: (128·i + 64, 128·j + 64)
    assert (np.diff(p) <= 0).all()  # highest first
    assert annotation.positive and not annotation.inside_polygons(centres).any()
    # Tumour cells are high too, but never chosen; and the 0.99 outside the tissue needs the mask to go.
    inside = brute_force(type(annotation)([], []), mask, probs, 0.9).keys() - expected.keys()
    assert inside and annotation.inside_polygons(np.array(sorted(inside))).all()
    unmasked, _ = hard_negative_centres(probs, annotation, None, level=6, stride=128, threshold=0.9)
    assert len(unmasked) > len(centres)


def test_stride_of_one_map_pixel_gives_the_nms_centres(maps):
    _, truth = maps
    annotation, mask, probs = truth["Tumor_001"]
    centres, _ = hard_negative_centres(probs, annotation, mask, level=6, stride=64, threshold=0.95)
    assert ((centres % 64) == 32).all()  # int((i + 0.5)·2**6), as nms.py
    assert (probs[centres[:, 0] // 64, centres[:, 1] // 64] >= 0.95).all()


def test_cli_caps_deduplicates_and_keeps_the_list(maps, tmp_path):
    root, truth = maps
    top = {pid: sorted(brute_force(*truth[pid], 0.8).items(), key=lambda kv: -kv[1]) for pid in truth}
    existing = [("Tumor_001", 1001, 2002), ("Normal_001", 3003, 404)]
    duplicate = ("Tumor_001", *top["Tumor_001"][0][0])  # the best candidate is in the list already
    write_coords(tmp_path / "normal.txt", existing + [duplicate])
    assert run(root, tmp_path / "normal.txt", "--threshold", "0.8", "--max_per_slide", "40") == 0
    rows = read_coords(tmp_path / "normal.txt")
    assert len(rows) == len(set(rows)) == 3 + 40 + 40 - 1
    assert set(existing + [duplicate]) <= set(rows)
    for pid in truth:
        chosen = {(x, y) for p, x, y in rows if p == pid} - {(x, y) for p, x, y in existing}
        assert chosen == {xy for xy, _ in top[pid][:40]}  # the 40 most probable
    assert rows[:3] != existing + [duplicate]  # shuffled: training reads the list in file order

    # Running again adds nothing.
    assert run(root, tmp_path / "normal.txt", "--threshold", "0.8", "--max_per_slide", "40") == 0
    assert sorted(read_coords(tmp_path / "normal.txt")) == sorted(rows)


def test_no_shuffle_appends_and_output_leaves_the_input(maps, tmp_path):
    root, truth = maps
    existing = [("Normal_001", 10, 20), ("Tumor_001", 30, 40)]
    write_coords(tmp_path / "normal.txt", existing)
    assert run(root, tmp_path / "normal.txt", "--output", str(tmp_path / "out.txt"), "--no_shuffle",
               "--max_per_slide", "5", "--max_total", "7", "--pids", "Tumor_001", "Normal_001") == 0
    assert read_coords(tmp_path / "normal.txt") == existing
    rows = read_coords(tmp_path / "out.txt")
    assert rows[:2] == existing and len(rows) == 2 + 7
    best = sorted([(p, pid, xy) for pid in truth for xy, p in brute_force(*truth[pid], 0.5).items()], reverse=True)
    per_slide = {pid: [xy for p, q, xy in best if q == pid][:5] for pid in truth}
    expected = sorted([(p, pid, xy) for p, pid, xy in best if xy in per_slide[pid]], reverse=True)[:7]
    assert {pid for _, pid, _ in expected} == set(truth)  # both slides take part in the pooled cap
    assert rows[2:] == [(pid, *xy) for _, pid, xy in expected]


def test_missing_list_is_created(maps, tmp_path):
    root, _ = maps
    assert run(root, tmp_path / "new" / "normal.txt", "--pids", "Normal_001", "--max_per_slide", "3") == 0
    assert len(read_coords(tmp_path / "new" / "normal.txt")) == 3


@pytest.mark.parametrize("extra, message", [
    (["--stride", "100"], "--stride 100"),
    (["--pids", "Tumor_404"], "Tumor_404.npy: no such probability map"),
])
def test_bad_options_are_one_line(maps, tmp_path, capsys, extra, message):
    root, _ = maps
    write_coords(tmp_path / "normal.txt", [("Normal_001", 1, 2)])
    assert run(root, tmp_path / "normal.txt", *extra) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert read_coords(tmp_path / "normal.txt") == [("Normal_001", 1, 2)]


def test_bad_inputs_leave_the_list_untouched(maps, tmp_path, capsys):
    root, truth = maps
    write_coords(tmp_path / "normal.txt", [("Normal_001", 1, 2)])
    bad = tmp_path / "bad"
    for sub in ("probs", "mask"):
        (bad / sub).mkdir(parents=True)
    np.save(bad / "probs" / "Tumor_001.npy", truth["Tumor_001"][2])
    np.save(bad / "mask" / "Tumor_001.npy", truth["Tumor_001"][1][:, :10])
    np.save(bad / "probs" / "Tumor_002.npy", truth["Tumor_001"][2])
    status = hard_negatives.main([str(bad / "probs"), str(root / "json"), str(tmp_path / "normal.txt"),
                                  "--mask_path", str(bad / "mask"), "--pids", "Tumor_001"])
    assert status == 2 and "differs from the probability map's (64, 64)" in capsys.readouterr().err
    status = hard_negatives.main([str(bad / "probs"), str(root / "json"), str(tmp_path / "normal.txt")])
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1 and "Tumor_002.json: no annotation" in err
    assert read_coords(tmp_path / "normal.txt") == [("Normal_001", 1, 2)]


@pytest.mark.parametrize("level", [None, "2"])
def test_centres_use_the_sidecar_cell_not_2_to_the_level(level2_map, tmp_path, level):
    # Level 2 of a 4×-step pyramid: 16 level-0 px per cell (8 map cells per 128-px hard-negative cell), where
    # 2**2 is 4 and the default 2**6 is 64. The map's sidecar names Tumor_001.tif; no JSON: normal by --assume_normal.
    root, hot = level2_map
    (tmp_path / "json").mkdir()
    extra = [] if level is None else ["--level", level]
    assert hard_negatives.main([str(root / "probs"), str(tmp_path / "json"), str(tmp_path / "normal.txt"),
                                "--mask_path", str(root / "mask"), "--assume_normal", *extra]) == 0
    rows = read_coords(tmp_path / "normal.txt")
    assert sorted(rows) == sorted(("Tumor_001", i // 8 * 128 + 64, j // 8 * 128 + 64) for i, j in hot)


def test_threshold_is_inclusive_and_tissue_is_read_at_the_cell_centre_x_first():
    from wsi.data.annotation import Annotation

    # A map of 16-px cells [x, y], 8 × 6, cut into 32-px hard-negative cells (2 × 2 map cells each).
    probs = np.zeros((8, 6))
    probs[5, 1] = 0.5  # exactly the threshold: kept; cell (2, 0), centre (80, 16), map pixel (5, 1)
    probs[1, 4] = 0.49999  # just below: not kept
    probs[6, 4] = 0.9  # cell (3, 2), centre (112, 80): its centre pixel (7, 5) is not tissue
    tissue = np.ones((8, 6), dtype=bool)
    tissue[7, 5] = False
    centres, p = hard_negative_centres(probs, Annotation(), tissue, stride=32, threshold=0.5, cell=16)
    assert centres.tolist() == [[80, 16]] and p.tolist() == [0.5]
    # Without the tissue mask the third cell counts, highest first.
    centres, p = hard_negative_centres(probs, Annotation(), None, stride=32, threshold=0.5, cell=16)
    assert centres.tolist() == [[112, 80], [80, 16]] and p.tolist() == [0.9, 0.5]
