"""The original's eight test-time augmentations: (flip, rotate) pairs applied to the whole grid region.

``probs_map.py --eight_avg 1`` averages the maps of the eight (flip, rotate) pairs in :data:`TRANSFORMS`, in
the original's order. Each is PIL's ``transpose``: ``FLIP_LEFT_RIGHT`` first, then a counter-clockwise rotation.
The kept (centre) node stays the centre under every transform, but the eight neighbours are permuted, which
changes the CRF's result; :func:`grid_permutation` gives that permutation, so that the fast mode can transform
(:func:`wsi.orientation.orient`) each patch alone and rebuild the transformed grid from the untransformed neighbours.
"""

import numpy as np

from wsi.orientation import TRANSFORMS, from_names, orient


def transforms(eight_avg):
    """The (flip, rotate) pairs to compute: all eight with ``eight_avg``, else only the identity."""
    return TRANSFORMS if eight_avg else TRANSFORMS[:1]


def grid_permutation(side, flip, rotate):
    """Node i of the transformed grid holds (the transformed) node ``perm[i]`` of the untransformed grid.

    Nodes are numbered row-major (row = slide y), as the original flattens its grids. Returns an int array
    ``[side²]``.
    """
    cells = np.arange(side * side).reshape(side, side)
    return np.ascontiguousarray(orient(cells, *from_names(flip, rotate))).reshape(-1)
