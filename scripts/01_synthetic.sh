#!/usr/bin/env bash
# Stage 01 (demo only): synthetic slides in place of the Camelyon16 download.
# Writes training slides (tumour slides with their ASAP XML, normal slides) to TRAIN_DIR and test slides (with
# Camelyon16-style ground-truth masks in TEST_DIR/masks) to TEST_DIR, all OpenSlide-readable generic TIFFs at
# 0.243 µm/px. Every slide also has lymphoid follicles (normal tissue packed with small dark nuclei, darker than
# tumour), so that colour alone does not separate tumour from normal. Camelyon16 users download the data
# instead (see docs/demo.md).
set -euo pipefail
TRAIN_DIR=${TRAIN_DIR:-demo_out/train}          # output: Tumor_NNN.tif/.xml, Normal_NNN.tif
TEST_DIR=${TEST_DIR:-demo_out/test}             # output: Test slides Tumor_1NN.tif/.xml, Normal_1NN.tif, masks/
SLIDE_SIZE=${SLIDE_SIZE:-4096}              # level-0 width and height
NUM_TRAIN_TUMOR=${NUM_TRAIN_TUMOR:-3}
NUM_TRAIN_NORMAL=${NUM_TRAIN_NORMAL:-2}
NUM_TEST_TUMOR=${NUM_TEST_TUMOR:-3}
NUM_TEST_NORMAL=${NUM_TEST_NORMAL:-2}
TUMORS_PER_SLIDE=${TUMORS_PER_SLIDE:-2}
TUMOR_SIZE=${TUMOR_SIZE:-"1300 1600"}       # major axis range, level-0 px (> ~1150: not isolated tumour cells)
LYMPHOID=${LYMPHOID:-4}                     # lymphoid follicles per slide: dark normal tissue that mimics tumour
SEED=${SEED:-0}
PYTHON=${PYTHON:-python}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# shellcheck disable=SC2086  # TUMOR_SIZE is two numbers
"$PYTHON" "$ROOT/wsi/bin/synthetic_slide.py" "$TRAIN_DIR" --num_tumor "$NUM_TRAIN_TUMOR" \
    --num_normal "$NUM_TRAIN_NORMAL" --size "$SLIDE_SIZE" --tumors_per_slide "$TUMORS_PER_SLIDE" \
    --tumor_size $TUMOR_SIZE --lymphoid "$LYMPHOID" --seed "$SEED"
# Test slides are numbered from 101 so that their names never collide with the training slides'; the first
# tumour of each test slide has a _2 hole (non-tumour in the mask), as some Camelyon16 annotations do.
# shellcheck disable=SC2086
"$PYTHON" "$ROOT/wsi/bin/synthetic_slide.py" "$TEST_DIR" --num_tumor "$NUM_TEST_TUMOR" \
    --num_normal "$NUM_TEST_NORMAL" --size "$SLIDE_SIZE" --tumors_per_slide "$TUMORS_PER_SLIDE" \
    --tumor_size $TUMOR_SIZE --lymphoid "$LYMPHOID" --seed "$((SEED + 1))" --start 101 --with_hole
