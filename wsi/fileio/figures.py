"""Figure outputs: the format of a figure file by its suffix, checked before the work."""

from pathlib import Path


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
