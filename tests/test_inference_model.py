"""The cheaper exact CNN pass (BatchNorm folded, channels_last) and what the fast mode computes with it.

Models have non-trivial BatchNorm statistics (as a trained model has), so folding changes every convolution.
The demo geometry (image 192, patch 64, crop 48 on a level-6 mask, stride 64) runs on a small synthetic slide.
"""

import importlib.util

import numpy as np
import pytest
import torch

from wsi.data.pyramid import write_pyramid_from_array
from wsi.data.slide import open_slide
from wsi.geometry import GridSpec, mask_geometry
from wsi.inference import InferenceStats, fast_probs_map, faithful_probs_map
from wsi.inference.fast import BlockReader
from wsi.model import MODELS
from wsi.model.checkpoint import load_checkpoint, load_model_state, save_checkpoint
from wsi.model.inference import InferencePass, fold_batchnorm, inference_model
from tests.helpers import randomised_model, texture

DEMO = GridSpec(192, 64, 48)
LEVEL = 6
# OpenVINO is the `openvino` extra (pip install .[openvino]; the dev extra includes it): its tests skip without it.
HAS_OPENVINO = importlib.util.find_spec("openvino") is not None
requires_openvino = pytest.mark.skipif(not HAS_OPENVINO, reason="openvino not installed (the openvino extra)")
OPENVINO = pytest.param("openvino", marks=requires_openvino)


@pytest.fixture(scope="module")
def model():
    return randomised_model()


@pytest.fixture(scope="module")
def patches():
    return torch.rand(12, 3, 48, 48, generator=torch.Generator().manual_seed(2)) * 2 - 1


def _embed(net, patches):
    net = InferencePass.of(net)
    with torch.inference_mode():
        return net.embed(net.as_input(patches))


def test_batchnorm_folding_equals_the_unfolded_model(model, patches):
    folded = fold_batchnorm(inference_model(model, fold_bn=False, channels_last=False).network)
    assert folded.folded_batchnorms == 20  # stem + 2 per block × 8 + 3 downsamples
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    feats, logits = _embed(model, patches)
    feats_f, logits_f = _embed(folded, patches)
    scale = float(feats.abs().max())
    assert float((feats_f - feats).abs().max()) <= 1e-5 * max(1.0, scale)
    assert float((logits_f - logits).abs().max()) <= 1e-5 * max(1.0, float(logits.abs().max()))
    assert float((logits_f - logits).abs().max()) > 0  # really another computation


def test_inference_model_is_exact_and_leaves_the_model_alone(model, patches):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast = inference_model(model)
    assert fast.channels_last and fast.network.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert not any(p.requires_grad for p in fast.network.parameters())
    after = model.state_dict()
    assert list(after) == list(before) and all(torch.equal(after[k], before[k]) for k in before)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    grids = patches[:9].unsqueeze(0)
    with torch.inference_mode():
        reference, out = model(grids), fast(fast.as_input(grids.flatten(0, 1)).unflatten(0, (1, 9)))
    assert float((out - reference).abs().max()) <= 1e-5 * max(1.0, float(reference.abs().max()))


def test_fold_needs_eval_mode():
    with pytest.raises(ValueError, match="eval mode"):
        fold_batchnorm(MODELS["resnet18"](num_nodes=9))


def test_channels_last_model_saves_and_loads_checkpoints_as_before(tmp_path, model, patches):
    save_checkpoint(tmp_path / "plain.ckpt", model, epoch=1, step=1)
    model.to(memory_format=torch.channels_last)
    try:
        save_checkpoint(tmp_path / "cl.ckpt", model, epoch=1, step=1)
    finally:
        model.to(memory_format=torch.contiguous_format)
    plain, cl = (load_checkpoint(tmp_path / n, map_location="cpu")["state_dict"] for n in ("plain.ckpt", "cl.ckpt"))
    assert list(cl) == list(plain)
    assert all(torch.equal(cl[k], plain[k]) for k in plain)
    # Loading into a channels_last model gives the same network.
    other = MODELS["resnet18"](num_nodes=9).eval().to(memory_format=torch.channels_last)
    load_model_state(other, plain)
    assert all(torch.equal(other.state_dict()[k], plain[k]) for k in plain)
    torch.testing.assert_close(_embed(other, patches)[1], _embed(model, patches)[1], atol=1e-5, rtol=1e-5)


# The fast mode with the inference model --------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo_slide(tmp_path_factory):
    path = tmp_path_factory.mktemp("demo") / "demo.tif"
    write_pyramid_from_array(path, texture(1088, 1600, seed=3), compression="zlib")  # level 6: 25 × 17
    return path


def _mask_and_geometry(slide_path, positions):
    with open_slide(slide_path) as slide:
        mask = np.zeros(slide.level_dimensions[LEVEL], dtype=bool)
        geometry = mask_geometry(slide.level_dimensions, slide.level_downsamples, mask.shape)
    for x, y in positions:
        mask[x, y] = True
    return mask, geometry


@pytest.mark.parametrize("runtime", ["torch", OPENVINO])
def test_default_fast_map_equals_the_float32_faithful_map_at_demo_size(demo_slide, model, runtime):
    # A blob, a lone position and the corners (regions past the border).
    positions = [(x, y) for x in range(8, 13) for y in range(5, 9)] + [(20, 3), (0, 0), (24, 16)]
    mask, geometry = _mask_and_geometry(demo_slide, positions)
    stats = InferenceStats()
    net = inference_model(model, runtime=runtime, crop=DEMO.crop_size)
    fast = fast_probs_map(net, demo_slide, mask, DEMO, geometry, num_workers=2, progress=False, stats=stats,
                          block_size=512)
    faithful = faithful_probs_map(model, demo_slide, mask, DEMO, geometry, num_workers=0, progress=False)
    assert np.abs(fast - faithful).max() <= 1e-5
    assert len(np.unique(faithful[mask].round(5))) > 10
    assert stats.regions_read > 1 and 0 < stats.extra["cnn_busy"] <= 1
    # --mode faithful runs the same network: its map too.
    faithful_net = faithful_probs_map(net, demo_slide, mask, DEMO, geometry, num_workers=0, progress=False)
    assert np.abs(faithful_net - faithful).max() <= 1e-5


def test_baseline_fast_mode_is_one_pass_per_position(demo_slide):
    model = inference_model(randomised_model(use_crf=False))
    mask, geometry = _mask_and_geometry(demo_slide, [(x, y) for x in range(3, 20) for y in range(2, 14)])
    for eight_avg in (False, True):
        stats = InferenceStats()
        fast_probs_map(model, demo_slide, mask, DEMO, geometry, num_workers=1, eight_avg=eight_avg,
                       progress=False, stats=stats)
        assert stats.evaluations_per_position == 1.0
        assert stats.cnn_evaluations == stats.positions * stats.transforms == mask.sum() * (8 if eight_avg else 1)


def test_eight_avg_computes_each_transformed_patch_once(demo_slide, model):
    mask, geometry = _mask_and_geometry(demo_slide, [(x, y) for x in range(5, 9) for y in range(5, 8)])
    stats = InferenceStats()
    fast_probs_map(inference_model(model), demo_slide, mask, DEMO, geometry, num_workers=0, eight_avg=True,
                   progress=False, stats=stats)
    # Every needed lattice patch once per transform; the 8 transforms of a patch are 8 different images.
    assert stats.cnn_evaluations == 8 * stats.extra["needed_patches"]
    assert stats.extra["needed_patches"] == (4 + 2) * (3 + 2)  # the 3×3 neighbours of a 4×3 block, q = 1


def test_block_reader_threads_read_the_same_blocks(demo_slide):
    regions = [(-40, -40, 300, 200), (500, 300, 256, 256), (1500, 1000, 200, 200), (0, 0, 64, 64)]
    inline = [block for block, bad, _ in BlockReader(demo_slide, regions, threads=0) if not len(bad)]
    threaded_reader = BlockReader(demo_slide, regions, threads=3)
    threaded = [block for block, bad, _ in threaded_reader if not len(bad)]  # items: (block, bad patches, reason)
    threaded_reader.close()
    assert [b.shape for b in inline] == [(200, 300, 3), (256, 256, 3), (200, 200, 3), (64, 64, 3)]
    assert all(np.array_equal(a, b) for a, b in zip(inline, threaded))
    assert np.all(inline[0][:40, :40] == 0)  # past the border: black


@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["torch", OPENVINO])
def test_default_fast_map_equals_the_float32_faithful_map_at_224(tmp_path, runtime):
    """The paper's geometry (768/256/224, level-6 mask, q = 4) on a few positions: within 1e-5."""
    path = tmp_path / "slide.tif"
    write_pyramid_from_array(path, texture(1536, 2048, seed=4), compression="zlib")  # level 6: 32 × 24
    model = randomised_model()
    mask, geometry = _mask_and_geometry(path, [(10, 10), (11, 10), (20, 15), (0, 0)])
    grid = GridSpec(768, 256, 224)
    fast = fast_probs_map(inference_model(model, runtime=runtime, crop=224), path, mask, grid, geometry,
                          num_workers=2, progress=False)
    faithful = faithful_probs_map(model, path, mask, grid, geometry, num_workers=0, progress=False)
    assert np.abs(fast - faithful).max() <= 1e-5


def test_cli_default_and_eager_cnn_give_the_same_map(demo_slide, tmp_path, caplog):
    import json
    from pathlib import Path

    from wsi.bin import probs_map as cli

    cfg = {**json.loads((Path(__file__).parents[1] / "configs" / "demo_crf.json").read_text())}
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    save_checkpoint(tmp_path / "m.ckpt", randomised_model(), epoch=1, step=1)
    mask, _ = _mask_and_geometry(demo_slide, [(x, y) for x in range(6, 10) for y in range(4, 7)])
    np.save(tmp_path / "mask.npy", mask)
    common = [str(demo_slide), str(tmp_path / "m.ckpt"), str(tmp_path / "cfg.json"), str(tmp_path / "mask.npy")]
    threads = torch.get_num_threads()
    try:
        with caplog.at_level("INFO"):
            assert cli.main(common + [str(tmp_path / "default.npy")]) == 0
            assert cli.main(common + [str(tmp_path / "torch.npy"), "--runtime", "torch"]) == 0
            assert cli.main(common + [str(tmp_path / "eager.npy"), "--eager_cnn", "--threads", "1",
                                      "--num_workers", "0", "--batch_size", "2"]) == 0
    finally:
        torch.set_num_threads(threads)  # --threads sets it for the whole process
    default, eager = np.load(tmp_path / "default.npy"), np.load(tmp_path / "eager.npy")
    assert np.abs(default - eager).max() <= 1e-5 and np.count_nonzero(default) == mask.sum()
    assert np.abs(np.load(tmp_path / "torch.npy") - eager).max() <= 1e-5
    logged = " ".join(r.getMessage() for r in caplog.records)
    # The default on a CPU: OpenVINO where the extra is installed, else PyTorch's folded channels_last pass.
    assert ("BatchNorm folded, openvino float32" in logged) == HAS_OPENVINO
    assert "BatchNorm folded, channels_last" in logged and "as loaded (--eager_cnn)" in logged
    assert "CNN busy" in logged and "1 torch threads" in logged
    # Passes of 32 patches on the CPU by default; an explicit --batch_size gives batch_size x 9, as on a GPU.
    assert "32 patches per pass" in logged and "18 patches per pass" in logged


def test_a_failed_block_read_stops_the_read_ahead_cleanly(demo_slide):
    """A read error in a reader thread reaches the caller as the slide error (one line), and the reader closes."""
    from wsi.errors import WSIError

    reader = BlockReader(demo_slide, [(0, 0, 64, 64)] * 3 + [(0, 0, -5, 64)] + [(0, 0, 64, 64)] * 3, threads=2)
    blocks = iter(reader)
    with pytest.raises(WSIError, match="cannot read level 0 region") as err:
        for _ in blocks:
            pass
    blocks.close()
    reader.close()
    assert "\n" not in str(err.value)


# The CPU inference runtime (OpenVINO) ------------------------------------------------------------------------
@requires_openvino
def test_openvino_pass_equals_the_eager_model_for_any_batch(model):
    net = inference_model(model, runtime="openvino", crop=48)
    assert net.runtime == "openvino" and not net.channels_last
    for n in (1, 5, 12):  # one compiled network, any number of patches
        patches = torch.rand(n, 3, 48, 48, generator=torch.Generator().manual_seed(n)) * 2 - 1
        feats, logits = _embed(model, patches)
        feats_o, logits_o = _embed(net, patches)
        assert feats_o.shape == feats.shape and logits_o.shape == logits.shape == (n,)
        assert feats_o.dtype == logits_o.dtype == torch.float32
        assert float((feats_o - feats).abs().max()) <= 1e-5 * max(1.0, float(feats.abs().max()))
        assert float((logits_o - logits).abs().max()) <= 1e-5 * max(1.0, float(logits.abs().max()))
    # The grid forward (CRF in PyTorch on the runtime's embeddings) is the model's.
    grids = torch.rand(2, 9, 3, 48, 48, generator=torch.Generator().manual_seed(7))
    with torch.inference_mode():
        torch.testing.assert_close(net(grids), model(grids), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("runtime, device, options, expected", [
    ("auto", "cpu", {}, "openvino" if HAS_OPENVINO else "torch"),
    ("auto", "cpu", {"amp": True}, "torch"),
    ("auto", "cpu", {"compile": True}, "torch"),
    ("auto", "cpu", {"optimize": False}, "torch"),
    ("auto", "cuda", {}, "torch"),
    ("torch", "cpu", {}, "torch"),
    pytest.param("openvino", "cpu", {}, "openvino", marks=requires_openvino),
])
def test_resolve_runtime(runtime, device, options, expected):
    from wsi.model.runtime import resolve_runtime

    assert resolve_runtime(runtime, torch.device(device), **options) == expected


@pytest.mark.parametrize("device, options, clash, option", [
    ("cuda", {}, "device cuda", "device cuda"), ("cpu", {"amp": True}, "amp", "--amp"),
    ("cpu", {"compile": True}, "compile", "--compile"), ("cpu", {"optimize": False}, "optimize=False", "--eager_cnn"),
])
def test_openvino_refuses_what_it_cannot_run(device, options, clash, option):
    """The library names its parameters; the scripts print them as their options (wsi.cli.message)."""
    from wsi.errors import ParameterError
    from wsi.model.runtime import resolve_runtime

    with pytest.raises(ParameterError) as err:
        resolve_runtime("openvino", torch.device(device), **options)
    assert str(err.value) == f"runtime openvino: runs the float32 pass on the CPU only, not with {clash}"
    assert err.value.as_option() == f"--runtime openvino: runs the float32 pass on the CPU only, not with {option}"


def test_cli_refuses_openvino_with_amp_in_one_line(demo_slide, tmp_path, capsys):
    from wsi.bin import probs_map as cli

    status = cli.main([str(demo_slide), str(tmp_path / "m.ckpt"), str(tmp_path / "cfg.json"),
                       str(tmp_path / "mask.npy"), str(tmp_path / "out.npy"), "--runtime", "openvino", "--amp"])
    err = capsys.readouterr().err
    assert status == 2 and len(err.strip().splitlines()) == 1
    assert err.strip().endswith("error: --runtime openvino: runs the float32 pass on the CPU only, not with --amp")
    assert not (tmp_path / "out.npy").exists()


@requires_openvino
def test_openvino_models_come_and_go_without_breaking_signal_delivery():
    """OpenVINO's CPU plugin swaps the thread's alternate signal stack while it starts; with one plugin per model,
    models made and freed in turn left a freed stack in place and the next Python signal handler killed the
    process (SIGSEGV; found as pytest dying when a DataLoader's SIGCHLD arrived). One shared Core prevents it."""
    import subprocess
    import sys
    from pathlib import Path

    code = """
import gc, os, signal, torch
from wsi.model import MODELS
from wsi.model.inference import inference_model
model = MODELS["resnet18"](num_nodes=9).eval()
signal.signal(signal.SIGUSR1, lambda *args: None)
nets = []
for k in range(4):
    nets.append(inference_model(model, runtime="openvino", crop=32))
    nets[-1].embed(torch.zeros(2, 3, 32, 32))
    if k % 2:
        nets.pop(0)
        gc.collect()
    os.kill(os.getpid(), signal.SIGUSR1)
nets.clear()
gc.collect()
os.kill(os.getpid(), signal.SIGUSR1)
print("ok")
"""
    # -X faulthandler: an alternate signal stack in place from the start, as under pytest.
    done = subprocess.run([sys.executable, "-X", "faulthandler", "-c", code], capture_output=True, text=True,
                          cwd=Path(__file__).parents[1])
    assert done.returncode == 0 and done.stdout.strip() == "ok", (done.returncode, done.stderr[-2000:])


# The explicit pass: what runs is said by the pass, not by attributes set on the network -----------------------
def test_the_pass_says_what_runs_and_leaves_the_network_plain(model, patches):
    net = inference_model(model)
    assert isinstance(net, InferencePass) and net.network is not model
    assert (net.device, net.runtime, net.channels_last, net.folded, net.compiled) == (
        torch.device("cpu"), "torch", True, True, False)
    assert net.describe() == "BatchNorm folded, channels_last"
    # Nothing bolted onto the module: its embed is the class's, no layout or runtime attribute.
    assert "embed" not in vars(net.network) and not hasattr(net.network, "channels_last")
    assert not hasattr(net.network, "runtime")
    assert net.use_crf and net.crf_nodes == 9 and net.feat_dim == 512
    as_loaded = InferencePass.of(model)
    assert as_loaded.network is model and InferencePass.of(as_loaded) is as_loaded
    assert as_loaded.describe() == "as loaded" and not as_loaded.channels_last
    assert inference_model(model, optimize=False).network is model  # --eager_cnn: no copy
    assert inference_model(model, fold_bn=False, channels_last=False).describe() == "as loaded"
    grids = patches[:9].unsqueeze(0)
    with torch.inference_mode():
        torch.testing.assert_close(net(grids), model(grids), atol=1e-5, rtol=1e-5)
    assert InferencePass.of(randomised_model(use_crf=False)).crf_nodes is None


def test_pass_options_decide_the_runtime_once_before_any_work():
    from wsi.errors import ParameterError
    from wsi.model.inference import PassOptions

    cpu = torch.device("cpu")
    auto = PassOptions.resolve(cpu, threads=3)
    assert auto.runtime == ("openvino" if HAS_OPENVINO else "torch") and auto.fallback and auto.threads == 3
    assert PassOptions.resolve(cpu, runtime="torch") == PassOptions(runtime="torch", fallback=False)
    assert PassOptions.resolve(cpu, compile=True).runtime == "torch"
    with pytest.raises(ParameterError, match="not with amp"):
        PassOptions.resolve(cpu, runtime="openvino", amp=True)


def test_the_fast_modes_exactness_is_checked_once(demo_slide, model, monkeypatch, caplog):
    """compute_probs_map asks fast_probs_map, which checks once before any work and refuses an inexact geometry;
    the faithful mode then runs (one log line)."""
    import wsi.inference.fast as fast_module
    from wsi.inference import compute_probs_map

    calls = []
    check = fast_module.fast_mode_problem
    monkeypatch.setattr(fast_module, "fast_mode_problem", lambda *args: calls.append(args) or check(*args))
    mask, _ = _mask_and_geometry(demo_slide, [(8, 5), (9, 6)])
    net = inference_model(model)
    for grid, mode in ((DEMO, "fast"), (GridSpec(144, 48, 40), "faithful")):  # stride 64 does not divide 48
        calls.clear()
        stats = InferenceStats()
        with caplog.at_level("INFO"):
            probs = compute_probs_map(net, demo_slide, mask, grid, num_workers=0, progress=False, stats=stats)
        assert len(calls) == 1 and stats.mode == mode and np.count_nonzero(probs) == 2
    assert sum("running the faithful mode" in r.getMessage() for r in caplog.records) == 1
