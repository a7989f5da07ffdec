"""wsi.data.failed_items: the one marker of an item a DataLoader worker could not read, and its collation."""

import pickle

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from wsi.data.failed_items import CatchFailures, FailedItem, collate_apart
from wsi.data.image_producer import UnreadableImage
from wsi.errors import RegionReadError, WSIError


class Squares(Dataset):
    """Item i is tensor [i, i²]; the items of ``bad`` raise the error built for them."""

    def __init__(self, n, bad):
        self.n, self.bad = n, bad

    def __len__(self):
        return self.n

    def __getitem__(self, index):
        if index in self.bad:
            raise self.bad[index](index)
        return torch.tensor([index, index * index])


def region_error(index):
    return RegionReadError("s.tif", 0, (64 * index, 0), (48, 48), "Not a JPEG file")


def test_the_marker_keeps_what_the_error_says():
    item = FailedItem(3, region_error(3), shapes=((9, 3, 8, 8), (9,)))
    assert (item.index, item.error, item.reason, item.where) == (3, "RegionReadError", "Not a JPEG file", "")
    assert item.message == str(region_error(3)) and item.shapes == ((9, 3, 8, 8), (9,)) and item.tolerated
    png = FailedItem(7, UnreadableImage("folder/7.png", "truncated"), tolerated=False)
    assert (png.where, png.reason, png.message, png.tolerated) == ("folder/7.png", "truncated",
                                                                    "folder/7.png: truncated", False)
    again = pickle.loads(pickle.dumps(png))  # what a worker sends
    assert vars(again) == vars(png)


def test_catch_failures_marks_only_the_errors_asked_for():
    data = Squares(5, {1: region_error, 3: lambda i: WSIError(f"item {i}"), 4: lambda i: KeyError(i)})
    caught = CatchFailures(data, (WSIError,), tolerate=(RegionReadError,))
    assert len(caught) == 5 and torch.equal(caught[2], torch.tensor([2, 4]))
    assert isinstance(caught[1], FailedItem) and caught[1].tolerated
    assert isinstance(caught[3], FailedItem) and not caught[3].tolerated and caught[3].message == "item 3"
    with pytest.raises(KeyError):
        caught[4]


@pytest.mark.parametrize("workers", [0, 2])
def test_failed_items_travel_beside_the_batch(workers):
    data = CatchFailures(Squares(6, {1: region_error, 2: region_error, 3: region_error}), (WSIError,))
    loader = DataLoader(data, batch_size=3, num_workers=workers, collate_fn=collate_apart)
    (first, failed_first), (second, failed_second) = list(loader)
    assert torch.equal(first, torch.tensor([[0, 0]])) and [f.index for f in failed_first] == [1, 2]
    assert torch.equal(second, torch.tensor([[4, 16], [5, 25]])) and [f.index for f in failed_second] == [3]
    assert collate_apart([FailedItem(0, region_error(0))])[0] is None
