"""wsi/inference/lattice.py: the fast mode's shared patches are the faithful mode's crops, and the blocks cover them."""

import numpy as np
import pytest

from wsi.geometry import GridSpec, MaskGeometry
from wsi.orientation import TRANSFORMS
from wsi.inference.lattice import PatchLattice, fast_mode_problem, needed_cells
from wsi.inference.tta import grid_permutation


def _geometry(mask_shape, stride):
    return MaskGeometry((mask_shape[0] * stride, mask_shape[1] * stride), mask_shape, float(stride))


@pytest.mark.parametrize("grid, stride", [(GridSpec(96, 32, 28), 16), (GridSpec(768, 256, 224), 64),
                                          (GridSpec(192, 64, 48), 64), (GridSpec(96, 32, 27), 8)])
def test_each_node_patch_is_the_faithful_crop(grid, stride):
    mask = np.zeros((9, 7), dtype=bool)
    mask[[0, 3, 8], [0, 4, 6]] = True
    geometry = _geometry(mask.shape, stride)
    assert fast_mode_problem(geometry, grid) is None
    cells = [(r, c) for r in range(grid.side) for c in range(grid.side)]
    lattice = PatchLattice(mask, grid, geometry, cells, block_size=4 * stride)
    offsets = grid.crop_offsets()
    for xm, ym in zip(*np.nonzero(mask)):
        x_centre, y_centre = geometry.centre(xm, ym)
        for r, c in cells:
            i, j = xm + c * lattice.q, ym + r * lattice.q  # node (r, c) of (xm, ym)
            assert lattice.need[i, j]
            x = (i - lattice.lo_x) * lattice.stride + lattice.a_x
            y = (j - lattice.lo_y) * lattice.stride + lattice.a_y
            assert (x, y) == (grid.region_origin(x_centre) + offsets[c], grid.region_origin(y_centre) + offsets[r])


def test_blocks_cover_every_needed_patch_once_band_by_band():
    grid, stride = GridSpec(96, 32, 28), 16
    rng = np.random.default_rng(0)
    mask = rng.random((23, 17)) < 0.2
    lattice = PatchLattice(mask, grid, _geometry(mask.shape, stride), needed_cells(grid, [np.arange(9)], True),
                           block_size=5 * stride)
    covered = np.zeros(lattice.need.shape, dtype=int)
    bands = []
    for band, i_lo, i_hi, j_lo, j_hi, (x, y, w, h) in lattice.blocks():
        covered[i_lo:i_hi, j_lo:j_hi] += 1
        bands.append(band)
        assert lattice.need[i_lo:i_hi, j_lo:j_hi].any()  # trimmed: no block without a needed patch
        assert (w, h) == ((i_hi - i_lo - 1) * stride + grid.crop_size, (j_hi - j_lo - 1) * stride + grid.crop_size)
        assert j_lo // lattice.band == band == (j_hi - 1) // lattice.band
    assert bands == sorted(bands) and lattice.num_bands == -(-lattice.need.shape[1] // lattice.band)
    assert np.all(covered[lattice.need] == 1) and covered.max() == 1


def test_needed_cells_with_and_without_a_crf():
    grid = GridSpec(96, 32, 28)
    perms = [grid_permutation(grid.side, flip, rotate) for flip, rotate in TRANSFORMS]
    assert needed_cells(grid, perms, True) == [(r, c) for r in range(3) for c in range(3)]
    # Without a CRF only the kept node's own patch: the centre cell, which every flip and rotation keeps.
    assert needed_cells(grid, perms, False) == [(1, 1)]
    assert needed_cells(grid, perms[:1], False) == [grid.kept_cell]


def test_the_policy_names_what_breaks_exactness():
    g16 = _geometry((10, 10), 16)
    assert "not an integer" in fast_mode_problem(MaskGeometry((100, 100), (3, 3), 100 / 3), GridSpec(96, 32, 28))
    assert "not a multiple" in fast_mode_problem(g16, GridSpec(72, 24, 20))
    assert "must be even" in fast_mode_problem(g16, GridSpec(96, 32, 27), eight_avg=True)
