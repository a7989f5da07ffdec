"""wsi.inference.loader: a bad read in a worker is one line in the main process, or tolerated beside the batch."""

import pytest
import torch
from torch.utils.data import Dataset

from wsi.errors import ReadFailed, RegionReadError, SlideError
from wsi.inference.loader import guarded_loader


class Reads(Dataset):
    """Item i is tensor [i]; item 2 fails to decode, item 4 cannot be opened (when asked)."""

    def __init__(self, n, unopenable=False):
        self.n, self.unopenable = n, unopenable

    def __len__(self):
        return self.n

    def __getitem__(self, index):
        if index == 2:
            raise RegionReadError("s.tif", 0, (128, 0), (48, 48), "Not a JPEG file")
        if index == 4 and self.unopenable:
            raise SlideError("s.tif: cannot open: not a slide")
        return torch.tensor([index])


@pytest.mark.parametrize("workers", [0, 1])
def test_a_failure_not_tolerated_is_one_line_here(workers):
    with pytest.raises(ReadFailed) as err:
        list(guarded_loader(Reads(4), batch_size=2, num_workers=workers))
    assert str(err.value) == "s.tif: cannot read level 0 region at (128, 0) of size (48, 48): Not a JPEG file"


@pytest.mark.parametrize("workers", [0, 1])
def test_tolerated_failures_come_beside_the_batch_and_others_still_stop(workers):
    out = list(guarded_loader(Reads(4), batch_size=2, num_workers=workers, tolerate=(RegionReadError,)))
    assert [batch.flatten().tolist() for batch, _ in out] == [[0, 1], [3]]
    assert [[(f.index, f.reason) for f in failed] for _, failed in out] == [[], [(2, "Not a JPEG file")]]
    with pytest.raises(ReadFailed, match="^s.tif: cannot open: not a slide$"):
        list(guarded_loader(Reads(6, unopenable=True), batch_size=2, num_workers=workers,
                            tolerate=(RegionReadError,)))


def test_items_one_by_one():
    out = list(guarded_loader(Reads(3), batch_size=None, num_workers=0, tolerate=(RegionReadError,)))
    assert [(None if item is None else item.tolist(), [f.index for f in failed]) for item, failed in out] == [
        ([0], []), ([1], []), (None, [2])]
