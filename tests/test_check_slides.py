"""Preflight check (wsi/bin/check_slides.py, wsi.data.check) on synthetic slides and on damaged copies of them.

Damage is made the way downloads break: the bytes of one JPEG tile zeroed or overwritten (the tile found through
tifffile's ``page.dataoffsets``), a file cut in the middle, a 0-byte file, a file that is no slide.
"""

import re
import shutil

import pytest
import tifffile

from tests.helpers import ROOT
from wsi.bin.check_slides import main
from wsi.data.check import check_tree, find_slides, level_regions, sample_regions
from wsi.synthetic import make_synthetic_slide

SIZE = 1024  # levels of 1024, 512, ..., 16 px: level 6 is the last


@pytest.fixture(scope="module")
def good_tree(tmp_path_factory):
    """A Camelyon16-shaped folder: two training slides, one test slide, an annotation and reference.csv."""
    root = tmp_path_factory.mktemp("c16")
    (root / "training" / "tumor").mkdir(parents=True)
    (root / "training" / "normal").mkdir()
    (root / "training" / "lesion_annotations").mkdir()
    (root / "testing" / "images").mkdir(parents=True)
    make_synthetic_slide(root / "training" / "tumor" / "Tumor_001.tif", width=SIZE, height=SIZE, seed=1,
                         num_tumours=1, tumour_size=(300, 400),
                         xml_path=root / "training" / "lesion_annotations" / "Tumor_001.xml")
    make_synthetic_slide(root / "training" / "normal" / "Normal_001.tif", width=SIZE, height=SIZE, seed=2,
                         normal=True)
    make_synthetic_slide(root / "testing" / "images" / "Test_001.tif", width=SIZE, height=SIZE, seed=3,
                         normal=True)
    (root / "testing" / "reference.csv").write_text("Test_001,Normal\n")
    return root


def damaged_copy(tree, tmp_path, how):
    """A copy of the tree whose Tumor_001.tif is damaged ``how``; returns (root, slide path)."""
    root = tmp_path / "c16"
    shutil.copytree(tree, root)
    slide = root / "training" / "tumor" / "Tumor_001.tif"
    data = bytearray(slide.read_bytes())
    with tifffile.TiffFile(slide) as tif:
        page = tif.pages[0]  # level 0, 256-px JPEG tiles
        offset, count = page.dataoffsets[5], page.databytecounts[5]  # tile (1, 1): region (0, 0)'s second row
    if how == "zero_tile":
        data[offset:offset + count] = bytes(count)
    elif how == "overwrite_tile_start":
        data[offset:offset + 16] = bytes(range(16))
    elif how == "truncate":
        data = data[:len(data) // 2]
    elif how == "empty":
        data = b""
    elif how == "not_a_slide":
        data = b"<html>404 Not Found</html>\n"
    slide.write_bytes(bytes(data))
    return root, slide


def test_good_tree_reports_every_slide_and_exits_0(good_tree, capsys):
    assert main([str(good_tree), "--workers", "2"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert len([line for line in lines if ": ok" in line]) == 3
    tumour = next(line for line in lines if line.startswith("training/tumor/Tumor_001.tif"))
    assert "1024x1024 px at level 0" in tumour and "0.2430 µm/px" in tumour
    assert "annotation Tumor_001.xml" in tumour and "label Tumor (name)" in tumour
    test = next(line for line in lines if line.startswith("testing/images/Test_001.tif"))
    assert "annotation none" in test and "label Normal (reference.csv)" in test
    assert lines[-1].startswith("summary: 3 slides") and "3 usable, 0 unusable" in lines[-1]
    assert "1 with an annotation, 3 with a label" in lines[-1]
    assert "PROBLEM" not in out and "WARNING" not in out


def test_full_decodes_every_region_of_every_level(good_tree):
    reports = check_tree(good_tree, full=True, region=256, need_level=None, workers=2)
    assert [r.path.name for r in reports] == ["Test_001.tif", "Normal_001.tif", "Tumor_001.tif"]
    for report in reports:
        assert report.regions_read == report.regions_tried == report.regions_total == len(
            level_regions(report.level_dimensions, report.level_downsamples, 256))
        assert report.regions_total == 16 + 4 + 1 + 1 + 1 + 1 + 1  # 1024, 512, 256, 128, 64, 32, 16 px levels


def test_sample_keeps_the_coarsest_level_and_each_levels_ends():
    dims, downs = ((4096, 2048), (2048, 1024), (1024, 512)), (1.0, 2.0, 4.0)
    regions = level_regions(dims, downs, 256)
    assert len(regions) == 128 + 32 + 8 and regions[1] == (0, (256, 0), (256, 256))
    assert regions[-1] == (2, (3072, 1024), (256, 256))  # level-2 (768, 256) in level-0 pixels
    sample = sample_regions(regions, 5, seed=0)
    assert set(regions[-8:]) <= set(sample)  # the whole coarsest level
    assert regions[0] in sample and regions[127] in sample and regions[128] in sample and regions[159] in sample
    assert len(sample) == 8 + 4 + 5
    assert sample == sample_regions(regions, 5, seed=0) != sample_regions(regions, 5, seed=1)


@pytest.mark.parametrize("how, expected", [
    ("zero_tile", "cannot read level 0 region at (0, 0) of size (512, 512): Not a JPEG file"),
    ("overwrite_tile_start", "cannot read level 0 region at (0, 0) of size (512, 512): Not a JPEG file"),
    ("truncate", "cannot read level 0 region at"),
    ("empty", "empty file (0 bytes)"),
    ("not_a_slide", "not a slide OpenSlide can read"),
])
def test_damaged_slide_is_listed_and_exits_1(good_tree, tmp_path, capsys, how, expected):
    root, slide = damaged_copy(good_tree, tmp_path, how)
    # The damaged tile lies in the region at (0, 0): --full finds it, and so does the default sample (each level's
    # first region is always read).
    for args in (["--full"], []):
        assert main([str(root), "--workers", "2", *args]) == 1
        out = capsys.readouterr().out
        problems = [line for line in out.splitlines() if line.startswith("PROBLEM")]
        assert problems and all(line.startswith(f"PROBLEM {slide}: ") for line in problems)
        assert any(expected in line for line in problems), problems
        assert "2 usable, 1 unusable" in out and "unusable: training/tumor/Tumor_001.tif" in out
        assert "Normal_001.tif" in out and ": ok" in out  # the good slides are still reported


def test_missing_level_and_missing_annotation(good_tree, tmp_path, capsys):
    root = tmp_path / "c16"
    shutil.copytree(good_tree, root)
    (root / "training" / "lesion_annotations" / "Tumor_001.xml").unlink()
    # Level 6 of a 1024-px slide would be 16 px: the pyramid stops at level 6 exactly, so ask for level 7.
    assert main([str(root), "--level", "7"]) == 1
    out = capsys.readouterr().out
    assert out.count("PROBLEM") == 3 and "no level 7" in out
    assert "WARNING " in out and "labelled Tumor (name) but no Tumor_001.xml/.json annotation found" in out
    assert main([str(root), "--level", "-1"]) == 0


def test_every_openslide_suffix_is_found(tmp_path):
    for name in ("a.svs", "b.NDPI", "c.mrxs", "d.tiff", "e.txt", ".hidden.tif", "f.xml"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in find_slides(tmp_path)] == ["a.svs", "b.NDPI", "c.mrxs", "d.tiff"]


def test_bad_folder_is_one_line(tmp_path, capsys):
    assert main([str(tmp_path / "nowhere")]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert main([str(tmp_path)]) == 1  # no slides
    assert "no slides found" in capsys.readouterr().out


def test_cli_runs_as_a_script():
    import subprocess
    import sys
    proc = subprocess.run([sys.executable, str(ROOT / "wsi" / "bin" / "check_slides.py"), "-h"],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "--full" in proc.stdout


def test_a_4x_step_slide_is_a_level_structure_not_a_damaged_file(good_tree, tmp_path, capsys):
    """A slide of another scanner (4× level steps, odd size) has no level 6: the advice says its pyramid differs
    and names --level auto, not "re-download"; with --level auto it is usable (its level 3 has downsample 64)."""
    root = tmp_path / "c16"
    shutil.copytree(good_tree, root)
    aperio = root / "testing" / "images" / "Test_002.tif"
    make_synthetic_slide(aperio, width=3001, height=2777, seed=4, normal=True, factor=4)
    assert main([str(root)]) == 1
    out = capsys.readouterr().out
    problem = next(line for line in out.splitlines() if line.startswith("PROBLEM"))
    assert "Test_002.tif: no level 6" in problem and "downsamples 1, 4" in problem and "not damaged" in problem
    assert "level 3 has downsample 63.5" in problem and "--level auto" in problem
    assert "re-download" not in out and "run with --level auto" in out
    assert main([str(root), "--level", "auto"]) == 0
    out = capsys.readouterr().out
    assert "4 usable, 0 unusable" in out and "WARNING" not in out
    # A slide far from 64 per cell at every level is usable with a warning naming the level taken.
    small = root / "testing" / "images" / "Test_003.tif"
    make_synthetic_slide(small, width=300, height=300, seed=5, normal=True, factor=4, tile_size=128)
    assert main([str(root), "--level", "auto"]) == 0
    assert "WARNING" in capsys.readouterr().out


def test_the_sample_is_a_share_of_each_level():
    """--share: a fixed share of every level's regions (rounded up), so the sample grows with the slide."""
    small = [(0, (x, 0), (256, 256)) for x in range(100)] + [(1, (x, 0), (256, 256)) for x in range(10)]
    large = [(0, (x, 0), (256, 256)) for x in range(1000)] + [(1, (x, 0), (256, 256)) for x in range(10)]
    for regions, level0 in ((small, 100), (large, 1000)):
        sample = sample_regions(regions, 0, seed=0, share=0.05)
        assert len([r for r in sample if r[0] == 0]) >= level0 // 20
        assert len([r for r in sample if r[0] == 0]) <= level0 // 20 + 2  # plus the level's two ends
    assert sample_regions(small, 5, seed=0) == sample_regions(small, 5, seed=0, share=0.0)


def test_summary_states_the_share_and_the_time(good_tree, capsys):
    assert main([str(good_tree), "--share", "0.1"]) == 0
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert "10% of each level's regions" in summary and re.search(r"; \d+\.\d s$", summary), summary
    with pytest.raises(SystemExit) as stop:
        main([str(good_tree), "--share", "2"])
    assert stop.value.code == 2 and "argument --share: must be in [0, 1]" in capsys.readouterr().err
