"""Source and destination cell collections, their readers and writers.

Two concrete containers share one small interface (:class:`CellSet`):

:class:`Grid`
    a logically rectangular grid, *rectilinear* (1-D ``x``/``y`` centre coordinates) or
    *curvilinear* (2-D centre coordinates), in any CRS (longitude/latitude or projected).
    Cells are numbered in C order over ``(ny, nx)``, i.e. ``k = j * nx + i``, which is the
    Fortran order ``(nx, ny)`` that ESMF uses for ``src_grid_dims``/``dst_grid_dims``.

:class:`Polygons`
    an unstructured set of cells, each a (multi)polygon with an identifier: hydrofabric
    divides, HRUs, the elements of an ESMF unstructured mesh, the faces of a UGRID mesh, or an
    unstructured SCRIP grid.

Readers: :func:`read_grid` (CF NetCDF rectilinear/curvilinear, lon/lat or projected with a
``grid_mapping`` variable or ``proj4``/``crs_wkt``/``esri_pe_string`` attributes; SCRIP grid
files; ESMF unstructured mesh files; the faces of 2-D UGRID meshes) and :func:`read_polygons` (GeoPackage, Shapefile, GeoJSON,
FlatGeobuf through pyogrio; GeoParquet through pyarrow). Writers: :func:`write_scrip` and
:func:`write_esmf_mesh`, so that grids and polygons read here can be handed to
``ESMF_RegridWeightGen`` on another machine.
"""
from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from bmi_dhydro._extras import require

from .crs import (CRS, LONLAT, REGRIDDING, RegridError, as_crs, crs_from_attrs, describe, is_equal_area,
                  laea_crs, transform_xy, transformer)

shapely = require("shapely", "geo", REGRIDDING)

__all__ = ["CellSet", "Grid", "Polygons", "read_grid", "read_polygons", "read_cells", "write_scrip",
           "write_esmf_mesh", "VECTOR_SUFFIXES", "NETCDF_SUFFIXES"]

VECTOR_SUFFIXES = (".gpkg", ".shp", ".parquet", ".geoparquet", ".geojson", ".json", ".fgb")
NETCDF_SUFFIXES = (".nc", ".nc4", ".netcdf", ".cdf", ".nc3")


# ----------------------------------------------------------------------------------------------
# common interface
# ----------------------------------------------------------------------------------------------
class CellSet:
    """Interface shared by :class:`Grid` and :class:`Polygons`.

    Attributes every cell set has: ``crs`` (:class:`pyproj.CRS`), ``mask`` (bool array of
    length ``size``; ``True`` = the cell takes part in regridding), ``ids`` (array of str or
    ``None``) and ``source`` (where it came from, for messages and file metadata).
    """

    crs: CRS
    mask: np.ndarray
    ids: np.ndarray | None
    source: str
    source_format: str | None = None  # "scrip", "esmfmesh", "ugrid", "gridspec", "vector", None (in memory)

    # --- sizes -----------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        raise NotImplementedError

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def grid_dims(self) -> np.ndarray:
        """ESMF ``*_grid_dims``: the shape in Fortran order (fastest-varying dimension first)."""
        return np.asarray(self.shape[::-1], dtype=np.int32)

    @property
    def is_geographic(self) -> bool:
        return bool(self.crs.is_geographic)

    # --- geometry --------------------------------------------------------------------------
    def cell_polygons(self, target_crs: CRS, index: np.ndarray | None = None,
                      densify_deg: float | None = None) -> np.ndarray:
        """Cells ``index`` (all when ``None``) as shapely polygons in ``target_crs``."""
        raise NotImplementedError

    def centers(self, target_crs: CRS | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Cell centres (flattened, length ``size``) in ``target_crs`` (own CRS when ``None``)."""
        raise NotImplementedError

    def lonlat_centers(self) -> tuple[np.ndarray, np.ndarray]:
        return self.centers(LONLAT)

    def lonlat_vertices(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Cell corners in degrees, shape ``(size, nv)`` each, or ``None`` when not a fixed small set."""
        return None

    def describe(self) -> str:
        raise NotImplementedError


def _as_bool_mask(mask: Any, n: int, shape: tuple[int, ...], what: str) -> np.ndarray:
    if mask is None:
        return np.ones(n, dtype=bool)
    m = np.asarray(mask)
    if m.size != n:
        raise RegridError(f"{what}: mask has {m.size} values (shape {m.shape}) but the cell set has {n} cells "
                          f"(shape {shape})")
    if m.dtype == bool:
        return m.reshape(n).copy()
    m = m.reshape(n)
    if np.issubdtype(m.dtype, np.floating):
        return np.isfinite(m) & (m != 0)
    return m != 0


# ----------------------------------------------------------------------------------------------
# structured grids
# ----------------------------------------------------------------------------------------------
class Grid(CellSet):
    """A logically rectangular grid of cells.

    Parameters
    ----------
    x, y:
        Cell-centre coordinates, either 1-D (``x`` of length ``nx``, ``y`` of length ``ny``:
        a rectilinear grid) or both 2-D with shape ``(ny, nx)`` (a curvilinear grid), in the
        units of ``crs`` (degrees for a geographic CRS, usually metres for a projected one).
    crs:
        Anything :class:`pyproj.CRS` accepts.
    x_bounds, y_bounds:
        Rectilinear only: cell edges, shape ``(nx, 2)`` and ``(ny, 2)``. Inferred from the
        centres (half-way points, ends extrapolated) when omitted.
    vertices:
        Curvilinear only: the 4 cell corners, shape ``(ny, nx, 4, 2)`` (last axis x, y) in the
        CF order (j-½,i-½), (j-½,i+½), (j+½,i+½), (j+½,i-½). Inferred from the centres when omitted.
    mask:
        ``(ny, nx)``; non-zero / ``True`` = active cell. All active when omitted.
    dims:
        Names of the ``(y, x)`` dimensions in the file the grid was read from.
    """

    def __init__(self, x: Any, y: Any, crs: Any, *, x_bounds: Any = None, y_bounds: Any = None,
                 vertices: Any = None, mask: Any = None, dims: Sequence[str] = ("y", "x"),
                 source: str = "<memory>", names: Sequence[str] | None = None):
        self.crs = as_crs(crs, "Grid crs")
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        self.dims = tuple(dims)
        self.names = tuple(names) if names is not None else (self.dims[1], self.dims[0])
        self.source = str(source)
        self.source_format = None
        self.ids = None
        if x.ndim == 1 and y.ndim == 1:
            if x.size < 1 or y.size < 1:
                raise RegridError(f"Grid {source}: empty coordinates (x has {x.size}, y has {y.size} values)")
            self.kind = "rectilinear"
            self.x, self.y = x, y
            self.x_bounds = self._bounds_1d(x, x_bounds, "x")
            self.y_bounds = self._bounds_1d(y, y_bounds, "y")
            self.vertices = None
        elif x.ndim == 2 and y.ndim == 2:
            if x.shape != y.shape:
                raise RegridError(f"Grid {source}: 2-D x has shape {x.shape} but y has shape {y.shape}")
            if min(x.shape) < 1:
                raise RegridError(f"Grid {source}: empty 2-D coordinates {x.shape}")
            self.kind = "curvilinear"
            self.x, self.y = x, y
            self.x_bounds = self.y_bounds = None
            if vertices is None:
                if min(x.shape) < 2:
                    raise RegridError(f"Grid {source}: cannot infer cell corners of a curvilinear grid of shape "
                                      f"{x.shape}; give vertices=")
                vertices = _infer_curvilinear_vertices(x, y)
            v = np.asarray(vertices, dtype=np.float64)
            if v.shape != x.shape + (4, 2):
                raise RegridError(f"Grid {source}: vertices must have shape {x.shape + (4, 2)}, got {v.shape}")
            self.vertices = v
        else:
            raise RegridError(f"Grid {source}: x and y must both be 1-D (rectilinear) or both 2-D (curvilinear); "
                              f"got x.ndim={x.ndim}, y.ndim={y.ndim}")
        for name, arr in (("x", self.x), ("y", self.y)):
            if not np.all(np.isfinite(arr)):
                raise RegridError(f"Grid {source}: {name} centre coordinates contain NaN/inf; masked coordinates "
                                  f"are not supported")
        self.mask = _as_bool_mask(mask, self.size, self.shape, f"Grid {source}")

    # --- construction helpers ----------------------------------------------------------------
    @staticmethod
    def _bounds_1d(c: np.ndarray, bounds: Any, name: str) -> np.ndarray:
        if bounds is not None:
            b = np.asarray(bounds, dtype=np.float64)
            if b.shape != (c.size, 2):
                raise RegridError(f"Grid: {name}_bounds must have shape ({c.size}, 2), got {b.shape}")
            return b
        if c.size == 1:
            raise RegridError(f"Grid: cannot infer the cell size from a single {name} coordinate; give {name}_bounds")
        d = np.diff(c)
        if np.any(d == 0) or not (np.all(d > 0) or np.all(d < 0)):
            raise RegridError(f"Grid: {name} coordinates must be strictly monotonic")
        mid = 0.5 * (c[1:] + c[:-1])
        edges = np.concatenate([[c[0] - (mid[0] - c[0])], mid, [c[-1] + (c[-1] - mid[-1])]])
        return np.column_stack([edges[:-1], edges[1:]])

    @property
    def shape(self) -> tuple[int, int]:
        if self.kind == "rectilinear":
            return (self.y.size, self.x.size)
        return tuple(self.x.shape)  # type: ignore[return-value]

    @property
    def ny(self) -> int:
        return self.shape[0]

    @property
    def nx(self) -> int:
        return self.shape[1]

    def describe(self) -> str:
        return (f"{self.kind} grid {self.ny} x {self.nx} ({self.size} cells, {int(self.mask.sum())} active) "
                f"in {describe(self.crs)} from {self.source}")

    def __repr__(self) -> str:
        return f"<Grid {self.describe()}>"

    # --- coordinates -------------------------------------------------------------------------
    def centers_2d(self) -> tuple[np.ndarray, np.ndarray]:
        if self.kind == "rectilinear":
            X, Y = np.meshgrid(self.x, self.y)
            return X, Y
        return self.x, self.y

    def centers(self, target_crs: CRS | None = None) -> tuple[np.ndarray, np.ndarray]:
        X, Y = self.centers_2d()
        X, Y = X.reshape(-1), Y.reshape(-1)
        if target_crs is None or as_crs(target_crs) == self.crs:
            return X.copy(), Y.copy()
        return transform_xy(self.crs, as_crs(target_crs), X, Y)

    def vertex_array(self, index: np.ndarray | None = None, nseg: int = 1) -> np.ndarray:
        """Cell rings in the grid CRS, shape ``(m, 4 * nseg, 2)`` (unclosed, each edge split in ``nseg``)."""
        if self.kind == "rectilinear":
            if index is None:
                jj, ii = np.divmod(np.arange(self.size), self.nx)
            else:
                jj, ii = np.divmod(np.asarray(index, dtype=np.int64), self.nx)
            x0, x1 = self.x_bounds[ii, 0], self.x_bounds[ii, 1]
            y0, y1 = self.y_bounds[jj, 0], self.y_bounds[jj, 1]
            if self.is_geographic:
                y0, y1 = np.clip(y0, -90.0, 90.0), np.clip(y1, -90.0, 90.0)
            corners = np.stack([np.stack([x0, y0], -1), np.stack([x1, y0], -1),
                                np.stack([x1, y1], -1), np.stack([x0, y1], -1)], axis=1)
        else:
            v = self.vertices.reshape(-1, 4, 2)
            corners = v if index is None else v[np.asarray(index, dtype=np.int64)]
        if nseg <= 1:
            return corners
        t = np.arange(nseg, dtype=np.float64) / nseg  # start point of each sub-segment
        nxt = np.roll(corners, -1, axis=1)
        pts = corners[:, :, None, :] + (nxt - corners)[:, :, None, :] * t[None, None, :, None]
        return pts.reshape(corners.shape[0], 4 * nseg, 2)

    def _nseg_for(self, densify_deg: float | None) -> int:
        if not densify_deg or not self.is_geographic:
            return 1
        if self.kind == "rectilinear":
            span = max(np.abs(np.diff(self.x_bounds, axis=1)).max(), np.abs(np.diff(self.y_bounds, axis=1)).max())
        else:
            v = self.vertices
            span = np.abs(np.roll(v, -1, axis=2) - v).max()
        return int(max(1, math.ceil(span / float(densify_deg))))

    def cell_polygons(self, target_crs: CRS, index: np.ndarray | None = None,
                      densify_deg: float | None = None) -> np.ndarray:
        target_crs = as_crs(target_crs)
        ring = self.vertex_array(index, self._nseg_for(densify_deg))
        m, k, _ = ring.shape
        if m == 0:
            return np.empty(0, dtype=object)
        if target_crs != self.crs:
            tx, ty = transformer(self.crs, target_crs).transform(ring[..., 0].ravel(), ring[..., 1].ravel())
            ring = np.stack([np.asarray(tx).reshape(m, k), np.asarray(ty).reshape(m, k)], axis=-1)
        if not np.all(np.isfinite(ring)):
            bad = int((~np.isfinite(ring).all(axis=(1, 2))).sum())
            raise RegridError(f"{self.describe()}: {bad} cells cannot be projected to {describe(target_crs)} "
                              f"(non-finite coordinates); choose another area_crs")
        closed = np.concatenate([ring, ring[:, :1, :]], axis=1)
        return shapely.polygons(closed)

    def lonlat_vertices(self) -> tuple[np.ndarray, np.ndarray]:
        ring = self.vertex_array()
        lon, lat = transform_xy(self.crs, LONLAT, ring[..., 0], ring[..., 1])
        return lon, lat

    def corner_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Corner coordinates as two ``(ny+1, nx+1)`` arrays in the grid CRS (the ESMF CORNER stagger)."""
        if self.kind == "rectilinear":
            xe = _edges_from_bounds(self.x_bounds)
            ye = _edges_from_bounds(self.y_bounds)
            return np.meshgrid(xe, ye)
        v = self.vertices
        ny, nx = self.shape
        cx = np.empty((ny + 1, nx + 1))
        cy = np.empty((ny + 1, nx + 1))
        cx[:ny, :nx], cy[:ny, :nx] = v[:, :, 0, 0], v[:, :, 0, 1]
        cx[:ny, nx], cy[:ny, nx] = v[:, -1, 1, 0], v[:, -1, 1, 1]
        cx[ny, :nx], cy[ny, :nx] = v[-1, :, 3, 0], v[-1, :, 3, 1]
        cx[ny, nx], cy[ny, nx] = v[-1, -1, 2, 0], v[-1, -1, 2, 1]
        return cx, cy

    # --- spatial queries ---------------------------------------------------------------------
    def lon_period_offset(self, lon: np.ndarray) -> np.ndarray:
        """Shift longitudes by multiples of 360 into this (geographic) grid's longitude range."""
        if self.kind == "rectilinear":
            lo = float(np.min(self.x_bounds))
            hi = float(np.max(self.x_bounds))
        else:
            lo = float(np.min(self.vertices[..., 0]))
            hi = float(np.max(self.vertices[..., 0]))
        centre = 0.5 * (lo + hi)
        return (np.asarray(lon, dtype=np.float64) - centre + 180.0) % 360.0 - 180.0 + centre

    def candidate_index(self, xmin: float, ymin: float, xmax: float, ymax: float) -> np.ndarray:
        """Active cells whose bounding box meets the box (in the grid CRS)."""
        if self.kind == "rectilinear":
            xlo, xhi = self.x_bounds.min(axis=1), self.x_bounds.max(axis=1)
            ylo, yhi = self.y_bounds.min(axis=1), self.y_bounds.max(axis=1)
            ii = np.nonzero((xhi >= xmin) & (xlo <= xmax))[0]
            jj = np.nonzero((yhi >= ymin) & (ylo <= ymax))[0]
            idx = (jj[:, None] * self.nx + ii[None, :]).ravel()
        else:
            v = self.vertices.reshape(-1, 4, 2)
            ok = ((v[:, :, 0].max(1) >= xmin) & (v[:, :, 0].min(1) <= xmax)
                  & (v[:, :, 1].max(1) >= ymin) & (v[:, :, 1].min(1) <= ymax))
            idx = np.nonzero(ok)[0]
        return idx[self.mask[idx]]

    @property
    def is_uniform(self) -> bool:
        """Rectilinear with ascending, evenly spaced x and y (a BMI ``uniform_rectilinear`` grid)."""
        if self.kind != "rectilinear":
            return False
        for c in (self.x, self.y):
            if c.size > 1:
                d = np.diff(c)
                if np.any(d <= 0) or np.max(np.abs(d - d[0])) > 1e-6 * abs(d[0]):
                    return False
        return True

    # --- readers -------------------------------------------------------------------------------
    @classmethod
    def from_dataset(cls, ds: Any, var: str | None = None, *, x: str | None = None, y: str | None = None,
                     crs: Any = None, mask: Any = None, source: str = "<dataset>") -> "Grid":
        """Build a grid from an :class:`xarray.Dataset` following the CF conventions.

        ``var`` names the data variable whose horizontal grid is wanted (found automatically
        when the file has a single gridded variable); ``x``/``y`` name the coordinate variables
        (found from ``axis``, ``standard_name``, ``units`` and common names otherwise); ``crs``
        overrides the CRS found in the file; ``mask`` is a variable name or an array
        (non-zero = active).
        """
        return _grid_from_cf(ds, var, x, y, crs, mask, source)


def _edges_from_bounds(b: np.ndarray) -> np.ndarray:
    return np.concatenate([b[:, 0], b[-1:, 1]])


def _infer_curvilinear_vertices(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Corner estimate for a curvilinear grid: average of the 4 surrounding centres (edges extrapolated)."""

    def pad(a: np.ndarray) -> np.ndarray:
        p = np.empty((a.shape[0] + 2, a.shape[1] + 2))
        p[1:-1, 1:-1] = a
        p[0, 1:-1] = 2 * a[0] - a[1]
        p[-1, 1:-1] = 2 * a[-1] - a[-2]
        p[:, 0] = 2 * p[:, 1] - p[:, 2]
        p[:, -1] = 2 * p[:, -2] - p[:, -3]
        return p

    cs = []
    for a in (x, y):
        p = pad(a)
        c = 0.25 * (p[:-1, :-1] + p[1:, :-1] + p[:-1, 1:] + p[1:, 1:])  # (ny+1, nx+1)
        cs.append(c)
    cx, cy = cs
    v = np.empty(x.shape + (4, 2))
    for k, (dj, di) in enumerate(((0, 0), (0, 1), (1, 1), (1, 0))):
        v[:, :, k, 0] = cx[dj:dj + x.shape[0], di:di + x.shape[1]]
        v[:, :, k, 1] = cy[dj:dj + x.shape[0], di:di + x.shape[1]]
    return v


# ----------------------------------------------------------------------------------------------
# CF NetCDF grids
# ----------------------------------------------------------------------------------------------
_LON_UNITS = {"degrees_east", "degree_east", "degree_e", "degrees_e", "degreee", "degreese"}
_LAT_UNITS = {"degrees_north", "degree_north", "degree_n", "degrees_n", "degreen", "degreesn"}
_LON_NAMES = {"lon", "longitude", "nav_lon", "xlong", "xlong_m", "glamt", "lon_rho", "long"}
_LAT_NAMES = {"lat", "latitude", "nav_lat", "xlat", "xlat_m", "gphit", "lat_rho"}
_X_NAMES = {"x", "easting", "west_east", "xc", "projection_x_coordinate"}
_Y_NAMES = {"y", "northing", "south_north", "yc", "projection_y_coordinate"}


def _axis_kind(name: str, attrs: dict) -> str | None:
    sn = str(attrs.get("standard_name", "")).lower()
    units = str(attrs.get("units", "")).lower().replace(" ", "")
    axis = str(attrs.get("axis", "")).upper()
    lname = name.lower()
    if sn == "longitude" or units in _LON_UNITS or lname in _LON_NAMES:
        return "lon"
    if sn == "latitude" or units in _LAT_UNITS or lname in _LAT_NAMES:
        return "lat"
    if sn in ("projection_x_coordinate", "grid_longitude") or axis == "X" or lname in _X_NAMES:
        return "x"
    if sn in ("projection_y_coordinate", "grid_latitude") or axis == "Y" or lname in _Y_NAMES:
        return "y"
    return None


def _pick_data_var(ds: Any, var: str | None, source: str) -> str:
    if var is not None:
        if var not in ds.variables:
            raise RegridError(f"{source}: variable {var!r} not found; variables are {sorted(map(str, ds.variables))}")
        return var
    skip = set()
    for v in ds.variables.values():
        for key in ("bounds", "coordinates", "grid_mapping"):
            val = v.attrs.get(key)
            if isinstance(val, str):
                skip.update(tok.rstrip(":") for tok in val.split())
    cands = [str(n) for n, v in ds.data_vars.items() if v.ndim >= 2 and str(n) not in skip
             and _axis_kind(str(n), dict(v.attrs)) is None]
    if len(cands) == 1:
        return cands[0]
    if not cands:
        raise RegridError(f"{source}: no variable with 2 or more dimensions to take the grid from; pass var=")
    raise RegridError(f"{source}: several gridded variables {cands}; pass var= to choose the one whose grid is wanted")


def _grid_from_cf(ds: Any, var: str | None, xname: str | None, yname: str | None, crs: Any, mask: Any,
                  source: str) -> Grid:
    vname = _pick_data_var(ds, var, source)
    v = ds[vname]
    dims = tuple(str(d) for d in v.dims)
    kinds: dict[str, str] = {}
    if xname is None or yname is None:
        # 1-D dimension coordinates of the variable
        for d in dims:
            if d in ds.variables and ds[d].ndim == 1:
                k = _axis_kind(d, dict(ds[d].attrs))
                if k:
                    kinds[d] = k
        xs = [d for d, k in kinds.items() if k in ("x", "lon")]
        ys = [d for d, k in kinds.items() if k in ("y", "lat")]
        if xname is None and len(xs) == 1 and len(ys) == 1:
            xname, yname = xs[0], ys[0]
        else:
            # 2-D auxiliary coordinates (CF "coordinates" attribute, then any 2-D lon/lat on the same dims)
            names = str(v.attrs.get("coordinates", "")).split() + [str(n) for n in ds.variables]
            lon2 = lat2 = None
            for n in names:
                if n not in ds.variables or ds[n].ndim != 2 or not set(ds[n].dims) <= set(dims):
                    continue
                k = _axis_kind(n, dict(ds[n].attrs))
                if k == "lon" and lon2 is None:
                    lon2 = n
                elif k == "lat" and lat2 is None:
                    lat2 = n
            if lon2 and lat2:
                xname, yname = lon2, lat2
            else:
                raise RegridError(
                    f"{source}: cannot find the horizontal coordinates of {vname!r} (dims {dims}); "
                    f"pass x= and y= (names of the x/longitude and y/latitude coordinate variables)")
    for n in (xname, yname):
        if n not in ds.variables:
            raise RegridError(f"{source}: coordinate variable {n!r} not found")
    xv, yv = ds[xname], ds[yname]
    xkind = _axis_kind(xname, dict(xv.attrs)) or "x"
    ykind = _axis_kind(yname, dict(yv.attrs)) or "y"

    # CRS
    gm_attrs = None
    gm = v.attrs.get("grid_mapping")
    if isinstance(gm, str) and gm.strip():
        gm_name = gm.split()[0].rstrip(":")
        if gm_name in ds.variables:
            gm_attrs = dict(ds[gm_name].attrs)
    extra = [dict(ds[n].attrs) for n in ("crs", "spatial_ref", "ProjectionCoordinateSystem") if n in ds.variables]
    if crs is not None:
        the_crs = as_crs(crs, f"{source} crs")
    else:
        the_crs = crs_from_attrs(dict(v.attrs), *extra, dict(ds.attrs), grid_mapping_attrs=gm_attrs)
        geographic_coords = xkind == "lon" and ykind == "lat"
        if the_crs is None:
            if geographic_coords:
                the_crs = LONLAT
            else:
                raise RegridError(
                    f"{source}: {vname!r} has projected coordinates ({xname}, {yname}) but the file carries no CRS "
                    f"(no CF grid_mapping, crs_wkt, spatial_ref, proj4 or esri_pe_string attribute); pass crs=")
        elif geographic_coords and the_crs.is_projected:
            the_crs = the_crs.geodetic_crs
    xd = np.asarray(xv.values, dtype=np.float64)
    yd = np.asarray(yv.values, dtype=np.float64)
    xd, yd = _scale_km(xd, xv.attrs, the_crs), _scale_km(yd, yv.attrs, the_crs)
    if str(xv.attrs.get("units", "")).lower() in ("radians", "radian") and the_crs.is_geographic:
        xd, yd = np.rad2deg(xd), np.rad2deg(yd)

    if xd.ndim == 1 and yd.ndim == 1:
        ydim, xdim = str(yv.dims[0]), str(xv.dims[0])
        xb = _read_bounds(ds, xv, (xd.size, 2))
        yb = _read_bounds(ds, yv, (yd.size, 2))
        if xb is not None:
            xb = _scale_km(xb, xv.attrs, the_crs)
        if yb is not None:
            yb = _scale_km(yb, yv.attrs, the_crs)
        grid_dims = (ydim, xdim)
        m = _read_mask(ds, mask, grid_dims, source)
        g = Grid(xd, yd, the_crs, x_bounds=xb, y_bounds=yb, mask=m, dims=grid_dims, source=source,
                 names=(xname, yname))
    elif xd.ndim == 2 and yd.ndim == 2:
        grid_dims = tuple(str(d) for d in xv.dims)
        if tuple(str(d) for d in yv.dims) != grid_dims:
            raise RegridError(f"{source}: 2-D coordinates {xname}{tuple(xv.dims)} and {yname}{tuple(yv.dims)} "
                              f"have different dimensions")
        vb = None
        bx = _read_bounds(ds, xv, xd.shape + (4,))
        by = _read_bounds(ds, yv, yd.shape + (4,))
        if bx is not None and by is not None:
            vb = np.stack([bx, by], axis=-1)
        m = _read_mask(ds, mask, grid_dims, source)
        g = Grid(xd, yd, the_crs, vertices=vb, mask=m, dims=grid_dims, source=source, names=(xname, yname))
    else:
        raise RegridError(f"{source}: coordinates {xname} ({xd.ndim}-D) and {yname} ({yd.ndim}-D) must both be "
                          f"1-D or both 2-D")
    missing = [d for d in g.dims if d not in dims]
    if missing:
        raise RegridError(f"{source}: variable {vname!r} with dims {dims} does not span the grid dims {g.dims}")
    g.variable = vname
    g.source_format = "gridspec"
    return g


def _scale_km(a: np.ndarray, attrs: dict, crs: CRS) -> np.ndarray:
    units = str(attrs.get("units", "")).strip().lower()
    if units in ("km", "kilometer", "kilometers", "kilometre", "kilometres") and crs.is_projected:
        try:
            unit = crs.axis_info[0].unit_name.lower()
        except Exception:
            unit = "metre"
        if unit in ("metre", "meter", "m"):
            return a * 1000.0
    return a


def _read_bounds(ds: Any, coord: Any, shape: tuple[int, ...]) -> np.ndarray | None:
    b = coord.attrs.get("bounds")
    if not isinstance(b, str) or b not in ds.variables:
        return None
    arr = np.asarray(ds[b].values, dtype=np.float64)
    if arr.shape != shape:
        raise RegridError(f"bounds variable {b!r} has shape {arr.shape}, expected {shape}")
    return arr


def _read_mask(ds: Any, mask: Any, grid_dims: tuple[str, ...], source: str) -> Any:
    if mask is None or not isinstance(mask, str):
        return mask
    if mask not in ds.variables:
        raise RegridError(f"{source}: mask variable {mask!r} not found")
    mv = ds[mask]
    if set(str(d) for d in mv.dims) != set(grid_dims):
        raise RegridError(f"{source}: mask variable {mask!r} has dims {tuple(mv.dims)}, expected {grid_dims}")
    return np.asarray(mv.transpose(*grid_dims).values)


# ----------------------------------------------------------------------------------------------
# polygons
# ----------------------------------------------------------------------------------------------
class Polygons(CellSet):
    """Unstructured cells: one (multi)polygon per cell, with identifiers.

    Parameters
    ----------
    geoms:
        Sequence of shapely Polygon/MultiPolygon geometries (in ``crs``).
    crs:
        Anything :class:`pyproj.CRS` accepts.
    ids:
        One identifier per cell (converted to ``str``); ``"0".."n-1"`` when omitted.
    centers:
        Optional ``(x, y)`` arrays of cell centres in ``crs`` (an ESMF mesh's ``centerCoords``);
        centroids computed in an equal-area projection otherwise.
    mask:
        Non-zero / ``True`` = active cell.
    fields:
        Optional attribute columns (dict of arrays) carried along for the user.
    """

    def __init__(self, geoms: Any, crs: Any, ids: Any = None, *, centers: Any = None, mask: Any = None,
                 fields: dict | None = None, source: str = "<memory>"):
        self.crs = as_crs(crs, "Polygons crs")
        g = np.asarray(geoms, dtype=object).reshape(-1)
        self.source = str(source)
        self.source_format = None
        if g.size == 0:
            raise RegridError(f"Polygons {source}: no geometries")
        types = shapely.get_type_id(g)
        bad = np.nonzero(~np.isin(types, (3, 6)))[0]  # 3 Polygon, 6 MultiPolygon
        if bad.size:
            k = int(bad[0])
            kind = "missing" if g[k] is None else g[k].geom_type
            raise RegridError(f"Polygons {source}: feature {k} has a {kind} geometry; only Polygon and "
                              f"MultiPolygon are allowed ({bad.size} such features)")
        empty = np.nonzero(shapely.is_empty(g))[0]
        if empty.size:
            raise RegridError(f"Polygons {source}: {empty.size} empty geometries (first at feature {int(empty[0])})")
        self.geoms = g
        if ids is None:
            self.ids = np.array([str(i) for i in range(g.size)], dtype=object)
        else:
            ids = np.asarray(ids).reshape(-1)
            if ids.size != g.size:
                raise RegridError(f"Polygons {source}: {ids.size} ids for {g.size} geometries")
            self.ids = np.array([str(i) for i in ids], dtype=object)
            u, c = np.unique(self.ids.astype(str), return_counts=True)
            if np.any(c > 1):
                raise RegridError(f"Polygons {source}: duplicate ids {list(u[c > 1][:10])}")
        self._centers = None
        if centers is not None:
            cx, cy = (np.asarray(c, dtype=np.float64).reshape(-1) for c in centers)
            if cx.size != g.size or cy.size != g.size:
                raise RegridError(f"Polygons {source}: centers must have {g.size} values each")
            self._centers = (cx, cy)
        self.fields = dict(fields or {})
        self.mask = _as_bool_mask(mask, g.size, (g.size,), f"Polygons {source}")

    @property
    def shape(self) -> tuple[int]:
        return (int(self.geoms.size),)

    def describe(self) -> str:
        return f"{self.size} polygons ({int(self.mask.sum())} active) in {describe(self.crs)} from {self.source}"

    def __repr__(self) -> str:
        return f"<Polygons {self.describe()}>"

    def _project(self, target_crs: CRS, geoms: np.ndarray) -> np.ndarray:
        if target_crs == self.crs:
            return geoms
        tr = transformer(self.crs, target_crs)

        def fn(xy: np.ndarray) -> np.ndarray:
            tx, ty = tr.transform(xy[:, 0], xy[:, 1])
            return np.column_stack([tx, ty])

        out = shapely.transform(geoms, fn)
        coords = shapely.get_coordinates(out)
        if not np.all(np.isfinite(coords)):
            raise RegridError(f"{self.describe()}: some vertices cannot be projected to {describe(target_crs)}")
        return out

    @property
    def valid_geoms(self) -> np.ndarray:
        """The geometries, with invalid ones (self-touching rings...) repaired by ``shapely.make_valid``."""
        if getattr(self, "_valid", None) is None:
            bad = ~shapely.is_valid(self.geoms)
            g = self.geoms
            if bad.any():
                g = g.copy()
                g[bad] = shapely.make_valid(g[bad], method="structure", keep_collapsed=False)
                first = self.ids[np.nonzero(bad)[0][0]]
                warnings.warn(f"{self.source}: {int(bad.sum())} invalid polygons (first: {first!r}, "
                              f"{shapely.is_valid_reason(self.geoms[bad][0])}) repaired with shapely.make_valid",
                              stacklevel=3)
            self._valid = g
        return self._valid

    def cell_polygons(self, target_crs: CRS, index: np.ndarray | None = None,
                      densify_deg: float | None = None) -> np.ndarray:
        target_crs = as_crs(target_crs)
        geoms = self.valid_geoms
        g = geoms if index is None else geoms[np.asarray(index, dtype=np.int64)]
        if densify_deg and self.is_geographic:
            g = shapely.segmentize(g, float(densify_deg))
        return self._project(target_crs, g)

    def lonlat_vertices(self, max_values: int = 50_000_000) -> tuple[np.ndarray, np.ndarray] | None:
        """Corners in degrees, ``(size, nv)`` each with ``nv`` the largest corner count (ESMF's ``xv``/``yv``).

        Each cell's exterior ring without its closing vertex (of its largest part when it has several;
        holes are not listed); shorter rings are padded by repeating their last corner. Polygons in a
        projected CRS give their vertices transformed to longitude/latitude. ``None`` when the array
        would hold more than ``max_values`` numbers (the weight file is then written without them).
        """
        g = self.geoms if self.is_geographic else self._project(LONLAT, self.geoms)
        parts, pidx = shapely.get_parts(g, return_index=True)
        if parts.size != g.size:
            order = np.lexsort((-shapely.area(parts), pidx))
            first = order[np.r_[True, pidx[order][1:] != pidx[order][:-1]]]
            parts = parts[first]
        xy, idx = shapely.get_coordinates(shapely.get_exterior_ring(parts), return_index=True)
        counts = np.bincount(idx, minlength=parts.size) - 1
        nv = int(counts.max())
        if nv * parts.size > max_values:
            return None
        start = np.r_[0, np.cumsum(counts + 1)[:-1]]
        pos = start[:, None] + np.minimum(np.arange(nv)[None, :], (counts - 1)[:, None])
        return xy[pos, 0], xy[pos, 1]

    def centers(self, target_crs: CRS | None = None) -> tuple[np.ndarray, np.ndarray]:
        target_crs = self.crs if target_crs is None else as_crs(target_crs)
        if self._centers is not None:
            return transform_xy(self.crs, target_crs, *self._centers)
        if is_equal_area(self.crs):
            c = shapely.centroid(self.geoms)
            return transform_xy(self.crs, target_crs, shapely.get_x(c), shapely.get_y(c))
        xmin, ymin, xmax, ymax = shapely.total_bounds(self.geoms)
        lon0, lat0 = transform_xy(self.crs, LONLAT, np.array([0.5 * (xmin + xmax)]), np.array([0.5 * (ymin + ymax)]))
        area_crs = laea_crs(float(lon0[0]), float(lat0[0]), like=self.crs)
        c = shapely.centroid(self.cell_polygons(area_crs, densify_deg=0.05))
        return transform_xy(area_crs, target_crs, shapely.get_x(c), shapely.get_y(c))


def read_polygons(path: str | os.PathLike, id_field: str | None = None, layer: str | int | None = None,
                  *, crs: Any = None) -> Polygons:
    """Read polygons (hydrofabric divides, HRUs) from a vector file.

    GeoPackage, Shapefile, GeoJSON and FlatGeobuf are read with :mod:`pyogrio`; GeoParquet
    (``.parquet``/``.geoparquet``) with :mod:`pyarrow` (WKB encoding, CRS from the ``geo``
    metadata, OGC:CRS84 when absent as the GeoParquet specification says).

    ``id_field`` names the identifier column; when ``None`` the first present of
    ``divide_id, id, catchment_id, cat_id, HRU_ID, hru_id, basin_id, gauge_id, name`` is used,
    then the feature number. ``layer`` chooses a layer of a multi-layer file (a GeoPackage
    hydrofabric's ``divides`` layer is chosen automatically). ``crs`` overrides/sets the CRS.
    """
    path = Path(path)
    if not path.exists():
        raise RegridError(f"polygon file {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".geoparquet"):
        geoms, fields, file_crs = _read_geoparquet(path)
        layer_name = None
    else:
        geoms, fields, file_crs, layer_name = _read_ogr(path, layer)
    the_crs = as_crs(crs, "crs") if crs is not None else file_crs
    if the_crs is None:
        raise RegridError(f"{path}: the file has no coordinate reference system; pass crs=")
    if id_field is None:
        for cand in ("divide_id", "id", "catchment_id", "cat_id", "HRU_ID", "hru_id", "basin_id", "gauge_id", "name"):
            if cand in fields:
                id_field = cand
                break
    if id_field is not None:
        if id_field not in fields:
            raise RegridError(f"{path}: id field {id_field!r} not found; fields are {sorted(fields)}")
        ids = fields[id_field]
    else:
        ids = None
    missing = np.nonzero(np.asarray([g is None for g in geoms]))[0]
    if missing.size:
        raise RegridError(f"{path}: {missing.size} features without geometry (first: feature {int(missing[0])})")
    src = str(path) + (f" (layer {layer_name})" if layer_name else "")
    polys = Polygons(geoms, the_crs, ids, fields=fields, source=src)
    polys.id_field = id_field
    polys.source_format = "vector"
    polys.path = str(path)
    return polys


def _read_ogr(path: Path, layer: str | int | None) -> tuple[np.ndarray, dict, CRS | None, str | None]:
    pyogrio = require("pyogrio", "geo", f"reading the vector file {path.name}")
    require("pyogrio.raw", "geo", f"reading the vector file {path.name}")

    try:
        layers = pyogrio.list_layers(str(path))
    except Exception as exc:
        raise RegridError(f"{path}: cannot open as a vector file ({exc})") from None
    names = [str(n) for n, _ in layers]
    gtypes = {str(n): (str(t) if t is not None else "") for n, t in layers}
    if layer is None and len(names) > 1:
        poly_layers = [n for n in names if "polygon" in gtypes[n].lower()]
        if "divides" in names:
            layer = "divides"
        elif len(poly_layers) == 1:
            layer = poly_layers[0]
        else:
            raise RegridError(f"{path}: several layers {names}; pass layer=")
    if isinstance(layer, str) and layer not in names:
        raise RegridError(f"{path}: layer {layer!r} not found; layers are {names}")
    try:
        meta, _fids, geometry, field_data = pyogrio.raw.read(str(path), layer=layer)
    except Exception as exc:
        raise RegridError(f"{path}: cannot read layer {layer!r} ({exc})") from None
    geoms = shapely.from_wkb(geometry)
    fields = {str(n): np.asarray(a) for n, a in zip(meta["fields"], field_data)}
    crs = as_crs(meta["crs"], f"{path} crs") if meta.get("crs") else None
    lname = layer if isinstance(layer, str) else (names[layer] if isinstance(layer, int) else names[0])
    return np.asarray(geoms, dtype=object), fields, crs, lname


def _read_geoparquet(path: Path) -> tuple[np.ndarray, dict, CRS | None]:
    pq = require("pyarrow.parquet", "geo", f"reading the GeoParquet file {path.name}")

    try:
        table = pq.read_table(str(path))
    except Exception as exc:
        raise RegridError(f"{path}: cannot read as Parquet ({exc})") from None
    meta = table.schema.metadata or {}
    geo = meta.get(b"geo")
    if geo is None:
        raise RegridError(f"{path}: Parquet file without GeoParquet 'geo' metadata")
    geo = json.loads(geo)
    col = geo.get("primary_column", "geometry")
    cinfo = geo.get("columns", {}).get(col, {})
    enc = str(cinfo.get("encoding", "WKB")).upper()
    if enc != "WKB":
        raise RegridError(f"{path}: GeoParquet geometry encoding {enc!r} is not supported (only WKB)")
    if col not in table.column_names:
        raise RegridError(f"{path}: geometry column {col!r} missing")
    geoms = shapely.from_wkb(np.asarray(table.column(col).to_pylist(), dtype=object))
    crs_info = cinfo.get("crs", "OGC:CRS84")
    crs = None if crs_info is None else as_crs(crs_info if not isinstance(crs_info, dict) else json.dumps(crs_info),
                                              f"{path} crs")
    fields = {}
    for name in table.column_names:
        if name == col:
            continue
        fields[str(name)] = np.asarray(table.column(name).to_pylist(), dtype=object)
    return np.asarray(geoms, dtype=object), fields, crs


# ----------------------------------------------------------------------------------------------
# NetCDF grid files: CF / SCRIP / ESMF mesh
# ----------------------------------------------------------------------------------------------
def read_grid(path: str | os.PathLike, var: str | None = None, *, x: str | None = None, y: str | None = None,
              crs: Any = None, mask: Any = None, mesh: str | None = None) -> Grid | Polygons:
    """Read a grid description from a NetCDF file.

    The format is detected from the variables present:

    * ESMF unstructured mesh (``nodeCoords``, ``elementConn``, ``numElementConn``; 1-based unless
      ``elementConn:start_index`` says otherwise; 1-D packed or 2-D ``-1``-padded connectivity;
      ``polygon_break_value`` for multi-part elements) -> :class:`Polygons` (ids from
      ``element_id`` when present, centres from ``centerCoords``, mask from ``elementMask``);
    * SCRIP (``grid_center_lat``...) -> curvilinear :class:`Grid` when ``grid_rank`` is 2,
      :class:`Polygons` when it is 1 (mask from ``grid_imask``);
    * UGRID 1.0 (a variable with ``cf_role = "mesh_topology"``): the faces of a 2-D mesh ->
      :class:`Polygons` (see :func:`_read_ugrid`; ``mesh`` names the topology variable when the file
      has several 2-D meshes, ``var`` a data variable whose ``mesh`` attribute names it, ``mask`` may
      be the name of a variable on the face dimension);
    * anything else is read as a CF grid with :meth:`Grid.from_dataset` (see there for
      ``var``, ``x``, ``y``, ``crs`` and ``mask``).
    """
    path = Path(path)
    if not path.exists():
        raise RegridError(f"grid file {str(path)!r} does not exist")
    import netCDF4

    try:
        nc = netCDF4.Dataset(str(path))
    except Exception as exc:
        raise RegridError(f"{path}: cannot open as NetCDF ({exc})") from None
    try:
        names = set(nc.variables)
        if {"nodeCoords", "elementConn"} <= names:
            out: Grid | Polygons = _read_esmf_mesh(nc, path, crs)
        elif "grid_center_lat" in names and "grid_center_lon" in names:
            out = _read_scrip(nc, path, crs)
        else:
            out = None  # type: ignore[assignment]
        if out is None and (mesh is not None or _ugrid_topologies(nc)):
            out = _read_ugrid(nc, path, crs, mesh, var=var, mask=mask)
        elif mesh is not None:
            raise RegridError(f"{path}: mesh={mesh!r} only applies to UGRID files, and this file has no variable "
                              f"with cf_role = \"mesh_topology\"")
    finally:
        nc.close()
    if out is not None:
        if mask is not None and not (isinstance(mask, str) and out.source_format == "ugrid"):
            out.mask = _as_bool_mask(mask, out.size, out.shape, str(path))
        return out
    import xarray as xr

    with xr.open_dataset(str(path), decode_times=False, mask_and_scale=True) as ds:
        g = _grid_from_cf(ds, var, x, y, crs, mask, str(path))
    g.path = str(path)
    return g


def _nc_attr(v: Any, name: str, default: Any = None) -> Any:
    return v.getncattr(name) if name in v.ncattrs() else default


def _units_to_degrees(arr: np.ndarray, units: str | None, what: str) -> tuple[np.ndarray, bool]:
    u = (units or "degrees").strip().lower()
    if u.startswith("rad"):
        return np.rad2deg(arr), True
    if u.startswith("deg"):
        return arr, True
    if u in ("km", "kilometers", "m", "meters", "metres"):
        return arr * (1000.0 if u.startswith("k") else 1.0), False
    raise RegridError(f"{what}: unknown coordinate units {units!r} (expected degrees, radians, km or m)")


def _polygons_from_connectivity(nodes: np.ndarray, idx: np.ndarray, nconn: np.ndarray) -> np.ndarray:
    """One polygon per cell from packed 0-based node indices ``idx`` (``nconn[k]`` nodes for cell ``k``)."""
    offsets = np.concatenate([[0], np.cumsum(nconn)])
    # closed rings: the first node again after each cell's last node
    full_idx = np.insert(idx, offsets[1:], idx[offsets[:-1]])
    ring_off = np.concatenate([[0], np.cumsum(nconn + 1)])
    poly_off = np.arange(nconn.size + 1)
    return shapely.from_ragged_array(shapely.GeometryType.POLYGON, nodes[full_idx], (ring_off, poly_off))


def _read_esmf_mesh(nc: Any, path: Path, crs: Any) -> Polygons:
    nc.set_auto_mask(False)
    nodes = np.asarray(nc["nodeCoords"][:], dtype=np.float64)
    if nodes.ndim != 2 or nodes.shape[1] < 2:
        raise RegridError(f"{path}: nodeCoords must be (nodeCount, coordDim), got {nodes.shape}")
    nodes, geographic = _units_to_degrees(nodes[:, :2], _nc_attr(nc["nodeCoords"], "units"), str(path))
    ec_var = nc["elementConn"]
    conn = np.asarray(ec_var[:], dtype=np.int64)
    start = int(_nc_attr(ec_var, "start_index", 1))
    brk = _nc_attr(ec_var, "polygon_break_value", None)
    fill = _nc_attr(ec_var, "_FillValue", -1)
    if "numElementConn" not in nc.variables:
        raise RegridError(f"{path}: ESMF mesh without numElementConn")
    nconn = np.asarray(nc["numElementConn"][:], dtype=np.int64)
    n_el = nconn.size
    if conn.ndim == 2:
        if conn.shape[0] != n_el:
            raise RegridError(f"{path}: elementConn has {conn.shape[0]} rows but numElementConn {n_el} elements")
        ok = np.arange(conn.shape[1])[None, :] < nconn[:, None]
        flat = conn[ok]
    elif conn.ndim == 1:
        if conn.size != int(nconn.sum()):
            raise RegridError(f"{path}: 1-D elementConn has {conn.size} entries but numElementConn sums to "
                              f"{int(nconn.sum())}")
        flat = conn
    else:
        raise RegridError(f"{path}: elementConn must be 1-D or 2-D")
    is_break = (flat == int(brk)) if brk is not None else np.zeros(flat.size, dtype=bool)
    idx = flat - start
    bad = (~is_break) & ((idx < 0) | (idx >= nodes.shape[0]) | (flat == fill))
    if np.any(bad):
        raise RegridError(f"{path}: elementConn refers to nodes outside 1..{nodes.shape[0]} "
                          f"(start_index {start}); first bad entry {int(flat[bad][0])}")
    offsets = np.concatenate([[0], np.cumsum(nconn)])
    geoms = np.empty(n_el, dtype=object)
    if not is_break.any():
        # vectorised: closed rings through shapely.from_ragged_array
        geoms[:] = _polygons_from_connectivity(nodes, idx, nconn)
    else:
        for e in range(n_el):
            seg = idx[offsets[e]:offsets[e + 1]]
            br = is_break[offsets[e]:offsets[e + 1]]
            parts, cur = [], []
            for k, b in zip(seg, br):
                if b:
                    if cur:
                        parts.append(cur)
                    cur = []
                else:
                    cur.append(k)
            if cur:
                parts.append(cur)
            polys = [shapely.Polygon(nodes[p]) for p in parts if len(p) >= 3]
            if not polys:
                raise RegridError(f"{path}: element {e} has no part with 3 or more nodes")
            # parts may be pieces of one polygon (e.g. the triangles of a polygon with holes): dissolve them
            geoms[e] = polys[0] if len(polys) == 1 else shapely.union_all(np.asarray(polys, dtype=object))
    centers = None
    if "centerCoords" in nc.variables:
        cc, _ = _units_to_degrees(np.asarray(nc["centerCoords"][:], dtype=np.float64)[:, :2],
                                  _nc_attr(nc["centerCoords"], "units", _nc_attr(nc["nodeCoords"], "units")), str(path))
        centers = (cc[:, 0], cc[:, 1])
    mask = np.asarray(nc["elementMask"][:]) if "elementMask" in nc.variables else None
    ids = None
    if "element_id_str" in nc.variables:
        import netCDF4

        ids = np.asarray(netCDF4.chartostring(nc["element_id_str"][:]), dtype=object).reshape(-1)
    else:
        for cand in ("element_id", "elementId", "element_ids"):
            if cand in nc.variables:
                ids = np.asarray(nc[cand][:]).reshape(-1)
                break
    if crs is not None:
        the_crs = as_crs(crs, f"{path} crs")
    elif geographic:
        the_crs = LONLAT
    else:
        raise RegridError(f"{path}: ESMF mesh in Cartesian units; pass crs= to say which projection they are in")
    p = Polygons(geoms, the_crs, ids, centers=centers, mask=mask, source=str(path))
    p.source_format = "esmfmesh"
    p.path = str(path)
    return p


# ----------------------------------------------------------------------------------------------
# UGRID 1.0 (ugrid-conventions.github.io): the faces of a 2-D mesh topology
# ----------------------------------------------------------------------------------------------
_UGRID_ID_NAMES = ("{mesh}_face_id", "{mesh}_face_ids", "face_id", "face_ids", "{mesh}_face_id_str", "face_id_str")


def _ugrid_topologies(nc: Any) -> list[str]:
    """Names of the variables with ``cf_role = "mesh_topology"``."""
    return [name for name, v in nc.variables.items() if str(_nc_attr(v, "cf_role", "")).strip() == "mesh_topology"]


def _attr_names(v: Any, attr: str) -> list[str]:
    return str(_nc_attr(v, attr, "") or "").split()


def _topology_dimension(v: Any) -> int | None:
    td = _nc_attr(v, "topology_dimension", _nc_attr(v, "dimension", None))  # "dimension": UGRID 0.9
    try:
        return int(np.asarray(td).reshape(-1)[0])
    except (TypeError, ValueError, IndexError):
        return None


def _pick_ugrid_mesh(nc: Any, path: Path, mesh: str | None, var: str | None) -> str:
    topo = _ugrid_topologies(nc)
    dims = {name: _topology_dimension(nc[name]) for name in topo}
    listing = ", ".join(f"{n!r} (topology_dimension {dims[n]})" for n in topo) or "none"
    if mesh is None and var is not None and var in nc.variables and _nc_attr(nc[var], "mesh", None):
        mesh = str(_nc_attr(nc[var], "mesh")).strip()
    if mesh is not None:
        if mesh not in nc.variables:
            raise RegridError(f"{path}: mesh {mesh!r} not found; the mesh topology variables are {listing}")
        if mesh not in topo:
            raise RegridError(f"{path}: variable {mesh!r} is not a UGRID mesh topology (no cf_role = "
                              f"\"mesh_topology\"); the mesh topology variables are {listing}")
        chosen = mesh
    else:
        two = [n for n in topo if dims[n] == 2]
        if len(two) > 1:
            raise RegridError(f"{path}: {len(two)} 2-D UGRID meshes ({', '.join(map(repr, two))}); pass mesh= to say "
                              f"which one holds the cells")
        if not two:
            raise RegridError(f"{path}: no 2-D UGRID mesh (faces) to regrid on; the mesh topology variables are "
                              f"{listing}. Conservative and bilinear regridding need cells: a 1-D network mesh "
                              f"(edges only) has none")
        chosen = two[0]
    td = dims[chosen]
    if td != 2:
        kind = {1: "a 1-D network mesh (nodes and edges, no faces)",
                3: "a 3-D volume mesh"}.get(td, f"topology_dimension {td!r}")
        raise RegridError(f"{path}: UGRID mesh {chosen!r} is {kind}; only 2-D meshes (topology_dimension 2, "
                          f"face_node_connectivity) can be read as cells")
    return chosen


def _ugrid_coordinate_pair(nc: Any, path: Path, names: list[str], what: str) -> tuple[str, str, bool]:
    """The (x, y) variable names among ``names`` and whether they are longitude/latitude.

    Longitude/latitude are preferred when the topology lists both them and projected x/y; variables
    that neither their ``standard_name``, ``units`` nor name identify are taken as x then y, in the
    order listed (``units`` then decide whether they are degrees).
    """
    missing = [n for n in names if n not in nc.variables]
    if missing:
        raise RegridError(f"{path}: {what} lists {', '.join(map(repr, missing))}, not in the file")
    kinds: dict[str, str] = {}
    for n in names:
        v = nc[n]
        k = _axis_kind(n, {a: _nc_attr(v, a) for a in v.ncattrs()})
        if k is not None and k not in kinds:
            kinds[k] = n
    if "lon" in kinds and "lat" in kinds:
        return kinds["lon"], kinds["lat"], True
    if "x" in kinds and "y" in kinds:
        return kinds["x"], kinds["y"], False
    if len(names) == 2 and not kinds:
        units = str(_nc_attr(nc[names[0]], "units", "") or "").strip().lower()
        return names[0], names[1], units.startswith(("deg", "rad"))
    raise RegridError(f"{path}: cannot tell x from y (or longitude from latitude) among {what} "
                      f"{' '.join(names)}; give them standard_name longitude/latitude or "
                      f"projection_x_coordinate/projection_y_coordinate")


def _ugrid_read_xy(nc: Any, path: Path, xname: str, yname: str, geographic: bool) -> tuple[np.ndarray, np.ndarray]:
    out = []
    for n in (xname, yname):
        v = nc[n]
        v.set_auto_maskandscale(True)
        a = np.ma.filled(np.ma.asarray(v[:], dtype=np.float64), np.nan).reshape(-1)
        units = _nc_attr(v, "units", None)
        if geographic:
            a, _ = _units_to_degrees(a, units or "degrees", f"{path} {n}")
        elif str(units or "").strip().lower() in ("km", "kilometer", "kilometers", "kilometre", "kilometres"):
            a = a * 1000.0
        out.append(a)
    return out[0], out[1]


def _ugrid_crs(nc: Any, path: Path, crs: Any, mesh: str, names: Sequence[str], geographic: bool) -> CRS:
    if crs is not None:
        return as_crs(crs, f"{path} crs")
    if geographic:
        return LONLAT
    # the grid mapping: on the coordinates, on the topology, or on a data variable defined on this mesh
    holders = [nc[n] for n in (*names, mesh)]
    holders += [v for v in nc.variables.values() if str(_nc_attr(v, "mesh", "")).strip() == mesh]
    for v in holders:
        gm = _nc_attr(v, "grid_mapping", None)
        if gm is None:
            continue
        gm_name = str(gm).split(":")[0].split()[0]
        if gm_name not in nc.variables:
            raise RegridError(f"{path}: grid_mapping variable {gm_name!r} (named by {v.name!r}) not found")
        g = nc[gm_name]
        the = crs_from_attrs(grid_mapping_attrs={a: _nc_attr(g, a) for a in g.ncattrs()})
        if the is not None:
            return the
    the = crs_from_attrs(*({a: _nc_attr(v, a) for a in v.ncattrs()} for v in holders),
                         {a: nc.getncattr(a) for a in nc.ncattrs()})
    if the is not None:
        return the
    raise RegridError(f"{path}: UGRID mesh {mesh!r} has projected node coordinates ({', '.join(names)}) but no "
                      f"grid_mapping (or crs_wkt/proj4 attribute) saying which projection; pass crs=")


def _read_ugrid(nc: Any, path: Path, crs: Any, mesh: str | None = None, *, var: str | None = None,
                mask: Any = None) -> Polygons:
    """The faces of a 2-D UGRID 1.0 mesh as :class:`Polygons`.

    * the mesh: the variable with ``cf_role = "mesh_topology"`` and ``topology_dimension = 2``
      (``mesh``, or the ``mesh`` attribute of data variable ``var``, chooses among several);
    * nodes: the ``node_coordinates`` variables, longitude/latitude (degrees or radians) told from
      projected x/y by ``standard_name``, ``units`` or name; projected nodes take their CRS from
      ``crs`` or a CF ``grid_mapping`` (on the coordinates, the topology or a data variable on the mesh);
    * faces: ``face_node_connectivity`` (``start_index`` 0 or 1; rows of mixed triangles, quads and
      polygons padded with ``_FillValue``; transposed when the topology's ``face_dimension`` says so),
      each face's nodes in file order, clockwise or not (as the ESMF mesh reader: areas and
      intersections on the sphere do not depend on the winding);
    * centres from ``face_coordinates`` when present (computed as for any polygons otherwise), ids
      from a ``<mesh>_face_id``/``face_id`` variable on the face dimension, ``mask`` optionally the
      name of a variable on the face dimension (non-zero = active).
    """
    nc.set_auto_mask(False)
    name = _pick_ugrid_mesh(nc, path, mesh, var)
    topo = nc[name]
    node_names = _attr_names(topo, "node_coordinates")
    if not node_names:
        raise RegridError(f"{path}: UGRID mesh {name!r} has no node_coordinates attribute")
    xn, yn, geographic = _ugrid_coordinate_pair(nc, path, node_names, f"{name}:node_coordinates")
    x, y = _ugrid_read_xy(nc, path, xn, yn, geographic)
    if x.size != y.size:
        raise RegridError(f"{path}: node coordinates {xn!r} and {yn!r} have {x.size} and {y.size} values")
    nodes = np.column_stack([x, y])
    conn_names = _attr_names(topo, "face_node_connectivity")
    if len(conn_names) != 1:
        raise RegridError(f"{path}: 2-D UGRID mesh {name!r} needs one face_node_connectivity variable, got "
                          f"{_nc_attr(topo, 'face_node_connectivity', None)!r}")
    if conn_names[0] not in nc.variables:
        raise RegridError(f"{path}: face_node_connectivity variable {conn_names[0]!r} not found")
    cv = nc[conn_names[0]]
    conn = np.asarray(cv[:])
    if conn.ndim != 2:
        raise RegridError(f"{path}: {cv.name} must be 2-D (faces, max nodes per face), got dims {cv.dimensions}")
    face_dim = str(_nc_attr(topo, "face_dimension", cv.dimensions[0]))
    if face_dim == cv.dimensions[1] and face_dim != cv.dimensions[0]:
        conn = conn.T
    elif face_dim != cv.dimensions[0]:
        raise RegridError(f"{path}: face_dimension {face_dim!r} is not a dimension of {cv.name} {cv.dimensions}")
    import netCDF4

    fills = [_nc_attr(cv, a) for a in ("_FillValue", "missing_value") if _nc_attr(cv, a) is not None]
    if not fills and conn.dtype.kind in "iu":
        fills = [netCDF4.default_fillvals.get(conn.dtype.str[1:], None)]
    missing = np.zeros(conn.shape, dtype=bool)
    for f in fills:
        if f is not None:
            missing |= np.isin(conn, np.asarray(f).reshape(-1))
    if conn.dtype.kind == "f":
        missing |= ~np.isfinite(conn)
    nconn = (~missing).sum(axis=1)
    if not np.array_equal(~missing, np.arange(conn.shape[1])[None, :] < nconn[:, None]):
        k = int(np.nonzero((~missing != (np.arange(conn.shape[1])[None, :] < nconn[:, None])).any(axis=1))[0][0])
        raise RegridError(f"{path}: face {k} of {cv.name} has fill values before its last node ({conn[k].tolist()}); "
                          f"fill values may only pad the end of a row")
    few = np.nonzero(nconn < 3)[0]
    if few.size:
        raise RegridError(f"{path}: {few.size} faces of {name!r} have fewer than 3 nodes (first: face "
                          f"{int(few[0])}, {int(nconn[few[0]])} nodes)")
    start = int(np.asarray(_nc_attr(cv, "start_index", 0)).reshape(-1)[0])
    if start not in (0, 1):
        raise RegridError(f"{path}: {cv.name}:start_index must be 0 or 1, got {start}")
    flat = conn[~missing]
    if flat.dtype.kind == "f":
        if np.any(flat != np.round(flat)):
            raise RegridError(f"{path}: {cv.name} holds non-integer node indices")
    idx = flat.astype(np.int64) - start
    bad = (idx < 0) | (idx >= nodes.shape[0])
    if np.any(bad):
        raise RegridError(f"{path}: {cv.name} refers to nodes outside {start}..{nodes.shape[0] - 1 + start} "
                          f"(start_index {start}); first bad entry {int(flat[bad][0])}")
    used = np.unique(idx)
    if not np.all(np.isfinite(nodes[used])):
        raise RegridError(f"{path}: faces of {name!r} use nodes with missing coordinates")
    geoms = _polygons_from_connectivity(nodes, idx, nconn)
    the_crs = _ugrid_crs(nc, path, crs, name, (xn, yn), geographic)
    n_faces = conn.shape[0]

    centers = None
    face_names = _attr_names(topo, "face_coordinates")
    if face_names:
        fx, fy, fgeo = _ugrid_coordinate_pair(nc, path, face_names, f"{name}:face_coordinates")
        cx, cy = _ugrid_read_xy(nc, path, fx, fy, fgeo)
        if cx.size != n_faces or cy.size != n_faces:
            raise RegridError(f"{path}: face coordinates {fx!r}, {fy!r} have {cx.size}, {cy.size} values for "
                              f"{n_faces} faces")
        if fgeo != geographic:
            cx, cy = transform_xy(LONLAT if fgeo else the_crs, LONLAT if geographic else the_crs, cx, cy)
        if np.all(np.isfinite(cx)) and np.all(np.isfinite(cy)):
            centers = (cx, cy)

    def on_faces(v: Any) -> bool:
        return len(v.dimensions) >= 1 and v.dimensions[0] == face_dim and (
            v.ndim == 1 or (v.ndim == 2 and v.dtype.kind == "S"))

    ids = None
    for pattern in _UGRID_ID_NAMES:
        cand = pattern.format(mesh=name)
        if cand in nc.variables and on_faces(nc[cand]):
            v = nc[cand]
            if v.ndim == 2:
                ids = np.asarray(netCDF4.chartostring(v[:]), dtype=object).reshape(-1)
            else:
                ids = np.asarray(v[:]).reshape(-1)
            break
    m = None
    if isinstance(mask, str):
        if mask not in nc.variables:
            raise RegridError(f"{path}: mask variable {mask!r} not found")
        mv = nc[mask]
        if mv.dimensions != (face_dim,):
            raise RegridError(f"{path}: mask variable {mask!r} has dims {mv.dimensions}, expected ({face_dim!r},)")
        mv.set_auto_maskandscale(True)
        m = np.ma.filled(np.ma.asarray(mv[:]).astype(np.float64), 0.0)
    p = Polygons(geoms, the_crs, ids, centers=centers, mask=m, source=str(path))
    p.source_format = "ugrid"
    p.path = str(path)
    p.mesh = name
    return p


def _read_scrip(nc: Any, path: Path, crs: Any) -> Grid | Polygons:
    nc.set_auto_mask(False)
    clat = np.asarray(nc["grid_center_lat"][:], dtype=np.float64)
    clon = np.asarray(nc["grid_center_lon"][:], dtype=np.float64)
    units = _nc_attr(nc["grid_center_lat"], "units", "degrees")
    clat, _ = _units_to_degrees(clat, units, str(path))
    clon, _ = _units_to_degrees(clon, _nc_attr(nc["grid_center_lon"], "units", units), str(path))
    n = clat.size
    dims = np.asarray(nc["grid_dims"][:], dtype=np.int64).reshape(-1) if "grid_dims" in nc.variables else np.array([n])
    mask = np.asarray(nc["grid_imask"][:]) if "grid_imask" in nc.variables else None
    corners = None
    if "grid_corner_lat" in nc.variables and "grid_corner_lon" in nc.variables:
        ylat, _ = _units_to_degrees(np.asarray(nc["grid_corner_lat"][:], dtype=np.float64),
                                    _nc_attr(nc["grid_corner_lat"], "units", units), str(path))
        xlon, _ = _units_to_degrees(np.asarray(nc["grid_corner_lon"][:], dtype=np.float64),
                                    _nc_attr(nc["grid_corner_lon"], "units", units), str(path))
        corners = (xlon.reshape(n, -1), ylat.reshape(n, -1))
    the_crs = as_crs(crs, f"{path} crs") if crs is not None else LONLAT
    if dims.size == 2 and int(np.prod(dims)) == n:
        nx, ny = int(dims[0]), int(dims[1])
        verts = None
        if corners is not None and corners[0].shape[1] == 4:
            verts = np.stack([corners[0].reshape(ny, nx, 4), corners[1].reshape(ny, nx, 4)], axis=-1)
        g = Grid(clon.reshape(ny, nx), clat.reshape(ny, nx), the_crs, vertices=verts, mask=mask,
                 dims=("grid_ny", "grid_nx"), source=str(path))
        g.source_format = "scrip"
        g.path = str(path)
        return g
    if corners is None:
        raise RegridError(f"{path}: unstructured SCRIP grid without grid_corner_lat/lon cannot describe cells")
    geoms = []
    for k in range(n):
        xs, ys = corners[0][k], corners[1][k]
        pts = np.column_stack([xs, ys])
        keep = np.ones(len(pts), dtype=bool)
        keep[1:] = np.any(pts[1:] != pts[:-1], axis=1)
        pts = pts[keep]
        if len(pts) > 1 and np.all(pts[-1] == pts[0]):
            pts = pts[:-1]
        if len(pts) < 3:
            raise RegridError(f"{path}: SCRIP cell {k} has fewer than 3 distinct corners")
        geoms.append(shapely.Polygon(pts))
    p = Polygons(geoms, the_crs, None, centers=(clon, clat), mask=mask, source=str(path))
    p.source_format = "scrip"
    p.path = str(path)
    return p


def read_cells(path: str | os.PathLike, **kwargs: Any) -> Grid | Polygons:
    """Read a grid (NetCDF) or polygons (vector file), choosing by file suffix.

    Keyword arguments go to :func:`read_grid` (``var, x, y, crs, mask, mesh``) or
    :func:`read_polygons` (``id_field, layer, crs``); ``None`` values are ignored.
    """
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    suffix = Path(path).suffix.lower()
    if suffix in VECTOR_SUFFIXES:
        allowed = {"id_field", "layer", "crs"}
        extra = set(kwargs) - allowed
        if extra:
            raise RegridError(f"{path}: options {sorted(extra)} do not apply to a polygon file")
        return read_polygons(path, **kwargs)
    if suffix in NETCDF_SUFFIXES or suffix == "":
        allowed = {"var", "x", "y", "crs", "mask", "mesh"}
        extra = set(kwargs) - allowed
        if extra:
            raise RegridError(f"{path}: options {sorted(extra)} do not apply to a NetCDF grid file")
        return read_grid(path, **kwargs)
    raise RegridError(f"{path}: unknown file type {suffix!r}; expected NetCDF ({', '.join(NETCDF_SUFFIXES)}) "
                      f"or a vector file ({', '.join(VECTOR_SUFFIXES)})")


# ----------------------------------------------------------------------------------------------
# writers
# ----------------------------------------------------------------------------------------------
def write_scrip(cells: CellSet, path: str | os.PathLike, title: str | None = None) -> None:
    """Write a SCRIP grid file (degrees). Grids are rank 2; polygons rank 1 (simple polygons only)."""
    import netCDF4

    lon, lat = cells.lonlat_centers()
    if isinstance(cells, Grid):
        xv, yv = cells.lonlat_vertices()
        rank, dims = 2, cells.grid_dims
    else:
        rings = _simple_rings_lonlat(cells, "SCRIP")
        nv = max(len(r) for r in rings)
        xv = np.empty((cells.size, nv))
        yv = np.empty((cells.size, nv))
        for k, r in enumerate(rings):
            pad = np.concatenate([r, np.repeat(r[-1:], nv - len(r), axis=0)])
            xv[k], yv[k] = pad[:, 0], pad[:, 1]
        rank, dims = 1, np.array([cells.size], dtype=np.int32)
    with netCDF4.Dataset(str(path), "w", format="NETCDF3_64BIT_OFFSET") as nc:
        nc.title = title or f"SCRIP grid written by bmi-dhydro coupler.regrid from {cells.source}"
        nc.createDimension("grid_size", cells.size)
        nc.createDimension("grid_corners", xv.shape[1])
        nc.createDimension("grid_rank", rank)
        v = nc.createVariable("grid_dims", "i4", ("grid_rank",))
        v[:] = dims
        for name, data, nd in (("grid_center_lat", lat, ("grid_size",)), ("grid_center_lon", lon, ("grid_size",)),
                               ("grid_corner_lat", yv, ("grid_size", "grid_corners")),
                               ("grid_corner_lon", xv, ("grid_size", "grid_corners"))):
            v = nc.createVariable(name, "f8", nd)
            v.units = "degrees"
            v[:] = data
        v = nc.createVariable("grid_imask", "i4", ("grid_size",))
        v.units = "unitless"
        v[:] = cells.mask.astype(np.int32)


def _simple_rings_lonlat(cells: CellSet, fmt: str) -> list[np.ndarray]:
    polys = cells.cell_polygons(LONLAT)
    polys = shapely.orient_polygons(polys, exterior_cw=False)
    rings = []
    for k, g in enumerate(polys):
        if g.geom_type != "Polygon" or len(g.interiors):
            raise RegridError(f"{fmt}: cell {k} ({cells.ids[k] if cells.ids is not None else k}) is a multi-part "
                              f"polygon or has holes, which {fmt} cannot describe; use write_esmf_mesh")
        rings.append(np.asarray(g.exterior.coords)[:-1])
    return rings


def write_esmf_mesh(cells: CellSet, path: str | os.PathLike, polygon_break_value: int = -8) -> None:
    """Write an ESMF unstructured mesh file (degrees, counter-clockwise elements, 1-based ``elementConn``).

    Multi-part cells are written as one element whose parts are separated by
    ``polygon_break_value`` (ESMF's multi-part element convention). ESMF elements cannot have
    holes, so a polygon with holes is written as the triangles of its constrained Delaunay
    triangulation (parts of one element); the element's area is unchanged. Element identifiers
    go to the extension variable ``element_id_str`` (read back by :func:`read_grid`).
    """
    import netCDF4

    polys = shapely.orient_polygons(cells.cell_polygons(LONLAT), exterior_cw=False)
    conns: list[list[int]] = []
    node_list: list[np.ndarray] = []
    n_nodes = 0
    for g in polys:
        parts = list(g.geoms) if g.geom_type == "MultiPolygon" else [g]
        rings: list[np.ndarray] = []
        for p in parts:
            if len(p.interiors):
                tris = shapely.orient_polygons(np.asarray(list(shapely.constrained_delaunay_triangles(p).geoms),
                                                          dtype=object), exterior_cw=False)
                rings.extend(np.asarray(t.exterior.coords)[:-1] for t in tris)
            else:
                rings.append(np.asarray(p.exterior.coords)[:-1])
        conn: list[int] = []
        for r_i, ring in enumerate(rings):
            if r_i:
                conn.append(polygon_break_value)
            conn.extend(range(n_nodes + 1, n_nodes + 1 + len(ring)))
            node_list.append(ring)
            n_nodes += len(ring)
        conns.append(conn)
    coords = np.concatenate(node_list)
    nodes, inverse = np.unique(coords, axis=0, return_inverse=True)
    inverse = np.asarray(inverse).reshape(-1)
    maxc = max(len(c) for c in conns)
    ec = np.full((len(conns), maxc), -1, dtype=np.int32)
    for k, c in enumerate(conns):
        c = np.asarray(c, dtype=np.int64)
        brk = c == polygon_break_value
        c[~brk] = inverse[c[~brk] - 1] + 1
        ec[k, :len(c)] = c
    lon, lat = cells.lonlat_centers()
    with netCDF4.Dataset(str(path), "w", format="NETCDF3_64BIT_OFFSET") as nc:
        nc.gridType = "unstructured"
        nc.version = "0.9"
        nc.title = f"ESMF mesh written by bmi-dhydro coupler.regrid from {cells.source}"
        nc.createDimension("nodeCount", nodes.shape[0])
        nc.createDimension("elementCount", len(conns))
        nc.createDimension("maxNodePElement", maxc)
        nc.createDimension("coordDim", 2)
        v = nc.createVariable("nodeCoords", "f8", ("nodeCount", "coordDim"))
        v.units = "degrees"
        v[:] = nodes
        v = nc.createVariable("elementConn", "i4", ("elementCount", "maxNodePElement"), fill_value=-1)
        v.long_name = "Node Indices that define the element connectivity"
        v.start_index = np.int32(1)
        if any(polygon_break_value in c for c in conns):
            v.polygon_break_value = np.int32(polygon_break_value)
        v[:] = ec
        v = nc.createVariable("numElementConn", "i4", ("elementCount",))
        v.long_name = "Number of nodes per element"
        v[:] = np.array([len(c) for c in conns], dtype=np.int32)
        v = nc.createVariable("centerCoords", "f8", ("elementCount", "coordDim"))
        v.units = "degrees"
        v[:] = np.column_stack([lon, lat])
        v = nc.createVariable("elementMask", "i4", ("elementCount",))
        v[:] = cells.mask.astype(np.int32)
        if cells.ids is not None:
            ids = np.asarray(cells.ids).astype(str)
            nchar = max(1, max(len(s.encode("utf-8")) for s in ids))
            nc.createDimension("idLength", nchar)
            v = nc.createVariable("element_id_str", "S1", ("elementCount", "idLength"))
            v.long_name = "element identifier (bmi-dhydro extension)"
            v[:] = netCDF4.stringtochar(np.array([s.encode("utf-8") for s in ids], dtype=f"S{nchar}"))
