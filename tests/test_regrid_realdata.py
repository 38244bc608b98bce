"""Real data: NWM 1-km grid -> 10 NextGen divides, ERA5 0.25 deg -> 51 HRUs, NextGen's ESMF mesh, CLI.

The NWM/divides weights are checked against an independent computation: exactextract's
coverage fractions of the grid cells by each divide (a different polygon-clipping code).
"""
from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
import pytest
import shapely
import xarray as xr

from coupler.regrid import generate_weights, read_grid, read_polygons, read_weights, write_esmf_mesh, write_scrip
from coupler.regrid.cli import add_parser, main

ROOT = Path(__file__).resolve().parents[1]
NWM = ROOT / "examples" / "gridded" / "data" / "nwm_grid_ngen_divides"
ERA = ROOT / "examples" / "gridded" / "data" / "era5_latlon_hrus"
MESH = ROOT / "tests" / "data" / "regrid" / "Gauge_01073000_ESMF_Mesh.nc"


@pytest.fixture(scope="module")
def nwm():
    return read_grid(NWM / "test_template_grid.nc"), read_polygons(NWM / "test_ngen_divides.parquet")


@pytest.fixture(scope="module")
def era():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 11 self-touching HRU rings are repaired (warning tested elsewhere)
        hrus = read_polygons(ERA / "HRUs_coarse.shp")
        hrus.valid_geoms
    return read_grid(ERA / "era5-crop.nc"), hrus


def exactextract_areas(grid, polys_in_grid_crs, cell_area=None):
    """Intersection areas (n_polys, n_cells) from exactextract coverage fractions in the grid's plane."""
    from exactextract import exact_extract
    from exactextract.feature import JSONFeatureSource
    from exactextract.raster import NumPyRasterSource

    ids = np.arange(grid.size, dtype=np.float64).reshape(grid.shape)
    if grid.y[0] < grid.y[-1]:  # rasters are stored north-up
        ids = ids[::-1]
    rast = NumPyRasterSource(ids, grid.x_bounds.min(), grid.y_bounds.min(), grid.x_bounds.max(),
                             grid.y_bounds.max())
    feats = [{"type": "Feature", "properties": {"k": k}, "geometry": shapely.geometry.mapping(g)}
             for k, g in enumerate(polys_in_grid_crs)]
    res = exact_extract(rast, JSONFeatureSource(feats), ["values", "coverage"], include_cols=["k"], output="pandas")
    if cell_area is None:
        cell_area = np.abs(np.diff(grid.x_bounds, axis=1)[:, 0][None, :] * np.diff(grid.y_bounds, axis=1)[:, 0][:, None])
    cell_area = np.broadcast_to(cell_area, grid.shape).ravel()
    A = np.zeros((len(feats), grid.size))
    for _, r in res.iterrows():
        idx = np.asarray(r["values"], dtype=np.int64)
        np.add.at(A[int(r["k"])], idx, np.asarray(r["coverage"], dtype=np.float64) * cell_area[idx])
    return A


def test_nwm_divides_agree_with_exactextract(nwm):
    grid, divides = nwm
    # CRS from the RAINRATE proj4 attribute
    assert grid.is_uniform and grid.crs.coordinate_operation.method_name.startswith("Lambert Conic Conformal")
    in_grid = divides.cell_polygons(grid.crs)
    A = exactextract_areas(grid, in_grid)
    area_b = shapely.area(in_grid)
    S_ee = A / area_b[:, None]
    # same plane as exactextract (the grid's Lambert conformal plane): the clipping codes agree
    w = generate_weights(grid, divides, area_crs=grid.crs, progress=False)
    assert np.abs(w.matrix.toarray() - S_ee).max() < 1e-6
    np.testing.assert_allclose(w.frac_b, A.sum(1) / area_b, atol=1e-6)
    # default: intersections in the divides' own equal-area plane (EPSG:5070). LCC is conformal, not
    # equal-area: the difference is the projection's area distortion, still below 1e-5
    w = generate_weights(grid, divides, progress=False)
    assert w.attrs["area_crs"] == "EPSG:5070"
    assert np.abs(w.matrix.toarray() - S_ee).max() < 1e-5
    assert list(w.ids_b) == list(divides.ids)
    # the grid covers the divides except thin slivers on the outer edges
    assert 0.97 < w.frac_b.min() and w.frac_b.max() == pytest.approx(1.0, abs=1e-12)
    assert int(w.partially_mapped.sum()) == 5
    # fracarea application (same plane) = exactextract's coverage-weighted mean of RAINRATE
    wf = generate_weights(grid, divides, norm_type="fracarea", area_crs=grid.crs, progress=False)
    with xr.open_dataset(NWM / "test_template_grid.nc") as ds:
        rain = ds["RAINRATE"].values.astype(np.float64)
    expect = (A @ rain[0].ravel()) / A.sum(1)
    np.testing.assert_allclose(wf.apply(rain)[0], expect, rtol=1e-6)
    # areas: the hydrofabric's areasqkm agrees with area_b (square radians * R^2)
    R = w.attrs["earth_radius_for_square_radians_m"]
    np.testing.assert_allclose(w.area_b * R * R / 1e6, np.asarray(divides.fields["areasqkm"], float), rtol=1e-3)


def test_era5_hrus_lonlat_grid(era):
    grid, hrus = era
    assert grid.kind == "rectilinear" and not grid.is_uniform and grid.y[0] > grid.y[-1]  # latitude descending
    # the default for lon/lat cells is ESMF's sphere; the plane (parallels as cell edges, ellipsoidal areas) is
    # checked here against the HRU areas and exactextract, the sphere against it at the end
    w = generate_weights(grid, hrus, progress=False, geometry="plane")
    assert w.attrs["area_crs"].startswith("+proj=laea")
    # all HRUs lie inside the crop: fully covered, dstarea rows sum to 1
    np.testing.assert_allclose(w.frac_b, 1.0, atol=1e-9)
    np.testing.assert_allclose(w.row_sums, 1.0, atol=1e-9)
    R = w.attrs["earth_radius_for_square_radians_m"]
    # HRU_area1 (km^2) in the shapefile, computed by the Routing Toolbox
    np.testing.assert_allclose(w.area_b * R * R / 1e6, np.asarray(hrus.fields["HRU_area1"], float), rtol=1e-5,
                               atol=1e-4)  # the field is rounded to 1e-4 km^2
    # independent: exactextract coverage fractions in lon/lat times the exact ellipsoidal cell areas. Within
    # a 0.25 deg cell exactextract weighs area in degrees, not m^2, hence the 2e-3 tolerance
    from coupler.regrid.crs import ellipsoid_area_lonlat_box

    jj, ii = np.divmod(np.arange(grid.size), grid.nx)
    carea = ellipsoid_area_lonlat_box(grid.x_bounds[ii, 0], grid.x_bounds[ii, 1], grid.y_bounds[jj, 0],
                                      grid.y_bounds[jj, 1]).reshape(grid.shape)
    shifted = shapely.transform(hrus.valid_geoms, lambda xy: np.column_stack([xy[:, 0] + 360.0, xy[:, 1]]))
    A = exactextract_areas(grid, shifted, cell_area=carea)
    assert np.abs(w.matrix.toarray() - A / A.sum(1, keepdims=True)).max() < 2e-3
    # conservation with the real temperature field
    with xr.open_dataset(ERA / "era5-crop.nc") as ds:
        t = ds["t"].values.astype(np.float64)
    d = w.apply(t)[0]
    lhs = np.sum(d * w.area_b)
    rhs = np.sum(t[0].ravel() * w.frac_a * w.area_a)
    assert abs(lhs - rhs) < 1e-10 * abs(rhs)
    assert 250.0 < d.min() and d.max() < 275.0  # January temperatures in Quebec, K
    # ESMF's reading (great-circle cell edges, lon/lat as spherical coordinates): the weights move by the
    # chord-versus-parallel difference only, and the sphere conserves its own integral as tightly
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the 11 self-touching HRU rings again
        ws = generate_weights(grid, hrus, progress=False)
    assert ws.attrs["geometry"].startswith("sphere")
    assert 1e-5 < np.abs(ws.matrix.toarray() - w.matrix.toarray()).max() < 2e-3
    np.testing.assert_allclose(ws.frac_b, 1.0, atol=1e-9)
    ds_ = ws.apply(t)[0]
    assert abs(np.sum(ds_ * ws.area_b) - np.sum(t[0].ravel() * ws.frac_a * ws.area_a)) < 1e-12 * abs(rhs)
    # bilinear at the HRU centroids against scipy's interpolator on the (lat, lon) axes
    from scipy.interpolate import RegularGridInterpolator

    wb = generate_weights(grid, hrus, "bilinear", geometry="plane", progress=False)
    lon, lat = hrus.lonlat_centers()
    interp = RegularGridInterpolator((grid.y[::-1], grid.x), t[0][::-1], method="linear")
    np.testing.assert_allclose(wb.apply(t)[0], interp(np.column_stack([lat, lon + 360.0])), rtol=1e-12)
    # ESMF's bilinear on the sphere (the default for a lon/lat source) moves the values by the chord-versus-
    # parallel difference of 0.25 degree cells: ~1e-4 K here, 1e-5 of the field's range
    ws = generate_weights(grid, hrus, "bilinear", progress=False)
    assert ws.attrs["geometry"].startswith("sphere")
    d = np.abs(ws.apply(t)[0] - wb.apply(t)[0]).max()
    assert 1e-6 < d < 3e-5 * np.ptp(t[0]), (d, np.ptp(t[0]))


def test_esmf_mesh_from_ngen(tmp_path):
    mesh = read_grid(MESH)
    assert mesh.size == 5 and list(mesh.ids) == ["11223", "11224", "11371", "11410", "11509"]
    lon, lat = mesh.lonlat_centers()
    np.testing.assert_allclose(lon[0], -71.01222715, atol=1e-8)  # centerCoords are used as given
    # a synthetic 0.01 deg lon/lat grid over the catchments
    x = np.arange(-71.10, -70.88, 0.01) + 0.005
    y = np.arange(43.10, 43.22, 0.01) + 0.005
    from coupler.regrid import Grid

    grid = Grid(x, y, "EPSG:4326")
    w = generate_weights(grid, mesh, norm_type="fracarea", progress=False)
    np.testing.assert_allclose(w.frac_b, 1.0, atol=1e-9)
    R = w.attrs["earth_radius_for_square_radians_m"]
    wp = generate_weights(grid, mesh, norm_type="fracarea", progress=False, geometry="plane")
    # the README of the ngen sample lists the divides as 13.3, 4.0, 5.5, 5.6, 3.3 km^2 (ellipsoidal areas)
    km2 = wp.area_b * R * R / 1e6
    np.testing.assert_allclose(km2, [13.3, 4.0, 5.5, 5.6, 3.3], atol=0.06)
    # ESMF's sphere takes geodetic lon/lat as spherical coordinates: its areas (times R^2) differ from the
    # ellipsoid's by the local area scale a^2 (1 - e^2) / ((1 - e^2 sin^2 lat)^2 R^2)
    a, b = 6378137.0, 6356752.314245179
    e2 = 1 - (b / a) ** 2
    s2 = np.sin(np.deg2rad(lat)) ** 2
    scale = a * a * (1 - e2) / ((1 - e2 * s2) ** 2 * R * R)
    np.testing.assert_allclose(km2 / (w.area_b * R * R / 1e6), scale, rtol=2e-4)
    assert np.abs(w.matrix.toarray() - wp.matrix.toarray()).max() < 1e-4
    # round trip through our ESMF mesh and SCRIP writers
    write_esmf_mesh(mesh, tmp_path / "mesh.nc")
    back = read_grid(tmp_path / "mesh.nc")
    assert list(back.ids) == list(mesh.ids)
    assert all(shapely.equals(a, b) for a, b in zip(back.geoms, mesh.geoms))
    assert generate_weights(grid, back, norm_type="fracarea", progress=False).differences(w) == []
    write_scrip(grid, tmp_path / "grid_scrip.nc")
    g2 = read_grid(tmp_path / "grid_scrip.nc")
    assert g2.kind == "curvilinear" and g2.shape == grid.shape
    w2 = generate_weights(g2, mesh, norm_type="fracarea", progress=False)
    np.testing.assert_allclose(w2.matrix.toarray(), w.matrix.toarray(), atol=1e-12)


def test_cli_weights_info_apply_mesh(tmp_path, capsys):
    grid_nc = str(NWM / "test_template_grid.nc")
    divides = str(NWM / "test_ngen_divides.parquet")
    out = tmp_path / "w.nc"
    rc = main(["weights", grid_nc, divides, "-o", str(out), "--norm-type", "fracarea", "--no-progress"])
    assert rc == 0 and out.exists()
    err = capsys.readouterr().err
    assert "n_b = 10" in err and "wrote" in err
    w = read_weights(out)
    api = generate_weights(read_grid(grid_nc), read_polygons(divides), norm_type="fracarea", progress=False)
    assert w.differences(api) == []
    # existing output is not overwritten silently
    assert main(["weights", grid_nc, divides, "-o", str(out), "--no-progress"]) == 1
    assert "exists" in capsys.readouterr().err
    assert main(["info", str(out)]) == 0
    assert "n_s = 156" in capsys.readouterr().out
    # apply, chunk by chunk, into a NetCDF on the divides
    res = tmp_path / "rain.nc"
    assert main(["apply", str(out), grid_nc, "--var", "RAINRATE", "-o", str(res), "--no-progress"]) == 0
    with xr.open_dataset(res) as ds, xr.open_dataset(grid_nc) as src:
        assert ds["RAINRATE"].dims == ("time", "unit_id")
        assert list(ds["unit_id"].values) == list(w.ids_b)
        assert ds["RAINRATE"].sel(unit_id=w.ids_b[3]).size == ds.sizes["time"]  # selectable by the unit's id
        np.testing.assert_allclose(ds["RAINRATE"].values, w.apply(src["RAINRATE"].values), rtol=1e-12)
        assert ds["RAINRATE"].attrs["units"] == "mm s-1"
    # a grid that does not match the weights is refused
    era_nc = str(ERA / "era5-crop.nc")
    assert main(["apply", str(out), era_nc, "--var", "t", "-o", str(tmp_path / "bad.nc"), "--no-progress"]) == 1
    assert "mismatch" in capsys.readouterr().err
    # bad input gives a clear message and exit code 2
    assert main(["weights", "/nonexistent.nc", divides, "-o", str(tmp_path / "x.nc")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main(["weights", grid_nc, divides, "-o", str(tmp_path / "y.nc"), "--dst-id-field", "nope"]) == 1
    assert "id field 'nope' not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["weights", grid_nc, divides, "-o", str(tmp_path / "z.nc"), "--method", "kriging"])
    assert main(["mesh", divides, "-o", str(tmp_path / "m.nc")]) == 0
    assert list(read_grid(tmp_path / "m.nc").ids) == list(w.ids_b)


def test_add_parser_registers_regrid_on_a_dhydro_style_cli(tmp_path):
    parser = argparse.ArgumentParser(prog="dhydro")
    sub = parser.add_subparsers(dest="command")
    add_parser(sub)
    out = tmp_path / "w.nc"
    args = parser.parse_args(["regrid", "weights", str(NWM / "test_template_grid.nc"),
                              str(NWM / "test_ngen_divides.parquet"), "-o", str(out), "--method", "bilinear",
                              "--no-progress"])
    assert args.command == "regrid" and args.func(args) == 0
    assert read_weights(out).method == "bilinear"
