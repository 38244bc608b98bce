"""BmiDeltaModel: the project's strict BMI 2.0 suite (issue 3).

Covers every BMI method, live pointers, ngen's conventions (types, counts, time, unknown names), update_until,
parameters in fixed and network mode, equivalence with ``DeltaModel.unroll`` and with ``physics.step``, the
hourly -> daily aggregation and its mass balance, NetCDF restarts and ngen's serialization protocol (bit for bit),
the shared network, and every bad-input path of the issue.  Real forcing: the NextGen sample catchments
(examples/ngen/data) and the bundled CAMELS subset (bmi_dhydro/resources/camels).
"""

from __future__ import annotations

import copy
import math
import warnings
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from bmi_dhydro import physics
from bmi_dhydro.bmi import (
    ET_FLUX,
    MASS_VARS,
    OUTPUT_VARS,
    PET_OUT,
    RUNOFF_DEPTH,
    RUNOFF_FLUX,
    SER_CREATE,
    SER_FREE,
    SER_SIZE,
    SER_STATE,
    STORE_VARS,
    SWE,
    BmiDeltaModel,
)
from bmi_dhydro.checkpoint import default_checkpoint_path
from bmi_dhydro.forcing import PET, PRECIP, TEMP, read_aorc_csv

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "bmi"
NGEN = ROOT / "examples" / "ngen"
FORCING = {c: NGEN / "data" / "forcing" / f"{c}_2015-12-01_00_00_00_2015-12-30_23_00_00.csv" for c in ("cat-27", "cat-52", "cat-67")}
THREE = DATA / "three_cats_hourly.yaml"
FIXED = DATA / "fixed_hourly_daily_model.yaml"
PET_INPUT = DATA / "fixed_pet_input.yaml"
PATH_KEYS = {"model": ("checkpoint",), "units": ("table", "hydrofabric", "attributes_table"), "warmup": ("restart_file", "forcing_file")}


# ---------------------------------------------------------------------------------------------------------------
# helpers


def load_cfg(path: Path) -> dict:
    """A config as a dict with its relative paths made absolute (so it can be rewritten anywhere)."""
    cfg = yaml.safe_load(Path(path).read_text())
    for section, keys in PATH_KEYS.items():
        for k in keys:
            v = (cfg.get(section) or {}).get(k)
            if v is not None:
                cfg[section][k] = str((Path(path).parent / v).resolve())
    return cfg


def write_cfg(tmp_path: Path, cfg: dict, name: str = "config.yaml") -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return p


def make(path) -> BmiDeltaModel:
    b = BmiDeltaModel()
    b.initialize(str(path))
    return b


_FORCING_CACHE: dict = {}


def forcing(cats=("cat-27", "cat-52", "cat-67")) -> dict:
    """Hourly BMI inputs (time, unit) from the ngen sample CSVs: APCP_surface/3600 in mm s-1, temperature in K."""
    key = tuple(cats)
    if key not in _FORCING_CACHE:
        cols = [read_aorc_csv(FORCING[c])[1] for c in cats]
        _FORCING_CACHE[key] = {n: np.stack([c[n] for c in cols], axis=-1) for n in (PRECIP, TEMP)}
    return _FORCING_CACHE[key]


def wet(f: dict, scale: float = 1.0) -> dict:
    """The forcing rotated so December's wet second half (days 13-29) comes first, precipitation scaled."""
    return {PRECIP: np.roll(f[PRECIP], -24 * 13, axis=0) * scale, TEMP: np.roll(f[TEMP], -24 * 13, axis=0)}


def step(b: BmiDeltaModel, precip, temp, n: int = 1) -> None:
    for _ in range(n):
        b.set_value(PRECIP, np.asarray(precip, dtype="float64"))
        b.set_value(TEMP, np.asarray(temp, dtype="float64"))
        b.update()


def run(b: BmiDeltaModel, f: dict, t0: int, t1: int, record=()) -> list:
    out = []
    for t in range(t0, t1):
        step(b, f[PRECIP][t], f[TEMP][t])
        out.append({n: b.get_value_ptr(n).copy() for n in record})
    return out


def snapshot(b: BmiDeltaModel) -> dict:
    """Everything that makes up the instance's state and visible results."""
    snap = {f"state:{k}": v.copy() for k, v in b.stepper.state_arrays().items()}
    for n in list(OUTPUT_VARS) + list(MASS_VARS):
        snap[n] = b.get_value_ptr(n).copy()
    snap["time"] = b.get_current_time()
    return snap


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]), err_msg=k)


def mass(b: BmiDeltaModel):
    return tuple(b.get_value_ptr(n).copy() for n in MASS_VARS)


@pytest.fixture(scope="module")
def three() -> BmiDeltaModel:
    """A network-mode instance over 3 units, advanced 30 hours (read-only use only)."""
    b = make(THREE)
    run(b, forcing(), 0, 30)
    return b


def all_vars(b: BmiDeltaModel) -> list[str]:
    return list(b.get_input_var_names()) + list(b.get_output_var_names()) + list(b._param_names) + list(MASS_VARS)


# ---------------------------------------------------------------------------------------------------------------
# info, metadata, types


def test_info_counts_and_names(three):
    b = three
    assert isinstance(b.get_component_name(), str) and b.get_component_name()
    ins, outs = b.get_input_var_names(), b.get_output_var_names()
    assert ins == (PRECIP, TEMP)  # hamon PET needs nothing else
    assert type(b.get_input_item_count()) is int and b.get_input_item_count() == len(ins)
    assert type(b.get_output_item_count()) is int and b.get_output_item_count() == len(outs)
    assert outs[0] == RUNOFF_DEPTH and RUNOFF_FLUX in outs and ET_FLUX in outs and SWE in outs and PET_OUT in outs
    assert all(s in outs for s in STORE_VARS.values())
    for reserved in list(MASS_VARS) + [SER_CREATE, SER_FREE, SER_SIZE, SER_STATE]:
        assert reserved not in ins and reserved not in outs  # discovered by name, never listed


def test_priestley_taylor_and_input_pet_declare_their_inputs(tmp_path):
    cfg = load_cfg(FIXED)
    cfg["model"]["pet_method"] = "priestley_taylor"
    b = make(write_cfg(tmp_path, cfg))
    assert b.get_input_var_names() == (PRECIP, TEMP, "land_surface_radiation~incoming~shortwave__energy_flux",
                                       "land_surface_air__pressure")
    assert b.get_input_item_count() == 4
    assert make(PET_INPUT).get_input_var_names() == (PRECIP, TEMP, PET)


def test_var_metadata_of_every_variable(three):
    b = three
    n = 3
    names = all_vars(b)
    assert len(names) == len(set(names))
    for name in names:
        assert b.get_var_type(name) == "float64", name
        size = b.get_var_itemsize(name)
        assert type(size) is int and size == 8, name
        nbytes = b.get_var_nbytes(name)
        assert type(nbytes) is int and nbytes == 8 * n, name
        assert b.get_var_location(name) == "node", name
        assert type(b.get_var_grid(name)) is int and b.get_var_grid(name) == 0, name
        assert isinstance(b.get_var_units(name), str) and b.get_var_units(name), name
        ptr = b.get_value_ptr(name)
        assert ptr.dtype == np.float64 and ptr.ndim == 1 and ptr.size == n and ptr.flags.c_contiguous, name


def test_units_of_the_main_variables(three):
    b = three
    assert b.get_var_units(PRECIP) == "mm s-1"
    assert b.get_var_units(TEMP) == "K"
    assert b.get_var_units(RUNOFF_DEPTH) == "m"
    assert b.get_var_units(RUNOFF_FLUX) == "m3 s-1"
    assert b.get_var_units(ET_FLUX) == "m s-1"
    assert {b.get_var_units(m) for m in MASS_VARS} == {"m"}  # ngen's mass balance needs one unit for all four
    for p in b._param_names:
        assert b.get_var_units(p) == physics.ALL_UNITS[p]


def test_serialization_names_resolve_before_and_after_initialize(three):
    expected = {SER_CREATE: ("ngen::trigger", "int32", 4), SER_FREE: ("ngen::trigger", "int32", 4),
                SER_SIZE: ("bytes", "int64", 8), SER_STATE: ("ngen::opaque", "uint8", 1)}
    for b in (BmiDeltaModel(), three):
        for name, (units, dtype, itemsize) in expected.items():
            assert b.get_var_units(name) == units  # ngen's support probe compares the exact string
            assert b.get_var_type(name) == dtype
            assert b.get_var_itemsize(name) == itemsize
            assert type(b.get_var_nbytes(name)) is int
            with pytest.raises(KeyError):  # no spatial metadata for the protocol variables
                b.get_var_grid(name)
            with pytest.raises(KeyError):
                b.get_var_location(name)
    assert BmiDeltaModel().get_var_nbytes(SER_STATE) == 0  # nothing captured yet


def test_time_methods():
    b = make(THREE)
    assert b.get_time_units() == "s"
    for getter in (b.get_start_time, b.get_current_time, b.get_time_step, b.get_end_time):
        assert type(getter()) is float
    assert b.get_start_time() == 0.0 and b.get_current_time() == 0.0
    assert b.get_time_step() == 3600.0
    assert b.get_end_time() > 1e300  # ngen refuses to step past the end time
    step(b, [0.0] * 3, [280.0] * 3, n=2)
    assert b.get_current_time() == 7200.0


def test_update_runs_without_autograd():
    b = make(THREE)
    assert any(p.requires_grad for p in b.model.parameters())  # a trainable network: autograd would record
    run(b, forcing(), 0, 24)
    st = b.stepper.state
    for t in (*st.hbv, st.h, st.c, st.route_buffer):
        assert t.grad_fn is None and not t.requires_grad


# ---------------------------------------------------------------------------------------------------------------
# live pointers and value access


def test_live_pointers_are_the_same_objects_updated_in_place():
    b = make(THREE)
    f = forcing()
    names = all_vars(b)
    ptrs = {n: b.get_value_ptr(n) for n in names}
    before = {n: p.copy() for n, p in ptrs.items()}
    run(b, f, 0, 48)
    for n in names:
        assert b.get_value_ptr(n) is ptrs[n], n  # same object every call
        np.testing.assert_array_equal(ptrs[n], b.get_value(n, np.empty(3)), err_msg=n)
    changed = [n for n in names if not np.array_equal(ptrs[n], before[n], equal_nan=True)]
    for n in (RUNOFF_DEPTH, RUNOFF_FLUX, ET_FLUX, STORE_VARS["sm"], "ngen::mass_in", "ngen::mass_out", "BETA"):
        assert n in changed, f"{n} was not updated in place"


def test_set_value_copies_into_the_existing_buffer():
    b = make(THREE)
    ptr = b.get_value_ptr(PRECIP)
    src = np.array([1e-4, 2e-4, 3e-4])
    assert b.set_value(PRECIP, src) is None
    assert b.get_value_ptr(PRECIP) is ptr and ptr is not src
    np.testing.assert_array_equal(ptr, src)
    src[:] = 9.0  # the caller's array stays the caller's
    np.testing.assert_array_equal(ptr, [1e-4, 2e-4, 3e-4])
    b.set_value_at_indices(PRECIP, np.array([2, 0], dtype="int32"), np.array([5e-4, 6e-4]))
    assert b.get_value_ptr(PRECIP) is ptr
    np.testing.assert_array_equal(ptr, [6e-4, 2e-4, 5e-4])


def test_get_value_and_at_indices_fill_and_return_dest(three):
    b = three
    src = b.get_value_ptr(STORE_VARS["sm"])
    assert np.all(src > 0) and len(set(src.tolist())) == 3  # distinct values, so a mix-up would show
    dest = np.full(3, -1.0)
    assert b.get_value(STORE_VARS["sm"], dest) is dest
    np.testing.assert_array_equal(dest, src)
    dest2 = np.full(2, -1.0)
    out = b.get_value_at_indices(STORE_VARS["sm"], dest2, np.array([2, 0], dtype="int32"))
    assert out is dest2
    np.testing.assert_array_equal(dest2, [src[2], src[0]])
    with pytest.raises(ValueError, match="expected 3"):
        b.get_value(STORE_VARS["sm"], np.empty(2))
    with pytest.raises(IndexError):
        b.get_value_at_indices(STORE_VARS["sm"], np.empty(1), np.array([3]))
    with pytest.raises(IndexError):
        b.set_value_at_indices(PRECIP, np.array([-1]), np.array([0.0]))


# ---------------------------------------------------------------------------------------------------------------
# grid


def test_grid_methods_are_consistent():
    b = make(FIXED)  # inline units: lon/lat known exactly
    n = 2
    gid = b.get_var_grid(RUNOFF_DEPTH)
    assert gid == 0
    assert b.get_grid_type(gid) == "unstructured"
    assert type(b.get_grid_rank(gid)) is int and b.get_grid_rank(gid) == 2
    assert type(b.get_grid_size(gid)) is int and b.get_grid_size(gid) == n
    assert type(b.get_grid_node_count(gid)) is int and b.get_grid_node_count(gid) == n
    assert b.get_grid_size(gid) * 8 == b.get_var_nbytes(RUNOFF_DEPTH)
    assert b.get_grid_edge_count(gid) == 0 and b.get_grid_face_count(gid) == 0
    x, y = np.full(n, np.nan), np.full(n, np.nan)
    assert b.get_grid_x(gid, x) is x and b.get_grid_y(gid, y) is y
    np.testing.assert_array_equal(x, [-80.7, -71.0])  # x = lon
    np.testing.assert_array_equal(y, [35.2, 43.1])  # y = lat
    for meth in (b.get_grid_edge_nodes, b.get_grid_face_edges, b.get_grid_face_nodes, b.get_grid_nodes_per_face):
        arr = np.zeros(0, dtype="int32")
        assert meth(gid, arr) is arr
    for meth in (b.get_grid_z, b.get_grid_shape, b.get_grid_spacing, b.get_grid_origin):
        with pytest.raises(ValueError):
            meth(gid, np.zeros(3))
    with pytest.raises(ValueError, match="grid 1"):
        b.get_grid_size(1)


def test_grid_of_a_hydrofabric_instance_is_at_the_unit_centroids(three):
    x, y = np.empty(3), np.empty(3)
    three.get_grid_x(0, x)
    three.get_grid_y(0, y)
    assert np.all((x > -81) & (x < -80.5)) and np.all((y > 35) & (y < 35.5))  # the NC sample catchments
    np.testing.assert_array_equal(x, three.units.lon)
    np.testing.assert_array_equal(y, three.units.lat)


# ---------------------------------------------------------------------------------------------------------------
# unknown names


def test_set_value_with_an_unknown_name_is_ignored():
    b = make(THREE)
    f = forcing()
    run(b, f, 0, 5)
    before = snapshot(b)
    b.set_value("no_such_variable", np.array([1.0, 2.0, 3.0]))
    b.set_value("atmosphere_air_water~vapor__relative_saturation", np.array([0.01] * 3))  # AORC, not used by hamon
    assert_same(before, snapshot(b))


UNKNOWN_CALLS = {
    "get_var_type": lambda b, n: b.get_var_type(n),
    "get_var_units": lambda b, n: b.get_var_units(n),
    "get_var_itemsize": lambda b, n: b.get_var_itemsize(n),
    "get_var_nbytes": lambda b, n: b.get_var_nbytes(n),
    "get_var_location": lambda b, n: b.get_var_location(n),
    "get_var_grid": lambda b, n: b.get_var_grid(n),
    "get_value_ptr": lambda b, n: b.get_value_ptr(n),
    "get_value": lambda b, n: b.get_value(n, np.empty(3)),
    "get_value_at_indices": lambda b, n: b.get_value_at_indices(n, np.empty(1), np.array([0])),
    "set_value_at_indices": lambda b, n: b.set_value_at_indices(n, np.array([0]), np.array([1.0])),
}


@pytest.mark.parametrize("call", sorted(UNKNOWN_CALLS))
def test_any_other_call_with_an_unknown_name_raises_listing_the_valid_names(three, call):
    with pytest.raises(KeyError) as err:
        UNKNOWN_CALLS[call](three, "no_such_variable")
    msg = str(err.value)
    assert "no_such_variable" in msg
    for valid in (PRECIP, TEMP, RUNOFF_DEPTH, "ngen::mass_in", "FC"):
        assert valid in msg, f"{call}: error does not list {valid}"


# ---------------------------------------------------------------------------------------------------------------
# update_until


def test_update_until_several_steps_equals_repeated_update():
    f = forcing()
    a, b = make(THREE), make(THREE)
    run(a, f, 0, 3)
    run(b, f, 0, 3)
    for x in (a, b):
        x.set_value(PRECIP, f[PRECIP][3])
        x.set_value(TEMP, f[TEMP][3])
    depth = np.zeros(3)
    for _ in range(30):  # crosses a model step (hour 24)
        a.update()
        depth += a.get_value_ptr(RUNOFF_DEPTH)
    b.update_until(b.get_current_time() + 30 * 3600.0)
    assert b.get_current_time() == 33 * 3600.0
    sa, sb = snapshot(a), snapshot(b)
    # the runoff outputs of update_until are over the whole call (ngen reads them as the depth over its step)
    np.testing.assert_allclose(sb.pop(RUNOFF_DEPTH), depth, rtol=1e-12, atol=0)
    np.testing.assert_allclose(sb.pop(RUNOFF_FLUX), depth * b._area_m2 / (30 * 3600.0), rtol=1e-12, atol=0)
    sa.pop(RUNOFF_DEPTH), sa.pop(RUNOFF_FLUX)
    assert depth.max() > 0
    assert_same(sa, sb)


def test_update_until_refuses_a_past_time_and_partial_steps():
    b = make(THREE)
    step(b, [0.0] * 3, [280.0] * 3, n=3)
    before = snapshot(b)
    with pytest.raises(ValueError, match="before the current time"):
        b.update_until(3600.0)
    with pytest.raises(ValueError, match="whole number of time steps"):
        b.update_until(b.get_current_time() + 1800.0)
    with pytest.raises(ValueError, match="whole number of time steps"):
        b.update_until(b.get_current_time() + 2.5 * 3600.0)
    with pytest.raises(ValueError):
        b.update_until(float("nan"))
    assert_same(before, snapshot(b))
    b.update_until(b.get_current_time())  # zero steps: nothing happens
    assert_same(before, snapshot(b))


# ---------------------------------------------------------------------------------------------------------------
# set_value errors


def test_set_value_wrong_size_is_an_error():
    b = make(THREE)
    b.set_value(PRECIP, np.array([1e-4, 2e-4, 3e-4]))
    for bad in (np.zeros(2), np.zeros(4), np.zeros((2, 2)), np.float64(1.0)):
        with pytest.raises(ValueError, match=r"expected 3 values") as err:
            b.set_value(PRECIP, bad)
        assert PRECIP in str(err.value)
    np.testing.assert_array_equal(b.get_value_ptr(PRECIP), [1e-4, 2e-4, 3e-4])
    with pytest.raises(ValueError):
        b.set_value_at_indices(PRECIP, np.array([0, 1]), np.array([1.0]))


@pytest.mark.parametrize("bad", [np.array(["1", "2", "3"]), np.array([True, False, True]),
                                 np.array([1 + 1j, 0, 0]), np.array([None, None, None], dtype=object)])
def test_set_value_wrong_dtype_is_an_error(bad):
    b = make(THREE)
    b.set_value(TEMP, np.array([280.0, 281.0, 282.0]))
    with pytest.raises(TypeError) as err:
        b.set_value(TEMP, bad)
    assert TEMP in str(err.value) and "dtype" in str(err.value)
    np.testing.assert_array_equal(b.get_value_ptr(TEMP), [280.0, 281.0, 282.0])


def test_outputs_and_mass_variables_are_read_only(three):
    for name in (RUNOFF_DEPTH, STORE_VARS["sm"], "ngen::mass_in"):
        before = three.get_value_ptr(name).copy()
        with pytest.raises(ValueError, match="read-only"):
            three.set_value(name, np.zeros(3))
        np.testing.assert_array_equal(three.get_value_ptr(name), before)


# ---------------------------------------------------------------------------------------------------------------
# precipitation and temperature checks; a failed update never changes the state


@pytest.mark.parametrize("bad", [np.nan, -1e-5, np.inf])
def test_bad_precipitation_is_an_error_by_default(bad):
    b = make(THREE)
    run(b, forcing(), 0, 23)  # the next update completes a model step
    before = snapshot(b)
    b.set_value(PRECIP, np.array([1e-4, bad, 0.0]))
    b.set_value(TEMP, np.array([280.0] * 3))
    with pytest.raises(ValueError) as err:
        b.update()
    msg = str(err.value)
    assert PRECIP in msg and "cat-52" in msg and "bad_precip" in msg
    assert_same(before, snapshot(b))


def test_bad_precipitation_with_zero_option_is_counted_treated_as_zero_and_warned(tmp_path):
    cfg = load_cfg(THREE)
    cfg["bad_precip"] = "zero"
    lenient, ref = make(write_cfg(tmp_path, cfg)), make(THREE)
    f = forcing()
    for t in range(30):
        p = f[PRECIP][t].copy()
        p[1] = 3e-4 if t % 2 else 0.0
        bad = p.copy()
        if t % 2:
            bad[1] = np.nan if t % 4 == 1 else -2e-4
        ref_p = np.where(np.isfinite(bad) & (bad >= 0), bad, 0.0)
        if t % 2:
            with pytest.warns(RuntimeWarning, match=PRECIP):
                step(lenient, bad, f[TEMP][t])
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("error", RuntimeWarning)  # no warning when nothing is bad
                step(lenient, bad, f[TEMP][t])
        step(ref, ref_p, f[TEMP][t])
    assert lenient.bad_precip_count == 15
    a, r = snapshot(lenient), snapshot(ref)
    assert_same(a, r)  # exactly as if 0 had been given


@pytest.mark.parametrize("temp", [15.0, -5.0, 179.9, 340.5, np.nan])
def test_temperature_outside_180_340_K_is_an_error(temp):
    b = make(THREE)
    run(b, forcing(), 0, 23)
    before = snapshot(b)
    b.set_value(PRECIP, np.zeros(3))
    b.set_value(TEMP, np.array([280.0, 281.0, temp]))
    with pytest.raises(ValueError) as err:
        b.update()
    assert TEMP in str(err.value) and "cat-67" in str(err.value) and "180" in str(err.value)
    assert_same(before, snapshot(b))


def test_inputs_must_be_set_before_the_first_update():
    b = make(THREE)
    with pytest.raises(ValueError, match=PRECIP):
        b.update()
    b.set_value(PRECIP, np.zeros(3))
    with pytest.raises(ValueError, match="never set"):
        b.update()
    assert b.get_current_time() == 0.0


def test_failed_update_inside_a_model_step_leaves_the_state_unchanged():
    """pet_method input with the PET missing in the hour that completes the day: the model step fails."""
    good, bad = make(PET_INPUT), make(PET_INPUT)
    f = forcing(("cat-27",))
    pet = np.array([2e-8])  # m s-1
    for x in (good, bad):
        for t in range(23):
            x.set_value(PET, pet)
            step(x, f[PRECIP][t], f[TEMP][t])
    before = snapshot(bad)
    bad.set_value(PET, np.array([np.nan]))
    bad.set_value(PRECIP, f[PRECIP][23])
    bad.set_value(TEMP, f[TEMP][23])
    with pytest.raises(ValueError, match=PET):
        bad.update()
    assert_same(before, snapshot(bad))
    # fixing the input and retrying gives exactly what an unbroken run gives
    for x in (good, bad):
        x.set_value(PET, pet)
        step(x, f[PRECIP][23], f[TEMP][23])
    assert_same(snapshot(good), snapshot(bad))
    assert good.stepper.fw_step == 24 and good.stepper.sub == 0  # the model step did run


def test_failed_update_until_leaves_the_state_as_before_the_call():
    b = make(PET_INPUT)
    f = forcing(("cat-27",))
    b.set_value(PET, np.array([2e-8]))
    step(b, f[PRECIP][0], f[TEMP][0], n=5)
    before = snapshot(b)
    b.set_value(PET, np.array([np.nan]))
    with pytest.raises(ValueError, match=PET):
        b.update_until(b.get_current_time() + 40 * 3600.0)  # fails at hour 24, after 18 good steps
    assert_same(before, snapshot(b))


# ---------------------------------------------------------------------------------------------------------------
# config errors


@pytest.mark.parametrize("section,key", [("units", "hydrofabric"), ("units", "attributes_table"), ("model", "checkpoint"),
                                         ("warmup", "restart_file")])
def test_config_naming_a_missing_file_names_the_key_and_resolved_path(tmp_path, section, key):
    cfg = load_cfg(THREE)
    cfg.setdefault(section, {})[key] = "missing/nothing_here.dat"
    if key == "restart_file":
        cfg["warmup"]["mode"] = "restart"
    with pytest.raises(FileNotFoundError) as err:
        make(write_cfg(tmp_path, cfg))
    assert f"{section}.{key}" in str(err.value)
    assert str(tmp_path / "missing" / "nothing_here.dat") in str(err.value)


def test_missing_config_file_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        make(tmp_path / "nope.yaml")


@pytest.mark.parametrize("where", ["top", "model", "units", "time", "warmup"])
def test_unknown_config_keys_are_errors(tmp_path, where):
    cfg = load_cfg(THREE)
    if where == "top":
        cfg["time_stepp"] = 3600
    else:
        cfg.setdefault(where, {})["time_stepp"] = 3600
    with pytest.raises(ValueError, match="time_stepp"):
        make(write_cfg(tmp_path, cfg))


def test_bad_config_values_are_errors(tmp_path):
    for edit, pattern in [(lambda c: c["time"].update(time_step=5000), "time_step"),  # does not divide a day
                          (lambda c: c["time"].update(time_step=-3600), "time_step"),
                          (lambda c: c.update(outputs=["nope"]), "nope"),
                          (lambda c: c["units"].update(select="cat-999"), "cat-999")]:
        cfg = load_cfg(THREE)
        edit(cfg)
        with pytest.raises((ValueError, KeyError), match=pattern):
            make(write_cfg(tmp_path, cfg))


def test_unit_missing_an_attribute_names_the_unit_and_the_attribute(tmp_path):
    table = pd.read_csv(NGEN / "data" / "attributes.csv")
    table[table["id"] != "cat-52"].to_csv(tmp_path / "attrs.csv", index=False)
    cfg = load_cfg(THREE)
    cfg["units"]["attributes_table"] = str(tmp_path / "attrs.csv")
    with pytest.raises(ValueError) as err:
        make(write_cfg(tmp_path, cfg))
    assert "cat-52" in str(err.value) and "p_mean" in str(err.value)
    # one attribute value blank for one unit
    t2 = table.copy()
    t2.loc[t2["id"] == "cat-67", "frac_forest"] = np.nan
    t2.to_csv(tmp_path / "attrs.csv", index=False)
    with pytest.raises(ValueError) as err:
        make(write_cfg(tmp_path, cfg))
    assert "cat-67" in str(err.value) and "frac_forest" in str(err.value)
    # an attribute column missing altogether
    table.drop(columns=["soil_porosity"]).to_csv(tmp_path / "attrs.csv", index=False)
    with pytest.raises(KeyError) as err:
        make(write_cfg(tmp_path, cfg))
    assert "soil_porosity" in str(err.value) and "cat-27" in str(err.value)


def test_inline_unit_missing_an_attribute_is_an_error(tmp_path):
    table = pd.read_csv(NGEN / "data" / "attributes.csv").set_index("id")
    attrs = {a: [float(table.at["cat-27", a])] for a in ("p_mean", "pet_mean", "aridity")}
    cfg = {"units": {"ids": ["cat-27"], "area_km2": [18.9], "lat": [35.2], "lon": [-80.7], "attributes": attrs}}
    with pytest.raises(KeyError) as err:
        make(write_cfg(tmp_path, cfg))
    assert "p_seasonality" in str(err.value) and "cat-27" in str(err.value)


# ---------------------------------------------------------------------------------------------------------------
# parameters


def test_fixed_mode_parameters_are_readable_and_settable_with_visible_effect(tmp_path):
    f = wet(forcing(("cat-27", "cat-52")), 2.0)  # the soil fills and the response stores matter within days
    base = make(FIXED)
    np.testing.assert_array_equal(base.get_value_ptr("FC"), [250.0, 400.0])
    np.testing.assert_array_equal(base.get_value_ptr("K1"), [0.1, 0.1])
    np.testing.assert_array_equal(base.get_value_ptr("route_b"), [1.5, 1.5])
    tuned = make(FIXED)
    tuned.set_value("K1", np.array([0.4, 0.4]))  # what ngen's model_params / ngen-cal do after initialize
    tuned.set_value_at_indices("FC", np.array([1]), np.array([120.0]))
    np.testing.assert_array_equal(tuned.get_value_ptr("FC"), [250.0, 120.0])
    cfg = load_cfg(FIXED)
    cfg["model"]["parameters"]["K1"] = 0.4
    cfg["model"]["parameters"]["FC"] = [250.0, 120.0]
    configured = make(write_cfg(tmp_path, cfg))
    out = {}
    for name, x in (("base", base), ("tuned", tuned), ("configured", configured)):
        out[name] = np.array([r[RUNOFF_DEPTH] for r in run(x, f, 0, 24 * 12, record=(RUNOFF_DEPTH,))])
    assert out["base"].sum() > 1e-3
    assert np.abs(out["tuned"] - out["base"]).sum() > 0.1 * out["base"].sum()  # the change is visible in the outputs
    np.testing.assert_array_equal(out["tuned"], out["configured"])  # exactly as if it had been configured


@pytest.mark.parametrize("name,value", [("FC", 10.0), ("K0", 1.5), ("TT", np.nan), ("route_a", 3.5), ("route_b", -1.0)])
def test_fixed_mode_out_of_bounds_parameter_is_an_error_naming_it(name, value):
    b = make(FIXED)
    before = b.get_value_ptr(name).copy()
    lo, hi = physics.ALL_BOUNDS[name]
    with pytest.raises(ValueError) as err:
        b.set_value(name, np.array([value, before[1]]))
    assert name in str(err.value) and f"[{lo}, {hi}]" in str(err.value)
    with pytest.raises(ValueError, match=name):
        b.set_value_at_indices(name, np.array([1]), np.array([value]))
    np.testing.assert_array_equal(b.get_value_ptr(name), before)
    step(b, [1e-4, 1e-4], [280.0, 280.0], n=24)  # the model still runs on the previous value
    assert np.all(np.isfinite(b.get_value_ptr(RUNOFF_DEPTH)))


def test_network_mode_parameters_are_readable_and_not_settable():
    b = make(THREE)
    names = b._param_names
    assert set(names) == set(physics.VARIANT_PARAMS["hbv1.0"]) | {"route_a", "route_b"}
    dynamic = set(b.model.config.dynamic)
    for p in names:
        v = b.get_value_ptr(p)
        if p in dynamic:
            assert np.all(np.isnan(v)), p  # the LSTM gives them at the first model step; never a fake 0
        else:
            lo, hi = physics.ALL_BOUNDS[p]
            assert np.all((v >= lo) & (v <= hi)), (p, v)
    run(b, forcing(), 0, 24)
    for p in names:
        v = b.get_value_ptr(p)
        lo, hi = physics.ALL_BOUNDS[p]
        assert np.all(np.isfinite(v)) and np.all((v >= lo) & (v <= hi)), (p, v)
        with pytest.raises(ValueError, match="read-only"):
            b.set_value(p, np.full(3, (lo + hi) / 2))
        with pytest.raises(ValueError, match="read-only"):
            b.set_value_at_indices(p, np.array([0]), np.array([(lo + hi) / 2]))
        np.testing.assert_array_equal(b.get_value_ptr(p), v)


# ---------------------------------------------------------------------------------------------------------------
# equivalence with the model core


def test_400_daily_steps_equal_delta_model_unroll(tmp_path):
    from bmi_dhydro.datasets import read_camels

    basins = ["01022500", "02064000", "04015330"]  # ME (snow), VA, MN (snow)
    start, n_steps = "2000-10-01", 400
    b0 = make(THREE)
    attrs = list(b0.model.config.attributes)
    ds = read_camels(basins=basins, start=start, end=str((pd.Timestamp(start) + pd.Timedelta(days=n_steps - 1)).date()),
                     attributes=attrs)
    pd.DataFrame({"id": basins, "area_km2": ds["area_km2"].values, "lat": ds["lat"].values, "lon": ds["lon"].values,
                  **{a: ds[a].values for a in attrs}}).to_csv(tmp_path / "units.csv", index=False)
    cfg = {"units": {"table": "units.csv"}, "time": {"time_step": 86400, "start": f"{start} 00:00:00"}}
    b = make(write_cfg(tmp_path, cfg))
    prcp = ds["prcp"].transpose("time", "basin").values
    tmean = (0.5 * (ds["tmax"] + ds["tmin"])).transpose("time", "basin").values
    names = (RUNOFF_DEPTH, ET_FLUX, PET_OUT, SWE, *STORE_VARS.values())
    rec = []
    for t in range(n_steps):
        step(b, prcp[t] / 86400.0, tmean[t] + 273.15)
        rec.append({n: b.get_value_ptr(n).copy() for n in names})
    # the same model, unrolled over the forcing the BMI computed: same PET function, unit latitude, step day of year
    model = b.model
    assert model is b0.model  # one shared network
    p_mm = (prcp / 86400.0) * 86400.0
    tc = (tmean + 273.15) - 273.15
    lat = torch.tensor(b.units.lat, dtype=torch.float64)
    t0 = datetime(2000, 10, 1)
    pet = np.stack([physics.hamon(torch.as_tensor(tc[t]), lat, float((t0 + timedelta(days=t)).timetuple().tm_yday)).numpy()
                    for t in range(n_steps)])
    forc = torch.as_tensor(np.stack([p_mm, tc, pet], axis=-1))
    attr = torch.as_tensor(b.units.attribute_matrix(attrs))
    with torch.no_grad():
        _, out = model.unroll(model.initial_state(3, dtype=torch.float64), forc, attr)
    got = {k: np.stack([r[k] for r in rec]) for k in names}
    checks = {"runoff": got[RUNOFF_DEPTH] * 1000.0, "et": got[ET_FLUX] * 1000.0 * 86400.0, "pet": got[PET_OUT] * 1000.0 * 86400.0,
              "swe": got[SWE], **{k: got[v] for k, v in STORE_VARS.items()}}
    for k, v in checks.items():
        ref = out[k].numpy()
        assert np.abs(v - ref).max() <= 1e-12, (k, np.abs(v - ref).max())
    assert checks["runoff"].sum() > 100.0 and checks["swe"].max() > 10.0  # a real hydrograph, with snow


def _fixed_params(cfg):
    return {k: torch.as_tensor(v, dtype=torch.float64) for k, v in cfg["model"]["parameters"].items()}


@pytest.mark.parametrize("routing,time_step", [(False, 86400), (True, 86400), (False, 3600)])
def test_fixed_parameter_mode_equals_physics_step_run_directly(tmp_path, routing, time_step):
    cfg = load_cfg(FIXED)
    cfg["model"]["routing"] = routing
    cfg["model"].pop("time_step")  # the model steps at the framework step
    cfg["time"]["time_step"] = time_step
    b = make(write_cfg(tmp_path, cfg))
    f = wet(forcing(("cat-27", "cat-52")), 4.0)
    n_steps = 60 if time_step == 86400 else 24 * 10
    dt_days = time_step / 86400.0
    params = physics.scale_rates({k: v.reshape(-1, 1) if v.ndim else v for k, v in _fixed_params(cfg).items()}, dt_days)
    state = physics.initial_state(2, 1, dtype=torch.float64)
    lat = torch.as_tensor([35.2, 43.1], dtype=torch.float64)
    start = datetime(2015, 12, 1)
    uh = physics.gamma_uh(params["route_a"].reshape(-1).expand(2), params["route_b"].reshape(-1).expand(2),
                          physics.uh_length(dt_days), dt_days) if routing else None
    buffer = torch.zeros(2, physics.uh_length(dt_days), dtype=torch.float64)
    max_snow, q_sum = 0.0, 0.0
    for t in range(n_steps):
        h0, h1 = t * time_step // 3600 % 720, (t + 1) * time_step // 3600 % 720 or 720
        rate, temp_k = f[PRECIP][h0:h1].mean(axis=0), f[TEMP][h0:h1].mean(axis=0)  # the step's mean
        temp_k = temp_k - (14.0 if (t * time_step // 86400) % 10 < 4 else 0.0)  # cold spells: snow, then melt
        step(b, rate, temp_k)
        p_mm = torch.as_tensor(rate * time_step)
        tc = torch.as_tensor(temp_k - 273.15)
        doy = float((start + timedelta(seconds=t * time_step)).timetuple().tm_yday)
        pet = physics.hamon(tc, lat, doy) * dt_days
        state, flux = physics.step(state, p_mm, tc, pet, params)
        q = flux.q.mean(-1)
        if routing:
            q, buffer = physics.route_step(q, uh, buffer)
        np.testing.assert_allclose(b.get_value_ptr(RUNOFF_DEPTH), q.numpy() / 1000.0, rtol=0, atol=1e-15)
        for k, v in STORE_VARS.items():
            np.testing.assert_allclose(b.get_value_ptr(v), getattr(state, k).mean(-1).numpy(), rtol=0, atol=1e-12)
        np.testing.assert_allclose(b.get_value_ptr(ET_FLUX) * 1000.0 * time_step, flux.et.mean(-1).numpy(), rtol=1e-12, atol=1e-15)
        max_snow, q_sum = max(max_snow, float(state.snowpack.max())), q_sum + float(q.sum())
    assert max_snow > 1.0 and q_sum > 1.0 and float(state.slz.min()) > 0  # snow, runoff and every path exercised


# ---------------------------------------------------------------------------------------------------------------
# time-step bridging: hourly framework steps, daily model


def test_hourly_aggregation_conserves_mass_at_every_step_and_over_the_run():
    b = make(THREE)
    f = forcing()
    m_in0, m_out0, m_st0, m_lk0 = mass(b)
    np.testing.assert_allclose(m_in0, 5 * physics.INITIAL_STORE_MM / 1000.0, rtol=1e-12)  # cold start: 5 stores
    np.testing.assert_array_equal(m_out0, 0.0)
    depth_sum = np.zeros(3)
    et_sum = np.zeros(3)
    worst = 0.0
    for t in range(720):
        step(b, f[PRECIP][t], f[TEMP][t])
        m_in, m_out, m_st, m_lk = mass(b)
        worst = max(worst, float(np.abs(m_in - m_out - m_st - m_lk).max()))
        depth = b.get_value_ptr(RUNOFF_DEPTH)
        assert np.all(depth >= 0) and np.all(np.isfinite(depth))
        np.testing.assert_allclose(b.get_value_ptr(RUNOFF_FLUX), depth * b._area_m2 / 3600.0, rtol=1e-14, atol=0)
        depth_sum += depth
        if (t + 1) % 24 == 0:  # a model step completed: ET is its mean rate
            et_sum += b.get_value_ptr(ET_FLUX) * 86400.0
    assert worst <= 1e-12, worst
    m_in, m_out, m_st, m_lk = mass(b)
    precip_m = (f[PRECIP] * 3600.0).sum(axis=0) / 1000.0  # what was given, summed independently
    np.testing.assert_allclose(m_in, m_in0 + precip_m, rtol=1e-12)
    np.testing.assert_allclose(depth_sum + et_sum, m_out, rtol=1e-12)  # everything that left, step by step
    np.testing.assert_allclose(m_in0 + precip_m, depth_sum + et_sum + m_st + m_lk, rtol=1e-12, atol=1e-15)
    assert np.all(precip_m > 0.15) and np.all(depth_sum > 0.001)


def test_mass_balance_counts_the_soil_moisture_floor_as_leaked():
    """Huge PET empties the soil; the floor puts water back, which ngen::mass_leaked reports (negative: a gain)."""
    b = make(PET_INPUT)
    f = forcing(("cat-27",))
    for t in range(24 * 6):
        b.set_value(PET, np.array([5e-6]))  # 432 mm per day: ET takes all the soil water
        step(b, f[PRECIP][t], f[TEMP][t])
        m_in, m_out, m_st, m_lk = mass(b)
        assert abs(float((m_in - m_out - m_st - m_lk)[0])) <= 1e-12
    assert float(m_lk[0]) < -1e-9  # the floor added water


def test_hourly_runoff_spreads_each_model_step_evenly_over_the_next_day():
    b = make(THREE)
    f = forcing()
    depths = np.array([r[RUNOFF_DEPTH] for r in run(b, f, 0, 24 * 5, record=(RUNOFF_DEPTH,))])
    np.testing.assert_array_equal(depths[:23], 0.0)  # nothing before the first model step completes
    for d in range(4):
        window = depths[24 * d + 23: 24 * d + 47]
        np.testing.assert_array_equal(window, np.broadcast_to(window[0], window.shape))
    assert depths.max() > 0


def test_hourly_steps_aggregate_to_the_daily_model_step(tmp_path):
    """Hourly steps with forcing constant within each day reproduce daily steps (mass and stores)."""
    hourly = make(FIXED)
    cfg = load_cfg(FIXED)
    cfg["time"]["time_step"] = 86400
    daily = make(write_cfg(tmp_path, cfg))
    f = wet(forcing(("cat-27", "cat-52")), 3.0)
    days = 20
    rate = np.stack([f[PRECIP][24 * d: 24 * d + 24].mean(axis=0) for d in range(days)])
    temp = np.stack([f[TEMP][24 * d: 24 * d + 24].mean(axis=0) for d in range(days)])
    hourly_depth = []
    daily_prev = None
    for d in range(days):
        step(daily, rate[d], temp[d])
        for _ in range(24):
            step(hourly, rate[d], temp[d])
            hourly_depth.append(hourly.get_value_ptr(RUNOFF_DEPTH).copy())
        for v in STORE_VARS.values():  # stores agree at the day's end
            np.testing.assert_allclose(hourly.get_value_ptr(v), daily.get_value_ptr(v), rtol=1e-12, atol=1e-12)
        if d >= 1:
            released = np.sum(hourly_depth[24 * (d - 1) + 23: 24 * d + 23], axis=0)  # day d-1's runoff, spread over 24 h
            np.testing.assert_allclose(released, daily_prev, rtol=1e-12, atol=1e-16)
        daily_prev = daily.get_value_ptr(RUNOFF_DEPTH).copy()
    assert np.sum(hourly_depth) > 1e-3


# ---------------------------------------------------------------------------------------------------------------
# state: NetCDF restart and ngen serialization, bit for bit


RECORD = tuple(OUTPUT_VARS) + tuple(MASS_VARS)


@pytest.mark.parametrize("stop", [37, 48])  # mid-day (13 h into the second day) and at a day boundary
def test_netcdf_restart_continues_bit_for_bit(tmp_path, stop):
    f = forcing()
    unbroken = run(make(THREE), f, 0, 80, record=RECORD)
    first = make(THREE)
    run(first, f, 0, stop)
    path = first.save_state(tmp_path / "restart.nc")
    assert path.is_file()
    import xarray as xr

    with xr.open_dataset(path) as ds:  # a real, self-describing NetCDF file
        assert list(ds["unit_id"].values) == ["cat-27", "cat-52", "cat-67"]
        assert {"hbv_sm", "lstm_h", "lstm_c", "route_buffer", "counters"} <= set(ds.data_vars)
        assert ds.attrs["current_time_s"] == stop * 3600.0
    second = make(THREE)
    second.load_state(path)
    assert second.get_current_time() == stop * 3600.0
    cont = run(second, f, stop, 80, record=RECORD)
    for i, rec in enumerate(cont):
        assert_same(unbroken[stop + i], rec)
    # the same through the config's warm-up section
    cfg = load_cfg(THREE)
    cfg["warmup"] = {"mode": "restart", "restart_file": str(path)}
    third = make(write_cfg(tmp_path, cfg))
    assert third.get_current_time() == stop * 3600.0
    for i, rec in enumerate(run(third, f, stop, 80, record=RECORD)):
        assert_same(unbroken[stop + i], rec)


def test_load_state_errors(tmp_path):
    b = make(THREE)
    run(b, forcing(), 0, 5)
    path = b.save_state(tmp_path / "r.nc")
    with pytest.raises(FileNotFoundError, match="nothing.nc"):
        b.load_state(tmp_path / "nothing.nc")
    other = make(DATA / "fixed_hourly_daily_model.yaml")
    before = snapshot(other)
    with pytest.raises(ValueError, match="cat-27"):
        other.load_state(path)
    assert_same(before, snapshot(other))
    cfg = load_cfg(THREE)
    cfg["time"]["time_step"] = 86400
    daily = make(write_cfg(tmp_path, cfg))
    with pytest.raises(ValueError, match="time step"):
        daily.load_state(path)


def _ngen_capture(b: BmiDeltaModel) -> np.ndarray:
    """ngen's save sequence: set create -> get size -> get state (dest sized by size) -> set free."""
    b.set_value(SER_CREATE, np.array([1], dtype="int32"))
    size = np.zeros(1, dtype="int64")
    b.get_value(SER_SIZE, size)
    assert size[0] > 0
    payload = np.zeros(int(size[0]), dtype="uint8")
    assert b.get_value(SER_STATE, payload) is payload
    b.set_value(SER_FREE, np.array([1], dtype="int32"))
    return payload


def _ngen_restore(b: BmiDeltaModel, payload: np.ndarray) -> None:
    """ngen's restore sequence (protocol v0.2): set size (announce) -> set state with nbytes/itemsize bytes."""
    b.set_value(SER_SIZE, np.array([payload.size], dtype="int64"))
    n = b.get_var_nbytes(SER_STATE) // b.get_var_itemsize(SER_STATE)  # how ngen's Python adapter sizes the array
    b.set_value(SER_STATE, np.frombuffer(payload.tobytes()[:n], dtype="uint8"))


def test_ngen_serialization_protocol_continues_bit_for_bit_in_a_fresh_instance():
    f = forcing()
    unbroken = run(make(THREE), f, 0, 80, record=RECORD)
    a = make(THREE)
    run(a, f, 0, 37)
    before = snapshot(a)
    payload = _ngen_capture(a)
    assert_same(before, snapshot(a))  # create/free never touch the model state
    assert a.get_value_ptr(SER_SIZE)[0] == 0 and a.get_var_nbytes(SER_STATE) == 0  # free released the buffer
    fresh = make(THREE)
    _ngen_restore(fresh, payload)
    assert fresh.get_current_time() == 0.0  # the resumed run's clock (bmi_state.restart_clock); the state is step 37
    for i, rec in enumerate(run(fresh, f, 37, 80, record=RECORD)):
        assert_same(unbroken[37 + i], rec)


def test_serialization_getters_do_not_mutate_and_bad_payloads_are_refused():
    f = forcing()
    a = make(THREE)
    run(a, f, 0, 30)
    payload = _ngen_capture(a)
    b = make(THREE)
    run(b, f, 0, 5)
    before = snapshot(b)
    for name in (SER_CREATE, SER_FREE, SER_SIZE, SER_STATE):
        b.get_value(name, np.zeros(b.get_var_nbytes(name) // b.get_var_itemsize(name), dtype=b.get_var_type(name)))
    assert_same(before, snapshot(b))
    garbage = np.frombuffer(b"not a state at all" * 10, dtype="uint8")
    with pytest.raises(ValueError, match="bmi-dhydro state"):
        _ngen_restore(b, garbage)
    with pytest.raises(ValueError, match="announced"):
        b.set_value(SER_SIZE, np.array([payload.size + 3], dtype="int64"))
        b.set_value(SER_STATE, payload)
    with pytest.raises(ValueError):
        _ngen_restore(b, payload[: payload.size // 2])  # truncated
    with pytest.raises(ValueError, match="non-negative integer"):
        b.set_value(SER_SIZE, np.array([1.5]))
    assert_same(before, snapshot(b))
    other = make(FIXED)
    with pytest.raises(ValueError, match="units"):
        _ngen_restore(other, payload)


# ---------------------------------------------------------------------------------------------------------------
# sharing, warm-up, dtype


def test_instances_naming_the_same_checkpoint_share_the_network_never_the_state(tmp_path):
    cfg = load_cfg(NGEN / "config" / "cat-27.yaml")
    cfg["model"]["checkpoint"] = str(default_checkpoint_path())  # named explicitly here, null (default) in the other
    a = make(write_cfg(tmp_path, cfg, "a.yaml"))
    b = make(NGEN / "config" / "cat-52.yaml")
    alone = make(NGEN / "config" / "cat-27.yaml")
    assert a.model is b.model is alone.model
    assert a.stepper is not b.stepper and a.stepper.state.hbv.sm is not b.stepper.state.hbv.sm
    f27, f52 = forcing(("cat-27",)), forcing(("cat-52",))
    for t in range(60):  # interleaved as ngen steps catchments, b with 5x the rain
        step(a, f27[PRECIP][t], f27[TEMP][t])
        step(b, f52[PRECIP][t] * 5, f52[TEMP][t])
        step(alone, f27[PRECIP][t], f27[TEMP][t])
        assert_same(snapshot(a), snapshot(alone))
    assert not np.array_equal(a.get_value_ptr(STORE_VARS["sm"]), b.get_value_ptr(STORE_VARS["sm"]))


@pytest.mark.parametrize("stepping", ["daily_release", "hourly", "day_so_far"])
def test_spinup_warmup_keeps_the_stores_and_restarts_the_clock_and_accounting(tmp_path, stepping):
    cfg = load_cfg(NGEN / "config" / "cat-27.yaml")
    cfg["stepping"] = stepping
    cold = make(write_cfg(tmp_path, cfg))
    cfg["warmup"] = {"mode": "spinup", "forcing_file": str(FORCING["cat-27"])}
    b = make(write_cfg(tmp_path, cfg))
    assert b.get_current_time() == 0.0
    assert b.get_value_ptr(STORE_VARS["sm"])[0] > 10 * cold.get_value_ptr(STORE_VARS["sm"])[0]
    # the stores reported are the spun-up model's stores
    reported = {k: b.get_value_ptr(v)[0] for k, v in STORE_VARS.items()}
    b.stepper.refresh_store_means()
    assert reported == {k: b.stepper.store_means[k][0] for k in STORE_VARS}
    m_in, m_out, m_st, m_lk = mass(b)
    np.testing.assert_allclose(m_in, m_st, rtol=1e-14)  # accounting restarts from the spun-up storage
    assert m_out[0] == 0.0
    f = forcing(("cat-27",))
    for t in range(48):
        step(b, f[PRECIP][t], f[TEMP][t])
        m_in, m_out, m_st, m_lk = mass(b)
        assert abs(float((m_in - m_out - m_st - m_lk)[0])) <= 1e-12


def test_float32_model_keeps_float64_variables(tmp_path):
    cfg = load_cfg(THREE)
    cfg["dtype"] = "float32"
    b = make(write_cfg(tmp_path, cfg))
    ref = make(THREE)
    f = forcing()
    r32 = np.array([r[RUNOFF_DEPTH] for r in run(b, f, 0, 72, record=(RUNOFF_DEPTH,))])
    r64 = np.array([r[RUNOFF_DEPTH] for r in run(ref, f, 0, 72, record=(RUNOFF_DEPTH,))])
    assert b.get_var_type(RUNOFF_DEPTH) == "float64" and b.get_value_ptr(RUNOFF_DEPTH).dtype == np.float64
    assert b.model is not ref.model  # one shared network per dtype
    np.testing.assert_allclose(r32, r64, rtol=1e-4, atol=1e-9)
    assert math.isfinite(float(r32.sum())) and r32.sum() > 0


def test_outputs_subset_keeps_the_main_output(tmp_path):
    cfg = load_cfg(THREE)
    cfg["outputs"] = [STORE_VARS["sm"], ET_FLUX]
    b = make(write_cfg(tmp_path, cfg))
    assert b.get_output_var_names() == (RUNOFF_DEPTH, STORE_VARS["sm"], ET_FLUX)
    assert b.get_output_item_count() == 3
    cfg2 = copy.deepcopy(cfg)
    cfg2["outputs"] = [RUNOFF_DEPTH]
    assert make(write_cfg(tmp_path, cfg2, "c2.yaml")).get_output_var_names() == (RUNOFF_DEPTH,)


def test_threads_are_set_per_instance_around_model_steps_never_process_wide(tmp_path):
    """`threads:` applies to the instance's own model steps and is restored after each: a host (ngen, a coupler)
    keeps its torch setting, and two instances with different settings do not change each other."""
    import pandas as pd
    import torch

    from bmi_dhydro import BmiDeltaModel
    from bmi_dhydro import stepper as stepper_mod

    before = torch.get_num_threads()
    seen = []
    real = stepper_mod.torch_threads

    def spy(n):
        seen.append(n)
        return real(n)

    # many units (the attributes of ngen's cat-27 repeated), so that the model step runs in torch
    row = pd.read_csv(ROOT / "examples/ngen/data/attributes.csv", dtype={"id": str}).set_index("id").iloc[0]
    row = row.drop(labels=["attribute_source"], errors="ignore")
    n = 300
    cfg = {"units": {"ids": [f"c{i}" for i in range(n)], "area_km2": [20.0] * n, "lat": [35.0] * n, "lon": [-80.0] * n,
                     "attributes": {a: [float(v)] * n for a, v in row.items()}},
           "time": {"time_step": 86400, "start": "2015-12-01 00:00:00"}, "threads": before + 1}
    p = tmp_path / "many.yaml"
    p.write_text(yaml.safe_dump(cfg))
    b = BmiDeltaModel()
    b.initialize(str(p))
    assert torch.get_num_threads() == before  # initialize changes nothing process-wide
    assert not b.stepper.use_numpy
    stepper_mod.torch_threads = spy
    try:
        b.set_value("atmosphere_water__liquid_equivalent_precipitation_rate", np.full(b.n, 1e-5))
        b.set_value("land_surface_air__temperature", np.full(b.n, 280.0))
        b.update()
    finally:
        stepper_mod.torch_threads = real
    assert seen == [before + 1]
    assert torch.get_num_threads() == before  # restored after the step
    assert np.isfinite(b.get_value_ptr("land_surface_water__runoff_depth")).all()
