"""Statistics of coordinate lists (wsi/data/coords_stats.py), on a hand-made annotation whose counts are known."""

import numpy as np

from wsi.data.annotation import Annotation
from wsi.data.coords_stats import coords_report, is_on_grid, list_stats

# One positive square [1000, 2000)² and one negative square inside it, [1400, 1600)².
ANNOTATION = Annotation.from_dict({
    "positive": [{"name": "T", "vertices": [[1000, 1000], [2000, 1000], [2000, 2000], [1000, 2000]]}],
    "negative": [{"name": "N", "vertices": [[1400, 1400], [1600, 1400], [1600, 1600], [1400, 1600]]}],
})


def test_is_on_grid_is_the_cell_centre_in_x_and_in_y():
    xy = [(64, 64), (192, 64), (64, 65), (65, 64), (128, 128), (320, 448)]
    assert is_on_grid(xy).tolist() == [True, True, False, False, False, True]
    assert is_on_grid(xy, stride=64).tolist() == [False, False, False, False, False, False]
    assert is_on_grid([(32, 96)], stride=64).tolist() == [True]


def test_list_stats_counts_each_kind_of_centre():
    rows = [("A", 1500, 1500),  # centre in the negative square (and so in the positive one): grid all positive
            ("A", 1200, 1500),  # inside the positive square, outside the negative one
            ("A", 1000, 1500),  # exactly on the positive square's left edge
            ("A", 64, 64),  # far outside, on the hard-negative grid
            ("B", 1500, 1200)]
    stats = list_stats(rows, {"A": ANNOTATION, "B": ANNOTATION}, patch_size=256)
    assert sorted(stats) == ["A", "B"]
    a = stats["A"]
    assert a["count"] == 4 and a["centre_positive"] == 3 and a["on_edge"] == 1
    assert a["in_negative"] == 1 and a["on_grid"] == 1
    # Grids of 3×3 cells 256 apart: (1500, 1500) has 9 positive cells; (1200, 1500) has x ∈ {944, 1200, 1456}:
    # 6; (1000, 1500) has x ∈ {744, 1000, 1256}: 6 (the edge counts as inside); (64, 64): 0.
    assert a["positive_cells"] == 9 + 6 + 6 + 0
    # position [row = y, col = x]: the left column is positive only for the grid at (1500, 1500).
    assert a["position"].tolist() == [[1, 3, 3], [1, 3, 3], [1, 3, 3]]
    # (1500, 1200): y ∈ {944, 1200, 1456}: the top row is outside.
    assert stats["B"]["position"].tolist() == [[0, 0, 0], [1, 1, 1], [1, 1, 1]]
    # exclude_negative: cells inside the negative square stop counting, the centre's own cell included.
    excluded = list_stats(rows, {"A": ANNOTATION, "B": ANNOTATION}, patch_size=256, exclude_negative=True)["A"]
    assert excluded["positive_cells"] < a["positive_cells"]
    assert excluded["centre_positive"] == 2  # the centre inside the negative square no longer counts


def test_coords_report_totals_and_one_line_per_slide():
    tumor = [("A", 1500, 1500), ("A", 1200, 1500)]
    normal = [("A", 64, 64), ("B", 192, 320)]
    lines, totals = coords_report(tumor, normal, {"A": ANNOTATION, "B": ANNOTATION}, patch_size=256)
    assert [line.split()[0] for line in lines[:4]] == ["slide", "A", "B", "total"]
    assert totals["tumor"]["count"] == 2 and totals["normal"]["count"] == 2
    assert totals["tumor"]["mean"] == (9 + 6) / 18 and totals["normal"]["mean"] == 0
    assert totals["normal"]["on_grid"] == 2
    # B has no tumour centres: zeros and a dash, not a division by zero.
    assert lines[2].split()[1:6] == ["0", "0", "0", "0", "-"]
    rates = [line for line in lines if line.startswith("tumor positive rate")]
    assert len(rates) == 1 and rates[0].endswith("0.500 1.000 1.000 0.500 1.000 1.000 0.500 1.000 1.000")
    _, empty = coords_report([], None, {})
    assert empty["tumor"]["count"] == 0 and np.isnan(empty["tumor"]["mean"])
