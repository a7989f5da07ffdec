#!/usr/bin/env bash
# Stage 12: exports for viewers (wsi/bin/export.py) of every map PROBS_DIR/<stem>.npy: EXPORT_DIR/<stem>.png
# (heatmap over the slide WSI_DIR/<stem>.tif), <stem>.geojson (QuPath: detections CSV_DIR/<stem>.csv as points,
# tumour contours at THRESHOLD as polygons) and <stem>.xml (the same for ASAP).
# Camelyon16: PROBS_DIR=probs/crf CSV_DIR=csv/crf WSI_DIR=CAMELYON16/testing/images EXPORT_DIR=export/crf \
#             bash scripts/12_export.sh
set -euo pipefail
PROBS_DIR=${PROBS_DIR:-demo_out/probs/crf}      # input: <stem>.npy
CSV_DIR=${CSV_DIR:-demo_out/csv/crf}            # input: <stem>.csv
WSI_DIR=${WSI_DIR:-demo_out/test}               # input: <stem>.tif
EXPORT_DIR=${EXPORT_DIR:-demo_out/export/crf}   # output: <stem>.png, .geojson, .xml
LEVEL=${LEVEL:-6}
THRESHOLD=${THRESHOLD:-0.5}
PYTHON=${PYTHON:-python}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

mkdir -p "$EXPORT_DIR"
for map in "$PROBS_DIR"/*.npy; do
    [ -e "$map" ] || { echo "$0: error: $PROBS_DIR: no *.npy maps" >&2; exit 2; }
    stem=$(basename "$map" .npy)
    "$PYTHON" "$ROOT/wsi/bin/export.py" heatmap "$map" "$EXPORT_DIR/$stem.png" --wsi "$WSI_DIR/$stem.tif" \
        --level "$LEVEL"
    "$PYTHON" "$ROOT/wsi/bin/export.py" geojson "$EXPORT_DIR/$stem.geojson" --csv "$CSV_DIR/$stem.csv" \
        --npy "$map" --threshold "$THRESHOLD" --level "$LEVEL"
    "$PYTHON" "$ROOT/wsi/bin/export.py" xml "$EXPORT_DIR/$stem.xml" --csv "$CSV_DIR/$stem.csv" \
        --npy "$map" --threshold "$THRESHOLD" --level "$LEVEL"
done
