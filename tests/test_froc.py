"""Evaluation_FROC.py: the Camelyon16 FROC on hand-made masks and CSVs with known answers."""

import json
import logging
import shutil

import numpy as np
import pytest

from wsi.bin.Evaluation_FROC import main
from wsi.data.pyramid import write_pyramid_from_array
from wsi.eval.froc import (compute_evaluation_mask, compute_froc_curve, compute_itc_labels, evaluate_froc,
                           froc_score)

# A 2048 × 2048 slide; its level 5 is this 64 × 64 design (lesions 1 and 2 are 44 × 8 level-5 px bars,
# lesion 3 a 2 × 2 px ITC), labelled 1, 2, 3 in raster order.
DESIGN = np.zeros((64, 64), np.uint8)
DESIGN[4:12, 4:48] = 1  # lesion 1
DESIGN[26:34, 4:48] = 1  # lesion 2
DESIGN[52:54, 56:58] = 1  # lesion 3, isolated tumour cells

# The contract's worked example: slide A has lesions 1, 2 and ITC 3; slide B is normal.
SLIDE_A = [
    (0.9, 800, 250),  # lesion 1 (level 5: row 7, col 25)
    (0.8, 600, 300),  # lesion 1 again: neither TP nor FP
    (0.7, 800, 1500),  # background: FP
    (0.6, 1820, 1690),  # the ITC: ignored
    (0.5, 800, 960),  # lesion 2
]
SLIDE_B = [(0.95, 100, 100), (0.4, 90000, 70000)]  # a normal slide: no bounds to check

EXPECTED_OUTPUT = """\
Evaluating Performance on image: Test_001
Evaluating Performance on image: Test_002
Avg FP =  0.25
Sensitivity =  0.0
Avg FP =  0.5
Sensitivity =  0.5
Avg FP =  1
Sensitivity =  1.0
Avg FP =  2
Sensitivity =  1.0
Avg FP =  4
Sensitivity =  1.0
Avg FP =  8
Sensitivity =  1.0
Avg Sensivity =  0.75
"""


def write_mask(path, value=255, design=DESIGN):
    level0 = np.kron(design * np.uint8(value), np.ones((32, 32), np.uint8))
    write_pyramid_from_array(path, level0, compression="zlib", resample="nearest")
    return path


def write_csv(path, rows):
    path.write_text("".join("%.5f,%d,%d\n" % row for row in rows))
    return path


@pytest.fixture(scope="module")
def masks(tmp_path_factory):
    folder = tmp_path_factory.mktemp("masks")
    return {255: write_mask(folder / "mask255.tif"), 1: write_mask(folder / "mask1.tif", value=1)}


@pytest.fixture
def case(tmp_path, masks):
    """MASK_DIR with Test_001.tif, CSV_DIR with Test_001.csv (slide A) and Test_002.csv (slide B)."""
    mask_dir, csv_dir = tmp_path / "masks", tmp_path / "csv"
    mask_dir.mkdir()
    csv_dir.mkdir()
    shutil.copy(masks[255], mask_dir / "Test_001.tif")
    write_csv(csv_dir / "Test_001.csv", SLIDE_A)
    write_csv(csv_dir / "Test_002.csv", SLIDE_B)
    return mask_dir, csv_dir


def original_compute_froc(fps_per_slide, tps_per_slide, num_tumours):
    """The organisers' computeFROC, literally (Python lists of floats and float32 arrays): the test oracle."""
    unlisted_fps = [item for sublist in fps_per_slide for item in sublist]
    unlisted_tps = [item for sublist in tps_per_slide for item in sublist]
    total_fps, total_tps = [], []
    all_probs = sorted(set(unlisted_fps + unlisted_tps))
    for thresh in all_probs[1:]:
        total_fps.append((np.asarray(unlisted_fps) >= thresh).sum())
        total_tps.append((np.asarray(unlisted_tps) >= thresh).sum())
    total_fps.append(0)
    total_tps.append(0)
    return np.asarray(total_fps) / float(len(fps_per_slide)), np.asarray(total_tps) / float(num_tumours)


def test_evaluation_mask_labels_and_itc(masks):
    evaluation_mask, value = compute_evaluation_mask(masks[255])
    assert value == 255 and evaluation_mask.shape == (64, 64)  # [rows = y, cols = x]
    assert evaluation_mask.max() == 3
    assert compute_itc_labels(evaluation_mask) == [3]
    # Grown by 75/(0.243·32·2) = 4.82 px: 4 px beyond the bar is in, 5 px is out; 8-connected, holes filled.
    assert evaluation_mask[7, 47 + 4] == 1 and evaluation_mask[7, 47 + 5] == 0
    assert evaluation_mask[4 - 4, 20] == 1 and evaluation_mask[30, 20] == 2


def test_worked_example_scores_075(case, capsys):
    mask_dir, csv_dir = case
    assert main([str(mask_dir), str(csv_dir)]) == 0
    assert capsys.readouterr().out == EXPECTED_OUTPUT


def test_worked_example_curve_and_slides(case):
    result = evaluate_froc(*case)
    np.testing.assert_allclose(result.avg_fps, [1.5, 1, 1, .5, .5, 0])
    np.testing.assert_allclose(result.sensitivities, [1, 1, .5, .5, 0, 0])
    np.testing.assert_allclose(result.eval_sensitivities, [0, .5, 1, 1, 1, 1])
    assert result.score == 0.75 and result.num_slides == 2 and result.num_tumours == 2
    a, b = result.slides
    assert a.is_tumour and not b.is_tumour
    np.testing.assert_array_equal(a.fp_probs, [0.7])  # the ITC hit and the second hit on lesion 1 are not FPs
    np.testing.assert_array_equal(a.tp_probs, np.float32([0.9, 0.5, 0.0]))  # one TP per lesion, at its max
    assert a.itc_labels == [3] and a.num_tumours == 2
    assert a.detection_summary == {"Label 1": [0.9, 800, 250], "Label 2": [0.5, 800, 960]}
    np.testing.assert_array_equal(b.fp_probs, [0.95, 0.4])  # a normal slide: every detection is an FP
    assert b.tp_probs.shape == (0,)


def test_missed_lesion_and_empty_csv(case):
    mask_dir, csv_dir = case
    write_csv(csv_dir / "Test_001.csv", SLIDE_A[:4])  # lesion 2 missed
    (csv_dir / "Test_002.csv").write_text("")  # no detections
    result = evaluate_froc(mask_dir, csv_dir)
    np.testing.assert_array_equal(result.slides[0].tp_probs, np.float32([0.9, 0, 0]))
    np.testing.assert_allclose(result.avg_fps, [0.5, 0, 0])
    np.testing.assert_allclose(result.sensitivities, [0.5, 0.5, 0])  # at most one of the two lesions
    assert result.score == 0.5


def test_curve_matches_the_original_including_float32_slots():
    rng = np.random.default_rng(0)
    for _ in range(20):
        # FPs are Python floats, as the original read them from the CSV; lesion slots are float32.
        fps = [np.round(rng.random(rng.integers(0, 6)), 2).tolist() for _ in range(3)]
        tps = [np.round(rng.random(rng.integers(1, 4)), 2).astype(np.float32) for _ in range(2)]
        tps[0][0] = 0.0
        avg_fps, sens, _ = compute_froc_curve(np.concatenate(fps), np.concatenate(tps), 3, 4)
        assert len(avg_fps) > 3
        expected_fps, expected_sens = original_compute_froc(fps, [list(t) for t in tps], 4)
        np.testing.assert_array_equal(avg_fps, expected_fps)
        np.testing.assert_array_equal(sens, expected_sens)
    # 0.9 as an FP threshold compares with the float32 lesion slot 0.9f in float32: the slot counts.
    avg_fps, sens, thresholds = compute_froc_curve([0.9], np.float32([0.9, 0.0]), 1, 2)
    np.testing.assert_array_equal(sens, [0.5, 0.5, 0])
    expected_fps, expected_sens = original_compute_froc([[0.9]], [list(np.float32([0.9, 0.0]))], 2)
    np.testing.assert_array_equal(sens, expected_sens)
    np.testing.assert_array_equal(avg_fps, expected_fps)


def test_drops_the_smallest_threshold_when_it_is_not_zero():
    # No zero anywhere: the lowest probability (an FP at 0.3) is never a threshold, so it is never counted.
    avg_fps, sens, thresholds = compute_froc_curve([0.3, 0.8], np.float32([0.6]), 1, 1)
    np.testing.assert_allclose(thresholds, [np.float32(0.6), 0.8])
    np.testing.assert_allclose(avg_fps, [1, 1, 0])
    assert froc_score(avg_fps, sens)[0] == pytest.approx(np.mean(np.interp([.25, .5, 1, 2, 4, 8], [0, 1, 1],
                                                                           [0, 0, 1])))


def test_official_mask_names_and_tumour_value_1(case, masks, caplog):
    mask_dir, csv_dir = case
    (mask_dir / "Test_001.tif").unlink()
    shutil.copy(masks[1], mask_dir / "Test_001_Mask.tif")
    with caplog.at_level(logging.INFO):
        result = evaluate_froc(mask_dir, csv_dir)
    assert result.score == 0.75
    assert result.slides[0].mask_path.endswith("Test_001_Mask.tif") and result.slides[0].tumour_value == 1
    assert "tumour encoded as 1" in caplog.text


def test_exclude_plot_and_json(case, tmp_path, capsys):
    mask_dir, csv_dir = case
    write_csv(csv_dir / "Test_049.csv", [(0.99, 10, 10)] * 3)
    png, out = tmp_path / "froc.png", tmp_path / "froc.json"
    assert main([str(mask_dir), str(csv_dir), "--exclude", "Test_049,Test_114", "--plot", str(png),
                 "--json", str(out)]) == 0
    assert capsys.readouterr().out == EXPECTED_OUTPUT
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    details = json.loads(out.read_text())
    assert details["froc"] == 0.75 and details["num_slides"] == 2
    assert details["slides"]["Test_001"]["fp_summary"] == {"FP 0": [0.7, 800, 1500]}
    assert details["slides"]["Test_001"]["itc_labels"] == [3]
    assert details["slides"]["Test_002"]["mask"] is None
    # Without the exclusion Test_049 is a normal slide with 3 FPs at 0.99 and the slide count is 3.
    assert evaluate_froc(mask_dir, csv_dir).score < 0.75


@pytest.mark.parametrize("content, message", [
    ("prob,x,y\n0.9,800,250\n", "line 1 has a header or a non-numeric probability"),
    ("0.9,800,250\n0.8,800.5,250\n", "line 2 has a non-integer coordinate"),
    ("0.9,800,250\n\n", "line 2 is blank"),
    ("0.9,800\n", "line 1 has 2 fields"),
    ("0.9,800,250\n0.8,3000,250\n", "line 2: detection (3000, 250) lies outside the mask"),
    ("0.8,-40,250\n", "line 1: detection (-40, 250) lies outside the mask"),
])
def test_bad_csv_gives_one_line(case, capsys, tmp_path, content, message):
    mask_dir, csv_dir = case
    (csv_dir / "Test_001.csv").write_text(content)
    out = tmp_path / "details.json"
    assert main([str(mask_dir), str(csv_dir), "--json", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and str(csv_dir / "Test_001.csv") in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()


def test_mask_without_level_5(case, capsys):
    mask_dir, csv_dir = case
    small = np.zeros((256, 256), np.uint8)
    small[10:20, 10:20] = 255
    write_pyramid_from_array(mask_dir / "Test_001.tif", small, compression="zlib", resample="nearest")
    assert main([str(mask_dir), str(csv_dir)]) == 2
    err = capsys.readouterr().err
    assert "Test_001.tif: the mask has no level 5" in err and err.count("\n") == 1


def test_bad_folders_and_masks(case, tmp_path, capsys):
    mask_dir, csv_dir = case
    assert main([str(tmp_path / "nowhere"), str(csv_dir)]) == 2
    assert "nowhere: no such mask folder" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([str(mask_dir), str(empty)]) == 2
    assert "no .csv detection files" in capsys.readouterr().err
    assert main([str(mask_dir), str(csv_dir), "--plot", str(tmp_path / "curve.xyz")]) == 2
    assert "cannot save a plot as 'xyz'" in capsys.readouterr().err
    other = DESIGN * np.uint8(2)
    write_mask(mask_dir / "Test_001.tif", value=1, design=other)  # values {0, 2}: neither 255 nor 1
    assert main([str(mask_dir), str(csv_dir)]) == 2
    assert "holds values [0, 2] but no 255" in capsys.readouterr().err


@pytest.mark.parametrize("length, is_itc", [(30, True), (31, False)])
def test_itc_cut_with_a_lesion_just_either_side(length, is_itc):
    # The cut: major axis below 275 / (0.243 · 2**5) = 35.37 level-5 px (200 µm + the 75 µm growth). A one-pixel
    # bar of n px has a major axis of sqrt(4 (n² − 1) / 3): 34.6 px for 30 (an ITC), 35.8 px for 31 (a lesion).
    labels = np.zeros((64, 64), np.int32)
    labels[10, 5:5 + 40] = 1  # a lesion well above the cut: the same answer whatever the length tested
    labels[30, 5:5 + length] = 2
    labels[50:52, 50:52] = 3  # well below: always an ITC
    axis = np.sqrt(4 * (length ** 2 - 1) / 3)
    assert abs(axis - 275 / (0.243 * 32)) < 1  # just either side of the cut
    assert compute_itc_labels(labels) == ([2, 3] if is_itc else [3])
