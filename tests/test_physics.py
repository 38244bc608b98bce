"""Physics invariants: mass balance, routing volume, bounds, extreme forcing, gradients, PET, step scaling."""

import numpy as np
import pytest
import torch

from bmi_dhydro import physics
from bmi_dhydro.datasets import model_forcings, read_camels
from bmi_dhydro.model import DeltaModel

TEN_YEARS = ("1995-10-01", "2005-09-30")


@pytest.fixture(scope="module")
def real_forcing():
    ds = read_camels(basins=["01022500", "04015330", "09035900"], start=TEN_YEARS[0], end=TEN_YEARS[1])
    return model_forcings(ds, "hamon", dtype=torch.float64)  # (T, 3 basins, 3)


def random_params(n, nmul, gen, variant="hbv1.0"):
    names = physics.VARIANT_PARAMS[variant]
    return {k: physics.descale(torch.rand(n, nmul, generator=gen, dtype=torch.float64), k) for k in names}


def run_physics(forc, params, capillary=False):
    n = forc.shape[1]
    nmul = next(iter(params.values())).shape[-1]
    state = physics.initial_state(n, nmul, dtype=forc.dtype)
    s0 = state.total()
    totals = {"p": 0.0, "et": 0.0, "q": 0.0, "leak": 0.0}
    qs = []
    for t in range(forc.shape[0]):
        state, fl = physics.step(state, forc[t, :, 0], forc[t, :, 1], forc[t, :, 2], params, capillary=capillary)
        totals["p"] = totals["p"] + forc[t, :, 0].unsqueeze(-1)
        totals["et"] = totals["et"] + fl.et
        totals["q"] = totals["q"] + fl.q
        totals["leak"] = totals["leak"] + fl.leak
        qs.append(fl.q)
    return s0, state, totals, torch.stack(qs)


@pytest.mark.parametrize("variant", ["hbv1.0", "hbv1.1p"])
def test_mass_balance_ten_years_real_forcing(real_forcing, variant):
    gen = torch.Generator().manual_seed(1)
    n = real_forcing.shape[1]
    # random parameters spanning the bounds, plus the bounds themselves
    params = random_params(n, 32, gen, variant)
    for k in params:
        lo, hi = physics.PARAM_BOUNDS[k]
        params[k][:, 0] = lo
        params[k][:, 1] = hi
    s0, s1, tot, _ = run_physics(real_forcing, params, capillary=(variant == "hbv1.1p"))
    lhs = s1.total() - s0
    rhs = tot["p"] - tot["et"] - tot["q"] + tot["leak"]
    scale = tot["p"].abs() + s1.total().abs()
    rel = ((lhs - rhs).abs() / scale).max()
    assert float(rel) < 1e-10, f"relative mass-balance error {float(rel)}"
    assert float(tot["q"].min()) >= 0 and float(tot["et"].min()) >= 0


def test_mass_balance_detects_a_broken_step(real_forcing):
    """The balance check can fail: dropping the leak term from the budget breaks it on dry forcing."""
    gen = torch.Generator().manual_seed(2)
    forc = real_forcing[:400].clone()
    forc[..., 0] = 0.0  # drought drives SM to the floor
    forc[..., 2] = 20.0
    params = random_params(forc.shape[1], 4, gen)
    s0, s1, tot, _ = run_physics(forc, params)
    assert float(tot["leak"].max()) > 0, "the floor should add water in a long drought"
    lhs = s1.total() - s0
    assert float((lhs - (tot["p"] - tot["et"] - tot["q"])).abs().max()) > 1e-8


def test_states_stay_within_physical_bounds(real_forcing):
    gen = torch.Generator().manual_seed(3)
    params = random_params(real_forcing.shape[1], 8, gen)
    state = physics.initial_state(real_forcing.shape[1], 8, dtype=torch.float64)
    for t in range(real_forcing.shape[0]):
        state, fl = physics.step(state, *real_forcing[t].unbind(-1), params)
        assert float(state.sm.min()) >= physics.SM_FLOOR - 1e-15
        assert bool((state.sm <= params["FC"] + 1e-9).all())
        for s in state:
            assert float(s.min()) >= 0.0


def test_routed_volume_equals_unrouted_volume():
    gen = torch.Generator().manual_seed(4)
    n, t_len = 6, 3000
    q = torch.rand(t_len, n, generator=gen, dtype=torch.float64) * 10
    q[-200:] = 0.0  # let everything drain
    a = torch.rand(n, generator=gen, dtype=torch.float64) * 2.9
    b = torch.rand(n, generator=gen, dtype=torch.float64) * 6.5
    w = physics.gamma_uh(a, b, physics.uh_length(1.0))
    assert torch.allclose(w.sum(-1), torch.ones(n, dtype=torch.float64), atol=1e-14)
    routed, buf = physics.route_sequence(q, w)
    np.testing.assert_allclose(routed.sum(0).numpy(), q.sum(0).numpy(), rtol=1e-12)
    # mid-run, routed + in flight == unrouted
    r2, buf2 = physics.route_sequence(q[:1500], w)
    np.testing.assert_allclose((r2.sum(0) + physics.in_flight(w, buf2)).numpy(), q[:1500].sum(0).numpy(), rtol=1e-12)


def test_route_step_equals_route_sequence():
    gen = torch.Generator().manual_seed(5)
    q = torch.rand(100, 4, generator=gen, dtype=torch.float64)
    w = physics.gamma_uh(torch.rand(4, dtype=torch.float64) * 2.9, torch.rand(4, dtype=torch.float64) * 6.5, 15)
    seq, _ = physics.route_sequence(q, w)
    buf = torch.zeros(4, 15, dtype=torch.float64)
    steps = []
    for t in range(100):
        r, buf = physics.route_step(q[t], w, buf)
        steps.append(r)
    assert float((torch.stack(steps) - seq).abs().max()) < 1e-12


def test_one_product_routing_step_equals_route_step_and_in_flight():
    """physics.route_step_in_flight (numpy, one catchment stepping hourly) is route_step then in_flight."""
    gen = torch.Generator().manual_seed(6)
    w = physics.gamma_uh(torch.rand(3, dtype=torch.float64) * 2.9, torch.rand(3, dtype=torch.float64) * 6.5, 360,
                         dt_days=1 / 24, center_days=0.5).numpy()
    matrix = physics.step_matrix(w)
    buf_a = buf_b = np.zeros((3, w.shape[1]))
    for t in range(500):
        q = np.random.default_rng(t).random(3)
        r_a, buf_a = physics.route_step(q, w, buf_a)
        s_a = physics.in_flight(w, buf_a)
        r_b, buf_b, s_b = physics.route_step_in_flight(q, buf_b, matrix)
        np.testing.assert_array_equal(buf_a, buf_b)
        np.testing.assert_allclose(r_b, r_a, rtol=1e-13)
        np.testing.assert_allclose(s_b, s_a, rtol=1e-13)
    assert float(s_a.min()) > 0.0


def test_hamon_from_its_day_factor_is_hamon():
    t = np.linspace(-30.0, 40.0, 71)
    lat = np.full(71, 45.0)
    ld = physics.daylength_hours(lat, 170.0)
    factor = physics.hamon_day_factor(ld)
    np.testing.assert_array_equal(physics.hamon_from_factor(t, factor), physics.hamon(t, lat, 170.0))
    # one value as a Python float (one catchment stepping hourly): the same equation, to rounding
    one = [physics.hamon_from_factor(float(x), float(factor[0])) for x in t]
    assert all(isinstance(v, float) for v in one)
    np.testing.assert_allclose(one, physics.hamon(t, lat, 170.0), rtol=1e-14)


def test_extreme_forcing_no_nan_in_values_or_gradients():
    gen = torch.Generator().manual_seed(6)
    t_len, n = 3650, 4
    p = torch.rand(t_len, n, generator=gen, dtype=torch.float64) * 500.0
    p[::7] = 0.0
    temp = -40.0 + torch.rand(t_len, n, generator=gen, dtype=torch.float64) * 85.0
    pet = torch.rand(t_len, n, generator=gen, dtype=torch.float64) * 15.0
    forc = torch.stack([p, temp, pet], -1)
    raw = torch.rand(n, 13 * 4 + 2, generator=gen, dtype=torch.float64, requires_grad=True)
    names = physics.VARIANT_PARAMS["hbv1.0"]
    params = {k: physics.descale(raw[:, i * 4 : (i + 1) * 4], k) for i, k in enumerate(names)}
    state = physics.initial_state(n, 4, dtype=torch.float64)
    qs = []
    for t in range(t_len):
        state, fl = physics.step(state, *forc[t].unbind(-1), params)
        qs.append(fl.q.mean(-1))
    q = torch.stack(qs)
    w = physics.gamma_uh(raw[:, -2] * 2.9, raw[:, -1] * 6.5, 15)
    routed, _ = physics.route_sequence(q, w)
    assert torch.isfinite(routed).all() and torch.isfinite(state.total()).all()
    routed.sum().backward()
    assert torch.isfinite(raw.grad).all()
    assert float(raw.grad.abs().sum()) > 0


@pytest.mark.parametrize("capillary", [False, True])
def test_gradcheck_parameters_float64(capillary):
    gen = torch.Generator().manual_seed(7)
    n, t_len = 2, 25
    p = torch.rand(t_len, n, generator=gen, dtype=torch.float64) * 30
    temp = torch.randn(t_len, n, generator=gen, dtype=torch.float64) * 5 + 2
    pet = torch.rand(t_len, n, generator=gen, dtype=torch.float64) * 4
    names = physics.VARIANT_PARAMS["hbv1.1p" if capillary else "hbv1.0"]
    raw0 = (0.2 + 0.6 * torch.rand(n, len(names), generator=gen, dtype=torch.float64)).requires_grad_(True)

    def f(raw):
        params = {k: physics.descale(raw[:, i : i + 1], k) for i, k in enumerate(names)}
        state = physics.initial_state(n, 1, dtype=torch.float64)
        # start from a wetter state so that every branch is active
        state = physics.HbvState(state.snowpack + 5, state.meltwater, state.sm + 80, state.suz + 10, state.slz + 20)
        out = []
        for t in range(t_len):
            state, fl = physics.step(state, p[t], temp[t], pet[t], params, capillary=capillary)
            out.append(fl.q)
        return torch.stack(out)

    assert torch.autograd.gradcheck(f, (raw0,), eps=1e-7, atol=1e-6, rtol=1e-5)


def test_daily_rates_scale_with_step_length():
    """With no inflow, 24 hourly steps drain a linear store exactly as one daily step."""
    k = {n: torch.tensor(v, dtype=torch.float64) for n, v in (("K0", 0.0), ("K1", 0.3), ("K2", 0.05), ("PERC", 2.4), ("CFMAX", 3.0))}
    hourly = physics.scale_rates(k, 1 / 24)
    assert abs(float((1 - hourly["K1"]) ** 24) - 0.7) < 1e-12
    assert abs(float(hourly["PERC"]) - 0.1) < 1e-12
    assert abs(float(hourly["CFMAX"]) - 0.125) < 1e-12
    assert physics.scale_rates(k, 1.0)["K1"] is k["K1"]


def test_parameter_bounds_checked():
    with pytest.raises(ValueError, match="FC"):
        physics.check_bounds({"FC": torch.tensor([10.0])})
    physics.check_bounds({"FC": torch.tensor([50.0, 1000.0])})


def test_pet_methods():
    ds = read_camels(root=None, basins=["01022500"], start="2000-01-01", end="2000-12-31")
    pet_h = model_forcings(ds, "hamon", dtype=torch.float64)[..., 2]
    assert float(pet_h.min()) >= 0 and float(pet_h.sum()) > 300, "Hamon must give a real annual PET on NLDAS (tmax == tmin)"
    with pytest.raises(ValueError, match="tmax == tmin"):
        model_forcings(ds, "hargreaves")  # NLDAS: no temperature range -> loud error, never silent zeros
    pet_pt = model_forcings(ds, "priestley_taylor", dtype=torch.float64)[..., 2]
    assert float(pet_pt.sum()) > 300


def test_hargreaves_on_daymet_with_a_real_range():
    from pathlib import Path

    root = Path(__file__).parent / "data" / "camels_extra"
    from bmi_dhydro.datasets import read_forcing_file

    df, hdr = read_forcing_file(next(root.glob("daymet/01/*.txt")))
    doy = torch.as_tensor(df.index.day_of_year.to_numpy().copy(), dtype=torch.float64)
    pet = physics.hargreaves(df["tmin"].to_numpy(), df["tmax"].to_numpy(), torch.full_like(doy, hdr["lat"]), doy)
    annual = float(pet[:365].sum())
    assert 400 < annual < 1100, annual  # Maine: a few hundred mm per year
    # summer PET exceeds winter PET
    assert float(pet[150:240].mean()) > 3 * float(pet[0:60].mean())


def test_dtype_follows_inputs():
    for dt in (torch.float32, torch.float64):
        st = physics.initial_state(3, 2, dtype=dt)
        params = {k: torch.full((3, 2), sum(physics.PARAM_BOUNDS[k]) / 2, dtype=dt) for k in physics.VARIANT_PARAMS["hbv1.0"]}
        new, fl = physics.step(st, torch.ones(3, dtype=dt), torch.ones(3, dtype=dt), torch.ones(3, dtype=dt), params)
        assert new.sm.dtype == dt and fl.q.dtype == dt


def test_fixed_model_matches_physics_directly(real_forcing):
    params = {k: float(sum(physics.PARAM_BOUNDS[k]) / 2) for k in physics.VARIANT_PARAMS["hbv1.0"]}
    model = DeltaModel.fixed(params, routing=False)
    forc = real_forcing[:365]
    p = {k: torch.full((forc.shape[1], 1), v, dtype=torch.float64) for k, v in params.items()}
    _, _, _, q = run_physics(forc, p)
    zero = torch.zeros(forc.shape[1], 0, dtype=torch.float64)
    model.config.engine = "eager"  # the same torch ops: identical
    _, out = model.unroll(model.initial_state(forc.shape[1]), forc, zero)
    assert float((out["runoff"] - q[..., 0]).abs().max()) == 0.0
    model.config.engine = "auto"  # the fused kernel: x**b evaluated as exp(b log x), ~1e-15 relative
    _, out = model.unroll(model.initial_state(forc.shape[1]), forc, zero)
    np.testing.assert_allclose(out["runoff"].numpy(), q[..., 0].numpy(), rtol=1e-10, atol=1e-12)
