"""The original's eight test-time augmentations: (flip, rotate) pairs applied to the whole grid region.

``probs_map.py --eight_avg 1`` averages the maps of the eight (flip, rotate) pairs in :data:`TRANSFORMS`, in
the original's order. Each is PIL's ``transpose``: ``FLIP_LEFT_RIGHT`` first, then a counter-clockwise rotation.
The kept (centre) node stays the centre under every transform, but the eight neighbours are permuted, which
changes the CRF's result; :func:`grid_permutation` gives that permutation, so that the fast mode can transform
each patch alone and rebuild the transformed grid from the untransformed neighbours.
"""

import numpy as np
import torch
from PIL import Image

#: The (flip, rotate) pairs, in the order the original computes and sums them.
TRANSFORMS = (
    ("NONE", "NONE"), ("NONE", "ROTATE_90"), ("NONE", "ROTATE_180"), ("NONE", "ROTATE_270"),
    ("FLIP_LEFT_RIGHT", "NONE"), ("FLIP_LEFT_RIGHT", "ROTATE_90"), ("FLIP_LEFT_RIGHT", "ROTATE_180"),
    ("FLIP_LEFT_RIGHT", "ROTATE_270"),
)

FLIPS = ("NONE", "FLIP_LEFT_RIGHT")
ROTATES = ("NONE", "ROTATE_90", "ROTATE_180", "ROTATE_270")
_QUARTER_TURNS = {"NONE": 0, "ROTATE_90": 1, "ROTATE_180": 2, "ROTATE_270": 3}


def transforms(eight_avg):
    """The (flip, rotate) pairs to compute: all eight with ``eight_avg``, else only the identity."""
    return TRANSFORMS if eight_avg else TRANSFORMS[:1]


def check_transform(flip, rotate):
    if flip not in FLIPS:
        raise ValueError(f"flip must be one of {FLIPS}, got {flip!r}")
    if rotate not in ROTATES:
        raise ValueError(f"rotate must be one of {ROTATES}, got {rotate!r}")


def transform_image(image, flip, rotate):
    """Apply the original's PIL transposes to a PIL image: flip left-right first, then rotate counter-clockwise."""
    check_transform(flip, rotate)
    if flip == "FLIP_LEFT_RIGHT":
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if rotate != "NONE":
        image = image.transpose(getattr(Image.Transpose, rotate))
    return image


def transform_array(array, flip, rotate, axes=(0, 1)):
    """The same transform on an array whose ``axes`` are (rows, cols): ``np.fliplr`` then ``np.rot90`` (CCW)."""
    check_transform(flip, rotate)
    if flip == "FLIP_LEFT_RIGHT":
        array = np.flip(array, axis=axes[1])
    return np.rot90(array, _QUARTER_TURNS[rotate], axes=axes)


def transform_patches(patches, flip, rotate):
    """The same transform on a batch of patches ``[N, C, H, W]`` (torch; rows = dim 2, cols = dim 3)."""
    check_transform(flip, rotate)
    if flip == "FLIP_LEFT_RIGHT":
        patches = torch.flip(patches, dims=(3,))
    turns = _QUARTER_TURNS[rotate]
    return torch.rot90(patches, turns, dims=(2, 3)) if turns else patches


def grid_permutation(side, flip, rotate):
    """Node i of the transformed grid holds (the transformed) node ``perm[i]`` of the untransformed grid.

    Nodes are numbered row-major (row = slide y), as the original flattens its grids. Returns an int array
    ``[side²]``.
    """
    cells = np.arange(side * side).reshape(side, side)
    return np.ascontiguousarray(transform_array(cells, flip, rotate)).reshape(-1)
