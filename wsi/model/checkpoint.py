"""Checkpoints: ours (resumable) and the original NCRF's ``ckpt/*.ckpt``, loaded as they are.

A checkpoint is a ``torch.save``-d dict. The original's ``train.py`` writes ``{'epoch', 'step', 'state_dict'}``
with PyTorch 0.3.1, i.e. the legacy (pre-zip) serialization, BatchNorm layers without ``num_batches_tracked`` and
keys without a ``module.`` prefix (it saves ``model.module.state_dict()``). Ours add what resuming needs::

    {'epoch': int,             # completed epochs, 1-based (as the original)
     'step': int,              # cumulative training steps (as the original)
     'state_dict': OrderedDict,  # no 'module.' prefix, with num_batches_tracked
     'optimizer': dict | None, # optimizer.state_dict()
     'best_valid_loss': float | None,
     'cfg': dict | None,       # the training config
     ...}                      # any extra keys given to save_checkpoint

Both load with ``weights_only=True``: no code stored in a checkpoint runs. A file that needs any other object (a
pickled class, a function) is refused in one line naming the object's type; only ``trust=True`` (the scripts'
``--trust_checkpoint``, for a file the user trusts) unpickles it fully.
"""

import argparse
import logging
import os
import pickle
import re
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from wsi.errors import CheckpointError, ParameterError
from wsi.fileio import atomic_path, check_not_inputs, remove_stale_temporaries
from wsi.model.build import build_model

logger = logging.getLogger(__name__)

# Prefixes that wrappers add to parameter names: DataParallel/DDP (`module.`, the original's checkpoints could
# carry it when saved from the wrapper) and torch.compile (`_orig_mod.`).
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
_BN_COUNTER = "num_batches_tracked"
# At most this many key names in a mismatch message, so that it stays one readable line.
_MAX_KEYS_SHOWN = 6


def unwrap_model(model):
    """The bare model inside DataParallel/DDP (``.module``) and ``torch.compile`` (``._orig_mod``) wrappers."""
    while True:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if not isinstance(inner, torch.nn.Module):
            return model
        model = inner


def strip_prefixes(state_dict):
    """A copy of ``state_dict`` with the ``module.`` (and ``_orig_mod.``) prefixes of wrapped models removed."""
    out = OrderedDict()
    for key, value in state_dict.items():
        changed = True
        while changed:
            changed = False
            for prefix in _WRAPPER_PREFIXES:
                if key.startswith(prefix):
                    key, changed = key[len(prefix) :], True
        out[key] = value
    return out


def _plain(value):
    """``value`` with the types that ``weights_only`` loading rejects turned into plain Python ones.

    An ``argparse.Namespace`` becomes a dict, a path a string and a NumPy scalar or array a Python number or a
    tensor, so that our checkpoints always load with ``weights_only=True``.
    """
    if isinstance(value, argparse.Namespace):
        value = vars(value)
    if isinstance(value, dict):
        items = ((key, _plain(item)) for key, item in value.items())
        return OrderedDict(items) if isinstance(value, OrderedDict) else dict(items)
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    return value


def save_checkpoint(path, model, *, epoch, step, optimizer=None, best_valid_loss=None, cfg=None, **extra):
    """Save a checkpoint atomically (the file appears complete or not at all).

    Parameters
    ----------
    path : str or Path
        Output file (e.g. ``<save_path>/train.ckpt`` or ``best.ckpt``); its folder is created.
    model : nn.Module
        The model; a DataParallel/DDP/``torch.compile`` wrapper is unwrapped, so keys carry no ``module.``.
    epoch, step : int
        Completed epochs and cumulative training steps, as the original stores them.
    optimizer : torch.optim.Optimizer, optional
        Its ``state_dict()`` is stored under ``'optimizer'`` (None otherwise).
    best_valid_loss : float, optional
    cfg : dict, optional
        The training config.
    **extra
        More entries (e.g. ``lr_scheduler``, ``args``); keep them plain data (dicts, lists, numbers, strings,
        tensors). Namespaces, paths and NumPy values are converted.

    Returns the path written.
    """
    state = {
        "epoch": int(epoch),
        "step": int(step),
        "state_dict": unwrap_model(model).state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "best_valid_loss": None if best_valid_loss is None else float(best_valid_loss),
        "cfg": _plain(cfg),
    }
    state.update({key: _plain(value) for key, value in extra.items()})
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return path


#: What train.py writes in SAVE_PATH and a new run would replace.
RUN_CHECKPOINTS = ("train.ckpt", "best.ckpt")


def check_save_folder(save_path, cfg_path, *, resume=False, overwrite=False, rewrites_cfg=False):
    """Check train.py's SAVE_PATH before a run; removes the temporaries of interrupted runs there.

    A folder holding a checkpoint (a finished or interrupted run) is refused unless ``resume`` (continue it) or
    ``overwrite`` (replace it), one line naming both options. The config CFG may be SAVE_PATH/cfg.json only
    when the run writes it back unchanged (not ``rewrites_cfg``, i.e. no ``--epochs``). Raises
    :class:`CheckpointError` or :class:`~wsi.errors.OutputError`.
    """
    save_path = Path(save_path)
    if resume and overwrite:
        raise ParameterError("{resume} continues the run in SAVE_PATH and {overwrite} replaces it: give one")
    found = [name for name in RUN_CHECKPOINTS if (save_path / name).exists()]
    if found and not (resume or overwrite):
        raise ParameterError(f"{save_path / found[0]}: SAVE_PATH holds a run; give {{resume}} to continue it or "
                             f"{{overwrite}} to replace it")
    if rewrites_cfg:
        check_not_inputs([save_path / "cfg.json"], [cfg_path])
    for path in remove_stale_temporaries(save_path):  # a run killed with kill -9 left them (keeps live runs')
        logger.info("removed %s, left by an interrupted run", path)


def _first_line(err):
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text and text[0] else type(err).__name__


def _is_state_dict(obj):
    return isinstance(obj, dict) and len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    )


#: The option of the scripts that loads a checkpoint needing more than weights (named in the refusal).
TRUST_OPTION = "--trust_checkpoint"
# torch's weights-only unpickler names the object it refused as "GLOBAL module.name".
_REFUSED_GLOBAL = re.compile(r"GLOBAL ([A-Za-z_][\w.]*)")


def _refused_object(err):
    """The type the weights-only unpickler refused, from its error message (``posix.system``,
    ``argparse.Namespace``), or a description when the message names none."""
    match = _REFUSED_GLOBAL.search(str(err))
    return match.group(1) if match else "an object other than tensors and plain data"


def load_checkpoint(path, map_location="cpu", trust=False):
    """Load a checkpoint: ours, the original NCRF's (PyTorch 0.3 legacy format) or a bare state_dict.

    Parameters
    ----------
    path : str or Path
    map_location : str, torch.device or callable
        Where tensors go (default CPU, so a checkpoint saved on a GPU loads anywhere).
    trust : bool
        False (default): weights-only unpickling, always; a file that needs any other object (a class, a
        function: what a pickle runs code with) is refused with :class:`CheckpointError` naming the object's type
        and ``--trust_checkpoint``. True: full unpickling, for a file the user trusts (the scripts'
        ``--trust_checkpoint``); it can run code stored in the file.

    Returns a dict with at least ``'state_dict'`` (keys without ``module.``); a bare state_dict is returned as
    ``{'state_dict': ...}``. Other entries are kept as stored.

    Raises :class:`CheckpointError` (one line naming the file) when the file is missing or unreadable, needs more
    than weights-only loading allows (without ``trust``) or holds no state_dict.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if not path.is_file():
        raise CheckpointError(f"{path}: not a checkpoint file (it is a folder)")
    if trust:
        logger.warning("%s: loading with full unpickling (%s): code stored in the file can run", path, TRUST_OPTION)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=not trust)
    except pickle.UnpicklingError as err:
        if trust or "Weights only load failed" not in str(err):
            raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({_first_line(err)})") from None
        # The weights-only unpickler allows tensors, storages, dicts, OrderedDict, numbers and strings: all that
        # the original's checkpoints and ours hold. Anything else is how a pickle runs code: never load it unasked.
        raise CheckpointError(f"{path}: holds a {_refused_object(err)} object, which weights-only loading refuses "
                              f"(no code runs from a checkpoint); give {TRUST_OPTION} only for a file you "
                              f"trust") from None
    except Exception as err:  # torch.load raises many types (EOFError, KeyError, RuntimeError...) for bad files
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({_first_line(err)})") from None

    if isinstance(ckpt, dict) and "state_dict" in ckpt:
        ckpt = dict(ckpt)
    elif _is_state_dict(ckpt):
        ckpt = {"state_dict": ckpt}
    else:
        if isinstance(ckpt, dict):
            got = f"a dict with keys {sorted(map(str, ckpt))[:_MAX_KEYS_SHOWN]}"
        else:
            got = type(ckpt).__name__
        raise CheckpointError(f"{path}: no 'state_dict' in the checkpoint (found {got})")
    if not _is_state_dict(ckpt["state_dict"]):
        raise CheckpointError(f"{path}: 'state_dict' is not a mapping of parameter names to tensors")
    ckpt["state_dict"] = strip_prefixes(ckpt["state_dict"])
    return ckpt


def _show_keys(keys):
    keys = sorted(keys)
    shown = ", ".join(keys[:_MAX_KEYS_SHOWN])
    return shown + (f", ... ({len(keys) - _MAX_KEYS_SHOWN} more)" if len(keys) > _MAX_KEYS_SHOWN else "")


def _shape(tensor):
    return "[" + ",".join(str(n) for n in tensor.shape) + "]"


def load_model_state(model, state_dict, source="the checkpoint"):
    """Copy ``state_dict`` into ``model`` strictly, accepting the original NCRF's checkpoints as they are.

    ``module.`` prefixes are stripped and missing BatchNorm ``num_batches_tracked`` counters (absent from
    PyTorch 0.3 checkpoints) are set to 0; any other difference raises :class:`CheckpointError` with one line
    naming ``source`` and listing the missing, unexpected and mis-shaped keys. A CRF in the checkpoint but not in
    the model (or the reverse) is said in those words.
    """
    model = unwrap_model(model)
    state_dict = strip_prefixes(state_dict)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict and not k.endswith(_BN_COUNTER)]
    unexpected = [k for k in state_dict if k not in expected]
    mis_shaped = [k for k in expected if k in state_dict and state_dict[k].shape != expected[k].shape]

    problems = []
    use_crf = getattr(model, "crf", None) is not None
    if "crf.W" in unexpected and not use_crf:
        problems.append(f"{source} has a CRF layer (crf.W) but the config has use_crf: false")
        unexpected.remove("crf.W")
    if "crf.W" in missing and use_crf:
        problems.append(f"{source} has no CRF layer (crf.W) but the config has use_crf: true")
        missing.remove("crf.W")
    if "crf.W" in mis_shaped:
        mis_shaped.remove("crf.W")
        problems.append(
            f"crf.W is {_shape(state_dict['crf.W'])} in {source} but {_shape(expected['crf.W'])} in the model "
            f"(num_nodes {model.crf.num_nodes}, from image_size and patch_size)"
        )
    if mis_shaped:
        problems.append(
            "shape mismatch: "
            + ", ".join(f"{k} {_shape(state_dict[k])} vs {_shape(expected[k])}" for k in mis_shaped[:_MAX_KEYS_SHOWN])
            + (f", ... ({len(mis_shaped) - _MAX_KEYS_SHOWN} more)" if len(mis_shaped) > _MAX_KEYS_SHOWN else "")
            + " (checkpoint vs model)"
        )
    if missing:
        problems.append(f"missing keys: {_show_keys(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_show_keys(unexpected)}")
    if problems:
        first = problems[0] if problems[0].startswith(source) else f"{source} does not fit the model: {problems[0]}"
        raise CheckpointError("; ".join([first, *problems[1:]]))

    state_dict = OrderedDict(state_dict)
    for key, value in expected.items():
        if key.endswith(_BN_COUNTER) and key not in state_dict:
            # PyTorch 0.3 had no BatchNorm step counter; it only matters for momentum=None, unused here.
            state_dict[key] = torch.zeros_like(value)
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as err:  # e.g. a dtype that cannot be copied; the checks above catch key/shape problems
        raise CheckpointError(f"{source}: {_first_line(err)}") from None
    return model


def load_model(ckpt_path, cfg, device="cpu", source_cfg="the config", trust=False):
    """The model ``cfg`` describes, with the weights of ``ckpt_path``, on ``device``, in eval mode.

    Works for the original NCRF's ``ckpt/resnet18_crf.ckpt`` (with ``configs/resnet18_crf.json``) and
    ``ckpt/resnet18_base.ckpt`` (with ``configs/resnet18_base.json``) as well as ours. Raises
    :class:`CheckpointError` or :class:`~wsi.errors.InputError` with one line when they do not belong together:
    a CRF in one and not the other, another architecture or grid (:func:`load_model_state`), or a checkpoint
    that records a training config with other image, patch or crop sizes than ``cfg``. ``trust``: see
    :func:`load_checkpoint`.
    """
    model = build_model(cfg, source=source_cfg)
    ckpt = load_checkpoint(ckpt_path, map_location="cpu", trust=trust)
    trained = ckpt.get("cfg")
    if isinstance(trained, dict):
        for key in ("image_size", "patch_size", "crop_size"):
            if key in trained and key in cfg and trained[key] != cfg[key]:
                raise CheckpointError(f"{ckpt_path}: trained with {key} {trained[key]} but {source_cfg} has "
                                      f"{key} {cfg[key]}")
    load_model_state(model, ckpt["state_dict"], source=str(ckpt_path))
    return model.to(device).eval()


__all__ = [
    "CheckpointError",
    "TRUST_OPTION",
    "check_save_folder",
    "load_checkpoint",
    "load_model",
    "load_model_state",
    "save_checkpoint",
    "strip_prefixes",
    "unwrap_model",
]
