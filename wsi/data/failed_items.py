"""Items a DataLoader worker could not read, carried to the main process as data: the one failure marker.

An exception raised in a DataLoader worker reaches the main process wrapped in the worker's traceback (or as a
RuntimeError when its class cannot be rebuilt from a message). So a dataset item whose read fails comes back as
a :class:`FailedItem` instead, and the collate function sets the failed items apart from the readable ones
(:func:`collate_apart`). What happens next is each caller's rule:

- training (:mod:`wsi.data.skipping`) leaves the grid out of the batch, logs it once and stops when too many fail;
- the faithful inference mode (:mod:`wsi.inference.loader`) leaves a position whose region cannot be decoded at
  0 and lists it, and raises any other failure in the main process as one line.
"""

from torch.utils.data import Dataset, default_collate


class FailedItem:
    """Stands for dataset item ``index`` whose read raised ``error`` in a worker.

    Attributes: ``index``; ``error``, the exception's class name; ``message``, its one-line text; ``where`` and
    ``reason``, the error's own fields when it has them (the slide and region, or the PNG; why), else ``""``;
    ``shapes``, the shapes of the item's tensors, for a batch whose every item failed; ``tolerated``, whether the
    reader of the loader carries on past it (see :class:`CatchFailures`).
    """

    def __init__(self, index, error, shapes=(), tolerated=True):
        self.index = int(index)
        self.error, self.message = type(error).__name__, str(error)
        self.where, self.reason = str(getattr(error, "where", "") or ""), str(getattr(error, "reason", "") or "")
        self.shapes, self.tolerated = tuple(shapes), bool(tolerated)

    def __repr__(self):
        return f"FailedItem({self.index}, {self.error}: {self.message})"


class CatchFailures(Dataset):
    """``dataset`` whose items that raise one of ``errors`` come back as :class:`FailedItem`; those that are also
    instances of ``tolerate`` are marked ``tolerated`` (the others are meant to stop the caller)."""

    def __init__(self, dataset, errors, tolerate=()):
        self.dataset, self.errors, self.tolerate = dataset, tuple(errors), tuple(tolerate)

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        try:
            return self.dataset[index]
        except self.errors as err:
            return FailedItem(index, err, tolerated=isinstance(err, self.tolerate))


def collate_apart(items):
    """``(batch, failed)``: the readable items collated (None when every item failed) and the
    :class:`FailedItem` ones, in order."""
    failed = [item for item in items if isinstance(item, FailedItem)]
    kept = [item for item in items if not isinstance(item, FailedItem)]
    return (default_collate(kept) if kept else None), failed


__all__ = ["CatchFailures", "FailedItem", "collate_apart"]
