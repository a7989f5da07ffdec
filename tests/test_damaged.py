"""wsi.inference.damaged: a block with a damaged tile is read around it; the positions it costs are listed."""

import shutil

import numpy as np
import pytest

from tests.helpers import tiles_across, zero_tile
from wsi.data.pyramid import write_pyramid_from_array
from wsi.data.slide import open_slide
from wsi.inference.damaged import failed_report_path, positions_using, read_block_tolerant, write_failed_report


@pytest.fixture(scope="module")
def slides(tmp_path_factory):
    """An intact 256² JPEG slide of 64² tiles and a copy whose level-0 tile (col 1, row 2) is zeroed."""
    folder = tmp_path_factory.mktemp("damaged")
    pixels = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    intact, damaged = folder / "intact.tif", folder / "damaged.tif"
    write_pyramid_from_array(intact, pixels, tile_size=64)
    shutil.copyfile(intact, damaged)
    zero_tile(damaged, 0, 2 * tiles_across(damaged, 0) + 1)
    return intact, damaged


def test_a_whole_block_reads_in_one_piece(slides):
    with open_slide(slides[0]) as slide:
        block, bad, reason = read_block_tolerant(slide, (0, 0, 256, 256), np.ones((4, 4), bool), 64, 64)
        assert np.array_equal(block, slide.read_region((0, 0), 0, (256, 256)))
    assert bad.shape == (0, 2) and reason == ""


def test_only_the_patches_on_the_damaged_tile_are_lost(slides):
    # Patches of 48 every 32 px from (16, 16): those touching level-0 tile [64, 128) × [128, 192) fail.
    need = np.ones((7, 7), dtype=bool)  # [cols, rows]
    need[6, 0] = False  # a patch not needed is not read
    with open_slide(slides[1]) as damaged, open_slide(slides[0]) as intact:
        block, bad, reason = read_block_tolerant(damaged, (16, 16, 240, 240), need, 32, 48)
        truth = intact.read_region((16, 16), 0, (240, 240))
    lost = {(int(c), int(r)) for c, r in bad}
    touching = {(c, r) for c in range(7) for r in range(7)
                if 16 + 32 * c < 128 and 16 + 32 * c + 48 > 64 and 16 + 32 * r < 192 and 16 + 32 * r + 48 > 128}
    assert lost == touching and touching and reason
    for c in range(7):
        for r in range(7):
            if need[c, r] and (c, r) not in lost:
                patch = (slice(32 * r, 32 * r + 48), slice(32 * c, 32 * c + 48))
                assert np.array_equal(block[patch], truth[patch]), (c, r)


def test_positions_using_a_bad_patch_follow_the_grid_cells():
    # Lattice patch (2, 3) is bad; node (r, c) of position (xm, ym) is patch (xm + c·q, ym + r·q), q = 1.
    bad = np.zeros((6, 6), dtype=bool)
    bad[2, 3] = True
    mask = np.ones((5, 5), dtype=bool)
    hit = positions_using(bad, mask, [(0, 0), (0, 1), (1, 0)], 1)
    assert sorted(zip(*np.nonzero(hit))) == [(1, 3), (2, 2), (2, 3)]
    mask[1, 3] = False  # not tissue: never listed
    assert sorted(zip(*np.nonzero(positions_using(bad, mask, [(0, 0), (0, 1), (1, 0)], 1)))) == [(2, 2), (2, 3)]


def test_the_report_lists_positions_sorted_with_their_regions(tmp_path):
    path = failed_report_path(tmp_path / "Tumor_001.npy")
    assert path.name == "Tumor_001.failed.txt" and failed_report_path(tmp_path / "x").name == "x.failed.txt"
    failed = {(5, 1): "Not a JPEG file", (2, 7): "bad\n  tile"}
    regions = {(5, 1): (40, 0, 48, 48), (2, 7): (0, 96, 48, 48)}
    write_failed_report(path, "Tumor_001", failed, regions, total=30)
    assert path.read_text() == ("# Tumor_001: 2 of 30 tissue positions could not be read (left at 0)\n"
                                "2\t7\t0,96,48,48\tbad tile\n5\t1\t40,0,48,48\tNot a JPEG file\n")
    write_failed_report(path, "Tumor_002", {}, reason="cannot open:\nnot a slide")
    assert path.read_text() == "# Tumor_002: no map: cannot open: not a slide\n"
