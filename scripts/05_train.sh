#!/usr/bin/env bash
# Stage 05: train one model (wsi/bin/train.py): SAVE_PATH/cfg.json, train.ckpt (latest), best.ckpt (lowest
# validation loss) and tensorboard events (tensorboard --logdir SAVE_PATH). TRAIN_ARGS passes further options
# (--resume, --epochs N, --device cpu, ...). Multi-GPU: TORCHRUN="torchrun --nproc_per_node=4".
# Camelyon16: CFG=configs/resnet18_crf.json SAVE_PATH=ckpt/crf bash scripts/05_train.sh
set -euo pipefail
CFG=${CFG:-demo_out/configs/demo_crf.json}      # input: training config
SAVE_PATH=${SAVE_PATH:-ckpt/crf}               # output folder (under the repository's ckpt/)
NUM_WORKERS=${NUM_WORKERS:-2}               # data-loading processes per dataset
SEED=${SEED:-0}
TRAIN_ARGS=${TRAIN_ARGS:-}
TORCHRUN=${TORCHRUN:-}                      # e.g. "torchrun --nproc_per_node=4"; empty: one process
PYTHON=${PYTHON:-python}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

launcher=("$PYTHON")
# shellcheck disable=SC2206
[ -n "$TORCHRUN" ] && launcher=($TORCHRUN)
# shellcheck disable=SC2086
"${launcher[@]}" "$ROOT/wsi/bin/train.py" "$CFG" "$SAVE_PATH" --num_workers "$NUM_WORKERS" --seed "$SEED" $TRAIN_ARGS
