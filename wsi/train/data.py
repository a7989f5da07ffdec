"""Training data: the four datasets of a config, their loaders, the workers per loader, and the batches on the
training device (augmented there with ``--augment device``)."""

import logging
import os

import numpy as np
import torch

from wsi.config import DATASETS
from wsi.data.image_producer import dataset_from_config
from wsi.data.skipping import SkippingLoader, collate_grids
from wsi.errors import InputError

logger = logging.getLogger(__name__)

#: Where the augmentation runs (``augment``): auto = on the device on CUDA, else in the CPU workers.
AUGMENT_MODES = ("auto", "cpu", "device")


def augment_on_device(mode, device):
    """Whether ``--augment mode`` runs the augmentation on the device: 'auto' does on CUDA."""
    return mode == "device" or (mode == "auto" and device.type == "cuda")


def available_cpus():
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def default_num_workers(world_size, cpus=None):
    """Workers per loader of one process: its share of the CPUs, less one for the training loop, split between
    the two loaders that run together (tumour and normal); at least 1."""
    cpus = available_cpus() if cpus is None else cpus
    return max(1, (cpus // max(1, world_size) - 1) // 2)


def derive_seed(*keys):
    """A 63-bit seed from a tuple of non-negative integers (independent streams per dataset, step and rank)."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(2, np.uint64)[0] >> np.uint64(1))


def build_datasets(cfg, seed, *, raw=False, source="config"):
    """The four datasets of ``cfg`` (dataset k seeded with ``derive_seed(seed, k)``); ``raw``: items for the
    device augmentation."""
    datasets = {name: dataset_from_config(cfg, name, seed=derive_seed(seed, k), raw=raw)
                for k, name in enumerate(DATASETS)}
    for name, dataset in datasets.items():
        if len(dataset) == 0:
            raise InputError(f"{source}: the {name} list is empty")
    return datasets


def build_loaders(cfg, datasets, num_gpu, num_workers, world_size, rank, pin_memory, source="config",
                  max_failed_share=0.01):
    """The four DataLoaders, in file order (no shuffling), batch ``batch_size × num_gpu`` for training and twice
    that for validation, as the original; under torchrun each rank reads every world_size-th grid.
    ``num_workers`` is per loader. Each skips the grids it cannot read (:class:`~wsi.data.skipping.SkippingLoader`)
    up to ``max_failed_share`` an epoch."""
    loaders = {}
    for name, dataset in datasets.items():
        batch = cfg["batch_size"] * num_gpu * (1 if name.endswith("train") else 2)
        sampler = None
        if world_size > 1:
            sampler = torch.utils.data.DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=False)
        loader = torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=False, sampler=sampler,
                                             num_workers=num_workers, pin_memory=pin_memory,
                                             drop_last=False, collate_fn=collate_grids)
        loaders[name] = SkippingLoader(loader, name, max_failed_share)
    for split in ("train", "valid"):
        tumor, normal = loaders[f"tumor_{split}"], loaders[f"normal_{split}"]
        if len(normal) < len(tumor):
            raise InputError(f"{source}: normal_{split} has {len(normal.dataset)} grids, fewer "
                             f"than tumor_{split}'s {len(tumor.dataset)}: each step needs a normal batch per "
                             f"tumour batch")
    return loaders


class BatchPreparer:
    """Turns the loaders' batches into the network's input ``[N, G, 3, C, C]`` float32 on the device.

    Per-item batches (``grids [B, G, 3, C, C]``) are only copied; raw batches (``(images [B, S, S, 3] uint8,
    draws [B, DRAW_FIELDS])``, ``--augment device``) are copied and augmented there by
    :func:`wsi.data.grid_augment.augment_grids`. Each part is copied before anything concatenates or indexes
    it, so that pinned batches copy asynchronously (``non_blocking``); ``order`` (a CPU permutation of the
    concatenated batch) is applied on the device.
    """

    def __init__(self, device, patch_size=None, crop_size=None, channels_last=False):
        self.device, self.patch_size, self.crop_size = device, patch_size, crop_size
        self.channels_last = channels_last

    def to_device(self, tensors, order=None):
        """Concatenate ``tensors`` on the device, permuted by ``order``."""
        out = torch.cat([t.to(self.device, non_blocking=True) for t in tensors])
        return out if order is None else out[order.to(self.device, non_blocking=True)]

    def __call__(self, parts, order=None):
        if isinstance(parts[0], torch.Tensor):
            grids = self.to_device(parts, order)
            if self.channels_last:
                grids = grids.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)
            return grids
        from wsi.data.grid_augment import augment_grids

        images = self.to_device([images for images, _ in parts], order)
        draws = torch.cat([draws for _, draws in parts])
        draws = draws if order is None else draws[order]
        return augment_grids(images, draws, self.patch_size, self.crop_size, channels_last=self.channels_last)


def log_skipped(loaders, split, epoch, step, writer=None):
    """Log and record the grids of ``split`` that could not be read this epoch; nothing when none failed (a clean
    run's events are the original's)."""
    skipped = loaders[f"tumor_{split}"].skipped + loaders[f"normal_{split}"].skipped
    if skipped:
        logger.warning("Epoch : %d, %d %s grids could not be read and were skipped", epoch + 1, skipped, split)
        if writer is not None:
            writer.add_scalar(f"{split}/skipped", skipped, step)
