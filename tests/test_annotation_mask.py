"""annotation_mask.py: ground-truth masks from XML / JSON, checked against the annotation's inside test."""

import numpy as np
import pytest

from tests.helpers import JSONS
from wsi.bin.Evaluation_FROC import main as froc_main
from wsi.bin.annotation_mask import main
from wsi.data.annotation import Annotation, read_camelyon16_xml
from wsi.data.slide import open_slide
from wsi.eval.froc import compute_evaluation_mask

WIDTH, HEIGHT = 1500, 1100

XML = """<?xml version="1.0"?>
<ASAP_Annotations>
  <Annotations>
    <Annotation Name="_0" Type="Polygon" PartOfGroup="_0" Color="#F4FA58">
      <Coordinates>
        <Coordinate Order="0" X="100.4" Y="80" />
        <Coordinate Order="1" X="1210" Y="130.6" />
        <Coordinate Order="2" X="1300" Y="700" />
        <Coordinate Order="3" X="640" Y="980" />
        <Coordinate Order="4" X="150" Y="760" />
      </Coordinates>
    </Annotation>
    <Annotation Name="_1" Type="Polygon" PartOfGroup="Tumor" Color="#F4FA58">
      <Coordinates>
        <Coordinate Order="0" X="1350" Y="900" />
        <Coordinate Order="1" X="1480" Y="950" />
        <Coordinate Order="2" X="1400" Y="1090" />
      </Coordinates>
    </Annotation>
    <Annotation Name="hole" Type="Polygon" PartOfGroup="_2" Color="#64FE2E">
      <Coordinates>
        <Coordinate Order="0" X="400" Y="300" />
        <Coordinate Order="1" X="800" Y="330" />
        <Coordinate Order="2" X="700" Y="640" />
        <Coordinate Order="3" X="430" Y="600" />
      </Coordinates>
    </Annotation>
    <Annotation Name="excluded" Type="Polygon" PartOfGroup="Exclusion" Color="#64FE2E">
      <Coordinates>
        <Coordinate Order="0" X="1000" Y="500" />
        <Coordinate Order="1" X="1150" Y="520" />
        <Coordinate Order="2" X="1080" Y="650" />
      </Coordinates>
    </Annotation>
  </Annotations>
  <AnnotationGroups />
</ASAP_Annotations>
"""


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gt")
    xml = folder / "Test_001.xml"
    xml.write_text(XML)
    mask = folder / "Test_001.tif"
    assert main([str(xml), str(mask), "--size", str(WIDTH), str(HEIGHT)]) == 0
    return xml, mask


def test_mask_matches_the_inside_test_with_holes(made):
    xml, mask = made
    annotation = read_camelyon16_xml(xml)
    assert len(annotation.positive) == 2 and len(annotation.negative) == 2
    with open_slide(mask) as slide:
        assert slide.dimensions == (WIDTH, HEIGHT) and slide.level_count >= 6
        assert slide.mpp == pytest.approx(0.243)
        level0 = slide.read_level(0)
        level5 = slide.read_level(5)[:, :, 0]
        downsample5 = slide.level_downsamples[5]
    assert set(np.unique(level0)) == {0, 255} and (level0[..., 0] == level0[..., 2]).all()
    rng = np.random.default_rng(0)
    cols, rows = rng.integers(0, WIDTH, 4000), rng.integers(0, HEIGHT, 4000)
    expected = annotation.tumour_label(np.stack([cols + 0.5, rows + 0.5], axis=1))
    np.testing.assert_array_equal(level0[rows, cols, 0] == 255, expected)
    assert expected.mean() > 0.2 and (annotation.inside_polygons(np.stack([cols + .5, rows + .5], 1)) & ~expected).any()
    # Level 5 follows the same rule at its own pixel centres.
    assert downsample5 == pytest.approx(32, rel=0.02)
    jj, ii = np.mgrid[:level5.shape[0], :level5.shape[1]]
    centres = np.stack([(ii.ravel() + 0.5) * 32, (jj.ravel() + 0.5) * 32], axis=1)
    np.testing.assert_array_equal(level5.ravel() == 255, annotation.tumour_label(centres))


def test_froc_reads_the_mask(made, tmp_path, capsys):
    _, mask = made
    csv_dir = tmp_path / "csv"
    csv_dir.mkdir()
    # The triangle merges with the big polygon once grown by 75 µm and the holes are filled: one lesion.
    evaluation_mask, value = compute_evaluation_mask(mask)
    assert value == 255 and evaluation_mask.max() == 1 and evaluation_mask[15, 17] == 1  # a hole's centre
    (csv_dir / "Test_001.csv").write_text("0.90000,300,300\n0.80000,1450,60\n")  # a TP, then an FP
    assert froc_main([str(mask.parent), str(csv_dir)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Evaluating Performance on image: Test_001"
    assert out[-1] == "Avg Sensivity =  1.0"


def test_slide_size_from_the_wsi_and_folder_mode(tmp_path, cmu_svs, made):
    xml, _ = made
    folder = tmp_path / "annotations"
    folder.mkdir()
    (folder / "slideA.xml").write_text(XML)
    read_camelyon16_xml(xml).to_json(folder / "slideB.json")
    slides = tmp_path / "slides"
    slides.mkdir()
    for stem in ("slideA", "slideB"):
        (slides / f"{stem}.svs").symlink_to(cmu_svs)
    out = tmp_path / "masks"
    assert main([str(folder), str(out), "--wsi", str(slides), "--suffix", "_Mask"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["slideA_Mask.tif", "slideB_Mask.tif"]
    with open_slide(out / "slideA_Mask.tif") as a, open_slide(out / "slideB_Mask.tif") as b:
        assert a.dimensions == (2220, 2967) and a.mpp == pytest.approx(0.499, abs=1e-3)
        np.testing.assert_array_equal(a.read_level(5), b.read_level(5))
        assert a.read_level(5).max() == 255


def test_real_annotation_with_exclusions(tmp_path):
    """Tumor_110 (21 tumour polygons of 10 424 vertices, 18 exclusions): a 3800 × 2100 px window holding two
    exclusions, shifted to the origin, agrees with the inside test at every level-5 pixel centre."""
    annotation = Annotation.from_json(JSONS / "valid" / "Tumor_110.json")
    origin = np.array([54000, 14400])
    shifted = Annotation([type(p)(p.name, p.vertices() - origin) for p in annotation.positive],
                         [type(p)(p.name, p.vertices() - origin) for p in annotation.negative])
    shifted.to_json(tmp_path / "window.json")
    assert main([str(tmp_path / "window.json"), str(tmp_path / "window.tif"), "--size", "3800", "2100"]) == 0
    with open_slide(tmp_path / "window.tif") as slide:
        level5 = slide.read_level(5)[:, :, 0]
    jj, ii = np.mgrid[:level5.shape[0], :level5.shape[1]]
    centres = np.stack([(ii.ravel() + 0.5) * 32, (jj.ravel() + 0.5) * 32], axis=1)
    expected = shifted.tumour_label(centres)
    assert 0.5 < expected.mean() < 0.99 and shifted.inside_polygons(centres, False).sum() > 100
    np.testing.assert_array_equal(level5.ravel() == 255, expected)


def test_bad_inputs_give_one_line(tmp_path, capsys, made):
    xml, _ = made
    out = tmp_path / "out.tif"
    assert main([str(tmp_path / "missing.xml"), str(out), "--size", "100", "100"]) == 2
    assert "missing.xml: no such annotation" in capsys.readouterr().err
    assert main([str(xml), str(out)]) == 2
    assert "give the slide (--wsi SLIDE) or its size" in capsys.readouterr().err
    bad = tmp_path / "bad.xml"
    bad.write_text("<ASAP_Annotations><Annotations>")
    assert main([str(bad), str(out), "--size", "100", "100"]) == 2
    assert "bad.xml: malformed XML" in capsys.readouterr().err
    text = tmp_path / "notes.txt"
    text.write_text("x")
    assert main([str(text), str(out), "--size", "100", "100"]) == 2
    assert "expected a Camelyon16 .xml or an NCRF .json" in capsys.readouterr().err
    assert main([str(xml), str(out), "--wsi", str(tmp_path / "nope.tif")]) == 2
    err = capsys.readouterr().err
    assert "nope.tif: no such slide file" in err and err.count("\n") == 1
    assert not out.exists()
