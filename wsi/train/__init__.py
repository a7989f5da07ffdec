"""Training set-up, below the script ``wsi/bin/train.py`` (which keeps ``train_one_epoch``, ``evaluate`` and the
run, as torchvision's reference script does):

- :mod:`~wsi.train.distributed`: torchrun's rank and world size, each process's device, means over processes.
- :mod:`~wsi.train.data`: the four datasets and loaders of a config, workers per loader, batches on the device.
- :mod:`~wsi.train.setup`: model and optimizer (resumed), learning-rate schedule, checkpoints, TensorBoard writer.
"""

from wsi.train.data import (AUGMENT_MODES, BatchPreparer, augment_on_device, build_datasets, build_loaders,
                            default_num_workers, derive_seed, log_skipped)
from wsi.train.distributed import init_distributed_mode, reduce_mean, select_device
from wsi.train.setup import (Checkpoints, TrainState, build_training, check_save_path, load_resume, lr_schedule,
                             open_writer)

__all__ = ["AUGMENT_MODES", "BatchPreparer", "Checkpoints", "TrainState", "augment_on_device", "build_datasets",
           "build_loaders", "build_training", "check_save_path", "default_num_workers", "derive_seed",
           "init_distributed_mode", "load_resume", "log_skipped", "lr_schedule", "open_writer", "reduce_mean",
           "select_device"]
