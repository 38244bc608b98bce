"""Framework-step driver of a :class:`~bmi_dhydro.model.DeltaModel`: the arithmetic behind the BMI.

A framework (ngen, a coupler) steps at ``dt_fw`` seconds; the model steps at its native ``dt_model`` (one day
for the bundled model).  ``k = dt_model / dt_fw`` must be a whole number.

Time-step bridging (conserves mass exactly):

* Inputs are aggregated over the k framework steps of a model step: precipitation and input PET are summed
  (rate × dt), temperature is averaged (and its min/max kept for Hargreaves), shortwave and pressure averaged.
* At the framework step that completes a model step the model advances once.  Its routed runoff R (mm per
  model step) is released uniformly, R/k per framework step, over that framework step and the k − 1 following
  ones, which is exactly until the next model step completes.  With k = 1 there is no delay; with hourly
  framework steps and a daily model the runoff of a day is released over the 24 hours from its last hour on.
  Water waiting to be released and precipitation not yet given to the model are counted as stored.
* ET and PET outputs are the model-step mean rates, held over the release window.

``stepping: day_so_far`` (framework steps shorter than the model step): every framework step re-runs the model
step from the state at the step's start on the aggregates so far (precipitation so far, mean temperature so far,
the PET of the part elapsed), with the rates scaled to that part (``DeltaModel.with_physics_fraction``); its
routed runoff so far grows with each framework step, and the growth is this framework step's runoff (the earlier
days' routed runoff is spread evenly over the model step).  At the model step's last framework step this is the
model step itself, which is committed; the network then advances on the step's aggregates, and its parameters
drive the next model step (one step later than in training).  So the daily totals are the daily model's, and a
rain shows in the same framework step.  Where the runoff so far falls within the day (the mean temperature
so far turns snow to rain or back), nothing is taken back: the excess is withheld from the next releases
(``debt``, counted as negative storage), so mass closes.

Mass accounting (ngen's mass-balance protocol, all in m of water over the unit area):
``mass_in = initial storage + Σ precipitation``, ``mass_out = Σ released runoff + Σ ET``,
``mass_stored = model stores + routing in flight + pending precipitation + pending release`` and
``mass_leaked = −Σ leak`` (the soil-moisture floor adds water, a negative loss), so
``mass_in − mass_out − mass_stored − mass_leaked == 0`` to rounding.

Cost (ngen runs one instance per catchment, so the per-call overhead is the cost).  A framework step that only
accumulates is a handful of numpy operations on (n,) arrays.  A model step on a tiny problem
(:meth:`DeltaModel.numpy_step_suitable`: one catchment) runs through :meth:`DeltaModel.advance_numpy` on a numpy
view of the state, without torch; larger problems go through :meth:`DeltaModel.advance` in torch.  ``state`` is
always available as torch tensors (views of the numpy arrays, made when asked for).
"""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime, timedelta

import numpy as np
import torch

from . import physics
from .model import (
    DeltaModel,
    ModelState,
    NumpyPrepared,
    Prepared,
    numpy_component_means,
)

KELVIN = 273.15
_INF = float("inf")
#: the ways a framework step shorter than the model step is bridged (the module docstring, the README)
STEPPINGS = ("daily_release", "hourly", "day_so_far")
#: day_so_far's own state (besides the accumulators), restart variables sofar_<name>
SO_FAR_FIELDS = ("given", "debt", "et_so_far", "leak_so_far", "so_far_pending")


@contextlib.contextmanager
def torch_threads(n: int | None):
    """torch's intra-op thread count set to ``n`` inside the block and restored after it (no-op for None/0 or when
    already ``n``)."""
    before = torch.get_num_threads()
    if not n or n == before:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class Stepper:
    def __init__(self, model: DeltaModel, attributes: np.ndarray, lat: np.ndarray, dt_fw: float, start: datetime,
                 dtype=torch.float64, stepping: str = "daily_release"):
        self.model = model
        if stepping not in STEPPINGS:
            raise ValueError(f"stepping: expected one of {', '.join(STEPPINGS)}, got {stepping!r}")
        self.stepping = stepping
        self.dtype = dtype
        self.n = len(lat)
        self.dt_fw = float(dt_fw)
        self.dt_model = model.config.dt_days * 86400.0
        k = self.dt_model / self.dt_fw
        if k < 1 - 1e-9 or abs(k - round(k)) > 1e-9:
            raise ValueError(
                f"time.time_step: expected a step that divides the model step of {self.dt_model:g} s "
                f"(e.g. 3600 or {self.dt_model:g}), got {self.dt_fw:g} s"
            )
        self.k = int(round(k))
        # hourly stepping: the physics and routing step at the framework step, the network at the model step (on
        # the model step's aggregates, as trained); see the module docstring
        self.hourly = stepping == "hourly" and self.k > 1
        if self.hourly and model.config.pet_method not in ("hamon", "input"):
            raise ValueError(f"stepping: hourly needs pet_method hamon or input (a PET for every framework step); the "
                             f"model's pet_method is {model.config.pet_method!r}: use stepping: daily_release")
        # day_so_far: the model step re-run on the part of it elapsed at every framework step (module docstring)
        self.so_far = stepping == "day_so_far" and self.k > 1
        # the network advances at the end of a model step and its parameters drive the next one (not inside it)
        self.daily_network = self.hourly or self.so_far
        self.dt_step = self.dt_fw if self.hourly else self.dt_model  # seconds of one physics step (ET/PET outputs)
        self.start = start
        self.lat = np.array(lat, dtype="float64")  # an owned copy
        self._attrs = torch.as_tensor(attributes, dtype=dtype)
        self._np_dtype = np.float64 if dtype == torch.float64 else np.float32
        self._hamon_day: tuple = (None, None)  # (model step index, Hamon day factor at the units)
        self.prep: Prepared | None = None
        # called with {"runoff", "et", "storage"} (numpy, per unit) before a model step is committed; raising there
        # leaves the state as it was (the BMI checks that no non-finite value leaves the model)
        self.output_check = None
        # torch threads for this instance's model steps (None or 0: torch's process-wide setting); set around each
        # step and restored after it, so instances in one process (ngen) each keep their own
        self.threads: int | None = None
        self._use_model(model)
        self.reset_state()

    @property
    def dyn(self) -> dict:
        """hourly stepping: the day's dynamic parameters (name -> (n, nmul), per day)."""
        return self._dyn

    @dyn.setter
    def dyn(self, value: dict) -> None:
        # replaced once a day: what every hourly step derives from them is derived here once
        self._dyn = value
        # day_so_far: the day's parameters scaled to each part of the day, where one of them is a rate (else the
        # day's mapping itself serves every part, the same object all day)
        self._dyn_frac: dict = {}
        self._dyn_rates = bool(value) and bool(set(value) & set(physics.RATE_PARAMS))
        self._dyn_scaled = physics.scale_rates(value, self.dt_fw / 86400.0) if value else None
        self._dyn_means = (dict(zip([f"param_{k}" for k in value], numpy_component_means(*value.values())))
                           if value else {})

    def _use_model(self, model: DeltaModel) -> None:
        self.model = model
        # the model the physics steps with: the model itself, or a view stepping the framework step (hourly)
        self.pmodel = model.with_step(self.dt_fw / 86400.0) if self.hourly else model
        self.prep = self.pmodel.prepare(self._attrs) if not model.is_fixed else None
        self.prep_np: NumpyPrepared | None = None
        self.use_numpy = model.numpy_step_suitable(self.n)
        # day_so_far for one catchment (ngen) on Python floats within the model step (:meth:`_step_so_far_unit`)
        self.unit_floats = (self.so_far and self.n == 1 and self.use_numpy and self._np_dtype is np.float64
                            and model.config.pet_method == "hamon" and model.config.engine != "eager")
        self._unit = None  # its per-model-step constants and output views (built on first use)
        self._unit_loaded = None  # the state last loaded into the day_so_far kernels' shared input
        self.__dict__.pop("_state_in", None)  # that input (its shape follows the model)

    # -- state -----------------------------------------------------------------------------------------------------
    # The model state is held as torch tensors (``state``) or, after numpy model steps, as numpy arrays; either view
    # is made from the other on demand and shares its memory (states are replaced, never written in place).
    @property
    def state(self) -> ModelState:
        if self._state is None:
            self._state = self._state_np.as_torch()
        return self._state

    @state.setter
    def state(self, value: ModelState) -> None:
        self._state = value
        self._state_np = None

    def _numpy_state(self) -> ModelState:
        if self._state_np is None:
            self._state_np = self._state.as_numpy()
        return self._state_np

    def reset_state(self) -> None:
        n = self.n
        self.state = self.pmodel.initial_state(n, dtype=self.dtype)
        self.fw_step = 0  # framework steps taken
        self.sub = 0  # framework steps accumulated into the current model step
        self.acc_p = np.zeros(n)  # mm
        self.acc_t = np.zeros(n)  # sum of degC
        self.acc_tmin = np.full(n, np.inf)
        self.acc_tmax = np.full(n, -np.inf)
        self.acc_sw = np.zeros(n)
        self.acc_pres = np.zeros(n)
        self.acc_pet = np.zeros(n)  # mm from the PET input
        self.acc_pet_n = np.zeros(n)  # sub-steps with a finite PET input
        self.release = np.zeros(n)  # mm per framework step
        self.release_left = 0  # framework steps left in the release window (after the current one)
        self.model_storage = self._storage_now()
        self.mass_in = self.model_storage.copy()
        self.mass_out = np.zeros(n)
        self.mass_leak = np.zeros(n)
        self.last = {"runoff": np.zeros(n), "et": np.zeros(n), "pet": np.zeros(n), "leak": np.zeros(n)}
        self.last_out: dict = {}  # numpy outputs of the last model step (the keys of DeltaModel.advance)
        self.last_forcing = None  # (n, 3) numpy model forcing of the last model step: P mm, T degC, PET mm
        self.tape = None  # list of model forcings while a gradient window is open
        self.acc_pet_used = np.zeros(n)  # hourly stepping: PET given to the physics over the model step so far, mm
        # hourly stepping: the per-day dynamic parameters the physics uses (name -> (n, nmul)); the first model step
        # uses the network's answer to neutral input (normalised forcing 0) from the zero LSTM state
        self.dyn = self._neutral_dynamic() if self.daily_network else {}
        # day_so_far: routed runoff of the model step given out so far (its running maximum), runoff given out beyond
        # what the routing released (withheld from the next releases), the step's ET and leak so far, and the water
        # counted as stored beyond the model's stores (routed but not given out, less the debt), all mm
        z = np.zeros
        self.given, self.debt, self.et_so_far, self.leak_so_far, self.so_far_pending = z(n), z(n), z(n), z(n), z(n)
        self._prev_routed = None  # day_so_far: the earlier steps' routed runoff of this model step (from its state)
        self.refresh_store_means()

    def _neutral_dynamic(self) -> dict:
        prov = self.model.provider
        if not getattr(prov, "dynamic", None):
            return {}
        with torch.no_grad():
            prep = self._prepared()
            forc = prov.forc_mean.to(self.dtype).expand(self.n, -1).clone()
            h0 = torch.zeros(self.n, prov.lstm_state_size(), dtype=self.dtype)
            dyn, _, _ = prov.dynamic_step(forc, prep.attrs_norm, h0, h0.clone())
        return {k: v.detach().numpy().copy() for k, v in dyn.items()}

    def refresh_store_means(self) -> None:
        """``store_means`` (name -> (n,) float64, mm): the five HBV stores, component means, from ``state``, computed
        as the model step computes them (so a restored run reports the same numbers as an unbroken one)."""
        if self.use_numpy:
            means = numpy_component_means(*self._numpy_state().hbv).astype(np.float64, copy=False)
        else:
            with torch.no_grad():
                means = [getattr(self.state.hbv, k).mean(-1).double().numpy() for k in physics.STATE_NAMES]
        self.store_means = dict(zip(physics.STATE_NAMES, means))

    def _storage_now(self) -> np.ndarray:
        """Stores (component mean) plus water in flight in the unit hydrograph, mm."""
        s = self.state
        tot = s.hbv.total().mean(-1)
        if self.model.config.routing and s.route_buffer.shape[-1]:
            tot = tot + physics.in_flight(self._prepared().uh, s.route_buffer)
        return tot.detach().double().numpy().copy()

    def pending_mm(self) -> np.ndarray:
        if self.hourly:  # the precipitation was given to the physics at once; nothing waits to be released
            return np.zeros(self.n)
        if self.so_far:
            return self.so_far_pending.copy()
        return self.acc_p + self.release * self.release_left

    def stored_mm(self, out: np.ndarray | None = None) -> np.ndarray:
        """Model stores + pending precipitation + pending release, mm (into ``out`` when given)."""
        if out is None:
            return self.model_storage + self.pending_mm()
        if self.hourly:
            out[:] = self.model_storage
            return out
        if self.so_far:
            return np.add(self.model_storage, self.so_far_pending, out=out)
        np.multiply(self.release, self.release_left, out=out)
        np.add(self.acc_p, out, out=out)
        return np.add(self.model_storage, out, out=out)

    # -- parameters ------------------------------------------------------------------------------------------------
    def _prepared(self) -> Prepared:
        if self.prep is None:
            self.prep = self.pmodel.prepare(self._attrs)
        return self.prep

    def _prepared_numpy(self) -> NumpyPrepared:
        if self.prep_np is None:
            self.prep_np = self.pmodel.prepare_numpy(self._prepared())
        return self.prep_np

    def invalidate_parameters(self) -> None:
        """Fixed-parameter values changed (set_value): recompute scaled parameters and the unit hydrograph."""
        self.prep = None
        self.prep_np = None

    # -- stepping --------------------------------------------------------------------------------------------------
    def model_step_start(self) -> datetime:
        return self.start + timedelta(seconds=(self.fw_step - self.sub) * self.dt_fw)

    def step(self, precip_rate_mm_s, temp_k, shortwave=None, pressure=None, pet_rate_m_s=None, tmax_k=None,
             tmin_k=None) -> bool:
        """One framework step with inputs in BMI units.  Returns True when a model step was completed.

        Atomic: if it raises, the state (stores, accumulators, counters, mass accounting) is as before the call."""
        if self.hourly:
            # the physics runs first and commits only when its outputs pass the check; the accumulators and
            # counters change after it: a failed update leaves everything as it was, without copies
            return self._step_hourly(precip_rate_mm_s, temp_k, shortwave, pressure, pet_rate_m_s, tmax_k, tmin_k)
        if (self.unit_floats and self.sub + 1 < self.k and shortwave is None and pressure is None
                and pet_rate_m_s is None and tmax_k is None and tmin_k is None):
            # one catchment within the day: floats, computed before anything is written (nothing to restore)
            step = self._step_so_far_unit(precip_rate_mm_s, temp_k)
            if step is not None:
                return step
        if self.so_far or self.sub + 1 == self.k:
            # this framework step completes a model step (day_so_far: runs one), which can fail (e.g. no PET): keep
            # what it changes so a failed update leaves the state exactly as it was
            fields = (self._ACC_FIELDS if not self.so_far
                      else self._acc_fields(shortwave, pressure, pet_rate_m_s, tmax_k, tmin_k))
            saved = {f: getattr(self, f).copy() for f in fields}
            counters = (self.sub, self.fw_step)
            try:
                if self.so_far:  # (a model step is run, and checked, at every framework step)
                    return self._step_so_far(precip_rate_mm_s, temp_k, shortwave, pressure, pet_rate_m_s, tmax_k, tmin_k)
                return self._step(precip_rate_mm_s, temp_k, shortwave, pressure, pet_rate_m_s, tmax_k, tmin_k)
            except BaseException:
                for f, a in saved.items():
                    setattr(self, f, a)
                self.sub, self.fw_step = counters
                raise
        return self._step(precip_rate_mm_s, temp_k, shortwave, pressure, pet_rate_m_s, tmax_k, tmin_k)

    _ACC_FIELDS = ("acc_p", "acc_t", "acc_tmin", "acc_tmax", "acc_sw", "acc_pres", "acc_pet", "acc_pet_n", "mass_in")

    def _acc_fields(self, shortwave, pressure, pet_rate_m_s, tmax_k, tmin_k) -> tuple:
        """The accumulators :meth:`_accumulate` changes for these optional inputs."""
        f = ("acc_p", "acc_t", "mass_in")
        if self.model.config.pet_method == "hargreaves" or (tmax_k is not None and tmin_k is not None):
            f += ("acc_tmin", "acc_tmax")
        if shortwave is not None:
            f += ("acc_sw",)
        if pressure is not None:
            f += ("acc_pres",)
        if pet_rate_m_s is not None:
            f += ("acc_pet", "acc_pet_n")
        return f

    def _accumulate(self, p_mm, tc, shortwave, pressure, pet_rate_m_s, tmax_k, tmin_k) -> None:
        """Add one framework step's inputs to the model step's aggregates and advance the counters."""
        self.acc_p += p_mm
        self.acc_t += tc
        if self.model.config.pet_method == "hargreaves":  # (the extremes serve Hargreaves only)
            np.minimum(self.acc_tmin, tc, out=self.acc_tmin)
            np.maximum(self.acc_tmax, tc, out=self.acc_tmax)
        if tmax_k is not None and tmin_k is not None:
            # given extremes widen the range (NaN: not given; fmax/fmin ignore it); tmax < tmin is taken as swapped,
            # the rule of physics.hargreaves
            hi, lo = np.fmax(tmax_k, tmin_k) - KELVIN, np.fmin(tmax_k, tmin_k) - KELVIN
            np.fmax(self.acc_tmax, hi, out=self.acc_tmax)
            np.fmin(self.acc_tmin, lo, out=self.acc_tmin)
        if shortwave is not None:
            self.acc_sw += shortwave
        if pressure is not None:
            self.acc_pres += pressure
        if pet_rate_m_s is not None:
            ok = np.isfinite(pet_rate_m_s)
            self.acc_pet += np.where(ok, pet_rate_m_s, 0.0) * self.dt_fw * 1000.0
            self.acc_pet_n += ok
        self.mass_in += p_mm
        self.sub += 1
        self.fw_step += 1

    def _step(self, precip_rate_mm_s, temp_k, shortwave, pressure, pet_rate_m_s, tmax_k=None, tmin_k=None) -> bool:
        p_mm = np.asarray(precip_rate_mm_s, dtype="float64") * self.dt_fw
        tc = np.asarray(temp_k, dtype="float64") - KELVIN
        self._accumulate(p_mm, tc, shortwave, pressure, pet_rate_m_s, tmax_k, tmin_k)
        completed = False
        if self.sub == self.k:
            self._model_step()
            completed = True
        elif self.release_left > 0:
            self.release_left -= 1
        self.mass_out += self.release  # this framework step's share of the last model step's runoff
        return completed

    def _step_hourly(self, precip_rate_mm_s, temp_k, shortwave, pressure, pet_rate_m_s, tmax_k=None, tmin_k=None
                     ) -> bool:
        """hourly stepping: one physics step of this framework step with the current day's dynamic parameters
        (checked, then committed), then the aggregates; at the end of the model step the network advances on them
        and gives the next day's parameters."""
        p_mm = np.asarray(precip_rate_mm_s, dtype="float64") * self.dt_fw
        tc = np.asarray(temp_k, dtype="float64") - KELVIN
        pet = self._pet_step_mm(tc, pet_rate_m_s)
        forcing = np.empty((self.n, 3), dtype=self._np_dtype)
        forcing[:, 0] = p_mm
        forcing[:, 1] = tc
        forcing[:, 2] = pet
        self.release = self._advance_physics(forcing, pet, self.dyn or None)
        self.release_left = 0
        self._accumulate(p_mm, tc, shortwave, pressure, pet_rate_m_s, tmax_k, tmin_k)
        self.acc_pet_used += pet
        self.mass_out += self.release  # this step's runoff, released at once
        if self.sub == self.k:
            self._network_step()
            self._reset_accumulators()
        return True

    def _step_so_far(self, precip_rate_mm_s, temp_k, shortwave, pressure, pet_rate_m_s, tmax_k=None, tmin_k=None
                     ) -> bool:
        """day_so_far: the model step re-run on the part elapsed (module docstring); the caller restores the
        accumulators if it raises.  Nothing else changes before the outputs pass the check."""
        p_mm = np.asarray(precip_rate_mm_s, dtype="float64") * self.dt_fw
        tc = np.asarray(temp_k, dtype="float64") - KELVIN
        self._accumulate(p_mm, tc, shortwave, pressure, pet_rate_m_s, tmax_k, tmin_k)
        sub = self.sub
        frac = sub / self.k
        tmean = self.acc_t / sub
        pet = self._pet_mm(tmean, n_sub=sub)
        forcing = np.empty((self.n, 3), dtype=self._np_dtype)
        forcing[:, 0] = self.acc_p
        forcing[:, 1] = tmean
        forcing[:, 2] = pet
        new_state, out = self._advance_fraction(forcing, sub)
        routed, et, leak, storage = self._checked_outputs(out)
        f64 = np.float64
        # checked: commit.  The step's routed runoff so far: its own share plus the earlier steps' share, spread
        so_far = routed - self._prev_routed_mm() * (1.0 - frac)
        release = so_far - self.given
        np.maximum(release, 0.0, out=release)  # the growth (a fall is not taken back: see debt)
        self.given += release
        if self.debt.any():  # runoff given out beyond the routing earlier: withheld from this release
            pay = np.minimum(self.debt, release)
            release -= pay
            self.debt -= pay
        self.mass_out += release
        self.mass_out += et
        self.mass_out -= self.et_so_far
        self.mass_leak += leak
        self.mass_leak -= self.leak_so_far
        self.et_so_far, self.leak_so_far = et, leak
        self.model_storage = storage
        pending = routed - self.given
        pending -= self.debt
        self.so_far_pending = pending
        self.store_means = {k: np.asarray(out[k], dtype=f64) for k in physics.STATE_NAMES}
        pet = np.asarray(pet, dtype=f64)
        self.last = {"runoff": release, "et": et / frac, "pet": pet / frac, "leak": leak}
        self.last_out = out
        self.last_forcing = forcing
        self.acc_pet_used = pet  # the step's PET so far (the network reads the whole step's)
        self.release = release
        self.release_left = 0
        if sub == self.k:  # the model step itself: commit its state, then the network advances
            self.debt += self.given - so_far  # given out beyond the step's routed runoff: withheld later
            self.given = np.zeros(self.n)
            self.et_so_far, self.leak_so_far = np.zeros(self.n), np.zeros(self.n)
            if self.use_numpy:
                self._state, self._state_np = None, new_state
            else:
                self.state = new_state
            self._prev_routed = None
            self._network_step()
            self._reset_accumulators()
        return True

    #: the outputs of a one-unit day_so_far step in :meth:`_step_so_far_unit`'s column: the keys of the model's
    #: outputs (``DeltaModel._outputs``), then the release, ET and PET per model step, and the water pending
    _UNIT_ROWS = (("runoff", "runoff_unrouted", "et", "leak", "precip", "pet") + physics.STATE_NAMES
                  + ("swe", "routing_store", "storage", "_release", "_et_rate", "_pet_rate", "_pending"))

    def _step_so_far_unit(self, precip_rate_mm_s, temp_k) -> bool | None:
        """day_so_far for one catchment at a framework step within the model step (its last one, which commits the
        day, takes :meth:`_step_so_far`): the same arithmetic on Python floats, with the routing of the day so far
        from constants derived once per model step (:meth:`_unit_constants`).  Equals :meth:`_step_so_far` to
        rounding (tests/test_hourly_stepping.py) at a fraction of its cost: ngen runs one catchment per instance.
        Everything is computed before anything is written, so a failure leaves the state as it was.  None where the
        kernel cannot be built (the caller takes the array path)."""
        sub = self.sub + 1
        model, _, _, one = self._fraction_parts(sub)
        if one is None:
            return None
        u = self._unit_constants()
        frac = sub / self.k
        p_mm = float(precip_rate_mm_s[0]) * self.dt_fw
        acc_p = self.acc_p.item() + p_mm
        acc_t = self.acc_t.item() + (float(temp_k[0]) - KELVIN)
        tmean = acc_t / sub
        pet = physics.hamon_from_factor(tmean, u["hamon"]) * (self.model.config.dt_days * frac)
        if not -_INF < pet < _INF:
            self._checked_pet(np.array([pet]))  # raises, naming the variable
        if self._unit_loaded is not u["hbv"]:  # the day's start state, into the kernels' shared input (once a day)
            self._unit_state_in[...] = u["hbv"]
            self._unit_loaded = u["hbv"]
        q, et, leak, *stores = one.run_unit(acc_p, tmean, pet, self._fraction_dynamic(sub, model))
        routed = q * u["a0"] + u["c0"]  # the routing step of the day so far (route_step_in_flight)
        rstore = q * u["a1"] + u["c1"]
        storage = stores[0] + stores[1] + stores[2] + stores[3] + stores[4] + rstore  # (DeltaModel._outputs' sum)
        if not (-_INF < routed < _INF and -_INF < et < _INF and -_INF < storage < _INF):
            self._checked_outputs({"runoff": np.array([routed]), "et": np.array([et]), "leak": np.array([leak]),
                                   "storage": np.array([storage])})  # raises where the output check is on
        # checked: commit (the arithmetic of _step_so_far, in its order)
        so_far = routed - u["prev"] * (1.0 - frac)
        given = self.given.item()
        release = so_far - given
        if not release > 0.0:
            release = 0.0
        given += release
        debt = self.debt.item()
        if debt:
            pay = min(debt, release)
            release -= pay
            debt -= pay
        mass_out = self.mass_out.item() + release + et - self.et_so_far.item()
        mass_leak = self.mass_leak.item() + leak - self.leak_so_far.item()
        pending = routed - given - debt
        col = u["column"]
        col[:] = [routed, q, et, leak, acc_p, pet, *stores, stores[0] + stores[1], rstore, storage, release,
                  et / frac, pet / frac, pending]
        self.acc_p[0] = acc_p
        self.acc_t[0] = acc_t
        self.mass_in[0] += p_mm
        self.given[0] = given
        self.debt[0] = debt
        self.mass_out[0] = mass_out
        self.mass_leak[0] = mass_leak
        rows = u["rows"]
        self.et_so_far, self.leak_so_far, self.model_storage = rows["et"], rows["leak"], rows["storage"]
        self.so_far_pending = rows["_pending"]
        self.release, self.acc_pet_used = rows["_release"], rows["pet"]
        self.release_left = 0
        self.store_means, self.last, self.last_out = u["store_means"], u["last"], self._unit_last_out(u)
        self.last_forcing = one.forcing[0]  # (1, 3): P, T, PET of the day so far, as the kernel read them
        self.sub = sub
        self.fw_step += 1
        return True

    def _unit_constants(self) -> dict:
        """One-unit day_so_far: what holds over a model step, derived once per model step (cached on the routing
        buffer and the parameters, which change only when it is committed or the parameters change): the start
        state, the routing of the day so far as ``routed = q·a0 + c0``, ``in flight = q·a1 + c1`` (the last row of
        :func:`physics.step_matrix` and the product of the rest with the earlier days' runoff), the earlier days'
        routed runoff ``prev``, the Hamon day factor, and the output column with its views."""
        st = self._numpy_state()
        prep = self._prepared_numpy()
        day = self.fw_step - self.sub
        u = self._unit
        if u is not None and u["buffer"] is st.route_buffer and u["prep"] is prep and u["day"] == day \
                and u["hbv"] is st.hbv:
            return u
        if u is None:  # allocated once: the column and the views the step's outputs are published through
            col = np.zeros((len(self._UNIT_ROWS), 1))
            rows = {k: col[i] for i, k in enumerate(self._UNIT_ROWS)}
            u = {"column": col[:, 0], "rows": rows,
                 "store_means": {k: rows[k] for k in physics.STATE_NAMES},
                 "last": {"runoff": rows["_release"], "et": rows["_et_rate"], "pet": rows["_pet_rate"],
                          "leak": rows["leak"]}, "last_out": (None, None)}
        m = prep.uh_step
        if m is None:  # no routing: routed = q, nothing in flight
            a0, c0, a1, c1 = 1.0, 0.0, 0.0, 0.0
        else:
            m = np.asarray(m[0], dtype=np.float64)  # (L, 2), oldest first
            tail = np.asarray(st.route_buffer[0, 1:], dtype=np.float64)
            a0, a1 = float(m[-1, 0]), float(m[-1, 1])
            c0, c1 = float(tail @ m[:-1, 0]), float(tail @ m[:-1, 1])
        u.update(buffer=st.route_buffer, prep=prep, day=day, hbv=st.hbv, a0=a0, c0=c0, a1=a1, c1=c1,
                 prev=self._prev_routed_mm().item(), hamon=float(self._hamon_factor()[0]))
        self._unit = u
        return u

    def _unit_last_out(self, u: dict) -> dict:
        """The one-unit step's outputs (the views of its column) with the day's parameters (the same mapping all day)."""
        means, out = u["last_out"]
        if means is not self._dyn_means:
            out = {k: u["rows"][k] for k in self._UNIT_ROWS if not k.startswith("_")}
            out.update(self._dyn_means)
            u["last_out"] = (self._dyn_means, out)
        return out

    @property
    def _unit_state_in(self) -> np.ndarray:
        """(5, n, nmul) states the day_so_far kernels read (shared by them: the start state of the model step)."""
        buf = self.__dict__.get("_state_in")
        if buf is None:
            buf = self.__dict__["_state_in"] = np.zeros((len(physics.STATE_NAMES), self.n, self.model.provider.nmul),
                                                        self._np_dtype)
        return buf

    def _prev_routed_mm(self) -> np.ndarray:
        """day_so_far: the routed runoff of the current model step from the earlier steps' runoff (the routing
        buffer at the step's start), mm."""
        if self._prev_routed is None:
            if not self.model.config.routing:
                self._prev_routed = np.zeros(self.n)
            elif self.use_numpy:
                buf = self._numpy_state().route_buffer
                r, _ = physics.route_step(np.zeros(self.n, buf.dtype), self._prepared_numpy().uh, buf)
                self._prev_routed = np.asarray(r, dtype=np.float64)
            else:
                with torch.no_grad():
                    buf = self.state.route_buffer
                    r, _ = physics.route_step(buf.new_zeros(self.n), self._prepared().uh, buf)
                self._prev_routed = r.double().numpy()
        return self._prev_routed

    def _fraction_parts(self, sub: int):
        """day_so_far: (model view, Prepared, NumpyPrepared or None, OneStep or None) for ``sub`` framework steps of
        the model step elapsed; built once per set of parameters."""
        base = self._prepared()
        cache = self.__dict__.get("_frac")
        if cache is None or cache[0] is not base:
            cache = self.__dict__["_frac"] = (base, {})
        parts = cache[1].get(sub)
        if parts is None:
            frac = sub / self.k
            model = self.model.with_physics_fraction(frac)
            prep = DeltaModel.prepared_fraction(base, frac)
            prep_np = model.prepare_numpy(prep) if self.use_numpy else None
            one = self._build_one_step(model, prep_np, self._unit_state_in) if self.use_numpy else None
            parts = cache[1][sub] = (model, prep, prep_np, one)
        return parts

    def _advance_fraction(self, forcing: np.ndarray, sub: int):
        """day_so_far: the model step from its start state on ``forcing`` (the aggregates so far), physics scaled
        to ``sub`` framework steps, with the day's network parameters.  Returns (new state, numpy outputs); nothing
        is committed."""
        model, prep, prep_np, one = self._fraction_parts(sub)
        dyn = self.dyn or None
        if self.use_numpy:
            if one is None:
                return model.advance_numpy(self._numpy_state(), forcing, prep_np, dynamic=dyn)
            self._unit_loaded = None  # (one.step loads the states itself)
            return self._kernel_advance(one, model, prep_np, forcing, self._fraction_dynamic(sub, model),
                                        self._dyn_means)
        dyn_t = None if dyn is None else {k: torch.from_numpy(v) for k, v in dyn.items()}
        with torch.no_grad(), torch_threads(self.threads):
            new_state, out = model.advance(self.state, torch.from_numpy(forcing), prep, dynamic=dyn_t)
        return new_state, {k: v.numpy() for k, v in out.items()}

    def _fraction_dynamic(self, sub: int, model: DeltaModel) -> dict | None:
        """day_so_far: the day's dynamic parameters scaled to ``sub`` framework steps (``model``: its fraction view),
        derived once a day per part."""
        dyn = self.dyn or None
        if not self._dyn_rates:
            return dyn
        scaled = self._dyn_frac.get(sub)
        if scaled is None:
            scaled = self._dyn_frac[sub] = physics.scale_rates(dyn, model.config.dt_days)
        return scaled

    def _hamon_factor(self) -> np.ndarray:
        """The Hamon day factor at the units for the current model step's day, derived once a step."""
        day = self.fw_step - self.sub  # the model step this framework step belongs to
        cached = self._hamon_day
        if cached[0] != day:
            doy = float(self.model_step_start().timetuple().tm_yday)
            ld = physics.daylength_hours(self.lat, doy)
            cached = self._hamon_day = (day, physics.hamon_day_factor(ld))
        return cached[1]

    def _hamon_day_mm_d(self, temp_c) -> np.ndarray:
        """Hamon PET (mm d-1) at the units for the current model step's day; one unit (ngen's catchment) on Python
        floats."""
        factor = self._hamon_factor()
        if self.n == 1:
            return np.array([physics.hamon_from_factor(float(temp_c[0]), float(factor[0]))])
        return physics.hamon_from_factor(temp_c, factor)

    def _pet_mm(self, tmean, n_sub: int | None = None) -> np.ndarray:
        """PET of the model step, mm (numpy in, numpy out: no torch for a few units); of its first ``n_sub``
        framework steps (day_so_far) when given."""
        n_sub = self.k if n_sub is None else n_sub
        method = self.model.config.pet_method
        days = self.model.config.dt_days * (n_sub / self.k)
        doy = float(self.model_step_start().timetuple().tm_yday) if method in ("hargreaves",) else None
        if method == "hamon":
            pet = self._hamon_day_mm_d(tmean) * days
        elif method == "hargreaves":
            pet = physics.hargreaves(self.acc_tmin, self.acc_tmax, self.lat, doy) * days
        elif method == "priestley_taylor":
            pet = physics.priestley_taylor(self.acc_sw / n_sub, tmean, self.acc_pres / n_sub) * days
        else:  # "input"
            pet = np.full(self.n, np.nan)
        # a PET input given on every sub-step overrides the internal method for that unit
        if method == "input" or self.acc_pet_n.any():
            pet = np.where(self.acc_pet_n == n_sub, self.acc_pet, pet)
        return self._checked_pet(pet)

    def _checked_pet(self, pet: np.ndarray) -> np.ndarray:
        if not np.isfinite(pet).all():
            bad = int(np.flatnonzero(~np.isfinite(pet))[0])
            raise ValueError(f"PET: pet_method {self.model.config.pet_method!r} needs "
                             "land_surface_water__potential_evaporation_volume_flux on every step; unit index "
                             f"{bad} has none")
        return pet

    def _model_step(self) -> None:
        """daily_release: the model step completed by this framework step; its runoff is released over k steps."""
        tmean = self.acc_t / self.k
        pet = self._pet_mm(tmean)
        forcing = np.empty((self.n, 3), dtype=self._np_dtype)  # P mm, T degC, PET mm (in the model's dtype)
        forcing[:, 0] = self.acc_p
        forcing[:, 1] = tmean
        forcing[:, 2] = pet
        runoff = self._advance_physics(forcing, pet, None)
        self.release = runoff / self.k
        self.release_left = self.k - 1
        self._reset_accumulators()

    def _reset_accumulators(self) -> None:
        self.sub = 0
        self.acc_p.fill(0.0)
        self.acc_t.fill(0.0)
        self.acc_tmin.fill(np.inf)
        self.acc_tmax.fill(-np.inf)
        self.acc_sw.fill(0.0)
        self.acc_pres.fill(0.0)
        self.acc_pet.fill(0.0)
        self.acc_pet_n.fill(0.0)
        self.acc_pet_used.fill(0.0)

    def _advance_physics(self, forcing: np.ndarray, pet: np.ndarray, dynamic: dict | None) -> np.ndarray:
        """One physics (and routing) step of ``pmodel`` on ``forcing`` (n, 3); with ``dynamic`` (numpy, name ->
        (n, nmul)) the network is not run.  Checks the outputs, then commits.  Returns the routed runoff, mm."""
        # the step is computed into new objects (the physics is pure) and committed only after the output check:
        # a non-finite output leaves the state as it was before the step
        one = self._one_step() if self.hourly and self.use_numpy else None
        if one is not None:  # hourly, one catchment: the fused kernel on prepared arguments (the same numbers as unroll)
            new_state, out = self._kernel_step(one, forcing, dynamic)
        elif self.use_numpy:  # a tiny problem: numpy, on views of the state (see the module docstring)
            new_state, out = self.pmodel.advance_numpy(self._numpy_state(), forcing, self._prepared_numpy(), dynamic=dynamic)
        else:
            dyn_t = None if dynamic is None else {k: torch.from_numpy(v) for k, v in dynamic.items()}
            with torch.no_grad(), torch_threads(self.threads):
                new_state, out = self.pmodel.advance(self.state, torch.from_numpy(forcing), self._prepared(), dynamic=dyn_t)
            out = {k: v.numpy() for k, v in out.items()}
        f64 = np.float64
        runoff, et, leak, storage = self._checked_outputs(out)
        if self.use_numpy:
            self._state, self._state_np = None, new_state
        else:
            self.state = new_state
        if self.tape is not None:  # gradient window: keep what the model saw (see bmi_dhydro.gradients)
            self.tape.append(torch.from_numpy(forcing.copy()))
        self.last_forcing = forcing
        self.last_out = out
        self.model_storage = storage
        if self.use_numpy:  # the means advance_numpy computed are refresh_store_means' numbers
            self.store_means = {k: np.asarray(out[k], dtype=f64) for k in physics.STATE_NAMES}
        else:  # (the torch engine's means may differ in the last bit from the ones a restore recomputes)
            self.refresh_store_means()
        self.mass_out += et
        self.mass_leak += leak
        self.last = {"runoff": runoff, "et": et, "pet": np.asarray(pet, dtype=f64), "leak": leak}
        return runoff

    def _checked_outputs(self, out: dict) -> tuple:
        """(routed runoff, ET, leak, storage) of a step's outputs as float64, after the output check (which raises
        before anything is committed)."""
        f64 = np.float64
        runoff = np.asarray(out["runoff"], dtype=f64)
        et = np.asarray(out["et"], dtype=f64)
        leak = np.asarray(out["leak"], dtype=f64)
        storage = np.array(out["storage"], dtype=f64)
        if self.output_check is not None:
            self.output_check({"runoff": runoff, "et": et, "storage": storage})
        return runoff, et, leak, storage

    def _one_step(self):
        """The fused kernel's :class:`~bmi_dhydro.physics.fast.OneStep` for these units' prepared parameters, or
        None (engine eager, or the kernel cannot be built: the numpy step is used, as everywhere)."""
        prep = self._prepared_numpy()
        cached = self.__dict__.get("_one")
        if cached is not None and cached[0] is prep:
            return cached[1]
        one = self._build_one_step(self.pmodel, prep)
        self.__dict__["_one"] = (prep, one)
        return one

    def _build_one_step(self, model: DeltaModel, prep: NumpyPrepared, state_in: np.ndarray | None = None):
        """A :class:`~bmi_dhydro.physics.fast.OneStep` for ``model``'s step on ``prep``'s parameters (reading its
        states from ``state_in`` when given), or None (engine eager, or the kernel cannot be built: the numpy step
        is used, as everywhere)."""
        if model.config.engine == "eager":
            return None
        from .physics import fast

        try:
            return fast.OneStep(prep.static, list(self.dyn), self.n, model.provider.nmul, self._np_dtype,
                                model.config.capillary, state_in=state_in)
        except (RuntimeError, OSError) as exc:
            if model.config.engine == "fast":
                raise
            logging.getLogger(__name__).info("%s steps run in numpy: %s", self.stepping, exc)
            return None

    def _kernel_step(self, one, forcing: np.ndarray, dynamic: dict | None):
        """:meth:`DeltaModel.advance_numpy` with the HBV step through the fused kernel (network not run)."""
        prep = self._prepared_numpy()
        if dynamic is self._dyn:  # the day's parameters: scaled and averaged once a day (the dyn setter)
            scaled, dyn_means = self._dyn_scaled, self._dyn_means
        else:
            scaled = physics.scale_rates(dynamic, self.pmodel.config.dt_days) if dynamic else None
            dyn_means = (dict(zip([f"param_{k}" for k in dynamic], numpy_component_means(*dynamic.values())))
                         if dynamic else {})
        return self._kernel_advance(one, self.pmodel, prep, forcing, scaled, dyn_means)

    def _kernel_advance(self, one, model: DeltaModel, prep: NumpyPrepared, forcing: np.ndarray, scaled, dyn_means: dict):
        """One step of ``model`` from the current (numpy) state: HBV through the kernel ``one`` with the scaled
        dynamic parameters ``scaled``, then routing and outputs (``dyn_means`` added).  Nothing is committed."""
        st = self._numpy_state()
        new_hbv, means = one.step(st.hbv, forcing, scaled)
        buffer, out = model._route_and_outputs(means, forcing, st.route_buffer, prep.uh, prep.uh_step)
        out.update(dyn_means)  # per-day values, component mean
        return ModelState(physics.HbvState(*new_hbv), st.h, st.c, buffer), out

    def _pet_step_mm(self, tc, pet_rate_m_s) -> np.ndarray:
        """hourly stepping: PET of this framework step, mm: the PET input where given, else Hamon of this step's
        temperature (mm d-1) times the step in days."""
        if self.model.config.pet_method == "hamon":
            pet = self._hamon_day_mm_d(tc) * (self.dt_fw / 86400.0)
        else:
            pet = np.full(self.n, np.nan)
        if pet_rate_m_s is not None:
            given = np.isfinite(pet_rate_m_s)
            pet = np.where(given, np.asarray(pet_rate_m_s, dtype="float64") * self.dt_fw * 1000.0, pet)
        return self._checked_pet(pet)

    def _network_step(self) -> None:
        """hourly stepping: the LSTM advances one model step on the step's aggregates (P sum, mean T, the PET the
        physics used), as in training; its parameters drive the next model step's physics."""
        prov = self.model.provider
        if not getattr(prov, "dynamic", None):
            return
        forc = np.stack([self.acc_p, self.acc_t / self.k, self.acc_pet_used], -1).astype(self._np_dtype)
        if self.use_numpy:
            st = self._numpy_state()
            dyn, h, c = prov.dynamic_step_numpy(forc, self._prepared_numpy().attrs_norm, st.h, st.c)
            self._state, self._state_np = None, st._replace(h=h, c=c)
            self.dyn = {k: np.array(v, copy=True) for k, v in dyn.items()}
        else:
            with torch.no_grad(), torch_threads(self.threads):
                st = self.state
                dyn, h, c = prov.dynamic_step(torch.from_numpy(forc), self._prepared().attrs_norm, st.h, st.c)
            self.state = st._replace(h=h, c=c)
            self.dyn = {k: v.numpy().copy() for k, v in dyn.items()}

    # -- serialisation ---------------------------------------------------------------------------------------------
    ARRAY_FIELDS = ("acc_p", "acc_t", "acc_tmin", "acc_tmax", "acc_sw", "acc_pres", "acc_pet", "acc_pet_n", "release",
                    "model_storage", "mass_in", "mass_out", "mass_leak")

    def state_arrays(self) -> dict:
        """Everything needed to continue bit for bit, as numpy arrays."""
        s = self.state
        d = {f"hbv_{name}": getattr(s.hbv, name).detach().numpy().copy() for name in physics.STATE_NAMES}
        d["lstm_h"] = s.h.detach().numpy().copy()
        d["lstm_c"] = s.c.detach().numpy().copy()
        d["route_buffer"] = s.route_buffer.detach().numpy().copy()
        for f in self.ARRAY_FIELDS:
            d[f] = getattr(self, f).copy()
        for k in ("runoff", "et", "pet", "leak"):
            d[f"last_{k}"] = self.last[k].copy()
        d["counters"] = np.array([self.fw_step, self.sub, self.release_left], dtype="int64")
        if self.daily_network:  # the day's PET so far and the dynamic parameters the physics is using
            d["acc_pet_used"] = self.acc_pet_used.copy()
            for k, v in self.dyn.items():
                d[f"dyn_{k}"] = np.array(v, copy=True)
        if self.so_far:
            for k in SO_FAR_FIELDS:
                d[f"sofar_{k}"] = getattr(self, k).copy()
            d["sofar_stores"] = np.stack([self.store_means[k] for k in physics.STATE_NAMES], -1)  # (n, 5)
        return d

    def load_state_arrays(self, d: dict) -> None:
        mine = set(self.state_arrays())
        foreign = sorted(k for k in d if k not in mine and (k == "acc_pet_used" or k.startswith(("dyn_", "sofar_"))))
        if foreign:
            raise ValueError(f"restart: variables {foreign} belong to another stepping than this run's "
                             f"{self.stepping!r}: continue a run with the stepping that wrote its restart")

        def t(name, shape):
            a = np.asarray(d[name])
            if a.shape != shape:
                raise ValueError(f"restart: variable {name} expected shape {shape}, got {a.shape}")
            return torch.as_tensor(a, dtype=self.dtype).clone()

        cur = self.state
        hbv = physics.HbvState(*(t(f"hbv_{n}", tuple(getattr(cur.hbv, n).shape)) for n in physics.STATE_NAMES))
        state = ModelState(hbv, t("lstm_h", tuple(cur.h.shape)), t("lstm_c", tuple(cur.c.shape)),
                           t("route_buffer", tuple(cur.route_buffer.shape)))
        fields = {}
        for f in self.ARRAY_FIELDS:
            a = np.asarray(d[f], dtype="float64")
            if a.shape != (self.n,):
                raise ValueError(f"restart: variable {f} expected shape ({self.n},), got {a.shape}")
            fields[f] = a.copy()
        counters = np.asarray(d["counters"]).astype("int64")
        extra = {}
        if self.daily_network:
            need = ["acc_pet_used"] + [f"dyn_{k}" for k in self.dyn] + [k for k in mine if k.startswith("sofar_")]
            missing = [k for k in need if k not in d]
            if missing:
                raise ValueError(f"restart: variables {missing} missing: the restart was not written with stepping: "
                                 f"{self.stepping} (a daily_release restart cannot continue an {self.stepping} run)")
            extra["acc_pet_used"] = np.asarray(d["acc_pet_used"], dtype="float64").copy()
            dyn = {}
            for k, v in self.dyn.items():
                a = np.asarray(d[f"dyn_{k}"])
                if a.shape != np.shape(v):
                    raise ValueError(f"restart: variable dyn_{k} expected shape {np.shape(v)}, got {a.shape}")
                dyn[k] = a.astype(np.asarray(v).dtype).copy()
        # all checks passed: commit
        self.state = state
        for f, a in fields.items():
            setattr(self, f, a)
        self.last = {k: np.asarray(d[f"last_{k}"], dtype="float64").copy() for k in ("runoff", "et", "pet", "leak")}
        self.fw_step, self.sub, self.release_left = (int(x) for x in counters)
        if self.daily_network:
            self.acc_pet_used = extra["acc_pet_used"]
            self.dyn = dyn
        self._prev_routed = None
        if self.so_far:
            for k in SO_FAR_FIELDS:
                a = np.asarray(d[f"sofar_{k}"], dtype="float64")
                if a.shape != (self.n,):
                    raise ValueError(f"restart: variable sofar_{k} expected shape ({self.n},), got {a.shape}")
                setattr(self, k, a.copy())
            stores = np.asarray(d["sofar_stores"], dtype="float64")
            if stores.shape != (self.n, len(physics.STATE_NAMES)):
                raise ValueError(f"restart: variable sofar_stores expected shape ({self.n}, {len(physics.STATE_NAMES)}), "
                                 f"got {stores.shape}")
            self.store_means = dict(zip(physics.STATE_NAMES, stores.T.copy()))  # the stores so far, as reported
        else:
            self.refresh_store_means()

    def swap_model(self, model: DeltaModel) -> None:
        """Hot swap at a step boundary: a new network, the same states (shapes must agree)."""
        new_state = (model.with_step(self.dt_fw / 86400.0) if self.hourly else model).initial_state(self.n, dtype=self.dtype)
        for a, b, name in zip(new_state, self.state, ("hbv", "h", "c", "route_buffer")):
            sa = [x.shape for x in a] if name == "hbv" else [a.shape]
            sb = [x.shape for x in b] if name == "hbv" else [b.shape]
            if sa != sb:
                raise ValueError(f"hot swap: the new model's {name} state has shape {sa}, the running one {sb}")
        if model.config.dt_days != self.model.config.dt_days:
            raise ValueError("hot swap: the new model has a different time step")
        self._use_model(model)


__all__ = ["Stepper", "KELVIN", "STEPPINGS"]
