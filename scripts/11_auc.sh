#!/usr/bin/env bash
# Stage 11: slide-level ROC AUC, Camelyon16 task 1 (wsi/bin/slide_auc.py): each map's maximum against the slide
# labels LABELS (<slide>,<Tumor|Normal> per line; Camelyon16's reference.csv works as it is). Prints
# "AUC = ..." and writes SCORES (slide,score,label).
# Camelyon16: PROBS_DIR=probs/crf LABELS=CAMELYON16/testing/reference.csv SCORES=results/crf_scores.csv \
#             EXCLUDE=Test_049,Test_114 bash scripts/11_auc.sh
set -euo pipefail
PROBS_DIR=${PROBS_DIR:-demo_out/probs/crf}      # input: <stem>.npy
LABELS=${LABELS:-demo_out/test/reference.csv}   # input: slide labels
SCORES=${SCORES:-demo_out/results/crf_slide_scores.csv}  # output
SCORE=${SCORE:-max}                         # max or topk
EXCLUDE=${EXCLUDE:-}
PYTHON=${PYTHON:-python}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

args=(--score "$SCORE")
[ -n "$EXCLUDE" ] && args+=(--exclude "$EXCLUDE")
mkdir -p "$(dirname "$SCORES")"
"$PYTHON" "$ROOT/wsi/bin/slide_auc.py" "$PROBS_DIR" "$LABELS" "$SCORES" "${args[@]}"
