"""wsi.orientation: one flip-and-quarter-turns for arrays and tensors, the original's PIL transposes exactly."""

import numpy as np
import pytest
import torch
from PIL import Image

from wsi.orientation import FLIPS, ROTATES, TRANSFORMS, from_names, orient


def texture(height, width, seed=1):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def pil_transform(image, flip, rotate):
    """The original's transform: PIL's FLIP_LEFT_RIGHT first, then its rotation (counter-clockwise)."""
    image = Image.fromarray(image)
    if flip == "FLIP_LEFT_RIGHT":
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if rotate != "NONE":
        image = image.transpose(getattr(Image.Transpose, rotate))
    return np.asarray(image)


@pytest.mark.parametrize("flip, rotate", TRANSFORMS)
def test_transforms_match_pil(flip, rotate):
    # A non-square image: swapping the row and column axes, or turning the wrong way, changes the shape or pixels.
    image = texture(6, 4)
    expected = pil_transform(image, flip, rotate)
    assert np.array_equal(orient(image, *from_names(flip, rotate)), expected)
    patches = torch.from_numpy(image).permute(2, 0, 1)[None]  # [1, 3, H, W]
    for axes in ((2, 3), (-2, -1)):
        got = orient(patches, *from_names(flip, rotate), axes=axes)[0].permute(1, 2, 0)
        assert np.array_equal(got.numpy(), expected)


def test_names_read_once_into_flip_and_turns():
    assert from_names("NONE", "NONE") == (False, 0)
    assert from_names("FLIP_LEFT_RIGHT", "ROTATE_270") == (True, 3)
    assert [from_names(f, r) for f, r in TRANSFORMS] == [(f, k) for f in (False, True) for k in range(4)]
    with pytest.raises(ValueError, match="flip must be one of"):
        from_names("FLIP_TOP_BOTTOM", "NONE")
    with pytest.raises(ValueError, match="rotate must be one of"):
        from_names("NONE", "ROTATE_45")
    assert len(FLIPS) * len(ROTATES) == len(TRANSFORMS)


def test_identity_is_the_input_and_turns_count_modulo_4():
    image = texture(5, 3)
    assert orient(image) is image
    tensor = torch.from_numpy(image)
    assert orient(tensor) is tensor
    assert np.array_equal(orient(image, turns=5), orient(image, turns=1))
    assert np.array_equal(orient(image, True, -1), orient(image, True, 3))
    # Four quarter turns, or two flips with the turns in between undone, give the image back.
    assert np.array_equal(orient(orient(image, turns=2), turns=2), image)


def test_a_label_grid_moves_with_its_image():
    # A [P, P] grid of cell numbers oriented as the image: cell i of the result shows the cell it labels.
    cells = np.arange(9).reshape(3, 3)
    image = np.kron(cells, np.ones((2, 2), dtype=np.int64)).astype(np.uint8)[..., None].repeat(3, axis=2)
    for flip, turns in ((False, 1), (True, 0), (True, 3)):
        moved = orient(image, flip, turns)[::2, ::2, 0]
        assert np.array_equal(moved, orient(cells, flip, turns))
