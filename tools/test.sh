#!/usr/bin/env bash
# Set up a virtual environment and run the whole test suite.
#   bash tools/test.sh                      # numpy 2.x, venv .venv-test
#   VENV=.venv-np1 NUMPY="numpy>=1.26,<2" bash tools/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv-test}"
NUMPY="${NUMPY:-numpy>=2,<3}"
# optional extra pins (pyproject.toml's bounds already keep numpy 1.26 installable: pandas<3.1, pyarrow<26)
EXTRA_PINS="${EXTRA_PINS:-}"
export PIP_DISABLE_PIP_VERSION_CHECK=1 MPLBACKEND=Agg
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
# torch first, pinned to the CPU wheel, so no dependency range can pull a CUDA build
"$VENV/bin/pip" install -q torch==2.13.0
"$VENV/bin/pip" install -q -e ".[dev,mpi]" "$NUMPY" $EXTRA_PINS
"$VENV/bin/python" -c "import numpy, torch; print('numpy', numpy.__version__, '| torch', torch.__version__)"
export PATH="$PWD/$VENV/bin:$PATH"
exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider tests "$@"
