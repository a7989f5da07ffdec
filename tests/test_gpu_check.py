"""bench/gpu_check.py --quick --device cpu: every section of the prepared GPU check runs and reports (gloo, tiny)."""

import json

import pytest

pytest.importorskip("monai")

from bench.gpu_check import main  # noqa: E402


def test_quick_check_on_the_cpu_writes_json_and_markdown(tmp_path):
    report = main(["--quick", "--device", "cpu", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "gpu_check.json").read_text())
    assert saved["device"] == "cpu" and saved["quick"] and set(saved["sections"]) == {"probs_map", "train",
                                                                                         "torchrun"}
    runs = {name: run for section in saved["sections"].values() for name, run in section["runs"].items()}
    assert all(run["ok"] for run in runs.values()), {k: v.get("error") for k, v in runs.items() if not v["ok"]}
    probs = saved["sections"]["probs_map"]["runs"]
    assert probs["MONAI MaskedPatchWSIDataset + ResNet-18 (no CRF), float32"]["positions_s"] > 0
    assert probs["probs_map.py --mode fast (CRF) float32"]["positions_s"] > 0
    assert 0 < probs["probs_map.py --mode fast (CRF) --amp"]["max_diff_to_float32"] < 0.05  # bfloat16 backbone
    train = saved["sections"]["train"]["runs"]
    assert set(train) == {"train.py --augment device --amp"}
    assert all(run["grids_s"] > 0 and 0 <= run["data_wait_share"] < 1 for run in train.values())
    (ddp,) = saved["sections"]["torchrun"]["runs"].values()
    assert ddp["epoch_step"] == [1, 2] and saved["sections"]["torchrun"]["backend"] == "gloo"
    table = (tmp_path / "gpu_check.md").read_text()
    assert table.count("| yes |") == len(runs) and "positions/s" in table and "grids/s" in table
    assert report["sections"].keys() == saved["sections"].keys()
