"""Whole-slide images: open by path, read regions, with one error type for each user mistake.

Coordinates follow OpenSlide: ``location`` is (x, y) at level 0, ``size`` is (width, height) at the level
read. Geometry always comes from ``level_dimensions`` and ``level_downsamples`` (never ``2**level``): slides
whose levels are not exact powers of two exist, and Camelyon16's do not all halve exactly.

Arrays returned are images, ``[rows = y, cols = x, 3]`` uint8 RGB. The NCRF masks and maps are the transpose,
``[x, y]``; see :mod:`wsi.data.tissue`.
"""

import os
from pathlib import Path

import numpy as np
import openslide
from PIL import Image, UnidentifiedImageError

from wsi.constants import SLIDE_SUFFIXES
from wsi.errors import (
    InputError, LevelError, NotAFileError, NotAFolderError, RegionReadError, SlideError, SlideNotFoundError,
    UnsupportedSlideError,
)
from wsi.fileio import read_text_lines


def truncation(path):
    """``''``, or why the TIFF ``path`` is cut short: tiles of its first page reach past the end of the file.

    A truncated download still opens, with only the levels whose directories came before the cut, so it
    otherwise reads as a slide with too few levels.
    """
    try:
        import tifffile

        size = os.path.getsize(path)
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            end = max((o + c for o, c in zip(page.dataoffsets, page.databytecounts)), default=0)
    except Exception:  # not a TIFF, or unreadable: nothing to say about truncation
        return ""
    if end > size:
        return f"the file is truncated: {size} bytes, but its level-0 tiles reach byte {end}"
    return ""


class Slide:
    """A whole-slide image opened with OpenSlide (plain images through PIL).

    Use :func:`open_slide`. Supports ``with``; ``read_region`` returns RGB arrays, where regions past the slide
    border read as black (0, 0, 0), as the original's RGBA→RGB conversion gave.
    """

    def __init__(self, path):
        path = Path(path)
        if not path.exists():
            raise SlideNotFoundError(f"{path}: no such slide file")
        if path.is_dir():
            raise NotAFileError(f"{path}: is a folder, expected a slide file")
        self.path = path
        self._osr = self._open()

    def _open(self):
        try:
            return openslide.open_slide(str(self.path))
        except (openslide.OpenSlideError, UnidentifiedImageError, OSError, ValueError) as err:
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise UnsupportedSlideError(f"{self.path}: not a slide OpenSlide can read ({reason})") from None

    # Geometry -----------------------------------------------------------------------------------------------
    @property
    def level_count(self):
        return self._osr.level_count

    @property
    def level_dimensions(self):
        """Tuple of (width, height) per level."""
        return self._osr.level_dimensions

    @property
    def level_downsamples(self):
        """Tuple of level-0 pixels per level pixel, per level (floats, as OpenSlide reports them)."""
        return self._osr.level_downsamples

    @property
    def dimensions(self):
        """(width, height) at level 0."""
        return self._osr.dimensions

    @property
    def properties(self):
        """OpenSlide's read-only property mapping."""
        return self._osr.properties

    @property
    def mpp(self):
        """Microns per level-0 pixel along x, or None when the slide does not say."""
        value = self._osr.properties.get(openslide.PROPERTY_NAME_MPP_X)
        return float(value) if value else None

    def check_level(self, level):
        """Return ``level`` if the slide has it, else raise :class:`LevelError`."""
        if not isinstance(level, (int, np.integer)) or not 0 <= level < self.level_count:
            # a truncated download opens with the levels before the cut: say so rather than "no level N"
            raise LevelError(self.path, level, range(self.level_count), truncation(self.path))
        return int(level)

    # Pixels -------------------------------------------------------------------------------------------------
    def read_region_image(self, location, level, size):
        """Read a region as an RGB PIL image. ``location`` (x, y) at level 0, ``size`` (w, h) at ``level``."""
        self.check_level(level)
        location = (int(location[0]), int(location[1]))
        size = (int(size[0]), int(size[1]))
        try:
            rgba = self._osr.read_region(location, level, size)
        except (openslide.OpenSlideError, OSError, ValueError) as err:
            # OpenSlide handles are unusable after an error: reopen so later reads of good regions work.
            self.close()
            self._osr = self._open()
            raise RegionReadError(self.path, level, location, size, str(err).strip() or type(err).__name__) from None
        # OpenSlide returns un-premultiplied RGBA with transparent pixels (0, 0, 0, 0): dropping alpha makes
        # regions past the border black, as the original's .convert('RGB').
        return rgba.convert("RGB")

    def read_region(self, location, level, size):
        """Read a region as an array ``[h, w, 3]`` uint8 RGB (rows = y)."""
        return np.asarray(self.read_region_image(location, level, size))

    def read_level(self, level):
        """Read a whole level as an array ``[h, w, 3]`` uint8 RGB (rows = y)."""
        level = self.check_level(level)
        return self.read_region((0, 0), level, self.level_dimensions[level])

    def get_thumbnail(self, size):
        """An RGB PIL thumbnail fitting in ``size`` (w, h)."""
        try:
            return self._osr.get_thumbnail(size).convert("RGB")
        except (openslide.OpenSlideError, OSError, ValueError) as err:
            self.close()
            self._osr = self._open()
            raise RegionReadError(self.path, self.level_count - 1, (0, 0), self.dimensions,
                                  f"thumbnail: {str(err).strip() or type(err).__name__}") from None

    def close(self):
        self._osr.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"Slide({str(self.path)!r}, level_dimensions={self.level_dimensions})"


def open_slide(path):
    """Open a slide by path; raises a :class:`SlideError` subclass naming the file for each user mistake."""
    return Slide(path)


def find_slide(wsi_dir, pid, extensions=SLIDE_SUFFIXES):
    """The slide file ``<wsi_dir>/<pid>.tif`` (the original's naming), else ``<pid>`` with another extension.

    Raises :class:`NotAFolderError` when ``wsi_dir`` is a file (the original's issues #8, #24).
    """
    wsi_dir = Path(wsi_dir)
    if wsi_dir.is_file():
        raise NotAFolderError(f"{wsi_dir}: is a file; give the folder that holds the slides named <pid>.tif")
    for ext in extensions:
        candidate = wsi_dir / f"{pid}{ext}"
        if candidate.exists():
            return candidate
    raise SlideNotFoundError(f"{wsi_dir / (pid + '.tif')}: no such slide file")


def list_slides(wsi):
    """Slides of a folder (files with a slide suffix, hidden files skipped) or of a ``.txt`` list file.

    A list file holds one slide path a line; relative paths are relative to the list file's folder; blank lines
    and lines starting with ``#`` are skipped.
    """
    wsi = Path(wsi)
    if wsi.is_dir():
        slides = [p for p in wsi.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in SLIDE_SUFFIXES]
        if not slides:
            raise InputError(f"{wsi}: no slide files ({', '.join(SLIDE_SUFFIXES)}) in this folder")
        return slides
    if not wsi.is_file():
        raise InputError(f"{wsi}: no such slide list file")
    slides = []
    # read_text_lines: a byte that is not UTF-8 is one line naming the file and the line
    for number, line in enumerate(read_text_lines(wsi), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        path = Path(line) if Path(line).is_absolute() else wsi.parent / line
        if not path.is_file():
            raise InputError(f"{wsi}: line {number}: no such slide file {path}")
        slides.append(path)
    if not slides:
        raise InputError(f"{wsi}: the slide list is empty")
    return slides


def names_many_slides(wsi):
    """True when ``WSI`` names many slides: a folder or a ``.txt`` list file."""
    wsi = Path(wsi)
    return wsi.is_dir() or wsi.suffix.lower() == ".txt"
