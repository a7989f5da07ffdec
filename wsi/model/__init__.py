"""Models: ``MODELS[name](num_classes=1, num_nodes=1, use_crf=True)`` keyed by the config's ``"model"``.

:func:`build_model` builds the network a config describes; :mod:`wsi.model.checkpoint` saves and loads weights
(ours and the original NCRF's ``ckpt/*.ckpt``).
"""

from wsi.model.build import MODELS, build_model, grid_size
from wsi.model.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_model,
    load_model_state,
    save_checkpoint,
)
from wsi.model.layers import CRF
from wsi.model.resnet import ResNetGrid

__all__ = [
    "CRF",
    "MODELS",
    "CheckpointError",
    "ResNetGrid",
    "build_model",
    "grid_size",
    "load_checkpoint",
    "load_model",
    "load_model_state",
    "save_checkpoint",
]
