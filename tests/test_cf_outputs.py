"""Issue 18: every kind of NetCDF the project writes is CF-1.8 (IOOS compliance-checker, zero high-priority
failures), with one time convention (stamp = end of the interval, ``time_bnds``, ``cell_methods``) and series that
are selected by their id (``.sel(unit_id=...)``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml

from bmi_dhydro.cf import cf_name, variable_attrs
from cf_check import cf_failures
from coupler.run import run_coupling
from dhydro.cli import main

ROOT = Path(__file__).resolve().parents[1]
EX = ROOT / "examples" / "coupled"
NWM = ROOT / "examples" / "gridded" / "data" / "nwm_grid_ngen_divides"


@pytest.fixture(scope="module")
def default_job(tmp_path_factory):
    out = tmp_path_factory.mktemp("job")
    rc = main(["run", "--forcing", "daymet", "--basins", "01333000", "01411300", "--start", "2005-10-01", "--end", "2005-12-31",
               "--warmup-days", "30", "--out", str(out), "--quiet"])
    assert rc == 0
    return out


@pytest.fixture(scope="module")
def coupled(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("coupled")
    spec = yaml.safe_load((EX / "catchments.yaml").read_text())
    spec["period"]["end"] = str(pd.Timestamp("2015-12-01") + pd.Timedelta(hours=72))
    for c in spec["components"].values():
        c["config"] = str(EX / c["config"])
    spec["outputs"].pop("overwrite", None)
    spec["outputs"].update(path=str(tmp / "out.nc"), plots=False)
    spec["record"] = {"path": str(tmp / "rec.nc"), "component": "hydro", "state_every": 24}
    (tmp / "spec.yaml").write_text(yaml.safe_dump(spec))
    run_coupling(tmp / "spec.yaml", progress=False)
    return tmp


def test_default_job_output_selects_by_unit_id(default_job):
    with xr.open_dataset(default_job / "dhydro_run.nc") as ds:
        q = ds.streamflow.sel(unit_id="01333000")
        assert q.dims == ("time",) and q.size == 92 and np.isfinite(q).all()
        assert ds["unit_id"].attrs["cf_role"] == "timeseries_id"


def test_default_job_output_time_convention(default_job):
    with xr.open_dataset(default_job / "dhydro_run.nc") as ds:
        # the first day of the period (2005-10-01) is stamped with its end, its interval in time_bnds
        assert pd.Timestamp(ds.time.values[0]) == pd.Timestamp("2005-10-02")
        assert [pd.Timestamp(x) for x in ds.time_bnds.values[0]] == [pd.Timestamp("2005-10-01"), pd.Timestamp("2005-10-02")]
        assert "_FillValue" not in ds.time.encoding or ds.time.encoding["_FillValue"] is None
        assert ds.streamflow.attrs["cell_methods"] == "time: mean"
        assert ds.swe.attrs["cell_methods"] == "time: point"
        assert "standard_name" not in ds.runoff.attrs and "standard_name" not in ds.et.attrs  # mm d-1: no *_flux
        assert all("long_name" in ds[v].attrs for v in ds.data_vars if v != "time_bnds")
        assert "history" in ds.attrs
        # the same daily value has the same stamp in the coupler's raw output
        with xr.open_dataset(default_job / "coupled_inputs" / "coupled_raw.nc") as raw:
            r = raw["land_surface_water__runoff_depth"].sel(time=ds.time.values, unit_id=ds.unit_id.values)
            np.testing.assert_allclose(r.values * 1000.0, ds.runoff.values, rtol=1e-12)
            assert raw["land_surface_water__runoff_depth"].attrs["cell_methods"] == "time: sum"


def test_coupled_output_and_record_time_convention(coupled):
    with xr.open_dataset(coupled / "out.nc") as ds, xr.open_dataset(coupled / "rec.nc") as rec:
        t0 = pd.Timestamp("2015-12-01")
        assert pd.Timestamp(ds.time.values[0]) == t0 + pd.Timedelta(hours=1)
        assert [pd.Timestamp(x) for x in ds.time_bnds.values[0]] == [t0, t0 + pd.Timedelta(hours=1)]
        assert ds.sizes["time"] == 72 and ds[ds.unit_id.dims[0]].size == ds.sizes["unit_id"]
        for v in ds.data_vars:
            if v != "time_bnds":
                assert {"long_name", "units", "cell_methods"} <= set(ds[v].attrs), v
        # the record's model step (a day) is stamped with its end too
        assert pd.Timestamp(rec.time.values[0]) == t0 + pd.Timedelta(days=1)
        assert [pd.Timestamp(x) for x in rec.time_bnds.values[0]] == [t0, t0 + pd.Timedelta(days=1)]
        assert rec.runoff.sel(unit_id=str(rec.unit_id.values[0])).size == 3


def test_cf_names_and_units():
    assert cf_name("snowpack__liquid-equivalent_depth") == "snowpack__liquid_equivalent_depth"
    assert cf_name("land_surface_radiation~incoming~shortwave__energy_flux")[0].isalpha()
    a = variable_attrs("snowpack__liquid-equivalent_depth", "mm")
    assert a["csdms_name"] == "snowpack__liquid-equivalent_depth" and a["cell_methods"] == "time: point"
    assert a["standard_name"] == "lwe_thickness_of_surface_snow_amount"
    assert "standard_name" not in variable_attrs("snowpack__liquid-equivalent_depth", "kg m-2")  # units do not fit
    assert variable_attrs("something_new", "m s-1")["cell_methods"] == "time: mean"


def test_default_job_output_is_cf(default_job, tmp_path):
    assert cf_failures(default_job / "dhydro_run.nc", tmp_path) == []
    assert cf_failures(default_job / "coupled_inputs" / "coupled_raw.nc", tmp_path) == []


def test_coupled_output_and_record_are_cf(coupled, tmp_path):
    assert cf_failures(coupled / "out.nc", tmp_path) == []
    assert cf_failures(coupled / "rec.nc", tmp_path) == []


def test_regrid_apply_output_is_cf(tmp_path):
    from coupler.regrid.cli import main as regrid_main

    grid_nc = str(NWM / "test_template_grid.nc")
    w = tmp_path / "w.nc"
    assert regrid_main(["weights", grid_nc, str(NWM / "test_ngen_divides.parquet"), "-o", str(w), "--no-progress"]) == 0
    out = tmp_path / "rain.nc"
    assert regrid_main(["apply", str(w), grid_nc, "--var", "RAINRATE", "-o", str(out), "--no-progress"]) == 0
    with xr.open_dataset(out) as ds:
        assert ds.attrs["Conventions"] == "CF-1.8" and "history" in ds.attrs
    assert cf_failures(out, tmp_path) == []


def test_the_checker_finds_errors(tmp_path):
    """The check can fail: a file with the faults the issue found (time _FillValue, units that contradict the
    standard name, a hyphen in a name) has high-priority failures."""
    ds = xr.Dataset({"run-off": (("time",), np.ones(3), {"units": "mm d-1", "standard_name": "runoff_flux"})},
                    coords={"time": pd.date_range("2000-01-01", periods=3)}, attrs={"Conventions": "CF-1.8"})
    p = tmp_path / "bad.nc"
    ds.to_netcdf(p, encoding={"time": {"_FillValue": np.nan, "dtype": "float64", "units": "days since 2000-01-01"}})
    assert cf_failures(p, tmp_path)
