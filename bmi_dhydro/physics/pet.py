"""Potential evapotranspiration (torch; numpy in, numpy out).

Arguments may be tensors, numpy arrays or numbers.  When any argument is a torch tensor the result is a tensor (other
arguments are converted to it); when none is but one is a numpy array, the same equations run in numpy and the
result is a numpy array (the BMI's per-step PET on a few units, see :mod:`.arrays`).

* :func:`hargreaves` — FAO-56 Hargreaves (Allen et al. 1998, eq. 52) from daily tmin/tmax, latitude and day of
  year.  It needs a real daily temperature range; the CAMELS NLDAS and Maurer files carry ``tmax == tmin``, for
  which Hargreaves would silently return zero, so it raises instead.  Real data have days with ``tmax < tmin``
  (Daymet: 2,674 basin-days in 76 of 515 CAMELS basins, from interpolation of separately gridded extremes): on
  those days the two are swapped, i.e. the range is ``|tmax − tmin|`` and the mean unchanged
  (:func:`count_inverted` counts them; the CAMELS reader logs the count).
* :func:`hamon` — Hamon (1961) in the form of Lu et al. (2005, JAWRA 41(3)), from mean air temperature and day
  length only: works without a temperature range.  This is the bundled model's PET method.
* :func:`priestley_taylor` — Priestley & Taylor (1972) from incoming shortwave radiation, air temperature and
  pressure (net longwave neglected, albedo 0.23), for forcings with radiation (AORC, NLDAS).

All return mm per day; multiply by the step length in days for mm per step.
"""

from __future__ import annotations

import math

from .arrays import ops

GSC = 0.0820  # solar constant, MJ m-2 min-1


def _solar_geometry(xp, lat_deg, doy):
    phi = xp.deg2rad(lat_deg)
    j = doy
    dr = 1.0 + 0.033 * xp.cos(2.0 * math.pi / 365.0 * j)
    delta = 0.409 * xp.sin(2.0 * math.pi / 365.0 * j - 1.39)
    ws = xp.arccos(xp.clamp(-xp.tan(phi) * xp.tan(delta), -1.0, 1.0))
    return phi, dr, delta, ws


def extraterrestrial_radiation(lat_deg, doy):
    """Ra in MJ m-2 d-1 (FAO-56 eq. 21)."""
    xp = ops(lat_deg, doy)
    lat_deg = xp.as_array(lat_deg, None)
    doy = xp.as_array(doy, lat_deg)
    phi, dr, delta, ws = _solar_geometry(xp, lat_deg, doy)
    return (24.0 * 60.0 / math.pi) * GSC * dr * (
        ws * xp.sin(phi) * xp.sin(delta) + xp.cos(phi) * xp.cos(delta) * xp.sin(ws)
    )


def daylength_hours(lat_deg, doy):
    """Daylight hours N (FAO-56 eq. 34)."""
    xp = ops(lat_deg, doy)
    lat_deg = xp.as_array(lat_deg, None)
    doy = xp.as_array(doy, lat_deg)
    _, _, _, ws = _solar_geometry(xp, lat_deg, doy)
    return 24.0 / math.pi * ws


def count_inverted(tmin, tmax) -> int:
    """Number of steps with ``tmax < tmin`` (which :func:`hargreaves` swaps)."""
    xp = ops(tmin, tmax)
    d = xp.as_array(tmax, None) - xp.as_array(tmin, None)
    return int((d < 0).sum())


def hargreaves(tmin, tmax, lat_deg, doy):
    """FAO-56 Hargreaves PET (mm d-1).  Raises ValueError when tmax == tmin everywhere (no temperature range).

    Days with ``tmax < tmin`` are taken as swapped: the range is ``|tmax − tmin|``."""
    xp = ops(tmin, tmax, lat_deg, doy)
    tmin = xp.as_array(tmin, None)
    tmax = xp.as_array(tmax, tmin)
    lat_deg = xp.as_array(lat_deg, tmin)
    doy = xp.as_array(doy, tmin)
    trange = tmax - tmin
    if xp.numel(trange) and bool((abs(trange) < 1e-6).all()):
        raise ValueError(
            "hargreaves PET: expected a daily temperature range (tmax > tmin), got tmax == tmin on every step "
            "(as in the CAMELS NLDAS and Maurer files); use pet_method 'hamon' or 'priestley_taylor'"
        )
    trange = abs(trange)  # documented rule: tmax < tmin is taken as swapped
    ra = extraterrestrial_radiation(lat_deg, doy)
    tmean = 0.5 * (tmax + tmin)
    pet = 0.0023 * 0.408 * ra * (tmean + 17.8) * xp.sqrt(trange)
    return xp.clamp(pet, 0.0)


def saturation_vapour_pressure(temp_c):
    """e_s in kPa (FAO-56 eq. 11)."""
    return 0.6108 * ops(temp_c).exp(17.27 * temp_c / (temp_c + 237.3))


def hamon(temp_c, lat_deg, doy, coefficient: float = 1.0, daylength=None):
    """Hamon PET (mm d-1), Lu et al. (2005): PET = 0.1651 · Ld · ρ_sat · k, with Ld the day length in units of 12 h
    and ρ_sat = 216.7 e_s / (T + 273.3) the saturated vapour density (g m-3, e_s in hPa).

    ``daylength``: :func:`daylength_hours` of ``lat_deg`` and ``doy`` when the caller has it (it depends on the
    place and the day only; a stepper caches it per day of year)."""
    xp = ops(temp_c, lat_deg, doy)
    temp_c = xp.as_array(temp_c, None)
    if daylength is None:
        lat_deg = xp.as_array(lat_deg, temp_c)
        doy = xp.as_array(doy, temp_c)
        daylength = daylength_hours(lat_deg, doy)
    return hamon_from_factor(temp_c, hamon_day_factor(daylength, coefficient))


def hamon_day_factor(daylength, coefficient: float = 1.0):
    """The part of :func:`hamon` that depends on the place and the day only: ``coefficient · 0.1651 · Ld``
    (``daylength`` in hours).  Callers stepping many times a day compute it once a day."""
    return coefficient * 0.1651 * (daylength / 12.0)


def hamon_from_factor(temp_c, factor):
    """:func:`hamon` (mm d-1) from its day factor (:func:`hamon_day_factor`) and the temperature (°C)."""
    if isinstance(temp_c, float):  # one value (one catchment stepping hourly): Python floats, no array calls
        es_hpa = 10.0 * (0.6108 * math.exp(17.27 * temp_c / (temp_c + 237.3)))
    else:
        es_hpa = 10.0 * saturation_vapour_pressure(temp_c)
    rho_sat = 216.7 * es_hpa / (temp_c + 273.3)
    return factor * rho_sat


def priestley_taylor(shortwave_wm2, temp_c, pressure_pa, alpha: float = 1.26, albedo: float = 0.23):
    """Priestley–Taylor PET (mm d-1) from mean incoming shortwave (W m-2), temperature (°C) and pressure (Pa).

    Net radiation is approximated by the net shortwave (1 − albedo)·Rs; soil heat flux is neglected at a daily
    step.  Negative values are clipped to zero.
    """
    xp = ops(shortwave_wm2, temp_c, pressure_pa)
    rs = xp.as_array(shortwave_wm2, None)
    temp_c = xp.as_array(temp_c, rs)
    pressure_pa = xp.as_array(pressure_pa, rs)
    rn = (1.0 - albedo) * rs * 0.0864  # MJ m-2 d-1
    es = saturation_vapour_pressure(temp_c)
    slope = 4098.0 * es / (temp_c + 237.3) ** 2  # kPa/°C
    gamma = 0.000665 * pressure_pa / 1000.0  # kPa/°C
    lam = 2.501 - 0.002361 * temp_c  # MJ/kg
    pet = alpha * slope / (slope + gamma) * rn / lam
    return xp.clamp(pet, 0.0)


#: Registry of PET methods by config name → (function, required forcing names).
PET_METHODS = {
    "hamon": (hamon, ("temp", "lat", "doy")),
    "hargreaves": (hargreaves, ("tmin", "tmax", "lat", "doy")),
    "priestley_taylor": (priestley_taylor, ("shortwave", "temp", "pressure")),
}
