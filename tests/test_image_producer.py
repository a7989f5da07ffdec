"""Grid datasets: labels on the real annotations, augmentation that keeps crops and labels aligned, and the PNG
and on-the-fly datasets giving the same tensors."""

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import ColorJitter

from tests.helpers import COORDS, JSONS
from wsi.bin.patch_gen import main as patch_gen
from wsi.data.annotation import Annotation, Polygon
from wsi.data.coords import read_coords, write_coords
from wsi.data.draws import JITTER, GridDraws, draw_augmentation
from wsi.data.image_producer import DatasetError, GridImageDataset, GridSlideDataset, color_jitter, make_grid
from wsi.data.labels import grid_labels
from wsi.geometry import GridSpec


def crop_offsets(image_size, patch_size, crop_size):
    return GridSpec(image_size, patch_size, crop_size).crop_offsets()


def training_labels(annotation, centres, image_size, patch_size, label_mode="positive"):
    """The datasets' labels of the grids at ``centres``: the one rule (wsi.data.labels), as float32."""
    return grid_labels(annotation, np.asarray(centres).reshape(-1, 2), patch_size, image_size // patch_size,
                       exclude_negative=label_mode == "positive_not_negative").astype(np.float32)
from wsi.synthetic import make_synthetic_slide

# The contract's statistics of the shipped validation lists (§4.2), per position in row-major order.
TUMOR_VALID_RATES = [.786, .821, .794, .825, 1, .831, .783, .819, .789]
NORMAL_VALID_RATES = [.066, .069, .070, .067, 0, .067, .064, .067, .069]


def reference_labels(name, label_mode="positive", pids=None):
    """Labels ``[N, 9]`` of a shipped validation list, in file order, computed per slide in one vectorised call
    (rows of slides not in ``pids`` are left at 0 when ``pids`` is given)."""
    rows = read_coords(COORDS / f"{name}.txt")
    labels = np.zeros((len(rows), 9), np.float32)
    by_pid = {}
    for i, (pid, x, y) in enumerate(rows):
        by_pid.setdefault(pid, []).append((i, x, y))
    annotations = {}
    for pid, items in by_pid.items():
        if pids is not None and pid not in pids:
            continue
        annotations[pid] = Annotation.from_json(JSONS / "valid" / f"{pid}.json")
        index = [i for i, _, _ in items]
        centres = np.array([(x, y) for _, x, y in items])
        labels[index] = training_labels(annotations[pid], centres, 768, 256, label_mode).reshape(-1, 9)
    return rows, labels, annotations


def test_labels_on_the_real_validation_polygons():
    rows, labels, annotations = reference_labels("tumor_valid")
    # Every cell label is the annotation's own inside-test at the cell centre (x + {-256, 0, 256}, y + ...).
    for i in range(0, len(rows), 97):
        pid, x, y = rows[i]
        for cell in range(9):
            point = (x + 256 * (cell % 3 - 1), y + 256 * (cell // 3 - 1))
            inside = any(polygon.inside([point])[0] for polygon in annotations[pid].positive)
            assert labels[i, cell] == inside
    assert labels[:, 4].all()
    assert labels.mean() == pytest.approx(0.8277, abs=5e-5)
    np.testing.assert_allclose(labels.mean(axis=0), TUMOR_VALID_RATES, atol=5e-4)
    # The 47 centres that also lie in an exclusion polygon are tumour only under the original's rule.
    with_negatives = {pid for pid, annotation in annotations.items() if annotation.negative}
    assert with_negatives == {"Tumor_105", "Tumor_107", "Tumor_108", "Tumor_110"}
    _, strict, _ = reference_labels("tumor_valid", "positive_not_negative", pids=with_negatives)
    rows_with_negatives = np.array([pid in with_negatives for pid, _, _ in rows])
    assert int((labels[rows_with_negatives, 4] != strict[rows_with_negatives, 4]).sum()) == 47
    assert (strict <= labels).all()

    rows, labels, _ = reference_labels("normal_valid")
    assert labels.mean() == pytest.approx(0.0600, abs=5e-5)
    np.testing.assert_allclose(labels.mean(axis=0), NORMAL_VALID_RATES, atol=5e-4)
    # Two normal centres lie exactly on a polygon edge, which modern skimage counts as inside (contract §4.1).
    assert [rows[i] for i in np.flatnonzero(labels[:, 4])] == [("Tumor_102", 140864, 24384),
                                                               ("Tumor_102", 47936, 24512)]


def test_label_grid_rows_follow_y_and_columns_follow_x():
    # A tumour covering only x >= 1000 and y < 1000: the right column of the top row... as an image.
    annotation = Annotation([Polygon("t", [[1000, 0], [3000, 0], [3000, 1000], [1000, 1000]])], [])
    labels = grid_labels(annotation, [(1000, 1000)], 256, 3)
    assert labels.shape == (1, 3, 3) and labels.dtype == bool
    assert labels[0].tolist() == [[0, 1, 1], [0, 1, 1], [0, 0, 0]]


def cells_image(size=192, side=3):
    """An image whose cells have distinct flat colours; colour of cell (r, c) = COLOURS[r * side + c]."""
    colours = np.array([[30 + 25 * k, 240 - 20 * k, (70 * k) % 256] for k in range(side * side)], np.uint8)
    patch = size // side
    image = np.zeros((size, size, 3), np.uint8)
    for r in range(side):
        for c in range(side):
            image[r * patch:(r + 1) * patch, c * patch:(c + 1) * patch] = colours[r * side + c]
    return image, colours


@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("rotate", [0, 1, 2, 3])
def test_flips_and_rotations_keep_crops_and_labels_aligned(flip, rotate):
    image, colours = cells_image()
    labels = np.arange(9).reshape(3, 3)  # each cell labelled with its own number
    draws = GridDraws(flip=flip, rotate=rotate, jitter=False)
    grids, out_labels = make_grid(image, labels, 64, 56, draws=draws, normalize=False)
    assert grids.shape == (9, 3, 56, 56) and grids.dtype == torch.float32
    for i in range(9):
        crop = grids[i].numpy()
        assert (crop == crop[:, :1, :1]).all()  # one flat colour: the crop stays inside one cell
        source = int(np.flatnonzero((colours == crop[:, 0, 0]).all(axis=1))[0])
        assert out_labels[i] == source
    # The image transform is the original's PIL one: FLIP_LEFT_RIGHT, then rotate(90·k) counter-clockwise.
    expected = Image.fromarray(image)
    if flip:
        expected = expected.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    expected = np.asarray(expected.rotate(90 * rotate))
    offsets = crop_offsets(192, 64, 56)
    for i, (r, c) in enumerate((r, c) for r in offsets for c in offsets):
        assert np.array_equal(grids[i].numpy().transpose(1, 2, 0), expected[r:r + 56, c:c + 56])
    # A quarter turn counter-clockwise moves the top-right cell to the top-left.
    if not flip and rotate == 1:
        assert out_labels.tolist() == [2, 5, 8, 1, 4, 7, 0, 3, 6]


def test_crop_offsets_and_normalisation():
    assert crop_offsets(768, 256, 224) == [16, 272, 528]
    assert crop_offsets(192, 64, 56) == [4, 68, 132]
    image = np.random.default_rng(0).integers(0, 256, (192, 192, 3), dtype=np.uint8)
    grids, labels = make_grid(image, np.zeros((3, 3), np.float32), 64, 56)
    assert labels.dtype == torch.float32 and labels.shape == (9,)
    # crop 5 = row 1, col 2: rows 68..123, cols 132..187; (x - 128) / 128.
    expected = (image[68:124, 132:188].transpose(2, 0, 1).astype(np.float32) - 128) / 128
    assert np.array_equal(grids[5].numpy(), expected)
    assert grids.min() >= -1 and grids.max() <= 127 / 128


def test_color_jitter_is_torchvision_color_jitter():
    image = Image.fromarray(cells_image()[0])
    for seed in range(4):
        torch.manual_seed(seed)
        order, b, c, s, h = ColorJitter.get_params(*[(max(0, 1 - v), 1 + v) for v in JITTER[:3]],
                                                   (-JITTER[3], JITTER[3]))
        torch.manual_seed(seed)
        expected = ColorJitter(*JITTER)(image)
        draws = GridDraws(order=tuple(order.tolist()), brightness=b, contrast=c, saturation=s, hue=h)
        assert np.array_equal(np.asarray(color_jitter(image, draws)), np.asarray(expected))


def test_draws_follow_the_original_distributions():
    rng = np.random.default_rng(1)
    draws = [draw_augmentation(rng) for _ in range(2000)]
    assert all(sorted(d.order) == [0, 1, 2, 3] for d in draws)
    for name, low, high in (("brightness", 1 - 64 / 255, 1 + 64 / 255), ("contrast", 0.25, 1.75),
                            ("saturation", 0.75, 1.25), ("hue", -0.04, 0.04)):
        values = np.array([getattr(d, name) for d in draws])
        assert values.min() >= low and values.max() <= high and np.ptp(values) > 0.9 * (high - low)
    assert 0.45 < np.mean([d.flip for d in draws]) < 0.55
    assert np.bincount([d.rotate for d in draws], minlength=4).min() > 400


@pytest.fixture(scope="module")
def grid_data(tmp_path_factory):
    """A synthetic tumour slide, its JSON among a stray file, a coordinate list and patch_gen's PNGs of it."""
    root = tmp_path_factory.mktemp("grids")
    slide = make_synthetic_slide(root / "slides" / "Tumor_001.tif", width=1024, height=1024, seed=5,
                                 num_tumours=1, tumour_size=(400, 600), json_path=root / "jsons" / "Tumor_001.json")
    (root / "jsons" / "notes.txt").write_text("not an annotation")  # the original's strip('.json') trips on it
    cx, cy = slide.annotation.positive[0].vertices().mean(axis=0).astype(int)
    rows = [("Tumor_001", int(cx), int(cy)), ("Tumor_001", int(cx) + 90, int(cy) - 60), ("Tumor_001", 150, 150),
            ("Tumor_001", 900, 880)]
    write_coords(root / "coords.txt", rows)
    assert patch_gen([str(root / "slides"), str(root / "coords.txt"), str(root / "patches"), "--patch_size", "192",
                      "--num_process", "1"]) == 0
    return root, slide.annotation, rows


def test_png_and_on_the_fly_datasets_give_identical_tensors(grid_data):
    root, annotation, rows = grid_data
    png = GridImageDataset(root / "patches", root / "jsons", 192, 64, 56, seed=7)
    fly = GridSlideDataset(root / "slides", root / "coords.txt", root / "jsons", 192, 64, 56, seed=7)
    assert len(png) == len(fly) == len(rows) and png.grid_size == 9 and png.coords == rows
    for epoch in (0, 1):
        png.set_epoch(epoch)
        fly.set_epoch(epoch)
        for i in range(len(rows)):
            (a, la), (b, lb) = png[i], fly[i]
            assert a.shape == (9, 3, 56, 56) and la.shape == (9,)
            assert torch.equal(a, b) and torch.equal(la, lb)
    # Labels before augmentation are the annotation's, and augmentation only permutes them.
    for i, (_, x, y) in enumerate(rows):
        expected = training_labels(annotation, (x, y), 192, 64)[0]
        assert np.array_equal(png.labels(i), expected)
        assert sorted(png[i][1].tolist()) == sorted(expected.ravel().tolist())
    assert png.labels(0).all() and not png.labels(2).any()
    fly.close()


def test_seeds_make_items_repeatable(grid_data):
    root, _, _ = grid_data
    first = GridSlideDataset(root / "slides", root / "coords.txt", root / "jsons", 192, 64, 56, seed=3)
    again = GridSlideDataset(root / "slides", root / "coords.txt", root / "jsons", 192, 64, 56, seed=3)
    other = GridSlideDataset(root / "slides", root / "coords.txt", root / "jsons", 192, 64, 56, seed=4)
    assert torch.equal(first[1][0], again[1][0]) and not torch.equal(first[1][0], other[1][0])
    before = first[1][0]
    first.set_epoch(1)
    assert first.draws(1) != again.draws(1) and not torch.equal(first[1][0], before)
    # Workers read the same items as the main process (draws depend on the item, not on the worker).
    loader = torch.utils.data.DataLoader(again, batch_size=2, num_workers=2)
    batches = list(loader)
    assert torch.equal(torch.cat([b[0] for b in batches]), torch.stack([again[i][0] for i in range(len(again))]))
    unaugmented = GridImageDataset(root / "patches", root / "jsons", 192, 64, 56, augment=False)
    with Image.open(root / "patches" / "0.png") as image:
        assert torch.equal(unaugmented[0][0], make_grid(image.convert("RGB"), np.zeros((3, 3)), 64, 56)[0])


def test_dataset_errors_are_one_line(grid_data, tmp_path):
    root, _, _ = grid_data
    with pytest.raises(DatasetError, match=r"expected image_size 96×96"):
        GridImageDataset(root / "patches", root / "jsons", 96, 32, 32)
    with pytest.raises(DatasetError, match="no list.txt; write the folder with patch_gen"):
        GridImageDataset(tmp_path, root / "jsons", 192, 64, 56)
    write_coords(tmp_path / "coords.txt", [("Tumor_001", 500, 500), ("Tumor_002", 500, 500)])
    with pytest.raises(DatasetError, match=r"coords.txt: line 2: .*Tumor_002.tif: no such slide file"):
        GridSlideDataset(root / "slides", tmp_path / "coords.txt", root / "jsons", 192, 64, 56)
    (tmp_path / "slides").mkdir()
    for name in ("Tumor_001.tif", "Tumor_002.tif"):
        (tmp_path / "slides" / name).symlink_to(root / "slides" / "Tumor_001.tif")
    with pytest.raises(DatasetError, match=r"coords.txt: line 2: slide 'Tumor_002' has no annotation .*Tumor_002.json"):
        GridSlideDataset(tmp_path / "slides", tmp_path / "coords.txt", root / "jsons", 192, 64, 56)
    patches = tmp_path / "patches"
    patches.mkdir()
    (patches / "list.txt").write_bytes((root / "patches" / "list.txt").read_bytes())
    (patches / "0.png").write_bytes((root / "patches" / "0.png").read_bytes())
    with pytest.raises(DatasetError, match=r"3 of 4 PNGs missing \(first 1.png\)"):
        GridImageDataset(patches, root / "jsons", 192, 64, 56)


# The device path: raw items augmented in batches by wsi.data.grid_augment ----------------------------------------
@pytest.fixture(scope="module")
def he_grids(tmp_path_factory):
    """48 grid centres on the real H&E fixture (a slide folder, its annotation and a coordinate list)."""
    import shutil

    from tests.helpers import data_path

    root = tmp_path_factory.mktemp("he")
    (root / "slides").mkdir()
    shutil.copy(data_path("cmu_small_region.svs"), root / "slides" / "cmu.svs")
    Annotation([Polygon("t", [[600, 800], [1600, 800], [1600, 2200], [600, 2200]])], []).to_json(
        root / "jsons" / "cmu.json")
    rng = np.random.default_rng(2)
    write_coords(root / "coords.txt", [("cmu", int(x), int(y)) for x, y in
                                       zip(rng.integers(100, 2120, 48), rng.integers(100, 2867, 48))])
    return root


def test_device_path_equals_the_per_item_path(he_grids):
    from wsi.data.draws import DRAW_FIELDS
    from wsi.data.grid_augment import augment_grids

    root = he_grids
    args = (root / "slides", root / "coords.txt", root / "jsons", 192, 64, 56)
    per_item = GridSlideDataset(*args, normalize=False, seed=11)
    raw = GridSlideDataset(*args, normalize=False, seed=11, raw=True)
    for epoch in (0, 1):
        per_item.set_epoch(epoch)
        raw.set_epoch(epoch)
        (image, draws), labels = raw[0]
        assert image.dtype == torch.uint8 and image.shape == (192, 192, 3) and draws.shape == (DRAW_FIELDS,)
        loader = torch.utils.data.DataLoader(raw, batch_size=16, num_workers=0)
        grids, batch_labels = [], []
        for (images, draws), labels in loader:
            grids.append(augment_grids(images, draws, 64, 56, normalize=False))
            batch_labels.append(labels)
        grids, batch_labels = torch.cat(grids), torch.cat(batch_labels)
        expected = [per_item[i] for i in range(len(per_item))]
        # Same draws: labels identical; images within one grey level (they come out identical on the CPU).
        assert torch.equal(batch_labels, torch.stack([lab for _, lab in expected]))
        difference = (grids - torch.stack([g for g, _ in expected])).abs()
        assert difference.max() <= 1 and difference.mean() < 0.01
        assert batch_labels.sum() > 0 and (batch_labels == 0).sum() > 0
    # Normalised and with all draws: the crops the network sees, (x - 128) / 128.
    scaled = augment_grids(images, draws, 64, 56)
    assert torch.allclose(scaled, (grids[-len(images):] - 128) / 128, atol=1 / 128 + 1e-6)
    # Flips and rotations keep each crop with its label in the device path too.
    assert {bool(d[8]) for d in draws} == {False, True} and len({int(d[9]) for d in draws}) == 4
    per_item.close()
    raw.close()


def test_device_path_without_augmentation(grid_data):
    from wsi.data.grid_augment import augment_grids

    root, _, rows = grid_data
    plain = GridImageDataset(root / "patches", root / "jsons", 192, 64, 56, augment=False)
    raw = GridImageDataset(root / "patches", root / "jsons", 192, 64, 56, augment=False, raw=True)
    (images, draws), labels = next(iter(torch.utils.data.DataLoader(raw, batch_size=len(rows))))
    grids = augment_grids(images, draws, 64, 56)
    assert torch.equal(grids, torch.stack([plain[i][0] for i in range(len(rows))]))
    assert torch.equal(labels, torch.stack([plain[i][1] for i in range(len(rows))]))


def test_pillow_colour_steps_on_a_colour_cube():
    """Each colour step alone equals torchvision's PIL function on every kind of pixel (greys, pure hues)."""
    import torchvision.transforms.functional as TF

    from wsi.data.grid_augment import ADJUSTMENTS

    cube = np.stack(np.meshgrid(*[np.arange(0, 256, 15, dtype=np.uint8)] * 3, indexing="ij"), -1).reshape(72, 81, 3)
    image = Image.fromarray(cube)
    tensor = torch.from_numpy(cube).permute(2, 0, 1)[None].float()
    pil = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)
    for kind, factors in enumerate(([0.75, 1.25], [0.25, 1.0, 1.75], [0.75, 1.25], [-0.04, -0.003, 0.04])):
        for factor in factors:
            expected = np.asarray(pil[kind](image, factor))
            got = ADJUSTMENTS[kind](tensor, torch.tensor([factor]))[0].permute(1, 2, 0).numpy()
            assert np.array_equal(got, expected), (kind, factor)
