#!/usr/bin/env bash
# Stage 06: tissue masks (wsi/bin/tissue_mask.py) of every slide in WSI_DIR: MASK_DIR/<stem>.npy, bool,
# [x, y] order, the shape of the slide's level LEVEL.
# Camelyon16: WSI_DIR=CAMELYON16/testing/images MASK_DIR=tissue_masks bash scripts/06_tissue_mask.sh
set -euo pipefail
WSI_DIR=${WSI_DIR:-demo_out/test}               # input: <stem>.tif
MASK_DIR=${MASK_DIR:-demo_out/tissue_masks}     # output: <stem>.npy
LEVEL=${LEVEL:-6}
RGB_MIN=${RGB_MIN:-50}
SKIP_EXISTING=${SKIP_EXISTING:-0}           # 1: keep masks that exist (a resumed run), 0: recompute every mask
PYTHON=${PYTHON:-python}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

mkdir -p "$MASK_DIR"
for slide in "$WSI_DIR"/*.tif; do
    [ -e "$slide" ] || { echo "$0: error: $WSI_DIR: no *.tif slides" >&2; exit 2; }
    mask="$MASK_DIR/$(basename "$slide" .tif).npy"
    if [ "$SKIP_EXISTING" = 1 ] && [ -e "$mask" ]; then echo "$mask exists, skipped"; continue; fi
    "$PYTHON" "$ROOT/wsi/bin/tissue_mask.py" "$slide" "$mask" \
        --level "$LEVEL" --RGB_min "$RGB_MIN"
done
