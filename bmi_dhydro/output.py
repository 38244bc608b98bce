"""CF-1.8 NetCDF time-series output (featureType timeSeries, one series per unit)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from .cf import CONVENTIONS, TIME_COMMENT, history_line, time_attrs, variable_attrs

#: model output name -> (NetCDF name, units); long names, cell methods and standard names: :mod:`bmi_dhydro.cf`
OUTPUT_META = {
    "streamflow": ("streamflow", "m3 s-1"),
    "runoff": ("runoff", "mm d-1"),
    "runoff_unrouted": ("runoff_unrouted", "mm d-1"),
    "et": ("et", "mm d-1"),
    "pet": ("pet", "mm d-1"),
    "precip": ("precip", "mm d-1"),
    "leak": ("leak", "mm d-1"),
    "swe": ("swe", "mm"),
    "snowpack": ("snowpack", "mm"),
    "meltwater": ("meltwater", "mm"),
    "sm": ("soil_moisture", "mm"),
    "suz": ("upper_zone_storage", "mm"),
    "slz": ("lower_zone_storage", "mm"),
    "routing_store": ("routing_storage", "mm"),
    "storage": ("total_storage", "mm"),
}


def timeseries_dataset(times, ids, data: dict, lat=None, lon=None, area_km2=None, attrs: dict | None = None,
                       step=None) -> xr.Dataset:
    """A CF-1.8 ``timeSeries`` dataset with dims (time, unit_id) from ``data`` (model name -> (unit, time) arrays).

    ``times`` are the **ends** of the intervals the values describe (:mod:`bmi_dhydro.cf`), each ``step`` long
    (default: one day); ``time_bnds`` holds [start, end]."""
    ids = [str(i) for i in ids]
    times = pd.DatetimeIndex(times)
    step = pd.Timedelta(days=1) if step is None else pd.Timedelta(step)
    ds = xr.Dataset(coords={"time": times, "unit_id": np.array(ids, dtype=object)})
    ds["time"].attrs.update(time_attrs(calendar=None))
    ds["time_bnds"] = (("time", "nv"), np.stack([(times - step).to_numpy(), times.to_numpy()], axis=1))
    ds["unit_id"].attrs.update(cf_role="timeseries_id", long_name="unit (basin / catchment) identifier")
    if lat is not None:
        ds["lat"] = ("unit_id", np.asarray(lat, dtype="float64"))
        ds["lat"].attrs.update(units="degrees_north", standard_name="latitude", long_name="latitude of the unit")
    if lon is not None:
        ds["lon"] = ("unit_id", np.asarray(lon, dtype="float64"))
        ds["lon"].attrs.update(units="degrees_east", standard_name="longitude", long_name="longitude of the unit")
    if area_km2 is not None:
        ds["area"] = ("unit_id", np.asarray(area_km2, dtype="float64"))
        ds["area"].attrs.update(units="km2", long_name="unit area")
    ds = ds.set_coords([c for c in ("lat", "lon") if c in ds])
    coords = " ".join(c for c in ("lat", "lon") if c in ds)
    for name, arr in data.items():
        nc_name, units = OUTPUT_META.get(name, (name, "1"))
        ds[nc_name] = (("time", "unit_id"), np.asarray(arr, dtype="float64").T)
        ds[nc_name].attrs.update(variable_attrs(nc_name, units))
        if coords:
            ds[nc_name].encoding["coordinates"] = coords
    ds.attrs.update(Conventions=CONVENTIONS, featureType="timeSeries", source="bmi-dhydro",
                    time_convention=TIME_COMMENT, history=history_line(), **(attrs or {}))
    return ds


def write_netcdf(ds: xr.Dataset, path) -> Path:
    """Write atomically: a crash never leaves a half-written file in place of an existing one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    enc = {v: {"zlib": True, "complevel": 4} for v in ds.data_vars if ds[v].dtype.kind == "f"}
    # coordinates carry no _FillValue (CF); time and its bounds share units and calendar
    for c in ds.coords:
        enc.setdefault(c, {})["_FillValue"] = None
    t_enc = {"units": "days since 1970-01-01 00:00:00", "calendar": "standard", "dtype": "float64", "_FillValue": None}
    enc["time"] = t_enc
    if "time_bnds" in ds:
        enc["time_bnds"] = dict(t_enc)
    ds.to_netcdf(tmp, encoding=enc)
    os.replace(tmp, path)
    return path
