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

import numpy as np

from wsi.cli import ArgumentParser, add_trust_checkpoint, check_outputs, run_command
from wsi.errors import InputError
from wsi.fileio import atomic_path, figure_format
from wsi.model.checkpoint import CheckpointError, load_checkpoint
from wsi.model.crf_figure import crf_panels, plot_w  # noqa: F401 (plot_w: also this script's public name)

logger = logging.getLogger(__name__)


def crf_weights(ckpt_path, trust=False):
    """The raw CRF weights of a checkpoint as a ``[k, k, k, k]`` float array (k = 3 for N = 9 nodes).

    Raises :class:`CheckpointError` when the checkpoint has no CRF (trained with ``use_crf: false``) or its
    ``crf.W`` is not ``[1, N, N]`` with N a square.
    """
    state_dict = load_checkpoint(ckpt_path, trust=trust)["state_dict"]
    if "crf.W" not in state_dict:
        raise CheckpointError(f"{ckpt_path}: no CRF layer (crf.W) in this checkpoint (trained with use_crf: false?)")
    try:
        return crf_panels(state_dict["crf.W"])
    except ValueError as error:
        raise CheckpointError(f"{ckpt_path}: {error}") from None


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
    add_trust_checkpoint(parser)
    return parser


def run(args):
    ckpt = Path(args.ckpt_path)
    out = Path(args.out) if args.out else ckpt.with_name(f"{ckpt.stem}_W.png")
    fmt = figure_format(out)
    check_outputs(out, inputs=[ckpt])
    W = crf_weights(ckpt, trust=args.trust_checkpoint)
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
