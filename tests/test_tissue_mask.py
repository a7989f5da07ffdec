"""Tissue masks (wsi.data.tissue and wsi/bin/tissue_mask.py) on real files."""

import numpy as np
import pytest
from skimage.color import rgb2hsv
from skimage.filters import threshold_otsu

from tests.helpers import assert_one_error, call, data_path
from wsi.bin.tissue_mask import main
from wsi.data.pyramid import write_pyramid_from_array
from wsi.data.slide import open_slide
from wsi.synthetic import make_synthetic_slide
from wsi.data.tissue import tissue_mask, tissue_mask_from_rgb


@pytest.fixture(scope="module")
def cmu_pyramid(tmp_path_factory):
    """The real H&E fixture (2220×2967, one level) written out as a generic-TIFF pyramid."""
    with open_slide(data_path("cmu_small_region.svs")) as slide:
        image = slide.read_level(0)
    path = tmp_path_factory.mktemp("cmu") / "cmu.tif"
    write_pyramid_from_array(path, image)
    return path


def test_real_he_mask_shape_xy_order_and_fraction(cmu_pyramid):
    with open_slide(cmu_pyramid) as slide:
        assert slide.level_dimensions[0] == (2220, 2967)
        for level in (4, 6):
            mask = tissue_mask(slide, level=level)
            assert mask.dtype == bool
            assert mask.shape == slide.level_dimensions[level]  # (width, height): [x, y]
            # [x, y] is the transpose of the image-order rule applied to the level as read.
            image = slide.read_level(level)
            np.testing.assert_array_equal(mask.T, tissue_mask_from_rgb(image))
        assert mask.shape == (35, 47)
        assert 0.2 < mask.mean() < 0.5  # a strip of skin tissue on white background
        # [x, y]: the tissue runs down the middle of the image; its left and right fifths are background.
        assert mask[:7].mean() < 0.02 and mask[28:].mean() < 0.02 and mask[14:28].mean() > 0.5


def reference_rule(img_xy, rgb_min):
    """The contract's §3.3 rule, written out independently."""
    r, g, b = (img_xy[..., i] for i in range(3))
    background = (r > threshold_otsu(r)) & (g > threshold_otsu(g)) & (b > threshold_otsu(b))
    s = rgb2hsv(img_xy)[..., 1]
    return ~background & (s > threshold_otsu(s)) & (r > rgb_min) & (g > rgb_min) & (b > rgb_min)


def test_xy_orientation_and_strict_rgb_min(tmp_path):
    # Tissue (pink) only in the left third of a wide image; dark purple pixels with a channel exactly at 50.
    image = np.full((96, 160, 3), 235, np.uint8)
    image[:, :48] = (210, 120, 170)
    image[10:20, 10:20] = (200, 50, 150)  # G == 50: not > 50
    image[30:40, 10:20] = (200, 51, 150)  # G == 51: > 50
    path = tmp_path / "left.tif"
    write_pyramid_from_array(path, image, compression="zlib")
    mask = tissue_mask(path, level=0)
    assert mask.shape == (160, 96)  # [x, y]
    img_xy = np.transpose(image, (1, 0, 2))
    np.testing.assert_array_equal(mask, reference_rule(img_xy, 50))
    assert mask[:48].mean() > 0.9 and not mask[48:].any()
    assert not mask[10:20, 10:20].any() and mask[10:20, 30:40].all()
    loose = tissue_mask(path, level=0, rgb_min=49)
    assert loose[10:20, 10:20].all()


def test_uniform_image_gives_empty_mask():
    for value in (0, 128, 255):
        mask = tissue_mask_from_rgb(np.full((20, 30, 3), value, np.uint8))
        assert mask.shape == (20, 30) and not mask.any()


def test_synthetic_slide_mask_matches_its_tissue(tmp_path):
    result = make_synthetic_slide(tmp_path / "Normal_001.tif", width=2048, height=2048, seed=2, normal=True)
    mask = tissue_mask(result.slide_path, level=4)
    truth = result.tissue.tile(16, 0, 0, 128, 128).T  # [x, y]
    assert mask.shape == truth.shape == (128, 128)
    assert (mask == truth).mean() > 0.97


def test_cli_writes_bool_npy(cmu_pyramid, tmp_path, capsys):
    assert main([str(cmu_pyramid), str(tmp_path / "out" / "cmu"), "--level", "5", "--RGB_min", "50"]) == 0
    mask = np.load(tmp_path / "out" / "cmu.npy")
    assert mask.dtype == bool and mask.shape == (70, 93)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["cmu.json", "cmu.npy"]  # mask and sidecar


def test_cli_default_level_6(cmu_pyramid, tmp_path):
    assert main([str(cmu_pyramid), str(tmp_path / "m.npy")]) == 0
    assert np.load(tmp_path / "m.npy").shape == (35, 47)


@pytest.mark.parametrize("case", ["missing", "folder", "not_a_slide", "bad_level"])
def test_cli_bad_input_one_line_error_no_output(cmu_pyramid, tmp_path, capsys, case):
    out = tmp_path / "mask.npy"
    argv = {
        "missing": [str(tmp_path / "Tumor_404.tif"), str(out)],
        "folder": [str(tmp_path), str(out)],
        "not_a_slide": [str(tmp_path / "notes.tif"), str(out)],
        "bad_level": [str(cmu_pyramid), str(out), "--level", "12"],
    }[case]
    (tmp_path / "notes.tif").write_text("not a slide")
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tissue_mask: error: ") and "\n" not in err
    # A folder is the folder mode, whose error names the file in it that is no slide.
    expected = {"missing": "Tumor_404.tif: no such slide file", "folder": "notes.tif: not a slide OpenSlide can read",
                "not_a_slide": "notes.tif: not a slide", "bad_level": "no level 12; the slide has levels [0, 1, 2"}
    assert expected[case] in err
    assert not out.exists() and not list(tmp_path.glob("*.npy")) and not list(tmp_path.glob(".*"))


def test_level_auto_picks_each_slides_level_nearest_64(tmp_path):
    """--level auto: level 6 of a 2× pyramid, level 3 of a 4× one (downsample ~64), recorded in the sidecar."""
    import json

    slides = tmp_path / "slides"
    make_synthetic_slide(slides / "two.tif", width=1024, height=1024, seed=1, normal=True)
    make_synthetic_slide(slides / "four.tif", width=3001, height=2777, seed=2, normal=True, factor=4)
    assert main([str(slides), str(tmp_path / "masks"), "--level", "auto"]) == 0
    for stem, level, shape in (("two", 6, (16, 16)), ("four", 3, (47, 44))):
        assert np.load(tmp_path / "masks" / f"{stem}.npy").shape == shape
        side = json.loads((tmp_path / "masks" / f"{stem}.json").read_text())
        assert side["level"] == level and side["stride"] == 64
    with pytest.raises(SystemExit):
        main([str(slides), str(tmp_path / "masks"), "--level", "near"])


# A fault case moved from tests/test_faults.py (the world is conftest.py's ``world``) ----------------------------------
def test_tissue_mask_names_the_damaged_tile(world, tmp_path, capsys):
    status, err = call(main, [world / "damaged" / "Tumor_001.tif", tmp_path / "m.npy", "--level", "2"],
                       capsys)
    assert status == 2
    assert_one_error(err, "tile at level-2 pixel (64, 0)", "damaged")
    assert list(tmp_path.iterdir()) == []
