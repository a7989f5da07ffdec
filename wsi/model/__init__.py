"""Models: ``MODELS[name](num_classes=1, num_nodes=1, use_crf=True)`` keyed by the config's ``"model"``.

:func:`build_model` builds the network a config describes; :mod:`wsi.model.checkpoint` saves and loads weights
(ours and the original NCRF's ``ckpt/*.ckpt``); :func:`inference_model` gives the :class:`InferencePass` of an
eval copy, a cheaper, exact CNN pass (BatchNorm folded, channels_last, or on OpenVINO: :mod:`wsi.model.runtime`)
for inference and validation.
"""

from wsi.model.build import MODELS, build_model, grid_size
from wsi.model.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_model,
    load_model_state,
    save_checkpoint,
)
from wsi.model.inference import InferencePass, PassOptions, fold_batchnorm, inference_model
from wsi.model.layers import CRF
from wsi.model.resnet import ResNetGrid

__all__ = [
    "CRF",
    "MODELS",
    "CheckpointError",
    "InferencePass",
    "PassOptions",
    "ResNetGrid",
    "build_model",
    "fold_batchnorm",
    "grid_size",
    "inference_model",
    "load_checkpoint",
    "load_model",
    "load_model_state",
    "save_checkpoint",
]
