"""``bmi_dhydro.BmiDeltaModel``: a thin CSDMS BMI 2.0 wrapper over :class:`~bmi_dhydro.stepper.Stepper`.

No model arithmetic lives here: this class parses the config, declares the variables (one table generates every
metadata method), validates inputs, owns the float64 buffers handed out by ``get_value_ptr`` (allocated once,
updated in place, so pointers stay live) and copies results into them.  Torch stays inside the stepper/model.

ngen conventions (NOAA-OWP/ngen ``Bmi_Py_Adapter``): built with no arguments then ``initialize(path)``; every
variable is ``"float64"`` with itemsize 8 and nbytes 8·N on one unstructured grid of N units (N = 1 for an ngen
catchment); time in seconds from 0; ``set_value`` with an unknown name is ignored ("unpublished variables"),
every other call with an unknown name raises an error that lists the valid names.
"""

from __future__ import annotations

import io
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from bmipy import Bmi

from . import physics
from .bmi_config import BmiConfig, load_bmi_config
from .checkpoint import shared_model
from .forcing import PET, PRECIP, PRESSURE, SHORTWAVE, TEMP, read_forcing_for_units
from .model import DeltaModel
from .stepper import Stepper
from .units import UnitTable, load_units

# ---------------------------------------------------------------------------------------------------------------
# The variable table


@dataclass(frozen=True)
class Var:
    name: str
    units: str
    role: str  # input | output | parameter | mass | serialization
    dtype: str = "float64"
    location: str = "node"
    doc: str = ""


RUNOFF_DEPTH = "land_surface_water__runoff_depth"
RUNOFF_FLUX = "land_surface_water__runoff_volume_flux"
ET_FLUX = "land_surface_water__evapotranspiration_volume_flux"
PET_OUT = "hbv__potential_evapotranspiration_volume_flux"
SWE = "snowpack__liquid-equivalent_depth"
STORE_VARS = {
    "snowpack": "hbv__snowpack_storage",
    "meltwater": "hbv__meltwater_storage",
    "sm": "hbv__soil_moisture_storage",
    "suz": "hbv__upper_zone_storage",
    "slz": "hbv__lower_zone_storage",
}
MASS_VARS = ("ngen::mass_in", "ngen::mass_out", "ngen::mass_stored", "ngen::mass_leaked")
SER_CREATE, SER_FREE, SER_SIZE, SER_STATE = (
    "ngen::serialization_create", "ngen::serialization_free", "ngen::serialization_size", "ngen::serialization_state")

INPUT_VARS = {
    PRECIP: Var(PRECIP, "mm s-1", "input", doc="precipitation rate"),
    TEMP: Var(TEMP, "K", "input", doc="near-surface air temperature"),
    SHORTWAVE: Var(SHORTWAVE, "W m-2", "input", doc="incoming shortwave radiation (Priestley-Taylor PET)"),
    PRESSURE: Var(PRESSURE, "Pa", "input", doc="surface air pressure (Priestley-Taylor PET)"),
    PET: Var(PET, "m s-1", "input", doc="potential evapotranspiration; overrides the internal PET where set"),
}
OUTPUT_VARS = {
    RUNOFF_DEPTH: Var(RUNOFF_DEPTH, "m", "output", doc="routed runoff depth over the last update() or update_until() call"),
    RUNOFF_FLUX: Var(RUNOFF_FLUX, "m3 s-1", "output", doc="routed runoff volume flux at the unit outlet, mean over that call"),
    ET_FLUX: Var(ET_FLUX, "m s-1", "output", doc="actual evapotranspiration, mean over the last model step"),
    PET_OUT: Var(PET_OUT, "m s-1", "output", doc="potential evapotranspiration used, mean over the last model step"),
    SWE: Var(SWE, "mm", "output", doc="snow water equivalent (snowpack + liquid water in snow)"),
    **{v: Var(v, "mm", "output", doc=f"HBV {k} store (component mean)") for k, v in STORE_VARS.items()},
}
MASS_TABLE = {n: Var(n, "m", "mass") for n in MASS_VARS}
SER_TABLE = {
    SER_CREATE: Var(SER_CREATE, "ngen::trigger", "serialization", "int32", "none"),
    SER_FREE: Var(SER_FREE, "ngen::trigger", "serialization", "int32", "none"),
    SER_SIZE: Var(SER_SIZE, "bytes", "serialization", "int64", "none"),
    SER_STATE: Var(SER_STATE, "ngen::opaque", "serialization", "uint8", "none"),
}
PET_METHOD_INPUTS = {"hamon": (), "hargreaves": (), "priestley_taylor": (SHORTWAVE, PRESSURE), "input": (PET,)}


_ITEMSIZE = {"float64": 8, "int32": 4, "int64": 8, "uint8": 1}
_MIN, _MAX = np.minimum.reduce, np.maximum.reduce
_INF = float("inf")


class UnknownVariableError(KeyError):
    def __str__(self):  # KeyError quotes its message; keep it readable
        return str(self.args[0])


class BmiDeltaModel(Bmi):
    """Differentiable HBV (δHBV) as a BMI 2.0 component over N units."""

    _name = "bmi-dhydro differentiable HBV"

    def __init__(self):
        self._initialized = False
        self._vars: dict[str, Var] = dict(SER_TABLE)  # serialization names resolve even before initialize
        self._buf: dict[str, np.ndarray] = {
            SER_CREATE: np.zeros(1, dtype="int32"),
            SER_FREE: np.zeros(1, dtype="int32"),
            SER_SIZE: np.zeros(1, dtype="int64"),
            SER_STATE: np.zeros(0, dtype="uint8"),
        }
        self._inputs: tuple[str, ...] = ()
        self._outputs: tuple[str, ...] = ()
        self.bad_precip_count = 0
        self._params_dirty = False  # fixed-parameter values set since the last update
        self._pet_live = False  # the PET input buffer may hold values (set, or its pointer handed out)
        self._depth_override = False  # update_until wrote the depth over its whole call into the runoff outputs

    # -- lifecycle -----------------------------------------------------------------------------------------------
    def initialize(self, config_file: str) -> None:
        cfg, _ = load_bmi_config(config_file)
        self._cfg = cfg
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        dtype = torch.float64 if cfg.dtype == "float64" else torch.float32
        units = load_units(cfg.units)
        if cfg.mpi.partition:
            units = self._rank_share(units, cfg)
        model = self._load_model(cfg, len(units))
        attrs = units.attribute_matrix(model.config.attributes) if not model.is_fixed else np.zeros((len(units), 0))
        self.units = units
        self.n = len(units)
        self._area_m2 = units.area_km2 * 1e6
        self.model = model
        self.stepper = Stepper(model, attrs, units.lat, cfg.time.time_step, cfg.time.start.replace(tzinfo=None), dtype=dtype)
        self._declare_variables(cfg, model)
        self._allocate()
        if cfg.warmup.mode == "restart":
            self.load_state(cfg.warmup.restart_file)
        elif cfg.warmup.mode == "spinup":
            self._spinup(cfg.warmup.forcing_file)
        self._refresh_outputs()
        self._initialized = True

    def set_comm(self, comm=None, fortran_handle: int | None = None) -> None:
        """Give the instance a host communicator (an mpi4py communicator, or a Fortran handle converted with
        ``MPI.Comm.f2py``) before ``initialize``; with ``mpi.partition: true`` it then runs its rank's units."""
        from coupler.mpi import get_comm

        self._comm = get_comm(comm, fortran_handle)

    def _rank_share(self, units: UnitTable, cfg: BmiConfig) -> UnitTable:
        from coupler.mpi import get_comm, rank_and_size
        from coupler.partition import partition_units

        comm = getattr(self, "_comm", None) or get_comm(fortran_handle=cfg.mpi.fortran_comm)
        rank, size = rank_and_size(comm)
        if size == 1:
            return units
        toid = dict(zip(units.ids, units.toid)) if units.toid else None
        parts = partition_units(units.ids, size, cost=units.area_km2, toid=toid)
        self.mpi_rank, self.mpi_size = rank, size
        return units.select(parts[rank])

    def _load_model(self, cfg: BmiConfig, n: int) -> DeltaModel:
        m = cfg.model
        if m.parameters is not None:
            for name, v in m.parameters.items():
                if isinstance(v, list) and len(v) not in (1, n):
                    raise ValueError(f"model.parameters.{name}: expected a value or {n} values (one per unit), got {len(v)}")
            dt_days = (m.time_step or cfg.time.time_step) / 86400.0
            if dt_days > 1.0:
                raise ValueError(f"model.time_step: expected at most 86400 s, got {dt_days * 86400:g}")
            model = DeltaModel.fixed(m.parameters, variant=m.variant, routing=m.routing, dt_days=dt_days,
                                     pet_method=m.pet_method or "hamon")
            return model if cfg.dtype == "float64" else model.float()
        model, payload = shared_model(m.checkpoint, torch.float64 if cfg.dtype == "float64" else torch.float32)
        self.checkpoint_path = m.checkpoint
        self.checkpoint_provenance = payload.get("provenance", {})
        return model

    def _declare_variables(self, cfg: BmiConfig, model: DeltaModel) -> None:
        method = model.config.pet_method
        inputs = (PRECIP, TEMP) + PET_METHOD_INPUTS[method]
        outputs = tuple(OUTPUT_VARS)
        if cfg.outputs is not None:
            bad = [o for o in cfg.outputs if o not in OUTPUT_VARS]
            if bad:
                raise ValueError(f"outputs: unknown output variables {bad}; expected among {list(OUTPUT_VARS)}")
            outputs = tuple(cfg.outputs)
            if RUNOFF_DEPTH not in outputs:
                outputs = (RUNOFF_DEPTH,) + outputs
        self._inputs = inputs
        self._outputs = outputs
        self._radiation_inputs = tuple(n for n in (SHORTWAVE, PRESSURE) if n in inputs)
        self._pet_live = PET in inputs
        self._vars = {**INPUT_VARS, **OUTPUT_VARS, **MASS_TABLE, **SER_TABLE}
        names = model.config.param_names + ("route_a", "route_b")
        self._param_names = names
        self._dynamic_outputs = tuple((p, "param_" + p) for p in model.provider.dynamic)  # (buffer, model output)
        for p in names:
            self._vars[p] = Var(p, physics.ALL_UNITS[p], "parameter", doc="HBV parameter (per-day rate where a rate)")
        self._valid_names = sorted(self._vars)

    def _allocate(self) -> None:
        n = self.n
        for name, var in self._vars.items():
            if var.role in ("input", "output", "parameter", "mass"):
                self._buf[name] = np.zeros(n, dtype="float64")
        self._buf[PET][:] = np.nan  # unset: the internal PET method is used
        for name in self._inputs:
            if name != PET:
                self._buf[name][:] = np.nan  # must be set before update
        self._fill_parameters()

    def _fill_parameters(self) -> None:
        if self.model.is_fixed:
            for p in self._param_names:
                v = self.model.provider.value(p).double().numpy()
                self._buf[p][:] = v if v.size == self.n else v[0]
            return
        with torch.no_grad():
            pars = self.model.physical_parameters(self.stepper._attrs)
        for p in self._param_names:
            # dynamic (LSTM) parameters exist only once a model step has run: NaN until then, never a fake 0
            self._buf[p][:] = pars[p].mean(-1).double().numpy() if p in pars else np.nan

    def update(self) -> None:
        self._require_init()
        p, t, sw, pres = self._checked_inputs()
        completed = self.stepper.step(p, t, sw, pres, self._buf[PET] if self._pet_live else None)
        self._refresh_outputs(model_step=completed)

    def update_until(self, time: float) -> None:
        self._require_init()
        now = self.get_current_time()
        dt = self.get_time_step()
        if not np.isfinite(time):
            raise ValueError(f"update_until: expected a finite time in s, got {time}")
        if time < now - 1e-9:
            raise ValueError(f"update_until: time {time} s is before the current time {now} s")
        n = (time - now) / dt
        if abs(n - round(n)) > 1e-9 * max(1.0, abs(n)):
            raise ValueError(f"update_until: time {time} s is not a whole number of time steps ({dt} s) from the current time {now} s")
        n = int(round(n))
        if n <= 1:
            for _ in range(n):
                self.update()
            return
        # the inputs hold for every step; a failure part-way leaves the state as it was before this call
        snapshot = self.stepper.state_arrays()
        tape_len = None if self.stepper.tape is None else len(self.stepper.tape)
        depth = np.zeros(self.n)
        try:
            for _ in range(n):
                self.update()
                depth += self._buf[RUNOFF_DEPTH]
        except BaseException:
            self.stepper.load_state_arrays(snapshot)
            if tape_len is not None:
                del self.stepper.tape[tape_len:]
            self._refresh_outputs()
            raise
        # ngen calls update_until(t0 + its step) when its step differs from ours and reads the runoff depth as the
        # depth over its own step: report the depth over the whole call (and the mean flux over it)
        self._buf[RUNOFF_DEPTH][:] = depth
        self._buf[RUNOFF_FLUX][:] = depth * self._area_m2 / (n * self.stepper.dt_fw)
        self._depth_override = True  # the next update() writes the per-step depth again

    def finalize(self) -> None:
        self._initialized = False
        self._set_ser_buffer(np.zeros(0, dtype="uint8"))

    # -- numerics live in the stepper: copy results into the live buffers ---------------------------------------------
    def _checked_inputs(self) -> tuple:
        """(precipitation, temperature, shortwave or None, pressure or None) for the stepper, validated."""
        b = self._buf
        p, t = b[PRECIP], b[TEMP]
        if p.size == 1:  # one catchment (ngen): Python floats, no array operations
            x, y = p.item(), t.item()
            ok = 0.0 <= x < _INF and 180.0 <= y <= 340.0
        else:
            ok = _MIN(p) >= 0.0 and _MAX(p) < _INF and _MIN(t) >= 180.0 and _MAX(t) <= 340.0
        if not ok:  # NaN fails every comparison: the full checks below name the problem
            p = self._checked_precip_temp(p, t)
        sw = pres = None
        for name in self._radiation_inputs:
            v = b[name]
            if not np.isfinite(v).all():
                i = int(np.flatnonzero(~np.isfinite(v))[0])
                raise ValueError(f"{name}: expected finite values, got {v[i]} at unit {self.units.ids[i]!r}")
            if name == SHORTWAVE:
                sw = v
            else:
                pres = v
        if self._params_dirty:
            self._check_fixed_parameters()
        return p, t, sw, pres

    def _checked_precip_temp(self, p: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Raise for bad temperature, and for bad precipitation unless bad_precip: zero (then warn, use 0)."""
        bad = ~np.isfinite(p) | (p < 0)
        if bad.any():
            ids = [self.units.ids[i] for i in np.flatnonzero(bad)[:5]]
            if self._cfg.bad_precip == "error":
                raise ValueError(
                    f"{PRECIP}: expected finite values >= 0 mm s-1, got {int(bad.sum())} NaN or negative value(s) "
                    f"(units {ids}); set bad_precip: zero to treat them as 0"
                )
            self.bad_precip_count += int(bad.sum())
            warnings.warn(f"{PRECIP}: {int(bad.sum())} NaN or negative value(s) at units {ids} treated as 0 "
                          f"({self.bad_precip_count} so far)", RuntimeWarning, stacklevel=3)
            p = np.where(bad, 0.0, p)
        tbad = ~((t >= 180.0) & (t <= 340.0))
        if tbad.any():
            i = int(np.flatnonzero(tbad)[0])
            raise ValueError(f"{TEMP}: expected kelvin in 180..340 K, got {t[i]} at unit {self.units.ids[i]!r} "
                             "(was °C passed as K, or was the input never set?)")
        return p

    def _check_fixed_parameters(self) -> None:
        values = {p: torch.as_tensor(self._buf[p].copy()) for p in self._param_names}
        physics.check_bounds(values)
        for r in ("route_a", "route_b"):
            lo, hi = physics.ROUTE_BOUNDS[r]
            if ((values[r] < lo) | (values[r] > hi)).any():
                raise ValueError(f"parameter {r}: expected values in [{lo}, {hi}], got {values[r].tolist()}")
        for p, v in values.items():
            self.model.provider.set_value(p, v)
        self.stepper.invalidate_parameters()
        self._params_dirty = False

    def _refresh_outputs(self, model_step: bool = True) -> None:
        """Copy the stepper's results into the live buffers (in place).  Between model steps (``model_step`` False)
        only the mass accounting changes: the rest holds over the model step."""
        s = self.stepper
        b = self._buf
        if model_step or self._depth_override:
            depth, flux = b[RUNOFF_DEPTH], b[RUNOFF_FLUX]
            np.divide(s.release, 1000.0, out=depth)
            np.multiply(depth, self._area_m2, out=flux)
            np.divide(flux, s.dt_fw, out=flux)
            self._depth_override = False
        np.divide(s.mass_in, 1000.0, out=b["ngen::mass_in"])
        np.divide(s.mass_out, 1000.0, out=b["ngen::mass_out"])
        stored = s.stored_mm(out=b["ngen::mass_stored"])
        np.divide(stored, 1000.0, out=stored)
        if not model_step:
            return
        for key, name in (("et", ET_FLUX), ("pet", PET_OUT)):
            np.divide(s.last[key], 1000.0, out=b[name])
            np.divide(b[name], s.dt_model, out=b[name])
        for key, name in STORE_VARS.items():
            b[name][:] = s.store_means[key]
        np.add(b[STORE_VARS["snowpack"]], b[STORE_VARS["meltwater"]], out=b[SWE])
        np.divide(s.mass_leak, -1000.0, out=b["ngen::mass_leaked"])
        last = s.last_out
        for name, key in self._dynamic_outputs:
            if key in last:
                b[name][:] = last[key]

    def _spinup(self, path) -> None:
        times, data = read_forcing_for_units(path, self.units.ids)
        steps = len(times)
        for t in range(steps):
            for name in self._inputs:
                if name in data:
                    self._buf[name][:] = data[name][t]
            p, t_, sw, pres = self._checked_inputs()
            self.stepper.step(p, t_, sw, pres, self._buf[PET])
        # keep the model states; restart the clock, the accumulators and the mass accounting
        s = self.stepper
        keep = s.state_arrays()
        s.reset_state()
        fresh = s.state_arrays()
        for key in ("hbv_snowpack", "hbv_meltwater", "hbv_sm", "hbv_suz", "hbv_slz", "lstm_h", "lstm_c", "route_buffer"):
            fresh[key] = keep[key]
        s.load_state_arrays(fresh)
        s.model_storage = s._storage_now()
        s.mass_in = s.model_storage.copy()

    # -- state -----------------------------------------------------------------------------------------------------
    def save_state(self, path) -> Path:
        """Write a NetCDF restart file (stores, routing buffer, LSTM state, accumulators, time)."""
        self._require_init()
        import xarray as xr

        arrays = self.stepper.state_arrays()
        ds = xr.Dataset(attrs={"Conventions": "CF-1.8", "title": "bmi-dhydro restart", "current_time_s": self.get_current_time(),
                               "time_step_s": self.get_time_step(), "start": str(self._cfg.time.start)})
        for k, a in arrays.items():
            dims = ("unit",) + tuple(f"{k}_d{i}" for i in range(1, a.ndim)) if k != "counters" else ("counter",)
            ds[k] = (dims, a)
        ds["unit_id"] = ("unit", np.array(self.units.ids, dtype=object))
        path = Path(path)
        tmp = path.with_name(path.name + ".part")
        ds.to_netcdf(tmp)
        tmp.replace(path)
        return path

    def load_state(self, path) -> None:
        import xarray as xr

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"load_state: restart file not found: {path}")
        with xr.open_dataset(path) as ds:
            ids = [str(i) for i in ds["unit_id"].values]
            if ids != list(self.units.ids):
                raise ValueError(f"load_state {path}: restart holds units {ids[:5]}, this instance runs {self.units.ids[:5]}")
            if float(ds.attrs.get("time_step_s", self.get_time_step())) != self.get_time_step():
                raise ValueError(f"load_state {path}: restart time step {ds.attrs['time_step_s']} s differs from {self.get_time_step()} s")
            arrays = {k: ds[k].values for k in ds.data_vars if k != "unit_id"}
        self.stepper.load_state_arrays(arrays)
        if self._initialized:
            self._refresh_outputs()

    _SER_MAGIC = b"BMIDHYDRO-STATE1"  # payload header: format drift or foreign bytes fail fast on restore

    def _serialize(self) -> None:
        buf = io.BytesIO()
        arrays = self.stepper.state_arrays()
        arrays["unit_id"] = np.array(self.units.ids, dtype="U")
        np.savez(buf, **arrays)
        payload = self._SER_MAGIC + buf.getvalue()
        self._set_ser_buffer(np.frombuffer(payload, dtype="uint8").copy())

    def _set_ser_buffer(self, data: np.ndarray) -> None:
        """The one place the serialization buffer changes: ``ngen::serialization_size`` always equals its length."""
        self._buf[SER_STATE] = data
        self._buf[SER_SIZE][0] = data.size

    def _deserialize(self, data: np.ndarray) -> None:
        raw = np.ascontiguousarray(data).view("uint8").tobytes()
        magic = self._SER_MAGIC
        if raw[: len(magic)] != magic:
            raise ValueError(f"{SER_STATE}: expected a bmi-dhydro state payload (starting with {magic!r}), "
                             f"got {len(raw)} bytes starting with {raw[:len(magic)]!r}")
        try:
            with np.load(io.BytesIO(raw[len(magic):]), allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except Exception as exc:  # truncated or corrupt payload
            raise ValueError(f"{SER_STATE}: cannot read the {len(raw)}-byte state payload ({type(exc).__name__}: {exc})") from exc
        ids = [str(i) for i in arrays.pop("unit_id", [])]
        if ids != list(self.units.ids):
            raise ValueError(f"{SER_STATE}: serialized state is for units {ids[:5]}, this instance runs {self.units.ids[:5]}")
        try:
            self.stepper.load_state_arrays(arrays)
        except KeyError as exc:
            raise ValueError(f"{SER_STATE}: the payload lacks the state variable {exc}") from None
        self._refresh_outputs()

    # -- hot swap (issue: gradient loop) -----------------------------------------------------------------------------
    def load_checkpoint(self, path) -> None:
        """Swap in a new network at the current step boundary, keeping every state."""
        self._require_init()
        if self.model.is_fixed:
            raise ValueError("load_checkpoint: this instance runs fixed parameters; a checkpoint cannot be swapped in")
        model, payload = shared_model(path, self.stepper.dtype)
        if list(model.config.attributes) != list(self.model.config.attributes):
            raise ValueError("load_checkpoint: the new checkpoint uses different attributes")
        self.stepper.swap_model(model)
        self.model = model
        self._dynamic_outputs = tuple((p, "param_" + p) for p in model.provider.dynamic)
        self.checkpoint_path = path
        self._fill_parameters()

    # -- gradient export (a documented extension; see bmi_dhydro.gradients) -------------------------------------------
    def begin_gradient_window(self) -> None:
        """Start recording a gradient window at the current model-step boundary (clears any previous window)."""
        self._require_init()
        s = self.stepper
        if s.sub != 0:
            raise ValueError(f"begin_gradient_window: call it at a model-step boundary; {s.sub} of {s.k} framework "
                             "steps of the current model step are already taken")
        self._grad_state0 = s.state.detach()
        s.tape = []

    def get_gradient_window_size(self) -> int:
        """Model steps recorded in the open window."""
        tape = getattr(self.stepper, "tape", None)
        return 0 if tape is None else len(tape)

    def compute_gradients(self, seeds: dict, wrt: str = "parameters") -> dict:
        """d loss / d parameters (or network weights) for adjoint ``seeds`` {output name: (n_model_steps, N)}."""
        from .gradients import window_gradients

        self._require_init()
        if not self.get_gradient_window_size():
            raise ValueError("compute_gradients: no gradient window recorded; call begin_gradient_window, then update")
        forc = torch.stack(self.stepper.tape)
        return window_gradients(self.model, self._grad_state0, forc, self.stepper._attrs, seeds, wrt)

    # -- info ------------------------------------------------------------------------------------------------------
    def get_component_name(self) -> str:
        return self._name

    def get_input_item_count(self) -> int:
        return len(self._inputs)

    def get_output_item_count(self) -> int:
        return len(self._outputs)

    def get_input_var_names(self) -> tuple[str, ...]:
        return self._inputs

    def get_output_var_names(self) -> tuple[str, ...]:
        return self._outputs

    # -- variable metadata (all from the table) ---------------------------------------------------------------------
    def _var(self, name: str) -> Var:
        try:
            return self._vars[name]
        except KeyError:
            raise UnknownVariableError(
                f"unknown variable {name!r}; valid names: {', '.join(getattr(self, '_valid_names', sorted(self._vars)))}"
            ) from None

    def get_var_grid(self, name: str) -> int:
        v = self._var(name)
        if v.location == "none":
            raise UnknownVariableError(f"variable {name!r} is not on a grid")
        return 0

    def get_var_type(self, name: str) -> str:
        return self._var(name).dtype

    def get_var_units(self, name: str) -> str:
        return self._var(name).units

    def get_var_itemsize(self, name: str) -> int:
        return _ITEMSIZE[self._var(name).dtype]

    def get_var_nbytes(self, name: str) -> int:
        self._var(name)
        return int(self._buf[name].nbytes)

    def get_var_location(self, name: str) -> str:
        v = self._var(name)
        if v.location == "none":
            raise UnknownVariableError(f"variable {name!r} has no grid location")
        return v.location

    # -- time ------------------------------------------------------------------------------------------------------
    def get_current_time(self) -> float:
        return float(self.stepper.fw_step * self.stepper.dt_fw) if hasattr(self, "stepper") else 0.0

    def get_start_time(self) -> float:
        return 0.0

    def get_end_time(self) -> float:
        return float(sys.float_info.max)

    def get_time_units(self) -> str:
        return "s"

    def get_time_step(self) -> float:
        return float(self.stepper.dt_fw) if hasattr(self, "stepper") else float(self._cfg.time.time_step)

    # -- values ----------------------------------------------------------------------------------------------------
    def get_value_ptr(self, name: str) -> np.ndarray:
        self._var(name)
        if name == PET:
            self._pet_live = True  # the host may write PET through the pointer from now on
        return self._buf[name]

    def get_value(self, name: str, dest: np.ndarray) -> np.ndarray:
        src = self.get_value_ptr(name)
        if dest.size != src.size:
            raise ValueError(f"get_value({name!r}): dest has {dest.size} items, expected {src.size}")
        dest[...] = src.reshape(dest.shape)
        return dest

    def get_value_at_indices(self, name: str, dest: np.ndarray, inds: np.ndarray) -> np.ndarray:
        self._var(name)
        src = self._buf[name]
        inds = np.asarray(inds)
        if inds.size == 1 and inds.dtype.kind in "iu":  # ngen reads one value at a time: no fancy indexing
            i = inds.item()
            if not 0 <= i < src.size:
                raise IndexError(f"get_value_at_indices({name!r}): indices must be in 0..{src.size - 1}")
            dest[:1] = src[i]
            return dest
        if inds.size and (inds.min() < 0 or inds.max() >= src.size):
            raise IndexError(f"get_value_at_indices({name!r}): indices must be in 0..{src.size - 1}")
        dest[: inds.size] = src[inds]
        return dest

    def _check_settable(self, name: str, src) -> np.ndarray:
        v = self._vars[name]
        arr = np.asarray(src)
        if arr.dtype.kind not in "fiu":
            raise TypeError(f"set_value({name!r}): expected a numeric array (float64), got dtype {arr.dtype}")
        if v.role == "output":
            raise ValueError(f"set_value({name!r}): {name} is an output; outputs are read-only")
        if v.role == "mass":
            raise ValueError(f"set_value({name!r}): mass-balance variables are read-only")
        if v.role == "parameter" and not self.model.is_fixed:
            raise ValueError(f"set_value({name!r}): parameters come from the network in checkpoint mode and are read-only; "
                             "use fixed-parameter mode (model.parameters) to set them")
        return arr

    def _check_parameter_values(self, name: str, values: np.ndarray) -> None:
        """Fixed-parameter mode: a new value outside the physical bounds (or NaN) is refused before it is stored."""
        lo, hi = physics.ALL_BOUNDS[name]
        bad = ~((values >= lo) & (values <= hi))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"set_value({name!r}): parameter {name} expects values in [{lo}, {hi}] {physics.ALL_UNITS[name]}, "
                             f"got {values[i]} at unit {self.units.ids[i]!r}; the parameter was not changed")

    def set_value(self, name: str, src: np.ndarray) -> None:
        if name not in self._vars:
            return  # ngen: values for unpublished variables are ignored
        v = self._vars[name]
        if v.role == "serialization":
            self._set_serialization(name, src)
            return
        self._require_init()
        arr = self._check_settable(name, src)
        dest = self._buf[name]
        if arr.size != dest.size:
            raise ValueError(f"set_value({name!r}): expected {dest.size} values (one per unit), got {arr.size}")
        if v.role == "parameter":
            self._check_parameter_values(name, arr.reshape(-1).astype("float64"))
            self._params_dirty = True
        elif name == PET:
            self._pet_live = True
        dest[:] = arr.reshape(-1)

    def set_value_at_indices(self, name: str, inds: np.ndarray, src: np.ndarray) -> None:
        v = self._var(name)  # only set_value ignores unknown names (ngen's unpublished-variables rule)
        if v.role == "serialization":
            raise ValueError(f"set_value_at_indices({name!r}): protocol variables are set with set_value")
        self._require_init()
        arr = self._check_settable(name, src)
        dest = self._buf[name]
        inds = np.asarray(inds)
        if inds.dtype.kind not in "iu":
            raise TypeError(f"set_value_at_indices({name!r}): expected integer indices, got dtype {inds.dtype}")
        if arr.size != inds.size:
            raise ValueError(f"set_value_at_indices({name!r}): {inds.size} indices but {arr.size} values")
        if inds.size and (inds.min() < 0 or inds.max() >= dest.size):
            raise IndexError(f"set_value_at_indices({name!r}): indices must be in 0..{dest.size - 1}")
        if v.role == "parameter":
            new = dest.copy()
            new[inds.reshape(-1)] = arr.reshape(-1)
            self._check_parameter_values(name, new)
            self._params_dirty = True
        elif name == PET:
            self._pet_live = True
        dest[inds.reshape(-1)] = arr.reshape(-1)

    def _set_serialization(self, name: str, src) -> None:
        """ngen serialization protocol v0.2 (NOAA-OWP/ngen doc/BMI_SERIALIZATION_PROTOCOL.md).

        save:    set create (trigger) -> get size -> get state -> set free (trigger)
        restore: set size (announce n bytes; the state buffer becomes n zero bytes, so ngen's Python adapter,
                 which sizes the array it hands over by get_var_nbytes, passes the whole payload) -> set state
        create and free never touch the model state; a failed restore leaves the model state unchanged.
        """
        self._require_init()
        if name == SER_CREATE:
            self._serialize()
        elif name == SER_FREE:
            self._set_ser_buffer(np.zeros(0, dtype="uint8"))
        elif name == SER_SIZE:
            n = np.asarray(src)
            if n.size != 1 or n.dtype.kind not in "iu" or int(n.reshape(-1)[0]) < 0:
                raise ValueError(f"set_value({SER_SIZE!r}): expected one non-negative integer byte count, "
                                 f"got {n.reshape(-1)[:3].tolist()} ({n.size} value(s) of dtype {n.dtype})")
            self._set_ser_buffer(np.zeros(int(n.reshape(-1)[0]), dtype="uint8"))
        else:  # SER_STATE: deliver a payload
            arr = np.ascontiguousarray(np.asarray(src)).reshape(-1)
            if arr.dtype.itemsize != 1 and arr.dtype.kind not in "SV":
                raise TypeError(f"set_value({SER_STATE!r}): expected bytes (uint8), got dtype {arr.dtype}")
            data = arr.view("uint8")
            announced = self._buf[SER_STATE].size
            if announced and data.size != announced:
                raise ValueError(f"set_value({SER_STATE!r}): delivered {data.size} bytes but {SER_SIZE} "
                                 f"announced {announced}")
            self._deserialize(data)
            self._set_ser_buffer(data.copy())

    # -- grid: one unstructured grid of N points (the units) ---------------------------------------------------------
    def _grid(self, grid: int) -> None:
        if grid != 0:
            raise ValueError(f"grid {grid}: unknown grid id; this component has one grid, 0")

    def get_grid_rank(self, grid: int) -> int:
        self._grid(grid)
        return 2

    def get_grid_size(self, grid: int) -> int:
        self._grid(grid)
        return int(self.n)

    def get_grid_type(self, grid: int) -> str:
        self._grid(grid)
        return "unstructured"

    def get_grid_x(self, grid: int, x: np.ndarray) -> np.ndarray:
        self._grid(grid)
        x[:] = self.units.lon
        return x

    def get_grid_y(self, grid: int, y: np.ndarray) -> np.ndarray:
        self._grid(grid)
        y[:] = self.units.lat
        return y

    def get_grid_z(self, grid: int, z: np.ndarray) -> np.ndarray:
        self._grid(grid)
        raise ValueError("get_grid_z: grid 0 has rank 2 (lon, lat); it has no z coordinate")

    def get_grid_node_count(self, grid: int) -> int:
        self._grid(grid)
        return int(self.n)

    def get_grid_edge_count(self, grid: int) -> int:
        self._grid(grid)
        return 0

    def get_grid_face_count(self, grid: int) -> int:
        self._grid(grid)
        return 0

    def get_grid_edge_nodes(self, grid: int, edge_nodes: np.ndarray) -> np.ndarray:
        self._grid(grid)
        return edge_nodes  # no edges: the units are unconnected points

    def get_grid_face_edges(self, grid: int, face_edges: np.ndarray) -> np.ndarray:
        self._grid(grid)
        return face_edges

    def get_grid_face_nodes(self, grid: int, face_nodes: np.ndarray) -> np.ndarray:
        self._grid(grid)
        return face_nodes

    def get_grid_nodes_per_face(self, grid: int, nodes_per_face: np.ndarray) -> np.ndarray:
        self._grid(grid)
        return nodes_per_face

    def get_grid_shape(self, grid: int, shape: np.ndarray) -> np.ndarray:
        self._grid(grid)
        raise ValueError("get_grid_shape: grid 0 is unstructured; use get_grid_node_count")

    def get_grid_spacing(self, grid: int, spacing: np.ndarray) -> np.ndarray:
        self._grid(grid)
        raise ValueError("get_grid_spacing: grid 0 is unstructured and has no uniform spacing")

    def get_grid_origin(self, grid: int, origin: np.ndarray) -> np.ndarray:
        self._grid(grid)
        raise ValueError("get_grid_origin: grid 0 is unstructured and has no origin")

    # -- helpers ---------------------------------------------------------------------------------------------------
    def _require_init(self) -> None:
        if not getattr(self, "_initialized", False) and not hasattr(self, "stepper"):
            raise RuntimeError("BmiDeltaModel: call initialize(config_file) first")
