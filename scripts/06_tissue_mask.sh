#!/usr/bin/env bash
# Stage 06: tissue masks (wsi/bin/tissue_mask.py) of every slide in WSI_DIR (any OpenSlide suffix), in one
# process: MASK_DIR/<stem>.npy, bool, [x, y] order, the shape of the slide's level LEVEL, and its sidecar
# <stem>.json. Every mask is recomputed unless SKIP_EXISTING=1 (a resumed run keeps the masks that exist).
# Camelyon16: WSI_DIR=CAMELYON16/testing/images MASK_DIR=tissue_masks bash scripts/06_tissue_mask.sh
set -euo pipefail
WSI_DIR=${WSI_DIR:-demo_out/test}               # input: <stem>.tif (.svs, .ndpi, ...)
MASK_DIR=${MASK_DIR:-demo_out/tissue_masks}     # output: <stem>.npy
LEVEL=${LEVEL:-6}                           # or auto: each slide's level nearest 64 level-0 px per cell
RGB_MIN=${RGB_MIN:-50}
SKIP_EXISTING=${SKIP_EXISTING:-0}           # 1: keep masks that exist (a resumed run), 0: recompute every mask
PYTHON=${PYTHON:-python}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

[ -d "$WSI_DIR" ] || { echo "$0: error: $WSI_DIR: no such folder of slides" >&2; exit 2; }
"$PYTHON" "$ROOT/wsi/bin/tissue_mask.py" "$WSI_DIR" "$MASK_DIR" --level "$LEVEL" --RGB_min "$RGB_MIN" \
    $([ "$SKIP_EXISTING" = 1 ] || echo --overwrite)
