"""Run under ``mpiexec -n N``: decompose, scatter, compute, gather; compare with serial.

Usage: mpiexec -n N python tests/mpi/exchange.py OUT_DIR

Every rank writes OUT_DIR/rank<R>.json with a dict ``check name -> true or
a description of the failure``; the pytest side asserts that every check of
every rank is true.  The script itself exits 0 unless it crashes.
"""

from __future__ import annotations

import os
import sys
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import bucket_model, bucket_step, make_domain, make_inputs, write_json  # noqa: E402

import numpy as np  # noqa: E402

from coupler import mpi as cm  # noqa: E402
from bmi_dhydro.partition import decompose  # noqa: E402

N_UNITS, N_STEPS = 997, 24


def main(out_dir: str) -> None:
    comm = cm.get_comm()
    rank, size = cm.rank_and_size(comm)
    checks: dict = {}

    def check(name, cond, detail=""):
        checks[name] = True if cond else (detail or "failed")

    def expect_raise(name, func, exc_types, must_contain):
        try:
            func()
        except exc_types as err:  # noqa: PERF203
            ok = all(s in str(err) for s in must_contain)
            check(name, ok, f"{type(err).__name__}: {err} (expected to contain {must_contain})")
            return err
        except Exception as err:  # noqa: BLE001
            check(name, False, f"wrong exception {type(err).__name__}: {err}")
            return err
        check(name, False, "no exception raised")
        return None

    try:
        from mpi4py import MPI

        check("is_world", comm is MPI.COMM_WORLD and size > 1, f"{comm!r} size {size}")
        check("env_size", cm.launched_by_mpi() == size, f"launched_by_mpi()={cm.launched_by_mpi()}")

        # Fortran handle -> same communicator
        fcomm = cm.get_comm(fortran_handle=MPI.COMM_WORLD.py2f())
        check("f2py_ident", MPI.Comm.Compare(fcomm, MPI.COMM_WORLD) == MPI.IDENT)

        # ---- the same decomposition on every rank, no communication needed
        ids, toid, area = make_domain(N_UNITS)
        dec = decompose(ids, size, cost=area, toid=toid)
        lo = cm.allreduce(comm, dec.assignment, "min")
        hi = cm.allreduce(comm, dec.assignment, "max")
        check("same_decomposition", np.array_equal(lo, hi) and np.array_equal(lo, dec.assignment))
        check("counts_sum", int(cm.allreduce_sum(comm, np.array([dec.counts[rank]]))[0]) == N_UNITS)

        # ---- scatter forcing and parameters from the root (rank-major order)
        forcing, params = make_inputs(N_UNITS, N_STEPS)
        expected = bucket_model(forcing, params)  # every rank can compute the reference
        send_f = dec.to_rank_major(forcing) if rank == 0 else None
        send_p = dec.to_rank_major(params) if rank == 0 else None
        local_f = cm.scatter_rows(comm, send_f, dec.counts)
        local_p = cm.scatter_rows(comm, send_p, dec.counts)
        check("scatter_3d_exact", np.array_equal(local_f, dec.local_rows(forcing, rank)))
        check("scatter_2d_exact", np.array_equal(local_p, dec.local_rows(params, rank)))
        check("scatter_contiguous", local_f.flags.c_contiguous and local_f.dtype == np.float64)

        # integer and narrow dtypes, 1-D
        ints = np.arange(N_UNITS, dtype=np.int64) * 3 - 1000
        got = cm.scatter_rows(comm, dec.to_rank_major(ints) if rank == 0 else None, dec.counts)
        check("scatter_int64_1d", got.dtype == np.int64 and np.array_equal(got, dec.local_rows(ints, rank)))
        small = (np.arange(N_UNITS * 2, dtype=np.int32) % 251).reshape(N_UNITS, 2).astype(np.uint8)
        got = cm.scatter_rows(comm, dec.to_rank_major(small) if rank == 0 else None, dec.counts)
        check("scatter_uint8", got.dtype == np.uint8 and np.array_equal(got, dec.local_rows(small, rank)))

        # ---- compute step by step on local units, gather each step on root
        state = np.zeros(local_f.shape[0])
        local_out = np.empty((local_f.shape[0], N_STEPS))
        root_rows = []
        bar = cm.rank0_progress(range(N_STEPS), comm, desc="steps", file=sys.stderr, mininterval=0)
        check("progress_rank0_only", bool(getattr(bar, "disable", True)) == (rank != 0))
        guard = cm.FaultGuard(comm, timeout=30)
        for t in bar:
            with guard(f"time step {t}"):
                state, local_out[:, t] = bucket_step(state, local_f[:, t, :], local_p)
            g = cm.gather_rows(comm, local_out[:, t], dec.counts)
            if rank == 0:
                root_rows.append(dec.from_rank_major(g))
            else:
                check("gather_none_off_root", g is None)
        guard.close()
        if rank == 0:
            par = np.column_stack(root_rows)
            check("gather_steps_bitwise", par.tobytes() == expected.tobytes(), "differs from the serial run")
        full = cm.gather_rows(comm, local_out, dec.counts, root=size - 1)
        if rank == size - 1:
            check("gather_nonzero_root", np.array_equal(dec.from_rank_major(full), expected))
        everywhere = cm.allgather_rows(comm, local_out, dec.counts)
        check("allgather_bitwise", dec.from_rank_major(everywhere).tobytes() == expected.tobytes())

        # ---- reductions
        isum = cm.allreduce_sum(comm, np.array([int(dec.counts[rank]), rank], dtype=np.int64))
        check("allreduce_int_exact", isum.tolist() == [N_UNITS, size * (size - 1) // 2], str(isum))
        fsum = cm.allreduce_sum(comm, local_out.sum(axis=0))
        ref = expected.sum(axis=0)
        check("allreduce_float_close", np.allclose(fsum, ref, rtol=1e-12, atol=0), str(np.abs(fsum - ref).max()))
        fmax = cm.allreduce(comm, local_out.max(axis=0), "max")
        check("allreduce_max_exact", np.array_equal(fmax, expected.max(axis=0)))
        check("allreduce_scalar", float(cm.allreduce_sum(comm, 1.5)) == 1.5 * size)

        # ---- broadcast
        cube = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4) / 7
        got = cm.bcast_array(comm, cube if rank == 0 else None)
        check("bcast_float32", got.dtype == np.float32 and got.tobytes() == cube.tobytes())

        # ---- sub-communicator passed by a host
        sub = comm.Split(color=rank % 2, key=rank)
        c2 = cm.get_comm(sub)
        srank, ssize = cm.rank_and_size(c2)
        s_ids = [f"s{i}" for i in range(10 * ssize)]
        sdec = decompose(s_ids, ssize) if ssize > 1 else None
        if sdec is not None:
            vals = np.arange(len(s_ids), dtype=np.float64)
            part = cm.scatter_rows(c2, vals if srank == 0 else None, sdec.counts)
            back = cm.gather_rows(c2, part * 2, sdec.counts)
            check("subcomm_roundtrip", srank != 0 or np.array_equal(back, vals * 2))
        else:
            check("subcomm_serial", cm.is_serial(c2))
        sub.Free()

        # ---- bad input on one rank raises on every rank, no hang
        bad = np.zeros((N_UNITS + 1, 2)) if rank == 0 else None
        err = expect_raise(
            "scatter_bad_rows_all_raise",
            lambda: cm.scatter_rows(comm, bad, dec.counts),
            (ValueError, cm.RankFailure),
            ["scatter_rows", f"{N_UNITS + 1} rows"],
        )
        if rank != 0:
            check("scatter_bad_rows_is_rankfailure", isinstance(err, cm.RankFailure) and 0 in err.failures)
        wrong = local_out[:-1] if rank == 1 else local_out
        err = expect_raise(
            "gather_bad_count_all_raise",
            lambda: cm.gather_rows(comm, wrong, dec.counts),
            (ValueError, cm.RankFailure),
            ["gather_rows", "rank 1 holds"],
        )
        if rank != 1:
            check("gather_bad_count_names_rank1", isinstance(err, cm.RankFailure) and list(err.failures) == [1])
        mixed = local_out.astype(np.float32) if rank == size - 1 else local_out
        expect_raise(
            "gather_dtype_mismatch_all_raise",
            lambda: cm.gather_rows(comm, mixed, dec.counts),
            (ValueError,),
            ["ranks disagree on the dtype"],
        )
        counts_bad = dec.counts.copy()
        if rank == 1:
            counts_bad[0] += 1
            counts_bad[1] -= 1
        expect_raise(
            "scatter_counts_disagree_all_raise",
            lambda: cm.scatter_rows(comm, dec.to_rank_major(forcing) if rank == 0 else None, counts_bad),
            (ValueError, cm.RankFailure),
            ["scatter_rows"],
        )
        # the communicator still works after all of that
        cm.allreduce_sum(comm, np.ones(1))
        check("alive_after_errors", True)
    except Exception:  # noqa: BLE001 - report instead of dying with a hung peer
        checks["crash"] = traceback.format_exc()
    write_json(os.path.join(out_dir, f"rank{rank}.json"), {"rank": rank, "size": size, "checks": checks})


if __name__ == "__main__":
    main(sys.argv[1])
