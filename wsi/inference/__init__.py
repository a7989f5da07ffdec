"""Whole-slide inference: the probability map of each slide's tissue positions (``wsi/bin/probs_map.py``).

- :mod:`~wsi.inference.faithful`: the original's algorithm, position by position.
- :mod:`~wsi.inference.fast`: the same map with every patch through the network once.
- :mod:`~wsi.inference.lattice`: the lattice of patches the fast mode shares, and when it is exact.
- :mod:`~wsi.inference.tta`: the eight flip/rotation variants (``--eight_avg``).
- :mod:`~wsi.inference.runner`: a run: plan (every check), prepare (the network), the per-slide loop; the mode.
- :mod:`~wsi.inference.jobs`: which maps to compute (one slide or many), and which are done (resume).
- :mod:`~wsi.inference.shards`: ``K/N`` shards of a run over processes.

The geometry (mask stride, grid) is :mod:`wsi.geometry`; when the fast mode is exact, :mod:`wsi.inference.lattice`.
"""

from wsi.inference.common import InferenceStats
from wsi.inference.faithful import faithful_probs_map
from wsi.inference.fast import fast_probs_map
from wsi.inference.jobs import Job, plan_jobs
from wsi.inference.runner import compute_probs_map, run_probs_maps
from wsi.inference.shards import parse_shard, select_shard
from wsi.inference.tta import grid_permutation

__all__ = ["InferenceStats", "Job", "compute_probs_map", "faithful_probs_map", "fast_probs_map",
           "grid_permutation", "parse_shard", "plan_jobs", "run_probs_maps", "select_shard"]
