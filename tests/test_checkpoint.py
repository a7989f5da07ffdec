"""Checkpoints: ours round-trip and resume; the original NCRF's (PyTorch 0.3 legacy format) load as they are."""

import argparse
import copy
import logging
import os
from collections import OrderedDict

import numpy as np
import pytest
import torch

from tests.helpers import randomise, write_torch03_checkpoint
from wsi.errors import WSIError
from wsi.model import MODELS, build_model
from wsi.model.checkpoint import CheckpointError, load_checkpoint, load_model, load_model_state, save_checkpoint

CROP = 32
CFG_CRF = {"model": "resnet18", "use_crf": True, "image_size": 768, "patch_size": 256, "crop_size": 224}
CFG_BASE = {**CFG_CRF, "use_crf": False}

def original_state_dict(model, prefix=""):
    """``model``'s state_dict as the original's checkpoints hold it: no BN counters, a fresh OrderedDict without
    the ``_metadata`` versions PyTorch ≥ 0.4 attaches, optionally a ``module.`` prefix."""
    return OrderedDict(
        (prefix + k, v.clone()) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")
    )


# ------------------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def crf_model():
    torch.manual_seed(0)
    return randomise(MODELS["resnet18"](num_nodes=9)).eval()


def _logits(model, grids):
    with torch.no_grad():
        return model.eval()(grids)


@pytest.fixture(scope="module")
def reference(crf_model, grids):
    """The logits of ``crf_model`` on ``grids``: what a reloaded copy must give."""
    return _logits(crf_model, grids)


def _one_line(err):
    message = str(err.value)
    assert "\n" not in message and message
    return message


# ------------------------------------------------------------------------------------------------------ our own


def test_save_and_load_round_trip(tmp_path, crf_model, grids, reference):
    optimizer = torch.optim.SGD(crf_model.parameters(), lr=1e-3, momentum=0.9)
    path = save_checkpoint(
        tmp_path / "run" / "best.ckpt",
        crf_model,
        epoch=3,
        step=60_000,
        optimizer=optimizer,
        best_valid_loss=np.float64(0.25),
        cfg=CFG_CRF,
        args=argparse.Namespace(device="cpu", seed=0),
        save_path=tmp_path / "run",
    )
    assert path == tmp_path / "run" / "best.ckpt" and path.is_file()
    assert [p.name for p in path.parent.iterdir()] == ["best.ckpt"]  # no temporary file left behind

    # Plain data only: it loads with torch's weights-only unpickler, no fallback needed.
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert list(raw)[:6] == ["epoch", "step", "state_dict", "optimizer", "best_valid_loss", "cfg"]
    assert raw["epoch"] == 3 and raw["step"] == 60_000 and raw["best_valid_loss"] == 0.25
    assert raw["cfg"] == CFG_CRF and raw["args"] == {"device": "cpu", "seed": 0}
    assert raw["save_path"] == str(tmp_path / "run")
    assert raw["optimizer"]["param_groups"][0]["momentum"] == 0.9

    ckpt = load_checkpoint(path)
    assert set(ckpt["state_dict"]) == set(crf_model.state_dict())
    model = load_model(path, CFG_CRF)
    assert not model.training
    torch.testing.assert_close(_logits(model, grids), reference, atol=0, rtol=0)


def test_wrapped_models_are_saved_without_module_prefix(tmp_path, crf_model):
    wrapped = torch.nn.DataParallel(crf_model)  # a CPU-only DataParallel simply holds .module
    assert all(k.startswith("module.") for k in wrapped.state_dict())
    path = save_checkpoint(tmp_path / "train.ckpt", wrapped, epoch=1, step=1)
    assert list(torch.load(path, weights_only=True)["state_dict"]) == list(crf_model.state_dict())


def test_resume_restores_the_optimizer(tmp_path, grids):
    torch.manual_seed(0)
    model = MODELS["resnet18"](num_nodes=9)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    grid, target = grids[:1], torch.zeros(1, 9)

    def step(model, optimizer):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model.train()(grid), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step(model, optimizer)
    path = save_checkpoint(tmp_path / "train.ckpt", model, epoch=1, step=1, optimizer=optimizer, cfg=CFG_CRF)
    ckpt = load_checkpoint(path)
    resumed = build_model(ckpt["cfg"])
    load_model_state(resumed, ckpt["state_dict"])
    resumed_optimizer = torch.optim.SGD(resumed.parameters(), lr=1e-3, momentum=0.9)
    resumed_optimizer.load_state_dict(ckpt["optimizer"])
    step(model, optimizer)
    step(resumed, resumed_optimizer)  # the momentum buffers make this step equal to the uninterrupted one
    for (name, a), b in zip(model.state_dict().items(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, msg=name)


def test_failed_save_leaves_no_file(tmp_path, crf_model):
    with pytest.raises(Exception):
        save_checkpoint(tmp_path / "best.ckpt", crf_model, epoch=1, step=1, hook=lambda: None)  # not picklable
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------- the original's


@pytest.mark.parametrize("prefix", ["", "module."])
def test_torch03_checkpoint_loads_and_gives_the_same_logits(tmp_path, crf_model, grids, reference, prefix, caplog):
    path = tmp_path / "resnet18_crf.ckpt"
    write_torch03_checkpoint(path, {"epoch": 20, "step": 400_000, "state_dict": original_state_dict(crf_model, prefix)})
    with caplog.at_level(logging.WARNING):
        ckpt = load_checkpoint(path)
    assert not caplog.records  # loaded by the weights-only unpickler, without falling back
    assert (ckpt["epoch"], ckpt["step"]) == (20, 400_000)
    assert len(ckpt["state_dict"]) == 103 and "crf.W" in ckpt["state_dict"]
    model = load_model(path, CFG_CRF)
    torch.testing.assert_close(_logits(model, grids), reference, atol=0, rtol=0)
    assert all(model.state_dict()[k].item() == 0 for k in model.state_dict() if k.endswith("num_batches_tracked"))


def test_legacy_serialization_checkpoint_loads(tmp_path, crf_model, grids, reference):
    # The same file layout written by today's torch.save in its legacy (pre-zip) format.
    path = tmp_path / "legacy.ckpt"
    state = {"epoch": 1, "step": 10, "state_dict": original_state_dict(crf_model, "module.")}
    torch.save(state, path, _use_new_zipfile_serialization=False)
    assert not __import__("zipfile").is_zipfile(path)
    model = load_model(path, CFG_CRF)
    torch.testing.assert_close(_logits(model, grids), reference, atol=0, rtol=0)


def test_base_checkpoint_loads_into_base_config(tmp_path, grids):
    torch.manual_seed(1)
    base = randomise(MODELS["resnet18"](num_nodes=9, use_crf=False)).eval()
    path = tmp_path / "resnet18_base.ckpt"
    write_torch03_checkpoint(path, {"epoch": 5, "step": 100, "state_dict": original_state_dict(base)})
    assert len(load_checkpoint(path)["state_dict"]) == 102
    torch.testing.assert_close(_logits(load_model(path, CFG_BASE), grids), _logits(base, grids), atol=0, rtol=0)


def test_bare_state_dict_is_accepted(tmp_path, crf_model, grids, reference):
    path = tmp_path / "weights.pth"
    torch.save(crf_model.state_dict(), path)
    assert list(load_checkpoint(path)) == ["state_dict"]
    torch.testing.assert_close(_logits(load_model(path, CFG_CRF), grids), reference, atol=0, rtol=0)


# ---------------------------------------------------------------------------------------------------- mistakes


def test_crf_checkpoint_with_base_config(tmp_path, crf_model):
    path = tmp_path / "crf.ckpt"
    write_torch03_checkpoint(path, {"epoch": 1, "step": 1, "state_dict": original_state_dict(crf_model)})
    with pytest.raises(CheckpointError) as err:
        load_model(path, CFG_BASE)
    assert _one_line(err) == f"{path} has a CRF layer (crf.W) but the config has use_crf: false"


def test_base_checkpoint_with_crf_config(tmp_path):
    path = save_checkpoint(tmp_path / "base.ckpt", build_model(CFG_BASE), epoch=1, step=1)
    with pytest.raises(CheckpointError) as err:
        load_model(path, CFG_CRF)
    assert _one_line(err) == f"{path} has no CRF layer (crf.W) but the config has use_crf: true"


def test_grid_size_mismatch_names_crf_w(tmp_path, crf_model):
    path = save_checkpoint(tmp_path / "crf.ckpt", crf_model, epoch=1, step=1)
    with pytest.raises(CheckpointError) as err:
        load_model(path, {**CFG_CRF, "image_size": 512})
    assert "crf.W is [1,9,9] in" in _one_line(err) and "but [1,4,4] in the model (num_nodes 4" in str(err.value)


def test_other_architecture_lists_missing_and_unexpected_keys(tmp_path):
    path = save_checkpoint(tmp_path / "r34.ckpt", MODELS["resnet34"](num_nodes=9), epoch=1, step=1)
    with pytest.raises(CheckpointError) as err:
        load_model(path, CFG_CRF)
    message = _one_line(err)
    assert message.startswith(f"{path} does not fit the model: unexpected keys: layer1.2.bn1.bias, ")
    assert "more)" in message and len(message) < 400


def test_shape_and_key_mismatch_in_one_line(crf_model):
    state = original_state_dict(crf_model)
    state["fc.weight"] = torch.zeros(2, 512)
    del state["layer1.0.conv1.weight"]
    state["head.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError) as err:
        load_model_state(copy.deepcopy(crf_model), state, source="x.ckpt")
    assert _one_line(err) == (
        "x.ckpt does not fit the model: shape mismatch: fc.weight [2,512] vs [1,512] (checkpoint vs model); "
        "missing keys: layer1.0.conv1.weight; unexpected keys: head.weight"
    )


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "no such checkpoint file"),
        (b"", "not a readable PyTorch checkpoint (EOFError"),
        (b"hello, world\n", "not a readable PyTorch checkpoint"),
        ("truncated", "not a readable PyTorch checkpoint"),
    ],
)
def test_unreadable_files(tmp_path, content, message):
    path = tmp_path / "bad.ckpt"
    if content == "truncated":
        torch.save({"epoch": 1, "state_dict": {"w": torch.zeros(1000)}}, path)
        path.write_bytes(path.read_bytes()[:500])
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert _one_line(err).startswith(f"{path}: {message}")
    assert isinstance(err.value, WSIError)


def test_folder_and_contents_without_state_dict(tmp_path):
    with pytest.raises(CheckpointError, match="not a checkpoint file \\(it is a folder\\)"):
        load_checkpoint(tmp_path)
    torch.save({"epoch": 1, "model": {"w": torch.zeros(1)}}, tmp_path / "a.ckpt")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(tmp_path / "a.ckpt")
    expected = "no 'state_dict' in the checkpoint (found a dict with keys ['epoch', 'model'])"
    assert _one_line(err) == f"{tmp_path / 'a.ckpt'}: {expected}"
    torch.save([1, 2], tmp_path / "b.ckpt")
    with pytest.raises(CheckpointError, match="found list"):
        load_checkpoint(tmp_path / "b.ckpt")
    torch.save({"state_dict": {"w": 1.0}}, tmp_path / "c.ckpt")
    with pytest.raises(CheckpointError, match="'state_dict' is not a mapping of parameter names to tensors"):
        load_checkpoint(tmp_path / "c.ckpt")


class _RunsCode:
    """An object whose unpickling runs a command (what a malicious checkpoint holds)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_checkpoint_that_needs_more_than_weights_is_refused_in_one_line(tmp_path, caplog):
    marker = tmp_path / "ran"
    evil, other = tmp_path / "evil.ckpt", tmp_path / "other.ckpt"
    torch.save({"state_dict": {"w": torch.ones(2)}, "extra": _RunsCode(marker)}, evil)
    torch.save({"state_dict": {"w": torch.ones(2)}, "args": argparse.Namespace(lr=0.1)}, other)
    for path, refused in ((evil, "posix.system"), (other, "argparse.Namespace")):
        with pytest.raises(CheckpointError) as err:
            load_checkpoint(path)
        assert _one_line(err) == (f"{path}: holds a {refused} object, which weights-only loading refuses (no code "
                                  f"runs from a checkpoint); give --trust_checkpoint only for a file you trust")
    assert not marker.exists()  # refused before anything ran, and no fallback
    with caplog.at_level(logging.WARNING):
        assert load_checkpoint(other, trust=True)["args"].lr == 0.1  # the user vouches for this one
    assert "--trust_checkpoint" in caplog.text
