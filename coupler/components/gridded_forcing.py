"""A BMI 2.0 data component that streams a gridded CF NetCDF forcing time series.

:class:`GriddedForcingBmi` serves variables of a NetCDF file (AORC, NWM forcing, ERA5, ...) one
time slice per :meth:`~GriddedForcingBmi.update`, reading each slice lazily through xarray
(the file is never loaded whole). Values are float64, missing/fill values are NaN, time is in
seconds.

Configuration (YAML; unknown keys are errors; relative paths are relative to the YAML file)::

    path: data/test_template_grid.nc        # the NetCDF file
    variables:                               # BMI output name -> file variable
      atmosphere_water__precipitation_rate:  #   (long form)
        source: RAINRATE
        units: mm h-1                        #   output units (UDUNITS-2, parsed by cf_xarray);
                                             #   converted from the file's
        water_density: true                  #   only if the file holds a water mass flux (kg m-2 s-1)
                                             #   served as a depth rate: divide by 1000 kg m-3
      land_surface_air__temperature: T2D     #   (short form: file units are kept)
    time:                                    # all optional
      variable: time                         #   name of the time coordinate
      start: 2020-12-18T01:00:00             #   first record served (inclusive)
      end: 2020-12-31T23:00:00               #   last record served (inclusive)
      step_seconds: 3600                     #   required only when the file holds one record
      origin: start                          #   "start" (t = 0 at the first served record) or a date
    grid:                                    # all optional: override what the file says
      x: x
      y: y
      crs: "+proj=lcc ..."

Time semantics: after :meth:`initialize` the current time is the first served record and
:meth:`get_value` returns that record; :meth:`update` moves to the next record;
:meth:`update_until` moves to the last record at or before the requested time. Records must be
evenly spaced. Grids are ``uniform_rectilinear`` (1-D, ascending, evenly spaced coordinates),
``rectilinear`` (other 1-D coordinates, including descending latitudes) or
``structured_quadrilateral`` (2-D coordinates); the shape is ``[ny, nx]`` and values are
flattened in that (row-major) order. Nodes are the cell centres of the file.

Non-BMI helpers for couplers: :meth:`get_grid_crs` (WKT), :meth:`get_regrid_grid` (a
:class:`coupler.regrid.Grid` to make weights from), :meth:`get_time_datetimes`,
:attr:`time_origin`.
"""
from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any, Literal, Union

import numpy as np
import yaml
from bmipy import Bmi
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

__all__ = ["GriddedForcingBmi", "GriddedForcingConfig", "ConfigError"]


class ConfigError(ValueError):
    """Bad configuration of the gridded forcing component."""


class VariableSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source: str = Field(description="name of the variable in the NetCDF file")
    units: str | None = Field(default=None, description="output units (default: the file's units)")
    water_density: bool = Field(default=False, description="allow a water mass <-> volume (depth) conversion "
                                "of the file's units, with the density of liquid water (1000 kg m-3)")


class TimeSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    variable: str = "time"
    start: _dt.datetime | None = None
    end: _dt.datetime | None = None
    step_seconds: float | None = Field(default=None, gt=0)
    origin: Union[Literal["start"], _dt.datetime] = "start"


class GridSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    x: str | None = None
    y: str | None = None
    crs: str | int | None = None


class GriddedForcingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: Path
    variables: dict[str, Union[VariableSpec, str]]
    time: TimeSpec = TimeSpec()
    grid: GridSpec = GridSpec()

    @field_validator("variables")
    @classmethod
    def _non_empty(cls, v: dict) -> dict:
        if not v:
            raise ValueError("at least one variable is required")
        return {k: (VariableSpec(source=s) if isinstance(s, str) else s) for k, s in v.items()}


# ----------------------------------------------------------------------------------------------
# units: the project's one UDUNITS-2 parser and converter (coupler.unitconv, cf_xarray)
# ----------------------------------------------------------------------------------------------
def _linear_conversion(src: str, dst: str, what: str, water_density: bool = False) -> tuple[float, float]:
    """(a, b) with ``value_in_dst = a * value_in_src + b``."""
    from coupler.unitconv import UnitError, linear_coefficients

    try:
        return linear_coefficients(src, dst, water_density=water_density, what=what, where=what)
    except UnitError as exc:
        raise ConfigError(str(exc)) from None


# ----------------------------------------------------------------------------------------------
class _GridInfo:
    def __init__(self, gid: int, grid: Any, dims: tuple[str, str]):
        self.id = gid
        self.grid = grid
        self.dims = dims
        ny, nx = grid.shape
        self.shape = (ny, nx)
        if grid.kind == "curvilinear":
            self.type = "structured_quadrilateral"
        elif grid.is_uniform:
            self.type = "uniform_rectilinear"
        else:
            self.type = "rectilinear"


class _VarInfo:
    def __init__(self, name: str, source: str, units: str, grid: _GridInfo, time_dim: str | None,
                 a: float, b: float):
        self.name, self.source, self.units, self.grid, self.time_dim = name, source, units, grid, time_dim
        self.a, self.b = a, b
        self.buffer = np.full(grid.shape[0] * grid.shape[1], np.nan, dtype=np.float64)


class GriddedForcingBmi(Bmi):
    """BMI 2.0 data component streaming gridded forcing from a CF NetCDF file (see module docstring)."""

    _name = "Gridded forcing (CF NetCDF)"

    def __init__(self) -> None:
        self._ds = None
        self._vars: dict[str, _VarInfo] = {}
        self._grids: list[_GridInfo] = []
        self._times_s = np.zeros(0)
        self._index = 0
        self._dt = 0.0
        self._file_index = np.zeros(0, dtype=np.int64)
        self._datetimes: np.ndarray = np.zeros(0)
        self.config: GriddedForcingConfig | None = None
        self.time_origin: Any = None

    # ------------------------------------------------------------------------------------------
    # model control
    # ------------------------------------------------------------------------------------------
    def initialize(self, config_file: str) -> None:
        """Read the YAML configuration ``config_file`` and open the NetCDF file (lazily)."""
        if config_file is None:
            raise ConfigError("GriddedForcingBmi.initialize needs the path of a YAML configuration file")
        path = Path(config_file)
        if not path.is_file():
            raise ConfigError(f"configuration file {str(path)!r} does not exist")
        try:
            raw = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: invalid YAML ({exc})") from None
        self.initialize_from_dict(raw, base_dir=path.parent, source=str(path))

    def initialize_from_dict(self, raw: Any, base_dir: str | Path = ".", source: str = "<dict>") -> None:
        """Like :meth:`initialize` with the configuration given as a mapping."""
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: the configuration must be a mapping, got {type(raw).__name__}")
        try:
            cfg = GriddedForcingConfig.model_validate(raw)
        except ValidationError as exc:
            lines = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" + (f" (got {e['input']!r})"
                                                                            if e.get("type") != "missing" else "")
                     for e in exc.errors()]
            raise ConfigError(f"{source}: invalid gridded forcing configuration:\n  " + "\n  ".join(lines)) from None
        data_path = cfg.path if cfg.path.is_absolute() else Path(base_dir) / cfg.path
        if not data_path.is_file():
            raise ConfigError(f"{source}: path: NetCDF file {str(data_path)!r} does not exist")
        self.config = cfg
        self._open(data_path, cfg)

    def _open(self, data_path: Path, cfg: GriddedForcingConfig) -> None:
        import xarray as xr

        from coupler.regrid import Grid, RegridError

        if self._ds is not None:
            self.finalize()
        ds = xr.open_dataset(str(data_path), decode_times=True, mask_and_scale=True, cache=False, chunks=None)
        self._ds = ds
        self._path = data_path
        try:
            tname = cfg.time.variable
            for name, spec in cfg.variables.items():
                if spec.source not in ds.data_vars and spec.source not in ds.variables:
                    raise ConfigError(f"variables.{name}.source: {spec.source!r} is not in {data_path} "
                                      f"(variables: {sorted(map(str, ds.data_vars))})")
            # grids, one per distinct set of horizontal dims
            grids: dict[tuple[str, str], _GridInfo] = {}
            self._vars = {}
            for name, spec in cfg.variables.items():
                da = ds[spec.source]
                try:
                    g = Grid.from_dataset(ds, spec.source, x=cfg.grid.x, y=cfg.grid.y, crs=cfg.grid.crs,
                                          source=str(data_path))
                except RegridError as exc:
                    raise ConfigError(f"variables.{name}: {exc}") from None
                key = tuple(g.dims)
                if key not in grids:
                    grids[key] = _GridInfo(len(grids), g, key)  # type: ignore[arg-type]
                ginfo = grids[key]
                other = [d for d in da.dims if d not in key]
                tdim = None
                if other:
                    tdim = ds[tname].dims[0] if tname in ds.variables and ds[tname].ndim == 1 else tname
                    if other != [tdim]:
                        raise ConfigError(f"variables.{name}: {spec.source!r} has dims {da.dims}; expected the time "
                                          f"dimension {tdim!r} and the grid dims {key}")
                file_units = str(da.attrs.get("units", "")).strip()
                units = spec.units or file_units or "1"
                a, b = 1.0, 0.0
                if spec.units and file_units and spec.units.strip() != file_units:
                    a, b = _linear_conversion(file_units, spec.units, f"variables.{name}", spec.water_density)
                self._vars[name] = _VarInfo(name, spec.source, units, ginfo, tdim, a, b)
            self._grids = sorted(grids.values(), key=lambda g: g.id)
            self._setup_time(ds, cfg)
            self._index = 0
            self._load()
        except Exception:
            ds.close()
            self._ds = None
            raise

    def _setup_time(self, ds: Any, cfg: GriddedForcingConfig) -> None:
        tname = cfg.time.variable
        uses_time = any(v.time_dim is not None for v in self._vars.values())
        if not uses_time:
            self._datetimes = np.zeros(1)
            self._file_index = np.zeros(1, dtype=np.int64)
            self._times_s = np.zeros(1)
            self._dt = float(cfg.time.step_seconds or 0.0)
            self.time_origin = None
            return
        if tname not in ds.variables:
            raise ConfigError(f"time.variable: {tname!r} is not in the file (variables: {sorted(map(str, ds.variables))})")
        times = np.asarray(ds[tname].values)
        if times.ndim != 1 or times.size == 0:
            raise ConfigError(f"time.variable: {tname!r} must be a non-empty 1-D coordinate")
        if not (np.issubdtype(times.dtype, np.datetime64) or times.dtype == object):
            raise ConfigError(f"time.variable: {tname!r} could not be decoded as dates (units "
                              f"{ds[tname].attrs.get('units', ds[tname].encoding.get('units'))!r})")
        sel = np.arange(times.size)
        if cfg.time.start is not None:
            sel = sel[_ge(times[sel], cfg.time.start)]
        if cfg.time.end is not None:
            sel = sel[_le(times[sel], cfg.time.end)]
        if sel.size == 0:
            raise ConfigError(f"time.start/time.end select no record of the file (file covers {times[0]} .. "
                              f"{times[-1]})")
        t = times[sel]
        origin = t[0] if cfg.time.origin == "start" else _like(t[0], cfg.time.origin)
        secs = _seconds_since(t, origin)
        if secs.size > 1:
            d = np.diff(secs)
            if np.any(d <= 0):
                k = int(np.nonzero(d <= 0)[0][0])
                raise ConfigError(f"time.variable: times must increase; record {k + 1} ({t[k + 1]}) is not after "
                                  f"record {k} ({t[k]})")
            if np.max(np.abs(d - d[0])) > 1e-6 * max(abs(d[0]), 1.0):
                k = int(np.nonzero(np.abs(d - d[0]) > 1e-6 * max(abs(d[0]), 1.0))[0][0])
                raise ConfigError(f"time.variable: records must be evenly spaced; step {k} is {d[k]} s but the first "
                                  f"step is {d[0]} s")
            dt = float(d[0])
            if cfg.time.step_seconds is not None and abs(cfg.time.step_seconds - dt) > 1e-6 * dt:
                raise ConfigError(f"time.step_seconds: {cfg.time.step_seconds} disagrees with the file's step {dt} s")
        else:
            if cfg.time.step_seconds is None:
                raise ConfigError("time.step_seconds is required: the file (after time.start/end) holds a single "
                                  "record, so the time step cannot be read from it")
            dt = float(cfg.time.step_seconds)
        self._datetimes = t
        self._file_index = sel.astype(np.int64)
        self._times_s = secs
        self._dt = dt
        self.time_origin = origin

    def set_read_window(self, name: str, y: tuple[int, int], x: tuple[int, int]) -> None:
        """Read only rows ``y[0]:y[1]`` and columns ``x[0]:x[1]`` of variable ``name`` from now on (non-BMI).

        An MPI rank that needs only part of the grid (its rows of the regrid weights) reads only that box from
        disk; the rest of the BMI buffer holds NaN.  The grid and the buffer keep their full size.
        """
        self._require()
        if name not in self._vars:
            raise KeyError(f"set_read_window: unknown variable {name!r}; valid names: {', '.join(self._vars)}")
        v = self._vars[name]
        ny, nx = v.grid.shape
        if not (0 <= y[0] < y[1] <= ny and 0 <= x[0] < x[1] <= nx):
            raise ValueError(f"set_read_window({name!r}): box rows {y} cols {x} is outside the {ny} x {nx} grid")
        v.window = (slice(int(y[0]), int(y[1])), slice(int(x[0]), int(x[1])))
        v.buffer[:] = np.nan
        self._load()

    def _load(self) -> None:
        ds = self._ds
        k = int(self._file_index[self._index])
        for v in self._vars.values():
            da = ds[v.source]
            if v.time_dim is not None:
                da = da.isel({v.time_dim: k})
            window = getattr(v, "window", None)
            if window is not None:
                da = da.isel({v.grid.dims[0]: window[0], v.grid.dims[1]: window[1]})
            arr = np.asarray(da.transpose(*v.grid.dims).values, dtype=np.float64)
            if v.a != 1.0 or v.b != 0.0:
                arr = v.a * arr + v.b
            if window is not None:
                v.buffer.reshape(v.grid.shape)[window] = arr
            else:
                np.copyto(v.buffer, arr.reshape(-1))

    def update(self) -> None:
        """Advance to the next record."""
        self._require()
        if self._index + 1 >= self._times_s.size:
            raise RuntimeError(f"GriddedForcingBmi.update: no record after t = {self.get_current_time()} s "
                               f"(end_time {self.get_end_time()} s, {self._path})")
        self._index += 1
        self._load()

    def update_until(self, time: float) -> None:
        """Advance to the last record at or before ``time`` (seconds)."""
        self._require()
        time = float(time)
        eps = 1e-6 * max(self._dt, 1.0)
        if time < self.get_current_time() - eps:
            raise ValueError(f"update_until({time}): time is before the current time {self.get_current_time()} s")
        if time > self.get_end_time() + eps:
            raise ValueError(f"update_until({time}): time is after the last record at {self.get_end_time()} s")
        k = int(np.searchsorted(self._times_s, time + eps, side="right") - 1)
        if k != self._index:
            self._index = k
            self._load()

    def finalize(self) -> None:
        if self._ds is not None:
            self._ds.close()
        self._ds = None

    def _require(self) -> None:
        if self._ds is None:
            raise RuntimeError("GriddedForcingBmi: call initialize() first")

    # ------------------------------------------------------------------------------------------
    # info / time
    # ------------------------------------------------------------------------------------------
    def get_component_name(self) -> str:
        return self._name

    def get_input_item_count(self) -> int:
        return 0

    def get_output_item_count(self) -> int:
        return len(self._vars)

    def get_input_var_names(self) -> tuple[str, ...]:
        return ()

    def get_output_var_names(self) -> tuple[str, ...]:
        return tuple(self._vars)

    def get_start_time(self) -> float:
        self._require()
        return float(self._times_s[0])

    def get_end_time(self) -> float:
        self._require()
        return float(self._times_s[-1])

    def get_current_time(self) -> float:
        self._require()
        return float(self._times_s[self._index])

    def get_time_step(self) -> float:
        self._require()
        return float(self._dt)

    def get_time_units(self) -> str:
        return "s"

    def get_time_datetimes(self) -> np.ndarray:
        """Dates of the served records (numpy datetime64 or cftime objects)."""
        return self._datetimes.copy()

    # ------------------------------------------------------------------------------------------
    # variables
    # ------------------------------------------------------------------------------------------
    def _var(self, name: str) -> _VarInfo:
        try:
            return self._vars[name]
        except KeyError:
            raise KeyError(f"GriddedForcingBmi: unknown variable {name!r}; output variables are "
                           f"{list(self._vars)}") from None

    def get_var_type(self, name: str) -> str:
        return str(self._var(name).buffer.dtype)

    def get_var_units(self, name: str) -> str:
        return self._var(name).units

    def get_var_itemsize(self, name: str) -> int:
        return int(self._var(name).buffer.dtype.itemsize)

    def get_var_nbytes(self, name: str) -> int:
        return int(self._var(name).buffer.nbytes)

    def get_var_location(self, name: str) -> str:
        self._var(name)
        return "node"

    def get_var_grid(self, name: str) -> int:
        return self._var(name).grid.id

    def get_value_ptr(self, name: str) -> np.ndarray:
        """The internal buffer (updated in place by every update)."""
        return self._var(name).buffer

    def get_value(self, name: str, dest: np.ndarray) -> np.ndarray:
        buf = self._var(name).buffer
        if dest.size != buf.size:
            raise ValueError(f"get_value({name!r}): dest has {dest.size} elements, the variable has {buf.size}")
        dest[...] = buf.reshape(dest.shape)
        return dest

    def get_value_at_indices(self, name: str, dest: np.ndarray, inds: np.ndarray) -> np.ndarray:
        buf = self._var(name).buffer
        inds = np.asarray(inds, dtype=np.int64).reshape(-1)
        if inds.size and (inds.min() < 0 or inds.max() >= buf.size):
            raise IndexError(f"get_value_at_indices({name!r}): indices outside 0..{buf.size - 1}")
        dest[: inds.size] = buf[inds]
        return dest

    def set_value(self, name: str, src: np.ndarray) -> None:
        self._var(name)
        raise ValueError(f"GriddedForcingBmi has no input variables; {name!r} is an output read from the file")

    def set_value_at_indices(self, name: str, inds: np.ndarray, src: np.ndarray) -> None:
        self.set_value(name, src)

    # ------------------------------------------------------------------------------------------
    # grids
    # ------------------------------------------------------------------------------------------
    def _grid(self, grid: int) -> _GridInfo:
        try:
            g = self._grids[int(grid)]
        except (IndexError, ValueError, TypeError):
            raise KeyError(f"GriddedForcingBmi: unknown grid {grid!r}; grids are 0..{len(self._grids) - 1}") from None
        return g

    def get_grid_type(self, grid: int) -> str:
        return self._grid(grid).type

    def get_grid_rank(self, grid: int) -> int:
        self._grid(grid)
        return 2

    def get_grid_size(self, grid: int) -> int:
        ny, nx = self._grid(grid).shape
        return ny * nx

    def get_grid_shape(self, grid: int, shape: np.ndarray) -> np.ndarray:
        shape[:] = self._grid(grid).shape
        return shape

    def get_grid_spacing(self, grid: int, spacing: np.ndarray) -> np.ndarray:
        g = self._grid(grid)
        if g.type != "uniform_rectilinear":
            raise ValueError(f"grid {grid} is {g.type}: spacing is only defined for uniform_rectilinear grids")
        gr = g.grid
        spacing[:] = [gr.y[1] - gr.y[0] if gr.ny > 1 else gr.y_bounds[0, 1] - gr.y_bounds[0, 0],
                      gr.x[1] - gr.x[0] if gr.nx > 1 else gr.x_bounds[0, 1] - gr.x_bounds[0, 0]]
        return spacing

    def get_grid_origin(self, grid: int, origin: np.ndarray) -> np.ndarray:
        g = self._grid(grid)
        if g.type != "uniform_rectilinear":
            raise ValueError(f"grid {grid} is {g.type}: origin is only defined for uniform_rectilinear grids")
        origin[:] = [g.grid.y[0], g.grid.x[0]]
        return origin

    def get_grid_x(self, grid: int, x: np.ndarray) -> np.ndarray:
        g = self._grid(grid)
        src = g.grid.x.reshape(-1)
        x[: src.size] = src
        return x

    def get_grid_y(self, grid: int, y: np.ndarray) -> np.ndarray:
        g = self._grid(grid)
        src = g.grid.y.reshape(-1)
        y[: src.size] = src
        return y

    def get_grid_z(self, grid: int, z: np.ndarray) -> np.ndarray:
        self._grid(grid)
        raise ValueError(f"grid {grid} has rank 2; it has no z coordinate")

    def get_grid_node_count(self, grid: int) -> int:
        return self.get_grid_size(grid)

    def get_grid_edge_count(self, grid: int) -> int:
        ny, nx = self._grid(grid).shape
        return ny * (nx - 1) + nx * (ny - 1)

    def get_grid_face_count(self, grid: int) -> int:
        ny, nx = self._grid(grid).shape
        return max(ny - 1, 0) * max(nx - 1, 0)

    def _edges(self, grid: int) -> np.ndarray:
        ny, nx = self._grid(grid).shape
        node = np.arange(ny * nx).reshape(ny, nx)
        h = np.stack([node[:, :-1].ravel(), node[:, 1:].ravel()], axis=1)
        v = np.stack([node[:-1, :].ravel(), node[1:, :].ravel()], axis=1)
        return np.concatenate([h, v]).astype(np.int64)

    def get_grid_edge_nodes(self, grid: int, edge_nodes: np.ndarray) -> np.ndarray:
        e = self._edges(grid).reshape(-1)
        edge_nodes[: e.size] = e
        return edge_nodes

    def get_grid_face_nodes(self, grid: int, face_nodes: np.ndarray) -> np.ndarray:
        ny, nx = self._grid(grid).shape
        node = np.arange(ny * nx).reshape(ny, nx)
        f = np.stack([node[:-1, :-1], node[:-1, 1:], node[1:, 1:], node[1:, :-1]], axis=-1).reshape(-1)
        face_nodes[: f.size] = f
        return face_nodes

    def get_grid_face_edges(self, grid: int, face_edges: np.ndarray) -> np.ndarray:
        ny, nx = self._grid(grid).shape
        nh = ny * (nx - 1)
        hid = np.arange(nh).reshape(ny, nx - 1)
        vid = nh + np.arange((ny - 1) * nx).reshape(ny - 1, nx)
        f = np.stack([hid[:-1, :], vid[:, 1:], hid[1:, :], vid[:, :-1]], axis=-1).reshape(-1)
        face_edges[: f.size] = f
        return face_edges

    def get_grid_nodes_per_face(self, grid: int, nodes_per_face: np.ndarray) -> np.ndarray:
        n = self.get_grid_face_count(grid)
        nodes_per_face[:n] = 4
        return nodes_per_face

    # ------------------------------------------------------------------------------------------
    # non-BMI helpers
    # ------------------------------------------------------------------------------------------
    def get_grid_crs(self, grid: int) -> str:
        """The grid's coordinate reference system as WKT."""
        return self._grid(grid).grid.crs.to_wkt()

    def get_regrid_grid(self, grid: int) -> Any:
        """The grid as a :class:`coupler.regrid.Grid`, e.g. for :func:`coupler.regrid.generate_weights`."""
        return self._grid(grid).grid


# ----------------------------------------------------------------------------------------------
def _like(sample: Any, when: _dt.datetime) -> Any:
    """``when`` in the type of the decoded file times (numpy datetime64 or cftime)."""
    if isinstance(sample, np.datetime64):
        if when.tzinfo is not None:
            when = when.astimezone(_dt.timezone.utc).replace(tzinfo=None)
        return np.datetime64(when, "ns")
    import cftime

    return cftime.datetime(when.year, when.month, when.day, when.hour, when.minute, when.second,
                           calendar=getattr(sample, "calendar", "standard"))


def _ge(times: np.ndarray, when: _dt.datetime) -> np.ndarray:
    w = _like(times[0], when)
    return np.array([t >= w for t in times], dtype=bool)


def _le(times: np.ndarray, when: _dt.datetime) -> np.ndarray:
    w = _like(times[0], when)
    return np.array([t <= w for t in times], dtype=bool)


def _seconds_since(times: np.ndarray, origin: Any) -> np.ndarray:
    if np.issubdtype(np.asarray(times).dtype, np.datetime64):
        return (np.asarray(times, dtype="datetime64[ns]") - np.datetime64(origin, "ns")) / np.timedelta64(1, "s")
    return np.array([(t - origin).total_seconds() for t in times], dtype=np.float64)
