"""Hargreaves PET through every path: the BMI (daily tmax/tmin inputs, or the extremes of hourly temperature),
the coupler's CAMELS forcing component, and ``dhydro run`` with a Hargreaves-trained checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from bmi_dhydro import BmiDeltaModel, physics
from bmi_dhydro.forcing import PRECIP, TEMP, TMAX, TMIN

PET_OUT = "hbv__potential_evapotranspiration_volume_flux"
LAT = [44.8, 37.2]


def _bmi(tmp_path, time_step=86400):
    params = {k: float(sum(physics.PARAM_BOUNDS[k]) / 2) for k in physics.VARIANT_PARAMS["hbv1.0"]}
    cfg = {"model": {"parameters": params, "routing": False, "pet_method": "hargreaves", "time_step": 86400},
           "units": {"ids": ["a", "b"], "area_km2": [10.0, 20.0], "lat": LAT, "lon": [-68.0, -79.0]},
           "time": {"time_step": time_step, "start": "2005-07-01 00:00:00"}}
    p = tmp_path / "bmi.yaml"
    p.write_text(yaml.safe_dump(cfg))
    m = BmiDeltaModel()
    m.initialize(str(p))
    return m


def test_daily_tmax_tmin_inputs_give_hargreaves_pet(tmp_path):
    m = _bmi(tmp_path)
    assert TMAX in m.get_input_var_names() and TMIN in m.get_input_var_names()
    assert m.get_var_units(TMAX) == "K"
    tmax, tmin = np.array([301.0, 305.0]), np.array([285.0, 291.0])
    m.set_value(PRECIP, np.zeros(2))
    m.set_value(TEMP, 0.5 * (tmax + tmin))
    m.set_value(TMAX, tmax)
    m.set_value(TMIN, tmin)
    m.update()
    doy = 182.0  # 2005-07-01
    want = physics.hargreaves(tmin - 273.15, tmax - 273.15, np.array(LAT), doy) / 1000.0 / 86400.0
    np.testing.assert_allclose(m.get_value(PET_OUT, np.zeros(2)), want, rtol=1e-12)
    # an inverted day is swapped, not refused
    m.set_value(TMAX, tmin)
    m.set_value(TMIN, tmax)
    m.update()
    np.testing.assert_allclose(m.get_value(PET_OUT, np.zeros(2)),
                               physics.hargreaves(tmin - 273.15, tmax - 273.15, np.array(LAT), doy + 1) / 1000.0 / 86400.0,
                               rtol=1e-12)


def test_daily_run_without_a_range_is_a_clear_error(tmp_path):
    m = _bmi(tmp_path)
    m.set_value(PRECIP, np.zeros(2))
    m.set_value(TEMP, np.array([290.0, 295.0]))  # tmax/tmin never set: a daily mean only
    with pytest.raises(ValueError, match="tmax == tmin"):
        m.update()


def test_bad_tmax_names_the_variable(tmp_path):
    m = _bmi(tmp_path)
    m.set_value(PRECIP, np.zeros(2))
    m.set_value(TEMP, np.array([290.0, 295.0]))
    m.set_value(TMAX, np.array([30.0, 35.0]))  # °C given as K
    with pytest.raises(ValueError, match=f"{TMAX}: expected kelvin.*unit 'a'"):
        m.update()


def test_hourly_steps_use_the_extremes_of_temperature(tmp_path):
    m = _bmi(tmp_path, time_step=3600)
    temps = 290.0 + 6.0 * np.sin(np.arange(24) / 24 * 2 * np.pi)
    for t in temps:
        m.set_value(PRECIP, np.zeros(2))
        m.set_value(TEMP, np.full(2, t))
        m.update()
    want = physics.hargreaves(np.full(2, temps.min() - 273.15), np.full(2, temps.max() - 273.15), np.array(LAT), 182.0)
    np.testing.assert_allclose(m.get_value(PET_OUT, np.zeros(2)), want / 1000.0 / 86400.0, rtol=1e-12)


def test_dhydro_run_with_a_hargreaves_checkpoint(tmp_path, capsys):
    """A Hargreaves model trained on the bundled Daymet basins runs through the CLI's main job: daily tmax/tmin
    reach it through the coupler; its PET in the output equals Hargreaves on the daily extremes."""
    import xarray as xr

    from bmi_dhydro.datasets import model_forcings, read_camels
    from bmi_dhydro.train import load_train_config, train
    from dhydro.cli import main

    basins = ["01333000", "03010655"]
    cfg = {"data": {"product": "daymet", "basins": basins},
           "periods": {"train": ["1995-10-01", "1997-09-30"], "warmup_days": 30},
           "model": {"nmul": 2, "dynamic_params": ["BETA"], "lstm_hidden": 4, "mlp_hidden": 8,
                     "attributes": ["p_mean", "aridity"], "pet_method": "hargreaves"},
           "training": {"epochs": 1, "iterations_per_epoch": 2, "batch_basins": 2, "window_days": 30, "window_warmup_days": 10,
                        "threads": 1},
           "output": {"dir": "out", "plots": False}}
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(cfg))
    c, base = load_train_config(tmp_path / "t.yaml")
    ck = train(c, base, progress=False)["checkpoint"]
    rc = main(["run", "--checkpoint", ck, "--basins", *basins, "--start", "2001-10-01", "--end", "2002-09-30",
               "--warmup-days", "30", "--out", str(tmp_path / "run"), "--quiet"])
    assert rc == 0
    with xr.open_dataset(tmp_path / "run" / "dhydro_run.nc") as ds:
        pet = ds["pet"].transpose("unit", "time").values if "unit" in ds["pet"].dims else ds["pet"].values.T
    camels = read_camels(None, basins, "daymet", ["p_mean"], start="2001-10-01", end="2002-09-30")
    want = model_forcings(camels, "hargreaves").numpy()[..., 2].T
    np.testing.assert_allclose(pet, want, rtol=1e-4)
