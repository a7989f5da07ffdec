"""Whole-slide inference (probs_map): fast = faithful, the contract's map, geometry checks, many slides, shards.

A synthetic slide whose size is not a multiple of the stride (level sizes rounded up, as Camelyon16's), a
randomly initialised ResNet-18 + CRF with random non-zero W (so the CRF mixes the neighbours), and a small grid
(image 96, patch 32, crop 28) on a level-4 mask (stride 16, neighbours 2 mask pixels apart).
"""

import json

import numpy as np
import openslide
import pytest
import torch

from tests.helpers import make_slide, with_torch_pass
from wsi.bin import probs_map as cli
from wsi.data.slide import open_slide
from wsi.data.wsi_producer import GridWSIPatchDataset
from wsi.geometry import GeometryError, GridSpec, mask_geometry
from wsi.inference import InferenceStats, compute_probs_map, fast_probs_map, faithful_probs_map
from wsi.inference.lattice import fast_mode_problem
from wsi.inference.runner import plan_jobs, select_shard
from wsi.model import MODELS
from wsi.model.checkpoint import save_checkpoint

GRID = GridSpec(96, 32, 28)
LEVEL = 4  # stride 16: patch_size 32 is 2 strides
SLIDE_W, SLIDE_H = 600, 420  # level 4: 38 x 27 (rounded up from 37.5 x 26.25)


def make_model(use_crf=True, seed=0):
    torch.manual_seed(seed)
    model = MODELS["resnet18"](num_nodes=GRID.num_nodes, use_crf=use_crf)
    if use_crf:
        with torch.no_grad():
            model.crf.W.normal_(0.0, 1.0)  # non-zero, so that the neighbours change the centre's logit
    return model.eval()


def level_mask(slide_path, positions):
    with open_slide(slide_path) as slide:
        mask = np.zeros(slide.level_dimensions[LEVEL], dtype=bool)
    for x, y in positions:
        mask[x, y] = True
    return mask


def geometry_of(slide_path, mask):
    with open_slide(slide_path) as slide:
        return mask_geometry(slide.level_dimensions, slide.level_downsamples, mask.shape)


@pytest.fixture(scope="module")
def slide_path(tmp_path_factory):
    return make_slide(tmp_path_factory.mktemp("slide") / "Test_001.tif")


@pytest.fixture(scope="module")
def crf_model():
    return make_model()


@pytest.fixture(scope="module")
def tissue(slide_path):
    """Asymmetric tissue: the four corners (regions past every border), an L-shaped blob, a lone position."""
    with open_slide(slide_path) as slide:
        xm, ym = slide.level_dimensions[LEVEL]
    positions = [(0, 0), (xm - 1, ym - 1), (0, ym - 1), (xm - 1, 0), (20, 4)]
    positions += [(x, y) for x in range(9, 14) for y in range(6, 8)] + [(9, y) for y in range(8, 12)]
    return level_mask(slide_path, positions)


@pytest.fixture(scope="module")
def maps(slide_path, crf_model, tissue):
    geometry = geometry_of(slide_path, tissue)
    fast_stats, faithful_stats = InferenceStats(), InferenceStats()
    fast = fast_probs_map(crf_model, slide_path, tissue, GRID, geometry, num_workers=0, progress=False,
                          stats=fast_stats, block_size=128)  # small blocks: several bands and block columns
    faithful = faithful_probs_map(crf_model, slide_path, tissue, GRID, geometry, num_workers=0, progress=False,
                                  stats=faithful_stats)
    return fast, faithful, fast_stats, faithful_stats


# Fast = faithful -----------------------------------------------------------------------------------------------
def test_fast_equals_faithful(maps, tissue):
    fast, faithful, fast_stats, faithful_stats = maps
    assert fast.dtype == faithful.dtype == np.float64
    assert fast.shape == faithful.shape == tissue.shape
    assert np.abs(fast - faithful).max() <= 1e-5
    assert np.all(faithful[~tissue] == 0) and np.all(fast[~tissue] == 0)
    assert np.all((faithful[tissue] > 0) & (faithful[tissue] < 1))
    assert len(np.unique(faithful[tissue].round(6))) > 10  # a real map, not a constant
    # Every patch once: fewer CNN evaluations and far fewer decoded bytes than 9 crops of a 96² region.
    assert faithful_stats.evaluations_per_position == 9
    assert fast_stats.cnn_evaluations == fast_stats.extra["needed_patches"] < faithful_stats.cnn_evaluations
    assert fast_stats.bytes_decoded < faithful_stats.bytes_decoded / 2


def test_crf_matters(slide_path, tissue, maps):
    """The same weights without the CRF's W give another map: the test above compares CRF outputs."""
    model = make_model()
    with torch.no_grad():
        model.crf.W.zero_()
    geometry = geometry_of(slide_path, tissue)
    plain = fast_probs_map(model, slide_path, tissue, GRID, geometry, num_workers=0, progress=False)
    assert np.abs(plain - maps[1]).max() > 1e-3


def test_map_is_the_contract_at_asymmetric_and_border_positions(slide_path, crf_model, tissue, maps):
    """map[x, y] = sigmoid(centre CRF logit) of the 96² region centred at (int((x+.5)·16), int((y+.5)·16))."""
    fast = maps[0]
    osr = openslide.OpenSlide(str(slide_path))
    xm_last = tissue.shape[0] - 1
    for xm, ym in [(20, 4), (0, 0), (xm_last, 0)]:
        cx, cy = int((xm + 0.5) * 16), int((ym + 0.5) * 16)
        region = np.asarray(osr.read_region((cx - 48, cy - 48), 0, (96, 96)).convert("RGB"), dtype=np.float32)
        image = ((region - 128.0) / 128.0).transpose(2, 0, 1)
        crops = [image[:, 2 + 32 * r:30 + 32 * r, 2 + 32 * c:30 + 32 * c] for r in range(3) for c in range(3)]
        with torch.no_grad():
            logits = crf_model(torch.from_numpy(np.stack(crops))[None])
        expected = torch.sigmoid(logits[0, 4]).item()
        assert fast[xm, ym] == pytest.approx(expected, abs=1e-5)
    osr.close()
    assert fast[4, 20] == 0  # [x, y], not [y, x]: the transposed position is not tissue


def test_region_past_the_border_reads_black(slide_path, tissue):
    dataset = GridWSIPatchDataset(slide_path, tissue, 96, 32, 28)
    corner = int(np.flatnonzero((dataset._x_idcs == 0) & (dataset._y_idcs == 0))[0])
    grid, xm, ym = dataset[corner]
    assert (xm, ym) == (0, 0) and grid.shape == (9, 3, 28, 28) and grid.dtype == np.float32
    # Position (0, 0): the region starts at (8 − 48, 8 − 48) = (−40, −40); the top-left crop lies outside.
    assert np.all(grid[0] == -1.0)  # black (0 − 128) / 128
    assert not np.all(grid[4] == -1.0)
    dataset.close()


def test_eight_avg_fast_equals_faithful(slide_path, crf_model, maps):
    small = level_mask(slide_path, [(0, 3), (12, 7)])  # one grid past the left border
    geometry = geometry_of(slide_path, small)
    fast = fast_probs_map(crf_model, slide_path, small, GRID, geometry, num_workers=0, eight_avg=True,
                          progress=False)
    faithful = faithful_probs_map(crf_model, slide_path, small, GRID, geometry, num_workers=0, eight_avg=True,
                                  progress=False)
    assert np.abs(fast - faithful).max() <= 1e-5
    assert np.all(fast[~small] == 0)
    assert np.abs(fast[small] - maps[1][small]).max() > 1e-4  # the average differs from the plain map


def test_baseline_model_needs_one_evaluation_per_position(slide_path, tissue):
    model = make_model(use_crf=False)
    small = tissue.copy()
    small[9:14] = False  # keep the corners and the lone position: 5 positions
    geometry = geometry_of(slide_path, small)
    stats = InferenceStats()
    fast = fast_probs_map(model, slide_path, small, GRID, geometry, num_workers=1, progress=False, stats=stats)
    faithful = faithful_probs_map(model, slide_path, small, GRID, geometry, num_workers=1, progress=False)
    assert np.abs(fast - faithful).max() <= 1e-5
    assert stats.cnn_evaluations == stats.positions == 5


def test_fast_mode_falls_back_to_faithful_when_stride_does_not_divide_patch(slide_path, caplog):
    grid = GridSpec(72, 24, 20)  # stride 16 does not divide 24
    model = make_model()
    small = level_mask(slide_path, [(3, 3), (30, 20)])
    assert "not a multiple" in fast_mode_problem(geometry_of(slide_path, small), grid)
    stats = InferenceStats()
    with caplog.at_level("INFO"):
        probs = compute_probs_map(model, slide_path, small, grid, mode="fast", num_workers=0, progress=False,
                                  stats=stats)
    assert stats.mode == "faithful"
    assert any("running the faithful mode" in r.getMessage() for r in caplog.records)
    assert np.count_nonzero(probs) == 2


def test_amp_runs_on_the_cpu(slide_path, crf_model, maps):
    small = level_mask(slide_path, [(20, 4)])
    probs = compute_probs_map(crf_model, slide_path, small, GRID, num_workers=0, amp=True, progress=False)
    assert probs.dtype == np.float64 and np.count_nonzero(probs) == 1
    assert probs[20, 4] == pytest.approx(maps[1][20, 4], abs=0.1)  # bfloat16 backbone: close, not equal


# Geometry ------------------------------------------------------------------------------------------------------
def dims(width, height, levels):
    """Level sizes rounded up (Camelyon16 style) and OpenSlide's downsamples (mean of the two axes' ratios)."""
    sizes = [(-(-width // 2 ** k), -(-height // 2 ** k)) for k in range(levels)]
    return sizes, [(width / w + height / h) / 2 for w, h in sizes]


def test_geometry_exact_rounded_up_and_down():
    sizes, downsamples = dims(98304, 103936, 9)
    assert mask_geometry(sizes, downsamples, (1536, 1624)).stride == 64  # Test_026
    assert mask_geometry(sizes, downsamples, (1536, 1624)).level == 6
    sizes, downsamples = dims(1000, 700, 5)
    assert mask_geometry(sizes, downsamples, (63, 44)).stride == 16  # rounded up (OpenSlide says 15.89)
    assert mask_geometry(sizes, downsamples, (62, 43)).stride == 16  # rounded down
    assert mask_geometry(sizes, downsamples, (1000, 700)).stride == 1
    # An SVS-like level 1 at downsample 4.0002: the stride is the integer 4.
    assert mask_geometry([(46001, 32001), (11500, 8000)], [1.0, 4.0002], (11500, 8000)).stride == 4


def test_geometry_refuses_the_originals_issue_6_numbers():
    sizes, downsamples = dims(98304, 103936, 9)
    with pytest.raises(GeometryError) as err:
        mask_geometry(sizes, downsamples, (1536, 2048), mask_name="Test_026.npy", slide_name="Test_026.tif")
    message = str(err.value)
    assert "\n" not in message
    for text in ("Test_026.npy", "1536x2048", "98304x103936", "64", "50.75", "differ between the axes"):
        assert text in message


def test_geometry_refuses_a_ratio_that_is_no_downsample():
    with pytest.raises(GeometryError, match="neither a power of two nor the slide's level downsamples"):
        mask_geometry([(1000, 1000), (500, 500)], [1.0, 2.0], (10, 10))  # ratio 100


def test_geometry_accepts_a_level_downsample_that_is_no_power_of_two():
    geometry = mask_geometry([(900, 600), (300, 200)], [1.0, 3.0], (300, 200))
    assert geometry.stride == 3 and geometry.level == 1
    assert "not a multiple" in fast_mode_problem(geometry, GridSpec(768, 256, 224))
    assert fast_mode_problem(geometry, GridSpec(72, 24, 20)) is None


def test_fast_mode_problems():
    sizes, downsamples = dims(1024, 1024, 7)
    g64 = mask_geometry(sizes, downsamples, (16, 16))
    assert fast_mode_problem(g64, GridSpec(768, 256, 224), eight_avg=True) is None
    assert "odd" in fast_mode_problem(mask_geometry(sizes, downsamples, (1024, 1024)), GridSpec(45, 15, 14))
    assert "must be even" in fast_mode_problem(g64, GridSpec(384, 128, 127), eight_avg=True)
    assert fast_mode_problem(g64, GridSpec(384, 128, 127)) is None


def test_grid_spec_refuses_bad_sizes():
    with pytest.raises(GeometryError, match="not a multiple"):
        GridSpec(100, 32, 28)
    with pytest.raises(GeometryError, match="larger than patch_size"):
        GridSpec(96, 32, 40)


# Command line --------------------------------------------------------------------------------------------------
def write_cfg(path, use_crf=True, crop_size=28):
    cfg = {"model": "resnet18", "use_crf": use_crf, "batch_size": 2, "image_size": 96, "patch_size": 32,
           "crop_size": crop_size, "lr": 0.001, "momentum": 0.9,
           "data_path_tumor_train": "/PATCHES_TUMOR_TRAIN/", "data_path_normal_train": "/PATCHES_NORMAL_TRAIN/",
           "data_path_tumor_valid": "/PATCHES_TUMOR_VALID/", "data_path_normal_valid": "/PATCHES_NORMAL_VALID/",
           "json_path_train": "NCRF/jsons/train", "json_path_valid": "NCRF/jsons/valid", "epoch": 20,
           "log_every": 100}
    path.write_text(json.dumps(cfg, indent=1))
    return cfg


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, crf_model):
    """A config and a checkpoint of the CRF model (with the config in it), and the baseline's."""
    root = tmp_path_factory.mktemp("model")
    cfg = write_cfg(root / "crf.json")
    write_cfg(root / "base.json", use_crf=False)
    save_checkpoint(root / "crf.ckpt", crf_model, epoch=1, step=1, cfg=cfg)
    save_checkpoint(root / "crf_crop24.ckpt", crf_model, epoch=1, step=1, cfg={**cfg, "crop_size": 24})
    return root


def run_cli(argv, capsys):
    status = cli.main(with_torch_pass("probs_map", argv))
    return status, capsys.readouterr().err


def test_cli_single_slide(slide_path, inputs, tmp_path, capsys, maps):
    mask = level_mask(slide_path, [(20, 4), (0, 0)])
    np.save(tmp_path / "mask.npy", mask)
    status, err = run_cli([slide_path, inputs / "crf.ckpt", inputs / "crf.json", tmp_path / "mask.npy",
                           tmp_path / "out" / "map", "--num_workers", "2"], capsys)
    assert status == 0, err
    probs = np.load(tmp_path / "out" / "map.npy")  # .npy appended, as np.save
    assert probs.dtype == np.float64 and probs.shape == mask.shape
    assert np.abs(probs - np.where(mask, maps[1], 0)).max() <= 1e-5
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["map.json", "map.npy"]  # map, sidecar; no temporary


def test_cli_runs_as_a_script():
    import subprocess
    import sys

    from tests.helpers import ROOT

    done = subprocess.run([sys.executable, str(ROOT / "wsi" / "bin" / "probs_map.py"), "--help"],
                          capture_output=True, text=True, cwd=ROOT.parent)
    assert done.returncode == 0, done.stderr
    assert "--eight_avg" in done.stdout and "--mode" in done.stdout


@pytest.mark.parametrize("case, expected", [
    ("transposed_mask", ["mask.npy", "27x38", "600x420", "differ between the axes"]),
    ("crf_vs_base", ["crf.ckpt", "use_crf: false"]),
    ("crop_size", ["crf_crop24.ckpt", "crop_size 24", "crop_size 28"]),
    ("not_npy", ["mask.npy", "not a NumPy .npy tissue mask"]),
    ("missing_slide", ["nowhere.tif", "no such slide file"]),
])
def test_cli_mismatched_inputs(case, expected, slide_path, inputs, tmp_path, capsys):
    mask = level_mask(slide_path, [(20, 4)])
    ckpt, cfg, wsi = inputs / "crf.ckpt", inputs / "crf.json", slide_path
    if case == "transposed_mask":  # saved [y, x], or made from a slide of the transposed size
        mask = mask.T
    elif case == "crf_vs_base":
        cfg = inputs / "base.json"
    elif case == "crop_size":
        ckpt = inputs / "crf_crop24.ckpt"
    elif case == "missing_slide":
        wsi = tmp_path / "nowhere.tif"
    np.save(tmp_path / "mask.npy", mask)
    if case == "not_npy":
        (tmp_path / "mask.npy").write_text("not an array")
    status, err = run_cli([wsi, ckpt, cfg, tmp_path / "mask.npy", tmp_path / "map.npy", "--num_workers", "0"],
                          capsys)
    assert status == 2
    line = err.strip().splitlines()[-1]
    assert line.startswith("probs_map: error: ") and "Traceback" not in err
    for text in expected:
        assert text in line
    assert not (tmp_path / "map.npy").exists()


# Many slides ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def slide_folder(tmp_path_factory):
    """Five small slides (different sizes and content) and their one-position level-4 masks."""
    root = tmp_path_factory.mktemp("many")
    (root / "wsi").mkdir()
    (root / "mask").mkdir()
    for k in range(5):
        path = make_slide(root / "wsi" / f"Test_{k:03d}.tif", width=256 + 16 * k, height=256, seed=k)
        np.save(root / "mask" / f"Test_{k:03d}.npy", level_mask(path, [(k % 3, 2)]))
    (root / "wsi" / "notes.txt").write_text("not a slide")
    return root


def test_folder_mode_skips_finished_maps(slide_folder, inputs, tmp_path, capsys):
    out = tmp_path / "maps"
    out.mkdir()
    shape = np.load(slide_folder / "mask" / "Test_002.npy").shape
    np.save(out / "Test_002.npy", np.full(shape, 7.0))  # a finished map (float64, the mask's shape): left alone
    status, err = run_cli([slide_folder / "wsi", inputs / "crf.ckpt", inputs / "crf.json", slide_folder / "mask",
                           out, "--num_workers", "0"], capsys)
    assert status == 0, err
    assert sorted(p.name for p in out.glob("*.npy")) == [f"Test_{k:03d}.npy" for k in range(5)]
    assert sorted(p.name for p in out.glob("*.json")) == [f"Test_{k:03d}.json" for k in (0, 1, 3, 4)]  # sidecars
    assert np.all(np.load(out / "Test_002.npy") == 7.0)
    for k in (0, 1, 3, 4):
        probs = np.load(out / f"Test_{k:03d}.npy")
        assert probs.shape == np.load(slide_folder / "mask" / f"Test_{k:03d}.npy").shape
        assert np.count_nonzero(probs) == 1 and probs[k % 3, 2] > 0


def test_two_shards_cover_every_slide_once(slide_folder, inputs, tmp_path, capsys, monkeypatch):
    jobs = plan_jobs(slide_folder / "wsi", slide_folder / "mask", tmp_path)
    stems = [job.slide.stem for job in jobs]
    assert stems == sorted(stems) and len(stems) == 5
    parts = [select_shard(jobs, (k, 2)) for k in range(2)]
    assert sorted(j.slide.stem for part in parts for j in part) == stems
    assert not {j.slide for j in parts[0]} & {j.slide for j in parts[1]}

    # A list file, shard 1/2 from the command line and shard 0/2 from torchrun's environment.
    listing = tmp_path / "slides.txt"
    listing.write_text("".join(f"{slide_folder / 'wsi' / f'Test_{k:03d}.tif'}\n" for k in (4, 0, 2, 1, 3)))
    common = [inputs / "crf.ckpt", inputs / "crf.json", slide_folder / "mask"]
    status, err = run_cli([listing, *common, tmp_path / "out", "--shard", "1/2", "--num_workers", "0"], capsys)
    assert status == 0, err
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    status, err = run_cli([listing, *common, tmp_path / "out", "--num_workers", "0"], capsys)
    assert status == 0, err
    assert sorted(p.stem for p in (tmp_path / "out").glob("*.npy")) == stems
    shard_1 = {j.slide.stem for j in parts[1]}
    assert shard_1 == {"Test_001", "Test_003"}


def test_folder_mode_refuses_missing_masks_before_any_work(slide_folder, inputs, tmp_path, capsys):
    masks = tmp_path / "masks"
    masks.mkdir()
    np.save(masks / "Test_000.npy", np.load(slide_folder / "mask" / "Test_000.npy"))
    status, err = run_cli([slide_folder / "wsi", inputs / "crf.ckpt", inputs / "crf.json", masks,
                           tmp_path / "out", "--num_workers", "0"], capsys)
    assert status == 2
    assert "Test_001.npy: no such mask file (and 3 more)" in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("shard", ["2/2", "a/b", "1"])
def test_bad_shard(shard, slide_folder, inputs, tmp_path, capsys):
    status, err = run_cli([slide_folder / "wsi", inputs / "crf.ckpt", inputs / "crf.json", slide_folder / "mask",
                           tmp_path, "--shard", shard], capsys)
    assert status == 2 and "--shard" in err
