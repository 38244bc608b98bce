"""The coupled run's output file: a CF-1.8 ``timeSeries`` NetCDF written in chunks as the run goes.

Serial and MPI runs write it through this class, with the metadata and time convention of :mod:`bmi_dhydro.cf`:
``time`` is the end of each coupler step and ``time_bnds`` its start and end; ``unit_id`` is the dimension
coordinate; each variable has a CF-valid name (the CSDMS name in ``csdms_name`` where it differs), ``long_name``,
``units`` and ``cell_methods``.

The file grows under its partial name (:func:`bmi_dhydro.safe_io.partial_path`: ``out.nc`` → ``out.partial.nc``)
and is moved to its final name only by ``close(ok=True)``, when the run ended well, so an earlier complete output
is never replaced by a failing run.  From its creation the partial file's global attributes say that it is
incomplete (``run_status``) and, after every flush, up to which time it holds data (``written_until``,
``steps_written``); a run that stops early (an error, Ctrl-C, a kill) leaves it with what it flushed.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import numpy as np

from bmi_dhydro.cf import CONVENTIONS, TIME_COMMENT, cf_name, history_line, time_attrs, variable_attrs
from bmi_dhydro.safe_io import COMPLETE, STATUS_ATTR, partial_path

RUNNING = "incomplete: the run is going on, or stopped without closing this file (killed)"


class NetcdfAppender:
    """CF time series written in chunks along an unlimited time dimension; each flush is synced."""

    def __init__(self, path, ids, lon, lat, variables: dict, start, attrs: dict):
        import netCDF4

        self.path = Path(path)
        if self.path.is_dir():
            raise IsADirectoryError(f"outputs.path {self.path}: is a folder; expected the path of a file to write")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.partial = partial_path(self.path)
        self.start = start
        self.nc = netCDF4.Dataset(self.partial, "w")
        nc = self.nc
        nc.setncatts({"Conventions": CONVENTIONS, "featureType": "timeSeries", "source": "bmi-dhydro coupler",
                      "time_convention": TIME_COMMENT, "history": history_line(), **attrs,
                      STATUS_ATTR: RUNNING, "final_path": str(self.path), "steps_written": 0, "written_until": "nothing"})
        nc.createDimension("time", None)
        nc.createDimension("unit_id", len(ids))
        nc.createDimension("nv", 2)
        t = nc.createVariable("time", "f8", ("time",))
        t.units = f"seconds since {start:%Y-%m-%d %H:%M:%S}"
        t.setncatts(time_attrs())
        nc.createVariable("time_bnds", "f8", ("time", "nv"))
        uid = nc.createVariable("unit_id", str, ("unit_id",))
        uid.cf_role = "timeseries_id"
        uid.long_name = "unit (basin / catchment) identifier"
        for i, u in enumerate(ids):
            uid[i] = str(u)
        coords = []
        for name, vals, std in (("lon", lon, "longitude"), ("lat", lat, "latitude")):
            if vals is not None:
                v = nc.createVariable(name, "f8", ("unit_id",))
                v[:] = vals
                v.standard_name = std
                v.long_name = f"{std} of the unit"
                v.units = "degrees_east" if name == "lon" else "degrees_north"
                coords.append(name)
        self.vars = {}
        for name, units in variables.items():
            v = nc.createVariable(cf_name(name), "f8", ("time", "unit_id"), zlib=True, complevel=4, fill_value=np.nan)
            v.setncatts(variable_attrs(name, units))
            if coords:
                v.coordinates = " ".join(reversed(coords))
            self.vars[name] = v
        self.n = 0
        self.last_t = None
        self.buffer: list[tuple[float, dict]] = []
        nc.sync()

    def add(self, t: float, values: dict) -> None:
        """Values (keyed by the names given to the constructor) of the interval that ends ``t`` seconds after the
        start; the interval starts at the previous ``t`` (at 0 for the first): ``time_bnds``."""
        self.buffer.append((t, {k: np.array(v, dtype="float64") for k, v in values.items()}))

    def written_until(self) -> str:
        """The time of the last record in the file (the end of its step), as text."""
        return "nothing" if self.last_t is None else f"{self.start + timedelta(seconds=self.last_t):%Y-%m-%d %H:%M:%S}"

    def flush(self) -> None:
        if not self.buffer:
            return
        k = len(self.buffer)
        sl = slice(self.n, self.n + k)
        ends = np.array([t for t, _ in self.buffer], dtype="float64")
        starts = np.concatenate([[self.last_t if self.last_t is not None else 0.0], ends[:-1]])
        self.nc["time"][sl] = ends
        self.nc["time_bnds"][sl, :] = np.stack([starts, ends], axis=1)
        for name, var in self.vars.items():
            var[sl, :] = np.stack([vals[name] for _, vals in self.buffer])
        self.n += k
        self.last_t = self.buffer[-1][0]
        self.buffer = []
        self.nc.setncatts({"steps_written": self.n, "written_until": self.written_until()})
        self.nc.sync()

    def close(self, ok: bool = True, reason: str = "") -> Path:
        """Flush and close.  ``ok``: the run ended well, the file moves to its final path (replacing an earlier
        one); otherwise it stays the partial file, marked incomplete with ``reason``.  Returns where it is."""
        if self.nc is None:
            return self.path if ok else self.partial
        try:
            self.flush()
            if ok:
                self.nc.setncattr(STATUS_ATTR, COMPLETE)
                self.nc.delncattr("final_path")
            else:
                self.nc.setncattr(STATUS_ATTR, f"incomplete: the run stopped early ({reason or 'unknown reason'}); "
                                               f"this file holds its first {self.n} steps, up to {self.written_until()}")
        finally:
            self.nc.close()
            self.nc = None
        if ok:
            os.replace(self.partial, self.path)
            return self.path
        return self.partial


def stop_reason(exc: BaseException) -> str:
    """A one-line reason for the attributes of a partial file."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (Ctrl-C)"
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:500]
