"""Camelyon16 lesion-level evaluation: the FROC score (the organisers' ``Evaluation_FROC.py`` as NCRF ships it).

Rules (constants as the organisers'):

- Slides evaluated: every ``*.csv`` detection file of the result folder (``prob,x,y`` per line, level 0). A slide
  is a tumour slide when its ground-truth mask exists, ``<stem>.tif`` (the original's name) or the official
  ``<stem>_Mask.tif``; all the detections of any other slide are false positives.
- Evaluation mask: level 5 of the mask (``EVALUATION_MASK_LEVEL``), tumour = value 255 in channel 0 (masks
  with tumour 1 on 0 are accepted too). Tumours are grown by 75 µm (distance transform below
  ``75 / (0.243 · 2**5 · 2)`` px, ``L0_RESOLUTION`` = 0.243 µm per level-0 pixel), holes filled, and
  8-connected components labelled 1..L in raster order. The mask is an image array ``[rows = y, cols = x]``.
- Isolated tumour cells (ITC): components whose major axis (``regionprops.axis_major_length``) is below
  ``275 / (0.243 · 2**5)`` px, i.e. 200 µm plus the growth. A detection on an ITC is neither TP nor FP.
- A detection ``(p, x, y)`` hits ``mask[int(y / 32), int(x / 32)]``: 0 is a false positive; a lesion keeps the
  highest probability that hit it (a float32 slot, as the original), so repeated hits are neither TP nor FP.
- Curve: thresholds are the sorted distinct probabilities of all FPs and lesion slots (missed lesions and ITC
  slots hold 0.0), **dropping the smallest**; at each, FPs ≥ t divided by the number of CSV files and lesion
  slots ≥ t divided by the number of non-ITC lesions; then the point (0, 0).
- Score: the mean of ``np.interp`` of the curve at 0.25, 0.5, 1, 2, 4 and 8 average FPs per slide.
"""

import dataclasses
import logging
from pathlib import Path

import numpy as np
from scipy import ndimage
from skimage import measure

from wsi.constants import CAMELYON16_MPP, EVALUATION_MASK_LEVEL
from wsi.data.slide import LevelError, open_slide
from wsi.errors import FROCError, InputError
from wsi.eval.detections import read_detections
from wsi.fileio import figure_format

log = logging.getLogger(__name__)

L0_RESOLUTION = CAMELYON16_MPP  # µm per level-0 pixel of the Camelyon16 slides
FP_RATES = (0.25, 0.5, 1, 2, 4, 8)
MASK_SUFFIXES = ("", "_Mask", "_mask")
MASK_EXTENSIONS = (".tif", ".tiff")


@dataclasses.dataclass
class SlideResult:
    """The FROC bookkeeping of one slide.

    ``fp_probs`` float64 ``[F]``: probabilities of the false positives; ``tp_probs`` float32 ``[L]``: per
    lesion label 1..L the highest probability of a detection on it (0.0 when missed or ITC);
    ``num_tumours``: L minus the ITC count; ``itc_labels``: the ITC labels; ``detection_summary``:
    ``{'Label k': [p, x, y] or []}`` for each non-ITC label; ``fp_summary``: ``{'FP n': [p, x, y]}``.
    """

    name: str
    csv_path: str
    mask_path: str | None = None
    tumour_value: int | None = None
    fp_probs: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    tp_probs: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.float32))
    num_tumours: int = 0
    itc_labels: list = dataclasses.field(default_factory=list)
    detection_summary: dict = dataclasses.field(default_factory=dict)
    fp_summary: dict = dataclasses.field(default_factory=dict)

    @property
    def is_tumour(self):
        return self.mask_path is not None

    def to_dict(self):
        return {
            "csv": self.csv_path,
            "mask": self.mask_path,
            "tumour_value": self.tumour_value,
            "num_lesions": int(len(self.tp_probs)),
            "num_tumours": int(self.num_tumours),
            "itc_labels": [int(k) for k in self.itc_labels],
            "num_fp": int(len(self.fp_probs)),
            "num_tp": int(sum(1 for v in self.detection_summary.values() if v)),
            "detection_summary": self.detection_summary,
            "fp_summary": self.fp_summary,
        }


@dataclasses.dataclass
class FROCResult:
    """The score, the six interpolated sensitivities and the whole curve (``avg_fps``, ``sensitivities``:
    one point per threshold then (0, 0), as the original's ``computeFROC``), and each slide's bookkeeping."""

    score: float
    fp_rates: tuple
    eval_sensitivities: np.ndarray
    avg_fps: np.ndarray
    sensitivities: np.ndarray
    thresholds: np.ndarray
    num_slides: int
    num_tumours: int
    slides: list

    def to_dict(self):
        return {
            "froc": float(self.score),
            "fp_rates": list(self.fp_rates),
            "sensitivities_at_fp_rates": [float(v) for v in self.eval_sensitivities],
            "num_slides": self.num_slides,
            "num_tumours": self.num_tumours,
            "curve": {"thresholds": [float(t) for t in self.thresholds],
                      "avg_fps": [float(v) for v in self.avg_fps],
                      "sensitivities": [float(v) for v in self.sensitivities]},
            "slides": {s.name: s.to_dict() for s in self.slides},
        }


# Evaluation mask ------------------------------------------------------------------------------------------------

def read_tumour_mask(mask_path, level=EVALUATION_MASK_LEVEL):
    """Boolean tumour image ``[rows = y, cols = x]`` of a mask's ``level`` and the tumour value found (255 or 1).

    Tumour is channel 0 equal to 255 (the Camelyon16 convention); a mask holding only 0 and 1 is read with
    tumour 1 (ASAP's default label, which the original turned into garbage). A mask without tumour gives an
    all-False image and value None. Raises :class:`FROCError` naming the file when the mask has no level
    ``level`` or other values without any 255.
    """
    try:
        with open_slide(mask_path) as slide:
            red = slide.read_level(slide.check_level(level))[:, :, 0]
    except LevelError as err:
        raise FROCError(f"{mask_path}: the mask has no level {level} (levels {err.levels}); the Camelyon16 "
                        f"evaluation reads level {level} of a pyramidal mask") from None
    counts = np.bincount(red.ravel(), minlength=256)
    present = np.flatnonzero(counts)
    if counts[255]:
        value = 255
        others = [int(v) for v in present if v not in (0, 255)]
        if others:
            log.warning("%s: level %d also holds values %s; only 255 counts as tumour", mask_path, level,
                        others[:10])
    elif set(present.tolist()) <= {0, 1} and counts[1]:
        value = 1
    elif set(present.tolist()) <= {0}:
        log.warning("%s: the mask holds no tumour (no value 255 or 1 at level %d): every detection on this "
                    "slide is a false positive", mask_path, level)
        return np.zeros(red.shape, dtype=bool), None
    else:
        raise FROCError(f"{mask_path}: level {level} holds values {present.tolist()[:10]} but no 255; expected "
                        "tumour 255 (or 1) on background 0")
    log.info("%s: tumour encoded as %d", mask_path, value)
    return red == value, value


def evaluation_mask_from_tumour(tumour, resolution=L0_RESOLUTION, level=EVALUATION_MASK_LEVEL):
    """Label image ``[rows, cols]`` (0 background, lesions 1..L) of a boolean tumour image at ``level``.

    Tumour grown by 75 µm (Euclidean distance to the nearest tumour pixel below ``75 / (resolution·2**level·2)``
    px), holes filled, 8-connected components labelled in raster order.
    """
    if not tumour.any():
        return np.zeros(tumour.shape, dtype=np.int32)
    distance = ndimage.distance_transform_edt(~tumour)
    threshold = 75 / (resolution * pow(2, level) * 2)  # 75 µm, "the equivalent size of 5 tumour cells"
    filled = ndimage.binary_fill_holes(distance < threshold)
    return measure.label(filled, connectivity=2)


def compute_evaluation_mask(mask_path, resolution=L0_RESOLUTION, level=EVALUATION_MASK_LEVEL):
    """The organisers' ``computeEvaluationMask``: ``(label image [rows = y, cols = x], tumour value)``."""
    tumour, value = read_tumour_mask(mask_path, level)
    return evaluation_mask_from_tumour(tumour, resolution, level), value


def compute_itc_labels(evaluation_mask, resolution=L0_RESOLUTION, level=EVALUATION_MASK_LEVEL):
    """Labels of the isolated tumour cells: major axis below ``275 / (resolution·2**level)`` px (200 µm + 75 µm)."""
    threshold = 275 / (resolution * pow(2, level))
    return [prop.label for prop in measure.regionprops(evaluation_mask) if prop.axis_major_length < threshold]


# TP / FP ------------------------------------------------------------------------------------------------------

def compute_fp_tp_probs(probs, xs, ys, evaluation_mask=None, itc_labels=(), level=EVALUATION_MASK_LEVEL,
                        csv_path="detections", mask_path="mask"):
    """The organisers' ``compute_FP_TP_Probs``: ``(fp_probs, tp_probs, num_tumours, detection_summary,
    fp_summary)`` for one slide's detections in file order.

    ``evaluation_mask`` is the label image of a tumour slide, None for a normal slide (every detection is an
    FP). A detection whose ``(int(x / 2**level), int(y / 2**level))`` falls outside the mask, or with a
    negative coordinate, raises :class:`FROCError` naming the CSV line.
    """
    itc = set(int(k) for k in itc_labels)
    max_label = int(evaluation_mask.max()) if evaluation_mask is not None and evaluation_mask.size else 0
    tp_probs = np.zeros((max_label,), dtype=np.float32)  # float32 as the organisers' code
    detection_summary = {f"Label {k}": [] for k in range(1, max_label + 1) if k not in itc}
    fp_probs, fp_summary = [], {}
    scale = pow(2, level)
    if evaluation_mask is not None:
        rows, cols = evaluation_mask.shape
    for i, (prob, x, y) in enumerate(zip(np.asarray(probs).tolist(), np.asarray(xs).tolist(),
                                         np.asarray(ys).tolist())):
        if evaluation_mask is None:
            hit = 0
        else:
            row, col = int(y / scale), int(x / scale)
            if x < 0 or y < 0 or row >= rows or col >= cols:
                raise FROCError(f"{csv_path}: line {i + 1}: detection ({x}, {y}) lies outside the mask {mask_path} "
                                f"(level {level} is {cols}×{rows} px, level 0 about {cols * scale}×{rows * scale})")
            hit = int(evaluation_mask[row, col])
        if hit == 0:
            fp_summary[f"FP {len(fp_probs)}"] = [prob, x, y]
            fp_probs.append(prob)
        elif hit not in itc and prob > float(tp_probs[hit - 1]):  # float64 comparison, as under NumPy 1
            detection_summary[f"Label {hit}"] = [prob, x, y]
            tp_probs[hit - 1] = prob
    return (np.asarray(fp_probs, dtype=np.float64), tp_probs, max_label - len(itc), detection_summary,
            fp_summary)


# Curve and score ---------------------------------------------------------------------------------------------

def compute_froc_curve(fp_probs, tp_probs, num_slides, num_tumours):
    """The organisers' ``computeFROC``: ``(avg_fps, sensitivities, thresholds)``.

    ``fp_probs``: all slides' FP probabilities (float64); ``tp_probs``: all lesion slots (float32, 0.0 when
    missed). Thresholds = sorted distinct values of both, the smallest dropped. The counts compare as the
    original did under NumPy's casting rules: FPs in float64, lesion slots in float32.
    """
    fp = np.sort(np.asarray(fp_probs, dtype=np.float64))
    tp = np.sort(np.asarray(tp_probs, dtype=np.float32))
    thresholds = np.unique(np.concatenate([fp, tp.astype(np.float64)]))[1:]
    n_fp = len(fp) - np.searchsorted(fp, thresholds, side="left")
    # The original compared a float32 array with each threshold: a Python float threshold (from an FP) is
    # rounded to float32 for that comparison (NumPy's rule for array-vs-Python-scalar, then and now).
    n_tp = len(tp) - np.searchsorted(tp, thresholds.astype(np.float32), side="left")
    total_fps = np.append(n_fp, 0) / float(num_slides)
    sensitivities = np.append(n_tp, 0) / float(num_tumours)
    return total_fps, sensitivities, thresholds


def froc_score(avg_fps, sensitivities, fp_rates=FP_RATES):
    """``(mean, values)``: the curve's sensitivities interpolated at ``fp_rates`` average FPs per slide."""
    values = np.interp(fp_rates, avg_fps[::-1], sensitivities[::-1])
    return float(np.mean(values)), values


# Folders ----------------------------------------------------------------------------------------------------------

def find_mask(mask_dir, stem):
    """The ground-truth mask of slide ``stem``: ``<stem>.tif`` (the original), ``<stem>_Mask.tif`` (the
    official Camelyon16 name) or ``<stem>_mask.tif`` (also ``.tiff``); None when there is none."""
    for suffix in MASK_SUFFIXES:
        for ext in MASK_EXTENSIONS:
            candidate = Path(mask_dir) / f"{stem}{suffix}{ext}"
            if candidate.is_file():
                return candidate
    return None


def evaluate_slide(csv_path, mask_path=None, resolution=L0_RESOLUTION, level=EVALUATION_MASK_LEVEL):
    """One slide's :class:`SlideResult` from its detection CSV and its mask (None for a normal slide)."""
    csv_path = Path(csv_path)
    probs, xs, ys = read_detections(csv_path)
    result = SlideResult(name=csv_path.stem, csv_path=str(csv_path))
    evaluation_mask, itc_labels = None, []
    if mask_path is not None:
        evaluation_mask, result.tumour_value = compute_evaluation_mask(mask_path, resolution, level)
        itc_labels = compute_itc_labels(evaluation_mask, resolution, level)
        result.mask_path = str(mask_path)
    (result.fp_probs, result.tp_probs, result.num_tumours, result.detection_summary,
     result.fp_summary) = compute_fp_tp_probs(probs, xs, ys, evaluation_mask, itc_labels, level,
                                              csv_path=csv_path, mask_path=mask_path)
    result.itc_labels = itc_labels
    return result


def evaluate_froc(mask_dir, csv_dir, exclude=(), on_slide=None, resolution=L0_RESOLUTION,
                  level=EVALUATION_MASK_LEVEL):
    """Evaluate every ``*.csv`` of ``csv_dir`` (sorted by name) against the masks of ``mask_dir``.

    ``exclude``: slide stems to leave out (e.g. Test_049, Test_114, which the Camelyon16 organisers excluded);
    they count neither as slides nor as lesions. ``on_slide(name)`` is called before each slide (the CLI prints
    the original's ``Evaluating Performance on image:`` line). Returns a :class:`FROCResult`.
    """
    mask_dir, csv_dir = Path(mask_dir), Path(csv_dir)
    for folder, what in ((mask_dir, "mask folder"), (csv_dir, "result folder")):
        if not folder.is_dir():
            raise FROCError(f"{folder}: no such {what}" + (" (it is a file)" if folder.exists() else ""))
    exclude = set(exclude)
    csv_files = sorted(p for p in csv_dir.iterdir() if p.name.endswith(".csv") and p.is_file())
    excluded = [p.stem for p in csv_files if p.stem in exclude]
    if excluded:
        log.info("excluded %d slides: %s", len(excluded), ", ".join(excluded))
    unknown = sorted(exclude - {p.stem for p in csv_files})
    if unknown:
        log.warning("--exclude names slides without a CSV in %s: %s", csv_dir, ", ".join(unknown))
    csv_files = [p for p in csv_files if p.stem not in exclude]
    if not csv_files:
        raise FROCError(f"{csv_dir}: no .csv detection files to evaluate")

    slides = []
    for csv_path in csv_files:
        if on_slide is not None:
            on_slide(csv_path.stem)
        slides.append(evaluate_slide(csv_path, find_mask(mask_dir, csv_path.stem), resolution, level))

    used = {Path(s.mask_path).name for s in slides if s.mask_path}
    unused = sorted(p.name for p in mask_dir.iterdir()
                    if p.suffix.lower() in MASK_EXTENSIONS and p.name not in used
                    and not any(p.name.startswith(stem) for stem in exclude))
    if unused:
        log.warning("%d masks in %s match no CSV (expected <slide>.tif or <slide>_Mask.tif): %s", len(unused),
                    mask_dir, ", ".join(unused[:10]) + (" ..." if len(unused) > 10 else ""))

    num_tumours = sum(s.num_tumours for s in slides)
    if num_tumours == 0:
        raise FROCError(f"{mask_dir}: no lesion (other than isolated tumour cells) in the masks of the "
                        f"{len(slides)} slides: the sensitivity is undefined")
    fp_probs = np.concatenate([s.fp_probs for s in slides])
    tp_probs = np.concatenate([s.tp_probs for s in slides])
    avg_fps, sensitivities, thresholds = compute_froc_curve(fp_probs, tp_probs, len(slides), num_tumours)
    score, values = froc_score(avg_fps, sensitivities)
    return FROCResult(score=score, fp_rates=FP_RATES, eval_sensitivities=values, avg_fps=avg_fps,
                      sensitivities=sensitivities, thresholds=thresholds, num_slides=len(slides),
                      num_tumours=num_tumours, slides=slides)


def check_plot_path(png_path):
    """Raise :class:`FROCError` unless matplotlib can save a figure in the format of ``png_path``'s suffix."""
    try:
        return figure_format(png_path, what="plot")
    except InputError as err:
        raise FROCError(str(err)) from None


def plot_froc(result, png_path):
    """Save the FROC curve as an image (Agg, never opens a window), with the original's labels and title."""
    from matplotlib.figure import Figure

    from wsi.fileio import atomic_path

    figure = Figure(figsize=(6, 4.5))
    axes = figure.add_subplot()
    axes.plot(result.avg_fps, result.sensitivities, linestyle="-", color="black")
    axes.set_xlabel("Average Number of False Positives")
    axes.set_ylabel("Metastasis detection sensitivity")
    axes.set_title("Free response receiver operating characteristic curve")
    axes.text(0.98, 0.03, f"FROC = {result.score:.4f}", transform=axes.transAxes, ha="right", va="bottom")
    figure.tight_layout()
    fmt = check_plot_path(png_path)
    with atomic_path(png_path) as tmp:
        figure.savefig(tmp, format=fmt, dpi=100)


__all__ = [
    "EVALUATION_MASK_LEVEL", "L0_RESOLUTION", "FP_RATES", "FROCError", "FROCResult", "SlideResult",
    "read_tumour_mask", "evaluation_mask_from_tumour", "compute_evaluation_mask",
    "compute_itc_labels", "compute_fp_tp_probs", "compute_froc_curve", "froc_score", "find_mask",
    "evaluate_slide", "evaluate_froc", "check_plot_path", "plot_froc",
]
