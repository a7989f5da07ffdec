"""What train.py shows in TensorBoard beyond the original's four tags, read back with TensorBoard's own reader."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers import write_config
from wsi.bin.train import main
from wsi.config import load_config
from wsi.model import inference_model, load_model
from wsi.model.crf_figure import crf_panels, render_w
from wsi.monitor import SlidePreview, hparams_of
from wsi.monitor.images import NORMAL_RGB, TUMOUR_RGB, grid_mosaic

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
from tensorboard.plugins.hparams import plugin_data_pb2  # noqa: E402
from tensorboard.util import tensor_util  # noqa: E402


@pytest.fixture(autouse=True)
def one_thread(one_torch_thread):
    """Every test of this file runs with one torch thread (tests/conftest.py)."""


REGION = "256,256,512,384"


def read_events(folder):
    """TensorBoard's EventAccumulator over ``folder``, keeping every event."""
    kinds = ("scalars", "images", "tensors", "histograms", "compressedHistograms", "audio")
    acc = event_accumulator.EventAccumulator(str(folder), size_guidance=dict.fromkeys(kinds, 0))
    acc.Reload()
    return acc


def scalars(acc, tag):
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def image(acc, tag, step):
    (event,) = [e for e in acc.Images(tag) if e.step == step]
    return np.asarray(Image.open(io.BytesIO(event.encoded_image_string)).convert("RGB"))


@pytest.fixture(scope="module")
def run(data, tmp_path_factory):  # noqa: F811
    """Two epochs (2 steps each, log_every 1) with --tb_slide on a region of the training slide."""
    folder = tmp_path_factory.mktemp("board")
    cfg_path, cfg = write_config(data, folder / "cfg.json", on_the_fly=True)
    save = folder / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main([str(cfg_path), str(save), "--epochs", "2", "--num_workers", "0",
                     "--tb_slide", str(data / "slides" / "Tumor_001.tif"), "--tb_region", REGION]) == 0
    finally:
        torch.set_num_threads(threads)
    return save, cfg, read_events(save)


def test_original_tags_keep_their_steps_and_the_new_ones_follow_them(run):
    save, cfg, acc = run
    ckpt = torch.load(save / "train.ckpt", map_location="cpu", weights_only=True)
    tags = set(acc.Tags()["scalars"])
    assert {"train/loss", "train/acc", "valid/loss", "valid/acc"} <= tags
    assert [s for s, _ in scalars(acc, "train/loss")] == [1, 2, 3, 4]
    assert [s for s, _ in scalars(acc, "valid/acc")] == [2, 4]
    # The learning rate of every logged step is the optimizer's: the config's lr (no schedule).
    assert scalars(acc, "train/lr") == [(s, pytest.approx(cfg["lr"])) for s in (1, 2, 3, 4)]
    assert [s for s, _ in scalars(acc, "speed/grids_per_s")] == [1, 2, 3, 4]
    assert all(v > 0 for _, v in scalars(acc, "speed/grids_per_s"))
    assert all(0 <= v <= 1 for _, v in scalars(acc, "speed/data_wait_share"))
    # W's 81 entries at the last step are the checkpoint's.
    W = ckpt["state_dict"]["crf.W"][0]
    entries = sorted(tag for tag in tags if tag.startswith("crf/W/"))
    assert len(entries) == 81 and [s for s, _ in scalars(acc, "crf/W/0_to_4")] == [1, 2, 3, 4]
    for i, j in [(0, 4), (4, 0), (8, 8), (3, 5)]:
        assert scalars(acc, f"crf/W/{i}_to_{j}")[-1][1] == pytest.approx(W[i, j].item(), abs=1e-7)
    assert np.abs(W.numpy()).max() > 0  # trained: the check above compares non-zero values


def test_validation_tags(run):
    save, _, acc = run
    ckpt = torch.load(save / "train.ckpt", map_location="cpu", weights_only=True)
    valid_acc = dict(scalars(acc, "valid/acc"))
    centre, border = dict(scalars(acc, "valid/acc_centre")), dict(scalars(acc, "valid/acc_border"))
    assert sorted(centre) == sorted(border) == [2, 4]
    for step in (2, 4):  # one validation batch: the cell accuracy is the centre's and 8 border cells' mean
        assert (centre[step] + 8 * border[step]) / 9 == pytest.approx(valid_acc[step], abs=1e-6)
    assert scalars(acc, "valid/best_loss")[-1][1] == pytest.approx(ckpt["best_valid_loss"])
    assert [e.step for e in acc.Tensors("valid/pr_curve")] == [2, 4]
    # PR curve data: [6, thresholds] rows TP, FP, TN, FN, precision, recall; all 2 × 2 × 9 cells counted.
    counts = tensor_util.make_ndarray(acc.Tensors("valid/pr_curve")[-1].tensor_proto)
    assert counts.shape == (6, 127)
    assert counts[:4, 0].sum().item() == 36 and counts[0, 0] + counts[3, 0] == 18  # 18 tumour cells


def test_images_match_the_checkpoint(run, data):  # noqa: F811
    save, cfg, acc = run
    ckpt = torch.load(save / "train.ckpt", map_location="cpu", weights_only=True)
    assert [e.step for e in acc.Images("crf/W")] == [2, 4]
    np.testing.assert_array_equal(image(acc, "crf/W", 4), render_w(crf_panels(ckpt["state_dict"]["crf.W"])))
    best = torch.load(save / "best.ckpt", map_location="cpu", weights_only=True)
    np.testing.assert_array_equal(image(acc, "crf/W", best["step"]), render_w(crf_panels(best["state_dict"]["crf.W"])))

    # The first 4 grids of each epoch's first batch (2 tumour + 2 normal, shuffled): 3×3 cells of 16 + 2·2 px.
    assert [e.step for e in acc.Images("train/grids")] == [1, 3]
    grids = image(acc, "train/grids", 1)
    assert grids.shape == (60, 4 * 60 + 3 * 6, 3)
    corners = [tuple(grids[0, i * 66]) for i in range(4)]
    assert sorted(corners) == sorted([tuple(TUMOUR_RGB)] * 2 + [tuple(NORMAL_RGB)] * 2)

    # The --tb_slide map at the last validation: the map of train.ckpt's network, drawn the same way.
    assert [e.step for e in acc.Images("slide/probs_map")] == [2, 4]
    assert all(v > 0 for _, v in scalars(acc, "slide/preview_seconds"))
    config = load_config(save / "cfg.json")
    preview = SlidePreview(data / "slides" / "Tumor_001.tif", config, torch.device("cpu"),
                           tuple(int(v) for v in REGION.split(",")))
    model = inference_model(load_model(save / "train.ckpt", config, torch.device("cpu")))
    expected = preview.image(preview.probs_map(model))
    logged = image(acc, "slide/probs_map", 4)
    assert logged.shape == expected.shape
    assert (np.abs(logged.astype(int) - expected).max(axis=2) > 2).mean() < 0.001


def test_config_text_and_hparams(run):
    save, cfg, acc = run
    (text,) = acc.Tensors("config/text_summary")
    body = text.tensor_proto.string_val[0].decode()
    assert '"crop_size": 16' in body and '"tb_region": [' in body
    content = acc.PluginTagToContent("hparams")
    session = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    values = session.session_start_info.hparams
    assert values["lr"].number_value == pytest.approx(cfg["lr"]) and values["use_crf"].bool_value
    assert values["augment"].string_value == "auto" and "coords_tumor_train" not in values
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    assert {m.name.tag for m in experiment.metric_infos} >= {"valid/loss", "valid/acc", "valid/acc_centre"}
    settings = {key for key in cfg if not key.startswith(("coords_", "wsi_path_", "json_path_"))}
    assert settings == set(hparams_of(cfg, {})) and settings | {"amp", "seed", "world_size"} <= set(values)
    assert not any(key.startswith(("coords_", "wsi_path_", "json_path_")) for key in values)


def test_grid_mosaic_frames_cells_by_label():
    grids = torch.zeros(2, 9, 3, 4, 4)  # mid grey
    labels = torch.zeros(2, 9)
    labels[1, 4] = 1
    out = grid_mosaic(grids, labels, frame=1, gap=2)
    assert out.shape == (18, 2 * 18 + 2, 3)
    assert tuple(out[0, 0]) == tuple(NORMAL_RGB) and tuple(out[6, 20 + 6]) == tuple(TUMOUR_RGB)
    assert tuple(out[7, 7]) == (128, 128, 128) and tuple(out[0, 18]) == (255, 255, 255)


@pytest.mark.parametrize("region, message", [("0,0,4096,64", "not inside"), ("0,0,8", "expected X,Y,W,H")])
def test_bad_region_is_one_line_before_any_output(data, tmp_path, capsys, region, message):  # noqa: F811
    cfg_path, _ = write_config(data, tmp_path / "cfg.json", on_the_fly=True)
    save = tmp_path / "out"
    args = [str(cfg_path), str(save), "--num_workers", "0", "--tb_slide", str(data / "slides" / "Tumor_001.tif"),
            "--tb_region", region]
    try:
        code = main(args)
    except SystemExit as exit_info:  # refused by the parser
        code = exit_info.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and not save.exists()


def test_the_lr_tag_follows_the_configs_schedule(data, tmp_path):  # noqa: F811
    """With ``lr_schedule`` (warm-up, then a cosine to 0), ``train/lr`` at logged step s is the schedule's lr of
    0-based step s - 1, the one the optimizer used for that step."""
    from wsi.config import lr_at_step

    cfg_path, cfg = write_config(data, tmp_path / "cfg.json", on_the_fly=True, lr_schedule="cosine",
                                 lr_warmup_steps=2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main([str(cfg_path), str(tmp_path / "run"), "--epochs", "2", "--num_workers", "0"]) == 0
    finally:
        torch.set_num_threads(threads)
    logged = scalars(read_events(tmp_path / "run"), "train/lr")
    total = len(logged)
    assert [s for s, _ in logged] == list(range(1, total + 1)) and total == 4
    expected = [lr_at_step(cfg, step - 1, total) for step, _ in logged]
    assert [v for _, v in logged] == pytest.approx(expected, rel=1e-6)
    assert expected[0] < expected[1] and expected[-1] < expected[1]  # a warm-up, then the decay: not constant
