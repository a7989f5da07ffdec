"""Training labels of grid cells, read from the annotation polygons, and the tumour / normal tests of points.

Grid labels (:func:`grid_labels`). The training label of a centre ``(x, y)`` is the 3×3 grid of the original's
``GridImageDataset``: the inside-**positive** test (negative polygons ignored, the original's rule) at the cell
centres ``(x + {-p, 0, p}, y + {-p, 0, p})`` with ``p = patch_size = 256``, as an array ``[row = y, col = x]``.
"""

import numpy as np

from wsi.geometry import grid_points

PATCH_SIZE = 256  # the config's patch_size: the distance between grid cell centres
PATCH_PER_SIDE = 3  # image_size / patch_size = 768 / 256
IMAGE_SIZE = PATCH_SIZE * PATCH_PER_SIDE


def grid_labels(annotation, centres, patch_size=PATCH_SIZE, patch_per_side=PATCH_PER_SIDE,
                exclude_negative=False):
    """Boolean ``[M, n, n]`` grid labels ``[grid, row = y, col = x]`` of the centres ``[M, 2]`` (x, y).

    A cell is positive when its centre is inside any positive polygon (the original's training label, which
    ignores the negative polygons); with ``exclude_negative`` it must also be outside every negative polygon.
    """
    points = grid_points(centres, patch_size, patch_per_side)
    flat = points.reshape(-1, 2)
    if exclude_negative:
        labels = annotation.tumour_label(flat)
    else:
        labels = annotation.inside_polygons(flat, is_positive=True)
    return labels.reshape(points.shape[:-1])


def distance_to_boundary(polygons, points, limit):
    """Float ``[M]``: distance from each level-0 point ``[M, 2]`` to the nearest polygon edge, capped at ``limit``.

    Exact point-to-segment distances, measured only where they can be under ``limit``: points are grouped in
    square cells and each cell meets only the edges whose bounding box, grown by ``limit``, overlaps it. So the
    cost follows the points near a boundary and the edges near them, not points × vertices.
    """
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    dist = np.full(len(points), float(limit))
    cell = max(256.0, 2.0 * limit)
    for polygon in polygons:
        if len(polygon) < 2:
            continue
        x0, y0, x1, y1 = polygon.bbox
        near = np.flatnonzero((points[:, 0] >= x0 - limit) & (points[:, 0] <= x1 + limit)
                              & (points[:, 1] >= y0 - limit) & (points[:, 1] <= y1 + limit))
        if not len(near):
            continue
        a = polygon.vertices().astype(np.float64)
        b = np.roll(a, -1, axis=0)
        lo, hi = np.minimum(a, b) - limit, np.maximum(a, b) + limit  # edge boxes grown by the limit
        keys = np.floor(points[near] / cell).astype(np.int64)
        order = np.lexsort((keys[:, 1], keys[:, 0]))
        near, keys = near[order], keys[order]
        starts = np.flatnonzero(np.r_[True, (np.diff(keys, axis=0) != 0).any(axis=1)])
        for start, stop in zip(starts, np.r_[starts[1:], len(near)]):
            box_lo = keys[start] * cell
            box_hi = box_lo + cell
            edges = np.flatnonzero((lo[:, 0] <= box_hi[0]) & (hi[:, 0] >= box_lo[0])
                                   & (lo[:, 1] <= box_hi[1]) & (hi[:, 1] >= box_lo[1]))
            if not len(edges):
                continue
            idx = near[start:stop]
            ea, ab = a[edges], b[edges] - a[edges]
            length2 = np.maximum((ab ** 2).sum(axis=1), 1e-12)
            ap = points[idx, None, :] - ea[None, :, :]
            t = np.clip((ap * ab[None]).sum(axis=2) / length2[None], 0.0, 1.0)
            d = np.sqrt(((ap - t[..., None] * ab[None]) ** 2).sum(axis=2)).min(axis=1)
            dist[idx] = np.minimum(dist[idx], d)
    return dist


def is_tumour(annotation, points):
    """Boolean ``[M]``: inside a positive polygon and outside every negative one (where tumour centres go)."""
    return annotation.tumour_label(points)


def is_normal(annotation, points, margin=0):
    """Boolean ``[M]``: outside every positive polygon and, when ``margin`` > 0, at least ``margin`` away from one."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    normal = ~annotation.inside_polygons(points, is_positive=True)
    if margin > 0 and annotation.positive and normal.any():
        normal[normal] = distance_to_boundary(annotation.positive, points[normal], margin) >= margin
    return normal
