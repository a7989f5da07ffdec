#!/usr/bin/env bash
# Stage 04 (optional): grid-image PNGs for the patch-folder configs (wsi/bin/patch_gen.py), one folder per list:
# PATCH_DIR/<list stem>/{0.png, 1.png, ..., list.txt}. The demo configs read the grids straight from the slides
# (coords_* keys) and skip this stage; the original configs (data_path_* keys) need it. 200 000 patches of
# 768 px take ~200 GB.
# Camelyon16: WSI_DIR=CAMELYON16/training/all COORDS_DIR=coords PATCH_DIR=/PATCHES bash scripts/04_patch_gen.sh
set -euo pipefail
WSI_DIR=${WSI_DIR:-demo_out/train}              # input: <pid>.tif
COORDS_DIR=${COORDS_DIR:-coords}               # input: the lists below (the repository's coords/)
LISTS=${LISTS:-"tumor_train normal_train tumor_valid normal_valid"}
PATCH_DIR=${PATCH_DIR:-demo_out/patches}        # output: PATCH_DIR/<list>/
PATCH_SIZE=${PATCH_SIZE:-768}               # the config's image_size
NUM_PROCESS=${NUM_PROCESS:-5}
PYTHON=${PYTHON:-python}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

for name in $LISTS; do
    "$PYTHON" "$ROOT/wsi/bin/patch_gen.py" "$WSI_DIR" "$COORDS_DIR/$name.txt" "$PATCH_DIR/$name" \
        --patch_size "$PATCH_SIZE" --num_process "$NUM_PROCESS"
done
