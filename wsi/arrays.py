"""The pipeline's ``.npy`` arrays (tissue masks, probability maps) and the sidecar that says where they lie.

The ``.npy`` stays exactly the original's: a 2-D ``[x, y]`` array (first axis x, the transpose of an image), so
the original's scripts still read it. Beside ``X.npy`` the writer puts ``X.json``, a small sidecar::

    {"format": "ncrf-array-1", "kind": "tissue_mask", "shape": [1528, 3456], "axes": "xy",
     "level": 6, "stride": 64.0, "downsample": [64.0, 64.0],
     "slide": {"name": "Tumor_001.tif", "quickhash": "…", "level0_size": [97792, 221184], "mpp": 0.243},
     ...}

``stride`` is the level-0 size of one cell as the pipeline uses it (cell ``(i, j)`` is centred on level-0
``(int((i + 0.5)·stride), int((j + 0.5)·stride))``, see :class:`wsi.geometry.MaskGeometry`), ``downsample`` the
slide's own ``level_downsamples`` for ``level`` (x, y). ``quickhash`` is OpenSlide's ``openslide.quickhash-1``,
which identifies a slide whatever its file name. Maps also record the checkpoint, config, mask and mode.

Without a sidecar (the original's arrays, or one written by hand) every reader keeps the original's rules: a map
of ``--level L`` has cells of ``2**L`` level-0 pixels.
"""

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from wsi.constants import DEFAULT_MAP_LEVEL
from wsi.errors import ArrayFileError, OutputError, ParameterError
from wsi.fileio import atomic_open, npy_path, save_npy
from wsi.geometry import _fits as fits_stride

SIDECAR_FORMAT = "ncrf-array-1"
KINDS = ("tissue_mask", "probs_map")
#: The sidecar kind of each ``what`` that :func:`load_array` is asked for.
_KIND_OF = {"tissue mask": "tissue_mask", "probability map": "probs_map"}


@dataclass(frozen=True)
class SlideRef:
    """Which slide an array was made from: its file name, OpenSlide quick hash, level-0 (width, height), µm/px."""

    name: str
    level0_size: tuple
    quickhash: str | None = None
    mpp: float | None = None

    @classmethod
    def of(cls, slide):
        """The reference of an open :class:`wsi.data.slide.Slide`."""
        return cls(name=Path(slide.path).name, level0_size=tuple(int(v) for v in slide.dimensions),
                   quickhash=slide.properties.get("openslide.quickhash-1"), mpp=slide.mpp)

    def same_slide(self, other):
        """True when ``other`` (a :class:`SlideRef`) is the same slide: same quick hash when both have one,
        else the same level-0 size."""
        if self.quickhash and other.quickhash:
            return self.quickhash == other.quickhash
        return tuple(self.level0_size) == tuple(other.level0_size)


@dataclass(frozen=True)
class ArrayInfo:
    """What a sidecar says: the array's kind and shape ``(X, Y)``, its slide, level and scale.

    Attributes
    ----------
    kind : str
        ``'tissue_mask'`` or ``'probs_map'``.
    shape : (int, int)
        ``(X, Y)``, x first; always ``'xy'`` axes.
    level : int or None
        The slide level whose size the array has (None when it has none of them).
    stride : float
        Level-0 pixels per cell as the pipeline uses it (an integer value for every pyramid seen so far).
    downsample : (float, float)
        The slide's own level-0 pixels per cell along x and y (``level_downsamples[level]``, or the size ratio).
    slide : SlideRef
    extra : dict
        Provenance: for maps ``ckpt``, ``cfg``, ``mask``, ``mode``, ``eight_avg``; for masks ``rgb_min``.
    """

    kind: str
    shape: tuple
    level: int | None
    stride: float
    downsample: tuple
    slide: SlideRef
    extra: dict = field(default_factory=dict)

    @classmethod
    def of(cls, kind, slide, geometry, **extra):
        """The sidecar of an array of ``kind`` made from an open ``slide`` with ``geometry``
        (:class:`wsi.geometry.MaskGeometry`)."""
        level = geometry.level
        if level is not None:
            downsample = (float(slide.level_downsamples[level]),) * 2
        else:
            (width, height), (size_x, size_y) = slide.dimensions, geometry.mask_shape
            downsample = (width / size_x, height / size_y)
        return cls(kind=kind, shape=tuple(int(v) for v in geometry.mask_shape), level=level,
                   stride=float(geometry.stride), downsample=downsample, slide=SlideRef.of(slide), extra=extra)

    def to_json(self):
        record = {"format": SIDECAR_FORMAT, "kind": self.kind, "shape": list(self.shape), "axes": "xy",
                  "level": self.level, "stride": self.stride, "downsample": list(self.downsample),
                  "slide": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self.slide).items()}}
        record.update(self.extra)
        return record

    @classmethod
    def from_json(cls, record, where):
        """Parse a sidecar record; :class:`ArrayFileError` naming ``where`` when it is not one."""
        try:
            if record.get("format") != SIDECAR_FORMAT:
                raise ValueError(f"format {record.get('format')!r}, expected {SIDECAR_FORMAT!r}")
            if record["kind"] not in KINDS or record.get("axes", "xy") != "xy":
                raise ValueError(f"kind {record['kind']!r} / axes {record.get('axes')!r}")
            slide = record["slide"]
            ref = SlideRef(name=str(slide["name"]), level0_size=tuple(int(v) for v in slide["level0_size"]),
                           quickhash=slide.get("quickhash"), mpp=slide.get("mpp"))
            level = record["level"]
            known = {"format", "kind", "shape", "axes", "level", "stride", "downsample", "slide"}
            info = cls(kind=record["kind"], shape=tuple(int(v) for v in record["shape"]),
                       level=None if level is None else int(level), stride=float(record["stride"]),
                       downsample=tuple(float(v) for v in record["downsample"]), slide=ref,
                       extra={k: v for k, v in record.items() if k not in known})
        except (AttributeError, KeyError, TypeError, ValueError) as err:
            raise ArrayFileError(f"{where}: not a sidecar of this pipeline ({err})") from None
        if len(info.shape) != 2 or not info.stride > 0:
            raise ArrayFileError(f"{where}: not a sidecar of this pipeline (shape {info.shape}, "
                                 f"stride {info.stride})")
        info.check_consistent(where)
        return info

    def check_consistent(self, where):
        """Raise :class:`ArrayFileError` unless shape × stride covers the slide's level-0 size (each axis within
        one cell, the rule of :func:`wsi.geometry.mask_geometry`) and the level is a real level index.

        A sidecar whose level or stride contradicts its own shape and slide would put every detection, contour
        or sampled centre at the wrong place (outside the slide)."""
        (width, height), (size_x, size_y) = self.slide.level0_size, self.shape
        if self.level is not None and self.level < 0:
            raise ArrayFileError(f"{where}: level {self.level} is not a slide level")
        down_x, down_y = self.downsample if len(self.downsample) == 2 else (self.stride, self.stride)
        if not (width > 0 and height > 0 and fits_stride(width, size_x, self.stride)
                and fits_stride(height, size_y, self.stride) and down_x > 0 and down_y > 0
                and fits_stride(width, size_x, down_x) and fits_stride(height, size_y, down_y)):
            raise ArrayFileError(f"{where}: inconsistent sidecar: shape {size_x}x{size_y} at {self.stride:g} level-0 "
                                 f"pixels per cell (downsample {down_x:g}, {down_y:g}) does not cover slide "
                                 f"{self.slide.name} of {width}x{height}")

    def describe(self):
        """``level 3 of Tumor_001.tif, 64 level-0 pixels per cell`` (for messages)."""
        level = "no level" if self.level is None else f"level {self.level}"
        return f"{level} of {self.slide.name}, {self.stride:g} level-0 pixels per cell"


def settings_changed(info, **settings):
    """What differs between the settings a sidecar records and ``settings`` (None values are not compared), as
    ``'level 5 (made with 6)'``, or ``''`` when nothing does. ``info`` is a sidecar, not None.

    A resumed run redoes an array made otherwise (another level, checkpoint, config, mode) instead of keeping it.
    """
    def shown(value):  # a digest is recognisable by its first characters
        return f"{value[:12]}…" if isinstance(value, str) and len(value) > 16 else value

    made = {"level": info.level, **info.extra}
    changed = [f"{key} {shown(value)} (made with {shown(made.get(key))})" for key, value in settings.items()
               if value is not None and made.get(key) != value]
    return ", ".join(changed)


def check_names_slide(info, stem, where):
    """Raise :class:`ArrayFileError` when the sidecar ``info`` of ``where`` names a slide whose stem is not
    ``stem`` (an array filed under one slide's name but made from another). No sidecar: nothing to check."""
    if info is not None and Path(info.slide.name).stem != stem:
        raise ArrayFileError(f"{where}: made from slide {info.slide.name}, not {stem} (says "
                             f"{sidecar_path(where).name})")


def check_same_slide(info, other, where, other_where):
    """Raise :class:`ArrayFileError` when two arrays' sidecars name different slides (a map and a mask)."""
    if info is not None and other is not None and not info.slide.same_slide(other.slide):
        raise ArrayFileError(f"{where}: made from slide {info.slide.name}, but {other_where} from "
                             f"{other.slide.name}")


def sidecar_path(path):
    """The sidecar of the array ``path``: ``X.json`` beside ``X.npy``."""
    return npy_path(path).with_suffix(".json")


def read_sidecar(path):
    """The :class:`ArrayInfo` of the array ``path``, or None when it has no sidecar."""
    side = sidecar_path(path)
    if not side.is_file():
        return None
    try:
        record = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ArrayFileError(f"{side}: unreadable sidecar ({str(err).splitlines()[0]})") from None
    if not isinstance(record, dict):
        raise ArrayFileError(f"{side}: not a sidecar of this pipeline (a JSON {type(record).__name__})")
    return ArrayInfo.from_json(record, side)


def save_array(path, array, info=None):
    """Save ``array`` as ``.npy`` (appended when missing) and, with ``info``, its sidecar; both atomically.

    The sidecar is written first and the ``.npy`` last, so an existing ``.npy`` always has its sidecar (resumed
    runs take the ``.npy`` as the sign of a finished array). Returns the ``.npy`` path.
    """
    path = npy_path(path)
    side = sidecar_path(path)
    if path.is_dir():  # checked before the sidecar is written: no orphan sidecar beside a folder
        raise OutputError(path, "is a folder, expected an output file")
    check_own_sidecar(side)
    if info is not None:
        if tuple(info.shape) != tuple(np.shape(array)):
            raise ValueError(f"sidecar shape {info.shape} differs from the array's {np.shape(array)}")
        with atomic_open(side, "w", encoding="utf-8") as handle:
            json.dump(info.to_json(), handle, indent=1)
            handle.write("\n")
    elif side.exists():
        side.unlink()  # a stale sidecar of an earlier array would describe the wrong one
    return save_npy(path, array)


def check_own_sidecar(side):
    """Raise :class:`OutputError` when ``side`` exists but is not a sidecar this pipeline wrote (an annotation
    ``<stem>.json`` beside the slide, a config): nothing is replaced that the tools did not write. Called by
    :func:`save_array`, and by the scripts on every sidecar they will write before any work."""
    if not (side.exists() or side.is_symlink()):
        return
    if side.is_dir():
        raise OutputError(side, "is a folder, expected the array's sidecar file")
    try:
        record = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        record = None
    if not (isinstance(record, dict) and record.get("format") == SIDECAR_FORMAT):
        raise OutputError(side, "exists and is not a sidecar of this pipeline; the array's sidecar would replace "
                                "it (move it, or write the array elsewhere)")


def load_array(path, what="tissue mask", *, mmap=False, check_finite=True):
    """Load a mask or map ``.npy`` and its sidecar: ``(array [X, Y], ArrayInfo or None)``.

    The one loader of the pipeline's arrays. Raises :class:`ArrayFileError`, one line naming the file, for a
    missing file, a folder, a file that is not one ``.npy`` array (a pickle, an ``.npz``), an array that is not
    2-D, empty, not boolean or numeric, or (``check_finite``) holding NaN or infinity, and for a sidecar that
    does not describe the array (shape, kind, or a shape × stride that does not cover its slide). A
    ``'probability map'`` must moreover be a numeric array of values in [0, 1] (a bool array is a mask).
    ``mmap=True`` memory-maps the array (the finiteness check still reads it).
    """
    path = Path(path)
    if not path.is_file():
        raise ArrayFileError(f"{path}: no such {what} file" + (" (it is a folder)" if path.is_dir() else ""))
    try:
        array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ArrayFileError(f"{path}: not a NumPy .npy {what} ({reason})") from None
    if not isinstance(array, np.ndarray):
        raise ArrayFileError(f"{path}: not a single .npy array (an .npz archive?)")
    check_array(array, path, what, check_finite=check_finite)
    info = read_sidecar(path)
    if info is not None and tuple(info.shape) != array.shape:
        raise ArrayFileError(f"{sidecar_path(path)}: describes an array of shape {info.shape}, but {path.name} "
                             f"has shape {array.shape}")
    if info is not None and _KIND_OF.get(what, info.kind) != info.kind:
        raise ArrayFileError(f"{path}: a {info.kind.replace('_', ' ')} (says {sidecar_path(path).name}), "
                             f"expected a {what}")
    if what == "probability map":
        check_probabilities(array, path)
    return array, info


def check_probabilities(array, where):
    """Raise :class:`ArrayFileError` unless ``array`` is a numeric (not boolean) array of values in [0, 1]."""
    if array.dtype == bool:
        raise ArrayFileError(f"{where}: a boolean array (a tissue mask?), expected a probability map")
    low, high = float(np.min(array)), float(np.max(array))
    if low < 0.0 or high > 1.0:
        raise ArrayFileError(f"{where}: values from {low:g} to {high:g}, expected probabilities in [0, 1]")


def check_array(array, where="array", what="tissue mask", check_finite=True):
    """Raise :class:`ArrayFileError` unless ``array`` is a non-empty 2-D boolean or numeric (finite) array."""
    if array.ndim != 2:
        raise ArrayFileError(f"{where}: expected a 2-D [x, y] {what}, got shape {tuple(array.shape)}")
    if not (array.dtype == bool or np.issubdtype(array.dtype, np.integer)
            or np.issubdtype(array.dtype, np.floating)):
        raise ArrayFileError(f"{where}: expected a boolean or numeric {what}, got dtype {array.dtype}")
    if array.size == 0:
        raise ArrayFileError(f"{where}: the {what} is empty, shape {tuple(array.shape)}")
    if check_finite and np.issubdtype(array.dtype, np.floating):
        bad = ~np.isfinite(array)
        if bad.any():
            i, j = np.argwhere(bad)[0]
            raise ArrayFileError(f"{where}: the {what} holds {int(bad.sum())} non-finite values (NaN or infinity), "
                                 f"the first at [x={i}, y={j}]")


def level_cell_size(level):
    """Level-0 pixels per cell of a map that has no sidecar, made at ``--level`` ``level``: the original's rule
    ``2**level`` (a 2× pyramid). The one place that rule lives; a map with a sidecar has its stride instead."""
    level = int(level)
    if level < 0:
        raise ParameterError(f"{{level}} must be at least 0, got {level}")
    return float(2 ** level)


def cell_size(info, level, where):
    """Level-0 pixels per cell of an array with sidecar ``info`` (or None) given ``--level`` (or None).

    With a sidecar, its ``stride``; a ``--level`` that disagrees with it is a one-line error naming both. Without
    one, the original's rule ``2**level`` (``level`` default 6, :func:`level_cell_size`).
    """
    if info is None:
        return level_cell_size(DEFAULT_MAP_LEVEL if level is None else level)
    if level is not None:
        if info.level is not None:
            agrees = level == info.level
        else:
            agrees = level >= 0 and level_cell_size(level) == info.stride
        if not agrees:
            raise ParameterError(f"{where}: {{level}} {level} disagrees with {sidecar_path(where).name} "
                                 f"({info.describe()}); drop {{level}} or give the level the array was made at")
    return info.stride


def check_made_from(info, slide, where):
    """Raise :class:`ArrayFileError` when the sidecar ``info`` of the array ``where`` names another slide than
    the open ``slide`` (by OpenSlide's quick hash, else by level-0 size). No sidecar: nothing to check."""
    if info is None:
        return
    ref = SlideRef.of(slide)
    if not info.slide.same_slide(ref):
        how = (f"quickhash {info.slide.quickhash[:12]}… vs {ref.quickhash[:12]}…"
               if info.slide.quickhash and ref.quickhash
               else f"level-0 size {info.slide.level0_size} vs {ref.level0_size}")
        raise ArrayFileError(f"{where}: made from slide {info.slide.name}, not from {slide.path} ({how}; "
                             f"says {sidecar_path(where).name})")
    if info.level is not None:  # the level it names must have its shape on this slide
        levels = slide.level_dimensions
        if info.level >= len(levels) or tuple(levels[info.level]) != tuple(info.shape):
            have = f"is {tuple(levels[info.level])}" if info.level < len(levels) else "does not exist"
            raise ArrayFileError(f"{sidecar_path(where)}: says level {info.level}, shape {info.shape}, but level "
                                 f"{info.level} of {slide.path} {have}")
