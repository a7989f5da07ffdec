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
``log_every`` steps; ``valid/loss``, ``valid/acc`` per epoch; and the lr, speed, the CRF's W, augmented grids, PR
curves, config and hparams of :mod:`wsi.monitor`, with ``--tb_slide``'s map). ``--resume`` continues from
``train.ckpt``.
Launched by ``torchrun`` with several processes it trains with DistributedDataParallel.

Speed options (defaults keep the original's per-item float32 arithmetic on the CPU): ``--augment device`` (the
default on CUDA) has the DataLoader workers only read and decode the regions and draw the augmentation, and runs
the jitter, flips, rotations, crops and scaling batched on the training device
(:mod:`wsi.data.grid_augment`); ``--amp`` trains under bfloat16 autocast (the CRF stays float32);
``--channels_last`` keeps the network's activations channels-last.

Laid out as torchvision's ``references/classification/train.py``: :func:`get_args_parser`, :func:`train_one_epoch`,
:func:`evaluate`, and the run (:func:`run`, torchvision's ``main(args)``); the set-up (datasets and loaders,
model and optimizer, learning-rate schedule, checkpoints, TensorBoard writer, torchrun) is :mod:`wsi.train`.
"""
import sys

import logging
import time

import torch
import torch.distributed as dist
from torch import nn

from wsi.cli import ArgumentParser, add_trust_checkpoint, count, positive, probability, run_command
from wsi.config import load_config
from wsi.model import inference_model
from wsi.model.checkpoint import unwrap_model
from wsi.monitor import SlidePreview, parse_region
from wsi.train import (AUGMENT_MODES, BatchPreparer, Checkpoints, augment_on_device, build_datasets, build_loaders,
                       build_training, check_save_path, default_num_workers, derive_seed, init_distributed_mode,
                       load_resume, log_skipped, lr_schedule, open_writer, reduce_mean, select_device)

logger = logging.getLogger(__name__)


def get_args_parser():
    parser = ArgumentParser(description="Train the NCRF model (or the ResNet baseline) on grid images.")
    parser.add_argument("cfg_path", metavar="CFG", type=str, help="training config JSON (configs/*.json)")
    parser.add_argument("save_path", metavar="SAVE_PATH", type=str,
                        help="output folder for cfg.json, train.ckpt, best.ckpt and tensorboard events")
    parser.add_argument("--num_workers", default=None, type=count,
                        help="data-loading worker processes per dataset and per GPU; default: from the CPU count "
                             "and the number of processes, (CPUs / processes − 1) / 2 per training loader, at "
                             "least 1")
    parser.add_argument("--device_ids", default="0", type=str,
                        help="comma-separated CUDA device ids for one process, default '0'; several ids train "
                             "with DataParallel and multiply the batch size (under torchrun each process uses "
                             "the GPU of its LOCAL_RANK instead)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from SAVE_PATH/train.ckpt (epoch, step, optimizer, best validation loss)")
    parser.add_argument("--overwrite", action="store_true",
                        help="start afresh in a SAVE_PATH that holds a run, replacing its checkpoints (default: "
                             "such a folder is refused unless --resume)")
    add_trust_checkpoint(parser)
    parser.add_argument("--seed", default=0, type=count,
                        help="seed of the weights' initialisation, the augmentation and the batch shuffling, "
                             "default 0 (the original seeded with 0)")
    parser.add_argument("--device", default=None, choices=("cuda", "cpu"),
                        help="default: cuda when available, else cpu")
    parser.add_argument("--max_failed_share", default=0.01, type=probability,
                        help="grids that cannot be read (a damaged tile, a broken PNG) are skipped, logged once and "
                             "counted (train/skipped, valid/skipped in tensorboard); stop when more than this share "
                             "of an epoch's grids fail, default 0.01")
    parser.add_argument("--epochs", default=None, type=positive,
                        help="train this many epochs in all instead of the config's 'epoch'")
    parser.add_argument("--augment", default="auto", choices=AUGMENT_MODES,
                        help="where the colour jitter, flips, rotations, crops and scaling run: 'cpu' per item "
                             "in the DataLoader workers with PIL (the original's path), 'device' batched on the "
                             "training device (the workers only read and decode); default 'auto' = device on "
                             "CUDA, cpu otherwise. Same draws and labels; images equal to within rounding")
    parser.add_argument("--amp", action="store_true",
                        help="bfloat16 autocast for the network (the CRF stays float32); off by default, for CUDA")
    parser.add_argument("--channels_last", action="store_true",
                        help="channels-last memory for the network and its input; off by default, for CUDA")
    parser.add_argument("--tb_slide", default=None, metavar="SLIDE",
                        help="at each validation, draw the probability map of this slide (of --tb_region) under "
                             "its thumbnail in tensorboard (slide/probs_map), by the fast inference path: about one "
                             "CNN pass per tissue position of the region; default: none")
    parser.add_argument("--tb_region", default=None, type=parse_region, metavar="X,Y,W,H",
                        help="the --tb_slide region in level-0 pixels (top-left x, y, width, height), default the "
                             "whole slide")
    return parser


# One epoch -------------------------------------------------------------------------------------------------------
def train_one_epoch(model, criterion, optimizer, tumor_loader, normal_loader, device, epoch, step, *, log_every,
                    seed=0, rank=0, world_size=1, writer=None, prepare=None, amp=False, lr_at=None):
    """Train one epoch; returns ``(step, stats)``: the global step after it and timing statistics.

    Each step concatenates a tumour batch and a normal batch ``[B, G, 3, C, C]`` and applies one random
    permutation (drawn from ``(seed, step, rank)``) to the 2B grids and their labels. ``prepare`` (a
    :class:`BatchPreparer`; default: copies per-item batches) builds the input on the device; ``amp``: bfloat16
    autocast. Logs every step; writes ``train/loss`` and ``train/acc`` when the global step is a multiple of
    ``log_every``, and passes each step to ``writer.log_step`` (:class:`~wsi.monitor.TrainingBoard`). ``stats``:
    ``data_time`` (s waiting for the loaders), ``compute_time``, ``grids``. ``lr_at``: a function of the global
    step (0-based) giving the step's learning rate (the config's ``lr_schedule``); None keeps the optimizer's.
    """
    prepare = prepare or BatchPreparer(device)
    model.train()
    normal_iter = iter(normal_loader)
    data_time = compute_time = 0.0
    grids = 0
    time_now = time.time()
    for tumor_data, tumor_target in tumor_loader:
        normal_data, normal_target = next(normal_iter)
        loaded = time.time()
        data_time += loaded - time_now
        generator = torch.Generator().manual_seed(derive_seed(seed, step, rank))
        order = torch.randperm(len(tumor_target) + len(normal_target), generator=generator)
        data = prepare([tumor_data, normal_data], order)
        target = prepare.to_device([tumor_target, normal_target], order)

        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            output = model(data)
        loss = criterion(output.float(), target)
        optimizer.zero_grad()
        loss.backward()
        if lr_at is not None:
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step)
        optimizer.step()

        predicts = (torch.sigmoid(output.float()) >= 0.5).float()
        acc = (predicts == target).float().mean()
        loss_value, acc_value = reduce_mean([loss.item(), acc.item()], world_size)
        step += 1
        grids += len(data)
        done = time.time()
        compute_time += done - loaded
        logger.info("Epoch : %d, Step : %d, Training Loss : %.5f, Training Acc : %.3f, Run Time : %.2f",
                    epoch + 1, step, loss_value, acc_value, done - time_now)
        if writer is not None:  # lr, speed, W's entries; the epoch's first augmented grids
            writer.log_step(step, log_every, epoch=epoch, model=model, lr=optimizer.param_groups[0]["lr"],
                            grids=len(data) * world_size, wait=loaded - time_now,
                            busy=done - loaded, batch=(data, target))
        time_now = done
        if writer is not None and step % log_every == 0:
            writer.add_scalar("train/loss", loss_value, step)
            writer.add_scalar("train/acc", acc_value, step)
    return step, {"data_time": data_time, "compute_time": compute_time, "grids": grids}


def evaluate(model, criterion, tumor_loader, normal_loader, device, world_size=1, prepare=None, amp=False,
             outputs=None):
    """Validation ``(loss, acc)``: the means over steps of the loss and accuracy of [tumour; normal] batches
    (not shuffled), averaged over processes under torchrun; ``outputs`` (a list) gets this process's
    ``(probs [B, G], labels [B, G])`` on the CPU per batch. The network runs through the cheaper exact pass of
    inference (:func:`~wsi.model.inference.inference_model`: BatchNorm folded, channels_last; the same logits to
    ~1e-6), except with DataParallel, whose replicas need the wrapper."""
    prepare = prepare or BatchPreparer(device)
    model.eval()
    if not isinstance(model, nn.DataParallel):
        model = inference_model(unwrap_model(model))  # a copy: the trained model and its checkpoints are untouched
    loss_sum = acc_sum = 0.0
    steps = 0
    normal_iter = iter(normal_loader)
    with torch.inference_mode():
        for tumor_data, tumor_target in tumor_loader:
            normal_data, normal_target = next(normal_iter)
            data = prepare([tumor_data, normal_data])
            target = prepare.to_device([tumor_target, normal_target])
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                output = model(data).float()
            loss_sum += criterion(output, target).item()
            acc_sum += ((torch.sigmoid(output) >= 0.5).float() == target).float().mean().item()
            if outputs is not None:
                outputs.append((torch.sigmoid(output).cpu(), target.cpu()))
            steps += 1
    loss, acc = reduce_mean([loss_sum / steps, acc_sum / steps], world_size)
    return loss, acc


def validate(model, criterion, loaders, datasets, device, epoch, state, checkpoints, *, world_size=1,
             writer=None, prepare=None, amp=False):
    """Validate after epoch ``epoch`` (0-based): log and record the loss and accuracy, keep ``best.ckpt`` at the
    lowest validation loss (the original's rule; its README says accuracy) and write ``train.ckpt``."""
    for name in ("tumor_valid", "normal_valid"):
        datasets[name].set_epoch(epoch)
    time_now = time.time()
    outputs = [] if writer is not None else None
    loss, acc = evaluate(model, criterion, loaders["tumor_valid"], loaders["normal_valid"], device, world_size,
                         prepare=prepare, amp=amp, outputs=outputs)
    logger.info("Epoch : %d, Step : %d, Validation Loss : %.5f, Validation Acc : %.3f, Run Time : %.2f",
                epoch + 1, state.step, loss, acc, time.time() - time_now)
    if writer is not None:
        writer.add_scalar("valid/loss", loss, state.step)
        writer.add_scalar("valid/acc", acc, state.step)
    log_skipped(loaders, "valid", epoch, state.step, writer)
    if loss < state.best_valid_loss:
        state.best_valid_loss = loss
        checkpoints.save("best.ckpt", epoch + 1, False, with_optimizer=False)
    if writer is not None:  # PR curve, centre/border accuracy, W's image, the --tb_slide map
        writer.log_validation(state.step, model, outputs, state.best_valid_loss)
    checkpoints.save("train.ckpt", epoch + 1, False)


# The run ---------------------------------------------------------------------------------------------------------
def run(args):
    rank, world_size, local_rank = init_distributed_mode()
    if rank != 0:
        logging.getLogger().setLevel(logging.WARNING)  # one process logs (torchvision overrides print instead)

    # Everything the run needs is checked before anything is written.
    cfg = load_config(args.cfg_path, check_paths=True)
    if args.epochs is not None:
        cfg = {**cfg, "epoch": args.epochs}
    save_path = check_save_path(args.save_path, args.cfg_path, resume=args.resume, overwrite=args.overwrite,
                                rewrites_cfg=args.epochs is not None)
    ckpt, seed = load_resume(save_path, args.seed, args.trust_checkpoint) if args.resume else (None, args.seed)
    device, device_ids = select_device(args.device, args.device_ids, world_size, local_rank)
    num_gpu = max(1, len(device_ids)) if world_size == 1 else 1
    raw = augment_on_device(args.augment, device)
    datasets = build_datasets(cfg, seed, raw=raw, source=args.cfg_path)
    num_workers = default_num_workers(world_size) if args.num_workers is None else args.num_workers * num_gpu
    loaders = build_loaders(cfg, datasets, num_gpu, num_workers, world_size, rank,
                            pin_memory=device.type == "cuda", source=args.cfg_path,
                            max_failed_share=args.max_failed_share)
    prepare = BatchPreparer(device, cfg["patch_size"], cfg["crop_size"], channels_last=args.channels_last)
    logger.info("Augmentation on the %s, %d workers per loader%s%s", "device" if raw else "CPU workers",
                num_workers, ", bfloat16 autocast" if args.amp else "", ", channels_last" if args.channels_last else "")

    torch.manual_seed(seed)  # the same initial weights in every process and every run with this seed
    model, optimizer, state = build_training(cfg, device, device_ids, world_size, ckpt=ckpt,
                                             ckpt_path=save_path / "train.ckpt",
                                             steps_per_epoch=len(loaders["tumor_train"]),
                                             channels_last=args.channels_last, source=str(args.cfg_path))
    criterion = nn.BCEWithLogitsLoss()
    writer = None
    if rank == 0:
        preview = SlidePreview(args.tb_slide, cfg, device, args.tb_region, args.amp) if args.tb_slide else None
        options = {**{k: v for k, v in vars(args).items() if k not in ("cfg_path", "save_path")},
                   "world_size": world_size, "seed": seed}
        writer = open_writer(save_path, cfg, state.step if ckpt is not None else None, options=options,
                             preview=preview)
    checkpoints = Checkpoints(save_path, model, optimizer, state, cfg=cfg, seed=seed, rank=rank)
    step_options = dict(world_size=world_size, writer=writer, prepare=prepare, amp=args.amp)
    lr_at = lr_schedule(cfg, len(loaders["tumor_train"]))  # None: the original's constant lr

    if state.epoch >= cfg["epoch"] and not state.valid_pending:
        logger.info("%s has already trained %d of %d epochs: nothing to do", save_path / "train.ckpt", state.epoch,
                    cfg["epoch"])
    try:
        if state.valid_pending:  # the previous run stopped between its training epoch and its validation
            validate(model, criterion, loaders, datasets, device, state.epoch - 1, state, checkpoints,
                     **step_options)
        for epoch in range(state.epoch, cfg["epoch"]):
            for name in ("tumor_train", "normal_train"):
                datasets[name].set_epoch(epoch)
            state.step, _ = train_one_epoch(model, criterion, optimizer, loaders["tumor_train"],
                                            loaders["normal_train"], device, epoch, state.step,
                                            log_every=cfg["log_every"], seed=seed, rank=rank, lr_at=lr_at,
                                            **step_options)
            log_skipped(loaders, "train", epoch, state.step, writer)
            checkpoints.save("train.ckpt", epoch + 1, True)
            validate(model, criterion, loaders, datasets, device, epoch, state, checkpoints, **step_options)
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
