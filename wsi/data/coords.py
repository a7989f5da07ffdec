"""Coordinate lists: ``<pid>,<x_center>,<y_center>`` per line, level-0 integer centres, no header.

The format of the original's ``coords/*.txt`` and of ``list.txt`` in patch folders.
"""

from pathlib import Path

from wsi.errors import CoordsError
from wsi.fileio import atomic_open, read_text_lines


def read_coords(path):
    """Read a coordinate list as a list of ``(pid, x, y)`` with int x, y.

    Blank lines, lines without exactly three fields and non-integer coordinates raise :class:`CoordsError`
    naming the file and the 1-based line number.
    """
    path = Path(path)
    if not path.is_file():
        raise CoordsError(f"{path}: no such coordinate file" + (" (it is a folder)" if path.is_dir() else ""))
    rows = []
    # read_text_lines: a byte that is not UTF-8 is one line naming the file and the line
    for number, line in enumerate(read_text_lines(path), start=1):
        fields = line.strip().split(",")
        if fields == [""]:
            raise CoordsError(f"{path}: line {number} is blank")
        if len(fields) != 3:
            raise CoordsError(f"{path}: line {number} has {len(fields)} fields, expected pid,x,y: {line.strip()!r}")
        pid, x, y = (f.strip() for f in fields)
        try:
            rows.append((pid, int(x), int(y)))
        except ValueError:
            raise CoordsError(f"{path}: line {number} has non-integer coordinates: {line.strip()!r}") from None
    return rows


def write_coords(path, rows):
    """Write ``(pid, x, y)`` rows in the coords format, atomically."""
    with atomic_open(path, "w") as handle:
        for pid, x, y in rows:
            handle.write(f"{pid},{int(x)},{int(y)}\n")
