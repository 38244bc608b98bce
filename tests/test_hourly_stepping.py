"""BMI sub-daily stepping.  `hourly`: the physics and routing step at the framework step, the network daily on the
day's aggregates.  `day_so_far`: every framework step re-runs the day's step on the day so far, so the daily totals
are the daily model's.  For both a rain pulse shows within hours, mass closes, restarts continue bit for bit, numpy
and torch paths agree, and what they cannot do is refused with a message."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from bmi_dhydro import BmiDeltaModel

ROOT = Path(__file__).resolve().parents[1]
PRECIP = "atmosphere_water__liquid_equivalent_precipitation_rate"
TEMP = "land_surface_air__temperature"
DEPTH = "land_surface_water__runoff_depth"
PULSE_HOUR = 24 * 5 + 3


def config(tmp_path, stepping="hourly", n=1, name="c.yaml", **extra) -> Path:
    row = pd.read_csv(ROOT / "examples/ngen/data/attributes.csv", dtype={"id": str}).set_index("id").loc["cat-27"]
    row = row.drop(labels=["attribute_source"], errors="ignore")
    cfg = {"units": {"ids": [f"c{i}" for i in range(n)], "area_km2": [18.9] * n, "lat": [35.2] * n,
                     "lon": [-80.7] * n, "attributes": {a: [float(v)] * n for a, v in row.items()}},
           "time": {"time_step": 3600, "start": "2015-12-01 00:00:00"}, "stepping": stepping, **extra}
    p = tmp_path / name
    p.write_text(yaml.safe_dump(cfg))
    return p


def rain(h: int) -> float:
    """1 mm h-1 for four days (wet soil), dry, then a 30 mm pulse in one hour on day 5."""
    return (1.0 if h < 24 * 4 else 0.0) / 3600.0 + (30.0 / 3600.0 if h == PULSE_HOUR else 0.0)


def drive(b, hours, h0=0, record=True):
    q, bal = [], []
    for h in range(h0, h0 + hours):
        b.set_value(PRECIP, np.full(b.n, rain(h)))
        b.set_value(TEMP, np.full(b.n, 285.0 + 4.0 * np.sin(2 * np.pi * h / 24)))
        b.update()
        if record:
            q.append(b.get_value_ptr(DEPTH).copy())
            m = [b.get_value_ptr(f"ngen::mass_{k}").copy() for k in ("in", "out", "stored", "leaked")]
            bal.append(np.abs(m[0] - m[1] - m[2] - m[3]) / m[0])
    return np.array(q), np.array(bal)


def make(path):
    b = BmiDeltaModel()
    b.initialize(str(path))
    return b


SUBDAILY = ("hourly", "day_so_far")


@pytest.mark.parametrize("stepping", SUBDAILY)
def test_a_rain_pulse_shows_in_runoff_within_hours_and_mass_closes(tmp_path, stepping):
    q_h, bal_h = drive(make(config(tmp_path, stepping)), 24 * 7)
    q_d, _ = drive(make(config(tmp_path, "daily_release", name="d.yaml")), 24 * 7)
    before = q_h[PULSE_HOUR - 1, 0]
    # hourly: the pulse hour itself already runs off more than three times the hour before
    assert q_h[PULSE_HOUR, 0] > 3 * before and q_h[PULSE_HOUR + 1, 0] > 3 * before
    # daily_release: nothing changes until the day's model step completes (hour 24*6 - 1)
    assert np.allclose(q_d[PULSE_HOUR - 1: 24 * 6 - 1, 0], q_d[PULSE_HOUR - 1, 0], rtol=1e-12)
    assert float(bal_h.max()) < 1e-12
    # both conserve the same water: totals over the week within a few per cent
    assert abs(q_h.sum() - q_d.sum()) / q_d.sum() < 0.1


@pytest.mark.parametrize("stepping", SUBDAILY)
def test_a_restart_mid_day_continues_bit_for_bit(tmp_path, stepping):
    cfg = config(tmp_path, stepping)
    whole, _ = drive(make(cfg), 24 * 6)
    b = make(cfg)
    drive(b, 24 * 3 + 7, record=False)
    path = b.save_state(tmp_path / "r.nc")
    c = make(cfg)
    c.load_state(str(path))
    rest, _ = drive(c, 24 * 6 - (24 * 3 + 7), h0=24 * 3 + 7)
    np.testing.assert_array_equal(rest, whole[24 * 3 + 7:])


@pytest.mark.parametrize("writer,reader", [("daily_release", "hourly"), ("daily_release", "day_so_far"),
                                           ("hourly", "day_so_far"), ("day_so_far", "hourly"),
                                           ("hourly", "daily_release"), ("day_so_far", "daily_release")])
def test_a_restart_continues_only_the_stepping_that_wrote_it(tmp_path, writer, reader):
    b = make(config(tmp_path, writer, name="w.yaml"))
    drive(b, 30, record=False)
    path = b.save_state(tmp_path / "w.nc")
    with pytest.raises(ValueError, match=r"stepping"):
        make(config(tmp_path, reader, name="r.yaml")).load_state(str(path))


@pytest.mark.parametrize("stepping", SUBDAILY)
def test_numpy_and_torch_paths_agree(tmp_path, stepping):
    one = make(config(tmp_path, stepping, n=1, name="one.yaml"))
    many = make(config(tmp_path, stepping, n=80, name="many.yaml"))  # 80 x nmul 16 > 1024: the torch path
    assert one.stepper.use_numpy and not many.stepper.use_numpy
    q1, _ = drive(one, 24 * 6)
    qn, _ = drive(many, 24 * 6)
    np.testing.assert_allclose(qn[:, 0], q1[:, 0], rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(qn[:, -1], q1[:, 0], rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("stepping", SUBDAILY)
def test_spinup_keeps_the_days_parameters(tmp_path, stepping):
    """A spin-up in hourly mode carries the network's dynamic parameters with the stores (not the neutral ones)."""
    cold = make(config(tmp_path, stepping))
    csv = tmp_path / "spin.csv"
    times = pd.date_range("2015-11-01", periods=24 * 10, freq="h")
    pd.DataFrame({"time": times.strftime("%Y-%m-%d %H:%M:%S"), "APCP_surface": 0.5, "TMP_2maboveground": 283.0,
                  "DLWRF_surface": 300.0, "DSWRF_surface": 100.0, "PRES_surface": 100000.0, "SPFH_2maboveground": 0.005,
                  "UGRD_10maboveground": 1.0, "VGRD_10maboveground": 1.0, "precip_rate": 0.5 / 3600.0}).to_csv(csv, index=False)
    spun = make(config(tmp_path, stepping, name="s.yaml", warmup={"mode": "spinup", "forcing_file": str(csv)}))
    assert spun.get_current_time() == 0.0
    assert any(not np.array_equal(spun.stepper.dyn[k], cold.stepper.dyn[k]) for k in cold.stepper.dyn)
    assert float(spun.stepper.state_arrays()["hbv_sm"].mean()) > float(cold.stepper.state_arrays()["hbv_sm"].mean())


@pytest.mark.parametrize("stepping", SUBDAILY)
def test_what_hourly_stepping_cannot_do_is_refused(tmp_path, stepping):
    b = make(config(tmp_path, stepping))
    with pytest.raises(ValueError, match="gradient windows need stepping: daily_release"):
        b.begin_gradient_window()
    with pytest.raises(Exception, match="stepping"):
        make(config(tmp_path, stepping="sometimes", name="bad.yaml"))


def test_the_hourly_unit_hydrograph_keeps_the_daily_timing():
    """physics.gamma_uh with center_days: center 0 is the plain mid-point rule; the hourly kernel a daily-trained
    model routes with (center 0.5 d) sums to one and has the mean lag of the daily weights (days between the centres
    of the day that made the runoff and the day it leaves), where the plain hourly kernel is half a day late."""
    import torch

    from bmi_dhydro import physics

    a = torch.tensor([0.3, 1.0, 2.5], dtype=torch.float64)
    b = torch.tensor([0.2, 1.5, 4.0], dtype=torch.float64)
    daily = physics.gamma_uh(a, b, 15, 1.0)
    torch.testing.assert_close(physics.gamma_uh(a, b, 15, 1.0, center_days=0.0), daily, rtol=0, atol=0)
    hourly = physics.gamma_uh(a, b, 360, 1 / 24, center_days=0.5)
    plain = physics.gamma_uh(a, b, 360, 1 / 24)
    torch.testing.assert_close(hourly.sum(-1), torch.ones(3, dtype=torch.float64), rtol=0, atol=1e-14)
    lag_daily = (daily * torch.arange(15, dtype=torch.float64)).sum(-1)
    lag_hourly = (hourly * (torch.arange(360, dtype=torch.float64) + 0.5) / 24).sum(-1)
    lag_plain = (plain * (torch.arange(360, dtype=torch.float64) + 0.5) / 24).sum(-1)
    assert float((lag_hourly - lag_daily)[:2].abs().max()) < 0.06  # (the slowest kernel differs by the 15-day cut)
    assert bool(((lag_hourly - lag_daily).abs() < (lag_plain - lag_daily).abs() / 2).all())
    assert float((lag_plain - lag_daily).min()) > 0.15  # the plain hourly kernel is late


@pytest.mark.parametrize("stepping,method,hour", [
    ("hourly", "_kernel_step", 30),
    ("day_so_far", "_advance_fraction", 47),  # the day's last hour: the array step, which commits the day
    ("day_so_far", "run_unit", 30),  # within the day: the one-catchment step on floats
])
def test_a_non_finite_output_in_hourly_mode_leaves_everything_as_it_was(tmp_path, monkeypatch, stepping, method, hour):
    from bmi_dhydro import stepper as stepper_mod
    from bmi_dhydro.bmi_vars import NonFiniteOutputError
    from bmi_dhydro.physics import fast

    b = make(config(tmp_path, stepping))
    drive(b, hour, record=False)
    t0, before = b.get_current_time(), b.stepper.state_arrays()
    owner = fast.OneStep if method == "run_unit" else stepper_mod.Stepper
    real = getattr(owner, method)

    def poisoned(self, *args):
        if method == "run_unit":  # [q, et, leak, *stores]
            return [np.nan] + real(self, *args)[1:]
        state, out = real(self, *args)
        out["runoff"] = out["runoff"] * np.nan
        return state, out

    monkeypatch.setattr(owner, method, poisoned)
    with pytest.raises(NonFiniteOutputError):
        drive(b, 1, h0=hour, record=False)
    assert b.get_current_time() == t0
    after = b.stepper.state_arrays()
    for k in before:
        np.testing.assert_array_equal(after[k], before[k], err_msg=k)
    monkeypatch.undo()
    drive(b, 1, h0=hour, record=False)
    assert b.get_current_time() == t0 + 3600.0


def test_day_so_far_on_floats_for_one_catchment_equals_the_array_step(tmp_path):
    """One catchment (ngen) steps within the day on Python floats (Stepper._step_so_far_unit); every output the
    BMI publishes, every hour, equals the array step's to rounding, through rain, a pulse, and a cold evening that
    makes the runoff so far fall (debt), and mass closes."""
    fl, ar = make(config(tmp_path, "day_so_far")), make(config(tmp_path, "day_so_far", name="a.yaml"))
    ar.stepper.unit_floats = False
    assert fl.stepper.unit_floats
    names = [n for n in fl.get_output_var_names() if fl.get_var_grid(n) == 0]
    hours, worst, debt_seen = 24 * 8, 0.0, False
    for h in range(hours):
        cold_evening = h // 24 == 6 and h % 24 >= 12
        for b in (fl, ar):
            b.set_value(PRECIP, np.full(1, rain(h) + (8.0 / 3600.0 if 24 * 5 < h < 24 * 6 + 12 else 0.0)))
            b.set_value(TEMP, np.full(1, 255.0 if cold_evening else 280.0 + 4.0 * np.sin(2 * np.pi * h / 24)))
            b.update()
        for n in names:
            np.testing.assert_allclose(fl.get_value_ptr(n), ar.get_value_ptr(n), rtol=1e-11, atol=1e-17,
                                       err_msg=f"{n} at hour {h}")
        m = [fl.get_value_ptr(f"ngen::mass_{k}") for k in ("in", "out", "stored", "leaked")]
        worst = max(worst, float(np.abs(m[0] - m[1] - m[2] - m[3]).max() / m[0].max()))
        debt_seen |= bool(fl.stepper.debt.max() > 0)
    assert fl.stepper._unit is not None and ar.stepper._unit is None  # each took its path
    assert debt_seen and worst < 1e-12
    sa, sb = fl.stepper.state_arrays(), ar.stepper.state_arrays()
    for k in sa:
        np.testing.assert_allclose(sa[k], sb[k], rtol=1e-11, atol=1e-15, err_msg=k)


def test_the_one_catchment_kernel_step_equals_the_numpy_step(tmp_path, monkeypatch):
    """Hourly one-catchment steps go through the fused kernel (physics.fast.OneStep); the numpy step gives the same
    runoff to rounding."""
    q_kernel, _ = drive(make(config(tmp_path)), 24 * 6)
    from bmi_dhydro import stepper as stepper_mod

    monkeypatch.setattr(stepper_mod.Stepper, "_one_step", lambda self: None)
    q_numpy, _ = drive(make(config(tmp_path, name="n.yaml")), 24 * 6)
    np.testing.assert_allclose(q_kernel, q_numpy, rtol=1e-10, atol=1e-16)


def test_the_days_parameter_outputs_follow_the_network_every_day(tmp_path):
    """The per-day parameters are copied into their output buffers once a day (update skips the copy while the
    day's values are unchanged): each day the buffers hold that day's values, through the same pointer."""
    b = make(config(tmp_path))
    name = b.model.provider.dynamic[0]
    ptr = b.get_value_ptr(name)
    seen = []
    for day in range(4):
        drive(b, 23, h0=24 * day, record=False)  # (the day's last hour runs the network: the next day's values)
        np.testing.assert_allclose(ptr, b.stepper.dyn[name].mean(-1), rtol=1e-12)
        seen.append(ptr.copy())
        drive(b, 1, h0=24 * day + 23, record=False)
    assert len({float(v[0]) for v in seen}) > 1  # the network's answer changed with the weather


def test_day_so_far_kernel_and_numpy_steps_agree(tmp_path, monkeypatch):
    """day_so_far's one-catchment steps go through the fused kernel; without it (numpy) the same runoff."""
    q_kernel, _ = drive(make(config(tmp_path, "day_so_far")), 24 * 6)
    from bmi_dhydro.physics import fast

    def unavailable(*args, **kwargs):
        raise RuntimeError("kernel switched off by the test")

    monkeypatch.setattr(fast, "OneStep", unavailable)
    q_numpy, _ = drive(make(config(tmp_path, "day_so_far", name="n.yaml")), 24 * 6)
    np.testing.assert_allclose(q_kernel, q_numpy, rtol=1e-10, atol=1e-16)


def fixed_config(tmp_path, time_step, stepping=None, name="f.yaml", source="fixed_hourly_daily_model.yaml") -> Path:
    cfg = yaml.safe_load((ROOT / "tests/data/bmi" / source).read_text())
    cfg["time"]["time_step"] = time_step
    if stepping:
        cfg["stepping"] = stepping
    p = tmp_path / name
    p.write_text(yaml.safe_dump(cfg))
    return p


PET_IN = "land_surface_water__potential_evaporation_volume_flux"


@pytest.mark.parametrize("source", ["fixed_hourly_daily_model.yaml", "fixed_pet_input.yaml"])
def test_day_so_far_daily_totals_are_the_daily_models(tmp_path, source):
    """With fixed parameters (no network, so no parameter lag) the daily totals of day_so_far are the daily model's
    runoff, day by day, and its stores at each day's end are the daily model's, whenever in the day the rain falls
    (Hamon PET, and PET given as an input)."""
    days = 20
    daily = make(fixed_config(tmp_path, 86400, name="d.yaml", source=source))
    so_far = make(fixed_config(tmp_path, 3600, "day_so_far", name="s.yaml", source=source))
    n = daily.n
    rng = np.random.default_rng(3)
    p_day = rng.gamma(0.6, 8.0, size=(days, n)) * (rng.random((days, n)) < 0.5)  # mm d-1
    t_day = 278.0 + 6.0 * rng.standard_normal((days, n))
    pet_day = rng.uniform(0.5, 4.0, size=(days, n)) / 1000.0 / 86400.0  # m s-1
    with_pet = PET_IN in daily.get_input_var_names()
    q_d, q_s, snow_d, snow_s = [], [], [], []
    for d in range(days):
        daily.set_value(PRECIP, p_day[d] / 86400.0)
        daily.set_value(TEMP, t_day[d])
        if with_pet:
            daily.set_value(PET_IN, pet_day[d])
        daily.update()
        q_d.append(daily.get_value_ptr(DEPTH).copy())
        snow_d.append(daily.get_value_ptr("hbv__snowpack_storage").copy())
        hours = []
        for h in range(24):
            rain_hour = h == 10  # the whole day's rain in one hour
            so_far.set_value(PRECIP, p_day[d] / 3600.0 if rain_hour else np.zeros(n))
            so_far.set_value(TEMP, t_day[d])
            if with_pet:
                so_far.set_value(PET_IN, pet_day[d])
            so_far.update()
            hours.append(so_far.get_value_ptr(DEPTH).copy())
        hours = np.array(hours)
        assert (hours >= 0).all()
        q_s.append(hours.sum(0))
        snow_s.append(so_far.get_value_ptr("hbv__snowpack_storage").copy())
    assert float(np.max(q_d)) > 0.0
    np.testing.assert_allclose(np.array(q_s), np.array(q_d), rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(np.array(snow_s), np.array(snow_d), rtol=1e-9, atol=1e-12)


def test_day_so_far_never_takes_runoff_back_and_closes_mass_when_the_day_so_far_runs_off_less(tmp_path):
    """Two warm rainy days wet the soil; on the third, rain until noon, then a cold evening: the day's mean
    temperature so far falls below the threshold late in the day, the day's step turns its rain to snow and the
    runoff so far falls.  What was given out stays given out (no negative runoff); the excess is withheld from the
    next runoff (debt) and mass closes every hour."""
    b = make(fixed_config(tmp_path, 3600, "day_so_far"))
    depth, bal, debt = [], [], []
    for d in range(6):
        for h in range(24):
            warm = d < 2 or (d == 2 and h < 12)
            b.set_value(PRECIP, np.full(2, 10.0 / 3600.0 if warm else 0.0))
            b.set_value(TEMP, np.full(2, 283.15 if warm else (258.15 if d == 2 else 275.15)))
            b.update()
            depth.append(b.get_value_ptr(DEPTH).copy())
            m = [b.get_value_ptr(f"ngen::mass_{k}").copy() for k in ("in", "out", "stored", "leaked")]
            bal.append(np.abs(m[0] - m[1] - m[2] - m[3]) / m[0])
            debt.append(b.stepper.debt.copy())
    depth, debt = np.array(depth), np.array(debt)
    assert (depth >= 0).all()
    assert float(np.max(bal)) < 1e-12
    assert float(debt[24 * 3 - 1].max()) > 0.0  # the day's end: runoff given out beyond the day's step
    assert float(debt[-1].max()) == 0.0  # ... withheld from the next days' runoff until paid



@pytest.mark.parametrize("stepping", ("daily_release",) + SUBDAILY)
def test_one_catchments_outputs_are_written_on_floats_as_the_array_refresh_writes_them(tmp_path, stepping):
    """A one-catchment instance refreshes its output buffers on Python floats; the array refresh writes the same
    numbers, bit for bit, at every hour of a day (mid-day and the model step)."""
    b = make(config(tmp_path, stepping))
    assert b._refresh_floats
    names = [n for n in b.get_output_var_names() if b.get_var_grid(n) == 0]
    for h in range(48):
        drive(b, 1, h0=h, record=False)
        floats = {n: b.get_value_ptr(n).copy() for n in names}
        b._refresh_floats = False
        try:
            b._refresh_outputs()
        finally:
            b._refresh_floats = True
        for n in names:
            np.testing.assert_array_equal(b.get_value_ptr(n), floats[n], err_msg=f"{n} at hour {h}")
