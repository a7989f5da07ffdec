"""Camelyon16-style ground-truth masks: rasterise an :class:`~wsi.data.annotation.Annotation`, tile by tile.

A ground-truth mask is a grey (one-channel), losslessly compressed, OpenSlide-readable pyramidal TIFF of the
slide's size: **255** where the tissue is tumour (inside a positive polygon and not inside a negative one, the
Camelyon16 meaning of the groups ``_0``/``_1``/``Tumor`` and ``_2``/``Exclusion``), **0** elsewhere. The
Camelyon16 FROC reads its level 5 and takes channel 0; OpenSlide shows a grey TIFF as R = G = B = value.

Pixel rule (one rule for every level): the pixel in column ``i``, row ``j`` of a level whose down-sample is
``d`` covers level-0 ``[i·d, (i+1)·d) × [j·d, (j+1)·d)`` and takes the label of its **centre**,
``((i + 0.5)·d, (j + 0.5)·d)``, with the even-odd rule where points on an edge or a vertex count as inside (as
:func:`skimage.measure.points_in_poly`, used by :meth:`Annotation.tumour_label`). So a level-0 mask equals
``annotation.tumour_label`` at pixel centres; the two can differ only for a centre lying within rounding error
of an edge, or on a degenerate outline (a zero-width spike, a self-intersection point).

Rasterisation is a vectorised scan-line fill per polygon and tile: only polygons whose bounding box meets the
tile are considered, and of those only the edges spanning the tile's rows, so a slide with thousands of polygons
and tens of thousands of vertices renders in minutes and memory stays at one tile.
"""

import math

import numpy as np

from wsi.constants import CAMELYON16_MPP, EVALUATION_MASK_LEVEL
from wsi.data.pyramid import pyramid_dimensions, write_pyramid

TUMOUR = 255


def fill_polygon(vertices, shape):
    """Boolean ``[h, w]`` image of the pixel centres (integer (col, row) points) inside a closed polygon.

    ``vertices`` is ``[N, 2]`` float (x = column, y = row) in the image's pixel-centre coordinates, i.e. pixel
    ``[r, c]`` is the point (c, r). Even-odd rule; points on an edge or a vertex are inside, as
    :func:`skimage.measure.points_in_poly` (which differs only on degenerate outlines: a centre on a zero-width
    spike or at a self-intersection). Vectorised scan-line: cost ~ (rows spanned by each edge), not
    rows × columns × vertices.
    """
    h, w = shape
    out = np.zeros((h, w), dtype=bool)
    v = np.asarray(vertices, dtype=np.float64).reshape(-1, 2)
    if len(v) < 3 or h == 0 or w == 0:
        return out
    x1, y1 = v[:, 0], v[:, 1]
    x2, y2 = np.roll(x1, -1), np.roll(y1, -1)

    # Crossings: a row y counts an edge when y is in the half-open [min(y1, y2), max(y1, y2)), the usual rule
    # that counts a vertex once where the boundary passes through it and zero or two times at an extremum.
    ylo, yhi = np.minimum(y1, y2), np.maximum(y1, y2)
    r0 = np.clip(np.ceil(ylo), 0, h).astype(np.int64)
    r1 = np.clip(np.ceil(yhi), 0, h).astype(np.int64)  # exclusive
    keep = (r1 > r0) & (np.minimum(x1, x2) <= w - 1)  # edges right of every column never lie left of a centre
    if keep.any():
        x1k, y1k, x2k, y2k, r0k, r1k = x1[keep], y1[keep], x2[keep], y2[keep], r0[keep], r1[keep]
        counts = r1k - r0k
        edge = np.repeat(np.arange(len(counts)), counts)
        rows = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts) + r0k[edge]
        t = (rows - y1k[edge]) / (y2k[edge] - y1k[edge])
        xc = x1k[edge] + t * (x2k[edge] - x1k[edge])
        # A crossing at x toggles every centre strictly to its right: columns floor(x) + 1 onwards.
        cols = np.clip(np.floor(xc).astype(np.int64) + 1, 0, w)
        toggles = np.bincount(rows * (w + 1) + cols, minlength=h * (w + 1)).reshape(h, w + 1)[:, :w]
        out = (np.cumsum(toggles, axis=1) & 1).astype(bool)
        # Centres exactly on a (non-horizontal) edge are inside.
        on = (xc == np.floor(xc)) & (xc >= 0) & (xc <= w - 1)
        out[rows[on], xc[on].astype(np.int64)] = True

    # Horizontal edges lying on a row of centres, and vertices on a centre, are boundary: inside.
    flat = (y1 == y2) & (y1 == np.floor(y1)) & (y1 >= 0) & (y1 <= h - 1)
    for xa, xb, y in zip(np.minimum(x1, x2)[flat], np.maximum(x1, x2)[flat], y1[flat]):
        c0, c1 = max(math.ceil(xa), 0), min(math.floor(xb), w - 1)
        if c1 >= c0:
            out[int(y), c0:c1 + 1] = True
    vert = (x1 == np.floor(x1)) & (y1 == np.floor(y1)) & (x1 >= 0) & (x1 <= w - 1) & (y1 >= 0) & (y1 <= h - 1)
    out[y1[vert].astype(np.int64), x1[vert].astype(np.int64)] = True
    return out


def polygon_arrays(polygons):
    """``(vertex arrays, bboxes [K, 4])`` for :func:`fill_polygons_tile`: float64 level-0 ``[N, 2]`` arrays of
    the polygons (``Polygon`` objects or arrays) that have at least 3 vertices, and their (x0, y0, x1, y1)."""
    verts = [np.asarray(p.vertices() if hasattr(p, "vertices") else p, dtype=np.float64).reshape(-1, 2)
             for p in polygons]
    verts = [v for v in verts if len(v) >= 3]
    if not verts:
        return [], np.zeros((0, 4))
    boxes = np.array([(v[:, 0].min(), v[:, 1].min(), v[:, 0].max(), v[:, 1].max()) for v in verts])
    return verts, boxes


def fill_polygons_tile(verts, boxes, downsample, x, y, w, h):
    """Boolean ``[h, w]`` (rows = y): tile pixels whose centre is inside any of the polygons (bbox-culled).

    ``verts, boxes`` come from :func:`polygon_arrays`; the tile is ``w`` × ``h`` pixels from pixel (x, y) of a
    level with down-sample ``downsample``; pixel (i, j) has level-0 centre ((x+i+0.5)·d, (y+j+0.5)·d).
    """
    out = np.zeros((h, w), dtype=bool)
    if not len(verts):
        return out
    # Level-0 extent of the tile's pixel centres.
    cx0, cy0 = (x + 0.5) * downsample, (y + 0.5) * downsample
    cx1, cy1 = (x + w - 0.5) * downsample, (y + h - 0.5) * downsample
    hit = (boxes[:, 0] <= cx1) & (boxes[:, 2] >= cx0) & (boxes[:, 1] <= cy1) & (boxes[:, 3] >= cy0)
    for k in np.flatnonzero(hit):
        # Level-0 → tile pixel-centre coordinates: centre (c, r) is level-0 ((x + c + 0.5)·d, (y + r + 0.5)·d).
        local = verts[k] / downsample - 0.5 - np.array([x, y], dtype=np.float64)
        out |= fill_polygon(local, (h, w))
    return out


class MaskRenderer:
    """Renders tiles of the tumour mask of one annotation at any down-sample (bboxes computed once)."""

    def __init__(self, annotation):
        self.positive = polygon_arrays(annotation.positive)
        self.negative = polygon_arrays(annotation.negative)

    def tile(self, downsample, x, y, w, h):
        """uint8 ``[h, w]``: 255 where the pixel centre is tumour, 0 elsewhere (level coordinates x, y)."""
        tumour = fill_polygons_tile(*self.positive, downsample, x, y, w, h)
        if tumour.any() and len(self.negative[0]):
            tumour &= ~fill_polygons_tile(*self.negative, downsample, x, y, w, h)
        return tumour.astype(np.uint8) * TUMOUR


def render_mask_tile(annotation, downsample, x, y, w, h):
    """The tumour mask of one tile: uint8 ``[h, w]`` (rows = y), 255 tumour, 0 elsewhere.

    ``x, y`` is the tile's top-left pixel and ``w, h`` its size, in the coordinates of a level whose
    down-sample (level-0 pixels per level pixel) is ``downsample``. Pixel (i, j) is labelled by its centre
    ``((x + i + 0.5)·downsample, (y + j + 0.5)·downsample)`` at level 0: inside a positive polygon and not
    inside a negative one (edges inside). For many tiles of one annotation, :class:`MaskRenderer` avoids
    recomputing the bounding boxes.
    """
    return MaskRenderer(annotation).tile(downsample, x, y, w, h)


def write_tumour_mask(path, annotation, width, height, mpp=CAMELYON16_MPP, tile_size=512, progress=None):
    """Write the Camelyon16-style ground-truth mask of ``annotation`` for a ``width`` × ``height`` slide.

    A grey, zlib-compressed (lossless) tiled pyramid that OpenSlide opens: level k is level 0 down-sampled by
    2**k (sizes rounded up), each level rendered directly from the polygons (pixel-centre rule above), always
    with a level 5 (the level the FROC reads). Tumour 255, elsewhere 0. Written atomically; tile by tile, so
    memory is one tile. ``progress`` is called with the number of tiles written after each tile (e.g. a tqdm
    ``update``). Returns the list of level sizes (width, height).
    """
    renderer = MaskRenderer(annotation)
    # Keep levels down to a few pixels so that level 5 exists even for small test slides.
    min_size = max(1, min(16, math.ceil(max(width, height) / 2 ** EVALUATION_MASK_LEVEL)))

    def render(level, x, y, w, h):
        return renderer.tile(2.0 ** level, x, y, w, h)

    return write_pyramid(path, render, width, height, channels=1, mpp=mpp, tile_size=tile_size,
                         compression="zlib", min_size=min_size, max_levels=max(10, EVALUATION_MASK_LEVEL + 1),
                         progress=progress)


def mask_levels(width, height):
    """The level sizes :func:`write_tumour_mask` writes for a slide of this size."""
    min_size = max(1, min(16, math.ceil(max(width, height) / 2 ** EVALUATION_MASK_LEVEL)))
    return pyramid_dimensions(width, height, min_size=min_size, max_levels=max(10, EVALUATION_MASK_LEVEL + 1))
