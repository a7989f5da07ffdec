#!/usr/bin/env bash
# Stage 08: detections (wsi/bin/nms.py) of every map PROBS_DIR/<stem>.npy: CSV_DIR/<stem>.csv, lines
# prob,x,y at level 0, no header (an empty file when nothing is above PROB_THRED).
# Camelyon16: PROBS_DIR=probs/crf CSV_DIR=csv/crf bash scripts/08_nms.sh
set -euo pipefail
PROBS_DIR=${PROBS_DIR:-demo_out/probs/crf}      # input: <stem>.npy
CSV_DIR=${CSV_DIR:-demo_out/csv/crf}            # output: <stem>.csv
LEVEL=${LEVEL:-6}
RADIUS=${RADIUS:-12}
PROB_THRED=${PROB_THRED:-0.5}
SIGMA=${SIGMA:-0}
PYTHON=${PYTHON:-python}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

mkdir -p "$CSV_DIR"
for map in "$PROBS_DIR"/*.npy; do
    [ -e "$map" ] || { echo "$0: error: $PROBS_DIR: no *.npy maps" >&2; exit 2; }
    "$PYTHON" "$ROOT/wsi/bin/nms.py" "$map" "$CSV_DIR/$(basename "$map" .npy).csv" --level "$LEVEL" \
        --radius "$RADIUS" --prob_thred "$PROB_THRED" --sigma "$SIGMA"
done
