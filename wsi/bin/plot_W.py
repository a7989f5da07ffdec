#!/usr/bin/env python3
"""Plot the CRF weights W of a checkpoint as the original's 3×3 panels and save them as an image.

Reads ``state_dict['crf.W']`` (shape ``[1, N, N]``, N = 9 for a 3×3 grid) from CKPT (ours or the original
NCRF's ``ckpt/resnet18_crf.ckpt``) and reshapes the raw W (not symmetrised) to ``(3, 3, 3, 3)``: entry
``(a, b, c, d)`` is the weight from the patch at (row a, col b) to the patch at (row c, col d), rows and columns
as in the image (grid index = row·3 + col). Panel (a, b) shows the 3×3 image ``W[a, b]`` with the ``seismic``
colour map from −1 to 1. The figure is saved (default ``<ckpt stem>_W.png`` beside the checkpoint); a window
opens only with ``--show``.
"""

import sys
from pathlib import Path

import logging
import math

import numpy as np

from wsi.cli import ArgumentParser, check_outputs, run_command
from wsi.errors import InputError
from wsi.fileio import atomic_path, figure_format
from wsi.model.checkpoint import CheckpointError, load_checkpoint

logger = logging.getLogger(__name__)


def crf_weights(ckpt_path):
    """The raw CRF weights of a checkpoint as a ``[k, k, k, k]`` float array (k = 3 for N = 9 nodes).

    Raises :class:`CheckpointError` when the checkpoint has no CRF (trained with ``use_crf: false``) or its
    ``crf.W`` is not ``[1, N, N]`` with N a square.
    """
    state_dict = load_checkpoint(ckpt_path)["state_dict"]
    if "crf.W" not in state_dict:
        raise CheckpointError(f"{ckpt_path}: no CRF layer (crf.W) in this checkpoint (trained with use_crf: false?)")
    W = state_dict["crf.W"].detach().float().cpu().numpy()
    side = math.isqrt(W.shape[-1]) if W.ndim == 3 else 0
    if W.ndim != 3 or W.shape[0] != 1 or W.shape[1] != W.shape[2] or side * side != W.shape[2]:
        raise CheckpointError(f"{ckpt_path}: crf.W has shape {list(W.shape)}, expected [1, N, N] with N a square")
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


def get_args_parser():
    parser = ArgumentParser(description="Plot the W of a CRF model's checkpoint (the original's 3×3 panels).")
    parser.add_argument("ckpt_path", metavar="CKPT_PATH", type=str, help="Path to the ckpt file of a CRF model")
    parser.add_argument(
        "--out",
        metavar="PNG",
        type=str,
        default=None,
        help="Image to write; the format follows the suffix (default: <ckpt stem>_W.png beside the checkpoint)",
    )
    parser.add_argument("--show", action="store_true", help="Also open a window with the figure (default: off)")
    return parser


def run(args):
    ckpt = Path(args.ckpt_path)
    out = Path(args.out) if args.out else ckpt.with_name(f"{ckpt.stem}_W.png")
    fmt = figure_format(out)
    check_outputs(out)
    W = crf_weights(ckpt)
    logger.info("W of %s: min %.4f, max %.4f", ckpt, float(np.min(W)), float(np.max(W)))

    if args.show:
        from matplotlib import pyplot as plt

        figure = plot_w(W, plt.figure(figsize=(6.4, 6.4)))
    else:
        figure = plot_w(W)  # a bare Figure: no GUI backend needed, works headless
    with atomic_path(out) as tmp:
        figure.savefig(tmp, format=fmt, dpi=100)
    logger.info("saved %s", out)
    if args.show:
        plt.show()


def main(argv=None):
    return run_command(run, get_args_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
