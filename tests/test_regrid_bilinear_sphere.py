"""Bilinear on the sphere as ESMF defines it, nearest_dtos, extrapolation, and the comparison with CDO's genbil.

ESMF's bilinear: the destination point ``p`` is where the ray from the centre of the sphere meets the bilinear
surface of four neighbouring source centres in 3-D (``B(u, v) = t p``); pole triangles close global grids.
The weights are checked here against an independent solver of ESMF's own formulation (Newton on ``(u, v, t)``),
against analytic fields (second-order convergence, including the polar caps) and, when ``cdo`` is installed,
against ``cdo genbil`` (CDO interpolates in longitude/latitude: the same points mapped, values equal to the
planar variant to rounding and to the spherical one to the O(h^2) difference of the two definitions).
"""
from __future__ import annotations

import numpy as np
import pytest
import shapely
from regrid_sphere_cases import lonlat_grid, rotated_grid, y22

from coupler.regrid import Grid, Polygons, RegridError, UnmappedError, generate_weights, read_weights
from coupler.regrid.cdo import cdo_available, cdo_weights
from coupler.regrid.cli import main
from coupler.regrid.sphere import lonlat_to_xyz


def points(lon, lat):
    """Destination 'cells' whose centres are the given points (only the centres matter for bilinear)."""
    lon, lat = np.asarray(lon, dtype=float), np.asarray(lat, dtype=float)
    geoms = shapely.box(lon - 1e-4, lat - 1e-4, lon + 1e-4, lat + 1e-4)
    return Polygons(geoms, "EPSG:4326", [f"p{i}" for i in range(lon.size)], centers=(lon, lat))


def smooth(cells):
    """A smooth field on the sphere (no symmetry that would hide errors at the poles or the seam)."""
    lon, lat = cells.lonlat_centers()
    p = lonlat_to_xyz(lon, lat)
    return 2.0 + y22(p) + 0.5 * p[..., 2] + 0.3 * p[..., 0] * p[..., 2] + 0.2 * np.sin(3 * np.deg2rad(lon)) * \
        np.cos(np.deg2rad(lat)) ** 3


def esmf_newton(c, p, iters=30):
    """ESMF's formulation solved independently: B(u, v) - t p = 0 for (u, v, t) by Newton (c: (n, 4, 3))."""
    x = np.tile([0.5, 0.5, 1.0], (p.shape[0], 1))
    A = c[:, 0] - c[:, 1] + c[:, 2] - c[:, 3]
    for _ in range(iters):
        u, v, t = x[:, :1], x[:, 1:2], x[:, 2:]
        B = c[:, 0] + u * (c[:, 1] - c[:, 0]) + v * (c[:, 3] - c[:, 0]) + u * v * A
        F = B - t * p
        J = np.stack([c[:, 1] - c[:, 0] + v * A, c[:, 3] - c[:, 0] + u * A, -p], axis=2)
        x = x - np.linalg.solve(J, F[..., None])[..., 0]
    return x


def quad_of_row(cols, nx):
    """(j0, i0) of the quad (lower-left corner) whose 4 corners are ``cols`` (periodic in i)."""
    jj, ii = np.divmod(np.asarray(cols), nx)
    j0 = jj.min()
    iset = set(ii.tolist())
    i0 = nx - 1 if iset == {nx - 1, 0} else min(iset)
    return j0, i0


@pytest.mark.parametrize("case", ["global lonlat", "rotated curvilinear"])
def test_weights_are_esmf_bilinear_on_the_sphere(case):
    rng = np.random.default_rng(4)
    if case == "global lonlat":
        src = lonlat_grid(7.5, 6.0)  # 0..360, rows at +-87
        lon, lat = rng.uniform(-180, 180, 400), np.rad2deg(np.arcsin(rng.uniform(-0.99, 0.99, 400)))
    else:
        src = rotated_grid(n=12, d=2.0)
        lon0, lat0 = src.lonlat_centers()
        k = rng.integers(0, src.size, 400)
        lon, lat = lon0[k] + rng.normal(0, 0.8, 400), lat0[k] + rng.normal(0, 0.8, 400)
    w = generate_weights(src, points(lon, lat), "bilinear", progress=False, unmapped="nan")
    m = w.matrix.tocsr()
    np.testing.assert_allclose(w.row_sums[~w.unmapped], 1.0, rtol=1e-12)
    assert np.all(w.S >= 0)
    slon, slat = src.lonlat_centers()
    nodes = lonlat_to_xyz(slon, slat)
    nx = src.nx
    P = lonlat_to_xyz(lon, lat)
    rows = [r for r in range(w.n_b) if m.indptr[r + 1] - m.indptr[r] == 4]
    quads, expect_rows = [], []
    for r in rows:
        cols = m.indices[m.indptr[r]:m.indptr[r + 1]]
        j0, i0 = quad_of_row(cols, nx)
        i1 = (i0 + 1) % nx
        if {j0 * nx + i0, j0 * nx + i1, (j0 + 1) * nx + i1, (j0 + 1) * nx + i0} != set(cols.tolist()):
            continue  # pole-triangle rows are checked in test_points_past_the_last_row_and_at_the_poles
        quads.append([j0 * nx + i0, j0 * nx + i1, (j0 + 1) * nx + i1, (j0 + 1) * nx + i0])
        expect_rows.append(r)
    assert len(expect_rows) > 300
    quads = np.array(quads)
    x = esmf_newton(nodes[quads], P[expect_rows])
    u, v, t = x.T
    assert np.all(t > 0) and np.all((u > -1e-9) & (u < 1 + 1e-9) & (v > -1e-9) & (v < 1 + 1e-9))
    expect = np.stack([(1 - u) * (1 - v), u * (1 - v), u * v, (1 - u) * v], axis=1)
    dense = m[expect_rows].toarray()
    got = dense[np.arange(len(expect_rows))[:, None], quads]
    assert np.abs(got - expect).max() < 1e-10


def test_points_past_the_last_row_and_at_the_poles():
    src = lonlat_grid(10.0, 8.0)  # rows at -86 .. 86, 36 columns over 0..360
    nx = src.nx
    lon = np.array([0.0, 123.0, -40.0, 5.0, 355.0, 180.0, -180.0, 17.0])
    lat = np.array([90.0, -90.0, 88.0, 86.5, -89.0, 87.0, 87.0, 45.0])
    dst = points(lon, lat)
    w = generate_weights(src, dst, "bilinear", progress=False)
    assert w.n_unmapped == 0
    np.testing.assert_allclose(w.row_sums, 1.0, rtol=1e-12)
    m = w.matrix.toarray()
    top = np.arange((src.ny - 1) * nx, src.ny * nx)
    bottom = np.arange(nx)
    # at a pole the value is the mean of the end row (ESMF's "allavg" pole)
    np.testing.assert_allclose(m[0, top], 1.0 / nx, rtol=1e-12)
    np.testing.assert_allclose(m[1, bottom], 1.0 / nx, rtol=1e-12)
    # past the last row: the two row neighbours plus the pole's share of the row; 180 and -180 are one point
    assert np.all(m[2, top] > 0) and m[2].sum() == pytest.approx(1.0)
    np.testing.assert_allclose(m[5], m[6], atol=1e-15)
    # without pole handling the caps are unmapped, the rest is unchanged
    wn = generate_weights(src, dst, "bilinear", progress=False, pole_method="none", unmapped="nan")
    assert wn.unmapped.tolist() == [True, True, True, True, True, True, True, False]
    np.testing.assert_allclose(wn.matrix.toarray()[7], m[7], atol=1e-15)
    # the pole's mean leaves out masked centres of the end row; triangles with a masked corner are not used
    mask = np.ones(src.shape, dtype=bool)
    mask[-1, 3] = False
    wm = generate_weights(Grid(src.x, src.y, "EPSG:4326", mask=mask), points([0.0], [90.0]), "bilinear",
                          progress=False)
    mm = wm.matrix.toarray()[0]
    assert mm[top[3]] == 0 and mm[top[np.arange(nx) != 3]] == pytest.approx(np.full(nx - 1, 1.0 / (nx - 1)))


def test_second_order_convergence_including_the_polar_caps():
    rng = np.random.default_rng(5)
    lon = np.concatenate([rng.uniform(-180, 180, 300), rng.uniform(-180, 180, 100)])
    lat = np.concatenate([np.rad2deg(np.arcsin(rng.uniform(-1, 1, 300))), rng.choice([-1, 1], 100) *
                          rng.uniform(85.0, 90.0, 100)])
    dst = points(lon, lat)
    truth = smooth(dst)
    errs, cap_errs = [], []
    cap = np.abs(lat) > 85
    for h in (6.0, 3.0, 1.5):
        src = lonlat_grid(h)
        w = generate_weights(src, dst, "bilinear", progress=False)
        e = np.abs(w.apply(smooth(src)) - truth)
        errs.append(e.max())
        cap_errs.append(e[cap].max())
    order = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
    cap_order = np.log2(np.array(cap_errs[:-1]) / np.array(cap_errs[1:]))
    assert np.all(order > 1.7), (errs, order)
    assert np.all(cap_order > 1.7), (cap_errs, cap_order)


def haversine_argmin(slon, slat, dlon, dlat):
    a, b = np.deg2rad(slat)[None, :], np.deg2rad(dlat)[:, None]
    dl = np.deg2rad(slon)[None, :] - np.deg2rad(dlon)[:, None]
    h = np.sin((a - b) / 2) ** 2 + np.cos(a) * np.cos(b) * np.sin(dl / 2) ** 2
    return np.argmin(h, axis=1)


def test_masked_corners_unmapped_and_extrap_nearest_stod():
    rng = np.random.default_rng(6)
    g = lonlat_grid(1.0, lon_range=(-10.0, 10.0), lat_range=(40.0, 55.0))
    mask = rng.random(g.shape) > 0.15
    src = Grid(g.x, g.y, "EPSG:4326", mask=mask)
    lon, lat = rng.uniform(-12, 12, 500), rng.uniform(38, 57, 500)
    dst = points(lon, lat)
    full = generate_weights(g, dst, "bilinear", progress=False, unmapped="nan")
    with pytest.raises(UnmappedError, match="bilinear"):
        generate_weights(src, dst, "bilinear", progress=False)
    with pytest.warns(UserWarning, match="not mapped"):
        w = generate_weights(src, dst, "bilinear", progress=False, unmapped="nan")
    # a point is unmapped exactly when its quad touches a masked centre (or it is outside the centres' hull)
    fm = full.matrix.tocsr()
    touches = np.array([not mask.ravel()[fm.indices[fm.indptr[r]:fm.indptr[r + 1]]].all() for r in range(dst.size)])
    np.testing.assert_array_equal(w.unmapped, full.unmapped | touches)
    assert 50 < w.n_unmapped < 450
    mapped = ~w.unmapped
    np.testing.assert_allclose(w.matrix.toarray()[mapped], full.matrix.toarray()[mapped], atol=1e-15)
    # extrapolation: the unmapped ones take the nearest active centre (great-circle distance), weight 1
    we = generate_weights(src, dst, "bilinear", progress=False, extrap_method="nearest_stod")
    assert we.n_unmapped == 0 and we.attrs["extrap_method"] == "nearest_stod"
    slon, slat = src.lonlat_centers()
    act = np.nonzero(mask.ravel())[0]
    un = np.nonzero(w.unmapped)[0]
    expect = act[haversine_argmin(slon[act], slat[act], lon[un], lat[un])]
    em = we.matrix.tocsr()
    np.testing.assert_array_equal([em.indices[em.indptr[r]] for r in un], expect)
    assert np.all(np.diff(em.indptr)[un] == 1) and np.all(we.frac_b == 1.0)
    np.testing.assert_allclose(we.matrix.toarray()[mapped], w.matrix.toarray()[mapped], atol=0)


def test_nearest_dtos_sums_each_source_into_its_nearest_destination():
    rng = np.random.default_rng(7)
    src = lonlat_grid(0.5, lon_range=(170.0, 190.0), lat_range=(-5.0, 5.0))  # across the seam
    dlon, dlat = rng.uniform(-190, -170, 60), rng.uniform(-6, 6, 60)
    dmask = rng.random(60) > 0.1
    dst = Polygons(shapely.box(dlon - 1e-3, dlat - 1e-3, dlon + 1e-3, dlat + 1e-3), "EPSG:4326",
                   [f"d{i}" for i in range(60)], centers=(dlon, dlat), mask=dmask)
    w = generate_weights(src, dst, "nearest_dtos", progress=False, unmapped="nan")
    slon, slat = src.lonlat_centers()
    act_d = np.nonzero(dmask)[0]
    choice = act_d[haversine_argmin(dlon[act_d], dlat[act_d], slon, slat)]
    m = w.matrix.tocsc()
    assert np.all(np.diff(m.indptr) == 1) and np.all(w.S == 1.0)  # every source goes to one destination
    np.testing.assert_array_equal(m.indices, choice)
    s = rng.normal(size=src.size)
    d = w.apply(s)
    chosen = np.isin(np.arange(60), choice)
    np.testing.assert_allclose(d[chosen], np.bincount(choice, weights=s, minlength=60)[chosen], rtol=1e-12)
    assert np.all(np.isnan(d[dmask & ~chosen])) and w.n_unmapped == int((dmask & ~chosen).sum())
    assert w.method == "nearest_dtos"
    # ties go to the lowest destination index (ESMF): the centres (0, 0) and (0, 1) are equally far from both
    tie = generate_weights(Grid([0.0, 1.0], [0.0, 1.0], "EPSG:4326"), points([-0.5, 0.5], [0.0, 0.0]),
                           "nearest_dtos", progress=False)
    assert tie.matrix.toarray().tolist() == [[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 1.0]]


def test_bad_options_are_refused_with_names():
    src = lonlat_grid(5.0, lon_range=(0, 20), lat_range=(0, 20))
    dst = points([5.0], [5.0])
    with pytest.raises(RegridError, match="extrap_method must be one of .*'bogus'"):
        generate_weights(src, dst, "bilinear", extrap_method="bogus")
    with pytest.raises(RegridError, match="pole_method must be one of .*'north'"):
        generate_weights(src, dst, "bilinear", pole_method="north")
    with pytest.raises(RegridError, match="non-conservative"):
        generate_weights(src, dst, "conserve", extrap_method="nearest_stod")
    with pytest.raises(RegridError, match="patch"):
        generate_weights(src, dst, "patch")


def test_cli_nearest_dtos_extrap_and_pole_method(tmp_path):
    from coupler.regrid import write_scrip

    src = lonlat_grid(10.0, 8.0)
    g = tmp_path / "src.nc"
    write_scrip(src, g)
    d = tmp_path / "dst.nc"
    write_scrip(lonlat_grid(15.0, 12.0, lon0=-180.0), d)
    out = tmp_path / "w.nc"
    assert main(["weights", str(g), str(d), "-o", str(out), "--method", "bilinear", "--pole-method", "none",
                 "--unmapped", "nan", "--no-progress"]) == 0
    w_none = read_weights(out)
    assert w_none.n_unmapped > 0
    assert main(["weights", str(g), str(d), "-o", str(out), "--method", "bilinear", "--no-progress",
                 "--overwrite"]) == 0
    assert read_weights(out).n_unmapped == 0
    assert main(["weights", str(d), str(g), "-o", str(out), "--method", "nearest_dtos", "--extrap", "nearest_stod",
                 "--no-progress", "--overwrite"]) == 0
    w = read_weights(out)
    assert w.method == "nearest_dtos" and w.n_unmapped == 0


# ------------------------------------------------------------------------------------------------
# CDO genbil
# ------------------------------------------------------------------------------------------------
needs_cdo = pytest.mark.skipif(not cdo_available(), reason="cdo is not on PATH (apt-get install cdo)")


def _masked_regional():
    g = lonlat_grid(1.0, lon_range=(-20.0, 30.0), lat_range=(30.0, 70.0))
    mask = np.random.default_rng(0).random(g.shape) > 0.1
    return Grid(g.x, g.y, "EPSG:4326", mask=mask), lonlat_grid(0.37, lon_range=(-15.0, 25.0), lat_range=(35.0, 65.0))


BIL_CASES = {
    "regional lonlat -> lonlat (partly outside)": lambda: (
        lonlat_grid(1.0, lon_range=(-20.0, 30.0), lat_range=(30.0, 70.0)),
        lonlat_grid(0.37, lon_range=(-25.0, 35.0), lat_range=(25.0, 75.0))),
    "global lonlat 0..360 -> -180..180 (poles, seam)": lambda: (lonlat_grid(2.0), lonlat_grid(1.5, lon0=-180.0)),
    "rotated-pole curvilinear -> lonlat": lambda: (rotated_grid(), lonlat_grid(
        0.75, 0.6, lon_range=(-12.0, 32.0), lat_range=(36.0, 64.0))),
    "regional across +-180": lambda: (lonlat_grid(1.0, lon_range=(170.0, 190.0), lat_range=(-10.0, 10.0)),
                                      lonlat_grid(0.7, lon_range=(-185.0, -172.0), lat_range=(-12.0, 8.0))),
    "regional lonlat with masked points": _masked_regional,
}


def compare_bilinear_with_cdo(src, dst):
    """Native (sphere and plane) against cdo genbil on a smooth field: differences relative to the field range."""
    w = generate_weights(src, dst, "bilinear", progress=False, unmapped="nan")
    wp = generate_weights(src, dst, "bilinear", progress=False, unmapped="nan", geometry="plane")
    c = cdo_weights(src, dst, "bilinear")
    f = smooth(src)
    rng = float(np.ptp(f[src.mask]))
    un_c = np.asarray(c.matrix.sum(axis=1)).reshape(-1) == 0
    vn, vp, vc = w.matrix @ f, wp.matrix @ f, c.matrix @ f
    both = ~w.unmapped & ~un_c
    both_p = ~wp.unmapped & ~un_c
    truth = smooth(dst)
    _, dlat = dst.lonlat_centers()
    if src.kind == "rectilinear" and w.attrs["geometry"].startswith("sphere") and np.ptp(src.x_bounds) >= 360 - 1e-6:
        last = float(np.abs(src.y).max())
        cap = np.abs(dlat) > last
    else:
        cap = np.zeros(dst.size, dtype=bool)
    # points mapped by only one of the two lie on the boundary of the source centres' hull, whose edges are great
    # circles for ESMF and straight lon/lat lines for CDO: the side that maps them puts almost no weight on the
    # two corners away from that edge
    only = np.nonzero(w.unmapped != un_c)[0]
    edge_gap = 0.0
    for r in only:
        mm = (c.matrix if w.unmapped[r] else w.matrix).tocsr()
        wr = np.sort(mm.data[mm.indptr[r]:mm.indptr[r + 1]])
        edge_gap = max(edge_gap, float(wr[:2].sum()) if wr.size >= 2 else 0.0)
    res = dict(n_b=dst.size, unmapped_native=w.n_unmapped, unmapped_plane=wp.n_unmapped, unmapped_cdo=int(un_c.sum()),
               mapped_by_one_only=int(only.size), edge_gap=edge_gap,
               d_sphere=float(np.abs(vn - vc)[both & ~cap].max() / rng),
               d_plane=float(np.abs(vp - vc)[both_p].max() / rng),
               err_native=float(np.abs(vn - truth)[both & ~cap].max() / rng),
               err_cdo=float(np.abs(vc - truth)[both & ~cap].max() / rng),
               n_cap=int(cap.sum()))
    if cap.any():
        res.update(d_cap=float(np.abs(vn - vc)[cap].max() / rng),
                   err_native_cap=float(np.abs(vn - truth)[cap].max() / rng),
                   err_cdo_cap=float(np.abs(vc - truth)[cap].max() / rng))
    return res


@needs_cdo
@pytest.mark.parametrize("case", list(BIL_CASES))
def test_bilinear_against_cdo_genbil(case):
    src, dst = BIL_CASES[case]()
    r = compare_bilinear_with_cdo(src, dst)
    # the same destination points are mapped (CDO extrapolates the polar caps of global grids; we map them
    # through ESMF's pole triangles), but for points within rounding of the hull's edges (great circles here)
    assert r["mapped_by_one_only"] <= 1e-3 * r["n_b"] and r["edge_gap"] < 1e-2, r
    # CDO interpolates in longitude/latitude: the planar variant reproduces it to rounding (curvilinear: to
    # the tolerance of CDO's Newton iteration) ...
    assert r["d_plane"] < 1e-10, r
    # ... and ESMF's 3-D definition differs from it by O(h^2) only (chords versus parallels), with the same accuracy
    assert r["d_sphere"] < 2e-4, r
    assert r["err_native"] < 1.2 * r["err_cdo"], r
    if r["n_cap"]:
        # poleward of the last source row CDO averages neighbours; ESMF's pole triangles are more accurate
        assert r["err_native_cap"] < r["err_cdo_cap"], r


def test_global_grid_given_as_curvilinear_is_closed_and_has_poles():
    # the same global grid as 2-D coordinates: periodicity and poles come from the centres, not from bounds
    src = lonlat_grid(10.0, 8.0)
    LON, LAT = np.meshgrid(src.x, src.y)
    curv = Grid(LON, LAT, "EPSG:4326")
    assert curv.kind == "curvilinear"
    rng = np.random.default_rng(8)
    dst = points(rng.uniform(-180, 180, 300), np.rad2deg(np.arcsin(rng.uniform(-1, 1, 300))))
    a = generate_weights(src, dst, "bilinear", progress=False)
    b = generate_weights(curv, dst, "bilinear", progress=False)
    assert a.n_unmapped == 0 and b.n_unmapped == 0
    assert np.abs(a.matrix - b.matrix).max() < 1e-12
    # a regional curvilinear grid is not closed: points beyond its ends stay unmapped
    half = Grid(LON[:, :18], LAT[:, :18], "EPSG:4326")
    c = generate_weights(half, dst, "bilinear", progress=False, unmapped="nan")
    lon, lat = dst.lonlat_centers()
    lon = lon % 360.0  # centres of the 18 columns: 5 .. 175
    outside = (lon > 175.0 + 1e-9) | (lon < 5.0 - 1e-9)
    assert np.all(c.unmapped[outside]) and not np.any(c.unmapped[(lon > 5.5) & (lon < 174.5) & (np.abs(lat) < 85)])


def test_grid_with_centres_on_the_poles():
    # end rows at +-90: the quads next to the poles collapse to triangles, every point is mapped
    lon, lat = np.arange(0.0, 360.0, 10.0), np.arange(-90.0, 90.1, 10.0)
    src = Grid(lon, lat, "EPSG:4326", y_bounds=np.column_stack([np.clip(lat - 5, -90, 90), np.clip(lat + 5, -90, 90)]))
    rng = np.random.default_rng(9)
    dst = points(np.r_[rng.uniform(-180, 180, 200), 0.0, 33.0, 71.0],
                 np.r_[np.rad2deg(np.arcsin(rng.uniform(-1, 1, 200))), 90.0, -90.0, 89.9])
    w = generate_weights(src, dst, "bilinear", progress=False)
    assert w.n_unmapped == 0
    np.testing.assert_allclose(w.row_sums, 1.0, rtol=1e-12)
    f, truth = smooth(src), smooth(dst)
    out = w.apply(f)
    np.testing.assert_allclose(out[200:202], truth[200:202], rtol=1e-12)  # the pole rows hold the pole's value
    assert np.abs(out - truth).max() < 0.05 * np.ptp(f)
