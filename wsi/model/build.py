"""The networks a config can name: ``MODELS[name](num_nodes=G, use_crf=True)`` keyed by the config's ``"model"``."""

from wsi.constants import MODEL_NAMES
from wsi.errors import InputError
from wsi.geometry import GridSpec
from wsi.model.resnet import resnet18, resnet34, resnet50, resnet101, resnet152

MODELS = dict(zip(MODEL_NAMES, (resnet18, resnet34, resnet50, resnet101, resnet152)))


def grid_size(cfg, source="the config"):
    """Patches per grid, ``(image_size // patch_size) ** 2`` (9 for the original's 768 / 256): the CRF's nodes.

    :meth:`wsi.geometry.GridSpec.nodes_of_config`, the one home of the grid's sizes and their rules: raises
    :class:`~wsi.errors.GeometryError` (an :class:`~wsi.errors.InputError`, one line naming ``source``) when a key
    is missing or ``image_size`` is not a positive multiple of ``patch_size``.
    """
    return GridSpec.nodes_of_config(cfg, source)


def build_model(cfg, num_nodes=None, source="the config"):
    """The network a config describes: ``MODELS[cfg['model']](num_nodes=G, use_crf=cfg['use_crf'])``.

    Parameters
    ----------
    cfg : dict
        A training config (``configs/*.json``); reads ``model``, ``use_crf`` and, unless ``num_nodes`` is given,
        ``image_size`` and ``patch_size``.
    num_nodes : int, optional
        Patches per grid G; default ``(image_size // patch_size) ** 2`` (9 for the original's configs).
    source : str
        How error messages name the config (e.g. its path).

    Returns a freshly initialised :class:`ResNetGrid` (train mode, CPU, float32).
    """
    name = cfg.get("model") if isinstance(cfg, dict) else None
    if name not in MODELS:
        raise InputError(f"{source}: model {name!r} is not one of {', '.join(MODELS)}")
    use_crf = cfg.get("use_crf")
    if not isinstance(use_crf, bool):
        raise InputError(f"{source}: use_crf must be true or false, got {use_crf!r}")
    if num_nodes is None:
        num_nodes = grid_size(cfg, source)
    return MODELS[name](num_nodes=num_nodes, use_crf=use_crf)
