#!/usr/bin/env bash
# Stage 03: coordinate lists of grid centres (wsi/bin/sample_coords.py): COORDS_DIR/tumor_train.txt,
# normal_train.txt and, for the slides in VALID_PIDS, tumor_valid.txt and normal_valid.txt (pid,x,y per line at
# level 0, shuffled). Tumour centres lie inside tumour polygons, normal ones in tissue outside them (normal
# slides and the normal tissue of tumour slides). Every slide in WSI_DIR is sampled; Normal_* slides need no
# annotation. SAMPLE_ARGS passes further options (--margin, --min_tissue, --mask_path, ...).
# Camelyon16 (slides of both kinds linked into one folder; 200 000 centres of each kind as the original):
#   WSI_DIR=CAMELYON16/training/all JSON_DIR=jsons/train COORDS_DIR=coords TUMOR_PER_SLIDE= \
#   SAMPLE_ARGS="--num_tumor 200000 --num_normal 200000 --valid_fraction 0.1" bash scripts/03_sample_coords.sh
set -euo pipefail
WSI_DIR=${WSI_DIR:-demo_out/train}              # input: <pid>.tif
JSON_DIR=${JSON_DIR:-demo_out/jsons}            # input: <pid>.json (tumour slides at least)
COORDS_DIR=${COORDS_DIR:-coords}               # output folder of the lists (the repository's coords/)
TUMOR_PER_SLIDE=${TUMOR_PER_SLIDE-2000}     # tumour centres per tumour slide (empty: leave to SAMPLE_ARGS)
NORMAL_PER_SLIDE=${NORMAL_PER_SLIDE-}       # normal centres per slide (empty: as many as tumour centres in all)
VALID_PIDS=${VALID_PIDS:-}                  # slides for the *_valid.txt lists (space-separated), empty: none
PIDS=${PIDS:-}                              # slides to sample (space-separated), empty: every slide in WSI_DIR
SEED=${SEED:-0}
SAMPLE_ARGS=${SAMPLE_ARGS:-}
PYTHON=${PYTHON:-python}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

pids=()
if [ -n "$PIDS" ]; then
    # shellcheck disable=SC2206  # a word list
    pids=($PIDS)
else
    for slide in "$WSI_DIR"/*.tif; do
        [ -e "$slide" ] || { echo "$0: error: $WSI_DIR: no *.tif slides" >&2; exit 2; }
        pids+=("$(basename "$slide" .tif)")
    done
fi
args=(--pids "${pids[@]}" --seed "$SEED")
[ -n "$TUMOR_PER_SLIDE" ] && args+=(--tumor_per_slide "$TUMOR_PER_SLIDE")
[ -n "$NORMAL_PER_SLIDE" ] && args+=(--normal_per_slide "$NORMAL_PER_SLIDE")
# shellcheck disable=SC2206  # word lists
[ -n "$VALID_PIDS" ] && args+=(--valid_pids $VALID_PIDS)
# shellcheck disable=SC2206
"$PYTHON" "$ROOT/wsi/bin/sample_coords.py" "$WSI_DIR" "$JSON_DIR" "$COORDS_DIR" "${args[@]}" $SAMPLE_ARGS
