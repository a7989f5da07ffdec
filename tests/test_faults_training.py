"""Faults of training (wsi/data/skipping.py, wsi/model/checkpoint.py through train.py): unreadable grids are skipped
up to --max_failed_share, a junk checkpoint on --resume is one line. Part of the fault matrix
(tests/test_faults.py); the world is conftest.py's ``world``.
"""

import pytest

from tests.helpers import assert_one_error, call, temporaries, write_train_config
from wsi.bin import train


@pytest.fixture(autouse=True)
def one_thread(one_torch_thread):
    """Every test of this file runs with one torch thread (tests/conftest.py)."""


def test_train_skips_unreadable_grids_with_workers(world, tmp_path, capsys, caplog):
    cfg = write_train_config(world, tmp_path, slides="damaged")
    status, err = call(train.main, [cfg, tmp_path / "out", "--num_workers", "2", "--max_failed_share", "0.5"],
                       capsys)
    assert status == 0, err
    assert "Traceback" not in err
    assert (tmp_path / "out" / "train.ckpt").is_file()
    skipped = [r.getMessage() for r in caplog.records if "skipped grid" in r.getMessage()]
    assert skipped and all("Tumor_001.tif centre" in m for m in skipped)
    assert any("could not be read and were skipped" in r.getMessage() for r in caplog.records)
    # More than the allowed share of an epoch failing stops the run in one line.
    status, err = call(train.main, [cfg, tmp_path / "out2", "--num_workers", "2", "--max_failed_share", "0"],
                       capsys)
    assert status == 2
    assert_one_error(err, "could not be read", "--max_failed_share 0")
    assert not temporaries(tmp_path)


def test_train_junk_checkpoint_on_resume_is_one_line(world, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "train.ckpt").write_bytes(b"not a checkpoint")
    cfg = write_train_config(world, tmp_path)
    status, err = call(train.main, [cfg, out, "--num_workers", "0", "--resume"], capsys)
    assert status == 2
    assert_one_error(err, "train.ckpt")
    assert sorted(p.name for p in out.iterdir()) == ["train.ckpt"]


def test_train_max_failed_share_0_trains_when_nothing_fails(world, tmp_path, capsys, caplog):
    # The boundary: 0 allows no failure, and a run without one is within it (skipped 0 is not more than 0 · size).
    cfg = write_train_config(world, tmp_path)
    status, err = call(train.main, [cfg, tmp_path / "out", "--num_workers", "0", "--max_failed_share", "0"], capsys)
    assert status == 0, err
    assert "Traceback" not in err and " error: " not in err
    assert (tmp_path / "out" / "train.ckpt").is_file()
    assert not [r for r in caplog.records if "skipped grid" in r.getMessage()]
    assert not temporaries(tmp_path)
