#!/usr/bin/env bash
# Stage 09: ground-truth masks for the FROC (wsi/bin/annotation_mask.py, folder mode): every XML_DIR/<stem>.xml
# (the test slides' tumour annotations) becomes GT_MASK_DIR/<stem>.tif, a pyramid of the slide's size, tumour 255,
# _2/Exclusion holes 0. Slides without an XML (normal slides) get no mask: the FROC treats them as normal.
# Camelyon16: XML_DIR=CAMELYON16/testing/lesion_annotations WSI_DIR=CAMELYON16/testing/images \
#             GT_MASK_DIR=gt_masks bash scripts/09_gt_masks.sh
set -euo pipefail
XML_DIR=${XML_DIR:-demo_out/test}               # input: <stem>.xml
WSI_DIR=${WSI_DIR:-demo_out/test}               # input: <stem>.tif (size and µm per pixel of each mask)
GT_MASK_DIR=${GT_MASK_DIR:-demo_out/gt_masks}   # output: <stem>.tif
PYTHON=${PYTHON:-python}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

"$PYTHON" "$ROOT/wsi/bin/annotation_mask.py" "$XML_DIR" "$GT_MASK_DIR" --wsi "$WSI_DIR"
