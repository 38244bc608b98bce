"""``bmi_dhydro.BmiDeltaModel``: a thin CSDMS BMI 2.0 wrapper over :class:`~bmi_dhydro.stepper.Stepper`.

No model arithmetic lives here: this class parses the config, declares the variables, owns the float64 buffers
handed out by ``get_value_ptr`` (allocated once, updated in place, so pointers stay live) and copies results into
them.  Torch stays inside the stepper/model.  The rest is delegated:

* the variable table and the bad-input rules: :mod:`bmi_dhydro.bmi_vars`;
* restart files, the ngen serialization payload and spin-up: :mod:`bmi_dhydro.bmi_state`;
* the communicator and this rank's share of the units (``mpi.partition``): :mod:`bmi_dhydro.parallel`;
* the gradient window: :mod:`bmi_dhydro.gradients`;
* the grid (the units as points): :mod:`bmi_dhydro.bmi_grid`.

ngen conventions (NOAA-OWP/ngen ``Bmi_Py_Adapter``): built with no arguments then ``initialize(path)``; every
variable is ``"float64"`` with itemsize 8 and nbytes 8·N on one unstructured grid of N units (N = 1 for an ngen
catchment); time in seconds from 0; ``set_value`` with an unknown name is ignored ("unpublished variables"),
every other call with an unknown name raises an error that lists the valid names.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from bmipy import Bmi

from . import bmi_state
from .bmi_config import BmiConfig, load_bmi_config, model_from_config
from .bmi_grid import UnitPointsGrid
from .bmi_vars import (ET_FLUX, INPUT_VARS, ITEMSIZE, MASS_TABLE, MASS_VARS, OUTPUT_VARS, PET, PET_METHOD_INPUTS,  # noqa: F401
                       PET_OUT, PRECIP, PRESSURE, RUNOFF_DEPTH, RUNOFF_FLUX, SER_CREATE, SER_FREE, SER_SIZE, SER_STATE,
                       SER_TABLE, SHORTWAVE, STORE_VARS, SWE, TEMP, TMAX, TMIN, UnknownVariableError, Var, check_indices, declared_inputs,
                       declared_outputs, check_inputs, check_outputs, check_parameter_set, check_parameter_values,
                       check_settable, check_unit_table, parameter_var, rules_for, steps_until)
from .checkpoint import shared_model
from .gradients import begin_window, stepper_gradients, window_size
from .model import DeltaModel
from .parallel import get_comm, rank_share
from .stepper import Stepper
from .units import load_units


class BmiDeltaModel(UnitPointsGrid, Bmi):
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
        self._zeroed: dict[str, int] = {}  # bad input values treated as 0 so far, by input (bad_precip: zero)
        self._params_dirty = False  # fixed-parameter values set since the last update
        self._pet_live = False  # the PET input buffer may hold values (set, or its pointer handed out)
        self._depth_override = False  # update_until wrote the depth over its whole call into the runoff outputs
        self._finalized = False  # finalize() was called: nothing may advance or change the instance any more
        self._grad_state0 = None  # the start state of the open gradient window (None: no window)

    @property
    def bad_precip_count(self) -> int:
        """Precipitation values that were NaN or negative and treated as 0 (``bad_precip: zero``)."""
        return self._zeroed.get(PRECIP, 0)

    # -- lifecycle -----------------------------------------------------------------------------------------------
    def initialize(self, config_file: str) -> None:
        cfg, _ = load_bmi_config(config_file)
        self._cfg = cfg
        dtype = torch.float64 if cfg.dtype == "float64" else torch.float32
        units = load_units(cfg.units)
        check_unit_table(units)  # area > 0, |lat| <= 90: before anything uses them (PET, flux)
        if cfg.mpi.partition:
            comm = getattr(self, "_comm", None) or get_comm(fortran_handle=cfg.mpi.fortran_comm)
            units, rank, size = rank_share(units, comm)
            if size > 1:
                self.mpi_rank, self.mpi_size = rank, size
        model, payload = model_from_config(cfg, len(units))
        if payload is not None:
            self.checkpoint_path, self.checkpoint_provenance = cfg.model.checkpoint, payload.get("provenance", {})
        attrs = units.attribute_matrix(model.config.attributes) if not model.is_fixed else np.zeros((len(units), 0))
        self.units = units
        self.n = len(units)
        self._area_m2 = units.area_km2 * 1e6
        self.model = model
        self.stepper = Stepper(model, attrs, units.lat, cfg.time.time_step, cfg.time.start.replace(tzinfo=None), dtype=dtype,
                               stepping=cfg.stepping)
        # no NaN leaves the model: the stepper checks a model step's outputs before it commits the step, so a
        # non-finite output raises and leaves the state (and the output buffers) as they were before the update
        self.stepper.threads = cfg.threads  # per instance, around its model steps (never process-wide)
        self.stepper.output_check = lambda values: check_outputs(values, self.units.ids,
                                                                 f"update at time {self.get_current_time():g} s")
        self._declare_variables(cfg, model)
        self._allocate()
        if cfg.warmup.mode == "restart":
            self.load_state(cfg.warmup.restart_file)
        elif cfg.warmup.mode == "spinup":
            bmi_state.spinup(self, cfg.warmup.forcing_file)
        self._refresh_outputs()
        self._initialized = True
        self._finalized = False

    def set_comm(self, comm=None, fortran_handle: int | None = None) -> None:
        """Give the instance a host communicator (an mpi4py communicator, or a Fortran handle converted with
        ``MPI.Comm.f2py``) before ``initialize``; with ``mpi.partition: true`` it then runs its rank's units."""
        self._comm = get_comm(comm, fortran_handle)

    def _declare_variables(self, cfg: BmiConfig, model: DeltaModel) -> None:
        self._inputs = inputs = declared_inputs(model.config.pet_method)
        self._outputs = declared_outputs(cfg.outputs)
        self._rules = rules_for(inputs if PET in inputs else inputs + (PET,), cfg)  # PET is always settable
        self._pet_live = PET in inputs
        self._param_names = model.config.param_names + ("route_a", "route_b")
        self._dynamic_outputs = tuple((p, "param_" + p) for p in model.provider.dynamic)  # (buffer, model output)
        self._vars = {**INPUT_VARS, **OUTPUT_VARS, **MASS_TABLE, **SER_TABLE, **{p: parameter_var(p) for p in self._param_names}}
        self._valid_names = sorted(self._vars)

    #: the outputs every model step writes, as rows of one block so _refresh_outputs writes them in a few whole-block
    #: operations (one catchment stepping hourly: each numpy call costs more than its arithmetic).  The first seven
    #: are the stepper's mm divided by these numbers (m; the leak's sign turned), the last five the stores' means.
    _BLOCK = (RUNOFF_DEPTH, "ngen::mass_in", "ngen::mass_out", "ngen::mass_stored", "ngen::mass_leaked", ET_FLUX,
              PET_OUT, *STORE_VARS.values())
    _BLOCK_DIV = np.array([1000.0, 1000.0, 1000.0, 1000.0, -1000.0, 1000.0, 1000.0])[:, None]

    def _allocate(self) -> None:
        n = self.n
        # every buffer is allocated once, here; get_value_ptr hands out these arrays (rows of the block are views)
        self._block = np.zeros((len(self._BLOCK), n), dtype="float64")
        self._block_src = np.zeros((len(self._BLOCK_DIV), n), dtype="float64")  # scratch: the stepper's values
        self._stored_mm = np.zeros(n, dtype="float64")
        self._refresh_floats = n == 1  # _refresh_outputs on Python floats (the same numbers)
        for i, name in enumerate(self._BLOCK):
            self._buf[name] = self._block[i]
        for name, var in self._vars.items():
            if var.role in ("input", "output", "parameter", "mass") and name not in self._BLOCK:
                self._buf[name] = np.zeros(n, dtype="float64")
        self._buf[PET][:] = np.nan  # unset: the internal PET method is used
        for name in self._inputs:
            self._buf[name][:] = np.nan  # must be set before update (optional inputs: NaN means not given)
        self._fill_parameters()

    def _fill_parameters(self) -> None:
        self._dynamic_seen = {}  # (the per-day values _refresh_outputs last copied into the parameter buffers)
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
        self._require_live("update")
        p, t, sw, pres, tmax, tmin = self._checked_inputs()
        s = self.stepper
        completed = s.step(p, t, sw, pres, self._buf[PET] if self._pet_live else None, tmax, tmin)
        self._refresh_outputs(model_step=completed, all_outputs=False)

    def update_until(self, time: float) -> None:
        self._require_live("update_until")
        n = steps_until(time, self.get_current_time(), self.get_time_step(), self.get_end_time())
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
        self._finalized = True
        self.end_gradient_window()
        bmi_state.set_ser_buffer(self._buf, np.zeros(0, dtype="uint8"))

    # -- numerics live in the stepper: copy results into the live buffers ---------------------------------------------
    def _checked_inputs(self) -> tuple:
        """(precipitation, temperature, shortwave, pressure, tmax, tmin; None where not an input), validated."""
        v = check_inputs(self._buf, self._rules, self.units.ids, self._cfg, self._zeroed)
        if self._params_dirty:
            self._check_fixed_parameters()
        return v[PRECIP], v[TEMP], v.get(SHORTWAVE), v.get(PRESSURE), v.get(TMAX), v.get(TMIN)

    def _check_fixed_parameters(self) -> None:
        values = {p: torch.as_tensor(self._buf[p].copy()) for p in self._param_names}
        check_parameter_set(values)
        for p, v in values.items():
            self.model.provider.set_value(p, v)
        self.stepper.invalidate_parameters()
        self._params_dirty = False

    def _refresh_outputs(self, model_step: bool = True, all_outputs: bool = True) -> None:
        """Copy the stepper's results into the live buffers (in place).  Between model steps (``model_step`` False)
        only the mass accounting changes: the rest holds over the model step.  ``all_outputs`` False (update):
        per-day values already copied (the same arrays, hourly stepping) are not copied again."""
        s = self.stepper
        b = self._buf
        if all_outputs:
            self._dynamic_seen = {}
        depth, flux = b[RUNOFF_DEPTH], b[RUNOFF_FLUX]
        if not model_step:
            if self._depth_override:
                np.divide(s.release, 1000.0, out=depth)
                np.multiply(depth, self._area_m2, out=flux)
                np.divide(flux, s.dt_fw, out=flux)
                self._depth_override = False
            np.divide(s.mass_in, 1000.0, out=b["ngen::mass_in"])
            np.divide(s.mass_out, 1000.0, out=b["ngen::mass_out"])
            stored = s.stored_mm(out=b["ngen::mass_stored"])
            np.divide(stored, 1000.0, out=stored)
            return
        blk = self._block
        if self._refresh_floats:  # one catchment (ngen): the same arithmetic on Python floats, the block at once
            means = s.store_means
            stores = [means[k].item() for k in STORE_VARS]
            dt, last = s.dt_step, s.last
            d = s.release.item() / 1000.0
            blk[:, 0] = [d, s.mass_in.item() / 1000.0, s.mass_out.item() / 1000.0,
                         s.stored_mm(out=self._stored_mm).item() / 1000.0, s.mass_leak.item() / -1000.0,
                         last["et"].item() / 1000.0 / dt, last["pet"].item() / 1000.0 / dt, *stores]
            b[SWE][0] = means["snowpack"].item() + means["meltwater"].item()
            flux[0] = d * self._area_m2[0] / s.dt_fw
        else:
            src = (s.release, s.mass_in, s.mass_out, s.stored_mm(out=self._stored_mm), s.mass_leak, s.last["et"],
                   s.last["pet"])
            np.concatenate(src, out=self._block_src.reshape(-1))
            np.divide(self._block_src, self._BLOCK_DIV, out=blk[:7])  # m from mm
            np.divide(blk[5:7], s.dt_step, out=blk[5:7])  # ET and PET: m s-1 over the physics step
            np.concatenate([s.store_means[k] for k in STORE_VARS], out=blk[7:].reshape(-1))
            np.add(b[STORE_VARS["snowpack"]], b[STORE_VARS["meltwater"]], out=b[SWE])
            np.multiply(depth, self._area_m2, out=flux)
            np.divide(flux, s.dt_fw, out=flux)
        self._depth_override = False
        last = s.last_out
        for name, key in self._dynamic_outputs:
            v = last.get(key)
            if v is not None and v is not self._dynamic_seen.get(name):  # hourly: the day's values, the same all day
                b[name][:] = v
                self._dynamic_seen[name] = v

    # -- state (bmi_dhydro.bmi_state) ---------------------------------------------------------------------------------
    def save_state(self, path) -> Path:
        """Write a NetCDF restart file (stores, routing buffer, LSTM state, accumulators, time)."""
        self._require_live("save_state")
        return bmi_state.save_state(self, path)

    def load_state(self, path) -> None:
        """Read a restart written by :meth:`save_state` (same units, time step, start date and model); an open gradient
        window is closed (its start state is no longer the state of the run)."""
        if self._finalized:
            self._require_live("load_state")
        bmi_state.load_state(self, path)
        self.end_gradient_window()
        if self._initialized:
            self._refresh_outputs()
        self._clock_origin = 0  # a NetCDF restart keeps the run's clock (unlike an ngen restore: restart_clock)

    # -- hot swap (issue: gradient loop) -----------------------------------------------------------------------------
    def load_checkpoint(self, path) -> None:
        """Swap in a new network at the current step boundary, keeping every state."""
        self._require_live("load_checkpoint")
        if self.model.is_fixed:
            raise ValueError("load_checkpoint: this instance runs fixed parameters; a checkpoint cannot be swapped in")
        if self._grad_state0 is not None:
            raise ValueError("load_checkpoint: a gradient window is open; a new network inside it would change what the "
                             "window replays. Call compute_gradients first, then end_gradient_window(), then swap")
        model, payload = shared_model(path, self.stepper.dtype)
        if list(model.config.attributes) != list(self.model.config.attributes):
            raise ValueError("load_checkpoint: the new checkpoint uses different attributes")
        self.stepper.swap_model(model)
        self.model = model
        self._dynamic_outputs = tuple((p, "param_" + p) for p in model.provider.dynamic)
        self.checkpoint_path = path
        self._model_identity = None  # a restart records the new network
        self._fill_parameters()

    # -- gradient export (a documented extension; see bmi_dhydro.gradients) -------------------------------------------
    def begin_gradient_window(self) -> None:
        """Start recording a gradient window at the current model-step boundary (clears any previous window)."""
        self._require_live("begin_gradient_window")
        if self.stepper.hourly or self.stepper.so_far:
            raise ValueError(f"begin_gradient_window: gradient windows need stepping: daily_release (with stepping: "
                             f"{self.stepper.stepping} the physics steps at every framework step between network "
                             "steps; not supported)")
        self._grad_state0 = begin_window(self.stepper)

    def end_gradient_window(self) -> None:
        """Close the open gradient window (if any) and stop recording."""
        self._grad_state0 = None
        if hasattr(self, "stepper"):
            self.stepper.tape = None

    def get_gradient_window_size(self) -> int:
        """Model steps recorded in the open window."""
        return window_size(self.stepper)

    def compute_gradients(self, seeds: dict, wrt: str = "parameters") -> dict:
        """d loss / d parameters (or network weights) for adjoint ``seeds`` {output name: (n_model_steps, N)}."""
        self._require_init()
        if self._grad_state0 is None:
            raise ValueError("compute_gradients: no gradient window is open; call begin_gradient_window, then update")
        return stepper_gradients(self.stepper, self._grad_state0, seeds, wrt)

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

    # ngen asks for a variable's type, size and bytes several times per catchment-step: the lookups are inlined
    def get_var_type(self, name: str) -> str:
        v = self._vars.get(name)
        return (v or self._var(name)).dtype

    def get_var_units(self, name: str) -> str:
        return self._var(name).units

    def get_var_itemsize(self, name: str) -> int:
        v = self._vars.get(name)
        return ITEMSIZE[(v or self._var(name)).dtype]

    def get_var_nbytes(self, name: str) -> int:
        if name not in self._vars:
            self._var(name)
        return self._buf[name].nbytes

    def get_var_location(self, name: str) -> str:
        v = self._var(name)
        if v.location == "none":
            raise UnknownVariableError(f"variable {name!r} has no grid location")
        return v.location

    # -- time ------------------------------------------------------------------------------------------------------
    def get_current_time(self) -> float:
        """Seconds since the start of this run; after an ngen serialization restore, since the restored state
        (:func:`bmi_dhydro.bmi_state.restart_clock`)."""
        if not hasattr(self, "stepper"):
            return 0.0
        return float((self.stepper.fw_step - getattr(self, "_clock_origin", 0)) * self.stepper.dt_fw)

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
        if name not in self._vars:
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

    def set_value(self, name: str, src: np.ndarray) -> None:
        if name not in self._vars:
            return  # ngen: values for unpublished variables are ignored
        v = self._vars[name]
        self._require_live(f"set_value({name!r})")
        if v.role == "serialization":
            bmi_state.set_serialization(self, name, src)
            return
        arr = check_settable(v, src, self.model)
        if arr.size != self.n:
            raise ValueError(f"set_value({name!r}): expected {self.n} values (one per unit), got {arr.size}")
        self._store(v, slice(None), arr.reshape(-1))

    def set_value_at_indices(self, name: str, inds: np.ndarray, src: np.ndarray) -> None:
        v = self._var(name)  # only set_value ignores unknown names (ngen's unpublished-variables rule)
        if v.role == "serialization":
            raise ValueError(f"set_value_at_indices({name!r}): protocol variables are set with set_value")
        self._require_live(f"set_value_at_indices({name!r})")
        arr = check_settable(v, src, self.model)
        inds = check_indices(f"set_value_at_indices({name!r})", inds, self.n, arr.size)
        self._store(v, inds.reshape(-1), arr.reshape(-1))

    def _store(self, v: Var, where, values: np.ndarray) -> None:
        dest = self._buf[v.name]
        if v.role == "parameter":  # a fixed parameter: checked before it is stored, used from the next update
            if self._grad_state0 is not None:
                raise ValueError(f"set_value({v.name!r}): a gradient window is open; a parameter changed inside it would "
                                 "change what the whole window replays. Call compute_gradients first, then "
                                 "end_gradient_window(), then set it")
            new = dest.copy()
            new[where] = values
            check_parameter_values(v.name, new, self.units.ids)
            self._params_dirty = True
        elif v.name == PET:
            self._pet_live = True
        dest[where] = values

    # -- helpers ---------------------------------------------------------------------------------------------------
    def _require_init(self) -> None:
        if not getattr(self, "_initialized", False) and not hasattr(self, "stepper"):
            raise RuntimeError("BmiDeltaModel: call initialize(config_file) first")

    def _require_live(self, call: str) -> None:
        """Initialized and not finalized."""
        if getattr(self, "_finalized", False):
            raise RuntimeError(f"BmiDeltaModel: {call} after finalize(); the instance is finalized (initialize it again "
                               "to run)")
        self._require_init()
