"""wsi/train: the set-up below wsi/bin/train.py (torchrun's environment, devices, seeds, batches on the device,
model and optimizer resumed, learning-rate schedule, checkpoints)."""

import math

import pytest
import torch

from wsi.config import lr_at_step
from wsi.model import MODELS, save_checkpoint
from wsi.train.data import BatchPreparer, derive_seed
from wsi.train.distributed import init_distributed_mode, reduce_mean, select_device
from wsi.train.setup import Checkpoints, TrainState, build_training, load_resume, lr_schedule

CFG = {"model": "resnet18", "use_crf": True, "image_size": 96, "patch_size": 32, "crop_size": 28, "lr": 0.01,
       "momentum": 0.9, "epoch": 2}


def test_one_process_outside_torchrun(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert init_distributed_mode() == (0, 1, 0)
    monkeypatch.setenv("WORLD_SIZE", "4"), monkeypatch.setenv("RANK", "3"), monkeypatch.setenv("LOCAL_RANK", "1")
    assert init_distributed_mode() == (3, 4, 1)
    assert select_device("cpu", "0,1", 1, 0) == (torch.device("cpu"), [])  # device ids are CUDA's
    assert reduce_mean([1.5, 2.0], 1) == [1.5, 2.0]


def test_derived_seeds_are_independent_streams():
    datasets = {derive_seed(0, k) for k in range(4)}
    steps = {derive_seed(0, step, rank) for step in range(50) for rank in range(2)}  # as train_one_epoch draws
    assert len(datasets) == 4 and len(steps) == 100 and all(0 <= s < 2 ** 63 for s in datasets | steps)
    assert derive_seed(7, 1) == derive_seed(7, 1) != derive_seed(1, 7)


def test_batches_on_the_device_in_either_layout():
    parts = [torch.rand(2, 9, 3, 8, 8), torch.rand(3, 9, 3, 8, 8)]
    order = torch.tensor([4, 0, 3, 1, 2])
    plain = BatchPreparer(torch.device("cpu"))(parts, order)
    last = BatchPreparer(torch.device("cpu"), channels_last=True)(parts, order)
    assert torch.equal(plain, torch.cat(parts)[order]) and torch.equal(last, plain)
    assert last.stride()[2] == 1 and plain.is_contiguous()  # channels innermost: each patch is channels-last


def test_lr_schedule_is_the_configs(tmp_path):
    assert lr_schedule(CFG, 10) is None  # the original's constant lr: the optimizer's
    cfg = {**CFG, "lr_schedule": "cosine", "lr_warmup_steps": 3}
    lr_at = lr_schedule(cfg, 10)
    assert [lr_at(s) for s in (0, 2, 10, 19)] == [lr_at_step(cfg, s, total_steps=20) for s in (0, 2, 10, 19)]
    assert lr_at(0) == pytest.approx(0.01 / 3) and lr_at(19) < 1e-4


def test_a_resumed_run_continues_where_the_checkpoint_stands(tmp_path, caplog):
    torch.manual_seed(0)
    model, optimizer, state = build_training(CFG, torch.device("cpu"), [], 1)
    assert (state.epoch, state.step, state.best_valid_loss) == (0, 0, math.inf)
    assert optimizer.param_groups[0]["lr"] == 0.01 and optimizer.param_groups[0]["momentum"] == 0.9
    model(torch.rand(2, 9, 3, 28, 28)).sum().backward()
    optimizer.step()  # momentum buffers to restore
    state.step, state.best_valid_loss = 6, 0.25
    Checkpoints(tmp_path, model, optimizer, state, cfg=CFG, seed=5, rank=1).save("train.ckpt", 2, False)
    assert not (tmp_path / "train.ckpt").exists()  # only rank 0 writes
    Checkpoints(tmp_path, model, optimizer, state, cfg=CFG, seed=5).save("train.ckpt", 2, True)
    with caplog.at_level("WARNING"):
        ckpt, seed = load_resume(tmp_path, 0)
    assert seed == 5 and "differs from train.ckpt's 5" in caplog.text
    resumed, optimizer_2, state_2 = build_training(CFG, torch.device("cpu"), [], 1, ckpt=ckpt,
                                                   ckpt_path=tmp_path / "train.ckpt", steps_per_epoch=3)
    assert (state_2.epoch, state_2.step, state_2.best_valid_loss, state_2.valid_pending) == (2, 6, 0.25, True)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), resumed.state_dict().values()))
    momentum = [optimizer_2.state[p]["momentum_buffer"] for p in resumed.parameters() if p in optimizer_2.state]
    assert len(momentum) == len(list(model.parameters()))


def test_a_checkpoint_without_optimizer_restarts_momentum(tmp_path, caplog):
    model = MODELS["resnet18"](num_nodes=9)
    save_checkpoint(tmp_path / "best.ckpt", model, epoch=1, step=4)
    ckpt = torch.load(tmp_path / "best.ckpt", weights_only=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with caplog.at_level("WARNING"):
        state = TrainState.from_checkpoint(ckpt, optimizer, 3, tmp_path / "best.ckpt")
    assert (state.epoch, state.step) == (1, 4)
    assert "no optimizer state" in caplog.text and "at step 4 after 1 epochs" in caplog.text
