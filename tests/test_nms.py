"""nms.py: the original's non-maximum suppression on hand-made maps, and its bad inputs."""

import subprocess
import sys

import numpy as np
import pytest
from scipy import ndimage

from tests.helpers import ROOT
from wsi.bin.nms import main
from wsi.eval.detections import read_detections
from wsi.eval.nms import nms


def original_nms(probs_map, level=6, radius=12, prob_thred=0.5):
    """The original's loop, literally: full-map max and first index per detection (the test oracle)."""
    probs_map = np.array(probs_map, dtype=np.float64)
    size_x, size_y = probs_map.shape
    resolution = pow(2, level)
    out = []
    while np.max(probs_map) > prob_thred:
        prob_max = probs_map.max()
        max_idx = np.where(probs_map == prob_max)
        x_mask, y_mask = max_idx[0][0], max_idx[1][0]
        out.append("%.5f,%d,%d" % (prob_max, int((x_mask + 0.5) * resolution), int((y_mask + 0.5) * resolution)))
        probs_map[max(x_mask - radius, 0):min(x_mask + radius, size_x),
                  max(y_mask - radius, 0):min(y_mask + radius, size_y)] = 0
    return out


def lines(detections):
    return ["%.5f,%d,%d" % d for d in detections]


def run_cli(tmp_path, probs_map, *options):
    npy = tmp_path / "map.npy"
    np.save(npy, probs_map)
    csv = tmp_path / "out.csv"
    status = main([str(npy), str(csv), *options])
    return status, csv


@pytest.mark.parametrize("seed", range(6))
def test_matches_the_original_loop_on_random_maps_with_ties(seed):
    rng = np.random.default_rng(seed)
    # Values on a coarse grid so that many cells tie; shapes not square to catch an x/y swap.
    probs_map = rng.integers(0, 12, size=(37, 53)) / 11.0
    for radius in (1, 3, 12):
        assert lines(nms(probs_map, level=6, radius=radius)) == original_nms(probs_map, radius=radius)
    assert lines(nms(probs_map, level=3, radius=2, prob_thred=0.8)) == original_nms(probs_map, 3, 2, 0.8)


def test_ties_take_the_first_index_in_c_order(tmp_path):
    probs_map = np.zeros((10, 12))
    probs_map[5, 2] = 0.9
    probs_map[3, 7] = 0.9  # smaller x: first in C order although its y is larger
    status, csv = run_cli(tmp_path, probs_map, "--radius", "1")
    assert status == 0
    # level 6: int((i + 0.5) * 64)
    assert csv.read_text() == "0.90000,224,480\n0.90000,352,160\n"


def test_threshold_is_strict():
    probs_map = np.zeros((4, 4))
    probs_map[1, 1] = 0.5
    probs_map[3, 3] = 0.50001
    assert nms(probs_map, radius=1) == [(0.50001, 224, 224)]
    assert nms(probs_map, radius=1, prob_thred=0.50001) == []


def test_window_is_half_open_and_asymmetric():
    probs_map = np.zeros((30, 30))
    probs_map[12, 12] = 0.9
    probs_map[10, 12] = 0.8  # i - r: suppressed
    probs_map[13, 12] = 0.85  # i + r - 1: suppressed
    probs_map[14, 12] = 0.8  # i + r: survives
    probs_map[12, 10] = 0.75  # j - r: suppressed
    probs_map[12, 14] = 0.7  # j + r: survives
    probs_map[9, 12] = 0.6  # i - r - 1: survives
    got = [(p, x // 64, y // 64) for p, x, y in nms(probs_map, radius=2)]
    assert got == [(0.9, 12, 12), (0.8, 14, 12), (0.7, 12, 14), (0.6, 9, 12)]


def test_border_windows_are_clipped():
    probs_map = np.zeros((5, 7))
    probs_map[0, 0] = 0.9
    probs_map[1, 1] = 0.8  # inside the clipped window of (0, 0)
    probs_map[4, 6] = 0.7  # last cell
    probs_map[3, 5] = 0.6  # inside the window of (4, 6)
    probs_map[2, 6] = 0.55  # x = 4 - 2: inside [2, 6); y clipped at the edge
    assert nms(probs_map, level=0, radius=2) == [(0.9, 0, 0), (0.7, 4, 6)]


def test_coordinates_follow_the_level():
    probs_map = np.zeros((4, 3))
    probs_map[3, 1] = 1.0
    assert nms(probs_map, level=0) == [(1.0, 3, 1)]  # int(3.5) = 3
    assert nms(probs_map, level=5) == [(1.0, 112, 48)]
    assert nms(probs_map, level=6) == [(1.0, 224, 96)]


def test_smoothing_uses_skimage_gaussian_defaults(tmp_path):
    probs_map = np.zeros((20, 20), dtype=np.float32)
    probs_map[4, 15] = 1.0  # a map holds probabilities: values above 1 are refused
    probs_map[15, 3] = 0.2  # smoothed below the threshold
    expected = ndimage.gaussian_filter(probs_map.astype(np.float64), sigma=1.5, mode="nearest", truncate=4.0)
    status, csv = run_cli(tmp_path, probs_map, "--sigma", "1.5", "--prob_thred", "0.05")
    assert status == 0
    assert csv.read_text() == "%.5f,%d,%d\n" % (expected[4, 15], 4 * 64 + 32, 15 * 64 + 32)
    assert expected[15, 3] < 0.05 < expected[4, 15]
    # Without smoothing both peaks are detected, with their raw values.
    assert lines(nms(probs_map, radius=2, prob_thred=0.05)) == ["1.00000,288,992", "0.20000,992,224"]


def test_nothing_above_threshold_writes_an_empty_file(tmp_path):
    status, csv = run_cli(tmp_path, np.full((8, 8), 0.3))
    assert status == 0
    assert csv.read_text() == ""
    assert read_detections(csv)[0].shape == (0,)


def test_big_map_many_detections_is_fast_and_exact():
    rng = np.random.default_rng(1)
    probs_map = ndimage.uniform_filter(rng.random((150, 200)), 3)
    probs_map = (probs_map - probs_map.min()) / np.ptp(probs_map)
    got = lines(nms(probs_map, radius=2, prob_thred=0.55))
    assert len(got) > 100
    assert got == original_nms(probs_map, radius=2, prob_thred=0.55)


@pytest.mark.parametrize("array, message", [
    (np.zeros((3, 4, 2)), "expected a 2-D [x, y] probability map, got shape (3, 4, 2)"),
    (np.array([[0.1, np.nan], [0.2, 0.3]]), "non-finite values"),
    (np.array([[0.1, np.inf]]), "non-finite values"),
    (np.zeros((0, 5)), "is empty"),
])
def test_bad_maps_give_one_line(tmp_path, capsys, array, message):
    status, csv = run_cli(tmp_path, array)
    err = capsys.readouterr().err
    assert status == 2
    assert message in err and str(tmp_path / "map.npy") in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not csv.exists()


def test_bad_files_and_options_give_one_line(tmp_path, capsys):
    csv = tmp_path / "out.csv"
    assert main([str(tmp_path / "missing.npy"), str(csv)]) == 2
    assert "missing.npy: no such probability map" in capsys.readouterr().err
    text = tmp_path / "map.npy"
    text.write_text("not an array")
    assert main([str(text), str(csv)]) == 2
    assert "not a NumPy .npy probability map" in capsys.readouterr().err
    np.save(tmp_path / "ok.npy", np.ones((3, 3)))
    assert main([str(tmp_path / "ok.npy"), str(csv), "--radius", "0"]) == 2
    assert "--radius must be at least 1" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:  # out of [0, 1]: refused by the parser (wsi.cli.probability)
        main([str(tmp_path / "ok.npy"), str(csv), "--prob_thred", "-0.1"])
    assert exit_info.value.code == 2
    assert "argument --prob_thred: must be in [0, 1], got -0.1" in capsys.readouterr().err
    assert not csv.exists()


def test_runs_as_a_script(tmp_path):
    probs_map = np.zeros((3, 3))
    probs_map[2, 0] = 0.75
    np.save(tmp_path / "map.npy", probs_map)
    for command in ([sys.executable, "wsi/bin/nms.py"], [sys.executable, "-m", "wsi.bin.nms"]):
        out = tmp_path / f"out{len(command)}.csv"
        subprocess.run([*command, str(tmp_path / "map.npy"), str(out), "--level", "1"], cwd=ROOT, check=True)
        assert out.read_text() == "0.75000,5,1\n"


def test_a_run_checks_the_map_once(tmp_path, monkeypatch):
    """load_array checks the map (2-D, numeric, finite: a scan of every value); nms does not scan it again."""
    import importlib

    import wsi.arrays

    nms_module = importlib.import_module("wsi.eval.nms")  # wsi.eval.nms is also the function, in wsi.eval
    calls = []
    check = wsi.arrays.check_array

    def counting(array, *args, **kwargs):
        calls.append(array.shape)
        return check(array, *args, **kwargs)

    monkeypatch.setattr(wsi.arrays, "check_array", counting)
    monkeypatch.setattr(nms_module, "check_array", counting)
    probs_map = np.zeros((6, 5))
    probs_map[2, 3] = 0.9
    status, csv = run_cli(tmp_path, probs_map)
    assert status == 0 and csv.read_text() == "0.90000,160,224\n"
    assert calls == [(6, 5)]


@pytest.mark.parametrize("array, message", [
    (np.array([[0.1, np.nan], [0.2, 0.3]]), "non-finite values"), (np.zeros((3, 4, 2)), "expected a 2-D"),
])
def test_the_library_checks_a_map_it_is_given(array, message):
    from wsi.errors import ArrayFileError

    with pytest.raises(ArrayFileError, match=message):
        nms(array)


@pytest.mark.parametrize("level", [None, "2"])
def test_detections_use_the_sidecar_cell_not_2_to_the_level(level2_map, tmp_path, level):
    # Level 2 of a 4×-step pyramid: 16 level-0 px per cell, where 2**2 is 4 and the default 2**6 is 64.
    root, hot = level2_map
    extra = [] if level is None else ["--level", level]
    assert main([str(root / "probs" / "Tumor_001.npy"), str(tmp_path / "det.csv"), "--radius", "1", *extra]) == 0
    probs, xs, ys = read_detections(tmp_path / "det.csv")
    assert probs.tolist() == [0.9, 0.8]
    assert list(zip(xs.tolist(), ys.tolist())) == [(int((i + 0.5) * 16), int((j + 0.5) * 16)) for i, j in hot]
