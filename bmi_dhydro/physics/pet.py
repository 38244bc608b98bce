"""Potential evapotranspiration (pure torch; numpy arrays are accepted and converted).

* :func:`hargreaves` — FAO-56 Hargreaves (Allen et al. 1998, eq. 52) from daily tmin/tmax, latitude and day of
  year.  It needs a real daily temperature range; the CAMELS NLDAS and Maurer files carry ``tmax == tmin``, for
  which Hargreaves would silently return zero, so it raises instead.
* :func:`hamon` — Hamon (1961) in the form of Lu et al. (2005, JAWRA 41(3)), from mean air temperature and day
  length only: works without a temperature range.  This is the bundled model's PET method.
* :func:`priestley_taylor` — Priestley & Taylor (1972) from incoming shortwave radiation, air temperature and
  pressure (net longwave neglected, albedo 0.23), for forcings with radiation (AORC, NLDAS).

All return mm per day; multiply by the step length in days for mm per step.
"""

from __future__ import annotations

import math

import torch

GSC = 0.0820  # solar constant, MJ m-2 min-1


def _t(x, like=None):
    if isinstance(x, torch.Tensor):
        return x
    dtype = like.dtype if isinstance(like, torch.Tensor) else torch.float64
    return torch.as_tensor(x, dtype=dtype)


def _solar_geometry(lat_deg, doy):
    phi = torch.deg2rad(lat_deg)
    j = doy
    dr = 1.0 + 0.033 * torch.cos(2.0 * math.pi / 365.0 * j)
    delta = 0.409 * torch.sin(2.0 * math.pi / 365.0 * j - 1.39)
    ws = torch.arccos(torch.clamp(-torch.tan(phi) * torch.tan(delta), -1.0, 1.0))
    return phi, dr, delta, ws


def extraterrestrial_radiation(lat_deg, doy):
    """Ra in MJ m-2 d-1 (FAO-56 eq. 21)."""
    lat_deg = _t(lat_deg)
    doy = _t(doy, lat_deg)
    phi, dr, delta, ws = _solar_geometry(lat_deg, doy)
    return (24.0 * 60.0 / math.pi) * GSC * dr * (
        ws * torch.sin(phi) * torch.sin(delta) + torch.cos(phi) * torch.cos(delta) * torch.sin(ws)
    )


def daylength_hours(lat_deg, doy):
    """Daylight hours N (FAO-56 eq. 34)."""
    lat_deg = _t(lat_deg)
    doy = _t(doy, lat_deg)
    _, _, _, ws = _solar_geometry(lat_deg, doy)
    return 24.0 / math.pi * ws


def hargreaves(tmin, tmax, lat_deg, doy):
    """FAO-56 Hargreaves PET (mm d-1).  Raises ValueError when tmax == tmin everywhere (no temperature range)."""
    tmin = _t(tmin)
    tmax = _t(tmax, tmin)
    lat_deg = _t(lat_deg, tmin)
    doy = _t(doy, tmin)
    trange = tmax - tmin
    if trange.numel() and bool((trange.abs() < 1e-6).all()):
        raise ValueError(
            "hargreaves PET: expected a daily temperature range (tmax > tmin), got tmax == tmin on every step "
            "(as in the CAMELS NLDAS and Maurer files); use pet_method 'hamon' or 'priestley_taylor'"
        )
    if bool((trange < -1e-6).any()):
        raise ValueError("hargreaves PET: expected tmax >= tmin, got tmax < tmin on some steps")
    ra = extraterrestrial_radiation(lat_deg, doy)
    tmean = 0.5 * (tmax + tmin)
    pet = 0.0023 * 0.408 * ra * (tmean + 17.8) * torch.sqrt(torch.clamp(trange, min=0.0))
    return torch.clamp(pet, min=0.0)


def saturation_vapour_pressure(temp_c):
    """e_s in kPa (FAO-56 eq. 11)."""
    return 0.6108 * torch.exp(17.27 * temp_c / (temp_c + 237.3))


def hamon(temp_c, lat_deg, doy, coefficient: float = 1.0):
    """Hamon PET (mm d-1), Lu et al. (2005): PET = 0.1651 · Ld · ρ_sat · k, with Ld the day length in units of 12 h
    and ρ_sat = 216.7 e_s / (T + 273.3) the saturated vapour density (g m-3, e_s in hPa)."""
    temp_c = _t(temp_c)
    lat_deg = _t(lat_deg, temp_c)
    doy = _t(doy, temp_c)
    ld = daylength_hours(lat_deg, doy) / 12.0
    es_hpa = 10.0 * saturation_vapour_pressure(temp_c)
    rho_sat = 216.7 * es_hpa / (temp_c + 273.3)
    return coefficient * 0.1651 * ld * rho_sat


def priestley_taylor(shortwave_wm2, temp_c, pressure_pa, alpha: float = 1.26, albedo: float = 0.23):
    """Priestley–Taylor PET (mm d-1) from mean incoming shortwave (W m-2), temperature (°C) and pressure (Pa).

    Net radiation is approximated by the net shortwave (1 − albedo)·Rs; soil heat flux is neglected at a daily
    step.  Negative values are clipped to zero.
    """
    rs = _t(shortwave_wm2)
    temp_c = _t(temp_c, rs)
    pressure_pa = _t(pressure_pa, rs)
    rn = (1.0 - albedo) * rs * 0.0864  # MJ m-2 d-1
    es = saturation_vapour_pressure(temp_c)
    slope = 4098.0 * es / (temp_c + 237.3) ** 2  # kPa/°C
    gamma = 0.000665 * pressure_pa / 1000.0  # kPa/°C
    lam = 2.501 - 0.002361 * temp_c  # MJ/kg
    pet = alpha * slope / (slope + gamma) * rn / lam
    return torch.clamp(pet, min=0.0)


#: Registry of PET methods by config name → (function, required forcing names).
PET_METHODS = {
    "hamon": (hamon, ("temp", "lat", "doy")),
    "hargreaves": (hargreaves, ("tmin", "tmax", "lat", "doy")),
    "priestley_taylor": (priestley_taylor, ("shortwave", "temp", "pressure")),
}
