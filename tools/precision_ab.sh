#!/usr/bin/env bash
# Does bfloat16 training (training.precision: bfloat16) cost skill?  Trains the bundled model's configuration,
# shortened to 6 x 150 iterations, in float32 and in bfloat16 for seeds 0 and 1 (4 runs, one thread each, one after
# the other), then writes the validation-basin skill of each run (median NSE over the 52 held-out basins, the
# training period; the test period is not touched) and its seconds per iteration to
# examples/train/precision_ab/results.md.  Resumable: finished runs are skipped.
#   bash tools/precision_ab.sh DATA      (DATA: the 515-basin training set, as for tools/train_default.sh)
# The held-out split follows each run's seed (no validation.seed): compare precisions within a seed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
OUT=runs/precision_ab
[ $# -ge 1 ] && [ -e "$1" ] || { echo "usage: bash tools/precision_ab.sh DATA (the training data; got '${1:-}')" >&2; exit 2; }
DATA="$(realpath "$1")"
BASINS="$(realpath examples/train/basins_camels515.txt)"
mkdir -p "$OUT"
for seed in 0 1; do
  for prec in float32 bfloat16; do
    run="$OUT/${prec}_seed$seed"
    [ -f "$run/model.pt" ] && continue
    cfg="$OUT/${prec}_seed$seed.yaml"
    sed "s/^  seed: 0$/  seed: $seed/" "examples/train/precision_ab/$prec.yaml" \
      | sed "s#^  basins_file: .*#  basins_file: $BASINS#" > "$cfg"
    RESUME=""; [ -f "$run/train_state.pt" ] && RESUME="--resume"
    "$PY" -m dhydro train "$cfg" --out "$run" --data "$DATA" --quiet $RESUME
  done
done
"$PY" - "$OUT" <<'PY'
import sys, json, torch
from pathlib import Path
out = Path(sys.argv[1])
lines = ["# bfloat16 vs float32 training (tools/precision_ab.sh)", "",
         "The bundled model's configuration (515 basins, 25 attributes, LSTM 64, batch 100) shortened to 6 epochs x 150",
         "iterations; validation = median NSE on the 52 held-out basins over the training period, best epoch. The",
         "held-out basins follow the seed (each seed its own split): compare the precisions within a seed.", "",
         "| precision | seed | selected epoch | validation median NSE | s/it |", "|---|---|---|---|---|"]
for seed in (0, 1):
    for prec in ("float32", "bfloat16"):
        p = torch.load(out / f"{prec}_seed{seed}" / "model.pt", weights_only=True)["provenance"]
        lines.append(f"| {prec} | {seed} | {p['selected_epoch']} | {p['metrics']['validation_median_nse']:.3f} | "
                     f"{p['seconds_per_iteration']:.3f} |")
Path("examples/train/precision_ab/results.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
PY
