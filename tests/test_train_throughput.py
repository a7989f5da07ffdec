"""bench/train_throughput.py in its quick mode: every section runs and reports consistent numbers."""

import torch

from bench.train_throughput import main


def test_quick_mode_reports_every_section(capsys):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        report = main(["--quick", "--device", "cpu", "--channels_last_check"])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert "cores to feed 400 grids/s" in out and "device path CPU share" in out
    core = report["per_core"]
    assert all(core[k] > 0 for k in ("read_ms", "cpu_augment_ms", "per_item_ms", "device_cpu_ms"))
    assert core["device_augment_ms"] > 0  # timings on a shared machine are too noisy to compare in a test
    assert set(report["end_to_end"]) == {"png, cpu augment", "slides, cpu augment", "slides, device augment"}
    for mode in report["end_to_end"].values():
        assert mode["train_grids_s"] > 0 and 0 <= mode["data_share"] < 1
    check = report["channels_last"]
    assert check["loss_diff"] < 1e-4 and check["contiguous_grids_s"] > 0 and check["channels_last_grids_s"] > 0
