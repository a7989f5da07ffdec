"""Whole-slide inference: the probability map of each slide's tissue positions (``wsi/bin/probs_map.py``).

- :mod:`~wsi.inference.geometry`: the mask's stride on the slide, the grid, when the fast mode is exact.
- :mod:`~wsi.inference.faithful`: the original's algorithm, position by position.
- :mod:`~wsi.inference.fast`: the same map with every patch through the network once.
- :mod:`~wsi.inference.tta`: the eight flip/rotation variants (``--eight_avg``).
- :mod:`~wsi.inference.runner`: model loading, many slides, shards.

Names are imported on first use, so that :mod:`wsi.data.wsi_producer` can use the geometry without a cycle.
"""

import importlib

_EXPORTS = {
    "InferenceStats": "common",
    "fast_probs_map": "fast",
    "faithful_probs_map": "faithful",
    "GeometryError": "geometry", "GridSpec": "geometry", "MaskGeometry": "geometry",
    "fast_mode_problem": "geometry", "mask_geometry": "geometry",
    "Job": "runner", "compute_probs_map": "runner", "load_inference_model": "runner", "parse_shard": "runner",
    "plan_jobs": "runner", "run_probs_maps": "runner", "select_shard": "runner",
    "TRANSFORMS": "tta", "grid_permutation": "tta",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"wsi.inference.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'wsi.inference' has no attribute {name!r}")
