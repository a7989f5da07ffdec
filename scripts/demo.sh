#!/usr/bin/env bash
# The whole NCRF pipeline on synthetic slides, in a few minutes on a CPU:
#   synthetic slides -> XML to JSON -> coordinate lists -> train NCRF (configs/demo_crf.json) and the ResNet
#   baseline (configs/demo_base.json), grids read on the fly -> tissue masks -> ground-truth masks -> probability
#   maps -> NMS -> FROC -> slide AUC -> heatmaps and QuPath GeoJSON.
# Each stage is one of the numbered scripts beside this one, run with the demo's paths. At the end it prints a
# table (FROC and AUC of each model, time per stage) and where the outputs lie.
#
#   bash scripts/demo.sh                      # the demo, outputs in demo_out/
#   DEMO_UNTRAINED=1 bash scripts/demo.sh     # the control: randomly initialised models, no training
#
# Variables: DEMO_DIR (output folder, default demo_out), DEMO_UNTRAINED (1: skip training), DEMO_MODELS
# ("crf base"), DEMO_SEED (0), DEMO_PROB_THRED (NMS threshold, default 0), DEMO_NUM_WORKERS (1), and, for small
# runs such as the test: DEMO_SLIDE_SIZE, DEMO_NUM_TRAIN_TUMOR, DEMO_NUM_TRAIN_NORMAL, DEMO_NUM_TEST_TUMOR,
# DEMO_NUM_TEST_NORMAL, DEMO_TUMORS_PER_SLIDE, DEMO_TUMOR_SIZE, DEMO_LYMPHOID, DEMO_TUMOR_PER_SLIDE (training
# centres per tumour slide), DEMO_NORMAL_PER_SLIDE, DEMO_CFG (a JSON object of config keys to override,
# e.g. '{"epoch": 1}'), DEMO_PROBS_ARGS (further probs_map.py options, e.g. '--runtime torch').
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SCRIPTS="$ROOT/scripts"
export PYTHON=${PYTHON:-python}

DEMO_DIR=${DEMO_DIR:-demo_out}
DEMO_UNTRAINED=${DEMO_UNTRAINED:-0}
DEMO_MODELS=${DEMO_MODELS:-"crf base"}              # configs/demo_<model>.json to train and evaluate
DEMO_SEED=${DEMO_SEED:-0}
DEMO_SLIDE_SIZE=${DEMO_SLIDE_SIZE:-4096}
DEMO_NUM_TRAIN_TUMOR=${DEMO_NUM_TRAIN_TUMOR:-3}      # the last one is the validation slide
DEMO_NUM_TRAIN_NORMAL=${DEMO_NUM_TRAIN_NORMAL:-2}    # the last one is the validation slide
DEMO_NUM_TEST_TUMOR=${DEMO_NUM_TEST_TUMOR:-3}
DEMO_NUM_TEST_NORMAL=${DEMO_NUM_TEST_NORMAL:-2}
DEMO_TUMORS_PER_SLIDE=${DEMO_TUMORS_PER_SLIDE:-2}
DEMO_TUMOR_SIZE=${DEMO_TUMOR_SIZE:-"1300 1600"}
DEMO_LYMPHOID=${DEMO_LYMPHOID:-4}
DEMO_TUMOR_PER_SLIDE=${DEMO_TUMOR_PER_SLIDE:-100}
DEMO_NORMAL_PER_SLIDE=${DEMO_NORMAL_PER_SLIDE:-100}
DEMO_CFG=${DEMO_CFG:-"{}"}
DEMO_NUM_WORKERS=${DEMO_NUM_WORKERS:-1}
DEMO_PROBS_ARGS=${DEMO_PROBS_ARGS:-}
# NMS keeps every local maximum (nms.py's default stops at 0.5): the FROC sweeps all thresholds and, by the
# Camelyon16 rule, drops the curve's lowest one, so a list cut at 0.5 without false positives loses its least
# confident lesion(s) (all lesions found at p = 1.00000 and 0.99999 scored 0.5).
DEMO_PROB_THRED=${DEMO_PROB_THRED:-0}

D=$DEMO_DIR
# The demo removes and rewrites its own folders under D (train, test, jsons, coords, runs, ...): only in a folder
# it made itself (its mark file), never in one of the user's, such as the repository root with its jsons/ and coords/.
MARK="$D/.ncrf-demo"
if [ -d "$D" ] && [ ! -e "$MARK" ] && [ -n "$(ls -A "$D")" ]; then
    echo "$0: error: DEMO_DIR $D holds files the demo did not write (no $(basename "$MARK")): give a new or empty folder" >&2
    exit 2
fi
mkdir -p "$D/logs" "$D/results"
[ -e "$MARK" ] || echo "written by scripts/demo.sh: its output folder (the demo removes only what it made)" > "$MARK"
if [ "$DEMO_UNTRAINED" = 1 ]; then SUFFIX=_untrained; else SUFFIX=; fi
TIMINGS="$D/results/timings$SUFFIX.tsv"
: > "$TIMINGS"
MODELS=()
for kind in $DEMO_MODELS; do
    case $kind in
        crf|base) MODELS+=("$kind$SUFFIX") ;;
        *) echo "$0: error: DEMO_MODELS: unknown model '$kind' (crf, base)" >&2; exit 2 ;;
    esac
done

# stage NAME COMMAND...: run one stage, its output in $D/logs/NAME.log, its time in $TIMINGS.
stage() {
    local name=$1; shift
    local log="$D/logs/$name.log" start seconds
    printf '%-28s' "$name" >&2
    start=$EPOCHREALTIME
    if ! "$@" > "$log" 2>&1; then
        echo " FAILED, the end of $log:" >&2
        tail -n 20 "$log" >&2
        exit 1
    fi
    seconds=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
    printf '%s\t%s\n' "$name" "$seconds" >> "$TIMINGS"
    printf ' %6s s\n' "$seconds" >&2
}

last_pid() {  # last_pid PREFIX COUNT START: the id of the last slide of a kind, e.g. Tumor_003
    printf '%s_%03d' "$1" "$(($3 + $2 - 1))"
}
VALID_PIDS="$(last_pid Tumor "$DEMO_NUM_TRAIN_TUMOR" 1) $(last_pid Normal "$DEMO_NUM_TRAIN_NORMAL" 1)"

# The run's configs: configs/demo_*.json with their demo_out/ paths moved to $D and DEMO_CFG applied.
make_configs() {
    mkdir -p "$D/configs"
    "$PYTHON" - "$ROOT/configs" "$D" "$DEMO_CFG" <<'PY'
import json, sys
from pathlib import Path
src, out, overrides = Path(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
for name in ("demo_crf", "demo_base"):
    cfg = json.loads((src / f"{name}.json").read_text())
    cfg = {k: (out + v[len("demo_out"):] if isinstance(v, str) and v.startswith("demo_out/") else v)
           for k, v in cfg.items()}
    cfg.update(overrides)
    (Path(out) / "configs" / f"{name}.json").write_text(json.dumps(cfg, indent=1))
    print(f"{out}/configs/{name}.json")
PY
}

# A randomly initialised model's checkpoint (the control run): what train.py would start from.
untrained_ckpt() {
    PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" - "$1" "$2" "$DEMO_SEED" <<'PY'
import sys
import torch
from wsi.config import load_config
from wsi.model import build_model, save_checkpoint
cfg_path, save_path, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
cfg = load_config(cfg_path)
torch.manual_seed(seed)
model = build_model(cfg)
save_checkpoint(f"{save_path}/best.ckpt", model, epoch=0, step=0, cfg=cfg)
print(f"{save_path}/best.ckpt: untrained {cfg['model']}, use_crf {cfg['use_crf']}, seed {seed}")
PY
}

write_labels() {  # reference.csv of the test slides, as Camelyon16's: <slide>,<Tumor|Normal>
    for slide in "$D/test"/*.tif; do
        stem=$(basename "$slide" .tif)
        case $stem in Tumor_*) echo "$stem,Tumor" ;; *) echo "$stem,Normal" ;; esac
    done > "$D/test/reference.csv"
}

echo "NCRF demo in $D (logs in $D/logs)" >&2
rm -rf "$D/train" "$D/test" "$D/jsons" "$D/coords" "$D/tissue_masks" "$D/gt_masks"
stage 01_synthetic env TRAIN_DIR="$D/train" TEST_DIR="$D/test" SLIDE_SIZE="$DEMO_SLIDE_SIZE" \
    NUM_TRAIN_TUMOR="$DEMO_NUM_TRAIN_TUMOR" NUM_TRAIN_NORMAL="$DEMO_NUM_TRAIN_NORMAL" \
    NUM_TEST_TUMOR="$DEMO_NUM_TEST_TUMOR" NUM_TEST_NORMAL="$DEMO_NUM_TEST_NORMAL" \
    TUMORS_PER_SLIDE="$DEMO_TUMORS_PER_SLIDE" TUMOR_SIZE="$DEMO_TUMOR_SIZE" LYMPHOID="$DEMO_LYMPHOID" \
    SEED="$DEMO_SEED" \
    bash "$SCRIPTS/01_synthetic.sh"
write_labels
stage 02_xml2json env XML_DIR="$D/train" JSON_DIR="$D/jsons" WSI_DIR="$D/train" bash "$SCRIPTS/02_xml2json.sh"
stage 03_sample_coords env WSI_DIR="$D/train" JSON_DIR="$D/jsons" COORDS_DIR="$D/coords" \
    TUMOR_PER_SLIDE="$DEMO_TUMOR_PER_SLIDE" NORMAL_PER_SLIDE="$DEMO_NORMAL_PER_SLIDE" VALID_PIDS="$VALID_PIDS" \
    SEED="$DEMO_SEED" bash "$SCRIPTS/03_sample_coords.sh"
make_configs > "$D/logs/configs.log"
# (04_patch_gen.sh is skipped: the demo configs read the grids straight from the slides.)
for tag in "${MODELS[@]}"; do
    kind=${tag%"$SUFFIX"}
    rm -rf "$D/runs/$tag"
    if [ "$DEMO_UNTRAINED" = 1 ]; then
        mkdir -p "$D/runs/$tag"
        stage "05_untrained_$kind" untrained_ckpt "$D/configs/demo_$kind.json" "$D/runs/$tag"
    else
        stage "05_train_$kind" env CFG="$D/configs/demo_$kind.json" SAVE_PATH="$D/runs/$tag" \
            NUM_WORKERS="$DEMO_NUM_WORKERS" SEED="$DEMO_SEED" bash "$SCRIPTS/05_train.sh"
    fi
done
stage 06_tissue_mask env WSI_DIR="$D/test" MASK_DIR="$D/tissue_masks" bash "$SCRIPTS/06_tissue_mask.sh"
stage 09_gt_masks env XML_DIR="$D/test" WSI_DIR="$D/test" GT_MASK_DIR="$D/gt_masks" bash "$SCRIPTS/09_gt_masks.sh"
for tag in "${MODELS[@]}"; do
    kind=${tag%"$SUFFIX"}
    rm -rf "$D/probs/$tag" "$D/csv/$tag" "$D/export/$tag"
    stage "07_probs_map_$tag" env WSI_DIR="$D/test" CKPT="$D/runs/$tag/best.ckpt" CFG="$D/configs/demo_$kind.json" \
        MASK_DIR="$D/tissue_masks" PROBS_DIR="$D/probs/$tag" NUM_WORKERS=0 PROBS_ARGS="$DEMO_PROBS_ARGS" \
        bash "$SCRIPTS/07_probs_map.sh"
    stage "08_nms_$tag" env PROBS_DIR="$D/probs/$tag" CSV_DIR="$D/csv/$tag" PROB_THRED="$DEMO_PROB_THRED" \
        bash "$SCRIPTS/08_nms.sh"
    stage "10_froc_$tag" env GT_MASK_DIR="$D/gt_masks" CSV_DIR="$D/csv/$tag" FROC_JSON="$D/results/${tag}_froc.json" \
        FROC_PLOT="$D/results/${tag}_froc.png" bash "$SCRIPTS/10_froc.sh"
    stage "11_auc_$tag" env PROBS_DIR="$D/probs/$tag" LABELS="$D/test/reference.csv" \
        SCORES="$D/results/${tag}_slide_scores.csv" bash "$SCRIPTS/11_auc.sh"
    stage "12_export_$tag" env PROBS_DIR="$D/probs/$tag" CSV_DIR="$D/csv/$tag" WSI_DIR="$D/test" \
        EXPORT_DIR="$D/export/$tag" FORMATS="png geojson" bash "$SCRIPTS/12_export.sh"
done
PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" "$SCRIPTS/demo_report.py" "$D" "$TIMINGS" "${MODELS[@]}" | tee "$D/results/summary$SUFFIX.txt"
