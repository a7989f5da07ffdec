"""Write OpenSlide-readable pyramidal TIFFs, tile by tile, with little memory.

OpenSlide's generic-TIFF driver sees the reduced levels only when every page after the first has
``subfiletype=1`` (reduced image), is tiled, and is ``photometric='rgb'`` (or grey, for masks). The resolution
is written in centimetres so that OpenSlide reports ``openslide.mpp-x``.

Content comes from a ``render(level, x, y, width, height)`` callable that returns the pixels of one tile of one
level, ``[height, width, channels]`` uint8 in that level's pixel coordinates (x, y = column, row of the tile's
top-left corner). Rendering every level directly (rather than down-sampling level 0 in memory) keeps memory
bounded by one tile whatever the slide size.
"""

import math
import zlib

import numpy as np
import tifffile

from wsi.constants import CAMELYON16_MPP
from wsi.fileio import atomic_path
from wsi.memory import check_allocation

#: Bytes of memory per tile that tifffile's tile tables (offsets and byte counts, Python lists) take.
_TILE_TABLE_BYTES = 80


def pyramid_dimensions(width, height, min_size=16, max_levels=10, factor=2):
    """Sizes (width, height) of each level: level k is level 0 divided by ``factor**k``, rounded up.

    ``factor`` 2 gives Camelyon16-style pyramids; 4 gives Aperio-style ones (downsamples 1, 4, 16, 64).

    Levels stop once the larger side would fall under ``min_size`` or after ``max_levels`` levels.
    """
    dims = [(int(width), int(height))]
    while len(dims) < max_levels:
        w, h = dims[-1]
        nw, nh = math.ceil(w / factor), math.ceil(h / factor)
        if max(nw, nh) < min_size or (nw, nh) == (w, h):
            break
        dims.append((nw, nh))
    return dims


def check_pyramid_memory(dims, tile_size):
    """Raise :class:`~wsi.errors.InputError` when the tile tables of a pyramid of level sizes ``dims`` do not fit
    in memory: a mistyped size (100000000 × 100000000) fails in one line, not as a MemoryError mid-write."""
    count = sum(math.ceil(w / tile_size) * math.ceil(h / tile_size) for w, h in dims)
    check_allocation(count * _TILE_TABLE_BYTES, f"a {dims[0][0]}x{dims[0][1]} pyramid of {count} tiles of "
                                                f"{tile_size} pixels (its tile table)")


def write_pyramid(path, render, width, height, *, channels=3, mpp=CAMELYON16_MPP, tile_size=256, compression="jpeg",
                  min_size=16, max_levels=10, factor=2, progress=None):
    """Write a tiled pyramidal TIFF that OpenSlide opens with every level.

    Parameters
    ----------
    path : str or Path
        Output file; written to a temporary name and renamed into place.
    render : callable ``(level, x, y, w, h) -> ndarray [h, w, channels] uint8``
        The pixels of one tile of one level, in that level's coordinates.
    width, height : int
        Level-0 size in pixels.
    channels : 3 for RGB slides, 1 for grey masks.
    mpp : microns per level-0 pixel, written as the TIFF resolution in pixels per centimetre.
    compression : ``'jpeg'`` (lossy, for slides) or ``'zlib'`` (lossless, for masks); any tifffile codec.
    factor : downsample from one level to the next (2; 4 for an Aperio-style pyramid).
    progress : optional callable called with the number of tiles written after each tile.

    Returns the list of level sizes (width, height).
    """
    dims = pyramid_dimensions(width, height, min_size=min_size, max_levels=max_levels, factor=factor)
    check_pyramid_memory(dims, tile_size)
    photometric = "rgb" if channels == 3 else "minisblack"
    shape_tail = (channels,) if channels == 3 else ()
    pixels_per_cm = 1e4 / mpp
    # zlib tiles are encoded here so that a uniform tile (most tiles of a mask, the background of a slide) is
    # compressed once and its bytes reused: a full-size Camelyon16 mask is written about 3x faster.
    uniform_tiles = {}

    def encode(tile):
        if compression != "zlib":
            return tile  # tifffile encodes it
        first = tile[0, 0]  # a grey value or an RGB triple
        if (tile == first).all():
            key = first.tobytes()
            if key not in uniform_tiles:
                uniform_tiles[key] = zlib.compress(tile.tobytes())
            return uniform_tiles[key]
        return zlib.compress(tile.tobytes())

    def tiles(level, level_w, level_h):
        for y in range(0, level_h, tile_size):
            for x in range(0, level_w, tile_size):
                w, h = min(tile_size, level_w - x), min(tile_size, level_h - y)
                block = np.asarray(render(level, x, y, w, h), dtype=np.uint8)
                block = block.reshape((h, w) + shape_tail)
                tile = np.zeros((tile_size, tile_size) + shape_tail, np.uint8)
                tile[:h, :w] = block
                if progress is not None:
                    progress(1)
                yield encode(tile)

    with atomic_path(path) as tmp:
        bigtiff = width * height * channels > 2**31
        with tifffile.TiffWriter(tmp, bigtiff=bigtiff) as tif:
            for level, (level_w, level_h) in enumerate(dims):
                tif.write(
                    tiles(level, level_w, level_h),
                    shape=(level_h, level_w) + shape_tail,
                    dtype=np.uint8,
                    tile=(tile_size, tile_size),
                    photometric=photometric,
                    compression=compression,
                    subfiletype=0 if level == 0 else 1,
                    resolution=(pixels_per_cm / dims[0][0] * level_w, pixels_per_cm / dims[0][1] * level_h),
                    resolutionunit="CENTIMETER",
                    metadata=None,
                )
    return dims


def write_pyramid_from_array(path, image, *, mpp=CAMELYON16_MPP, compression="jpeg", **kwargs):
    """Write an in-memory image ``[h, w, 3]`` or ``[h, w]`` uint8 as a pyramid (tests, small crops).

    Reduced levels are area averages of level 0 (nearest for masks written with ``compression='zlib'``
    would keep labels; pass ``resample='nearest'`` for that).
    """
    resample = kwargs.pop("resample", "area")
    image = np.asarray(image, dtype=np.uint8)
    height, width = image.shape[:2]
    channels = 3 if image.ndim == 3 else 1
    factor = kwargs.get("factor", 2)
    if factor < 2 or factor & (factor - 1):
        raise ValueError(f"factor must be a power of two, got {factor}")
    dims = pyramid_dimensions(width, height, **{k: kwargs[k] for k in ("min_size", "max_levels", "factor")
                                                 if k in kwargs})
    levels = [image]
    for level_w, level_h in dims[1:]:
        if resample == "nearest":
            ys = (np.arange(level_h) * height // level_h)
            xs = (np.arange(level_w) * width // level_w)
            levels.append(image[ys][:, xs])
        else:
            # Mean of 2 × 2 blocks of the previous level (its last row/column repeated when odd): an exact area
            # average, and far faster than an anti-aliased resize of level 0 for every level.
            # A factor of 4 is two halvings: ceil(ceil(w / 2) / 2) = ceil(w / 4), the level's size.
            prev = levels[-1]
            for _ in range(int(math.log2(factor))):
                pad = ((0, prev.shape[0] % 2), (0, prev.shape[1] % 2)) + ((0, 0),) * (prev.ndim - 2)
                prev = np.pad(prev, pad, mode="edge").astype(np.float32)
                blocks = prev.reshape((prev.shape[0] // 2, 2, prev.shape[1] // 2, 2) + prev.shape[2:])
                prev = np.rint(blocks.mean(axis=(1, 3))).astype(np.uint8)
            levels.append(prev)

    def render(level, x, y, w, h):
        return levels[level][y:y + h, x:x + w]

    return write_pyramid(path, render, width, height, channels=channels, mpp=mpp, compression=compression,
                         **kwargs)
