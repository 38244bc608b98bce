"""ESMF weight file I/O, grid/weight mismatch refusal, and numpy application (NaN, chunks)."""
from __future__ import annotations

from pathlib import Path

import netCDF4
import numpy as np
import pytest
import shapely

from coupler.regrid import (Grid, Polygons, RegridError, Weights, generate_weights, read_grid, read_polygons,
                            read_weights)

DATA = Path(__file__).resolve().parents[1] / "examples" / "gridded" / "data"
NWM = DATA / "nwm_grid_ngen_divides"


@pytest.fixture(scope="module")
def nwm_pair():
    return read_grid(NWM / "test_template_grid.nc"), read_polygons(NWM / "test_ngen_divides.parquet")


@pytest.mark.parametrize("method,norm", [("conserve", "dstarea"), ("conserve", "fracarea"), ("bilinear", None),
                                         ("nearest_stod", None)])
def test_write_read_identical(tmp_path, nwm_pair, method, norm):
    grid, divides = nwm_pair
    w = generate_weights(grid, divides, method, norm_type=norm or "dstarea", progress=False)
    path = tmp_path / "w.nc"
    w.to_netcdf(path)
    r = read_weights(path)
    assert r.differences(w) == []
    assert list(r.dst_ids) == list(divides.ids) and r.src_ids is None
    for k, v in w.attrs.items():
        assert r.attrs[k] == v
    # and a second round trip is byte-identical in content
    r.to_netcdf(tmp_path / "w2.nc")
    assert read_weights(tmp_path / "w2.nc").differences(w) == []


def test_file_layout_follows_esmf(tmp_path, nwm_pair):
    grid, divides = nwm_pair
    w = generate_weights(grid, divides, "conserve", norm_type="fracarea", progress=False)
    w.to_netcdf(tmp_path / "w.nc")
    with netCDF4.Dataset(tmp_path / "w.nc") as nc:
        assert nc.data_model == "NETCDF3_64BIT_OFFSET"
        dims = {k: len(v) for k, v in nc.dimensions.items()}
        assert dims["n_a"] == 110 and dims["n_b"] == 10 and dims["n_s"] == w.n_s
        assert dims["nv_a"] == 4 and dims["num_wgts"] == 1 and dims["src_grid_rank"] == 2
        # polygon side: nv_b is the largest corner count; shorter rings repeat their last corner
        parts = shapely.get_parts(divides.geoms)  # single-part MultiPolygons
        assert parts.size == divides.size
        nverts = shapely.get_num_coordinates(shapely.get_exterior_ring(parts)) - 1
        assert dims["dst_grid_rank"] == 1 and dims["nv_b"] == nverts.max()
        k = int(np.argmin(nverts))
        lon_k, lat_k = np.asarray(nc["xv_b"][k]), np.asarray(nc["yv_b"][k])
        assert np.all(lon_k[nverts[k]:] == lon_k[nverts[k] - 1]) and np.all(lat_k[nverts[k]:] == lat_k[nverts[k] - 1])
        ring = np.asarray(shapely.get_exterior_ring(shapely.get_parts(divides.cell_polygons("EPSG:4326"))[k]).coords)[:-1]
        np.testing.assert_allclose(np.column_stack([lon_k, lat_k])[:nverts[k]], ring, atol=1e-12)
        expect = {"S": ("n_s",), "row": ("n_s",), "col": ("n_s",), "frac_a": ("n_a",), "frac_b": ("n_b",),
                  "area_a": ("n_a",), "area_b": ("n_b",), "xc_a": ("n_a",), "yc_a": ("n_a",), "xc_b": ("n_b",),
                  "yc_b": ("n_b",), "mask_a": ("n_a",), "mask_b": ("n_b",), "xv_a": ("n_a", "nv_a"),
                  "yv_a": ("n_a", "nv_a"), "src_grid_dims": ("src_grid_rank",), "dst_grid_dims": ("dst_grid_rank",)}
        for name, d in expect.items():
            assert nc[name].dimensions == d, name
        for name in ("row", "col", "mask_a", "mask_b", "src_grid_dims", "dst_grid_dims"):
            assert nc[name].dtype == np.int32, name
        for name in ("S", "frac_a", "area_a", "xc_a", "yv_a"):
            assert nc[name].dtype == np.float64, name
        assert nc["area_a"].units == "square radians" and nc["xc_a"].units == "degrees"
        assert nc["row"][:].min() == 1 and nc["col"][:].min() >= 1  # 1-based
        assert nc["col"][:].max() <= 110 and nc["row"][:].max() == 10
        assert list(nc["src_grid_dims"][:]) == [10, 11]  # Fortran order (nx, ny)
        assert nc.normalization == "fracarea" and nc.map_method == "Conservative remapping"
        assert nc.ESMF_regrid_method == "First-order Conservative" and nc.conventions == "NCAR-CSM"
        ids = netCDF4.chartostring(nc["id_b"][:])
        assert list(ids) == list(divides.ids)
        # centres are longitude/latitude of the NWM cells (upstate South Carolina)
        assert -82.6 < nc["xc_a"][:].min() < nc["xc_a"][:].max() < -82.3
        assert 34.5 < nc["yc_a"][:].min() < nc["yc_a"][:].max() < 34.8


def write_esmf_like(path, row1, col1, S, n_a, n_b, src_dims, normalization="destarea"):
    """A weight file laid out like ESMF_RegridWeightGen's, written without our writer."""
    with netCDF4.Dataset(path, "w", format="NETCDF3_CLASSIC") as nc:
        nc.title = "ESMF Offline Regridding Weight Generator"
        nc.normalization = normalization
        nc.map_method = "Conservative remapping"
        nc.ESMF_regrid_method = "First-order Conservative"
        nc.conventions = "NCAR-CSM"
        for d, n in (("n_a", n_a), ("n_b", n_b), ("n_s", len(S)), ("nv_a", 4), ("nv_b", 4), ("num_wgts", 1),
                     ("src_grid_rank", len(src_dims)), ("dst_grid_rank", 1)):
            nc.createDimension(d, n)
        nc.createVariable("src_grid_dims", "i4", ("src_grid_rank",))[:] = src_dims
        nc.createVariable("dst_grid_dims", "i4", ("dst_grid_rank",))[:] = [n_b]
        for v, n in (("yc_a", "n_a"), ("yc_b", "n_b"), ("xc_a", "n_a"), ("xc_b", "n_b")):
            var = nc.createVariable(v, "f8", (n,))
            var.units = "degrees"
            var[:] = np.arange(len(nc.dimensions[n]), dtype=float)
        for v, n in (("yv_a", "n_a"), ("xv_a", "n_a"), ("yv_b", "n_b"), ("xv_b", "n_b")):
            nc.createVariable(v, "f8", (n, "nv_" + n[-1]))[:] = 0.0
        for v, n, val in (("mask_a", "n_a", 1), ("mask_b", "n_b", 1)):
            nc.createVariable(v, "i4", (n,))[:] = val
        for v, n in (("area_a", "n_a"), ("area_b", "n_b")):
            var = nc.createVariable(v, "f8", (n,))
            var.units = "square radians"
            var[:] = 1e-6
        nc.createVariable("frac_a", "f8", ("n_a",))[:] = 1.0
        nc.createVariable("frac_b", "f8", ("n_b",))[:] = 1.0
        nc.createVariable("col", "i4", ("n_s",))[:] = col1
        nc.createVariable("row", "i4", ("n_s",))[:] = row1
        nc.createVariable("S", "f8", ("n_s",))[:] = S


def test_read_esmf_layout_written_by_hand(tmp_path):
    row1 = [1, 1, 1, 2, 2]
    col1 = [1, 2, 4, 5, 6]
    S = [0.5, 0.25, 0.25, 0.6, 0.4]
    write_esmf_like(tmp_path / "esmf.nc", row1, col1, S, 6, 2, [3, 2])
    w = read_weights(tmp_path / "esmf.nc")
    assert (w.method, w.norm_type, w.src_shape, w.dst_shape) == ("conserve", "dstarea", (2, 3), (2,))
    assert w.xv_a.shape == (6, 4)
    vals = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    np.testing.assert_allclose(w.apply(vals), [0.5 * 1 + 0.25 * 2 + 0.25 * 4, 0.6 * 5 + 0.4 * 6])


def test_bad_weight_files_are_refused(tmp_path):
    write_esmf_like(tmp_path / "zero.nc", [0, 1], [1, 1], [1.0, 1.0], 2, 2, [2])
    with pytest.raises(RegridError, match="1-based"):
        read_weights(tmp_path / "zero.nc")
    write_esmf_like(tmp_path / "range.nc", [3], [1], [1.0], 2, 2, [2])
    with pytest.raises(RegridError, match=r"destination index \(row\) outside"):
        read_weights(tmp_path / "range.nc")
    with netCDF4.Dataset(tmp_path / "scrip.nc", "w") as nc:
        nc.createDimension("num_links", 1)
        nc.createDimension("num_wgts", 1)
        nc.createVariable("remap_matrix", "f8", ("num_links", "num_wgts"))
        nc.createVariable("src_address", "i4", ("num_links",))
    with pytest.raises(RegridError, match="SCRIP-format remap file"):
        read_weights(tmp_path / "scrip.nc")
    with netCDF4.Dataset(tmp_path / "grid.nc", "w") as nc:
        nc.createDimension("x", 2)
        nc.createVariable("x", "f8", ("x",))
    with pytest.raises(RegridError, match=r"variables \['S', 'row', 'col'\] are missing"):
        read_weights(tmp_path / "grid.nc")
    with pytest.raises(RegridError, match="does not exist"):
        read_weights(tmp_path / "nope.nc")


def test_mismatched_grids_and_values_are_refused(nwm_pair):
    grid, divides = nwm_pair
    w = generate_weights(grid, divides, progress=False)
    with pytest.raises(RegridError, match=r"shape \(1, 12, 10\).*source grid \(11, 10\)"):
        w.apply(np.zeros((1, 12, 10)))
    with pytest.raises(RegridError, match="110 cells"):
        w.apply(np.zeros(109))
    w.check_grids(grid, divides)  # the right grids pass
    flipped = Grid(grid.x, grid.y[::-1], grid.crs)
    with pytest.raises(RegridError, match="cell centres differ"):
        w.check_grids(src=flipped)
    smaller = Grid(grid.x[:-1], grid.y, grid.crs)
    with pytest.raises(RegridError, match="110 source cells"):
        w.check_grids(src=smaller)
    renamed = Polygons(divides.geoms, divides.crs, [f"x{i}" for i in range(divides.size)])
    with pytest.raises(RegridError, match="cell 0 is 'x0'"):
        w.check_grids(dst=renamed)


def small_weights():
    # 2 x 3 source grid, 3 destinations, the last one unmapped
    return Weights(n_a=6, n_b=3, row=[0, 0, 0, 1, 1], col=[0, 1, 3, 4, 5], S=[0.5, 0.3, 0.2, 0.75, 0.25],
                   src_grid_dims=[3, 2], method="conserve", norm_type="fracarea")


def test_apply_shapes_chunks_and_missing_values():
    w = small_weights()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(7, 4, 2, 3))  # (time, member, ny, nx)
    M = w.matrix.toarray()
    expect = np.einsum("ba,tma->tmb", M, x.reshape(7, 4, 6))
    expect[..., 2] = np.nan  # unmapped
    for chunk in (None, 1, 5):
        np.testing.assert_allclose(w.apply(x, chunk_size=chunk), expect, rtol=1e-13)
    np.testing.assert_allclose(w.apply(x.reshape(7, 4, 6)), expect, rtol=1e-13)
    # missing values: renormalised over the valid sources of each destination
    xm = x[0, 0].ravel().copy()
    xm[1] = np.nan
    got = w.apply(xm)
    assert got[0] == pytest.approx((0.5 * xm[0] + 0.2 * xm[3]) / 0.7 * 1.0)
    assert got[1] == pytest.approx(0.75 * xm[4] + 0.25 * xm[5])
    # with min_valid_fraction 0.75 the first destination (0.7 valid) becomes NaN
    got = w.apply(xm, min_valid_fraction=0.75)
    assert np.isnan(got[0]) and np.isfinite(got[1])
    # skipna=False propagates
    assert np.isnan(w.apply(xm, skipna=False)[0])
    # all sources missing -> NaN
    xm[[0, 1, 3]] = np.nan
    assert np.isnan(w.apply(xm)[0])
    with pytest.raises(RegridError, match="numeric"):
        w.apply(np.array(["a"] * 6))


def test_weights_constructor_checks():
    with pytest.raises(RegridError, match="same length"):
        Weights(n_a=2, n_b=1, row=[0], col=[0, 1], S=[1.0])
    with pytest.raises(RegridError, match="source index"):
        Weights(n_a=2, n_b=1, row=[0], col=[2], S=[1.0])
    with pytest.raises(RegridError, match="non-finite"):
        Weights(n_a=2, n_b=1, row=[0], col=[0], S=[np.nan])
    with pytest.raises(RegridError, match="src_grid_dims"):
        Weights(n_a=6, n_b=1, row=[0], col=[0], S=[1.0], src_grid_dims=[4, 2])
    with pytest.raises(RegridError, match="frac_b has 2 values"):
        Weights(n_a=2, n_b=1, row=[0], col=[0], S=[1.0], frac_b=[1.0, 1.0])


def test_apply_dataarray(nwm_pair):
    import xarray as xr

    grid, divides = nwm_pair
    w = generate_weights(grid, divides, norm_type="fracarea", progress=False)
    with xr.open_dataset(NWM / "test_template_grid.nc") as ds:
        rain = ds["RAINRATE"].load()
    out = w.apply_dataarray(rain, dst_dim="divide_id")
    assert out.dims == ("time", "divide_id")
    assert list(out["divide_id"].values) == list(divides.ids)
    np.testing.assert_allclose(out.values, w.apply(rain.values))
    assert out.attrs["units"] == "mm s-1"


def test_grid_to_grid_conservative_roundtrip(tmp_path):
    fine = Grid(np.arange(20) * 500.0 + 250, np.arange(16) * 500.0 + 250, "EPSG:5070")
    coarse = Grid(np.arange(5) * 2000.0 + 1000, np.arange(4) * 2000.0 + 1000, "EPSG:5070")
    w = generate_weights(fine, coarse, progress=False)
    assert w.xv_b.shape == (20, 4) and w.dst_shape == (4, 5)
    s = np.random.default_rng(1).random(fine.shape)
    # each coarse cell is the mean of its 4 x 4 fine cells
    np.testing.assert_allclose(w.apply(s), s.reshape(4, 4, 5, 4).mean(axis=(1, 3)), rtol=1e-12)
    w.to_netcdf(tmp_path / "g.nc")
    assert read_weights(tmp_path / "g.nc").differences(w) == []


def test_polygon_geometries_are_preserved_by_the_polygons_reader(tmp_path):
    # GeoParquet read by pyarrow, then written to a two-layer GeoPackage and read back through pyogrio
    from pyogrio.raw import write

    divides = read_polygons(NWM / "test_ngen_divides.parquet")
    assert divides.crs.to_epsg() == 5070 and divides.id_field == "id"
    gpkg = str(tmp_path / "d.gpkg")
    write(gpkg, shapely.to_wkb(divides.geoms), [np.asarray(divides.ids, dtype=object)], ["divide_id"],
          layer="divides", driver="GPKG", geometry_type="Unknown", crs="EPSG:5070")
    pts = shapely.to_wkb(shapely.centroid(divides.geoms))
    write(gpkg, pts, [np.asarray(divides.ids, dtype=object)], ["id"], layer="nexus", driver="GPKG",
          geometry_type="Point", crs="EPSG:5070", append=True)
    back = read_polygons(gpkg)  # the 'divides' layer is chosen automatically
    assert list(back.ids) == list(divides.ids) and back.id_field == "divide_id"
    assert all(shapely.equals_exact(a, b, tolerance=0) for a, b in zip(back.geoms, divides.geoms))
    with pytest.raises(RegridError, match="id field 'nope' not found"):
        read_polygons(gpkg, id_field="nope")
    with pytest.raises(RegridError, match="layer 'lakes' not found"):
        read_polygons(gpkg, layer="lakes")
    with pytest.raises(RegridError, match="Point geometry"):
        read_polygons(gpkg, layer="nexus")
