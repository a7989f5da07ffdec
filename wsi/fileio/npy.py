""".npy files: the name ``np.save`` writes, an atomic save, and a file's shape and dtype from its header alone
(whether a map a re-run finds is complete)."""

from pathlib import Path

import numpy as np

from wsi.fileio.atomic import atomic_open


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


def npy_header(path):
    """``(shape, dtype)`` of a ``.npy`` file from its header alone, or None when it is not a complete one.

    A file whose size does not match its header (a copy cut short) counts as incomplete.
    """
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read_header(handle)
            data_start = handle.tell()
    except (OSError, ValueError, EOFError):
        return None
    if dtype.hasobject:
        return None
    expected = data_start + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if path.stat().st_size != expected:
        return None
    return tuple(shape), dtype


def is_complete_npy(path, shape, dtype):
    """True when ``path`` is a complete ``.npy`` of this shape and dtype (a map a re-run may skip)."""
    header = npy_header(path)
    return header is not None and header[0] == tuple(shape) and header[1] == np.dtype(dtype)
