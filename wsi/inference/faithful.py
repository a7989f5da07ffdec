"""The original's probability map, computed as the original does (``--mode faithful``).

For every tissue position of the ``[x, y]`` mask, the grid region centred on it is read, cut into G crops
(:class:`~wsi.data.wsi_producer.GridWSIPatchDataset`), run through the network with the CRF, and only the
kept (centre) node's probability is stored. With ``eight_avg`` this runs once per (flip, rotate) pair of
:data:`~wsi.inference.tta.TRANSFORMS` and the eight maps are summed and divided by eight, as the original.
"""

import logging
import time

import numpy as np
import torch
from tqdm import tqdm

from wsi.data.slide import RegionReadError
from wsi.data.wsi_producer import GridWSIPatchDataset
from wsi.inference.common import BusyClock, autocast
from wsi.inference.loader import guarded_loader
from wsi.inference.tta import transforms
from wsi.model.inference import InferencePass

logger = logging.getLogger(__name__)


def faithful_probs_map(model, wsi_path, mask, grid, geometry, *, batch_size=20, num_workers=5, eight_avg=False,
                       amp=False, progress=True, stats=None):
    """Probability map of one slide, position by position (the original's algorithm).

    Parameters
    ----------
    model : ResNetGrid or InferencePass
        In eval mode, on its device (``embed`` and ``grid_logits`` are used, as ``model(grids)`` does); may be an
        :class:`~wsi.model.inference.InferencePass`, whose patches are then given in the layout it wants.
    wsi_path : path of the slide.
    mask : ndarray bool ``[X_mask, Y_mask]``
        The tissue mask, x first.
    grid : GridSpec
    geometry : MaskGeometry
        The mask's stride on the slide (:func:`~wsi.geometry.mask_geometry`).
    batch_size : int
        Grids per forward pass (the original: the config's batch_size × 2 = 20).
    num_workers : int
        DataLoader workers reading regions.
    eight_avg : bool
        Average the eight flip/rotation variants.
    amp : bool
        Mixed precision for the backbone.
    progress : bool
        Show a tqdm bar counting positions.
    stats : InferenceStats, optional
        Filled with the counts of what was computed.

    Returns the map, float64 ``[X_mask, Y_mask]``: sigmoid of the kept node's logit at tissue positions, 0
    elsewhere.
    """
    net = InferencePass.of(model)
    device = net.device
    started = time.perf_counter()
    clock = BusyClock(device)
    pairs = transforms(eight_avg)
    kept = grid.kept
    total = None
    failed = {}  # (xm, ym) -> why its region could not be decoded
    num_positions = int(np.count_nonzero(mask))
    bar = tqdm(total=num_positions * len(pairs), unit="pos", desc="probs_map (faithful)", disable=not progress,
               leave=False)
    for flip, rotate in pairs:
        dataset = GridWSIPatchDataset(wsi_path, mask, grid.image_size, grid.patch_size, grid.crop_size,
                                      normalize=True, flip=flip, rotate=rotate, geometry=geometry)
        probs_map = np.zeros(mask.shape, dtype=np.float64)
        # A region that cannot be decoded comes back beside the batch: that position stays 0 and is listed.
        batches = guarded_loader(dataset, batch_size=batch_size, num_workers=num_workers,
                                 pin_memory=device.type == "cuda", tolerate=(RegionReadError,))
        for step, (items, unreadable) in enumerate(batches, start=1):
            for item in unreadable:
                failed[dataset.position(item.index)] = item.reason or "cannot decode"
            bar.update(len(unreadable))
            if items is None:
                continue
            grids, x_mask, y_mask = items
            # model(grids), with the patches laid out as the pass expects (channels_last for inference_model).
            batch, nodes = grids.shape[:2]
            patches = net.as_input(grids.to(device, non_blocking=True).flatten(0, 1))
            with torch.inference_mode(), autocast(device, amp):
                with clock:
                    feats, logits = net.embed(patches)
                logits = net.grid_logits(feats.reshape(batch, nodes, -1), logits.reshape(batch, nodes))
            probs = torch.sigmoid(logits[:, kept].float()).cpu().numpy()
            probs_map[x_mask.numpy(), y_mask.numpy()] = probs
            bar.update(len(probs))
            logger.debug("flip : %s, rotate : %s, batch : %d", flip, rotate, step)
        dataset.close()
        total = probs_map if total is None else total + probs_map
    bar.close()
    if eight_avg:
        total /= len(pairs)
    if failed:  # a position failing under one transform only: its average would be wrong, so 0
        total[tuple(np.array(list(failed)).T)] = 0.0
    if stats is not None:
        stats.failed.update(failed)
        stats.mode, stats.positions, stats.transforms = "faithful", num_positions, len(pairs)
        stats.cnn_evaluations += num_positions * len(pairs) * grid.num_nodes
        stats.regions_read += num_positions * len(pairs)
        stats.bytes_decoded += num_positions * len(pairs) * grid.image_size ** 2 * 3
        wall = time.perf_counter() - started
        stats.extra.update(cnn_seconds=clock.seconds, wall_seconds=wall, cnn_busy=clock.seconds / max(wall, 1e-9))
    return total
