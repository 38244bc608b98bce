"""Conservative weights on the sphere (great-circle cells, areas in steradians), as ESMF defines them.

Checked against closed forms (areas), against themselves (conservation, seam conventions) and, when the
``cdo`` program is installed (``apt-get install cdo``; CI installs it), against CDO's ``gencon`` — an
independent spherical clipper (YAC's) — on global, polar, seam, mesh, rotated and concave cases.
"""
from __future__ import annotations

import numpy as np
import pytest
import shapely
from regrid_sphere_cases import (concave_cells, cell_means, coslat, cubed_sphere, lonlat_grid, rotated_grid,
                                 voronoi_mesh, y22)

from coupler.regrid import Grid, Polygons, RegridError, generate_weights
from coupler.regrid.cdo import cdo_available, cdo_weights
from coupler.regrid.sphere import lonlat_to_xyz, ring_signed_areas, sphere_cells

FOUR_PI = 4.0 * np.pi


def test_areas_closed_forms():
    # the octant triangle (0,0), (90,0), (0,90) is an eighth of the sphere
    tri = lonlat_to_xyz(np.array([0.0, 90.0, 0.0]), np.array([0.0, 0.0, 90.0]))
    assert ring_signed_areas(tri, np.zeros(3, int))[0] == pytest.approx(np.pi / 2, rel=1e-15)
    assert ring_signed_areas(tri[::-1], np.zeros(3, int))[0] == pytest.approx(-np.pi / 2, rel=1e-15)
    # the lon/lat cell (0..90, 0..90) is the octant, its two top corners merged at the pole
    cell = lonlat_to_xyz(np.array([0.0, 90.0, 90.0, 0.0]), np.array([0.0, 0.0, 90.0, 90.0]))
    assert abs(ring_signed_areas(cell, np.zeros(4, int))[0]) == pytest.approx(np.pi / 2, rel=1e-15)
    # global grids and meshes tile the sphere
    for cells in (lonlat_grid(7.5, 5.0, lon0=-180.0), cubed_sphere(5), voronoi_mesh(200, seed=3)):
        assert sphere_cells(cells).areas().sum() == pytest.approx(FOUR_PI, rel=1e-13)
    # a concave (L-shaped) cell plus the square in its notch is the enclosing great-circle polygon (whose top
    # edge has the notch's corner (12, 24) as a vertex: two great-circle arcs are not the one from 10 to 14)
    cc = concave_cells(n=1)
    a = sphere_cells(cc).areas()
    box = Polygons([shapely.Polygon([(10, 20), (14, 20), (14, 24), (12, 24), (10, 24)])], "EPSG:4326")
    assert a.sum() == pytest.approx(sphere_cells(box).areas()[0], rel=1e-13)


@pytest.mark.parametrize("norm_type", ["dstarea", "fracarea"])
@pytest.mark.parametrize("case", ["lonlat-cubed", "voronoi-lonlat", "lonlat-lonlat"])
def test_global_to_global_conserves_the_integral(case, norm_type):
    src, dst = {"lonlat-cubed": (lonlat_grid(6.0, 4.0), cubed_sphere(7)),
                "voronoi-lonlat": (voronoi_mesh(400, seed=1), lonlat_grid(9.0, 7.5, lon0=-180.0)),
                "lonlat-lonlat": (lonlat_grid(5.0), lonlat_grid(7.2, 6.0, lon0=-177.0))}[case]
    w = generate_weights(src, dst, norm_type=norm_type, progress=False)
    assert w.attrs["geometry"].startswith("sphere")
    np.testing.assert_allclose(w.frac_a, 1.0, atol=1e-12)
    np.testing.assert_allclose(w.frac_b, 1.0, atol=1e-12)
    np.testing.assert_allclose(w.row_sums, 1.0, atol=1e-12)
    assert w.area_a.sum() == pytest.approx(FOUR_PI, rel=1e-13)
    assert w.area_b.sum() == pytest.approx(FOUR_PI, rel=1e-13)
    s = np.random.default_rng(0).gamma(2.0, 3.0, src.size)
    d = w.apply(s, flatten_dst=True)
    total_src = np.sum(s * w.area_a)
    assert abs(np.sum(d * w.area_b) - total_src) <= 1e-12 * abs(total_src)


def test_seam_conventions_give_the_same_weights():
    src = lonlat_grid(1.0, lon_range=(170.0, 190.0), lat_range=(-10.0, 10.0))  # 0..360 across 180
    dst_a = lonlat_grid(0.7, lon_range=(-185.0, -172.0), lat_range=(-8.0, 8.0))  # crosses -180
    dst_b = lonlat_grid(0.7, lon_range=(175.0, 188.0), lat_range=(-8.0, 8.0))  # the same cells, +360
    wa = generate_weights(src, dst_a, progress=False)
    wb = generate_weights(src, dst_b, progress=False)
    assert np.abs(wa.matrix - wb.matrix).max() < 1e-13
    np.testing.assert_allclose(wa.frac_b, 1.0, atol=1e-12)
    # a global 0..360 grid onto cells straddling lon 0
    glob = lonlat_grid(2.0)
    dst0 = lonlat_grid(0.9, lon_range=(-3.0, 3.3), lat_range=(40.0, 45.0))
    w0 = generate_weights(glob, dst0, progress=False)
    np.testing.assert_allclose(w0.frac_b, 1.0, atol=1e-12)
    np.testing.assert_allclose(w0.row_sums, 1.0, atol=1e-12)


def test_cells_containing_the_poles():
    # odd n: the cubed sphere's two polar faces have a cell centred on each pole
    mesh = cubed_sphere(5)
    sc = sphere_cells(mesh)
    c, r = sc.centers_radii(np.arange(mesh.size))
    polar = np.nonzero(np.abs(c[:, 2]) > 1 - 1e-12)[0]
    assert polar.size == 2
    w = generate_weights(lonlat_grid(3.0), mesh, progress=False)
    np.testing.assert_allclose(w.frac_b[polar], 1.0, atol=1e-12)
    # every source cell of the polar rows meets a polar cell: 120 cells around each pole
    rows = w.matrix[polar].tocsr()
    lat_of = np.repeat(np.arange(-88.5, 90, 3.0), 120)
    for k, sgn in zip(range(2), np.sign(c[polar, 2])):
        cols = rows[k].indices
        assert np.isin(np.nonzero(lat_of * sgn > 88)[0], cols).all()
    # the weights of a polar cell are the areas of its overlaps: a symmetric cell sees the 120 polar-row
    # cells equally (4-fold symmetry of the cell, 120 = 4 * 30 cells)
    top = rows[int(np.argmax(np.sign(c[polar, 2])))]
    polar_row = top.data[lat_of[top.indices] > 88]
    assert np.ptp(polar_row) < 1e-9 * polar_row.max()


def test_projected_polygons_are_densified_to_converged_areas():
    # an EPSG:5070 polygon: straight edges in Albers; with densify_m the great-circle polygon converges
    poly = Polygons([shapely.Polygon([(1.2e6, 1.3e6), (1.26e6, 1.31e6), (1.25e6, 1.37e6), (1.19e6, 1.35e6)])],
                    "EPSG:5070")
    a = [sphere_cells(poly, densify_m=d).areas()[0] for d in (400.0, 200.0, 100.0, 20.0)]
    diffs = np.abs(np.diff(a)) / a[-1]
    assert diffs[0] > 3 * diffs[1]  # quadratic convergence of the edge shape
    assert abs(a[-1] - a[-2]) / a[-1] < 1e-9
    with pytest.raises(RegridError, match="densify_m"):
        generate_weights(lonlat_grid(1.0, lon_range=(-100, -80), lat_range=(30, 40)), poly, densify_m=-1.0)
    with pytest.raises(RegridError, match="geometry must be one of"):
        generate_weights(lonlat_grid(1.0), poly, geometry="flat")


def test_analytic_fields_first_order_convergence():
    dst = cubed_sphere(6)
    true_y = cell_means(dst, y22)
    true_c = cell_means(dst, coslat)
    errs = []
    for h in (6.0, 3.0, 1.5):
        src = lonlat_grid(h)
        w = generate_weights(src, dst, progress=False)
        e = []
        for f, truth in ((y22, true_y), (coslat, true_c)):
            s = cell_means(src, f, levels=3)
            e.append(np.abs(w.apply(s, flatten_dst=True) - truth).max())
        errs.append(e)
    errs = np.array(errs)
    order = np.log2(errs[:-1] / errs[1:])
    assert np.all(order > 0.9), (errs, order)


def test_cells_too_large_are_refused():
    big = Polygons([shapely.Polygon([(0, -60), (170, -60), (170, 60), (0, 60)])], "EPSG:4326")
    with pytest.raises(RegridError, match="too large"):
        generate_weights(lonlat_grid(10.0), big, progress=False)


# ------------------------------------------------------------------------------------------------
# CDO
# ------------------------------------------------------------------------------------------------
needs_cdo = pytest.mark.skipif(not cdo_available(), reason="cdo is not on PATH (apt-get install cdo)")

CDO_CASES = {
    "global lonlat 10 -> 15x12 (poles, seam at 0 vs -180)": lambda: (lonlat_grid(10.0),
                                                                      lonlat_grid(15.0, 12.0, lon0=-180.0)),
    "global lonlat 10 -> cubed sphere (mesh, poles inside cells)": lambda: (lonlat_grid(10.0), cubed_sphere(5)),
    "voronoi mesh -> global lonlat": lambda: (voronoi_mesh(300), lonlat_grid(15.0, 12.0, lon0=-180.0)),
    "rotated-pole curvilinear -> regional lonlat": lambda: (rotated_grid(), lonlat_grid(
        0.75, 0.6, lon_range=(-12.0, 32.0), lat_range=(36.0, 64.0))),
    "regional across +-180": lambda: (lonlat_grid(1.0, lon_range=(170.0, 190.0), lat_range=(-10.0, 10.0)),
                                      lonlat_grid(0.7, lon_range=(-185.0, -172.0), lat_range=(-8.0, 8.0))),
    "lonlat -> concave cells": lambda: (lonlat_grid(0.5, lon_range=(9.0, 15.0), lat_range=(19.0, 25.0)),
                                        concave_cells()),
}


def compare_with_cdo(w, c):
    """max |S - S_cdo| / max |S_cdo| over the union of both sparsity patterns, frac_b and area_b differences.

    With fracarea CDO rescales the overlaps of a partly covered destination to its full area before it takes
    frac_b (YAC's weight correction), so its frac_b is 1 there; ESMF's (and ours) stays the covered fraction:
    frac_b is then compared on the fully covered and the unmapped destinations only.
    """
    dS = np.abs(w.matrix - c.matrix).max() / np.abs(c.matrix).max()
    comparable = np.ones(w.n_b, dtype=bool)
    if c.norm_type == "fracarea":
        comparable = (w.frac_b > 1 - 1e-9) | (w.frac_b == 0)
    dfrac = np.abs(w.frac_b - c.frac_b)[comparable].max()
    has = c.area_b > 0
    darea = np.abs(w.area_b[has] / c.area_b[has] - 1).max()
    return dS, dfrac, darea


@needs_cdo
@pytest.mark.parametrize("case", list(CDO_CASES))
def test_conservative_weights_equal_cdo_gencon(case):
    src, dst = CDO_CASES[case]()
    norm = "fracarea" if "cubed" in case else "dstarea"
    w = generate_weights(src, dst, norm_type=norm, progress=False, unmapped="nan")
    c = cdo_weights(src, dst, "conserve", norm_type=norm)
    assert c.n_s > 0
    dS, dfrac, darea = compare_with_cdo(w, c)
    assert dS < 1e-9 and dfrac < 1e-9 and darea < 1e-9, (dS, dfrac, darea)


@needs_cdo
def test_cdo_reads_lonlat_cells_with_latitude_circles():
    # without the corner rotation CDO treats lon/lat boxes as bounded by latitude circles (not ESMF's
    # great circles): the polar cells then differ by far more than rounding, which shows the comparison
    # above can fail
    src, dst = lonlat_grid(10.0), lonlat_grid(15.0, 12.0, lon0=-180.0)
    w = generate_weights(src, dst, progress=False)
    c = cdo_weights(src, dst, "conserve", great_circles=False)
    dS, dfrac, darea = compare_with_cdo(w, c)
    assert darea > 1e-3
