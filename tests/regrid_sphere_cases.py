"""Grids and meshes on the sphere shared by the spherical regridding tests and bench/bench_regrid_sphere.py.

Everything is generated (no data files): global and regional longitude/latitude grids, a rotated-pole
curvilinear grid, a cubed-sphere mesh (cells with a pole inside or at a corner), a spherical Voronoi
mesh (5- to 9-sided cells across the seam and the poles) and concave cells.
"""
from __future__ import annotations

import numpy as np
import shapely

from coupler.regrid import Grid, Polygons
from coupler.regrid.sphere import lonlat_to_xyz, xyz_to_lonlat


def lonlat_grid(dlon, dlat=None, lon0=0.0, lat_range=(-90.0, 90.0), lon_range=None, mask=None):
    """Cells of dlon x dlat degrees; lon_range=(a, b) for a regional grid (b may exceed 180/360)."""
    dlat = dlat or dlon
    a, b = lon_range if lon_range is not None else (lon0, lon0 + 360.0)
    lon = np.arange(a + dlon / 2, b - 1e-9, dlon)
    lat = np.arange(lat_range[0] + dlat / 2, lat_range[1] - 1e-9, dlat)
    return Grid(lon, lat, "EPSG:4326", mask=mask)


def rotate(lon, lat, pole_lon, pole_lat):
    """Rotated-pole coordinates (CF rotated_latitude_longitude) -> geographic longitude/latitude."""
    p = lonlat_to_xyz(lon, lat)
    # rotate about y by -(90 - pole_lat), then about z by pole_lon
    t = -np.deg2rad(90.0 - pole_lat)
    ry = np.array([[np.cos(t), 0, np.sin(t)], [0, 1, 0], [-np.sin(t), 0, np.cos(t)]])
    g = np.deg2rad(pole_lon + 180.0)
    rz = np.array([[np.cos(g), -np.sin(g), 0], [np.sin(g), np.cos(g), 0], [0, 0, 1]])
    q = p @ (rz @ ry).T
    return xyz_to_lonlat(q)


def rotated_grid(n=24, d=1.0, pole_lon=-170.0, pole_lat=40.0):
    """A rotated-pole curvilinear grid (like a regional climate model's), corners from the rotated edges."""
    e = (np.arange(n + 1) - n / 2) * d
    c = 0.5 * (e[1:] + e[:-1])
    RX, RY = np.meshgrid(c, c)
    lon, lat = rotate(RX, RY, pole_lon, pole_lat)
    EX, EY = np.meshgrid(e, e)
    elon, elat = rotate(EX, EY, pole_lon, pole_lat)
    v = np.empty((n, n, 4, 2))
    for k, (dj, di) in enumerate(((0, 0), (0, 1), (1, 1), (1, 0))):
        v[:, :, k, 0] = elon[dj:dj + n, di:di + n]
        v[:, :, k, 1] = elat[dj:dj + n, di:di + n]
    return Grid(lon, lat, "EPSG:4326", vertices=v)


def cubed_sphere(n):
    """Equiangular cubed-sphere mesh, 6 n^2 quadrilaterals (odd n: the poles are inside cells)."""
    t = np.tan(np.linspace(-np.pi / 4, np.pi / 4, n + 1))
    A, B = np.meshgrid(t, t)
    faces = []
    for e, u, v in ((0, 1, 2), (1, 2, 0), (2, 0, 1)):
        for s in (1.0, -1.0):
            p = np.zeros(A.shape + (3,))
            p[..., e] = s
            p[..., u] = A * s
            p[..., v] = B
            faces.append(p / np.linalg.norm(p, axis=-1, keepdims=True))
    geoms, cen = [], []
    for p in faces:
        lon, lat = xyz_to_lonlat(p)
        for j in range(n):
            for i in range(n):
                idx = ((j, i), (j, i + 1), (j + 1, i + 1), (j + 1, i))
                ring = [(lon[a, b], lat[a, b]) for a, b in idx]
                geoms.append(shapely.Polygon(ring))
                c = sum(p[a, b] for a, b in idx)
                cen.append(xyz_to_lonlat(c))
    cen = np.array(cen, dtype=float)
    return Polygons(np.array(geoms, dtype=object), "EPSG:4326", centers=(cen[:, 0], cen[:, 1]))


def voronoi_mesh(n, seed=0):
    """Spherical Voronoi cells of n random points (plus both poles as generators: cells containing the poles)."""
    from scipy.spatial import SphericalVoronoi

    rng = np.random.default_rng(seed)
    p = rng.normal(size=(n, 3))
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    p = np.vstack([p, [[0, 0, 1.0], [0, 0, -1.0]]])
    sv = SphericalVoronoi(p)
    sv.sort_vertices_of_regions()
    geoms = []
    for reg in sv.regions:
        lon, lat = xyz_to_lonlat(sv.vertices[reg])
        geoms.append(shapely.Polygon(np.column_stack([lon, lat])))
    clon, clat = xyz_to_lonlat(p)
    return Polygons(np.array(geoms, dtype=object), "EPSG:4326", centers=(clon, clat))


def concave_cells(lon0=10.0, lat0=20.0, size=4.0, n=3):
    """n x n L-shaped (concave) cells and the squares that fill their notches, tiling a region exactly."""
    geoms = []
    s = size / n
    for j in range(n):
        for i in range(n):
            x, y = lon0 + i * s, lat0 + j * s
            h = s / 2
            geoms.append(shapely.Polygon([(x, y), (x + s, y), (x + s, y + h), (x + h, y + h), (x + h, y + s), (x, y + s)]))
            geoms.append(shapely.box(x + h, y + h, x + s, y + s))
    return Polygons(np.array(geoms, dtype=object), "EPSG:4326")


# ------------------------------------------------------------------------------------------------
# analytic fields and their exact cell means
# ------------------------------------------------------------------------------------------------
def y22(p):
    """Real spherical harmonic Y_2^2 up to its constant: x^2 - y^2 = cos^2(lat) cos(2 lon)."""
    return p[..., 0] ** 2 - p[..., 1] ** 2


def coslat(p):
    return np.hypot(p[..., 0], p[..., 1])


def cell_means(cells, f, levels=4):
    """Means of f over spherical-polygon cells: fan triangles split ``levels`` times (4^levels pieces each),
    each piece weighted by its exact spherical area, f at its (normalised) centroid; f smooth -> O(4^-levels)."""
    from coupler.regrid.sphere import _triangle_excess, sphere_cells

    sc = sphere_cells(cells)
    if sc.quads is not None:
        rings = [q for q in sc.quads]
    else:
        rings = []
        for g in sc.geoms:
            xy = np.asarray(g.exterior.coords)[:-1]
            rings.append(lonlat_to_xyz(xy[:, 0], xy[:, 1]))
    tri_a, tri_b, tri_c, owner = [], [], [], []
    for k, r in enumerate(rings):
        c = r.sum(axis=0)
        c /= np.linalg.norm(c)
        m = len(r)
        for i in range(m):
            tri_a.append(c)
            tri_b.append(r[i])
            tri_c.append(r[(i + 1) % m])
            owner.append(k)
    a, b, c = np.array(tri_a), np.array(tri_b), np.array(tri_c)
    owner = np.array(owner)

    def norm(v):
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    for _ in range(levels):
        ab, bc, ca = norm(a + b), norm(b + c), norm(c + a)
        a, b, c = (np.concatenate(x) for x in ((a, ab, ca, ab), (ab, b, bc, bc), (ca, bc, c, ca)))
        owner = np.tile(owner, 4)
    area = np.abs(_triangle_excess(a, b, c))
    val = f(norm(a + b + c))
    n = len(rings)
    return np.bincount(owner, weights=area * val, minlength=n) / np.bincount(owner, weights=area, minlength=n)
