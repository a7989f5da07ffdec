"""A cheaper exact CNN pass for inference: BatchNorm folded into the convolutions, channels_last layout.

:func:`inference_model` returns an eval-mode *copy* of a :class:`~wsi.model.resnet.ResNetGrid` for inference; the
model it is given (whose ``state_dict`` checkpoints save and load) is left as it is. Measured on the shared
2-core CPU (``bench/model_throughput.py``, ResNet-18 at 224): channels_last alone 1.15–1.6× eager float32 (oneDNN's
NHWC convolutions), with each BatchNorm folded into the convolution before it (20 fewer passes over the
activations) 2.06× in the same run. Both are exact in float32 up to summation order (~1e-6 on the logits,
≤ 1e-5 on the map). ``torch.compile`` is optional (``compile=True``): no faster than this at 224 in our run and
25–45 s of start-up, so worth trying only for many slides; ``torch.jit.freeze`` was slower at 224 (see
docs/probs_map.md, "The CNN pass"). ``runtime="openvino"`` runs the folded backbone on OpenVINO instead
(:mod:`wsi.model.runtime`; 1.16–1.18× this pass on the same CPU, float32), which ``probs_map.py`` does by default
on a CPU.
"""

import copy
import logging
import time

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from wsi.model.runtime import RuntimeUnavailable, runtime_embed

logger = logging.getLogger(__name__)


def _fold_pair(parent, conv_name, bn_name):
    conv, bn = getattr(parent, conv_name), getattr(parent, bn_name)
    if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
        setattr(parent, conv_name, fuse_conv_bn_eval(conv, bn))
        setattr(parent, bn_name, nn.Identity())
        return 1
    return 0


def fold_batchnorm(model):
    """Fold every BatchNorm of a torchvision ResNet (eval mode) into the convolution before it, in place.

    Pairs: the stem's ``conv1``/``bn1``, each block's ``convK``/``bnK`` and ``downsample[0]``/``downsample[1]``;
    the folding itself is PyTorch's :func:`torch.nn.utils.fusion.fuse_conv_bn_eval` (the BN becomes
    :class:`~torch.nn.Identity`). Returns ``model``; the number of pairs folded is in ``model.folded_batchnorms``.
    """
    if model.training:
        raise ValueError("fold_batchnorm needs a model in eval mode (running statistics)")
    folded = 0
    for module in model.modules():
        for k in (1, 2, 3):
            if hasattr(module, f"conv{k}") and hasattr(module, f"bn{k}"):
                folded += _fold_pair(module, f"conv{k}", f"bn{k}")
        downsample = getattr(module, "downsample", None)
        if isinstance(downsample, nn.Sequential) and len(downsample) == 2:
            folded += _fold_pair(downsample, "0", "1")
    model.folded_batchnorms = folded
    return model


class _CompiledEmbed(nn.Module):
    """Holds ``torch.compile(model.embed)`` so that :meth:`ResNetGrid.embed` callers need not know."""

    def __init__(self, embed):
        super().__init__()
        self.fn = torch.compile(embed, dynamic=False)

    def forward(self, patches):
        return self.fn(patches)


def inference_model(model, *, fold_bn=True, channels_last=True, compile=False, runtime="torch", crop=None,
                    threads=None, fallback=False):
    """An eval-mode copy of ``model`` (a ResNetGrid) whose CNN pass is cheaper and gives the same numbers.

    Parameters
    ----------
    model : ResNetGrid
        Left unchanged (its ``state_dict`` is what checkpoints hold).
    fold_bn : bool
        Fold BatchNorm into the convolutions (:func:`fold_batchnorm`).
    channels_last : bool
        Weights in channels_last (NHWC) layout; feed patches ``[N, 3, C, C]`` through :func:`as_input`.
    compile : bool
        Wrap :meth:`embed` in ``torch.compile`` (compiled on the first call; the time it took is logged then).
    runtime : str
        ``torch``, or a CPU inference runtime (``openvino``) that then runs :meth:`embed` for
        ``[N, 3, crop, crop]`` patches with ``threads`` threads (:func:`wsi.model.runtime.runtime_embed`; the
        patches are then given in the ordinary layout).
    fallback : bool
        When the CPU runtime cannot run (:class:`~wsi.model.runtime.RuntimeUnavailable`: not importable, its
        telemetry live, a failed conversion), log one line and use PyTorch's pass (below) instead of raising.

    Returns the copy, on ``model``'s device, with ``channels_last`` set as an attribute. ``embed``, ``forward``
    and ``grid_logits`` keep their signatures and shapes.
    """
    fast = copy.deepcopy(model).eval()
    if fold_bn:
        fold_batchnorm(fast)
    for parameter in fast.parameters():
        parameter.requires_grad_(False)
    if runtime != "torch":
        if crop is None:
            raise ValueError("inference_model: a CPU runtime needs the crop size")
        try:
            fast.embed = runtime_embed(fast, runtime, crop, threads=threads)
        except RuntimeUnavailable as err:
            if not fallback:
                raise
            logger.warning("%s; using PyTorch's folded channels_last pass instead", err)
        else:
            fast.channels_last = False
            fast.runtime = runtime
            return fast
    fast.runtime = "torch"
    if channels_last:
        fast = fast.to(memory_format=torch.channels_last)
    fast.channels_last = channels_last
    if compile:
        eager_embed = fast.embed
        compiled = _CompiledEmbed(eager_embed)
        state = {"first": True}

        def embed(patches):
            if state["first"]:
                start = time.perf_counter()
                out = compiled(patches)
                logger.info("torch.compile: first call (compilation) took %.1f s", time.perf_counter() - start)
                state["first"] = False
                return out
            return compiled(patches)

        fast.embed = embed
    return fast


def as_input(model, patches):
    """``patches`` ``[N, 3, C, C]`` in the memory layout ``model`` expects (channels_last when it was made so)."""
    if getattr(model, "channels_last", False):
        return patches.contiguous(memory_format=torch.channels_last)
    return patches.contiguous()
