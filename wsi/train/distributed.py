"""One process or many (torchrun): the process's rank and device, and means over processes."""

import os

import torch
import torch.distributed as dist

from wsi.device import resolve_device
from wsi.errors import ParameterError


def init_distributed_mode():
    """``(rank, world_size, local_rank)`` from torchrun's environment; (0, 1, 0) for a plain process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return 0, 1, 0
    return int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0"))



def select_device(device, device_ids, world_size, local_rank):
    """``(device, device_ids)``: the device of this process and, for one process on several GPUs, their ids.

    ``device``: ``cuda``, ``cpu`` or None (cuda when available); ``device_ids``: comma-separated CUDA ids of one
    process (under torchrun each process uses the GPU of its ``local_rank`` instead)."""
    text = device_ids
    device = resolve_device(device)
    if device.type != "cuda":
        return device, []
    if world_size > 1:
        return torch.device("cuda", local_rank), [local_rank]
    try:
        ids = [int(i) for i in text.split(",") if i.strip()]
    except ValueError:
        raise ParameterError(f"{{device_ids}} {text!r}: expected comma-separated integers such as 0,1") from None
    count = torch.cuda.device_count()
    if not ids or any(not 0 <= i < count for i in ids):
        raise ParameterError(f"{{device_ids}} {text!r}: this machine has CUDA devices 0..{count - 1}")
    return torch.device("cuda", ids[0]), ids



def reduce_mean(values, world_size):
    """Mean over processes of a list of floats (identity for one process)."""
    if world_size == 1:
        return values
    tensor = torch.tensor(values, dtype=torch.float64)
    if dist.get_backend() == "nccl":
        tensor = tensor.cuda()
    dist.all_reduce(tensor)
    return (tensor / world_size).tolist()
