#!/usr/bin/env python3
"""Train the NCRF model (or the ResNet baseline) on grids of tumour and normal patches.

Reads the config CFG (``configs/resnet18_crf.json``): four datasets of grid images (tumour/normal × train/valid;
patch folders written by patch_gen, or coordinate lists read on the fly from the slides), their annotation
JSONs, the model and the SGD settings. Each training step takes ``batch_size`` tumour grids and as many normal
grids (``[B, G, 3, C, C]`` each, G = 9 cells of ``crop_size``² pixels), shuffles the 2B grids together and
minimises the mean binary cross-entropy of the ``[2B, G]`` cell logits against the cell labels. After each
epoch it validates (tumour and normal grids, not shuffled) and writes, in SAVE_PATH: ``cfg.json`` (the config,
``indent=1``), ``train.ckpt`` (latest: epoch, step, state_dict, optimizer, best validation loss),
``best.ckpt`` (the lowest validation loss) and tensorboard events (``train/loss``, ``train/acc`` every
``log_every`` steps; ``valid/loss``, ``valid/acc`` per epoch). ``--resume`` continues from ``train.ckpt``.
Launched by ``torchrun`` with several processes it trains with DistributedDataParallel.
"""
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python wsi/bin/train.py`: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import argparse
import logging
import math
import os
import time

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from wsi.cli import run_command
from wsi.config import DATASETS, load_config, save_config
from wsi.data.image_producer import dataset_from_config
from wsi.device import resolve_device
from wsi.errors import InputError
from wsi.model import build_model, grid_size, load_checkpoint, load_model_state, save_checkpoint

logger = logging.getLogger(__name__)


def get_args_parser():
    parser = argparse.ArgumentParser(description="Train the NCRF model (or the ResNet baseline) on grid images.")
    parser.add_argument("cfg_path", metavar="CFG", type=str, help="training config JSON (configs/*.json)")
    parser.add_argument("save_path", metavar="SAVE_PATH", type=str,
                        help="output folder for cfg.json, train.ckpt, best.ckpt and tensorboard events")
    parser.add_argument("--num_workers", default=2, type=int,
                        help="data-loading worker processes per dataset and per GPU, default 2")
    parser.add_argument("--device_ids", default="0", type=str,
                        help="comma-separated CUDA device ids for one process, default '0'; several ids train "
                             "with DataParallel and multiply the batch size (under torchrun each process uses "
                             "the GPU of its LOCAL_RANK instead)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from SAVE_PATH/train.ckpt (epoch, step, optimizer, best validation loss)")
    parser.add_argument("--seed", default=0, type=int,
                        help="seed of the weights' initialisation, the augmentation and the batch shuffling, "
                             "default 0 (the original seeded with 0)")
    parser.add_argument("--device", default=None, choices=("cuda", "cpu"),
                        help="default: cuda when available, else cpu")
    parser.add_argument("--epochs", default=None, type=int,
                        help="train this many epochs in all instead of the config's 'epoch'")
    return parser


# Set-up ----------------------------------------------------------------------------------------------------------
def init_distributed_mode():
    """``(rank, world_size, local_rank)`` from torchrun's environment; (0, 1, 0) for a plain process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return 0, 1, 0
    return int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0"))


def select_device(args, world_size, local_rank):
    """``(device, device_ids)``: the device of this process and, for one process on several GPUs, their ids."""
    device = resolve_device(args.device)
    if device.type != "cuda":
        return device, []
    if world_size > 1:
        return torch.device("cuda", local_rank), [local_rank]
    try:
        ids = [int(i) for i in args.device_ids.split(",") if i.strip()]
    except ValueError:
        raise InputError(f"--device_ids {args.device_ids!r}: expected comma-separated integers such as 0,1") from None
    count = torch.cuda.device_count()
    if not ids or any(not 0 <= i < count for i in ids):
        raise InputError(f"--device_ids {args.device_ids!r}: this machine has CUDA devices 0..{count - 1}")
    return torch.device("cuda", ids[0]), ids


def derive_seed(*keys):
    """A 63-bit seed from a tuple of non-negative integers (independent streams per dataset, step and rank)."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(2, np.uint64)[0] >> np.uint64(1))


def build_loaders(cfg, datasets, num_gpu, num_workers, world_size, rank, pin_memory, source="config"):
    """The four DataLoaders, in file order (no shuffling), batch ``batch_size × num_gpu`` for training and twice
    that for validation, as the original; under torchrun each rank reads every world_size-th grid."""
    loaders = {}
    for name, dataset in datasets.items():
        batch = cfg["batch_size"] * num_gpu * (1 if name.endswith("train") else 2)
        sampler = None
        if world_size > 1:
            sampler = torch.utils.data.DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=False)
        loaders[name] = torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=False, sampler=sampler,
                                                    num_workers=num_workers * num_gpu, pin_memory=pin_memory,
                                                    drop_last=False)
    for split in ("train", "valid"):
        tumor, normal = loaders[f"tumor_{split}"], loaders[f"normal_{split}"]
        if len(normal) < len(tumor):
            raise InputError(f"{source}: normal_{split} has {len(normal.dataset)} grids, fewer "
                             f"than tumor_{split}'s {len(tumor.dataset)}: each step needs a normal batch per "
                             f"tumour batch")
    return loaders


def _reduce_mean(values, world_size):
    """Mean over processes of a list of floats (identity for one process)."""
    if world_size == 1:
        return values
    tensor = torch.tensor(values, dtype=torch.float64)
    if dist.get_backend() == "nccl":
        tensor = tensor.cuda()
    dist.all_reduce(tensor)
    return (tensor / world_size).tolist()


# One epoch -------------------------------------------------------------------------------------------------------
def train_one_epoch(model, criterion, optimizer, tumor_loader, normal_loader, device, epoch, step, *, log_every,
                    seed=0, rank=0, world_size=1, writer=None):
    """Train one epoch; returns ``(step, stats)``: the global step after it and timing statistics.

    Each step concatenates a tumour batch and a normal batch ``[B, G, 3, C, C]`` and applies one random
    permutation (drawn from ``(seed, step, rank)``) to the 2B grids and their labels. Logs every step;
    writes ``train/loss`` and ``train/acc`` when the global step is a multiple of ``log_every``.
    """
    model.train()
    normal_iter = iter(normal_loader)
    data_time = compute_time = 0.0
    grids = 0
    time_now = time.time()
    for tumor_data, tumor_target in tumor_loader:
        normal_data, normal_target = next(normal_iter)
        loaded = time.time()
        data_time += loaded - time_now
        data = torch.cat([tumor_data, normal_data])
        target = torch.cat([tumor_target, normal_target])
        generator = torch.Generator().manual_seed(derive_seed(seed, step, rank))
        order = torch.randperm(len(data), generator=generator)
        data = data[order].to(device, non_blocking=True)
        target = target[order].to(device, non_blocking=True)

        output = model(data)
        loss = criterion(output, target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

        predicts = (torch.sigmoid(output) >= 0.5).float()
        acc = (predicts == target).float().mean()
        loss_value, acc_value = _reduce_mean([loss.item(), acc.item()], world_size)
        step += 1
        grids += len(data)
        done = time.time()
        compute_time += done - loaded
        logger.info("Epoch : %d, Step : %d, Training Loss : %.5f, Training Acc : %.3f, Run Time : %.2f",
                    epoch + 1, step, loss_value, acc_value, done - time_now)
        time_now = done
        if writer is not None and step % log_every == 0:
            writer.add_scalar("train/loss", loss_value, step)
            writer.add_scalar("train/acc", acc_value, step)
    return step, {"data_time": data_time, "compute_time": compute_time, "grids": grids}


def evaluate(model, criterion, tumor_loader, normal_loader, device, world_size=1):
    """Validation ``(loss, acc)``: the means over steps of the loss and accuracy of [tumour; normal] batches
    (not shuffled), averaged over processes under torchrun."""
    model.eval()
    loss_sum = acc_sum = 0.0
    steps = 0
    normal_iter = iter(normal_loader)
    with torch.inference_mode():
        for tumor_data, tumor_target in tumor_loader:
            normal_data, normal_target = next(normal_iter)
            data = torch.cat([tumor_data, normal_data]).to(device, non_blocking=True)
            target = torch.cat([tumor_target, normal_target]).to(device, non_blocking=True)
            output = model(data)
            loss_sum += criterion(output, target).item()
            acc_sum += ((torch.sigmoid(output) >= 0.5).float() == target).float().mean().item()
            steps += 1
    loss, acc = _reduce_mean([loss_sum / steps, acc_sum / steps], world_size)
    return loss, acc


# The run ---------------------------------------------------------------------------------------------------------
def run(args):
    rank, world_size, local_rank = init_distributed_mode()
    if rank != 0:
        logging.getLogger().setLevel(logging.WARNING)  # one process logs (torchvision overrides print instead)
    for name, value, minimum in (("num_workers", args.num_workers, 0), ("epochs", args.epochs, 0),
                                 ("seed", args.seed, 0)):
        if value is not None and value < minimum:
            raise InputError(f"--{name} must be at least {minimum}, got {value}")

    # Everything the run needs is checked before anything is written.
    cfg = load_config(args.cfg_path, check_paths=True)
    if args.epochs is not None:
        cfg = {**cfg, "epoch": args.epochs}
    save_path = Path(args.save_path)
    if save_path.exists() and not save_path.is_dir():
        raise InputError(f"{save_path}: is a file, expected the output folder")
    ckpt = None
    if args.resume:
        ckpt = load_checkpoint(save_path / "train.ckpt", map_location="cpu")
    seed = args.seed
    if ckpt is not None and ckpt.get("seed") is not None and ckpt["seed"] != seed:
        logger.warning("--seed %d differs from train.ckpt's %d: using %d so the run continues as it started",
                       seed, ckpt["seed"], ckpt["seed"])
        seed = int(ckpt["seed"])
    device, device_ids = select_device(args, world_size, local_rank)
    num_gpu = max(1, len(device_ids)) if world_size == 1 else 1
    datasets = {name: dataset_from_config(cfg, name, seed=derive_seed(seed, k)) for k, name in enumerate(DATASETS)}
    for name, dataset in datasets.items():
        if len(dataset) == 0:
            raise InputError(f"{args.cfg_path}: the {name} list is empty")
    loaders = build_loaders(cfg, datasets, num_gpu, args.num_workers, world_size, rank,
                            pin_memory=device.type == "cuda", source=args.cfg_path)

    torch.manual_seed(seed)  # the same initial weights in every process and every run with this seed
    model = build_model(cfg, num_nodes=grid_size(cfg), source=str(args.cfg_path))
    if ckpt is not None:
        load_model_state(model, ckpt["state_dict"], source=str(save_path / "train.ckpt"))
    model = model.to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg["lr"], momentum=cfg["momentum"])
    start_epoch, step, best_valid_loss, valid_pending = 0, 0, math.inf, False
    if ckpt is not None:
        if ckpt.get("optimizer"):
            optimizer.load_state_dict(ckpt["optimizer"])
        else:
            logger.warning("%s has no optimizer state: SGD momentum restarts from zero", save_path / "train.ckpt")
        start_epoch, step = int(ckpt["epoch"]), int(ckpt["step"])
        if ckpt.get("best_valid_loss") is not None:
            best_valid_loss = float(ckpt["best_valid_loss"])
        valid_pending = bool(ckpt.get("valid_pending", False))
        expected = start_epoch * len(loaders["tumor_train"])
        if step != expected:
            logger.warning("train.ckpt is at step %d after %d epochs, but %d epochs of this data make %d steps",
                           step, start_epoch, start_epoch, expected)
        logger.info("Resuming from %s: epoch %d, step %d", save_path / "train.ckpt", start_epoch, step)

    if world_size > 1:
        model = nn.parallel.DistributedDataParallel(model, device_ids=device_ids or None)
    elif len(device_ids) > 1:
        model = nn.DataParallel(model, device_ids=device_ids)
    criterion = nn.BCEWithLogitsLoss()

    writer = None
    if rank == 0:
        from tensorboardX import SummaryWriter

        save_path.mkdir(parents=True, exist_ok=True)
        save_config(cfg, save_path / "cfg.json")
        # On resume, drop events a crashed run wrote after the checkpoint, so that curves do not double back.
        writer = SummaryWriter(str(save_path), purge_step=step + 1 if ckpt is not None else None)

    def save(name, epoch, pending, with_optimizer=True):
        if rank == 0:
            save_checkpoint(save_path / name, model, epoch=epoch, step=step,
                            optimizer=optimizer if with_optimizer else None, best_valid_loss=best_valid_loss,
                            cfg=cfg, seed=seed, valid_pending=pending)

    def validate(epoch):
        nonlocal best_valid_loss
        for name in ("tumor_valid", "normal_valid"):
            datasets[name].set_epoch(epoch)
        time_now = time.time()
        loss, acc = evaluate(model, criterion, loaders["tumor_valid"], loaders["normal_valid"], device, world_size)
        logger.info("Epoch : %d, Step : %d, Validation Loss : %.5f, Validation Acc : %.3f, Run Time : %.2f",
                    epoch + 1, step, loss, acc, time.time() - time_now)
        if writer is not None:
            writer.add_scalar("valid/loss", loss, step)
            writer.add_scalar("valid/acc", acc, step)
        if loss < best_valid_loss:  # the original keeps the lowest validation loss (its README says accuracy)
            best_valid_loss = loss
            save("best.ckpt", epoch + 1, False, with_optimizer=False)
        save("train.ckpt", epoch + 1, False)

    if start_epoch >= cfg["epoch"] and not valid_pending:
        logger.info("%s has already trained %d of %d epochs: nothing to do", save_path / "train.ckpt", start_epoch,
                    cfg["epoch"])
    try:
        if valid_pending:  # the previous run stopped between its training epoch and its validation
            validate(start_epoch - 1)
        for epoch in range(start_epoch, cfg["epoch"]):
            for name in ("tumor_train", "normal_train"):
                datasets[name].set_epoch(epoch)
            step, _ = train_one_epoch(model, criterion, optimizer, loaders["tumor_train"], loaders["normal_train"],
                                      device, epoch, step, log_every=cfg["log_every"], seed=seed, rank=rank,
                                      world_size=world_size, writer=writer)
            save("train.ckpt", epoch + 1, True)
            validate(epoch)
    finally:
        if writer is not None:
            writer.close()
    return 0


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    rank, world_size, local_rank = init_distributed_mode()
    if world_size == 1:
        return run_command(run, args)
    use_cuda = torch.cuda.is_available() and args.device != "cpu"
    if use_cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    try:
        return run_command(run, args)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
