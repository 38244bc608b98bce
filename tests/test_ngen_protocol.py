"""Replays NOAA-OWP/ngen's call sequence for a ``bmi_python`` formulation on the real sample forcing.

The replay follows ngen's sources call for call (checked with the search tool):

* ``src/bmi/Bmi_Py_Adapter.cpp`` / ``include/bmi/Bmi_Py_Adapter.hpp``: construction (import the module, build the
  class with no arguments, ``initialize(init_config)``, ``get_time_units`` for the time factor), ``SetValue``
  (``get_var_itemsize``, ``get_var_type`` -> analogous C++ type, then ``set_value<T>``: ``get_var_nbytes``,
  ``get_var_itemsize``, ``set_value(name, array of nbytes/itemsize items)``), ``GetValue`` (type, itemsize, then a
  copy out of ``get_value_ptr``) and ``get_value_at_indices`` (type, itemsize, input names, type, a zeroed dest
  array of that dtype, then the model's ``get_value`` or ``get_value_at_indices`` with int32 indices);
* ``Bmi_Module_Formulation``: ``model_params`` set through ``SetValue`` after initialize, ``get_start_time``, the
  output names, the mass-balance (``ngen::mass_*``) and serialization (``ngen::serialization_*``) support probes,
  then per step ``get_response``: ``get_current_time``, ``set_model_inputs_prior_to_update`` (for each input:
  ``get_var_nbytes``, ``get_var_itemsize``, ``get_var_type``, ``get_var_units`` for the provider's conversion,
  ``SetValue``), ``get_time_step``, ``update`` (or ``update_until`` when ngen's step differs), the main output
  through ``get_var_value_as_double`` (``get_value_at_indices`` at index 0), every output for the output line,
  and the mass-balance check (``GetValue`` of the four ``ngen::mass_*``).
* ``CsvPerFeatureForcingProvider``: the realization's ``variables_names_map`` alias is looked up through ngen's
  well-known AORC fields (``precip_rate`` is ``mm s^-1``; ``APCP_surface`` is ``kg m^-2``, which cannot be
  converted to a rate), values are converted to the units the model reports, and an impossible conversion is an
  error here (ngen would warn and pass the raw number).  It keeps the records from the realization's start to its
  end time; a request past the end gets the last record (``get_ts_index_for_time`` stops counting at the end).
* The serialization protocol of NOAA-OWP/ngen PR #957 (refs/pull/957/head a4558ecb; not in master): the model time
  offset is fixed from ``get_start_time`` before anything else (``determine_model_time_offset``), the protocols probe
  ``get_var_units`` of the reserved names, a restore runs once at the end of the formulation's creation
  (``SetValue(ngen::serialization_size, int64 n)``, ``SetValue(ngen::serialization_state, n bytes)``), and a save
  runs after each step's response and mass-balance check (``SetValue(create)``, ``GetValue(size)``,
  ``GetValue(state)`` into a buffer of that size, ``SetValue(free)``).  The adapter maps numpy ``uint8`` to
  ``uint8_t`` there.

Every catchment is a separate instance in one process, stepped catchment by catchment as ngen does, with configs
and the realization written by ``dhydro ngen-config``.  The ngen cat-27/52/67 sample's ``precip_rate`` column is
1000x too small (examples/ngen/data), so those CSVs are corrected first (``precip_rate = APCP_surface / 3600``, mm
s-1), as a user has to; the gauge_01073000 CSVs carry a correct ``precip_rate``.
"""

from __future__ import annotations

import importlib
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from bmi_dhydro.ngen import NGEN_STEPPING
from dhydro.cli import main as dhydro

ROOT = Path(__file__).resolve().parents[1]
NGEN = ROOT / "examples" / "ngen"
SAMPLE_CSV = "{cat}_2015-12-01_00_00_00_2015-12-30_23_00_00.csv"
SAMPLE_CATS = ("cat-27", "cat-52", "cat-67")
GAUGE_CATS = ("cat-11223", "cat-11224", "cat-11371", "cat-11410", "cat-11509")
MASS = ("ngen::mass_in", "ngen::mass_out", "ngen::mass_stored", "ngen::mass_leaked")
SERIALIZATION_UNITS = {"ngen::serialization_create": "ngen::trigger", "ngen::serialization_free": "ngen::trigger",
                       "ngen::serialization_size": "bytes", "ngen::serialization_state": "ngen::opaque"}
N_STEPS = 720
STEP_S = 3600

# ---------------------------------------------------------------------------------------------------------------
# the framework side


class CallLog:
    """Wraps the Python BMI object the way pybind11 sees it, recording every attribute ngen calls."""

    def __init__(self, obj):
        self._obj = obj
        self.calls: list[str] = []
        self.named: list[str] = []  # the same calls with the variable each names, as in tests/data/ngen_calls_per_step.txt

    def attr(self, name):
        fn = getattr(self._obj, name)

        def call(*args):
            self.calls.append(name)
            self.named.append(" ".join([name] + [a for a in args[:1] if isinstance(a, str)]))
            return fn(*args)

        return call


def recorded_ngen_calls() -> list[str]:
    """The calls a real ngen made into one catchment for one catchment-step, as recorded (method and variable)."""
    return [ln for ln in (ROOT / "tests" / "data" / "ngen_calls_per_step.txt").read_text().splitlines()
            if ln.strip() and not ln.startswith("#")]


def analogous_cxx_type(py_type: str, itemsize: int) -> str:
    """Bmi_Py_Adapter::get_analogous_cxx_type (LP64 sizes); anything else throws in ngen."""
    table = {("int", 2): "short", ("int16", 2): "short", ("int", 4): "int", ("int32", 4): "int", ("int", 8): "long",
             ("int64", 8): "long long", ("longlong", 8): "long long", ("float", 4): "float", ("float32", 4): "float",
             ("float", 8): "double", ("float64", 8): "double", ("uint8", 1): "uint8_t", ("int8", 1): "uint8_t"}
    if (py_type, itemsize) not in table:
        raise RuntimeError(f"(Bmi_Py_Adapter) Failed determining analogous C++ type for Python model '{py_type}' type "
                           f"with size {itemsize} bytes.")
    return table[(py_type, itemsize)]


NP_OF_CXX = {"double": "float64", "float": "float32", "int": "int32", "long": "int64", "long long": "int64",
             "short": "int16", "uint8_t": "uint8"}


class PyAdapter:
    """models::bmi::Bmi_Py_Adapter, the calls it makes into Python."""

    def __init__(self, python_type: str, init_config: str):
        module_name, _, class_name = python_type.rpartition(".")  # separate_package_and_simple_name
        if not module_name:
            raise RuntimeError(f"Cannot interpret BMI Python model type '{python_type}'")
        cls = getattr(importlib.import_module(module_name), class_name)
        self.model = CallLog(cls())  # no constructor arguments
        self.m = self.model.attr
        assert self.m("initialize")(init_config) is None
        units = str(self.m("get_time_units")())
        self.time_factor = {"s": 1.0, "sec": 1.0, "seconds": 1.0}[units]

    # scalar getters go through py::int_ / py::float_ / py::str, which accept only real ints/floats/strs here
    def int_(self, name, *args):
        v = self.m(name)(*args)
        assert type(v) is int, f"{name} returned {type(v).__name__}, not int"
        return v

    def float_(self, name, *args):
        v = self.m(name)(*args)
        assert type(v) is float, f"{name} returned {type(v).__name__}, not float"
        return v

    def str_(self, name, *args):
        v = self.m(name)(*args)
        assert isinstance(v, str), f"{name} returned {type(v).__name__}, not str"
        return v

    def GetInputVarNames(self):
        count = self.int_("get_input_item_count")
        names = self.m("get_input_var_names")()
        assert isinstance(names, tuple) and len(names) == count  # ngen fills a vector sized by the count
        return list(names)

    def GetOutputVarNames(self):
        count = self.int_("get_output_item_count")
        names = self.m("get_output_var_names")()
        assert isinstance(names, tuple) and len(names) == count
        return list(names)

    def SetValue(self, name, values):
        itemsize = self.int_("get_var_itemsize", name)
        cxx = analogous_cxx_type(self.str_("get_var_type", name), itemsize)
        length = self.int_("get_var_nbytes", name) // self.int_("get_var_itemsize", name)
        arr = np.asarray(values, dtype=NP_OF_CXX[cxx])[:length]  # py::buffer_info(src, length)
        assert arr.size == length
        self.m("set_value")(name, arr)

    def GetValue(self, name):
        itemsize = self.int_("get_var_itemsize", name)
        cxx = analogous_cxx_type(self.str_("get_var_type", name), itemsize)
        ptr = self.m("get_value_ptr")(name)
        assert isinstance(ptr, np.ndarray) and ptr.ndim == 1 and ptr.dtype == np.dtype(NP_OF_CXX[cxx])
        return ptr.copy()

    def get_value_at_indices(self, name, inds, is_all_indices):
        val_type = self.str_("get_var_type", name)
        analogous_cxx_type(val_type, self.int_("get_var_itemsize", name))
        self.GetInputVarNames()
        val_type = self.str_("get_var_type", name)  # get_via_numpy_array asks again
        dest = np.zeros(len(inds), dtype=val_type, order="C")
        if is_all_indices:
            ret = self.m("get_value")(name, dest)
        else:
            ret = self.m("get_value_at_indices")(name, dest, np.asarray(inds, dtype="int32"))
        assert ret is dest
        return dest


# ngen's well-known AORC CSV fields (data_access::WellKnownFields): column -> (canonical name, units)
WELL_KNOWN = {
    "precip_rate": ("atmosphere_water__liquid_equivalent_precipitation_rate", "mm s^-1"),
    "APCP_surface": ("atmosphere_water__rainfall_volume_flux", "kg m^-2"),
    "DSWRF_surface": ("land_surface_radiation~incoming~shortwave__energy_flux", "W m-2"),
    "PRES_surface": ("land_surface_air__pressure", "Pa"),
    "SPFH_2maboveground": ("atmosphere_air_water~vapor__relative_saturation", "kg kg-1"),
    "TMP_2maboveground": ("land_surface_air__temperature", "K"),
}
SAME_UNITS = [{"mm s^-1", "mm s-1", "mm/s"}, {"K"}, {"W m-2", "W m^-2"}, {"Pa"}, {"kg kg-1"}]


class CsvPerFeatureProvider:
    """ngen's CsvPerFeatureForcingProvider for one catchment, hourly records."""

    def __init__(self, path: Path, start: datetime, end: datetime | None = None):
        df = pd.read_csv(path, skipinitialspace=True)
        df.columns = [c.strip() for c in df.columns]
        times = pd.to_datetime(df["time"])
        assert times.iloc[0] <= pd.Timestamp(start.replace(tzinfo=None))
        keep = (times >= pd.Timestamp(start)) & (times <= pd.Timestamp(end or times.iloc[-1]))
        df = df[keep.to_numpy()]
        self.start = int(pd.Timestamp(start).tz_localize("UTC").timestamp())
        self.values, self.units = {}, {}
        for col in df.columns:
            if col == "time":
                continue
            canonical, units = WELL_KNOWN.get(col, (col, ""))
            self.values[canonical] = df[col].to_numpy(dtype="float64")
            self.units[canonical] = units
            self.units[col] = units

    def get_value(self, name: str, epoch: int, duration: int, out_units: str) -> float:
        canonical = WELL_KNOWN.get(name, (name,))[0]
        if canonical not in self.values:
            raise RuntimeError(f"Cannot get forcing value for unrecognized parameter name '{name}'.")
        assert epoch >= self.start, "Forcing had bad pre-start time for index query"
        i = min((epoch - self.start) // 3600, len(next(iter(self.values.values()))) - 1)  # past the end: last record
        assert duration == 3600
        value = float(self.values[canonical][i])
        have = self.units.get(name, self.units[canonical])
        if not any(have in g and out_units in g for g in SAME_UNITS):
            raise AssertionError(f"ngen cannot convert {name} from {have!r} to the model's {out_units!r}: it would warn "
                                 "and hand over the unconverted number")
        return value


class Formulation:
    """realization::Bmi_Py_Formulation (Bmi_Module_Formulation) for one catchment."""

    def __init__(self, params: dict, cat: str, provider: CsvPerFeatureProvider, start: datetime, model_params=None):
        self.cat = cat
        self.main = params["main_output_variable"]
        self.names_map = params.get("variables_names_map", {})
        assert not params.get("uses_forcing_file", False)  # newer ngen refuses it when true
        self.adapter = a = PyAdapter(params["python_type"], params["init_config"].replace("{{id}}", cat))
        for name, value in (model_params or {}).items():  # set_initial_bmi_parameters
            a.int_("get_var_itemsize", name)
            a.int_("get_var_nbytes", name)
            analogous_cxx_type(a.str_("get_var_type", name), a.int_("get_var_itemsize", name))
            a.SetValue(name, np.atleast_1d(value))
        self.offset = int(start.replace(tzinfo=timezone.utc).timestamp()) - int(a.float_("get_start_time"))
        self.outputs = a.GetOutputVarNames()
        assert self.main in self.outputs
        # protocol support probes
        units = []
        for name in MASS:
            assert a.GetValue(name).shape == (1,)
            units.append(a.str_("get_var_units", name))
        assert len(set(units)) == 1, units
        for name, unit in SERIALIZATION_UNITS.items():
            assert a.str_("get_var_units", name) == unit
        self.provider = provider
        self.next_index = 0
        self.step_marks: list[int] = []

    def set_model_inputs_prior_to_update(self, model_time: float, t_delta: int) -> dict:
        a = self.adapter
        epoch = int(model_time / a.time_factor) + self.offset
        given = {}
        for var in a.GetInputVarNames():
            alias = self.names_map.get(var, var)
            itemsize = a.int_("get_var_itemsize", var)
            units = a.str_("get_var_units", var)
            analogous_cxx_type(a.str_("get_var_type", var), itemsize)
            nbytes = a.int_("get_var_nbytes", var)
            assert nbytes % itemsize == 0 and nbytes // itemsize == 1  # one catchment, one value
            value = self.provider.get_value(alias, epoch, t_delta, units)
            a.SetValue(var, [value])
            given[var] = value
        return given

    def get_response(self, t_index: int, t_delta: int = STEP_S) -> tuple[float, dict]:
        a = self.adapter
        self.step_marks.append(len(a.model.calls))
        t_model = t_delta * a.time_factor
        model_time = a.float_("get_current_time")
        assert a.float_("get_end_time") >= model_time + t_model * (t_index - self.next_index + 1)
        given = {}
        while self.next_index <= t_index:
            t0 = a.float_("get_current_time")
            given = self.set_model_inputs_prior_to_update(t0, t_delta)
            if t_model == a.float_("get_time_step"):
                assert a.m("update")() is None
            else:
                assert a.m("update_until")(t0 + t_model) is None
            self.next_index += 1
        return self.value_as_double(self.main), given

    def value_as_double(self, name: str) -> float:
        """Bmi_Module_Formulation::get_var_value_as_double: is it an output, its type, the value, its units."""
        a = self.adapter
        assert name in a.GetOutputVarNames()
        cxx = analogous_cxx_type(a.str_("get_var_type", name), a.int_("get_var_itemsize", name))
        assert cxx == "double"
        value = float(a.get_value_at_indices(name, [0], False)[0])
        a.str_("get_var_units", name)  # (ngen converts to the units asked for; here the model's own)
        return value

    def output_line(self) -> list[float]:
        return [self.value_as_double(n) for n in self.outputs]

    def mass_balance(self) -> float:
        m_in, m_out, m_st, m_lk = (float(self.adapter.GetValue(n)[0]) for n in MASS)
        return m_in - m_out - m_st - m_lk

    # ngen PR #957: NgenBmiProtocols (src/utilities/bmi/serialization.cpp, deserialization.cpp)
    def checkpoint_state(self) -> np.ndarray:
        """Protocol::SERIALIZATION after a step: ScopedCapture's SetValue(create) -> GetValue(size) -> GetValue(state)
        into a buffer of that many bytes -> SetValue(free)."""
        a = self.adapter
        a.SetValue("ngen::serialization_create", [1])
        size = int(a.GetValue("ngen::serialization_size")[0])
        assert size > 0
        payload = a.GetValue("ngen::serialization_state")
        assert payload.size == size
        a.SetValue("ngen::serialization_free", [1])
        return payload

    def restore(self, payload: np.ndarray) -> None:
        """Protocol::DESERIALIZATION, once at the end of the formulation's creation: SetValue(size, int64 n) ->
        SetValue(state, the n bytes of the record)."""
        self.adapter.SetValue("ngen::serialization_size", [payload.size])
        self.adapter.SetValue("ngen::serialization_state", payload)


# ---------------------------------------------------------------------------------------------------------------
# the domains, written by `dhydro ngen-config`


def ngen_config(hydrofabric: Path, out: Path, forcing_dir: Path, *extra) -> dict:
    rc = dhydro(["ngen-config", str(hydrofabric), "--out", str(out), "--attributes", str(NGEN / "data" / "attributes.csv"),
                 "--forcing-pattern", str(forcing_dir / "{{id}}.csv"), *extra])
    assert rc == 0
    return json.loads((out / "realization.json").read_text())


@pytest.fixture(scope="module")
def sample_domain(tmp_path_factory):
    """cat-27/52/67: configs and realization from ngen-config; forcing with precip_rate corrected from APCP."""
    out = tmp_path_factory.mktemp("sample")
    forcing_dir = out / "forcing"
    forcing_dir.mkdir()
    for cat in SAMPLE_CATS:
        df = pd.read_csv(NGEN / "data" / "forcing" / SAMPLE_CSV.format(cat=cat))
        df["precip_rate"] = df["APCP_surface"] / 3600.0  # mm per hour -> mm s-1 (the shipped column is 1000x off)
        df.to_csv(forcing_dir / f"{cat}.csv", index=False)
    real = ngen_config(NGEN / "data" / "catchment_data.geojson", out, forcing_dir)
    return out, real, forcing_dir, SAMPLE_CATS


@pytest.fixture(scope="module")
def gauge_domain(tmp_path_factory):
    out = tmp_path_factory.mktemp("gauge")
    forcing_dir = NGEN / "data" / "gauge_01073000" / "forcing"
    real = ngen_config(NGEN / "data" / "gauge_01073000" / "gauge_01073000.gpkg", out, forcing_dir, "--layer", "divides")
    return out, real, forcing_dir, GAUGE_CATS


def formulations(domain, monkeypatch) -> dict:
    out, real, forcing_dir, cats = domain
    monkeypatch.chdir(out)  # ngen resolves the realization's relative init_config from its working directory
    params = real["global"]["formulations"][0]["params"]
    start = datetime.fromisoformat(real["time"]["start_time"])
    return {c: Formulation(params, c, CsvPerFeatureProvider(forcing_dir / f"{c}.csv", start), start) for c in cats}


def run_domain(forms: dict, n_steps: int = N_STEPS):
    """ngen's loop: for each time step, each catchment's get_response; then its mass balance and output line."""
    cats = list(forms)
    main = np.zeros((n_steps, len(cats)))
    precip = np.zeros((n_steps, len(cats)))
    worst = 0.0
    for t in range(n_steps):
        for j, c in enumerate(cats):
            f = forms[c]
            value, given = f.get_response(t, STEP_S)
            main[t, j] = value
            precip[t, j] = given["atmosphere_water__liquid_equivalent_precipitation_rate"]
            worst = max(worst, abs(f.mass_balance()))
            line = f.output_line()
            assert line[f.outputs.index(f.main)] == value
            assert all(np.isfinite(line))
    return main, precip, worst


# ---------------------------------------------------------------------------------------------------------------
# tests


def test_ngen_config_writes_what_ngen_needs(sample_domain, gauge_domain):
    for out, real, _, cats in (sample_domain, gauge_domain):
        f = real["global"]["formulations"][0]
        assert f["name"] == "bmi_python"
        p = f["params"]
        assert p["python_type"] == "bmi_dhydro.BmiDeltaModel" and p["main_output_variable"] == "land_surface_water__runoff_depth"
        assert p["init_config"] == "./config/{{id}}.yaml"
        assert p["variables_names_map"]["atmosphere_water__liquid_equivalent_precipitation_rate"] == "precip_rate"
        assert "uses_forcing_file" not in p and "registration_function" not in p  # not bmi_python keys
        assert real["output"] == {"precision": 17}  # ngen master's CSV writer: 9 significant digits otherwise
        for c in cats:
            cfg = yaml.safe_load((out / "config" / f"{c}.yaml").read_text())
            assert cfg["units"]["select"] == c and cfg["time"]["time_step"] == STEP_S
    # the shipped realizations are what ngen-config writes (but for where their forcing lies)
    for shipped in (NGEN / "realization.json", NGEN / "gauge_01073000" / "realization.json"):
        shipped = json.loads(shipped.read_text())
        fresh = sample_domain[1]
        assert shipped["global"]["formulations"] == fresh["global"]["formulations"]
        assert shipped["time"] == fresh["time"] and shipped["output"] == fresh["output"]
        assert set(shipped) == set(fresh)
    # the shipped per-catchment configs describe the same units as freshly generated ones
    out = sample_domain[0]
    for c in SAMPLE_CATS:
        shipped = yaml.safe_load((NGEN / "config" / f"{c}.yaml").read_text())
        fresh = yaml.safe_load((out / "config" / f"{c}.yaml").read_text())
        assert shipped["units"]["select"] == fresh["units"]["select"] and shipped["time"] == fresh["time"]
        assert shipped["stepping"] == fresh["stepping"] == NGEN_STEPPING


def test_apcp_mapping_would_reach_the_model_unconverted(sample_domain):
    """Why the realization maps precip_rate: ngen labels APCP_surface kg m-2 and cannot convert it to mm s-1."""
    _, real, forcing_dir, _ = sample_domain
    prov = CsvPerFeatureProvider(forcing_dir / "cat-27.csv", datetime(2015, 12, 1))
    with pytest.raises(AssertionError, match="cannot convert APCP_surface"):
        prov.get_value("APCP_surface", prov.start, 3600, "mm s-1")


def _check_domain(forms, main, precip, worst, forcing_dir):
    assert worst <= 1e-12, worst  # ngen::mass_in - out - stored - leaked at every step
    assert np.all(np.isfinite(main)) and np.all(main >= 0)
    for j, (cat, f) in enumerate(forms.items()):
        # what ngen handed over is the forcing file's precipitation, unaltered
        expected = pd.read_csv(forcing_dir / f"{cat}.csv", skipinitialspace=True)["precip_rate"].to_numpy()[:N_STEPS]
        np.testing.assert_array_equal(precip[:, j], expected)
        m_in, m_out, m_st, m_lk = (float(f.adapter.GetValue(n)[0]) for n in MASS)
        rain_m = float(expected.sum()) * STEP_S / 1000.0
        init_m = m_in - rain_m
        assert abs(init_m - 5e-6) < 1e-12  # cold start: 5 stores of 0.001 mm
        # catchment water balance over the 720 hours: what fell = what ran off + ET + what is still held - leak
        runoff_m = float(main[:, j].sum())
        et_m = m_out - runoff_m
        assert 0 < runoff_m < rain_m and 0 < et_m < rain_m, (cat, runoff_m, et_m, rain_m)
        assert abs(init_m + rain_m - (runoff_m + et_m + m_st + m_lk)) <= 1e-12 * max(1.0, rain_m)
        # ngen turns the main output into a flow: depth (m) x area / 3600 s
        flux = f.value_as_double("land_surface_water__runoff_volume_flux")
        area_m2 = f.adapter.model._obj.units.area_km2[0] * 1e6
        assert abs(flux - main[-1, j] * area_m2 / 3600.0) <= 1e-12 * max(flux, 1e-30)


@pytest.fixture(scope="module")
def sample_run(sample_domain):
    with pytest.MonkeyPatch.context() as mp:
        forms = formulations(sample_domain, mp)
        return forms, *run_domain(forms)


def test_sample_catchments_replayed_call_for_call(sample_domain, sample_run):
    forms, main, precip, worst = sample_run
    assert len({id(f.adapter.model._obj) for f in forms.values()}) == 3  # a separate instance per catchment
    _check_domain(forms, main, precip, worst, sample_domain[2])
    # the exact per-step call pattern the model saw (after initialization) for one catchment-step
    f27 = forms["cat-27"]
    per_step = f27.adapter.model.calls[f27.step_marks[-2]:f27.step_marks[-1]]  # one whole catchment-step
    inputs = ["atmosphere_water__liquid_equivalent_precipitation_rate", "land_surface_air__temperature"]
    expected_head = ["get_current_time", "get_end_time", "get_current_time", "get_input_item_count", "get_input_var_names"]
    for _ in inputs:
        expected_head += ["get_var_itemsize", "get_var_units", "get_var_type", "get_var_nbytes",
                          "get_var_itemsize", "get_var_type", "get_var_nbytes", "get_var_itemsize", "set_value"]
    expected_head += ["get_time_step", "update"]
    assert per_step[: len(expected_head)] == expected_head
    assert per_step.count("get_value_at_indices") == 1 + len(f27.outputs)  # main output, then the output line
    assert per_step.count("get_value_ptr") == len(MASS)  # the mass-balance check
    # call for call what a real ngen made (recorded from inside the model by bench/bench_ngen_inside.py), rotated to
    # start where a catchment-step starts here
    recorded = recorded_ngen_calls()
    first = recorded.index("get_current_time")
    named = f27.adapter.model.named[f27.step_marks[-2]:f27.step_marks[-1]]
    assert named == recorded[first:] + recorded[:first]
    assert len(per_step) == 158
    # runoff responds to the big storm of Dec 22 (day index 21): the next three days carry more flow than the
    # three days before it, for every catchment
    day = main.reshape(30, 24, -1).sum(axis=1)
    assert np.all(day[22:25].sum(axis=0) > 3 * day[18:21].sum(axis=0))


def test_main_output_responds_to_rain(sample_domain, sample_run, monkeypatch, tmp_path):
    """Same catchment, precipitation scaled 0x, 1x (the sample run), 3x: the runoff orders accordingly."""
    out, real, forcing_dir, _ = sample_domain
    totals = {1.0: sample_run[1][:, 0].sum()}
    for scale in (0.0, 3.0):
        d = tmp_path / f"x{scale:g}"
        d.mkdir()
        df = pd.read_csv(forcing_dir / "cat-27.csv")
        df["precip_rate"] *= scale
        df.to_csv(d / "cat-27.csv", index=False)
        forms = formulations((out, real, d, ("cat-27",)), monkeypatch)
        main, _, worst = run_domain(forms)
        assert worst <= 1e-12
        totals[scale] = main.sum()
    # without rain only the cold-start stores drain (about 1e-6 m here): under 0.1 % of the run with rain
    assert totals[0.0] < 1e-3 * totals[1.0] and totals[1.0] > 1e-4 and totals[3.0] > 2 * totals[1.0]


def test_gauge_01073000_divides_replayed_call_for_call(gauge_domain, monkeypatch):
    forms = formulations(gauge_domain, monkeypatch)
    main, precip, worst = run_domain(forms)
    _check_domain(forms, main, precip, worst, gauge_domain[2])
    areas = np.array([f.adapter.model._obj.units.area_km2[0] for f in forms.values()])
    assert np.all((areas > 3) & (areas < 14))  # the divides of the Oyster River basin (3.3 .. 13.3 km2)


def test_update_until_path_and_model_params(sample_domain, monkeypatch, tmp_path):
    """A config stepping at 1800 s under ngen's hourly loop (ngen then calls update_until) and, in fixed-parameter
    mode, ngen's model_params written through SetValue after initialize."""
    out, real, forcing_dir, _ = sample_domain
    monkeypatch.chdir(out)
    params = dict(real["global"]["formulations"][0]["params"])
    start = datetime(2015, 12, 1)
    cfg = yaml.safe_load((out / "config" / "cat-27.yaml").read_text())
    cfg["time"]["time_step"] = 1800
    (out / "config" / "half-hour.yaml").write_text(yaml.safe_dump(cfg))
    prov = CsvPerFeatureProvider(forcing_dir / "cat-27.csv", start)
    half = Formulation(params, "half-hour", prov, start)
    hourly = Formulation(params, "cat-27", prov, start)
    a, b = run_domain({"half": half})[0][:, 0], run_domain({"hourly": hourly})[0][:, 0]
    assert "update_until" in half.adapter.model.calls and "update" not in half.adapter.model.calls
    # ngen reads the depth over its own hour: update_until reports the depth of both half-hour steps
    from bmi_dhydro import BmiDeltaModel

    ref = BmiDeltaModel()
    ref.initialize(str(out / "config" / "half-hour.yaml"))
    rain = prov.values["atmosphere_water__liquid_equivalent_precipitation_rate"]
    temp = prov.values["land_surface_air__temperature"]
    expected = np.zeros(N_STEPS)
    for t in range(N_STEPS):
        for _ in range(2):
            ref.set_value("atmosphere_water__liquid_equivalent_precipitation_rate", rain[t:t + 1])
            ref.set_value("land_surface_air__temperature", temp[t:t + 1])
            ref.update()
            expected[t] += ref.get_value_ptr("land_surface_water__runoff_depth")[0]
    np.testing.assert_allclose(a, expected, rtol=1e-12, atol=0)
    # and as much water as the hourly instance (its releases start half an hour later: 2 % over the month)
    np.testing.assert_allclose(a.sum(), b.sum(), rtol=0.02)
    # fixed parameters: model_params reach the model; a value out of bounds is refused (ngen logs and skips it)
    fixed = {"model": {"parameters": {"BETA": 2.0, "FC": 300.0, "K0": 0.3, "K1": 0.1, "K2": 0.02, "LP": 0.7, "PERC": 2.0,
                                      "UZL": 20.0, "TT": 0.0, "CFMAX": 3.5, "CFR": 0.05, "CWH": 0.1, "BETAET": 1.0,
                                      "route_a": 1.0, "route_b": 1.5}, "time_step": 86400},
             "units": cfg["units"], "time": {"time_step": 3600, "start": "2015-12-01 00:00:00"}}
    (out / "config" / "fixed.yaml").write_text(yaml.safe_dump(fixed))
    f = Formulation(params, "fixed", prov, start, model_params={"FC": 150.0, "K1": 0.3})
    model = f.adapter.model._obj
    assert model.get_value_ptr("FC")[0] == 150.0 and model.get_value_ptr("K1")[0] == 0.3
    with pytest.raises(ValueError, match="FC"):
        f.adapter.SetValue("FC", [5000.0])
    assert model.get_value_ptr("FC")[0] == 150.0
    main, _, worst = run_domain({"fixed": f}, n_steps=240)
    assert worst <= 1e-12 and np.all(main >= 0)


@pytest.fixture(scope="module")
def sample_domain_daily_release(tmp_path_factory, sample_domain):
    """The sample domain's configs written with --stepping daily_release (the same forcing)."""
    _, _, forcing_dir, cats = sample_domain
    out = tmp_path_factory.mktemp("sample_daily_release")
    real = ngen_config(NGEN / "data" / "catchment_data.geojson", out, forcing_dir, "--stepping", "daily_release")
    return out, real, forcing_dir, cats


@pytest.mark.parametrize("stepping,K", [("default", 370), ("daily_release", 359)])
def test_serialization_save_restore_resume_equals_the_unbroken_run(sample_domain, sample_run, sample_domain_daily_release,
                                                                   monkeypatch, stepping, K):
    """ngen PR #957: a run that saves every step is stopped after output step K; a second ngen run, whose realization
    starts at the time of the saved state, restores record K for every catchment and runs to the original end.  Its
    responses, forcing and outputs equal the unbroken run's bit for bit, because the model's clock reads 0 at the
    restored state (ngen fetches the forcing of each step at start_time + get_current_time()).  With the default
    stepping (day_so_far) K = 370, in the middle of a day; with daily_release K = 359: the record after output step
    359, the state at 2015-12-16 00:00 (a day's boundary)."""
    if stepping == "default":
        out, real, forcing_dir, cats = sample_domain
        forms0, main0, precip0, _ = sample_run  # the unbroken 720-step run
        assert all(f.adapter.model._obj.stepper.so_far for f in forms0.values())  # ngen-config's default: day_so_far
    else:
        out, real, forcing_dir, cats = sample_domain_daily_release
        with pytest.MonkeyPatch.context() as mp:
            forms0 = formulations(sample_domain_daily_release, mp)
            main0, precip0, worst0 = run_domain(forms0)
        assert worst0 <= 1e-12
        assert not any(f.adapter.model._obj.stepper.so_far for f in forms0.values())
    monkeypatch.chdir(out)
    params = real["global"]["formulations"][0]["params"]
    start, end = (datetime.fromisoformat(real["time"][k]) for k in ("start_time", "end_time"))

    def provider(cat, t0):
        return CsvPerFeatureProvider(forcing_dir / f"{cat}.csv", t0, end)

    saving = {c: Formulation(params, c, provider(c, start), start) for c in cats}
    records = {}
    for t in range(K + 1):  # Layer::update_models: response, mass balance, checkpoint_state (frequency 1)
        for j, (c, f) in enumerate(saving.items()):
            value, _ = f.get_response(t, STEP_S)
            assert value == main0[t, j]  # saving never changes the run
            assert abs(f.mass_balance()) <= 1e-12
            records[(c, t)] = f.checkpoint_state()
    del saving  # the first run ends (stopped, or crashed)

    resumed_start = start + timedelta(seconds=(K + 1) * STEP_S)
    resumed = {}
    for c in cats:
        f = Formulation(params, c, provider(c, resumed_start), resumed_start)
        f.restore(records[(c, K)])
        assert f.adapter.float_("get_current_time") == 0.0  # the clock of the resumed run
        resumed[c] = f
    main, precip, worst = run_domain(resumed, n_steps=N_STEPS - (K + 1))
    np.testing.assert_array_equal(precip, precip0[K + 1:])  # the forcing of the right hours, not the last record's
    np.testing.assert_array_equal(main, main0[K + 1:])
    assert worst <= 1e-12  # ngen's mass-balance check holds across the restore
    for c in cats:
        assert resumed[c].output_line() == forms0[c].output_line()
        for name in MASS:
            assert resumed[c].adapter.GetValue(name)[0] == forms0[c].adapter.GetValue(name)[0]


def test_the_bench_replays_and_records_ngens_calls(tmp_path, monkeypatch):
    """bench/bmi_bench.py replays the recorded calls of a real ngen call for call, and bench/bench_ngen_inside.py's
    TimedBmi (run inside ngen to record them) records exactly what was replayed, and writes its timings at finalize."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import bench_ngen_inside
    import bmi_bench

    monkeypatch.chdir(NGEN)
    m = bench_ngen_inside.TimedBmi()
    m.initialize("config/cat-27.yaml")
    rep = bmi_bench.NgenReplay(m)
    f = bmi_bench.hourly_forcing()
    for i in range(bench_ngen_inside.CALL_LOG_AFTER + 2):
        rep.step({bmi_bench.PRECIP: f["precip_rate"].iat[i], bmi_bench.TEMP: f["TMP_2maboveground"].iat[i]})
    recorded = recorded_ngen_calls()
    assert m._sequence == recorded  # after update 200, the next step's calls up to its update
    assert rep.calls == len(recorded) * (bench_ngen_inside.CALL_LOG_AFTER + 2)
    monkeypatch.delenv("DHYDRO_TIMING_DIR", raising=False)
    with pytest.raises(RuntimeError, match="DHYDRO_TIMING_DIR"):
        m.finalize()
    m2 = bench_ngen_inside.TimedBmi()
    m2.initialize("config/cat-27.yaml")
    bmi_bench.NgenReplay(m2).step({bmi_bench.PRECIP: 0.0, bmi_bench.TEMP: 280.0})
    monkeypatch.setenv("DHYDRO_TIMING_DIR", str(tmp_path))
    m2.finalize()
    rec = json.loads(next(tmp_path.glob("timing_*.json")).read_text())
    assert rec["ids"] == ["cat-27"] and rec["calls"]["update"][0] == 1 and len(rec["update_s"]) == 1
    for method in ("set_value", "get_var_type", "get_value_at_indices", "get_value_ptr"):
        assert rec["calls"][method][0] == sum(ln.split()[0] == method for ln in recorded)
