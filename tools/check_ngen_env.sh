#!/usr/bin/env bash
# Does the project install into a NextGen (ngen) Python environment without touching its numpy?
#
# ngen embeds the Python it was built with and refuses to start when the runtime numpy differs from the build's
# ("NumPy version mismatch between configure/build (1.26.4) and runtime (...)"), so installing bmi-dhydro into
# that venv must leave numpy exactly as it was. This check builds such a venv from scratch: torch 2.13.0 (CPU) and
# numpy 1.26.4 first, then
#   1. the core, `pip install -e .` as the README tells an ngen user: none of the extras' packages (geo, plot) may
#      come with it, numpy must not change, and BmiDeltaModel must load the bundled checkpoint and step on
#      examples/bmi/cat27_hourly_core.yaml (units from a table); a hydrofabric config must name the 'geo' extra;
#   2. the 'geo' extra on top (configs that read the hydrofabric at initialize): numpy still unchanged (pyarrow<26),
#      and examples/bmi/cat27_hourly.yaml gives the same runoff as step 1, bit for bit.
# It fails if numpy changed, if a dependency does not import on numpy 1.x, or if a run fails.
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
RUNOFF="$VENV/cat27_runoff_core.json"
# ngen's environment: torch pinned to the CPU wheel, numpy < 2 (pip's wheel cache is reused)
"$VENV/bin/pip" install -q torch==2.13.0 "numpy==$NGEN_NUMPY"
before=$("$PY" -c "import numpy; print(numpy.__version__)")

check_numpy() {
  local after
  after=$("$PY" -c "import numpy; print(numpy.__version__)")
  echo "numpy before: $before  after $1: $after"
  if [[ "$before" != "$after" ]]; then
    echo "FAIL: installing bmi-dhydro $1 changed numpy $before -> $after (ngen would refuse to start)" >&2
    exit 1
  fi
  "$VENV/bin/pip" check
}

# 1. the core, exactly as the README tells an ngen user to install it (no extras, no pins on the command line)
"$VENV/bin/pip" install -q -e .
check_numpy "(core)"
echo "site-packages with the core: $(du -sh "$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" | cut -f1)"
RUNOFF="$RUNOFF" "$PY" - <<'PY'
import csv
import importlib
import importlib.util
import json
import os

import numpy as np

# the core brings none of the extras' packages ...
extra = [m for m in ("shapely", "pyproj", "pyogrio", "pyarrow", "matplotlib") if importlib.util.find_spec(m)]
assert not extra, f"the core install brought packages of the extras: {extra}"
# ... and every compiled dependency it does bring imports against numpy 1.x
for mod in ("torch", "pandas", "scipy.sparse", "xarray", "netCDF4", "pint", "cf_xarray.units", "bmipy", "pydantic", "yaml"):
    importlib.import_module(mod)

from bmi_dhydro import BmiDeltaModel
from bmi_dhydro._extras import MissingExtraError

P = "atmosphere_water__liquid_equivalent_precipitation_rate"
T = "land_surface_air__temperature"
with open("examples/ngen/data/forcing_corrected/cat-27.csv", newline="") as fh:
    rows = list(csv.DictReader(fh))[:48]
m = BmiDeltaModel()
m.initialize("examples/bmi/cat27_hourly_core.yaml")  # the bundled checkpoint; units from a table
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
try:
    BmiDeltaModel().initialize("examples/bmi/cat27_hourly.yaml")
    raise AssertionError("a hydrofabric config initialised without the 'geo' extra")
except MissingExtraError as exc:
    assert "'geo' extra" in str(exc), exc
    print(f"hydrofabric config without geo: {exc}")
with open(os.environ["RUNOFF"], "w") as fh:
    json.dump(depth, fh)
print(f"BmiDeltaModel ok on numpy {np.__version__} (core install): 48 hourly updates, runoff {sum(depth):.3e} m, "
      f"mass residual {mass[0] - mass[1] - mass[2] - mass[3]:.1e} m")
PY

# 2. the 'geo' extra on top: for configs that read the hydrofabric at initialize (what dhydro ngen-config writes)
"$VENV/bin/pip" install -q -e ".[geo]"
check_numpy "(with [geo])"
RUNOFF="$RUNOFF" "$PY" - <<'PY'
import csv
import importlib
import json
import os

import numpy as np

# the geo packages import against numpy 1.x (pyarrow 26, for one, refuses at import: hence pyarrow<26)
for mod in ("pyarrow", "pyarrow.parquet", "shapely", "pyproj", "pyogrio"):
    importlib.import_module(mod)

from bmi_dhydro import BmiDeltaModel

P = "atmosphere_water__liquid_equivalent_precipitation_rate"
T = "land_surface_air__temperature"
with open("examples/ngen/data/forcing_corrected/cat-27.csv", newline="") as fh:
    rows = list(csv.DictReader(fh))[:48]
m = BmiDeltaModel()
m.initialize("examples/bmi/cat27_hourly.yaml")  # units from the GeoJSON hydrofabric
depth = []
for r in rows:
    m.set_value(P, np.array([float(r["precip_rate"])]))
    m.set_value(T, np.array([float(r["TMP_2maboveground"])]))
    m.update()
    depth.append(float(m.get_value_ptr("land_surface_water__runoff_depth")[0]))
m.finalize()
with open(os.environ["RUNOFF"]) as fh:
    core = json.load(fh)
assert depth == core, "the hydrofabric config and the table config differ"
print(f"BmiDeltaModel ok on numpy {np.__version__} with [geo]: hydrofabric config = table config, bit for bit")
PY
echo "ngen environment check passed (numpy $before unchanged, core and [geo])"
