"""Slide access (wsi.data.slide): real files, one error type for each user mistake."""

import numpy as np
import pytest
import tifffile

from wsi.data.pyramid import write_pyramid_from_array
from wsi.data.slide import (LevelError, NotAFileError, NotAFolderError, RegionReadError, Slide, SlideError,
                            SlideNotFoundError, UnsupportedSlideError, find_slide, open_slide)
from wsi.errors import WSIError


@pytest.fixture
def small_pyramid(tmp_path):
    """A 600×400 generic-TIFF pyramid (JPEG, 256-px tiles): a left-right grey ramp over a red square."""
    image = np.zeros((400, 600, 3), np.uint8)
    image[...] = np.linspace(30, 230, 600, dtype=np.uint8)[None, :, None]
    image[100:200, 300:400] = (200, 30, 30)
    path = tmp_path / "Tumor_042.tif"
    write_pyramid_from_array(path, image, tile_size=256)
    return path, image


def test_geometry_and_pixels_of_a_pyramid(small_pyramid):
    path, image = small_pyramid
    with open_slide(path) as slide:
        assert slide.dimensions == (600, 400)
        assert slide.level_dimensions[:3] == ((600, 400), (300, 200), (150, 100))
        assert slide.level_downsamples[1] == pytest.approx(2.0)
        assert slide.mpp == pytest.approx(0.243)
        region = slide.read_region((300, 100), 0, (100, 100))
        assert region.shape == (100, 100, 3) and region.dtype == np.uint8
        assert np.abs(region.astype(int) - (200, 30, 30)).mean() < 12  # JPEG
        # Level 1 at level-0 location (300, 100) is the same red square, half the size.
        assert np.abs(slide.read_region((300, 100), 1, (50, 50)).astype(int) - (200, 30, 30)).mean() < 15
        # Past the border reads black, as the original's RGBA -> RGB.
        outside = slide.read_region((550, 350), 0, (100, 100))
        assert (outside[60:, 60:] == 0).all() and outside[:40, :40].min() > 0
        level = slide.read_level(2)
        assert level.shape == (100, 150, 3)
        assert "Tumor_042.tif" in repr(slide)
    assert isinstance(slide, Slide)


def test_real_svs_fixture(cmu_svs):
    with open_slide(cmu_svs) as slide:
        assert slide.dimensions == (2220, 2967)
        assert slide.level_count == 1
        assert slide.mpp == pytest.approx(0.499, abs=1e-3)
        thumb = slide.get_thumbnail((128, 128))
        assert thumb.mode == "RGB" and max(thumb.size) == 128


def test_missing_file(tmp_path):
    with pytest.raises(SlideNotFoundError) as info:
        open_slide(tmp_path / "Tumor_404.tif")
    assert "Tumor_404.tif" in str(info.value) and "no such slide" in str(info.value)
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, WSIError)


def test_folder_where_a_file_is_expected(tmp_path):
    with pytest.raises(NotAFileError, match="is a folder"):
        open_slide(tmp_path)


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
def test_not_a_slide(tmp_path):
    for name, content in (("notes.tif", b"this is not a TIFF\n"), ("empty.svs", b""),
                          ("truncated.tif", b"II*\x00\x08\x00\x00\x00")):
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(UnsupportedSlideError) as info:
            open_slide(path)
        message = str(info.value)
        assert name in message and "not a slide" in message and "\n" not in message


def test_level_the_slide_does_not_have(small_pyramid):
    path, _ = small_pyramid
    with open_slide(path) as slide:
        levels = list(range(slide.level_count))
        for bad in (slide.level_count, -1, 1.5):
            with pytest.raises(LevelError) as info:
                slide.read_region((0, 0), bad, (10, 10))
            assert info.value.levels == levels
            assert f"the slide has levels {levels}" in str(info.value) and str(path) in str(info.value)


def corrupt_tile(path, page, tile):
    """Overwrite the start of one tile's compressed bytes (its JPEG header) with zeros."""
    with tifffile.TiffFile(path) as tif:
        offset = tif.pages[page].dataoffsets[tile]
        count = tif.pages[page].databytecounts[tile]
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(b"\x00" * min(64, count))


def test_corrupt_tile_names_file_level_and_region_and_later_reads_work(small_pyramid):
    path, _ = small_pyramid
    corrupt_tile(path, page=0, tile=1)  # level 0, tile row 0, column 1: x 256..511, y 0..255
    with open_slide(path) as slide:
        with pytest.raises(RegionReadError) as info:
            slide.read_region((300, 10), 0, (64, 64))
        err = info.value
        assert (err.level, err.location, err.size) == (0, (300, 10), (64, 64))
        message = str(err)
        assert str(path) in message and "level 0" in message and "(300, 10)" in message and "(64, 64)" in message
        assert "\n" not in message
        # The handle is reopened: good tiles and other levels still read.
        good = slide.read_region((0, 300), 0, (64, 64))
        assert good.shape == (64, 64, 3) and good.max() > 0
        assert slide.read_level(1).shape == (200, 300, 3)


def test_find_slide(tmp_path, small_pyramid):
    path, _ = small_pyramid
    assert find_slide(path.parent, "Tumor_042") == path
    with pytest.raises(NotAFolderError, match="is a file"):
        find_slide(path, "Tumor_042")
    with pytest.raises(SlideNotFoundError, match="Tumor_043.tif"):
        find_slide(path.parent, "Tumor_043")
    svs = tmp_path / "Test_001.svs"
    svs.write_bytes(b"")
    assert find_slide(tmp_path, "Test_001") == svs


def test_every_slide_error_is_a_wsi_error():
    for cls in (SlideNotFoundError, NotAFileError, NotAFolderError, UnsupportedSlideError, LevelError,
                RegionReadError):
        assert issubclass(cls, SlideError) and issubclass(cls, WSIError)


# A fault case moved from tests/test_faults.py (the world is conftest.py's ``world``) ----------------------------------
def test_read_errors_survive_worker_pickling():
    """A DataLoader or pool worker sends its exception to the main process by pickling: it must rebuild."""
    import pickle

    from wsi.data.image_producer import UnreadableImage
    from wsi.data.slide import LevelError, RegionReadError
    from wsi.errors import OutputError

    for err in (RegionReadError("s.tif", 0, (1, 2), (3, 4), "Not a JPEG file"), LevelError("s.tif", 9, [0, 1]),
                OutputError("/x/y.npy", "Read-only file system"), UnreadableImage("3.png", "truncated")):
        copy = pickle.loads(pickle.dumps(err))
        assert type(copy) is type(err) and str(copy) == str(err)
    assert pickle.loads(pickle.dumps(RegionReadError("s.tif", 0, (1, 2), (3, 4), "bad"))).reason == "bad"
