"""Run under ``mpiexec -n N``: a NaN forcing on rank 1 must stop every rank cleanly.

Usage: mpiexec -n N python tests/mpi/fault.py MODE OUT_DIR [TIMEOUT]

MODE
  boundary  the guarded block holds only local work; the gather and the output
            write come after it.  The failure is agreed at the end of the block:
            rank 1 re-raises its ValueError, the other ranks raise RankFailure,
            rank 0 closes its NetCDF file (steps written before the fault stay
            valid), every rank writes OUT_DIR/rank<R>.json and exits with 3.
  blocked   the gather is inside the guarded block, so the healthy ranks are
            blocked in Gatherv when rank 1 fails; rank 1 waits TIMEOUT seconds
            for them, then calls MPI_Abort(7).  The job exits with 7.
  clean     no NaN: the run completes and exits 0 (control case).

The NaN sits in the precipitation of one unit owned by rank 1, at step BAD_STEP.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import bucket_step, make_domain, make_inputs, write_json  # noqa: E402

import numpy as np  # noqa: E402

from coupler import mpi as cm  # noqa: E402
from bmi_dhydro.partition import decompose  # noqa: E402

N_UNITS, N_STEPS, BAD_STEP = 301, 8, 3


def bad_unit(dec) -> str:
    owned = dec.units(1)
    return owned[len(owned) // 2]


def check_forcing(values: np.ndarray, unit_ids: list, step: int) -> None:
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"forcing 'precipitation' is {values[i]} for unit {unit_ids[i]!r} at time step {step}; "
            "expected a finite number of mm per step"
        )


def main(mode: str, out_dir: str, timeout: float) -> int:
    comm = cm.get_comm()
    rank, size = cm.rank_and_size(comm)
    ids, toid, area = make_domain(N_UNITS)
    dec = decompose(ids, size, cost=area, toid=toid)
    forcing, params = make_inputs(N_UNITS, N_STEPS)
    if mode != "clean":
        forcing[ids.index(bad_unit(dec)), BAD_STEP, 0] = np.nan
    local_f = cm.scatter_rows(comm, dec.to_rank_major(forcing) if rank == 0 else None, dec.counts)
    local_p = cm.scatter_rows(comm, dec.to_rank_major(params) if rank == 0 else None, dec.counts)
    my_ids = dec.units(rank)

    nc = None
    if rank == 0 and mode == "boundary":
        import netCDF4

        nc = netCDF4.Dataset(os.path.join(out_dir, "runoff.nc"), "w")
        nc.createDimension("unit", N_UNITS)
        nc.createDimension("time", None)
        v = nc.createVariable("runoff", "f8", ("time", "unit"))
        v.units = "mm"
    report = {"rank": rank, "size": size, "bad_unit": bad_unit(dec), "steps_done": 0}
    guard = cm.FaultGuard(comm, timeout=timeout, exit_code=7)
    state = np.zeros(len(my_ids))
    try:
        for t in range(N_STEPS):
            with guard(f"time step {t}"):
                check_forcing(local_f[:, t, 0], my_ids, t)
                state, q = bucket_step(state, local_f[:, t, :], local_p)
                if mode == "blocked":
                    cm.gather_rows(comm, q, dec.counts)
            if mode != "blocked":
                g = cm.gather_rows(comm, q, dec.counts)
                if nc is not None:
                    nc["runoff"][t, :] = dec.from_rank_major(g)
                    nc.sync()
            report["steps_done"] = t + 1
    except BaseException as err:  # noqa: BLE001
        report["error_type"] = type(err).__name__
        report["error"] = str(err)
        report["failures"] = {str(k): v for k, v in getattr(err, "failures", {}).items()}
        write_json(os.path.join(out_dir, f"rank{rank}.json"), report)
        return 3
    finally:
        if nc is not None:
            nc.close()
        guard.close()
    write_json(os.path.join(out_dir, f"rank{rank}.json"), report)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], float(sys.argv[3]) if len(sys.argv) > 3 else 5.0))
