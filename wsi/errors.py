"""Every error class a caller of the library may catch, in one place.

Every mistake a user can make with an input (a missing slide, a malformed XML, a config with a wrong key)
raises a subclass of :class:`WSIError` whose message is one line naming the file and what is wrong. The
command-line scripts print that line and exit with status 2, without a traceback. The modules that raise them
import them from here (``wsi.data.slide.SlideError`` is ``wsi.errors.SlideError``); catch :class:`WSIError` for
all of them, or a narrow class, several of which carry their fields (:class:`LevelError`,
:class:`RegionReadError`, :class:`OutputError`).
"""

import re

__all__ = [
    "WSIError", "InputError", "ParameterError", "OutputError",
    "SlideError", "SlideNotFoundError", "NotAFileError", "NotAFolderError", "UnsupportedSlideError", "LevelError",
    "RegionReadError", "AnnotationError", "AnnotationMissingError", "CoordsError", "SamplingError", "DatasetError",
    "ConfigError", "GeometryError", "ArrayFileError", "CheckpointError", "RuntimeUnavailable", "ReadFailed",
    "FastModeInexact", "DetectionsError", "FROCError", "SlideLabelsError",
]


class WSIError(Exception):
    """Base class of the errors this project raises for bad input."""


class InputError(WSIError, ValueError):
    """A file or argument given by the user is malformed; the message names it and says why."""


class ParameterError(InputError):
    """A value given for a parameter that cannot be used; the message names the parameter, not a CLI flag.

    ``template`` is the message with each parameter name in braces (``"{radius} must be at least 1, got 0"``): a
    library caller reads the names as written (``radius must be at least 1, got 0``), the command-line scripts,
    whose options are the parameters' names, print them as options (``--radius must ...``; :meth:`as_option`).
    ``aliases`` words a name for library callers where its option has no parameter of that name
    (``{"eager_cnn": "optimize=False"}``).
    """

    def __init__(self, template, aliases=None):
        self.template, self.aliases = str(template), dict(aliases or {})
        super().__init__(self._render(lambda name: self.aliases.get(name, name)))

    def __reduce__(self):  # rebuildable from its fields when it crosses a process boundary
        return type(self), (self.template, self.aliases)

    def __str__(self):
        return self._render(lambda name: self.aliases.get(name, name))

    def as_option(self):
        """The message as the command-line scripts print it: each parameter as ``--name``."""
        return self._render(lambda name: f"--{name}")

    def _render(self, word):
        return re.sub(r"\{([A-Za-z_]\w*)\}", lambda match: word(match[1]), self.template)


class OutputError(WSIError, OSError):
    """An output that cannot be written: ``<path>: cannot write (<reason>)``."""

    def __init__(self, path, reason):
        self.path, self.reason = str(path), str(reason)
        super().__init__(f"{path}: cannot write ({reason})")

    def __reduce__(self):  # rebuildable from its fields when it crosses a process boundary
        return type(self), (self.path, self.reason)

    def __str__(self):
        return f"{self.path}: cannot write ({self.reason})"


# Slides (wsi.data.slide) ----------------------------------------------------------------------------------------------
class SlideError(WSIError):
    """Base class of the slide errors."""


class SlideNotFoundError(SlideError, FileNotFoundError):
    """The slide path does not exist."""


class NotAFileError(SlideError, IsADirectoryError):
    """A folder was given where a slide file is expected."""


class NotAFolderError(SlideError, NotADirectoryError):
    """A file was given where the folder of slides is expected."""


class UnsupportedSlideError(SlideError):
    """The file is not a slide OpenSlide (or PIL, for plain images) can read."""


class LevelError(SlideError, ValueError):
    """A level the slide does not have; ``levels`` lists the ones it has."""

    def __init__(self, path, level, levels, detail=""):
        self.path, self.level, self.levels, self.detail = str(path), level, list(levels), detail
        super().__init__(f"{path}: no level {level}; the slide has levels {self.levels}"
                         + (f" ({detail})" if detail else ""))

    def __reduce__(self):  # rebuildable from its fields in another process (DataLoader workers, pools)
        return type(self), (self.path, self.level, self.levels, self.detail)


class RegionReadError(SlideError):
    """A region failed to decode (a corrupt tile, a truncated download)."""

    def __init__(self, path, level, location, size, reason):
        self.path, self.level, self.location, self.size = str(path), level, tuple(location), tuple(size)
        self.reason = str(reason)
        super().__init__(
            f"{path}: cannot read level {level} region at {tuple(location)} of size {tuple(size)}: {reason}"
        )

    def __reduce__(self):  # rebuildable from its fields in another process (DataLoader workers, pools)
        return type(self), (self.path, self.level, self.location, self.size, self.reason)


# Annotations (wsi.data.annotation) ------------------------------------------------------------------------------------
class AnnotationError(InputError):
    """An annotation file (JSON or XML) that cannot be used; the message names the file and the problem."""


class AnnotationMissingError(AnnotationError, ParameterError):
    """Slides without an annotation JSON where only ``Normal_*`` slides may lack one; its hint names the
    ``assume_normal`` parameter (``--assume_normal`` in the scripts)."""


# Coordinate lists (wsi.data.coords) -----------------------------------------------------------------------------------
class CoordsError(InputError):
    """A malformed coordinate list; the message names the file and the line number."""


# Coordinate sampling and hard negatives (wsi.data.sampling) -----------------------------------------------------------
class SamplingError(InputError):
    """Inputs of the sampling or hard-negative tools that cannot be used; the message names the file."""


# Patch datasets (wsi.data.image_producer) -----------------------------------------------------------------------------
class DatasetError(InputError):
    """A patch folder, coordinate list or annotation folder that cannot be used; the message names it."""


# Configs (wsi.config) -------------------------------------------------------------------------------------------------
class ConfigError(InputError):
    """A config that cannot be used; the message names the file and the key."""


# Mask and grid geometry (wsi.geometry) --------------------------------------------------------------------------------
class GeometryError(InputError):
    """A mask that does not fit its slide, or a config whose grid cannot be cut; the message gives the numbers."""


# Arrays and their sidecars (wsi.arrays) -------------------------------------------------------------------------------
class ArrayFileError(InputError):
    """A mask or map file (or its sidecar) that cannot be used; the message names the file and the problem."""


# Checkpoints (wsi.model.checkpoint) -----------------------------------------------------------------------------------
class CheckpointError(WSIError):
    """A checkpoint that is missing, unreadable or does not fit the model; the message is one line."""


# CPU inference runtimes (wsi.model.runtime) ---------------------------------------------------------------------------
class RuntimeUnavailable(WSIError):
    """A CPU inference runtime that cannot run the pass here: not importable, its usage telemetry live in this
    process, or the conversion failed. ``--runtime auto`` falls back to PyTorch's pass on it (one log line)."""


# Probability maps (wsi.inference) -------------------------------------------------------------------------------------
class ReadFailed(WSIError):
    """A slide region could not be read while computing a map (a corrupt tile, a truncated file)."""


class FastModeInexact(WSIError, ValueError):
    """The fast mode would not give the faithful map exactly for this mask and grid; ``problem`` says why.
    Raised by :func:`~wsi.inference.fast.fast_probs_map` before any work; ``compute_probs_map`` then runs the
    faithful mode (one log line)."""

    def __init__(self, problem):
        self.problem = str(problem)
        super().__init__(f"the fast mode is not exact here: {problem}")

    def __reduce__(self):  # rebuildable from its fields when it crosses a process boundary
        return type(self), (self.problem,)


# Detections (wsi.eval.detections) -------------------------------------------------------------------------------------
class DetectionsError(InputError):
    """A malformed detection CSV; the message names the file and the 1-based line."""


# FROC (wsi.eval.froc) -------------------------------------------------------------------------------------------------
class FROCError(InputError):
    """A mask, folder or CSV the FROC cannot use; the message names the file."""


# Slide labels (wsi.eval.slide_auc) ------------------------------------------------------------------------------------
class SlideLabelsError(InputError):
    """A malformed labels CSV or an inconsistent set of maps and labels; the message names the file."""
