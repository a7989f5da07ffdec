#!/usr/bin/env python3
"""Summary of a demo run (scripts/demo.sh): FROC and slide AUC per model, time per stage, where outputs lie.

Usage: ``python scripts/demo_report.py DEMO_DIR TIMINGS TAG [TAG ...]`` with TAG a model's name in the run
(``crf``, ``base``, ``crf_untrained``, ...). Reads ``DEMO_DIR/results/<TAG>_froc.json`` (Evaluation_FROC.py
--json), ``<TAG>_slide_scores.csv`` (slide_auc.py) and TIMINGS (demo.sh's ``stage<TAB>seconds`` lines); prints a
plain-text table.
"""
import csv
import json
import sys
from pathlib import Path

from wsi.eval.slide_auc import roc_auc

NAMES = {"crf": "NCRF (ResNet-18 + CRF)", "base": "ResNet-18 baseline"}


def slide_auc(path):
    """ROC AUC of the slide scores CSV (slide,score,label with a header), tumour positive; None with one class."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    labels = [row["label"] == "Tumor" for row in rows]
    if len(set(labels)) < 2:
        return None
    return roc_auc(labels, [float(row["score"]) for row in rows])


def model_results(results, tag):
    """One model's headline numbers from ``results/<tag>_froc.json`` and ``<tag>_slide_scores.csv``: a dict of
    ``froc``, ``auc`` (None with one class), ``found`` (lesions hit by a detection of probability >= 0.5),
    ``num_tumours`` and ``fps`` (false positives among the detections of probability >= 0.5)."""
    froc = json.loads((results / f"{tag}_froc.json").read_text())
    # Lesions hit and false positives among the detections of probability >= 0.5 (the CSVs may hold lower ones:
    # the FROC sweeps every threshold).
    found = sum(1 for s in froc["slides"].values() for v in s["detection_summary"].values() if v and v[0] >= 0.5)
    fps = sum(1 for s in froc["slides"].values() for v in s["fp_summary"].values() if v[0] >= 0.5)
    return {"froc": froc["froc"], "auc": slide_auc(results / f"{tag}_slide_scores.csv"), "found": found,
            "num_tumours": froc["num_tumours"], "fps": fps}


def main(argv):
    demo_dir, timings, tags = Path(argv[0]), Path(argv[1]), argv[2:]
    results = demo_dir / "results"
    lines = ["", "Results on the synthetic test slides",
             f"{'model':<36} {'FROC':>6} {'AUC':>6} {'lesions found':>14} {'FPs':>5}"]
    for tag in tags:
        row = model_results(results, tag)
        kind, _, untrained = tag.partition("_")
        name = NAMES.get(kind, kind) + (" untrained" if untrained else "")
        auc_text = "  n/a" if row["auc"] is None else f"{row['auc']:6.3f}"
        found_text = f"{row['found']}/{row['num_tumours']}"
        lines.append(f"{name:<36} {row['froc']:6.3f} {auc_text:>6} {found_text:>14} {row['fps']:>5}")
    lines.append("(lesions found and FPs: detections of probability >= 0.5; AUC: slide score = the map's maximum)")
    lines += ["", "Time per stage (s)"]
    total = 0.0
    with open(timings) as handle:
        for row in csv.reader(handle, delimiter="\t"):
            lines.append(f"  {row[0]:<30} {float(row[1]):7.1f}")
            total += float(row[1])
    lines.append(f"  {'total':<30} {total:7.1f}")
    d = str(demo_dir)
    outputs = [
        (f"{d}/train, {d}/test", "synthetic slides <slide>.tif, their ASAP XML; test labels test/reference.csv"),
        (f"{d}/jsons", "annotation JSONs of the training slides"),
        (f"{d}/coords", "coordinate lists tumor_train.txt, normal_train.txt, tumor_valid.txt, normal_valid.txt"),
        (f"{d}/configs", "the run's configs (configs/demo_*.json with the paths of this run)"),
        (f"{d}/runs/<model>", "best.ckpt, train.ckpt, cfg.json, tensorboard events (tensorboard --logdir)"),
        (f"{d}/tissue_masks", "tissue masks <slide>.npy ([x, y] bool, level 6)"),
        (f"{d}/gt_masks", "ground-truth masks <slide>.tif (tumour 255)"),
        (f"{d}/probs/<model>", "probability maps <slide>.npy ([x, y] float64, level 6)"),
        (f"{d}/csv/<model>", "detections <slide>.csv (prob,x,y at level 0)"),
        (f"{d}/results", "<model>_froc.json/.png, <model>_slide_scores.csv, this summary, the timings"),
        (f"{d}/export/<model>", "heatmap <slide>.png and QuPath <slide>.geojson"),
        (f"{d}/logs", "each stage's output"),
    ]
    width = max(len(path) for path, _ in outputs)
    lines += ["", f"Outputs (<model>: {', '.join(tags)})"]
    lines += [f"  {path:<{width}}  {what}" for path, what in outputs]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
