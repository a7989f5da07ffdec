"""Non-maximum suppression of a probability map into tumour detections (the original ``nms.py``).

The probability map is an ``[x, y]`` array (first axis = x, the transpose of an image) at level ``level``: cell
``(i, j)`` is the level-0 square ``[i·2**level, (i+1)·2**level) × [j·2**level, (j+1)·2**level)`` in the original;
here ``2**level`` is replaced by the map's own cell size when its sidecar gives one (:mod:`wsi.arrays`).

The original's loop: while the map's maximum is strictly above ``prob_thred``, take the first cell (C order:
smallest x, then smallest y) holding that maximum, emit ``(p, int((i + 0.5)·2**level), int((j + 0.5)·2**level))``
and zero the half-open window ``[i − r, i + r) × [j − r, j + r)`` clipped to the map (2r cells per axis, one more
before the maximum than after it). Optionally the map is first smoothed with ``skimage.filters.gaussian``.

Implementation: zeroing only ever removes cells (with a threshold ≥ 0 a zeroed cell is never above it), so the
cells the loop picks are exactly the cells above the threshold visited in descending order of value, ties in C
order, skipping those already zeroed. One stable sort of the candidates and a loop over them replace the
original's full-map ``max`` and ``where`` per detection, with identical output.
"""

import logging

import numpy as np

from wsi.arrays import check_array, level_cell_size
from wsi.errors import ParameterError

log = logging.getLogger(__name__)


def smooth(probs_map, sigma):
    """``skimage.filters.gaussian(map, sigma)`` with its defaults (``mode='nearest'``, ``truncate=4.0``), in
    float64 as the original's scikit-image 0.13 computed it; ``sigma <= 0`` returns the map unchanged."""
    from skimage.filters import gaussian

    probs_map = np.asarray(probs_map, dtype=np.float64)
    if sigma > 0:
        probs_map = gaussian(probs_map, sigma=sigma)
    return probs_map


def nms(probs_map, level=6, radius=12, prob_thred=0.5, sigma=0.0, cell=None, checked=False):
    """Detections ``[(prob, x, y), ...]`` of an ``[x, y]`` probability map, in the original's order.

    Parameters
    ----------
    probs_map : ndarray ``[X, Y]``
        The map, first axis x (as ``probs_map.py`` writes it). Not modified.
    level : int
        The map's level: cell ``(i, j)`` has level-0 centre ``(int((i + 0.5)·2**level), int((j + 0.5)·2**level))``
        (the original's rule, used when ``cell`` is None).
    cell : float, optional
        Level-0 pixels per map cell, from the map's sidecar (:func:`wsi.arrays.cell_size`); replaces ``2**level``.
    radius : int
        Half-size of the zeroed window ``[i − radius, i + radius)`` (in map cells, per axis); at least 1.
    prob_thred : float
        Stop once no value is strictly above it; at least 0.
    sigma : float
        Gaussian smoothing (map cells) before the search when > 0; the probabilities reported are smoothed.
    checked : bool
        The map was loaded by :func:`wsi.arrays.load_array`, which checked it (2-D, numeric, finite): not scanned
        again. Otherwise it is checked here (:func:`wsi.arrays.check_array`).

    Returns a list of ``(prob float, x int, y int)`` in level-0 pixels, in descending order of probability
    (ties: smallest x, then smallest y).
    """
    if radius < 1:
        # The original never zeroes the maximum with an empty window and loops for ever.
        raise ParameterError(f"{{radius}} must be at least 1, got {radius}")
    if prob_thred < 0:
        # Zeroed cells (0.0) would stay above a negative threshold: the original loops for ever.
        raise ParameterError(f"{{prob_thred}} must be at least 0, got {prob_thred}")
    if level < 0:
        raise ParameterError(f"{{level}} must be at least 0, got {level}")
    if not checked:
        check_array(np.asarray(probs_map), "probability map", "probability map")
    values = smooth(probs_map, sigma)
    size_x, size_y = values.shape
    resolution = level_cell_size(level) if cell is None else cell

    flat = values.ravel()
    candidates = np.flatnonzero(flat > prob_thred)  # ascending = C order
    # Descending value; the stable sort keeps C order among equal values (the original's first-index rule).
    candidates = candidates[np.argsort(-flat[candidates], kind="stable")]
    suppressed = np.zeros(values.shape, dtype=bool)
    detections = []
    for index in candidates:
        i, j = divmod(int(index), size_y)
        if suppressed[i, j]:
            continue
        prob = float(flat[index])
        detections.append((prob, int((i + 0.5) * resolution), int((j + 0.5) * resolution)))
        suppressed[max(i - radius, 0):min(i + radius, size_x), max(j - radius, 0):min(j + radius, size_y)] = True
    log.info("%d detections above %s", len(detections), prob_thred)
    return detections
