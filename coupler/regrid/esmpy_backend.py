"""ESMPy backend: the same cells handed to ESMF, the same :class:`~coupler.regrid.weights.Weights` back.

Used by :func:`coupler.regrid.generate_weights` with ``backend="esmpy"`` (or ``"auto"`` when
ESMPy imports). ESMPy is imported as ``esmpy`` (ESMF >= 8.4) or ``ESMF`` (older releases).

Mapping of our cell sets onto ESMF objects (serial, one PET):

* :class:`~coupler.regrid.grids.Grid` -> ``Grid(max_index=[nx, ny], coord_sys=SPH_DEG)`` with
  CENTER and (for conservative) CORNER staggers in longitude/latitude (projected grids are
  converted with pyproj), mask item 1 = masked. ESMF's Fortran ``(i, j)`` order equals our
  C-order flat index ``j * nx + i``.
* :class:`~coupler.regrid.grids.Polygons`, conservative -> ``Mesh`` (``SPH_DEG``) whose elements
  are the counter-clockwise exterior rings; multi-part cells are split into one element per
  part and polygons with holes are triangulated (``shapely.constrained_delaunay_triangles``),
  because ESMF elements cannot have holes. The weights of the pieces are recombined per cell
  from the element areas ESMF reports: ``A_ij = S_ij * frac_b_j * area_j`` summed over pieces.
* :class:`~coupler.regrid.grids.Polygons`, bilinear/patch/nearest destination -> ``LocStream`` of
  cell centres; nearest_stod from polygons uses a ``LocStream`` of source centres.

Unmapped destinations are ignored by ESMF (``UnmappedAction.IGNORE``) and then reported by
:func:`~coupler.regrid.generate_weights` according to its ``unmapped`` argument.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from bmi_dhydro._extras import require

from .crs import LONLAT, REGRIDDING, RegridError, transform_xy
from .grids import CellSet, Grid, Polygons

shapely = require("shapely", "geo", REGRIDDING)

__all__ = ["import_esmpy", "esmpy_weights"]

_MANAGER = None


def import_esmpy() -> Any:
    """The ESMPy module, or ``None`` when it cannot be imported."""
    try:
        import esmpy  # type: ignore

        return esmpy
    except Exception:
        pass
    try:
        import ESMF  # type: ignore

        return ESMF
    except Exception:
        return None


def _manager(E: Any) -> Any:
    global _MANAGER
    if _MANAGER is None:
        _MANAGER = E.Manager(debug=False)
    return _MANAGER


def _grid_object(E: Any, g: Grid, corners: bool) -> Any:
    ny, nx = g.shape
    lon, lat = g.lonlat_centers()
    stagger = [E.StaggerLoc.CENTER] + ([E.StaggerLoc.CORNER] if corners else [])
    grid = E.Grid(np.array([nx, ny], dtype=np.int32), staggerloc=stagger, coord_sys=E.CoordSys.SPH_DEG)
    gx = grid.get_coords(0, staggerloc=E.StaggerLoc.CENTER)
    gy = grid.get_coords(1, staggerloc=E.StaggerLoc.CENTER)
    gx[...] = lon.reshape(ny, nx).T
    gy[...] = lat.reshape(ny, nx).T
    if corners:
        cx, cy = g.corner_arrays()
        clon, clat = transform_xy(g.crs, LONLAT, cx, cy)
        kx = grid.get_coords(0, staggerloc=E.StaggerLoc.CORNER)
        ky = grid.get_coords(1, staggerloc=E.StaggerLoc.CORNER)
        kx[...] = clon.T
        ky[...] = clat.T
    grid.add_item(E.GridItem.MASK, staggerloc=E.StaggerLoc.CENTER)
    m = grid.get_item(E.GridItem.MASK, staggerloc=E.StaggerLoc.CENTER)
    m[...] = (~g.mask).reshape(ny, nx).T.astype(np.int32)
    return grid


def _pieces(p: Polygons) -> tuple[list[np.ndarray], np.ndarray]:
    """Counter-clockwise lon/lat rings (unclosed) for ESMF elements and the cell each belongs to."""
    polys = shapely.orient_polygons(p.cell_polygons(LONLAT), exterior_cw=False)
    rings: list[np.ndarray] = []
    parent: list[int] = []
    for k, g in enumerate(polys):
        parts = list(g.geoms) if g.geom_type == "MultiPolygon" else [g]
        for part in parts:
            if len(part.interiors):
                tris = shapely.constrained_delaunay_triangles(part)
                tris = shapely.orient_polygons(np.asarray(list(tris.geoms), dtype=object), exterior_cw=False)
                for t in tris:
                    rings.append(np.asarray(t.exterior.coords)[:-1])
                    parent.append(k)
            else:
                rings.append(np.asarray(part.exterior.coords)[:-1])
                parent.append(k)
    return rings, np.asarray(parent, dtype=np.int64)


def _mesh_object(E: Any, p: Polygons) -> tuple[Any, np.ndarray]:
    rings, parent = _pieces(p)
    coords = np.concatenate(rings)
    uniq, inverse = np.unique(coords, axis=0, return_inverse=True)
    inverse = np.asarray(inverse).reshape(-1)
    n_nodes, n_el = uniq.shape[0], len(rings)
    mesh = E.Mesh(parametric_dim=2, spatial_dim=2, coord_sys=E.CoordSys.SPH_DEG)
    mesh.add_nodes(n_nodes, np.arange(1, n_nodes + 1, dtype=np.int32), uniq.reshape(-1).astype(np.float64),
                   np.zeros(n_nodes, dtype=np.int32))
    counts = np.array([len(r) for r in rings], dtype=np.int32)
    lon, lat = p.lonlat_centers()
    mesh.add_elements(n_el, np.arange(1, n_el + 1, dtype=np.int32), counts, inverse.astype(np.int32),
                      element_mask=(~p.mask[parent]).astype(np.int32),
                      element_coords=np.column_stack([lon[parent], lat[parent]]).reshape(-1))
    return mesh, parent


def _locstream(E: Any, cells: CellSet) -> Any:
    lon, lat = cells.lonlat_centers()
    ls = E.LocStream(cells.size, coord_sys=E.CoordSys.SPH_DEG)
    ls["ESMF:Lon"] = lon.astype(np.float64)
    ls["ESMF:Lat"] = lat.astype(np.float64)
    ls["ESMF:Mask"] = (~cells.mask).astype(np.int32)
    return ls


def _field_data(field: Any, cells: CellSet) -> np.ndarray:
    d = np.asarray(field.data, dtype=np.float64)
    if isinstance(cells, Grid):
        return d.T.reshape(-1).copy()
    return d.reshape(-1).copy()


def esmpy_weights(src: CellSet, dst: CellSet, method: str, *, norm_type: str = "dstarea",
                  extrap_method: str = "none") -> dict:
    """Weights computed by ESMF through ESMPy; same dict layout as the native backend."""
    E = import_esmpy()
    if E is None:
        raise RegridError("backend='esmpy' but ESMPy cannot be imported (install it from conda-forge: "
                          "'conda install -c conda-forge esmpy'); use backend='native'")
    _manager(E)
    if E.pet_count() > 1:
        raise RegridError("the ESMPy backend runs serially; launch it without mpirun")
    methods = {"conserve": E.RegridMethod.CONSERVE, "bilinear": E.RegridMethod.BILINEAR,
               "nearest_stod": E.RegridMethod.NEAREST_STOD, "nearest_dtos": E.RegridMethod.NEAREST_DTOS,
               "patch": E.RegridMethod.PATCH}
    conservative = method == "conserve"
    objs: list[Any] = []
    parent = None
    try:
        # source
        if isinstance(src, Grid):
            sgeom = _grid_object(E, src, corners=conservative)
            sfield = E.Field(sgeom, name="src", staggerloc=E.StaggerLoc.CENTER)
            sfrac = E.Field(sgeom, name="src_frac", staggerloc=E.StaggerLoc.CENTER)
        elif conservative:
            sgeom, sparent = _mesh_object(E, src)
            if sparent.size != src.size:
                raise RegridError("the ESMPy backend needs simple polygons (no holes, one part) as a conservative "
                                  "source; use backend='native'")
            sfield = E.Field(sgeom, name="src", meshloc=E.MeshLoc.ELEMENT)
            sfrac = E.Field(sgeom, name="src_frac", meshloc=E.MeshLoc.ELEMENT)
        elif method in ("nearest_stod", "nearest_dtos"):
            sgeom = _locstream(E, src)
            sfield = E.Field(sgeom, name="src")
            sfrac = None
        else:
            raise RegridError(f"method {method!r} with the ESMPy backend needs a structured source grid")
        objs += [sgeom, sfield] + ([sfrac] if sfrac is not None else [])
        # destination
        if isinstance(dst, Grid):
            dgeom = _grid_object(E, dst, corners=conservative)
            dfield = E.Field(dgeom, name="dst", staggerloc=E.StaggerLoc.CENTER)
            dfrac = E.Field(dgeom, name="dst_frac", staggerloc=E.StaggerLoc.CENTER)
        elif conservative:
            dgeom, parent = _mesh_object(E, dst)
            dfield = E.Field(dgeom, name="dst", meshloc=E.MeshLoc.ELEMENT)
            dfrac = E.Field(dgeom, name="dst_frac", meshloc=E.MeshLoc.ELEMENT)
        else:
            dgeom = _locstream(E, dst)
            dfield = E.Field(dgeom, name="dst")
            dfrac = None
        objs += [dgeom, dfield] + ([dfrac] if dfrac is not None else [])
        kwargs: dict[str, Any] = dict(regrid_method=methods[method], unmapped_action=E.UnmappedAction.IGNORE,
                                      src_mask_values=np.array([1], dtype=np.int32),
                                      dst_mask_values=np.array([1], dtype=np.int32),
                                      factors=True, ignore_degenerate=True)
        if extrap_method != "none":
            kwargs["extrap_method"] = E.ExtrapMethod.NEAREST_STOD
        if conservative:
            kwargs["norm_type"] = E.NormType.DSTAREA if norm_type == "dstarea" else E.NormType.FRACAREA
            kwargs["src_frac_field"] = sfrac
            kwargs["dst_frac_field"] = dfrac
        regrid = E.Regrid(sfield, dfield, **kwargs)
        objs.append(regrid)
        wd = regrid.get_weights_dict(deep_copy=True)
        row = np.asarray(wd["row_dst"], dtype=np.int64) - 1
        col = np.asarray(wd["col_src"], dtype=np.int64) - 1
        S = np.asarray(wd["weights"], dtype=np.float64)
        out: dict[str, Any] = {"esmf_version": getattr(E, "__version__", "?")}
        if conservative:
            sfield.get_area()
            dfield.get_area()
            area_a = _field_data(sfield, src)
            area_el = _field_data(dfield, dst)
            frac_a = _field_data(sfrac, src)
            frac_el = _field_data(dfrac, dst)
            if parent is None:
                parent = np.arange(dst.size)
            # recombine pieces into cells (identity when every cell is one element)
            if norm_type == "dstarea":
                A = S * area_el[row]
            else:
                A = S * frac_el[row] * area_el[row]
            prow = parent[row]
            key = prow * src.size + col
            uk, inv = np.unique(key, return_inverse=True)
            A_c = np.bincount(inv, weights=A)
            row_c, col_c = np.divmod(uk, src.size)
            area_b = np.bincount(parent, weights=area_el, minlength=dst.size)
            covered = np.bincount(parent, weights=frac_el * area_el, minlength=dst.size)
            with np.errstate(divide="ignore", invalid="ignore"):
                frac_b = np.where(area_b > 0, covered / area_b, 0.0)
                S_c = A_c / (area_b[row_c] if norm_type == "dstarea" else covered[row_c])
            out.update(row=row_c, col=col_c, S=S_c, frac_a=frac_a, frac_b=frac_b, area_a_sr=area_a, area_b_sr=area_b)
        else:
            mapped = np.zeros(dst.size)
            mapped[np.unique(row)] = 1.0
            order = np.lexsort((col, row))
            out.update(row=row[order], col=col[order], S=S[order], frac_a=src.mask.astype(np.float64), frac_b=mapped)
        return out
    finally:
        for o in reversed(objs):
            try:
                o.destroy()
            except Exception:
                pass
