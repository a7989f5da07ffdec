#!/usr/bin/env bash
# The whole NCRF reproduction on Camelyon16, from the download to the paper's table, in one resumable command:
#
#   bash scripts/camelyon16.sh CAMELYON16_DIR OUT_DIR
#
# CAMELYON16_DIR is the download as the challenge lays it out: training/tumor/Tumor_*.tif,
# training/normal/Normal_*.tif, training/lesion_annotations/Tumor_*.xml, testing/images/Test_*.tif,
# testing/lesion_annotations/Test_*.xml, testing/reference.csv (lower-case file names such as tumor_001.tif work
# too). Every stage below runs with the original's settings, for both models (NCRF and the ResNet-18 baseline),
# each stage through its numbered script beside this one (or a wsi/bin CLI), its output in OUT_DIR/logs/<stage>.log:
#
#   00_check          preflight: every slide opened, a sample of every level decoded (wsi/bin/check_slides.py)
#   01_layout         OUT_DIR/slides/{train,test}: links to the slides under the original's names (Tumor_001, ...)
#   02_jsons          annotation JSONs: the shipped jsons/ (default) or converted from the XMLs
#   03_coords         the shipped validation lists coords/*_valid.txt; train lists sampled from the train slides
#                     (200 000 tumour and 200 000 normal centres, as the original's README)
#   04_hnm_*          hard negatives as the paper: a first model (the baseline) trained on the random lists, maps
#                     of the tumour training slides, their false positives added to normal_train.txt
#   05_train_<model>  training on the fly from the slides (configs/resnet18_<model>.json: 768/256/224, batch 10,
#                     lr 0.001, 20 epochs); torchrun when several GPUs are visible
#   06_tissue_mask    tissue masks of the test slides (level 6)
#   07_probs_map_*    probability maps of the test slides (fast mode; the map equals the original's to 1e-5)
#   08_nms_*          detections (level 6, radius 12, threshold 0.5)
#   09_gt_masks       ground-truth masks from the test XMLs
#   10_froc_*         lesion-level FROC, Test_049 and Test_114 excluded
#   11_auc_*          slide-level ROC AUC
#   12_export_*       heatmap PNGs, QuPath GeoJSON and ASAP XML of the test slides
#
# A stage that finished writes OUT_DIR/state/<stage>.done and is skipped by the next run, so the same command
# resumes after an interruption (training continues from its last epoch, maps and masks that exist are kept).
# The run ends with a table of its FROC and AUC beside the paper's and the time of every stage
# (OUT_DIR/results/summary.txt).
#
# Variables (defaults: the original's settings; a rehearsal on small data overrides some):
#   C16_CHECK        sample (default), full (decode every region), skip
#   C16_JSONS        shipped (default: the repository's jsons/, byte-identical to the original's) or xml
#                    (convert CAMELYON16_DIR/training/lesion_annotations; split by C16_VALID_PIDS)
#   C16_VALID_PIDS   validation slides (default: the stems of jsons/valid, the original's split)
#   C16_VALID_LISTS  shipped (default: coords/*_valid.txt) or sample (sampled from the validation slides with
#                    C16_VALID_SAMPLE_ARGS, default "--tumor_per_slide 2000")
#   C16_SAMPLE_ARGS  sample_coords.py options of the train lists, default "--num_tumor 200000 --num_normal 200000"
#   C16_COORDS       a folder of your own lists: its tumor_train.txt and normal_train.txt (and *_valid.txt, if
#                    there) are used as they are, without sampling or mining (C16_HNM defaults to 0)
#   C16_HNM          1 (default): mine hard negatives with a first model; 0: train on the random lists
#   C16_HNM_MODEL    the first model, base (default) or crf;  C16_HNM_ARGS: hard_negatives.py options
#   C16_MODELS       "crf base" (default)
#   C16_CFG          a JSON object of config keys to override, e.g. '{"epoch": 1, "batch_size": 4}' (default {})
#   C16_DEVICE       cuda or cpu (default: cuda when present);  C16_NUM_WORKERS: loader workers (default 2)
#   C16_TORCHRUN     auto (default: torchrun --standalone over the visible GPUs when there are several), none,
#                    or a launcher command such as "torchrun --nproc_per_node=4"
#   C16_PROBS_ARGS   further probs_map.py options (--amp, --batch_size N, --num_workers N, ...)
#   C16_LEVEL (6), C16_PROB_THRED (0.5), C16_EXCLUDE (Test_049,Test_114), C16_FORMATS ("png geojson xml"),
#   C16_SEED (0), PYTHON (python)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SCRIPTS="$ROOT/scripts"
export PYTHON=${PYTHON:-python}

if [ $# -ne 2 ]; then
    echo "usage: $0 CAMELYON16_DIR OUT_DIR" >&2
    exit 2
fi
C16=$(cd "$1" 2>/dev/null && pwd) || { echo "$0: error: $1: no such folder" >&2; exit 2; }
for sub in training/tumor training/normal training/lesion_annotations testing/images; do
    [ -d "$C16/$sub" ] || { echo "$0: error: $C16/$sub: no such folder (expected the Camelyon16 layout)" >&2; exit 2; }
done
mkdir -p "$2"
D=$(cd "$2" && pwd)
# The run rewrites OUT_DIR/{slides,jsons,coords,...}: never the repository's own folders or the download.
if [ "$D" = "$ROOT" ] || [ "$D" = "$C16" ]; then
    echo "$0: error: OUT_DIR must be a folder of its own, not $D (the repository or the download)" >&2
    exit 2
fi

C16_CHECK=${C16_CHECK:-sample}
C16_JSONS=${C16_JSONS:-shipped}
C16_VALID_PIDS=${C16_VALID_PIDS:-$(cd "$ROOT/jsons/valid" && for f in *.json; do printf '%s ' "${f%.json}"; done)}
C16_VALID_LISTS=${C16_VALID_LISTS:-shipped}
C16_VALID_SAMPLE_ARGS=${C16_VALID_SAMPLE_ARGS:-"--tumor_per_slide 2000"}
C16_SAMPLE_ARGS=${C16_SAMPLE_ARGS:-"--num_tumor 200000 --num_normal 200000"}
C16_COORDS=${C16_COORDS:-}
if [ -n "$C16_COORDS" ]; then
    C16_COORDS=$(cd "$C16_COORDS" 2>/dev/null && pwd) || { echo "$0: error: C16_COORDS: no such folder" >&2; exit 2; }
    for name in tumor_train normal_train; do
        [ -f "$C16_COORDS/$name.txt" ] || { echo "$0: error: $C16_COORDS/$name.txt: no such list" >&2; exit 2; }
    done
    C16_HNM=${C16_HNM:-0}
fi
C16_HNM=${C16_HNM:-1}
C16_HNM_MODEL=${C16_HNM_MODEL:-base}
C16_HNM_ARGS=${C16_HNM_ARGS:-}
C16_MODELS=${C16_MODELS:-"crf base"}
C16_CFG=${C16_CFG:-"{}"}
C16_DEVICE=${C16_DEVICE:-}
C16_NUM_WORKERS=${C16_NUM_WORKERS:-2}
C16_TORCHRUN=${C16_TORCHRUN:-auto}
C16_PROBS_ARGS=${C16_PROBS_ARGS:-}
C16_LEVEL=${C16_LEVEL:-6}
C16_PROB_THRED=${C16_PROB_THRED:-0.5}
C16_EXCLUDE=${C16_EXCLUDE:-Test_049,Test_114}
C16_FORMATS=${C16_FORMATS:-"png geojson xml"}
C16_SEED=${C16_SEED:-0}

for kind in $C16_MODELS $C16_HNM_MODEL; do
    case $kind in crf|base) ;; *) echo "$0: error: unknown model '$kind' (crf, base)" >&2; exit 2 ;; esac
done
case $C16_JSONS in shipped|xml) ;; *) echo "$0: error: C16_JSONS: shipped or xml, got '$C16_JSONS'" >&2; exit 2 ;; esac
case $C16_VALID_LISTS in shipped|sample) ;;
    *) echo "$0: error: C16_VALID_LISTS: shipped or sample, got '$C16_VALID_LISTS'" >&2; exit 2 ;; esac

LOGS="$D/logs" STATE="$D/state" RESULTS="$D/results"
mkdir -p "$LOGS" "$STATE" "$RESULTS"
TIMINGS="$RESULTS/timings.tsv"
: > "$TIMINGS"

device_args=()
[ -n "$C16_DEVICE" ] && device_args=(--device "$C16_DEVICE")
TORCHRUN=
if [ "$C16_TORCHRUN" = auto ]; then
    if [ "$C16_DEVICE" != cpu ] && command -v nvidia-smi > /dev/null 2>&1 && command -v torchrun > /dev/null 2>&1; then
        if [ -n "${CUDA_VISIBLE_DEVICES:-}" ]; then
            gpus=$(tr ',' '\n' <<< "$CUDA_VISIBLE_DEVICES" | grep -c .)
        else
            gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
        fi
        [ "${gpus:-0}" -gt 1 ] && TORCHRUN="torchrun --standalone --nproc_per_node=$gpus"
    fi
elif [ "$C16_TORCHRUN" != none ]; then
    TORCHRUN=$C16_TORCHRUN
fi

# stage NAME COMMAND...: run one stage unless it finished in an earlier run; output appended to logs/NAME.log,
# its time to state/NAME.done (written last: a stage killed midway has no .done and runs again) and TIMINGS.
stage() {
    local name=$1; shift
    local log="$LOGS/$name.log" done="$STATE/$name.done" start seconds
    if [ -e "$done" ]; then
        printf '[%s] %-24s done in an earlier run (%s s), skipped\n' "$(date +%T)" "$name" "$(cat "$done")" >&2
        printf '%s\t%s\tearlier\n' "$name" "$(cat "$done")" >> "$TIMINGS"
        return
    fi
    printf '[%s] %-24s started (log: %s)\n' "$(date +%T)" "$name" "$log" >&2
    echo "=== $name started $(date '+%F %T')" >> "$log"
    start=$EPOCHREALTIME
    if ! "$@" >> "$log" 2>&1; then
        echo "[$(date +%T)] $name FAILED; the end of $log:" >&2
        tail -n 20 "$log" >&2
        echo "Fix the cause and run the same command again: finished stages are skipped." >&2
        exit 1
    fi
    seconds=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
    echo "$seconds" > "$done.tmp" && mv "$done.tmp" "$done"
    printf '%s\t%s\tthis run\n' "$name" "$seconds" >> "$TIMINGS"
    printf '[%s] %-24s finished in %s s\n' "$(date +%T)" "$name" "$seconds" >&2
}

# The original's names: Tumor_001, Normal_001, Test_001 (the GigaDB release writes tumor_001.tif, ...).
original_name() {
    local stem=$1
    case ${stem,,} in tumor_*|normal_*|test_*) echo "${stem^}" ;; *) echo "$stem" ;; esac
}

link_folder() {  # link_folder SRC_DIR SUFFIX DEST_DIR: DEST/<original name><suffix> -> SRC/<stem><suffix>
    local src=$1 suffix=$2 dest=$3 path stem
    mkdir -p "$dest"
    for path in "$src"/*"$suffix" "$src"/*"${suffix^^}"; do
        [ -e "$path" ] || continue
        stem=$(basename "$path"); stem=${stem%.*}
        ln -sfn "$path" "$dest/$(original_name "$stem")$suffix"
    done
}

layout() {
    rm -rf "$D/slides" "$D/xml"
    link_folder "$C16/training/tumor" .tif "$D/slides/train"
    link_folder "$C16/training/normal" .tif "$D/slides/train"
    link_folder "$C16/testing/images" .tif "$D/slides/test"
    link_folder "$C16/training/lesion_annotations" .xml "$D/xml/train"
    if [ -d "$C16/testing/lesion_annotations" ]; then
        link_folder "$C16/testing/lesion_annotations" .xml "$D/xml/test"
    else
        mkdir -p "$D/xml/test"
    fi
    # Test labels (Camelyon16's reference.csv: <slide>,<Tumor|Normal>,...) under the original's names; without
    # one, a test slide is Tumor when it has an annotation.
    if [ -f "$C16/testing/reference.csv" ]; then
        awk -F, 'BEGIN { OFS = "," } NF >= 2 { s = $1; l = tolower(s)
                 if (l ~ /^(tumor|normal|test)_/) s = toupper(substr(s, 1, 1)) substr(s, 2); $1 = s; print }' \
            "$C16/testing/reference.csv" > "$D/slides/reference.csv"
    else
        for slide in "$D/slides/test"/*.tif; do
            stem=$(basename "$slide" .tif)
            if [ -e "$D/xml/test/$stem.xml" ]; then echo "$stem,Tumor"; else echo "$stem,Normal"; fi
        done > "$D/slides/reference.csv"
    fi
    echo "$(ls "$D/slides/train" | wc -l) training and $(ls "$D/slides/test" | wc -l) test slides linked"
}

is_valid() { case " $C16_VALID_PIDS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

jsons() {
    rm -rf "$D/jsons"
    mkdir -p "$D/jsons/all" "$D/jsons/train" "$D/jsons/valid"
    if [ "$C16_JSONS" = shipped ]; then
        for split in train valid; do
            for path in "$ROOT/jsons/$split"/*.json; do
                ln -sfn "$path" "$D/jsons/$split/"; ln -sfn "$path" "$D/jsons/all/"
            done
        done
    else
        XML_DIR="$D/xml/train" JSON_DIR="$D/jsons/all" WSI_DIR="$D/slides/train" bash "$SCRIPTS/02_xml2json.sh"
        for path in "$D/jsons/all"/*.json; do
            pid=$(basename "$path" .json)
            if is_valid "$pid"; then ln -sfn "$path" "$D/jsons/valid/"; else ln -sfn "$path" "$D/jsons/train/"; fi
        done
    fi
    echo "$(ls "$D/jsons/train" | wc -l) training and $(ls "$D/jsons/valid" | wc -l) validation JSONs"
}

# Slides of a split that have a slide file and a JSON (the original left out Normal_086 and Normal_144).
pids_of() {  # pids_of train|valid [tumour]
    local path pid
    for path in "$D/jsons/$1"/*.json; do
        pid=$(basename "$path" .json)
        [ -e "$D/slides/train/$pid.tif" ] || continue
        [ "${2:-}" = tumour ] && [[ $pid != Tumor_* ]] && continue
        printf '%s ' "$pid"
    done
}

coords() {
    rm -rf "$D/coords"
    mkdir -p "$D/coords/random"
    if [ -n "$C16_COORDS" ] && [ -f "$C16_COORDS/tumor_valid.txt" ] && [ -f "$C16_COORDS/normal_valid.txt" ]; then
        cp "$C16_COORDS/tumor_valid.txt" "$C16_COORDS/normal_valid.txt" "$D/coords/"
    elif [ "$C16_VALID_LISTS" = shipped ]; then
        cp "$ROOT/coords/tumor_valid.txt" "$ROOT/coords/normal_valid.txt" "$D/coords/"
    else
        # shellcheck disable=SC2086  # option lists
        "$PYTHON" "$ROOT/wsi/bin/sample_coords.py" "$D/slides/train" "$D/jsons/all" "$D/coords" \
            --pids $(pids_of valid) --name valid --seed "$C16_SEED" $C16_VALID_SAMPLE_ARGS
    fi
    if [ -n "$C16_COORDS" ]; then
        cp "$C16_COORDS/tumor_train.txt" "$C16_COORDS/normal_train.txt" "$D/coords/random/"
        echo "train lists from $C16_COORDS"
    else
        WSI_DIR="$D/slides/train" JSON_DIR="$D/jsons/all" COORDS_DIR="$D/coords/random" PIDS="$(pids_of train)" \
            TUMOR_PER_SLIDE= SAMPLE_ARGS="$C16_SAMPLE_ARGS" SEED="$C16_SEED" bash "$SCRIPTS/03_sample_coords.sh"
    fi
    cp "$D/coords/random/tumor_train.txt" "$D/coords/tumor_train.txt"
    # Without hard-negative mining the random normal list is the final one.
    [ "$C16_HNM" = 1 ] || cp "$D/coords/random/normal_train.txt" "$D/coords/normal_train.txt"
    wc -l "$D/coords"/*.txt "$D/coords/random"/*.txt
}

# The run's configs: configs/resnet18_<model>.json with its patch folders replaced by this run's coordinate lists
# and slides (training on the fly) and C16_CFG applied. Written to OUT_DIR/configs/<name>.json.
make_config() {  # make_config MODEL NAME TUMOR_TRAIN NORMAL_TRAIN
    mkdir -p "$D/configs"
    "$PYTHON" - "$ROOT/configs/resnet18_$1.json" "$D/configs/$2.json" "$D" "$3" "$4" "$C16_CFG" <<'PY'
import json, sys
src, dst, out, tumor_train, normal_train, overrides = sys.argv[1:]
cfg = json.loads(open(src).read())
for name in ("tumor_train", "normal_train", "tumor_valid", "normal_valid"):
    del cfg[f"data_path_{name}"]
cfg.update({"json_path_train": f"{out}/jsons/all", "json_path_valid": f"{out}/jsons/all",
            "coords_tumor_train": tumor_train, "coords_normal_train": normal_train,
            "coords_tumor_valid": f"{out}/coords/tumor_valid.txt",
            "coords_normal_valid": f"{out}/coords/normal_valid.txt",
            "wsi_path_train": f"{out}/slides/train", "wsi_path_valid": f"{out}/slides/train"})
cfg.update(json.loads(overrides))
open(dst, "w").write(json.dumps(cfg, indent=1) + "\n")
print(dst, json.dumps(cfg))
PY
}

train_model() {  # train_model CONFIG SAVE_PATH: resumes from SAVE_PATH/train.ckpt when an earlier run left one
    local args="${device_args[*]}"
    [ -e "$2/train.ckpt" ] && args="$args --resume"
    CFG="$1" SAVE_PATH="$2" NUM_WORKERS="$C16_NUM_WORKERS" SEED="$C16_SEED" TRAIN_ARGS="$args" TORCHRUN="$TORCHRUN" \
        bash "$SCRIPTS/05_train.sh"
}

probs_maps() {  # probs_maps SLIDE_DIR CKPT CONFIG MASK_DIR PROBS_DIR: maps that exist are kept
    WSI_DIR="$1" CKPT="$2" CFG="$3" MASK_DIR="$4" PROBS_DIR="$5" \
        PROBS_ARGS="${device_args[*]} $C16_PROBS_ARGS" bash "$SCRIPTS/07_probs_map.sh"
}

hard_negatives() {
    # shellcheck disable=SC2046,SC2086  # word lists
    "$PYTHON" "$ROOT/wsi/bin/hard_negatives.py" "$D/probs/hnm" "$D/jsons/all" "$D/coords/random/normal_train.txt" \
        --output "$D/coords/normal_train.txt" --mask_path "$D/tissue_masks/hnm" --level "$C16_LEVEL" \
        --pids $(pids_of train tumour) --seed "$C16_SEED" $C16_HNM_ARGS
    wc -l "$D/coords/random/normal_train.txt" "$D/coords/normal_train.txt"
}

echo "NCRF on Camelyon16: $C16 -> $D (logs in $D/logs${TORCHRUN:+; training under $TORCHRUN})" >&2

case $C16_CHECK in
    skip) ;;
    full) stage 00_check "$PYTHON" "$ROOT/wsi/bin/check_slides.py" "$C16" --full --level "$C16_LEVEL" ;;
    *) stage 00_check "$PYTHON" "$ROOT/wsi/bin/check_slides.py" "$C16" --level "$C16_LEVEL" ;;
esac
stage 01_layout layout
stage 02_jsons jsons
stage 03_coords coords

if [ "$C16_HNM" = 1 ]; then
    mkdir -p "$D/slides/hnm"
    for pid in $(pids_of train tumour); do ln -sfn "$D/slides/train/$pid.tif" "$D/slides/hnm/"; done
    make_config "$C16_HNM_MODEL" "hnm_$C16_HNM_MODEL" "$D/coords/random/tumor_train.txt" \
        "$D/coords/random/normal_train.txt" > "$LOGS/configs.log"
    stage 04_hnm_train train_model "$D/configs/hnm_$C16_HNM_MODEL.json" "$D/ckpt/hnm"
    stage 04_hnm_tissue_mask env WSI_DIR="$D/slides/hnm" MASK_DIR="$D/tissue_masks/hnm" LEVEL="$C16_LEVEL" \
        SKIP_EXISTING=1 bash "$SCRIPTS/06_tissue_mask.sh"
    stage 04_hnm_probs_map probs_maps "$D/slides/hnm" "$D/ckpt/hnm/best.ckpt" "$D/configs/hnm_$C16_HNM_MODEL.json" \
        "$D/tissue_masks/hnm" "$D/probs/hnm"
    stage 04_hnm_mine hard_negatives
fi

for kind in $C16_MODELS; do
    make_config "$kind" "$kind" "$D/coords/tumor_train.txt" "$D/coords/normal_train.txt" >> "$LOGS/configs.log"
    stage "05_train_$kind" train_model "$D/configs/$kind.json" "$D/ckpt/$kind"
done
stage 06_tissue_mask env WSI_DIR="$D/slides/test" MASK_DIR="$D/tissue_masks/test" LEVEL="$C16_LEVEL" SKIP_EXISTING=1 \
    bash "$SCRIPTS/06_tissue_mask.sh"
stage 09_gt_masks env XML_DIR="$D/xml/test" WSI_DIR="$D/slides/test" GT_MASK_DIR="$D/gt_masks" \
    bash "$SCRIPTS/09_gt_masks.sh"
for kind in $C16_MODELS; do
    stage "07_probs_map_$kind" probs_maps "$D/slides/test" "$D/ckpt/$kind/best.ckpt" "$D/configs/$kind.json" \
        "$D/tissue_masks/test" "$D/probs/$kind"
    stage "08_nms_$kind" env PROBS_DIR="$D/probs/$kind" CSV_DIR="$D/csv/$kind" LEVEL="$C16_LEVEL" \
        PROB_THRED="$C16_PROB_THRED" bash "$SCRIPTS/08_nms.sh"
    stage "10_froc_$kind" env GT_MASK_DIR="$D/gt_masks" CSV_DIR="$D/csv/$kind" EXCLUDE="$C16_EXCLUDE" \
        FROC_JSON="$RESULTS/${kind}_froc.json" FROC_PLOT="$RESULTS/${kind}_froc.png" bash "$SCRIPTS/10_froc.sh"
    stage "11_auc_$kind" env PROBS_DIR="$D/probs/$kind" LABELS="$D/slides/reference.csv" EXCLUDE="$C16_EXCLUDE" \
        SCORES="$RESULTS/${kind}_slide_scores.csv" bash "$SCRIPTS/11_auc.sh"
    stage "12_export_$kind" env PROBS_DIR="$D/probs/$kind" CSV_DIR="$D/csv/$kind" WSI_DIR="$D/slides/test" \
        EXPORT_DIR="$D/export/$kind" LEVEL="$C16_LEVEL" FORMATS="$C16_FORMATS" bash "$SCRIPTS/12_export.sh"
done
# shellcheck disable=SC2086  # the model list
"$PYTHON" "$SCRIPTS/camelyon16_report.py" "$D" "$C16_EXCLUDE" $C16_MODELS | tee "$RESULTS/summary.txt"
