"""wsi.inference.tta: the eight (flip, rotate) pairs and the permutation of a grid's nodes under each."""

import numpy as np
import pytest
from PIL import Image

from wsi.inference.tta import grid_permutation, transforms
from wsi.orientation import TRANSFORMS


@pytest.mark.parametrize("flip, rotate", TRANSFORMS)
def test_the_permutation_follows_pil(flip, rotate):
    # The permutation: cell i of the transformed 3x3 image shows cell perm[i] of the original.
    cells = np.kron(np.arange(9, dtype=np.uint8).reshape(3, 3), np.ones((2, 2), np.uint8))
    image = Image.fromarray(cells)
    if flip == "FLIP_LEFT_RIGHT":
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if rotate != "NONE":
        image = image.transpose(getattr(Image.Transpose, rotate))
    moved = np.asarray(image)
    assert np.array_equal(moved[::2, ::2].reshape(-1), grid_permutation(3, flip, rotate))
    assert grid_permutation(3, flip, rotate)[4] == 4


def test_eight_avg_computes_the_eight_pairs_in_the_original_order():
    assert transforms(False) == (("NONE", "NONE"),)
    assert transforms(True) == TRANSFORMS and len(set(transforms(True))) == 8
