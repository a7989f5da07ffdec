#!/usr/bin/env bash
# Stage 02: Camelyon16 XML annotations -> NCRF annotation JSONs (wsi/bin/camelyon16xml2json.py, folder mode).
# Every XML_DIR/<pid>.xml becomes JSON_DIR/<pid>.json. Training reads a JSON for every listed slide, normal
# slides included (the original shipped them); with WSI_DIR set, each Normal_* slide there without a JSON gets
# an empty one ({"positive": [], "negative": []}).
# Camelyon16:
#   XML_DIR=CAMELYON16/training/lesion_annotations JSON_DIR=jsons/train \
#   WSI_DIR=CAMELYON16/training/normal bash scripts/02_xml2json.sh
set -euo pipefail
XML_DIR=${XML_DIR:-demo_out/train}              # input: <pid>.xml
JSON_DIR=${JSON_DIR:-demo_out/jsons}            # output: <pid>.json
WSI_DIR=${WSI_DIR:-}                        # optional: slides whose Normal_* get an empty JSON
PYTHON=${PYTHON:-python}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

mkdir -p "$JSON_DIR"
"$PYTHON" "$ROOT/wsi/bin/camelyon16xml2json.py" "$XML_DIR" "$JSON_DIR"
if [ -n "$WSI_DIR" ]; then
    PYTHONPATH="$ROOT" "$PYTHON" - "$WSI_DIR" "$JSON_DIR" <<'PY'
import sys
from pathlib import Path

from wsi.data.annotation import Annotation
wsi_dir, json_dir = Path(sys.argv[1]), Path(sys.argv[2])
for slide in sorted(wsi_dir.glob("Normal_*.tif")):
    target = json_dir / f"{slide.stem}.json"
    if not target.exists():
        Annotation().to_json(target)
        print(f"{slide} -> {target}: normal slide, empty annotation")
PY
fi
