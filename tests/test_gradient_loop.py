"""The gradient loop: finite differences, export vs autograd, MPI retraining, lineage, hot swap, example."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from bmi_dhydro import BmiDeltaModel
from bmi_dhydro.checkpoint import default_checkpoint_path, load_checkpoint
from bmi_dhydro.gradients import window_gradients

ROOT = Path(__file__).resolve().parents[1]
EX = ROOT / "examples"
P, T = "atmosphere_water__liquid_equivalent_precipitation_rate", "land_surface_air__temperature"


def drive(b, steps, seed=0):
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        b.set_value(P, rng.gamma(0.6, 10, b.n) / 86400)
        b.set_value(T, 276 + rng.normal(0, 4, b.n))
        b.update()


def test_fixed_parameter_gradients_match_finite_differences():
    b = BmiDeltaModel()
    b.initialize(str(EX / "bmi" / "fixed_daily.yaml"))
    drive(b, 30)  # get some water in the stores first
    b.begin_gradient_window()
    drive(b, 20, seed=1)
    seeds = {"land_surface_water__runoff_depth": np.random.default_rng(2).normal(size=(20, 3))}
    g = b.compute_gradients(seeds)
    forc = torch.stack(b.stepper.tape)
    model, s0 = b.model, b._grad_state0

    def loss(name, delta):
        m = __import__("copy").deepcopy(model)
        v = m.provider.value(name).clone()
        m.provider.set_value(name, v + delta)
        _, out = m.unroll(s0, forc, torch.zeros(3, 0, dtype=torch.float64))
        return float((out["runoff"] * 1e-3 * torch.as_tensor(seeds["land_surface_water__runoff_depth"])).sum())

    for name in ("FC", "K1", "BETA", "PERC", "route_b"):
        h = 1e-6 * max(1.0, abs(float(model.provider.value(name)[0])))
        fd = (loss(name, h) - loss(name, -h)) / (2 * h)
        assert np.isclose(g[name].sum(), fd, rtol=1e-5, atol=1e-12), (name, g[name].sum(), fd)


def test_gradient_export_agrees_with_autograd_on_unroll():
    b = BmiDeltaModel()
    b.initialize(str(EX / "bmi" / "gauge_01073000_hourly.yaml"))
    drive(b, 48)
    b.begin_gradient_window()
    drive(b, 24 * 6, seed=3)
    n_steps = b.get_gradient_window_size()
    assert n_steps == 6
    seeds = {"land_surface_water__runoff_depth": np.random.default_rng(4).normal(size=(n_steps, b.n)),
             "hbv__soil_moisture_storage": np.random.default_rng(5).normal(size=(n_steps, b.n)) * 1e-3}
    g = b.compute_gradients(seeds, wrt="weights")
    # independent: autograd straight through DeltaModel.unroll on a float64 copy
    m, _ = load_checkpoint(dtype=torch.float64)
    forc = torch.stack(b.stepper.tape)
    _, out = m.unroll(b._grad_state0, forc, b.stepper._attrs)
    L = (out["runoff"] * 1e-3 * torch.as_tensor(seeds["land_surface_water__runoff_depth"])).sum() + \
        (out["sm"] * torch.as_tensor(seeds["hbv__soil_moisture_storage"])).sum()
    L.backward()
    for name, p in m.named_parameters():
        np.testing.assert_allclose(g[name], p.grad.numpy(), rtol=1e-9, atol=1e-14)
    assert sum(float(np.abs(v).sum()) for v in g.values()) > 0
    with pytest.raises(ValueError, match="expected shape"):
        b.compute_gradients({"land_surface_water__runoff_depth": np.ones((2, 2))})
    with pytest.raises(KeyError, match="seedable outputs"):
        b.compute_gradients({"nope": np.ones((n_steps, b.n))})


def test_hot_swap_same_checkpoint_is_bit_for_bit(tmp_path):
    copy = tmp_path / "same.pt"
    shutil.copy(default_checkpoint_path(), copy)  # a different path forces a fresh load
    a, b = BmiDeltaModel(), BmiDeltaModel()
    for x in (a, b):
        x.initialize(str(EX / "bmi" / "gauge_01073000_hourly.yaml"))
    drive(a, 24 * 5 + 7)
    drive(b, 24 * 5 + 7)
    b.load_checkpoint(str(copy))
    assert b.model is not a.model
    drive(a, 24 * 10, seed=9)
    drive(b, 24 * 10, seed=9)
    for name in a.get_output_var_names():
        np.testing.assert_array_equal(a.get_value_ptr(name), b.get_value_ptr(name))


@pytest.fixture(scope="module")
def quick_example(tmp_path_factory):
    out = tmp_path_factory.mktemp("retrain")
    r = subprocess.run([sys.executable, str(EX / "retrain" / "run_example.py"), "--quick", "--out", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return out, r.stdout


def test_example_runs_and_checkpoint_has_lineage(quick_example):
    out, stdout = quick_example
    assert "nse_before" in stdout and (out / "before_after.png").exists() and (out / "retrained.loss.png").exists()
    m, payload = load_checkpoint(out / "retrained.pt")
    lin = payload["provenance"]
    assert lin["parent_checkpoint"]["sha256"] and lin["record"]["sha256"] and lin["observations"]["sha256"]
    assert len(lin["metrics"]["nse_before"]) == len(lin["metrics"]["nse_after"]) == 4
    # it loads in the BMI
    cfg = yaml.safe_load((out / "hydro_eval_after.yaml").read_text())
    assert cfg["model"]["checkpoint"] == str(out / "retrained.pt")
    b = BmiDeltaModel()
    b.initialize(str(out / "hydro_eval_after.yaml"))
    assert b.model.config.attributes == load_checkpoint()[0].config.attributes


@pytest.mark.mpi
def test_retraining_on_two_ranks_equals_one(quick_example, tmp_path):
    pytest.importorskip("mpi4py")
    out, _ = quick_example
    mpiexec = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")
    if mpiexec is None:
        pytest.skip("mpiexec not found")
    args = ["-m", "dhydro.cli", "retrain", "--record", str(out / "record.nc"), "--obs", str(out / "obs.nc"),
            "--epochs", "2", "--iterations", "2", "--window", "60", "--quiet"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r1 = subprocess.run([sys.executable, *args, "-o", str(tmp_path / "one.pt")], capture_output=True, text=True, timeout=300, env=env)
    assert r1.returncode == 0, r1.stderr[-2000:]
    r2 = subprocess.run([mpiexec, "-n", "2", sys.executable, *args, "-o", str(tmp_path / "two.pt")],
                        capture_output=True, text=True, timeout=300, env=env)
    assert r2.returncode == 0, r2.stderr[-2000:]
    a = torch.load(tmp_path / "one.pt", weights_only=True)
    b = torch.load(tmp_path / "two.pt", weights_only=True)
    assert b["provenance"]["settings"]["ranks"] == 2
    moved = 0.0
    parent = load_checkpoint(dtype=torch.float64)[0].state_dict()
    for k in a["state_dict"]:
        np.testing.assert_allclose(a["state_dict"][k].numpy(), b["state_dict"][k].numpy(), rtol=1e-9, atol=1e-12)
        moved += float((a["state_dict"][k].double() - parent[k]).abs().sum())
    assert moved > 0  # training really changed the weights
