"""A BMI data component serving per-catchment forcing (ngen's AORC per-catchment NetCDF or CSV files).

Config (YAML, strict)::

    path: data/forcing/cats-27_52_67-2015_12_01-2015_12_30.nc   # or a folder of <id>*.csv files
    ids: [cat-27, cat-52, cat-67]                                # optional: all ids in the file by default

Outputs, one value per catchment on an unstructured grid of points (ordered as ``ids``):
``atmosphere_water__liquid_equivalent_precipitation_rate`` (mm s-1, from APCP_surface / step length),
``land_surface_air__temperature`` (K), ``land_surface_radiation~incoming~shortwave__energy_flux`` (W m-2),
``land_surface_air__pressure`` (Pa) and ``atmosphere_air_water~vapor__relative_saturation`` (kg kg-1); from
CAMELS also the daily ``land_surface_air__max_of_temperature`` / ``..min_of_temperature`` (K).
The value at the current time is the forcing of the interval that starts there.  Time 0 is the first record
(``time_origin`` gives its date).  The end time is the end of the last record's interval: there the outputs are
NaN (no forcing; a model step fed from them fails loudly), and stepping further is an error.

The time axis is checked when the files are read (:func:`bmi_dhydro.forcing.check_time_axis`): strictly
increasing, evenly spaced, no duplicates, the same in every file; CAMELS records must be daily.  The coupler checks
that the records cover its period (:meth:`data_end_time`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from bmipy import Bmi
from pydantic import BaseModel, ConfigDict, ValidationError

from bmi_dhydro.forcing import (HUMIDITY, PRECIP, PRESSURE, SHORTWAVE, TEMP, TMAX, TMIN, ForcingTimeError, check_time_axis,
                                 read_aorc_csv, read_aorc_netcdf)

UNITS = {PRECIP: "mm s-1", TEMP: "K", TMAX: "K", TMIN: "K", SHORTWAVE: "W m-2", PRESSURE: "Pa", HUMIDITY: "kg kg-1"}


class _Camels(BaseModel):
    model_config = ConfigDict(extra="forbid")
    root: str | None = None  # None: the CAMELS subset bundled with bmi_dhydro
    basins: list[str]
    product: str = "nldas"
    start: str | None = None
    end: str | None = None


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str | None = None
    ids: list[str] | None = None
    camels: _Camels | None = None


def _read_camels(c: _Camels, base: Path):
    """Daily CAMELS basin forcing as BMI inputs: prcp/86400 mm s-1, mean of tmax/tmin + 273.15 K, the daily
    maximum and minimum (K; for Hargreaves PET) and srad W m-2."""
    from bmi_dhydro.datasets import open_camels

    root = None if c.root is None else (Path(c.root) if Path(c.root).is_absolute() else base / c.root)
    ds = open_camels(root, c.basins, c.product, attributes=[], start=c.start, end=c.end)
    tr = lambda v: ds[v].transpose("time", "basin").to_numpy()  # noqa: E731
    data = {PRECIP: tr("prcp") / 86400.0, TEMP: 0.5 * (tr("tmax") + tr("tmin")) + 273.15, SHORTWAVE: tr("srad"),
            TMAX: tr("tmax") + 273.15, TMIN: tr("tmin") + 273.15}
    times = ds["time"].to_index()
    check_time_axis(times, f"CAMELS {c.product} forcing of basins {c.basins[:5]}", 86400.0)
    return times, [str(b) for b in ds.basin.values], data, ds["lat"].to_numpy(), ds["lon"].to_numpy()


class _Units:
    def __init__(self, ids):
        self.ids = list(ids)


class CatchmentForcingBmi(Bmi):
    def initialize(self, config_file: str) -> None:
        cfg_path = Path(config_file)
        try:
            cfg = _Config.model_validate(yaml.safe_load(cfg_path.read_text()))
        except ValidationError as exc:
            raise ValueError(f"catchment forcing config {cfg_path}: {exc}") from exc
        lat = lon = None
        if (cfg.path is None) == (cfg.camels is None):
            raise ValueError(f"catchment forcing config {cfg_path}: give exactly one of path (ngen AORC files) or camels")
        if cfg.camels is not None:
            times, ids, data, lat, lon = _read_camels(cfg.camels, cfg_path.parent)
            path = None
        else:
            path = Path(cfg.path)
            path = path if path.is_absolute() else cfg_path.parent / path
        if path is not None and not path.exists():
            raise FileNotFoundError(f"catchment forcing config {cfg_path}: path names a missing file: {path}")
        if path is None:
            pass
        elif path.is_dir():
            if not cfg.ids:
                raise ValueError(f"catchment forcing config {cfg_path}: ids are required with a folder of CSV files")
            cols, times = {}, None
            for uid in cfg.ids:
                hits = sorted(path.glob(f"{uid}*.csv")) or sorted(path.glob(f"*{uid}*.csv"))
                if not hits:
                    raise FileNotFoundError(f"catchment forcing: no CSV for {uid!r} in {path}")
                t, d = read_aorc_csv(hits[0])
                if times is None:
                    times, first = t, hits[0]
                elif not t.equals(times):
                    raise ForcingTimeError(
                        f"catchment forcing: {hits[0]} has {len(t)} records {t[0]}..{t[-1]}, but {first} has {len(times)} "
                        f"records {times[0]}..{times[-1]}; every file must share one time axis")
                for k, v in d.items():
                    cols.setdefault(k, []).append(v)
            data = {k: np.stack(v, axis=1) for k, v in cols.items()}
            ids = list(cfg.ids)
        else:
            times, ids, data = read_aorc_netcdf(path, cfg.ids)
        self.times = pd.DatetimeIndex(times)
        self.dt = check_time_axis(self.times, f"catchment forcing {path or 'CAMELS'}")
        self.time_origin = self.times[0].to_pydatetime()
        self.units = _Units(ids)
        self.data = {k: np.ascontiguousarray(v, dtype="float64") for k, v in data.items() if k in UNITS}
        self.outputs = tuple(k for k in UNITS if k in self.data)
        self.index = 0
        self.buf = {k: self.data[k][0].copy() for k in self.outputs}
        self.lon = np.zeros(len(ids)) if lon is None else np.asarray(lon, dtype="float64")
        self.lat = np.zeros(len(ids)) if lat is None else np.asarray(lat, dtype="float64")

    def update(self) -> None:
        if self.index + 1 > len(self.times):
            raise ValueError(f"catchment forcing: no data after {self.times[-1]} (asked for one more step)")
        self.index += 1
        if self.index == len(self.times):  # the end of the last record's interval: no forcing is served from here
            for k in self.outputs:
                self.buf[k][:] = np.nan
            return
        for k in self.outputs:
            self.buf[k][:] = self.data[k][self.index]

    def update_until(self, time: float) -> None:
        n = int(round((time - self.get_current_time()) / self.dt))
        for _ in range(n):
            self.update()

    def finalize(self) -> None:
        pass

    def get_component_name(self) -> str:
        return "ngen per-catchment forcing"

    def get_input_item_count(self) -> int:
        return 0

    def get_output_item_count(self) -> int:
        return len(self.outputs)

    def get_input_var_names(self):
        return ()

    def get_output_var_names(self):
        return self.outputs

    def _check(self, name):
        if name not in self.buf:
            raise KeyError(f"unknown variable {name!r}; valid names: {', '.join(self.outputs)}")

    def get_var_grid(self, name):
        self._check(name)
        return 0

    def get_var_type(self, name):
        self._check(name)
        return "float64"

    def get_var_units(self, name):
        self._check(name)
        return UNITS[name]

    def get_var_itemsize(self, name):
        self._check(name)
        return 8

    def get_var_nbytes(self, name):
        self._check(name)
        return int(self.buf[name].nbytes)

    def get_var_location(self, name):
        self._check(name)
        return "node"

    def get_current_time(self):
        return float(self.index * self.dt)

    def get_start_time(self):
        return 0.0

    def get_end_time(self):
        return float(len(self.times) * self.dt)  # the end of the last record's interval

    def data_end_time(self) -> float:
        """The time of the last record (not BMI): the last time a value can be served."""
        return float((len(self.times) - 1) * self.dt)

    def get_time_units(self):
        return "s"

    def get_time_step(self):
        return float(self.dt)

    def get_value_ptr(self, name):
        self._check(name)
        return self.buf[name]

    def get_value(self, name, dest):
        dest[:] = self.get_value_ptr(name)
        return dest

    def get_value_at_indices(self, name, dest, inds):
        dest[: len(inds)] = self.get_value_ptr(name)[inds]
        return dest

    def set_value(self, name, src):
        raise ValueError("catchment forcing: a data component has no inputs")

    def set_value_at_indices(self, name, inds, src):
        raise ValueError("catchment forcing: a data component has no inputs")

    def get_grid_rank(self, grid):
        return 2

    def get_grid_size(self, grid):
        return len(self.units.ids)

    def get_grid_type(self, grid):
        return "unstructured"

    def get_grid_node_count(self, grid):
        return len(self.units.ids)

    def get_grid_edge_count(self, grid):
        return 0

    def get_grid_face_count(self, grid):
        return 0

    def get_grid_x(self, grid, x):
        x[:] = self.lon
        return x

    def get_grid_y(self, grid, y):
        y[:] = self.lat
        return y

    def get_grid_z(self, grid, z):
        raise ValueError("catchment forcing: grid 0 has rank 2")

    def get_grid_shape(self, grid, shape):
        raise ValueError("catchment forcing: grid 0 is unstructured")

    def get_grid_spacing(self, grid, spacing):
        raise ValueError("catchment forcing: grid 0 is unstructured")

    def get_grid_origin(self, grid, origin):
        raise ValueError("catchment forcing: grid 0 is unstructured")

    def get_grid_edge_nodes(self, grid, edge_nodes):
        return edge_nodes

    def get_grid_face_edges(self, grid, face_edges):
        return face_edges

    def get_grid_face_nodes(self, grid, face_nodes):
        return face_nodes

    def get_grid_nodes_per_face(self, grid, nodes_per_face):
        return nodes_per_face
