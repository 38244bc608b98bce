#!/usr/bin/env bash
# Does the project install into a NextGen (ngen) Python environment without touching its numpy?
#
# ngen embeds the Python it was built with and refuses to start when the runtime numpy differs from the build's
# ("NumPy version mismatch between configure/build (1.26.4) and runtime (...)"), so installing bmi-dhydro into
# that venv must leave numpy exactly as it was. This check builds such a venv from scratch: torch 2.13.0 (CPU) and
# numpy 1.26.4 first, then `pip install -e .` as a user would; it fails if numpy changed, if a dependency
# does not import on numpy 1.x, or if BmiDeltaModel cannot initialise and step on examples/bmi/cat27_hourly.yaml.
#   bash tools/check_ngen_env.sh                 # venv .venv-ngen-check, recreated each time
#   NGEN_NUMPY=1.26.4 VENV=/tmp/x bash tools/check_ngen_env.sh
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv-ngen-check}"
NGEN_NUMPY="${NGEN_NUMPY:-1.26.4}"
export PIP_DISABLE_PIP_VERSION_CHECK=1 MPLBACKEND=Agg
rm -rf "$VENV"
python3 -m venv "$VENV"
PY="$VENV/bin/python"
# ngen's environment: torch pinned to the CPU wheel, numpy < 2 (pip's wheel cache is reused)
"$VENV/bin/pip" install -q torch==2.13.0 "numpy==$NGEN_NUMPY"
before=$("$PY" -c "import numpy; print(numpy.__version__)")
# the project, exactly as the README tells an ngen user to install it (no extra pins on the command line)
"$VENV/bin/pip" install -q -e .
after=$("$PY" -c "import numpy; print(numpy.__version__)")
echo "numpy before: $before  after: $after"
if [[ "$before" != "$after" ]]; then
  echo "FAIL: installing bmi-dhydro changed numpy $before -> $after (ngen would refuse to start)" >&2
  exit 1
fi
"$VENV/bin/pip" check
"$PY" - <<'PY'
import csv
import importlib

import numpy as np

# every compiled dependency must import against numpy 1.x (pyarrow 26, for one, refuses at import)
for mod in ("torch", "pandas", "pyarrow", "pyarrow.parquet", "scipy.sparse", "xarray", "netCDF4", "shapely",
            "pyproj", "pyogrio", "matplotlib.pyplot", "pint", "cf_xarray.units", "bmipy"):
    importlib.import_module(mod)

from bmi_dhydro import BmiDeltaModel

P = "atmosphere_water__liquid_equivalent_precipitation_rate"
T = "land_surface_air__temperature"
with open("examples/ngen/data/forcing_corrected/cat-27.csv", newline="") as fh:
    rows = list(csv.DictReader(fh))[:48]
m = BmiDeltaModel()
m.initialize("examples/bmi/cat27_hourly.yaml")
depth = []
for r in rows:  # two days of hourly steps, as ngen drives it
    m.set_value(P, np.array([float(r["precip_rate"])]))
    m.set_value(T, np.array([float(r["TMP_2maboveground"])]))
    m.update()
    depth.append(float(m.get_value_ptr("land_surface_water__runoff_depth")[0]))
mass = [float(m.get_value_ptr("ngen::mass_" + k)[0]) for k in ("in", "out", "stored", "leaked")]
assert m.get_current_time() == 48 * 3600.0, m.get_current_time()
assert all(np.isfinite(depth)) and min(depth) >= 0.0 and sum(depth) > 0.0, depth
assert abs(mass[0] - mass[1] - mass[2] - mass[3]) <= 1e-12, mass
m.finalize()
print(f"BmiDeltaModel ok on numpy {np.__version__}: 48 hourly updates, runoff {sum(depth):.3e} m, "
      f"mass residual {mass[0] - mass[1] - mass[2] - mass[3]:.1e} m")
PY
echo "ngen environment check passed (numpy $after unchanged)"
