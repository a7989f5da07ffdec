#!/usr/bin/env bash
# Stage 08: detections (wsi/bin/nms.py) of every map PROBS_DIR/<stem>.npy, in one process: CSV_DIR/<stem>.csv,
# lines prob,x,y at level 0, no header (an empty file when nothing is above PROB_THRED). Each map's sidecar
# gives its scale; set LEVEL only for maps without one (the original's 2**LEVEL rule, default 6).
# Camelyon16: PROBS_DIR=probs/crf CSV_DIR=csv/crf bash scripts/08_nms.sh
set -euo pipefail
PROBS_DIR=${PROBS_DIR:-demo_out/probs/crf}      # input: <stem>.npy
CSV_DIR=${CSV_DIR:-demo_out/csv/crf}            # output: <stem>.csv
LEVEL=${LEVEL:-}
RADIUS=${RADIUS:-12}
PROB_THRED=${PROB_THRED:-0.5}
SIGMA=${SIGMA:-0}
PYTHON=${PYTHON:-python}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

[ -d "$PROBS_DIR" ] || { echo "$0: error: $PROBS_DIR: no such folder of maps" >&2; exit 2; }
"$PYTHON" "$ROOT/wsi/bin/nms.py" "$PROBS_DIR" "$CSV_DIR" ${LEVEL:+--level "$LEVEL"} \
    --radius "$RADIUS" --prob_thred "$PROB_THRED" --sigma "$SIGMA"
