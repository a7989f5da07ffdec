"""Synthetic slides (wsi.synthetic) and ground-truth masks (wsi.data.mask): real files opened with OpenSlide."""

import json
import xml.etree.ElementTree as ET

import numpy as np
import openslide
import pytest
import tifffile
from skimage.measure import points_in_poly, regionprops

from wsi.bin import camelyon16xml2json as xml2json_cli
from wsi.bin import synthetic_slide as synthetic_cli
from wsi.data.annotation import Annotation, Polygon, read_camelyon16_xml
from wsi.data.mask import MaskRenderer, fill_polygon, render_mask_tile, write_tumour_mask
from wsi.synthetic import SlideRenderer, make_synthetic_slide, plan_slide
from wsi.errors import InputError

SIZE = 2048
TUMOUR_SIZE = (700, 900)


@pytest.fixture(scope="module")
def tumour_slide(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    return make_synthetic_slide(out / "Tumor_001.tif", width=SIZE, height=SIZE, seed=7, num_tumours=2,
                                tumour_size=TUMOUR_SIZE, with_hole=True, xml_path=out / "Tumor_001.xml",
                                mask_path=out / "masks" / "Tumor_001.tif", json_path=out / "Tumor_001.json")


@pytest.fixture(scope="module")
def slide_level0(tumour_slide):
    with openslide.OpenSlide(str(tumour_slide.slide_path)) as slide:
        return np.asarray(slide.read_region((0, 0), 0, (SIZE, SIZE)).convert("RGB"))


def pixel_centres(step, size=SIZE):
    """Level-0 pixel centres of a grid of every `step`-th pixel: (points [M, 2] (x, y), ix, iy)."""
    iy, ix = np.mgrid[0:size:step, 0:size:step]
    return np.stack([ix.ravel() + 0.5, iy.ravel() + 0.5], axis=1), ix.ravel(), iy.ravel()


# --- the slide file ---------------------------------------------------------------------------------------------

def test_slide_opens_with_every_level_and_mpp(tumour_slide):
    with openslide.OpenSlide(str(tumour_slide.slide_path)) as slide:
        assert slide.dimensions == (SIZE, SIZE)
        assert slide.level_count == len(tumour_slide.level_dimensions) >= 8
        assert list(slide.level_dimensions) == [tuple(d) for d in tumour_slide.level_dimensions]
        assert slide.level_downsamples[5] == pytest.approx(32)
        assert float(slide.properties[openslide.PROPERTY_NAME_MPP_X]) == pytest.approx(0.243)
        assert float(slide.properties[openslide.PROPERTY_NAME_MPP_Y]) == pytest.approx(0.243)
        for level, (w, h) in enumerate(slide.level_dimensions):
            region = np.asarray(slide.read_region((0, 0), level, (min(w, 256), min(h, 256))))
            assert region[..., 3].min() == 255  # every level decodes, fully opaque
    with tifffile.TiffFile(tumour_slide.slide_path) as tif:
        pages = tif.pages
        assert all(page.is_tiled and page.compression == tifffile.COMPRESSION.JPEG for page in pages)
        assert pages[0].subfiletype == 0
        assert all(page.subfiletype == 1 for page in list(pages)[1:])


def test_tiles_join_seamlessly(tumour_slide):
    """A region rendered in one call equals the same region assembled from smaller tiles, at every kind of level."""
    renderer = SlideRenderer(tumour_slide.tissue, tumour_slide.annotation, tumour_slide.stain, tumour_slide.seed)
    polygon = tumour_slide.annotation.positive[0].vertices()
    x0, y0 = (polygon.min(axis=0) // 2).tolist()  # a tumour edge, at level 1
    for level, (x, y) in ((0, (2 * x0, 2 * y0)), (1, (x0, y0)), (3, (0, 0))):
        whole = renderer(level, x, y, 192, 160)
        assembled = np.zeros_like(whole)
        for cy in (0, 80):
            for cx in (0, 96):
                assembled[cy:cy + 80, cx:cx + 96] = renderer(level, x + cx, y + cy, 96, 80)
        np.testing.assert_array_equal(whole, assembled)


def test_deterministic_from_seed(tmp_path, tumour_slide):
    args = dict(width=1024, height=1024, num_tumours=1, tumour_size=(300, 400))
    a = make_synthetic_slide(tmp_path / "a.tif", seed=3, **args)
    b = make_synthetic_slide(tmp_path / "b.tif", seed=3, **args)
    c = make_synthetic_slide(tmp_path / "c.tif", seed=4, **args)
    assert a.annotation.to_dict() == b.annotation.to_dict() != c.annotation.to_dict()
    assert (tmp_path / "a.tif").read_bytes() == (tmp_path / "b.tif").read_bytes()
    assert (tmp_path / "a.tif").read_bytes() != (tmp_path / "c.tif").read_bytes()


# --- pixels, XML and mask agree ---------------------------------------------------------------------------------

def test_xml_holds_tumours_in_0_1_and_hole_in_2(tumour_slide):
    groups = {}
    for element in ET.parse(tumour_slide.xml_path).iter("Annotation"):
        groups.setdefault(element.get("PartOfGroup"), []).append(element.get("Name"))
    assert len(groups["_0"]) == 1 and len(groups["_1"]) == 1 and len(groups["_2"]) == 1
    annotation = read_camelyon16_xml(tumour_slide.xml_path)
    assert annotation.to_dict() == tumour_slide.annotation.to_dict()
    assert json.loads(tumour_slide.json_path.read_text()) == annotation.to_dict()
    # The hole lies inside the first tumour; every tumour vertex lies in tissue.
    hole = annotation.negative[0].vertices()
    assert Annotation([tumour_slide.annotation.positive[0]]).inside_polygons(hole).all()
    for polygon in annotation.positive:
        assert tumour_slide.tissue.contains(polygon.vertices()).all()


def test_mask_is_255_inside_tumours_and_0_in_holes_and_outside(tumour_slide):
    annotation = read_camelyon16_xml(tumour_slide.xml_path)
    with openslide.OpenSlide(str(tumour_slide.mask_path)) as mask:
        assert mask.dimensions == (SIZE, SIZE)
        assert mask.level_count >= 6
        assert float(mask.properties[openslide.PROPERTY_NAME_MPP_X]) == pytest.approx(0.243)
        level0 = np.asarray(mask.read_region((0, 0), 0, (SIZE, SIZE)))
        # The FROC reads level 5, channel 0: tumour must be 255 there.
        level5 = np.asarray(mask.read_region((0, 0), 5, mask.level_dimensions[5]))
    assert set(np.unique(level0[..., 0])) == {0, 255}
    assert (level0[..., 0] == level0[..., 1]).all() and (level0[..., 0] == level0[..., 2]).all()
    points, ix, iy = pixel_centres(7)
    label = annotation.tumour_label(points)
    np.testing.assert_array_equal(level0[iy, ix, 0] == 255, label)
    assert label.sum() > 1000
    # Explicit samples: inside a hole (inside a positive polygon too) is 0.
    in_hole = annotation.inside_polygons(points, is_positive=False)
    assert in_hole.sum() > 20
    assert (level0[iy[in_hole], ix[in_hole], 0] == 0).all()
    assert annotation.inside_polygons(points[in_hole]).all()
    # Level 5: each pixel is labelled by its centre ((i + 0.5) * 32, (j + 0.5) * 32).
    h5, w5 = level5.shape[:2]
    jj, ii = np.mgrid[0:h5, 0:w5]
    centres = np.stack([(ii.ravel() + 0.5) * 32, (jj.ravel() + 0.5) * 32], axis=1)
    np.testing.assert_array_equal(level5[..., 0].ravel() == 255, annotation.tumour_label(centres))


def test_tumour_pixels_are_darker_and_more_purple_than_stroma(tumour_slide, slide_level0):
    rgb = slide_level0[::3, ::3].reshape(-1, 3).astype(np.float64)
    tumour = (render_mask_tile(tumour_slide.annotation, 1, 0, 0, SIZE, SIZE)[::3, ::3] == 255).ravel()
    tissue = tumour_slide.tissue.tile(1, 0, 0, SIZE, SIZE)[::3, ::3].ravel()
    stroma = tissue & ~tumour
    background = ~tissue
    assert tumour.sum() > 1000 and stroma.sum() > 1000 and background.sum() > 1000
    brightness = rgb.sum(axis=1)
    assert brightness[tumour].mean() < brightness[stroma].mean() - 60
    assert brightness[stroma].mean() < brightness[background].mean() - 60
    # Purple: blue over red higher in tumour (haematoxylin) than in stroma (eosin).
    ratio = rgb[:, 2] / np.maximum(rgb[:, 0], 1)
    assert ratio[tumour].mean() > ratio[stroma].mean() + 0.1


def test_64px_crops_show_crowded_large_nuclei_only_in_tumour(tumour_slide, slide_level0):
    """The texture a CNN learns from 64-px level-0 crops: the fraction of dark (nucleus) pixels."""
    rng = np.random.default_rng(0)
    fractions = {"tumour": [], "stroma": []}
    annotation, tissue = tumour_slide.annotation, tumour_slide.tissue
    while min(len(v) for v in fractions.values()) < 10:
        x, y = rng.integers(0, SIZE - 64, 2)
        corners = np.array([[x, y], [x + 63, y], [x, y + 63], [x + 63, y + 63], [x + 32, y + 32]]) + 0.5
        if annotation.tumour_label(corners).all():
            kind = "tumour"
        elif tissue.contains(corners).all() and not annotation.tumour_label(corners).any():
            kind = "stroma"
        else:
            continue
        crop = slide_level0[y:y + 64, x:x + 64].astype(np.float64)
        fractions[kind].append((crop.sum(axis=2) < 420).mean())
    assert min(fractions["tumour"]) > 0.25
    assert max(fractions["stroma"]) < 0.12


def test_tumours_are_not_isolated_tumour_cells_at_default_size():
    """At the defaults a tumour's major axis exceeds the FROC's ITC limit (275 µm / 0.243 µm/px ≈ 1132 px)."""
    tissue, annotation, _ = plan_slide(4096, 4096, seed=11, num_tumours=2)
    renderer = MaskRenderer(annotation)
    for polygon in annotation.positive:
        one = MaskRenderer(Annotation([polygon]))
        image = one.tile(8, 0, 0, 512, 512) > 0
        (region,) = regionprops(image.astype(np.uint8))
        assert 1150 < region.axis_major_length * 8 < 2100
    assert 0.3 <= tissue.fraction() <= 0.7
    assert renderer.tile(64, 0, 0, 64, 64).any()


def test_normal_slide_has_tissue_and_no_tumour(tmp_path):
    result = make_synthetic_slide(tmp_path / "Normal_001.tif", width=1024, height=1024, seed=1, normal=True,
                                  xml_path=tmp_path / "Normal_001.xml", mask_path=tmp_path / "m.tif",
                                  json_path=tmp_path / "Normal_001.json")
    assert result.xml_path is None and result.mask_path is None and not result.is_tumour
    assert not (tmp_path / "Normal_001.xml").exists() and not (tmp_path / "m.tif").exists()
    assert json.loads((tmp_path / "Normal_001.json").read_text()) == {"positive": [], "negative": []}
    assert 0.3 <= result.tissue.fraction() <= 0.65
    with openslide.OpenSlide(str(result.slide_path)) as slide:
        image = np.asarray(slide.read_region((0, 0), 2, slide.level_dimensions[2]).convert("RGB"))
    assert 0.2 < (image.sum(axis=2) < 650).mean() < 0.75


def test_tumours_that_do_not_fit_raise_input_error(tmp_path):
    with pytest.raises(InputError, match="cannot place 3 tumours"):
        make_synthetic_slide(tmp_path / "x.tif", width=1024, height=1024, num_tumours=3)
    assert not list(tmp_path.iterdir())


# --- the mask rasteriser ----------------------------------------------------------------------------------------

def star(rng, n, centre, radius):
    """A random simple polygon, star-shaped around `centre` (angles at least pi / n apart)."""
    theta = (np.arange(n) + rng.uniform(0, 0.5, n)) * (2 * np.pi / n)
    r = radius * rng.uniform(0.4, 1.0, n)
    return np.stack([centre[0] + r * np.cos(theta), centre[1] + r * np.sin(theta)], axis=1)


def test_fill_polygon_equals_points_in_poly_on_pixel_centres():
    """Same rule as skimage's points_in_poly (even-odd, edges and vertices inside), integer vertices included.

    (They differ only on degenerate outlines: centres on a zero-width spike or a self-intersection point.)"""
    rng = np.random.default_rng(0)
    rows, cols = np.mgrid[0:40, 0:37]
    centres = np.stack([cols.ravel(), rows.ravel()], axis=1).astype(np.float64)
    for trial in range(60):
        vertices = star(rng, int(rng.integers(3, 30)), (18, 20), 25)
        if trial % 2:
            vertices = np.round(vertices)  # many centres exactly on edges and vertices
        expected = points_in_poly(centres, vertices).reshape(40, 37)
        np.testing.assert_array_equal(fill_polygon(vertices, (40, 37)), expected)
    square = np.array([[2, 2], [10, 2], [10, 10], [2, 10]], dtype=float)
    filled = fill_polygon(square, (12, 12))
    assert filled[2:11, 2:11].all() and filled.sum() == 81


def test_render_mask_tile_levels_and_tiles_agree_with_tumour_label():
    rng = np.random.default_rng(1)
    positive = [Polygon("a", np.round(star(rng, 40, (300, 260), 220))),
                Polygon("b", np.round(star(rng, 25, (700, 600), 150)))]
    negative = [Polygon("hole", [[280, 240], [330, 240], [330, 290], [280, 290]])]
    annotation = Annotation(positive, negative)
    for downsample in (1, 2, 8):
        size = 1024 // downsample
        tile = render_mask_tile(annotation, downsample, 0, 0, size, size)
        assert tile.dtype == np.uint8 and tile.shape == (size, size)
        jj, ii = np.mgrid[0:size, 0:size]
        centres = np.stack([(ii.ravel() + 0.5) * downsample, (jj.ravel() + 0.5) * downsample], axis=1)
        np.testing.assert_array_equal(tile.ravel() == 255, annotation.tumour_label(centres))
        np.testing.assert_array_equal(tile[37:100, 50:77], render_mask_tile(annotation, downsample, 50, 37, 27, 63))
    empty = render_mask_tile(Annotation(), 1, 0, 0, 16, 8)
    assert empty.shape == (8, 16) and not empty.any()


def test_write_tumour_mask_has_level_5_even_when_small(tmp_path):
    annotation = Annotation([Polygon("t", [[40, 40], [400, 60], [380, 420], [60, 380]])])
    dims = write_tumour_mask(tmp_path / "Tumor_009.tif", annotation, 600, 500)
    assert len(dims) >= 6 and dims[5] == (19, 16)
    with openslide.OpenSlide(str(tmp_path / "Tumor_009.tif")) as mask:
        assert mask.level_dimensions[5] == (19, 16)
        level5 = np.asarray(mask.read_region((0, 0), 5, (19, 16)))
    assert level5[8, 8, 0] == 255 and level5[0, 0, 0] == 0 and level5[15, 18, 0] == 0
    assert [p.name for p in tmp_path.iterdir()] == ["Tumor_009.tif"]


# --- the CLI ----------------------------------------------------------------------------------------------------

def test_cli_writes_slides_xml_masks_and_json_equal_to_xml2json(tmp_path, capsys):
    out = tmp_path / "out"
    status = synthetic_cli.main([str(out), "--num_tumor", "1", "--num_normal", "1", "--size", "1536",
                                 "--tumor_size", "500", "600", "--with_hole", "--json_dir", str(tmp_path / "json")])
    assert status == 0
    assert sorted(p.name for p in out.iterdir()) == ["Normal_001.tif", "Tumor_001.tif", "Tumor_001.xml", "masks"]
    assert [p.name for p in (out / "masks").iterdir()] == ["Tumor_001.tif"]
    assert sorted(p.name for p in (tmp_path / "json").iterdir()) == ["Normal_001.json", "Tumor_001.json"]
    assert xml2json_cli.main([str(out / "Tumor_001.xml"), str(tmp_path / "converted.json")]) == 0
    assert (tmp_path / "converted.json").read_bytes() == (tmp_path / "json" / "Tumor_001.json").read_bytes()
    annotation = Annotation.from_json(tmp_path / "converted.json")
    assert len(annotation.positive) == 2 and len(annotation.negative) == 1


@pytest.mark.parametrize("argv, message", [
    (["--size", "1024"], "cannot place 2 tumours"),
    (["--num_tumor", "0", "--num_normal", "0"], "nothing to write"),
    (["--size", "10"], "too small"),
])
def test_cli_bad_input_one_line_error_and_no_output(tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    assert synthetic_cli.main([str(out)] + argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("synthetic_slide: error: ") and message in err and "\n" not in err
    assert not out.exists() or not [p for p in out.rglob("*") if p.is_file()]


def test_cli_out_dir_is_a_file(tmp_path, capsys):
    target = tmp_path / "file"
    target.write_text("x")
    assert synthetic_cli.main([str(target), "--size", "512"]) == 2
    assert "is a file" in capsys.readouterr().err
