"""A damaged tile costs the positions it covers, not the slide: tolerant reads for both inference modes.

A corrupt JPEG tile or a truncated slide makes OpenSlide fail on every region that touches the bad tile. The
faithful mode reads one region per position, so its loader (:func:`~wsi.inference.loader.guarded_loader` with
``tolerate=(RegionReadError,)``) hands a failed read back as a :class:`~wsi.data.failed_items.FailedItem`
beside the batch; the fast mode reads large blocks, so :func:`read_block_tolerant` splits a block that
fails into halves, down to single patches, and reports the lattice patches that cannot be decoded. Positions
that need such a region are left at 0 in the map and listed by :func:`write_failed_report` in
``<stem>.failed.txt`` next to the map.
"""

import numpy as np

from wsi.data.slide import RegionReadError
from wsi.fileio import atomic_open


def read_block_tolerant(slide, region, need, stride, crop):
    """Read a level-0 block ``region = (x, y, w, h)`` whose needed lattice patches are ``need [cols, rows]``.

    Returns ``(block [h, w, 3] uint8, bad [k, 2] int64, reason)``: ``bad`` lists the (col, row) of the needed
    patches (relative to the block) whose pixels could not be decoded, and ``reason`` the first error's. The
    block is read whole when it can; a block that fails is split in two along its longer side, recursively,
    so only the patches that touch a damaged tile are lost.
    """
    x, y, w, h = region
    try:  # the common case: one read, no extra copy
        return (np.require(slide.read_region((x, y), 0, (w, h)), requirements=("C", "W")),
                np.zeros((0, 2), dtype=np.int64), "")
    except RegionReadError:
        pass
    block = np.zeros((h, w, 3), dtype=np.uint8)
    bad, reasons = [], []

    def read(i0, i1, j0, j1):
        sub = need[i0:i1, j0:j1]
        if not sub.any():
            return
        px, py = x + i0 * stride, y + j0 * stride
        pw, ph = (i1 - i0 - 1) * stride + crop, (j1 - j0 - 1) * stride + crop
        try:
            pixels = slide.read_region((px, py), 0, (pw, ph))
        except RegionReadError as err:
            if i1 - i0 == 1 and j1 - j0 == 1:
                bad.append((i0, j0))
                reasons.append(err.reason)
                return
            if i1 - i0 >= j1 - j0:
                mid = (i0 + i1) // 2
                read(i0, mid, j0, j1)
                read(mid, i1, j0, j1)
            else:
                mid = (j0 + j1) // 2
                read(i0, i1, j0, mid)
                read(i0, i1, mid, j1)
            return
        block[j0 * stride:j0 * stride + ph, i0 * stride:i0 * stride + pw] = pixels

    read(0, need.shape[0], 0, need.shape[1])
    return block, np.asarray(bad, dtype=np.int64).reshape(-1, 2), (reasons[0] if reasons else "")


def positions_using(bad_patches, mask, cells, q):
    """Tissue positions ``[X, Y]`` bool whose grid uses a patch marked in ``bad_patches`` (lattice, x first).

    Node (r, c) of position (xm, ym) is lattice patch ``(xm + c·q, ym + r·q)`` (see ``PatchLattice``).
    """
    x_mask, y_mask = mask.shape
    hit = np.zeros(mask.shape, dtype=bool)
    for r, c in cells:
        hit |= bad_patches[c * q:c * q + x_mask, r * q:r * q + y_mask]
    return hit & mask


def failed_report_path(npy):
    """``<stem>.failed.txt`` beside the map ``<stem>.npy``."""
    return npy.with_name(npy.name[:-len(".npy")] + ".failed.txt" if npy.name.endswith(".npy")
                         else npy.name + ".failed.txt")


def write_failed_report(path, slide, failed, regions=None, total=None, reason=None):
    """Write the report of one slide: a ``#`` line, then ``<xm>\\t<ym>\\t<x>,<y>,<w>,<h>\\t<reason>`` per failed
    position (mask position, then its level-0 grid region), sorted; or only the ``#`` line with ``reason`` when
    the slide could not be read at all."""
    with atomic_open(path, "w") as handle:
        if reason is not None:
            handle.write(f"# {slide}: no map: {' '.join(str(reason).split())}\n")
            return path
        handle.write(f"# {slide}: {len(failed)} of {total} tissue positions could not be read (left at 0)\n")
        for (xm, ym) in sorted(failed):
            x, y, w, h = regions[(xm, ym)]
            handle.write(f"{xm}\t{ym}\t{x},{y},{w},{h}\t{' '.join(str(failed[(xm, ym)]).split())}\n")
    return path
