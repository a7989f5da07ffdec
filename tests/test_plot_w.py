"""wsi/bin/plot_W.py: the original's 3×3 panels of the raw CRF weights, saved without a display."""

import os
import subprocess
import sys
from collections import OrderedDict

import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers import ROOT, write_torch03_checkpoint
from wsi.bin import plot_W
from wsi.model import CRF, MODELS
from wsi.model.checkpoint import save_checkpoint


def _crf_state(W):
    """A state_dict with only what plot_W reads: ``crf.W`` ``[1, N, N]``."""
    return OrderedDict([("crf.W", torch.as_tensor(W, dtype=torch.float32)[None])])


@pytest.fixture
def W():
    # Not symmetric, with values beyond ±1 (clipped by the colour scale, as in the original).
    return np.random.default_rng(0).uniform(-1.5, 1.5, (9, 9)).astype(np.float32)


def test_panels_show_the_raw_weights(tmp_path, W):
    path = tmp_path / "best.ckpt"
    write_torch03_checkpoint(path, {"epoch": 1, "step": 1, "state_dict": _crf_state(W)})
    panels = plot_W.crf_weights(path)
    assert panels.shape == (3, 3, 3, 3)
    # Entry (a, b, c, d): from grid node a·3 + b to node c·3 + d, not symmetrised.
    assert panels[0, 1, 2, 0] == W[1, 6] and panels[2, 0, 0, 1] == W[6, 1] != W[1, 6]

    figure = plot_W.plot_w(panels)
    images = [ax.images[0] for ax in figure.axes if ax.images]
    assert len(images) == 9
    for index, image in enumerate(images):
        a, b = divmod(index, 3)
        np.testing.assert_array_equal(image.get_array(), W[3 * a + b].reshape(3, 3))
        assert image.get_clim() == (-1, 1) and image.get_cmap().name == "seismic"


def test_main_writes_a_png_beside_the_checkpoint(tmp_path, W, capsys):
    model = MODELS["resnet18"](num_nodes=9)
    with torch.no_grad():
        model.crf.W.copy_(torch.from_numpy(W)[None])
    ckpt = save_checkpoint(tmp_path / "best.ckpt", model, epoch=1, step=1)
    assert plot_W.main([str(ckpt)]) == 0
    assert capsys.readouterr().err == ""
    with Image.open(tmp_path / "best_W.png") as image:
        assert image.format == "PNG" and image.size == (640, 640)
        pixels = np.asarray(image.convert("RGB"))
    # The seismic map shows strong reds and blues for |W| near 1.
    red, blue = pixels[..., 0].astype(int), pixels[..., 2].astype(int)
    assert ((red > 200) & (blue < 60)).any() and ((blue > 200) & (red < 60)).any()

    out = tmp_path / "figs" / "W.svg"
    assert plot_W.main([str(ckpt), "--out", str(out)]) == 0
    assert out.read_text().lstrip().startswith("<?xml")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.ckpt", "best_W.png", "figs"]


def test_other_grid_sizes(tmp_path):
    crf = CRF(4)
    with torch.no_grad():
        crf.W.uniform_(-1, 1)
    torch.save({"state_dict": {"crf.W": crf.W.detach()}}, tmp_path / "g2.ckpt")
    assert plot_W.crf_weights(tmp_path / "g2.ckpt").shape == (2, 2, 2, 2)
    torch.save({"state_dict": {"crf.W": torch.zeros(1, 6, 6)}}, tmp_path / "g6.ckpt")
    assert plot_W.main([str(tmp_path / "g6.ckpt")]) == 2


def test_checkpoint_without_crf_is_one_line_error(tmp_path, capsys):
    ckpt = save_checkpoint(tmp_path / "base.ckpt", MODELS["resnet18"](num_nodes=9, use_crf=False), epoch=1, step=1)
    assert plot_W.main([str(ckpt)]) == 2
    err = capsys.readouterr().err
    assert err == f"plot_W: error: {ckpt}: no CRF layer (crf.W) in this checkpoint (trained with use_crf: false?)\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base.ckpt"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["{tmp}/missing.ckpt"], "missing.ckpt: no such checkpoint file"),
        (["{tmp}/best.ckpt", "--out", "{tmp}/W.xyz"], "W.xyz: cannot save a figure as 'xyz'"),
    ],
)
def test_bad_arguments(tmp_path, W, capsys, args, message):
    torch.save({"state_dict": _crf_state(W)}, tmp_path / "best.ckpt")
    assert plot_W.main([arg.format(tmp=tmp_path) for arg in args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("plot_W: error: ") and message in err and err.count("\n") == 1


def test_runs_as_a_script_headless_with_show(tmp_path, W):
    # `python wsi/bin/plot_W.py` (the `python -m wsi.bin.plot_W` form shares the same main).
    torch.save({"state_dict": _crf_state(W)}, tmp_path / "best.ckpt")
    env = {**os.environ, "MPLBACKEND": "Agg"}  # --show on a non-interactive backend returns at once
    env.pop("DISPLAY", None)
    done = subprocess.run(
        [sys.executable, str(ROOT / "wsi" / "bin" / "plot_W.py"), str(tmp_path / "best.ckpt"), "--show"],
        env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "best_W.png").is_file()
