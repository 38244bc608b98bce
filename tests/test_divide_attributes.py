"""Divide attributes with provenance (``bmi_dhydro.divide_attributes``, ``dhydro ngen-config``): CAMELS climate
indices from a divide's forcing, area from the hydrofabric, the user table, the nearest CAMELS basin."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from bmi_dhydro.checkpoint import default_checkpoint_path, read_checkpoint
from bmi_dhydro.divide_attributes import (CLIMATE, DAYS_PER_YEAR, climate_statistics, daily_series,
                                          derive_attributes, p_seasonality)
from dhydro.cli import main as dhydro

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "examples" / "ngen" / "data"
GEOJSON = DATA / "catchment_data.geojson"
GPKG = DATA / "gauge_01073000" / "gauge_01073000.gpkg"
SAMPLE_CSV = "{cat}_2015-12-01_00_00_00_2015-12-30_23_00_00.csv"
NAMES = read_checkpoint(default_checkpoint_path())["config"]["attributes"]


# ---------------------------------------------------------------------------------------------------------------
# (a) the climate statistics on synthetic daily series with known answers


def test_climate_statistics_known_answers():
    # a 20-day block repeated 37 times: two high days (50 >= 5 x 6.85), dry runs of 5, 3 and 4 days (< 1 mm)
    block = [50, 50, 0, 0, 0, 0, 0, 5, 5, 5, 5, 5, 0, 0, 0, 10, 0.5, 0.5, 0.5, 0.5]
    p = np.tile(np.array(block, dtype="float64"), 37)
    n = p.size
    temp = np.full(n, 5.0)
    temp[::20] = -3.0  # the first 50 mm day of each block is a snow day
    pet = np.full(n, 2.5)
    dates = pd.date_range("2001-01-01", periods=n, freq="D")
    s = climate_statistics(dates, p, temp, pet)
    assert s["p_mean"] == pytest.approx(137 / 20, rel=1e-12)
    assert s["pet_mean"] == pytest.approx(2.5, rel=1e-12)
    assert s["aridity"] == pytest.approx(2.5 / (137 / 20), rel=1e-12)
    assert s["frac_snow"] == pytest.approx(50 / 137, rel=1e-12)
    assert s["high_prec_freq"] == pytest.approx(2 * 37 / n * DAYS_PER_YEAR, rel=1e-12)
    assert s["high_prec_dur"] == pytest.approx(2.0)
    assert s["low_prec_freq"] == pytest.approx(12 * 37 / n * DAYS_PER_YEAR, rel=1e-12)
    assert s["low_prec_dur"] == pytest.approx(4.0)  # runs of 5, 3, 4 in every block (the last one cut by the end: 4)
    assert set(s) == set(CLIMATE)


def test_p_seasonality_sign_and_size():
    dates = pd.date_range("2003-01-01", periods=3 * 365, freq="D")
    t = np.asarray((dates - pd.Timestamp("2000-01-01")) / pd.Timedelta(days=1))
    w = 2 * np.pi / 365.25
    temp = 10 + 12 * np.sin(w * (t - 110))  # warm in summer
    summer = 3.0 * (1 + 0.5 * np.sin(w * (t - 110)))  # precipitation in phase with temperature
    winter = 3.0 * (1 + 0.5 * np.sin(w * (t - 110 - 365.25 / 2)))  # half a year out of phase
    assert p_seasonality(dates, summer, temp) == pytest.approx(0.5, abs=1e-9)
    assert p_seasonality(dates, winter, temp) == pytest.approx(-0.5, abs=1e-9)
    assert p_seasonality(dates, np.full(t.size, 3.0), temp) == pytest.approx(0.0, abs=1e-9)
    # a quarter year out of phase: no seasonality in the index's sense (cos = 0)
    spring = 3.0 * (1 + 0.5 * np.sin(w * (t - 110 - 365.25 / 4)))
    assert abs(p_seasonality(dates, spring, temp)) < 1e-9
    # calendar-based curves (not the fit's own time axis): the sign still holds
    doy = dates.dayofyear.to_numpy()
    temp2 = 8 - 10 * np.cos(2 * np.pi * (doy - 15) / 365)
    wet_summer = np.where((doy > 150) & (doy < 250), 8.0, 1.0)
    wet_winter = np.where((doy < 60) | (doy > 330), 8.0, 1.0)
    assert p_seasonality(dates, wet_summer, temp2) > 0.3
    assert p_seasonality(dates, wet_winter, temp2) < -0.3


def test_daily_series_sums_precipitation_and_keeps_complete_days():
    times = pd.date_range("2016-01-01 12:00", periods=24 * 3, freq="h")  # half a day, two days, half a day
    rate = np.full(times.size, 2.0 / 3600)  # 2 mm per hour as mm s-1
    temp = np.full(times.size, 273.15 + 4)
    d = daily_series(times, rate, temp, 3600.0)
    assert list(d.index.strftime("%Y-%m-%d")) == ["2016-01-02", "2016-01-03"]
    np.testing.assert_allclose(d["prcp"], 48.0)
    np.testing.assert_allclose(d["tmean"], 4.0)


# ---------------------------------------------------------------------------------------------------------------
# (b) forcing-sourced climate from a year of hourly forcing; a month falls back with the reason recorded


def write_year(path: Path) -> None:
    """2016 (366 d) hourly: 12 mm in the first 6 hours of every 8th day, -5 degC in Jan-Feb, 10 degC after."""
    times = pd.date_range("2016-01-01", periods=366 * 24, freq="h")
    day = (times - times[0]).days
    apcp = np.where((day % 8 == 0) & (times.hour < 6), 2.0, 0.0)
    tmp = np.where(times.month <= 2, 273.15 - 5, 273.15 + 10)
    pd.DataFrame({"time": times.strftime("%Y-%m-%d %H:%M:%S"), "APCP_surface": apcp,
                  "TMP_2maboveground": tmp}).to_csv(path, index=False)


@pytest.fixture(scope="module")
def forcing_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("forcing")
    write_year(d / "cat-27.csv")
    (d / SAMPLE_CSV.format(cat="cat-52")).write_bytes((DATA / "forcing" / SAMPLE_CSV.format(cat="cat-52")).read_bytes())
    return d  # cat-67: no file


def test_year_of_forcing_gives_climate_and_a_month_falls_back(forcing_dir):
    values, sources = derive_attributes(GEOJSON, NAMES, str(forcing_dir / "{{id}}.csv"), DATA / "attributes.csv")
    rain_days = len(range(0, 366, 8))  # 46 days of 12 mm
    p_mean = 12 * rain_days / 366
    v27, s27 = values.loc["cat-27"], sources.loc["cat-27"]
    assert v27["p_mean"] == pytest.approx(p_mean, rel=1e-12)
    assert v27["high_prec_freq"] == pytest.approx(rain_days / 366 * DAYS_PER_YEAR, rel=1e-12)
    assert v27["high_prec_dur"] == pytest.approx(1.0)
    assert v27["low_prec_freq"] == pytest.approx((366 - rain_days) / 366 * DAYS_PER_YEAR, rel=1e-12)
    assert v27["low_prec_dur"] == pytest.approx((366 - rain_days) / rain_days)  # 45 runs of 7 days and one of 5
    snow_days = len([d for d in range(0, 60, 8)])  # Jan + Feb 2016 = 60 days
    assert v27["frac_snow"] == pytest.approx(snow_days / rain_days, rel=1e-12)
    assert v27["aridity"] == pytest.approx(v27["pet_mean"] / v27["p_mean"], rel=1e-12)
    assert 0 < v27["pet_mean"] < 5
    for a in CLIMATE:
        assert s27[a].startswith(f"forcing:{forcing_dir / 'cat-27.csv'} (2016-01-01..2016-12-31, 366 d)"), s27[a]
    assert "Priestley-Taylor" in s27["pet_mean"] and "Hamon" in s27["pet_mean"]
    # the one-month sample record and the missing file: the table's values, with the reason recorded
    table = pd.read_csv(DATA / "attributes.csv", dtype={"id": str}).set_index("id")
    for cat, reason in (("cat-52", "forcing record 30 d < 365 d"), ("cat-67", "forcing: no file")):
        for a in CLIMATE:
            assert sources.at[cat, a].startswith("table:attributes.csv"), sources.at[cat, a]
            assert reason in sources.at[cat, a]
            assert values.at[cat, a] == table.at[cat, a]
    assert SAMPLE_CSV.format(cat="cat-52") in sources.at["cat-52", "p_mean"]
    # the same year with a longer minimum is skipped too
    values, sources = derive_attributes(GEOJSON, ["p_mean"], str(forcing_dir / "{{id}}.csv"), min_climate_days=400)
    assert sources.at["cat-27", "p_mean"].startswith("camels:")
    assert "forcing record 366 d < 400 d" in sources.at["cat-27", "p_mean"]


# ---------------------------------------------------------------------------------------------------------------
# (c) the sample hydrofabrics: every attribute finite with a source; area from the hydrofabric


@pytest.mark.parametrize("hydrofabric, forcing", [(GEOJSON, DATA / "forcing" / "{{id}}.csv"),
                                                  (GPKG, GPKG.parent / "forcing" / "{{id}}.csv")])
def test_sample_hydrofabrics_get_every_attribute_with_a_source(hydrofabric, forcing):
    import pyogrio

    values, sources = derive_attributes(hydrofabric, NAMES, str(forcing))
    assert list(values.columns) == NAMES and list(sources.columns) == NAMES
    assert np.isfinite(values.to_numpy(dtype="float64")).all()
    assert all(isinstance(s, str) and s for s in sources.to_numpy().ravel())
    meta, _, _, fields = pyogrio.raw.read(hydrofabric, layer="divides" if hydrofabric.suffix == ".gpkg" else None,
                                          read_geometry=False)
    df = pd.DataFrame({c: fields[i] for i, c in enumerate(meta["fields"])})
    idc = "divide_id" if "divide_id" in df.columns else "id"
    area = dict(zip(df[idc].astype(str), df["areasqkm"].astype(float)))
    for uid in values.index:
        assert values.at[uid, "area_gages2"] == area[uid]
        assert sources.at[uid, "area_gages2"].startswith("hydrofabric:") and "areasqkm" in sources.at[uid, "area_gages2"]
        # the samples have one month of forcing and no elevation/slope columns: CAMELS, with the reasons
        assert sources.at[uid, "p_mean"].startswith("camels:") and "< 365 d" in sources.at[uid, "p_mean"]
        assert "hydrofabric: no elev_mean column" in sources.at[uid, "elev_mean"]
    if hydrofabric == GPKG:  # the Oyster River divides lie next to CAMELS gauge 01073000
        assert (sources["frac_forest"].str.startswith("camels:01073000 (")).all()


# ---------------------------------------------------------------------------------------------------------------
# (d) the user table wins over CAMELS


def test_user_table_wins_over_camels(tmp_path):
    pd.DataFrame({"id": ["cat-27", "cat-52"], "frac_forest": [0.123, np.nan], "elev_mean": [321.0, 456.0],
                  "area_gages2": [999.0, 999.0]}).to_csv(tmp_path / "mine.csv", index=False)
    values, sources = derive_attributes(GEOJSON, ["frac_forest", "elev_mean", "area_gages2"], None, tmp_path / "mine.csv")
    assert values.at["cat-27", "frac_forest"] == 0.123 and sources.at["cat-27", "frac_forest"] == "table:mine.csv"
    assert sources.at["cat-52", "frac_forest"].startswith("camels:") and "table: empty" in sources.at["cat-52", "frac_forest"]
    assert sources.at["cat-67", "frac_forest"].startswith("camels:") and "table: no row cat-67" in sources.at["cat-67", "frac_forest"]
    assert values.at["cat-52", "elev_mean"] == 456.0
    assert sources.at["cat-52", "elev_mean"].startswith("table:mine.csv [hydrofabric: no elev_mean column")
    assert (values["area_gages2"] != 999.0).all()  # the hydrofabric's area comes first


# ---------------------------------------------------------------------------------------------------------------
# (e) dhydro ngen-config end to end


def test_ngen_config_writes_attributes_with_provenance_and_configs_that_initialize(tmp_path, forcing_dir, monkeypatch):
    from bmi_dhydro import BmiDeltaModel

    out = tmp_path / "out"
    rc = dhydro(["ngen-config", str(GEOJSON), "--out", str(out), "--forcing-pattern", str(forcing_dir / "{{id}}.csv"),
                 "--min-climate-days", "365"])
    assert rc == 0
    values = pd.read_csv(out / "attributes.csv", dtype={"id": str}).set_index("id")
    prov = pd.read_csv(out / "attributes_provenance.csv", dtype={"id": str}).set_index("id")
    assert list(values.columns) == NAMES and values.shape == prov.shape == (3, len(NAMES))
    assert np.isfinite(values.to_numpy()).all()
    assert prov.at["cat-27", "p_mean"].startswith("forcing:") and prov.at["cat-52", "p_mean"].startswith("camels:")
    for cat in ("cat-27", "cat-52", "cat-67"):
        cfg = yaml.safe_load((out / "config" / f"{cat}.yaml").read_text())
        assert (out / "config" / cfg["units"]["attributes_table"]).resolve() == (out / "attributes.csv").resolve()
    monkeypatch.chdir(out)
    m = BmiDeltaModel()
    m.initialize(str(out / "config" / "cat-27.yaml"))
    try:
        m.set_value("atmosphere_water__liquid_equivalent_precipitation_rate", np.array([1e-3]))
        m.set_value("land_surface_air__temperature", np.array([280.0]))
        m.update()
        q = np.zeros(1)
        m.get_value("land_surface_water__runoff_depth", q)
        assert np.isfinite(q).all()
    finally:
        m.finalize()
    # the attributes the model runs with are the written ones
    from bmi_dhydro.units import from_hydrofabric

    table = from_hydrofabric(GEOJSON, attributes_table=out / "attributes.csv")
    i = table.ids.index("cat-27")
    assert table.attributes["p_mean"][i] == values.at["cat-27", "p_mean"]
    # the old --attributes: the user table, below the forcing and the hydrofabric
    out2 = tmp_path / "out2"
    assert dhydro(["ngen-config", str(GEOJSON), "--out", str(out2), "--attributes", str(DATA / "attributes.csv"),
                   "--forcing-pattern", str(forcing_dir / "{{id}}.csv")]) == 0
    prov2 = pd.read_csv(out2 / "attributes_provenance.csv", dtype={"id": str}).set_index("id")
    assert prov2.at["cat-52", "frac_forest"].startswith("table:attributes.csv")
    assert prov2.at["cat-27", "p_mean"].startswith("forcing:")
    from bmi_dhydro.ngen import NGEN_STEPPING

    assert yaml.safe_load((out / "config" / "cat-27.yaml").read_text())["stepping"] == NGEN_STEPPING
    # --stepping: written into every config, which runs with it
    out3 = tmp_path / "out3"
    assert dhydro(["ngen-config", str(GEOJSON), "--out", str(out3), "--stepping", "day_so_far",
                   "--forcing-pattern", str(forcing_dir / "{{id}}.csv")]) == 0
    assert {yaml.safe_load(p.read_text())["stepping"] for p in (out3 / "config").glob("*.yaml")} == {"day_so_far"}
    m = BmiDeltaModel()
    m.initialize(str(out3 / "config" / "cat-52.yaml"))
    assert m.stepper.so_far
    m.finalize()


def test_the_sample_attributes_are_what_the_tool_writes(tmp_path):
    """examples/ngen/data/attributes.csv and attributes_provenance.csv are tools/make_ngen_attributes.py's output:
    dhydro ngen-config on each sample domain, run where its realization runs, gives the same rows."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_ngen_attributes", ROOT / "tools" / "make_ngen_attributes.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    table = pd.read_csv(DATA / "attributes.csv", dtype={"id": str}).set_index("id")
    prov = pd.read_csv(DATA / "attributes_provenance.csv", dtype=str).set_index("id")
    assert sorted(table.columns) == sorted(NAMES) and list(prov.columns) == list(table.columns)
    seen = []
    for i, (cwd, hydrofabric, pattern) in enumerate(tool.DOMAINS):
        out = tmp_path / str(i)
        with pytest.MonkeyPatch.context() as mp:
            mp.chdir(cwd)
            assert dhydro(["ngen-config", hydrofabric, "--out", str(out), "--forcing-pattern", pattern]) == 0
        got = pd.read_csv(out / "attributes.csv", dtype={"id": str}).set_index("id")
        got_prov = pd.read_csv(out / "attributes_provenance.csv", dtype=str).set_index("id")
        pd.testing.assert_frame_equal(got, table.loc[got.index, got.columns], check_exact=False, rtol=1e-14,
                                      check_dtype=False)
        pd.testing.assert_frame_equal(got_prov, prov.loc[got.index, got_prov.columns])
        assert all(v.startswith(("hydrofabric:", "camels:")) for v in got_prov.to_numpy().ravel())
        seen += list(got.index)
    assert sorted(seen) == sorted(table.index)
