#!/usr/bin/env python3
"""The table that ends a Camelyon16 run (scripts/camelyon16.sh): this run's FROC and AUC beside the paper's.

Usage: ``python scripts/camelyon16_report.py OUT_DIR EXCLUDE MODEL [MODEL ...]`` with MODEL ``crf`` or ``base``.
Reads ``OUT_DIR/results/<MODEL>_froc.json`` (Evaluation_FROC.py --json), ``<MODEL>_slide_scores.csv``
(slide_auc.py) and ``timings.tsv`` (camelyon16.sh: ``stage<TAB>seconds<TAB>this run|resumed|earlier``); prints
plain text.
"""
import csv
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from demo_report import slide_auc  # noqa: E402  (one AUC rule for the demo and this run)

NAMES = {"crf": "NCRF (ResNet-18 + CRF)", "base": "ResNet-18 baseline"}
# The published figures (Li & Ping, MIDL 2018; docs/evaluation.md): FROC on the Camelyon16 test set with Test_049 and
# Test_114 excluded. The paper's AUCs are not quoted here.
REFERENCE = {
    "crf": "0.8096 (paper, NCRF with hard negatives)",
    "base": "0.7825 (paper, as quoted by users); 0.7478 (users re-running the released checkpoint)",
}


def main(argv):
    out, exclude, models = Path(argv[0]), argv[1], argv[2:]
    results = out / "results"
    excluded = f"{exclude.replace(',', ' and ')} excluded" if exclude else "no slide excluded"
    lines = ["", f"Camelyon16 test set ({excluded}): this run beside the published figures",
             f"{'model':<24} {'FROC':>6} {'AUC':>6} {'slides':>6}  published FROC"]
    for kind in models:
        froc = json.loads((results / f"{kind}_froc.json").read_text())
        auc = slide_auc(results / f"{kind}_slide_scores.csv")
        auc_text = "n/a" if auc is None else f"{auc:.4f}"
        lines.append(f"{NAMES[kind]:<24} {froc['froc']:6.4f} {auc_text:>6} {froc['num_slides']:>6}  "
                     f"{REFERENCE[kind]}")
    lines.append("(FROC: lesion level, Camelyon16 rules; AUC: slide level, score = the map's maximum)")
    for kind in models:
        froc = json.loads((results / f"{kind}_froc.json").read_text())
        if not froc.get("curve", {}).get("thresholds", [None]):
            lines.append(f"Note: {NAMES[kind]}'s FROC was computed without thresholds: every detection and lesion "
                         "score takes one value (e.g. every probability 1.00000), and the organisers' rule, as the "
                         "original's, drops the lowest distinct score, which leaves no point on the curve: FROC 0. "
                         "More training or a lower C16_PROB_THRED spreads the scores.")
    lines += ["", "Time per stage (s)"]
    total = 0.0
    with open(results / "timings.tsv") as handle:
        for name, seconds, when in csv.reader(handle, delimiter="\t"):
            note = {"this run": "", "resumed": "  (resumed: with the interrupted attempts)"}.get(
                when, "  (an earlier run)")
            lines.append(f"  {name:<24} {float(seconds):10.1f}{note}")
            total += float(seconds)
    lines.append(f"  {'total':<24} {total:10.1f}")
    lines += ["", f"Outputs in {out}: results/ (FROC JSON and curve, slide scores, this summary), ckpt/<model>/ "
                  "(best.ckpt, train.ckpt, tensorboard events), probs/, csv/, export/, logs/"]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
