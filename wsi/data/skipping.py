"""Training goes on past a grid it cannot read, and stops with one line when too many fail.

A dataset item that cannot be read (a damaged tile of a slide, a PNG cut short) comes back from the dataset as
a :class:`~wsi.data.failed_items.FailedItem` instead of raising: an exception raised in a DataLoader worker
reaches the main process wrapped in the worker's traceback. :func:`collate_grids` leaves those items out of the
batch and passes them along, and :class:`SkippingLoader` (what ``train.py`` iterates) logs each unreadable grid
once, counts the skips of the epoch and raises a one-line :class:`~wsi.errors.ParameterError` as soon as more
than ``max_share`` of the epoch's grids have failed.
"""

import logging

import torch
from wsi.data.failed_items import collate_apart
from wsi.errors import ParameterError

logger = logging.getLogger(__name__)


def _empty(shape):
    """An empty batch of items of ``shape``, or a list of them for a nested shape (raw items: image, draws)."""
    if shape and isinstance(shape[0], tuple):
        return [_empty(part) for part in shape]
    return torch.empty((0, *shape))


def collate_grids(items):
    """``(grids [n, G, 3, C, C], labels [n, G], skipped)``: the readable items collated, and the
    :class:`~wsi.data.failed_items.FailedItem` ones left out (``n`` may be 0 when every item of the batch failed;
    the empty tensors take the shapes the items carry). Raw items (``--augment device``) collate the same way,
    their grids being ``[images, draws]``."""
    batch, skipped = collate_apart(items)
    if batch is not None:
        data, target = batch
    else:
        grid_shape, label_shape = skipped[0].shapes
        data, target = _empty(grid_shape), _empty(label_shape)
    return data, target, skipped


class SkippingLoader:
    """Iterate a DataLoader built with :func:`collate_grids`, yielding ``(grids, labels)`` batches.

    ``skipped`` is the number of grids left out of the current (or last) epoch; each unreadable grid is logged
    once per run. More than ``max_share`` × the epoch's grids failing raises :class:`~wsi.errors.ParameterError`.
    """

    def __init__(self, loader, name, max_share):
        self.loader, self.name, self.max_share = loader, name, float(max_share)
        self.skipped = 0
        self._logged = set()

    @property
    def dataset(self):
        return self.loader.dataset

    def __len__(self):
        return len(self.loader)

    def _epoch_size(self):
        sampler = getattr(self.loader, "sampler", None)
        try:
            return len(sampler) if sampler is not None else len(self.loader.dataset)
        except TypeError:
            return len(self.loader.dataset)

    def __iter__(self):
        self.skipped = 0
        size = self._epoch_size()
        for data, target, skipped in self.loader:
            for item in skipped:
                self.skipped += 1
                if item.where not in self._logged:
                    self._logged.add(item.where)
                    logger.warning("%s: skipped grid %d, %s: %s", self.name, item.index, item.where, item.reason)
            if self.skipped > self.max_share * size:
                first = skipped[0] if skipped else None
                raise ParameterError(f"{self.name}: {self.skipped} of {size} grids of this epoch could not be read, "
                                     f"more than {{max_failed_share}} {self.max_share:g}"
                                     + (f" (last: {first.where}: {first.reason})" if first else ""))
            yield data, target
