"""Pictures for TensorBoard, as uint8 RGB arrays ``[H, W, 3]`` (rows = y)."""

import numpy as np

#: Cell frame colours by label: tumour (1) red, normal (0) blue; soft labels in between.
TUMOUR_RGB, NORMAL_RGB = np.array([220, 20, 20]), np.array([20, 80, 220])


def grid_mosaic(grids, labels, frame=2, gap=6):
    """Grids side by side, each cell framed in the colour of its label.

    Parameters
    ----------
    grids : float tensor or array ``[N, G, 3, C, C]``, normalised as ``(x − 128) / 128`` (the network's input),
        G = k² cells in row-major order.
    labels : ``[N, G]`` cell labels in [0, 1].

    Returns uint8 ``[k·(C + 2·frame), N·k·(C + 2·frame) + (N − 1)·gap, 3]``, white between the grids.
    """
    grids = np.asarray(grids.detach().float().cpu() if hasattr(grids, "detach") else grids, dtype=np.float32)
    labels = np.asarray(labels.detach().float().cpu() if hasattr(labels, "detach") else labels, dtype=np.float32)
    n, g, _, c, _ = grids.shape
    side = int(round(g ** 0.5))
    cell = c + 2 * frame
    pixels = np.clip(np.rint(grids * 128.0 + 128.0), 0, 255).astype(np.uint8).transpose(0, 1, 3, 4, 2)
    out = np.full((side * cell, n * side * cell + (n - 1) * gap, 3), 255, dtype=np.uint8)
    for i in range(n):
        for k in range(g):
            row, col = divmod(k, side)
            y, x = row * cell, i * (side * cell + gap) + col * cell
            colour = labels[i, k] * TUMOUR_RGB + (1 - labels[i, k]) * NORMAL_RGB
            out[y:y + cell, x:x + cell] = np.rint(colour).astype(np.uint8)
            out[y + frame:y + frame + c, x + frame:x + frame + c] = pixels[i, k]
    return out


def heatmap(probs, cmap="jet"):
    """``probs`` ``[h, w]`` in [0, 1] (rows = y) through the colour map (0 → blue, 1 → red for jet): uint8 RGB."""
    from matplotlib import colormaps

    return colormaps[cmap](np.clip(probs, 0, 1), bytes=True)[..., :3]


def resize(image, size, nearest=False):
    """``image`` uint8 ``[h, w, 3]`` resized to ``size`` = (width, height)."""
    from PIL import Image

    method = Image.Resampling.NEAREST if nearest else Image.Resampling.BILINEAR
    return np.asarray(Image.fromarray(image).resize(size, method))
