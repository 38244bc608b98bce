"""The serial driver of a coupled run: the time loop of one process over all units.

Every coupler step: hot swaps due at its start, :meth:`coupler.loop.Coupler.step`, the output component's
variables handed to the NetCDF writer (:mod:`coupler.writer`; appended every ``flush_every`` steps and synced, so
a crash loses nothing already written) and to the recorder (:mod:`coupler.record`) when the spec has a
``record:`` section; plots at the end (:mod:`coupler.plots`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from .loop import Coupler, check_output_variables, n_steps, unit_ids
from .plots import plot_outputs
from .record import Recorder
from .spec import CouplingSpec, spec_provenance
from .writer import NetcdfAppender


def run_serial(spec: CouplingSpec, spec_path, progress: bool = True, coupler: Coupler | None = None) -> dict:
    cp = coupler or Coupler(spec, progress)
    cp.initialize()
    out_comp = cp.components[spec.outputs.component]
    check_output_variables(out_comp, spec.outputs.component, spec.outputs.variables)
    ids = unit_ids(out_comp) or [str(i) for i in range(out_comp.get_grid_size(out_comp.get_var_grid(spec.outputs.variables[0])))]
    gid = out_comp.get_var_grid(spec.outputs.variables[0])
    lon = out_comp.get_grid_x(gid, np.empty(len(ids)))
    lat = out_comp.get_grid_y(gid, np.empty(len(ids)))
    writer = NetcdfAppender(spec.outputs.path, ids, lon, lat, {v: out_comp.get_var_units(v) for v in spec.outputs.variables},
                            spec.period.start, {"title": f"coupled run {Path(spec_path).name}", **spec_provenance(spec_path)})
    if spec.record:
        cp.recorder = Recorder(spec.record, cp, spec_path)
    dt, n = spec.period.time_step, n_steps(spec.period)
    try:
        for k in tqdm(range(n), desc="coupled run", unit="step", disable=not progress):
            t = k * dt
            cp.apply_hot_swaps(t)
            cp.step(t, dt)
            writer.add(t + dt, {v: out_comp.get_value_ptr(v) for v in spec.outputs.variables})
            if cp.recorder is not None:
                cp.recorder.after_step(k, t + dt)
            if (k + 1) % spec.outputs.flush_every == 0:
                writer.flush()
    finally:
        writer.close()
        if cp.recorder is not None:
            cp.recorder.close()
    pngs = plot_outputs(spec.outputs.path, spec.outputs.variables) if spec.outputs.plots else []
    cp.finalize()
    print(f"wrote {spec.outputs.path}" + (f" and {', '.join(str(p) for p in pngs)}" if pngs else ""))
    return {"netcdf": spec.outputs.path, "plots": pngs, "steps": n}
