#!/usr/bin/env bash
# Train the bundled default model in the background, with a log; rerun after an interruption to resume.
#   bash tools/train_default.sh DATA       (DATA: the 515-basin CAMELS Daymet .nc, or a CAMELS v1.2 folder holding
#                                           the basins of examples/train/basins_camels515.txt; not in the repository)
# Log: runs/camels515/train.log; result: runs/camels515/model.pt (+ history.csv, loss.png, metrics_validation.csv).
# Then: bash tools/bundle_default.sh DATA  (evaluates on the test period and installs it as the bundled model).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
CONFIG=examples/train/camels515_daymet.yaml
[ $# -ge 1 ] && [ -e "$1" ] || { echo "usage: bash tools/train_default.sh DATA (the training data: a CAMELS-style .nc or a CAMELS v1.2 folder; got '${1:-}')" >&2; exit 2; }
DATA="$(realpath "$1")"
shift
OUT=runs/camels515
mkdir -p "$OUT"
RESUME=""
[ -f "$OUT/train_state.pt" ] && RESUME="--resume"
nohup "$PY" -m dhydro train "$CONFIG" --out "$OUT" --data "$DATA" $RESUME "$@" >>"$OUT/train.log" 2>&1 &
echo "training in the background (pid $!), log: $OUT/train.log"
