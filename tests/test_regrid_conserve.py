"""Native first-order conservative weights: what is conserved, partial/masked cells, unmapped cells.

Conserved quantities (see coupler.regrid docstring), A_ij = area(src_i & dst_j):
  dstarea:  sum_j d_j area_b_j            = sum_i s_i frac_a_i area_a_i
  fracarea: sum_j d_j frac_b_j area_b_j   = sum_i s_i frac_a_i area_a_i
with frac_a_i = 1 for source cells fully covered by the destinations, frac_a_i = 0 for masked ones.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import shapely

from coupler.regrid import Grid, Polygons, RegridError, UnmappedError, generate_weights
from coupler.regrid.crs import ellipsoid_area_lonlat_box

ALBERS = "EPSG:5070"  # equal-area: cells are exact boxes in the intersection plane


def albers_grid(nx=24, ny=18, dx=1000.0, dy=1000.0, x0=1.2e6, y0=1.3e6, mask=None):
    x = x0 + dx * (np.arange(nx) + 0.5)
    y = y0 + dy * (np.arange(ny) + 0.5)
    return Grid(x, y, ALBERS, mask=mask)


def voronoi_tiles(n, bounds, seed, clip=None):
    rng = np.random.default_rng(seed)
    xmin, ymin, xmax, ymax = bounds
    pts = shapely.points(rng.uniform(xmin, xmax, n), rng.uniform(ymin, ymax, n))
    box = shapely.box(xmin, ymin, xmax, ymax) if clip is None else clip
    cells = shapely.get_parts(shapely.voronoi_polygons(shapely.multipoints(pts), extend_to=box))
    cells = shapely.intersection(cells, box)
    cells = cells[~shapely.is_empty(cells) & (shapely.area(cells) > 0)]
    return Polygons(cells, ALBERS, [f"p{i}" for i in range(cells.size)])


def m2(w, side):
    R = w.attrs["earth_radius_for_square_radians_m"]
    return (w.area_a if side == "a" else w.area_b) * R * R


@pytest.mark.filterwarnings("ignore:.*not mapped by any source cell")
@pytest.mark.parametrize("norm_type", ["dstarea", "fracarea"])
def test_full_cover_conserves_the_source_integral(norm_type):
    grid = albers_grid()
    # destination tiles a box larger than the grid: every source cell is fully covered,
    # destinations on the border are only partly over the grid (frac_b < 1)
    dst = voronoi_tiles(40, (1.1985e6, 1.2985e6, 1.2255e6, 1.3195e6), seed=1)
    w = generate_weights(grid, dst, "conserve", norm_type=norm_type, progress=False, unmapped="nan")
    assert w.attrs["area_crs"] == "EPSG:5070"
    np.testing.assert_allclose(w.frac_a, 1.0, rtol=0, atol=1e-12)
    assert w.partially_mapped.sum() > 0
    s = np.random.default_rng(2).gamma(2.0, 3.0, grid.shape)
    d = w.apply(s)
    total_src = np.sum(s.ravel() * m2(w, "a"))
    mapped = ~w.unmapped
    if norm_type == "dstarea":
        total_dst = np.sum((d * m2(w, "b"))[mapped])
        np.testing.assert_allclose(w.row_sums[mapped], w.frac_b[mapped], rtol=1e-12)
    else:
        total_dst = np.sum((d * w.frac_b * m2(w, "b"))[mapped])
        np.testing.assert_allclose(w.row_sums[mapped], 1.0, rtol=1e-12)
    assert abs(total_dst - total_src) <= 1e-10 * abs(total_src)
    # source cells are 1 km^2 exactly in this equal-area grid
    np.testing.assert_allclose(m2(w, "a"), 1e6, rtol=1e-12)


def test_partial_and_masked_cells_against_independent_geometry():
    rng = np.random.default_rng(5)
    mask = rng.random((18, 24)) > 0.15
    grid = albers_grid(mask=mask)
    # destinations cover an irregular part of the grid (a disc sticking out of it)
    disc = shapely.Point(1.2e6 + 9000, 1.3e6 + 8000).buffer(9500, quad_segs=32)
    dst = voronoi_tiles(25, disc.bounds, seed=7, clip=disc)
    w = generate_weights(grid, dst, "conserve", progress=False)
    # independent: frac_a_i = area(cell_i & union(dst)) / area(cell_i), 0 for masked cells
    cells = grid.cell_polygons(grid.crs)
    cover = shapely.area(shapely.intersection(cells, disc)) / shapely.area(cells)
    expect_a = np.where(mask.ravel(), cover, 0.0)
    np.testing.assert_allclose(w.frac_a, expect_a, rtol=0, atol=1e-10)
    assert not np.isin(w.col, np.nonzero(~mask.ravel())[0]).any(), "masked cells must carry no weight"
    # independent: frac_b_j = area(dst_j & union(active cells)) / area(dst_j)
    active = shapely.union_all(cells[mask.ravel()])
    expect_b = shapely.area(shapely.intersection(dst.geoms, active)) / shapely.area(dst.geoms)
    np.testing.assert_allclose(w.frac_b, expect_b, rtol=0, atol=1e-10)
    assert (w.frac_b < 1 - 1e-6).any()
    # conserved: the integral over the covered part of the active source cells
    s = rng.normal(10, 3, grid.shape)
    d = w.apply(s)
    lhs = np.sum(d * m2(w, "b"))
    rhs = np.sum(s.ravel() * w.frac_a * m2(w, "a"))
    assert abs(lhs - rhs) <= 1e-10 * abs(rhs)
    wf = generate_weights(grid, dst, "conserve", norm_type="fracarea", progress=False)
    df = wf.apply(s)
    lhs_f = np.sum(df * wf.frac_b * m2(wf, "b"))
    assert abs(lhs_f - rhs) <= 1e-10 * abs(rhs)
    # a constant field: fracarea gives the constant, dstarea the constant times frac_b
    np.testing.assert_allclose(wf.apply(np.full(grid.shape, 7.5)), 7.5, rtol=1e-12)
    np.testing.assert_allclose(w.apply(np.full(grid.shape, 7.5)), 7.5 * w.frac_b, rtol=1e-12)


def test_rectangle_overlaps_match_hand_computation():
    grid = albers_grid(nx=4, ny=3, x0=0.0, y0=0.0)
    rect = shapely.box(250.0, 400.0, 2750.0, 1900.0)  # 2500 x 1500 m
    w = generate_weights(grid, Polygons([rect], ALBERS, ["r"]), progress=False)
    # overlap of the rectangle with each 1000 m cell, by hand
    ox = np.array([750.0, 1000.0, 750.0, 0.0])
    oy = np.array([600.0, 900.0, 0.0])
    expect = (oy[:, None] * ox[None, :]).ravel() / (2500.0 * 1500.0)
    np.testing.assert_allclose(w.matrix.toarray()[0], expect, rtol=0, atol=1e-14)
    assert w.frac_b[0] == pytest.approx(1.0, abs=1e-14)
    np.testing.assert_allclose(w.frac_a, (oy[:, None] * ox[None, :]).ravel() / 1e6, atol=1e-14)


def test_lonlat_cells_are_densified_to_follow_parallels():
    # geometry="plane": 1-degree lon/lat cells at 40-48 N, their exact ellipsoidal area is known in closed form
    x = np.arange(-80.5, -70.0, 1.0)
    y = np.arange(47.5, 39.0, -1.0)  # descending latitude, like ERA5
    grid = Grid(x, y, "EPSG:4326")
    dst = Polygons([shapely.box(-82, 38, -68, 50)], "EPSG:4326", ["all"])
    w = generate_weights(grid, dst, progress=False, geometry="plane")
    R = w.attrs["earth_radius_for_square_radians_m"]
    jj, ii = np.divmod(np.arange(grid.size), grid.nx)
    exact = ellipsoid_area_lonlat_box(grid.x_bounds[ii, 0], grid.x_bounds[ii, 1], grid.y_bounds[jj, 0],
                                      grid.y_bounds[jj, 1])
    np.testing.assert_allclose(w.area_a * R * R, exact, rtol=2e-6)
    np.testing.assert_allclose(w.frac_a, 1.0, atol=1e-9)
    # without densification the cells are bounded by chords, not parallels: visibly wrong areas
    w0 = generate_weights(grid, dst, progress=False, densify_deg=None, geometry="plane")
    assert np.max(np.abs(w0.area_a * R * R / exact - 1)) > 2e-5


def test_unmapped_destination_error_and_nan():
    grid = albers_grid(nx=5, ny=5, x0=0.0, y0=0.0)
    inside = shapely.box(100, 100, 2100, 2100)
    outside = shapely.box(9000, 9000, 9500, 9500)
    dst = Polygons([inside, outside], ALBERS, ["in", "out"])
    with pytest.raises(UnmappedError, match=r"1 of 2 .*out"):
        generate_weights(grid, dst, progress=False)
    with pytest.warns(UserWarning, match="1 of 2"):
        w = generate_weights(grid, dst, progress=False, unmapped="nan")
    assert w.n_unmapped == 1 and w.unmapped.tolist() == [False, True]
    d = w.apply(np.ones(grid.shape))
    assert np.isfinite(d[0]) and np.isnan(d[1])
    # a masked destination is neither mapped nor reported as unmapped
    dst_m = Polygons([inside, outside], ALBERS, ["in", "out"], mask=[1, 0])
    w2 = generate_weights(grid, dst_m, progress=False)
    assert w2.n_unmapped == 0 and w2.frac_b[1] == 0.0


def test_argument_errors():
    grid = albers_grid(nx=3, ny=3)
    dst = Polygons([shapely.box(1.2e6, 1.3e6, 1.201e6, 1.301e6)], ALBERS)
    with pytest.raises(RegridError, match="method must be one of"):
        generate_weights(grid, dst, "conservative")
    with pytest.raises(RegridError, match="norm_type"):
        generate_weights(grid, dst, norm_type="none")
    with pytest.raises(RegridError, match="unmapped"):
        generate_weights(grid, dst, unmapped="ignore")
    with pytest.raises(RegridError, match="backend"):
        generate_weights(grid, dst, backend="xesmf")
    with pytest.raises(RegridError, match="patch.*esmpy"):
        generate_weights(grid, dst, "patch")
    with pytest.raises(RegridError, match="area_crs must be a projected CRS"):
        generate_weights(grid, dst, area_crs="EPSG:4326")
    with pytest.raises(RegridError, match="src must be a Grid, Polygons or a file path"):
        generate_weights(np.zeros((3, 3)), dst)
    with pytest.raises(RegridError, match="does not exist"):
        generate_weights("/nonexistent/grid.nc", dst)
    with pytest.raises(RegridError, match="only Polygon and MultiPolygon"):
        Polygons([shapely.Point(0, 0)], ALBERS)
    with pytest.raises(RegridError, match="duplicate ids"):
        Polygons([shapely.box(0, 0, 1, 1), shapely.box(1, 0, 2, 1)], ALBERS, ["a", "a"])
    with pytest.raises(RegridError, match="mask has 4 values"):
        Grid([0.0, 1.0, 2.0], [0.0, 1.0, 2.0], ALBERS, mask=np.ones(4))


def test_invalid_polygons_are_repaired_with_a_warning():
    grid = albers_grid(nx=4, ny=4, x0=0.0, y0=0.0)
    bowtie = shapely.Polygon([(0, 0), (4000, 4000), (4000, 0), (0, 4000)])  # self-intersecting
    dst = Polygons([bowtie], ALBERS, ["bowtie"])
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        w = generate_weights(grid, dst, progress=False)
    assert any("repaired" in str(r.message) for r in rec)
    # the repaired bow-tie is two triangles of 4e6 m^2 each
    R = w.attrs["earth_radius_for_square_radians_m"]
    assert w.area_b[0] * R * R == pytest.approx(8e6, rel=1e-12)
