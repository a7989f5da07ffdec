"""The CNN pass of inference: an explicit :class:`InferencePass`, made once by :func:`inference_model`.

:func:`inference_model` builds the pass from an eval-mode *copy* of a :class:`~wsi.model.resnet.ResNetGrid`,
BatchNorm folded into the convolutions and the weights in channels_last layout; the model it is given (whose
``state_dict`` checkpoints save and load) is left as it is. The pass says what runs (``embed``, its device, the
memory layout its patches need, the runtime), so no caller reads attributes back from the network. Measured on the shared
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
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from wsi.model.runtime import RuntimeUnavailable, resolve_runtime, runtime_embed

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


@dataclass(frozen=True, eq=False)
class InferencePass:
    """What inference runs a grid's patches through.

    Attributes
    ----------
    network : ResNetGrid
        The eval network (a folded copy, or the model as loaded); its :meth:`~ResNetGrid.grid_logits` runs the CRF.
    embed : callable
        The backbone: patches ``[N, 3, C, C]`` → (embeddings ``[N, D]``, logits ``[N]``); the network's own, its
        ``torch.compile``, or a CPU runtime's (:func:`wsi.model.runtime.runtime_embed`).
    device : torch.device
        Where ``embed`` takes its patches.
    channels_last : bool
        The memory layout ``embed`` wants its patches in (:meth:`as_input`).
    runtime : str
        ``torch``, or the CPU runtime that runs ``embed`` (``openvino``).
    folded, compiled : bool
        BatchNorm folded into the convolutions; ``embed`` wrapped in ``torch.compile``.
    """

    network: nn.Module
    embed: Callable
    device: torch.device
    channels_last: bool = False
    runtime: str = "torch"
    folded: bool = False
    compiled: bool = False

    @classmethod
    def of(cls, model):
        """``model`` as a pass: itself when it is one, else the module as it is (its own ``embed`` on its
        device, the ordinary layout, PyTorch)."""
        if isinstance(model, cls):
            return model
        return cls(model, model.embed, next(model.parameters()).device)

    @property
    def use_crf(self):
        return self.network.crf is not None

    @property
    def crf_nodes(self):
        """Patches per grid the CRF was made for, or None without a CRF."""
        return self.network.crf.num_nodes if self.network.crf is not None else None

    @property
    def feat_dim(self):
        """D, the length of an embedding."""
        return self.network.fc.in_features

    def as_input(self, patches):
        """``patches`` ``[N, 3, C, C]`` in the memory layout :attr:`embed` expects."""
        if self.channels_last:
            return patches.contiguous(memory_format=torch.channels_last)
        return patches.contiguous()

    def grid_logits(self, feats, logits):
        """The CRF (when present) on grids: ``[B, G, D]`` embeddings and ``[B, G]`` logits → ``[B, G]``."""
        return self.network.grid_logits(feats, logits)

    def __call__(self, grids):
        """``grids`` ``[B, G, 3, C, C]`` → logits ``[B, G]``, as ``network(grids)`` with :attr:`embed`."""
        batch, nodes = grids.shape[:2]
        feats, logits = self.embed(grids.flatten(0, 1))
        return self.grid_logits(feats.reshape(batch, nodes, -1), logits.reshape(batch, nodes))

    def describe(self):
        """What runs, in words: ``BatchNorm folded, channels_last``, ``BatchNorm folded, openvino float32``, ..."""
        if self.runtime != "torch":
            return f"BatchNorm folded, {self.runtime} float32"
        if not (self.folded or self.channels_last or self.compiled):
            return "as loaded"
        return ", ".join(["BatchNorm folded"] * self.folded + ["channels_last"] * self.channels_last
                         + ["torch.compile"] * self.compiled)


@dataclass(frozen=True)
class PassOptions:
    """How :func:`inference_model` builds the pass; :meth:`resolve` decides the runtime, once, before any work.

    ``optimize``: BatchNorm folded and channels_last (False with ``compile`` False: the network as loaded);
    ``compile``: ``torch.compile``; ``runtime``: ``torch`` or a CPU runtime (``openvino``), never ``auto`` here;
    ``fallback``: when that runtime cannot run (:class:`~wsi.model.runtime.RuntimeUnavailable`), log one line and
    use PyTorch's pass instead of raising; ``threads``: the CPU runtime's threads (default: torch's).
    """

    optimize: bool = True
    compile: bool = False
    runtime: str = "torch"
    fallback: bool = False
    threads: int | None = None

    @classmethod
    def resolve(cls, device, *, runtime="auto", optimize=True, compile=False, amp=False, threads=None):
        """The options for a pass on ``device``, the runtime asked (``auto``, ``torch``, ``openvino``) resolved by
        :func:`~wsi.model.runtime.resolve_runtime` (a :class:`~wsi.errors.ParameterError` for one it cannot run
        with these settings); ``auto`` falls back to PyTorch's pass where the CPU runtime then cannot run."""
        resolved = resolve_runtime(runtime, device, amp=amp, compile=compile, optimize=optimize)
        return cls(optimize=optimize, compile=compile, runtime=resolved, fallback=runtime == "auto",
                   threads=threads)


def inference_model(model, options=None, *, crop=None, fold_bn=True, channels_last=True, **fields):
    """The :class:`InferencePass` of ``model`` (a ResNetGrid): an eval copy whose CNN pass is cheaper and gives the
    same numbers.

    Parameters
    ----------
    model : ResNetGrid
        Left unchanged (its ``state_dict`` is what checkpoints hold).
    options : PassOptions, optional
        Default ``PassOptions()`` (PyTorch, folded, channels_last); keyword ``fields`` of :class:`PassOptions`
        (``compile``, ``runtime``, ``fallback``, ``threads``, ``optimize``) replace its fields. With ``optimize``
        and ``compile`` False, the pass runs ``model`` as it is (no copy).
    crop : int
        The patches' side; needed by a CPU runtime, which runs ``[N, 3, crop, crop]`` patches
        (:func:`wsi.model.runtime.runtime_embed`; the patches are then given in the ordinary layout).
    fold_bn : bool
        Fold BatchNorm into the convolutions (:func:`fold_batchnorm`).
    channels_last : bool
        Weights in channels_last (NHWC) layout; the pass's :meth:`~InferencePass.as_input` lays patches out so.

    With ``compile``, ``embed`` is wrapped in ``torch.compile`` (compiled on the first call; the time it took is
    logged then). The pass runs on ``model``'s device; ``embed``, ``grid_logits`` and a call on grids keep the
    network's signatures and shapes.
    """
    options = replace(options or PassOptions(), **fields)
    if not (options.optimize or options.compile):
        return InferencePass.of(model)
    fast = copy.deepcopy(model).eval()
    if fold_bn:
        fold_batchnorm(fast)
    for parameter in fast.parameters():
        parameter.requires_grad_(False)
    device = next(fast.parameters()).device
    if options.runtime != "torch":
        if crop is None:
            raise ValueError("inference_model: a CPU runtime needs the crop size")
        try:
            embed = runtime_embed(fast, options.runtime, crop, threads=options.threads)
        except RuntimeUnavailable as err:
            if not options.fallback:
                raise
            logger.warning("%s; using PyTorch's folded channels_last pass instead", err)
        else:
            return InferencePass(fast, embed, device, runtime=options.runtime, folded=fold_bn)
    if channels_last:
        fast = fast.to(memory_format=torch.channels_last)
    embed = _compiled(fast.embed) if options.compile else fast.embed
    return InferencePass(fast, embed, device, channels_last=channels_last, folded=fold_bn,
                         compiled=options.compile)


def _compiled(eager_embed):
    """``torch.compile`` of ``eager_embed``; the first call (the compilation) is timed and logged."""
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

    return embed
