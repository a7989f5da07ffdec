"""Models: ``MODELS[name](num_classes=1, num_nodes=1, use_crf=True)`` keyed by the config's ``"model"``."""

from wsi.model.layers import CRF
from wsi.model.resnet import ResNetGrid, resnet18, resnet34, resnet50, resnet101, resnet152

MODELS = {
    "resnet18": resnet18,
    "resnet34": resnet34,
    "resnet50": resnet50,
    "resnet101": resnet101,
    "resnet152": resnet152,
}

__all__ = ["CRF", "MODELS", "ResNetGrid"]
