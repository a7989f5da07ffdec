"""UTF-8 text inputs: lines, and a non-UTF-8 byte named by file and line."""

from pathlib import Path


def read_text_lines(path):
    """The lines of a UTF-8 text file (newlines kept); a non-UTF-8 byte is an InputError naming file and line."""
    from wsi.errors import InputError

    path = Path(path)
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise InputError(f"{path}: line {line}: not UTF-8 text (byte 0x{data[err.start]:02x})") from None
    return text.splitlines(keepends=True)
