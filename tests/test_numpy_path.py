"""The numpy path for tiny inference steps (``DeltaModel.advance_numpy``, used by the BMI for one catchment)
against the torch path: the same equations, so equal to rounding.

``DeltaModel.advance`` takes the numpy path with autograd off on the CPU for at most
``model.NUMPY_STEP_MAX_VALUES`` unit-components, and the torch path otherwise (here: autograd on).
"""

import numpy as np
import pytest
import torch

from bmi_dhydro import physics
from bmi_dhydro.checkpoint import load_checkpoint
from bmi_dhydro.model import NUMPY_STEP_MAX_VALUES, DeltaModel, ModelConfig

TOL = {torch.float64: 1e-12, torch.float32: 1e-5}


def model(variant, routing, dtype, dynamic=None):
    torch.manual_seed(1)
    cfg = ModelConfig(variant=variant, nmul=4, routing=routing, attributes=[f"a{i}" for i in range(5)],
                      lstm_hidden=8, mlp_hidden=16, dynamic_params=dynamic)
    return DeltaModel(cfg).to(dtype)


def forcing(t_len, n, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    p = torch.rand(t_len, n, generator=g, dtype=torch.float64) ** 3 * 40.0  # many dry days, some storms
    t = torch.randn(t_len, n, generator=g, dtype=torch.float64) * 10.0  # snow and melt
    e = torch.rand(t_len, n, generator=g, dtype=torch.float64) * 5.0
    return torch.stack([p, t, e], -1).to(dtype)


def run(m, f, attrs, numpy_path: bool):
    s = m.initial_state(f.shape[1], dtype=f.dtype)
    prep = m.prepare(attrs)
    outs = []
    for t in range(f.shape[0]):
        with torch.set_grad_enabled(not numpy_path):
            s, o = m.advance(s, f[t], prep)
        outs.append({k: v.detach() for k, v in o.items()})
    return s, outs


def rel(a, b):
    a, b = torch.as_tensor(a).detach(), torch.as_tensor(b).detach()
    if b.numel() == 0:
        return 0.0 if a.numel() == 0 else float("inf")
    den = float(b.abs().max())
    return float((a - b).abs().max()) / den if den > 0 else float((a - b).abs().max())


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("variant,routing,dynamic", [("hbv1.0", True, None), ("hbv1.1p", True, ["BETA", "K0"]),
                                                     ("hbv1.0", False, [])])
def test_numpy_steps_equal_torch_steps(dtype, variant, routing, dynamic):
    m = model(variant, routing, dtype, dynamic)
    n, t_len = 3, 200
    assert m.numpy_step_suitable(n)
    f = forcing(t_len, n, dtype)
    attrs = torch.randn(n, 5, dtype=dtype)
    s_np, o_np = run(m, f, attrs, numpy_path=True)
    s_t, o_t = run(m, f, attrs, numpy_path=False)
    assert set(o_np[0]) == set(o_t[0])
    for k in o_t[0]:
        a = torch.stack([o[k] for o in o_np])
        b = torch.stack([o[k] for o in o_t])
        assert a.dtype == b.dtype == dtype, k
        assert rel(a, b) <= TOL[dtype], (k, rel(a, b))
    for a, b in zip(s_np.hbv, s_t.hbv):
        assert a.dtype == dtype and rel(a, b) <= TOL[dtype]
    assert rel(s_np.h, s_t.h) <= TOL[dtype] and rel(s_np.c, s_t.c) <= TOL[dtype]
    # the forcing reached snow, melt and the soil-moisture floor paths: the comparison is not vacuous
    assert float(torch.stack([o["snowpack"] for o in o_t]).max()) > 1.0


def test_bundled_model_numpy_path_and_threshold():
    m, _ = load_checkpoint(dtype=torch.float64)  # as the BMI runs it
    n = NUMPY_STEP_MAX_VALUES // m.provider.nmul
    assert m.numpy_step_suitable(n) and not m.numpy_step_suitable(n + 1)
    from bmi_dhydro.datasets import bundled_camels_root, read_attributes

    table = read_attributes(bundled_camels_root(), ["01333000"], m.config.attributes)  # a real basin's attributes
    attrs = torch.tensor(table[list(m.config.attributes)].to_numpy(), dtype=torch.float64)
    f = forcing(120, 1, attrs.dtype, seed=3)
    _, o_np = run(m, f, attrs, numpy_path=True)
    _, o_t = run(m, f, attrs, numpy_path=False)
    tol = TOL[attrs.dtype]
    for k in ("runoff", "et", "storage"):
        assert rel(torch.stack([o[k] for o in o_np]), torch.stack([o[k] for o in o_t])) <= tol, k


def test_numpy_pet_equals_torch_pet():
    g = np.random.default_rng(0)
    lat = g.uniform(-60, 70, 50)
    doy = g.integers(1, 366, 50).astype("float64")
    tmin = g.uniform(-20, 20, 50)
    tmax = tmin + g.uniform(1, 15, 50)
    t = torch.from_numpy
    for fn, args in ((physics.hamon, (tmin, lat, doy)), (physics.hargreaves, (tmin, tmax, lat, doy))):
        a = fn(*args)
        b = fn(*(t(x) for x in args))
        assert isinstance(a, np.ndarray) and isinstance(b, torch.Tensor)
        np.testing.assert_allclose(a, b.numpy(), rtol=1e-12, atol=1e-12)
    # the cached day length gives the same Hamon PET
    np.testing.assert_allclose(physics.hamon(tmin, lat, doy, daylength=physics.daylength_hours(lat, doy)),
                               physics.hamon(tmin, lat, doy), rtol=1e-15, atol=0)
