"""Detection CSVs: the output of ``nms.py`` and the input of the FROC, the slide exports and the viewers.

Format (the original's): no header, one detection per line, ``<prob>,<x>,<y>`` where ``prob`` is written
``%.5f`` and ``x``, ``y`` are integer level-0 pixel coordinates (x = column, y = row), in descending order of
probability. An empty file means "no detections".
"""

import math
from pathlib import Path

import numpy as np

from wsi.errors import DetectionsError
from wsi.fileio import atomic_open, read_text_lines


def format_detection(prob, x, y):
    """One CSV line (without the newline): ``%.5f,%d,%d``, as the original ``nms.py`` writes."""
    return "%.5f,%d,%d" % (prob, x, y)


def write_detections(path, detections):
    """Write ``(prob, x, y)`` rows atomically; an empty list gives an empty file."""
    with atomic_open(path, "w") as handle:
        for prob, x, y in detections:
            handle.write(format_detection(prob, x, y) + "\n")


def read_detections(path):
    """Read a detection CSV as three arrays: ``probs`` float64 ``[N]``, ``x`` int64 ``[N]``, ``y`` int64 ``[N]``.

    Row ``i`` of the arrays is line ``i + 1`` of the file. As the original's reader, each line is split on
    commas into ``float(prob), int(x), int(y)``; unlike it, a header, a blank line, a field count other than 3,
    a non-integer coordinate or a probability that is not a finite number in [0, 1] raises
    :class:`DetectionsError` naming the file and the line (the original crashed with a traceback, or read NaN).
    """
    path = Path(path)
    if not path.is_file():
        raise DetectionsError(f"{path}: no such detection CSV" + (" (it is a folder)" if path.is_dir() else ""))
    probs, xs, ys = [], [], []
    lines = [line.rstrip("\r\n") for line in read_text_lines(path)]  # non-UTF-8: one line naming file and line
    for number, line in enumerate(lines, start=1):
        fields = line.split(",")
        if not line.strip():
            raise DetectionsError(f"{path}: line {number} is blank; expected prob,x,y")
        if len(fields) != 3:
            raise DetectionsError(f"{path}: line {number} has {len(fields)} fields, expected prob,x,y: {line!r}")
        try:
            prob = float(fields[0])
        except ValueError:
            what = "a header or a non-numeric probability" if number == 1 else "a non-numeric probability"
            raise DetectionsError(f"{path}: line {number} has {what} (the CSV has no header): {line!r}") from None
        if not math.isfinite(prob):
            raise DetectionsError(f"{path}: line {number} has a non-finite probability: {line!r}")
        if not 0.0 <= prob <= 1.0:
            raise DetectionsError(f"{path}: line {number} has a probability outside [0, 1]: {line!r}")
        try:
            x, y = int(fields[1]), int(fields[2])
        except ValueError:
            raise DetectionsError(
                f"{path}: line {number} has a non-integer coordinate (level-0 pixels are integers): {line!r}"
            ) from None
        probs.append(prob)
        xs.append(x)
        ys.append(y)
    return np.array(probs, dtype=np.float64), np.array(xs, dtype=np.int64), np.array(ys, dtype=np.int64)
