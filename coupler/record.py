"""Recording what a BmiDeltaModel saw during a coupled run, for offline gradient feedback (``dhydro retrain``).

The record (NetCDF, appended and synced as the run goes) holds, per model step (the model's native step, after
time-step aggregation and regridding):

* ``forcing(step, unit, var)``: precipitation (mm per model step), mean air temperature (°C) and PET (mm per
  model step) — exactly what the model was given;
* ``runoff``, ``et``, ``swe`` (step, unit): the model outputs (mm summed over the model step / mm at its end);
* ``time(step)``: the end of each model step and ``time_bnds(step, nv)`` its start and end (the time convention of
  every output, :mod:`bmi_dhydro.cf`); the dimensions ``step`` and ``unit`` are named ``time`` and ``unit_id``;
* model states at chunk boundaries, every ``state_every`` model steps (and at step 0): ``state_step(snap)`` is the
  index of the model step the snapshot precedes, ``state_<name>(snap, unit, ...)`` the stores, LSTM state and
  routing buffer;
* per unit: ``unit_id``, ``area_km2``, ``lat``, ``lon`` and ``attributes(unit, attribute)``;
* provenance attributes: checkpoint path and sha256, the coupling spec (text and sha256), creation time.

Like the run's output, the record grows under its partial name (``record.partial.nc``, marked incomplete) and moves
into place only when the run ends well (:mod:`bmi_dhydro.safe_io`).

When the component's precipitation input arrives through a regrid connection (:class:`coupler.loop.RegridLink`),
the record also keeps what is needed to learn a forcing correction per source cell (``dhydro retrain
--forcing-correction``):

* ``source_precip(step, cell)``: the source field summed over each model step's framework steps, in mm per model
  step (the connection's unit converter to mm s-1, times the framework step), for the ``cell`` s the weight rows
  read; NaN where a source value was missing on any framework step of that model step;
* ``source_cell_index(cell)``: the flat (row-major) index of each such cell in the source grid, and the attributes
  ``source_n_cells`` (cells in the source grid), ``source_grid_shape`` (when the source reports one) and
  ``source_variable``;
* ``regrid_row``, ``regrid_col``, ``regrid_S`` (``regrid_nnz``): the weight rows actually used, ``row`` indexing
  ``unit`` and ``col`` indexing ``cell``, so that ``forcing[..., 0] == W @ source_precip`` (with the same
  renormalisation over valid cells as the coupler where source values are missing); the largest deviation seen
  during the run is stored as the attribute ``source_precip_max_abs_mismatch`` (mm per model step).
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from bmi_dhydro import physics
from bmi_dhydro.cf import CONVENTIONS, TIME_COMMENT, history_line, time_attrs
from bmi_dhydro.safe_io import COMPLETE, STATUS_ATTR, partial_path

from .loop import RegridLink
from .spec import spec_provenance

STATE_KEYS = tuple(f"hbv_{n}" for n in physics.STATE_NAMES) + ("lstm_h", "lstm_c", "route_buffer")
PRECIP = "atmosphere_water__liquid_equivalent_precipitation_rate"


def regridded(matrix, p: np.ndarray) -> np.ndarray:
    """``matrix @ p`` as the coupler applies it (:class:`coupler.loop.RegridLink`): over the valid (finite) source
    values, renormalised by the weight they cover; NaN for destinations no valid cell reaches."""
    p = np.asarray(p, dtype="float64")
    ok = np.isfinite(p)
    num = matrix @ np.where(ok, p, 0.0)
    if ok.all():
        out = num
        den = full = matrix @ np.ones_like(p)
    else:
        den = matrix @ ok.astype("float64")
        full = matrix @ np.ones_like(p)
        with np.errstate(invalid="ignore", divide="ignore"):
            out = np.where(den > 0, num * full / np.where(den > 0, den, 1.0), np.nan)
    return np.where(full != 0, out, np.nan)


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
        self.path, self.partial = path, partial_path(path)
        self.nc = nc = netCDF4.Dataset(self.partial, "w")
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
            "Conventions": CONVENTIONS, "history": history_line(), "time_convention": TIME_COMMENT,
            STATUS_ATTR: "incomplete: the run is going on, or stopped without closing this file (killed)",
        })
        n = st.n
        nc.createDimension("time", None)
        nc.createDimension("unit_id", n)
        nc.createDimension("nv", 2)
        nc.createDimension("var", 3)
        nc.createDimension("snap", None)
        attrs = list(comp.model.config.attributes)
        nc.createDimension("attribute", len(attrs))
        v = nc.createVariable("unit_id", str, ("unit_id",))
        v.cf_role = "timeseries_id"
        v.long_name = "unit (basin / catchment) identifier"
        for i, u in enumerate(comp.units.ids):
            v[i] = str(u)
        for name, vals, units, std in (("area_km2", comp.units.area_km2, "km2", None),
                                       ("lat", comp.units.lat, "degrees_north", "latitude"),
                                       ("lon", comp.units.lon, "degrees_east", "longitude")):
            x = nc.createVariable(name, "f8", ("unit_id",))
            x[:] = vals
            x.units = units
            x.long_name = {"area_km2": "unit area", "lat": "latitude of the unit", "lon": "longitude of the unit"}[name]
            if std:
                x.standard_name = std
        an = nc.createVariable("attribute_name", str, ("attribute",))
        an.long_name = "name of the static attribute"
        for i, a in enumerate(attrs):
            an[i] = a
        av = nc.createVariable("attributes", "f8", ("unit_id", "attribute"))
        av.long_name = "static attributes of the unit (the model's inputs; units as in the training data)"
        if attrs:
            av[:] = st._attrs.double().numpy()
        vn = nc.createVariable("var_name", str, ("var",))
        vn.long_name = "the model forcing along var, with its units"
        for i, (a, u) in enumerate(zip(("prcp", "tmean", "pet"), ("mm per model step", "degC", "mm per model step"))):
            vn[i] = f"{a} [{u}]"
        fv = nc.createVariable("forcing", "f8", ("time", "unit_id", "var"))
        fv.long_name = "model forcing: precipitation and PET summed over the model step (mm), mean temperature (degC)"
        fv.comment = "mixed units along var: see var_name"
        t = nc.createVariable("time", "f8", ("time",))
        t.units = f"seconds since {st.start:%Y-%m-%d %H:%M:%S}"
        t.setncatts(time_attrs())
        nc.createVariable("time_bnds", "f8", ("time", "nv"))
        for k, ln in (("runoff", "routed runoff depth accumulated over the model step"),
                      ("et", "actual evapotranspiration accumulated over the model step"),
                      ("swe", "snow water equivalent at the end of the model step")):
            x = nc.createVariable(k, "f8", ("time", "unit_id"))
            x.units = "mm"
            x.long_name = ln
            x.cell_methods = "time: point" if k == "swe" else "time: sum"
            x.coordinates = "lat lon"
        ss = nc.createVariable("state_step", "i4", ("snap",))  # CF-1.8 has no 64-bit integers
        ss.long_name = "index of the model step each state snapshot precedes"
        s0 = st.state_arrays()
        for key in STATE_KEYS:
            shape = s0[key].shape[1:]
            dims = ("snap", "unit_id") + tuple(f"{key}_d{i}" for i in range(len(shape)))
            for d, size in zip(dims[2:], shape):
                nc.createDimension(d, size)
            sv = nc.createVariable(f"state_{key}", "f8", dims)
            sv.long_name = f"model state {key} before the model step state_step"
            sv.units = "mm" if key.startswith("hbv_") or key == "route_buffer" else "1"
        self.n_steps = 0
        self.n_snaps = 0
        self._src = None
        self._setup_source(coupler)
        if st.sub != 0:
            raise ValueError("record: recording must start at a model-step boundary")
        self._snapshot()

    def _setup_source(self, coupler) -> None:
        """If the precipitation input is regridded, record the source field and the weight rows too."""
        for conn, sc, sv, dc, dv, regrid, conv in getattr(coupler, "links", []):
            if dc == self.component and dv == PRECIP and isinstance(regrid, RegridLink):
                break
        else:
            return  # precipitation comes from a constant, a unit-matched source or nowhere: nothing more to record
        st = self.comp.stepper
        dt_c = float(coupler.spec.period.time_step)
        ratio = st.dt_model / dt_c
        if ratio < 1 - 1e-9 or abs(ratio - round(ratio)) > 1e-9:
            raise ValueError(f"record: to record the source precipitation of {conn.source}, the coupler time step "
                             f"(period.time_step) must divide the model step of {st.dt_model:g} s; got {dt_c:g} s")
        used = np.asarray(regrid.used, dtype="int64")
        m = regrid.matrix.tocsr()[:, used].tocoo()
        self._src = {"link": regrid, "conv": conv, "used": used, "matrix": m.tocsr(), "pending": None}
        self._acc = np.zeros(used.size)
        self._fw_before = st.fw_step
        self._mismatch = 0.0
        nc = self.nc
        nc.createDimension("cell", used.size)
        nc.createDimension("regrid_nnz", m.nnz)
        v = nc.createVariable("source_cell_index", "i4", ("cell",))
        v[:] = used
        v.long_name = "flat (row-major) index of the cell in the source grid"
        for name, vals, dtype in (("regrid_row", m.row, "i4"), ("regrid_col", m.col, "i4"), ("regrid_S", m.data, "f8")):
            x = nc.createVariable(name, dtype, ("regrid_nnz",))
            x[:] = vals
        nc["regrid_row"].long_name = "index along unit_id"
        nc["regrid_col"].long_name = "index along cell"
        nc["regrid_S"].long_name = "regridding weight"
        nc["regrid_S"].units = "1"
        sp = nc.createVariable("source_precip", "f8", ("time", "cell"))
        sp.units = "mm"
        sp.cell_methods = "time: sum"
        sp.long_name = "source precipitation summed over the model step, before regridding"
        src = coupler.components[sc]
        shape = None
        try:
            g = src.get_var_grid(sv)
            if src.get_grid_rank(g) == 2:
                shape = [int(x) for x in src.get_grid_shape(g, np.empty(2, dtype=int))]
        except Exception:  # noqa: BLE001  a source without grid shape information: no map later, nothing else lost
            shape = None
        nc.setncatts({"source_variable": conn.source, "source_n_cells": int(regrid.matrix.shape[1])})
        if shape and shape[0] * shape[1] == regrid.matrix.shape[1]:
            nc.setncattr("source_grid_shape", np.array(shape, dtype="int64"))

    def source_input(self, link, values) -> None:
        """The coupler's hook: the source values of a connection into this component, before regridding."""
        if self._src is None or link is not self._src["link"]:
            return
        v = np.asarray(values, dtype="float64").reshape(-1)[self._src["used"]]
        self._src["pending"] = np.asarray(self._src["conv"](v), dtype="float64")  # mm s-1, as the model receives it

    def _snapshot(self) -> None:
        arrays = self.comp.stepper.state_arrays()
        k = self.n_snaps
        self.nc["state_step"][k] = self.n_steps
        for key in STATE_KEYS:
            self.nc[f"state_{key}"][k] = arrays[key]
        self.n_snaps += 1

    def inputs(self, comp) -> None:  # called right before the component is advanced
        self._fw_before = comp.stepper.fw_step

    def after_step(self, k: int, t: float) -> None:
        st = self.comp.stepper
        if self._src is not None:
            n_fw = st.fw_step - self._fw_before  # framework steps the component took with the pending input
            if n_fw and self._src["pending"] is None:
                raise RuntimeError(f"record: {self.component} advanced without its source precipitation being seen")
            if n_fw:
                self._acc = self._acc + self._src["pending"] * st.dt_fw * n_fw  # the stepper's rate × dt
            self._fw_before = st.fw_step
        if st.sub != 0 or st.last_forcing is None or st.fw_step == 0:
            return  # no model step completed in this framework step
        i = self.n_steps
        self.nc["forcing"][i] = np.asarray(st.last_forcing, dtype="float64")  # numpy (the stepper's model forcing)
        if self._src is not None:
            self.nc["source_precip"][i] = self._acc
            p_model = np.asarray(st.last_forcing[:, 0], dtype="float64")
            p_w = regridded(self._src["matrix"], self._acc)
            ok = np.isfinite(p_w)
            if ok.any():
                self._mismatch = max(self._mismatch, float(np.abs(p_w[ok] - p_model[ok]).max()))
            self._acc = np.zeros_like(self._acc)
        t0 = (st.fw_step - st.k) * st.dt_fw  # the start of the model step; stamped with its end (bmi_dhydro.cf)
        self.nc["time"][i] = t0 + st.dt_model
        self.nc["time_bnds"][i] = [t0, t0 + st.dt_model]
        out = st.last_out
        for key in ("runoff", "et", "swe"):
            self.nc[key][i] = np.asarray(out[key], dtype="float64")
        self.n_steps += 1
        if self.n_steps % self.every == 0:
            self._snapshot()
            self.nc.sync()

    def close(self, ok: bool = True, reason: str = "") -> Path:
        """Close; ``ok``: the run ended well and the record moves to its final path, else it stays the partial
        file, marked incomplete.  Returns where it is."""
        if self.nc is None:
            return self.path if ok else self.partial
        try:
            if self._src is not None:
                self.nc.setncattr("source_precip_max_abs_mismatch", self._mismatch)
            self.nc.setncattr(STATUS_ATTR, COMPLETE if ok else
                              f"incomplete: the run stopped early ({reason or 'unknown reason'}); "
                              f"{self.n_steps} model steps recorded")
            self.nc.sync()
        finally:
            self.nc.close()
            self.nc = None
        if ok:
            os.replace(self.partial, self.path)
            return self.path
        return self.partial
