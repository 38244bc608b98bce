#!/usr/bin/env bash
# Train the bundled default model in the background, with a log; rerun after an interruption to resume.
#   bash tools/train_default.sh [--data PATH]      (PATH: CAMELS-style .nc or CAMELS v1.2 folder)
# Log: runs/camels515/train.log; result: runs/camels515/model.pt (+ history.csv, loss.png, metrics_validation.csv).
# Then: bash tools/bundle_default.sh  (evaluates on the test period and installs it as the bundled model).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
CONFIG=examples/train/camels515_daymet.yaml
OUT=runs/camels515
mkdir -p "$OUT"
RESUME=""
[ -f "$OUT/train_state.pt" ] && RESUME="--resume"
nohup "$PY" -m dhydro train "$CONFIG" --out "$OUT" $RESUME "$@" >>"$OUT/train.log" 2>&1 &
echo "training in the background (pid $!), log: $OUT/train.log"
