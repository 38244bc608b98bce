"""The ESMPy backend: same API and same file as the native one. Skipped where ESMPy is not installed
(it cannot be installed in this project's CI); ESMF is never mocked."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from coupler.regrid import RegridError, esmpy_available, generate_weights, read_grid, read_polygons, read_weights

NWM = Path(__file__).resolve().parents[1] / "examples" / "gridded" / "data" / "nwm_grid_ngen_divides"
ERA = Path(__file__).resolve().parents[1] / "examples" / "gridded" / "data" / "era5_latlon_hrus"

needs_esmpy = pytest.mark.skipif(not esmpy_available(), reason="ESMPy is not importable")


@pytest.mark.skipif(esmpy_available(), reason="ESMPy is importable here")
def test_esmpy_backend_without_esmpy_is_a_clear_error():
    grid, divides = read_grid(NWM / "test_template_grid.nc"), read_polygons(NWM / "test_ngen_divides.parquet")
    with pytest.raises(RegridError, match="ESMPy cannot be imported"):
        generate_weights(grid, divides, backend="esmpy")
    # "auto" falls back to the native backend
    w = generate_weights(grid, divides, backend="auto", progress=False)
    assert "native backend" in w.attrs["generator"]


@needs_esmpy
@pytest.mark.parametrize("norm_type", ["dstarea", "fracarea"])
def test_esmpy_conserve_agrees_with_native(tmp_path, norm_type):
    grid, divides = read_grid(NWM / "test_template_grid.nc"), read_polygons(NWM / "test_ngen_divides.parquet")
    we = generate_weights(grid, divides, norm_type=norm_type, backend="esmpy", progress=False)
    wn = generate_weights(grid, divides, norm_type=norm_type, progress=False)
    assert "ESMPy backend" in we.attrs["generator"]
    # great-circle cells on the sphere against straight edges in the Albers plane: km cells agree closely
    assert np.abs(we.matrix.toarray() - wn.matrix.toarray()).max() < 1e-3
    np.testing.assert_allclose(we.frac_b, wn.frac_b, atol=1e-3)
    np.testing.assert_allclose(we.area_b, wn.area_b, rtol=1e-2)  # square radians on both sides
    we.to_netcdf(tmp_path / "esmf.nc")
    assert read_weights(tmp_path / "esmf.nc").differences(we) == []


@needs_esmpy
@pytest.mark.parametrize("method", ["bilinear", "nearest_stod"])
def test_esmpy_point_methods_agree_with_native(method):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        grid, hrus = read_grid(ERA / "era5-crop.nc"), read_polygons(ERA / "HRUs_coarse.shp")
    we = generate_weights(grid, hrus, method, backend="esmpy", progress=False)
    wn = generate_weights(grid, hrus, method, progress=False)
    t = np.random.default_rng(0).normal(270, 5, grid.shape)
    np.testing.assert_allclose(we.apply(t), wn.apply(t), atol=0.05 if method == "bilinear" else 0)
