"""Probability maps of one slide or many: plan (every check before any work) → prepare (the network, once) →
the per-slide loop (compute, write, report what could not be read).

Which maps and which are done: :mod:`wsi.inference.jobs`; the shards of a run over processes:
:mod:`wsi.inference.shards`; the CNN pass: :class:`~wsi.model.inference.InferencePass`; the two modes:
:mod:`wsi.inference.fast` and :mod:`wsi.inference.faithful`.
"""

import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from wsi.arrays import ArrayInfo, check_own_sidecar, save_array, sidecar_path
from wsi.config import load_config
from wsi.data.slide import SlideError, names_many_slides, open_slide
from wsi.data.tissue import load_tissue_mask
from wsi.device import resolve_device
from wsi.errors import FastModeInexact, InputError, OutputError, ParameterError, WSIError
from wsi.fileio import check_not_inputs, file_digest, remove_stale_temporaries
from wsi.geometry import GridSpec, mask_geometry
from wsi.inference.common import InferenceStats
from wsi.inference.damaged import failed_report_path, write_failed_report
from wsi.inference.fast import BLOCK_SIZE, fast_probs_map
from wsi.inference.faithful import faithful_probs_map
from wsi.inference.jobs import Job, job_files, not_done, plan_jobs
from wsi.inference.loader import ReadFailed
from wsi.inference.shards import parse_shard, select_shard, shard_from_env
from wsi.model import InferencePass, PassOptions, inference_model, load_model

logger = logging.getLogger(__name__)

__all__ = ["MODES", "Job", "MapsPlan", "MapsWritten", "compute_probs_map", "configure_backends", "parse_shard",
           "plan_jobs", "plan_maps", "prepare_pass", "run_probs_maps", "select_shard"]

MODES = ("fast", "faithful")
#: Patches per forward pass of the fast mode on the CPU when --batch_size is not given.
CPU_FAST_PATCHES = 32


# One slide -----------------------------------------------------------------------------------------------------
def compute_probs_map(model, wsi_path, mask, grid, *, mode="fast", batch_size=20, num_workers=5, eight_avg=False,
                      amp=False, progress=True, stats=None, mask_name="the mask", block_size=BLOCK_SIZE,
                      geometry=None, fast_patches=None):
    """The probability map of one slide, float64 ``[X_mask, Y_mask]`` (x first), 0 off tissue.

    Parameters
    ----------
    model : ResNetGrid in eval mode, on the device to use, or its :class:`~wsi.model.inference.InferencePass`.
    wsi_path : the slide.
    mask : bool ndarray ``[X_mask, Y_mask]``, the tissue mask.
    grid : GridSpec
    mode : ``'fast'`` (each patch once; falls back to ``'faithful'`` with one log line where that would not give
        the same map) or ``'faithful'`` (the original's algorithm).
    batch_size : grids per forward pass in the faithful mode; the fast mode passes ``batch_size × G`` patches,
        the same number of crops.
    num_workers, eight_avg, amp, progress : see the command line.
    stats : InferenceStats, optional, filled with what was computed.
    mask_name : how errors name the mask.
    geometry : MaskGeometry of the mask on the slide, when already known.
    fast_patches : patches per forward pass in the fast mode; default ``batch_size × G``.

    Raises :class:`~wsi.geometry.GeometryError` when the mask does not fit the slide.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if geometry is None:
        with open_slide(wsi_path) as slide:
            geometry = mask_geometry(slide.level_dimensions, slide.level_downsamples, mask.shape,
                                     mask_name=str(mask_name), slide_name=str(wsi_path))
    model = InferencePass.of(model)
    num_nodes = model.crf_nodes or grid.num_nodes
    if num_nodes != grid.num_nodes:
        raise InputError(f"the model's CRF has {num_nodes} nodes but the grid has {grid.num_nodes} "
                         f"(image_size {grid.image_size} / patch_size {grid.patch_size})")
    common = dict(num_workers=num_workers, eight_avg=eight_avg, amp=amp, progress=progress, stats=stats)
    if mode == "fast":
        try:
            return fast_probs_map(model, wsi_path, mask, grid, geometry,
                                  batch_size=fast_patches or batch_size * grid.num_nodes,
                                  block_size=block_size, **common)
        except FastModeInexact as err:  # raised before any work: the one check of the fast mode's exactness
            logger.info("%s: the fast mode would not give the faithful map exactly (%s); running the faithful mode",
                        wsi_path, err.problem)
    return faithful_probs_map(model, wsi_path, mask, grid, geometry, batch_size=batch_size, **common)


# Many slides ---------------------------------------------------------------------------------------------------
class MapsWritten(list):
    """The maps written (a list of paths); ``failed`` lists ``(slide, what)`` for every slide with positions
    that could not be read, or that could not be read at all (folder mode goes on with the next slide)."""

    def __init__(self, paths=(), failed=()):
        super().__init__(paths)
        self.failed = list(failed)


@dataclass(frozen=True)
class MapsPlan:
    """What :func:`run_probs_maps` computes, every input checked: the maps to compute (``todo``, this shard's,
    without the done ones) and how (device, CNN pass options, grid, passes, the settings a kept map is made with)."""

    todo: list
    many: bool
    ckpt: str
    cfg_path: str
    cfg: dict
    grid: GridSpec
    device: torch.device
    options: PassOptions
    mode: str
    batch_size: int
    fast_patches: int | None
    num_workers: int
    eight_avg: bool
    amp: bool
    settings: dict


def _position_regions(geometry, grid, failed):
    """Level-0 grid region ``(x, y, w, h)`` of each failed mask position (the region the faithful mode reads)."""
    regions = {}
    for xm, ym in failed:
        x_center, y_center = geometry.centre(xm, ym)
        regions[(xm, ym)] = (grid.region_origin(x_center), grid.region_origin(y_center), grid.image_size,
                             grid.image_size)
    return regions


def configure_backends(device, *, tf32=False, threads=None):
    """Numerics and threads for inference: TF32 off on CUDA unless asked (so that the float32 map stays within
    1e-5 of the faithful one; PyTorch enables it for cuDNN convolutions by default), cuDNN autotuning on (fixed
    patch shapes), and ``threads`` torch intra-op threads when given (default: torch's, one per core)."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cudnn.benchmark = True
    if threads:
        torch.set_num_threads(threads)


def run_probs_maps(wsi, ckpt, cfg_path, mask, npy, *, mode="fast", device=None, batch_size=None, num_workers=5,
                   eight_avg=False, amp=False, shard=None, progress=True, skip_existing=None, optimize=True,
                   compile=False, tf32=False, threads=None, runtime="auto", trust_checkpoint=False):
    """Compute the maps ``probs_map.py`` is asked for; returns the outputs written (:class:`MapsWritten`).

    ``shard`` is (K, N) or None for torchrun's ``RANK``/``WORLD_SIZE`` (one shard outside torchrun).
    ``optimize`` runs the network through :func:`~wsi.model.inference.inference_model` (BatchNorm folded,
    channels_last; same map within 1e-5), ``compile`` adds ``torch.compile``; ``runtime`` (``auto``, ``torch``,
    ``openvino``) runs that folded network on a CPU inference runtime
    (:func:`~wsi.model.runtime.resolve_runtime`: ``auto`` is OpenVINO on a CPU when installed, float32, the same
    map within 1e-5); ``tf32`` and ``threads``: see :func:`configure_backends`; ``trust_checkpoint``: see
    :func:`~wsi.model.checkpoint.load_checkpoint` (``trust``).
    ``skip_existing`` defaults to True for many slides and False for one (the original overwrites); a map is
    skipped only when it is a complete float64 ``.npy`` of its mask's shape made from this slide with these
    settings, without positions that failed (:func:`~wsi.inference.jobs.not_done`). Every problem found before the
    first map (config, checkpoint, missing masks, an output that cannot be written) is raised before anything
    runs. Positions whose region cannot be decoded are 0 in the map and listed in ``<stem>.failed.txt``; with
    many slides, a slide that cannot be read at all is listed the same way and the run goes on.
    """
    plan = plan_maps(wsi, ckpt, cfg_path, mask, npy, mode=mode, device=device, batch_size=batch_size,
                     num_workers=num_workers, eight_avg=eight_avg, amp=amp, shard=shard, skip_existing=skip_existing,
                     optimize=optimize, compile=compile, threads=threads, runtime=runtime)
    written = MapsWritten()
    if not plan.todo:
        return written
    net = prepare_pass(plan, tf32=tf32, trust_checkpoint=trust_checkpoint)
    for number, job in enumerate(plan.todo, start=1):
        map_one_slide(net, plan, job, f"{number}/{len(plan.todo)}", written, progress=progress)
    return written


# Plan: every check before any work -----------------------------------------------------------------------------
def plan_maps(wsi, ckpt, cfg_path, mask, npy, *, mode, device, batch_size, num_workers, eight_avg, amp, shard,
              skip_existing, optimize, compile, threads, runtime):
    """The :class:`MapsPlan` of a run (arguments: :func:`run_probs_maps`); raises, before any work, on a bad
    parameter, config, output, or a missing mask."""
    device = resolve_device(device)
    # The runtime decided once, before any work (auto falls back to PyTorch's pass when the CPU runtime cannot run).
    options = PassOptions.resolve(device, runtime=runtime, optimize=optimize, compile=compile, amp=amp,
                                  threads=threads)
    cfg = load_config(cfg_path)
    grid = GridSpec.from_config(cfg, source=cfg_path)
    # On the CPU, oneDNN runs ResNet-18 about 10 % faster on passes of 32 patches than of 180 (docs/probs_map.md,
    # "The CNN pass"); a GPU wants large passes. An explicit --batch_size is used as given.
    fast_patches = CPU_FAST_PATCHES if batch_size is None and device.type == "cpu" else None
    batch_size = batch_size or cfg["batch_size"] * 2
    if batch_size < 1:
        raise ParameterError(f"{{batch_size}} {batch_size}: must be at least 1")
    if num_workers < 0:
        raise ParameterError(f"{{num_workers}} {num_workers}: must be at least 0")
    if threads is not None and threads < 1:
        raise ParameterError(f"{{threads}} {threads}: must be at least 1")
    many = names_many_slides(wsi)
    jobs = plan_jobs(wsi, mask, npy)
    shard = shard or shard_from_env()
    mine = select_shard(jobs, shard)
    if shard[1] > 1:
        logger.info("shard %d/%d: %d of %d slides", shard[0], shard[1], len(mine), len(jobs))
    if skip_existing is None:
        skip_existing = many
    _check_outputs(jobs, [ckpt, cfg_path])
    for folder in {job.output.parent for job in mine}:
        for path in remove_stale_temporaries(folder):
            logger.info("removed %s, left by an interrupted run", path)
    # What a kept map must have been made with: on resume, a map made otherwise is computed again.
    settings = dict(ckpt_sha256=file_digest(ckpt) if Path(ckpt).is_file() else None,
                    cfg_sha256=file_digest(cfg_path), mode_asked=mode, eight_avg=bool(eight_avg))
    todo = _maps_to_compute(mine, settings, skip_existing)
    return MapsPlan(todo=todo, many=many, ckpt=ckpt, cfg_path=cfg_path, cfg=cfg, grid=grid, device=device,
                    options=options, mode=mode, batch_size=batch_size, fast_patches=fast_patches,
                    num_workers=num_workers, eight_avg=eight_avg, amp=amp, settings=settings)


def _check_outputs(jobs, inputs):
    """An output never replaces an input (NPY folder = MASK folder, mask.npy given twice, ...), is no folder, and
    no ``<stem>.json`` beside it that is not a sidecar is replaced; raises :class:`OutputError`."""
    for job in jobs:
        outputs, job_inputs = job_files(job)
        check_not_inputs(outputs, [*job_inputs, *inputs])
        if job.output.is_dir():
            raise OutputError(job.output, "is a folder, expected an output file")
        check_own_sidecar(sidecar_path(job.output))  # <stem>.json beside it that is not a sidecar: never replaced


def _maps_to_compute(jobs, settings, skip_existing):
    """The jobs whose map is not done (all of them unless ``skip_existing``); raises :class:`InputError` when a
    mask of one of them is missing."""
    todo = []
    for job in jobs:
        if skip_existing and job.output.exists():
            why = not_done(job, settings) if job.mask.is_file() else "its mask is missing"
            if why:
                logger.info("%s: %s exists but %s: computing it again", job.slide.name, job.output, why)
                todo.append(job)
            else:
                logger.info("%s: %s exists, skipped", job.slide.name, job.output)
        else:
            todo.append(job)
    missing = [job.mask for job in todo if not job.mask.is_file()]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise InputError(f"{missing[0]}: no such mask file{more}")
    return todo


# Prepare: the network, once ------------------------------------------------------------------------------------
def prepare_pass(plan, *, tf32=False, trust_checkpoint=False):
    """The :class:`~wsi.model.inference.InferencePass` of the plan's checkpoint (backends configured, model loaded,
    pass built); logs what runs."""
    device, options, grid = plan.device, plan.options, plan.grid
    configure_backends(device, tf32=tf32, threads=options.threads)
    net = inference_model(load_model(plan.ckpt, plan.cfg, device, source_cfg=str(plan.cfg_path),
                                     trust=trust_checkpoint), options, crop=grid.crop_size)
    cnn = net.describe() + (" (--eager_cnn)" if net.describe() == "as loaded" else "")
    logger.info("device %s, %d torch threads, %s reader %s, %d patches per pass (fast mode), CNN: %s", device,
                torch.get_num_threads(), plan.num_workers, "threads" if plan.mode == "fast" else "processes",
                plan.fast_patches or plan.batch_size * grid.num_nodes, cnn)
    return net


# The per-slide loop ----------------------------------------------------------------------------------------------
def map_one_slide(net, plan, job, counter, written, *, progress=True):
    """Compute, write and report the map of ``job`` into ``written`` (:class:`MapsWritten`); ``counter`` is
    ``'k/n'`` for the log. With many slides, a slide that cannot be read (or a bad mask) is listed in its failure
    report and in ``written.failed``, and the run goes on; with one, it is raised."""
    report = failed_report_path(job.output)
    stats = InferenceStats()
    start = time.perf_counter()
    try:
        probs_map, info, geometry = _compute_job(net, plan, job, stats, progress)
    except (WSIError, ReadFailed) as err:
        if not plan.many or isinstance(err, OutputError):
            raise
        # One unreadable slide (or a bad mask) must not stop the others: list it, go on, exit 1 at the end.
        logger.error("%s (%s): no map (%s); listed in %s", job.slide.name, counter, err, report)
        write_failed_report(report, job.slide, {}, reason=err)
        written.failed.append((job.slide, str(err)))
        return
    seconds = time.perf_counter() - start
    info = replace(info, extra={**info.extra, "mode": stats.mode})  # fast, or faithful where fast is not exact
    written.append(save_array(job.output, probs_map, info))
    logger.info("%s (%s): %d tissue positions, %s mode, %.1f s (%.1f positions/s), %.2f CNN evaluations "
                "per position, CNN busy %.0f%% of the time -> %s", job.slide.name, counter,
                stats.positions, stats.mode, seconds, stats.positions / max(seconds, 1e-9),
                stats.evaluations_per_position, 100 * stats.extra.get("cnn_busy", 0.0), written[-1])
    if stats.failed:
        write_failed_report(report, job.slide, stats.failed, _position_regions(geometry, plan.grid, stats.failed),
                            total=stats.positions)
        logger.warning("%s: %d of %d tissue positions could not be read (left at 0), listed in %s",
                       job.slide.name, len(stats.failed), stats.positions, report)
        written.failed.append((job.slide, str(report)))
    elif report.exists():
        report.unlink()  # an earlier run's report of a slide that now reads whole


def _compute_job(net, plan, job, stats, progress):
    """``(probs_map, info, geometry)`` of one job: the map, its sidecar's :class:`~wsi.arrays.ArrayInfo` and the
    mask's geometry; raises :class:`SlideError` when none of the tissue positions could be read."""
    settings = plan.settings
    with open_slide(job.slide) as slide:
        tissue, geometry = load_tissue_mask(job.mask, slide)
        info = ArrayInfo.of("probs_map", slide, geometry, ckpt=str(plan.ckpt), cfg=str(plan.cfg_path),
                            mask=str(job.mask), eight_avg=bool(plan.eight_avg), mode_asked=plan.mode,
                            ckpt_sha256=settings["ckpt_sha256"], cfg_sha256=settings["cfg_sha256"],
                            mask_sha256=file_digest(job.mask))
    probs_map = compute_probs_map(net, job.slide, tissue, plan.grid, mode=plan.mode, batch_size=plan.batch_size,
                                  num_workers=plan.num_workers, eight_avg=plan.eight_avg, amp=plan.amp,
                                  progress=progress, stats=stats, mask_name=job.mask, geometry=geometry,
                                  fast_patches=plan.fast_patches)
    if stats.failed and len(stats.failed) >= stats.positions:  # a map of zeros is no map
        first = stats.failed[min(stats.failed)]
        raise SlideError(f"{job.slide}: none of its {stats.positions} tissue positions could be read "
                         f"(a truncated or damaged slide? first: {first})")
    return probs_map, info, geometry
