"""The CRF's W drawn as the original's 3×3 panels (``plot_W.py``, and the ``crf/W`` image in TensorBoard).

One rendering for both: :func:`plot_w` draws the panels on a matplotlib ``Figure`` (no GUI backend needed),
:func:`render_w` rasterises them to an RGB array for TensorBoard.
"""

import math

import numpy as np


def crf_panels(W):
    """The raw weights ``W`` ``[1, N, N]`` (a tensor or array, N a square k²) as a ``[k, k, k, k]`` float array.

    Entry ``(a, b, c, d)`` is the weight from the patch at (row a, col b) to the patch at (row c, col d), grid
    index = row·k + col. Raises ``ValueError`` for any other shape.
    """
    W = W.detach().float().cpu().numpy() if hasattr(W, "detach") else np.asarray(W, dtype=np.float32)
    side = math.isqrt(W.shape[-1]) if W.ndim == 3 else 0
    if W.ndim != 3 or W.shape[0] != 1 or W.shape[1] != W.shape[2] or side * side != W.shape[2]:
        raise ValueError(f"crf.W has shape {list(W.shape)}, expected [1, N, N] with N a square")
    return W[0].reshape(side, side, side, side)


def plot_w(W, figure=None):
    """Draw ``W`` ``[k, k, k, k]`` as k×k panels; panel (a, b) is ``W[a, b]`` (seismic, vmin −1, vmax 1).

    Draws on ``figure`` (a new ``matplotlib.figure.Figure``, which needs no GUI backend, by default) and
    returns it.
    """
    from matplotlib.figure import Figure

    figure = figure if figure is not None else Figure(figsize=(6.4, 6.4))
    side = W.shape[0]
    axes = figure.subplots(side, side, squeeze=False)
    for a in range(side):
        for b in range(side):
            ax = axes[a, b]
            image = ax.imshow(W[a, b], vmin=-1, vmax=1, cmap="seismic")
            ax.set_title(f"from ({a}, {b})", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
    figure.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8)
    figure.suptitle("CRF W (raw); panel (row, col): weights from that patch", fontsize=10)
    return figure


def render_w(W, dpi=60):
    """:func:`plot_w` of ``W`` ``[k, k, k, k]`` rasterised at ``dpi`` (60: 384² px): uint8 ``[H, W, 3]``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    figure = plot_w(W)
    figure.set_dpi(dpi)
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()
