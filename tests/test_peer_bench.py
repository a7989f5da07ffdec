"""bench/peer_bench.py --quick: MONAI's masked patch inference and probs_map.py on the same slide and mask."""

import importlib.util

import pytest

pytest.importorskip("monai")

from bench.peer_bench import main  # noqa: E402


def test_peer_bench_quick_mode(capsys):
    (rows,) = main(["--quick"])
    out = capsys.readouterr().out
    assert "| MONAI MaskedPatchWSIDataset" in out and "| probs_map.py --mode fast (CRF)" in out
    monai, ours, faithful = rows["monai"], rows["ours"], rows["faithful"]
    assert monai["positions"] == ours["positions"] > 50
    assert monai["passes"] == 1.0 and 1.0 < ours["passes"] < 9.0  # the CRF's neighbours, each patch once
    assert faithful["passes"] == 9.0 and faithful["diff"] <= 1e-5  # the default fast map is the faithful one
    assert faithful["default_diff"] <= 1e-5
    assert 0 < ours["compute"] < ours["whole"] and 0 < monai["compute"] < monai["whole"]
    # Both installs in one run: the openvino extra (where installed) and `pip install .` (PyTorch's pass).
    torch_row = rows["ours --runtime torch"]
    assert "| probs_map.py --mode fast (CRF), pip install . (PyTorch's pass)" in out
    if importlib.util.find_spec("openvino"):
        assert ours is rows["ours --runtime openvino"]
        assert "| probs_map.py --mode fast (CRF), pip install .[openvino] (OpenVINO)" in out
        assert torch_row["passes"] == ours["passes"] and abs(torch_row["map"] - ours["map"]).max() <= 1e-5
    else:
        assert ours is torch_row
