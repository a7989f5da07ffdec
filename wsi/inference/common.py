"""What both inference modes share: devices, autocast, the statistics they report."""

import contextlib
from dataclasses import dataclass, field

import torch


@dataclass
class InferenceStats:
    """What a map cost: tissue positions, CNN evaluations (patches through the backbone) and pixels decoded.

    ``transforms`` is 1, or 8 with ``--eight_avg``; the counts include every transform.
    """

    mode: str = ""
    positions: int = 0
    transforms: int = 1
    cnn_evaluations: int = 0
    bytes_decoded: int = 0
    regions_read: int = 0
    extra: dict = field(default_factory=dict)
    #: Tissue positions whose region could not be decoded (left at 0): ``{(xm, ym): reason}``.
    failed: dict = field(default_factory=dict)

    @property
    def evaluations_per_position(self):
        """CNN evaluations per tissue position and transform (9 for the faithful mode with a 3×3 grid)."""
        return self.cnn_evaluations / max(1, self.positions * self.transforms)

    @property
    def bytes_per_position(self):
        """Bytes of RGB decoded per tissue position and transform."""
        return self.bytes_decoded / max(1, self.positions * self.transforms)


def autocast(device, enabled):
    """Mixed precision for the backbone when ``enabled``: float16 on CUDA, bfloat16 on the CPU."""
    if not enabled:
        return contextlib.nullcontext()
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype)


def model_device(model):
    return next(model.parameters()).device
