#!/usr/bin/env bash
# Install a finished training run (tools/train_default.sh) as the bundled default model and record its skill:
#   bash tools/bundle_default.sh DATA [BASINS.txt]   (DATA as for tools/train_default.sh; BASINS default: the 515)
# Writes bmi_dhydro/resources/default_model.pt, examples/train/results/ (training log, history, loss curve,
# validation metrics, and the test-period table of `dhydro evaluate`: summary.md, metrics.csv, nse_cdf.png) and
# regenerates the golden series of the tests (tools/make_golden.py).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
RUN=runs/camels515
[ $# -ge 1 ] && [ -e "$1" ] || { echo "usage: bash tools/bundle_default.sh DATA [BASINS.txt] (the data the run was trained on; got '${1:-}')" >&2; exit 2; }
DATA="$1"
BASINS="${2:-examples/train/basins_camels515.txt}"
RES=examples/train/results
[ -f "$RUN/model.pt" ] || { echo "no finished run at $RUN/model.pt" >&2; exit 1; }
mkdir -p "$RES"
cp "$RUN/model.pt" bmi_dhydro/resources/default_model.pt
cp "$RUN/history.csv" "$RUN/loss.png" "$RUN/metrics_validation.csv" "$RES/"
# the log without the progress bar's redraws
tr '\r' '\n' < "$RUN/train.log" | grep -v -E "^training: +[0-9]+%" | grep -v '^\s*$' > "$RES/train.log" || true
"$PY" -m dhydro evaluate --checkpoint bmi_dhydro/resources/default_model.pt --data "$DATA" --basins-file "$BASINS" \
  --start 1995-10-01 --end 2010-09-30 --out "$RES" --quiet
cp "$RES/metrics.csv" bmi_dhydro/resources/default_model_metrics_test.csv
"$PY" tools/make_golden.py
cat "$RES/summary.md"
