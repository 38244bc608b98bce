"""Weight generation on MPI ranks: ``mpiexec -n N dhydro regrid weights SRC DST -o w.nc``.

Each rank computes the weights of its part of the destination cells against all source cells; rank 0 gathers
the parts and writes **one** weight file, equal to the serial one byte for byte (same arrays, same attributes).

How the result stays the serial one
-----------------------------------
* The active destination cells (flattened index ``0 .. n_b - 1``, so polygons, meshes and 2-D grids alike) are
  split into ``N`` parts of about equal size along a Z-order curve through their positions
  (:func:`destination_parts`), so that a part is compact in space: the source cells a rank intersects stay
  local, whatever order the hydrofabric's ids have. (``order="index"``: contiguous index blocks instead.)
* Every rank reads both cell sets and runs the native generator with ``dst_rows=<its part>``: what depends on
  all cells (the source window, the equal-area CRS, the spherical charts) is computed as in a serial run; only
  the intersection (or interpolation) loop is restricted to the rank's rows. The cell areas on the sphere (the
  largest of the shared work for densified polygons) are computed in even blocks, one per rank, and shared
  (``allgather``): a cell's area depends on its own vertices only. A weight depends on its own
  source/destination pair only, so every row is the serial row.
* Rank 0 gathers ``row, col, S`` (and the intersection areas ``A`` of conservative weights) and each rank's
  ``frac_b``, and sorts the entries by (row, col), the serial order (:func:`merge_parts`). The per-source fields
  are rebuilt from all rows as the serial generator builds them: conservative ``frac_a = sum_j A_ij / area_a_i``
  (summed in the same order, so bit for bit); the non-conservative ``frac_a`` is the source mask. Rank 0 then
  assembles the :class:`~coupler.regrid.weights.Weights` with the serial code (coordinates, vertices, ids,
  attributes, the unmapped check) and writes it (``.part`` file, then renamed).
* ``nearest_dtos`` maps each *source* to its nearest destination, so it does not split by destination rows:
  rank 0 computes it alone (it is a k-d tree query, cheap). The ESMPy backend is refused under MPI (ESMPy
  decomposes across ranks itself; run ``ESMF_RegridWeightGen`` under ``mpiexec`` for that).

Faults
------
Every step runs inside a :class:`coupler.mpi.FaultGuard`: an error on any rank (an existing output file
without ``overwrite``, an unreadable input, a failure in the generator, destinations left unmapped with
``unmapped="error"``) stops every rank with one message naming the rank (``dhydro: rank R of N failed in
<step>: <error>``) and a non-zero exit, never a hang: when the other ranks are still busy, the failing rank
calls ``MPI_Abort`` after ``timeout`` seconds.
"""
from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from bmi_dhydro._extras import require

from .api import _as_cells, _assemble, _check_options, _compute, esmpy_available, resolve_geometry
from .crs import REGRIDDING, RegridError
from .grids import Polygons
from .weights import Weights, check_output_path

shapely = require("shapely", "geo", REGRIDDING)

__all__ = ["generate_weights_mpi", "destination_parts", "merge_parts"]

log = logging.getLogger("dhydro.regrid")


def _rough_centres(cells: Any) -> tuple[np.ndarray, np.ndarray]:
    """Cell positions in the cells' own CRS, only to order them in space (bounding-box middles of polygons)."""
    if isinstance(cells, Polygons):
        b = shapely.bounds(cells.geoms)
        x, y = (b[:, 0] + b[:, 2]) / 2.0, (b[:, 1] + b[:, 3]) / 2.0
    else:
        x, y = cells.centers()
    x, y = np.asarray(x, dtype=np.float64).reshape(-1), np.asarray(y, dtype=np.float64).reshape(-1)
    return np.where(np.isfinite(x), x, 0.0), np.where(np.isfinite(y), y, 0.0)


def _zorder(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Morton (Z-order) keys of points: 16 bits per axis over their bounding box."""
    def spread(v: np.ndarray) -> np.ndarray:
        v = v.astype(np.uint64) & np.uint64(0xFFFF)
        for shift, magic in ((8, 0x00FF00FF), (4, 0x0F0F0F0F), (2, 0x33333333), (1, 0x55555555)):
            v = (v | (v << np.uint64(shift))) & np.uint64(magic)
        return v

    def quant(v: np.ndarray) -> np.ndarray:
        lo, span = float(v.min()), float(np.ptp(v))
        return np.zeros(v.size) if span <= 0 else np.floor((v - lo) / span * 65535.0)

    return spread(quant(x)) | (spread(quant(y)) << np.uint64(1))


def destination_parts(cells: Any, n: int, order: str = "space") -> list[np.ndarray]:
    """Split the active destination cells into ``n`` disjoint parts of about equal size (sorted index arrays).

    ``order="space"`` (default): consecutive stretches of a Z-order curve through the cell positions, so that each
    part is compact in space and a rank's source window and chart polygons stay local (hydrofabric ids need not
    follow geography); ``order="index"``: contiguous stretches of the cell index. Masked cells belong to no part.
    """
    if n < 1:
        raise ValueError(f"destination_parts: n must be >= 1, got {n}")
    if order not in ("space", "index"):
        raise ValueError(f"destination_parts: order must be 'space' or 'index', got {order!r}")
    act = np.nonzero(np.asarray(cells.mask, dtype=bool).reshape(-1))[0]
    if order == "space" and act.size > n:
        x, y = _rough_centres(cells)
        act = act[np.argsort(_zorder(x[act], y[act]), kind="stable")]
    cuts = (np.arange(n + 1) * act.size) // n
    return [np.sort(act[cuts[r]:cuts[r + 1]]) for r in range(n)]


def _even_blocks(size: int, n: int) -> list[tuple[int, int]]:
    cuts = (np.arange(n + 1) * size) // n
    return [(int(cuts[r]), int(cuts[r + 1])) for r in range(n)]


def _local_part(res: dict, rows: np.ndarray, conserve: bool) -> dict:
    """What a rank sends: its rows' weights and their frac_b."""
    row = np.asarray(res["row"], dtype=np.int64)
    if row.size and not np.isin(row, rows).all():
        raise RegridError("internal: the generator returned rows outside this rank's part")
    part = {"row": row, "col": np.asarray(res["col"], dtype=np.int64), "S": np.asarray(res["S"], dtype=np.float64),
            "frac_b": np.asarray(res["frac_b"], dtype=np.float64)[rows]}
    if conserve:
        part["A"] = np.asarray(res["A"], dtype=np.float64)
    return part


def generate_weights_mpi(src: Any, dst: Any, method: str = "conserve", *, comm: Any = None,
                         output: str | os.PathLike | None = None, overwrite: bool = False, timeout: float = 10.0,
                         order: str = "space",
                         norm_type: str = "dstarea", backend: str = "native", unmapped: str = "error",
                         area_crs: Any = "auto", densify_deg: float | None = 0.05, geometry: str = "auto",
                         densify_m: float = 20.0, extrap_method: str = "none", pole_method: str = "all",
                         progress: bool = True, src_kwargs: dict | None = None,
                         dst_kwargs: dict | None = None) -> Weights | None:
    """:func:`~coupler.regrid.generate_weights` on the ranks of ``comm`` (collective; see the module docstring).

    ``comm``: an mpi4py communicator, or ``None`` for :func:`coupler.mpi.get_comm`'s choice (``COMM_WORLD`` under
    ``mpiexec`` with more than one rank). On one rank, or without MPI, this is exactly ``generate_weights``
    (and ``output`` is written the same way). The other keywords are ``generate_weights``'s; ``src``/``dst`` may
    be paths (read on every rank) or cell sets (the same on every rank).

    ``output``: the weight file to write on rank 0 (rank 0 checks it before any work, and every rank stops when it
    exists and ``overwrite`` is not set). ``timeout``: seconds a failing rank waits for the others before
    ``MPI_Abort`` (:class:`coupler.mpi.FaultGuard`). ``order``: how the destination cells are split
    (:func:`destination_parts`). Returns the :class:`Weights` on rank 0, ``None`` elsewhere.
    """
    from coupler.mpi import FaultGuard, allgather_rows, gather_rows, get_comm, is_serial, rank_and_size

    comm = get_comm(comm)
    opts = dict(norm_type=norm_type, backend=backend, area_crs=area_crs, densify_deg=densify_deg, geometry=geometry,
                densify_m=densify_m, extrap_method=extrap_method, pole_method=pole_method)
    if is_serial(comm):
        from .api import generate_weights

        out = _check_output(output, overwrite)
        w = generate_weights(src, dst, method, unmapped=unmapped, progress=progress, src_kwargs=src_kwargs,
                             dst_kwargs=dst_kwargs, **opts)
        if out is not None:
            w.to_netcdf(out)
        return w
    rank, size = rank_and_size(comm)
    guard = FaultGuard(comm, timeout=timeout)
    try:
        out = None
        with guard("regrid weights: checking the options and the output"):
            if rank == 0:  # once (the same on every rank), so that a bad option gives one message
                _check_options(method, norm_type, backend, unmapped, geometry, extrap_method, pole_method,
                               densify_m, densify_deg)
                if backend == "esmpy" or (backend == "auto" and esmpy_available()):
                    raise RegridError("the ESMPy backend does not run under dhydro's MPI split (ESMPy distributes "
                                      "itself across ranks); use --backend native, or ESMF_RegridWeightGen under "
                                      "mpiexec")
                out = _check_output(output, overwrite)  # rank 0 writes; checked before any work
                for which, obj in (("src", src), ("dst", dst)):
                    if isinstance(obj, (str, os.PathLike)) and not Path(obj).exists():
                        raise RegridError(f"{which} file {str(obj)!r} does not exist")
        with guard("regrid weights: reading the cells"):
            with warnings.catch_warnings():
                if rank != 0:
                    warnings.simplefilter("ignore")  # the same reading warnings once, from rank 0
                src_c = _as_cells(src, "src", src_kwargs)
                dst_c = _as_cells(dst, "dst", dst_kwargs)
            if rank == 0:
                log.info(f"src: {src_c.describe()}")
                log.info(f"dst: {dst_c.describe()}")
            if method == "nearest_dtos":  # source-driven: not split by destination rows (see the docstring)
                parts = destination_parts(dst_c, 1) + [np.zeros(0, dtype=np.int64)] * (size - 1)
            else:
                parts = destination_parts(dst_c, size, order=order)
        rows = parts[rank]
        conserve = method == "conserve"
        sphere = None
        if conserve and backend != "esmpy" and resolve_geometry(src_c, dst_c, method, geometry, area_crs) == "sphere":
            sphere = _sphere_cells_with_shared_areas(comm, guard, src_c, dst_c, densify_m)
        with guard("regrid weights: computing the weights of each rank's destination cells"):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                res, area_a, area_b, attrs = _compute(src_c, dst_c, method, progress=progress and rank == 0,
                                                      dst_rows=rows, sphere=sphere, **opts)
            part = _local_part(res, rows, conserve)
        # every rank's warnings, shown once by rank 0 (those about all cells are the same on every rank; those
        # about a rank's own destination cells are marked with the rank)
        _rank0_warnings(comm, [(str(m.message), m.category) for m in caught])
        # collectives outside the guarded blocks (a rank that failed above never reaches them)
        n_s = allgather_rows(comm, np.array([part["row"].size], dtype=np.int64), np.ones(size, dtype=np.int64))
        got = {k: gather_rows(comm, part[k], n_s, root=0) for k in ("row", "col", "S") + (("A",) if conserve else ())}
        frac_b = gather_rows(comm, part["frac_b"], np.array([p.size for p in parts]), root=0)
        w = None
        with guard("regrid weights: merging and writing on rank 0"):
            if rank == 0:
                merged = merge_parts(got, np.concatenate(parts), frac_b, res, src_c.size, dst_c.size, conserve)
                w = _assemble(src_c, dst_c, merged, area_a, area_b, attrs, method=method, norm_type=norm_type,
                              extrap_method=extrap_method, unmapped=unmapped)
                if out is not None:
                    w.to_netcdf(out)
        return w
    finally:
        guard.close()


def _sphere_cells_with_shared_areas(comm: Any, guard: Any, src_c: Any, dst_c: Any, densify_m: float) -> tuple:
    """The cells on the sphere (built on every rank) with their areas computed in even blocks and shared (the
    areas of densified polygons are a large part of the work that would otherwise be repeated on every rank)."""
    from coupler.mpi import allgather_rows, rank_and_size

    from .sphere import sphere_cells

    rank, size = rank_and_size(comm)
    sb, db = _even_blocks(src_c.size, size), _even_blocks(dst_c.size, size)
    with guard("regrid weights: cells on the sphere and their areas"):
        with warnings.catch_warnings():
            if rank != 0:
                warnings.simplefilter("ignore")
            S, D = sphere_cells(src_c, densify_m), sphere_cells(dst_c, densify_m)
            a = S.areas(np.arange(*sb[rank]))
            b = D.areas(np.arange(*db[rank]))
    S.set_areas(allgather_rows(comm, a, np.array([h - l for l, h in sb])))
    D.set_areas(allgather_rows(comm, b, np.array([h - l for l, h in db])))
    return S, D


def merge_parts(got: dict, rows: np.ndarray, frac_b_rows: np.ndarray, res0: dict, n_a: int, n_b: int,
                conserve: bool) -> dict:
    """The generator result of all destination rows from the ranks' parts, as the serial generator returns it.

    ``got``: the ranks' ``row, col, S`` (and ``A`` for conservative weights) concatenated in rank order; ``rows``:
    the ranks' destination cells concatenated in rank order and ``frac_b_rows`` their ``frac_b``; ``res0``: rank 0's
    own result (for the fields that do not depend on the split)."""
    order = np.lexsort((got["col"], got["row"]))  # the serial order: by row, then col (the pairs are unique)
    merged = {k: got[k][order] for k in got}
    frac_b = np.zeros(n_b, dtype=np.float64)  # masked cells belong to no part and have frac_b 0, as in serial
    frac_b[rows] = frac_b_rows
    merged["frac_b"] = frac_b
    if conserve:
        # as the serial generator: per-source coverage summed over all rows in (row, col) order
        covered_a = np.bincount(merged["col"], weights=merged["A"], minlength=n_a)
        aa = np.asarray(res0["area_a"] if "area_a" in res0 else res0["area_a_m2"], dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            merged["frac_a"] = np.where(aa > 0, covered_a / aa, 0.0)
    else:
        merged["frac_a"] = res0["frac_a"]
    return merged


def _rank0_warnings(comm: Any, mine: list) -> None:
    everyone = comm.gather(mine, root=0)
    if everyone is None:
        return
    seen = set()
    for r, msgs in enumerate(everyone):
        for text, category in msgs:
            if text in seen:
                continue
            seen.add(text)
            warnings.warn(text if r == 0 else f"rank {r}: {text}", category, stacklevel=3)


def _check_output(output: str | os.PathLike | None, overwrite: bool) -> Path | None:
    return None if output is None else check_output_path(output, overwrite)
