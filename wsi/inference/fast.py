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
ResNet-18). With ``eight_avg`` every patch is flipped/rotated (:func:`~wsi.orientation.orient`) and
the grid's nodes are taken through :func:`~wsi.inference.tta.grid_permutation`, which gives the faithful mode's
eight maps. The result equals the faithful map up to floating-point summation order (≤ 1e-5).

The work is three named steps, run band by band: :class:`BlockReader` reads (and decodes) the blocks, threads
reading ahead while the network runs; :func:`embed_block` cuts a block's needed patches and runs them through the
backbone into the :class:`EmbeddingRing`; :func:`emit_ready_rows` runs the CRF for the mask rows whose every
neighbour patch is done and writes them into the map.
"""

import logging
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from tqdm import tqdm

from wsi.data.crops import normalize
from wsi.data.slide_handles import SlideHandles
from wsi.errors import FastModeInexact
from wsi.inference.common import BusyClock, autocast
from wsi.inference.damaged import positions_using, read_block_tolerant
from wsi.inference.lattice import BLOCK_SIZE, PatchLattice, fast_mode_problem, needed_cells
from wsi.inference.tta import grid_permutation, transforms
from wsi.model.inference import InferencePass
from wsi.orientation import from_names, orient

logger = logging.getLogger(__name__)

#: Tissue positions per CRF call.
CRF_CHUNK = 4096


class BlockReader:
    """Level-0 RGB blocks ``[h, w, 3]`` uint8 (rows = y) of one slide, in order; past the border reads black.

    With ``threads`` > 0, that many threads read ahead (up to ``threads + 1`` blocks in flight) while the caller
    runs the network: OpenSlide decodes with the GIL released, so the reads overlap the CNN without the copies
    through shared memory that worker processes need. Each thread has its own slide handle. With 0 threads every
    block is read when asked for. A read error (:class:`~wsi.errors.WSIError`) is raised by :meth:`__iter__` in
    the caller's thread, as one line.

    Blocks are ``(block, bad, reason)``. With the ``lattice`` and its ``blocks`` (:meth:`PatchLattice.blocks`), a
    block that cannot be decoded whole is read piecewise and ``bad [k, 2]`` lists the (col, row) of its needed
    patches that could not be (:func:`~wsi.inference.damaged.read_block_tolerant`); empty when it read whole.
    """

    def __init__(self, wsi_path, regions, threads=0, lattice=None, blocks=None):
        self.wsi_path, self.regions, self.threads = wsi_path, list(regions), max(0, int(threads))
        self.lattice, self.blocks = lattice, blocks
        self._handles = SlideHandles(capacity=1)  # one per reading thread

    def __len__(self):
        return len(self.regions)

    def read(self, index):
        """Block ``index``: ``regions[index] = (x, y, w, h)`` at level 0: ``(block [h, w, 3] uint8, bad, reason)``."""
        slide = self._handles.get(self.wsi_path)
        x, y, w, h = self.regions[index]
        if self.lattice is None:
            return (np.require(slide.read_region((x, y), 0, (w, h)), requirements=("C", "W")),
                    np.zeros((0, 2), dtype=np.int64), "")
        _, i_lo, i_hi, j_lo, j_hi, _ = self.blocks[index]
        return read_block_tolerant(slide, (x, y, w, h), self.lattice.need[i_lo:i_hi, j_lo:j_hi], self.lattice.stride,
                                   self.lattice.crop)

    def __iter__(self):
        if self.threads == 0:
            for index in range(len(self.regions)):
                yield self.read(index)
            return
        with ThreadPoolExecutor(self.threads, thread_name_prefix="block-reader") as pool:
            pending = deque()
            next_index = 0
            try:
                while pending or next_index < len(self.regions):
                    while next_index < len(self.regions) and len(pending) <= self.threads:
                        pending.append(pool.submit(self.read, next_index))
                        next_index += 1
                    yield pending.popleft().result()
            finally:
                for future in pending:
                    future.cancel()

    def close(self):
        self._handles.close()


class EmbeddingRing:
    """Embeddings ``[rows, Wx, D]`` and logits ``[rows, Wx]`` of the lattice patches of a band of lattice rows,
    one pair per transform; lattice row ``j`` lives in ring row ``j % rows``."""

    def __init__(self, rows, width, feat_dim, num_transforms, device):
        self.rows = rows
        self.feats = [torch.empty((rows, width, feat_dim), device=device) for _ in range(num_transforms)]
        self.logits = [torch.empty((rows, width), device=device) for _ in range(num_transforms)]

    def store(self, transform, rows, cols, feats, logits):
        """Patches at lattice ``(cols, rows)`` (tensors ``[n]``) get ``feats [n, D]`` and ``logits [n]``."""
        self.feats[transform][rows % self.rows, cols] = feats.float()
        self.logits[transform][rows % self.rows, cols] = logits.float()


def embed_block(model, block, lattice, need, origin, ring, pairs, *, batch_size, amp, clock, device):
    """Run the needed patches of one block through the backbone into ``ring``; returns the patches run.

    ``model`` is an :class:`~wsi.model.inference.InferencePass`; ``block`` ``[h, w, 3]`` uint8 (rows = y); ``need [cols, rows]`` (x first) marks its needed lattice patches;
    ``origin`` = (i_lo, j_lo), the lattice index of its top-left patch. Each patch is scaled as the faithful
    dataset does, ``(x − 128) / 128`` in float32, and computed once per transform of ``pairs``.
    """
    s, crop = lattice.stride, lattice.crop
    image = normalize(torch.from_numpy(block).to(device, non_blocking=True).permute(2, 0, 1).float())
    patches = image.unfold(1, crop, s).unfold(2, crop, s)  # [3, rows v, cols u, crop, crop]
    cols, rows = np.nonzero(need)
    for start in range(0, len(cols), batch_size):
        c = torch.from_numpy(cols[start:start + batch_size]).to(device)
        r = torch.from_numpy(rows[start:start + batch_size]).to(device)
        batch = patches[:, r, c].permute(1, 0, 2, 3)  # [n, 3, crop, crop]
        for t, (flip, rotate) in enumerate(pairs):
            inputs = model.as_input(orient(batch, *from_names(flip, rotate), axes=(2, 3)))
            with clock, autocast(device, amp):
                feats, logits = model.embed(inputs)
            ring.store(t, r + origin[1], c + origin[0], feats, logits)
    return len(cols) * len(pairs)


def emit_ready_rows(model, mask, rows, ring, perms, lattice, grid, use_crf, device):
    """The map's values at the tissue positions of mask rows ``rows = (y0, y1)``, whose neighbours are all in
    ``ring``: ``(xs, ys, probs)``, ``probs`` the float64 sum over the transforms of sigmoid(kept node's logit)."""
    xs, ys = np.nonzero(mask[:, rows[0]:rows[1]])
    ys = ys + rows[0]
    total = np.zeros(len(xs), dtype=np.float64)
    for start in range(0, len(xs), CRF_CHUNK):
        xc, yc = xs[start:start + CRF_CHUNK], ys[start:start + CRF_CHUNK]
        for p in _grid_probs(model, ring.feats, ring.logits, perms, xc, yc, lattice.q, grid.side, grid.kept,
                             ring.rows, use_crf, device):
            total[start:start + len(xc)] += p
    return xs, ys, total


def fast_probs_map(model, wsi_path, mask, grid, geometry, *, batch_size=180, num_workers=2, eight_avg=False,
                   amp=False, progress=True, stats=None, block_size=BLOCK_SIZE):
    """Probability map of one slide, each needed patch through the backbone once; equals the faithful map.

    Parameters are those of :func:`~wsi.inference.faithful.faithful_probs_map`, except ``batch_size``, which is
    patches (not grids) per forward pass, ``num_workers``, the threads reading blocks ahead (0: read in this
    thread), and ``block_size``, the side in level-0 pixels of the blocks read at once. ``model`` is a ResNetGrid
    or an :class:`~wsi.model.inference.InferencePass` (its patches are given in the layout it wants). Raises
    :class:`~wsi.errors.FastModeInexact` (a ValueError), before any work, where
    :func:`~wsi.inference.lattice.fast_mode_problem` says the fast mode would not give the faithful map exactly.

    ``stats`` (optional) gets the counts, and in ``extra``: ``needed_patches``, ``blocks``, ``cnn_seconds`` (time in
    the backbone), ``wall_seconds`` and ``cnn_busy`` (their ratio).

    Returns the map, float64 ``[X_mask, Y_mask]`` (x first): sigmoid of the kept node's CRF logit at tissue
    positions, 0 elsewhere.
    """
    started = time.perf_counter()
    problem = fast_mode_problem(geometry, grid, eight_avg)
    if problem:
        raise FastModeInexact(problem)
    net = InferencePass.of(model)
    mask = np.asarray(mask, dtype=bool)
    pairs = transforms(eight_avg)
    perms = [grid_permutation(grid.side, flip, rotate) for flip, rotate in pairs]
    cells = needed_cells(grid, perms, net.use_crf)
    lattice = PatchLattice(mask, grid, geometry, cells, block_size)
    blocks = lattice.blocks()
    num_positions = int(np.count_nonzero(mask))
    total = np.zeros(mask.shape, dtype=np.float64)
    if stats is not None:
        stats.mode, stats.positions, stats.transforms = "fast", num_positions, len(pairs)
        stats.extra.update(needed_patches=int(lattice.need.sum()), blocks=len(blocks))
    if num_positions == 0:
        return total

    clock = BusyClock(net.device)
    bad_patches, bad_reason = run_bands(net, wsi_path, mask, grid, lattice, blocks, pairs, perms, total,
                                        batch_size=batch_size, num_workers=num_workers, amp=amp, progress=progress,
                                        clock=clock, stats=stats)
    if eight_avg:
        total /= len(pairs)
    if bad_patches.any():  # positions whose grid needs an undecodable patch: 0, listed
        failed = positions_using(bad_patches, mask, cells, lattice.q)
        total[failed] = 0.0
        if stats is not None:
            stats.failed.update({(int(xm), int(ym)): bad_reason for xm, ym in zip(*np.nonzero(failed))})
    if stats is not None:
        wall = time.perf_counter() - started
        stats.extra.update(cnn_seconds=clock.seconds, wall_seconds=wall, cnn_busy=clock.seconds / max(wall, 1e-9))
    return total


def run_bands(net, wsi_path, mask, grid, lattice, blocks, pairs, perms, total, *, batch_size, num_workers, amp,
              progress, clock, stats):
    """Read the blocks band by band, embed their needed patches and write the map's values of the mask rows that
    are ready into ``total`` (float64 ``[X_mask, Y_mask]``, summed over the transforms ``pairs``).

    Returns ``(bad_patches, reason)``: bool ``[Wx, Wy]``, the lattice patches that could not be decoded, and the
    first reason given.
    """
    device = net.device
    ring = EmbeddingRing(lattice.band + lattice.span, lattice.need.shape[0], net.feat_dim, len(pairs), device)
    reader = BlockReader(wsi_path, [b[-1] for b in blocks], threads=num_workers, lattice=lattice, blocks=blocks)
    bad_patches = np.zeros(lattice.need.shape, dtype=bool)  # lattice patches that could not be decoded
    bad_reason = ""
    bar = tqdm(total=int(np.count_nonzero(mask)), unit="pos", desc="probs_map (fast)", disable=not progress,
               leave=False)
    y_mask = mask.shape[1]
    next_row = 0  # first mask row (y) whose positions are not done
    read = iter(reader)
    try:
        with torch.inference_mode():
            block_index = 0
            for band in range(lattice.num_bands):
                while block_index < len(blocks) and blocks[block_index][0] == band:
                    _, i_lo, i_hi, j_lo, j_hi, (_, _, w, h) = blocks[block_index]
                    block_index += 1
                    block, bad, reason = next(read)
                    if len(bad):
                        bad_patches[bad[:, 0] + i_lo, bad[:, 1] + j_lo] = True
                        bad_reason = bad_reason or reason
                    evaluated = embed_block(net, block, lattice, lattice.need[i_lo:i_hi, j_lo:j_hi],
                                            (i_lo, j_lo), ring, pairs, batch_size=batch_size, amp=amp, clock=clock,
                                            device=device)
                    if stats is not None:
                        stats.cnn_evaluations += evaluated
                        stats.bytes_decoded += w * h * 3
                        stats.regions_read += 1
                # Mask rows whose every neighbour row (up to 2q lattice rows below) has been computed.
                ready = min(y_mask, (band + 1) * lattice.band - lattice.span)
                if ready > next_row:
                    xs, ys, probs = emit_ready_rows(net, mask, (next_row, ready), ring, perms, lattice, grid,
                                                    net.use_crf, device)
                    total[xs, ys] = probs
                    bar.update(len(xs))
                    next_row = ready
    finally:
        read.close()  # stops the read-ahead (and waits for reads in progress) before the slide handles close
        bar.close()
        reader.close()
    return bad_patches, bad_reason


def _grid_probs(model, ring_feats, ring_logits, perms, xs, ys, q, side, kept, ring_rows, use_crf, device):
    """Sigmoid of the kept node's (CRF) logit at positions ``(xs, ys)``, one float64 array per transform;
    ``model`` is an :class:`~wsi.model.inference.InferencePass`."""
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
