"""Training configs: the original's 16-key JSON, plus optional keys for training straight from the slides.

A config is a JSON object (``configs/resnet18_base.json``, ``configs/resnet18_crf.json``). The original's keys:

========================  =====  ====================================================================
key                       type   meaning
========================  =====  ====================================================================
model                     str    a name in :data:`wsi.model.MODELS` (``"resnet18"``)
use_crf                   bool   add the CRF on top of the ResNet (NCRF) or not (the baseline)
batch_size                int    tumour grids per step per GPU (as many normal grids again)
image_size                int    side of a grid image in level-0 pixels (768)
patch_size                int    side of a grid cell (256); ``image_size % patch_size == 0``
crop_size                 int    side of the crop fed to the CNN from each cell (224), ≤ patch_size
lr, momentum              float  SGD's, constant
data_path_<set>           str    patch folder (``list.txt`` + ``<i>.png``) of set tumor_train,
                                 normal_train, tumor_valid or normal_valid, written by patch_gen
json_path_train/_valid    str    folder of annotation JSONs of the training / validation slides
epoch                     int    epochs to train (20)
log_every                 int    training steps between two tensorboard points (100)
========================  =====  ====================================================================

Optional keys (not in the original; a config without them behaves as the original):

- ``coords_<set>`` (str): a coordinate list of that set, read on the fly from the slides, in place of
  ``data_path_<set>`` (give one of the two per set); the slides are ``<wsi_path_train>/<pid>.tif`` for the
  training sets and ``<wsi_path_valid>/<pid>.tif`` for the validation sets.
- ``wsi_path_train``, ``wsi_path_valid`` (str): the slide folders the ``coords_*`` lists refer to.
- ``label_mode`` (str): ``"positive"`` (default, the original: a cell is tumour when its centre lies inside any
  positive polygon) or ``"positive_not_negative"`` (inside a positive polygon and not inside a negative one,
  the Camelyon16 meaning of exclusion polygons).
- ``lr_schedule`` (str): ``"constant"`` (default, the original: ``lr`` throughout) or ``"cosine"`` (``lr`` decayed
  along half a cosine to 0 at the end of the last epoch, step by step); see :func:`lr_at_step`.
- ``lr_warmup_steps`` (int, default 0): the first steps ramp the learning rate linearly up to ``lr`` (or to the
  schedule's value), ``lr × (step + 1) / lr_warmup_steps``.

Relative paths are relative to the current folder, as in the original.
"""

import difflib
import json
import math
from pathlib import Path

from wsi.constants import DEFAULT_LABEL_MODE, LABEL_MODES, MODEL_NAMES
from wsi.errors import ConfigError
from wsi.geometry import GeometryError, GridSpec
from wsi.fileio import atomic_open

#: The four datasets a training run reads, in the original's order.
DATASETS = ("tumor_train", "normal_train", "tumor_valid", "normal_valid")

#: The original's 16 keys and their types, in the original files' order.
ORIGINAL_KEYS = {
    "model": str,
    "use_crf": bool,
    "batch_size": int,
    "image_size": int,
    "patch_size": int,
    "crop_size": int,
    "lr": float,
    "momentum": float,
    "data_path_tumor_train": str,
    "data_path_normal_train": str,
    "data_path_tumor_valid": str,
    "data_path_normal_valid": str,
    "json_path_train": str,
    "json_path_valid": str,
    "epoch": int,
    "log_every": int,
}

#: Keys added by this implementation; all optional.
OPTIONAL_KEYS = {
    "wsi_path_train": str,
    "wsi_path_valid": str,
    **{f"coords_{name}": str for name in DATASETS},
    "label_mode": str,
    "lr_schedule": str,
    "lr_warmup_steps": int,
}

#: The values of the optional key ``lr_schedule``; ``"constant"`` is the original's.
LR_SCHEDULES = ("constant", "cosine")


_TYPE_NAMES = {str: "a string", bool: "true or false", int: "an integer", float: "a number"}


def _check_type(path, key, value, kind):
    # bool is a subclass of int in Python: reject true/false where a number is expected, and numbers for bools.
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    else:
        ok = isinstance(value, str) and value != ""
    if not ok:
        what = "a non-empty string" if kind is str else _TYPE_NAMES[kind]
        raise ConfigError(f"{path}: key {key!r} must be {what}, got {json.dumps(value)}")


def _split(name):
    """'tumor_train' -> 'train'."""
    return name.rsplit("_", 1)[1]


def dataset_source(cfg, name):
    """Where dataset ``name`` (one of :data:`DATASETS`) comes from.

    Returns ``{"kind": "patches", "data_path": ..., "json_path": ...}`` for a patch folder written by patch_gen,
    or ``{"kind": "slides", "coords_path": ..., "wsi_path": ..., "json_path": ...}`` for grids read on the fly.
    """
    split = _split(name)
    json_path = cfg[f"json_path_{split}"]
    if f"coords_{name}" in cfg:
        return {"kind": "slides", "coords_path": cfg[f"coords_{name}"], "wsi_path": cfg[f"wsi_path_{split}"],
                "json_path": json_path}
    return {"kind": "patches", "data_path": cfg[f"data_path_{name}"], "json_path": json_path}


def label_mode(cfg):
    """The config's ``label_mode``, ``"positive"`` (the original's rule) when absent."""
    return cfg.get("label_mode", DEFAULT_LABEL_MODE)


def lr_at_step(cfg, step, total_steps):
    """The learning rate of training step ``step`` (0-based, global) of ``total_steps`` in all, from ``lr``,
    ``lr_schedule`` and ``lr_warmup_steps``; the original's constant ``lr`` when those keys are absent. A function
    of the step alone, so that a resumed run continues on the same curve."""
    lr, warmup = cfg["lr"], cfg.get("lr_warmup_steps", 0)
    if cfg.get("lr_schedule", "constant") == "cosine":
        progress = min(1.0, max(0, step - warmup) / max(1, total_steps - warmup))
        lr *= 0.5 * (1 + math.cos(math.pi * progress))
    if step < warmup:
        lr *= (step + 1) / warmup
    return lr


def validate_config(cfg, path="config", check_paths=False):
    """Check a config dict; raise :class:`ConfigError` (one line naming ``path`` and the key) at the first problem.

    ``check_paths`` also checks that the data folders, coordinate lists, annotation folders and slide folders
    exist (training needs them; inference reads only the model keys).
    """
    if not isinstance(cfg, dict):
        raise ConfigError(f"{path}: expected a JSON object of settings, got {type(cfg).__name__}")
    known = {**ORIGINAL_KEYS, **OPTIONAL_KEYS}
    for key in cfg:
        if key not in known:
            close = difflib.get_close_matches(key, list(known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{path}: unknown key {key!r}{hint}")
    for key, kind in known.items():
        if key in cfg:
            _check_type(path, key, cfg[key], kind)

    # Each dataset comes from a patch folder (the original) or a coordinate list read from the slides.
    for name in DATASETS:
        data_key, coords_key, wsi_key = f"data_path_{name}", f"coords_{name}", f"wsi_path_{_split(name)}"
        if data_key in cfg and coords_key in cfg:
            raise ConfigError(f"{path}: give either {data_key!r} (patch folder) or {coords_key!r} (coordinate list "
                              f"read from the slides), not both")
        if coords_key in cfg and wsi_key not in cfg:
            raise ConfigError(f"{path}: missing key {wsi_key!r}, the slide folder that {coords_key!r} refers to")
    for key in ORIGINAL_KEYS:
        if key not in cfg and not (key.startswith("data_path_") and f"coords_{key[len('data_path_'):]}" in cfg):
            raise ConfigError(f"{path}: missing key {key!r}")

    if cfg["model"] not in MODEL_NAMES:
        raise ConfigError(f"{path}: key 'model' is {cfg['model']!r}, expected one of {sorted(MODEL_NAMES)}")
    for key in ("batch_size", "image_size", "patch_size", "crop_size", "epoch", "log_every"):
        if cfg[key] < 1:
            raise ConfigError(f"{path}: key {key!r} must be at least 1, got {cfg[key]}")
    try:
        GridSpec.from_config(cfg, source=path)  # image_size a multiple of patch_size, crop_size <= patch_size
    except GeometryError as err:
        raise ConfigError(str(err)) from None
    if not cfg["lr"] > 0:
        raise ConfigError(f"{path}: key 'lr' must be positive, got {cfg['lr']}")
    if not cfg["momentum"] >= 0:
        raise ConfigError(f"{path}: key 'momentum' must be at least 0, got {cfg['momentum']}")
    if cfg.get("lr_schedule", "constant") not in LR_SCHEDULES:
        raise ConfigError(f"{path}: key 'lr_schedule' is {cfg['lr_schedule']!r}, expected one of {list(LR_SCHEDULES)}")
    if cfg.get("lr_warmup_steps", 0) < 0:
        raise ConfigError(f"{path}: key 'lr_warmup_steps' must be at least 0, got {cfg['lr_warmup_steps']}")
    if label_mode(cfg) not in LABEL_MODES:
        raise ConfigError(f"{path}: key 'label_mode' is {cfg['label_mode']!r}, expected one of {list(LABEL_MODES)}")

    if check_paths:
        check_config_paths(cfg, path)
    return cfg


def check_config_paths(cfg, path="config"):
    """Raise :class:`ConfigError` naming the key when a folder or file the config names does not exist."""

    def need_dir(key, extra=""):
        target = Path(cfg[key])
        if not target.is_dir():
            what = "is a file, expected a folder" if target.is_file() else "does not exist"
            raise ConfigError(f"{path}: {key} {cfg[key]!r} {what}{extra}")
        return target

    for name in DATASETS:
        if f"coords_{name}" in cfg:
            key = f"coords_{name}"
            if not Path(cfg[key]).is_file():
                state = "is a folder" if Path(cfg[key]).is_dir() else "does not exist"
                raise ConfigError(f"{path}: {key} {cfg[key]!r} {state}, expected a coordinate list file")
            need_dir(f"wsi_path_{_split(name)}")
        else:
            key = f"data_path_{name}"
            folder = need_dir(key, " (a patch folder written by patch_gen)")
            if not (folder / "list.txt").is_file():
                raise ConfigError(f"{path}: {key} {cfg[key]!r} has no list.txt; write it with patch_gen")
    for key in ("json_path_train", "json_path_valid"):
        need_dir(key)


def load_config(path, check_paths=False):
    """Read and validate a config JSON; returns the dict as written in the file (no defaults added).

    Raises :class:`ConfigError` naming the file and the key for: an unreadable file or invalid JSON, missing or
    unknown keys, wrong types, ``image_size % patch_size != 0``, a crop larger than the patch, a model not in
    ``MODELS``, and, with ``check_paths``, data paths that do not exist.
    """
    path = Path(path)
    try:
        with open(path) as handle:
            cfg = json.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder, expected a config JSON file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not valid JSON ({err})") from None
    return validate_config(cfg, path, check_paths=check_paths)


def save_config(cfg, path):
    """Write ``cfg`` with ``indent=1``, as the original's ``cfg.json``, atomically (no trailing newline)."""
    with atomic_open(path, "w") as handle:
        json.dump(cfg, handle, indent=1)
