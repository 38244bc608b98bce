"""Regridding weights on MPI ranks (coupler.regrid.parallel): equal to serial, one file, clean faults.

In-process: the split itself (destination blocks of 1..4 "ranks" computed one after the other and merged) gives
the serial weights for every method. Real ranks (``mpiexec -n 2``, marked ``mpi``): the file written by rank 0
is byte for byte the serial file, through the Python API and through ``dhydro regrid weights``; a failure on
one rank, or unmapped destinations with ``--unmapped error``, stop every rank with one message, without hanging.
"""
from __future__ import annotations

import filecmp
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("shapely")

from coupler.regrid import generate_weights, read_weights  # noqa: E402
from coupler.regrid.api import _assemble, _compute  # noqa: E402
from coupler.regrid.parallel import _local_part, destination_parts, generate_weights_mpi, merge_parts  # noqa: E402
from coupler.regrid.sphere import sphere_cells  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "mpi_run" / "regrid_weights.py"
sys.path.insert(0, str(SCRIPT.parent))
from regrid_weights import CASES, cells  # noqa: E402

EX = ROOT / "examples" / "gridded" / "data"
ERA_GRID = EX / "era5_latlon_hrus" / "era5-crop.nc"
HRUS = EX / "era5_latlon_hrus" / "HRUs_coarse.shp"
NWM_GRID = EX / "nwm_grid_ngen_divides" / "test_template_grid.nc"

BIN = Path(sys.executable).parent
MPIEXEC = shutil.which("mpiexec", path=str(BIN)) or shutil.which("mpiexec")
_LAUNCH_VARS = ("PMI_SIZE", "PMI_RANK", "PMI_FD", "PMI_PORT", "PMIX_RANK", "PMIX_SIZE", "OMPI_COMM_WORLD_SIZE",
                "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_SIZE", "MV2_COMM_WORLD_RANK", "PALS_RANKID", "DHYDRO_MPI")


@pytest.fixture(scope="module")
def data():
    return cells()


def serial(c, name):
    s, d, method, kw = CASES[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return generate_weights(c[s], c[d], method, progress=False, **kw)


# ----------------------------------------------------------------------------------------------
# in-process: the split and the merge
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("order", ["space", "index"])
def test_destination_parts_cover_the_active_cells_once(data, order):
    from coupler.regrid import Polygons

    hrus = data["hrus"]
    masked = Polygons(hrus.geoms, hrus.crs, hrus.ids, mask=np.arange(hrus.size) % 7 != 0)
    grid = data["era"]
    for cells in (hrus, masked, grid):
        for n in (1, 2, 3, 7):
            parts = destination_parts(cells, n, order=order)
            assert len(parts) == n
            allrows = np.concatenate(parts)
            np.testing.assert_array_equal(np.sort(allrows), np.nonzero(cells.mask)[0])
            sizes = [p.size for p in parts]
            assert max(sizes) - min(sizes) <= 1
            assert all(np.all(np.diff(p) > 0) for p in parts)
            if order == "index":
                np.testing.assert_array_equal(allrows, np.nonzero(cells.mask)[0])
    if order == "space":
        # ids in no spatial order (shuffled HRUs): the Z-order parts stay compact, index blocks do not
        perm = np.random.default_rng(0).permutation(hrus.size)
        shuffled = Polygons(hrus.geoms[perm], hrus.crs, hrus.ids[perm])
        c = np.array([[(b[0] + b[2]) / 2, (b[1] + b[3]) / 2] for b in (g.bounds for g in shuffled.geoms)])

        def spread(parts):  # mean bounding-box area of the parts, relative to the whole
            whole = np.ptp(c[:, 0]) * np.ptp(c[:, 1])
            return np.mean([np.ptp(c[p, 0]) * np.ptp(c[p, 1]) / whole for p in parts])

        assert spread(destination_parts(shuffled, 4)) < 0.5 * spread(destination_parts(shuffled, 4, order="index"))
    with pytest.raises(ValueError):
        destination_parts(grid, 0)


def test_sphere_areas_block_by_block_are_the_areas_of_all_cells(data):
    for cells in (data["divides"], data["era"], data["hrus"]):
        whole = sphere_cells(cells, 20.0).areas().copy()
        again = sphere_cells(cells, 20.0)
        blocks = [again.areas(np.arange(lo, min(lo + 7, cells.size))) for lo in range(0, cells.size, 7)]
        np.testing.assert_array_equal(np.concatenate(blocks), whole)


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("name", [k for k in CASES if k != "era_nearest_dtos"])
def test_blocks_computed_one_by_one_merge_to_the_serial_weights(data, name, n):
    """What each rank computes, done here one block after the other: the merge is the serial result, exactly."""
    s, d, method, kw = CASES[name]
    kw = dict(kw)
    unmapped = kw.pop("unmapped", "error")
    opts = dict(norm_type="dstarea", backend="native", area_crs="auto", densify_deg=0.05, geometry="auto",
                densify_m=20.0, extrap_method="none", pole_method="all")
    opts.update(kw)
    src, dst = data[s], data[d]
    parts, res0 = [], None
    rows = destination_parts(dst, n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for r in rows:
            res, area_a, area_b, attrs = _compute(src, dst, method, progress=False, dst_rows=r, **opts)
            parts.append(_local_part(res, r, method == "conserve"))
            if res0 is None:
                res0, a0, b0, attrs0 = res, area_a, area_b, attrs
        got = {k: np.concatenate([p[k] for p in parts]) for k in parts[0] if k != "frac_b"}
        merged = merge_parts(got, np.concatenate(rows), np.concatenate([p["frac_b"] for p in parts]), res0, src.size,
                             dst.size, method == "conserve")
        w = _assemble(src, dst, merged, a0, b0, attrs0, method=method, norm_type=opts["norm_type"],
                      extrap_method=opts["extrap_method"], unmapped=unmapped)
    ref = serial(data, name)
    assert w.differences(ref) == []
    assert w.attrs == ref.attrs


def test_one_rank_is_the_serial_generator(data, tmp_path):
    from coupler.mpi import SERIAL

    out = tmp_path / "w.nc"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        w = generate_weights_mpi(data["era"], data["hrus"], comm=SERIAL, output=out, progress=False)
    assert w.differences(serial(data, "era_conserve_sphere")) == []
    assert read_weights(out).differences(w) == []
    with pytest.raises(FileExistsError):
        generate_weights_mpi(data["era"], data["hrus"], comm=SERIAL, output=out, progress=False)


# ----------------------------------------------------------------------------------------------
# real ranks
# ----------------------------------------------------------------------------------------------
needs_mpi = pytest.mark.skipif(MPIEXEC is None or __import__("importlib").util.find_spec("mpi4py") is None,
                               reason="real-rank tests need mpiexec and mpi4py (pip install mpi4py mpich)")


def launch(args: list, timeout: float = 180) -> tuple[int, str, str, float]:
    """Run a command with the launcher variables of an enclosing MPI job removed; fail (never hang) past
    ``timeout``."""
    env = {k: v for k, v in os.environ.items() if k not in _LAUNCH_VARS}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("OMP_NUM_THREADS", "1")
    t0 = time.monotonic()
    proc = subprocess.Popen([str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=ROOT, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{' '.join(map(str, args))} hung for more than {timeout} s\nstderr:\n{err[-3000:]}")
    return proc.returncode, out, err, time.monotonic() - t0


def dhydro_weights(*args) -> list:
    return [sys.executable, "-m", "dhydro.cli", "regrid", "weights", *args, "--quiet"]


@pytest.mark.mpi
@needs_mpi
def test_two_ranks_write_the_serial_file_for_every_method(data, tmp_path):
    rc, _, err, _ = launch([MPIEXEC, "-n", "2", sys.executable, SCRIPT, "cases", tmp_path])
    assert rc == 0, err[-3000:]
    for name in CASES:
        ref = serial(data, name)
        ref.to_netcdf(tmp_path / f"{name}.serial.nc")
        par = read_weights(tmp_path / f"{name}.nc")
        assert par.differences(ref) == [], name
        assert filecmp.cmp(tmp_path / f"{name}.nc", tmp_path / f"{name}.serial.nc", shallow=False), name
    assert not list(tmp_path.glob("*.part"))


@pytest.mark.mpi
@needs_mpi
def test_cli_under_mpiexec_equals_serial_and_checks_overwrite(tmp_path):
    ser, par = tmp_path / "serial.nc", tmp_path / "par.nc"
    rc, _, err, _ = launch(dhydro_weights(ERA_GRID, HRUS, "-o", ser, "--method", "bilinear"))
    assert rc == 0, err[-3000:]
    rc, _, err, _ = launch([MPIEXEC, "-n", "2", *dhydro_weights(ERA_GRID, HRUS, "-o", par, "--method", "bilinear")])
    assert rc == 0, err[-3000:]
    assert "2 MPI ranks" in err
    assert filecmp.cmp(ser, par, shallow=False)
    # an existing output stops every rank before any work, with one message
    rc, _, err, t = launch([MPIEXEC, "-n", "2", *dhydro_weights(ERA_GRID, HRUS, "-o", par)], timeout=120)
    assert rc != 0 and err.count("exists; pass --overwrite") == 1, err[-3000:]
    assert filecmp.cmp(ser, par, shallow=False)  # untouched


@pytest.mark.mpi
@needs_mpi
def test_cli_unmapped_error_under_mpiexec_stops_all_ranks(tmp_path):
    """NWM grid (Lambert, eastern Pennsylvania) onto the HRUs (Quebec): nothing maps; --unmapped error."""
    out = tmp_path / "w.nc"
    rc, _, err, t = launch([MPIEXEC, "-n", "2", *dhydro_weights(NWM_GRID, HRUS, "-o", out, "--unmapped", "error")],
                           timeout=120)
    assert rc != 0
    assert t < 60, f"took {t:.0f} s"
    assert err.count("51 of 51 active destination cells are not mapped") == 1, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert not out.exists() and not list(tmp_path.glob("*.part"))


@pytest.mark.mpi
@needs_mpi
@pytest.mark.parametrize("mode", ["fail", "fail_busy"])
def test_failure_on_rank_1_stops_every_rank(tmp_path, mode):
    """fail: rank 0 reaches the check and stops too (clean); fail_busy: rank 0 is still computing, rank 1 aborts
    the job after its 1 s timeout. Either way: non-zero, the message naming rank 1, no file, no hang."""
    rc, _, err, t = launch([MPIEXEC, "-n", "2", sys.executable, SCRIPT, mode, tmp_path], timeout=120)
    assert rc != 0
    assert t < 50, f"took {t:.0f} s"
    assert "rank 1 of 2 failed" in err and "injected failure on rank 1" in err, err[-3000:]
    assert not (tmp_path / "w.nc").exists()
