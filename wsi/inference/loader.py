"""DataLoaders whose workers report a bad slide read as one line, not as a wrapped traceback.

A :class:`~wsi.errors.WSIError` raised in a DataLoader worker comes back to the main process re-wrapped with the
worker's traceback in its message (or as a RuntimeError when the class cannot be rebuilt from a message).
:func:`guarded_loader` catches it in the worker (as a :class:`~wsi.data.failed_items.FailedItem`, the pipeline's
one failure marker) and re-raises it in the main process with its one-line message, unless the caller tolerates
that kind of error: those items come back beside the batch.
"""

import torch
from torch.utils.data import DataLoader

from wsi.data.failed_items import CatchFailures, FailedItem, collate_apart
from wsi.errors import ReadFailed, WSIError


def _pass(item):
    return item


def guarded_loader(dataset, *, batch_size, num_workers, pin_memory=False, tolerate=()):
    """Iterate ``dataset`` in order through a DataLoader, yielding ``(batch, failed)``.

    ``batch`` is the readable items collated (None when all of them failed); ``failed`` lists, as
    :class:`~wsi.data.failed_items.FailedItem`, the items whose read raised one of the ``tolerate`` errors. Any
    other WSIError in any worker is raised here as one line (:class:`~wsi.errors.ReadFailed`).
    ``batch_size=None`` yields the items one by one, uncollated.
    """
    loader = DataLoader(CatchFailures(dataset, (WSIError,), tolerate), batch_size=batch_size, shuffle=False,
                        drop_last=False, num_workers=num_workers, pin_memory=pin_memory and torch.cuda.is_available(),
                        collate_fn=_pass if batch_size is None else collate_apart)
    for batch in loader:
        if batch_size is None:
            batch = (None, [batch]) if isinstance(batch, FailedItem) else (batch, [])
        data, failed = batch
        fatal = next((item for item in failed if not item.tolerated), None)
        if fatal is not None:
            raise ReadFailed(fatal.message)
        yield data, failed
