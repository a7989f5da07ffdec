"""What TensorBoard shows of a training run beyond the original's four scalars.

- :mod:`~wsi.monitor.board`: :class:`TrainingBoard`, the tensorboardX writer ``train.py`` opens: learning rate,
  speed and data wait, the CRF's W, augmented grids, the validation PR curve, centre against border cells,
  the config and hparams.
- :mod:`~wsi.monitor.images`: the pictures it logs (grids with their labels, heatmaps).
- :mod:`~wsi.monitor.slide_preview`: ``--tb_slide``, the probability map of a slide region at each validation,
  by the fast inference path.

This package sits above :mod:`wsi.inference` and :mod:`wsi.model` and below :mod:`wsi.bin` (only ``train.py``
imports it).
"""

from wsi.monitor.board import ORIGINAL_TAGS, TrainingBoard, hparams_of, read_scalars
from wsi.monitor.slide_preview import SlidePreview, parse_region

__all__ = ["ORIGINAL_TAGS", "SlidePreview", "TrainingBoard", "hparams_of", "parse_region", "read_scalars"]
