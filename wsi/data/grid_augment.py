"""The grid augmentation of :mod:`wsi.data.image_producer`, batched on the training device.

DataLoader workers of a dataset built with ``device_augment=True`` only read and decode each grid region and
draw its augmentation (the same :class:`~wsi.data.draws.GridDraws` from the same generator); items are
``((image [S, S, 3] uint8, draws [DRAW_FIELDS] float64), labels [G] float32)``, the labels already flipped and
rotated with the draws. :func:`augment_grids` then applies, on whatever device the batch is on and for the
whole batch at once:

1. the colour jitter in each item's drawn order, with Pillow's arithmetic (what torchvision's ``ColorJitter``
   does to a PIL image, the original's path): brightness, contrast and saturation are Pillow's ``Image.blend``
   (float32, truncated to integers after each step) against black, the rounded mean grey and the grey image
   (Pillow's integer ``L`` weights); hue is Pillow's 8-bit HSV round trip. torchvision's own tensor functions
   (``v2.functional.adjust_*``) use float weights and a float HSV; on H&E they differ from the PIL path by up to
   8 grey levels after the four steps, which is why they are not used here;
2. the left-right flip and the k quarter turns counter-clockwise (``torch.flip``, ``torch.rot90``);
3. the crops of each cell and ``(x − 128) / 128``.

The result equals :func:`~wsi.data.image_producer.make_grid` on the same image and draws to within one grey
level before scaling (README, "Differences from the original", gives the measured figures).
"""

import torch

from wsi.data.crops import crop_grid, normalize as scale_pixels
from wsi.data.draws import FACTORS, FLIP, JITTER_ON, ORDER, ROTATE
from wsi.geometry import GridSpec
from wsi.orientation import orient

# Pillow's colour arithmetic on float32 tensors holding integers 0..255, [N, 3, H, W] ------------------------------
def _blend(degenerate, image, factor):
    """Pillow's ``Image.blend(degenerate, image, factor)``: ``in1 + α·(in2 − in1)`` in float32, clipped, truncated.
    ``factor`` ``[N]``."""
    alpha = factor.to(torch.float32).view(-1, 1, 1, 1)
    return (degenerate + alpha * (image - degenerate)).clamp_(0, 255).trunc_()


def pil_grey(images):
    """Pillow's ``convert("L")``, ``(19595·R + 38470·G + 7471·B + 2¹⁵) >> 16``:
    ``[N, 3, H, W]`` → ``[N, 1, H, W]`` float32."""
    r, g, b = images.to(torch.int32).unbind(1)
    return ((r * 19595 + g * 38470 + b * 7471 + 32768) >> 16).unsqueeze(1).to(torch.float32)


def adjust_brightness(images, factor):
    """``ImageEnhance.Brightness``: a blend with black."""
    return _blend(torch.zeros_like(images), images, factor)


def adjust_contrast(images, factor):
    """``ImageEnhance.Contrast``: a blend with the mean grey level, rounded to an integer as Pillow does."""
    mean = torch.floor(pil_grey(images).to(torch.float64).mean(dim=(1, 2, 3), keepdim=True) + 0.5)
    return _blend(mean.to(torch.float32).expand_as(images), images, factor)


def adjust_saturation(images, factor):
    """``ImageEnhance.Color``: a blend with the grey image."""
    return _blend(pil_grey(images).expand_as(images), images, factor)


_HSV_SECTORS = torch.tensor([[0, 2, 1, 1, 3, 0], [3, 0, 0, 2, 1, 1], [1, 1, 3, 0, 0, 2]])  # [r, g, b] × sector


def adjust_hue(images, hue_factor):
    """torchvision's PIL ``adjust_hue``: RGB → 8-bit HSV as Pillow's ``convert("HSV")``, H shifted by
    ``int(hue_factor·255)`` modulo 256 (NumPy's uint8 wrap), and back as Pillow's ``convert("RGB")``.

    ``images`` ``[N, 3, H, W]`` (integers 0..255, any dtype), ``hue_factor`` ``[N]``. Pillow's C code mixes float
    and double; the same casts reproduce its truncations (``h·255`` = 135.99… in double is 136.00… through
    float, and Pillow writes 136), so the result is Pillow's exactly.
    """
    f32, f64 = torch.float32, torch.float64
    rgb = images.to(f32)
    r, g, b = rgb.unbind(1)
    maxc, minc = rgb.amax(1), rgb.amin(1)
    span = maxc - minc
    grey = span == 0
    safe = torch.where(grey, torch.ones_like(span), span)
    rc, gc, bc = ((maxc - c) / safe for c in (r, g, b))  # float in Pillow
    rc, gc, bc = rc.to(f64), gc.to(f64), bc.to(f64)  # ... added to double constants, stored as float
    h = torch.where(r == maxc, bc - gc, torch.where(g == maxc, 2.0 + rc - bc, 4.0 + gc - rc)).to(f32)
    h = torch.remainder(h.to(f64) / 6.0 + 1.0, 1.0).to(f32)
    hue = torch.where(grey, 0.0, torch.clamp(torch.trunc(h.to(f64) * 255.0), 0, 255))
    s = (span / torch.where(maxc == 0, torch.ones_like(maxc), maxc)).to(f64)
    sat = torch.where(grey, 0.0, torch.clamp(torch.trunc(s * 255.0), 0, 255))
    val = maxc.to(f64)
    shift = torch.remainder(torch.trunc(hue_factor.to(f64) * 255), 256).view(-1, 1, 1)
    hue = torch.remainder(hue + shift.to(hue.device), 256)

    sector = torch.floor(hue * 6.0 / 255.0)
    frac = (hue * 6.0 / 255.0 - sector).to(f32)
    fs = (frac * sat.to(f32)).to(f64)
    p = torch.floor(val * (1.0 - sat / 255.0) + 0.5).clamp(0, 255)  # C round(): half away from zero
    q = torch.floor(val * (1.0 - fs / 255.0) + 0.5).clamp(0, 255)
    t = torch.floor(val * (1.0 - (sat - fs) / 255.0) + 0.5).clamp(0, 255)
    # Pillow's switch on the sector: (r, g, b) = (v,t,p) (q,v,p) (p,v,t) (p,q,v) (t,p,v) (v,p,q); a grey pixel
    # (s = 0) gets p = q = t = v, as Pillow's own grey branch.
    sector = torch.remainder(sector, 6).to(torch.int64)
    candidates = torch.stack([val, p, q, t])  # [4, N, H, W]
    index = _HSV_SECTORS.to(sector.device)[:, sector]  # [3, N, H, W], entries index the candidates
    out = torch.gather(candidates, 0, index).permute(1, 0, 2, 3)
    return out.to(f32)


ADJUSTMENTS = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)  # index = GridDraws.order entry


def color_jitter(images, draws):
    """The colour jitter of a batch in each item's drawn order.

    ``images`` float32 ``[B, 3, H, W]`` holding integers 0..255; ``draws`` ``[B, DRAW_FIELDS]`` on the CPU. Each of
    the four steps applies each adjustment to the items that drew it at that step (16 batched calls at most).
    """
    order = draws[:, ORDER].to(torch.int64)
    factors = draws[:, FACTORS]
    jitter = draws[:, JITTER_ON] != 0
    images = images.clone()
    for step in range(4):
        for kind, adjust in enumerate(ADJUSTMENTS):
            chosen = torch.nonzero((order[:, step] == kind) & jitter).flatten()
            if len(chosen):
                index = chosen.to(images.device, non_blocking=True)
                images[index] = adjust(images[index], factors[chosen, kind].to(images.device, non_blocking=True))
    return images


def orient_batch(images, draws):
    """Each item's left-right flip, then its k quarter turns counter-clockwise (:func:`wsi.orientation.orient` on
    axes (rows, cols)); ``images`` ``[B, 3, S, S]``, batched by the 8 (flip, k) cases."""
    out = images.clone()
    cases = draws[:, FLIP].to(torch.int64) * 4 + draws[:, ROTATE].to(torch.int64)
    for case in torch.unique(cases).tolist():
        flip, turns = divmod(case, 4)
        if case == 0:
            continue
        chosen = torch.nonzero(cases == case).flatten().to(images.device, non_blocking=True)
        out[chosen] = orient(images[chosen], bool(flip), turns, axes=(-2, -1))
    return out


def augment_grids(images, draws, patch_size, crop_size, normalize=True, channels_last=False):
    """Augment, crop and scale a batch of raw grid regions on their device.

    Parameters
    ----------
    images : ``[B, S, S, 3]`` uint8 (rows = y), as the workers return them; any device.
    draws : ``[B, DRAW_FIELDS]`` packed draws (:func:`~wsi.data.draws.pack_draws`), on the CPU (only indices and factors move).
    normalize : apply ``(x − 128) / 128``.
    channels_last : return crops whose memory is channels-last (same values).

    Returns ``[B, G, 3, C, C]`` float32 on the images' device, crop ``i = row·P + col`` as ``make_grid``.
    """
    draws = draws.cpu()
    batch = images.permute(0, 3, 1, 2).to(torch.float32)  # [B, 3, S, S]
    if bool((draws[:, JITTER_ON] != 0).any()):
        batch = color_jitter(batch, draws)
    batch = orient_batch(batch, draws)
    grids = crop_grid(batch, GridSpec(images.shape[1], patch_size, crop_size))
    if normalize:
        grids = scale_pixels(grids)
    if channels_last:
        grids = grids.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)
    return grids


__all__ = ["ADJUSTMENTS", "adjust_brightness", "adjust_contrast", "adjust_hue", "adjust_saturation", "augment_grids",
           "color_jitter", "orient_batch", "pil_grey"]
