"""``generate_weights``: one entry point for the native and the ESMPy backends."""
from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np

from .crs import authalic_radius, RegridError, describe
from .grids import CellSet, Grid, Polygons, read_cells
from .weights import Weights

__all__ = ["generate_weights", "UnmappedError", "esmpy_available"]

GEN_METHODS = ("conserve", "bilinear", "nearest_stod", "nearest_dtos", "patch")
BACKENDS = ("native", "esmpy", "auto")
UNMAPPED = ("error", "nan")
GEOMETRIES = ("auto", "sphere", "plane")
EXTRAP_METHODS = ("none", "nearest_stod")
POLE_METHODS = ("all", "none")


class UnmappedError(RegridError):
    """Active destination cells that no source cell maps to (and ``unmapped='error'``)."""


def esmpy_available() -> bool:
    """True when ESMPy can be imported (as ``esmpy`` or, for ESMF < 8.4, ``ESMF``)."""
    from .esmpy_backend import import_esmpy

    return import_esmpy() is not None


def _as_cells(obj: Any, which: str, kwargs: dict | None) -> CellSet:
    if isinstance(obj, CellSet):
        if kwargs:
            raise RegridError(f"{which}_kwargs only apply when {which} is a file path")
        return obj
    if isinstance(obj, (str, os.PathLike)):
        return read_cells(obj, **(kwargs or {}))
    raise RegridError(f"{which} must be a Grid, Polygons or a file path, got {type(obj).__name__}")


def generate_weights(src: Any, dst: Any, method: str = "conserve", *, norm_type: str = "dstarea",
                     backend: str = "native", unmapped: str = "error", area_crs: Any = "auto",
                     densify_deg: float | None = 0.05, geometry: str = "auto", densify_m: float = 20.0,
                     extrap_method: str = "none", pole_method: str = "all", progress: bool = True,
                     src_kwargs: dict | None = None, dst_kwargs: dict | None = None) -> Weights:
    """Compute regridding weights from ``src`` to ``dst``.

    Parameters
    ----------
    src, dst:
        :class:`~coupler.regrid.grids.Grid` / :class:`~coupler.regrid.grids.Polygons`, or paths
        read with :func:`~coupler.regrid.grids.read_cells` (``src_kwargs``/``dst_kwargs`` are
        passed to the reader, e.g. ``{"var": "RAINRATE"}`` or ``{"id_field": "divide_id"}``).
    method:
        ESMF's names: ``"conserve"`` (first-order conservative), ``"bilinear"``,
        ``"nearest_stod"`` (nearest source to destination), ``"nearest_dtos"`` (each source to its nearest
        destination, weight 1: a destination receives the **sum** of its sources, as in ESMF),
        ``"patch"`` (ESMPy backend only).
    norm_type:
        ``"dstarea"`` (ESMF default: ``S = A_ij / area_b_j``, so a destination only partly over
        the source gets a proportionally smaller value) or ``"fracarea"``
        (``S = A_ij / (frac_b_j area_b_j)``: area-weighted mean of the overlapping sources).
        Conservative weights only.
    backend:
        ``"native"`` (default; see :mod:`coupler.regrid.native`), ``"esmpy"`` (requires ESMPy)
        or ``"auto"`` (ESMPy when importable, native otherwise).
    unmapped:
        What to do with active destination cells that get no weight: ``"error"`` raises
        :class:`UnmappedError` naming them; ``"nan"`` keeps them (their regridded values are NaN)
        and warns with their count (also in :attr:`Weights.n_unmapped`).
    area_crs:
        Native conservative only: equal-area CRS for the intersections (``"auto"``: see
        :func:`coupler.regrid.native.choose_area_crs`).
    densify_deg:
        Native conservative only: maximum edge segment (degrees) for cells given in longitude/
        latitude before projection; ``None`` for no densification.
    geometry:
        Native conservative and bilinear. Conservative: ``"sphere"``: cells are spherical polygons with
        great-circle edges between their corners and areas are on the unit sphere, as in ESMF (any grid:
        global, poles, seams; see :mod:`coupler.regrid.sphere`); ``"plane"``: exact intersection in the
        equal-area plane ``area_crs`` (regional only; the behaviour before spherical support). Bilinear:
        ``"sphere"``: ESMF's bilinear on the sphere (quadrilaterals of source centres in 3-D, pole
        triangles on global grids; see :mod:`coupler.regrid.interp_sphere`); ``"plane"``: bilinear in the
        source grid's own coordinates. ``"auto"`` (default): ``"plane"`` when both sides are in projected
        CRSs (or, conservative, ``area_crs`` is given), ``"sphere"`` otherwise.
    densify_m:
        ``geometry="sphere"`` only: polygons in a projected CRS (hydrofabric divides in EPSG:5070) have
        straight edges in that projection; they are densified to this step (CRS units, metres) before
        their vertices are joined by great circles.
    extrap_method:
        Native bilinear and nearest_dtos (ESMF's ``--extrap_method``): ``"none"`` (default) or
        ``"nearest_stod"`` (active destinations left unmapped take the nearest active source centre).
    pole_method:
        Native bilinear on a global (periodic) source grid: ``"all"`` (ESMF's default for
        non-conservative methods: a pole node, the mean of the end row, closes the gap past the last row)
        or ``"none"`` (points past the last row are unmapped).
    progress:
        Show a tqdm progress bar.

    On MPI ranks (``mpiexec -n N``), :func:`coupler.regrid.parallel.generate_weights_mpi` takes the same arguments,
    splits the destination cells across the ranks and returns the same weights on rank 0.
    """
    _check_options(method, norm_type, backend, unmapped, geometry, extrap_method, pole_method, densify_m,
                   densify_deg)
    src_c = _as_cells(src, "src", src_kwargs)
    dst_c = _as_cells(dst, "dst", dst_kwargs)
    res, area_a, area_b, attrs = _compute(src_c, dst_c, method, norm_type=norm_type, backend=backend,
                                          area_crs=area_crs, densify_deg=densify_deg, geometry=geometry,
                                          densify_m=densify_m, extrap_method=extrap_method, pole_method=pole_method,
                                          progress=progress)
    return _assemble(src_c, dst_c, res, area_a, area_b, attrs, method=method, norm_type=norm_type,
                     extrap_method=extrap_method, unmapped=unmapped)


def _check_options(method: str, norm_type: str, backend: str, unmapped: str, geometry: str, extrap_method: str,
                   pole_method: str, densify_m: Any, densify_deg: Any) -> None:
    """Refuse bad option values before any work (also used by :mod:`.parallel` on every rank)."""
    if method not in GEN_METHODS:
        raise RegridError(f"method must be one of {GEN_METHODS}, got {method!r}")
    if norm_type not in ("dstarea", "fracarea"):
        raise RegridError(f"norm_type must be 'dstarea' or 'fracarea', got {norm_type!r}")
    if backend not in BACKENDS:
        raise RegridError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if unmapped not in UNMAPPED:
        raise RegridError(f"unmapped must be 'error' or 'nan', got {unmapped!r}")
    if geometry not in GEOMETRIES:
        raise RegridError(f"geometry must be one of {GEOMETRIES}, got {geometry!r}")
    if extrap_method not in EXTRAP_METHODS:
        raise RegridError(f"extrap_method must be one of {EXTRAP_METHODS}, got {extrap_method!r}")
    if pole_method not in POLE_METHODS:
        raise RegridError(f"pole_method must be one of {POLE_METHODS}, got {pole_method!r}")
    if extrap_method != "none" and method == "conserve":
        raise RegridError(f"extrap_method={extrap_method!r} is for non-conservative methods (as in ESMF); method is "
                          "'conserve'")
    if not (isinstance(densify_m, (int, float)) and densify_m > 0):
        raise RegridError(f"densify_m must be a positive length in metres, got {densify_m!r}")
    if densify_deg is not None and not (densify_deg > 0):
        raise RegridError(f"densify_deg must be positive or None, got {densify_deg!r}")


def _compute(src_c: CellSet, dst_c: CellSet, method: str, *, norm_type: str, backend: str, area_crs: Any,
             densify_deg: float | None, geometry: str, densify_m: float, extrap_method: str, pole_method: str,
             progress: bool, dst_rows: Any = None, sphere: tuple | None = None) -> tuple[dict, Any, Any, dict]:
    """The generator's raw result ``(res, area_a, area_b, attrs)``; ``dst_rows`` (indices): only those destination
    rows,
    ``sphere``: the cells on the sphere already built (native backend; see :mod:`.parallel`)."""
    if backend == "auto":
        backend = "esmpy" if esmpy_available() else "native"
    attrs: dict[str, Any] = {
        "domain_a": src_c.source, "domain_b": dst_c.source,
        "grid_file_src": getattr(src_c, "path", src_c.source), "grid_file_dst": getattr(dst_c, "path", dst_c.source),
    }
    if backend == "esmpy":
        if dst_rows is not None:
            raise RegridError("a destination subset (MPI ranks) needs the native backend")
        from .esmpy_backend import esmpy_weights

        res = esmpy_weights(src_c, dst_c, method, norm_type=norm_type, extrap_method=extrap_method)
        attrs["generator"] = f"bmi-dhydro coupler.regrid, ESMPy backend (ESMF {res.get('esmf_version', '?')})"
        area_a, area_b = res.get("area_a_sr"), res.get("area_b_sr")
    else:
        from . import native

        if method == "patch":
            raise RegridError("method 'patch' is only available with backend='esmpy' (ESMPy is not importable "
                              "here); use 'bilinear' or 'conserve'")
        geometry = resolve_geometry(src_c, dst_c, method, geometry, area_crs)
        if method == "conserve" and geometry == "sphere":
            res = native.conserve_weights_sphere(src_c, dst_c, norm_type=norm_type, densify_m=densify_m,
                                                 progress=progress, dst_rows=dst_rows, cells=sphere)
            area_a, area_b = res["area_a"], res["area_b"]
            attrs["geometry"] = "sphere: great-circle cell edges, areas on the unit sphere (as ESMF)"
            attrs["densify_m"] = float(densify_m)
            # not used for the weights: the radius that turns the steradians into m^2 for users (WGS 84 authalic)
            attrs["earth_radius_for_square_radians_m"] = authalic_radius(None)
        elif method == "conserve":
            crs = native.choose_area_crs(src_c, dst_c, area_crs)
            res = native.conserve_weights(src_c, dst_c, norm_type=norm_type, area_crs=crs, densify_deg=densify_deg,
                                          progress=progress, dst_rows=dst_rows)
            R2 = res["R"] ** 2
            area_a, area_b = res["area_a_m2"] / R2, res["area_b_m2"] / R2
            attrs["area_crs"] = describe(crs)
            attrs["earth_radius_for_square_radians_m"] = float(res["R"])
            attrs["densify_deg"] = float(densify_deg) if densify_deg else 0.0
            attrs["geometry"] = "plane: exact intersection in an equal-area projection"
        elif method == "bilinear":
            res = native.bilinear_weights(src_c, dst_c, geometry=geometry, extrap_method=extrap_method,
                                          pole_method=pole_method, dst_rows=dst_rows)
            area_a = area_b = None
            attrs["geometry"] = ("sphere: ESMF bilinear on the sphere (3-D quadrilaterals of source centres, "
                                 f"pole_method {pole_method})" if geometry == "sphere"
                                 else "plane: bilinear in the source grid's coordinates")
        elif method == "nearest_dtos":
            rows = None if dst_rows is None else np.unique(np.asarray(dst_rows, dtype=np.int64))
            if rows is not None and rows.size == 0:  # an MPI rank without rows
                e = np.zeros(0, dtype=np.int64)
                res = dict(row=e, col=e, S=np.zeros(0), frac_a=src_c.mask.astype(np.float64),
                           frac_b=np.zeros(dst_c.size))
            elif rows is not None and not np.isin(np.nonzero(dst_c.mask)[0], rows).all():
                raise RegridError("nearest_dtos maps sources to destinations: it cannot be split by destination rows")
            else:
                res = native.nearest_dtos_weights(src_c, dst_c, extrap_method=extrap_method)
            area_a = area_b = None
        else:
            res = native.nearest_stod_weights(src_c, dst_c, dst_rows=dst_rows)
            area_a = area_b = None
        attrs["generator"] = "bmi-dhydro coupler.regrid, native backend (exact polygon intersection)"
    if extrap_method != "none":
        attrs["extrap_method"] = extrap_method
    return res, area_a, area_b, attrs


def resolve_geometry(src_c: CellSet, dst_c: CellSet, method: str, geometry: str, area_crs: Any) -> str:
    """``geometry="auto"`` made explicit (see :func:`generate_weights`)."""
    if geometry != "auto":
        return geometry
    explicit = method == "conserve" and area_crs is not None and not (isinstance(area_crs, str)
                                                                        and area_crs == "auto")
    return "plane" if explicit or (src_c.crs.is_projected and dst_c.crs.is_projected) else "sphere"


def _assemble(src_c: CellSet, dst_c: CellSet, res: dict, area_a: Any, area_b: Any, attrs: dict, *, method: str,
              norm_type: str, extrap_method: str, unmapped: str) -> Weights:
    """The :class:`Weights` of a generator result, with the cells' coordinates; the unmapped check."""
    xc_a, yc_a = src_c.lonlat_centers()
    xc_b, yc_b = dst_c.lonlat_centers()
    va = src_c.lonlat_vertices()
    vb = dst_c.lonlat_vertices()
    w = Weights(n_a=src_c.size, n_b=dst_c.size, row=res["row"], col=res["col"], S=res["S"],
                frac_a=res["frac_a"], frac_b=res["frac_b"], area_a=area_a, area_b=area_b,
                xc_a=xc_a, yc_a=yc_a, xc_b=xc_b, yc_b=yc_b,
                mask_a=src_c.mask.astype(np.int32), mask_b=dst_c.mask.astype(np.int32),
                src_grid_dims=src_c.grid_dims, dst_grid_dims=dst_c.grid_dims,
                xv_a=va[0] if va else None, yv_a=va[1] if va else None,
                xv_b=vb[0] if vb else None, yv_b=vb[1] if vb else None,
                ids_a=src_c.ids if isinstance(src_c, Polygons) else None,
                ids_b=dst_c.ids if isinstance(dst_c, Polygons) else None,
                method=method, norm_type=norm_type if method == "conserve" else None, attrs=attrs)
    n_un = w.n_unmapped
    if n_un:
        names = (w.ids_b[w.unmapped] if w.ids_b is not None else np.nonzero(w.unmapped)[0].astype(str))[:10]
        msg = (f"{n_un} of {int((w.mask_b != 0).sum())} active destination cells are not mapped by any source cell "
               f"({method}); first: {', '.join(map(str, names))}")
        if unmapped == "error":
            raise UnmappedError(msg + "; pass unmapped='nan' to keep them as NaN")
        warnings.warn(msg + "; their regridded values will be NaN", stacklevel=3)
    return w
