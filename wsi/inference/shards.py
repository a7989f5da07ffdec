"""Sharding a run over processes: slides sorted by stem, shard ``K/N`` takes every N-th from the K-th, so N
processes (``--shard``, or torchrun's ``RANK``/``WORLD_SIZE``) share a test set without a coordinator."""

import os

from wsi.errors import ParameterError


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
