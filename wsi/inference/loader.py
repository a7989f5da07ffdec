"""DataLoaders whose workers report a bad slide read as one line, not as a wrapped traceback.

A :class:`~wsi.errors.WSIError` raised in a DataLoader worker comes back to the main process re-wrapped with the
worker's traceback in its message (or as a RuntimeError when the class cannot be rebuilt from a message).
:func:`guarded_loader` catches it in the worker and re-raises it in the main process with its one-line message.
"""

import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from wsi.errors import ReadFailed, WSIError


class _Failure:
    """Stands for an item whose read failed in a worker; carries the error's class name and message."""

    def __init__(self, err):
        self.kind, self.message = type(err).__name__, str(err)


class _Guarded(Dataset):
    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        try:
            return self.dataset[index]
        except WSIError as err:
            return _Failure(err)


def _collate(items):
    failed = next((item for item in items if isinstance(item, _Failure)), None)
    return failed if failed is not None else default_collate(items)


def _pass(item):
    return item


def guarded_loader(dataset, *, batch_size, num_workers, pin_memory=False):
    """Iterate ``dataset`` in order through a DataLoader; a WSIError in any worker is raised here as one line.

    ``batch_size=None`` yields the items one by one, uncollated.
    """
    loader = DataLoader(_Guarded(dataset), batch_size=batch_size, shuffle=False, drop_last=False,
                        num_workers=num_workers, pin_memory=pin_memory and torch.cuda.is_available(),
                        collate_fn=_pass if batch_size is None else _collate)
    for batch in loader:
        if isinstance(batch, _Failure):
            raise ReadFailed(batch.message)
        yield batch
