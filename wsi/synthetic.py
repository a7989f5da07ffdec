"""Synthetic H&E-like whole-slide images with tumour annotations and ground-truth masks, for demos and tests.

:func:`make_synthetic_slide` writes, deterministically from a seed:

- the slide: an OpenSlide-readable generic-TIFF pyramid (tiled, JPEG, every reduced page ``subfiletype=1``,
  ``openslide.mpp-x`` = ``mpp``). White background; tissue = a union of irregular blobs (30–60 % of the slide) of
  pink stroma with sparse small nuclei (radius 3–4.5 level-0 px); tumour nests = irregular polygons (major axis
  ``tumour_size`` level-0 px) lying inside tissue, filled with crowded large dark purple nuclei (radius 6.5–9 px).
  Stain colours vary a little per slide.
- the ASAP XML of the tumour polygons (groups ``_0`` and ``_1`` alternately; with ``with_hole`` a ``_2``
  exclusion polygon inside the first tumour, rendered as stroma);
- the Camelyon16-style ground-truth mask (:func:`wsi.data.mask.write_tumour_mask`: tumour 255, holes and the
  rest 0), named ``<mask_dir>/<stem>.tif`` as the FROC looks it up.

Every level is rendered directly, tile by tile, from analytic descriptions (blob shapes, polygons, and nuclei
drawn from a hash of their cell on a level-0 grid), so tiles join seamlessly and memory stays at a few tiles
whatever the size. Levels 0 and 1 show individual nuclei; coarser levels show their average colour. Which pixels
are tumour is decided by the same rasteriser as the mask (:class:`wsi.data.mask.MaskRenderer`), so pixels, XML
and mask agree.
"""

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from skimage.measure import points_in_poly

from wsi.constants import CAMELYON16_MPP
from wsi.data.annotation import Annotation, Polygon, write_asap_xml
from wsi.data.mask import MaskRenderer, fill_polygons_tile, polygon_arrays, write_tumour_mask
from wsi.data.pyramid import write_pyramid
from wsi.errors import InputError

# Texture parameters, level-0 pixels: each square cell of side `cell` holds, with probability `density`, one
# nucleus of radius in `radius` centred anywhere in the cell (so neighbouring nuclei may overlap: crowding).
STROMA_NUCLEI = dict(cell=28, density=0.30, radius=(3.0, 4.5))
TUMOUR_NUCLEI = dict(cell=18, density=0.92, radius=(6.5, 9.0))
# Lymphoid follicles (optional, ``lymphoid`` > 0): normal tissue packed with small, very dark nuclei, darker than
# tumour at low magnification, as lymphocyte-rich regions of a real lymph node. They keep colour alone from
# telling tumour from normal: a classifier has to learn the nuclei's size (an untrained network ranks them above
# tumour).
LYMPHOID_NUCLEI = dict(cell=8, density=0.95, radius=(2.5, 4.0))
LYMPHOID_DARKNESS = 0.8  # lymphoid nucleus colour = tumour nucleus colour × this
NUCLEI_MAX_DOWNSAMPLE = 2  # levels at or below this down-sample draw individual nuclei
GRAIN_PERIOD = 509  # the per-pixel grain repeats every GRAIN_PERIOD pixels (prime: no alignment with tiles)


def _mix(h):
    """splitmix64 finaliser on uint64 arrays (wrapping arithmetic)."""
    h = np.asarray(h, dtype=np.uint64)
    with np.errstate(over="ignore"):
        h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        h = h ^ (h >> np.uint64(31))
    return h


def _hash_uniform(seed, salt, a, b):
    """Deterministic uniform floats in [0, 1) from integer arrays ``a``, ``b`` (broadcast), a seed and a salt."""
    a = np.asarray(a, dtype=np.int64).astype(np.uint64)
    b = np.asarray(b, dtype=np.int64).astype(np.uint64)
    with np.errstate(over="ignore"):
        h = _mix(np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(salt))
        h = _mix(h ^ (a * np.uint64(0xD6E8FEB86659FD93)))
        h = _mix(h ^ (b * np.uint64(0xA0761D6478BD642F)))
    return (h >> np.uint64(11)).astype(np.float64) * (1.0 / 2**53)


@dataclass
class Blob:
    """An irregular closed shape: radius ``r(θ) = radius · (1 + Σ a_k cos(kθ + φ_k))`` around (cx, cy), in a
    frame stretched by ``aspect`` along the direction ``angle``. Level-0 pixels."""

    cx: float
    cy: float
    radius: float
    aspect: float = 1.0
    angle: float = 0.0
    harmonics: tuple = ()  # ((k, a_k, φ_k), ...)

    @property
    def amplitude(self):
        return sum(abs(a) for _, a, _ in self.harmonics)

    @property
    def r_max(self):
        """Radius of a circle around (cx, cy) that contains the shape."""
        return self.radius * (1 + self.amplitude) * max(self.aspect, 1.0)

    @property
    def r_min(self):
        """Radius of a circle around (cx, cy) inside the shape."""
        return self.radius * (1 - self.amplitude) * min(self.aspect, 1.0)

    def boundary(self, num_vertices):
        """``[num_vertices, 2]`` float level-0 (x, y) points of the outline, counter-clockwise in θ."""
        theta = np.linspace(0, 2 * np.pi, int(num_vertices), endpoint=False)
        r = np.full(len(theta), self.radius)
        for k, a, phi in self.harmonics:
            r = r + self.radius * a * np.cos(k * theta + phi)
        u, v = r * np.cos(theta) * self.aspect, r * np.sin(theta)
        c, s = math.cos(self.angle), math.sin(self.angle)
        return np.stack([self.cx + u * c - v * s, self.cy + u * s + v * c], axis=1)

    def outline(self, spacing=4.0):
        """The outline as a float polygon with vertices about ``spacing`` level-0 px apart (256 to 16384)."""
        perimeter = 2 * np.pi * self.r_max * (1 + 2 * self.amplitude)
        return self.boundary(int(np.clip(math.ceil(perimeter / spacing), 256, 16384)))

    def polygon(self, num_vertices, name):
        """The outline at ``num_vertices`` angles, as a :class:`Polygon` with integer vertices (annotations)."""
        return Polygon(name, np.round(self.boundary(num_vertices)).astype(np.int64))


class Tissue:
    """The tissue of a synthetic slide: the union of ``blobs``, rasterised through their float outlines.

    ``outlines`` are ``[N, 2]`` level-0 (x, y) polygons, vertices a few pixels apart, so any level renders with
    the scan-line fill of :mod:`wsi.data.mask` (cheap per tile) and all levels agree.
    """

    def __init__(self, width, height, blobs, lymphoid=()):
        self.width, self.height, self.blobs = int(width), int(height), list(blobs)
        self.outlines = [blob.outline() for blob in self.blobs]
        self._arrays = polygon_arrays(self.outlines)
        # Lymphoid follicles: regions of the tissue (outside tumour) rendered with LYMPHOID_NUCLEI.
        self.lymphoid = list(lymphoid)
        self._lymphoid_arrays = polygon_arrays([blob.outline() for blob in self.lymphoid]) if self.lymphoid else None

    def lymphoid_tile(self, downsample, x, y, w, h):
        """Boolean ``[h, w]``: inside a lymphoid follicle (tissue or not) at the centres of a tile of a level."""
        if self._lymphoid_arrays is None:
            return np.zeros((h, w), dtype=bool)
        return fill_polygons_tile(*self._lymphoid_arrays, downsample, x, y, w, h)

    def tile(self, downsample, x, y, w, h):
        """Boolean ``[h, w]`` (rows = y): tissue at the centres of a tile of a level (as the mask tiles)."""
        return fill_polygons_tile(*self._arrays, downsample, x, y, w, h)

    def contains(self, points):
        """Boolean ``[M]``: tissue at level-0 points ``[M, 2]`` (x, y)."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        out = np.zeros(len(points), dtype=bool)
        for outline in self.outlines:
            out |= points_in_poly(points, outline)
        return out

    def fraction(self, samples=256):
        """Fraction of the slide area covered by tissue, from about ``samples`` × ``samples`` points."""
        d = max(self.width, self.height) / samples
        w, h = max(1, round(self.width / d)), max(1, round(self.height / d))
        return float(self.tile(d, 0, 0, w, h).mean())

    def __repr__(self):
        return f"Tissue({self.width}x{self.height}, {len(self.blobs)} blobs)"


@dataclass
class Stain:
    """Per-slide colours (RGB 0–255)."""

    background: np.ndarray
    stroma: np.ndarray
    stroma_nucleus: np.ndarray
    tumour: np.ndarray
    tumour_nucleus: np.ndarray

    @classmethod
    def random(cls, rng):
        # Eosin (pink) and haematoxylin (purple) shades vary per slide; a small per-channel gain on top.
        gain = rng.uniform(0.94, 1.04, 3)
        eosin = np.array([236, 166, 200]) + rng.uniform(-10, 8, 3)
        haem = np.array([84, 48, 128]) + rng.uniform(-14, 14, 3)
        return cls(
            background=np.array([243.0, 242.0, 244.0]),
            stroma=np.clip(eosin * gain, 0, 255),
            stroma_nucleus=np.clip((haem + np.array([36, 30, 30])) * gain, 0, 255),
            tumour=np.clip((0.75 * eosin + 0.25 * np.array([170, 120, 180])) * gain, 0, 255),
            tumour_nucleus=np.clip(haem * gain, 0, 255),
        )


@dataclass
class SyntheticSlide:
    """What :func:`make_synthetic_slide` wrote and how the slide was built."""

    slide_path: Path
    xml_path: Path | None
    mask_path: Path | None
    json_path: Path | None
    width: int
    height: int
    mpp: float
    seed: int
    annotation: Annotation
    tissue: Tissue
    stain: Stain
    level_dimensions: list = field(default_factory=list)

    @property
    def is_tumour(self):
        return bool(self.annotation.positive)


def _nuclei(seed, salt, params, x, y, w, h, d):
    """Nuclei of one texture over a tile: (covered bool [h, w], shade float32 [h, w]).

    The tile's pixel (i, j) has level-0 centre ((x + i + 0.5)·d, (y + j + 0.5)·d). ``shade`` is the distance to
    the nucleus centre over its radius (0 at the centre, 1 at the rim; 1 where no nucleus), for a darker core.
    Nuclei come from a hash of their level-0 cell, so every tile of every level sees the same nuclei.
    """
    cell, density = params["cell"], params["density"]
    rlo, rhi = params["radius"]
    covered = np.zeros(h * w, dtype=bool)
    shade = np.ones(h * w, dtype=np.float32)
    # Cells whose nucleus can reach the tile (a nucleus lies within `rhi` of a point of its cell).
    gx = np.arange(math.floor((x * d - rhi) / cell), math.floor(((x + w) * d + rhi) / cell) + 1)
    gy = np.arange(math.floor((y * d - rhi) / cell), math.floor(((y + h) * d + rhi) / cell) + 1)
    a, b = np.meshgrid(gx, gy)
    present = _hash_uniform(seed, salt, a, b) < density
    a, b = a[present], b[present]
    if not len(a):
        return covered.reshape(h, w), shade.reshape(h, w)
    cx = (a + _hash_uniform(seed, salt + 1, a, b)) * cell
    cy = (b + _hash_uniform(seed, salt + 2, a, b)) * cell
    radius = rlo + (rhi - rlo) * _hash_uniform(seed, salt + 3, a, b)
    # Stamp all nuclei at once: an S × S window of pixels per nucleus ([N, S, S]).
    size = int(math.ceil(2 * rhi / d)) + 2
    c0 = np.floor((cx - rhi) / d - 0.5).astype(np.int64) - x
    r0 = np.floor((cy - rhi) / d - 0.5).astype(np.int64) - y
    cols = c0[:, None] + np.arange(size)[None, :]
    rows = r0[:, None] + np.arange(size)[None, :]
    dx = (x + cols + 0.5) * d - cx[:, None]
    dy = (y + rows + 0.5) * d - cy[:, None]
    dist = np.sqrt(dy[:, :, None] ** 2 + dx[:, None, :] ** 2) / radius[:, None, None]
    hit = ((dist < 1) & ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :])
    index = (rows[:, :, None] * w + cols[:, None, :])[hit]
    covered[index] = True
    np.minimum.at(shade, index, dist[hit].astype(np.float32))
    return covered.reshape(h, w), shade.reshape(h, w)


def _coverage(params):
    """Expected fraction of area covered by nuclei of a texture (for the coarse levels' average colour)."""
    rlo, rhi = params["radius"]
    mean_r2 = (rhi**3 - rlo**3) / (3 * (rhi - rlo))
    return min(1.0, params["density"] * math.pi * mean_r2 / params["cell"] ** 2)


class SlideRenderer:
    """Renders tiles of a synthetic slide at any level: ``renderer(level, x, y, w, h) -> [h, w, 3] uint8``."""

    def __init__(self, tissue, annotation, stain, seed):
        self.tissue, self.stain, self.seed = tissue, stain, int(seed) & 0xFFFFFFFF
        self.annotation = annotation
        self.mask = MaskRenderer(annotation) if annotation.positive else None
        # Per-pixel grain in [-0.5, 0.5): a periodic table indexed by level pixel, so tiles join seamlessly.
        # Each colour's grainy texture is precomputed once as a uint8 table; a tile gathers from it.
        period = np.arange(GRAIN_PERIOD)
        self.grain = (_hash_uniform(self.seed, 999, period[None, :], period[:, None]) - 0.5).astype(np.float32)
        g = self.grain[..., None]

        def table(colour, amplitude):
            # RGBA packed in uint32 (one element per pixel: cheap selects), tiled so any window is a slice.
            rgb = np.clip(np.rint(np.asarray(colour, np.float32) + amplitude * g), 0, 255).astype(np.uint8)
            rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], axis=2)
            return np.ascontiguousarray(np.tile(rgba, (3, 3, 1))).view(np.uint32)[..., 0]

        self.tables = {
            "background": table(stain.background, 6.0),
            "stroma": table(stain.stroma, 14.0),
            "tumour": table(stain.tumour, 14.0),
        }
        self.lymphoid_nucleus = stain.tumour_nucleus * LYMPHOID_DARKNESS
        if tissue.lymphoid:
            self.tables["lymphoid"] = table(stain.tumour, 14.0)
        for name, params, nucleus, base in (
            ("stroma", STROMA_NUCLEI, stain.stroma_nucleus, stain.stroma),
            ("tumour", TUMOUR_NUCLEI, stain.tumour_nucleus, stain.tumour),
            ("lymphoid", LYMPHOID_NUCLEI, self.lymphoid_nucleus, stain.tumour),
        ):
            if name in self.tables:
                f = _coverage(params)
                self.tables[name + "_average"] = table((1 - f) * base + f * 0.95 * nucleus, 10.0)

    def __call__(self, level, x, y, w, h):
        d = 2.0 ** level  # the pyramid writer's levels halve exactly: level k pixel i covers [i·2^k, (i+1)·2^k)
        if w > 2 * GRAIN_PERIOD or h > 2 * GRAIN_PERIOD:
            raise ValueError(f"tile {w}x{h}: larger than the grain tables ({2 * GRAIN_PERIOD} px)")
        shift = 7919 * level  # a different grain per level
        window = np.s_[(y + shift) % GRAIN_PERIOD:(y + shift) % GRAIN_PERIOD + h,
                       (x + shift) % GRAIN_PERIOD:(x + shift) % GRAIN_PERIOD + w]
        img = self.tables["background"][window]
        tissue = self.tissue.tile(d, x, y, w, h)
        if tissue.any():
            tumour = np.zeros_like(tissue)
            if self.mask is not None:
                tumour = (self.mask.tile(d, x, y, w, h) > 0) & tissue
            stroma = tissue & ~tumour
            lymphoid = np.zeros_like(tissue)
            if self.tissue.lymphoid:
                lymphoid = stroma & self.tissue.lymphoid_tile(d, x, y, w, h)
                stroma &= ~lymphoid
            for region, name, params, nucleus, salt in (
                (stroma, "stroma", STROMA_NUCLEI, self.stain.stroma_nucleus, 10),
                (tumour, "tumour", TUMOUR_NUCLEI, self.stain.tumour_nucleus, 20),
                (lymphoid, "lymphoid", LYMPHOID_NUCLEI, self.lymphoid_nucleus, 30),
            ):
                if not region.any():
                    continue
                if d > NUCLEI_MAX_DOWNSAMPLE:
                    img = np.where(region, self.tables[name + "_average"][window], img)
                    continue
                img = np.where(region, self.tables[name][window], img)
                covered, shade = _nuclei(self.seed, salt, params, x, y, w, h, d)
                covered &= region
                if covered.any():
                    nuc = self._nucleus_colours(nucleus, shade[covered], covered, window)
                    img = img.copy() if img.base is not None else img
                    img[covered] = nuc
        return np.ascontiguousarray(img).view(np.uint8).reshape(h, w, 4)[..., :3]

    def _nucleus_colours(self, nucleus, shade, covered, window):
        """Packed RGBA of the nucleus pixels: darker at the centre, with grain."""
        r0, c0 = window[0].start % GRAIN_PERIOD, window[1].start % GRAIN_PERIOD
        rows, cols = np.nonzero(covered)
        grain = self.grain[(rows + r0) % GRAIN_PERIOD, (cols + c0) % GRAIN_PERIOD][:, None]
        rgb = nucleus.astype(np.float32) * (0.8 + 0.35 * shade[:, None]) + 10.0 * grain
        rgba = np.empty((len(rows), 4), np.uint8)
        rgba[:, :3] = np.clip(np.rint(rgb), 0, 255)
        rgba[:, 3] = 255
        return rgba.view(np.uint32)[:, 0]


def _random_harmonics(rng, ks, amplitude):
    """Random harmonics (k, a_k, φ_k) whose amplitudes sum to ``amplitude``, smaller for higher k."""
    weights = rng.uniform(0.3, 1.0, len(ks)) / np.asarray(ks, dtype=np.float64)
    weights *= amplitude / weights.sum()
    return tuple((int(k), float(a), float(rng.uniform(0, 2 * np.pi))) for k, a in zip(ks, weights))


def plan_slide(width, height, seed=0, num_tumours=2, tumour_size=(1300, 2000), with_hole=False, normal=False,
               tissue_fraction=None, lymphoid=0):
    """Draw the layout of a synthetic slide: (Tissue, Annotation, Stain). Deterministic from ``seed``.

    ``lymphoid`` > 0 adds that many lymphoid follicles (discs of radius 250–450 px of normal tissue packed with
    small dark nuclei, ``tissue.lymphoid``), centred in tissue away from the tumours; they are drawn from a
    stream of their own, so the rest of the layout is the same as without them.

    Tumours are placed without overlapping each other, at least 64 px inside the slide, each inside a tissue
    blob of its own; 3–5 further random blobs bring the tissue to ``tissue_fraction`` of the slide (default:
    drawn in [0.35, 0.5]; more when large tumours on a small slide need it). Raises :class:`InputError` when
    the tumours do not fit.
    """
    rng = np.random.default_rng(seed)
    width, height = int(width), int(height)
    if width < 64 or height < 64:
        raise InputError(f"slide size {width}x{height}: too small (at least 64x64 pixels)")
    lo, hi = sorted(float(s) for s in tumour_size)
    if lo <= 0:
        raise InputError(f"tumour size {tumour_size}: must be positive")
    target = float(rng.uniform(0.35, 0.5)) if tissue_fraction is None else float(tissue_fraction)
    stain = Stain.random(rng)
    n = 0 if normal else int(num_tumours)

    tumour_blobs, tissue_blobs = _place_tumours(rng, n, (lo, hi), width, height)
    tissue = _fill_tissue(rng, width, height, tissue_blobs, target)

    positive = [b.polygon(128, f"Annotation {i}") for i, b in enumerate(tumour_blobs)]
    negative = []
    if with_hole and tumour_blobs:
        t = tumour_blobs[0]
        hole = Blob(t.cx, t.cy, 0.3 * t.r_min, aspect=1.3, angle=float(rng.uniform(0, np.pi)),
                    harmonics=_random_harmonics(rng, (3, 5), 0.1))
        negative.append(hole.polygon(48, f"Annotation {len(positive)}"))
    if lymphoid > 0:
        tissue = Tissue(width, height, tissue.blobs, _place_lymphoid(seed, tissue, tumour_blobs, int(lymphoid)))
    return tissue, Annotation(positive, negative), stain


def _place_tumours(rng, n, major_range, width, height):
    """``n`` tumour Blobs placed without overlapping, at least 64 px inside the slide, and the tissue Blob of each
    (a wobbly disc around it); raises :class:`InputError` when they do not fit."""
    lo, hi = major_range
    tumour_blobs, tissue_blobs = [], []
    for i in range(n):
        major = rng.uniform(lo, hi)
        shape = Blob(0, 0, major / 2, aspect=1.0, angle=float(rng.uniform(0, np.pi)),
                     harmonics=_random_harmonics(rng, (3, 4, 5, 7), 0.07))
        # Stretched by `aspect` along `angle`: the radius is the minor semi-axis, radius·aspect the major one.
        shape.aspect = float(rng.uniform(1.3, 1.8))
        shape.radius = major / 2 / shape.aspect
        reach = shape.r_max
        for _ in range(2000):
            cx = rng.uniform(reach + 64, width - reach - 64) if width - 2 * (reach + 64) > 0 else None
            cy = rng.uniform(reach + 64, height - reach - 64) if height - 2 * (reach + 64) > 0 else None
            if cx is None or cy is None:
                break
            if all(math.hypot(cx - t.cx, cy - t.cy) > reach + t.r_max + 32 for t in tumour_blobs):
                break
        else:
            cx = None
        if cx is None or cy is None:
            raise InputError(
                f"cannot place {n} tumours of major axis {lo:g}-{hi:g} px in a {width}x{height} slide; "
                "use a larger slide, fewer or smaller tumours")
        shape.cx, shape.cy = float(cx), float(cy)
        tumour_blobs.append(shape)
        # Its own tissue blob: a wobbly disc whose inner radius clears the tumour's outer radius.
        harm = _random_harmonics(rng, (2, 3, 5, 9), 0.08)
        r = (reach * 1.06 + 48) / (1 - sum(abs(a) for _, a, _ in harm))
        tissue_blobs.append(Blob(shape.cx, shape.cy, r, harmonics=harm))
    return tumour_blobs, tissue_blobs


def _fill_tissue(rng, width, height, tissue_blobs, target):
    """The :class:`Tissue`: ``tissue_blobs`` and 3–5 random blobs scaled to bring it to the ``target`` fraction."""
    # Random blobs, scaled to reach the target tissue fraction.
    extra = []
    for _ in range(int(rng.integers(3, 6))):
        extra.append(Blob(float(rng.uniform(0.1, 0.9) * width), float(rng.uniform(0.1, 0.9) * height),
                          float(rng.uniform(0.5, 1.0)), aspect=float(rng.uniform(0.6, 1.6)),
                          angle=float(rng.uniform(0, np.pi)),
                          harmonics=_random_harmonics(rng, (2, 3, 4, 6, 11, 17), 0.3)))
    base = [b.radius for b in extra]

    def tissue_with(scale):
        for blob, r in zip(extra, base):
            blob.radius = r * scale * min(width, height) * 0.25
        return Tissue(width, height, tissue_blobs + extra)

    # Bisection on the blobs' scale (coverage grows with it); a floor keeps some tissue away from the tumours,
    # so a slide always has normal tissue far from any tumour.
    lo_s, hi_s = 0.6, 4.0
    for _ in range(16):
        mid = (lo_s + hi_s) / 2
        if tissue_with(mid).fraction(96) < target:
            lo_s = mid
        else:
            hi_s = mid
    tissue = tissue_with((lo_s + hi_s) / 2)
    return tissue


def _place_lymphoid(seed, tissue, tumour_blobs, count):
    """``count`` lymphoid follicles (Blobs) centred in tissue, clear of the tumours (best effort: fewer when the
    tissue has no room)."""
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0x1F0])  # its own stream: the layout is unchanged
    follicles = []
    for _ in range(200 * count):
        if len(follicles) == count:
            break
        r = float(rng.uniform(250, 450))
        blob = Blob(float(rng.uniform(0, tissue.width)), float(rng.uniform(0, tissue.height)), r,
                    aspect=float(rng.uniform(0.8, 1.25)), angle=float(rng.uniform(0, np.pi)),
                    harmonics=_random_harmonics(rng, (2, 3, 5), 0.12))
        if not tissue.contains([(blob.cx, blob.cy)])[0]:
            continue
        if any(math.hypot(blob.cx - t.cx, blob.cy - t.cy) < t.r_max + blob.r_max + 96 for t in tumour_blobs):
            continue
        if any(math.hypot(blob.cx - f.cx, blob.cy - f.cy) < f.r_max + blob.r_max for f in follicles):
            continue
        follicles.append(blob)
    return follicles


def make_synthetic_slide(slide_path, *, width=4096, height=4096, seed=0, num_tumours=2, tumour_size=(1300, 2000),
                         with_hole=False, normal=False, mpp=CAMELYON16_MPP, xml_path=None, mask_path=None,
                         json_path=None, tissue_fraction=None, tile_size=256, progress=None, lymphoid=0,
                         factor=2):
    """Write a synthetic slide (and, when paths are given, its ASAP XML, ground-truth mask and JSON).

    Parameters
    ----------
    slide_path : output pyramidal TIFF (JPEG tiles of ``tile_size``; level k = level 0 / 2**k).
    width, height : level-0 size in pixels.
    seed : everything (layout, stain, nuclei) is a function of the seed and the sizes.
    num_tumours : tumour nests on a tumour slide; ignored when ``normal``.
    tumour_size : (min, max) major axis of a tumour polygon, level-0 px. Keep it above 1150 px at 0.243 µm/px
        for lesions the Camelyon16 FROC counts (smaller ones are isolated tumour cells).
    with_hole : add a ``_2`` (exclusion) polygon inside the first tumour, rendered as stroma, 0 in the mask.
    normal : a slide without tumour (no XML and no mask are written).
    mpp : microns per level-0 pixel written in the TIFF (``openslide.mpp-x``).
    xml_path, mask_path, json_path : optional outputs: the ASAP XML (tumours in ``_0``/``_1`` alternately,
        holes in ``_2``), the mask pyramid (:func:`wsi.data.mask.write_tumour_mask`) and the annotation JSON
        (what ``camelyon16xml2json`` makes of the XML; for a normal slide, empty lists).
    progress : optional callable given the number of tiles written, after each tile.
    lymphoid : lymphoid follicles per slide (normal tissue of small dark nuclei that mimics tumour), default 0.
    factor : downsample from one level to the next: 2 (Camelyon16), 4 for an Aperio-style pyramid.

    Returns a :class:`SyntheticSlide` (paths, annotation, tissue description, stain, level sizes).
    """
    tissue, annotation, stain = plan_slide(width, height, seed=seed, num_tumours=num_tumours,
                                           tumour_size=tumour_size, with_hole=with_hole, normal=normal,
                                           tissue_fraction=tissue_fraction, lymphoid=lymphoid)
    renderer = SlideRenderer(tissue, annotation, stain, seed)
    steps = int(factor).bit_length() - 1  # the renderer's levels are powers of two: level k of a 4× pyramid is its 2k
    render = renderer if steps == 1 else (lambda level, x, y, w, h: renderer(level * steps, x, y, w, h))
    dims = write_pyramid(slide_path, render, width, height, channels=3, mpp=mpp, tile_size=tile_size,
                         compression="jpeg", progress=progress, factor=factor)
    tumour = bool(annotation.positive)
    if xml_path is not None and tumour:
        # Tumours alternate between the Camelyon16 groups _0 and _1; the converter reads _0 before _1, so the
        # JSON lists them in that group order.
        groups = [("_0", annotation.positive[0::2]), ("_1", annotation.positive[1::2])]
        if annotation.negative:
            groups.append(("_2", annotation.negative))
        write_asap_xml(xml_path, groups=groups)
        annotation = Annotation(annotation.positive[0::2] + annotation.positive[1::2], annotation.negative)
    if mask_path is not None and tumour:
        write_tumour_mask(mask_path, annotation, width, height, mpp=mpp)
    if json_path is not None:
        annotation.to_json(json_path)
    return SyntheticSlide(
        slide_path=Path(slide_path), xml_path=Path(xml_path) if xml_path is not None and tumour else None,
        mask_path=Path(mask_path) if mask_path is not None and tumour else None,
        json_path=Path(json_path) if json_path is not None else None, width=int(width), height=int(height),
        mpp=float(mpp), seed=seed, annotation=annotation, tissue=tissue, stain=stain, level_dimensions=dims)
