"""Forcing correction through the regridding weights: the record keeps the source precipitation and the weight
rows consistently with what the model got, gradients wrt the per-cell log-multipliers agree with finite
differences, retraining with --forcing-correction learns and writes the correction, and 2 MPI ranks equal 1."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import netCDF4
import numpy as np
import pytest
import scipy.sparse as sp
import torch
import yaml

from bmi_dhydro.checkpoint import load_checkpoint
from coupler.retrain import SourceForcing, _state, load_record, retrain, simulate_record
from coupler.run import run_coupling

ROOT = Path(__file__).resolve().parents[1]
GRIDDED = ROOT / "examples" / "gridded"
COUPLED = ROOT / "examples" / "coupled"
DAYS = 6


def gridded_spec(tmp, units=None):
    """examples/gridded/nwm_divides.yaml over DAYS days (hourly coupler steps, daily model) with a record."""
    spec = yaml.safe_load((GRIDDED / "nwm_divides.yaml").read_text())
    for c in spec["components"].values():
        c["config"] = str(GRIDDED / c["config"])
    conn = spec["connections"][0]
    for k in ("source_grid", "destination_polygons"):
        conn[k] = str(GRIDDED / conn[k])
    conn["save_weights"] = str(tmp / "w.nc")
    if units:
        conn["units"] = units
    spec["period"]["end"] = f"2020-12-{18 + DAYS} 01:00:00"
    spec["outputs"].update(path=str(tmp / "out.nc"), plots=False)
    spec["record"] = {"path": str(tmp / "record.nc"), "component": "hydro", "state_every": 2}
    p = tmp / "spec.yaml"
    p.write_text(yaml.safe_dump(spec))
    return p


@pytest.fixture(scope="module")
def gridded(tmp_path_factory):
    # The connection declares the source in dm s-1 (a 100x wetter scenario than NWM's mm s-1): the record must
    # apply the same unit conversion as the connection, and the signal is larger.
    tmp = tmp_path_factory.mktemp("fc")
    run_coupling(gridded_spec(tmp, units="dm s-1"), progress=False)
    return tmp


@pytest.fixture(scope="module")
def obs(gridded):
    """Synthetic observations: the bundled model with the precipitation of the grid's west half x1.6."""
    rec = load_record(gridded / "record.nc")
    cols = rec["source"]["cell_index"] % rec["source"]["grid_shape"][1]
    c_true = np.where(cols < 5, np.log(1.6), 0.0)
    model, _ = load_checkpoint(dtype=torch.float64)
    q = simulate_record(model, rec, c=c_true)  # mm per daily model step == mm d-1
    path = gridded / "obs.nc"
    with netCDF4.Dataset(path, "w") as nc:
        nc.createDimension("time", q.shape[0])
        nc.createDimension("unit", q.shape[1])
        t = nc.createVariable("time", "f8", ("time",))
        t.units = f"seconds since {rec['time'][0]:%Y-%m-%d %H:%M:%S}"
        t[:] = (rec["time"] - rec["time"][0]).total_seconds().to_numpy()
        u = nc.createVariable("unit_id", str, ("unit",))
        for i, x in enumerate(rec["unit_id"]):
            u[i] = x
        s = nc.createVariable("streamflow", "f8", ("time", "unit"))
        s.units = "mm d-1"
        s[:] = q
    return path, c_true


def test_record_keeps_the_source_field_consistent_with_the_model_forcing(gridded):
    with netCDF4.Dataset(gridded / "record.nc") as nc:
        forcing = np.asarray(nc["forcing"][:])
        src = np.asarray(nc["source_precip"][:])
        cells = np.asarray(nc["source_cell_index"][:])
        n_units, n_cells = nc.dimensions["unit_id"].size, nc.dimensions["cell"].size
        W = sp.csr_matrix((nc["regrid_S"][:], (nc["regrid_row"][:], nc["regrid_col"][:])), shape=(n_units, n_cells))
        ids = [str(u) for u in nc["unit_id"][:]]
        assert nc.getncattr("source_n_cells") == 110 and list(nc.getncattr("source_grid_shape")) == [11, 10]
        assert nc.getncattr("source_precip_max_abs_mismatch") < 1e-12
    assert forcing.shape == (DAYS, 10, 3) and src.shape == (DAYS, n_cells)
    # what the model got == W @ source_precip, per model step
    np.testing.assert_allclose(forcing[..., 0], (W @ src.T).T, rtol=1e-12, atol=1e-15)
    assert forcing[..., 0].max() > 5  # the scenario is wet enough for a visible signal
    # the source field is the raw NWM rate, converted dm s-1 -> mm s-1 (x100), times 24 hourly steps of 3600 s
    with netCDF4.Dataset(GRIDDED / "data/nwm_grid_ngen_divides/test_template_grid.nc") as nc:
        raw = np.asarray(nc["RAINRATE"][0], dtype="float64").reshape(-1)
    np.testing.assert_allclose(src, np.broadcast_to(raw[cells] * 100 * 3600 * 24, src.shape), rtol=1e-12)
    # the rows are the connection's weights, ordered as the record's units
    from coupler.regrid import read_weights

    w = read_weights(gridded / "w.nc")
    pos = {str(u): k for k, u in enumerate(w.dst_ids)}
    full = w.matrix.tocsr()[[pos[u] for u in ids]][:, cells]
    np.testing.assert_allclose(W.toarray(), full.toarray(), rtol=0, atol=0)
    assert set(np.flatnonzero(np.asarray(abs(w.matrix).sum(axis=0)).ravel())) == set(cells.tolist())


def test_recording_without_regridding_is_unchanged(tmp_path):
    spec = yaml.safe_load((COUPLED / "catchments.yaml").read_text())
    spec["period"]["end"] = "2015-12-03 00:00:00"
    for c in spec["components"].values():
        c["config"] = str(COUPLED / c["config"])
    spec["outputs"].update(path=str(tmp_path / "out.nc"), plots=False)
    spec["record"] = {"path": str(tmp_path / "record.nc"), "component": "hydro"}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec))
    run_coupling(tmp_path / "s.yaml", progress=False)
    with netCDF4.Dataset(tmp_path / "record.nc") as nc:
        assert nc["forcing"].shape[0] == 2
        for name in ("source_precip", "source_cell_index", "regrid_row", "regrid_col", "regrid_S"):
            assert name not in nc.variables
        assert "cell" not in nc.dimensions and "source_n_cells" not in nc.ncattrs()
    # and retraining with the flag says why it cannot
    with pytest.raises(ValueError, match="has no source_precip"):
        retrain(tmp_path / "record.nc", tmp_path / "out.nc", None, tmp_path / "x.pt", forcing_correction=True,
                progress=False)
    assert not (tmp_path / "x.pt").exists()


def test_gradient_wrt_the_correction_matches_finite_differences(gridded):
    rec = load_record(gridded / "record.nc")
    model, _ = load_checkpoint(dtype=torch.float64)
    n = len(rec["unit_id"])
    idx = np.arange(n)
    sf = SourceForcing(rec, idx)
    # at c = 0 the rebuilt forcing is the recorded one
    torch.testing.assert_close(sf.window(torch.zeros(sf.n_cells, dtype=torch.float64), 0, DAYS),
                               torch.as_tensor(rec["forcing"]), rtol=1e-12, atol=1e-14)
    # a rank's rows give that rank's units
    part = SourceForcing(rec, np.array([2, 5, 7]))
    c0 = torch.as_tensor(np.random.default_rng(0).normal(0, 0.3, sf.n_cells))
    torch.testing.assert_close(part.window(c0, 1, 4), sf.window(c0, 1, 4)[:, [2, 5, 7]], rtol=1e-13, atol=0)

    seeds = torch.as_tensor(np.random.default_rng(1).normal(size=(4, n)))
    attrs = torch.as_tensor(rec["attributes"], dtype=torch.float64)

    def loss(c):
        _, out = model.unroll(_state(rec, 0, idx), sf.window(c, 0, 4), attrs, outputs=("runoff",))
        return (out["runoff"] * seeds).sum()

    c = c0.clone().requires_grad_(True)
    loss(c).backward()
    g = c.grad.numpy()
    src_total = rec["source"]["precip"].sum(axis=0)
    wet = np.argsort(src_total)[-4:]
    dry = np.flatnonzero(src_total == 0)[:1]
    assert np.abs(g[wet]).max() > 0
    for j in list(wet) + list(dry):
        h = 1e-6
        e = torch.zeros_like(c0)
        e[j] = h
        with torch.no_grad():
            fd = (float(loss(c0 + e)) - float(loss(c0 - e))) / (2 * h)
        assert np.isclose(g[j], fd, rtol=1e-5, atol=1e-11), (j, g[j], fd)


def test_retraining_learns_and_writes_the_correction(gridded, obs, tmp_path):
    obs_path, c_true = obs
    out = tmp_path / "new.pt"
    res = retrain(gridded / "record.nc", obs_path, None, out, epochs=2, iterations=4, window=4, lr=1e-3, seed=0,
                  progress=False, forcing_correction=True, correction_l2=1e-3, correction_lr=0.05)
    c = res["forcing_correction"]["log_multiplier"]
    assert np.abs(c).max() > 0.05  # it moved
    west = c_true > 0
    assert c[west].mean() > c[~west].mean()  # towards the wetter west half of the synthetic truth
    nc_path = tmp_path / "new.forcing_correction.nc"
    assert nc_path.exists() and (tmp_path / "new.forcing_correction.png").exists()
    rec = load_record(gridded / "record.nc")
    with netCDF4.Dataset(nc_path) as nc:
        np.testing.assert_array_equal(nc["log_multiplier"][:], c)
        np.testing.assert_allclose(nc["multiplier"][:], np.exp(c), rtol=1e-15)
        np.testing.assert_array_equal(nc["source_cell_index"][:], rec["source"]["cell_index"])
    model, payload = load_checkpoint(out, dtype=torch.float64)
    # load_checkpoint builds the network in float32 before casting, which rounds the saved float64 weights: put
    # them back exactly to reproduce the training process's numbers
    model.load_state_dict(payload["state_dict"])
    lin = payload["provenance"]
    assert lin["settings"]["forcing_correction"] is True
    assert isinstance(lin["forcing_correction"]["log_multiplier"], list)
    np.testing.assert_array_equal(lin["forcing_correction"]["log_multiplier"], c)
    assert lin["forcing_correction"]["source_cell_index"] == rec["source"]["cell_index"].tolist()
    # "after" skill is the retrained network with the learned correction; the network alone is reported too
    from bmi_dhydro.metrics import nse

    q_obs = netCDF4.Dataset(obs_path)["streamflow"][:]
    with_c = simulate_record(model, rec, c=c)
    np.testing.assert_allclose(lin["metrics"]["nse_after"], [nse(with_c[:, i], q_obs[:, i]) for i in range(10)], rtol=1e-9)
    assert len(lin["metrics"]["nse_after_network_only"]) == 10


@pytest.mark.mpi
def test_forcing_correction_on_two_ranks_equals_one(gridded, obs, tmp_path):
    pytest.importorskip("mpi4py")
    mpiexec = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")
    if mpiexec is None:
        pytest.skip("mpiexec not found")
    args = ["-m", "dhydro.cli", "retrain", "--record", str(gridded / "record.nc"), "--obs", str(obs[0]),
            "--epochs", "2", "--iterations", "2", "--window", "4", "--forcing-correction", "--correction-lr", "0.05",
            "--quiet"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r1 = subprocess.run([sys.executable, *args, "-o", str(tmp_path / "one.pt")], check=False, capture_output=True, text=True,
                        timeout=300, env=env)
    assert r1.returncode == 0, r1.stderr[-2000:]
    assert "forcing correction:" in r1.stdout
    r2 = subprocess.run([mpiexec, "-n", "2", sys.executable, *args, "-o", str(tmp_path / "two.pt")],
                        check=False, capture_output=True, text=True, timeout=300, env=env)
    assert r2.returncode == 0, r2.stderr[-2000:]
    a = torch.load(tmp_path / "one.pt", weights_only=True)
    b = torch.load(tmp_path / "two.pt", weights_only=True)
    assert b["provenance"]["settings"]["ranks"] == 2
    for k in a["state_dict"]:
        np.testing.assert_allclose(a["state_dict"][k].numpy(), b["state_dict"][k].numpy(), rtol=1e-9, atol=1e-12)
    ca = np.array(a["provenance"]["forcing_correction"]["log_multiplier"])
    cb = np.array(b["provenance"]["forcing_correction"]["log_multiplier"])
    assert np.abs(ca).max() > 0
    np.testing.assert_allclose(cb, ca, rtol=1e-9, atol=1e-12)
