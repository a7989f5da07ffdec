"""The probability map with every patch computed once (``--mode fast``, the default).

The original runs all G crops of every grid through the network and keeps one node. But with a stride ``s``
(level-0 pixels per mask pixel) that divides ``patch_size``, crop k of position ``xm`` is exactly the kept crop
of position ``xm + (k − kept)·q``, ``q = patch_size / s``: all crops of all grids lie on one lattice of patches,
patch ``u`` starting at level-0 ``u·s + a`` (``a`` a constant). So this module

1. marks the lattice patches some tissue grid needs (the tissue mask shifted by the grid's ``q``-spaced
   offsets; only the kept node's patch without a CRF),
2. reads the slide in large blocks, band by band (each level-0 pixel is decoded about once, instead of
   ``(image_size / s)²`` times), cuts the needed patches from memory and runs each through the backbone once
   (:meth:`ResNetGrid.embed`), with the same ``(x − 128) / 128`` scaling, so every embedding and logit equals the
   faithful one,
3. gathers each tissue position's G embeddings and logits (neighbours ``q`` lattice steps apart, row-major,
   the kept node in the middle) and runs the CRF on them (:meth:`ResNetGrid.grid_logits`).

The embeddings are kept for a band of lattice rows only (``block rows + 2q``, a ring buffer), so memory does not
grow with the slide's height; it grows with its width by ``rows × X_mask × D × 4`` bytes (D = 512 for
ResNet-18). With ``eight_avg`` every patch is flipped/rotated (:func:`~wsi.inference.tta.transform_patches`) and
the grid's nodes are taken through :func:`~wsi.inference.tta.grid_permutation`, which gives the faithful mode's
eight maps. The result equals the faithful map up to floating-point summation order (≤ 1e-5).
"""

import logging
import os

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from wsi.data.slide import open_slide
from wsi.inference.common import autocast, model_device
from wsi.geometry import fast_mode_problem
from wsi.inference.loader import guarded_loader
from wsi.inference.tta import grid_permutation, transform_patches, transforms

logger = logging.getLogger(__name__)

#: Default side of a block read at once, in level-0 pixels (before the crop overlap): 2048 → ~15 MB of RGB.
BLOCK_SIZE = 2048
#: Tissue positions per CRF call.
CRF_CHUNK = 4096


class _BlockReader(Dataset):
    """Level-0 RGB blocks ``[h, w, 3]`` uint8 (rows = y) of one slide; past the border reads black."""

    def __init__(self, wsi_path, regions):
        self.wsi_path, self.regions = wsi_path, regions
        self._slide, self._pid = None, None

    def __len__(self):
        return len(self.regions)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_slide"], state["_pid"] = None, None
        return state

    def __getitem__(self, index):
        if self._slide is None or self._pid != os.getpid():
            self._slide, self._pid = open_slide(self.wsi_path), os.getpid()
        x, y, w, h = self.regions[index]
        block = np.require(self._slide.read_region((x, y), 0, (w, h)), requirements=("C", "W"))
        return torch.from_numpy(block)

    def close(self):
        if self._slide is not None:
            self._slide.close()
            self._slide = None


class PatchLattice:
    """The lattice of patches the grids of one mask share, and the blocks to read.

    Stored index ``(i, j)`` is lattice patch ``(u, v) = (i − lo_x, j − lo_y)``; patch ``(u, v)`` is the crop
    ``[u·s + a_x, +crop) × [v·s + a_y, +crop)`` of level 0. ``need [Wx, Wy]`` (x first) marks the patches some
    tissue grid uses; node (r, c) of position (xm, ym) is stored patch ``(xm + c·q, ym + r·q)``.
    """

    def __init__(self, mask, grid, geometry, cells, block_size=BLOCK_SIZE):
        problem = fast_mode_problem(geometry, grid)
        if problem:
            raise ValueError(f"the fast mode is not exact here: {problem}")
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


def fast_probs_map(model, wsi_path, mask, grid, geometry, *, batch_size=180, num_workers=5, eight_avg=False,
                   amp=False, progress=True, stats=None, block_size=BLOCK_SIZE):
    """Probability map of one slide, each needed patch through the backbone once; equals the faithful map.

    Parameters are those of :func:`~wsi.inference.faithful.faithful_probs_map`, except ``batch_size``, which is
    patches (not grids) per forward pass, and ``block_size``, the side in level-0 pixels of the blocks read at
    once. Requires :func:`~wsi.inference.geometry.fast_mode_problem` to be None (raises ValueError otherwise).

    Returns the map, float64 ``[X_mask, Y_mask]`` (x first): sigmoid of the kept node's CRF logit at tissue
    positions, 0 elsewhere.
    """
    problem = fast_mode_problem(geometry, grid, eight_avg)
    if problem:
        raise ValueError(f"the fast mode is not exact here: {problem}")
    mask = np.asarray(mask, dtype=bool)
    device = model_device(model)
    pairs = transforms(eight_avg)
    side, kept = grid.side, grid.kept
    perms = [grid_permutation(side, flip, rotate) for flip, rotate in pairs]
    use_crf = getattr(model, "use_crf", True)
    # Without a CRF only the kept node's own patch matters (the kept cell after each transform).
    node_sets = [range(grid.num_nodes) if use_crf else [kept] for _ in pairs]
    cells = sorted({divmod(int(perm[i]), side) for perm, nodes in zip(perms, node_sets) for i in nodes})
    lattice = PatchLattice(mask, grid, geometry, cells, block_size)
    q, s, crop = lattice.q, lattice.stride, grid.crop_size
    blocks = lattice.blocks()
    num_positions = int(np.count_nonzero(mask))
    total = np.zeros(mask.shape, dtype=np.float64)
    if stats is not None:
        stats.mode, stats.positions, stats.transforms = "fast", num_positions, len(pairs)
        stats.extra.update(needed_patches=int(lattice.need.sum()), blocks=len(blocks))
    if num_positions == 0:
        return total

    feat_dim = model.fc.in_features
    ring_rows = lattice.band + lattice.span
    y_mask = mask.shape[1]
    reader = _BlockReader(wsi_path, [b[-1] for b in blocks])
    loader = iter(guarded_loader(reader, batch_size=None, num_workers=num_workers, pin_memory=device.type == "cuda"))
    bar = tqdm(total=num_positions, unit="pos", desc="probs_map (fast)", disable=not progress, leave=False)
    with torch.inference_mode():
        ring_feats = [torch.empty((ring_rows, lattice.need.shape[0], feat_dim), device=device) for _ in pairs]
        ring_logits = [torch.empty((ring_rows, lattice.need.shape[0]), device=device) for _ in pairs]
        next_row = 0  # first mask row (y) whose positions are not done
        block_index = 0
        for band in range(lattice.num_bands):
            while block_index < len(blocks) and blocks[block_index][0] == band:
                _, i_lo, i_hi, j_lo, j_hi, (x, y, w, h) = blocks[block_index]
                block = next(loader).to(device, non_blocking=True)
                block_index += 1
                if stats is not None:
                    stats.bytes_decoded += w * h * 3
                    stats.regions_read += 1
                # The faithful dataset's arithmetic, in float32: (x − 128) / 128 on [3, rows, cols].
                image = (block.permute(2, 0, 1).float() - 128.0) / 128.0
                patches = image.unfold(1, crop, s).unfold(2, crop, s)  # [3, rows v, cols u, crop, crop]
                cols, rows = np.nonzero(lattice.need[i_lo:i_hi, j_lo:j_hi])
                for start in range(0, len(cols), batch_size):
                    c = torch.from_numpy(cols[start:start + batch_size]).to(device)
                    r = torch.from_numpy(rows[start:start + batch_size]).to(device)
                    batch = patches[:, r, c].permute(1, 0, 2, 3).contiguous()  # [n, 3, crop, crop]
                    ring_r, ring_c = (r + j_lo) % ring_rows, c + i_lo
                    for t, (flip, rotate) in enumerate(pairs):
                        with autocast(device, amp):
                            feats, logits = model.embed(transform_patches(batch, flip, rotate))
                        ring_feats[t][ring_r, ring_c] = feats.float()
                        ring_logits[t][ring_r, ring_c] = logits.float()
                    if stats is not None:
                        stats.cnn_evaluations += len(c) * len(pairs)
            # Mask rows whose every neighbour row (up to 2q lattice rows below) has been computed.
            ready = min(y_mask, (band + 1) * lattice.band - lattice.span)
            if ready > next_row:
                xs, ys = np.nonzero(mask[:, next_row:ready])
                ys = ys + next_row
                for start in range(0, len(xs), CRF_CHUNK):
                    xc, yc = xs[start:start + CRF_CHUNK], ys[start:start + CRF_CHUNK]
                    probs = _grid_probs(model, ring_feats, ring_logits, perms, xc, yc, q, side, kept,
                                        ring_rows, use_crf, device)
                    for p in probs:
                        total[xc, yc] += p
                    bar.update(len(xc))
                next_row = ready
    bar.close()
    reader.close()
    if eight_avg:
        total /= len(pairs)
    return total


def _grid_probs(model, ring_feats, ring_logits, perms, xs, ys, q, side, kept, ring_rows, use_crf, device):
    """Sigmoid of the kept node's (CRF) logit at positions ``(xs, ys)``, one float64 array per transform."""
    xs_t, ys_t = torch.from_numpy(xs).to(device), torch.from_numpy(ys).to(device)
    out = []
    for feats_ring, logits_ring, perm in zip(ring_feats, ring_logits, perms):
        nodes = range(len(perm)) if use_crf else [kept]
        rows, cols = [], []
        for i in nodes:
            r, c = divmod(int(perm[i]), side)
            rows.append((ys_t + r * q) % ring_rows)
            cols.append(xs_t + c * q)
        rows, cols = torch.stack(rows, 1), torch.stack(cols, 1)  # [n, nodes]
        logits = logits_ring[rows, cols]
        if use_crf:
            logits = model.grid_logits(feats_ring[rows, cols], logits)[:, kept]
        else:
            logits = logits[:, 0]
        out.append(torch.sigmoid(logits.float()).cpu().numpy().astype(np.float64))
    return out
