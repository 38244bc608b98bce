"""The communicator a run uses, and the share of units one rank runs.

The model package needs no more MPI than this: a communicator (given by a host, converted from a Fortran handle,
or found from the launcher) and, with ``mpi.partition: true`` in a BMI config, the units of this rank
(:func:`rank_share`, from :func:`bmi_dhydro.partition.partition_units`).  The coupler's array exchange and fault
handling (``coupler.mpi``) build on it.

mpi4py is imported lazily and only when a run is really parallel, so a serial run never needs it installed (and
never initialises MPI).

``get_comm(comm=None, fortran_handle=None)`` returns

* ``comm`` itself when given (an mpi4py communicator, e.g. a host's
  sub-communicator, or a :class:`SerialComm`);
* ``MPI.Comm.f2py(fortran_handle)`` for a Fortran host's ``INTEGER`` handle
  (``MPI_COMM_WORLD`` from ``use mpi``, or ``comm%MPI_VAL`` from ``mpi_f08``);
* otherwise ``MPI.COMM_WORLD`` when the process was started by an MPI launcher
  (``mpiexec``/``srun``: ``PMI_*``/``PMIX_*``/``OMPI_*`` variables) with more
  than one rank, and the :data:`SERIAL` stand-in in every other case.
  ``DHYDRO_MPI=0`` forces the stand-in, ``DHYDRO_MPI=1`` forces mpi4py.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any

import numpy as np

__all__ = ["SerialComm", "SERIAL", "get_comm", "is_serial", "launched_by_mpi", "rank_and_size", "rank_share"]

# --------------------------------------------------------------------------- #
# serial stand-in
# --------------------------------------------------------------------------- #


class SerialComm:
    """A one-rank communicator for runs without MPI (mpi4py not needed).

    Implements the small subset of the mpi4py ``Comm`` API that the coupler
    uses; the helpers of ``coupler.mpi`` short-cut it without any MPI call.
    """

    rank = 0
    size = 1

    def Get_rank(self) -> int:  # noqa: N802 - mpi4py naming
        return 0

    def Get_size(self) -> int:  # noqa: N802
        return 1

    def Barrier(self) -> None:  # noqa: N802
        return None

    barrier = Barrier

    def _root(self, root: int) -> None:
        if root != 0:
            raise ValueError(f"root: a serial run has only rank 0, got root={root}")

    def bcast(self, obj: Any, root: int = 0) -> Any:
        self._root(root)
        return obj

    def gather(self, obj: Any, root: int = 0) -> list:
        self._root(root)
        return [obj]

    def allgather(self, obj: Any) -> list:
        return [obj]

    def allreduce(self, obj: Any, op: Any = None) -> Any:
        return obj

    def Dup(self) -> "SerialComm":  # noqa: N802
        return self

    def Free(self) -> None:  # noqa: N802
        return None

    def Abort(self, errorcode: int = 1) -> None:  # noqa: N802
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(int(errorcode) or 1)

    def __repr__(self) -> str:
        return "SerialComm(rank=0, size=1)"


SERIAL = SerialComm()



# --------------------------------------------------------------------------- #
# communicator
# --------------------------------------------------------------------------- #

# world size / rank variables set by common launchers (MPICH/Intel hydra: PMI_*, Open MPI: OMPI_*,
# MVAPICH: MV2_*, PMIx launchers such as srun --mpi=pmix: PMIX_RANK, HPE PALS: PALS_RANKID)
_LAUNCHER_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
_LAUNCHER_RANK_VARS = ("PMI_RANK", "PMIX_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK", "PALS_RANKID")


def launched_by_mpi() -> int | None:
    """Number of ranks announced by an MPI launcher, 0 if launched but unknown, None if not launched."""
    for var in _LAUNCHER_SIZE_VARS:
        val = os.environ.get(var)
        if val:
            try:
                return int(val)
            except ValueError:
                return 0
    if any(os.environ.get(v) for v in _LAUNCHER_RANK_VARS):
        return 0
    return None


def _import_mpi(why: str):
    try:
        from mpi4py import MPI  # noqa: PLC0415 - lazy on purpose
    except ImportError as err:
        raise ImportError(
            f"{why} needs mpi4py, which could not be imported ({err}); "
            "install it with `pip install mpi4py mpich` (or `pip install bmi-dhydro[mpi]`)"
        ) from None
    return MPI


def get_comm(comm: Any = None, fortran_handle: int | None = None) -> Any:
    """The communicator to run on (see the module docstring for the rules)."""
    if comm is not None and fortran_handle is not None:
        raise ValueError("get_comm: pass either comm or fortran_handle, not both")
    if fortran_handle is not None:
        if isinstance(fortran_handle, bool) or not isinstance(fortran_handle, (int, np.integer)):
            raise TypeError(
                "fortran_handle: expected the INTEGER handle of a Fortran MPI communicator "
                f"(e.g. MPI_COMM_WORLD, or comm%MPI_VAL with mpi_f08), got {fortran_handle!r}"
            )
        MPI = _import_mpi("fortran_handle")
        c = MPI.Comm.f2py(int(fortran_handle))
        if c == MPI.COMM_NULL:
            raise ValueError(f"fortran_handle: {int(fortran_handle)} is MPI_COMM_NULL; expected a valid communicator")
        return c
    if comm is not None:
        if isinstance(comm, SerialComm):
            return comm
        if not (hasattr(comm, "Get_rank") and hasattr(comm, "Get_size")):
            raise TypeError(f"comm: expected an mpi4py communicator, got {type(comm).__name__}")
        return comm
    force = os.environ.get("DHYDRO_MPI", "").strip().lower()
    if force in ("0", "no", "false", "off"):
        return SERIAL
    launched = launched_by_mpi()
    if force in ("1", "yes", "true", "on") or sys.modules.get("mpi4py.MPI") is not None:
        MPI = _import_mpi("DHYDRO_MPI=1" if force else "this run")
    elif launched is not None and launched != 1:
        MPI = _import_mpi(
            "this process was started by an MPI launcher"
            + (f" with {launched} ranks" if launched else "")
            + "; running it in parallel"
        )
    else:
        return SERIAL
    world = MPI.COMM_WORLD
    return SERIAL if world.Get_size() == 1 else world


def is_serial(comm: Any) -> bool:
    """True for ``None``, the serial stand-in, or any one-rank communicator."""
    return comm is None or isinstance(comm, SerialComm) or comm.Get_size() == 1


def rank_and_size(comm: Any) -> tuple[int, int]:
    if comm is None:
        return 0, 1
    return int(comm.Get_rank()), int(comm.Get_size())


def rank_share(units, comm: Any):
    """``(units of this rank, rank, size)``: the unit table split across the ranks of ``comm`` by area, keeping
    connected units together where the table has a ``toid`` network; the whole table on one rank."""
    from .partition import partition_units

    rank, size = rank_and_size(comm)
    if size == 1:
        return units, rank, size
    toid = dict(zip(units.ids, units.toid)) if units.toid else None
    parts = partition_units(units.ids, size, cost=units.area_km2, toid=toid)
    return units.select(parts[rank]), rank, size
