"""The run's model, optimizer, learning-rate schedule, checkpoints (resume, ``train.ckpt``, ``best.ckpt``) and
TensorBoard writer; what ``wsi/bin/train.py`` sets up before its epochs."""

import functools
import logging
import math
from pathlib import Path

import torch
from torch import nn

from wsi.cli import check_outputs
from wsi.config import lr_at_step, save_config
from wsi.errors import InputError
from wsi.model import build_model, grid_size, load_checkpoint, load_model_state, save_checkpoint
from wsi.model.checkpoint import check_save_folder

logger = logging.getLogger(__name__)


def check_save_path(save_path, cfg_path, *, resume=False, overwrite=False, rewrites_cfg=False):
    """SAVE_PATH as a Path, checked before anything is written: a folder this process can write, and one that
    holds no other run unless resumed or overwritten (:func:`~wsi.model.checkpoint.check_save_folder`)."""
    save_path = Path(save_path)
    if save_path.exists() and not save_path.is_dir():
        raise InputError(f"{save_path}: is a file, expected the output folder")
    check_outputs(folders=[save_path])
    check_save_folder(save_path, cfg_path, resume=resume, overwrite=overwrite, rewrites_cfg=rewrites_cfg)
    return save_path


def load_resume(save_path, seed, trust=False):
    """``(checkpoint, seed)``: SAVE_PATH/train.ckpt and the seed the run started with (it wins over ``--seed``)."""
    ckpt = load_checkpoint(save_path / "train.ckpt", map_location="cpu", trust=trust)
    if ckpt.get("seed") is not None and ckpt["seed"] != seed:
        logger.warning("--seed %d differs from train.ckpt's %d: using %d so the run continues as it started",
                       seed, ckpt["seed"], ckpt["seed"])
        seed = int(ckpt["seed"])
    return ckpt, seed


class TrainState:
    """Where the run stands: completed epochs, global step, best validation loss and whether the last
    training epoch still awaits its validation."""

    def __init__(self, epoch=0, step=0, best_valid_loss=math.inf, valid_pending=False):
        self.epoch, self.step, self.best_valid_loss, self.valid_pending = epoch, step, best_valid_loss, valid_pending

    @classmethod
    def from_checkpoint(cls, ckpt, optimizer, steps_per_epoch, path):
        """The state saved in ``ckpt``; loads the optimizer state into ``optimizer`` (warns when absent)."""
        if ckpt.get("optimizer"):
            optimizer.load_state_dict(ckpt["optimizer"])
        else:
            logger.warning("%s has no optimizer state: SGD momentum restarts from zero", path)
        state = cls(int(ckpt["epoch"]), int(ckpt["step"]), valid_pending=bool(ckpt.get("valid_pending", False)))
        if ckpt.get("best_valid_loss") is not None:
            state.best_valid_loss = float(ckpt["best_valid_loss"])
        expected = state.epoch * steps_per_epoch
        if state.step != expected:
            logger.warning("train.ckpt is at step %d after %d epochs, but %d epochs of this data make %d steps",
                           state.step, state.epoch, state.epoch, expected)
        logger.info("Resuming from %s: epoch %d, step %d", path, state.epoch, state.step)
        return state


class Checkpoints:
    """Writes ``train.ckpt`` (with the optimizer) and ``best.ckpt`` (without) in SAVE_PATH; only rank 0 writes."""

    def __init__(self, save_path, model, optimizer, state, *, cfg, seed, rank=0):
        self.save_path, self.model, self.optimizer, self.state = save_path, model, optimizer, state
        self.cfg, self.seed, self.rank = cfg, seed, rank

    def save(self, name, epoch, pending, with_optimizer=True):
        """Write ``name`` after ``epoch`` completed epochs; ``pending``: its validation has not run yet."""
        if self.rank == 0:
            save_checkpoint(self.save_path / name, self.model, epoch=epoch, step=self.state.step,
                            optimizer=self.optimizer if with_optimizer else None,
                            best_valid_loss=self.state.best_valid_loss, cfg=self.cfg, seed=self.seed,
                            valid_pending=pending)


def build_training(cfg, device, device_ids, world_size, *, ckpt=None, ckpt_path=None, steps_per_epoch=0,
                   channels_last=False, source="config"):
    """``(model, optimizer, state)``: the network seeded by the caller's ``torch.manual_seed`` (or loaded from
    ``ckpt``) on ``device``, SGD, and the :class:`TrainState` (restored from ``ckpt``); the model is wrapped in
    DistributedDataParallel under torchrun and in DataParallel for several ``device_ids``."""
    model = build_model(cfg, num_nodes=grid_size(cfg), source=source)
    if ckpt is not None:
        load_model_state(model, ckpt["state_dict"], source=str(ckpt_path))
    model = model.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg["lr"], momentum=cfg["momentum"])
    state = TrainState() if ckpt is None else TrainState.from_checkpoint(ckpt, optimizer, steps_per_epoch, ckpt_path)
    if world_size > 1:
        model = nn.parallel.DistributedDataParallel(model, device_ids=device_ids or None)
    elif len(device_ids) > 1:
        model = nn.DataParallel(model, device_ids=device_ids)
    return model, optimizer, state


def lr_schedule(cfg, steps_per_epoch):
    """The learning rate of each global step (0-based), ``lr_at(step)``, from the config's ``lr_schedule`` and
    ``lr_warmup_steps``; None without them (the original's constant lr, the optimizer's)."""
    if "lr_schedule" not in cfg and "lr_warmup_steps" not in cfg:
        return None
    return functools.partial(lr_at_step, cfg, total_steps=cfg["epoch"] * steps_per_epoch)


def open_writer(save_path, cfg, step=None, *, options=None, preview=None):
    """Create SAVE_PATH, write ``cfg.json`` and open the tensorboard writer (:class:`~wsi.monitor.TrainingBoard`,
    which also logs ``options``, the run's settings, as text and hparams); ``step`` (on resume): drop events a
    crashed run wrote after that step, so that curves do not double back. ``preview``: ``--tb_slide``'s
    :class:`~wsi.monitor.SlidePreview`."""
    from wsi.monitor import TrainingBoard

    save_path.mkdir(parents=True, exist_ok=True)
    save_config(cfg, save_path / "cfg.json")
    writer = TrainingBoard(str(save_path), purge_step=None if step is None else step + 1, preview=preview)
    writer.log_settings(cfg, options or {}, step or 0)
    return writer

