"""``train.py --tb_slide``: the probability map of a slide region at each validation, as a TensorBoard image.

The map is made by the fast inference path (:func:`wsi.inference.compute_probs_map`, ``mode="fast"``) on a
tissue mask of stride ``s = gcd(64, patch_size)`` level-0 pixels (the original's level-6 stride where the patch
size allows it, so each patch runs through the network about once), restricted to the region. Its cost is about
one backbone pass per tissue position of the region, ``(w / s)·(h / s)`` at most; :class:`SlidePreview` logs
the count when it opens, and TensorBoard gets the seconds of each map (``slide/preview_seconds``).
"""

import argparse
import logging
import math
import time

import numpy as np

from wsi.data.slide import open_slide
from wsi.data.tissue import tissue_mask_from_rgb
from wsi.errors import ParameterError
from wsi.geometry import GridSpec, mask_geometry
from wsi.inference import InferenceStats, compute_probs_map
from wsi.monitor.images import heatmap, resize

logger = logging.getLogger(__name__)

#: Tissue positions above which opening a preview warns that each validation gets noticeably slower.
LARGE_PREVIEW = 20000


def parse_region(text):
    """``"X,Y,W,H"`` (level-0 pixels: top-left corner, width, height) as a tuple of ints; an argparse type."""
    try:
        x, y, w, h = (int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected X,Y,W,H (level-0 pixels, integers), got {text!r}") from None
    if x < 0 or y < 0 or w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError(f"expected X, Y >= 0 and W, H > 0, got {text!r}")
    return x, y, w, h


def _read_scaled(slide, region, size):
    """Level-0 ``region`` (x, y, w, h) of ``slide`` read at the coarsest level finer than ``size`` (width,
    height) asks for, then resized to it: uint8 ``[height, width, 3]``."""
    x, y, w, h = region
    wanted = w / size[0]
    level = max((k for k, d in enumerate(slide.level_downsamples) if d <= wanted), default=0)
    down = slide.level_downsamples[level]
    image = slide.read_region((x, y), level, (max(1, math.ceil(w / down)), max(1, math.ceil(h / down))))
    return resize(np.ascontiguousarray(image), size)


class SlidePreview:
    """The probability map of a region of one slide, drawn under the slide's thumbnail.

    Parameters
    ----------
    slide_path : the slide.
    cfg : the training config (its grid).
    device : the training device.
    region : ``(x, y, w, h)`` in level-0 pixels, default the whole slide.
    amp : bfloat16 autocast for the backbone, as ``--amp`` trains.
    width : width of the image in pixels.

    Raises :class:`~wsi.errors.InputError` (one line) when the slide cannot be opened or the region is not inside
    it or holds no tissue.
    """

    def __init__(self, slide_path, cfg, device, region=None, amp=False, width=384):
        self.slide_path, self.device, self.amp, self.width = str(slide_path), device, amp, width
        self.grid = GridSpec.from_config(cfg)
        self.stride = math.gcd(64, self.grid.patch_size)
        s = self.stride
        with open_slide(slide_path) as slide:
            width0, height0 = slide.dimensions
            x, y, w, h = region or (0, 0, width0, height0)
            if x + w > width0 or y + h > height0:
                raise ParameterError(f"{{tb_region}} {x},{y},{w},{h}: not inside {slide_path} ({width0}x{height0} "
                                     "at level 0)")
            shape = (max(1, width0 // s), max(1, height0 // s))
            self.geometry = mask_geometry(slide.level_dimensions, slide.level_downsamples, shape,
                                          mask_name="--tb_slide's mask", slide_name=str(slide_path))
            # Tissue (the original's rule) on the slide at the mask's resolution, kept inside the region.
            at_mask = _read_scaled(slide, (0, 0, shape[0] * s, shape[1] * s), shape)
            self.mask = tissue_mask_from_rgb(at_mask.transpose(1, 0, 2))  # [x, y]
            x0, y0 = x // s, y // s  # the mask pixels the region touches
            x1 = min(shape[0], max(x0 + 1, math.ceil((x + w) / s)))
            y1 = min(shape[1], max(y0 + 1, math.ceil((y + h) / s)))
            inside = np.zeros_like(self.mask)
            inside[x0:x1, y0:y1] = True
            self.mask &= inside
            self.box = (x0, y0, x1, y1)
            # The pictures that do not change: the thumbnail with the region framed, and the region itself.
            scale = width / max(width0, height0)
            thumb = _read_scaled(slide, (0, 0, width0, height0),
                                 (max(1, round(width0 * scale)), max(1, round(height0 * scale))))
            self.thumbnail = _frame(thumb, [round(v * scale) for v in (x0 * s, y0 * s, x1 * s, y1 * s)])
            view = (width, max(1, round(width * (y1 - y0) / (x1 - x0))))
            self.region_rgb = _read_scaled(slide, (x0 * s, y0 * s, (x1 - x0) * s, (y1 - y0) * s), view)
        self.positions = int(self.mask.sum())
        if not self.positions:
            raise ParameterError(f"{{tb_slide}} {slide_path}: no tissue in the region {x},{y},{w},{h}")
        log = logger.warning if self.positions > LARGE_PREVIEW else logger.info
        log("--tb_slide %s: %d tissue positions (stride %d) in the region, about as many CNN passes per "
            "validation%s", slide_path, self.positions, s,
            "; give a smaller --tb_region to keep validations short" if self.positions > LARGE_PREVIEW else "")
        self.seconds = 0.0

    def probs_map(self, model):
        """The map ``[X_mask, Y_mask]`` (x first) of the region by ``model`` (an eval model on the device)."""
        started = time.perf_counter()
        stats = InferenceStats()
        probs = compute_probs_map(model, self.slide_path, self.mask, self.grid, mode="fast", num_workers=0,
                                  amp=self.amp, progress=False, stats=stats, geometry=self.geometry)
        self.seconds = time.perf_counter() - started
        return probs

    def image(self, probs):
        """The thumbnail (region framed) above the region with ``probs`` as a jet heatmap (0 blue, 1 red) over its
        tissue, and a colour scale from 0 (left) to 1 (right) below: uint8 ``[H, width, 3]``."""
        x0, y0, x1, y1 = self.box
        size = (self.region_rgb.shape[1], self.region_rgb.shape[0])
        colours = resize(heatmap(probs[x0:x1, y0:y1].T), size, nearest=True)
        tissue = resize(np.repeat(self.mask[x0:x1, y0:y1].T[..., None], 3, axis=2).astype(np.uint8) * 255, size,
                        nearest=True) > 0
        region = self.region_rgb.astype(np.float32)
        region[tissue] = 0.35 * region[tissue] + 0.65 * colours[tissue]
        top = np.full((self.thumbnail.shape[0], self.width, 3), 255, dtype=np.uint8)
        top[:, :self.thumbnail.shape[1]] = self.thumbnail
        gap = np.full((8, self.width, 3), 255, dtype=np.uint8)
        scale = np.repeat(heatmap(np.linspace(0, 1, self.width)[None]), 10, axis=0)  # 0 at the left, 1 at the right
        return np.concatenate([top, gap, np.rint(region).astype(np.uint8), gap, scale])


def _frame(image, box, colour=(0, 0, 0), thickness=2):
    """``image`` with the rectangle ``box`` (x0, y0, x1, y1) drawn on it."""
    from PIL import Image, ImageDraw

    picture = Image.fromarray(image)
    ImageDraw.Draw(picture).rectangle(box, outline=colour, width=thickness)
    return np.asarray(picture)
