"""The coupled run's output file: a CF-1.8 ``timeSeries`` NetCDF written in chunks as the run goes."""

from __future__ import annotations

from pathlib import Path

import numpy as np


class NetcdfAppender:
    """CF time series written in chunks along an unlimited time dimension; each flush is synced."""

    def __init__(self, path, ids, lon, lat, variables: dict, start, attrs: dict):
        import netCDF4

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.nc = netCDF4.Dataset(self.path, "w")
        nc = self.nc
        nc.setncatts({"Conventions": "CF-1.8", "featureType": "timeSeries", "source": "bmi-dhydro coupler", **attrs})
        nc.createDimension("time", None)
        nc.createDimension("unit", len(ids))
        t = nc.createVariable("time", "f8", ("time",))
        t.units = f"seconds since {start:%Y-%m-%d %H:%M:%S}"
        t.standard_name = "time"
        t.calendar = "standard"
        uid = nc.createVariable("unit_id", str, ("unit",))
        uid.cf_role = "timeseries_id"
        for i, u in enumerate(ids):
            uid[i] = str(u)
        for name, vals, std in (("lon", lon, "longitude"), ("lat", lat, "latitude")):
            if vals is not None:
                v = nc.createVariable(name, "f8", ("unit",))
                v[:] = vals
                v.standard_name = std
                v.units = "degrees_east" if name == "lon" else "degrees_north"
        self.vars = {}
        for name, units in variables.items():
            v = nc.createVariable(name, "f8", ("time", "unit"), zlib=True, complevel=4, fill_value=np.nan)
            v.units = units
            v.coordinates = "lat lon"
            self.vars[name] = v
        self.n = 0
        self.buffer: list[tuple[float, dict]] = []

    def add(self, t: float, values: dict) -> None:
        self.buffer.append((t, {k: np.array(v, dtype="float64") for k, v in values.items()}))

    def flush(self) -> None:
        if not self.buffer:
            return
        k = len(self.buffer)
        sl = slice(self.n, self.n + k)
        self.nc["time"][sl] = [t for t, _ in self.buffer]
        for name, var in self.vars.items():
            var[sl, :] = np.stack([vals[name] for _, vals in self.buffer])
        self.n += k
        self.buffer = []
        self.nc.sync()

    def close(self) -> None:
        self.flush()
        self.nc.close()
