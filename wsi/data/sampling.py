"""Coordinate lists for training: random centres in tissue, labelled by the annotation.

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
per axis (:attr:`wsi.geometry.MaskGeometry.scale`), and a level-0 point is "in tissue" when the mask pixel that
contains it is True. Random centres are integer level-0 points drawn uniformly inside the chosen pixels (a pixel
uniformly among the candidates, then a uniform position inside it), then verified with the exact polygon
inside-test.

Labels come from :mod:`wsi.data.labels`; hard negatives are :mod:`wsi.data.hard_negatives`; statistics of
lists :mod:`wsi.data.coords_stats`.
"""

import logging
import zlib
from pathlib import Path

import numpy as np
from scipy import ndimage

from wsi.data.annotation import Annotation, Polygon, json_pids, load_annotations
from wsi.data.coords import write_coords
from wsi.data.labels import IMAGE_SIZE, is_normal, is_tumour
from wsi.data.mask import MaskRenderer
from wsi.data.slide import find_slide, open_slide
from wsi.data.tissue import load_tissue_mask, tissue_mask
from wsi.errors import ParameterError, SamplingError
from wsi.geometry import mask_geometry

logger = logging.getLogger(__name__)


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
        return np.zeros(geometry.mask_shape, dtype=bool)
    sx, sy = geometry.scale
    squash = np.array([1.0, sx / sy])

    def rescaled(polygons):
        return [Polygon(p.name, np.round(p.vertices() * squash)) for p in polygons]

    renderer = MaskRenderer(Annotation(rescaled(positive), rescaled(negative)))
    return renderer.tile(sx, 0, 0, *geometry.mask_shape).T > 0


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
        return np.zeros(geometry.mask_shape, dtype=bool)
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
            raise ParameterError(f"{{valid_pids}}: {', '.join(unknown[:5])} not among the slides sampled")
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

    _check_parameters(name, valid_fraction, valid_pids, min_tissue, margin)
    pids = sorted(dict.fromkeys(pids)) if pids else json_pids(json_path)
    if not pids:
        raise ParameterError(f"{json_path}: no annotation JSONs, so no slides to sample (or give {{pids}})")
    annotations = load_annotations(json_path, pids, assume_normal=assume_normal)
    slides = {pid: find_slide(wsi_path, pid) for pid in pids}
    _check_slides_and_masks(slides, mask_path, level)
    tumour_slide = {pid: bool(annotations[pid].positive) for pid in pids}
    tumour_pids = [p for p in pids if tumour_slide[p]]
    tumour_counts, normal_counts = centre_counts(pids, tumour_pids, num_tumor, tumor_per_slide, num_normal,
                                                 normal_per_slide)
    valid = split_slides(pids, tumour_slide, valid_fraction, valid_pids, seed)

    lists = {name: ([], []), "valid": ([], [])} if valid else {name: ([], [])}
    for pid in pids if progress is None else progress(pids):
        with open_slide(slides[pid]) as slide:
            tissue, geometry = _tissue_of(slide, slides[pid], mask_path, pid, level, rgb_min)
        tumour, normal = sample_slide(pid, annotations[pid], tissue, geometry, tumour_counts.get(pid, 0),
                                      normal_counts[pid], seed=seed, margin=margin, min_tissue=min_tissue)
        logger.info("%s: %d tumour, %d normal centres", pid, len(tumour), len(normal))
        tumour_rows, normal_rows = lists["valid" if pid in valid else name]
        tumour_rows.extend((pid, x, y) for x, y in tumour.tolist())
        normal_rows.extend((pid, x, y) for x, y in normal.tolist())
    return _write_lists(lists, seed, out_path)


def _check_parameters(name, valid_fraction, valid_pids, min_tissue, margin):
    if name == "valid" and (valid_fraction or valid_pids):
        raise ParameterError("{name} valid clashes with the validation split, which writes the *_valid.txt lists")
    if not 0 <= valid_fraction < 1:
        raise ParameterError(f"{{valid_fraction}} {valid_fraction}: must be in [0, 1)")
    if not 0 <= min_tissue <= 1:
        raise ParameterError(f"{{min_tissue}} {min_tissue}: must be in [0, 1]")
    if margin < 0:
        raise ParameterError(f"{{margin}} {margin}: must be >= 0")


def _check_slides_and_masks(slides, mask_path, level):
    """Every slide ``{pid: path}`` opens and has its tissue mask (``<mask_path>/<pid>.npy`` fitting it) or the
    level the mask is computed at, checked before sampling any, so that a bad one stops the run at once."""
    pids = list(slides)
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
                load_tissue_mask(Path(mask_path) / f"{pid}.npy", slide, mmap=True)
            else:
                slide.check_level(level)


def centre_counts(pids, tumour_pids, num_tumor, tumor_per_slide, num_normal, normal_per_slide):
    """``(tumour_counts, normal_counts)``, ``{pid: centres}`` of the tumour slides and of all slides (the rules of
    :func:`sample_coords`)."""
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
    return tumour_counts, normal_counts


def _tissue_of(slide, slide_path, mask_path, pid, level, rgb_min):
    """``(tissue [x, y] bool, MaskGeometry)`` of an open slide: its mask file, or computed at ``level``."""
    if mask_path is not None:
        return load_tissue_mask(Path(mask_path) / f"{pid}.npy", slide)
    tissue = tissue_mask(slide, level=level, rgb_min=rgb_min)
    geometry = mask_geometry(slide.level_dimensions, slide.level_downsamples, tissue.shape,
                             mask_name=f"{slide_path} (tissue mask)", slide_name=str(slide_path))
    return tissue, geometry


def _write_lists(lists, seed, out_path):
    """Write ``{split: (tumour rows, normal rows)}`` as ``<kind>_<split>.txt``, each shuffled; returns
    ``{file name: rows}``."""
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
