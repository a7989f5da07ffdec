"""Orientations of an image: a left-right flip, then ``turns`` quarter turns counter-clockwise.

The one home of the flips and rotations of the whole pipeline: the training augmentation (per item on the CPU,
:mod:`wsi.data.image_producer`, and batched on the device, :mod:`wsi.data.grid_augment`), the faithful mode's
regions (:mod:`wsi.data.wsi_producer`) and the fast mode's patches with ``--eight_avg`` (:mod:`wsi.inference.tta`).

One vocabulary: ``flip`` (bool, left-right, applied first) and ``turns`` (0..3, counter-clockwise), on the
axes (rows, cols) of an array or a tensor. The original names its test-time transforms with PIL's transposes
(``"FLIP_LEFT_RIGHT"``, ``"ROTATE_90"``); :func:`from_names` reads those names once, where they enter
(``probs_map.py``'s eight (flip, rotate) pairs, :data:`TRANSFORMS`). ``np.rot90`` on (rows, cols) with rows
going down the image is PIL's ``ROTATE_90`` (the original's ``img.rotate(90·k)``), so every orientation here
gives the original's pixels.
"""

import numpy as np

#: The original's eight (flip, rotate) pairs, in the order it computes and sums them (``--eight_avg``).
TRANSFORMS = (
    ("NONE", "NONE"), ("NONE", "ROTATE_90"), ("NONE", "ROTATE_180"), ("NONE", "ROTATE_270"),
    ("FLIP_LEFT_RIGHT", "NONE"), ("FLIP_LEFT_RIGHT", "ROTATE_90"), ("FLIP_LEFT_RIGHT", "ROTATE_180"),
    ("FLIP_LEFT_RIGHT", "ROTATE_270"),
)
FLIPS = ("NONE", "FLIP_LEFT_RIGHT")
ROTATES = ("NONE", "ROTATE_90", "ROTATE_180", "ROTATE_270")
QUARTER_TURNS = {"NONE": 0, "ROTATE_90": 1, "ROTATE_180": 2, "ROTATE_270": 3}


def check_transform(flip, rotate):
    """Raise ValueError unless ``flip`` is in :data:`FLIPS` and ``rotate`` in :data:`ROTATES` (the original's names)."""
    if flip not in FLIPS:
        raise ValueError(f"flip must be one of {FLIPS}, got {flip!r}")
    if rotate not in ROTATES:
        raise ValueError(f"rotate must be one of {ROTATES}, got {rotate!r}")


def from_names(flip, rotate):
    """The original's PIL names as ``(flip, turns)``: ``("FLIP_LEFT_RIGHT", "ROTATE_90")`` → ``(True, 1)``."""
    check_transform(flip, rotate)
    return flip == "FLIP_LEFT_RIGHT", QUARTER_TURNS[rotate]


def orient(image, flip=False, turns=0, axes=(0, 1)):
    """``image`` flipped left-right (when ``flip``), then turned ``turns`` quarter turns counter-clockwise.

    Parameters
    ----------
    image : ndarray or torch.Tensor
        Any array whose ``axes`` are (rows, cols), rows going down the image: an ``[S, S, 3]`` image, a ``[P, P]``
        label grid (``axes=(0, 1)``), a batch of patches ``[N, C, H, W]`` (``axes=(2, 3)`` or ``(-2, -1)``).
    flip : bool
        Mirror the columns first (PIL's ``FLIP_LEFT_RIGHT``).
    turns : int
        Quarter turns counter-clockwise (PIL's ``ROTATE_90`` per turn); any integer, taken modulo 4.

    Returns an array (a NumPy view) or tensor of the same kind; the input itself when nothing is to be done.
    """
    turns = int(turns) % 4
    if isinstance(image, np.ndarray):
        if flip:
            image = np.flip(image, axis=axes[1])
        return np.rot90(image, turns, axes=axes) if turns else image
    if flip:  # a torch.Tensor (not imported here: the bottom of the package does without torch)
        image = image.flip(dims=(axes[1],))
    return image.rot90(turns, dims=axes) if turns else image


__all__ = ["FLIPS", "QUARTER_TURNS", "ROTATES", "TRANSFORMS", "check_transform", "from_names", "orient"]
