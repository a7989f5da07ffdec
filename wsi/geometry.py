"""Geometry shared by every stage: masks on slides, grids of patches and their crops.

The bottom of the package (beside :mod:`wsi.errors` and :mod:`wsi.fileio`): sampling, training and inference
all take their geometry from here.

A tissue mask (and the probability map made from it) is an ``[x, y]`` array: mask pixel ``(xm, ym)`` covers
level-0 pixels ``[xm·s, (xm+1)·s) × [ym·s, (ym+1)·s)`` for the stride ``s`` (level-0 pixels per mask pixel),
and the grid of that position is centred on ``(int((xm + 0.5)·s), int((ym + 0.5)·s))`` as in the original.

The original derived ``s`` as ``X_slide / X_mask`` and demanded exact float equality with ``Y_slide / Y_mask``
and a power of two (its issues #6 and #33). Here the stride comes from the slide's real sizes, with a tolerance
of one mask pixel of rounding on each axis (level sizes may be rounded up, as Camelyon16's and OpenSlide's
pyramids are, or down), and it must be a power of two (what the original accepted) or one of the slide's level
downsamples. Anything else (the two axes disagreeing, a mask made for another slide) is refused in one line that
gives both shapes and both ratios.
"""

import math
from dataclasses import dataclass

import numpy as np

from wsi.errors import GeometryError


#: Level-0 pixels per cell of the original's tissue masks and maps (level 6 of a Camelyon16 2× pyramid).
MAP_DOWNSAMPLE = 64


def nearest_level(level_downsamples, downsample=MAP_DOWNSAMPLE):
    """The level whose downsample is nearest ``downsample`` (by ratio; the finer level on a tie).

    ``--level auto`` of the tissue masks: level 6 on a 2× pyramid (Camelyon16), level 3 on a 4× one
    (downsamples 1, 4, 16, 64), so every scanner's masks and maps have about 64 level-0 pixels per cell.
    """
    if not len(level_downsamples):
        raise GeometryError("a slide without levels")
    return min(range(len(level_downsamples)),
               key=lambda level: (abs(math.log(float(level_downsamples[level]) / downsample)), level))


@dataclass(frozen=True)
class MaskGeometry:
    """Where a ``[x, y]`` mask lies on its slide.

    Attributes
    ----------
    slide_size : (int, int)
        Level-0 (width, height) of the slide.
    mask_shape : (int, int)
        ``(X_mask, Y_mask)``: the mask's shape, x first.
    stride : float
        Level-0 pixels per mask pixel ``s`` (an integer value whenever one fits; see :func:`mask_geometry`).
    level : int or None
        The slide level whose ``level_dimensions`` equal the mask's shape, if one does.
    """

    slide_size: tuple
    mask_shape: tuple
    stride: float
    level: int | None = None

    @property
    def integer_stride(self):
        """``stride`` as an int when it is a whole number, else None."""
        return int(self.stride) if float(self.stride).is_integer() else None

    def centre(self, xm, ym):
        """Level-0 centre ``(int((xm + 0.5)·s), int((ym + 0.5)·s))`` of mask pixel ``(xm, ym)`` (the original's)."""
        return int((xm + 0.5) * self.stride), int((ym + 0.5) * self.stride)

    @property
    def scale(self):
        """Level-0 pixels per mask pixel along x and y, ``slide_size / mask_shape``: where the stride is rounded
        (level sizes rounded up), the two differ slightly. Sampling uses it to spread centres over the whole
        slide; maps use ``stride``, as the original."""
        return self.slide_size[0] / self.mask_shape[0], self.slide_size[1] / self.mask_shape[1]

    def pixel(self, points):
        """Int ``[M, 2]``: the mask pixel (i, j) holding each level-0 point ``[M, 2]`` (by ``scale``), clipped."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        ij = np.floor(points / np.array(self.scale)).astype(np.int64)
        return np.clip(ij, 0, np.array(self.mask_shape) - 1)

    def jitter(self, pixels, rng):
        """Int ``[M, 2]``: a uniformly random integer level-0 point inside each mask pixel (i, j) ``[M, 2]``."""
        u = rng.random((len(pixels), 2))
        points = np.floor((np.asarray(pixels) + u) * np.array(self.scale)).astype(np.int64)
        return np.minimum(points, np.array(self.slide_size) - 1)


def _fits(size, mask_size, stride):
    """True when ``mask_size`` is ``size / stride`` rounded up or down (within one mask pixel)."""
    return abs(size / stride - mask_size) < 1


def mask_geometry(level_dimensions, level_downsamples, mask_shape, *, mask_name="MASK", slide_name="WSI"):
    """The stride of a ``[x, y]`` mask on a slide, or a one-line :class:`GeometryError`.

    Parameters
    ----------
    level_dimensions, level_downsamples : sequences
        The slide's ``(width, height)`` and downsample per level, as OpenSlide reports them.
    mask_shape : (int, int)
        ``(X_mask, Y_mask)``, the shape of the ``[x, y]`` mask.
    mask_name, slide_name : str
        How the error message names the two files.

    The stride ``s`` must fit both axes: ``X_mask`` is ``X_slide / s`` rounded up or down, and so is ``Y_mask``.
    It is the power of two that fits best, else the (rounded) downsample of a slide level that fits. Exact
    ratios that are powers of two (all the original accepted) give the same stride as the original.
    """
    (x_slide, y_slide), (x_mask, y_mask) = level_dimensions[0], tuple(int(v) for v in mask_shape)
    shapes = f"mask of shape {x_mask}x{y_mask} ([x, y]) does not fit slide {slide_name} of {x_slide}x{y_slide}"
    if x_mask <= 0 or y_mask <= 0:
        raise GeometryError(f"{mask_name}: the mask is empty (shape {x_mask}x{y_mask})")
    rx, ry = x_slide / x_mask, y_slide / y_mask
    ratios = f"ratios X_slide/X_mask = {rx:.6g}, Y_slide/Y_mask = {ry:.6g}"
    level = next((k for k, dims in enumerate(level_dimensions) if tuple(dims) == (x_mask, y_mask)), None)

    def fits(stride):
        return stride > 0 and _fits(x_slide, x_mask, stride) and _fits(y_slide, y_mask, stride)

    def misfit(stride):
        return max(abs(x_slide / stride - x_mask), abs(y_slide / stride - y_mask))

    powers = [2.0 ** k for k in range(0, 41) if fits(2.0 ** k)]
    if powers:
        return MaskGeometry((x_slide, y_slide), (x_mask, y_mask), min(powers, key=misfit), level)
    for downsample in level_downsamples:
        for stride in (float(round(downsample)), float(downsample)):
            if fits(stride):
                return MaskGeometry((x_slide, y_slide), (x_mask, y_mask), stride, level)

    # Say which rule failed: do the two axes agree on any stride at all?
    lo = max(x_slide / (x_mask + 1), y_slide / (y_mask + 1))
    hi = min(x_slide / (x_mask - 1) if x_mask > 1 else math.inf, y_slide / (y_mask - 1) if y_mask > 1 else math.inf)
    if lo >= hi:
        why = ("differ between the axes by more than one mask pixel of rounding (is the array transposed?): masks "
               "are [x, y]; else a mask made for another slide, or level sizes misreported as by OpenSlide 3.4.0")
    else:
        downsamples = ", ".join(f"{d:.6g}" for d in level_downsamples)
        why = f"match neither a power of two nor the slide's level downsamples ({downsamples})"
    raise GeometryError(f"{mask_name}: {shapes}: {ratios} {why}")


@dataclass(frozen=True)
class GridSpec:
    """The grid of one position: an ``image_size``² region cut into ``side``² patches, each centre-cropped.

    Attributes
    ----------
    image_size, patch_size, crop_size : int
        The config's sizes (768, 256, 224 in the original).
    """

    image_size: int
    patch_size: int
    crop_size: int

    def __post_init__(self):
        check_grid_sizes(self.image_size, self.patch_size, self.crop_size)

    @classmethod
    def from_config(cls, cfg, source="the config"):
        """The grid a config describes (keys ``image_size``, ``patch_size``, ``crop_size``)."""
        return cls(**_config_sizes(cfg, ("image_size", "patch_size", "crop_size"), source))

    @staticmethod
    def nodes_of_config(cfg, source="the config"):
        """Patches per grid G = ``(image_size // patch_size)²`` of a config that may lack ``crop_size`` (a model's
        config: the CRF's number of nodes), validated as :class:`GridSpec` validates them."""
        sizes = _config_sizes(cfg, ("image_size", "patch_size"), source)
        return (sizes["image_size"] // sizes["patch_size"]) ** 2

    @property
    def side(self):
        """Patches per side of the grid (3)."""
        return self.image_size // self.patch_size

    @property
    def num_nodes(self):
        """Patches per grid, G = side² (9)."""
        return self.side ** 2

    @property
    def kept(self):
        """The node whose probability the map keeps, ``G // 2`` (4, the centre of a 3×3 grid)."""
        return self.num_nodes // 2

    @property
    def kept_cell(self):
        """(row, col) of the kept node in the grid; rows follow the slide's y."""
        return divmod(self.kept, self.side)

    def crop_offsets(self):
        """Start of crop k along either axis of the region: ``int((k + 0.5)·patch_size − crop_size / 2)``."""
        return [int((k + 0.5) * self.patch_size - self.crop_size / 2) for k in range(self.side)]

    def region_origin(self, centre):
        """Level-0 top-left of the region centred on ``centre`` (one axis): ``int(centre − image_size / 2)``."""
        return int(centre - self.image_size / 2)


def check_grid_sizes(image_size, patch_size, crop_size=None, source="the config"):
    """Raise a one-line :class:`GeometryError` naming ``source`` unless the sizes make a grid: positive integers,
    ``image_size`` a multiple of ``patch_size``, ``crop_size`` (when given) at most ``patch_size``. The one place
    these rules live (configs, datasets, models)."""
    sizes = {"image_size": image_size, "patch_size": patch_size}
    if crop_size is not None:
        sizes["crop_size"] = crop_size
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise GeometryError(f"{source}: {name} must be a positive integer, got {value!r}")
    if image_size % patch_size:
        raise GeometryError(f"{source}: image_size {image_size} is not a multiple of patch_size {patch_size}")
    if crop_size is not None and crop_size > patch_size:
        raise GeometryError(f"{source}: crop_size {crop_size} is larger than patch_size {patch_size}")


def _config_sizes(cfg, keys, source):
    """``{key: cfg[key]}`` for ``keys``, validated by :func:`check_grid_sizes`; errors name ``source``."""
    try:
        sizes = {key: cfg[key] for key in keys}
    except KeyError as err:
        raise GeometryError(f"{source}: missing key {err.args[0]!r}") from None
    check_grid_sizes(**sizes, source=source)
    return sizes


def grid_points(centres, patch_size, patch_per_side):
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
