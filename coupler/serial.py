"""The serial driver of a coupled run: the time loop of one process over all units.

Every coupler step: hot swaps due at its start, :meth:`coupler.loop.Coupler.step`, the output component's
variables handed to the NetCDF writer (:mod:`coupler.writer`; appended every ``flush_every`` steps and synced, so
a crash loses nothing already written) and to the recorder (:mod:`coupler.record`) when the spec has a
``record:`` section; plots at the end (:mod:`coupler.plots`).

Outputs are safe (:mod:`bmi_dhydro.safe_io`): an existing output (or record) is refused before anything runs
unless ``outputs.overwrite``; the files grow under their partial names and move into place only when the run
ends well; a run that stops early leaves its flushed steps in the partial files, marked incomplete.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from tqdm import tqdm

from bmi_dhydro.safe_io import check_target

from .loop import Coupler, check_output_variables, n_steps, unit_ids
from .plots import plot_outputs
from .record import Recorder
from .spec import CouplingSpec, spec_provenance
from .writer import NetcdfAppender, stop_reason

log = logging.getLogger("dhydro.coupler")


def check_output_targets(spec: CouplingSpec) -> None:
    """Before a run starts: its output (and record) paths are files it may write (see :mod:`bmi_dhydro.safe_io`)."""
    check_target(spec.outputs.path, spec.outputs.overwrite, "outputs.path")
    if spec.record:
        check_target(spec.record.path, spec.outputs.overwrite, "record.path")


def report_partial(where: list, n_done: int, exc: BaseException) -> None:
    """Say where the flushed output of a run that stopped early is."""
    if where:
        log.warning(f"the run stopped after {n_done} coupler step(s) ({stop_reason(exc)}); what was flushed is kept, "
                    f"marked incomplete, in {', '.join(str(w) for w in where)}")


def run_serial(spec: CouplingSpec, spec_path, progress: bool = True, coupler: Coupler | None = None) -> dict:
    check_output_targets(spec)
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
        try:
            cp.recorder = Recorder(spec.record, cp, spec_path)
        except BaseException as exc:
            writer.close(ok=False, reason=stop_reason(exc))
            raise
    dt, n = spec.period.time_step, n_steps(spec.period)
    done = 0
    try:
        for k in tqdm(range(n), desc="coupled run", unit="step", disable=not progress):
            t = k * dt
            cp.apply_hot_swaps(t)
            cp.step(t, dt)
            writer.add(t + dt, {v: out_comp.get_value_ptr(v) for v in spec.outputs.variables})
            if cp.recorder is not None:
                cp.recorder.after_step(k, t + dt)
            done = k + 1
            if (k + 1) % spec.outputs.flush_every == 0:
                writer.flush()
    except BaseException as exc:
        where = [writer.close(ok=False, reason=stop_reason(exc))]
        if cp.recorder is not None:
            where.append(cp.recorder.close(ok=False, reason=stop_reason(exc)))
        report_partial(where, done, exc)
        raise
    writer.close(ok=True)
    if cp.recorder is not None:
        cp.recorder.close(ok=True)
    pngs = plot_outputs(spec.outputs.path, spec.outputs.variables) if spec.outputs.plots else []
    cp.finalize()
    log.info(f"wrote {spec.outputs.path}" + (f" and {', '.join(str(p) for p in pngs)}" if pngs else ""))
    return {"netcdf": spec.outputs.path, "plots": pngs, "steps": n}
