"""Slim installs: the core runs without the 'geo' and 'plot' extras, and a feature that needs one names it.

A subprocess Python with a meta-path finder that refuses shapely, pyproj, pyogrio, pyarrow and matplotlib stands
in for the core install (``pip install bmi-dhydro``): importing the package, the BMI class, loading the bundled
checkpoint and running the BMI must work there; a geo feature must fail with the message naming the extra; a plot
that is a side product of a run is skipped with one warning.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bmi_dhydro import _extras
from bmi_dhydro._extras import MissingExtraError, require

ROOT = Path(__file__).resolve().parents[1]
BLOCKED = ("shapely", "pyproj", "pyogrio", "pyarrow", "matplotlib")
P = "atmosphere_water__liquid_equivalent_precipitation_rate"
T = "land_surface_air__temperature"
Q = "land_surface_water__runoff_depth"
N_HOURS = 24

BLOCKER = f"""
import importlib.abc
import sys


class _NoExtras(importlib.abc.MetaPathFinder):  # the core install: none of the extras' packages importable
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {set(BLOCKED)!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked by the test)", name=name)
        return None


sys.meta_path.insert(0, _NoExtras())
"""


def run_without_extras(tmp_path: Path, body: str) -> dict:
    """Run ``body`` in a fresh Python without the extras' packages; it prints one JSON line, returned here."""
    script = tmp_path / "no_extras.py"
    script.write_text(BLOCKER + textwrap.dedent(body))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]), MPLBACKEND="Agg")
    proc = subprocess.run([sys.executable, str(script)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["stderr"] = proc.stderr
    return out


def drive_cat27(config: str) -> list[float]:
    """``N_HOURS`` hourly updates of one catchment on the real forcing, as ngen drives it; the runoff depths."""
    from bmi_dhydro import BmiDeltaModel

    rows = pd.read_csv(ROOT / "examples/ngen/data/forcing_corrected/cat-27.csv").iloc[:N_HOURS]
    m = BmiDeltaModel()
    m.initialize(config)
    depth = []
    for p, t in zip(rows["precip_rate"], rows["TMP_2maboveground"]):
        m.set_value(P, np.array([float(p)]))
        m.set_value(T, np.array([float(t)]))
        m.update()
        depth.append(float(m.get_value_ptr(Q)[0]))
    m.finalize()
    return depth


CORE_RUN = """
import json
import sys

import numpy as np
import pandas as pd

import bmi_dhydro
from bmi_dhydro.bmi import BmiDeltaModel
from bmi_dhydro.checkpoint import load_checkpoint

model, payload = load_checkpoint()  # the bundled checkpoint
rows = pd.read_csv("examples/ngen/data/forcing_corrected/cat-27.csv").iloc[:N_HOURS]
m = BmiDeltaModel()
m.initialize("examples/bmi/cat27_hourly_core.yaml")
depth = []
for p, t in zip(rows["precip_rate"], rows["TMP_2maboveground"]):
    m.set_value(P, np.array([float(p)]))
    m.set_value(T, np.array([float(t)]))
    m.update()
    depth.append(float(m.get_value_ptr(Q)[0]))
m.finalize()
fixed = BmiDeltaModel()
fixed.initialize("examples/bmi/fixed_daily.yaml")  # fixed HBV parameters, inline units
fixed.set_value(P, np.full(3, 2e-5))
fixed.set_value(T, np.full(3, 280.0))
fixed.update()
depth_fixed = fixed.get_value_ptr(Q).tolist()
fixed.finalize()

errors = {}
try:
    BmiDeltaModel().initialize("examples/bmi/cat27_hourly.yaml")  # units from the GeoJSON hydrofabric
except ImportError as exc:
    errors["hydrofabric"] = [type(exc).__name__, str(exc)]
import coupler.regrid
try:
    coupler.regrid.read_grid
except ImportError as exc:
    errors["regrid"] = [type(exc).__name__, str(exc)]
import dhydro.cli  # the command line imports; `dhydro regrid` says what is missing
rc = dhydro.cli.main(["regrid", "weights", "grid.nc", "divides.gpkg", "-o", "w.nc"])
print(json.dumps({"file": bmi_dhydro.__file__, "depth": depth, "errors": errors, "regrid_rc": rc,
                  "attributes": len(model.config.attributes), "depth_fixed": depth_fixed,
                  "loaded": sorted(m for m in sys.modules if m.partition(".")[0] in BLOCKED)}))
"""


def test_core_runs_without_the_extras(tmp_path):
    """import, the BMI class, the bundled checkpoint and a BMI run need neither 'geo' nor 'plot'; the table config
    gives the same runoff, bit for bit, as the hydrofabric config does with 'geo' installed."""
    body = f"N_HOURS = {N_HOURS}\nP, T, Q = {P!r}, {T!r}, {Q!r}\nBLOCKED = {BLOCKED!r}\n" + CORE_RUN
    out = run_without_extras(tmp_path, body)
    assert Path(out["file"]).resolve() == (ROOT / "bmi_dhydro" / "__init__.py").resolve()
    assert out["loaded"] == []
    assert out["attributes"] > 0 and len(out["depth"]) == N_HOURS and all(np.isfinite(out["depth"]))
    assert sum(out["depth"]) > 0 and len(out["depth_fixed"]) == 3 and all(np.isfinite(out["depth_fixed"]))
    kind, msg = out["errors"]["hydrofabric"]
    assert kind == "MissingExtraError"
    assert msg == ("reading the hydrofabric catchment_data.geojson needs pyogrio, which is in the 'geo' extra: "
                   "pip install 'bmi-dhydro[geo]'")
    kind, msg = out["errors"]["regrid"]
    assert kind == "MissingExtraError" and "needs pyproj, which is in the 'geo' extra: pip install 'bmi-dhydro[geo]'" in msg
    assert out["regrid_rc"] == 1
    assert "dhydro regrid: error: regridding" in out["stderr"] and "'geo' extra" in out["stderr"]
    pytest.importorskip("pyogrio")
    assert drive_cat27(str(ROOT / "examples/bmi/cat27_hourly.yaml")) == out["depth"]


def test_units_table_is_the_hydrofabric():
    """examples/ngen/data/units.csv holds exactly what the GeoJSON hydrofabric and attributes.csv give."""
    pytest.importorskip("pyogrio")
    from bmi_dhydro.units import from_hydrofabric, from_table

    ngen = ROOT / "examples/ngen/data"
    a = from_hydrofabric(ngen / "catchment_data.geojson", attributes_table=ngen / "attributes.csv")
    b = from_table(ngen / "units.csv")
    assert a.ids == b.ids and a.toid == b.toid
    for k in ("area_km2", "lat", "lon"):
        assert np.array_equal(getattr(a, k), getattr(b, k)), k
    assert sorted(a.attributes) == sorted(b.attributes)
    for k, v in a.attributes.items():
        assert np.array_equal(v, b.attributes[k], equal_nan=True), k


def test_plots_of_a_run_are_skipped_without_matplotlib(tmp_path):
    """The main job writes its NetCDF and metrics and skips hydrographs.png with one warning naming 'plot'."""
    out = run_without_extras(tmp_path, f"""
        import json
        import sys

        from dhydro.cli import main

        rc = main(["run", "--start", "2012-10-01", "--end", "2013-03-31", "--basins", "01022500", "--forcing", "nldas",
                   "--out", {str(tmp_path / "run")!r}, "--quiet"])
        print(json.dumps({{"rc": rc}}))
        """)
    assert out["rc"] == 0
    run = tmp_path / "run"
    assert (run / "dhydro_run.nc").is_file() and (run / "metrics.csv").is_file()
    assert not (run / "hydrographs.png").exists()
    warnings = [ln for ln in out["stderr"].splitlines() if ln.startswith("warning:") and "'plot' extra" in ln]
    assert warnings == ["warning: the hydrograph plot of the main job (hydrographs.png) needs matplotlib, which is in "
                        "the 'plot' extra: pip install 'bmi-dhydro[plot]'; not written"]


def test_require_names_the_extra(tmp_path, monkeypatch):
    with pytest.raises(MissingExtraError) as err:
        require("no_such_package_bmi_dhydro.sub", "geo", "dhydro regrid")
    assert str(err.value) == ("dhydro regrid needs no_such_package_bmi_dhydro, which is in the 'geo' extra: "
                              "pip install 'bmi-dhydro[geo]'")
    assert isinstance(err.value, ImportError)
    # installed but broken (a dependency of it missing): not reported as "not installed"
    (tmp_path / "broken_pkg_bmi_dhydro.py").write_text("import a_missing_dependency_of_it\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(MissingExtraError, match=r"needs broken_pkg_bmi_dhydro \(in the 'plot' extra\), which is "
                                                r"installed but failed to import: ModuleNotFoundError"):
        require("broken_pkg_bmi_dhydro", "plot", "a plot")


def test_optional_plot_warns_once_and_skips(tmp_path, monkeypatch, caplog):
    from bmi_dhydro.train import loss_curve_png

    monkeypatch.setattr(_extras, "_warned", set())
    for name in ("matplotlib", "matplotlib.pyplot"):
        monkeypatch.setitem(sys.modules, name, None)  # import fails as if matplotlib were not installed
    history = [{"epoch": 1, "loss": 0.5, "val_median_nse": 0.3}, {"epoch": 2, "loss": 0.4, "val_median_nse": 0.4}]
    with caplog.at_level(logging.WARNING, logger="dhydro.extras"):
        assert loss_curve_png(tmp_path / "loss.png", history) is False
        assert loss_curve_png(tmp_path / "loss.png", history) is False  # every epoch: still one warning
    assert not (tmp_path / "loss.png").exists()
    msgs = [r.getMessage() for r in caplog.records if r.name == "dhydro.extras"]
    assert msgs == ["the loss curve (loss.png) needs matplotlib, which is in the 'plot' extra: "
                    "pip install 'bmi-dhydro[plot]'; not written"]
    with pytest.raises(MissingExtraError, match=r"'plot' extra"):  # an explicit plot request fails instead
        _extras.pyplot("a plot command")


def test_extras_match_pyproject():
    """The extras named in messages exist in pyproject.toml with these packages; dev and all include them."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    opt = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {dep.split(">")[0].split("=")[0].split("<")[0].strip() for dep in opt["dependencies"]}
    assert not names & set(BLOCKED), "the core dependencies must not include the extras' packages"
    extras = opt["optional-dependencies"]
    for extra, pkgs in _extras.EXTRAS.items():
        have = {d.split(">")[0].split("<")[0].split("=")[0].strip() for d in extras[extra]}
        assert have == set(pkgs), extra
    assert any(d.startswith("bmi-dhydro[") and "geo" in d and "plot" in d for d in extras["dev"])
    assert any(d.startswith("bmi-dhydro[") and {"geo", "plot", "mpi"} <= set(d[d.index("[") + 1 : -1].split(","))
               for d in extras["all"])
