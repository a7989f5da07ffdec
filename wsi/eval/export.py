"""Exports for viewers: a heatmap image, QuPath GeoJSON and ASAP XML of detections and tumour contours.

Frames: probability maps are ``[x, y]`` arrays (first axis x, the transpose of an image) at level ``level``,
whose cell ``(i, j)`` has level-0 centre ``((i + 0.5)·c, (j + 0.5)·c)`` for the map's cell size ``c``: its
sidecar's stride, or ``2**level`` without one (the convention of ``nms.py``, :func:`wsi.arrays.cell_size`). Every
exported coordinate is a level-0 pixel (x = column, y = row), as QuPath and ASAP expect.

- Heatmap: the map transposed to an image (rows = y), coloured with a matplotlib colour map and blended over
  the slide's thumbnail where the map is non-zero; saved as a figure with a colour bar, or as the bare image at
  the map's resolution (one pixel per cell).
- Tumour contours: :func:`skimage.measure.find_contours` of the map (padded with zeros, so every contour is
  closed) at ``threshold``; outer boundaries and holes are told apart by their orientation and each hole is
  attached to the smallest outer ring containing it.
- GeoJSON: a ``FeatureCollection``; detections are ``Point`` features with ``objectType: 'detection'``, contours
  ``Polygon`` features (outer ring, then holes) with ``objectType: 'annotation'``; both carry
  ``classification: {'name': ..., 'color': [r, g, b]}``, the QuPath import format.
- ASAP XML: contours as polygons of group ``_0`` (tumour) and their holes as group ``_2`` (exclusion), the
  Camelyon16 groups that :func:`wsi.data.annotation.read_camelyon16_xml` reads back; detections as ``Dot``
  annotations of group ``detections`` named by their probability.
"""

import json
import logging
from pathlib import Path

import numpy as np

from wsi.data.annotation import Polygon, write_asap_xml
from wsi.errors import InputError, ParameterError
from wsi.fileio import atomic_open, atomic_path, figure_format
from wsi.memory import check_allocation

#: Matplotlib's Agg renderer draws at most this many pixels along each side of a figure.
_AGG_MAX_SIDE = 2 ** 16
#: Memory a heatmap figure takes per pixel while drawn and saved (measured: about 41 bytes at --dpi 300).
_FIGURE_BYTES_PER_PIXEL = 48

log = logging.getLogger(__name__)

TUMOUR_COLOR = (200, 0, 0)


# Heatmap --------------------------------------------------------------------------------------------------------

def heatmap_image(probs_map, background=None, cmap="jet", alpha=0.5, vmin=0.0, vmax=1.0):
    """RGB image ``[Y, X, 3]`` uint8 (rows = y) of an ``[x, y]`` probability map.

    Without ``background`` every cell is coloured. With ``background`` (an RGB ``[Y, X, 3]`` image of the
    slide at the map's resolution), non-zero cells are blended over it with weight ``alpha`` and zero cells
    (non-tissue) show the slide.
    """
    import matplotlib

    image_values = np.asarray(probs_map, dtype=np.float64).T  # [x, y] → image [rows = y, cols = x]
    colormap = matplotlib.colormaps[cmap]
    norm = (np.clip(image_values, vmin, vmax) - vmin) / (vmax - vmin)
    colour = colormap(norm)[..., :3] * 255.0
    if background is None:
        return np.round(colour).astype(np.uint8)
    background = np.asarray(background, dtype=np.float64)[..., :3]
    if background.shape[:2] != image_values.shape:
        raise ValueError(f"background {background.shape[:2]} does not match the map image {image_values.shape}")
    weight = np.where(image_values > 0, alpha, 0.0)[..., None]
    return np.round(weight * colour + (1 - weight) * background).astype(np.uint8)


def slide_background(slide_path, map_shape, cell=64):
    """The slide as an RGB image ``[Y, X, 3]`` matching an ``[X, Y]`` map of ``cell`` level-0 pixels per cell.

    Reads the slide's own level when its size equals the map's; otherwise resizes a thumbnail, provided the
    slide's level-0 size divided by ``cell`` is within one cell of the map's (else :class:`InputError` with the
    numbers).
    """
    from PIL import Image

    from wsi.data.slide import open_slide

    size_x, size_y = map_shape
    with open_slide(slide_path) as slide:
        for index, dims in enumerate(slide.level_dimensions):
            if tuple(dims) == (size_x, size_y):
                return slide.read_level(index)
        width, height = slide.dimensions
        expected = (width / cell, height / cell)
        if abs(expected[0] - size_x) > 1 or abs(expected[1] - size_y) > 1:
            raise ParameterError(f"{slide_path}: level-0 size {width}×{height} divided by {cell:g} is "
                                 f"{expected[0]:.1f}×{expected[1]:.1f}, but the probability map is {size_x}×{size_y} "
                                 f"(x × y); give the map's {{level}}")
        thumbnail = slide.get_thumbnail((size_x, size_y))
    return np.asarray(thumbnail.resize((size_x, size_y), Image.Resampling.BILINEAR))


def write_heatmap(path, probs_map, slide_path=None, cell=64, cmap="jet", alpha=0.5, plain=False, dpi=100,
                  title=None):
    """Save the heatmap of an ``[x, y]`` map over its slide's thumbnail (when ``slide_path`` is given).

    ``plain=True`` writes the bare image, one pixel per map cell (PNG or any format PIL knows by suffix).
    Otherwise a matplotlib figure: the image in level-0 pixel axes with a colour bar of the probability.
    Written atomically.
    """
    import matplotlib

    path = Path(path)
    if cmap not in matplotlib.colormaps:
        raise InputError(f"unknown colour map {cmap!r}; e.g. jet, viridis, inferno")
    fmt = _pil_format(path) if plain else figure_format(path)  # check before the work
    probs_map = np.asarray(probs_map)
    size_x, size_y = probs_map.shape
    width_in = 8.0
    figsize = (width_in + 1.5, max(2.0, width_in * size_y / size_x))
    if not plain:  # a --dpi or a map shape that asks for an impossible figure: one line, before any work
        sides = [round(inches * dpi) for inches in figsize]
        if max(sides) >= _AGG_MAX_SIDE:
            raise ParameterError(f"{{dpi}} {dpi}: a figure of {sides[0]}x{sides[1]} pixels is larger than "
                                 f"matplotlib draws ({_AGG_MAX_SIDE} a side); lower {{dpi}} or use {{plain}}")
        check_allocation(_FIGURE_BYTES_PER_PIXEL * sides[0] * sides[1],
                         f"{{dpi}} {dpi}: a figure of {sides[0]}x{sides[1]} pixels")
    background = slide_background(slide_path, probs_map.shape, cell) if slide_path else None
    image = heatmap_image(probs_map, background, cmap=cmap, alpha=alpha if background is not None else 1.0)
    if plain:
        from PIL import Image

        with atomic_path(path) as tmp:
            Image.fromarray(image).save(tmp, format=fmt)
        return
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    scale = cell
    figure = Figure(figsize=figsize)
    axes = figure.add_subplot()
    axes.imshow(image, extent=(0, size_x * scale, size_y * scale, 0), interpolation="nearest")
    axes.set_xlabel("x (level-0 pixels)")
    axes.set_ylabel("y (level-0 pixels)")
    if title:
        axes.set_title(title)
    mappable = ScalarMappable(norm=Normalize(0.0, 1.0), cmap=matplotlib.colormaps[cmap])
    figure.colorbar(mappable, ax=axes, label="tumour probability", fraction=0.046, pad=0.04)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight")


def _pil_format(path):
    from PIL import Image

    Image.init()
    fmt = Image.EXTENSION.get(path.suffix.lower()) if path.suffix else "PNG"
    if fmt is None:
        raise InputError(f"{path}: unknown image format {path.suffix!r}; use .png")
    return fmt


# Contours -------------------------------------------------------------------------------------------------------

def _signed_area(ring):
    x, y = ring[:, 0], ring[:, 1]
    return 0.5 * float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))


def tumour_contours(probs_map, threshold=0.5, cell=64):
    """Tumour regions of an ``[x, y]`` map at ``threshold``: a list of ``(outer, [holes])`` rings.

    Each ring is a closed ``[N, 2]`` float array of level-0 (x, y) (first vertex repeated last). The
    iso-line is skimage's marching squares between cell centres, so a region is the set of cells whose value
    is at least about ``threshold``; a single cell above it gives a small diamond around its centre.
    """
    from skimage.measure import find_contours, points_in_poly

    if not 0 < threshold:
        raise ParameterError(f"{{threshold}} must be above 0, got {threshold}")
    padded = np.pad(np.asarray(probs_map, dtype=np.float64), 1)  # zeros around: every contour closes
    outers, holes = [], []
    # find_contours on the [x, y] array returns (x index, y index) points; with positive_orientation='low'
    # outer boundaries wind one way (negative signed area in these axes) and holes the other.
    for ring in find_contours(padded, level=threshold, positive_orientation="low"):
        if len(ring) < 4:
            continue
        ring = (ring - 1 + 0.5) * cell  # padded index → cell index → level-0 centre coordinates
        (outers if _signed_area(ring) < 0 else holes).append(ring)
    outers.sort(key=lambda r: -abs(_signed_area(r)))
    regions = [(outer, []) for outer in outers]
    for hole in holes:
        containing = [k for k, (outer, _) in enumerate(regions) if points_in_poly(hole[:1], outer)[0]]
        if containing:  # the innermost (smallest) outer ring that contains it
            regions[min(containing, key=lambda k: abs(_signed_area(regions[k][0])))][1].append(hole)
        else:
            log.warning("a hole contour at (%.0f, %.0f) lies in no outer contour; dropped", *hole[0])
    return regions


# GeoJSON --------------------------------------------------------------------------------------------------------

def _classification(name, color):
    return {"name": name, "color": [int(c) for c in color]}


def detection_features(probs, xs, ys, classification="Tumor", color=TUMOUR_COLOR):
    """QuPath detection features: one ``Point`` per detection, its probability in ``properties``."""
    features = []
    for prob, x, y in zip(np.asarray(probs).tolist(), np.asarray(xs).tolist(), np.asarray(ys).tolist()):
        features.append({
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [x, y]},
            "properties": {
                "objectType": "detection",
                "classification": _classification(classification, color),
                "name": "%.5f" % prob,
                "probability": prob,
                "measurements": {"probability": prob},
            },
        })
    return features


def _ring_coordinates(ring):
    ring = np.round(np.asarray(ring, dtype=np.float64), 2)
    coordinates = ring.tolist()
    if coordinates[0] != coordinates[-1]:
        coordinates.append(coordinates[0])
    return coordinates


def contour_features(regions, classification="Tumor", color=TUMOUR_COLOR, threshold=None):
    """QuPath annotation features: one ``Polygon`` (outer ring, then holes) per tumour region."""
    features = []
    for index, (outer, holes) in enumerate(regions, start=1):
        properties = {
            "objectType": "annotation",
            "classification": _classification(classification, color),
            "name": f"{classification} {index}",
            "isLocked": False,
        }
        if threshold is not None:
            properties["threshold"] = threshold
        features.append({
            "type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": [_ring_coordinates(outer)]
                         + [_ring_coordinates(h) for h in holes]},
            "properties": properties,
        })
    return features


def write_geojson(path, features):
    """Write a GeoJSON ``FeatureCollection`` atomically."""
    with atomic_open(path, "w") as handle:
        json.dump({"type": "FeatureCollection", "features": list(features)}, handle)


# ASAP XML -------------------------------------------------------------------------------------------------------

def _polygon(name, ring):
    vertices = np.round(np.asarray(ring, dtype=np.float64)).astype(np.int64)
    if len(vertices) > 1 and (vertices[0] == vertices[-1]).all():
        vertices = vertices[:-1]  # ASAP closes polygons itself
    return Polygon(name, vertices)


def write_xml(path, regions=(), detections=None):
    """ASAP XML: contours in group ``_0``, their holes in ``_2``, detections ``(probs, xs, ys)`` as Dots.

    Vertices are rounded to integer level-0 pixels (the Camelyon16 XMLs' and our JSON's precision).
    """
    positive, negative = [], []
    for index, (outer, holes) in enumerate(regions, start=1):
        positive.append(_polygon(f"Tumor {index}", outer))
        negative.extend(_polygon(f"Tumor {index} hole {k}", hole) for k, hole in enumerate(holes, start=1))
    points = None
    if detections is not None:
        probs, xs, ys = detections
        points = [("%.5f" % p, int(x), int(y)) for p, x, y in zip(np.asarray(probs).tolist(),
                                                                   np.asarray(xs).tolist(),
                                                                   np.asarray(ys).tolist())]
    write_asap_xml(path, groups=[("_0", positive), ("_2", negative)], points=points)
