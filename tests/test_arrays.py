"""wsi.arrays: the cell size of a map, from its sidecar or, without one, the original's ``2**level`` rule."""

import numpy as np
import pytest

from wsi.arrays import cell_size, level_cell_size
from wsi.data.annotation import Annotation
from wsi.data.hard_negatives import hard_negative_centres
from wsi.errors import ParameterError
from wsi.eval.nms import nms


@pytest.mark.parametrize("level, cell", [(0, 1.0), (2, 4.0), (6, 64.0)])
def test_a_map_without_sidecar_has_cells_of_2_to_the_level(level, cell):
    assert level_cell_size(level) == cell
    assert cell_size(None, level, "map.npy") == cell


def test_the_default_level_is_the_original_6_and_a_negative_level_is_refused():
    assert cell_size(None, None, "map.npy") == 64.0
    with pytest.raises(ParameterError, match=r"level\W* must be at least 0, got -1"):
        level_cell_size(-1)


def test_nms_and_hard_negatives_without_a_cell_use_the_level_rule():
    # The same map read with the rule and with the cell it gives: the same detections and candidates.
    probs = np.zeros((8, 8))
    probs[5, 2] = 0.9
    for level in (2, 5):
        assert nms(probs, level=level, radius=1) == nms(probs, level=level, radius=1, cell=level_cell_size(level))
        assert nms(probs, level=level, radius=1) == [(0.9, int(5.5 * 2 ** level), int(2.5 * 2 ** level))]
    # Hard negatives: cells of stride 16 on a level-2 map (4 level-0 pixels per pixel) without an annotation.
    centres, found = hard_negative_centres(probs, Annotation(), None, level=2, stride=16, threshold=0.5)
    assert centres.tolist() == [[5 * 4 // 16 * 16 + 8, 2 * 4 // 16 * 16 + 8]] and found.tolist() == [0.9]
    same, _ = hard_negative_centres(probs, Annotation(), None, level=2, stride=16, threshold=0.5, cell=4.0)
    assert same.tolist() == centres.tolist()
