"""Statistics of coordinate lists: how the shipped (or sampled) lists sit on the annotations (``coords_report.py``)."""

import numpy as np

from wsi.data.hard_negatives import HARD_STRIDE
from wsi.data.labels import PATCH_PER_SIDE, PATCH_SIZE, distance_to_boundary, grid_labels


def is_on_grid(xy, stride=HARD_STRIDE):
    """Boolean ``[M]``: centres on the hard-negative grid, ``x ≡ y ≡ stride//2 (mod stride)``."""
    xy = np.asarray(xy, dtype=np.int64).reshape(-1, 2)
    return ((xy % stride) == stride // 2).all(axis=1)


def list_stats(rows, annotations, patch_size=PATCH_SIZE, hard_stride=HARD_STRIDE, exclude_negative=False):
    """Per-slide statistics of one coordinate list: ``{pid: dict}``, pids sorted.

    Each dict holds ``count``; ``centre_positive`` (centres whose own cell is positive); ``on_edge`` (of those,
    the centres exactly on a positive polygon's edge); ``in_negative``
    (centres inside a negative polygon); ``on_grid`` (centres on the hard-negative grid, see :func:`is_on_grid`);
    ``positive_cells`` (positive cells summed over the grids) and ``position`` (``[3, 3]`` positive counts per
    grid position, row = y).
    """
    by_pid = {}
    for pid, x, y in rows:
        by_pid.setdefault(pid, []).append((x, y))
    stats = {}
    for pid in sorted(by_pid):
        xy = np.array(by_pid[pid], dtype=np.int64)
        annotation = annotations[pid]
        labels = grid_labels(annotation, xy, patch_size, exclude_negative=exclude_negative)
        centre = labels.shape[1] // 2
        positive = labels[:, centre, centre]
        # Centres exactly on an edge count as inside here (modern skimage); skimage 0.13's even-odd test, which
        # the original used, could put them either side.
        on_edge = 0
        if positive.any():
            on_edge = int((distance_to_boundary(annotation.positive, xy[positive], 1.0) == 0).sum())
        stats[pid] = {
            "count": len(xy),
            "centre_positive": int(positive.sum()),
            "on_edge": on_edge,
            "in_negative": int(annotation.inside_polygons(xy, is_positive=False).sum()) if annotation.negative else 0,
            "on_grid": int(is_on_grid(xy, hard_stride).sum()),
            "positive_cells": int(labels.sum()),
            "position": labels.sum(axis=0),
        }
    return stats


def coords_report(tumor_rows, normal_rows, annotations, patch_size=PATCH_SIZE, hard_stride=HARD_STRIDE,
                  exclude_negative=False):
    """The text lines of the report comparing coordinate lists with the shipped ones.

    One line per slide and a total: tumour centres, how many are inside a positive polygon (all, in the shipped
    lists) and inside a negative one, the mean fraction of positive cells of their 3×3 grids (0.8277 in the
    shipped tumor_valid.txt); normal centres, how many inside a positive polygon (none), how many on the
    hard-negative grid, their mean positive fraction (0.0600 in normal_valid.txt). Then the positive rate of
    each grid position (row-major, row = y). Returns ``(lines, totals)`` with ``totals[kind]`` a dict of sums
    and ``mean`` (positive fraction) for ``kind`` in ``tumor``/``normal``.
    """
    per_kind = {"tumor": list_stats(tumor_rows or [], annotations, patch_size, hard_stride, exclude_negative),
                "normal": list_stats(normal_rows or [], annotations, patch_size, hard_stride, exclude_negative)}
    cells = PATCH_PER_SIDE ** 2
    pids = sorted(set(per_kind["tumor"]) | set(per_kind["normal"]))
    columns = {"tumor": ("count", "centre_positive", "in_negative", "on_edge"),
               "normal": ("count", "centre_positive", "on_edge", "on_grid")}
    lines = [f"{'slide':<16}{'tumor':>8}{'inside':>8}{'in_neg':>8}{'on_edge':>8}{'pos_frac':>10}"
             f"{'normal':>9}{'inside':>8}{'on_edge':>8}{'hard':>8}{'pos_frac':>10}"]

    def fields(s, kind):
        if s is None or not s["count"]:
            return "".join(f"{0:>8}" for _ in columns[kind]) + f"{'-':>10}"
        mean = s["positive_cells"] / (cells * s["count"])
        return "".join(f"{s[key]:>8}" for key in columns[kind]) + f"{mean:>10.4f}"

    def line(label, tumor, normal):
        return f"{label:<16}{fields(tumor, 'tumor')} {fields(normal, 'normal')}"

    for pid in pids:
        lines.append(line(pid, per_kind["tumor"].get(pid), per_kind["normal"].get(pid)))

    totals = {}
    for kind, stats in per_kind.items():
        total = {key: sum(s[key] for s in stats.values())
                 for key in ("count", "centre_positive", "in_negative", "on_edge", "on_grid", "positive_cells")}
        total["position"] = (sum(s["position"] for s in stats.values()) if stats
                             else np.zeros((PATCH_PER_SIDE, PATCH_PER_SIDE), dtype=np.int64))
        total["mean"] = total["positive_cells"] / (cells * total["count"]) if total["count"] else float("nan")
        totals[kind] = total
    lines.append(line("total", totals["tumor"], totals["normal"]))
    for kind, total in totals.items():
        if total["count"]:
            rate = " ".join(f"{v:.3f}" for v in (total["position"] / total["count"]).ravel())
            lines.append(f"{kind} positive rate per grid position (row-major, row = y): {rate}")
    return lines, totals
