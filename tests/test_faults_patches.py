"""Faults of patch extraction (wsi/data/patches.py, patch_gen.py): a damaged tile costs only its patches, a stopped
run resumes, junk PNGs are rewritten and stale temporaries removed, a level no slide has is refused first. Part of
the fault matrix (tests/test_faults.py); the world is conftest.py's ``world``.
"""

import os
import shutil
import subprocess
import sys
import time

import pytest

from tests.helpers import (DAMAGED_TILE, HOST, TILE, assert_one_error, call, dead_pid, start, stop_when,
                           temporaries)
from wsi.bin import patch_gen
from wsi.data.coords import read_coords, write_coords


@pytest.fixture(autouse=True)
def one_thread(one_torch_thread):
    """Every test of this file runs with one torch thread (tests/conftest.py)."""


def test_patch_gen_damaged_tile_costs_only_its_patches(world, tmp_path, capsys):
    common = ["--patch_size", "32", "--num_process", "2"]
    assert call(patch_gen.main, [world / "slides", world / "coords.txt", tmp_path / "clean", *common], capsys)[0] == 0
    status, err = call(patch_gen.main, [world / "damaged", world / "coords.txt", tmp_path / "hurt", *common], capsys)
    assert status == 1 and "Traceback" not in err
    failed = {int(line.split("\t")[0]) for line in (tmp_path / "hurt" / "failed.txt").read_text().splitlines()}
    rows = read_coords(world / "coords.txt")
    tx, ty = DAMAGED_TILE[0] * TILE, DAMAGED_TILE[1] * TILE
    touching = {i for i, (_, x, y) in enumerate(rows) if x - 16 < tx + TILE and tx < x + 16 and y - 16 < ty + TILE
                and ty < y + 16}
    assert failed == touching and 0 < len(failed) < len(rows)
    for i in set(range(len(rows))) - failed:
        assert (tmp_path / "hurt" / f"{i}.png").read_bytes() == (tmp_path / "clean" / f"{i}.png").read_bytes()
    assert not temporaries(tmp_path)


@pytest.mark.parametrize("stop,workers", [("sigterm", 1), ("ctrl_c", 2)])
def test_patch_gen_stopped_then_rerun(world, tmp_path, capsys, stop, workers):
    rows = [("Tumor_001", 40 + (k * 7) % 430, 40 + (k * 13) % 430) for k in range(1500)]
    write_coords(tmp_path / "many.txt", rows)
    out = tmp_path / "out"
    argv = [world / "slides", tmp_path / "many.txt", out, "--patch_size", "64", "--num_process", workers]
    stop_when(start("patch_gen", *argv), lambda: (out / "20.png").exists(), stop)
    assert not temporaries(tmp_path)
    done = len(list(out.glob("*.png")))
    assert 0 < done < len(rows)
    status, err = call(patch_gen.main, argv, capsys)
    assert status == 0, err
    assert len(list(out.glob("*.png"))) == len(rows) and not temporaries(tmp_path)


def test_patch_gen_junk_pngs_are_rewritten_and_stale_temporaries_removed(world, tmp_path, capsys):
    out = tmp_path / "out"
    argv = [world / "slides", world / "coords.txt", out, "--patch_size", "32", "--num_process", "1"]
    assert call(patch_gen.main, argv, capsys)[0] == 0
    good = (out / "3.png").read_bytes()
    (out / "3.png").write_bytes(good[:len(good) // 2])  # cut short
    (out / "4.png").write_bytes(b"")
    shutil.copy(out / "5.png", out / "6.png")  # fine PNG, right size: kept
    (out / f".7.abc.{HOST}-{dead_pid()}.tmp.png").write_bytes(b"x")
    (out / ".8.old.tmp.png").write_bytes(b"x")  # an earlier version's temporary name
    status, err = call(patch_gen.main, argv, capsys)
    assert status == 0, err
    assert (out / "3.png").read_bytes() == good and (out / "4.png").stat().st_size > 0
    assert not temporaries(tmp_path)
    assert len(list(out.glob("*.png"))) == 16


def test_patch_gen_refuses_a_level_no_slide_has_before_writing(world, tmp_path, capsys):
    status, err = call(patch_gen.main, [world / "slides", world / "coords.txt", tmp_path / "out", "--patch_size",
                                        "32", "--level", "9", "--num_process", "1"], capsys)
    assert status == 2
    assert_one_error(err, "no level 9")
    assert not (tmp_path / "out").exists()


def test_patch_gen_keeps_the_temporaries_of_live_concurrent_processes(world, tmp_path, capsys):
    # Another process of this machine still writing into the folder (a concurrent run, a second shard): its
    # temporary stays; the file of a process that is gone, and another machine's that is a day old, are removed.
    out = tmp_path / "out"
    out.mkdir()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        kept = [out / f".7.abc.{HOST}-{live.pid}.tmp.png", out / ".8.abc.other-machine-12.tmp.png"]
        gone = [out / f".9.abc.{HOST}-{dead_pid()}.tmp.png", out / ".10.abc.other-machine-13.tmp.png"]
        for path in kept + gone:
            path.write_bytes(b"being written")
        day_ago = time.time() - 25 * 3600
        os.utime(gone[1], (day_ago, day_ago))
        status, err = call(patch_gen.main, [world / "slides", world / "coords.txt", out, "--patch_size", "32",
                                            "--num_process", "1"], capsys)
        assert status == 0, err
        assert all(path.exists() for path in kept)
        assert not any(path.exists() for path in gone)
        assert len(list(out.glob("[0-9]*.png"))) == 16
    finally:
        live.kill()
        live.wait()
