"""The random draws of one training grid: colour jitter, flip and quarter turns, and their packed form.

One home for what both augmentation paths share: :mod:`wsi.data.image_producer` draws a :class:`GridDraws` per
item and applies it to the PIL image (the original's path); with ``--augment device`` the workers pack the same
draws into a float64 vector (:func:`pack_draws`) that collates, and :mod:`wsi.data.grid_augment` unpacks them to
augment the whole batch on the training device. Both modules import this one, neither imports the other.
"""

from dataclasses import dataclass

import torch

#: ColorJitter(brightness, contrast, saturation, hue) of the original.
JITTER = (64.0 / 255, 0.75, 0.25, 0.04)

#: Layout of a packed draws vector: order (4 entries), brightness, contrast, saturation, hue, flip, rotate, jitter.
DRAW_FIELDS = 11
ORDER, FACTORS, FLIP, ROTATE, JITTER_ON = slice(0, 4), slice(4, 8), 8, 9, 10


@dataclass(frozen=True)
class GridDraws:
    """The random choices of one item.

    ``order`` is the order of the colour adjustments (0 brightness, 1 contrast, 2 saturation, 3 hue) and the
    factors are as torchvision's ``ColorJitter``; ``flip`` flips left-right, then ``rotate`` = k quarter turns
    counter-clockwise. ``jitter=False`` skips the colour adjustments.
    """

    order: tuple = (0, 1, 2, 3)
    brightness: float = 1.0
    contrast: float = 1.0
    saturation: float = 1.0
    hue: float = 0.0
    flip: bool = False
    rotate: int = 0
    jitter: bool = True


def draw_augmentation(rng, jitter=JITTER):
    """Draw a :class:`GridDraws` from the NumPy generator ``rng`` with the original's distributions."""
    b, c, s, h = jitter
    order = tuple(int(i) for i in rng.permutation(4))
    brightness = float(rng.uniform(max(0.0, 1 - b), 1 + b))
    contrast = float(rng.uniform(max(0.0, 1 - c), 1 + c))
    saturation = float(rng.uniform(max(0.0, 1 - s), 1 + s))
    hue = float(rng.uniform(-h, h))
    flip = bool(rng.random() > 0.5)  # the original's np.random.rand() > 0.5
    rotate = int(rng.integers(0, 4))
    return GridDraws(order, brightness, contrast, saturation, hue, flip, rotate)


def pack_draws(draws):
    """A :class:`GridDraws` (or None: no augmentation) as a float64 vector ``[DRAW_FIELDS]`` that collates."""
    if draws is None:
        return torch.tensor([0, 1, 2, 3, 1, 1, 1, 0, 0, 0, 0], dtype=torch.float64)
    return torch.tensor([*draws.order, draws.brightness, draws.contrast, draws.saturation, draws.hue,
                         float(draws.flip), float(draws.rotate), float(draws.jitter)], dtype=torch.float64)


def unpack_draws(vector):
    """Inverse of :func:`pack_draws` for one row: returns a :class:`GridDraws`."""
    v = vector.tolist() if isinstance(vector, torch.Tensor) else list(vector)
    return GridDraws(order=tuple(int(i) for i in v[:4]), brightness=v[4], contrast=v[5], saturation=v[6],
                     hue=v[7], flip=bool(v[8]), rotate=int(v[9]), jitter=bool(v[10]))


__all__ = ["DRAW_FIELDS", "GridDraws", "JITTER", "draw_augmentation", "pack_draws", "unpack_draws"]
