"""Coordinate lists for training: random centres in tissue, hard negatives from probability maps, statistics.

The original shipped its ``coords/*.txt`` lists but not the code that made them (its issues #14, #17, #29, #38,
#52). The author's recipe, which this module implements:

1. **Random sampling** (:func:`sample_slide`, :func:`sample_coords`): centres drawn at random inside each
   slide's tissue mask and labelled by the annotation. A *tumour* centre lies inside a positive polygon and
   outside every negative (exclusion) polygon; a *normal* centre lies outside every positive polygon (optionally
   at least ``margin`` level-0 pixels from its boundary), on normal slides and in the non-tumour tissue of
   tumour slides.
2. **Hard negatives, once** (:func:`hard_negative_centres`, :func:`add_hard_negatives`): after training, the
   centres where a probability map of a training slide is high although the annotation says normal.

Geometry. A tissue mask or a probability map is an ``[x, y]`` array (the transpose of an image). Mask pixel
``(i, j)`` covers level-0 ``[i·sx, (i+1)·sx) × [j·sy, (j+1)·sy)`` with ``sx, sy`` = level-0 size / mask size
per axis (:class:`MaskGeometry`), and a level-0 point is "in tissue" when the mask pixel that contains it is
True. Random centres are integer level-0 points drawn uniformly inside the chosen pixels (a pixel uniformly
among the candidates, then a uniform position inside it), then verified with the exact polygon inside-test.

Grid labels (:func:`grid_labels`). The training label of a centre ``(x, y)`` is the 3×3 grid of the original's
``GridImageDataset``: the inside-**positive** test (negative polygons ignored, the original's rule) at the cell
centres ``(x + {-p, 0, p}, y + {-p, 0, p})`` with ``p = patch_size = 256``, as an array ``[row = y, col = x]``.
"""

import logging
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from wsi.data.annotation import Annotation, AnnotationError, Polygon
from wsi.data.coords import read_coords, write_coords
from wsi.data.mask import MaskRenderer
from wsi.errors import InputError

logger = logging.getLogger(__name__)

PATCH_SIZE = 256  # the config's patch_size: the distance between grid cell centres
PATCH_PER_SIDE = 3  # image_size / patch_size = 768 / 256
IMAGE_SIZE = PATCH_SIZE * PATCH_PER_SIDE
HARD_STRIDE = 128  # the shipped hard negatives sit at (128·i + 64, 128·j + 64): centres of 128-px cells


class SamplingError(InputError):
    """Inputs of the sampling or hard-negative tools that cannot be used; the message names the file."""


# Labels --------------------------------------------------------------------------------------------------------

def grid_points(centres, patch_size=PATCH_SIZE, patch_per_side=PATCH_PER_SIDE):
    """Level-0 cell centres of the grids around ``centres`` ``[M, 2]`` (x, y): ``[M, n, n, 2]``.

    Axis 1 is the row (y offset), axis 2 the column (x offset), both in ``-(n//2)·p … +(n//2)·p``: the
    original's ``top_left + int((idx + 0.5)·patch_size)`` with ``top_left = centre - n·p/2``.
    """
    centres = np.asarray(centres, dtype=np.int64).reshape(-1, 2)
    image_size = patch_size * patch_per_side
    offsets = np.array([int((k + 0.5) * patch_size) - image_size // 2 for k in range(patch_per_side)])
    xs = centres[:, 0, None, None] + offsets[None, None, :]
    ys = centres[:, 1, None, None] + offsets[None, :, None]
    return np.stack(np.broadcast_arrays(xs, ys), axis=-1)


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


# Mask geometry ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MaskGeometry:
    """How an ``[x, y]`` mask of ``shape`` maps onto a slide whose level 0 is ``level0`` (width, height)."""

    shape: tuple
    level0: tuple

    @property
    def scale(self):
        """Level-0 pixels per mask pixel along x and y."""
        return self.level0[0] / self.shape[0], self.level0[1] / self.shape[1]

    def pixel(self, points):
        """Int ``[M, 2]``: the mask pixel (i, j) holding each level-0 point, clipped to the mask."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        ij = np.floor(points / np.array(self.scale)).astype(np.int64)
        return np.clip(ij, 0, np.array(self.shape) - 1)

    def jitter(self, pixels, rng):
        """Int ``[M, 2]``: a uniformly random integer level-0 point inside each mask pixel (i, j) ``[M, 2]``."""
        u = rng.random((len(pixels), 2))
        points = np.floor((np.asarray(pixels) + u) * np.array(self.scale)).astype(np.int64)
        return np.minimum(points, np.array(self.level0) - 1)


def mask_geometry(mask_shape, level0, where="mask"):
    """Check that an ``[x, y]`` mask can describe a slide of level-0 size ``level0`` and return its geometry.

    A mask of any level fits (the level sizes come from the slide, so they need not be exact powers of two);
    the two axes must agree on the down-sample within 1 %.
    """
    shape = tuple(int(s) for s in mask_shape)
    if len(shape) != 2:
        raise SamplingError(f"{where}: expected a 2-D [x, y] array, got shape {shape}")
    if min(shape) < 1 or shape[0] > level0[0] or shape[1] > level0[1]:
        raise SamplingError(f"{where}: shape {shape} does not fit a slide of level-0 size {tuple(level0)} "
                            f"(masks are [x, y] arrays, the transpose of an image)")
    geometry = MaskGeometry(shape, (int(level0[0]), int(level0[1])))
    sx, sy = geometry.scale
    if abs(sx / sy - 1) > 0.01:
        raise SamplingError(f"{where}: shape {shape} does not match slide level-0 size {tuple(level0)}: "
                            f"down-samples {sx:.3f} (x) and {sy:.3f} (y) differ (is the array transposed?)")
    return geometry


def tissue_fraction(mask, geometry, centres, image_size=IMAGE_SIZE):
    """Float ``[M]``: the fraction of each ``image_size`` square grid around ``centres`` that is tissue.

    Counts the mask pixels whose centre lies in ``[x - s/2, x + s/2) × [y - s/2, y + s/2)``; pixels past the
    slide border count as background. A summed-area table makes it O(1) per centre.
    """
    mask = np.asarray(mask, dtype=bool)
    centres = np.asarray(centres, dtype=np.float64).reshape(-1, 2)
    table = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), dtype=np.int64)
    table[1:, 1:] = mask.cumsum(axis=0).cumsum(axis=1)
    half = image_size / 2
    scale = np.array(geometry.scale)
    lo = np.ceil((centres - half) / scale - 0.5).astype(np.int64)
    hi = np.ceil((centres + half) / scale - 0.5).astype(np.int64)
    area = np.maximum((hi - lo).prod(axis=1), 1)
    lo = np.clip(lo, 0, np.array(mask.shape))
    hi = np.clip(hi, 0, np.array(mask.shape))
    inside = (table[hi[:, 0], hi[:, 1]] - table[lo[:, 0], hi[:, 1]]
              - table[hi[:, 0], lo[:, 1]] + table[lo[:, 0], lo[:, 1]])
    return inside / area


def rasterise(positive, geometry, negative=()):
    """Boolean ``[x, y]`` mask-sized raster: pixels whose centre is inside a ``positive`` polygon and outside
    every ``negative`` one (the rule of the ground-truth masks, :mod:`wsi.data.mask`).

    The mask's two axes may have slightly different down-samples (level sizes are rounded), so y is rescaled
    to x's down-sample before rendering (vertices rounded to level-0 pixels).
    """
    if not positive:
        return np.zeros(geometry.shape, dtype=bool)
    sx, sy = geometry.scale
    squash = np.array([1.0, sx / sy])

    def rescaled(polygons):
        return [Polygon(p.name, np.round(p.vertices() * squash)) for p in polygons]

    renderer = MaskRenderer(Annotation(rescaled(positive), rescaled(negative)))
    return renderer.tile(sx, 0, 0, *geometry.shape).T > 0


# Random sampling ------------------------------------------------------------------------------------------------

def slide_rng(seed, pid, stream):
    """The random generator of one slide and one kind of centre: depends on (seed, pid, stream) only.

    So adding or removing a slide does not change the centres drawn from the others.
    """
    return np.random.default_rng([int(seed), zlib.crc32(pid.encode()), int(stream)])


def draw_points(candidates, accept, count, rng, geometry, max_draws=None):
    """Up to ``count`` distinct integer level-0 points ``[n, 2]`` drawn inside the ``candidates`` pixels.

    Each round picks candidate pixels uniformly at random, a uniform position inside each, and keeps the
    points whose own pixel is a candidate and for which ``accept(points [k, 2]) -> bool [k]`` holds, in
    drawing order, without repeats. Stops after ``max_draws`` points (default ``100·count + 100000``) so that a
    slide whose candidates cannot give ``count`` points ends with fewer rather than looping forever.
    """
    flat = np.flatnonzero(candidates)
    if count <= 0 or not len(flat):
        return np.zeros((0, 2), dtype=np.int64)
    max_draws = 100 * count + 100_000 if max_draws is None else max_draws
    found, seen, draws = [], set(), 0
    while len(found) < count and draws < max_draws:
        n = int(min(max(2 * (count - len(found)), 1024), 1_000_000, max_draws - draws))
        draws += n
        pixels = np.stack(np.unravel_index(flat[rng.integers(len(flat), size=n)], candidates.shape), axis=1)
        points = geometry.jitter(pixels, rng)
        own = geometry.pixel(points)
        ok = candidates[own[:, 0], own[:, 1]]
        if ok.any():
            ok[ok] = accept(points[ok])
        for x, y in points[ok].tolist():
            if (x, y) not in seen:
                seen.add((x, y))
                found.append((x, y))
                if len(found) == count:
                    break
    return np.array(found, dtype=np.int64).reshape(-1, 2)


def tumour_candidates(annotation, tissue, geometry):
    """Boolean ``[x, y]``: tissue pixels that may hold a tumour centre (a superset; points are then verified).

    The tumour raster (pixel centres inside a positive and outside every negative polygon), grown by one pixel
    for the partly covered pixels on the boundary, plus the pixels holding a positive vertex (polygons thinner
    than a pixel), intersected with the tissue.
    """
    if not annotation.positive:
        return np.zeros(geometry.shape, dtype=bool)
    tumour = rasterise(annotation.positive, geometry, annotation.negative)
    tumour = ndimage.binary_dilation(tumour, structure=np.ones((3, 3), bool))
    for polygon in annotation.positive:
        ij = geometry.pixel(polygon.vertices())
        tumour[ij[:, 0], ij[:, 1]] = True
    return tumour & tissue


def normal_candidates(annotation, tissue, geometry, margin=0):
    """Boolean ``[x, y]``: tissue pixels that may hold a normal centre (a superset; points are then verified).

    Drops the pixels deep inside a positive polygon (more than 1.5 pixels from its raster's edge; an outside
    notch narrower than a pixel there is lost) and, with a margin, the pixels whose centre is more than 1.5
    pixels closer to the tumour raster than the margin (these cannot hold a point far enough).
    """
    if not annotation.positive:
        return tissue.copy()
    positive = rasterise(annotation.positive, geometry)
    if not positive.any():
        return tissue.copy()
    keep = ndimage.distance_transform_edt(positive) <= 1.5
    if margin > 0:
        scale = geometry.scale
        keep &= ndimage.distance_transform_edt(~positive, sampling=scale) >= margin - 1.5 * max(scale)
    return tissue & keep


def sample_slide(pid, annotation, tissue, geometry, num_tumor, num_normal, seed=0, margin=0, min_tissue=0.0,
                 image_size=IMAGE_SIZE):
    """Random tumour and normal centres of one slide: two int arrays ``[n, 2]`` of level-0 (x, y).

    ``tissue`` is the slide's boolean ``[x, y]`` tissue mask and ``geometry`` its :class:`MaskGeometry`.
    Tumour centres lie in tissue, inside a positive polygon and outside every negative one; normal centres lie
    in tissue, outside every positive polygon and at least ``margin`` level-0 pixels from one. With
    ``min_tissue`` > 0 the ``image_size`` grid around each centre must be at least that fraction tissue. A
    slide that cannot give the counts asked for gives fewer, with a warning.
    """
    tissue = np.asarray(tissue, dtype=bool)

    def enough_tissue(points):
        if min_tissue <= 0:
            return np.ones(len(points), dtype=bool)
        return tissue_fraction(tissue, geometry, points, image_size) >= min_tissue

    tumour = np.zeros((0, 2), dtype=np.int64)
    if num_tumor > 0 and annotation.positive:
        candidates = tumour_candidates(annotation, tissue, geometry)
        tumour = draw_points(candidates, lambda p: enough_tissue(p) & is_tumour(annotation, p), num_tumor,
                             slide_rng(seed, pid, 0), geometry)
        if len(tumour) < num_tumor:
            logger.warning("%s: only %d of %d tumour centres found (tumour ∩ tissue is %d mask pixels)",
                           pid, len(tumour), num_tumor, int(candidates.sum()))
    normal = np.zeros((0, 2), dtype=np.int64)
    if num_normal > 0:
        candidates = normal_candidates(annotation, tissue, geometry, margin)
        normal = draw_points(candidates, lambda p: enough_tissue(p) & is_normal(annotation, p, margin),
                             num_normal, slide_rng(seed, pid, 1), geometry)
        if len(normal) < num_normal:
            logger.warning("%s: only %d of %d normal centres found (normal tissue is %d mask pixels)",
                           pid, len(normal), num_normal, int(candidates.sum()))
    return tumour, normal


def spread(total, pids):
    """``{pid: count}``: ``total`` spread evenly over ``pids`` (sorted); the first ``total % n`` get one more."""
    pids = sorted(pids)
    if not pids:
        return {}
    base, extra = divmod(int(total), len(pids))
    return {pid: base + (k < extra) for k, pid in enumerate(pids)}


def split_slides(pids, is_tumour_slide, valid_fraction=0.0, valid_pids=None, seed=0):
    """The set of pids that go to the validation list.

    Either the ``valid_pids`` given, or ``round(valid_fraction · n)`` slides drawn with ``seed`` among the
    tumour slides and, separately, among the normal ones, so that both lists hold both kinds.
    """
    pids = sorted(pids)
    if valid_pids:
        unknown = sorted(set(valid_pids) - set(pids))
        if unknown:
            raise SamplingError(f"--valid_pids: {', '.join(unknown[:5])} not among the slides sampled")
        return set(valid_pids)
    if not valid_fraction:
        return set()
    rng = np.random.default_rng([int(seed), 2])
    chosen = set()
    for group in ([p for p in pids if is_tumour_slide[p]], [p for p in pids if not is_tumour_slide[p]]):
        k = int(round(valid_fraction * len(group)))
        chosen.update(np.array(group, dtype=object)[rng.permutation(len(group))[:k]].tolist())
    return chosen


def shuffled(rows, seed, stream):
    """``rows`` in a random order drawn from (seed, stream): the lists are read in file order by training."""
    order = np.random.default_rng([int(seed), 3, int(stream)]).permutation(len(rows))
    return [rows[k] for k in order]


# Inputs of the command-line tools -----------------------------------------------------------------------------

def is_normal_name(pid):
    """Whether a slide's name says it is a normal slide (Camelyon16's ``Normal_*``)."""
    return pid.lower().startswith("normal")


def load_slide_annotations(json_dir, pids, assume_normal=False, what="slide"):
    """``{pid: Annotation}`` of ``pids`` from ``<json_dir>/<pid>.json``.

    A pid without a JSON gets an empty annotation (a normal slide) when its name says so (``Normal_*``) or
    ``assume_normal`` is set; otherwise :class:`SamplingError` names the missing file(s).
    """
    json_dir = Path(json_dir)
    if not json_dir.is_dir():
        raise AnnotationError(f"{json_dir}: no such annotation folder")
    annotations, missing = {}, []
    for pid in pids:
        path = json_dir / f"{pid}.json"
        if path.is_file():
            annotations[pid] = Annotation.from_json(path)
        elif assume_normal or is_normal_name(pid):
            annotations[pid] = Annotation(path=None)
        else:
            missing.append(pid)
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise SamplingError(f"{json_dir / (missing[0] + '.json')}: no annotation for {what} {missing[0]}{more}; "
                            f"only Normal_* slides may lack one (or pass --assume_normal)")
    return annotations


def json_pids(json_dir):
    """The stems of the ``*.json`` files of an annotation folder, sorted."""
    json_dir = Path(json_dir)
    if not json_dir.is_dir():
        raise AnnotationError(f"{json_dir}: no such annotation folder")
    return sorted(p.stem for p in json_dir.glob("*.json"))


def load_mask(path, level0=None, what="tissue mask", mmap_mode=None):
    """Load an ``[x, y]`` ``.npy`` array (a tissue mask or a probability map); one-line errors name the file.

    With ``level0`` (the slide's level-0 width, height) the shape is checked against the slide. ``mmap_mode='r'``
    reads only the header, to check many files before any work starts.
    """
    path = Path(path)
    if not path.is_file():
        raise SamplingError(f"{path}: no such {what} file")
    try:
        array = np.load(path, allow_pickle=False, mmap_mode=mmap_mode)
    except (ValueError, OSError, EOFError) as err:
        raise SamplingError(f"{path}: not a NumPy .npy {what} ({str(err).splitlines()[0]})") from None
    if array.ndim != 2:
        raise SamplingError(f"{path}: {what} must be a 2-D [x, y] array, got shape {array.shape}")
    if array.dtype != bool and array.dtype.kind not in "iuf":
        raise SamplingError(f"{path}: {what} must be boolean or numeric, got dtype {array.dtype}")
    if mmap_mode is None and array.dtype.kind == "f" and not np.isfinite(array).all():
        raise SamplingError(f"{path}: {what} holds NaN or infinite values")
    if level0 is not None:
        mask_geometry(array.shape, level0, where=str(path))
    return array


def sample_coords(wsi_path, json_path, out_path, *, mask_path=None, pids=None, level=6, rgb_min=50,
                  num_tumor=None, tumor_per_slide=2000, num_normal=None, normal_per_slide=None, seed=0, margin=0,
                  min_tissue=0.0, valid_fraction=0.0, valid_pids=None, name="train", assume_normal=False,
                  progress=None):
    """Sample the coordinate lists of a set of slides and write ``tumor_<name>.txt`` and ``normal_<name>.txt``.

    Slides: ``pids`` or, by default, the stems of the JSONs in ``json_path`` (as the original's training finds
    its slides), read from ``wsi_path`` (``<pid>.tif`` or another extension). Tissue masks: ``<mask_path>/<pid>.npy``
    ([x, y], any level), else computed with :func:`wsi.data.tissue.tissue_mask` at ``level``.

    Counts: ``num_tumor`` tumour centres in all, spread evenly over the tumour slides (else ``tumor_per_slide``
    each, default 2 000 as in the shipped lists); ``num_normal`` normal centres in all (else ``normal_per_slide``
    each; default: as many as tumour centres in all, or ``tumor_per_slide`` per slide when no slide has tumour),
    spread evenly over all slides, tumour slides included.
    With ``valid_fraction`` or ``valid_pids``, those slides go to ``tumor_valid.txt``/``normal_valid.txt``
    instead. Every list is shuffled. Nothing is written unless every slide succeeds.

    Returns ``{file name: rows}`` of the lists written.
    """
    from wsi.data.slide import find_slide, open_slide

    if name == "valid" and (valid_fraction or valid_pids):
        raise SamplingError("--name valid clashes with the validation split, which writes the *_valid.txt lists")
    if not 0 <= valid_fraction < 1:
        raise SamplingError(f"--valid_fraction {valid_fraction}: must be in [0, 1)")
    if not 0 <= min_tissue <= 1:
        raise SamplingError(f"--min_tissue {min_tissue}: must be in [0, 1]")
    if margin < 0:
        raise SamplingError(f"--margin {margin}: must be >= 0")
    pids = sorted(dict.fromkeys(pids)) if pids else json_pids(json_path)
    if not pids:
        raise SamplingError(f"{json_path}: no annotation JSONs, so no slides to sample (or give --pids)")
    annotations = load_slide_annotations(json_path, pids, assume_normal)
    slides = {pid: find_slide(wsi_path, pid) for pid in pids}
    if mask_path is not None:
        if not Path(mask_path).is_dir():
            raise SamplingError(f"{mask_path}: no such tissue-mask folder")
        missing = [pid for pid in pids if not (Path(mask_path) / f"{pid}.npy").is_file()]
        if missing:
            raise SamplingError(f"{Path(mask_path) / (missing[0] + '.npy')}: no such tissue mask"
                                + (f" (and {len(missing) - 1} more missing)" if len(missing) > 1 else ""))
    # Check every slide and mask before sampling any, so that a bad one stops the run at once.
    for pid in pids:
        with open_slide(slides[pid]) as slide:
            if mask_path is not None:
                load_mask(Path(mask_path) / f"{pid}.npy", slide.level_dimensions[0], mmap_mode="r")
            else:
                slide.check_level(level)
    tumour_slide = {pid: bool(annotations[pid].positive) for pid in pids}
    tumour_pids = [p for p in pids if tumour_slide[p]]

    if num_tumor is not None:
        tumour_counts = spread(num_tumor, tumour_pids)
    else:
        tumour_counts = {pid: int(tumor_per_slide) for pid in tumour_pids}
    if num_normal is None and normal_per_slide is None:
        # Balanced lists (training draws one tumour and one normal batch per step); without tumour slides,
        # the per-slide tumour count for each slide.
        num_normal = sum(tumour_counts.values()) or int(tumor_per_slide) * len(pids)
    if num_normal is not None:
        normal_counts = spread(num_normal, pids)
    else:
        normal_counts = {pid: int(normal_per_slide) for pid in pids}
    valid = split_slides(pids, tumour_slide, valid_fraction, valid_pids, seed)

    lists = {name: ([], []), "valid": ([], [])} if valid else {name: ([], [])}
    for pid in pids if progress is None else progress(pids):
        with open_slide(slides[pid]) as slide:
            level0 = slide.level_dimensions[0]
            if mask_path is not None:
                tissue = load_mask(Path(mask_path) / f"{pid}.npy", level0)
            else:
                from wsi.data.tissue import tissue_mask

                tissue = tissue_mask(slide, level=level, rgb_min=rgb_min)
        where = str(Path(mask_path) / f"{pid}.npy") if mask_path is not None else f"{slides[pid]} (tissue mask)"
        geometry = mask_geometry(tissue.shape, level0, where=where)
        tumour, normal = sample_slide(pid, annotations[pid], tissue != 0, geometry, tumour_counts.get(pid, 0),
                                      normal_counts[pid], seed=seed, margin=margin, min_tissue=min_tissue)
        logger.info("%s: %d tumour, %d normal centres", pid, len(tumour), len(normal))
        tumour_rows, normal_rows = lists["valid" if pid in valid else name]
        tumour_rows.extend((pid, x, y) for x, y in tumour.tolist())
        normal_rows.extend((pid, x, y) for x, y in normal.tolist())

    written = {}
    for k, (split, (tumour_rows, normal_rows)) in enumerate(lists.items()):
        for kind, rows, stream in (("tumor", tumour_rows, 2 * k), ("normal", normal_rows, 2 * k + 1)):
            if not rows:
                logger.warning("%s_%s.txt: empty list", kind, split)
            written[f"{kind}_{split}.txt"] = shuffled(rows, seed, stream)
    for file_name, rows in written.items():
        write_coords(Path(out_path) / file_name, rows)
        logger.info("%s: %d centres", Path(out_path) / file_name, len(rows))
    return written


# Hard negatives ------------------------------------------------------------------------------------------------

def check_stride(stride, level):
    """The map's pixel size ``2**level``; raises :class:`SamplingError` unless ``stride`` is a multiple of it."""
    resolution = 2 ** int(level)
    if stride <= 0 or stride % resolution:
        raise SamplingError(f"--stride {stride}: must be a positive multiple of the map's pixel size "
                            f"2**{level} = {resolution}")
    return resolution


def hard_negative_centres(probs_map, annotation, tissue=None, level=6, stride=HARD_STRIDE, threshold=0.5,
                          margin=0):
    """Candidate hard negatives of one slide: centres ``[n, 2]`` (level-0 x, y) and probabilities ``[n]``.

    ``probs_map`` is the slide's ``[x, y]`` probability map at ``level`` (a map pixel covers ``2**level``
    level-0 pixels, as ``nms.py`` assumes). The slide is cut into cells of ``stride`` level-0 pixels (a whole
    number of map pixels); cell ``(i, j)`` has the centre ``(i·stride + stride//2, j·stride + stride//2)``
    (``int((i + 0.5)·stride)``; 128 gives the shipped lists' ``128·i + 64``) and the probability of its most
    probable map pixel. A cell is kept when that probability is ≥ ``threshold``, its centre lies in tissue (the
    ``tissue`` mask pixel holding it is True; no test without a mask) and the annotation says normal there
    (outside every positive polygon, at least ``margin`` away). Sorted by probability, highest first (ties by
    position).
    """
    probs_map = np.asarray(probs_map, dtype=np.float64)
    resolution = check_stride(stride, level)
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
                       level=6, stride=HARD_STRIDE, threshold=0.5, margin=0, max_per_slide=2000, max_total=None,
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
    check_stride(stride, level)
    for option, value in (("--max_per_slide", max_per_slide), ("--max_total", max_total)):
        if value is not None and value < 0:
            raise SamplingError(f"{option} {value}: must be >= 0")
    annotations = load_slide_annotations(json_path, pids, assume_normal)
    normal_path = Path(normal_path)
    existing = read_coords(normal_path) if normal_path.exists() else []
    # Check every map and mask (headers only) before the work starts, so that a bad one stops the run at once.
    for pid in pids:
        probs = load_mask(probs_path / f"{pid}.npy", what="probability map", mmap_mode="r")
        if mask_path is not None:
            if not Path(mask_path).is_dir():
                raise SamplingError(f"{mask_path}: no such tissue-mask folder")
            tissue = load_mask(Path(mask_path) / f"{pid}.npy", mmap_mode="r")
            if tissue.shape != probs.shape:
                raise SamplingError(f"{Path(mask_path) / (pid + '.npy')}: tissue mask shape {tissue.shape} differs "
                                    f"from the probability map's {probs.shape} ({probs_path / (pid + '.npy')})")

    found = []
    for pid in pids if progress is None else progress(pids):
        probs = load_mask(probs_path / f"{pid}.npy", what="probability map")
        tissue = load_mask(Path(mask_path) / f"{pid}.npy") if mask_path is not None else None
        centres, p = hard_negative_centres(probs, annotations[pid], tissue, level, stride, threshold, margin)
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


# Statistics of coordinate lists --------------------------------------------------------------------------------

def is_on_grid(xy, stride=HARD_STRIDE):
    """Boolean ``[M]``: centres on the hard-negative grid, ``x ≡ y ≡ stride//2 (mod stride)``."""
    xy = np.asarray(xy, dtype=np.int64).reshape(-1, 2)
    return ((xy % stride) == stride // 2).all(axis=1)


def list_stats(rows, annotations, patch_size=PATCH_SIZE, hard_stride=HARD_STRIDE, exclude_negative=False):
    """Per-slide statistics of one coordinate list: ``{pid: dict}``, pids sorted.

    Each dict holds ``count``; ``centre_positive`` (centres whose own cell is positive); ``on_edge`` (of those,
    the centres exactly on a positive polygon's edge); ``in_negative``
    (centres inside a negative polygon); ``on_grid`` (centres on the hard-negative grid, see :func:`is_on_grid`);
    ``positive_cells`` (positive cells summed over the grids) and ``position`` (``[3, 3]`` positive counts per
    grid position, row = y).
    """
    by_pid = {}
    for pid, x, y in rows:
        by_pid.setdefault(pid, []).append((x, y))
    stats = {}
    for pid in sorted(by_pid):
        xy = np.array(by_pid[pid], dtype=np.int64)
        annotation = annotations[pid]
        labels = grid_labels(annotation, xy, patch_size, exclude_negative=exclude_negative)
        centre = labels.shape[1] // 2
        positive = labels[:, centre, centre]
        # Centres exactly on an edge count as inside here (modern skimage); skimage 0.13's even-odd test, which
        # the original used, could put them either side.
        on_edge = 0
        if positive.any():
            on_edge = int((distance_to_boundary(annotation.positive, xy[positive], 1.0) == 0).sum())
        stats[pid] = {
            "count": len(xy),
            "centre_positive": int(positive.sum()),
            "on_edge": on_edge,
            "in_negative": int(annotation.inside_polygons(xy, is_positive=False).sum()) if annotation.negative else 0,
            "on_grid": int(is_on_grid(xy, hard_stride).sum()),
            "positive_cells": int(labels.sum()),
            "position": labels.sum(axis=0),
        }
    return stats


def coords_report(tumor_rows, normal_rows, annotations, patch_size=PATCH_SIZE, hard_stride=HARD_STRIDE,
                  exclude_negative=False):
    """The text lines of the report comparing coordinate lists with the shipped ones.

    One line per slide and a total: tumour centres, how many are inside a positive polygon (all, in the shipped
    lists) and inside a negative one, the mean fraction of positive cells of their 3×3 grids (0.8277 in the
    shipped tumor_valid.txt); normal centres, how many inside a positive polygon (none), how many on the
    hard-negative grid, their mean positive fraction (0.0600 in normal_valid.txt). Then the positive rate of
    each grid position (row-major, row = y). Returns ``(lines, totals)`` with ``totals[kind]`` a dict of sums
    and ``mean`` (positive fraction) for ``kind`` in ``tumor``/``normal``.
    """
    per_kind = {"tumor": list_stats(tumor_rows or [], annotations, patch_size, hard_stride, exclude_negative),
                "normal": list_stats(normal_rows or [], annotations, patch_size, hard_stride, exclude_negative)}
    cells = PATCH_PER_SIDE ** 2
    pids = sorted(set(per_kind["tumor"]) | set(per_kind["normal"]))
    columns = {"tumor": ("count", "centre_positive", "in_negative", "on_edge"),
               "normal": ("count", "centre_positive", "on_edge", "on_grid")}
    lines = [f"{'slide':<16}{'tumor':>8}{'inside':>8}{'in_neg':>8}{'on_edge':>8}{'pos_frac':>10}"
             f"{'normal':>9}{'inside':>8}{'on_edge':>8}{'hard':>8}{'pos_frac':>10}"]

    def fields(s, kind):
        if s is None or not s["count"]:
            return "".join(f"{0:>8}" for _ in columns[kind]) + f"{'-':>10}"
        mean = s["positive_cells"] / (cells * s["count"])
        return "".join(f"{s[key]:>8}" for key in columns[kind]) + f"{mean:>10.4f}"

    def line(label, tumor, normal):
        return f"{label:<16}{fields(tumor, 'tumor')} {fields(normal, 'normal')}"

    for pid in pids:
        lines.append(line(pid, per_kind["tumor"].get(pid), per_kind["normal"].get(pid)))

    totals = {}
    for kind, stats in per_kind.items():
        total = {key: sum(s[key] for s in stats.values())
                 for key in ("count", "centre_positive", "in_negative", "on_edge", "on_grid", "positive_cells")}
        total["position"] = (sum(s["position"] for s in stats.values()) if stats
                             else np.zeros((PATCH_PER_SIDE, PATCH_PER_SIDE), dtype=np.int64))
        total["mean"] = total["positive_cells"] / (cells * total["count"]) if total["count"] else float("nan")
        totals[kind] = total
    lines.append(line("total", totals["tumor"], totals["normal"]))
    for kind, total in totals.items():
        if total["count"]:
            rate = " ".join(f"{v:.3f}" for v in (total["position"] / total["count"]).ravel())
            lines.append(f"{kind} positive rate per grid position (row-major, row = y): {rate}")
    return lines, totals
