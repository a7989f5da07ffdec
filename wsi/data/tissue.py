"""Tissue masks: which pixels of a slide level hold tissue (the original's ``tissue_mask.py`` algorithm).

The mask is a bool array in **[x, y]** order (first axis = column x, the transpose of an image), of shape
``slide.level_dimensions[level]`` = (width, height) of that level, as the original saved it. Transpose it
(``mask.T``) to show it as an image.
"""

import logging

import numpy as np
from skimage.color import rgb2hsv
from skimage.filters import threshold_otsu

from wsi.arrays import ArrayInfo, SlideRef, check_made_from, load_array, read_sidecar, save_array, \
    settings_changed
from wsi.errors import WSIError
from wsi.fileio import npy_header
from wsi.data.slide import RegionReadError, Slide, open_slide
from wsi.geometry import mask_geometry, nearest_level

logger = logging.getLogger(__name__)


def tissue_mask_from_rgb(img_RGB, rgb_min=50):
    """The tissue mask of an RGB uint8 array, axes kept (pass ``[x, y, 3]`` to get ``[x, y]``).

    Exactly the original's rule, with strict comparisons throughout:

    - background = all three channels strictly above their own Otsu threshold; ``tissue_RGB`` = not background;
    - ``tissue_S`` = HSV saturation (``skimage.color.rgb2hsv``) strictly above its Otsu threshold;
    - every channel strictly above ``rgb_min``.

    On a uniform image (Otsu undefined) :func:`skimage.filters.threshold_otsu` returns that single value, so
    nothing is strictly above it: the saturation test is False everywhere and the mask is empty (no tissue).
    """
    img_RGB = np.asarray(img_RGB)
    img_HSV = rgb2hsv(img_RGB)
    background_R = img_RGB[..., 0] > threshold_otsu(img_RGB[..., 0])
    background_G = img_RGB[..., 1] > threshold_otsu(img_RGB[..., 1])
    background_B = img_RGB[..., 2] > threshold_otsu(img_RGB[..., 2])
    tissue_RGB = np.logical_not(background_R & background_G & background_B)
    tissue_S = img_HSV[..., 1] > threshold_otsu(img_HSV[..., 1])
    min_R = img_RGB[..., 0] > rgb_min
    min_G = img_RGB[..., 1] > rgb_min
    min_B = img_RGB[..., 2] > rgb_min
    return tissue_S & tissue_RGB & min_R & min_G & min_B


def tissue_mask(slide, level=6, rgb_min=50):
    """Bool ``[x, y]`` tissue mask of ``slide`` (a :class:`~wsi.data.slide.Slide` or a path) at ``level``.

    Shape ``slide.level_dimensions[level]``. Reads the whole level (regions past the border and transparent
    pixels are black, which ``rgb_min`` excludes), transposes it to ``[x, y, 3]`` and applies
    :func:`tissue_mask_from_rgb`. Raises :class:`~wsi.data.slide.LevelError` (listing the levels) for a level the
    slide does not have.
    """
    if not isinstance(slide, Slide):
        with open_slide(slide) as opened:
            return tissue_mask(opened, level=level, rgb_min=rgb_min)
    level = slide.check_level(level)
    img_RGB = np.transpose(read_level_or_name_tile(slide, level), axes=[1, 0, 2])  # [y, x, 3] -> [x, y, 3]
    mask = tissue_mask_from_rgb(img_RGB, rgb_min=rgb_min)
    logger.info("%s: level %d %s, tissue %.1f%%", slide.path, level, "x".join(map(str, mask.shape)),
                100.0 * mask.mean() if mask.size else 0.0)
    return mask


def read_level_or_name_tile(slide, level):
    """The whole level ``[h, w, 3]``; when it cannot be decoded, the error names the first damaged tile.

    The level is read in one piece (offsets of 0, so the pixels are exact whatever the level's downsample);
    only when that fails is it read again tile by tile (the slide's own tile size, else 256 level pixels) to
    find the tile that does not decode. Raises :class:`~wsi.data.slide.RegionReadError` for that tile.
    """
    try:
        return slide.read_level(level)
    except RegionReadError as whole:
        width, height = slide.level_dimensions[level]
        downsample = slide.level_downsamples[level]
        tile_w = int(slide.properties.get(f"openslide.level[{level}].tile-width", 256) or 256)
        tile_h = int(slide.properties.get(f"openslide.level[{level}].tile-height", 256) or 256)
        for y in range(0, height, tile_h):
            for x in range(0, width, tile_w):
                size = (min(tile_w, width - x), min(tile_h, height - y))
                try:
                    slide.read_region((round(x * downsample), round(y * downsample)), level, size)
                except RegionReadError as err:
                    raise RegionReadError(slide.path, level, err.location, size,
                                          f"tile at level-{level} pixel ({x}, {y}) of the mask level is "
                                          f"damaged ({err.reason})") from None
        raise whole from None


def write_tissue_mask(slide_path, npy_path, level=6, rgb_min=50):
    """Compute the tissue mask of a slide and save it as ``.npy`` with its sidecar (:mod:`wsi.arrays`).

    ``level="auto"``: the slide's level nearest 64 level-0 pixels per cell (:func:`wsi.geometry.nearest_level`),
    chosen per slide and recorded in the sidecar. Returns ``(path written, mask)``.
    """
    with open_slide(slide_path) as slide:
        if level == "auto":
            level = nearest_level(slide.level_downsamples)
        mask = tissue_mask(slide, level=level, rgb_min=rgb_min)
        geometry = mask_geometry(slide.level_dimensions, slide.level_downsamples, mask.shape,
                                 mask_name=str(npy_path), slide_name=str(slide_path))
        info = ArrayInfo.of("tissue_mask", slide, geometry, rgb_min=int(rgb_min))
    return save_array(npy_path, mask, info), mask


def mask_not_done(output, slide_path, level, rgb_min):
    """Why a resumed run must compute the mask ``output`` of ``slide_path`` again, or ``''`` to keep it.

    Kept only when it is a complete 2-D bool ``.npy`` (not 0 bytes, text, or a copy cut short) whose sidecar
    describes it, names this slide (quick hash) and records this ``level`` (``"auto"``: the slide's level nearest
    64) and ``rgb_min``, and whose shape is that level's size. A mask without a sidecar (the original's) is kept with a warning: it is not replaced.
    """
    header = npy_header(output)
    if header is None or len(header[0]) != 2 or header[1] != bool:
        return "it is not a complete 2-D boolean .npy"
    try:
        info = read_sidecar(output)
        if info is not None and tuple(info.shape) != tuple(header[0]):
            return "its sidecar describes another shape"
        with open_slide(slide_path) as slide:
            if level == "auto":  # the level a new mask would be made at
                level = nearest_level(slide.level_downsamples)
            if info is not None and not info.slide.same_slide(SlideRef.of(slide)):
                return f"it was made from another slide ({info.slide.name})"
            if 0 <= level < slide.level_count and tuple(header[0]) != tuple(slide.level_dimensions[level]):
                return f"its shape {header[0]} is not level {level}'s {tuple(slide.level_dimensions[level])}"
    except WSIError as err:  # an unreadable sidecar or slide: computing it again says what is wrong
        return str(err)
    if info is None:
        logger.warning("%s: no sidecar says how it was made: kept as it is (--overwrite computes it again)", output)
        return ""
    return settings_changed(info, level=int(level), rgb_min=int(rgb_min))


def load_tissue_mask(path, slide, mmap=False):
    """The tissue mask ``path`` (``.npy``, ``[x, y]``) of the open ``slide``: ``(bool mask, MaskGeometry)``.

    Any non-zero value is tissue (the original used ``np.where(mask)``). One-line errors name the file: not a
    finite 2-D boolean or numeric array (:func:`wsi.arrays.load_array`), a sidecar naming another slide, a shape
    that fits none of the slide's scales (:func:`wsi.geometry.mask_geometry`). ``mmap=True`` checks without
    reading a boolean mask (the array returned is then the memory map, not converted).
    """
    mask, info = load_array(path, "tissue mask", mmap=mmap)
    check_made_from(info, slide, path)
    geometry = mask_geometry(slide.level_dimensions, slide.level_downsamples, mask.shape, mask_name=str(path),
                             slide_name=str(slide.path))
    if not mmap and mask.dtype != bool:
        mask = mask != 0
    return mask, geometry
