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
#   00_check          preflight: every slide opened, 1% of every level decoded (wsi/bin/check_slides.py)
#   01_layout         OUT_DIR/slides/{train,test}: links to the slides under the original's names (Tumor_001, ...)
#   02_jsons          annotation JSONs: the shipped jsons/ (default) or converted from the XMLs
#   03_coords         the shipped validation lists coords/*_valid.txt; train lists sampled from the train slides
#                     (200 000 tumour and 200 000 normal centres, as the original's README)
#   04_hnm_*          hard negatives as the paper: a first model (the baseline) trained on the random lists, maps
#                     of the tumour training slides, their false positives added to normal_train.txt
#   05_train_<model>  training on the fly from the slides (configs/resnet18_<model>.json: 768/256/224, batch 10,
#                     lr 0.001, 20 epochs); torchrun when several GPUs are visible
#   06_tissue_mask    tissue masks of the test slides, each at its level nearest 64 px per cell (6 on Camelyon16)
#   07_probs_map_*    probability maps of the test slides (fast mode; the map equals the original's to 1e-5)
#   08_nms_*          detections (each map's scale from its sidecar; radius 12, threshold 0.5)
#   09_gt_masks       ground-truth masks from the test XMLs
#   10_froc_*         lesion-level FROC, Test_049 and Test_114 excluded
#   11_auc_*          slide-level ROC AUC
#   12_export_*       heatmap PNGs, QuPath GeoJSON and ASAP XML of the test slides
#
# A stage is done only when it worked (every sub-command succeeded, its outputs checked): it then writes
# OUT_DIR/state/<stage>.done, which records what made it (settings, inputs, the stages it read from). The next run
# skips a stage whose record matches, redoes one whose record differs (and the stages after it) saying why, and
# continues an interrupted one (training from its last epoch, maps and masks that exist kept): after a failure,
# fix the cause and run the same command again. A redone training starts a new run (the old one moved aside to
# ckpt/<model>.<date>); deleting a stage's .done redoes it. OUT_DIR must be new, empty or made by this command
# (OUT_DIR/.camelyon16-out), outside the repository and the download; one run at a time (OUT_DIR/.camelyon16.lock).
# Each run logs to OUT_DIR/logs/<stage>.<run>.log (<stage>.log links to the latest). The run ends with a table of
# its FROC and AUC beside the paper's and the time of every stage (OUT_DIR/results/summary.txt).
#
# Variables (defaults: the original's settings; a rehearsal on small data overrides some):
#   C16_CHECK        sample (default: 1% of each level's regions), full (decode every region), skip
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
#   C16_LEVEL        auto (default: each slide's level nearest 64 level-0 px per cell) or a level for every slide
#   C16_UNTIL        stop after this stage (e.g. 03_coords); the next run without it goes on
#   C16_PROB_THRED (0.5), C16_EXCLUDE (Test_049,Test_114), C16_FORMATS ("png geojson xml"), C16_SEED (0),
#   PYTHON (python). Every C16_* is checked before the first stage (a typo in a name is refused too).
set -euo pipefail
shopt -s inherit_errexit  # a failing command inside $(...) fails the stage too
ROOT=$(cd -P "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
SCRIPTS="$ROOT/scripts"
export PYTHON=${PYTHON:-python}
PROG=camelyon16.sh
die() { echo "$PROG: error: $*" >&2; exit 2; }

if [ $# -ne 2 ]; then
    echo "usage: $0 CAMELYON16_DIR OUT_DIR" >&2
    exit 2
fi
C16=$(cd -P "$1" 2>/dev/null && pwd -P) || die "$1: no such folder"
for sub in training/tumor training/normal training/lesion_annotations testing/images; do
    [ -d "$C16/$sub" ] || die "$C16/$sub: no such folder (expected the Camelyon16 layout)"
done
# OUT_DIR resolved physically (symlinks, "..", trailing slashes) before anything is created in it: the run writes
# OUT_DIR/{slides,jsons,coords,...}, so it may be neither the repository, nor the download, nor inside them.
D=$(realpath -m -- "$2")
inside() { [ "$1" = "$2" ] || [[ $1 == "$2"/* ]]; }
inside "$D" "$ROOT" && die "OUT_DIR $2 is $D, in the repository $ROOT: give a folder of its own outside it"
inside "$D" "$C16" && die "OUT_DIR $2 is $D, in the download $C16: give a folder of its own outside it"
[ -e "$D" ] && [ ! -d "$D" ] && die "OUT_DIR $2 is a file, expected a folder"
# One run at a time into an OUT_DIR: a lock held until the run and its children end (a SIGKILL frees it).
MARK="$D/.camelyon16-out" LOCK="$D/.camelyon16.lock"
lock() {
    exec 9>> "$LOCK"
    flock -n 9 || die "another run is writing into $D (it holds $LOCK): wait for it, or give another OUT_DIR"
}
if [ -e "$MARK" ]; then lock; fi

# Settings: every C16_* variable is checked here, before any stage runs.
KNOWN="C16_CHECK C16_JSONS C16_VALID_PIDS C16_VALID_LISTS C16_VALID_SAMPLE_ARGS C16_SAMPLE_ARGS C16_COORDS C16_HNM
C16_HNM_MODEL C16_HNM_ARGS C16_MODELS C16_CFG C16_DEVICE C16_NUM_WORKERS C16_TORCHRUN C16_PROBS_ARGS C16_LEVEL
C16_PROB_THRED C16_EXCLUDE C16_FORMATS C16_SEED C16_UNTIL"
for name in $(compgen -e | grep '^C16_' || true); do
    case " ${KNOWN//$'\n'/ } " in *" $name "*) ;;
        *) die "$name: no such setting (the settings: ${KNOWN//$'\n'/ })" ;; esac
done
C16_CHECK=${C16_CHECK:-sample}
C16_JSONS=${C16_JSONS:-shipped}
C16_VALID_PIDS=${C16_VALID_PIDS:-$(cd "$ROOT/jsons/valid" && for f in *.json; do printf '%s ' "${f%.json}"; done)}
C16_VALID_LISTS=${C16_VALID_LISTS:-shipped}
C16_VALID_SAMPLE_ARGS=${C16_VALID_SAMPLE_ARGS:-"--tumor_per_slide 2000"}
C16_SAMPLE_ARGS=${C16_SAMPLE_ARGS:-"--num_tumor 200000 --num_normal 200000"}
C16_COORDS=${C16_COORDS:-}
if [ -n "$C16_COORDS" ]; then
    C16_COORDS=$(cd -P "$C16_COORDS" 2>/dev/null && pwd -P) || die "C16_COORDS: $C16_COORDS: no such folder"
    for name in tumor_train normal_train; do
        [ -s "$C16_COORDS/$name.txt" ] || die "C16_COORDS: $C16_COORDS/$name.txt: no such list (or it is empty)"
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
C16_LEVEL=${C16_LEVEL:-auto}
C16_PROB_THRED=${C16_PROB_THRED:-0.5}
C16_EXCLUDE=${C16_EXCLUDE-Test_049,Test_114}
C16_FORMATS=${C16_FORMATS:-"png geojson xml"}
C16_SEED=${C16_SEED:-0}
C16_UNTIL=${C16_UNTIL:-}

[ -n "${C16_MODELS// /}" ] || die "C16_MODELS: empty (crf, base or both)"
for kind in $C16_MODELS $C16_HNM_MODEL; do
    case $kind in crf|base) ;; *) die "C16_MODELS/C16_HNM_MODEL: unknown model '$kind' (crf, base)" ;; esac
done
case $C16_CHECK in sample|full|skip) ;; *) die "C16_CHECK: sample, full or skip, got '$C16_CHECK'" ;; esac
case $C16_JSONS in shipped|xml) ;; *) die "C16_JSONS: shipped or xml, got '$C16_JSONS'" ;; esac
case $C16_VALID_LISTS in shipped|sample) ;; *) die "C16_VALID_LISTS: shipped or sample, got '$C16_VALID_LISTS'" ;; esac
case $C16_HNM in 0|1) ;; *) die "C16_HNM: 0 or 1, got '$C16_HNM'" ;; esac
case $C16_DEVICE in ''|cpu|cuda|cuda:[0-9]|cuda:[0-9][0-9]) ;;
    *) die "C16_DEVICE: cpu, cuda or cuda:N (empty: cuda when present), got '$C16_DEVICE'" ;; esac
[[ $C16_NUM_WORKERS =~ ^[0-9]+$ ]] || die "C16_NUM_WORKERS: a whole number, got '$C16_NUM_WORKERS'"
[[ $C16_SEED =~ ^[0-9]+$ ]] || die "C16_SEED: a whole number, got '$C16_SEED'"
[[ $C16_LEVEL =~ ^(auto|[0-9]+)$ ]] || die "C16_LEVEL: auto or a level number, got '$C16_LEVEL'"
[[ $C16_PROB_THRED =~ ^(0(\.[0-9]*)?|\.[0-9]+|1(\.0*)?)$ ]] \
    || die "C16_PROB_THRED: a probability 0-1, got '$C16_PROB_THRED'"
[[ $C16_EXCLUDE =~ ^([A-Za-z0-9_.-]+(,[A-Za-z0-9_.-]+)*)?$ ]] \
    || die "C16_EXCLUDE: slide names separated by commas (Test_049,Test_114), got '$C16_EXCLUDE'"
[[ $C16_VALID_PIDS =~ ^[[:space:]]*[A-Za-z0-9_.-]+([[:space:]]+[A-Za-z0-9_.-]+)*[[:space:]]*$ ]] \
    || die "C16_VALID_PIDS: slide names separated by spaces (Tumor_101 Normal_141), got '$C16_VALID_PIDS'"
[ -n "${C16_FORMATS// /}" ] || die "C16_FORMATS: empty (png, geojson, xml)"
for format in $C16_FORMATS; do
    case $format in png|geojson|xml) ;; *) die "C16_FORMATS: unknown export '$format' (png, geojson, xml)" ;; esac
done
case $C16_TORCHRUN in auto|none) ;;
    *) command -v "${C16_TORCHRUN%% *}" > /dev/null || die "C16_TORCHRUN: ${C16_TORCHRUN%% *}: no such command" ;;
esac
command -v "$PYTHON" > /dev/null || die "PYTHON: $PYTHON: no such command"
# shellcheck disable=SC2086  # the model list
C16_CFG=$C16_CFG C16_SAMPLE_ARGS=$C16_SAMPLE_ARGS C16_VALID_SAMPLE_ARGS=$C16_VALID_SAMPLE_ARGS \
    C16_HNM_ARGS=$C16_HNM_ARGS C16_PROBS_ARGS=$C16_PROBS_ARGS \
    "$PYTHON" "$SCRIPTS/camelyon16_settings.py" "$ROOT" $C16_MODELS $C16_HNM_MODEL || exit 2

# The stages of this run, in order (C16_UNTIL must name one of them).
STAGES=()
[ "$C16_CHECK" = skip ] || STAGES+=(00_check)
STAGES+=(01_layout 02_jsons 03_coords)
[ "$C16_HNM" = 1 ] && STAGES+=(04_hnm_train 04_hnm_tissue_mask 04_hnm_probs_map 04_hnm_mine)
for kind in $C16_MODELS; do STAGES+=("05_train_$kind"); done
STAGES+=(06_tissue_mask 09_gt_masks)
for kind in $C16_MODELS; do
    for name in 07_probs_map 08_nms 10_froc 11_auc 12_export; do STAGES+=("${name}_$kind"); done
done
if [ -n "$C16_UNTIL" ]; then
    case " ${STAGES[*]} " in *" $C16_UNTIL "*) ;;
        *) die "C16_UNTIL: '$C16_UNTIL' is not a stage of this run (${STAGES[*]})" ;; esac
fi

# OUT_DIR: new, empty, or one this command made (its mark file); anything else is refused, so that nothing the
# command did not write is ever removed.
if [ -d "$D" ] && [ ! -e "$MARK" ] && [ -n "$(ls -A "$D")" ]; then
    die "OUT_DIR $D holds files this command did not write (no $(basename "$MARK")): give a new or empty folder"
fi
mkdir -p "$D"
if [ ! -e "$MARK" ]; then
    echo "written by scripts/camelyon16.sh: its output folder (the stages remove only what they made)" > "$MARK"
    lock
fi

LOGS="$D/logs" STATE="$D/state" RESULTS="$D/results"
mkdir -p "$LOGS" "$STATE" "$RESULTS"
TIMINGS="$RESULTS/timings.tsv"
: > "$TIMINGS"
RUN_ID=$(date +%Y%m%d-%H%M%S)-$$

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

# Markers. state/<stage>.done: the stage finished; it records what made it (the settings and inputs below, and
# the finishing stamps of the stages it read from). state/<stage>.run: the stage started (an interrupted or
# failed attempt: its settings, and the start and log of every attempt). state/<stage>.made: this command made
# the stage's outputs (so a .done deleted by hand means "redo", not "someone else's files").
declare -A STAMP  # stage -> the stamp it finished with (read by the stages after it)

key_of() { sed '1,/^---$/d' "$1"; }       # the recorded settings and inputs of a marker
head_of() { sed '/^---$/,$d' "$1"; }      # the lines before them

why_changed() {  # why_changed MARKER KEY: the settings, earlier stages and inputs that differ, in words
    awk 'function what(line, f, n) { n = split(line, f, " ")
             if (f[1] == "setting") { sub(/=.*/, "", f[2]); return "1 " f[2] }
             if (f[1] == "after") return "2 " f[2] " (redone)"
             sub(/.*\//, "", f[2]); return "3 " f[2] }
         NR == FNR { old[$0] = 1; next } { new[$0] = 1 }
         END { for (l in new) if (!(l in old)) seen[what(l)] = 1
               for (l in old) if (!(l in new)) seen[what(l)] = 1
               n = 0; for (k in seen) keys[++n] = k
               for (i = 2; i <= n; i++) for (j = i; j > 1 && keys[j - 1] > keys[j]; j--) {
                   t = keys[j]; keys[j] = keys[j - 1]; keys[j - 1] = t }
               for (i = 1; i <= n && i <= 4; i++) s = s (i > 1 ? ", " : "") substr(keys[i], 3)
               if (n > 4) s = s " and " n - 4 " more"
               print (n ? s " changed" : "its record changed") }' <(key_of "$1") <(printf '%s\n' "$2")
}

# Settings and inputs, one per line: "setting NAME=value", "input PATH SIZE MTIME" (links followed).
settings() { local name; for name in "$@"; do printf 'setting %s=%s\n' "$name" "${!name}"; done; }
inputs() {  # inputs PATH...: files, or every file in a folder (not recursive)
    local path
    for path in "$@"; do
        [ -e "$path" ] || continue
        find -L "$path" -maxdepth 1 -type f -printf 'input %p %s %T@\n'
    done | sort
}

# stage NAME "DEPS" "RECORD" COMMAND...: run one stage unless it finished with this RECORD (settings and inputs,
# see above) and after the same finishes of its DEPS (stages it reads from). A stage runs in a subshell with
# `set -e`: any failing command fails it, and it checks its outputs before its .done is written. The command
# finds in STAGE_MODE how it starts: new (first time: outputs found there are kept, e.g. maps made beforehand),
# resume (an interrupted attempt with the same record: continue it) or redo (the outputs are this command's and
# stale: remove them, or move a training aside). Output: logs/NAME.<run>.log (logs/NAME.log links to the latest).
stage() {
    local name=$1 deps=$2 record=$3; shift 3
    local done="$STATE/$name.done" run="$STATE/$name.run" made="$STATE/$name.made"
    local log="$LOGS/$name.$RUN_ID.log" key dep why="" mode=new start seconds earlier=0 status stamp when
    key=$(printf '%s\n' "$record"
          for dep in $deps; do printf 'after %s %s\n' "$dep" "${STAMP[$dep]:?$dep has not run}"; done)
    if [ -e "$done" ]; then
        if [ "$(key_of "$done")" = "$key" ]; then
            seconds=$(head_of "$done" | awk '$1 == "seconds" { print $2 }')
            STAMP[$name]=$(head_of "$done" | awk '$1 == "finished" { print $2 }')
            printf '[%s] %-24s done in an earlier run (%s s), skipped\n' "$(date +%T)" "$name" "$seconds" >&2
            printf '%s\t%s\tearlier\n' "$name" "$seconds" >> "$TIMINGS"
            return
        fi
        why=$(why_changed "$done" "$key") mode=redo
    elif [ -e "$run" ]; then
        if [ "$(key_of "$run")" = "$key" ]; then mode=resume; else why=$(why_changed "$run" "$key") mode=redo; fi
    elif [ -e "$made" ]; then
        why="its .done was deleted" mode=redo
    fi
    if [ "$mode" = resume ]; then
        # The earlier attempts' time: from each start to the last write of its log.
        earlier=$(head_of "$run" | while read -r _ began path; do
                      if [ -e "$path" ]; then echo "$began $(stat -c %.3Y "$path")"; fi; done |
                  awk '{ if ($2 > $1) t += $2 - $1 } END { printf "%.1f", t }')
        head_of "$run" > "$run.tmp"
    else
        rm -f "$done" "$made"
        : > "$run.tmp"
    fi
    start=$EPOCHREALTIME
    { echo "attempt $start $log"; echo ---; printf '%s\n' "$key"; } >> "$run.tmp" && mv "$run.tmp" "$run"
    ln -sfn "$(basename "$log")" "$LOGS/$name.log"
    case $mode in
        new) printf '[%s] %-24s started (log: %s)\n' "$(date +%T)" "$name" "$log" >&2 ;;
        resume) printf '[%s] %-24s resumed (%s s in earlier attempts; log: %s)\n' "$(date +%T)" "$name" "$earlier" \
                    "$log" >&2 ;;
        redo) printf '[%s] %-24s redone: %s (log: %s)\n' "$(date +%T)" "$name" "$why" "$log" >&2 ;;
    esac
    echo "=== $name $mode $(date '+%F %T')${why:+: $why}" >> "$log"
    set +e
    ( set -e; STAGE_MODE=$mode; "$@" ) >> "$log" 2>&1
    status=$?
    set -e
    if [ "$status" -ne 0 ]; then
        echo "[$(date +%T)] $name FAILED (exit status $status); the end of $log:" >&2
        tail -n 20 "$log" >&2
        echo "Fix the cause and run the same command again: finished stages are skipped, changed ones redone." >&2
        exit 1
    fi
    seconds=$(awk -v a="$start" -v b="$EPOCHREALTIME" -v e="$earlier" 'BEGIN { printf "%.1f", b - a + e }')
    stamp="$(date +%Y%m%dT%H%M%S.%N)"
    { echo "seconds $seconds"; echo "finished $stamp"; echo ---; printf '%s\n' "$key"; } > "$done.tmp"
    mv "$done.tmp" "$done"
    echo "$stamp" > "$made"
    rm -f "$run"
    STAMP[$name]=$stamp
    when="this run"; [ "$earlier" = 0.0 ] || [ "$earlier" = 0 ] || when="resumed"
    printf '%s\t%s\t%s\n' "$name" "$seconds" "$when" >> "$TIMINGS"
    printf '[%s] %-24s finished in %s s\n' "$(date +%T)" "$name" "$seconds" >&2
    if [ "$name" = "$C16_UNTIL" ]; then
        echo "[$(date +%T)] stopped after $name (C16_UNTIL); run without it to go on" >&2
        exit 0
    fi
}

fail() { echo "$PROG: error: $*"; return 1; }

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
    rm -rf "$D/slides" "$D/xml"  # this command's own links (OUT_DIR carries its mark)
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
    local train test
    train=$(find "$D/slides/train" -name '*.tif' | wc -l) test=$(find "$D/slides/test" -name '*.tif' | wc -l)
    [ "$train" -gt 0 ] || fail "no training slides (*.tif) in $C16/training/{tumor,normal}"
    [ "$test" -gt 0 ] || fail "no test slides (*.tif) in $C16/testing/images"
    echo "$train training and $test test slides linked"
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
            [ -e "$path" ] || continue
            pid=$(basename "$path" .json)
            if is_valid "$pid"; then ln -sfn "$path" "$D/jsons/valid/"; else ln -sfn "$path" "$D/jsons/train/"; fi
        done
        # Every XML became a JSON and every normal slide has one.
        for path in "$D/xml/train"/*.xml "$D/slides/train"/Normal_*.tif; do
            [ -e "$path" ] || continue
            pid=$(basename "$path"); pid=${pid%.*}
            [ -s "$D/jsons/all/$pid.json" ] || fail "$pid: no annotation JSON written ($D/jsons/all/$pid.json)"
        done
    fi
    local train valid
    train=$(find "$D/jsons/train" -name '*.json' | wc -l) valid=$(find "$D/jsons/valid" -name '*.json' | wc -l)
    [ "$train" -gt 0 ] || fail "no training JSONs in $D/jsons/train"
    echo "$train training and $valid validation JSONs"
}

# Slides of a split that have a slide file and a JSON (the original left out Normal_086 and Normal_144).
pids_of() {  # pids_of train|valid [tumour]
    local path pid
    for path in "$D/jsons/$1"/*.json; do
        [ -e "$path" ] || continue
        pid=$(basename "$path" .json)
        [ -e "$D/slides/train/$pid.tif" ] || continue
        if [ "${2:-}" = tumour ] && [[ $pid != Tumor_* ]]; then continue; fi
        printf '%s ' "$pid"
    done
}

coords() {
    rm -rf "$D/coords"
    mkdir -p "$D/coords/random"
    local valid train
    if [ -n "$C16_COORDS" ] && [ -f "$C16_COORDS/tumor_valid.txt" ] && [ -f "$C16_COORDS/normal_valid.txt" ]; then
        cp "$C16_COORDS/tumor_valid.txt" "$C16_COORDS/normal_valid.txt" "$D/coords/"
    elif [ "$C16_VALID_LISTS" = shipped ]; then
        cp "$ROOT/coords/tumor_valid.txt" "$ROOT/coords/normal_valid.txt" "$D/coords/"
    else
        valid=$(pids_of valid)
        [ -n "$valid" ] || fail "C16_VALID_LISTS=sample: no slide of C16_VALID_PIDS ($C16_VALID_PIDS) has both a" \
            "slide in $D/slides/train and a JSON in $D/jsons/valid"
        # shellcheck disable=SC2086  # option lists
        "$PYTHON" "$ROOT/wsi/bin/sample_coords.py" "$D/slides/train" "$D/jsons/all" "$D/coords" \
            --pids $valid --name valid --seed "$C16_SEED" $C16_VALID_SAMPLE_ARGS
    fi
    if [ -n "$C16_COORDS" ]; then
        cp "$C16_COORDS/tumor_train.txt" "$C16_COORDS/normal_train.txt" "$D/coords/random/"
        echo "train lists from $C16_COORDS"
    else
        train=$(pids_of train)
        [ -n "$train" ] || fail "no training slide has both a slide in $D/slides/train and a JSON in $D/jsons/train"
        WSI_DIR="$D/slides/train" JSON_DIR="$D/jsons/all" COORDS_DIR="$D/coords/random" PIDS="$train" \
            TUMOR_PER_SLIDE= SAMPLE_ARGS="$C16_SAMPLE_ARGS" SEED="$C16_SEED" bash "$SCRIPTS/03_sample_coords.sh"
    fi
    cp "$D/coords/random/tumor_train.txt" "$D/coords/tumor_train.txt"
    # Without hard-negative mining the random normal list is the final one.
    if [ "$C16_HNM" != 1 ]; then cp "$D/coords/random/normal_train.txt" "$D/coords/normal_train.txt"; fi
    wc -l "$D/coords"/*.txt "$D/coords/random"/*.txt
    for path in "$D/coords"/{tumor,normal}_valid.txt "$D/coords/random"/{tumor,normal}_train.txt; do
        [ -s "$path" ] || fail "$path: empty list (change the sampling settings or the slides)"
    done
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

# train_model CONFIG SAVE_PATH. A new or redone training starts a new run: a folder left by an earlier one is
# moved aside to SAVE_PATH.<date> (kept, never resumed as finished); a resumed one continues from train.ckpt.
train_model() {
    local save=$2 aside args="${device_args[*]}"
    if [ "$STAGE_MODE" != resume ] && [ -e "$save" ]; then
        aside="$save.$(date +%Y%m%d-%H%M%S)"
        while [ -e "$aside" ]; do aside="$aside.1"; done
        mv "$save" "$aside"
        echo "$save: the training there (made otherwise) moved aside to $aside; a new run starts"
    fi
    if [ -e "$save/train.ckpt" ]; then
        args="$args --resume"
        PYTHONPATH="$ROOT" "$PYTHON" -c 'import sys; from wsi.fileio import remove_stale_temporaries as r
for p in r(sys.argv[1], own=True): print(f"{p}: an interrupted write, removed")' "$save"
    fi
    CFG="$1" SAVE_PATH="$save" NUM_WORKERS="$C16_NUM_WORKERS" SEED="$C16_SEED" TRAIN_ARGS="$args" \
        TORCHRUN="$TORCHRUN" bash "$SCRIPTS/05_train.sh"
    for file in best.ckpt train.ckpt; do [ -s "$save/$file" ] || fail "$save/$file: not written"; done
}

# Every slide of SLIDE_DIR has OUT_DIR/<stem>.SUFFIX (a mask, a map, ...).
check_each() {  # check_each SLIDE_DIR OUT_DIR SUFFIX WHAT
    local slide stem
    for slide in "$1"/*.tif; do
        [ -e "$slide" ] || continue
        stem=$(basename "$slide" .tif)
        [ -s "$2/$stem.$3" ] || fail "$stem: no $4 ($2/$stem.$3)"
    done
}

tissue_masks() {  # tissue_masks SLIDE_DIR MASK_DIR: masks that exist are kept unless the stage is redone
    if [ "$STAGE_MODE" = redo ]; then rm -rf "$2"; fi
    WSI_DIR="$1" MASK_DIR="$2" LEVEL="$C16_LEVEL" SKIP_EXISTING=1 bash "$SCRIPTS/06_tissue_mask.sh"
    check_each "$1" "$2" npy "tissue mask"
}

probs_maps() {  # probs_maps SLIDE_DIR CKPT CONFIG MASK_DIR PROBS_DIR: maps that exist are kept unless redone
    local failed status=0
    if [ "$STAGE_MODE" = redo ]; then rm -rf "$5"; fi
    # A map with failed positions (<stem>.failed.txt) is not finished: probs_map.py computes its slide again
    # (after a damaged slide was replaced; positions that still fail are listed again).
    WSI_DIR="$1" CKPT="$2" CFG="$3" MASK_DIR="$4" PROBS_DIR="$5" \
        PROBS_ARGS="${device_args[*]} $C16_PROBS_ARGS" bash "$SCRIPTS/07_probs_map.sh" || status=$?
    for failed in "$5"/*.failed.txt; do
        [ -e "$failed" ] || continue
        fail "$(basename "$failed" .failed.txt): positions that could not be read, listed in $failed (a damaged" \
            "slide: replace it, or move it out of the download, and run the same command again)"
    done
    [ "$status" = 0 ] || return "$status"
    check_each "$1" "$5" npy "probability map"
}

hard_negatives() {
    local tumours
    tumours=$(pids_of train tumour)
    # shellcheck disable=SC2086  # word lists
    "$PYTHON" "$ROOT/wsi/bin/hard_negatives.py" "$D/probs/hnm" "$D/jsons/all" "$D/coords/random/normal_train.txt" \
        --output "$D/coords/normal_train.txt" --mask_path "$D/tissue_masks/hnm" \
        --pids $tumours --seed "$C16_SEED" $C16_HNM_ARGS
    wc -l "$D/coords/random/normal_train.txt" "$D/coords/normal_train.txt"
    [ -s "$D/coords/normal_train.txt" ] || fail "$D/coords/normal_train.txt: not written"
}

# A stage that rewrites a whole folder: redone, the folder is emptied first (no CSV of an earlier slide stays).
fresh_folder() { if [ "$STAGE_MODE" = redo ]; then rm -rf "$1"; fi; mkdir -p "$1"; }

nms() {  # nms PROBS_DIR CSV_DIR
    fresh_folder "$2"
    PROBS_DIR="$1" CSV_DIR="$2" PROB_THRED="$C16_PROB_THRED" bash "$SCRIPTS/08_nms.sh"
    check_each "$D/slides/test" "$2" csv "detections CSV"
}

froc() {  # froc KIND
    rm -f "$RESULTS/$1_froc.json" "$RESULTS/$1_froc.png"
    GT_MASK_DIR="$D/gt_masks" CSV_DIR="$D/csv/$1" EXCLUDE="$C16_EXCLUDE" FROC_JSON="$RESULTS/$1_froc.json" \
        FROC_PLOT="$RESULTS/$1_froc.png" bash "$SCRIPTS/10_froc.sh"
    [ -s "$RESULTS/$1_froc.json" ] || fail "$RESULTS/$1_froc.json: not written"
}

auc() {  # auc KIND
    rm -f "$RESULTS/$1_slide_scores.csv"
    PROBS_DIR="$D/probs/$1" LABELS="$D/slides/reference.csv" EXCLUDE="$C16_EXCLUDE" \
        SCORES="$RESULTS/$1_slide_scores.csv" bash "$SCRIPTS/11_auc.sh"
    [ -s "$RESULTS/$1_slide_scores.csv" ] || fail "$RESULTS/$1_slide_scores.csv: not written"
}

exports() {  # exports KIND
    local format
    fresh_folder "$D/export/$1"
    PROBS_DIR="$D/probs/$1" CSV_DIR="$D/csv/$1" WSI_DIR="$D/slides/test" EXPORT_DIR="$D/export/$1" \
        FORMATS="$C16_FORMATS" bash "$SCRIPTS/12_export.sh"
    for format in $C16_FORMATS; do check_each "$D/slides/test" "$D/export/$1" "$format" "$format export"; done
}

gt_masks() {
    fresh_folder "$D/gt_masks"
    XML_DIR="$D/xml/test" WSI_DIR="$D/slides/test" GT_MASK_DIR="$D/gt_masks" bash "$SCRIPTS/09_gt_masks.sh"
}

slide_folders="$C16/training/tumor $C16/training/normal $C16/testing/images"
echo "NCRF on Camelyon16: $C16 -> $D (run $RUN_ID, logs in $D/logs${TORCHRUN:+; training under $TORCHRUN})" >&2

# shellcheck disable=SC2086  # folder lists
case $C16_CHECK in
    skip) ;;
    full) stage 00_check "" "$(settings C16_CHECK C16_LEVEL; inputs $slide_folders)" \
              "$PYTHON" "$ROOT/wsi/bin/check_slides.py" "$C16" --full --level "$C16_LEVEL" ;;
    *) stage 00_check "" "$(settings C16_CHECK C16_LEVEL; inputs $slide_folders)" \
           "$PYTHON" "$ROOT/wsi/bin/check_slides.py" "$C16" --level "$C16_LEVEL" ;;
esac
# Layout: the file names (links); the labels' content.
stage 01_layout "" "$(find -L "$C16" -type f -printf 'name %P\n' | sort; inputs "$C16/testing/reference.csv")" layout
# shellcheck disable=SC2086
json_inputs="$D/xml/train"
if [ "$C16_JSONS" = shipped ]; then json_inputs="$ROOT/jsons/train $ROOT/jsons/valid"; fi
# shellcheck disable=SC2086
stage 02_jsons "" "$(settings C16_JSONS C16_VALID_PIDS; inputs $json_inputs
    find -L "$D/slides/train" -name '*.tif' -printf 'name %f\n' | sort)" jsons
# shellcheck disable=SC2086
stage 03_coords 02_jsons "$(settings C16_VALID_LISTS C16_VALID_SAMPLE_ARGS C16_SAMPLE_ARGS C16_COORDS C16_HNM C16_SEED
    inputs "$C16/training/tumor" "$C16/training/normal" ${C16_COORDS:+"$C16_COORDS"}
    [ "$C16_VALID_LISTS" = sample ] || inputs "$ROOT/coords/tumor_valid.txt" "$ROOT/coords/normal_valid.txt")" coords

config_record() { printf 'setting config=%s\n' "$(tr -d '\n' < "$1")"; settings C16_SEED; }
train_after=03_coords
if [ "$C16_HNM" = 1 ]; then
    mkdir -p "$D/slides/hnm"
    for pid in $(pids_of train tumour); do ln -sfn "$D/slides/train/$pid.tif" "$D/slides/hnm/"; done
    make_config "$C16_HNM_MODEL" "hnm_$C16_HNM_MODEL" "$D/coords/random/tumor_train.txt" \
        "$D/coords/random/normal_train.txt" > "$LOGS/configs.$RUN_ID.log"
    stage 04_hnm_train 03_coords "$(config_record "$D/configs/hnm_$C16_HNM_MODEL.json")" \
        train_model "$D/configs/hnm_$C16_HNM_MODEL.json" "$D/ckpt/hnm"
    stage 04_hnm_tissue_mask "" "$(settings C16_LEVEL; inputs "$D/slides/hnm")" \
        tissue_masks "$D/slides/hnm" "$D/tissue_masks/hnm"
    stage 04_hnm_probs_map "04_hnm_train 04_hnm_tissue_mask" "$(settings C16_PROBS_ARGS)" \
        probs_maps "$D/slides/hnm" "$D/ckpt/hnm/best.ckpt" "$D/configs/hnm_$C16_HNM_MODEL.json" \
        "$D/tissue_masks/hnm" "$D/probs/hnm"
    stage 04_hnm_mine "03_coords 04_hnm_probs_map" "$(settings C16_HNM_ARGS C16_SEED)" hard_negatives
    train_after="03_coords 04_hnm_mine"
fi

for kind in $C16_MODELS; do
    make_config "$kind" "$kind" "$D/coords/tumor_train.txt" "$D/coords/normal_train.txt" >> "$LOGS/configs.$RUN_ID.log"
    stage "05_train_$kind" "$train_after" "$(config_record "$D/configs/$kind.json")" \
        train_model "$D/configs/$kind.json" "$D/ckpt/$kind"
done
stage 06_tissue_mask "" "$(settings C16_LEVEL; inputs "$C16/testing/images")" \
    tissue_masks "$D/slides/test" "$D/tissue_masks/test"
stage 09_gt_masks "" "$(inputs "$C16/testing/images" "$C16/testing/lesion_annotations")" gt_masks
for kind in $C16_MODELS; do
    stage "07_probs_map_$kind" "05_train_$kind 06_tissue_mask" "$(settings C16_PROBS_ARGS)" \
        probs_maps "$D/slides/test" "$D/ckpt/$kind/best.ckpt" "$D/configs/$kind.json" "$D/tissue_masks/test" \
        "$D/probs/$kind"
    stage "08_nms_$kind" "07_probs_map_$kind" "$(settings C16_PROB_THRED)" nms "$D/probs/$kind" "$D/csv/$kind"
    stage "10_froc_$kind" "08_nms_$kind 09_gt_masks" "$(settings C16_EXCLUDE)" froc "$kind"
    stage "11_auc_$kind" "07_probs_map_$kind" "$(settings C16_EXCLUDE; inputs "$D/slides/reference.csv")" \
        auc "$kind"
    stage "12_export_$kind" "07_probs_map_$kind 08_nms_$kind" "$(settings C16_FORMATS)" exports "$kind"
done
# shellcheck disable=SC2086  # the model list
"$PYTHON" "$SCRIPTS/camelyon16_report.py" "$D" "$C16_EXCLUDE" $C16_MODELS | tee "$RESULTS/summary.txt"
