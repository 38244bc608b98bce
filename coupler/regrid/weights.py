"""Sparse regridding weights in the ESMF_RegridWeightGen file format, and their application.

A :class:`Weights` object is the sparse matrix ``S`` (``n_b`` destination rows by ``n_a``
source columns) plus the per-cell information ESMF writes next to it. Destination values are

    d_j = sum_i S_ji * s_i                                                         (1)

File layout (NetCDF, as written by ``ESMF_RegridWeightGen``; C order, so ESMF's Fortran
``xv_a(nv_a, n_a)`` appears as ``xv_a(n_a, nv_a)``):

========================  ==================  =====================================================
variable                  dimensions          meaning
========================  ==================  =====================================================
``S``                     ``n_s``             weights (double)
``row``, ``col``          ``n_s``             1-based destination / source cell of each weight (int)
``frac_a``, ``frac_b``    ``n_a`` / ``n_b``   fraction of each source / destination cell covered by
                                              the other side (conserve); mapped flags otherwise
``area_a``, ``area_b``    ``n_a`` / ``n_b``   cell areas in **square radians** (area on the unit
                                              sphere); 0 for non-conservative methods
``xc_*``, ``yc_*``        ``n_a`` / ``n_b``   cell centre longitude/latitude, degrees
``xv_*``, ``yv_*``        ``(n, nv_*)``       cell corners, degrees; for polygons and meshes ``nv`` is the largest
                                              corner count, shorter rings repeat their last corner
``mask_a``, ``mask_b``    ``n_a`` / ``n_b``   1 = active cell, 0 = masked (int)
``src_grid_dims``         ``src_grid_rank``   source grid shape, Fortran order (nx, ny)
``dst_grid_dims``         ``dst_grid_rank``   destination grid shape, Fortran order
========================  ==================  =====================================================

Global attributes ``title, normalization ("destarea"/"fracarea"), map_method,
ESMF_regrid_method, conventions ("NCAR-CSM"), domain_a, domain_b, grid_file_src,
grid_file_dst`` follow ESMF. Two extension variables, ignored by ESMF tools, carry cell
identifiers: ``id_a(n_a, nchar_a)`` and ``id_b(n_b, nchar_b)`` (char).

Applying weights with missing source values
-------------------------------------------
With ``skipna=True`` (the default) NaN source values are left out and the remaining weights of
each destination are rescaled so that they keep their original sum ``W_j = sum_i S_ji``::

    d_j = (sum_{i valid} S_ji s_i) * W_j / V_j,   V_j = sum_{i valid} S_ji        (2)

i.e. a missing part of a destination is filled with the weighted mean of its valid part (a
``fracarea``-normalised destination stays an area mean; a ``dstarea`` destination keeps its
``frac_b`` scaling). Destinations with ``V_j / W_j <= min_valid_fraction`` (no valid source at
all, by default) and unmapped destinations are NaN. When no value is missing (2) is (1).
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import scipy.sparse as sp

from .crs import RegridError

__all__ = ["Weights", "read_weights", "METHODS", "NORM_TYPES"]

METHODS = ("conserve", "bilinear", "nearest_stod", "nearest_dtos", "patch", "conserve_2nd")
NORM_TYPES = ("dstarea", "fracarea")

_ESMF_NAMES = {
    "conserve": ("Conservative remapping", "First-order Conservative"),
    "conserve_2nd": ("Conservative remapping", "Second-order Conservative"),
    "bilinear": ("Bilinear remapping", "Bilinear"),
    "patch": ("Bilinear remapping", "Higher-order Patch"),
    "nearest_stod": ("Bilinear remapping", "Nearest source to destination"),
    "nearest_dtos": ("Bilinear remapping", "Nearest destination to source"),
}

_PER_A = ("frac_a", "area_a", "xc_a", "yc_a", "mask_a")
_PER_B = ("frac_b", "area_b", "xc_b", "yc_b", "mask_b")


def _method_from_attrs(attrs: dict) -> str | None:
    esmf = str(attrs.get("ESMF_regrid_method", "")).strip().lower()
    for key, (_, long) in _ESMF_NAMES.items():
        if esmf == long.lower():
            return key
    mm = str(attrs.get("map_method", "")).strip().lower()
    if mm.startswith("conservative"):
        return "conserve"
    if mm.startswith("bilinear"):
        return "bilinear"
    return None


class Weights:
    """Sparse regridding weights from ``n_a`` source cells to ``n_b`` destination cells.

    ``row`` and ``col`` are **0-based** here (they are 1-based in the file). All per-cell
    arrays are optional; missing ones are filled with ESMF's neutral values (fractions 1,
    areas 0, coordinates NaN, masks 1). ``method`` is one of :data:`METHODS`,
    ``norm_type`` one of :data:`NORM_TYPES` (or ``None`` for non-conservative weights).
    """

    def __init__(self, *, n_a: int, n_b: int, row: Any, col: Any, S: Any,
                 frac_a: Any = None, frac_b: Any = None, area_a: Any = None, area_b: Any = None,
                 xc_a: Any = None, yc_a: Any = None, xc_b: Any = None, yc_b: Any = None,
                 mask_a: Any = None, mask_b: Any = None,
                 src_grid_dims: Any = None, dst_grid_dims: Any = None,
                 xv_a: Any = None, yv_a: Any = None, xv_b: Any = None, yv_b: Any = None,
                 ids_a: Any = None, ids_b: Any = None,
                 method: str | None = "conserve", norm_type: str | None = "dstarea",
                 attrs: dict | None = None):
        self.n_a, self.n_b = int(n_a), int(n_b)
        if self.n_a <= 0 or self.n_b <= 0:
            raise RegridError(f"Weights: n_a and n_b must be positive, got n_a={n_a}, n_b={n_b}")
        self.row = np.asarray(row, dtype=np.int64).reshape(-1)
        self.col = np.asarray(col, dtype=np.int64).reshape(-1)
        self.S = np.asarray(S, dtype=np.float64).reshape(-1)
        if not (self.row.size == self.col.size == self.S.size):
            raise RegridError(f"Weights: row ({self.row.size}), col ({self.col.size}) and S ({self.S.size}) "
                              f"must have the same length n_s")
        if self.S.size:
            if self.row.min() < 0 or self.row.max() >= self.n_b:
                raise RegridError(f"Weights: destination index (row) outside 0..{self.n_b - 1}: "
                                  f"min {self.row.min()}, max {self.row.max()}")
            if self.col.min() < 0 or self.col.max() >= self.n_a:
                raise RegridError(f"Weights: source index (col) outside 0..{self.n_a - 1}: "
                                  f"min {self.col.min()}, max {self.col.max()}")
            if not np.all(np.isfinite(self.S)):
                raise RegridError(f"Weights: {int((~np.isfinite(self.S)).sum())} non-finite weights in S")

        def per(arr: Any, n: int, name: str, default: float, dtype: Any) -> np.ndarray:
            if arr is None:
                return np.full(n, default, dtype=dtype)
            a = np.asarray(arr, dtype=dtype).reshape(-1)
            if a.size != n:
                raise RegridError(f"Weights: {name} has {a.size} values, expected {n}")
            return a

        self.frac_a = per(frac_a, self.n_a, "frac_a", 1.0, np.float64)
        self.frac_b = per(frac_b, self.n_b, "frac_b", 1.0, np.float64)
        self.area_a = per(area_a, self.n_a, "area_a", 0.0, np.float64)
        self.area_b = per(area_b, self.n_b, "area_b", 0.0, np.float64)
        self.xc_a = per(xc_a, self.n_a, "xc_a", np.nan, np.float64)
        self.yc_a = per(yc_a, self.n_a, "yc_a", np.nan, np.float64)
        self.xc_b = per(xc_b, self.n_b, "xc_b", np.nan, np.float64)
        self.yc_b = per(yc_b, self.n_b, "yc_b", np.nan, np.float64)
        self.mask_a = per(mask_a, self.n_a, "mask_a", 1, np.int32)
        self.mask_b = per(mask_b, self.n_b, "mask_b", 1, np.int32)

        def dims(d: Any, n: int, name: str) -> np.ndarray:
            if d is None:
                return np.array([n], dtype=np.int32)
            a = np.asarray(d, dtype=np.int64).reshape(-1)
            if a.size < 1 or int(np.prod(a)) != n:
                raise RegridError(f"Weights: {name} {a.tolist()} does not multiply to {n}")
            return a.astype(np.int32)

        self.src_grid_dims = dims(src_grid_dims, self.n_a, "src_grid_dims")
        self.dst_grid_dims = dims(dst_grid_dims, self.n_b, "dst_grid_dims")

        def verts(xv: Any, yv: Any, n: int, name: str) -> tuple[np.ndarray | None, np.ndarray | None]:
            if xv is None and yv is None:
                return None, None
            if xv is None or yv is None:
                raise RegridError(f"Weights: give both xv_{name} and yv_{name}")
            xv = np.asarray(xv, dtype=np.float64)
            yv = np.asarray(yv, dtype=np.float64)
            if xv.ndim != 2 or xv.shape[0] != n or xv.shape != yv.shape:
                raise RegridError(f"Weights: xv_{name}/yv_{name} must have shape ({n}, nv), got {xv.shape}/{yv.shape}")
            return xv, yv

        self.xv_a, self.yv_a = verts(xv_a, yv_a, self.n_a, "a")
        self.xv_b, self.yv_b = verts(xv_b, yv_b, self.n_b, "b")

        def ids(v: Any, n: int, name: str) -> np.ndarray | None:
            if v is None:
                return None
            a = np.array([str(s) for s in np.asarray(v, dtype=object).reshape(-1)], dtype=object)
            if a.size != n:
                raise RegridError(f"Weights: {name} has {a.size} entries, expected {n}")
            return a

        self.ids_a = ids(ids_a, self.n_a, "ids_a")
        self.ids_b = ids(ids_b, self.n_b, "ids_b")
        if method is not None and method not in METHODS:
            raise RegridError(f"Weights: method must be one of {METHODS}, got {method!r}")
        if norm_type is not None and norm_type not in NORM_TYPES:
            raise RegridError(f"Weights: norm_type must be one of {NORM_TYPES} or None, got {norm_type!r}")
        self.method = method
        self.norm_type = norm_type if method in ("conserve", "conserve_2nd") else None
        self.attrs = dict(attrs or {})
        self._matrix: sp.csr_matrix | None = None
        self._cache: dict = {}  # derived arrays; a Weights object is not meant to be modified after creation

    # ------------------------------------------------------------------------------------------
    @property
    def n_s(self) -> int:
        return int(self.S.size)

    @property
    def dst_ids(self) -> np.ndarray | None:
        """Destination cell identifiers (alias of ``ids_b``), ``None`` for gridded destinations."""
        return self.ids_b

    @property
    def src_ids(self) -> np.ndarray | None:
        """Source cell identifiers (alias of ``ids_a``), ``None`` for gridded sources."""
        return self.ids_a

    @property
    def src_shape(self) -> tuple[int, ...]:
        """Source grid shape in C order (e.g. ``(ny, nx)``)."""
        return tuple(int(d) for d in self.src_grid_dims[::-1])

    @property
    def dst_shape(self) -> tuple[int, ...]:
        """Destination grid shape in C order (``(n_b,)`` for polygons)."""
        return tuple(int(d) for d in self.dst_grid_dims[::-1])

    @property
    def matrix(self) -> sp.csr_matrix:
        """The weights as a ``scipy.sparse`` CSR matrix of shape ``(n_b, n_a)`` (duplicates summed)."""
        if self._matrix is None:
            m = sp.csr_matrix((self.S, (self.row, self.col)), shape=(self.n_b, self.n_a), dtype=np.float64)
            m.sum_duplicates()
            m.sort_indices()
            self._matrix = m
        return self._matrix

    @property
    def matrix_t(self) -> sp.csr_matrix:
        """``S^T`` as CSR, shape ``(n_a, n_b)`` (cached; used by :meth:`apply`)."""
        if self._cache.get("mt") is None:
            self._cache["mt"] = self.matrix.T.tocsr()
        return self._cache["mt"]

    @property
    def row_sums(self) -> np.ndarray:
        """``W_j = sum_i S_ji`` for every destination cell."""
        if self._cache.get("W") is None:
            self._cache["W"] = np.asarray(self.matrix.sum(axis=1)).reshape(-1)
        return self._cache["W"].copy()

    @property
    def unmapped(self) -> np.ndarray:
        """Active destination cells that receive no weight (their values are NaN after :meth:`apply`)."""
        if self._cache.get("unmapped") is None:
            has = np.zeros(self.n_b, dtype=bool)
            if self.n_s:
                has[self.row[self.S != 0]] = True
            self._cache["unmapped"] = (self.mask_b != 0) & ~has
        return self._cache["unmapped"].copy()

    @property
    def n_unmapped(self) -> int:
        return int(self.unmapped.sum())

    @property
    def partially_mapped(self) -> np.ndarray:
        """Conservative weights only: active destinations covered by the source for less than all their area."""
        if self.method not in ("conserve", "conserve_2nd"):
            return np.zeros(self.n_b, dtype=bool)
        return (self.mask_b != 0) & (self.frac_b > 0) & (self.frac_b < 1.0 - 1e-9)

    def summary(self) -> str:
        lines = [f"method {self.method}" + (f" (norm_type {self.norm_type})" if self.norm_type else ""),
                 f"source cells n_a = {self.n_a} (grid dims {self.src_shape}), "
                 f"destination cells n_b = {self.n_b} (grid dims {self.dst_shape}), weights n_s = {self.n_s}",
                 f"unmapped destinations: {self.n_unmapped}"]
        if self.method in ("conserve", "conserve_2nd"):
            active = self.mask_b != 0
            fb = self.frac_b[active]
            lines.append(f"partially covered destinations (0 < frac_b < 1): {int(self.partially_mapped.sum())}; "
                         f"frac_b min {fb.min() if fb.size else float('nan'):.6g} max "
                         f"{fb.max() if fb.size else float('nan'):.6g}")
        if self.n_unmapped and self.ids_b is not None:
            lines.append("unmapped ids: " + ", ".join(self.ids_b[self.unmapped][:10]) +
                         (" ..." if self.n_unmapped > 10 else ""))
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<Weights {self.method} n_a={self.n_a} n_b={self.n_b} n_s={self.n_s} unmapped={self.n_unmapped}>"

    # ------------------------------------------------------------------------------------------
    # checks
    # ------------------------------------------------------------------------------------------
    def _split_values(self, shape: tuple[int, ...], what: str = "values") -> tuple[tuple[int, ...], int]:
        """Leading (non-spatial) shape of an array whose trailing dims are the source grid."""
        src = self.src_shape
        k = len(src)
        if len(shape) >= k and tuple(shape[len(shape) - k:]) == src:
            return tuple(shape[:len(shape) - k]), k
        if len(shape) >= 1 and shape[-1] == self.n_a:
            return tuple(shape[:-1]), 1
        trail = tuple(shape[len(shape) - k:]) if len(shape) >= k else tuple(shape)
        raise RegridError(
            f"{what} have shape {tuple(shape)}: the trailing dimensions {trail} "
            f"({int(np.prod(trail)) if trail else 0} cells) do not match the weights' source grid {src} "
            f"(n_a = {self.n_a} cells); the weights were made for a different grid")

    def check_grids(self, src: Any = None, dst: Any = None, atol_deg: float = 1e-5) -> None:
        """Refuse grids that do not match these weights (sizes, shapes and, when stored, centres).

        ``src``/``dst`` are :class:`~coupler.regrid.grids.Grid` / :class:`~coupler.regrid.grids.Polygons`.
        Centre coordinates are compared (longitudes modulo 360) when the weights carry them, which
        catches grids of the right size in another order (e.g. latitude flipped).
        """
        for side, cells, n, dims, xc, yc, ids in (("source", src, self.n_a, self.src_grid_dims, self.xc_a, self.yc_a,
                                                   self.ids_a),
                                                  ("destination", dst, self.n_b, self.dst_grid_dims, self.xc_b,
                                                   self.yc_b, self.ids_b)):
            if cells is None:
                continue
            if cells.size != n:
                raise RegridError(f"weights/{side} mismatch: the weights have {n} {side} cells, the {side} "
                                  f"{cells.describe()} has {cells.size}")
            if tuple(cells.grid_dims.tolist()) != tuple(dims.tolist()) and len(dims) > 1:
                raise RegridError(f"weights/{side} mismatch: weights grid dims {dims.tolist()} (Fortran order), "
                                  f"{side} grid dims {cells.grid_dims.tolist()}")
            if ids is not None and getattr(cells, "ids", None) is not None:
                diff = np.nonzero(np.asarray(cells.ids).astype(str) != ids.astype(str))[0]
                if diff.size:
                    k = int(diff[0])
                    raise RegridError(f"weights/{side} mismatch: cell {k} is {cells.ids[k]!r} in the {side} but "
                                      f"{ids[k]!r} in the weights ({diff.size} cells differ)")
            if np.all(np.isfinite(xc)) and np.all(np.isfinite(yc)):
                lon, lat = cells.lonlat_centers()
                dlon = np.abs((lon - xc + 180.0) % 360.0 - 180.0)
                dlat = np.abs(lat - yc)
                bad = np.nonzero((dlon > atol_deg) | (dlat > atol_deg))[0]
                if bad.size:
                    k = int(bad[0])
                    raise RegridError(
                        f"weights/{side} mismatch: {bad.size} cell centres differ by more than {atol_deg} deg; "
                        f"cell {k} is at ({lon[k]:.6f}, {lat[k]:.6f}) but at ({xc[k]:.6f}, {yc[k]:.6f}) in the "
                        f"weights (a flipped or different grid?)")

    # ------------------------------------------------------------------------------------------
    # apply (numpy / scipy)
    # ------------------------------------------------------------------------------------------
    def apply(self, values: Any, *, skipna: bool = True, min_valid_fraction: float = 0.0,
              chunk_size: int | None = None, flatten_dst: bool = False) -> np.ndarray:
        """Regrid ``values`` with ``scipy.sparse``.

        ``values`` has shape ``(..., *src_shape)`` or ``(..., n_a)``; leading dimensions (time,
        ensemble, ...) are kept and processed ``chunk_size`` rows at a time (default: about
        2e7 values per chunk). The result has shape ``(..., *dst_shape)`` (``(..., n_b)`` with
        ``flatten_dst=True``), float64. See the module docstring for ``skipna`` and
        ``min_valid_fraction``; unmapped destinations are NaN.
        """
        x = np.asarray(values)
        if not np.issubdtype(x.dtype, np.number):
            raise RegridError(f"values must be numeric, got dtype {x.dtype}")
        lead, _ = self._split_values(x.shape)
        nt = int(np.prod(lead)) if lead else 1
        x2 = x.reshape(nt, self.n_a)
        out = np.empty((nt, self.n_b), dtype=np.float64)
        if chunk_size is None:
            chunk_size = max(1, int(2e7 // max(self.n_a, 1)))
        chunk_size = max(1, int(chunk_size))
        mt = self.matrix_t
        W = self.row_sums
        unm = self.unmapped
        for s in range(0, nt, chunk_size):
            xc = np.asarray(x2[s:s + chunk_size], dtype=np.float64)
            out[s:s + chunk_size] = self._apply_chunk(xc, mt, W, skipna, min_valid_fraction)
        if unm.any():
            out[:, unm] = np.nan
        shape = lead + ((self.n_b,) if flatten_dst else self.dst_shape)
        return out.reshape(shape)

    def _apply_chunk(self, xc: np.ndarray, mt: sp.csr_matrix, W: np.ndarray, skipna: bool,
                     min_valid_fraction: float) -> np.ndarray:
        finite = np.isfinite(xc)
        if not skipna or finite.all():
            return np.asarray(xc @ mt)
        valid = finite.astype(np.float64)
        num = np.asarray(np.where(finite, xc, 0.0) @ mt)
        V = np.asarray(valid @ mt)
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = np.where(V > 0, W[None, :] / V, np.nan)
            res = num * scale
            frac = np.where(W[None, :] != 0, V / W[None, :], 0.0)
        res[frac <= min_valid_fraction] = np.nan
        return res

    def apply_dataarray(self, da: Any, *, src_dims: Sequence[str] | None = None, dst_dim: str = "cell",
                        skipna: bool = True, min_valid_fraction: float = 0.0, chunk_size: int | None = None) -> Any:
        """Regrid an :class:`xarray.DataArray` whose last dimensions are the source grid.

        ``src_dims`` names the source grid dimensions (default: the last ``len(src_shape)``
        dims). The result keeps the other dimensions and coordinates and has ``dst_dim`` (with the
        destination ids as coordinate when known) for polygon destinations, or ``(dst_dim + "_y",
        dst_dim + "_x")`` for gridded ones.
        """
        import xarray as xr

        k = len(self.src_shape)
        if src_dims is None:
            src_dims = tuple(da.dims[-k:]) if len(self.src_shape) == da.ndim or da.ndim >= k else tuple(da.dims)
        src_dims = tuple(src_dims)
        other = [d for d in da.dims if d not in src_dims]
        da = da.transpose(*other, *src_dims)
        out = self.apply(da.values, skipna=skipna, min_valid_fraction=min_valid_fraction, chunk_size=chunk_size)
        if len(self.dst_shape) == 1:
            dst_dims: tuple[str, ...] = (dst_dim,)
        else:
            dst_dims = (dst_dim + "_y", dst_dim + "_x")
        coords = {d: da.coords[d] for d in other if d in da.coords}
        if self.ids_b is not None and len(dst_dims) == 1:
            coords[dst_dim] = self.ids_b.astype(str)
        return xr.DataArray(out, dims=tuple(other) + dst_dims, coords=coords, attrs=dict(da.attrs), name=da.name)

    # ------------------------------------------------------------------------------------------
    # torch
    # ------------------------------------------------------------------------------------------
    def to_torch(self, dtype: Any = None, device: Any = None, cpu_kernel: str = "scipy") -> Any:
        """A differentiable :class:`torch.nn.Module` applying these weights (see :mod:`.torch_apply`)."""
        from .torch_apply import TorchRegridder

        return TorchRegridder(self, dtype=dtype, device=device, cpu_kernel=cpu_kernel)

    # ------------------------------------------------------------------------------------------
    # comparison
    # ------------------------------------------------------------------------------------------
    _ARRAYS = ("row", "col", "S", "frac_a", "frac_b", "area_a", "area_b", "xc_a", "yc_a", "xc_b", "yc_b",
               "mask_a", "mask_b", "src_grid_dims", "dst_grid_dims", "xv_a", "yv_a", "xv_b", "yv_b", "ids_a", "ids_b")

    def differences(self, other: "Weights") -> list[str]:
        """Names of the fields that differ from ``other`` (exact comparison, NaN == NaN)."""
        out = []
        for name in ("n_a", "n_b", "method", "norm_type"):
            if getattr(self, name) != getattr(other, name):
                out.append(name)
        for name in self._ARRAYS:
            a, b = getattr(self, name), getattr(other, name)
            if a is None or b is None:
                if (a is None) != (b is None):
                    out.append(name)
                continue
            if a.shape != b.shape or a.dtype.kind != b.dtype.kind:
                out.append(name)
            elif a.dtype == object:
                if not np.array_equal(a.astype(str), b.astype(str)):
                    out.append(name)
            elif not np.array_equal(a, b, equal_nan=a.dtype.kind == "f"):
                out.append(name)
        return out

    def identical(self, other: "Weights") -> bool:
        return not self.differences(other)

    # ------------------------------------------------------------------------------------------
    # file I/O
    # ------------------------------------------------------------------------------------------
    def to_netcdf(self, path: str | os.PathLike, *, file_format: str = "NETCDF3_64BIT_OFFSET") -> None:
        """Write the ESMF_RegridWeightGen weight file (see the module docstring for the layout)."""
        import netCDF4

        path = Path(path)
        tmp = path.with_name(path.name + ".part")
        map_method, esmf_method = _ESMF_NAMES.get(self.method or "", ("unknown", "unknown"))
        attrs = {
            "title": "ESMF Offline Regridding Weight Generator",
            "normalization": {"dstarea": "destarea", "fracarea": "fracarea"}.get(self.norm_type or "", "destarea"),
            "map_method": map_method,
            "ESMF_regrid_method": esmf_method,
            "conventions": "NCAR-CSM",
            "domain_a": "", "domain_b": "", "grid_file_src": "", "grid_file_dst": "",
        }
        attrs.update({k: v for k, v in self.attrs.items() if v is not None})
        attrs["normalization"] = {"dstarea": "destarea", "fracarea": "fracarea"}.get(self.norm_type or "",
                                                                                     attrs["normalization"])
        attrs["map_method"], attrs["ESMF_regrid_method"] = map_method, esmf_method
        with netCDF4.Dataset(str(tmp), "w", format=file_format) as nc:
            for k, v in attrs.items():
                nc.setncattr(k, v if not isinstance(v, bool) else int(v))
            nc.createDimension("n_a", self.n_a)
            nc.createDimension("n_b", self.n_b)
            nc.createDimension("n_s", self.n_s if self.n_s else None)
            if self.xv_a is not None:
                nc.createDimension("nv_a", self.xv_a.shape[1])
            if self.xv_b is not None:
                nc.createDimension("nv_b", self.xv_b.shape[1])
            nc.createDimension("num_wgts", 1)
            nc.createDimension("src_grid_rank", self.src_grid_dims.size)
            nc.createDimension("dst_grid_rank", self.dst_grid_dims.size)

            def var(name: str, dtype: str, dims: tuple[str, ...], data: Any, units: str | None = None,
                    long_name: str | None = None) -> None:
                v = nc.createVariable(name, dtype, dims)
                if units is not None:
                    v.units = units
                if long_name is not None:
                    v.long_name = long_name
                if data is not None and np.size(data):
                    v[:] = data

            var("src_grid_dims", "i4", ("src_grid_rank",), self.src_grid_dims)
            var("dst_grid_dims", "i4", ("dst_grid_rank",), self.dst_grid_dims)
            var("yc_a", "f8", ("n_a",), self.yc_a, "degrees")
            var("yc_b", "f8", ("n_b",), self.yc_b, "degrees")
            var("xc_a", "f8", ("n_a",), self.xc_a, "degrees")
            var("xc_b", "f8", ("n_b",), self.xc_b, "degrees")
            if self.xv_a is not None:
                var("yv_a", "f8", ("n_a", "nv_a"), self.yv_a, "degrees")
                var("xv_a", "f8", ("n_a", "nv_a"), self.xv_a, "degrees")
            if self.xv_b is not None:
                var("yv_b", "f8", ("n_b", "nv_b"), self.yv_b, "degrees")
                var("xv_b", "f8", ("n_b", "nv_b"), self.xv_b, "degrees")
            var("mask_a", "i4", ("n_a",), self.mask_a, "unitless")
            var("mask_b", "i4", ("n_b",), self.mask_b, "unitless")
            var("area_a", "f8", ("n_a",), self.area_a, "square radians")
            var("area_b", "f8", ("n_b",), self.area_b, "square radians")
            var("frac_a", "f8", ("n_a",), self.frac_a, "unitless")
            var("frac_b", "f8", ("n_b",), self.frac_b, "unitless")
            var("col", "i4", ("n_s",), self.col + 1)
            var("row", "i4", ("n_s",), self.row + 1)
            var("S", "f8", ("n_s",), self.S)
            for side, ids in (("a", self.ids_a), ("b", self.ids_b)):
                if ids is None:
                    continue
                enc = np.array([s.encode("utf-8") for s in ids.astype(str)], dtype=object)
                nchar = max(1, max(len(s) for s in enc))
                nc.createDimension(f"nchar_{side}", nchar)
                v = nc.createVariable(f"id_{side}", "S1", (f"n_{side}", f"nchar_{side}"))
                v.long_name = f"{'source' if side == 'a' else 'destination'} cell identifier (bmi-dhydro extension)"
                v[:] = netCDF4.stringtochar(np.array(list(enc), dtype=f"S{nchar}"))
        os.replace(tmp, path)


def check_output_path(path: str | os.PathLike, overwrite: bool) -> Path:
    """An output file that may be written: refused when it exists (unless ``overwrite``) or its folder does not,
    before any work is done."""
    p = Path(path)
    if p.exists() and not overwrite:
        raise FileExistsError(f"{p} exists; pass --overwrite to replace it")
    if not p.parent.exists():
        raise FileExistsError(f"output folder {p.parent} does not exist")
    return p


def read_weights(path: str | os.PathLike) -> Weights:
    """Read an ESMF_RegridWeightGen weight file (also those written by :meth:`Weights.to_netcdf`).

    ``S``, ``row`` and ``col`` are required; every other variable is optional. Files from other
    tools that use SCRIP's names (``src_address``, ``dst_address``, ``remap_matrix``) are refused
    with a message saying so.
    """
    import netCDF4

    path = Path(path)
    if not path.exists():
        raise RegridError(f"weight file {str(path)!r} does not exist")
    try:
        nc = netCDF4.Dataset(str(path))
    except Exception as exc:
        raise RegridError(f"{path}: cannot open as NetCDF ({exc})") from None
    with nc:
        nc.set_auto_mask(False)
        names = set(nc.variables)
        if "remap_matrix" in names:
            raise RegridError(f"{path}: this is a SCRIP-format remap file (remap_matrix/src_address); only the "
                              f"ESMF weight file layout (S/row/col) is supported")
        missing = [n for n in ("S", "row", "col") if n not in names]
        if missing:
            raise RegridError(f"{path}: not an ESMF weight file, variables {missing} are missing")

        def get(name: str, dtype: Any = np.float64) -> np.ndarray | None:
            if name not in names:
                return None
            return np.asarray(nc[name][:], dtype=dtype)

        dims = nc.dimensions
        src_dims = get("src_grid_dims", np.int64)
        dst_dims = get("dst_grid_dims", np.int64)
        if "n_a" in dims:
            n_a = len(dims["n_a"])
        elif src_dims is not None:
            n_a = int(np.prod(src_dims))
        else:
            raise RegridError(f"{path}: cannot tell the number of source cells (no n_a dimension, no src_grid_dims)")
        if "n_b" in dims:
            n_b = len(dims["n_b"])
        elif dst_dims is not None:
            n_b = int(np.prod(dst_dims))
        else:
            raise RegridError(f"{path}: cannot tell the number of destination cells (no n_b, no dst_grid_dims)")
        row = np.asarray(nc["row"][:], dtype=np.int64).reshape(-1)
        col = np.asarray(nc["col"][:], dtype=np.int64).reshape(-1)
        S = np.asarray(nc["S"][:], dtype=np.float64).reshape(-1)
        if row.size and (row.min() < 1 or col.min() < 1):
            raise RegridError(f"{path}: row/col must be 1-based indices (ESMF convention); found "
                              f"min row {row.min()}, min col {col.min()}")
        for n, d in (("src_grid_dims", src_dims), ("dst_grid_dims", dst_dims)):
            if d is not None and int(np.prod(d)) != (n_a if n.startswith("src") else n_b):
                warnings.warn(f"{path}: {n} {d.tolist()} inconsistent with the cell count; ignored", stacklevel=2)
                if n.startswith("src"):
                    src_dims = None
                else:
                    dst_dims = None
        attrs = {k: nc.getncattr(k) for k in nc.ncattrs()}
        for k, v in list(attrs.items()):
            if isinstance(v, np.ndarray) and v.size == 1:
                attrs[k] = v.item()
            elif isinstance(v, np.generic):
                attrs[k] = v.item()
        method = _method_from_attrs(attrs)
        norm = str(attrs.get("normalization", "")).strip().lower()
        norm_type = {"destarea": "dstarea", "dstarea": "dstarea", "fracarea": "fracarea"}.get(norm)
        if method in ("conserve", "conserve_2nd") and norm_type is None:
            norm_type = "dstarea"

        def ids(side: str) -> np.ndarray | None:
            name = f"id_{side}"
            if name not in names:
                return None
            return np.asarray(netCDF4.chartostring(nc[name][:]), dtype=object).reshape(-1)

        area_units = {s: str(getattr(nc[f"area_{s}"], "units", "square radians")) if f"area_{s}" in names else ""
                      for s in ("a", "b")}
        for s, u in area_units.items():
            if u and "radian" not in u.lower():
                warnings.warn(f"{path}: area_{s} units are {u!r}, not 'square radians'; kept as they are",
                              stacklevel=2)
        coords = {}
        for name in ("xc_a", "yc_a", "xc_b", "yc_b", "xv_a", "yv_a", "xv_b", "yv_b"):
            arr = get(name)
            if arr is not None:
                units = str(getattr(nc[name], "units", "degrees")).lower()
                if units.startswith("rad"):
                    arr = np.rad2deg(arr)
            coords[name] = arr
        w = Weights(n_a=n_a, n_b=n_b, row=row - 1, col=col - 1, S=S,
                    frac_a=get("frac_a"), frac_b=get("frac_b"), area_a=get("area_a"), area_b=get("area_b"),
                    mask_a=get("mask_a", np.int32), mask_b=get("mask_b", np.int32),
                    src_grid_dims=src_dims, dst_grid_dims=dst_dims, ids_a=ids("a"), ids_b=ids("b"),
                    method=method, norm_type=norm_type,
                    attrs={k: v for k, v in attrs.items() if k not in ("normalization", "map_method",
                                                                         "ESMF_regrid_method")},
                    **coords)
        w.path = str(path)
        return w
