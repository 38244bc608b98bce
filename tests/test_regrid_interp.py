"""Native bilinear (exact on linear fields) and nearest_stod (nearest source centre on the sphere)."""
from __future__ import annotations

import numpy as np
import pytest
import shapely

from coupler.regrid import Grid, Polygons, RegridError, UnmappedError, generate_weights


def points_as_cells(px, py, crs, half=1e-3):
    """Destination cells whose centres are exactly (px, py)."""
    geoms = shapely.box(px - half, py - half, px + half, py + half)
    return Polygons(geoms, crs, [f"q{i}" for i in range(px.size)], centers=(px, py))


def linear(x, y):
    return 3.0 + 0.25 * x - 1.5 * y


def test_bilinear_exact_on_linear_field_rectilinear_projected():
    rng = np.random.default_rng(0)
    x = np.cumsum(rng.uniform(500, 1500, 15)) + 1e6  # non-uniform spacing
    y = np.cumsum(rng.uniform(500, 1500, 12)) + 1e6
    grid = Grid(x, y, "EPSG:5070")
    px = rng.uniform(x[0], x[-1], 200)
    py = rng.uniform(y[0], y[-1], 200)
    w = generate_weights(grid, points_as_cells(px, py, "EPSG:5070"), "bilinear", progress=False)
    X, Y = np.meshgrid(x, y)
    np.testing.assert_allclose(w.apply(linear(X, Y)), linear(px, py), rtol=1e-11)
    # bilinear reproduces x*y too on a rectilinear grid
    np.testing.assert_allclose(w.apply(X * Y), px * py, rtol=1e-11)
    np.testing.assert_allclose(w.row_sums, 1.0, rtol=1e-12)
    assert w.norm_type is None and np.all(w.area_a == 0)


def test_bilinear_exact_on_linear_field_lonlat_descending_latitude():
    lon = np.arange(260.0, 290.01, 0.25)
    lat = np.arange(55.0, 34.99, -0.25)  # ERA5 order: north to south
    grid = Grid(lon, lat, "EPSG:4326")
    rng = np.random.default_rng(1)
    px = rng.uniform(-99.9, -70.1, 150)  # -180..180 convention, grid in 0..360
    py = rng.uniform(35.1, 54.9, 150)
    dst = points_as_cells(px, py, "EPSG:4326")
    w = generate_weights(grid, dst, "bilinear", geometry="plane", progress=False)
    LON, LAT = np.meshgrid(lon, lat)
    f = linear(LON, LAT)
    np.testing.assert_allclose(w.apply(f), linear(px + 360.0, py), rtol=1e-11)
    # on the sphere (ESMF's definition, the default for lon/lat) a quad's edges are chords, not parallels:
    # the result moves by the sagitta of 0.25 degree cells only, and does not depend on the row order
    ws = generate_weights(grid, dst, "bilinear", progress=False)
    assert ws.attrs["geometry"].startswith("sphere")
    diff = np.abs(ws.apply(f) - w.apply(f)).max() / np.ptp(f)
    assert 1e-8 < diff < 1e-5, diff
    flipped = generate_weights(Grid(lon, lat[::-1], "EPSG:4326"), dst, "bilinear", progress=False)
    np.testing.assert_allclose(flipped.apply(f[::-1]), ws.apply(f), rtol=1e-12)


def test_bilinear_exact_on_linear_field_curvilinear():
    # rotated and sheared grid: x = a*i + b*j, y = c*i + d*j (+ smooth distortion keeps quads convex)
    j, i = np.mgrid[0:14, 0:17].astype(float)
    X = 1000.0 * (i * np.cos(0.4) - j * np.sin(0.4)) + 150.0 * j + 20.0 * np.sin(i / 3.0)
    Y = 1000.0 * (i * np.sin(0.4) + j * np.cos(0.4)) + 30.0 * np.cos(j / 4.0)
    grid = Grid(X, Y, "EPSG:5070")
    assert grid.kind == "curvilinear"
    rng = np.random.default_rng(2)
    # random points inside random quads
    qj, qi = rng.integers(0, 13, 120), rng.integers(0, 16, 120)
    u, v = rng.random(120), rng.random(120)
    px = (1 - u) * (1 - v) * X[qj, qi] + u * (1 - v) * X[qj, qi + 1] + u * v * X[qj + 1, qi + 1] + (1 - u) * v * X[qj + 1, qi]
    py = (1 - u) * (1 - v) * Y[qj, qi] + u * (1 - v) * Y[qj, qi + 1] + u * v * Y[qj + 1, qi + 1] + (1 - u) * v * Y[qj + 1, qi]
    w = generate_weights(grid, points_as_cells(px, py, "EPSG:5070"), "bilinear", progress=False)
    np.testing.assert_allclose(w.apply(linear(X, Y)), linear(px, py), rtol=1e-9)


def test_bilinear_unmapped_outside_and_masked_corner():
    x = np.arange(5) * 1000.0 + 500
    y = np.arange(4) * 1000.0 + 500
    mask = np.ones((4, 5), dtype=bool)
    mask[2, 3] = False
    grid = Grid(x, y, "EPSG:5070", mask=mask)
    px = np.array([1200.0, 4800.0, 3700.0])  # inside; outside the centre hull; in a quad with a masked corner
    py = np.array([1200.0, 1500.0, 2600.0])
    dst = points_as_cells(px, py, "EPSG:5070")
    with pytest.raises(UnmappedError, match="2 of 3"):
        generate_weights(grid, dst, "bilinear", progress=False)
    with pytest.warns(UserWarning):
        w = generate_weights(grid, dst, "bilinear", progress=False, unmapped="nan")
    out = w.apply(np.ones(grid.shape))
    assert out[0] == pytest.approx(1.0) and np.isnan(out[1:]).all()


def test_bilinear_across_the_periodic_longitude_seam():
    lon = np.arange(0.5, 360.0, 1.0)
    lat = np.arange(-89.5, 90.0, 1.0)
    grid = Grid(lon, lat, "EPSG:4326")
    dst = points_as_cells(np.array([359.9, -0.25]), np.array([10.0, 10.25]), "EPSG:4326")
    w = generate_weights(grid, dst, "bilinear", geometry="plane", progress=False)
    ws = generate_weights(grid, dst, "bilinear", progress=False)  # on the sphere: the same 4 cells, nearly equal
    assert set(ws.matrix.tocoo().col) == set(w.matrix.tocoo().col)
    assert np.abs(ws.matrix.toarray() - w.matrix.toarray()).max() < 1e-3
    np.testing.assert_allclose(ws.row_sums, 1.0, rtol=1e-12)
    m = w.matrix.toarray()
    j = int(np.searchsorted(lat, 10.0)) - 1  # lat row below 10.0 (9.5)
    nx = lon.size
    # 359.9 lies between centres 359.5 (i = 359) and 360.5 == 0.5 (i = 0): u = 0.4
    assert m[0, j * nx + 359] == pytest.approx(0.6 * 0.5)
    assert m[0, j * nx + 0] == pytest.approx(0.4 * 0.5)
    # -0.25 == 359.75 -> u = 0.25, v = 0.75
    assert m[1, (j + 1) * nx + 0] == pytest.approx(0.25 * 0.75)
    assert m[1, j * nx + 359] == pytest.approx(0.75 * 0.25)


def test_bilinear_needs_a_structured_source():
    src = Polygons([shapely.box(0, 0, 1, 1), shapely.box(1, 0, 2, 1)], "EPSG:5070")
    dst = Polygons([shapely.box(0.2, 0.2, 0.4, 0.4)], "EPSG:5070")
    with pytest.raises(RegridError, match="structured source grid"):
        generate_weights(src, dst, "bilinear")


def haversine_argmin(slon, slat, dlon, dlat):
    a, b = np.deg2rad(slat)[None, :], np.deg2rad(dlat)[:, None]
    dl = np.deg2rad(slon)[None, :] - np.deg2rad(dlon)[:, None]
    h = np.sin((a - b) / 2) ** 2 + np.cos(a) * np.cos(b) * np.sin(dl / 2) ** 2
    return np.argmin(h, axis=1)


def test_nearest_stod_matches_brute_force_great_circle():
    rng = np.random.default_rng(3)
    j, i = np.mgrid[0:20, 0:25].astype(float)
    lon = -100 + 0.7 * i + 0.2 * j + rng.normal(0, 0.05, i.shape)
    lat = 30 + 0.5 * j - 0.1 * i + rng.normal(0, 0.05, i.shape)
    mask = rng.random(i.shape) > 0.2
    grid = Grid(lon, lat, "EPSG:4326", mask=mask)
    px = rng.uniform(-99, -84, 300)
    py = rng.uniform(28, 40, 300)
    w = generate_weights(grid, points_as_cells(px, py, "EPSG:4326"), "nearest_stod", progress=False)
    act = np.nonzero(mask.ravel())[0]
    expect = act[haversine_argmin(lon.ravel()[act], lat.ravel()[act], px, py)]
    m = w.matrix.tocsr()
    got = np.array([m.indices[m.indptr[k]] for k in range(w.n_b)])
    np.testing.assert_array_equal(got, expect)
    assert np.all(np.diff(m.indptr) == 1) and np.all(m.data == 1.0)
    field = rng.normal(size=grid.shape)
    np.testing.assert_array_equal(w.apply(field), field.ravel()[expect])
