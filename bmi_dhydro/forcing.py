"""Readers for ngen's AORC forcing layouts, returning BMI input arrays (time, unit) in BMI units.

* per-catchment CSV: ``time,APCP_surface,DLWRF_surface,DSWRF_surface,PRES_surface,SPFH_2maboveground,
  TMP_2maboveground,...,precip_rate`` (hourly);
* per-catchment NetCDF: ``ids(catchment-id)``, ``Time(catchment-id, time)`` ns since 1970, one variable per field.

Precipitation: ``APCP_surface`` (kg m-2 per hour = mm per hour) is preferred and divided by 3600 to give mm s-1;
``precip_rate`` (mm s-1) is used only when APCP is absent (in ngen's cat-27/52/67 sample ``precip_rate`` is
1000x too small, see the examples' README).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

PRECIP = "atmosphere_water__liquid_equivalent_precipitation_rate"
TEMP = "land_surface_air__temperature"
SHORTWAVE = "land_surface_radiation~incoming~shortwave__energy_flux"
PRESSURE = "land_surface_air__pressure"
HUMIDITY = "atmosphere_air_water~vapor__relative_saturation"
PET = "land_surface_water__potential_evaporation_volume_flux"
#: daily (or per-step) extremes of the air temperature, for Hargreaves PET
TMAX = "land_surface_air__max_of_temperature"
TMIN = "land_surface_air__min_of_temperature"

AORC_TO_BMI = {
    "TMP_2maboveground": TEMP,
    "DSWRF_surface": SHORTWAVE,
    "PRES_surface": PRESSURE,
    "SPFH_2maboveground": HUMIDITY,
}


def _frame_to_inputs(df: pd.DataFrame, source: str, dt_s: float) -> dict:
    cols = {c.strip(): c for c in df.columns}
    out = {}
    if "APCP_surface" in cols:
        out[PRECIP] = df[cols["APCP_surface"]].to_numpy(dtype="float64") / dt_s
    elif "precip_rate" in cols:
        out[PRECIP] = df[cols["precip_rate"]].to_numpy(dtype="float64")
    else:
        raise KeyError(f"forcing {source}: expected a column APCP_surface or precip_rate, got {list(df.columns)}")
    for aorc, bmi in AORC_TO_BMI.items():
        if aorc in cols:
            out[bmi] = df[cols[aorc]].to_numpy(dtype="float64")
    if TEMP not in out:
        raise KeyError(f"forcing {source}: expected a column TMP_2maboveground (K), got {list(df.columns)}")
    return out


def read_aorc_csv(path) -> tuple[pd.DatetimeIndex, dict]:
    """One catchment's CSV → (times, {bmi name: (time,) array})."""
    df = pd.read_csv(path, skipinitialspace=True)
    times = pd.DatetimeIndex(pd.to_datetime(df["time"]))
    dt = (times[1] - times[0]).total_seconds() if len(times) > 1 else 3600.0
    return times, _frame_to_inputs(df, str(path), dt)


def read_aorc_netcdf(path, ids=None) -> tuple[pd.DatetimeIndex, list[str], dict]:
    """ngen per-catchment NetCDF → (times, ids, {bmi name: (time, unit) array})."""
    import xarray as xr

    with xr.open_dataset(path, decode_times=False) as ds:
        all_ids = [i.decode() if isinstance(i, bytes) else str(i) for i in ds["ids"].values]
        sel = list(range(len(all_ids))) if ids is None else [all_ids.index(i) for i in ids]
        t = ds["Time"].values[sel[0]]
        times = pd.DatetimeIndex(pd.to_datetime(t.astype("int64"), unit="ns"))
        dt = (times[1] - times[0]).total_seconds() if len(times) > 1 else 3600.0
        frame = {v: ds[v].values[sel].T.astype("float64") for v in ds.data_vars if v not in ("ids", "Time")}
    out = {}
    if "APCP_surface" in frame:
        out[PRECIP] = frame["APCP_surface"] / dt
    elif "precip_rate" in frame:
        out[PRECIP] = frame["precip_rate"]
    for aorc, bmi in AORC_TO_BMI.items():
        if aorc in frame:
            out[bmi] = frame[aorc]
    return times, [all_ids[i] for i in sel], out


def read_forcing_for_units(path, ids) -> tuple[pd.DatetimeIndex, dict]:
    """CSV (one unit) or NetCDF (several) → (times, {bmi name: (time, unit)})."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        if len(ids) != 1:
            raise ValueError(f"forcing {path}: a CSV holds one catchment, but {len(ids)} units are configured")
        times, data = read_aorc_csv(path)
        return times, {k: v[:, None] for k, v in data.items()}
    times, _, data = read_aorc_netcdf(path, ids)
    return times, data
