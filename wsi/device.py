"""The torch device of a run: one resolver for training and inference."""

import os

import torch

from wsi.errors import ParameterError


def default_device():
    """``cuda`` (this process's ``LOCAL_RANK`` under torchrun) when a GPU is present, else ``cpu``."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def resolve_device(device=None):
    """``torch.device(device)``, or :func:`default_device` for None; a one-line error for a bad or absent device."""
    if not device:
        return default_device()
    try:
        device = torch.device(device)
    except (RuntimeError, ValueError) as err:
        raise ParameterError(f"{{device}} {device!r}: not a torch device ({str(err).splitlines()[0]})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ParameterError(f"{{device}} {device}: CUDA is not available on this machine (use {{device}} cpu)")
    return device
