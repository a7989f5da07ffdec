"""patch_gen on synthetic slides: pixels, re-runs, damaged tiles, missing slides and bad arguments."""

import shutil

import numpy as np
import pytest
import tifffile
from PIL import Image

from wsi.bin.patch_gen import main
from wsi.data.slide import open_slide
from wsi.synthetic import make_synthetic_slide

# (pid, x, y) centres: inside, at the border (reads black past it), and on two slides so that the pool is used.
ROWS = [("Tumor_001", 300, 200), ("Tumor_002", 700, 650), ("Tumor_001", 20, 1000), ("Tumor_001", 512, 512),
        ("Tumor_002", 900, 100)]
SIZE = 96


@pytest.fixture(scope="module")
def slides(tmp_path_factory):
    """A folder with two 1024² synthetic slides (the same pixels under two names)."""
    folder = tmp_path_factory.mktemp("slides")
    make_synthetic_slide(folder / "Tumor_001.tif", width=1024, height=1024, seed=3, num_tumours=1,
                         tumour_size=(300, 500))
    shutil.copy(folder / "Tumor_001.tif", folder / "Tumor_002.tif")
    return folder


def write_rows(path, rows):
    path.write_text("".join(f"{pid},{x},{y}\n" for pid, x, y in rows))
    return path


def snapshot(folder):
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}


def test_patches_equal_read_region_and_rerun_writes_nothing(slides, tmp_path, caplog):
    coords = write_rows(tmp_path / "coords.txt", ROWS)
    out = tmp_path / "patches" / "tumor"
    assert main([str(slides), str(coords), str(out), "--patch_size", str(SIZE), "--num_process", "2"]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted([f"{i}.png" for i in range(len(ROWS))] + ["list.txt"])
    assert (out / "list.txt").read_bytes() == coords.read_bytes()
    with open_slide(slides / "Tumor_001.tif") as slide:
        for i, (_, x, y) in enumerate(ROWS):
            with Image.open(out / f"{i}.png") as png:
                assert png.mode == "RGB" and png.size == (SIZE, SIZE)
                assert np.array_equal(np.asarray(png), slide.read_region((x - SIZE // 2, y - SIZE // 2), 0,
                                                                         (SIZE, SIZE)))
    with Image.open(out / "2.png") as png:  # centre (20, 1000): level-0 x < 0 and y >= 1024 read black
        pixels = np.asarray(png)
        assert not pixels[-24:].any() and not pixels[:, :28].any() and pixels[:-24, 28:].all()
    assert "5 patches written, 0 already there, 0 failed" in caplog.text

    before = snapshot(out)
    assert main([str(slides), str(coords), str(out), "--patch_size", str(SIZE), "--num_process", "2"]) == 0
    assert snapshot(out) == before
    assert "0 patches written, 5 already there, 0 failed" in caplog.text

    # A missing PNG is written again, and only that one.
    (out / "3.png").unlink()
    assert main([str(slides), str(coords), str(out), "--patch_size", str(SIZE), "--num_process", "1"]) == 0
    after = snapshot(out)
    assert {k: v for k, v in after.items() if k != "3.png"} == {k: v for k, v in before.items() if k != "3.png"}


def test_level_reads_the_unscaled_top_left(slides, tmp_path):
    coords = write_rows(tmp_path / "coords.txt", ROWS[:2])
    out = tmp_path / "out"
    assert main([str(slides), str(coords), str(out), "--patch_size", "64", "--level", "1", "--num_process", "1"]) == 0
    with open_slide(slides / "Tumor_001.tif") as slide, Image.open(out / "0.png") as png:
        assert np.array_equal(np.asarray(png), slide.read_region((300 - 32, 200 - 32), 1, (64, 64)))


def test_damaged_tile_and_missing_slide_are_listed_and_the_rest_written(slides, tmp_path, capsys, caplog):
    wsi_dir = tmp_path / "wsi"
    wsi_dir.mkdir()
    damaged = wsi_dir / "Tumor_001.tif"
    shutil.copy(slides / "Tumor_001.tif", damaged)
    with tifffile.TiffFile(damaged) as tif:
        page = tif.pages[0]
        tiles_across = -(-page.imagewidth // page.tilewidth)
        offset = page.dataoffsets[1 * tiles_across + 1]  # the tile covering level-0 [256, 512)²
    with open(damaged, "r+b") as handle:  # overwrite the JPEG start marker, as a truncated copy would
        handle.seek(offset)
        handle.write(b"\0" * 16)
    rows = [("Tumor_001", 100, 100), ("Tumor_001", 384, 384), ("Tumor_009", 50, 50), ("Tumor_001", 800, 800)]
    coords = write_rows(tmp_path / "coords.txt", rows)
    out = tmp_path / "out"
    assert main([str(wsi_dir), str(coords), str(out), "--patch_size", "64", "--num_process", "2"]) == 1
    assert sorted(p.name for p in out.iterdir()) == ["0.png", "3.png", "failed.txt", "list.txt"]
    failed = (out / "failed.txt").read_text().splitlines()
    assert len(failed) == 2
    assert failed[0].startswith("1\tTumor_001,384,384\t") and "Not a JPEG file" in failed[0]
    assert failed[1] == f"2\tTumor_009,50,50\t{wsi_dir / 'Tumor_009.tif'}: no such slide file"
    assert "2 patches written, 0 already there, 2 failed (listed in" in caplog.text
    assert "Traceback" not in capsys.readouterr().err

    # Once the slides are fixed, a re-run writes the two missing PNGs and removes failed.txt.
    shutil.copy(slides / "Tumor_001.tif", damaged)
    shutil.copy(slides / "Tumor_001.tif", wsi_dir / "Tumor_009.tif")
    assert main([str(wsi_dir), str(coords), str(out), "--patch_size", "64", "--num_process", "2"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["0.png", "1.png", "2.png", "3.png", "list.txt"]


@pytest.mark.parametrize("case", ["wsi_file", "wsi_missing", "blank_line", "bad_field", "other_list"])
def test_bad_input_is_one_line_and_writes_nothing(slides, tmp_path, capsys, case):
    coords = write_rows(tmp_path / "coords.txt", ROWS[:2])
    out = tmp_path / "out"
    wsi_dir = slides
    if case == "wsi_file":
        wsi_dir, expected = slides / "Tumor_001.tif", "is a file; WSI_DIR is the folder that holds the slides"
    elif case == "wsi_missing":
        wsi_dir, expected = tmp_path / "nowhere", "nowhere: no such slide folder"
    elif case == "blank_line":
        coords.write_text("Tumor_001,300,200\nTumor_001,400,400\n\nTumor_001,10,10\n")
        expected = "coords.txt: line 3 is blank"
    elif case == "bad_field":
        coords.write_text("Tumor_001,300,200\nTumor_001,400\n")
        expected = "coords.txt: line 2 has 2 fields, expected pid,x,y"
    else:
        out.mkdir()
        (out / "list.txt").write_text("Tumor_001,1,1\n")
        expected = "list.txt: differs from"
    before = sorted(p.name for p in out.iterdir()) if out.exists() else None
    assert main([str(wsi_dir), str(coords), str(out), "--patch_size", "64", "--num_process", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("patch_gen: error: ") and expected in err and "\n" not in err
    assert (sorted(p.name for p in out.iterdir()) if out.exists() else None) == before
