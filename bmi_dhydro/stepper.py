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

Mass accounting (ngen's mass-balance protocol, all in m of water over the unit area):
``mass_in = initial storage + Σ precipitation``, ``mass_out = Σ released runoff + Σ ET``,
``mass_stored = model stores + routing in flight + pending precipitation + pending release`` and
``mass_leaked = −Σ leak`` (the soil-moisture floor adds water, a negative loss), so
``mass_in − mass_out − mass_stored − mass_leaked == 0`` to rounding.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import torch

from . import physics
from .model import DeltaModel, ModelState, Prepared

KELVIN = 273.15


class Stepper:
    def __init__(self, model: DeltaModel, attributes: np.ndarray, lat: np.ndarray, dt_fw: float, start: datetime,
                 dtype=torch.float64):
        self.model = model
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
        self.start = start
        self.lat = np.array(lat, dtype="float64")  # an owned, writable copy (torch warns on read-only arrays)
        self._lat_t = torch.as_tensor(self.lat, dtype=torch.float64)
        self._attrs = torch.as_tensor(attributes, dtype=dtype)
        self.prep: Prepared = model.prepare(self._attrs) if not model.is_fixed else None
        self.reset_state()

    # -- state -----------------------------------------------------------------------------------------------------
    def reset_state(self) -> None:
        n = self.n
        self.state: ModelState = self.model.initial_state(n, dtype=self.dtype)
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
        self.last_out: dict = {}
        self.last_forcing = None  # (n, 3) model forcing of the last model step: P mm, T degC, PET mm
        self.tape = None  # list of model forcings while a gradient window is open

    def _storage_now(self) -> np.ndarray:
        """Stores (component mean) plus water in flight in the unit hydrograph, mm."""
        s = self.state
        tot = s.hbv.total().mean(-1)
        if self.model.config.routing and s.route_buffer.shape[-1]:
            tot = tot + physics.in_flight(self._prepared().uh, s.route_buffer)
        return tot.detach().double().numpy().copy()

    def pending_mm(self) -> np.ndarray:
        return self.acc_p + self.release * self.release_left

    def stored_mm(self) -> np.ndarray:
        return self.model_storage + self.pending_mm()

    # -- parameters ------------------------------------------------------------------------------------------------
    def _prepared(self) -> Prepared:
        if self.prep is None:
            self.prep = self.model.prepare(self._attrs)
        return self.prep

    def invalidate_parameters(self) -> None:
        """Fixed-parameter values changed (set_value): recompute scaled parameters and the unit hydrograph."""
        self.prep = None

    # -- stepping --------------------------------------------------------------------------------------------------
    def model_step_start(self) -> datetime:
        return self.start + timedelta(seconds=(self.fw_step - self.sub) * self.dt_fw)

    def step(self, precip_rate_mm_s, temp_k, shortwave=None, pressure=None, pet_rate_m_s=None) -> bool:
        """One framework step with inputs in BMI units.  Returns True when a model step was completed.

        Atomic: if it raises, the state (stores, accumulators, counters, mass accounting) is as before the call."""
        if self.sub + 1 == self.k:
            # this framework step completes a model step, which can fail (e.g. no PET): keep what it changes so a
            # failed update leaves the state exactly as it was
            saved = {f: getattr(self, f).copy() for f in self._ACC_FIELDS}
            counters = (self.sub, self.fw_step)
            try:
                return self._step(precip_rate_mm_s, temp_k, shortwave, pressure, pet_rate_m_s)
            except BaseException:
                for f, a in saved.items():
                    setattr(self, f, a)
                self.sub, self.fw_step = counters
                raise
        return self._step(precip_rate_mm_s, temp_k, shortwave, pressure, pet_rate_m_s)

    _ACC_FIELDS = ("acc_p", "acc_t", "acc_tmin", "acc_tmax", "acc_sw", "acc_pres", "acc_pet", "acc_pet_n", "mass_in")

    def _step(self, precip_rate_mm_s, temp_k, shortwave, pressure, pet_rate_m_s) -> bool:
        dt = self.dt_fw
        p_mm = np.asarray(precip_rate_mm_s, dtype="float64") * dt
        tc = np.asarray(temp_k, dtype="float64") - KELVIN
        self.acc_p += p_mm
        self.acc_t += tc
        np.minimum(self.acc_tmin, tc, out=self.acc_tmin)
        np.maximum(self.acc_tmax, tc, out=self.acc_tmax)
        if shortwave is not None:
            self.acc_sw += shortwave
        if pressure is not None:
            self.acc_pres += pressure
        if pet_rate_m_s is not None:
            ok = np.isfinite(pet_rate_m_s)
            self.acc_pet += np.where(ok, pet_rate_m_s, 0.0) * dt * 1000.0
            self.acc_pet_n += ok
        self.mass_in += p_mm
        self.sub += 1
        self.fw_step += 1
        completed = False
        if self.sub == self.k:
            self._model_step()
            completed = True
        elif self.release_left > 0:
            self.release_left -= 1
        self.mass_out += self.release  # this framework step's share of the last model step's runoff
        return completed

    def _pet_mm(self, tmean) -> np.ndarray:
        method = self.model.config.pet_method
        doy = float(self.model_step_start().timetuple().tm_yday)
        days = self.model.config.dt_days
        if method == "hamon":
            pet = physics.hamon(torch.as_tensor(tmean), self._lat_t, doy).numpy() * days
        elif method == "hargreaves":
            pet = physics.hargreaves(torch.as_tensor(self.acc_tmin), torch.as_tensor(self.acc_tmax), self._lat_t, doy).numpy() * days
        elif method == "priestley_taylor":
            pet = physics.priestley_taylor(torch.as_tensor(self.acc_sw / self.k), torch.as_tensor(tmean),
                                           torch.as_tensor(self.acc_pres / self.k)).numpy() * days
        else:  # "input"
            pet = np.full(self.n, np.nan)
        # a PET input given on every sub-step overrides the internal method for that unit
        given = self.acc_pet_n == self.k
        pet = np.where(given, self.acc_pet, pet)
        if not np.isfinite(pet).all():
            bad = int(np.flatnonzero(~np.isfinite(pet))[0])
            raise ValueError(f"PET: pet_method {method!r} needs land_surface_water__potential_evaporation_volume_flux "
                             f"on every step; unit index {bad} has none")
        return pet

    @torch.no_grad()
    def _model_step(self) -> None:
        tmean = self.acc_t / self.k
        pet = self._pet_mm(tmean)
        forcing = torch.as_tensor(np.stack([self.acc_p, tmean, pet], axis=-1), dtype=self.dtype)
        prep = self._prepared()
        self.state, out = self.model.advance(self.state, forcing, prep)
        if self.tape is not None:  # gradient window: keep what the model saw (see bmi_dhydro.gradients)
            self.tape.append(forcing.clone())
        self.last_forcing = forcing
        self.last_out = out
        runoff = out["runoff"].double().numpy()
        et = out["et"].double().numpy()
        leak = out["leak"].double().numpy()
        self.model_storage = out["storage"].double().numpy().copy()
        self.mass_out += et
        self.mass_leak += leak
        self.release = runoff / self.k
        self.release_left = self.k - 1
        self.last = {"runoff": runoff, "et": et, "pet": pet, "leak": leak}
        # reset accumulators for the next model step
        self.sub = 0
        self.acc_p[:] = 0.0
        self.acc_t[:] = 0.0
        self.acc_tmin[:] = np.inf
        self.acc_tmax[:] = -np.inf
        self.acc_sw[:] = 0.0
        self.acc_pres[:] = 0.0
        self.acc_pet[:] = 0.0
        self.acc_pet_n[:] = 0.0

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
        return d

    def load_state_arrays(self, d: dict) -> None:
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
        # all checks passed: commit
        self.state = state
        for f, a in fields.items():
            setattr(self, f, a)
        self.last = {k: np.asarray(d[f"last_{k}"], dtype="float64").copy() for k in ("runoff", "et", "pet", "leak")}
        self.fw_step, self.sub, self.release_left = (int(x) for x in counters)

    def swap_model(self, model: DeltaModel) -> None:
        """Hot swap at a step boundary: a new network, the same states (shapes must agree)."""
        new_state = model.initial_state(self.n, dtype=self.dtype)
        for a, b, name in zip(new_state, self.state, ("hbv", "h", "c", "route_buffer")):
            sa = [x.shape for x in a] if name == "hbv" else [a.shape]
            sb = [x.shape for x in b] if name == "hbv" else [b.shape]
            if sa != sb:
                raise ValueError(f"hot swap: the new model's {name} state has shape {sa}, the running one {sb}")
        if model.config.dt_days != self.model.config.dt_days:
            raise ValueError("hot swap: the new model has a different time step")
        self.model = model
        self.prep = model.prepare(self._attrs) if not model.is_fixed else None


__all__ = ["Stepper", "KELVIN"]
