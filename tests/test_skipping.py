"""wsi.data.skipping: training leaves out the grids it cannot read, logs each once, and stops past a share."""

import logging

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from wsi.data.failed_items import FailedItem
from wsi.data.image_producer import UnreadableImage
from wsi.data.skipping import SkippingLoader, collate_grids
from wsi.errors import ParameterError

SHAPES = ((9, 3, 4, 4), (9,))


class Grids(Dataset):
    """Item i: (grids filled with i, labels), or a FailedItem for the indices of ``bad`` (as the datasets do)."""

    def __init__(self, n, bad=()):
        self.n, self.bad = n, set(bad)

    def __len__(self):
        return self.n

    def __getitem__(self, index):
        if index in self.bad:
            return FailedItem(index, UnreadableImage(f"slide.tif centre ({index}, 0)", "Not a JPEG file"), SHAPES)
        return torch.full(SHAPES[0], float(index)), torch.zeros(SHAPES[1])


def test_collate_leaves_out_failed_grids_and_keeps_shapes_when_all_fail():
    data, target, skipped = collate_grids([Grids(3, {1})[i] for i in range(3)])
    assert data.shape == (2, *SHAPES[0]) and data[:, 0, 0, 0, 0].tolist() == [0.0, 2.0] and target.shape == (2, 9)
    assert [item.index for item in skipped] == [1]
    data, target, skipped = collate_grids([Grids(2, {0, 1})[i] for i in range(2)])
    assert data.shape == (0, *SHAPES[0]) and target.shape == (0, 9) and len(skipped) == 2
    raw = FailedItem(0, UnreadableImage("a.png", "bad"), (((48, 48, 3), (11,)), (9,)))
    (images, draws), target, _ = collate_grids([raw])
    assert images.shape == (0, 48, 48, 3) and draws.shape == (0, 11) and target.shape == (0, 9)


def test_the_loader_counts_logs_once_and_stops_past_the_share(caplog):
    loader = SkippingLoader(DataLoader(Grids(8, {2, 5}), batch_size=4, collate_fn=collate_grids), "train", 0.25)
    with caplog.at_level(logging.WARNING, logger="wsi.data.skipping"):
        batches = [len(data) for data, _ in loader]
        assert batches == [3, 3] and loader.skipped == 2 and len(loader) == 2
        list(loader)  # a second epoch: counted again, not logged again
    assert loader.skipped == 2
    assert [r.getMessage() for r in caplog.records] == [
        "train: skipped grid 2, slide.tif centre (2, 0): Not a JPEG file",
        "train: skipped grid 5, slide.tif centre (5, 0): Not a JPEG file"]
    strict = SkippingLoader(DataLoader(Grids(8, {2, 5}), batch_size=4, collate_fn=collate_grids), "valid", 0.2)
    with pytest.raises(ParameterError, match=r"valid: 2 of 8 grids of this epoch could not be read, more than "
                                             r".*0\.2 \(last: slide.tif centre \(5, 0\): Not a JPEG file\)"):
        list(strict)
