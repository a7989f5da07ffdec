#!/usr/bin/env bash
# Stage 07: probability maps (wsi/bin/probs_map.py, folder mode) of every slide in WSI_DIR with its tissue mask
# MASK_DIR/<stem>.npy: PROBS_DIR/<stem>.npy, float64, [x, y], the mask's shape. Maps that exist are skipped
# (OVERWRITE=1 recomputes them). PROBS_ARGS passes further options (--shard K/N, --amp, --GPU 0, ...).
# Camelyon16: WSI_DIR=CAMELYON16/testing/images CKPT=ckpt/crf/best.ckpt CFG=configs/resnet18_crf.json \
#             MASK_DIR=tissue_masks PROBS_DIR=probs/crf bash scripts/07_probs_map.sh
set -euo pipefail
WSI_DIR=${WSI_DIR:-demo_out/test}               # input: slides
CKPT=${CKPT:-ckpt/crf/best.ckpt}               # input: checkpoint (05_train.sh's default output)
CFG=${CFG:-demo_out/configs/demo_crf.json}      # input: the config it was trained with
MASK_DIR=${MASK_DIR:-demo_out/tissue_masks}     # input: <stem>.npy tissue masks
PROBS_DIR=${PROBS_DIR:-demo_out/probs/crf}      # output: <stem>.npy
MODE=${MODE:-fast}                          # fast (default) or faithful (the original's algorithm)
EIGHT_AVG=${EIGHT_AVG:-0}
NUM_WORKERS=${NUM_WORKERS:-5}
OVERWRITE=${OVERWRITE:-0}
PROBS_ARGS=${PROBS_ARGS:-}
PYTHON=${PYTHON:-python}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

args=(--mode "$MODE" --eight_avg "$EIGHT_AVG" --num_workers "$NUM_WORKERS")
[ "$OVERWRITE" = 1 ] && args+=(--overwrite)
# shellcheck disable=SC2086
"$PYTHON" "$ROOT/wsi/bin/probs_map.py" "$WSI_DIR" "$CKPT" "$CFG" "$MASK_DIR" "$PROBS_DIR" "${args[@]}" $PROBS_ARGS
