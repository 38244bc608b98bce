"""fortran_shim: the C ABI and the Fortran bmif_2_0 module over the Python model.

The module builds the shim with `make -C fortran_shim` into a temporary directory (embedding the
Python that runs pytest), compiles the Fortran drivers and the C host in fortran_shim/tests/, runs
them as separate processes with an almost empty environment (no PYTHONPATH/PYTHONHOME/VIRTUAL_ENV:
the library must find its own environment), and checks their output against the Python model run
directly:

* the Fortran driver steps BmiDeltaModel 100 times from the example configs, reading runoff via
  get_value and via the get_value_ptr pointer, and must equal the Python run bit for bit;
* the C host dlopen()s the library with RTLD_LOCAL and calls register_bmi, as NextGen does;
* error paths (bad config path, unknown variable, wrong-size array, ...) return BMI_FAILURE with a
  message naming what went wrong;
* every typed variant and grid function goes through a pure-numpy stand-in model.

Skipped (with the reason) only when gfortran, a C compiler or make is missing.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHIM = ROOT / "fortran_shim"
SRC_TESTS = SHIM / "tests"
STANDIN_SPEC = f"{SRC_TESTS / 'standin_bmi.py'}:StandInBmi"
REAL_SPEC = "bmi_dhydro:BmiDeltaModel"
NSTEPS = 100

PRECIP = "atmosphere_water__liquid_equivalent_precipitation_rate"
TEMP = "land_surface_air__temperature"
RUNOFF = "land_surface_water__runoff_depth"

pytestmark = pytest.mark.fortran

FC = shutil.which(os.environ.get("FC") or "gfortran") or (os.environ.get("FC") or "gfortran")
CC = shutil.which(os.environ.get("CC") or "cc") or (os.environ.get("CC") or "cc")


def _missing_tools() -> list[str]:
    missing = [t for t in (FC, CC, "make") if shutil.which(t) is None]
    return missing


def _clean_env(**extra) -> dict:
    """No Python variables at all: the shim must use the environment it was built for."""
    env = {"PATH": os.defpath, "LANG": "C.UTF-8"}
    env.update(extra)
    return env


def _run(cmd, *, env=None, cwd=None, timeout=300, check=True) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"command failed ({proc.returncode}): {' '.join(map(str, cmd))}\n"
            f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-4000:]}")
    return proc


class Built:
    def __init__(self, build: Path, exe: Path):
        self.build = build
        self.exe = exe
        self.c_lib = build / "libbmi_dhydro.so"
        self.f_lib = build / "libbmi_dhydro_fortran.so"

    def fortran(self, name: str) -> Path:
        return self.exe / name


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Built:
    missing = _missing_tools()
    if missing:
        pytest.skip(f"fortran_shim needs {', '.join(missing)} on PATH "
                    "(apt-get install gfortran make gcc); CI installs them")
    build = tmp_path_factory.mktemp("shim_build")
    exe = tmp_path_factory.mktemp("shim_exe")
    _run(["make", "-C", SHIM, f"BUILD={build}", f"PYTHON={sys.executable}", f"FC={FC}", f"CC={CC}"])
    for prog in ("driver_runoff", "driver_errors", "driver_standin"):
        _run([FC, "-O2", "-Wall", f"-I{build / 'mod'}", SRC_TESTS / f"{prog}.f90", f"-L{build}",
              "-lbmi_dhydro_fortran", "-lbmi_dhydro", f"-Wl,-rpath,{build}", "-o", exe / prog])
    # the C host links nothing but libdl: Python comes in through the dlopen()ed shim
    _run([CC, "-O2", "-Wall", f"-I{SHIM / 'include'}", SRC_TESTS / "c_host.c", "-ldl", "-o", exe / "c_host"])
    return Built(build, exe)


# ---------------------------------------------------------------------------------------------
# run cases: a config from examples/ plus 100 steps of real forcing written as a float64 stream
# ---------------------------------------------------------------------------------------------

def _camels_daily(basins, start=(2005, 10, 1), nsteps=NSTEPS):
    """Daily CAMELS NLDAS forcing bundled with the package -> (precip mm s-1, temp K), (time, unit)."""
    root = ROOT / "bmi_dhydro" / "resources" / "camels" / "basin_mean_forcing" / "nldas"
    precip, temp = [], []
    for gauge in basins:
        (path,) = root.glob(f"*/{gauge}_lump_nldas_forcing_leap.txt")
        data = np.loadtxt(path, skiprows=4)
        i0 = np.flatnonzero((data[:, 0] == start[0]) & (data[:, 1] == start[1]) & (data[:, 2] == start[2]))[0]
        rows = data[i0:i0 + nsteps]
        precip.append(rows[:, 5] / 86400.0)  # PRCP mm/day -> mm s-1
        temp.append(0.5 * (rows[:, 8] + rows[:, 9]) + 273.15)  # mean of Tmax, Tmin (C) -> K
    return np.array(precip).T, np.array(temp).T


def _ngen_hourly(path, ids, nsteps=NSTEPS):
    from bmi_dhydro.forcing import read_forcing_for_units

    _, data = read_forcing_for_units(path, ids)
    return data[PRECIP][:nsteps], data[TEMP][:nsteps]


CASES = ["fixed_daily", "cat27_hourly", "three_catchments_network"]


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    """key -> (config path, forcing path, number of units)."""
    tmp = tmp_path_factory.mktemp("shim_cases")
    ngen = ROOT / "examples" / "ngen" / "data"
    out = {}

    precip, temp = _camels_daily(["01022500", "01333000", "03010655"])
    out["fixed_daily"] = (ROOT / "examples" / "bmi" / "fixed_daily.yaml", precip, temp)

    precip, temp = _ngen_hourly(ngen / "forcing" / "cat-27_2015-12-01_00_00_00_2015-12-30_23_00_00.csv", ["cat-27"])
    out["cat27_hourly"] = (ROOT / "examples" / "bmi" / "cat27_hourly.yaml", precip, temp)

    # the bundled network on the three catchments of the NextGen sample domain
    ids = ["cat-27", "cat-52", "cat-67"]
    config = tmp / "three_catchments.yaml"
    config.write_text(
        "model:\n  checkpoint: null\n"
        f"units:\n  hydrofabric: {ngen / 'catchment_data.geojson'}\n"
        f"  attributes_table: {ngen / 'attributes.csv'}\n  select: [{', '.join(ids)}]\n"
        "time:\n  time_step: 3600\n  start: \"2015-12-01 00:00:00\"\n")
    precip, temp = _ngen_hourly(ngen / "forcing" / "cats-27_52_67-2015_12_01-2015_12_30.nc", ids)
    out["three_catchments_network"] = (config, precip, temp)

    result = {}
    for key, (config, precip, temp) in out.items():
        assert precip.shape == temp.shape == (NSTEPS, precip.shape[1]), key
        assert np.isfinite(precip).all() and np.isfinite(temp).all(), key
        forcing = tmp / f"{key}.forcing.bin"
        np.stack([precip, temp], axis=1).astype("<f8").tofile(forcing)
        result[key] = (Path(config), forcing, precip.shape[1])
    return result


_reference_cache: dict = {}


def _reference(key, cases, tmp_path_factory) -> bytes:
    """The Python run (BmiDeltaModel driven directly), in its own process, cached per case."""
    if key not in _reference_cache:
        config, forcing, _ = cases[key]
        out = tmp_path_factory.mktemp("shim_ref") / f"{key}.python.bin"
        _run([sys.executable, SRC_TESTS / "python_reference.py", config, forcing, NSTEPS, out],
             env=_clean_env())
        _reference_cache[key] = out.read_bytes()
    return _reference_cache[key]


def _compare(label: str, got: bytes, want: bytes, n: int) -> None:
    """Byte-identical, with a readable diagnosis when not."""
    a = np.frombuffer(got, dtype="<f8")
    b = np.frombuffer(want, dtype="<f8")
    assert a.size == b.size == NSTEPS * (2 * n + 1), f"{label}: {a.size} values vs {b.size} expected"
    a = a.reshape(NSTEPS, 2 * n + 1)
    b = b.reshape(NSTEPS, 2 * n + 1)
    if got != want:
        bad = np.argwhere(a.view("<u8") != b.view("<u8"))
        step, col = bad[0]
        what = "get_value" if col < n else ("get_value_ptr" if col < 2 * n else "time")
        raise AssertionError(
            f"{label}: {len(bad)} values differ from the Python run; first at step {step + 1}, "
            f"{what} unit {col % n}: {a[step, col]!r} vs {b[step, col]!r}")
    # the comparison means something only if the model produced varying, non-trivial runoff
    runoff = b[:, :n]
    assert np.all(np.isfinite(runoff)) and np.any(runoff > 0), f"{label}: runoff is all zero"
    assert len(np.unique(runoff)) >= 4, f"{label}: runoff never changes"  # network mode: daily steps
    np.testing.assert_array_equal(b[:, :n], b[:, n:2 * n])  # pointer view == copy in Python too
    dt = b[1, -1] - b[0, -1]
    np.testing.assert_allclose(b[:, -1], dt * np.arange(1, NSTEPS + 1))


# ---------------------------------------------------------------------------------------------
# the build
# ---------------------------------------------------------------------------------------------

def test_build_produces_libraries_modules_and_exports(built):
    assert built.c_lib.is_file() and built.f_lib.is_file()
    assert (built.build / "mod" / "bmif_2_0.mod").is_file()
    assert (built.build / "mod" / "bmi_dhydro.mod").is_file()
    if shutil.which("nm"):
        syms = _run(["nm", "-D", "--defined-only", built.c_lib]).stdout.split()
        for name in ("register_bmi", "dhydro_create", "dhydro_get_value_ptr", "dhydro_last_error"):
            assert name in syms, f"{name} not exported from libbmi_dhydro.so"
        assert "start_python" not in syms and "error_from_python" not in syms  # internals stay hidden
    # the baked configuration points at the interpreter that built it
    header = (built.build / "shim_config.h").read_text()
    assert f'"{sys.executable}"' in header or sys.executable.replace("\\", "\\\\") in header


def test_install_into_prefix_and_link_from_there(built, tmp_path):
    prefix = tmp_path / "prefix"
    _run(["make", "-C", SHIM, f"BUILD={built.build}", f"PYTHON={sys.executable}", f"PREFIX={prefix}",
          f"FC={FC}", f"CC={CC}", "install"])
    for rel in ("lib/libbmi_dhydro.so", "lib/libbmi_dhydro_fortran.so", "include/bmi.h",
                "include/bmi_dhydro.h", "include/bmif_2_0.mod", "include/bmi_dhydro.mod",
                "lib/pkgconfig/bmi_dhydro.pc"):
        assert (prefix / rel).is_file(), rel
    # a host built against the installed files only (not the build directory) runs
    exe = tmp_path / "driver_standin"
    _run([FC, f"-I{prefix / 'include'}", SRC_TESTS / "driver_standin.f90", f"-L{prefix / 'lib'}",
          "-lbmi_dhydro_fortran", "-lbmi_dhydro", f"-Wl,-rpath,{prefix / 'lib'}", "-o", exe])
    cfg = tmp_path / "standin.cfg"
    cfg.write_text("n_units = 3\n")
    out = _run([exe, cfg, cfg, STANDIN_SPEC], env=_clean_env()).stdout
    assert "initialize|0|" in out and "a_finalize|0|" in out


# ---------------------------------------------------------------------------------------------
# bit for bit: Fortran and C hosts vs the Python run
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("key", CASES)
def test_fortran_driver_matches_python_bit_for_bit(built, cases, key, tmp_path, tmp_path_factory):
    config, forcing, n = cases[key]
    out = tmp_path / "fortran.bin"
    proc = _run([built.fortran("driver_runoff"), config, forcing, NSTEPS, out], env=_clean_env())
    assert f"OK {NSTEPS} steps, {n} units" in proc.stdout
    _compare(f"Fortran {key}", out.read_bytes(), _reference(key, cases, tmp_path_factory), n)


@pytest.mark.parametrize("key", ["fixed_daily", "three_catchments_network"])
def test_c_host_rtld_local_register_bmi_matches_python(built, cases, key, tmp_path, tmp_path_factory):
    config, forcing, n = cases[key]
    out = tmp_path / "c.bin"
    # an empty environment, like a batch job that never heard of Python
    proc = _run([built.fortran("c_host"), built.c_lib, config, forcing, NSTEPS, out], env={})
    assert f"OK {NSTEPS} steps, {n} units (runoff double in m, time in s)" in proc.stdout
    _compare(f"C host {key}", out.read_bytes(), _reference(key, cases, tmp_path_factory), n)


def test_rtld_local_fails_without_global_libpython(built, cases, tmp_path):
    """The RTLD_GLOBAL re-open is what makes RTLD_LOCAL hosts work: switched off, imports break."""
    config, forcing, _ = cases["fixed_daily"]
    proc = _run([built.fortran("c_host"), built.c_lib, config, forcing, NSTEPS, tmp_path / "x.bin"],
                env={"DHYDRO_SHIM_NO_GLOBAL_LIBPYTHON": "1"}, check=False)
    assert proc.returncode != 0
    assert "initialize failed" in proc.stderr and "undefined symbol" in proc.stderr


# ---------------------------------------------------------------------------------------------
# error paths
# ---------------------------------------------------------------------------------------------

def _parse_checks(stdout: str) -> dict:
    checks = {}
    for line in stdout.splitlines():
        parts = line.split("|", 2)
        if len(parts) == 3 and parts[1].lstrip("-").isdigit():
            checks.setdefault(parts[0], []).append((int(parts[1]), parts[2]))
    return checks


def test_fortran_error_paths(built, cases):
    config, _, n = cases["fixed_daily"]
    out = _run([built.fortran("driver_errors"), config], env=_clean_env()).stdout
    checks = {k: v[0] for k, v in _parse_checks(out).items()}

    def failed(name, *fragments):
        status, msg = checks[name]
        assert status == 1, f"{name}: expected BMI_FAILURE, got {status} ({msg!r})"
        for frag in fragments:
            assert frag in msg, f"{name}: {frag!r} not in message {msg!r}"

    def ok(name):
        status, msg = checks[name]
        assert status == 0 and msg == "", f"{name}: expected success with no message, got {status} {msg!r}"

    failed("update_before_initialize", "update", "not initialized")
    failed("get_value_ptr_before_initialize", "get_value_ptr", "not initialized")
    failed("bad_config_path", "initialize", "/nonexistent/dir/no_such_config.yaml", "FileNotFoundError")
    assert checks["bad_config_is_not_initialized"][0] == 0  # .false. after a failed initialize
    failed("bad_class", "no_such_module_xyz", f"sys.prefix={sys.prefix!r}")
    failed("malformed_class_spec", "module:Class", "no colon here")
    ok("initialize")
    for name in ("unknown_get_value", "unknown_get_value_ptr", "unknown_set_value", "unknown_get_var_units"):
        failed(name, "no_such_variable", "unknown variable")
    failed("wrong_size_get_value", RUNOFF, "wrong array size", f"has {n} items", f"has {n + 1}")
    failed("wrong_size_set_value", PRECIP, "wrong array size", f"has {n} items", f"has {n - 1}")
    failed("wrong_size_indices", RUNOFF, "wrong array size")
    failed("wrong_type_get_value_float", RUNOFF, "float64", "float32")
    failed("wrong_type_get_value_ptr_int", RUNOFF, "float64", "int32 pointer")
    failed("index_out_of_range", RUNOFF, f"index {n + 1}", f"1..{n}")
    failed("update_without_forcing", "update", "ValueError")  # the model's own exception ...
    assert PRECIP in checks["update_without_forcing"][1] or TEMP in checks["update_without_forcing"][1]
    ok("good_call_after_errors")
    ok("finalize")
    failed("get_value_after_finalize", "not initialized")


def test_c_error_paths(built, cases):
    config, _, _ = cases["fixed_daily"]
    proc = _run([built.fortran("c_host"), built.c_lib, "--errors", config], env={})
    checks = {k: v[0] for k, v in _parse_checks(proc.stdout).items()}
    status, msg = checks["bad_config"]
    assert status == 1 and "no_such_config.yaml" in msg and "FileNotFoundError" in msg
    assert "no_such_config.yaml" in proc.stderr  # ngen shows no messages: initialize failures go to stderr
    assert checks["finalize_uninitialized"][0] == 0
    assert checks["good_config"] == (0, "")
    for name in ("unknown_var_nbytes", "unknown_var_get_value", "unknown_var_get_value_ptr"):
        status, msg = checks[name]
        assert status == 1 and "no_such_variable" in msg, (name, status, msg)
    status, msg = checks["index_out_of_range"]
    assert status == 1 and "index 100000 out of range" in msg
    assert checks["after_errors_type"] == (0, "")
    assert "runoff_type|double" in proc.stdout
    assert checks["finalize"][0] == 0


# ---------------------------------------------------------------------------------------------
# typed variants, pointers, grids and model exceptions through the stand-in
# ---------------------------------------------------------------------------------------------

def _standin_expectations(config_path: Path):
    """Replay the driver's sequence on the stand-in in Python."""
    sys.path.insert(0, str(SRC_TESTS))
    try:
        import standin_bmi
    finally:
        sys.path.remove(str(SRC_TESTS))
    m = standin_bmi.StandInBmi()
    m.initialize(str(config_path))
    m.set_value(standin_bmi.PRECIP, np.array([1.0e-3, 2.5e-3, 0.0]))
    m.set_value(standin_bmi.TEMP, np.array([270.15, 280.15, 290.65]))
    m.update()
    m.update()
    runoff = m.get_value_ptr(standin_bmi.RUNOFF).copy()
    total = m.get_value_ptr(standin_bmi.TOTAL).copy()
    labels = m.get_value_ptr(standin_bmi.LABEL_I64).copy()
    return runoff, total, labels


def test_standin_typed_variants_and_grids(built, tmp_path):
    cfg = tmp_path / "standin.cfg"
    cfg.write_text("n_units = 3\ntime_step = 3600\n")
    failing = tmp_path / "failing.cfg"
    failing.write_text("n_units = 3\nfail_at_step = 0\n")
    out = _run([built.fortran("driver_standin"), cfg, failing, STANDIN_SPEC], env=_clean_env()).stdout
    rows = _parse_checks(out)
    got = {k: v[0] for k, v in rows.items()}

    def values(key, kind=float):
        status, text = got[key]
        assert status == 0, f"{key}: failed: {text}"
        return np.array([kind(x) for x in text.split()]) if text else np.array([])

    def text_of(key):
        status, text = got[key]
        assert status == 0, f"{key}: failed: {text}"
        return text

    runoff, total, labels = _standin_expectations(cfg)
    assert text_of("set_default_class") == STANDIN_SPEC
    assert text_of("component_name") == "shim stand-in reservoir"
    assert [t for _, t in rows["input_var_name"]] == [
        PRECIP, TEMP, "standin__ratio", "standin__unit_label", "standin__step_count"]
    assert [t for _, t in rows["output_var_name"]] == [
        RUNOFF, "standin__water_storage", "standin__total_runoff", "standin__field"]
    assert text_of("type_precip") == "double precision"
    assert text_of("type_count") == "integer"
    assert text_of("type_label") == "integer(kind=8)"
    assert text_of("type_ratio") == "real"
    assert text_of("units_precip") == "mm s-1"
    assert text_of("location_field") == "face"
    assert values("itemsize_ratio", int).tolist() == [4]
    assert values("nbytes_label", int).tolist() == [24]
    assert values("grid_field", int).tolist() == [1]
    assert values("start_time").tolist() == [0.0]
    assert values("end_time").tolist() == [1.0e9]
    assert values("time_step").tolist() == [3600.0]
    assert values("current_time").tolist() == [7200.0]
    # doubles: exact round trip of 17 significant digits
    np.testing.assert_array_equal(values("runoff"), runoff)
    np.testing.assert_array_equal(values("runoff_ptr"), runoff)
    np.testing.assert_array_equal(values("runoff_at_3_1"), runoff[[2, 0]])
    np.testing.assert_array_equal(values("total_ptr"), total)
    np.testing.assert_array_equal(values("total"), total)
    # int32 variable
    assert values("count", int).tolist() == [2, 2, 2]
    assert values("count_ptr", int).tolist() == [2, 2, 2]
    assert values("count_ptr_after_set", int).tolist() == [7, 8, 9]  # the pointer sees set_value
    assert values("count_at_2", int).tolist() == [42]
    assert got["count_wrong_size"][0] == 1
    # int64 variable: fits -> exact, overflow -> refused with the range in the message
    assert values("label_at_2", int).tolist() == [int(labels[1])]
    status, msg = got["label_all"]
    assert status == 1 and f"[{labels.min()}, {labels.max()}]" in msg and "int32" in msg
    status, msg = got["label_ptr_int"]
    assert status == 1 and "int64" in msg
    # float32 variable: copy, exact widening, host writes through the pointer, narrowing refused
    np.testing.assert_array_equal(values("ratio"), np.float32([0.25, 0.5, 0.75]))
    np.testing.assert_array_equal(values("ratio_as_double"), [0.25, 0.5, 0.75])
    np.testing.assert_array_equal(values("ratio_after_ptr_write"), [0.25, 9.5, 0.75])
    np.testing.assert_array_equal(values("ratio_at_1"), [0.125])
    status, msg = got["set_ratio_double"]
    assert status == 1 and "float64" in msg and "float32" in msg
    np.testing.assert_array_equal(values("precip_from_real"), [0.5, 0.25, 0.125])
    # grids
    assert text_of("grid0_type") == "points"
    np.testing.assert_array_equal(values("grid0_x"), [-70.0, -69.0, -68.0])
    assert text_of("grid1_type") == "uniform_rectilinear"
    assert values("grid1_rank", int).tolist() == [2]
    assert values("grid1_size", int).tolist() == [6]
    assert values("grid1_shape", int).tolist() == [2, 3]
    assert values("grid1_spacing").tolist() == [2.5, 0.5]
    assert values("grid1_origin").tolist() == [-10.0, 40.0]
    assert values("grid1_x").tolist() == [40.0, 40.5, 41.0]
    assert values("grid1_y").tolist() == [-10.0, -7.5]
    status, msg = got["grid1_z"]
    assert status == 1 and "no z coordinate" in msg
    assert values("grid2_nodes", int).tolist() == [4]
    assert values("grid2_edges", int).tolist() == [5]
    assert values("grid2_faces", int).tolist() == [2]
    assert values("grid2_edge_nodes", int).tolist() == [0, 1, 1, 3, 3, 2, 2, 0, 1, 2]
    assert values("grid2_face_edges", int).tolist() == [0, 4, 3, 1, 2, 4]
    assert values("grid2_face_nodes", int).tolist() == [0, 1, 2, 1, 3, 2]
    assert values("grid2_nodes_per_face", int).tolist() == [3, 3]
    assert values("grid2_y").tolist() == [0.0, 0.0, 1.0, 1.0]
    # two instances are independent
    assert values("b_current_time").tolist() == [5 * 3600.0]
    assert values("b_count", int).tolist() == [5, 5, 5]
    assert values("a_count_unchanged", int).tolist() == [7, 42, 9]
    # a Python exception inside update is a failure with the exception's text
    status, msg = got["failing_update"]
    assert status == 1 and "RuntimeError" in msg and "deliberate failure at step 0" in msg
    assert got["a_finalize"][0] == 0 and got["b_finalize"][0] == 0
    status, msg = got["name_after_finalize"]
    assert status == 1 and "not initialized" in msg


def test_c_host_class_from_environment_and_alternative_registration_name(built, tmp_path):
    """DHYDRO_BMI_CLASS picks the class for register_bmi hosts; register_bmi_dhydro is the same entry."""
    cfg = tmp_path / "standin.cfg"
    cfg.write_text("n_units = 2\n")
    forcing = tmp_path / "forcing.bin"
    rng = np.random.default_rng(7)
    precip = rng.uniform(0.0, 2e-4, size=(NSTEPS, 2))
    temp = rng.uniform(265.0, 295.0, size=(NSTEPS, 2))
    np.stack([precip, temp], axis=1).astype("<f8").tofile(forcing)
    out = tmp_path / "c.bin"
    _run([built.fortran("c_host"), built.c_lib, cfg, forcing, NSTEPS, out, "register_bmi_dhydro"],
         env={"DHYDRO_BMI_CLASS": STANDIN_SPEC})
    ref = tmp_path / "py.bin"
    _run([sys.executable, SRC_TESTS / "python_reference.py", cfg, forcing, NSTEPS, ref, STANDIN_SPEC], env=_clean_env())
    _compare("C host stand-in", out.read_bytes(), ref.read_bytes(), 2)


_PY_HOST = r"""
import ctypes, sys, threading
import numpy as np
lib = ctypes.CDLL(sys.argv[1])          # ctypes releases the GIL around each call
lib.dhydro_last_error.restype = ctypes.c_char_p
m = ctypes.c_void_p()
assert lib.dhydro_create(sys.argv[2].encode(), ctypes.byref(m)) == 0, lib.dhydro_last_error()
assert lib.dhydro_initialize(m, sys.argv[3].encode()) == 0, lib.dhydro_last_error()
p = np.array([1e-3, 2e-3, 0.0])
name = b"atmosphere_water__liquid_equivalent_precipitation_rate"
assert lib.dhydro_set_value(m, name, p.ctypes.data_as(ctypes.c_void_p), 3, b"float64") == 0
errors = []
def work():
    for _ in range(50):
        if lib.dhydro_update(m) != 0:
            errors.append(lib.dhydro_last_error())
threads = [threading.Thread(target=work) for _ in range(4)]
for t in threads: t.start()
for t in threads: t.join()
assert not errors, errors
t = ctypes.c_double()
assert lib.dhydro_get_current_time(m, ctypes.byref(t)) == 0
count = np.zeros(3, dtype=np.int32)
assert lib.dhydro_get_value(m, b"standin__step_count", count.ctypes.data_as(ctypes.c_void_p), 3, None) == 0
assert lib.dhydro_get_value(m, b"nope", count.ctypes.data_as(ctypes.c_void_p), 3, None) == 1
print("RESULT", t.value, count.tolist(), lib.dhydro_last_error().decode())
"""


def test_host_that_already_runs_python_and_calls_from_threads(built, tmp_path):
    """A Python host (interpreter already running) calling from 4 threads: GIL taken per call."""
    cfg = tmp_path / "standin.cfg"
    cfg.write_text("n_units = 3\ntime_step = 3600\n")
    script = tmp_path / "py_host.py"
    script.write_text(_PY_HOST)
    out = _run([sys.executable, script, built.c_lib, STANDIN_SPEC, cfg], env=_clean_env()).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("RESULT"))
    assert line.startswith("RESULT 720000.0 [200, 200, 200] get_value('nope'): KeyError: unknown variable 'nope'")


# ---------------------------------------------------------------------------------------------
# the example land model (examples/fortran_host)
# ---------------------------------------------------------------------------------------------

def test_example_land_model_runs_and_hands_over_its_forcing(built, tmp_path):
    example = ROOT / "examples" / "fortran_host"
    out = tmp_path / "out"
    proc = _run(["make", "-s", "-C", example, f"SHIM_BUILD={built.build}", f"PYTHON={sys.executable}",
                 f"OUT={out}", "SPINUP_YEARS=0", f"FC={FC}"], env={**_clean_env(), "HOME": str(tmp_path)})
    assert "NSE daily" in proc.stdout
    table = np.genfromtxt(out / "land_model_daily.csv", delimiter=",", names=True, dtype=None, encoding="ascii")
    assert len(table) == 365
    sim = np.stack([table[f"runoff_mm_{k}"] for k in (1, 2, 3)], axis=1)
    assert np.isfinite(sim).all() and (sim >= 0).all() and sim.sum() > 0

    # the same year driven from Python with the land model's unit conversions: same runoff
    lines = [ln.split() for ln in (example / "data" / "forcing_wy2006.txt").read_text().splitlines()[3:]]
    rows = np.array([[float(x) for x in ln[3:]] for ln in lines]).reshape(len(lines), 3, 3)
    precip = rows[:, :, 0] / 86400.0
    temp = rows[:, :, 1] + 273.15
    forcing = tmp_path / "forcing.bin"
    np.stack([precip, temp], axis=1).astype("<f8").tofile(forcing)
    ref = tmp_path / "ref.bin"
    _run([sys.executable, SRC_TESTS / "python_reference.py", example / "config.yaml", forcing, len(lines), ref],
         env=_clean_env())
    want = np.fromfile(ref, dtype="<f8").reshape(len(lines), 7)[:, :3] * 1000.0
    np.testing.assert_allclose(sim, want, rtol=2e-7, atol=1e-12)  # the CSV keeps 8 significant digits
