"""wsi/inference/faithful.py: the original's algorithm, position by position, is the contract's map.

map[x, y] = sigmoid(kept node's logit) of the grid centred on mask cell (x, y), 0 off tissue; every transform of
``eight_avg`` is averaged; each position costs 9 CNN evaluations per transform (3×3 grid).
"""

import numpy as np
import openslide
import pytest
import torch

from tests.helpers import make_slide, randomised_model
from wsi.data.slide import open_slide
from wsi.geometry import GridSpec, mask_geometry
from wsi.inference.common import InferenceStats
from wsi.inference.faithful import faithful_probs_map
from wsi.orientation import TRANSFORMS, from_names, orient

GRID = GridSpec(96, 32, 28)
LEVEL = 4  # stride 16


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    slide_path = make_slide(tmp_path_factory.mktemp("faithful") / "Test_001.tif")
    with open_slide(slide_path) as slide:
        mask = np.zeros(slide.level_dimensions[LEVEL], dtype=bool)
        geometry = mask_geometry(slide.level_dimensions, slide.level_downsamples, mask.shape)
    mask[[20, 3], [4, 9]] = True  # (20, 4) and (3, 9): asymmetric, so [x, y] and [y, x] differ
    return slide_path, mask, geometry, randomised_model().eval()


def contract(slide_path, model, xm, ym, flip="NONE", rotate="NONE"):
    """The map's value at (xm, ym) computed by hand from OpenSlide's region."""
    cx, cy = int((xm + 0.5) * 16), int((ym + 0.5) * 16)
    with openslide.OpenSlide(str(slide_path)) as osr:
        region = np.asarray(osr.read_region((cx - 48, cy - 48), 0, (96, 96)).convert("RGB"), dtype=np.float32)
    region = orient(region, *from_names(flip, rotate))
    image = ((region - 128.0) / 128.0).transpose(2, 0, 1)
    crops = [image[:, 2 + 32 * r:30 + 32 * r, 2 + 32 * c:30 + 32 * c] for r in range(3) for c in range(3)]
    with torch.no_grad():
        logits = model(torch.from_numpy(np.ascontiguousarray(np.stack(crops)))[None])
    return torch.sigmoid(logits[0, 4]).item()


def test_the_map_is_the_contract_at_x_first_positions(setup):
    slide_path, mask, geometry, model = setup
    stats = InferenceStats()
    probs = faithful_probs_map(model, slide_path, mask, GRID, geometry, num_workers=0, progress=False, stats=stats)
    assert probs.dtype == np.float64 and probs.shape == mask.shape
    for xm, ym in [(20, 4), (3, 9)]:
        assert probs[xm, ym] == pytest.approx(contract(slide_path, model, xm, ym), abs=1e-5)
    assert np.count_nonzero(probs) == 2 and probs[4, 20] == 0  # off tissue (and the transposed cell) stay 0
    assert stats.evaluations_per_position == 9 and not stats.failed


def test_eight_avg_is_the_mean_of_the_eight_transforms(setup):
    slide_path, mask, geometry, model = setup
    probs = faithful_probs_map(model, slide_path, mask, GRID, geometry, num_workers=0, progress=False,
                               eight_avg=True)
    expected = np.mean([contract(slide_path, model, 20, 4, flip, rotate) for flip, rotate in TRANSFORMS])
    assert probs[20, 4] == pytest.approx(expected, abs=1e-5)
