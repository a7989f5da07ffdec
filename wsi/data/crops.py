"""The network's input: a grid image cut into its cells' crops, and the original's pixel scaling.

The one home of both steps, used by the training datasets (per item, :func:`~wsi.data.image_producer.make_grid`,
and batched on the device, :func:`~wsi.data.grid_augment.augment_grids`), the faithful mode's dataset
(:class:`~wsi.data.wsi_producer.GridWSIPatchDataset`) and the fast mode's patches (:mod:`wsi.inference.fast`):

- :func:`normalize`: ``(x − 128) / 128`` in float32, the original's scaling of 8-bit pixels to about [−1, 1];
- :func:`crop_grid`: crop ``i = row·P + col`` of a ``P × P`` grid starts at ``(offset[row], offset[col])``,
  ``offset[k] = int((k + 0.5)·patch_size − crop_size / 2)`` (:meth:`~wsi.geometry.GridSpec.crop_offsets`).

Both work on NumPy arrays and torch tensors alike, so every path computes the same float32 values.
"""

import numpy as np
import torch

#: The original's scaling: ``(x − PIXEL_CENTRE) / PIXEL_CENTRE``.
PIXEL_CENTRE = 128.0


def normalize(pixels):
    """``(pixels − 128) / 128``: float32 pixels (array or tensor holding 0..255) scaled as the original's input."""
    return (pixels - PIXEL_CENTRE) / PIXEL_CENTRE


def crop_grid(images, grid):
    """The crops of every cell of grid images ``[..., 3, S, S]`` (rows = y), ``S = grid.image_size``.

    Returns ``[..., G, 3, C, C]`` (a new array or tensor), ``G = grid.num_nodes`` crops in row-major order
    (crop ``i = row·P + col``), ``C = grid.crop_size``; ``grid`` is a :class:`~wsi.geometry.GridSpec`.
    """
    crop, offsets = grid.crop_size, grid.crop_offsets()
    crops = [images[..., r:r + crop, c:c + crop] for r in offsets for c in offsets]
    axis = images.ndim - 3
    if isinstance(images, torch.Tensor):
        return torch.stack(crops, dim=axis)
    return np.stack(crops, axis=axis)


__all__ = ["PIXEL_CENTRE", "crop_grid", "normalize"]
