"""The design card's top-level folders: jsons/, coords/ and ckpt/ hold what the original shipped there.

Each MANIFEST.tsv lists the original repository's files with their git blob SHA-1 (``git hash-object``); the
files marked ``copied`` must be here with exactly those bytes.
"""

import csv
import hashlib

import pytest

from tests.helpers import ROOT


def git_blob_sha1(data):
    """SHA-1 of a git blob object: what ``git hash-object`` prints for a file of these bytes."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def manifest(folder):
    with open(ROOT / folder / "MANIFEST.tsv", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


@pytest.mark.parametrize("folder, copied", [("jsons", 268), ("coords", 2), ("configs", 2)])
def test_shipped_files_are_the_originals_bytes(folder, copied):
    rows = manifest(folder)
    assert all(row["path"].startswith(folder + "/") for row in rows)
    present = [row for row in rows if row["status"] == "copied"]
    assert len(present) == copied
    for row in present:
        data = (ROOT / row["path"]).read_bytes()
        assert len(data) == int(row["bytes"]), row["path"]
        assert git_blob_sha1(data) == row["git_blob_sha1"], row["path"]


def test_json_folders_hold_the_originals_split_and_nothing_else():
    """The original's loader reads every file of jsons/train and jsons/valid: no stray file may lie there."""
    train = sorted(p.name for p in (ROOT / "jsons" / "train").iterdir())
    valid = sorted(p.name for p in (ROOT / "jsons" / "valid").iterdir())
    assert len(train) == 239 and len(valid) == 29
    assert all(name.endswith(".json") for name in train + valid)
    expected_train = {f"Tumor_{i:03d}.json" for i in range(1, 101)} | {
        f"Normal_{i:03d}.json" for i in range(1, 141) if i != 86}
    expected_valid = {f"Tumor_{i:03d}.json" for i in range(101, 111)} | {
        f"Normal_{i:03d}.json" for i in range(141, 161) if i != 144}
    assert set(train) == expected_train and set(valid) == expected_valid


def test_train_lists_and_checkpoints_are_not_committed():
    """The original never released its training lists; checkpoints are downloaded or trained (45 MB each)."""
    for row in manifest("coords"):
        if row["path"].endswith("_train.txt"):
            assert row["status"] == "not_available"
    for folder in ("jsons", "coords", "ckpt"):
        assert (ROOT / folder / "README.md").is_file()
    ignored = (ROOT / "ckpt" / ".gitignore").read_text().split()
    assert "*.ckpt" in ignored
