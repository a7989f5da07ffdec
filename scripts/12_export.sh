#!/usr/bin/env bash
# Stage 12: exports for viewers (wsi/bin/export.py) of every map PROBS_DIR/<stem>.npy: EXPORT_DIR/<stem>.png
# (heatmap over the slide WSI_DIR/<stem>.tif), <stem>.geojson (QuPath: detections CSV_DIR/<stem>.csv as points,
# tumour contours at THRESHOLD as polygons) and <stem>.xml (the same for ASAP); FORMATS picks among them.
# Camelyon16: PROBS_DIR=probs/crf CSV_DIR=csv/crf WSI_DIR=CAMELYON16/testing/images EXPORT_DIR=export/crf \
#             bash scripts/12_export.sh
set -euo pipefail
PROBS_DIR=${PROBS_DIR:-demo_out/probs/crf}      # input: <stem>.npy
CSV_DIR=${CSV_DIR:-demo_out/csv/crf}            # input: <stem>.csv
WSI_DIR=${WSI_DIR:-demo_out/test}               # input: <stem>.tif
EXPORT_DIR=${EXPORT_DIR:-demo_out/export/crf}   # output: <stem>.png, .geojson, .xml
LEVEL=${LEVEL:-}                                # only for maps without a sidecar (2**LEVEL, default 6)
THRESHOLD=${THRESHOLD:-0.5}
FORMATS=${FORMATS:-"png geojson xml"}       # which exports to write
PYTHON=${PYTHON:-python}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

mkdir -p "$EXPORT_DIR"
for map in "$PROBS_DIR"/*.npy; do
    [ -e "$map" ] || { echo "$0: error: $PROBS_DIR: no *.npy maps" >&2; exit 2; }
    stem=$(basename "$map" .npy)
    for format in $FORMATS; do
        case $format in
            png) "$PYTHON" "$ROOT/wsi/bin/export.py" heatmap "$map" "$EXPORT_DIR/$stem.png" \
                     --wsi "$WSI_DIR/$stem.tif" ${LEVEL:+--level "$LEVEL"} ;;
            geojson|xml) "$PYTHON" "$ROOT/wsi/bin/export.py" "$format" "$EXPORT_DIR/$stem.$format" \
                     --csv "$CSV_DIR/$stem.csv" --npy "$map" --threshold "$THRESHOLD" ${LEVEL:+--level "$LEVEL"} ;;
            *) echo "$0: error: FORMATS: unknown export '$format' (png, geojson, xml)" >&2; exit 2 ;;
        esac
    done
done
