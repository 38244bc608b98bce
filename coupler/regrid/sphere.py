"""Cells on the unit sphere with great-circle edges, as ESMF (and SCRIP, CDO/YAC) define them.

A cell is a spherical polygon: its corners are points on the unit sphere and consecutive
corners are joined by the shorter **great-circle arc**. Areas are in steradians (square
radians on the unit sphere), the unit of ESMF's ``area_a``/``area_b``.

How intersections are computed exactly without a spherical clipper
-----------------------------------------------------------------
The *gnomonic* (central) projection onto a plane tangent to the sphere maps every great
circle to a straight line (a great circle is the sphere cut by a plane through the centre; the
projection is the central perspective from that centre). A polygon with great-circle edges
on the open hemisphere around the tangent point is therefore mapped to a polygon with straight
edges, and the intersection of two such polygons is mapped back to the intersection on the sphere.
This module

1. assigns every destination cell to one of six gnomonic *charts*, the faces of a cube around
   the sphere (the chart of the face its centre lies on; each face is within 54.7 degrees of its
   tangent point, so cells up to ~30 degrees across stay well inside the chart's hemisphere),
2. maps the destination cells of a chart and the source cells that can reach them into that
   chart's plane, where GEOS (vectorised shapely 2) clips them exactly with straight edges —
   concave cells, multi-part cells and holes included —,
3. maps the vertices of the intersection polygons back to the sphere and takes their spherical
   area with the signed triangle-fan formula of Van Oosterom & Strackee (1983),
   ``tan(E/2) = a.(b x c) / (1 + a.b + b.c + c.a)``, each triangle fanned from the ring's first
   vertex (so the triangles are as small as the polygon and the area keeps ~1e-13 relative precision
   down to metre-sized cells).

Seams (0/360, +-180) and poles need no special case: only unit vectors enter the computation,
never longitude differences, and a cell containing a pole is an ordinary polygon in the chart of
the face around that pole. Cell corners given in longitude/latitude are validated only in the chart
(a cell crossing the seam is a valid polygon there, though not in longitude/latitude).
"""
from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from bmi_dhydro._extras import require

from .crs import LONLAT, REGRIDDING, RegridError, describe, transformer

shapely = require("shapely", "geo", REGRIDDING)

__all__ = ["lonlat_to_xyz", "xyz_to_lonlat", "ring_signed_areas", "polygon_areas_xyz", "CHARTS", "Chart",
           "chart_of", "SphereCells", "sphere_cells"]

# angle between a cube face's centre and its corners: acos(1/sqrt(3))
_FACE_RADIUS = math.acos(1.0 / math.sqrt(3.0))


def lonlat_to_xyz(lon: Any, lat: Any) -> np.ndarray:
    """Unit vectors ``(..., 3)`` of longitudes/latitudes in degrees."""
    lo = np.deg2rad(np.asarray(lon, dtype=np.float64))
    la = np.deg2rad(np.asarray(lat, dtype=np.float64))
    c = np.cos(la)
    return np.stack([c * np.cos(lo), c * np.sin(lo), np.sin(la)], axis=-1)


def xyz_to_lonlat(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Longitude (-180..180) and latitude in degrees of vectors ``(..., 3)`` (need not be unit)."""
    p = np.asarray(p, dtype=np.float64)
    lon = np.rad2deg(np.arctan2(p[..., 1], p[..., 0]))
    lat = np.rad2deg(np.arctan2(p[..., 2], np.hypot(p[..., 0], p[..., 1])))
    return lon, lat


def _triangle_excess(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Signed area of the spherical triangles ``(a, b, c)`` (unit vectors, rows); > 0 when counter-clockwise."""
    # a.(b x c) == a.((b-a) x (c-a)): the differences keep the precision of small triangles
    num = np.einsum("ij,ij->i", a, np.cross(b - a, c - a))
    den = 1.0 + np.einsum("ij,ij->i", a, b) + np.einsum("ij,ij->i", b, c) + np.einsum("ij,ij->i", c, a)
    return 2.0 * np.arctan2(num, den)


def ring_signed_areas(xyz: np.ndarray, ring_index: np.ndarray, n_rings: int | None = None) -> np.ndarray:
    """Signed spherical areas (sr) of rings given as unit vectors ``xyz`` with their ring number.

    ``ring_index`` (non-decreasing) numbers the ring of each vertex; rings are not closed (a repeated
    closing vertex does no harm). Counter-clockwise rings seen from outside the sphere are positive.
    Each ring is fanned from its first vertex; the ring must lie in an open hemisphere.
    """
    xyz = np.asarray(xyz, dtype=np.float64)
    ri = np.asarray(ring_index, dtype=np.int64)
    if n_rings is None:
        n_rings = int(ri.max()) + 1 if ri.size else 0
    if ri.size == 0:
        return np.zeros(n_rings)
    start = np.r_[True, ri[1:] != ri[:-1]]
    first = np.nonzero(start)[0]
    apex_of_ring = np.zeros(n_rings, dtype=np.int64)
    apex_of_ring[ri[first]] = first
    nxt = np.arange(1, ri.size + 1)
    last = np.r_[ri[1:] != ri[:-1], True]
    nxt[last] = apex_of_ring[ri[last]]
    e = _triangle_excess(xyz[apex_of_ring[ri]], xyz, xyz[nxt])
    return np.bincount(ri, weights=e, minlength=n_rings)


def polygon_areas_xyz(geoms: np.ndarray, to_xyz: Any) -> np.ndarray:
    """Spherical areas (sr) of shapely (multi)polygons, geometry collections allowed (only their polygons count).

    ``to_xyz(xy)`` maps the planar coordinates ``(n, 2)`` to unit vectors ``(n, 3)``. Exterior rings
    count positive and holes negative, whatever their orientation.
    """
    geoms = np.asarray(geoms, dtype=object)
    out = np.zeros(geoms.size)
    if geoms.size == 0:
        return out
    parts, pidx = shapely.get_parts(geoms, return_index=True)
    ispoly = shapely.get_type_id(parts) == 3
    parts, pidx = parts[ispoly], pidx[ispoly]
    if parts.size == 0:
        return out
    rings, ridx = shapely.get_rings(parts, return_index=True)
    is_ext = np.r_[True, ridx[1:] != ridx[:-1]]
    xy, cidx = shapely.get_coordinates(rings, return_index=True)
    a = np.abs(ring_signed_areas(to_xyz(xy), cidx, rings.size))
    a = np.where(is_ext, a, -a)
    per_part = np.bincount(ridx, weights=a, minlength=parts.size)
    return np.bincount(pidx, weights=per_part, minlength=geoms.size)


class Chart:
    """Gnomonic projection onto the plane tangent at unit vector ``e`` (``u``, ``v``, ``e`` right-handed)."""

    def __init__(self, e: Any, u: Any, v: Any, name: str = ""):
        self.e = np.asarray(e, dtype=np.float64)
        self.u = np.asarray(u, dtype=np.float64)
        self.v = np.asarray(v, dtype=np.float64)
        self.name = name

    def forward(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Plane coordinates of vectors ``(..., 3)`` and ``p.e`` (must be > 0: the chart's hemisphere)."""
        pe = p @ self.e
        with np.errstate(divide="ignore", invalid="ignore"):
            xy = np.stack([(p @ self.u) / pe, (p @ self.v) / pe], axis=-1)
        return xy, pe

    def inverse(self, xy: np.ndarray) -> np.ndarray:
        xy = np.asarray(xy, dtype=np.float64)
        p = self.e[None, :] + xy[:, :1] * self.u[None, :] + xy[:, 1:2] * self.v[None, :]
        return p / np.linalg.norm(p, axis=1, keepdims=True)

    def __repr__(self) -> str:
        return f"<gnomonic chart {self.name}>"


_I, _J, _K = np.eye(3)
#: the six cube-face charts: +x, +y, -x, -y, +z, -z
CHARTS = (
    Chart(_I, _J, _K, "+x"), Chart(_J, -_I, _K, "+y"), Chart(-_I, -_J, _K, "-x"), Chart(-_J, _I, _K, "-y"),
    Chart(_K, _J, -_I, "+z"), Chart(-_K, _J, _I, "-z"),
)


def charts_for(p: np.ndarray, k: int = 1) -> tuple[np.ndarray, list[Chart]]:
    """Assign vectors ``(n, 3)`` to gnomonic charts: the cube faces, each cut into ``k x k`` equal-angle squares.

    Returns the chart number of each vector and the charts (tangent at each square's centre). The
    points of a chart are within ``acos(1/sqrt(3))`` = 54.7 degrees of its tangent point for ``k = 1``
    and within about ``64 / k`` degrees for ``k > 1``.
    """
    face = chart_of(p)
    if k <= 1:
        used = np.unique(face)
        remap = np.full(6, -1)
        remap[used] = np.arange(used.size)
        return remap[face], [CHARTS[f] for f in used]
    ids = np.empty(p.shape[0], dtype=np.int64)
    key = np.empty(p.shape[0], dtype=np.int64)
    for f in np.unique(face):
        on = face == f
        xy, _ = CHARTS[f].forward(p[on])
        ij = np.clip(np.floor((np.arctan(xy) + np.pi / 4) / (np.pi / 2) * k), 0, k - 1).astype(np.int64)
        key[on] = (f * k + ij[:, 1]) * k + ij[:, 0]
    used, ids = np.unique(key, return_inverse=True)
    charts = []
    for kk in used:
        f, rest = divmod(int(kk), k * k)
        j, i = divmod(rest, k)
        c = CHARTS[f]
        a = np.tan((np.array([i, j]) + 0.5) / k * (np.pi / 2) - np.pi / 4)
        e = c.e + a[0] * c.u + a[1] * c.v
        e /= np.linalg.norm(e)
        u = c.u - (c.u @ e) * e
        u /= np.linalg.norm(u)
        charts.append(Chart(e, u, np.cross(e, u), f"{c.name}[{j},{i}]"))
    return ids.reshape(-1), charts


def chart_of(p: np.ndarray) -> np.ndarray:
    """Index into :data:`CHARTS` of the cube face each vector ``(n, 3)`` points through."""
    p = np.asarray(p, dtype=np.float64)
    ax = np.argmax(np.abs(p), axis=1)
    neg = p[np.arange(p.shape[0]), ax] < 0
    table = np.array([[0, 2], [1, 3], [4, 5]])
    return table[ax, neg.astype(int)]


class SphereCells:
    """Cells of a :class:`~coupler.regrid.grids.CellSet` as spherical polygons.

    ``geoms`` holds one shapely (multi)polygon per cell whose coordinates are **longitude/latitude in
    degrees**; they are only a container for the rings (a cell crossing the seam is not a valid polygon
    in longitude/latitude, and does not need to be). ``quads`` is the ``(n, 4, 3)`` corner array of
    structured grids (faster path), ``None`` otherwise.
    """

    def __init__(self, n: int, mask: np.ndarray, geoms: np.ndarray | None, quads: np.ndarray | None, what: str):
        self.n = n
        self.mask = mask
        self.geoms = geoms
        self.quads = quads
        self.what = what
        self._center: np.ndarray | None = None
        self._radius: np.ndarray | None = None
        self._area: np.ndarray | None = None

    # --- per-cell vertex statistics ---------------------------------------------------------------
    def _vertices(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Unit vectors of the vertices of cells ``index`` and the (position in ``index``) of each."""
        if self.quads is not None:
            q = self.quads[index]
            return q.reshape(-1, 3), np.repeat(np.arange(index.size), q.shape[1])
        parts, pidx = shapely.get_parts(self.geoms[index], return_index=True)
        rings, ridx = shapely.get_rings(parts, return_index=True)
        xy, k = shapely.get_coordinates(rings, return_index=True)
        keep = np.r_[k[1:] == k[:-1], False]  # drop each ring's closing vertex
        xy, k = xy[keep], k[keep]
        return lonlat_to_xyz(xy[:, 0], xy[:, 1]), pidx[ridx[k]]

    def centers_radii(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Normalised vertex mean and angular radius (rad, centre to farthest vertex) of cells ``index``."""
        p, ci = self._vertices(index)
        c = np.stack([np.bincount(ci, weights=p[:, k], minlength=index.size) for k in range(3)], axis=1)
        norm = np.linalg.norm(c, axis=1, keepdims=True)
        if np.any(norm[:, 0] < 1e-12):
            k = int(index[np.nonzero(norm[:, 0] < 1e-12)[0][0]])
            raise RegridError(f"{self.what}: cell {k} has corners spread over the whole sphere (their mean is the "
                              f"centre of the sphere); cells must lie within a hemisphere")
        c = c / norm
        cosang = np.clip(np.einsum("ij,ij->i", p, c[ci]), -1.0, 1.0)
        r = np.zeros(index.size)
        np.maximum.at(r, ci, np.arccos(cosang))
        return c, r

    def areas(self, index: np.ndarray | None = None) -> np.ndarray:
        """Spherical area (sr) of every cell (masked ones included), or of cells ``index`` (not cached).

        Each cell's area depends on its own vertices only, so areas computed block by block (MPI ranks, then
        :meth:`set_areas`) are the areas of all cells at once, bit for bit."""
        if index is not None:
            index = np.asarray(index, dtype=np.int64)
            if self._area is not None:
                return self._area[index]
            return self._areas_of(index)
        if self._area is None:
            self._area = self._areas_of(None)
        return self._area

    def _areas_of(self, index: np.ndarray | None) -> np.ndarray:
        if self.quads is not None:
            q = self.quads if index is None else self.quads[index]
            ri = np.repeat(np.arange(q.shape[0]), q.shape[1])
            return np.abs(ring_signed_areas(q.reshape(-1, 3), ri, q.shape[0]))
        g = self.geoms if index is None else self.geoms[index]
        return polygon_areas_xyz(g, lambda xy: lonlat_to_xyz(xy[:, 0], xy[:, 1]))

    def set_areas(self, area: np.ndarray) -> None:
        """Use ``area`` (one value per cell, sr) as the cells' areas (computed elsewhere, e.g. block by block)."""
        area = np.asarray(area, dtype=np.float64)
        if area.shape != (self.n,):
            raise RegridError(f"{self.what}: {area.shape} areas for {self.n} cells")
        self._area = area

    # --- charts -------------------------------------------------------------------------------------
    def in_chart(self, chart: Chart, index: np.ndarray) -> np.ndarray:
        """Cells ``index`` as shapely polygons in the plane of ``chart`` (every vertex must be on its side)."""
        if index.size == 0:
            return np.empty(0, dtype=object)
        if self.quads is not None:
            q = self.quads[index]
            xy, pe = chart.forward(q)
            self._check_side(pe.reshape(index.size, -1).min(axis=1), index, chart)
            closed = np.concatenate([xy, xy[:, :1, :]], axis=1)
            return shapely.polygons(closed)

        p, ci = self._vertices(index)
        pmin = np.full(index.size, np.inf)
        np.minimum.at(pmin, ci, p @ chart.e)
        self._check_side(pmin, index, chart)
        return shapely.transform(self.geoms[index], lambda ll: chart.forward(lonlat_to_xyz(ll[:, 0], ll[:, 1]))[0])

    def _check_side(self, min_pe: np.ndarray, index: np.ndarray, chart: Chart) -> None:
        bad = np.nonzero(~(min_pe > 1e-3))[0]
        if bad.size:
            raise RegridError(
                f"{self.what}: {bad.size} cells (first: cell {int(index[bad[0]])}) reach more than ~89.9 degrees from "
                f"the tangent point of the gnomonic chart {chart.name}; cells this large are not supported by the "
                f"spherical intersection")


def sphere_cells(cells: Any, densify_m: float | None = None) -> SphereCells:
    """The cells of a :class:`~coupler.regrid.grids.Grid` or :class:`~coupler.regrid.grids.Polygons` on the sphere.

    Structured grids: the four corners of each cell, joined by great circles (ESMF's and SCRIP's
    reading of a grid, whatever the grid's CRS). Polygons in longitude/latitude: their vertices joined
    by great circles (ESMF's reading of a mesh). Polygons in a projected CRS: straight edges in that
    projection, so they are first densified to ``densify_m`` (metres, the projection's units) and the
    vertices transformed to longitude/latitude.
    """
    from .grids import Grid, Polygons

    if isinstance(cells, Grid):
        lon, lat = cells.lonlat_vertices()
        if not (np.all(np.isfinite(lon)) and np.all(np.isfinite(lat))):
            bad = int((~(np.isfinite(lon) & np.isfinite(lat)).all(axis=1)).sum())
            raise RegridError(f"{cells.describe()}: {bad} cell corners cannot be transformed to longitude/latitude")
        if np.any(np.abs(lat) > 90.0 + 1e-9):
            raise RegridError(f"{cells.describe()}: cell corner latitudes outside -90..90 (max |lat| "
                              f"{float(np.abs(lat).max())})")
        q = lonlat_to_xyz(lon, np.clip(lat, -90.0, 90.0))
        return SphereCells(cells.size, cells.mask, None, q, cells.describe())
    if isinstance(cells, Polygons):
        geoms = cells.geoms
        if not cells.is_geographic:
            if densify_m is None or not densify_m > 0:
                raise RegridError(f"densify_m must be a positive length for polygons in a projected CRS "
                                  f"({describe(cells.crs)}), got {densify_m!r}")
            geoms = shapely.segmentize(geoms, float(densify_m))
            tr = transformer(cells.crs, LONLAT)

            def fn(xy: np.ndarray) -> np.ndarray:
                tx, ty = tr.transform(xy[:, 0], xy[:, 1])
                return np.column_stack([tx, ty])

            geoms = shapely.transform(geoms, fn)
            if not np.all(np.isfinite(shapely.get_coordinates(geoms))):
                raise RegridError(f"{cells.describe()}: some vertices cannot be transformed to longitude/latitude")
        ll = shapely.get_coordinates(geoms)
        if np.any(np.abs(ll[:, 1]) > 90.0 + 1e-9):
            raise RegridError(f"{cells.describe()}: vertex latitudes outside -90..90 (max |lat| "
                              f"{float(np.abs(ll[:, 1]).max())}); are the polygons really in longitude/latitude?")
        return SphereCells(cells.size, cells.mask, np.asarray(geoms, dtype=object), None, cells.describe())
    raise RegridError(f"cells must be a Grid or Polygons, got {type(cells).__name__}")


def fix_invalid_in_chart(polys: np.ndarray, what: str) -> np.ndarray:
    """Repair polygons that are invalid in the chart plane (self-intersecting rings), with a warning."""
    bad = ~shapely.is_valid(polys)
    if bad.any():
        polys = polys.copy()
        polys[bad] = shapely.make_valid(polys[bad], method="structure", keep_collapsed=False)
        warnings.warn(f"{int(bad.sum())} {what} cells are self-intersecting on the sphere; repaired with "
                      f"shapely.make_valid in a gnomonic chart", stacklevel=3)
    return polys
