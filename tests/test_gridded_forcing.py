"""GriddedForcingBmi: lazy streaming of CF NetCDF forcing through BMI 2.0."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml

from coupler.components import ConfigError, GriddedForcingBmi
from coupler.regrid import generate_weights, read_polygons

DATA = Path(__file__).resolve().parents[1] / "examples" / "gridded" / "data"
NWM_NC = DATA / "nwm_grid_ngen_divides" / "test_template_grid.nc"
ERA_NC = DATA / "era5_latlon_hrus" / "era5-crop.nc"


def write_config(folder: Path, cfg: dict, name: str = "forcing.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(cfg))
    return path


def make_bmi(folder: Path, cfg: dict) -> GriddedForcingBmi:
    bmi = GriddedForcingBmi()
    bmi.initialize(str(write_config(folder, cfg)))
    return bmi


@pytest.fixture()
def curvilinear_nc(tmp_path):
    """24 hourly records on a 6 x 7 curvilinear lon/lat grid, one missing value."""
    rng = np.random.default_rng(0)
    j, i = np.mgrid[0:6, 0:7].astype(float)
    lon = -80 + 0.1 * i + 0.03 * j
    lat = 35 + 0.1 * j - 0.02 * i
    t2d = 270 + rng.random((24, 6, 7)) * 10
    t2d[3, 2, 4] = np.nan
    rain = rng.random((24, 6, 7)) * 1e-3
    ds = xr.Dataset(
        {"T2D": (("time", "south_north", "west_east"), t2d, {"units": "K", "coordinates": "XLAT XLONG"}),
         "RAINRATE": (("time", "south_north", "west_east"), rain,
                      {"units": "kg m-2 s-1", "coordinates": "XLAT XLONG"})},
        coords={"XLONG": (("south_north", "west_east"), lon, {"units": "degrees_east"}),
                "XLAT": (("south_north", "west_east"), lat, {"units": "degrees_north"}),
                "time": ("time", np.arange(24.0), {"units": "hours since 2015-12-01 00:00:00"})})
    path = tmp_path / "curv.nc"
    ds.to_netcdf(path, encoding={"T2D": {"_FillValue": -9999.0}, "time": {"dtype": "float64"}})
    return path, t2d, rain


def test_real_nwm_file_uniform_rectilinear(tmp_path):
    (tmp_path / "data").mkdir()
    shutil.copy(NWM_NC, tmp_path / "data" / "nwm.nc")
    bmi = make_bmi(tmp_path, {"path": "data/nwm.nc",  # relative to the config file's folder
                              "variables": {"atmosphere_water__precipitation_rate": {"source": "RAINRATE",
                                                                                     "units": "mm h-1"}},
                              "time": {"step_seconds": 3600}})
    name = "atmosphere_water__precipitation_rate"
    assert bmi.get_output_var_names() == (name,) and bmi.get_input_var_names() == ()
    g = bmi.get_var_grid(name)
    assert bmi.get_grid_type(g) == "uniform_rectilinear"
    assert list(bmi.get_grid_shape(g, np.zeros(2, int))) == [11, 10]
    np.testing.assert_allclose(bmi.get_grid_spacing(g, np.zeros(2)), [1000.0, 1000.0])
    with xr.open_dataset(NWM_NC) as ds:
        rain = ds["RAINRATE"].values[0]
        np.testing.assert_allclose(bmi.get_grid_origin(g, np.zeros(2)), [ds.y.values[0], ds.x.values[0]])
    val = np.empty(bmi.get_grid_size(g))
    bmi.get_value(name, val)
    np.testing.assert_allclose(val, rain.ravel().astype(np.float64) * 3600.0, rtol=1e-6)
    assert bmi.get_var_units(name) == "mm h-1" and bmi.get_var_type(name) == "float64"
    assert bmi.get_var_nbytes(name) == 110 * 8 and bmi.get_var_location(name) == "node"
    assert (bmi.get_start_time(), bmi.get_end_time(), bmi.get_time_step()) == (0.0, 0.0, 3600.0)
    assert bmi.get_time_units() == "s"
    assert str(bmi.get_time_datetimes()[0]).startswith("2020-12-18T01:00")
    with pytest.raises(RuntimeError, match="no record after"):
        bmi.update()
    with pytest.raises(ValueError, match="no input variables"):
        bmi.set_value(name, val)
    bmi.finalize()


def test_real_era5_file_descending_latitudes_and_unit_conversion(tmp_path):
    bmi = make_bmi(tmp_path, {"path": str(ERA_NC), "variables": {"air_temperature": {"source": "t", "units": "degC"}},
                              "time": {"step_seconds": 3600}})
    g = bmi.get_var_grid("air_temperature")
    assert bmi.get_grid_type(g) == "rectilinear"  # latitude runs north to south
    y = bmi.get_grid_y(g, np.zeros(81))
    assert y[0] == 55.0 and y[-1] == 35.0
    with pytest.raises(ValueError, match="only defined for uniform_rectilinear"):
        bmi.get_grid_spacing(g, np.zeros(2))
    with xr.open_dataset(ERA_NC) as ds:
        t = ds["t"].values[0].astype(np.float64)  # unpacked by xarray (scale_factor/add_offset)
    np.testing.assert_allclose(bmi.get_value_ptr("air_temperature"), t.ravel() - 273.15, rtol=1e-10)
    bmi.finalize()


def test_time_series_streaming(curvilinear_nc, tmp_path):
    path, t2d, rain = curvilinear_nc
    bmi = make_bmi(tmp_path, {"path": str(path),
                              "variables": {"air__temperature": {"source": "T2D", "units": "degC"},
                                            "precipitation_rate": {"source": "RAINRATE", "units": "mm h-1",
                                                                   "water_density": True}}})
    g = bmi.get_var_grid("air__temperature")
    assert bmi.get_grid_type(g) == "structured_quadrilateral"
    assert bmi.get_var_grid("precipitation_rate") == g
    assert (bmi.get_time_step(), bmi.get_end_time()) == (3600.0, 23 * 3600.0)
    ptr = bmi.get_value_ptr("air__temperature")
    for k in range(24):
        if k:
            bmi.update()
        assert bmi.get_current_time() == k * 3600.0
        np.testing.assert_allclose(ptr, t2d[k].ravel() - 273.15, rtol=1e-12, equal_nan=True)  # same buffer
        got = bmi.get_value("precipitation_rate", np.empty(42))
        np.testing.assert_allclose(got, rain[k].ravel() * 3600.0, rtol=1e-12)  # kg m-2 s-1 / 1000 kg m-3 == mm s-1
        # never loads the file: the variables stay lazily indexed
        assert not bmi._ds["T2D"].variable._in_memory
    assert np.isnan(ptr).sum() == 0  # record 23; record 3 had the missing value
    with pytest.raises(ValueError, match="before the current time"):
        bmi.update_until(0.0)
    bmi.finalize()

    bmi = make_bmi(tmp_path, {"path": str(path), "variables": {"T": "T2D"},
                              "time": {"start": "2015-12-01T02:00:00", "end": "2015-12-01T09:00:00"}})
    assert (bmi.get_start_time(), bmi.get_end_time()) == (0.0, 7 * 3600.0)
    np.testing.assert_allclose(bmi.get_value_ptr("T"), t2d[2].ravel())
    bmi.update_until(1.5 * 3600)  # holds the last record at or before the time
    assert bmi.get_current_time() == 3600.0
    np.testing.assert_allclose(bmi.get_value_ptr("T"), t2d[3].ravel(), equal_nan=True)
    assert np.isnan(bmi.get_value_ptr("T")).sum() == 1
    idx = np.array([0, 5, 41])
    np.testing.assert_allclose(bmi.get_value_at_indices("T", np.empty(3), idx), t2d[3].ravel()[idx])
    bmi.update_until(7 * 3600.0)
    np.testing.assert_allclose(bmi.get_value_ptr("T"), t2d[9].ravel())
    with pytest.raises(ValueError, match="after the last record"):
        bmi.update_until(8 * 3600.0)
    bmi.finalize()

    bmi = make_bmi(tmp_path, {"path": str(path), "variables": {"T": "T2D"},
                              "time": {"origin": "2015-12-01T00:00:00", "start": "2015-12-01T05:00:00"}})
    assert bmi.get_start_time() == 5 * 3600.0
    bmi.finalize()


def test_structured_grid_topology(curvilinear_nc, tmp_path):
    path, _, _ = curvilinear_nc
    bmi = make_bmi(tmp_path, {"path": str(path), "variables": {"T": "T2D"}})
    g = 0
    ny, nx = bmi.get_grid_shape(g, np.zeros(2, int))
    x = bmi.get_grid_x(g, np.zeros(ny * nx))
    with xr.open_dataset(path) as ds:
        np.testing.assert_allclose(x.reshape(ny, nx), ds["XLONG"].values)
    n_edges, n_faces = bmi.get_grid_edge_count(g), bmi.get_grid_face_count(g)
    assert (bmi.get_grid_node_count(g), n_edges, n_faces) == (42, 6 * 6 + 7 * 5, 5 * 6)
    edges = bmi.get_grid_edge_nodes(g, np.zeros(2 * n_edges, int)).reshape(-1, 2)
    faces = bmi.get_grid_face_nodes(g, np.zeros(4 * n_faces, int)).reshape(-1, 4)
    face_edges = bmi.get_grid_face_edges(g, np.zeros(4 * n_faces, int)).reshape(-1, 4)
    assert np.all(bmi.get_grid_nodes_per_face(g, np.zeros(n_faces, int)) == 4)
    for f in range(n_faces):
        assert set(edges[face_edges[f]].ravel()) == set(faces[f])
    # every edge joins neighbouring nodes
    r0, c0 = np.divmod(edges[:, 0], nx)
    r1, c1 = np.divmod(edges[:, 1], nx)
    assert np.all(np.abs(r0 - r1) + np.abs(c0 - c1) == 1)
    with pytest.raises(ValueError, match="no z coordinate"):
        bmi.get_grid_z(g, np.zeros(42))
    with pytest.raises(KeyError, match="unknown grid"):
        bmi.get_grid_rank(3)
    with pytest.raises(KeyError, match="unknown variable"):
        bmi.get_var_units("nope")
    bmi.finalize()


def test_config_errors(curvilinear_nc, tmp_path):
    path, _, _ = curvilinear_nc
    good = {"path": str(path), "variables": {"T": "T2D"}}

    def fails(cfg, match):
        with pytest.raises(ConfigError, match=match):
            make_bmi(tmp_path, cfg)

    fails({**good, "colour": "red"}, r"colour: Extra inputs are not permitted")
    fails({**good, "time": {"step": 3600}}, r"time.step: Extra inputs")
    fails({"variables": {"T": "T2D"}}, r"path: Field required")
    fails({**good, "variables": {}}, "at least one variable")
    fails({**good, "path": "missing.nc"}, "does not exist")
    fails({**good, "variables": {"T": "TEMP"}}, r"'TEMP' is not in")
    fails({**good, "variables": {"T": {"source": "T2D", "units": "m s-1"}}},
          r"variables.T: cannot convert 'K' to 'm s-1' \(incompatible dimensions")
    fails({**good, "variables": {"T": {"source": "T2D", "units": "K s-1 wibble-3"}}}, r"cannot parse units 'K s-1 wibble-3'")
    fails({**good, "variables": {"T": {"source": "T2D", "units": "K", "density": True}}}, r"density: Extra inputs")
    # a water mass flux is served as a depth rate only with the opt-in
    fails({**good, "variables": {"P": {"source": "RAINRATE", "units": "mm h-1"}}},
          r"variables.P: cannot convert 'kg m-2 s-1' to 'mm h-1'.*set 'water_density: true' on variables.P")
    fails({**good, "time": {"start": "2016-01-01T00:00:00"}}, "select no record")
    fails({**good, "time": {"end": "2015-12-01T00:00:00"}}, "step_seconds is required")
    fails({**good, "time": {"step_seconds": 60}}, "disagrees with the file's step")
    ds = xr.open_dataset(path).load()
    shift = np.where(np.arange(24) < 10, 0, 60).astype("timedelta64[s]")
    ds = ds.assign_coords(time=ds.time.values + shift)
    ds.to_netcdf(tmp_path / "irregular.nc")
    fails({**good, "path": str(tmp_path / "irregular.nc")}, "evenly spaced")
    (tmp_path / "bad.yaml").write_text("path: [unclosed")
    with pytest.raises(ConfigError, match="invalid YAML"):
        GriddedForcingBmi().initialize(str(tmp_path / "bad.yaml"))
    with pytest.raises(ConfigError, match="does not exist"):
        GriddedForcingBmi().initialize(str(tmp_path / "nope.yaml"))
    with pytest.raises(RuntimeError, match="initialize"):
        GriddedForcingBmi().update()


def test_grid_feeds_the_regridder(tmp_path):
    bmi = make_bmi(tmp_path, {"path": str(NWM_NC), "variables": {"rain": "RAINRATE"}, "time": {"step_seconds": 3600}})
    divides = read_polygons(DATA / "nwm_grid_ngen_divides" / "test_ngen_divides.parquet")
    w = generate_weights(bmi.get_regrid_grid(0), divides, norm_type="fracarea", progress=False)
    assert "Lambert_Conformal_Conic" in bmi.get_grid_crs(0) or "Lambert Conic Conformal" in bmi.get_grid_crs(0)
    with xr.open_dataset(NWM_NC) as ds:
        expect = w.apply(ds["RAINRATE"].values.astype(np.float64))[0]
    np.testing.assert_allclose(w.apply(bmi.get_value_ptr("rain")), expect, rtol=1e-12)
    bmi.finalize()


def test_bmi_tester_passes(tmp_path):
    exe = Path(sys.executable).parent / "bmi-test"
    if not exe.exists():
        pytest.skip("bmi-tester is not installed")
    shutil.copy(NWM_NC, tmp_path / "nwm.nc")
    write_config(tmp_path, {"path": "nwm.nc", "variables": {"atmosphere_water__precipitation_rate":
                                                            {"source": "RAINRATE", "units": "mm h-1"}},
                            "time": {"step_seconds": 3600}})
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([str(exe), "coupler.components.gridded_forcing:GriddedForcingBmi", "--root-dir",
                           str(tmp_path), "--config-file", "forcing.yaml"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, env={"PYTHONPATH": str(root), "PATH": str(exe.parent)})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "failed" not in proc.stdout
