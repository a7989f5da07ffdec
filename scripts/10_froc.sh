#!/usr/bin/env bash
# Stage 10: Camelyon16 lesion-level FROC (wsi/bin/Evaluation_FROC.py) of the detection CSVs CSV_DIR/<stem>.csv
# against the ground-truth masks GT_MASK_DIR/<stem>.tif. Prints the original's lines ending "Avg Sensivity = ...";
# FROC_JSON (score, curve, per-slide TP/FP) and FROC_PLOT (the curve) are written when set.
# Camelyon16: GT_MASK_DIR=gt_masks CSV_DIR=csv/crf EXCLUDE=Test_049,Test_114 bash scripts/10_froc.sh
set -euo pipefail
GT_MASK_DIR=${GT_MASK_DIR:-demo_out/gt_masks}   # input: <stem>.tif
CSV_DIR=${CSV_DIR:-demo_out/csv/crf}            # input: <stem>.csv
EXCLUDE=${EXCLUDE:-}                        # e.g. Test_049,Test_114
FROC_JSON=${FROC_JSON:-}                    # output (optional): .json
FROC_PLOT=${FROC_PLOT:-}                    # output (optional): .png
PYTHON=${PYTHON:-python}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

args=()
[ -n "$EXCLUDE" ] && args+=(--exclude "$EXCLUDE")
[ -n "$FROC_JSON" ] && args+=(--json "$FROC_JSON")
[ -n "$FROC_PLOT" ] && args+=(--plot "$FROC_PLOT")
"$PYTHON" "$ROOT/wsi/bin/Evaluation_FROC.py" "$GT_MASK_DIR" "$CSV_DIR" "${args[@]}"
