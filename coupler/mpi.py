"""MPI plumbing for domain-decomposed runs: communicator, array exchange, faults.

mpi4py is imported lazily and only when a run is really parallel, so a serial
run never needs it installed (and never initialises MPI).

Communicator
------------
``get_comm``, ``rank_and_size``, ``is_serial``, ``SerialComm`` and ``SERIAL``
come from :mod:`bmi_dhydro.parallel` (below the coupler, since a BMI instance
given a host communicator needs them too) and are re-exported here; see that
module for the rules by which ``get_comm`` picks a communicator.

Array exchange
--------------
All helpers move numpy arrays with mpi4py's buffer methods (``Scatterv``,
``Gatherv``, ``Allgatherv``, ``Allreduce``, ``Bcast``) using a contiguous row
datatype, so counts and displacements are in *rows* (units), not elements,
and large arrays do not overflow MPI's int counts.  Supported dtypes: float64,
float32 and the signed/unsigned integers of 1..8 bytes.  Rows travel in
rank-major order (rank 0's rows, then rank 1's, ...); see
:class:`bmi_dhydro.partition.Decomposition` for the permutation to the global
order.  Before moving data every helper agrees on shapes, dtypes and counts
with one small collective, so bad input on one rank raises on *every* rank
(with the offending rank's message) instead of hanging or corrupting memory.

Faults
------
:class:`FaultGuard` turns an exception on any rank into a clean stop of every
rank: the failing rank prints ``dhydro: rank R of N failed in <where>: <error>``
to stderr, then all ranks agree on the failure at the end of the guarded block
(on a private duplicate communicator) and raise; if the other ranks do not
reach the end of the block within ``timeout`` seconds (e.g. they are blocked in
a collective the failing rank will never join), the failing rank calls
``MPI_Abort`` and the launcher ends the job.  Nothing hangs.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import time
import traceback
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

# the communicator lives below the coupler (the BMI needs it too); it is part of this module's interface
from bmi_dhydro.parallel import SERIAL, SerialComm, get_comm, is_serial, launched_by_mpi, rank_and_size

__all__ = [
    "SerialComm",
    "SERIAL",
    "RankFailure",
    "get_comm",
    "is_serial",
    "launched_by_mpi",
    "rank_and_size",
    "scatter_rows",
    "gather_rows",
    "allgather_rows",
    "bcast_array",
    "allreduce",
    "allreduce_sum",
    "FaultGuard",
    "guarded",
    "rank0_progress",
    "rank0_print",
]

_MAXDIM = 8  # trailing dimensions supported by the helpers (arrays up to 9-D)
_MSG_BYTES = 1024  # per-rank error message size exchanged on failure
_PREFIX = "dhydro"


# --------------------------------------------------------------------------- #
# faults
# --------------------------------------------------------------------------- #


class RankFailure(RuntimeError):
    """Raised on the ranks that did not fail, after another rank failed.

    ``failures`` maps each failing rank to its error message.
    """

    def __init__(self, failures: dict[int, str], where: str | None = None):
        self.failures = dict(failures)
        self.where = where
        ranks = ", ".join(str(r) for r in sorted(self.failures))
        first = self.failures[min(self.failures)] if self.failures else ""
        loc = f" in {where}" if where else ""
        super().__init__(f"rank(s) {ranks} failed{loc}; stopping this rank too. First error: {first}")


# --------------------------------------------------------------------------- #
# dtype and shape bookkeeping
# --------------------------------------------------------------------------- #

_CODES = ["f8", "f4", "i8", "i4", "i2", "i1", "u8", "u4", "u2", "u1"]
_CODE_OF = {np.dtype(c).str[1:]: k + 1 for k, c in enumerate(_CODES)}  # 0 = "no array"


def _dtype_code(dtype: np.dtype, name: str) -> int:
    dt = np.dtype(dtype)
    code = _CODE_OF.get(dt.str[1:]) if dt.kind in "fiu" else None
    if code is None:
        raise TypeError(
            f"{name}: dtype {dt} cannot be exchanged; expected float64, float32 or an integer dtype"
        )
    return code


def _dtype_of(code: int) -> np.dtype:
    return np.dtype(_CODES[code - 1])


def _as_wire(array: Any, name: str) -> np.ndarray:
    arr = np.asarray(array)
    _dtype_code(arr.dtype, name)
    if arr.dtype.byteorder not in ("=", "|"):
        arr = arr.astype(arr.dtype.newbyteorder("="))
    if not arr.flags.c_contiguous:  # (np.ascontiguousarray would turn 0-d into 1-d)
        arr = arr.copy(order="C")
    return arr


def _check_counts(counts: Any, size: int, name: str) -> np.ndarray:
    try:
        c = np.asarray(counts)
    except Exception:  # noqa: BLE001
        raise TypeError(f"{name}: counts must be one non-negative integer per rank") from None
    if c.shape != (size,):
        raise ValueError(f"{name}: counts must have one entry per rank ({size}), got shape {c.shape}")
    if c.size and (c.dtype.kind not in "iu" or (c < 0).any()):
        raise ValueError(f"{name}: counts must be non-negative integers, got {c.tolist()}")
    return c.astype(np.int64)


def _mpi():
    from mpi4py import MPI  # noqa: PLC0415 - only reached with a real communicator

    return MPI


def _basetype(MPI, dtype: np.dtype):
    char = np.dtype(dtype).char
    fromcode = getattr(MPI.Datatype, "fromcode", None)
    if fromcode is not None:
        return fromcode(char)
    return MPI._typedict[char]  # mpi4py < 4


class _RowType:
    """A committed contiguous datatype of ``rowsize`` elements (freed on exit)."""

    def __init__(self, MPI, dtype: np.dtype, rowsize: int):
        self.base = _basetype(MPI, dtype)
        self.type = self.base.Create_contiguous(max(int(rowsize), 1)).Commit()

    def __enter__(self):
        return self.type

    def __exit__(self, *exc):
        self.type.Free()
        return False


def _encode(msg: str) -> np.ndarray:
    raw = msg.encode("utf-8", "replace")[: _MSG_BYTES]
    buf = np.zeros(_MSG_BYTES, dtype=np.uint8)
    buf[: len(raw)] = np.frombuffer(raw, dtype=np.uint8)
    return buf


def _decode(buf: np.ndarray) -> str:
    raw = bytes(buf.tobytes()).rstrip(b"\x00")
    return raw.decode("utf-8", "replace")


def _raise_failures(comm: Any, error: str | None, what: str) -> None:
    """Collective (all ranks, after they learned that some rank failed): raise everywhere.

    The failing rank prints its message to stderr and raises ``ValueError``;
    the others raise :class:`RankFailure` carrying every failing rank's
    message.  Both are marked as already agreed, so an enclosing
    :class:`FaultGuard` lets them through without another round.
    """
    rank, size = rank_and_size(comm)
    everyone = np.zeros((size, _MSG_BYTES), dtype=np.uint8)
    comm.Allgather(_encode(error or ""), everyone)
    failures = {r: _decode(everyone[r]) for r in range(size) if everyone[r].any()}
    if error:
        _stderr(f"{_PREFIX}: rank {rank} of {size} failed in {what}: {error}")
        exc: Exception = ValueError(error)
    else:
        exc = RankFailure(failures, where=what)
    exc._dhydro_agreed = True
    raise exc


def _agree(comm: Any, error: str | None, what: str) -> None:
    """Collective: raise on every rank if ``error`` is set on any rank."""
    MPI = _mpi()
    flag = np.array([1 if error else 0], dtype=np.int32)
    anyfail = np.zeros(1, dtype=np.int32)
    comm.Allreduce(flag, anyfail, op=MPI.MAX)
    if anyfail[0]:
        _raise_failures(comm, error, what)


def _spec(arr: np.ndarray | None) -> np.ndarray:
    """[dtype code, ndim, trailing dims padded with -1]; code 0 when no array."""
    out = np.full(2 + _MAXDIM, -1, dtype=np.int64)
    if arr is None:
        out[0] = 0
        return out
    out[0] = _dtype_code(arr.dtype, "array")
    out[1] = arr.ndim
    trailing = arr.shape[1:]
    out[2: 2 + len(trailing)] = trailing
    return out


def _shape_from_spec(spec: np.ndarray) -> tuple[np.dtype, tuple[int, ...]]:
    ndim = int(spec[1])
    return _dtype_of(int(spec[0])), tuple(int(x) for x in spec[2: 2 + ndim - 1])


def _check_rows_array(array: Any, name: str) -> np.ndarray:
    arr = _as_wire(array, name)
    if arr.ndim == 0:
        raise ValueError(f"{name}: expected an array with one row per unit, got a scalar")
    if arr.ndim - 1 > _MAXDIM:
        raise ValueError(f"{name}: at most {_MAXDIM + 1} dimensions are supported, got {arr.ndim}")
    return arr


def _agree_specs(comm: Any, spec: np.ndarray, error: str | None, name: str) -> None:
    """Collective: no rank has an error and all ranks have the same ``spec``.

    Raises on every rank otherwise (one Allreduce when all is well).
    """
    MPI = _mpi()
    both = np.concatenate(([1 if error else 0], spec, -spec)).astype(np.int64)
    out = np.empty_like(both)
    comm.Allreduce(both, out, op=MPI.MAX)
    if out[0]:
        _raise_failures(comm, error, name)
    k = spec.size
    mx, mn = out[1: 1 + k], -out[1 + k:]
    if not np.array_equal(mx, mn):
        # every rank sees the same max/min, so every rank raises the same error
        what = "dtype" if mx[0] != mn[0] else "array shape or counts"
        err = ValueError(
            f"{name}: ranks disagree on the {what}; this is rank {comm.Get_rank()} with "
            f"{_describe_spec(spec)}"
        )
        err._dhydro_agreed = True
        _stderr(f"{_PREFIX}: {err}")
        raise err


def _describe_spec(spec: np.ndarray) -> str:
    code, ndim = int(spec[0]), int(spec[1])
    if code <= 0:
        return "no valid array"
    head = spec[: 2 + _MAXDIM]
    trailing = tuple(int(x) for x in head[2: 2 + max(ndim - 1, 0)])
    text = f"dtype {_dtype_of(code)}, trailing shape {trailing}"
    if spec.size > 2 + _MAXDIM:
        text += f", counts {spec[2 + _MAXDIM:].tolist()}"
    return text


# --------------------------------------------------------------------------- #
# exchange helpers
# --------------------------------------------------------------------------- #


def scatter_rows(comm: Any, array: Any, counts: Sequence[int] | np.ndarray, root: int = 0) -> np.ndarray:
    """Split the rows of ``array`` (given on ``root`` only) among the ranks.

    ``array`` has ``sum(counts)`` rows in rank-major order; rank ``r`` receives
    rows ``displs[r] : displs[r] + counts[r]`` as a new C-contiguous array.
    Other ranks pass ``None`` (anything they pass is ignored).
    """
    rank, size = rank_and_size(comm)
    name = "scatter_rows"
    if is_serial(comm):
        c = _check_counts(counts, 1, name)
        _check_root(root, 1, name)
        arr = _check_rows_array(array, f"{name}: array") if array is not None else None
        if arr is None:
            raise ValueError(f"{name}: the root rank must pass the array to scatter, got None")
        if arr.shape[0] != int(c[0]):
            raise ValueError(f"{name}: array has {arr.shape[0]} rows but counts sum to {int(c[0])}")
        return arr.copy()
    _check_root(root, size, name)
    MPI = _mpi()
    error = None
    c = None
    try:
        c = _check_counts(counts, size, name)
    except (TypeError, ValueError) as err:
        error = str(err)
    # root announces dtype, trailing shape and its counts
    head = np.zeros(1 + 2 + _MAXDIM + size, dtype=np.int64)
    sendarr = None
    if rank == root:
        root_error = error
        if root_error is None:
            try:
                if array is None:
                    raise ValueError(f"{name}: the root rank must pass the array to scatter, got None")
                sendarr = _check_rows_array(array, f"{name}: array")
                if sendarr.shape[0] != int(c.sum()):
                    raise ValueError(
                        f"{name}: array has {sendarr.shape[0]} rows but counts sum to {int(c.sum())} "
                        f"(counts={c.tolist()})"
                    )
            except (TypeError, ValueError) as err:
                root_error = str(err)
        head[0] = 0 if root_error else 1
        if not root_error:
            head[1: 3 + _MAXDIM] = _spec(sendarr)
            head[3 + _MAXDIM:] = c
        error = root_error
    comm.Bcast(head, root=root)
    if rank != root and error is None and head[0] == 1 and not np.array_equal(head[3 + _MAXDIM:], c):
        error = (
            f"{name}: counts on rank {rank} {c.tolist()} differ from the root's "
            f"{head[3 + _MAXDIM:].tolist()}"
        )
    _agree(comm, error, name)
    dtype, trailing = _shape_from_spec(head[1: 3 + _MAXDIM])
    rowsize = int(np.prod(trailing, dtype=np.int64)) if trailing else 1
    out = np.empty((int(c[rank]),) + trailing, dtype=dtype)
    if rowsize == 0:
        return out
    displs = np.concatenate(([0], np.cumsum(c)[:-1]))
    with _RowType(MPI, dtype, rowsize) as row:
        send = [sendarr, (c.tolist(), displs.tolist()), row] if rank == root else None
        comm.Scatterv(send, [out, int(c[rank]), row], root=root)
    return out


def _check_root(root: Any, size: int, name: str) -> None:
    if isinstance(root, bool) or not isinstance(root, (int, np.integer)) or not 0 <= int(root) < size:
        raise ValueError(f"{name}: root must be a rank 0..{size - 1}, got {root!r}")


def _gather_common(comm: Any, local: Any, counts: Any, name: str):
    rank, size = rank_and_size(comm)
    error = None
    arr = None
    c = None
    try:
        c = _check_counts(counts, size, name)
        arr = _check_rows_array(local, f"{name}: local")
        if arr.shape[0] != int(c[rank]):
            raise ValueError(
                f"{name}: rank {rank} holds {arr.shape[0]} rows but counts[{rank}] = {int(c[rank])}"
            )
    except (TypeError, ValueError) as err:
        error = err
    return arr, c, error


def gather_rows(comm: Any, local: Any, counts: Sequence[int] | np.ndarray, root: int = 0) -> np.ndarray | None:
    """Collect every rank's rows on ``root`` in rank-major order (``None`` elsewhere)."""
    name = "gather_rows"
    if is_serial(comm):
        _check_root(root, 1, name)
        arr, c, error = _gather_common(comm, local, counts, name)
        if error is not None:
            raise error
        return arr.copy()
    rank, size = rank_and_size(comm)
    _check_root(root, size, name)
    arr, c, exc = _gather_common(comm, local, counts, name)
    error = None if exc is None else str(exc)
    spec = _spec(arr) if error is None else np.full(2 + _MAXDIM, -1, dtype=np.int64)
    counts_spec = c if c is not None and c.shape == (size,) else np.full(size, -1, dtype=np.int64)
    _agree_specs(comm, np.concatenate((spec, counts_spec)), error, name)
    MPI = _mpi()
    trailing = arr.shape[1:]
    rowsize = int(np.prod(trailing, dtype=np.int64)) if trailing else 1
    out = np.empty((int(c.sum()),) + trailing, dtype=arr.dtype) if rank == root else None
    if rowsize == 0:
        return out
    displs = np.concatenate(([0], np.cumsum(c)[:-1]))
    with _RowType(MPI, arr.dtype, rowsize) as row:
        recv = [out, (c.tolist(), displs.tolist()), row] if rank == root else None
        comm.Gatherv([arr, int(c[rank]), row], recv, root=root)
    return out


def allgather_rows(comm: Any, local: Any, counts: Sequence[int] | np.ndarray) -> np.ndarray:
    """Like :func:`gather_rows`, but every rank receives the full array."""
    name = "allgather_rows"
    if is_serial(comm):
        arr, c, error = _gather_common(comm, local, counts, name)
        if error is not None:
            raise error
        return arr.copy()
    rank, size = rank_and_size(comm)
    arr, c, exc = _gather_common(comm, local, counts, name)
    error = None if exc is None else str(exc)
    spec = _spec(arr) if error is None else np.full(2 + _MAXDIM, -1, dtype=np.int64)
    counts_spec = c if c is not None and c.shape == (size,) else np.full(size, -1, dtype=np.int64)
    _agree_specs(comm, np.concatenate((spec, counts_spec)), error, name)
    MPI = _mpi()
    trailing = arr.shape[1:]
    rowsize = int(np.prod(trailing, dtype=np.int64)) if trailing else 1
    out = np.empty((int(c.sum()),) + trailing, dtype=arr.dtype)
    if rowsize == 0:
        return out
    displs = np.concatenate(([0], np.cumsum(c)[:-1]))
    with _RowType(MPI, arr.dtype, rowsize) as row:
        comm.Allgatherv([arr, int(c[rank]), row], [out, (c.tolist(), displs.tolist()), row])
    return out


def bcast_array(comm: Any, array: Any, root: int = 0) -> np.ndarray:
    """Send ``array`` from ``root`` to every rank (others pass ``None``); returns a new array."""
    name = "bcast_array"
    if is_serial(comm):
        _check_root(root, 1, name)
        if array is None:
            raise ValueError(f"{name}: the root rank must pass the array to broadcast, got None")
        return _as_wire(array, f"{name}: array").copy()
    rank, size = rank_and_size(comm)
    _check_root(root, size, name)
    error = None
    head = np.zeros(2 + 1 + _MAXDIM + 1, dtype=np.int64)  # ok, code, ndim, dims (all, not trailing)
    arr = None
    if rank == root:
        try:
            if array is None:
                raise ValueError(f"{name}: the root rank must pass the array to broadcast, got None")
            arr = _as_wire(array, f"{name}: array")
            if arr.ndim > _MAXDIM + 1:
                raise ValueError(f"{name}: at most {_MAXDIM + 1} dimensions are supported, got {arr.ndim}")
            head[0] = 1
            head[1] = _dtype_code(arr.dtype, name)
            head[2] = arr.ndim
            head[3: 3 + arr.ndim] = arr.shape
        except (TypeError, ValueError) as err:
            error = str(err)
    comm.Bcast(head, root=root)
    _agree(comm, error, name)
    dtype = _dtype_of(int(head[1]))
    shape = tuple(int(x) for x in head[3: 3 + int(head[2])])
    out = arr.copy() if rank == root else np.empty(shape, dtype=dtype)
    if out.size:
        comm.Bcast([out, _basetype(_mpi(), dtype)], root=root)
    return out


def allreduce(comm: Any, array: Any, op: str = "sum") -> np.ndarray:
    """Element-wise reduction over ranks (``op``: "sum", "max", "min", "prod").

    Returns a new array with the same shape and dtype on every rank.  Integer
    sums are exact; float sums may differ in the last bits between rank counts
    (the reduction order depends on the MPI library), so for results that must
    equal a serial run bit for bit, gather the terms and sum them on one rank.
    """
    name = "allreduce"
    ops = ("sum", "max", "min", "prod")
    if op not in ops:
        raise ValueError(f"{name}: op must be one of {ops}, got {op!r}")
    if is_serial(comm):
        return _as_wire(array, f"{name}: array").copy()
    error = None
    arr = None
    try:
        arr = _as_wire(array, f"{name}: array")
        if arr.ndim > _MAXDIM:
            raise ValueError(f"{name}: at most {_MAXDIM} dimensions are supported, got {arr.ndim}")
    except (TypeError, ValueError) as err:
        error = str(err)
    # same layout as for row arrays, with the full shape in place of the trailing shape
    spec = _spec(arr.reshape((1,) + arr.shape)) if error is None else np.full(2 + _MAXDIM, -1, dtype=np.int64)
    _agree_specs(comm, spec, error, name)
    MPI = _mpi()
    out = np.empty_like(arr)
    if arr.size:
        mpi_op = {"sum": MPI.SUM, "max": MPI.MAX, "min": MPI.MIN, "prod": MPI.PROD}[op]
        base = _basetype(MPI, arr.dtype)
        comm.Allreduce([arr, base], [out, base], op=mpi_op)
    return out


def allreduce_sum(comm: Any, array: Any) -> np.ndarray:
    """``allreduce(comm, array, "sum")``."""
    return allreduce(comm, array, "sum")


# --------------------------------------------------------------------------- #
# faults
# --------------------------------------------------------------------------- #


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class FaultGuard:
    """Stop every rank cleanly when any rank raises inside a guarded block.

    Create it once on every rank (collective: it duplicates the communicator),
    then guard each step::

        guard = FaultGuard(comm, timeout=10)
        for step in range(n):
            with guard(f"time step {step}"):
                ...                       # may raise on some rank
        guard.close()

    or guard a whole block with ``with FaultGuard(comm) as guard: ...``.

    On the rank that raised, the message ``dhydro: rank R of N failed in
    <where>: <Type>: <message>`` goes to stderr first.  When every rank reaches
    the end of the block, the failure is agreed collectively: the failing rank
    re-raises its exception and every other rank raises :class:`RankFailure`
    (which carries all failing ranks' messages), so callers can close files
    and exit non-zero.  If the other ranks do not arrive within ``timeout``
    seconds, the failing rank calls ``MPI_Abort(exit_code)``.  On a serial
    communicator the guard does nothing but let the exception through.

    For the clean path, keep collectives (gathers, reductions) *after* the
    guarded block of a step, not inside it: a rank that raised never enters
    them, so ranks blocked inside one can only be ended by the abort, and an
    abort kills the writer before it can close its output file.  Output that
    was ``sync()``-ed before the fault survives either way.

    The agreement uses one small non-blocking ``Iallreduce`` per block on a
    private duplicate of the communicator, so it never matches the caller's
    own collectives.
    """

    def __init__(self, comm: Any = None, *, timeout: float = 10.0, exit_code: int = 1, where: str | None = None):
        self.comm = get_comm(comm)
        try:
            self.timeout = float(timeout)
        except (TypeError, ValueError):
            raise TypeError(f"timeout: expected seconds as a number, got {timeout!r}") from None
        if not self.timeout >= 0:
            raise ValueError(f"timeout: expected seconds >= 0, got {timeout!r}")
        if isinstance(exit_code, bool) or not isinstance(exit_code, int) or exit_code == 0:
            raise ValueError(f"exit_code: expected a non-zero integer, got {exit_code!r}")
        self.exit_code = exit_code
        self.where = where
        self.serial = is_serial(self.comm)
        self.rank, self.size = rank_and_size(self.comm)
        self._ecomm = None if self.serial else self.comm.Dup()

    # -- use -------------------------------------------------------------- #
    @contextlib.contextmanager
    def step(self, where: str | None = None) -> Iterator["FaultGuard"]:
        """Guard one block (e.g. one time step); see the class docstring."""
        try:
            yield self
        except BaseException as exc:  # noqa: BLE001 - any failure must reach the other ranks
            if getattr(exc, "_dhydro_agreed", False) or self.serial:
                raise
            self._fail(exc, where)
            raise  # pragma: no cover - _fail always raises or aborts
        else:
            if not self.serial:
                self._succeed(where)

    __call__ = step

    def __enter__(self) -> "FaultGuard":
        self._block = self.step(self.where)
        self._block.__enter__()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            return bool(self._block.__exit__(exc_type, exc, tb))
        finally:
            self.close()

    def close(self) -> None:
        """Free the private communicator (not collective)."""
        if self._ecomm is not None:
            with contextlib.suppress(Exception):
                self._ecomm.Free()
            self._ecomm = None

    # -- internals ---------------------------------------------------------- #
    def _flags(self, failed: bool):
        MPI = _mpi()
        flags = np.zeros(self.size, dtype=np.int32)
        flags[self.rank] = 1 if failed else 0
        out = np.zeros(self.size, dtype=np.int32)
        if self._ecomm is None:
            raise RuntimeError("FaultGuard: used after close()")
        req = self._ecomm.Iallreduce(flags, out, op=MPI.MAX)
        return req, out

    def _collect(self, message: str, out: np.ndarray) -> dict[int, str]:
        everyone = np.zeros((self.size, _MSG_BYTES), dtype=np.uint8)
        self._ecomm.Allgather(_encode(message), everyone)
        return {r: _decode(everyone[r]) for r in np.flatnonzero(out).tolist()}

    def _succeed(self, where: str | None) -> None:
        req, out = self._flags(False)
        req.Wait()
        if not out.any():
            return
        failures = self._collect("", out)
        if self.rank == 0:
            _stderr(
                f"{_PREFIX}: stopping all {self.size} ranks because rank(s) "
                f"{', '.join(map(str, sorted(failures)))} failed" + (f" in {where}" if where else "")
            )
        err = RankFailure(failures, where)
        err._dhydro_agreed = True
        raise err

    def _fail(self, exc: BaseException, where: str | None) -> None:
        loc = f" in {where}" if where else ""
        message = f"rank {self.rank} of {self.size} failed{loc}: {_describe(exc)}"
        _stderr(f"{_PREFIX}: {message}")
        if os.environ.get("DHYDRO_MPI_TRACEBACK"):
            _stderr("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
        req, out = self._flags(True)
        deadline = time.monotonic() + self.timeout
        pause = 1e-4
        while not req.Test():
            if time.monotonic() >= deadline:
                _stderr(
                    f"{_PREFIX}: rank {self.rank}: the other ranks did not reach the error check within "
                    f"{self.timeout:g} s (blocked in a collective?); calling MPI_Abort({self.exit_code})"
                )
                _abort(self.comm, self.exit_code)
            time.sleep(pause)
            pause = min(pause * 2, 0.01)
        self._collect(message, out)
        try:
            exc._dhydro_agreed = True
        except Exception:  # noqa: BLE001 - some exception types refuse attributes
            pass
        raise exc


def _abort(comm: Any, exit_code: int) -> None:
    """``MPI_Abort`` that never returns to the caller.

    Some MPI libraries (MPICH 4/5 with hydra among them) return from
    ``MPI_Abort`` and leave the killing to the process manager; running on
    would let this rank touch files or MPI again, so wait to be killed and
    exit hard if that does not happen.
    """
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    with contextlib.suppress(BaseException):
        comm.Abort(exit_code)
    with contextlib.suppress(BaseException):
        time.sleep(5.0)
    os._exit(exit_code)


def _stderr(text: str) -> None:
    with contextlib.suppress(Exception):
        sys.stderr.write(text.rstrip("\n") + "\n")
        sys.stderr.flush()


def guarded(comm: Any = None, *, timeout: float = 10.0, exit_code: int = 1) -> Callable:
    """Decorator: run the function inside a :class:`FaultGuard` (collective call)."""

    def wrap(func: Callable) -> Callable:
        @functools.wraps(func)
        def run(*args: Any, **kwargs: Any) -> Any:
            with FaultGuard(comm, timeout=timeout, exit_code=exit_code, where=func.__name__):
                return func(*args, **kwargs)

        return run

    return wrap


# --------------------------------------------------------------------------- #
# progress and printing on rank 0 only
# --------------------------------------------------------------------------- #


def rank0_progress(iterable: Iterable | None = None, comm: Any = None, **kwargs: Any) -> Iterable:
    """A tqdm progress bar shown on rank 0 only (disabled elsewhere).

    Falls back to the plain iterable when tqdm is not installed.  Keyword
    arguments go to ``tqdm`` (``total``, ``desc``, ``unit`` ...).
    """
    rank, _ = rank_and_size(comm)
    disable = bool(kwargs.pop("disable", False)) or rank != 0
    try:
        from tqdm import tqdm  # noqa: PLC0415
    except ImportError:
        return iterable if iterable is not None else range(int(kwargs.get("total") or 0))
    return tqdm(iterable, disable=disable, **kwargs)


def rank0_print(comm: Any, *args: Any, **kwargs: Any) -> None:
    """``print`` on rank 0 only (flushed)."""
    rank, _ = rank_and_size(comm)
    if rank == 0:
        kwargs.setdefault("flush", True)
        print(*args, **kwargs)
