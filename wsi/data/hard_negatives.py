"""Hard negatives, once (the author's recipe): after a first model, the centres of training slides where its
probability map is high although the annotation says normal, added to the normal list.
"""

import logging
from pathlib import Path

import numpy as np

from wsi.arrays import cell_size, check_names_slide, check_same_slide, level_cell_size, load_array
from wsi.data.annotation import load_annotations
from wsi.data.coords import read_coords, write_coords
from wsi.data.labels import is_normal
from wsi.data.sampling import SamplingError, shuffled
from wsi.errors import ParameterError

logger = logging.getLogger(__name__)

HARD_STRIDE = 128  # the shipped hard negatives sit at (128·i + 64, 128·j + 64): centres of 128-px cells


def check_stride(stride, cell):
    """The map's cell size ``cell`` (level-0 pixels) as an int; :class:`ParameterError` unless ``stride`` is a
    positive multiple of it."""
    if not float(cell).is_integer() or stride <= 0 or stride % int(cell):
        raise ParameterError(f"{{stride}} {stride}: must be a positive multiple of the map's cell size, {cell:g} "
                             f"level-0 pixels")
    return int(cell)


def hard_negative_centres(probs_map, annotation, tissue=None, level=6, stride=HARD_STRIDE, threshold=0.5,
                          margin=0, cell=None):
    """Candidate hard negatives of one slide: centres ``[n, 2]`` (level-0 x, y) and probabilities ``[n]``.

    ``probs_map`` is the slide's ``[x, y]`` probability map; a map pixel covers ``cell`` level-0 pixels (its
    sidecar's stride, :func:`wsi.arrays.cell_size`), by default ``2**level`` as ``nms.py`` assumes. The slide is
    cut into cells of ``stride`` level-0 pixels (a whole number of map pixels); cell ``(i, j)`` has the centre
    ``(i·stride + stride//2, j·stride + stride//2)`` (``int((i + 0.5)·stride)``; 128 gives the shipped lists'
    ``128·i + 64``) and the probability of its most probable map pixel. A cell is kept when that probability is
    ≥ ``threshold``, its centre lies in tissue (the ``tissue`` mask pixel holding it is True; no test without a
    mask) and the annotation says normal there
    (outside every positive polygon, at least ``margin`` away). Sorted by probability, highest first (ties by
    position).
    """
    probs_map = np.asarray(probs_map, dtype=np.float64)
    resolution = check_stride(stride, level_cell_size(level) if cell is None else cell)
    k = stride // resolution
    nx, ny = -(-probs_map.shape[0] // k), -(-probs_map.shape[1] // k)
    padded = np.full((nx * k, ny * k), -np.inf)
    padded[:probs_map.shape[0], :probs_map.shape[1]] = probs_map
    cells = padded.reshape(nx, k, ny, k).max(axis=(1, 3))
    ci, cj = np.nonzero(cells >= threshold)
    probs = cells[ci, cj]
    centres = np.stack([ci * stride + stride // 2, cj * stride + stride // 2], axis=1).astype(np.int64)
    pixel = centres // resolution
    keep = (pixel[:, 0] < probs_map.shape[0]) & (pixel[:, 1] < probs_map.shape[1])
    if tissue is not None:
        tissue = np.asarray(tissue) != 0
        keep[keep] = tissue[pixel[keep, 0], pixel[keep, 1]]
    if keep.any():
        keep[keep] = is_normal(annotation, centres[keep], margin)
    centres, probs = centres[keep], probs[keep]
    order = np.lexsort((centres[:, 1], centres[:, 0], -probs))
    return centres[order], probs[order]


def add_hard_negatives(probs_path, json_path, normal_path, *, output_path=None, mask_path=None, pids=None,
                       level=None, stride=HARD_STRIDE, threshold=0.5, margin=0, max_per_slide=2000, max_total=None,
                       seed=0, shuffle=True, assume_normal=False, progress=None):
    """Add the hard negatives of the probability maps ``<probs_path>/<pid>.npy`` to the normal list ``normal_path``.

    Per slide, :func:`hard_negative_centres` keeps at most ``max_per_slide`` centres (highest probability
    first); then at most ``max_total`` over all slides, highest first. Centres already in the list are skipped,
    so running twice adds nothing. The list (created when missing) is rewritten atomically to ``output_path``
    (default ``normal_path``), shuffled with ``seed`` unless ``shuffle`` is False (then the new centres are
    appended at the end): the original's training reads the list in file order, and the DataLoader stops after
    as many batches as the tumour list has, so appended centres could go unseen.

    Returns ``(rows added [(pid, x, y, prob)], rows written)``.
    """
    probs_path = Path(probs_path)
    if not probs_path.is_dir():
        raise SamplingError(f"{probs_path}: no such probability-map folder")
    if pids:
        pids = sorted(dict.fromkeys(pids))
        missing = [p for p in pids if not (probs_path / f"{p}.npy").is_file()]
        if missing:
            raise SamplingError(f"{probs_path / (missing[0] + '.npy')}: no such probability map")
    else:
        pids = sorted(p.stem for p in probs_path.glob("*.npy"))
        if not pids:
            raise SamplingError(f"{probs_path}: no <pid>.npy probability maps")
    for name, value in (("max_per_slide", max_per_slide), ("max_total", max_total)):
        if value is not None and value < 0:
            raise ParameterError(f"{{{name}}} {value}: must be >= 0")
    annotations = load_annotations(json_path, pids, assume_normal=assume_normal)
    normal_path = Path(normal_path)
    existing = read_coords(normal_path) if normal_path.exists() else []
    # Check every map and mask (headers only) before the work starts, so that a bad one stops the run at once.
    cells = {}
    for pid in pids:
        map_path = probs_path / f"{pid}.npy"
        probs, info = load_array(map_path, "probability map", mmap=True)
        check_names_slide(info, pid, map_path)  # its sidecar names the slide whose annotation is used
        cells[pid] = check_stride(stride, cell_size(info, level, map_path))
        if mask_path is not None:
            if not Path(mask_path).is_dir():
                raise SamplingError(f"{mask_path}: no such tissue-mask folder")
            tissue, mask_info = load_array(Path(mask_path) / f"{pid}.npy", "tissue mask", mmap=True)
            check_names_slide(mask_info, pid, Path(mask_path) / f"{pid}.npy")
            check_same_slide(mask_info, info, Path(mask_path) / f"{pid}.npy", map_path)
            if tissue.shape != probs.shape:
                raise SamplingError(f"{Path(mask_path) / (pid + '.npy')}: tissue mask shape {tissue.shape} differs "
                                    f"from the probability map's {probs.shape} ({probs_path / (pid + '.npy')})")

    found = []
    for pid in pids if progress is None else progress(pids):
        probs, _ = load_array(probs_path / f"{pid}.npy", "probability map")
        tissue = load_array(Path(mask_path) / f"{pid}.npy", "tissue mask")[0] if mask_path is not None else None
        centres, p = hard_negative_centres(probs, annotations[pid], tissue, stride=stride, threshold=threshold,
                                           margin=margin, cell=cells[pid])
        if max_per_slide is not None:
            centres, p = centres[:max_per_slide], p[:max_per_slide]
        logger.info("%s: %d hard negatives", pid, len(centres))
        found.extend((pid, x, y, q) for (x, y), q in zip(centres.tolist(), p.tolist()))
    if max_total is not None:
        found = sorted(found, key=lambda r: -r[3])[:max_total]

    present = {(pid, x, y) for pid, x, y in existing}
    added = []
    for pid, x, y, q in found:
        if (pid, x, y) not in present:
            present.add((pid, x, y))
            added.append((pid, x, y, q))
    rows = existing + [(pid, x, y) for pid, x, y, _ in added]
    if shuffle:
        rows = shuffled(rows, seed, 0)
    write_coords(output_path or normal_path, rows)
    logger.info("%s: %d hard negatives added (%d already there), %d centres in all", output_path or normal_path,
                len(added), len(found) - len(added), len(rows))
    return added, rows
