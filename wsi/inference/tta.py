"""The original's eight test-time augmentations: (flip, rotate) pairs applied to the whole grid region.

``probs_map.py --eight_avg 1`` averages the maps of the eight (flip, rotate) pairs in :data:`TRANSFORMS`, in
the original's order. Each is PIL's ``transpose``: ``FLIP_LEFT_RIGHT`` first, then a counter-clockwise rotation.
The kept (centre) node stays the centre under every transform, but the eight neighbours are permuted, which
changes the CRF's result; :func:`grid_permutation` gives that permutation, so that the fast mode can transform
each patch alone and rebuild the transformed grid from the untransformed neighbours.
"""

import numpy as np
import torch

from wsi.geometry import QUARTER_TURNS, TRANSFORMS, check_transform, transform_array


def transforms(eight_avg):
    """The (flip, rotate) pairs to compute: all eight with ``eight_avg``, else only the identity."""
    return TRANSFORMS if eight_avg else TRANSFORMS[:1]


def transform_patches(patches, flip, rotate):
    """The same transform on a batch of patches ``[N, C, H, W]`` (torch; rows = dim 2, cols = dim 3)."""
    check_transform(flip, rotate)
    if flip == "FLIP_LEFT_RIGHT":
        patches = torch.flip(patches, dims=(3,))
    turns = QUARTER_TURNS[rotate]
    return torch.rot90(patches, turns, dims=(2, 3)) if turns else patches


def grid_permutation(side, flip, rotate):
    """Node i of the transformed grid holds (the transformed) node ``perm[i]`` of the untransformed grid.

    Nodes are numbered row-major (row = slide y), as the original flattens its grids. Returns an int array
    ``[side²]``.
    """
    cells = np.arange(side * side).reshape(side, side)
    return np.ascontiguousarray(transform_array(cells, flip, rotate)).reshape(-1)
