"""The coupler's step loop: components, connections, and one coupler step.

Per coupler step [t, t + dt) (:meth:`Coupler.step`):

1. every pure source component (one that receives nothing) is sampled at each of its own steps inside the
   interval and advanced; ``time: mean`` averages those samples, ``time: hold`` keeps the latest (a source
   with a longer step than the coupler is held);
2. components that receive inputs run in dependency order: their connections are regridded (ESMF-format
   weights, rows ordered as the destination's units, :class:`RegridLink`), unit-converted
   (:mod:`coupler.unitconv`; mass <-> volume only where a connection sets ``water_density``) and
   ``set_value``-d, constants are set, and the component is advanced with ``update_until(t + dt)``.

The drivers (:mod:`coupler.serial`, :mod:`coupler.mpirun`) own the time loop around it and the output
(:mod:`coupler.writer`, :mod:`coupler.plots`); a recorder (:mod:`coupler.record`) can watch the step.  A rank of
an MPI run gives :class:`Coupler` its units (``unit_subset``) and the global unit order (``global_ids``).
"""

from __future__ import annotations

import importlib
import os
import tempfile
from pathlib import Path

import numpy as np
import yaml

from .spec import CouplingSpec, split_ref
from .unitconv import converter

#: python_type → (module, class) for the components this project ships; any other "package.module.Class"
#: is imported by name (that is how a foreign BMI model is swapped in).
KNOWN_COMPONENTS = {
    "bmi_dhydro.BmiDeltaModel": ("bmi_dhydro.bmi", "BmiDeltaModel"),
    "bmi_dhydro.bmi.BmiDeltaModel": ("bmi_dhydro.bmi", "BmiDeltaModel"),
    "coupler.components.gridded_forcing.GriddedForcingBmi": ("coupler.components.gridded_forcing", "GriddedForcingBmi"),
    "coupler.catchment_forcing.CatchmentForcingBmi": ("coupler.catchment_forcing", "CatchmentForcingBmi"),
}


def load_component_class(python_type: str):
    if python_type in KNOWN_COMPONENTS:
        mod, cls = KNOWN_COMPONENTS[python_type]
    else:
        sep = ":" if ":" in python_type else "."
        if sep not in python_type:
            raise ValueError(f"python_type: expected 'package.module.Class', got {python_type!r}")
        mod, cls = python_type.rsplit(sep, 1)
    try:
        return getattr(importlib.import_module(mod), cls)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"python_type {python_type!r}: cannot import {cls} from {mod}: {exc}") from exc


def unit_ids(comp) -> list[str] | None:
    units = getattr(comp, "units", None)
    return list(units.ids) if units is not None and hasattr(units, "ids") else None


class RegridLink:
    """Weights restricted and ordered to a destination's units; applies on flat source arrays."""

    def __init__(self, weights, dst_ids: list[str] | None, src_size: int, dst_size: int, where: str,
                 global_ids: list[str] | None = None):
        if weights.n_a != src_size:
            raise ValueError(f"{where}: the weights map {weights.n_a} source cells but the source variable has {src_size}")
        wid = getattr(weights, "dst_ids", None)
        m = weights.matrix.tocsr()
        if wid is not None and dst_ids is not None:
            pos = {str(i): k for k, i in enumerate(wid)}
            missing = [u for u in dst_ids if u not in pos]
            if missing:
                raise ValueError(f"{where}: destination units {missing[:5]} are not in the weight file's destinations")
            m = m[[pos[u] for u in dst_ids]]
        elif global_ids is not None and dst_ids is not None and weights.n_b == len(global_ids) and dst_size < weights.n_b:
            pos = {u: k for k, u in enumerate(global_ids)}  # this rank's rows of positional weights
            m = m[[pos[u] for u in dst_ids]]
        elif weights.n_b != dst_size:
            raise ValueError(f"{where}: the weights map to {weights.n_b} destinations but the destination has {dst_size} units")
        self.matrix = m
        self.where = where
        self.unmapped = np.asarray(abs(m).sum(axis=1)).reshape(-1) == 0  # destinations no source cell reaches
        self.used = np.unique(m.tocoo().col)  # source cells these rows read

    def __call__(self, values: np.ndarray) -> np.ndarray:
        v = np.asarray(values, dtype="float64").reshape(-1)
        ok = np.isfinite(v)
        if ok[self.used].all():  # cells outside the rows' reach (e.g. beyond a rank's read window) do not matter
            out = self.matrix @ (v if ok.all() else np.where(ok, v, 0.0))
            out[self.unmapped] = np.nan
            return out
        # missing source values: renormalise over the valid ones
        num = self.matrix @ np.where(ok, v, 0.0)
        den = self.matrix @ ok.astype("float64")
        full = self.matrix @ np.ones_like(v)
        with np.errstate(invalid="ignore", divide="ignore"):
            out = np.where(den > 0, num * full / den, np.nan)
        out[self.unmapped] = np.nan
        return out


def build_weights(conn, where: str, progress: bool, save: bool = True):
    from .regrid import generate_weights, read_weights

    if conn.weights:
        return read_weights(conn.weights)
    src_kwargs = {"var": conn.source_grid_var} if conn.source_grid_var else None
    dst_kwargs = {"id_field": conn.destination_id_field} if conn.destination_id_field else None
    w = generate_weights(conn.source_grid, conn.destination_polygons, conn.method, norm_type=conn.norm_type,
                         unmapped=conn.unmapped, progress=progress, src_kwargs=src_kwargs, dst_kwargs=dst_kwargs)
    if conn.save_weights and save:
        Path(conn.save_weights).parent.mkdir(parents=True, exist_ok=True)
        w.to_netcdf(conn.save_weights)
    return w


class Coupler:
    def __init__(self, spec: CouplingSpec, progress: bool = True, unit_subset: dict | None = None, workdir=None,
                 global_ids: dict | None = None, rank: int = 0):
        self.spec = spec
        self.rank = rank  # only rank 0 writes shared files (generated weights)
        self.global_ids = global_ids or {}
        self.progress = progress
        self.unit_subset = unit_subset or {}
        self.workdir = Path(workdir) if workdir else None
        self.components: dict = {}

    # -- set-up ------------------------------------------------------------------------------------------------------
    def _config_for(self, name: str, path: str) -> str:
        """The component's config, or for a unit subset (MPI rank) a copy that selects those units."""
        if name not in self.unit_subset:
            return path
        raw = yaml.safe_load(Path(path).read_text())
        base = Path(path).parent
        for sec, key in (("model", "checkpoint"), ("units", "table"), ("units", "hydrofabric"), ("units", "attributes_table"),
                         ("warmup", "restart_file"), ("warmup", "forcing_file")):
            if isinstance(raw.get(sec), dict) and raw[sec].get(key):
                p = Path(raw[sec][key])
                raw[sec][key] = str(p if p.is_absolute() else (base / p).resolve())
        raw.setdefault("units", {})["select"] = list(self.unit_subset[name])
        d = self.workdir or Path(tempfile.mkdtemp(prefix="dhydro-"))
        d.mkdir(parents=True, exist_ok=True)
        out = d / f"{name}.{os.getpid()}.yaml"
        out.write_text(yaml.safe_dump(raw))
        return str(out)

    def initialize(self) -> None:
        spec = self.spec
        for name, c in spec.components.items():
            cls = load_component_class(c.python_type)
            comp = cls()
            comp.initialize(self._config_for(name, c.config))
            self.components[name] = comp
        # which components receive inputs; dependency order
        receivers = {split_ref(c.destination)[0] for c in spec.connections} | {split_ref(c.destination)[0] for c in spec.constants}
        self.sources = [n for n in spec.components if n not in receivers]
        deps = {n: {split_ref(c.source)[0] for c in spec.connections if split_ref(c.destination)[0] == n} for n in receivers}
        order, done = [], set(self.sources)
        while len(order) < len(receivers):
            ready = [n for n in receivers if n not in order and deps[n] <= done | set(order)]
            if not ready:
                raise ValueError(f"connections: a cycle among components {sorted(set(receivers) - set(order))}")
            order.extend(sorted(ready))
        self.order = order
        self.links = []
        for i, conn in enumerate(spec.connections):
            sc, sv = split_ref(conn.source)
            dc, dv = split_ref(conn.destination)
            src, dst = self.components[sc], self.components[dc]
            if sv not in src.get_output_var_names():
                raise ValueError(f"connections[{i}].source: {sc} has no output {sv!r}; outputs: {list(src.get_output_var_names())}")
            if dv not in dst.get_input_var_names():
                raise ValueError(f"connections[{i}].destination: {dc} has no input {dv!r}; inputs: {list(dst.get_input_var_names())}")
            n_src = src.get_var_nbytes(sv) // src.get_var_itemsize(sv)
            n_dst = dst.get_var_nbytes(dv) // dst.get_var_itemsize(dv)
            regrid = None
            if conn.weights or conn.method:
                w = build_weights(conn, f"connections[{i}]", self.progress, save=self.rank == 0)
                if conn.weights and hasattr(src, "get_regrid_grid"):
                    # a weight file made elsewhere must match the source grid (size, order, centres)
                    w.check_grids(src=src.get_regrid_grid(src.get_var_grid(sv)))
                regrid = RegridLink(w, unit_ids(dst), n_src, n_dst, f"connections[{i}]", self.global_ids.get(dc))
            elif unit_ids(src) is not None and unit_ids(dst) is not None:
                pos = {u: k for k, u in enumerate(unit_ids(src))}
                missing = [u for u in unit_ids(dst) if u not in pos]
                if missing:
                    raise ValueError(f"connections[{i}]: units {missing[:5]} of {dc} have no data in {sc}")
                idx = np.array([pos[u] for u in unit_ids(dst)])
                regrid = lambda v, idx=idx: np.asarray(v).reshape(-1)[idx]  # noqa: E731  match by unit id
            elif n_src != n_dst:
                raise ValueError(f"connections[{i}]: {conn.source} has {n_src} values and {conn.destination} {n_dst}; "
                                 "give weights or a method to regrid")
            conv = converter(conn.units or src.get_var_units(sv), dst.get_var_units(dv),
                             water_density=conn.water_density, what=f"connections[{i}] {conn.source} -> {conn.destination}",
                             where=f"connections[{i}]")
            self.links.append((conn, sc, sv, dc, dv, regrid, conv))
            if self.unit_subset and isinstance(regrid, RegridLink) and hasattr(src, "set_read_window"):
                # this rank holds some units only: read just the box of source cells its weight rows touch
                shape = np.empty(2, dtype=int)
                src.get_grid_shape(src.get_var_grid(sv), shape)
                if regrid.used.size:
                    iy, ix = np.divmod(regrid.used, shape[1])
                    src.set_read_window(sv, (int(iy.min()), int(iy.max()) + 1), (int(ix.min()), int(ix.max()) + 1))
        self.constants = []
        for j, c in enumerate(spec.constants):
            dc, dv = split_ref(c.destination)
            dst = self.components[dc]
            if dv not in dst.get_input_var_names():
                raise ValueError(f"constants: {dc} has no input {dv!r}; inputs: {list(dst.get_input_var_names())}")
            n = dst.get_var_nbytes(dv) // dst.get_var_itemsize(dv)
            conv = converter(c.units, dst.get_var_units(dv), water_density=c.water_density,
                             what=f"constants[{j}] {c.destination}", where=f"constants[{j}]")
            self.constants.append((dc, dv, np.full(n, float(conv(c.value)))))
        # align source clocks with the period start when they know their own origin
        for n in self.sources:
            comp = self.components[n]
            origin = getattr(comp, "time_origin", None)
            if origin is not None:
                import pandas as pd

                offset = (pd.Timestamp(spec.period.start) - pd.Timestamp(origin)).total_seconds()
                if offset < 0:
                    raise ValueError(f"component {n}: its data start at {origin}, after the period start {spec.period.start}")
                if offset > 0:
                    comp.update_until(comp.get_start_time() + offset)
        self.src_t0 = {n: self.components[n].get_current_time() for n in self.sources}
        self._check_sources_cover_the_period()
        self.last_sample: dict = {}

    def _check_sources_cover_the_period(self) -> None:
        """A source whose data end before the period does (and whose connections do not hold past the data) is
        an error before the run starts, not part-way through it."""
        spec = self.spec
        total = (spec.period.end - spec.period.start).total_seconds()
        for n in self.sources:
            conns = [c for c, sc, *_ in self.links if sc == n]
            comp = self.components[n]
            if not conns or any(c.beyond_data == "hold" for c in conns) or getattr(comp, "time_origin", None) is None:
                continue
            last = comp.data_end_time() if hasattr(comp, "data_end_time") else comp.get_end_time()
            need = self.src_t0[n] + total - comp.get_time_step()  # the last sample the run takes
            if need > last + 1e-6:
                import pandas as pd

                origin = pd.Timestamp(comp.time_origin)
                raise ValueError(f"component {n}: its last record is at {origin + pd.Timedelta(seconds=last)}, but the "
                                 f"period needs records up to {origin + pd.Timedelta(seconds=need)} (period end "
                                 f"{spec.period.end}); shorten the period, or set beyond_data: hold on its connections")

    # -- stepping ----------------------------------------------------------------------------------------------------
    def _sample_sources(self, t: float, dt: float) -> dict:
        needed: dict[str, set] = {}
        hold_ok: dict[str, bool] = {}
        for conn, sc, sv, *_ in self.links:
            if sc in self.sources:
                needed.setdefault(sc, set()).add(sv)
                hold_ok[sc] = hold_ok.get(sc, True) and conn.beyond_data == "hold"
        samples = {}
        for sc, names in needed.items():
            comp = self.components[sc]
            t_end = self.src_t0[sc] + t + dt
            acc = {v: [] for v in names}
            while comp.get_current_time() < t_end - 1e-6:
                for v in names:
                    acc[v].append(np.array(comp.get_value_ptr(v), dtype="float64").reshape(-1))
                if hold_ok[sc] and comp.get_current_time() + comp.get_time_step() > comp.get_end_time() + 1e-6:
                    break  # past the end of the source's data: its last value is held (beyond_data: hold)
                comp.update()
            for v in names:
                if acc[v]:
                    self.last_sample[(sc, v, "mean")] = np.mean(acc[v], axis=0)
                    self.last_sample[(sc, v, "hold")] = acc[v][-1]
                if (sc, v, "mean") not in self.last_sample:
                    raise RuntimeError(f"source {sc}.{v}: no value available at coupler time {t} s")
                samples[(sc, v)] = {"mean": self.last_sample[(sc, v, "mean")], "hold": self.last_sample[(sc, v, "hold")]}
        return samples

    def step(self, t: float, dt: float) -> None:
        samples = self._sample_sources(t, dt)
        for name in self.order:
            comp = self.components[name]
            for conn, sc, sv, dc, dv, regrid, conv in self.links:
                if dc != name:
                    continue
                if sc in self.sources:
                    vals = samples[(sc, sv)][conn.time]
                else:
                    vals = np.array(self.components[sc].get_value_ptr(sv), dtype="float64").reshape(-1)
                if self.recorder is not None and name == self.recorder.component:
                    self.recorder.source_input(regrid, vals)  # the source field before regridding (record.py)
                if regrid is not None:
                    vals = regrid(vals)
                comp.set_value(dv, np.ascontiguousarray(conv(vals), dtype="float64"))
            for dc, dv, vals in self.constants:
                if dc == name:
                    comp.set_value(dv, vals)
            if self.recorder is not None and name == self.recorder.component:
                self.recorder.inputs(comp)
            comp.update_until(t + dt)

    recorder = None

    def hot_swap(self, name: str, checkpoint) -> None:
        """Load a new checkpoint into component ``name`` at the current step boundary, keeping its states."""
        comp = self.components[name]
        if not hasattr(comp, "load_checkpoint"):
            raise ValueError(f"hot swap: component {name} cannot load checkpoints")
        comp.load_checkpoint(checkpoint)

    def apply_hot_swaps(self, t: float) -> None:
        for h in self.spec.hot_swaps:
            if abs((h.time - self.spec.period.start).total_seconds() - t) < 1e-6:
                self.hot_swap(h.component, h.checkpoint)

    def finalize(self) -> None:
        for comp in self.components.values():
            comp.finalize()


def check_output_variables(comp, name: str, variables) -> None:
    """The spec's output variables must be outputs of the output component."""
    for v in variables:
        if v not in comp.get_output_var_names():
            raise ValueError(f"outputs.variables: {name} has no output {v!r}; outputs: {list(comp.get_output_var_names())}")


def n_steps(period) -> int:
    """Coupler steps in the spec's period."""
    return int(round((period.end - period.start).total_seconds() / period.time_step))
