"""CF-1.8 NetCDF time-series output (featureType timeSeries, one series per unit)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import xarray as xr

#: model output name → (NetCDF name, units, long_name, CF standard_name or None)
OUTPUT_META = {
    "streamflow": ("streamflow", "m3 s-1", "routed streamflow at the unit outlet", "water_volume_transport_in_river_channel"),
    "runoff": ("runoff", "mm d-1", "routed runoff depth", "runoff_flux"),
    "runoff_unrouted": ("runoff_unrouted", "mm d-1", "runoff depth before routing", None),
    "et": ("et", "mm d-1", "actual evapotranspiration", "water_evapotranspiration_flux"),
    "pet": ("pet", "mm d-1", "potential evapotranspiration", None),
    "precip": ("precip", "mm d-1", "precipitation", "precipitation_flux"),
    "leak": ("leak", "mm d-1", "water added by the soil-moisture floor", None),
    "swe": ("swe", "mm", "snow water equivalent (snowpack + liquid water in snow)", "lwe_thickness_of_surface_snow_amount"),
    "snowpack": ("snowpack", "mm", "frozen snowpack store", None),
    "meltwater": ("meltwater", "mm", "liquid water held in the snowpack", None),
    "sm": ("soil_moisture", "mm", "soil moisture store", None),
    "suz": ("upper_zone_storage", "mm", "upper groundwater store", None),
    "slz": ("lower_zone_storage", "mm", "lower groundwater store", None),
    "routing_store": ("routing_storage", "mm", "water in flight in the unit hydrograph", None),
    "storage": ("total_storage", "mm", "all stores including routing", None),
}


def timeseries_dataset(times, ids, data: dict, lat=None, lon=None, area_km2=None, attrs: dict | None = None) -> xr.Dataset:
    """Build a CF dataset with dims (time, unit) from ``data`` (name → (unit, time) arrays, model names)."""
    ids = [str(i) for i in ids]
    ds = xr.Dataset(coords={"time": np.asarray(times), "unit": np.arange(len(ids))})
    ds["unit_id"] = ("unit", np.array(ids, dtype=object))
    ds["unit_id"].attrs.update(cf_role="timeseries_id", long_name="unit (basin / catchment) identifier")
    if lat is not None:
        ds["lat"] = ("unit", np.asarray(lat, dtype="float64"))
        ds["lat"].attrs.update(units="degrees_north", standard_name="latitude")
    if lon is not None:
        ds["lon"] = ("unit", np.asarray(lon, dtype="float64"))
        ds["lon"].attrs.update(units="degrees_east", standard_name="longitude")
    if area_km2 is not None:
        ds["area"] = ("unit", np.asarray(area_km2, dtype="float64"))
        ds["area"].attrs.update(units="km2", long_name="unit area")
    coords = " ".join(c for c in ("lat", "lon") if c in ds)
    for name, arr in data.items():
        nc_name, units, long_name, std = OUTPUT_META.get(name, (name, "1", name, None))
        ds[nc_name] = (("time", "unit"), np.asarray(arr, dtype="float64").T)
        ds[nc_name].attrs.update(units=units, long_name=long_name)
        if std:
            ds[nc_name].attrs["standard_name"] = std
        if coords:
            ds[nc_name].attrs["coordinates"] = coords
    ds["time"].attrs.update(standard_name="time", long_name="end of the model step")
    ds.attrs.update(Conventions="CF-1.8", featureType="timeSeries", source="bmi-dhydro", **(attrs or {}))
    return ds


def write_netcdf(ds: xr.Dataset, path) -> Path:
    """Write atomically: a crash never leaves a half-written file in place of an existing one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    enc = {v: {"zlib": True, "complevel": 4} for v in ds.data_vars if ds[v].dtype.kind == "f"}
    enc["time"] = {"units": "days since 1970-01-01 00:00:00", "calendar": "standard", "dtype": "float64"}
    ds.to_netcdf(tmp, encoding=enc)
    os.replace(tmp, path)
    return path
