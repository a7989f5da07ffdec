"""Localisation and evaluation: detections (nms), the Camelyon16 FROC, slide-level AUC and exports for viewers.

Modules: :mod:`wsi.eval.detections` (the ``prob,x,y`` CSV), :mod:`wsi.eval.nms`, :mod:`wsi.eval.froc`,
:mod:`wsi.eval.slide_auc`, :mod:`wsi.eval.export` (heatmap image, QuPath GeoJSON, ASAP XML).
"""

from wsi.eval.detections import DetectionsError, read_detections, write_detections
from wsi.eval.froc import FROCError, FROCResult, evaluate_froc
from wsi.eval.nms import nms
from wsi.eval.slide_auc import SlideLabelsError, read_slide_labels, score_slides, slide_auc

__all__ = [
    "DetectionsError", "read_detections", "write_detections",
    "FROCError", "FROCResult", "evaluate_froc",
    "nms",
    "SlideLabelsError", "read_slide_labels", "score_slides", "slide_auc",
]
