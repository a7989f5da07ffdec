"""The lattice of patches the grids of one mask share: when it exists exactly, and which blocks to read.

The fast mode (:mod:`wsi.inference.fast`) computes each patch once and shares it between the grids whose crops
coincide. :func:`fast_mode_problem` is its exactness policy (when the shared patches are exactly the faithful
mode's crops); :class:`PatchLattice` places the patches on level 0, marks the ones some tissue grid needs and cuts
the slide into the blocks to read; :func:`needed_cells` says which grid cells those are.
"""

import numpy as np

#: Default side of a block read at once, in level-0 pixels (before the crop overlap): 2048 → ~15 MB of RGB.
BLOCK_SIZE = 2048


def fast_mode_problem(geometry, grid, eight_avg=False):
    """Why the fast mode would not reproduce the faithful map exactly, or None when it does.

    The fast mode computes each patch once and shares it between the grids whose crops coincide. That holds when
    the stride ``s`` is an integer dividing ``patch_size`` (the neighbours of a position are positions
    ``patch_size / s`` mask pixels away) and ``image_size`` is even (region origins are then exact integers, also
    near the slide's top and left edges). With ``eight_avg``, flipped and rotated crops must be the crops of the
    flipped and rotated region, which needs ``patch_size − crop_size`` even (crops centred in their cells).
    """
    stride = geometry.integer_stride
    if stride is None:
        return f"the mask stride {geometry.stride:g} is not an integer"
    if grid.patch_size % stride:
        return f"patch_size {grid.patch_size} is not a multiple of the mask stride {stride}"
    if grid.image_size % 2:
        return f"image_size {grid.image_size} is odd"
    offsets = grid.crop_offsets()
    if any(off - offsets[0] != k * grid.patch_size for k, off in enumerate(offsets)) or offsets[0] < 0:
        return f"crops of {grid.crop_size} are not evenly spaced in cells of {grid.patch_size}"
    if eight_avg and (grid.patch_size - grid.crop_size) % 2:
        return (f"with eight_avg, patch_size − crop_size = {grid.patch_size - grid.crop_size} must be even "
                "(crops centred in their cells)")
    return None


def needed_cells(grid, perms, use_crf):
    """Sorted grid cells (row, col) whose patches some transform's kept value needs: all of them with a CRF;
    without one only the kept node's own patch matters (the kept cell after each transform)."""
    node_sets = [range(grid.num_nodes) if use_crf else [grid.kept] for _ in perms]
    return sorted({divmod(int(perm[i]), grid.side) for perm, nodes in zip(perms, node_sets) for i in nodes})


class PatchLattice:
    """The lattice of patches the grids of one mask share, and the blocks to read.

    Stored index ``(i, j)`` is lattice patch ``(u, v) = (i − lo_x, j − lo_y)``; patch ``(u, v)`` is the crop
    ``[u·s + a_x, +crop) × [v·s + a_y, +crop)`` of level 0. ``need [Wx, Wy]`` (x first) marks the patches some
    tissue grid uses; node (r, c) of position (xm, ym) is stored patch ``(xm + c·q, ym + r·q)``. The geometry
    must be one where the fast mode is exact (:func:`fast_mode_problem` None; the caller checks).
    """

    def __init__(self, mask, grid, geometry, cells, block_size=BLOCK_SIZE):
        self.stride = s = geometry.integer_stride
        self.q = q = grid.patch_size // s
        self.crop = grid.crop_size
        row, col = grid.kept_cell
        self.lo_x, self.lo_y = col * q, row * q
        base = s // 2 - grid.image_size // 2 + grid.crop_offsets()[0]
        self.a_x, self.a_y = base + col * grid.patch_size, base + row * grid.patch_size
        x_mask, y_mask = mask.shape
        span = (grid.side - 1) * q
        self.need = np.zeros((x_mask + span, y_mask + span), dtype=bool)
        for r, c in cells:
            self.need[c * q:c * q + x_mask, r * q:r * q + y_mask] |= mask
        self.band = max(1, block_size // s)
        self.span = span

    @property
    def num_bands(self):
        return -(-self.need.shape[1] // self.band)

    def blocks(self):
        """Blocks to read, band by band: ``(band, i0, i1, j0, j1, (x, y, w, h))``, trimmed to needed patches."""
        out = []
        k = self.band
        for band, j0 in enumerate(range(0, self.need.shape[1], k)):
            rows = self.need[:, j0:j0 + k]
            for i0 in range(0, self.need.shape[0], k):
                sub = rows[i0:i0 + k]
                if not sub.any():
                    continue
                cols_any, rows_any = np.flatnonzero(sub.any(axis=1)), np.flatnonzero(sub.any(axis=0))
                i_lo, i_hi = i0 + cols_any[0], i0 + cols_any[-1] + 1
                j_lo, j_hi = j0 + rows_any[0], j0 + rows_any[-1] + 1
                x = (i_lo - self.lo_x) * self.stride + self.a_x
                y = (j_lo - self.lo_y) * self.stride + self.a_y
                w = (i_hi - i_lo - 1) * self.stride + self.crop
                h = (j_hi - j_lo - 1) * self.stride + self.crop
                out.append((band, int(i_lo), int(i_hi), int(j_lo), int(j_hi), (int(x), int(y), int(w), int(h))))
        return out
