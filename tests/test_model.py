"""DeltaModel: one code path for advance and unroll; explicit warm-up; network split."""

import pytest
import torch

from bmi_dhydro.checkpoint import load_checkpoint
from bmi_dhydro.model import DeltaModel, ModelConfig


def make_model(variant="hbv1.0", nmul=4, routing=True):
    torch.manual_seed(0)
    cfg = ModelConfig(variant=variant, nmul=nmul, routing=routing, attributes=[f"a{i}" for i in range(5)], lstm_hidden=8, mlp_hidden=16)
    return DeltaModel(cfg).double()


def forcing(t_len, n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.rand(t_len, n, generator=g) * 20, torch.randn(t_len, n, generator=g) * 10,
                        torch.rand(t_len, n, generator=g) * 5], -1).double()


@pytest.mark.parametrize("variant,routing", [("hbv1.0", True), ("hbv1.1p", True), ("hbv1.0", False)])
def test_unroll_equals_repeated_advance(variant, routing):
    m = make_model(variant, routing=routing)
    n, t_len = 5, 400
    attrs = torch.randn(n, 5, dtype=torch.float64)
    f = forcing(t_len, n)
    s0 = m.initial_state(n)
    s_end, out = m.unroll(s0, f, attrs)
    s = s0
    prep = m.prepare(attrs)
    steps = []
    with torch.no_grad():
        for t in range(t_len):
            s, o = m.advance(s, f[t], prep)
            steps.append(o)
    for k in out:
        diff = (torch.stack([o[k] for o in steps]) - out[k]).abs().max()
        assert float(diff) <= 1e-12, (k, float(diff))
    for a, b in zip(s_end.hbv, s.hbv):
        assert float((a - b).abs().max()) <= 1e-12
    assert torch.allclose(s_end.route_buffer, s.route_buffer, rtol=0, atol=1e-12)


def test_model_mass_balance_including_routing():
    m = make_model()
    n = 3
    attrs = torch.randn(n, 5, dtype=torch.float64)
    f = forcing(500, n, seed=1)
    s0 = m.initial_state(n)
    with torch.no_grad():
        _, out = m.unroll(s0, f, attrs)
    storage = torch.cat([s0.hbv.total().mean(-1)[None], out["storage"]])
    bal = out["precip"] - out["et"] - out["runoff"] + out["leak"]
    assert float(((storage[1:] - storage[:-1]) - bal).abs().max() / storage.abs().max()) < 1e-12


def test_warmup_is_explicit_and_detached():
    m = make_model()
    n = 2
    attrs = torch.randn(n, 5, dtype=torch.float64)
    f = forcing(100, n)
    s = m.warmup(m.initial_state(n), f, attrs)
    assert not s.hbv.sm.requires_grad
    # warm state differs from the cold one, and unrolling continues from it
    assert float((s.hbv.sm - m.initial_state(n).hbv.sm).abs().max()) > 0
    _, out = m.unroll(s, f[:10], attrs)
    out["runoff"].sum().backward()
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in m.parameters())


def test_parameters_within_bounds_from_network():
    from bmi_dhydro import physics

    m = make_model(nmul=8)
    attrs = torch.randn(6, 5, dtype=torch.float64) * 10
    pars = m.physical_parameters(attrs, forcing(20, 6))
    for k, v in pars.items():
        lo, hi = physics.ALL_BOUNDS[k]
        assert float(v.min()) >= lo and float(v.max()) <= hi, k


def test_bundled_checkpoint_is_small_and_loads():
    from bmi_dhydro.checkpoint import default_checkpoint_path

    assert default_checkpoint_path().stat().st_size < 5 * 1024 * 1024
    m, payload = load_checkpoint()
    assert m.config.lstm_hidden <= 64 and m.config.mlp_hidden <= 256
    prov = payload["provenance"]
    assert prov["periods"]["train"] == ["1980-10-01", "1995-09-30"]
    assert len(prov["data"]["basins"]) == 515 and prov["data"]["product"] == "daymet"
    assert set(prov["data"]["validation_basins"]).isdisjoint(prov["data"]["train_basins"])
    assert prov["metrics"]["validation_kind"] == "held-out basins"


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 2e-5)])
def test_inference_steps_in_torch_equal_unroll_and_follow_weight_changes(dtype, tol):
    """Many units take the torch inference step (the attributes' share of the LSTM gates computed once and kept):
    the same numbers as unroll's fused LSTM, and a change of the weights or attributes is never served stale."""
    m = make_model().to(dtype)
    n, t_len = 400, 60  # 400 units x nmul 4 > NUMPY_STEP_MAX_VALUES: the torch step
    assert not m.numpy_step_suitable(n)
    attrs = torch.randn(n, 5, dtype=dtype)
    f = forcing(t_len, n).to(dtype)

    def stepped(model, prep):
        s, outs = model.initial_state(n, dtype=dtype), []
        with torch.no_grad():
            for t in range(t_len):
                s, o = model.advance(s, f[t], prep)
                outs.append(o["runoff"])
        return torch.stack(outs)

    def unrolled(model):
        with torch.no_grad():
            return model.unroll(model.initial_state(n, dtype=dtype), f, attrs)[1]["runoff"]

    prep = m.prepare(attrs)
    scale = float(unrolled(m).abs().max())
    assert float((stepped(m, prep) - unrolled(m)).abs().max()) <= tol * scale
    with torch.no_grad():  # an in-place change of the LSTM's input weights (as load_state_dict makes)
        m.provider.lstm.weight_ih_l0.mul_(1.5)
    assert float((stepped(m, prep) - unrolled(m)).abs().max()) <= tol * scale
