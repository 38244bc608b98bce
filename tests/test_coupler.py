"""The coupler: a spec-driven run, unit conversion, chunked output, component swap, and spec errors."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml

from bmi_dhydro.cf import select
from coupler.run import run_coupling
from coupler.spec import load_spec
from coupler.unitconv import convert

EX = Path(__file__).resolve().parents[1] / "examples" / "coupled"


def short_spec(tmp_path, hydro="hydro_dhbv.yaml", hours=72, extra=None):
    spec = yaml.safe_load((EX / "catchments.yaml").read_text())
    spec["period"]["end"] = f"2015-12-{1 + hours // 24:02d} {hours % 24:02d}:00:00"
    for c in spec["components"].values():
        c["config"] = str(EX / c["config"])
    spec["components"]["hydro"]["config"] = str(EX / hydro)
    spec["outputs"]["path"] = str(tmp_path / "out.nc")
    spec["outputs"]["plots"] = False
    spec.update(extra or {})
    p = tmp_path / "spec.yaml"
    p.write_text(yaml.safe_dump(spec))
    return p


def test_unit_conversion():
    np.testing.assert_allclose(convert([2.0], "mm h-1", "mm s-1"), [2.0 / 3600])
    np.testing.assert_allclose(convert([1.0], "kg m-2 s-1", "mm s-1", water_density=True), [1.0])  # 1 kg m-2 == 1 mm
    np.testing.assert_allclose(convert([0.0], "degC", "K"), [273.15])
    with pytest.raises(ValueError, match="cannot convert 'K' to 'm'"):
        convert([1.0], "K", "m")


def test_udunits_strings_parse_through_cf_xarray():
    """One parser for the project: cf_xarray's UDUNITS-2 registry (no hand-written grammar)."""
    import cf_xarray.units
    import pint

    from coupler.unitconv import _registry, parse_units

    assert _registry() is cf_xarray.units.units
    ureg = cf_xarray.units.units
    for text, pint_text in [("m3 s-1", "m**3/s"), ("kg m-2 s-1", "kg/m**2/s"), ("W m-2", "W/m**2"), ("mm s-1", "mm/s"),
                            ("mm h-1", "mm/hour"), ("mm d-1", "mm/day"), ("K", "kelvin"), ("degC", "degree_Celsius"),
                            ("Pa", "pascal"), ("%", "percent"), ("1", "dimensionless"), ("kg kg-1", "dimensionless")]:
        u = parse_units(text)
        assert isinstance(u, pint.Unit) and u == ureg.Unit(pint_text), text
    for alias in ("none", "-", ""):  # BMI spellings of "no units"
        assert parse_units(alias) == ureg.dimensionless
    np.testing.assert_allclose(convert([1.0, 3.6], "m3 s-1", "m3 h-1"), [3600.0, 12960.0])
    np.testing.assert_allclose(convert([7.2], "mm h-1", "mm s-1"), [0.002], rtol=1e-15)
    np.testing.assert_allclose(convert([20.0, -5.0], "degC", "K"), [293.15, 268.15], rtol=1e-15)  # offset, not scale
    np.testing.assert_allclose(convert([300.0], "K", "degC"), [26.85], rtol=1e-12)
    np.testing.assert_allclose(convert([50.0], "%", "1"), [0.5])
    np.testing.assert_allclose(convert([86.4], "kW m-2", "W m-2"), [86400.0])


def test_unparseable_units_are_named():
    from coupler.unitconv import UnitError, parse_units

    with pytest.raises(UnitError, match=r"forcing\.P: cannot parse units 'mm per fortnight-ish'"):
        convert([1.0], "mm per fortnight-ish", "mm s-1", what="forcing.P")
    with pytest.raises(UnitError, match=r"cannot parse units 'bogons m-2'"):
        parse_units("bogons m-2")


def test_mass_to_depth_needs_the_water_density_opt_in():
    """kg m-2 s-1 -> mm s-1 is a mass -> volume conversion: an error naming the variable, both units and the key
    unless the caller opts in, then a division by 1000 kg m-3.  (The old converter fell back to the water density
    silently whenever the dimensions differed, so the first call below returned [1.0].)"""
    from coupler.unitconv import WATER_DENSITY_KEY, UnitError, converter

    assert WATER_DENSITY_KEY == "water_density"
    with pytest.raises(UnitError, match=r"connections\[0\] forcing\.P -> hydro\.P: cannot convert 'kg m-2 s-1' to "
                                        r"'mm s-1'.*set 'water_density: true' on connections\[0\]"):
        convert([1.0], "kg m-2 s-1", "mm s-1", what="connections[0] forcing.P -> hydro.P", where="connections[0]")
    for src, dst in [("kg m-2", "mm"), ("mm s-1", "kg m-2 s-1"), ("kg s-1", "m3 s-1")]:
        with pytest.raises(UnitError, match="water_density: true"):
            converter(src, dst)
    # with the opt-in: divide (mass -> volume) or multiply (volume -> mass) by 1000 kg m-3
    np.testing.assert_allclose(convert([2.5e-4], "kg m-2 s-1", "mm h-1", water_density=True), [0.9], rtol=1e-14)
    np.testing.assert_allclose(convert([3.0], "kg m-2", "m", water_density=True), [3.0e-3], rtol=1e-15)
    np.testing.assert_allclose(convert([2.0], "kg s-1", "m3 s-1", water_density=True), [2.0e-3], rtol=1e-15)
    np.testing.assert_allclose(convert([1.0], "mm d-1", "kg m-2 s-1", water_density=True), [1.0 / 86400], rtol=1e-15)
    # the opt-in allows the density, nothing else: same-dimension conversions are unchanged, others still fail
    np.testing.assert_allclose(convert([3.6], "mm h-1", "mm s-1", water_density=True), [1e-3], rtol=1e-15)
    with pytest.raises(UnitError, match=r"cannot convert 'K' to 'mm s-1' \(incompatible dimensions"):
        converter("K", "mm s-1", water_density=True)
    with pytest.raises(UnitError, match=r"incompatible dimensions"):
        converter("W m-2", "mm s-1", water_density=True)


def test_spec_water_density_key_on_connections(tmp_path):
    """A connection whose source is a water mass flux (here: the override units: kg m-2 s-1) fails to build
    without water_density: true, and with it feeds the model exactly what the mm s-1 source does."""
    spec = yaml.safe_load(short_spec(tmp_path, hours=3).read_text())
    spec["connections"][0]["units"] = "kg m-2 s-1"
    (tmp_path / "mass.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(ValueError, match=r"connections\[0\].*cannot convert 'kg m-2 s-1' to 'mm s-1'.*"
                                         r"set 'water_density: true' on connections\[0\]"):
        run_coupling(tmp_path / "mass.yaml", progress=False)
    spec["connections"][0]["water_density"] = True
    spec["outputs"]["path"] = str(tmp_path / "mass.nc")
    (tmp_path / "mass.yaml").write_text(yaml.safe_dump(spec))
    run_coupling(tmp_path / "mass.yaml", progress=False)
    run_coupling(short_spec(tmp_path, hours=3), progress=False)
    with xr.open_dataset(tmp_path / "mass.nc") as a, xr.open_dataset(tmp_path / "out.nc") as b:
        np.testing.assert_allclose(a["land_surface_water__runoff_depth"].values,
                                   b["land_surface_water__runoff_depth"].values, rtol=1e-12)
    spec["connections"][0]["water_density"] = "maybe"
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(ValueError, match="water_density"):
        load_spec(tmp_path / "bad.yaml")


def test_coupled_run_matches_driving_the_bmi_by_hand(tmp_path):
    """The coupler adds nothing: same numbers as feeding the forcing to BmiDeltaModel directly."""
    from bmi_dhydro import BmiDeltaModel
    from bmi_dhydro.forcing import PRECIP, TEMP, read_aorc_netcdf

    run_coupling(short_spec(tmp_path, hours=72), progress=False)
    ds = xr.open_dataset(tmp_path / "out.nc")
    times, ids, data = read_aorc_netcdf(EX.parent / "ngen/data/forcing/cats-27_52_67-2015_12_01-2015_12_30.nc")
    b = BmiDeltaModel()
    b.initialize(str(EX / "hydro_dhbv.yaml"))
    assert list(b.units.ids) == list(ds["unit_id"].values) and sorted(ids) == sorted(b.units.ids)
    col = [ids.index(u) for u in b.units.ids]  # the coupler matches units by id, not position
    q = []
    for t in range(72):
        b.set_value(PRECIP, data[PRECIP][t][col])
        b.set_value(TEMP, data[TEMP][t][col])
        b.update()
        q.append(b.get_value_ptr("land_surface_water__runoff_volume_flux").copy())
    assert ds.sizes["time"] == 72
    np.testing.assert_array_equal(ds["land_surface_water__runoff_volume_flux"].values, np.array(q))
    assert ds["land_surface_water__runoff_volume_flux"].attrs["units"] == "m3 s-1"
    ds.close()


def test_component_swap_changes_one_line(tmp_path):
    a = (EX / "catchments.yaml").read_text().splitlines()
    b = (EX / "catchments_hbv.yaml").read_text().splitlines()
    changed = [(x, y) for x, y in zip(a, b) if x != y and not x.startswith("#")]
    assert len(a) == len(b) and len(changed) == 2  # the hydro config line and the output file name
    (tmp_path / "dh").mkdir()
    (tmp_path / "hbv").mkdir()
    run_coupling(short_spec(tmp_path / "dh", hours=96), progress=False)
    run_coupling(short_spec(tmp_path / "hbv", "hydro_hbv_fixed.yaml", hours=96), progress=False)
    q1 = xr.open_dataset(tmp_path / "dh" / "out.nc")["land_surface_water__runoff_depth"].values
    q2 = xr.open_dataset(tmp_path / "hbv" / "out.nc")["land_surface_water__runoff_depth"].values
    assert q1.shape == q2.shape and np.isfinite(q1).all() and np.isfinite(q2).all()
    assert not np.array_equal(q1, q2)


def nan_forcing_spec(tmp_path, hour: int, hours: int = 24 * 29):
    """A spec over a copy of the AORC forcing whose precipitation is NaN at ``hour`` for one catchment."""
    src = EX.parent / "ngen/data/forcing/cats-27_52_67-2015_12_01-2015_12_30.nc"
    with xr.open_dataset(src, decode_times=False) as ds:
        ds = ds.load()
    ds["APCP_surface"].values[1, hour] = np.nan
    ds.to_netcdf(tmp_path / "forcing_nan.nc")
    (tmp_path / "forcing.yaml").write_text(yaml.safe_dump({"path": str(tmp_path / "forcing_nan.nc")}))
    p = short_spec(tmp_path, hours=hours)
    spec = yaml.safe_load(p.read_text())
    spec["components"]["forcing"]["config"] = str(tmp_path / "forcing.yaml")
    p.write_text(yaml.safe_dump(spec))
    return p


def test_output_is_flushed_as_the_run_goes(tmp_path):
    """A failure mid-run leaves every flushed chunk readable, in the partial file marked incomplete (issue 14: the
    output grows as out.partial.nc and becomes out.nc only when the run ends well)."""
    spec = nan_forcing_spec(tmp_path, hour=24 * 20 + 5)
    with pytest.raises(ValueError, match="NaN"):
        run_coupling(spec, progress=False)
    assert not (tmp_path / "out.nc").exists()
    ds = xr.open_dataset(tmp_path / "out.partial.nc")
    assert ds.sizes["time"] == 24 * 20 + 5  # every step completed before the failure was written
    assert np.isfinite(ds["land_surface_water__runoff_depth"].values).all()
    assert ds.attrs["run_status"].startswith("incomplete") and "NaN" in ds.attrs["run_status"]
    assert ds.attrs["steps_written"] == 24 * 20 + 5 and ds.attrs["written_until"] == "2015-12-21 05:00:00"
    ds.close()


def test_spec_errors(tmp_path):
    p = short_spec(tmp_path, extra={"surprise": 1})
    with pytest.raises(ValueError, match="surprise"):
        load_spec(p)
    spec = yaml.safe_load(short_spec(tmp_path).read_text())
    spec["connections"][0]["destination"] = "nowhere.x"
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(ValueError, match="unknown component 'nowhere'"):
        load_spec(tmp_path / "bad.yaml")
    spec = yaml.safe_load(short_spec(tmp_path).read_text())
    spec["connections"][0]["destination"] = "hydro.not_an_input"
    (tmp_path / "bad2.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(ValueError, match="has no input 'not_an_input'"):
        run_coupling(tmp_path / "bad2.yaml", progress=False)
    spec = yaml.safe_load(short_spec(tmp_path).read_text())
    spec["components"]["hydro"]["config"] = str(tmp_path / "missing.yaml")
    (tmp_path / "bad3.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        load_spec(tmp_path / "bad3.yaml")


GRIDDED = Path(__file__).resolve().parents[1] / "examples" / "gridded"


@pytest.mark.parametrize("name,var", [("nwm_divides.yaml", "land_surface_water__runoff_volume_flux"),
                                      ("era5_hrus.yaml", "snowpack__liquid-equivalent_depth")])
def test_gridded_examples_regrid_and_reuse_saved_weights(tmp_path, name, var):
    """Gridded forcing -> native conservative weights -> BmiDeltaModel; the saved ESMF file gives the same run."""
    spec = yaml.safe_load((GRIDDED / name).read_text())
    for c in spec["components"].values():
        c["config"] = str(GRIDDED / c["config"])
    conn = spec["connections"][0]
    for k in ("source_grid", "destination_polygons"):
        conn[k] = str(GRIDDED / conn[k])
    conn["save_weights"] = str(tmp_path / "w.nc")
    spec["outputs"].update(path=str(tmp_path / "a.nc"), plots=False)
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(spec))
    run_coupling(tmp_path / "a.yaml", progress=False)
    for k in ("method", "source_grid", "source_grid_var", "destination_polygons", "destination_id_field", "save_weights"):
        conn.pop(k, None)
    conn["weights"] = str(tmp_path / "w.nc")
    spec["outputs"]["path"] = str(tmp_path / "b.nc")
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(spec))
    run_coupling(tmp_path / "b.yaml", progress=False)
    a, b = xr.open_dataset(tmp_path / "a.nc"), xr.open_dataset(tmp_path / "b.nc")
    a, b = select(a, var), select(b, var)  # CF-valid names: the hyphen of the CSDMS name becomes "_"
    assert a.attrs.get("csdms_name", var) == var
    assert np.isfinite(a.values).all()
    np.testing.assert_array_equal(a.values, b.values)
    if name == "era5_hrus.yaml":
        assert float(a.values[-1].min()) > 0  # winter: the constant precipitation falls as snow
    a.close()
    b.close()


def test_a_rank_reads_only_the_box_of_source_cells_it_needs(tmp_path):
    """With a unit subset (one MPI rank's share) the gridded source reads only the box its weight rows touch,
    and the subset's results equal the full run's for those units."""
    from coupler.run import Coupler

    spec_path = GRIDDED / "era5_hrus.yaml"
    spec, _ = load_spec(spec_path)
    spec.connections[0].save_weights = None
    full = Coupler(spec, progress=False)
    full.initialize()
    ids = list(full.components["hydro"].units.ids)
    subset = ids[:5]
    part = Coupler(spec, progress=False, unit_subset={"hydro": subset}, global_ids={"hydro": ids}, workdir=tmp_path)
    part.initialize()
    buf = part.components["forcing"].get_value_ptr("land_surface_air__temperature")
    assert 0 < np.isfinite(buf).sum() < buf.size  # only a box was read
    for k in range(5):
        full.step(k * 86400.0, 86400.0)
        part.step(k * 86400.0, 86400.0)
    a = full.components["hydro"].get_value_ptr("snowpack__liquid-equivalent_depth")[:5]
    b = part.components["hydro"].get_value_ptr("snowpack__liquid-equivalent_depth")
    np.testing.assert_allclose(b, a, rtol=1e-12)


def _files(root: Path) -> dict:
    return {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()} if root.exists() else {}


def test_out_owns_every_file_a_coupled_run_writes(tmp_path):
    """``dhydro run SPEC --out DIR``: the output, its plots, the record and the saved weights all go into DIR;
    nothing is written beside the example spec or elsewhere in the checkout."""
    from dhydro.cli import main

    root = Path(__file__).resolve().parents[1]
    spec = yaml.safe_load((GRIDDED / "nwm_divides.yaml").read_text())
    assert spec["connections"][0].get("save_weights")  # the example asks for its weights to be saved
    spec["record"] = {"path": "rec.nc", "component": "hydro", "state_every": 24}
    watched = [GRIDDED, root / "dhydro_out"]
    before = [_files(d) for d in watched]
    spec_path = GRIDDED / f".test_out_{tmp_path.name}.yaml"  # relative paths resolve beside the example
    spec_path.write_text(yaml.safe_dump(spec))
    try:
        assert main(["run", str(spec_path), "--out", str(tmp_path / "o"), "--quiet"]) == 0
    finally:
        spec_path.unlink()
    assert [_files(d) for d in watched] == before
    written = sorted(p.name for p in (tmp_path / "o").iterdir())
    assert Path(spec["connections"][0]["save_weights"]).name in written and "rec.nc" in written
    assert Path(spec["outputs"]["path"]).name in written


def test_building_the_unit_registry_prints_no_pint_redefinition_warnings():
    """cf_xarray redefines some pint units on purpose; the user must not see a warning per unit on every run."""
    import subprocess
    import sys

    code = ("import logging; logging.basicConfig(level=logging.INFO); from coupler.unitconv import convert; "
            "print(convert(3.6, 'mm h-1', 'mm s-1'))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert abs(float(res.stdout.strip()) - 0.001) < 1e-15
    assert "Redefining" not in res.stderr, res.stderr[:500]
