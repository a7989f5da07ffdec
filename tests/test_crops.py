"""wsi.data.crops: the cells' crops of a grid image and the (x − 128) / 128 scaling, for arrays and tensors."""

import numpy as np
import torch

from wsi.data.crops import crop_grid, normalize
from wsi.data.image_producer import make_grid
from wsi.data.pyramid import write_pyramid_from_array
from wsi.data.wsi_producer import GridWSIPatchDataset
from wsi.geometry import GridSpec

GRID = GridSpec(48, 16, 12)  # 3×3 cells of 16 px, crops of 12 starting at 2, 18, 34


def pixels(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def test_normalize_is_the_original_scaling_in_float32():
    values = np.array([0, 64, 128, 255], dtype=np.float32)
    assert normalize(values).dtype == np.float32
    assert normalize(values).tolist() == [-1.0, -0.5, 0.0, 127 / 128]
    assert torch.equal(normalize(torch.from_numpy(values)), torch.from_numpy(normalize(values)))


def test_crops_are_row_major_at_the_grid_offsets():
    image = pixels((3, 48, 48)).astype(np.float32)
    crops = crop_grid(image, GRID)
    assert crops.shape == (9, 3, 12, 12) and GRID.crop_offsets() == [2, 18, 34]
    for i in range(9):
        row, col = divmod(i, 3)
        top, left = 2 + 16 * row, 2 + 16 * col
        assert np.array_equal(crops[i], image[:, top:top + 12, left:left + 12])
    # A batch of tensors gives the same crops per item, on the axis after the batch.
    batch = torch.from_numpy(np.stack([image, image[:, ::-1].copy()]))
    out = crop_grid(batch, GRID)
    assert out.shape == (2, 9, 3, 12, 12)
    assert np.array_equal(out[0].numpy(), crops)
    assert np.array_equal(out[1].numpy(), crop_grid(image[:, ::-1], GRID))


def test_training_and_inference_grids_are_the_same_input(tmp_path):
    # The faithful dataset's grid of a region equals the training grid of the same image (no augmentation).
    slide_pixels = pixels((96, 96, 3), seed=3)
    slide = tmp_path / "s.tif"
    write_pyramid_from_array(slide, slide_pixels, compression="zlib")
    mask = np.zeros((6, 6), dtype=bool)
    mask[2, 3] = True  # stride 16: centre (40, 56), region [16, 64) × [32, 80)
    dataset = GridWSIPatchDataset(slide, mask, GRID.image_size, GRID.patch_size, GRID.crop_size)
    grid, xm, ym = dataset[0]
    dataset.close()
    region = slide_pixels[32:80, 16:64]
    expected, _ = make_grid(region, np.zeros((3, 3)), GRID.patch_size, GRID.crop_size)
    assert (xm, ym) == (2, 3) and np.array_equal(grid, expected.numpy())
    assert np.array_equal(grid, crop_grid(normalize(region.transpose(2, 0, 1).astype(np.float32)), GRID))
