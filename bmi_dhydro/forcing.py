"""Readers for ngen's AORC forcing layouts, returning BMI input arrays (time, unit) in BMI units.

* per-catchment CSV: ``time,APCP_surface,DLWRF_surface,DSWRF_surface,PRES_surface,SPFH_2maboveground,
  TMP_2maboveground,...,precip_rate`` (hourly);
* per-catchment NetCDF: ``ids(catchment-id)``, ``Time(catchment-id, time)`` ns since 1970, one variable per field.

Precipitation: ``APCP_surface`` (kg m-2 per hour = mm per hour) is preferred and divided by 3600 to give mm s-1;
``precip_rate`` (mm s-1) is used only when APCP is absent (in ngen's cat-27/52/67 sample ``precip_rate`` is
1000x too small, see the examples' README).

Every reader checks its time axis (:func:`check_time_axis`): records strictly increasing, evenly spaced, without
duplicates or gaps; a bad axis is an error naming the file, the first bad record and what was expected (a
missing day would otherwise shift every later record by a day).
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


class ForcingTimeError(ValueError):
    """A forcing file whose time axis is not strictly increasing and evenly spaced, or does not cover a run."""


def _fmt_s(seconds: float) -> str:
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if seconds and abs(seconds) % size == 0:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} s"


def check_time_axis(times, source: str, step_s: float | None = None) -> float:
    """The step (s) of a forcing time axis that is strictly increasing and evenly spaced at ``step_s`` (when given;
    else at the axis' most common spacing), without duplicates; otherwise a :class:`ForcingTimeError` naming
    ``source``, the first bad record and what was expected.  One record: ``step_s`` (or 3600)."""
    t = pd.DatetimeIndex(times)
    if len(t) == 0:
        raise ForcingTimeError(f"{source}: no time records")
    if t.hasnans:
        i = int(np.flatnonzero(t.isna())[0])
        raise ForcingTimeError(f"{source}: record {i} has no valid time")
    if len(t) == 1:
        return float(step_s or 3600.0)
    d = np.asarray((t[1:] - t[:-1]).total_seconds(), dtype="float64")  # seconds between consecutive records
    if step_s is None:
        vals, counts = np.unique(d[d > 0], return_counts=True)
        step_s = float(vals[np.argmax(counts)]) if vals.size else 0.0
    bad = np.flatnonzero(d <= 0)  # duplicates and disorder first: the more basic fault
    if not bad.size:
        bad = np.flatnonzero(d != step_s)
    if bad.size:
        j = int(bad[0])
        i = j + 1
        if d[j] == 0:
            what = f"a duplicate of record {j} ({t[j]})"
        elif d[j] < 0:
            what = f"earlier than record {j} ({t[j]}): the records are not in time order"
        elif d[j] > step_s and (d[j] % step_s == 0 if step_s else False):
            what = f"{_fmt_s(d[j])} after record {j} ({t[j]}): {int(d[j] // step_s) - 1} record(s) missing"
        else:
            what = f"{_fmt_s(d[j])} after record {j} ({t[j]})"
        raise ForcingTimeError(f"{source}: record {i} ({t[i]}) is {what}; expected strictly increasing records "
                               f"every {_fmt_s(step_s)} without gaps or duplicates (next after {t[j]}: "
                               f"{t[j] + pd.Timedelta(seconds=step_s)})")
    return float(step_s)


def check_covers(times, step_s: float, start, end, source: str) -> None:
    """The records (each the start of a ``step_s`` interval) cover ``[start, end)``."""
    t = pd.DatetimeIndex(times)
    start, end = pd.Timestamp(start), pd.Timestamp(end)
    if t[0] > start:
        raise ForcingTimeError(f"{source}: the first record is {t[0]}, after the start of the run {start}")
    last_end = t[-1] + pd.Timedelta(seconds=step_s)
    if last_end < end:
        raise ForcingTimeError(f"{source}: the records end at {last_end} (end of the last record's interval), "
                               f"before the end of the run {end}")


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
    if "time" not in df.columns:
        raise KeyError(f"forcing {path}: expected a column time, got {list(df.columns)}")
    try:
        times = pd.DatetimeIndex(pd.to_datetime(df["time"]))
    except (ValueError, TypeError) as exc:
        raise ForcingTimeError(f"forcing {path}: the time column cannot be read as dates ({exc})") from None
    dt = check_time_axis(times, f"forcing {path}")
    return times, _frame_to_inputs(df, str(path), dt)


def read_aorc_netcdf(path, ids=None) -> tuple[pd.DatetimeIndex, list[str], dict]:
    """ngen per-catchment NetCDF → (times, ids, {bmi name: (time, unit) array})."""
    import xarray as xr

    try:
        ds = xr.open_dataset(path, decode_times=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"forcing {path}: cannot be read as ngen per-catchment NetCDF forcing "
                         f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    with ds:
        for key in ("ids", "Time"):
            if key not in ds.variables:
                raise KeyError(f"forcing {path}: expected a variable {key!r} (ngen per-catchment layout), got {sorted(map(str, ds.variables))}")
        all_ids = [i.decode() if isinstance(i, bytes) else str(i) for i in ds["ids"].values]
        missing = [i for i in (ids or []) if i not in all_ids]
        if missing:
            raise KeyError(f"forcing {path}: catchments {missing[:5]} are not in the file (it holds {all_ids[:5]}...)")
        sel = list(range(len(all_ids))) if ids is None else [all_ids.index(i) for i in ids]
        tt = ds["Time"].values
        t = tt[sel[0]]
        for k in sel[1:]:  # one time axis for every catchment
            if not np.array_equal(tt[k], t):
                j = int(np.flatnonzero(tt[k] != t)[0]) if tt[k].shape == t.shape else 0
                raise ForcingTimeError(f"forcing {path}: catchment {all_ids[k]!r} has other times than {all_ids[sel[0]]!r} "
                                       f"(first difference at record {j}); every catchment must share one time axis")
        times = pd.DatetimeIndex(pd.to_datetime(t.astype("int64"), unit="ns"))
        dt = check_time_axis(times, f"forcing {path}")
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
