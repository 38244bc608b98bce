"""MPI domain decomposition of a coupled run (``mpiexec -n N dhydro run COUPLING.yaml``).

* The units of the output component (a BmiDeltaModel) are split across ranks by
  :func:`bmi_dhydro.partition.partition_units`, balanced by area, keeping connected units together where the
  units carry a ``toid`` network.
* Every rank builds its own components; the split component sees only its units (its config gets a
  ``units.select``), and regrid links keep only that rank's rows of the weights.
* After every step the output variables are gathered to rank 0 with ``Gatherv`` on numpy buffers and written in
  the global unit order, so the file is identical in layout to a serial run's.
* Faults: each step runs inside :class:`coupler.mpi.FaultGuard`; bad input on one rank stops every rank with
  a message naming the rank and the error (the BMI's own messages name the unit), and output already flushed
  stays valid, in the partial file (``out.partial.nc``, marked incomplete; :mod:`bmi_dhydro.safe_io`).
"""

from __future__ import annotations

import logging

import numpy as np
from tqdm import tqdm

from bmi_dhydro.partition import Decomposition, partition_units

from .loop import Coupler, check_output_variables, n_steps
from .mpi import FaultGuard, gather_rows, rank_and_size
from .plots import plot_outputs
from .spec import spec_provenance
from .serial import check_output_targets, report_partial
from .writer import NetcdfAppender, stop_reason

log = logging.getLogger("dhydro.coupler")


def global_units(spec) -> "object":
    """The unit table of the output component's BmiDeltaModel config (ids, areas, lon/lat, toid)."""
    from bmi_dhydro.bmi_config import load_bmi_config
    from bmi_dhydro.units import load_units

    cfg, _ = load_bmi_config(spec.components[spec.outputs.component].config)
    return load_units(cfg.units)


def run_parallel(spec, spec_path, comm, progress: bool = True) -> dict:
    rank, size = rank_and_size(comm)
    name = spec.outputs.component
    table = global_units(spec)
    ids = list(table.ids)
    if size > len(ids):
        raise ValueError(f"mpi: {size} ranks for {len(ids)} units; use at most {len(ids)} ranks")
    toid = dict(zip(ids, table.toid)) if table.toid else None
    parts = partition_units(ids, size, cost=np.asarray(table.area_km2, dtype="float64"), toid=toid)
    owner = {u: r for r, p in enumerate(parts) for u in p}
    dec = Decomposition(ids, np.array([owner[u] for u in ids]), size)
    mine = [ids[i] for i in dec.indices(rank)]
    guard = FaultGuard(comm, timeout=10.0)
    with guard("initialize"):
        if rank == 0:
            check_output_targets(spec)
        cp = Coupler(spec, progress=False, unit_subset={name: mine}, global_ids={name: ids}, rank=rank)
        cp.initialize()
        comp = cp.components[name]
        check_output_variables(comp, name, spec.outputs.variables)
    counts = np.asarray(dec.counts)
    writer = None
    if rank == 0:
        writer = NetcdfAppender(spec.outputs.path, ids, table.lon, table.lat, {v: comp.get_var_units(v) for v in spec.outputs.variables},
                                spec.period.start, {"title": f"coupled run {spec_path} on {size} MPI ranks", **spec_provenance(spec_path)})
    dt, n = spec.period.time_step, n_steps(spec.period)
    done = 0
    try:
        for k in tqdm(range(n), desc=f"coupled run ({size} ranks)", unit="step", disable=not progress or rank != 0):
            t = k * dt
            with guard(f"time step {k}"):
                cp.apply_hot_swaps(t)
                cp.step(t, dt)
            local = np.stack([np.asarray(comp.get_value_ptr(v), dtype="float64") for v in spec.outputs.variables], axis=1)
            gathered = gather_rows(comm, local, counts, root=0)
            if rank == 0:
                full = dec.from_rank_major(gathered)
                writer.add(t + dt, {v: full[:, j] for j, v in enumerate(spec.outputs.variables)})
                if (k + 1) % spec.outputs.flush_every == 0:
                    writer.flush()
            done = k + 1
    except BaseException as exc:
        if writer is not None:
            report_partial([writer.close(ok=False, reason=stop_reason(exc))], done, exc)
        raise
    if writer is not None:
        writer.close(ok=True)
    guard.close()
    pngs = plot_outputs(spec.outputs.path, spec.outputs.variables) if (rank == 0 and spec.outputs.plots) else []
    cp.finalize()
    if rank == 0:
        log.info(f"wrote {spec.outputs.path} ({size} ranks)")
    return {"netcdf": spec.outputs.path, "plots": pngs, "steps": n, "units_on_rank": len(mine)}
