"""The optional config keys ``lr_schedule`` and ``lr_warmup_steps`` (wsi/config.py ``lr_at_step``, train.py)."""

import json
import math

import pytest
import torch

from tests.helpers import write_config
from wsi.bin.train import main
from wsi.config import DATASETS, ConfigError, lr_at_step, validate_config


@pytest.fixture(autouse=True)
def one_thread(one_torch_thread):
    """Every test of this file runs with one torch thread (tests/conftest.py)."""


BASE = {"model": "resnet18", "use_crf": True, "batch_size": 2, "image_size": 48, "patch_size": 16, "crop_size": 16,
        "lr": 0.01, "momentum": 0.9, "epoch": 1, "log_every": 1, "json_path_train": "j", "json_path_valid": "j",
        **{f"data_path_{s}": "p" for s in DATASETS}}


def test_without_the_keys_the_lr_is_the_original_constant():
    assert [lr_at_step(BASE, step, 40) for step in range(40)] == [0.01] * 40
    assert [lr_at_step({**BASE, "lr_schedule": "constant"}, step, 40) for step in range(40)] == [0.01] * 40


def test_warmup_then_cosine_decay():
    cfg = {**BASE, "lr_schedule": "cosine", "lr_warmup_steps": 4}
    lrs = [lr_at_step(cfg, step, 20) for step in range(20)]
    assert lrs[:4] == pytest.approx([0.0025, 0.005, 0.0075, 0.01])  # linear ramp up to lr
    assert lrs[4] == pytest.approx(0.01)  # the cosine starts after the warm-up, at lr
    assert all(a > b for a, b in zip(lrs[4:], lrs[5:]))  # then decreases every step
    assert lrs[12] == pytest.approx(0.005)  # half-way through the decay: lr / 2
    assert 0 < lrs[-1] < 0.001 and lrs[-1] == pytest.approx(0.01 * 0.5 * (1 + math.cos(math.pi * 15 / 16)))
    # warm-up alone scales the constant lr
    assert [lr_at_step({**BASE, "lr_warmup_steps": 2}, s, 10) for s in range(3)] == pytest.approx([0.005, 0.01, 0.01])


@pytest.mark.parametrize("change, message", [
    ({"lr_schedule": "step"}, "key 'lr_schedule' is 'step', expected one of ['constant', 'cosine']"),
    ({"lr_warmup_steps": -1}, "key 'lr_warmup_steps' must be at least 0, got -1"),
    ({"lr_warmup_steps": 1.5}, "key 'lr_warmup_steps' must be an integer, got 1.5"),
])
def test_bad_schedule_keys_are_config_errors(change, message):
    with pytest.raises(ConfigError, match="^cfg.json: " + message.replace("[", r"\[").replace("]", r"\]")
                       .replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        validate_config({**BASE, **change}, "cfg.json")


def test_train_sets_each_steps_lr_from_the_schedule(data, tmp_path):  # noqa: F811
    """train.py sets every step's lr from the global step: after 2 epochs of 2 steps the optimizer saved in
    train.ckpt holds the lr of the last step (index 3 of 4), and the saved cfg.json keeps the keys."""
    cfg_path, cfg = write_config(data, tmp_path / "cfg.json", on_the_fly=True, lr=0.01, lr_schedule="cosine",
                                 lr_warmup_steps=1, epoch=2)
    assert main([str(cfg_path), str(tmp_path / "run"), "--num_workers", "0"]) == 0
    ckpt = torch.load(tmp_path / "run" / "train.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["step"] == 4
    assert ckpt["optimizer"]["param_groups"][0]["lr"] == pytest.approx(lr_at_step(cfg, 3, 4))
    assert lr_at_step(cfg, 3, 4) == pytest.approx(0.0025)  # cos(2π/3): 2 of the 3 steps after the warm-up done
    assert json.loads((tmp_path / "run" / "cfg.json").read_text())["lr_schedule"] == "cosine"
