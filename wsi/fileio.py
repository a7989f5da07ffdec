"""Atomic writes: outputs appear complete or not at all.

Every script writes to a temporary file in the target folder and renames it into place, so an error or an
interrupted run never leaves a partial output behind, and a re-run can trust any output file it finds.
"""

import contextlib
import os
import tempfile
from pathlib import Path

import numpy as np


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; rename it onto ``path`` when the block succeeds.

    The temporary name keeps the suffix of ``path`` so that libraries choosing a format by suffix still work.
    On an exception the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        # mkstemp creates the file private (0600); give it the permissions a plain open() would have.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_open(path, mode="w", **kwargs):
    """Open a temporary file beside ``path`` for writing; it replaces ``path`` when the block succeeds."""
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as handle:
        yield handle


def npy_path(path):
    """The file ``np.save(path, ...)`` writes: ``path`` with ``.npy`` appended when it lacks that suffix."""
    path = Path(path)
    return path if path.suffix == ".npy" else path.with_name(path.name + ".npy")


def save_npy(path, array):
    """``np.save`` atomically; returns the path written (``.npy`` appended as ``np.save`` does)."""
    path = npy_path(path)
    with atomic_open(path, "wb") as handle:
        np.save(handle, array)
    return path


def figure_format(path, what="figure"):
    """The matplotlib format of a figure file by its suffix (``png`` when it has none), checked before the work.

    Raises :class:`~wsi.errors.InputError` naming the file when matplotlib cannot write that format.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from wsi.errors import InputError

    fmt = Path(path).suffix.lstrip(".").lower() or "png"
    if fmt not in FigureCanvasAgg.get_supported_filetypes():
        raise InputError(f"{path}: cannot save a {what} as {fmt!r}; use .png, .pdf or .svg")
    return fmt
