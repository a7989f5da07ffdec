"""Slide-level evaluation (Camelyon16 task 1): score each slide from its probability map, then the ROC AUC.

Labels CSV: no header (a first line whose second field is ``label`` or ``class`` is taken as a header and
skipped), one slide per line ``<slide>,<label>[,...]`` where ``label`` is ``Tumor`` / ``Normal`` (any case; also
``Tumour``) or ``1`` / ``0``; further fields are ignored, so the Camelyon16 ``reference.csv``
(``Test_001,Tumor,Macro,...``) is read as it is.

Slide scores (``score=``):

- ``max`` (default): the maximum of the probability map, the usual Camelyon16 task-1 score;
- ``topk``: the mean of the ``k`` highest values of the map (less sensitive to one noisy cell).

The AUC (tumour = positive class) is the Mann-Whitney U of the tumour slides' scores against the normal slides'
over the number of pairs, ``U / (n₊ · n₋)``: the fraction of (tumour, normal) pairs the scores order correctly, a
tie counting ½ (:func:`scipy.stats.mannwhitneyu`), which is the area under the ROC curve exactly.
"""

import logging
from pathlib import Path

import numpy as np
from scipy.stats import mannwhitneyu

from wsi.errors import InputError, ParameterError, SlideLabelsError
from wsi.arrays import load_array
from wsi.fileio import atomic_open, read_text_lines

log = logging.getLogger(__name__)

SCORES = ("max", "topk")
_POSITIVE = {"tumor", "tumour", "1"}
_NEGATIVE = {"normal", "0"}


def read_slide_labels(path):
    """``{slide: 1 (tumour) or 0 (normal)}`` from a labels CSV, in file order (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise SlideLabelsError(f"{path}: no such labels CSV" + (" (it is a folder)" if path.is_dir() else ""))
    labels = {}
    # read_text_lines: a byte that is not UTF-8 is one line naming the file and the line
    for number, line in enumerate((line.rstrip("\r\n") for line in read_text_lines(path)), start=1):
        fields = [f.strip() for f in line.split(",")]
        if not line.strip():
            raise SlideLabelsError(f"{path}: line {number} is blank; expected <slide>,<Tumor|Normal|1|0>")
        if len(fields) < 2 or not fields[0]:
            raise SlideLabelsError(f"{path}: line {number} is not <slide>,<label>: {line!r}")
        label = fields[1].lower()
        if number == 1 and label in ("label", "class"):
            continue
        if label in _POSITIVE:
            value = 1
        elif label in _NEGATIVE:
            value = 0
        else:
            raise SlideLabelsError(f"{path}: line {number} has label {fields[1]!r}; expected Tumor, Normal, 1 or 0")
        if fields[0] in labels:
            raise SlideLabelsError(f"{path}: line {number} repeats slide {fields[0]!r}")
        labels[fields[0]] = value
    if not labels:
        raise SlideLabelsError(f"{path}: no slide labels")
    return labels


def slide_score(probs_map, score="max", k=100):
    """The score of one ``[x, y]`` probability map: its maximum (``'max'``) or the mean of its ``k`` highest
    values (``'topk'``; all values when the map has fewer)."""
    values = np.asarray(probs_map)
    if score == "max":
        return float(values.max())
    if score == "topk":
        if k < 1:
            raise ParameterError(f"{{k}} must be at least 1, got {k}")
        flat = np.asarray(values, dtype=np.float64).ravel()
        k = min(int(k), flat.size)
        return float(np.partition(flat, flat.size - k)[flat.size - k:].mean())
    raise InputError(f"unknown slide score {score!r}; expected one of {', '.join(SCORES)}")


def score_slides(map_dir, labels, score="max", k=100, exclude=()):
    """``[(slide, score, label), ...]`` for each labelled slide (file order), from ``<map_dir>/<slide>.npy``.

    Slides in ``exclude`` are left out. A labelled slide without a map raises :class:`SlideLabelsError`
    naming the missing files; maps without a label are ignored with a warning.
    """
    map_dir = Path(map_dir)
    if not map_dir.is_dir():
        raise SlideLabelsError(f"{map_dir}: no such folder of probability maps"
                               + (" (it is a file)" if map_dir.exists() else ""))
    exclude = set(exclude)
    slides = [s for s in labels if s not in exclude]
    missing = [s for s in slides if not (map_dir / f"{s}.npy").is_file()]
    if missing:
        raise SlideLabelsError(f"{map_dir}: no probability map for {len(missing)} labelled slides: "
                               + ", ".join(f"{s}.npy" for s in missing[:5]) + (" ..." if len(missing) > 5 else ""))
    unlabelled = sorted(p.stem for p in map_dir.glob("*.npy") if p.stem not in labels and p.stem not in exclude)
    if unlabelled:
        log.warning("%d probability maps have no label and are ignored: %s", len(unlabelled),
                    ", ".join(unlabelled[:10]) + (" ..." if len(unlabelled) > 10 else ""))
    rows = []
    for slide in slides:
        probs_map, _ = load_array(map_dir / f"{slide}.npy", "probability map", mmap=True)
        rows.append((slide, slide_score(probs_map, score, k), labels[slide]))
    return rows


def roc_auc(labels, scores):
    """ROC AUC of ``scores`` against binary ``labels`` (1 = positive): ``U / (n₊ · n₋)``, ties ½.

    ``labels`` and ``scores`` are sequences of the same length holding both classes. Examples::

        >>> roc_auc([1, 1, 0, 0], [0.9, 0.4, 0.5, 0.1])
        0.75
        >>> roc_auc([1, 0], [0.5, 0.5])
        0.5
    """
    labels = np.asarray(labels, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    positive, negative = scores[labels], scores[~labels]
    if not positive.size or not negative.size:
        raise ValueError("roc_auc: needs scores of both classes")
    # U of the positives: pairs (p, n) with p > n, plus ½ per tie (scipy counts ties by mid-ranks).
    u = mannwhitneyu(positive, negative, alternative="two-sided", method="asymptotic").statistic
    return float(u) / (positive.size * negative.size)


def slide_auc(rows, where="labels"):
    """ROC AUC of ``[(slide, score, label), ...]`` (:func:`roc_auc`, tumour the positive class)."""
    labels = [label for _, _, label in rows]
    if len(set(labels)) < 2:
        kind = "tumour" if labels and labels[0] else "normal"
        raise SlideLabelsError(f"{where}: all {len(labels)} slides are {kind}; the AUC needs tumour and normal slides")
    return roc_auc(labels, [score for _, score, _ in rows])


def write_slide_scores(path, rows):
    """Write ``slide,score,label`` (header, then one slide per line, label Tumor/Normal) atomically."""
    with atomic_open(path, "w") as handle:
        handle.write("slide,score,label\n")
        for slide, score, label in rows:
            handle.write(f"{slide},{score:.6f},{'Tumor' if label else 'Normal'}\n")
