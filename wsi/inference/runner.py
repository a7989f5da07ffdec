"""Probability maps of one slide or many: loading the model, choosing the mode, sharding, skipping done maps.

One slide: ``WSI`` a slide file, ``MASK`` its ``.npy`` tissue mask, ``NPY`` the output file (overwritten, as the
original). Many slides: ``WSI`` a folder of slides (or a ``.txt`` list of slide paths, one a line), ``MASK`` the
folder of masks ``<stem>.npy`` and ``NPY`` the output folder, one ``<stem>.npy`` per slide; maps that exist are
skipped, so an interrupted run resumes. Slides are sorted by stem and shard ``K/N`` takes every N-th from the
K-th, so N processes (``--shard``, or torchrun's ``RANK``/``WORLD_SIZE``) share a test set without a coordinator.
"""

import logging
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from wsi.arrays import (ArrayFileError, ArrayInfo, SlideRef, check_own_sidecar, read_sidecar, save_array,
                        settings_changed, sidecar_path)
from wsi.config import load_config
from wsi.data.slide import SlideError, list_slides, names_many_slides, open_slide
from wsi.data.tissue import load_tissue_mask
from wsi.device import resolve_device
from wsi.errors import FastModeInexact, InputError, OutputError, ParameterError, WSIError
from wsi.fileio import (check_not_inputs, check_writable, file_digest, is_complete_npy, npy_header, npy_path,
                        remove_stale_temporaries)
from wsi.geometry import GridSpec, mask_geometry
from wsi.inference.common import InferenceStats
from wsi.inference.damaged import failed_report_path, write_failed_report
from wsi.inference.fast import BLOCK_SIZE, fast_probs_map
from wsi.inference.faithful import faithful_probs_map
from wsi.inference.loader import ReadFailed
from wsi.model import InferencePass, PassOptions, inference_model, load_model

logger = logging.getLogger(__name__)

MODES = ("fast", "faithful")
#: Patches per forward pass of the fast mode on the CPU when --batch_size is not given.
CPU_FAST_PATCHES = 32


@dataclass(frozen=True)
class Job:
    """One map to compute: slide, tissue mask and output ``.npy``."""

    slide: Path
    mask: Path
    output: Path


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
def plan_jobs(wsi, mask, npy):
    """The maps to compute, sorted by slide stem: one job for a slide file, one per slide for a folder or list.

    Raises :class:`~wsi.errors.InputError` (one line) when the arguments do not form a set: a folder of slides
    with a mask file, an output that is an existing file, two slides with the same stem.
    """
    if not names_many_slides(wsi):
        check_writable(npy)  # an existing folder is refused, not written beside as <folder>.npy
        check_writable(npy_path(npy))
        return [Job(Path(wsi), Path(mask), npy_path(npy))]
    slides = sorted(list_slides(wsi), key=lambda p: (p.stem, str(p)))
    mask, npy = Path(mask), Path(npy)
    if not mask.is_dir():
        raise InputError(f"{mask}: with many slides ({wsi}), MASK must be the folder of tissue masks <stem>.npy")
    if npy.exists() and not npy.is_dir():
        raise InputError(f"{npy}: with many slides ({wsi}), NPY must be the output folder, not a file")
    check_writable(npy, folder=True)
    stems = [p.stem for p in slides]
    duplicates = sorted({s for s in stems if stems.count(s) > 1})
    if duplicates:
        raise InputError(f"{wsi}: several slides share the stem {duplicates[0]!r}; their maps would overwrite "
                         "each other")
    return [Job(p, mask / f"{p.stem}.npy", npy / f"{p.stem}.npy") for p in slides]


def parse_shard(text):
    """``'K/N'`` → (K, N) with 0 ≤ K < N; raises :class:`~wsi.errors.InputError`."""
    try:
        k, n = (int(v) for v in str(text).split("/"))
    except ValueError:
        raise ParameterError(f"{{shard}} {text!r}: expected K/N, e.g. 0/4 (shards are numbered from 0)") from None
    if n < 1 or not 0 <= k < n:
        raise ParameterError(f"{{shard}} {text}: need 0 <= K < N (shards are numbered from 0)")
    return k, n


def shard_from_env(environ=os.environ):
    """(RANK, WORLD_SIZE) as torchrun sets them, or (0, 1) outside torchrun."""
    try:
        return int(environ.get("RANK", 0)), int(environ.get("WORLD_SIZE", 1))
    except ValueError:
        return 0, 1


def select_shard(jobs, shard):
    """Jobs of shard (K, N): every N-th job from the K-th, in the sorted order (disjoint, together all)."""
    k, n = shard
    return jobs[k::n]


class MapsWritten(list):
    """The maps written (a list of paths); ``failed`` lists ``(slide, what)`` for every slide with positions
    that could not be read, or that could not be read at all (folder mode goes on with the next slide)."""

    def __init__(self, paths=(), failed=()):
        super().__init__(paths)
        self.failed = list(failed)


def _job_files(job):
    """``(outputs, inputs)`` of a job: the map, its sidecar and failure report; the slide, the mask and its
    sidecar."""
    return ([job.output, sidecar_path(job.output), failed_report_path(job.output)],
            [job.slide, job.mask, sidecar_path(job.mask)])


def _not_done(job, settings):
    """Why ``job.output`` must be computed again, or ``''`` when a re-run may keep it.

    Kept only when it is a complete float64 map of the mask's shape, its sidecar describes it and names this
    slide (quick hash), and it was made with these ``settings`` (checkpoint, config and mask bytes, mode, 8-fold
    average); a map with positions that could not be read (a ``.failed.txt`` beside it) is not finished.
    """
    header = npy_header(job.mask)
    if header is None or len(header[0]) != 2 or not is_complete_npy(job.output, header[0], "float64"):
        return "it is not a complete map of its mask's shape"
    if failed_report_path(job.output).exists():
        return f"{failed_report_path(job.output).name} lists positions that could not be read"
    try:
        info = read_sidecar(job.output)
        if info is not None and tuple(info.shape) != tuple(header[0]):
            return "its sidecar describes another shape"
        with open_slide(job.slide) as slide:
            if info is not None and not info.slide.same_slide(SlideRef.of(slide)):
                return f"it was made from another slide ({info.slide.name})"
    except (ArrayFileError, SlideError) as err:
        return str(err)
    if info is None:  # not written by this pipeline (the original's map?): not replaced, but said
        logger.warning("%s: no sidecar says how it was made: kept as it is (--overwrite computes it again)",
                       job.output)
        return ""
    return settings_changed(info, mask_sha256=file_digest(job.mask), **settings)


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
    settings, without positions that failed (:func:`_not_done`). Every problem found before the
    first map (config, checkpoint, missing masks, an output that cannot be written) is raised before anything
    runs. Positions whose region cannot be decoded are 0 in the map and listed in ``<stem>.failed.txt``; with
    many slides, a slide that cannot be read at all is listed the same way and the run goes on.
    """
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
    for job in jobs:  # an output never replaces an input (NPY folder = MASK folder, mask.npy given twice, ...)
        outputs, inputs = _job_files(job)
        check_not_inputs(outputs, [*inputs, ckpt, cfg_path])
        if job.output.is_dir():
            raise OutputError(job.output, "is a folder, expected an output file")
        check_own_sidecar(sidecar_path(job.output))  # <stem>.json beside it that is not a sidecar: never replaced
    for folder in {job.output.parent for job in mine}:
        for path in remove_stale_temporaries(folder):
            logger.info("removed %s, left by an interrupted run", path)
    # What a kept map must have been made with: on resume, a map made otherwise is computed again.
    settings = dict(ckpt_sha256=file_digest(ckpt) if Path(ckpt).is_file() else None,
                    cfg_sha256=file_digest(cfg_path), mode_asked=mode, eight_avg=bool(eight_avg))
    todo, failed = [], []
    for job in mine:
        if skip_existing and job.output.exists():
            why = _not_done(job, settings) if job.mask.is_file() else "its mask is missing"
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
    if not todo:
        return MapsWritten(failed=failed)
    configure_backends(device, tf32=tf32, threads=threads)
    model = inference_model(load_model(ckpt, cfg, device, source_cfg=str(cfg_path), trust=trust_checkpoint),
                            options, crop=grid.crop_size)
    cnn = model.describe() + (" (--eager_cnn)" if model.describe() == "as loaded" else "")
    logger.info("device %s, %d torch threads, %s reader %s, %d patches per pass (fast mode), CNN: %s", device,
                torch.get_num_threads(), num_workers, "threads" if mode == "fast" else "processes",
                fast_patches or batch_size * grid.num_nodes, cnn)
    written = MapsWritten(failed=failed)
    for number, job in enumerate(todo, start=1):
        report = failed_report_path(job.output)
        stats = InferenceStats()
        start = time.perf_counter()
        try:
            with open_slide(job.slide) as slide:
                tissue, geometry = load_tissue_mask(job.mask, slide)
                info = ArrayInfo.of("probs_map", slide, geometry, ckpt=str(ckpt), cfg=str(cfg_path),
                                    mask=str(job.mask), eight_avg=bool(eight_avg), mode_asked=mode,
                                    ckpt_sha256=settings["ckpt_sha256"], cfg_sha256=settings["cfg_sha256"],
                                    mask_sha256=file_digest(job.mask))
            probs_map = compute_probs_map(model, job.slide, tissue, grid, mode=mode, batch_size=batch_size,
                                          num_workers=num_workers, eight_avg=eight_avg, amp=amp,
                                          progress=progress, stats=stats, mask_name=job.mask, geometry=geometry,
                                          fast_patches=fast_patches)
            if stats.failed and len(stats.failed) >= stats.positions:  # a map of zeros is no map
                first = stats.failed[min(stats.failed)]
                raise SlideError(f"{job.slide}: none of its {stats.positions} tissue positions could be read "
                                 f"(a truncated or damaged slide? first: {first})")
        except (WSIError, ReadFailed) as err:
            if not many or isinstance(err, OutputError):
                raise
            # One unreadable slide (or a bad mask) must not stop the others: list it, go on, exit 1 at the end.
            logger.error("%s (%d/%d): no map (%s); listed in %s", job.slide.name, number, len(todo), err, report)
            write_failed_report(report, job.slide, {}, reason=err)
            written.failed.append((job.slide, str(err)))
            continue
        seconds = time.perf_counter() - start
        info = replace(info, extra={**info.extra, "mode": stats.mode})  # fast, or faithful where fast is not exact
        written.append(save_array(job.output, probs_map, info))
        logger.info("%s (%d/%d): %d tissue positions, %s mode, %.1f s (%.1f positions/s), %.2f CNN evaluations "
                    "per position, CNN busy %.0f%% of the time -> %s", job.slide.name, number, len(todo),
                    stats.positions, stats.mode, seconds, stats.positions / max(seconds, 1e-9),
                    stats.evaluations_per_position, 100 * stats.extra.get("cnn_busy", 0.0), written[-1])
        if stats.failed:
            write_failed_report(report, job.slide, stats.failed, _position_regions(geometry, grid, stats.failed),
                                total=stats.positions)
            logger.warning("%s: %d of %d tissue positions could not be read (left at 0), listed in %s",
                           job.slide.name, len(stats.failed), stats.positions, report)
            written.failed.append((job.slide, str(report)))
        elif report.exists():
            report.unlink()  # an earlier run's report of a slide that now reads whole
    return written
