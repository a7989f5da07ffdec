"""wsi.data.patches: the original's patch geometry, the checks a re-run relies on, and the worker's slides."""

import multiprocessing
import signal

import numpy as np
import pytest
from PIL import Image

from wsi.cli import _sigterm_raises
from wsi.data import patches
from wsi.data.patches import (PatchGenResult, check_wsi_dir, copy_list, is_complete_png, patch_top_left,
                              read_patch, summarize)
from wsi.data.pyramid import write_pyramid_from_array
from wsi.data.slide import open_slide
from wsi.errors import InputError, NotAFolderError, SlideNotFoundError


def test_top_left_truncates_as_the_original():
    assert patch_top_left(100, 200, 768) == (-284, -184)
    assert patch_top_left(100, 200, 5) == (97, 197)  # int(100 − 2.5) = 97: towards zero
    assert patch_top_left(1, 1, 5) == (-1, -1)  # int(−1.5) = −1


def test_read_patch_is_centred_and_black_past_the_border(tmp_path):
    pixels = np.random.default_rng(0).integers(1, 256, (64, 64, 3), dtype=np.uint8)
    write_pyramid_from_array(tmp_path / "s.tif", pixels, compression="zlib")
    with open_slide(tmp_path / "s.tif") as slide:
        patch = np.asarray(read_patch(slide, 20, 30, 16))
        assert np.array_equal(patch, pixels[22:38, 12:28])
        corner = np.asarray(read_patch(slide, 2, 2, 8))
    assert np.array_equal(corner[2:, 2:], pixels[:6, :6]) and not corner[:2].any() and not corner[:, :2].any()


def test_only_a_whole_png_of_the_right_size_counts_as_done(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "0.png")
    assert is_complete_png(tmp_path / "0.png", 8)
    assert not is_complete_png(tmp_path / "0.png", 16)
    data = (tmp_path / "0.png").read_bytes()
    (tmp_path / "1.png").write_bytes(data[:-5])  # cut short
    (tmp_path / "2.png").write_bytes(b"not a png at all, but long enough")
    assert not is_complete_png(tmp_path / "1.png", 8) and not is_complete_png(tmp_path / "2.png", 8)
    assert not is_complete_png(tmp_path / "missing.png", 8)


def test_folders_and_lists(tmp_path):
    (tmp_path / "x").write_text("")
    with pytest.raises(NotAFolderError, match="is a file"):
        check_wsi_dir(tmp_path / "x")
    with pytest.raises(SlideNotFoundError, match="no such slide folder"):
        check_wsi_dir(tmp_path / "none")
    coords = tmp_path / "list.csv"
    coords.write_bytes(b"Tumor_001,1,2\r\n")
    out = tmp_path / "out"
    out.mkdir()
    assert copy_list(coords, out).read_bytes() == b"Tumor_001,1,2\r\n"
    assert copy_list(coords, out) == out / "list.txt"  # the same list again: nothing to do
    coords.write_text("Tumor_002,1,2\n")
    with pytest.raises(InputError, match="differs from"):
        copy_list(coords, out)


def test_summary_names_the_first_failure(tmp_path):
    assert summarize(PatchGenResult(written=3, skipped=1), tmp_path) == "3 patches written, 1 already there, 0 failed"
    failed = PatchGenResult(written=1, failed=[(4, "Tumor_001", 1, 2, "cannot decode")])
    assert summarize(failed, tmp_path).endswith(f"(listed in {tmp_path / 'failed.txt'}; first: line 5: cannot decode)")


def test_a_run_in_this_process_leaves_no_slide_open(tmp_path):
    # Tasks arrive grouped by slide: the worker keeps a few slides open (least recently used closed first), and
    # the run closes them all at the end, also when it works in this process.
    slides = tmp_path / "slides"
    slides.mkdir()
    lines = []
    for k in range(patches.OPEN_SLIDES + 2):
        write_pyramid_from_array(slides / f"s{k}.tif", np.full((32, 32, 3), 10 * k, np.uint8), compression="zlib")
        lines.append(f"s{k},16,16\n")
    (tmp_path / "list.txt").write_text("".join(lines))
    result = patches.generate_patches(slides, tmp_path / "list.txt", tmp_path / "out", patch_size=8, num_process=1,
                                      progress=False)
    assert result.written == len(lines) and not result.failed and len(patches._slides) == 0
    assert np.asarray(Image.open(tmp_path / "out" / "5.png")).max() == 50



def _worker_signals():
    return signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)


def test_pool_workers_leave_ctrl_c_to_the_parent_and_die_on_sigterm():
    # The parent runs under run_command's SIGTERM handler; a worker that kept it could miss Pool.terminate's SIGTERM
    # while waiting for a task (the handler only sets a flag), and the run would hang at its end.
    with _sigterm_raises():
        with multiprocessing.get_context("fork").Pool(1, initializer=patches._ignore_interrupts) as pool:
            assert pool.apply(_worker_signals) == (signal.SIG_IGN, signal.SIG_DFL)
