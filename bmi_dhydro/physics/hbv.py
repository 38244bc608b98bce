"""Differentiable HBV (δHBV 1.0 and the 1.1p capillary-rise variant) as pure torch functions.

The kernel is a pure function over an explicit state::

    new_state, fluxes = step(state, forcing, params, dt_days)

with no configuration, I/O or module state inside.  dtype and device follow the inputs.  Every tensor is shaped
``(n_units, nmul)`` (``nmul`` parallel components per unit); forcings of shape ``(n_units,)`` are broadcast over
the components.  Given numpy arrays instead of tensors, the same equations run in numpy (:mod:`.arrays`: the
BMI's one-catchment inference steps).

Equations (Feng et al. 2022, WRR, doi:10.1029/2022WR032404; HBV-light, Seibert 2005), in this order per step:

1. rain = P where T >= TT else 0; snow = P - rain
2. snow: snowpack += snow; melt = min(max(CFMAX(T-TT), 0), snowpack); refreeze = min(max(CFR CFMAX (TT-T), 0),
   meltwater); tosoil = max(meltwater - CWH snowpack, 0)
3. soil: wet = clamp((SM/FC)^BETA, 0, 1); recharge = (rain + tosoil) wet; SM += rain + tosoil - recharge;
   excess = max(SM - FC, 0); SM -= excess
4. ET: ef = clamp((SM/(LP FC))^BETAET, 0, 1); ET = min(SM, PET ef); SM = max(SM - ET, SM_FLOOR).  The water the
   floor adds is returned as the explicit ``leak`` flux, so storage change == P - ET - Q + leak exactly.
5. (1.1p only) capillary = min(SLZ, C SLZ (1 - min(SM/FC, 1))); SM += capillary; SLZ -= capillary
6. response: SUZ += recharge + excess; perc = min(SUZ, PERC); Q0 = K0 max(SUZ - UZL, 0); Q1 = K1 SUZ;
   SLZ += perc; Q2 = K2 SLZ; Q = Q0 + Q1 + Q2

Time step.  Forcing fluxes (P, PET) are amounts per step (mm per step).  The parameter table gives rates per day;
:func:`scale_rates` converts them to the step length ``dt_days``:

* CFMAX (mm °C⁻¹ d⁻¹) and PERC (mm d⁻¹) are amounts per day and scale linearly: ``x * dt_days``.
* K0, K1, K2 (d⁻¹) are fractions of a store drained per day.  They scale as ``1 - (1 - K)**dt_days`` so a store
  with no inflow loses the same fraction over one day whatever the step (24 hourly steps of the scaled K drain
  exactly what one daily step of K drains).  At ``dt_days == 1`` both rules are the identity.

Everything else (thresholds, capacities, exponents, fractions) is independent of the step.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .arrays import ops

#: Physical parameter bounds; the network's sigmoid output maps linearly onto them.
PARAM_BOUNDS: dict[str, tuple[float, float]] = {
    "BETA": (1.0, 6.0),
    "FC": (50.0, 1000.0),
    "K0": (0.05, 0.9),
    "K1": (0.01, 0.5),
    "K2": (0.001, 0.2),
    "LP": (0.2, 1.0),
    "PERC": (0.0, 10.0),
    "UZL": (0.0, 100.0),
    "TT": (-2.5, 2.5),
    "CFMAX": (0.5, 10.0),
    "CFR": (0.0, 0.1),
    "CWH": (0.0, 0.2),
    "BETAET": (0.3, 5.0),
    "C": (0.0, 1.0),
}

#: Units of each physical parameter (per-day rates before :func:`scale_rates`).
PARAM_UNITS: dict[str, str] = {
    "BETA": "1",
    "FC": "mm",
    "K0": "d-1",
    "K1": "d-1",
    "K2": "d-1",
    "LP": "1",
    "PERC": "mm d-1",
    "UZL": "mm",
    "TT": "degC",
    "CFMAX": "mm degC-1 d-1",
    "CFR": "1",
    "CWH": "1",
    "BETAET": "1",
    "C": "d-1",
}

#: Parameters of each physics variant, in a fixed order (the network's output order).
VARIANT_PARAMS: dict[str, tuple[str, ...]] = {
    "hbv1.0": ("BETA", "FC", "K0", "K1", "K2", "LP", "PERC", "UZL", "TT", "CFMAX", "CFR", "CWH", "BETAET"),
    "hbv1.1p": ("BETA", "FC", "K0", "K1", "K2", "LP", "PERC", "UZL", "TT", "CFMAX", "CFR", "CWH", "BETAET", "C"),
}

#: Default time-varying (dynamic) parameters per variant.
DEFAULT_DYNAMIC: dict[str, tuple[str, ...]] = {
    "hbv1.0": ("BETA", "BETAET"),
    "hbv1.1p": ("BETA", "BETAET", "K0"),
}

STATE_NAMES: tuple[str, ...] = ("snowpack", "meltwater", "sm", "suz", "slz")
INITIAL_STORE_MM = 0.001
SM_FLOOR = 1e-5


class HbvState(NamedTuple):
    """Stores in mm, each ``(n_units, nmul)``."""

    snowpack: torch.Tensor
    meltwater: torch.Tensor
    sm: torch.Tensor
    suz: torch.Tensor
    slz: torch.Tensor

    def total(self) -> torch.Tensor:
        return self.snowpack + self.meltwater + self.sm + self.suz + self.slz


class HbvFluxes(NamedTuple):
    """Fluxes over one step in mm per step, each ``(n_units, nmul)``."""

    q: torch.Tensor  # total runoff Q0 + Q1 + Q2 (unrouted)
    q0: torch.Tensor
    q1: torch.Tensor
    q2: torch.Tensor
    et: torch.Tensor  # actual evapotranspiration
    leak: torch.Tensor  # water added by the soil-moisture floor
    recharge: torch.Tensor
    excess: torch.Tensor
    perc: torch.Tensor
    capillary: torch.Tensor


def initial_state(n_units: int, nmul: int, dtype=torch.float32, device=None) -> HbvState:
    """All stores at 0.001 mm."""
    z = torch.full((n_units, nmul), INITIAL_STORE_MM, dtype=dtype, device=device)
    return HbvState(z, z.clone(), z.clone(), z.clone(), z.clone())


def descale(raw: torch.Tensor, name: str) -> torch.Tensor:
    """Map a value in [0, 1] (a sigmoid output) linearly onto the bounds of parameter ``name``."""
    lo, hi = PARAM_BOUNDS[name]
    return lo + raw * (hi - lo)


def check_bounds(params: dict[str, torch.Tensor]) -> None:
    """Raise ValueError naming any parameter outside its physical bounds (used for fixed-parameter mode)."""
    for name, value in params.items():
        if name not in PARAM_BOUNDS:
            continue
        lo, hi = PARAM_BOUNDS[name]
        v = torch.as_tensor(value)
        if bool(torch.isnan(v).any()):
            raise ValueError(f"parameter {name}: expected a number in [{lo}, {hi}], got NaN")
        if bool((v < lo).any()) or bool((v > hi).any()):
            raise ValueError(
                f"parameter {name}: expected values in [{lo}, {hi}] {PARAM_UNITS[name]}, "
                f"got min {float(v.min())} max {float(v.max())}"
            )


#: parameters that are rates per day, scaled to the step by :func:`scale_rates` (amounts, then store fractions)
AMOUNT_RATES = ("CFMAX", "PERC")
FRACTION_RATES = ("K0", "K1", "K2", "C")
RATE_PARAMS = AMOUNT_RATES + FRACTION_RATES


def scale_rates(params: dict[str, torch.Tensor], dt_days: float) -> dict[str, torch.Tensor]:
    """Convert per-day rates to per-step values for a step of ``dt_days`` days (see module docstring)."""
    if dt_days == 1.0:
        return dict(params)
    out = dict(params)
    for name in AMOUNT_RATES:
        if name in out:
            out[name] = out[name] * dt_days
    for name in FRACTION_RATES:
        if name in out:
            out[name] = 1.0 - (1.0 - out[name]) ** dt_days
    return out


def step(
    state: HbvState,
    precip: torch.Tensor,
    temp: torch.Tensor,
    pet: torch.Tensor,
    params: dict[str, torch.Tensor],
    capillary: bool = False,
) -> tuple[HbvState, HbvFluxes]:
    """One HBV step.

    ``precip`` and ``pet`` are mm per step, ``temp`` is °C, each ``(n_units,)`` or ``(n_units, nmul)``.
    ``params`` maps parameter name → tensor broadcastable to ``(n_units, nmul)``, already scaled to the step with
    :func:`scale_rates`.  ``capillary`` switches on the δHBV 1.1p capillary rise (needs ``params['C']``).
    numpy arrays in place of tensors (all of them) run the same equations in numpy (see :mod:`.arrays`).
    """
    snowpack, meltwater, sm, suz, slz = state
    xp = ops(precip)  # torch tensors: torch; numpy arrays (inference on tiny problems): the same equations in numpy
    if precip.ndim == 1:
        precip = precip[:, None]
        temp = temp[:, None]
        pet = pet[:, None]
    p = params
    tt = p["TT"]

    # 1. partition precipitation
    rain = xp.where0(temp >= tt, precip)
    snow = precip - rain

    # 2. snow
    snowpack = snowpack + snow
    melt = xp.minimum(xp.clamp(p["CFMAX"] * (temp - tt), 0.0), snowpack)
    meltwater = meltwater + melt
    snowpack = snowpack - melt
    refreeze = xp.minimum(xp.clamp(p["CFR"] * p["CFMAX"] * (tt - temp), 0.0), meltwater)
    snowpack = snowpack + refreeze
    meltwater = meltwater - refreeze
    tosoil = xp.clamp(meltwater - p["CWH"] * snowpack, 0.0)
    meltwater = meltwater - tosoil

    # 3. soil
    fc = p["FC"]
    wet = xp.clamp((sm / fc) ** p["BETA"], 0.0, 1.0)
    infil = rain + tosoil
    recharge = infil * wet
    sm = sm + infil - recharge
    excess = xp.clamp(sm - fc, 0.0)
    sm = sm - excess

    # 4. evapotranspiration, with an explicit leak for the soil-moisture floor
    ef = xp.clamp((sm / (p["LP"] * fc)) ** p["BETAET"], 0.0, 1.0)
    et = xp.minimum(sm, pet * ef)
    sm_after = sm - et
    sm = xp.clamp(sm_after, SM_FLOOR)
    leak = sm - sm_after

    # 5. capillary rise (δHBV 1.1p)
    if capillary:
        cap = xp.minimum(slz, p["C"] * slz * (1.0 - xp.clamp(sm / fc, None, 1.0)))
        sm = sm + cap
        slz = slz - cap
    else:
        cap = xp.zeros_like(sm)

    # 6. response routine
    suz = suz + recharge + excess
    perc = xp.minimum(suz, p["PERC"])
    suz = suz - perc
    q0 = p["K0"] * xp.clamp(suz - p["UZL"], 0.0)
    suz = suz - q0
    q1 = p["K1"] * suz
    suz = suz - q1
    slz = slz + perc
    q2 = p["K2"] * slz
    slz = slz - q2

    new_state = HbvState(snowpack, meltwater, sm, suz, slz)
    fluxes = HbvFluxes(q0 + q1 + q2, q0, q1, q2, et, leak, recharge, excess, perc, cap)
    return new_state, fluxes
