"""Run a coupling spec (``dhydro run COUPLING.yaml``): the serial or the MPI driver.

* :mod:`coupler.loop` — the components, their connections and one coupler step (:class:`~coupler.loop.Coupler`);
* :mod:`coupler.serial` — the time loop of a one-process run; :mod:`coupler.mpirun` — the same over MPI ranks,
  the units of the output component split across them (:mod:`bmi_dhydro.partition`), the output gathered to
  rank 0 and written in the original unit order;
* :mod:`coupler.writer`, :mod:`coupler.plots`, :mod:`coupler.record` — the output file, its plots and the
  record for retraining, used by the drivers.
"""

from __future__ import annotations

from pathlib import Path

from bmi_dhydro.parallel import get_comm

from .loop import Coupler, load_component_class
from .serial import run_serial
from .spec import load_spec


def run_coupling(spec_path, out=None, progress: bool = True, comm=None, overwrite: bool = False) -> dict:
    """Run a coupling spec.  With ``comm`` of size > 1 (or under mpiexec) the run is split across ranks.
    ``out`` (``dhydro run --out``): the folder of every file the run writes (:func:`redirect_outputs`).
    ``overwrite`` (``dhydro run --overwrite``): replace existing outputs, as the spec's ``outputs.overwrite``."""
    spec, base = load_spec(spec_path)
    if out:
        redirect_outputs(spec, out)
    if overwrite:
        spec.outputs.overwrite = True
    comm = get_comm(comm)
    if comm.Get_size() > 1:
        from .mpirun import run_parallel  # mpi4py only where a run is parallel

        return run_parallel(spec, spec_path, comm, progress)
    return run_serial(spec, spec_path, progress)


def redirect_outputs(spec, out) -> None:
    """``--out`` owns every file a run writes: the output (and its plots, written beside it), the record and the
    weights a connection saves are written into ``out`` under their own file names, never beside the spec."""
    out = Path(out)
    spec.outputs.path = str(out / Path(spec.outputs.path).name)
    if spec.record:
        spec.record.path = str(out / Path(spec.record.path).name)
    for conn in spec.connections:
        if conn.save_weights:
            conn.save_weights = str(out / Path(conn.save_weights).name)


__all__ = ["Coupler", "run_coupling", "redirect_outputs", "run_serial", "load_component_class"]
