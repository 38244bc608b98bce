"""Recording what a BmiDeltaModel saw during a coupled run, for offline gradient feedback (``dhydro retrain``).

The record (NetCDF, appended and synced as the run goes) holds, per model step (the model's native step, after
time-step aggregation and regridding):

* ``forcing(step, unit, var)``: precipitation (mm per model step), mean air temperature (°C) and PET (mm per
  model step) — exactly what the model was given;
* ``runoff``, ``et``, ``swe`` (step, unit): the model outputs (mm per model step / mm);
* ``time(step)``: the start of each model step;
* model states at chunk boundaries, every ``state_every`` model steps (and at step 0): ``state_step(snap)`` is the
  index of the model step the snapshot precedes, ``state_<name>(snap, unit, ...)`` the stores, LSTM state and
  routing buffer;
* per unit: ``unit_id``, ``area_km2``, ``lat``, ``lon`` and ``attributes(unit, attribute)``;
* provenance attributes: checkpoint path and sha256, the coupling spec (text and sha256), creation time.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from bmi_dhydro import physics

from .run import spec_provenance

STATE_KEYS = tuple(f"hbv_{n}" for n in physics.STATE_NAMES) + ("lstm_h", "lstm_c", "route_buffer")


class Recorder:
    def __init__(self, rec_spec, coupler, spec_path):
        import netCDF4

        self.component = rec_spec.component
        comp = coupler.components[rec_spec.component]
        if not hasattr(comp, "stepper"):
            raise ValueError(f"record.component: {rec_spec.component} is not a BmiDeltaModel; only its runs can be recorded")
        self.comp = comp
        self.every = rec_spec.state_every
        st = comp.stepper
        path = Path(rec_spec.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.nc = nc = netCDF4.Dataset(path, "w")
        ck = getattr(comp, "checkpoint_path", None)
        from bmi_dhydro.checkpoint import default_checkpoint_path, file_sha256

        ck_path = Path(ck) if ck else (None if comp.model.is_fixed else default_checkpoint_path())
        nc.setncatts({
            "title": "bmi-dhydro coupled-run record",
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "checkpoint": str(ck_path) if ck_path else "fixed parameters",
            "checkpoint_sha256": file_sha256(ck_path) if ck_path else "",
            "model_dt_days": comp.model.config.dt_days,
            "framework_time_step_s": st.dt_fw,
            **spec_provenance(spec_path),
        })
        n = st.n
        nc.createDimension("step", None)
        nc.createDimension("unit", n)
        nc.createDimension("var", 3)
        nc.createDimension("snap", None)
        attrs = list(comp.model.config.attributes)
        nc.createDimension("attribute", len(attrs))
        v = nc.createVariable("unit_id", str, ("unit",))
        for i, u in enumerate(comp.units.ids):
            v[i] = str(u)
        for name, vals, units in (("area_km2", comp.units.area_km2, "km2"), ("lat", comp.units.lat, "degrees_north"),
                                  ("lon", comp.units.lon, "degrees_east")):
            x = nc.createVariable(name, "f8", ("unit",))
            x[:] = vals
            x.units = units
        an = nc.createVariable("attribute_name", str, ("attribute",))
        for i, a in enumerate(attrs):
            an[i] = a
        av = nc.createVariable("attributes", "f8", ("unit", "attribute"))
        if attrs:
            av[:] = st._attrs.double().numpy()
        vn = nc.createVariable("var_name", str, ("var",))
        for i, (a, u) in enumerate(zip(("prcp", "tmean", "pet"), ("mm step-1", "degC", "mm step-1"))):
            vn[i] = f"{a} [{u}]"
        nc.createVariable("forcing", "f8", ("step", "unit", "var"))
        t = nc.createVariable("time", "f8", ("step",))
        t.units = f"seconds since {st.start:%Y-%m-%d %H:%M:%S}"
        t.long_name = "start of the model step"
        for k in ("runoff", "et", "swe"):
            x = nc.createVariable(k, "f8", ("step", "unit"))
            x.units = "mm" if k == "swe" else "mm step-1"
        nc.createVariable("state_step", "i8", ("snap",))
        s0 = st.state_arrays()
        for key in STATE_KEYS:
            shape = s0[key].shape[1:]
            dims = ("snap", "unit") + tuple(f"{key}_d{i}" for i in range(len(shape)))
            for d, size in zip(dims[2:], shape):
                nc.createDimension(d, size)
            nc.createVariable(f"state_{key}", "f8", dims)
        self.n_steps = 0
        self.n_snaps = 0
        if st.sub != 0:
            raise ValueError("record: recording must start at a model-step boundary")
        self._snapshot()

    def _snapshot(self) -> None:
        arrays = self.comp.stepper.state_arrays()
        k = self.n_snaps
        self.nc["state_step"][k] = self.n_steps
        for key in STATE_KEYS:
            self.nc[f"state_{key}"][k] = arrays[key]
        self.n_snaps += 1

    def inputs(self, comp) -> None:  # called before the component is advanced; nothing to do per framework step
        pass

    def after_step(self, k: int, t: float) -> None:
        st = self.comp.stepper
        if st.sub != 0 or st.last_forcing is None or st.fw_step == 0:
            return  # no model step completed in this framework step
        i = self.n_steps
        self.nc["forcing"][i] = st.last_forcing.double().numpy()
        self.nc["time"][i] = (st.fw_step - st.k) * st.dt_fw
        out = st.last_out
        for key in ("runoff", "et", "swe"):
            self.nc[key][i] = out[key].double().numpy()
        self.n_steps += 1
        if self.n_steps % self.every == 0:
            self._snapshot()
            self.nc.sync()

    def close(self) -> None:
        self.nc.sync()
        self.nc.close()
