"""train.py at a small config on the CPU: outputs, tensorboard tags, resume, torchrun and config errors."""

import json
import os
import re
import subprocess
import sys

import pytest
import torch

from tests.helpers import ROOT, write_config
from wsi.monitor import read_scalars as monitor_scalars
from wsi.bin.train import main
from wsi.data.coords import write_coords

STEP_LINE = re.compile(r"Epoch : (\d+), Step : (\d+), Training Loss : \d+\.\d{5}, Training Acc : \d\.\d{3}, "
                       r"Run Time : \d+\.\d{2}$")


@pytest.fixture(autouse=True)
def one_thread(one_torch_thread):
    """Every test of this file runs with one torch thread (tests/conftest.py)."""


#: The original's tags and the skip counts; the other tags train.py writes are tests/test_train_tensorboard.py's.
ORIGINAL_TAGS = {"train/loss", "train/acc", "valid/loss", "valid/acc", "train/skipped", "valid/skipped"}


def read_scalars(folder):
    """``{tag: [(step, value), ...]}`` of the original's tags from every tensorboard event file in ``folder``."""
    return monitor_scalars(folder, lambda tag: tag in ORIGINAL_TAGS)


def steps_logged(caplog):
    return [tuple(int(g) for g in STEP_LINE.search(r.getMessage()).groups())
            for r in caplog.records if STEP_LINE.search(r.getMessage())]


def test_train_writes_checkpoints_config_and_tensorboard(data, tmp_path, caplog):
    cfg_path, cfg = write_config(data, tmp_path / "cfg.json")
    save = tmp_path / "run"
    assert main([str(cfg_path), str(save), "--num_workers", "0"]) == 0
    assert sorted(p.name for p in save.iterdir() if not p.name.startswith("events")) == [
        "best.ckpt", "cfg.json", "train.ckpt"]
    assert (save / "cfg.json").read_text() == json.dumps(cfg, indent=1)
    assert steps_logged(caplog) == [(1, 1), (1, 2)]
    assert any(re.search(r"Epoch : 1, Step : 2, Validation Loss : \d\.\d{5}, Validation Acc : \d\.\d{3}",
                         r.getMessage()) for r in caplog.records)

    ckpt = torch.load(save / "train.ckpt", map_location="cpu", weights_only=True)
    assert (ckpt["epoch"], ckpt["step"]) == (1, 2)
    assert not any(key.startswith("module.") for key in ckpt["state_dict"])
    assert ckpt["state_dict"]["crf.W"].shape == (1, 9, 9) and ckpt["optimizer"]["state"]
    best = torch.load(save / "best.ckpt", map_location="cpu", weights_only=True)
    assert (best["epoch"], best["step"]) == (1, 2) and best["best_valid_loss"] == ckpt["best_valid_loss"]
    assert all(torch.equal(best["state_dict"][k], v) for k, v in ckpt["state_dict"].items())

    scalars = read_scalars(save)
    assert sorted(scalars) == ["train/acc", "train/loss", "valid/acc", "valid/loss"]
    assert [s for s, _ in scalars["train/loss"]] == [1, 2] and [s for s, _ in scalars["valid/loss"]] == [2]
    assert scalars["valid/loss"][0][1] == pytest.approx(ckpt["best_valid_loss"])
    assert 0 <= scalars["valid/acc"][0][1] <= 1

    # A run stopped between its training epoch and its validation validates first when resumed, then stops.
    torch.save({**ckpt, "valid_pending": True, "best_valid_loss": None}, save / "train.ckpt")
    caplog.clear()
    assert main([str(cfg_path), str(save), "--resume", "--num_workers", "0"]) == 0
    assert steps_logged(caplog) == []
    assert sum("Epoch : 1, Step : 2, Validation Loss" in r.getMessage() for r in caplog.records) == 1
    ckpt = torch.load(save / "train.ckpt", map_location="cpu", weights_only=True)
    assert not ckpt["valid_pending"] and ckpt["best_valid_loss"] == pytest.approx(scalars["valid/loss"][0][1])


def test_resume_continues_as_an_uninterrupted_run(data, tmp_path, caplog, capsys):
    cfg_path, _ = write_config(data, tmp_path / "cfg.json", on_the_fly=True)
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert main([str(cfg_path), str(resumed), "--resume", "--num_workers", "0"]) == 2
    assert "train: error: " in capsys.readouterr().err and not resumed.exists()

    assert main([str(cfg_path), str(straight), "--epochs", "2", "--num_workers", "0"]) == 0
    assert main([str(cfg_path), str(resumed), "--num_workers", "1"]) == 0
    caplog.clear()
    assert main([str(cfg_path), str(resumed), "--resume", "--epochs", "2", "--num_workers", "0"]) == 0
    assert steps_logged(caplog) == [(2, 3), (2, 4)]

    ckpt = torch.load(resumed / "train.ckpt", map_location="cpu", weights_only=True)
    assert (ckpt["epoch"], ckpt["step"]) == (2, 4)
    # The seed fixes the augmentation and the shuffling of each step: the resumed run retraces the straight one.
    a, b = read_scalars(straight), read_scalars(resumed)
    for tag in a:
        assert [s for s, _ in a[tag]] == [s for s, _ in b[tag]]
        assert [v for _, v in a[tag]] == pytest.approx([v for _, v in b[tag]], rel=1e-4, abs=1e-5)
    reference = torch.load(straight / "train.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    for key, value in reference.items():
        torch.testing.assert_close(ckpt["state_dict"][key], value, rtol=1e-4, atol=1e-5)


def test_torchrun_two_processes_on_the_cpu(data, tmp_path):
    cfg_path, _ = write_config(data, tmp_path / "cfg.json")
    save = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(ROOT / "wsi" / "bin" / "train.py"), str(cfg_path), str(save), "--num_workers", "0", "--device", "cpu"],
        capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    # Each rank trains on every second grid: 2 of the 4 grids per class, one step of 2 per epoch; rank 0 logs.
    lines = [line for line in result.stderr.splitlines() if STEP_LINE.search(line)]
    assert len(lines) == 1 and "Epoch : 1, Step : 1," in lines[0]
    assert sorted(p.name for p in save.iterdir() if not p.name.startswith("events")) == [
        "best.ckpt", "cfg.json", "train.ckpt"]
    ckpt = torch.load(save / "train.ckpt", map_location="cpu", weights_only=True)
    assert (ckpt["epoch"], ckpt["step"]) == (1, 1)
    assert not any(key.startswith("module.") for key in ckpt["state_dict"])


@pytest.mark.parametrize("case", ["missing_key", "missing_folder", "few_normals", "bad_seed"])
def test_bad_config_is_one_line_before_any_output(data, tmp_path, capsys, case):
    args = []
    if case == "missing_key":
        cfg_path, _ = write_config(data, tmp_path / "cfg.json")
        cfg = json.loads(cfg_path.read_text())
        del cfg["momentum"]
        cfg_path.write_text(json.dumps(cfg))
        expected = "cfg.json: missing key 'momentum'"
    elif case == "missing_folder":
        cfg_path, _ = write_config(data, tmp_path / "cfg.json", data_path_normal_valid=str(tmp_path / "none"))
        expected = "data_path_normal_valid"
    elif case == "few_normals":
        write_coords(tmp_path / "normal.txt", [("Tumor_001", 60, 60)])
        cfg_path, _ = write_config(data, tmp_path / "cfg.json", on_the_fly=True, coords_normal_train=str(
            tmp_path / "normal.txt"))
        expected = "normal_train has 1 grids, fewer than tumor_train's 4"
    else:  # refused by the parser (wsi.cli.count): argparse's usage line, then the error line
        cfg_path, _ = write_config(data, tmp_path / "cfg.json")
        with pytest.raises(SystemExit) as exit_info:
            main([str(cfg_path), str(tmp_path / "out"), "--num_workers", "0", "--seed", "-1"])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].endswith("error: argument --seed: must be at least 0, got -1")
        assert not (tmp_path / "out").exists()
        return
    save = tmp_path / "out"
    assert main([str(cfg_path), str(save), "--num_workers", "0", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("train: error: ") and expected in err and "\n" not in err
    assert not save.exists()


def test_device_augmentation_trains_resumes_and_matches_the_cpu_path(data, tmp_path, caplog):
    cfg_path, _ = write_config(data, tmp_path / "cfg.json", on_the_fly=True)
    cpu, straight, resumed = tmp_path / "cpu", tmp_path / "straight", tmp_path / "resumed"
    assert main([str(cfg_path), str(cpu), "--epochs", "2", "--num_workers", "0", "--augment", "cpu"]) == 0
    caplog.clear()
    assert main([str(cfg_path), str(straight), "--epochs", "2", "--num_workers", "0", "--augment", "device"]) == 0
    assert any("Augmentation on the device" in r.getMessage() for r in caplog.records)
    assert main([str(cfg_path), str(resumed), "--num_workers", "1", "--augment", "device"]) == 0
    caplog.clear()
    assert main([str(cfg_path), str(resumed), "--resume", "--epochs", "2", "--num_workers", "0",
                 "--augment", "device"]) == 0
    assert steps_logged(caplog) == [(2, 3), (2, 4)]
    # Same draws, labels and (on the CPU) the same pixels: the three runs trace the same curves.
    runs = [read_scalars(folder) for folder in (cpu, straight, resumed)]
    for tag in runs[0]:
        for other in runs[1:]:
            assert [s for s, _ in other[tag]] == [s for s, _ in runs[0][tag]]
            assert [v for _, v in other[tag]] == pytest.approx([v for _, v in runs[0][tag]], rel=1e-4, abs=1e-5)


def test_amp_and_channels_last_run(data, tmp_path):
    cfg_path, _ = write_config(data, tmp_path / "cfg.json", on_the_fly=True)
    save = tmp_path / "fast"
    assert main([str(cfg_path), str(save), "--num_workers", "0", "--augment", "device", "--amp",
                 "--channels_last"]) == 0
    ckpt = torch.load(save / "train.ckpt", map_location="cpu", weights_only=True)
    assert (ckpt["epoch"], ckpt["step"]) == (1, 2)
    assert all(v.dtype != torch.bfloat16 for v in ckpt["state_dict"].values())  # autocast keeps float32 weights
    assert torch.isfinite(torch.tensor(ckpt["best_valid_loss"]))


def test_default_workers_share_the_cpus():
    from wsi.bin.train import augment_on_device, default_num_workers

    assert default_num_workers(1, cpus=16) == 7  # two training loaders of 7, one core for the loop
    assert default_num_workers(4, cpus=16) == 1 and default_num_workers(1, cpus=2) == 1
    assert augment_on_device("auto", torch.device("cuda", 0)) and not augment_on_device("auto", torch.device("cpu"))
    assert augment_on_device("device", torch.device("cpu")) and not augment_on_device("cpu", torch.device("cuda"))


def test_validation_runs_the_exact_cheaper_pass():
    # evaluate() runs a BatchNorm-folded, channels_last copy (issue 14): the same loss and accuracy as the eager
    # network to within 1e-5, and the trained model's weights are left as they were.
    from torch import nn

    from wsi.bin.train import evaluate
    from wsi.model import MODELS

    torch.manual_seed(0)
    model = MODELS["resnet18"](num_nodes=9, use_crf=True)
    with torch.no_grad():
        model.crf.W.normal_(0.0, 1.0)
    for _ in range(3):  # running statistics that are not the identity, so folding changes the weights
        model(torch.randn(4, 9, 3, 32, 32))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    grids = [torch.randn(2, 9, 3, 32, 32) for _ in range(3)]
    labels = [torch.randint(0, 2, (2, 9)).float() for _ in range(3)]
    tumor, normal = list(zip(grids, labels)), list(zip(grids[::-1], labels[::-1]))
    criterion = nn.BCEWithLogitsLoss()
    loss, acc = evaluate(model, criterion, tumor, normal, torch.device("cpu"))
    model.eval()
    with torch.inference_mode():
        expected = [criterion(model(torch.cat([t[0], n[0]])), torch.cat([t[1], n[1]])).item()
                    for t, n in zip(tumor, normal)]
    assert abs(loss - sum(expected) / len(expected)) <= 1e-5 and 0 <= acc <= 1
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
