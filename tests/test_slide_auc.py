"""slide_auc.py: slide scores from probability maps and the ROC AUC against a labels CSV."""

import numpy as np
import pytest

from wsi.bin.slide_auc import main
from wsi.eval.slide_auc import read_slide_labels, slide_score

# Per slide: the top values of its map. Tumour slides score 0.9, 0.8, 0.4; normal ones 0.5, 0.3, 0.1 by max:
# 8 of the 9 tumour/normal pairs are ordered, AUC 8/9.
MAPS = {
    "Test_001": ("Tumor", [0.9, 0.1]),
    "Test_002": ("Normal", [0.5, 0.5]),
    "Test_003": ("Tumor", [0.8, 0.7]),
    "Test_004": ("Normal", [0.3, 0.0]),
    "Test_005": ("Tumor", [0.4, 0.4]),
    "Test_006": ("Normal", [0.1, 0.1]),
}


@pytest.fixture
def case(tmp_path):
    map_dir = tmp_path / "maps"
    map_dir.mkdir()
    for slide, (_, top) in MAPS.items():
        probs_map = np.zeros((6, 4))
        probs_map[1, 3], probs_map[4, 0] = top
        np.save(map_dir / f"{slide}.npy", probs_map)
    labels = tmp_path / "reference.csv"
    # The Camelyon16 reference.csv has extra columns; 1/0 is accepted too.
    labels.write_text("Test_001,Tumor,Macro,Primary\nTest_002,Normal,None,None\nTest_003,1\nTest_004,0\n"
                      "Test_005,tumor\nTest_006,NORMAL\n")
    return map_dir, labels, tmp_path / "scores.csv"


def test_auc_of_the_max_score(case, capsys):
    map_dir, labels, scores = case
    assert main([str(map_dir), str(labels), str(scores)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"AUC = {8 / 9:.6f} (3 tumour, 3 normal slides, score max)")
    assert scores.read_text().splitlines() == [
        "slide,score,label", "Test_001,0.900000,Tumor", "Test_002,0.500000,Normal", "Test_003,0.800000,Tumor",
        "Test_004,0.300000,Normal", "Test_005,0.400000,Tumor", "Test_006,0.100000,Normal"]


def test_topk_score_and_exclude(case, capsys):
    map_dir, labels, scores = case
    # Top-2 means: tumour 0.5, 0.75, 0.4; normal 0.5, 0.15, 0.1 → pairs: 2.5 (a tie counts 1/2) + 3 + 2 = 7.5 / 9.
    assert main([str(map_dir), str(labels), str(scores), "--score", "topk", "--k", "2"]) == 0
    assert capsys.readouterr().out.startswith(f"AUC = {7.5 / 9:.6f}")
    # Without Test_002, the tie is gone: 3 × 2 pairs, all ordered.
    assert main([str(map_dir), str(labels), str(scores), "--score", "topk", "--k", "2", "--exclude", "Test_002"]) == 0
    assert capsys.readouterr().out.startswith("AUC = 1.000000 (3 tumour, 2 normal")


def test_slide_score():
    probs_map = np.arange(12, dtype=np.float64).reshape(3, 4) / 11
    assert slide_score(probs_map) == 1.0
    assert slide_score(probs_map, "topk", k=3) == pytest.approx(10 / 11)
    assert slide_score(probs_map, "topk", k=100) == pytest.approx(0.5)


def test_labels_with_a_header(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("image,label\nTest_001,Tumor\nTest_002,Normal\n")
    assert read_slide_labels(path) == {"Test_001": 1, "Test_002": 0}


@pytest.mark.parametrize("content, message", [
    ("Test_001,Tumor\nTest_002,Maybe\n", "line 2 has label 'Maybe'; expected Tumor, Normal, 1 or 0"),
    ("Test_001,Tumor\n\nTest_002,Normal\n", "line 2 is blank"),
    ("Test_001\n", "line 1 is not <slide>,<label>"),
    ("Test_001,Tumor\nTest_001,Normal\n", "line 2 repeats slide 'Test_001'"),
])
def test_bad_labels_give_one_line(case, capsys, content, message):
    map_dir, labels, scores = case
    labels.write_text(content)
    assert main([str(map_dir), str(labels), str(scores)]) == 2
    err = capsys.readouterr().err
    assert message in err and str(labels) in err and err.count("\n") == 1
    assert not scores.exists()


def test_missing_map_single_class_and_bad_map(case, capsys):
    map_dir, labels, scores = case
    (map_dir / "Test_004.npy").unlink()
    assert main([str(map_dir), str(labels), str(scores)]) == 2
    assert "no probability map for 1 labelled slides: Test_004.npy" in capsys.readouterr().err
    labels.write_text("Test_001,Tumor\nTest_003,Tumor\n")
    assert main([str(map_dir), str(labels), str(scores)]) == 2
    assert "all 2 slides are tumour; the AUC needs tumour and normal slides" in capsys.readouterr().err
    labels.write_text("Test_001,Tumor\nTest_002,Normal\n")
    np.save(map_dir / "Test_002.npy", np.full((3, 3), np.nan))
    assert main([str(map_dir), str(labels), str(scores)]) == 2
    err = capsys.readouterr().err
    assert "Test_002.npy: the probability map holds 9 non-finite values" in err and err.count("\n") == 1
    assert not scores.exists()


# ROC AUCs computed once with scikit-learn 1.x's roc_auc_score (no longer a dependency) and stored: labels and
# scores drawn by numpy's default_rng(seed); scores on `levels` values, so the small cases are full of ties.
STORED_AUC = [(0, 12, 4, 0.5555555555555556), (1, 40, 10, 0.4090909090909091), (2, 97, 1000, 0.5627659574468085),
              (3, 7, 2, 0.8333333333333333)]


@pytest.mark.parametrize("seed, n, levels, expected", STORED_AUC)
def test_roc_auc_matches_the_stored_values(seed, n, levels, expected):
    from wsi.eval.slide_auc import roc_auc

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    scores = rng.integers(0, levels, n) / levels
    assert roc_auc(labels, scores) == pytest.approx(expected, abs=1e-12)


def test_roc_auc_counts_ties_as_half_and_needs_both_classes():
    from wsi.eval.slide_auc import roc_auc

    assert roc_auc([1, 0], [0.5, 0.5]) == 0.5
    assert roc_auc([1, 1, 0, 0], [0.9, 0.5, 0.5, 0.1]) == 0.875  # 3 ordered pairs + one tie, of 4
    assert roc_auc([0, 1, 1], [0.2, 0.1, 0.3]) == 0.5
    with pytest.raises(ValueError, match="both classes"):
        roc_auc([1, 1], [0.2, 0.3])
