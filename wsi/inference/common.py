"""What both inference modes share: autocast, the busy clock, the statistics they report."""

import contextlib
import time
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


def amp_dtype(device):
    """The ``--amp`` dtype: bfloat16 on the CPU and on GPUs that support it (no overflow, no loss scaling needed
    at inference), float16 on older GPUs."""
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def autocast(device, enabled):
    """Mixed precision for the backbone when ``enabled`` (:func:`amp_dtype`); a no-op context otherwise."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=amp_dtype(device))


def synchronize(device):
    """Wait for the device's queued work (CUDA), so that wall-clock timings measure it; a no-op on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class BusyClock:
    """Seconds spent inside ``with clock:`` blocks (device-synchronised): the time the CNN is busy."""

    def __init__(self, device):
        self.device, self.seconds = device, 0.0

    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        synchronize(self.device)
        self.seconds += time.perf_counter() - self.start
        return False
