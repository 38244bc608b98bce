"""Unit conversion between BMI variables through pint (UDUNITS-style strings such as ``mm s-1``, ``m3 s-1``,
``kg m-2 s-1``, ``K``, ``degC``).  Water mass fluxes (``kg m-2 s-1``) convert to depth rates (``mm s-1``) with
the density of liquid water, 1000 kg m-3, which is what hydrologic forcing means by them."""

from __future__ import annotations

import functools
import re

import numpy as np

_EXP = re.compile(r"(?<![\w*^])([A-Za-z_]+)(-?\d+)(?![\w.])")


def _udunits_to_pint(u: str) -> str:
    u = u.strip()
    if u in ("", "1", "-", "none", "dimensionless"):
        return "dimensionless"
    u = u.replace("^", "**")
    # "m3 s-1" -> "m**3 s**-1"
    u = _EXP.sub(lambda m: f"{m.group(1)}**{m.group(2)}", u)
    return " * ".join(u.split())


@functools.lru_cache(maxsize=1)
def _registry():
    import pint

    ureg = pint.UnitRegistry()
    ureg.define("degC_udunits = kelvin; offset: 273.15 = degree_Celsius_udunits")
    return ureg


@functools.lru_cache(maxsize=256)
def converter(src: str, dst: str):
    """A function converting arrays from ``src`` to ``dst`` units; raises ValueError naming both if impossible."""
    if src.strip() == dst.strip():
        return lambda x: x
    ureg = _registry()
    try:
        us = ureg.parse_units(_udunits_to_pint(src))
        ud = ureg.parse_units(_udunits_to_pint(dst))
    except Exception as exc:
        raise ValueError(f"units: cannot parse {src!r} or {dst!r}: {exc}") from exc
    q = ureg.Quantity
    try:
        q(1.0, us).to(ud)
        return lambda x: q(np.asarray(x, dtype="float64"), us).to(ud).magnitude
    except Exception:
        pass
    # water mass flux/amount <-> depth: divide by the density of water
    rho = q(1000.0, "kg / m**3")
    try:
        (q(1.0, us) / rho).to(ud)
        return lambda x: (q(np.asarray(x, dtype="float64"), us) / rho).to(ud).magnitude
    except Exception:
        pass
    try:
        (q(1.0, us) * rho).to(ud)
        return lambda x: (q(np.asarray(x, dtype="float64"), us) * rho).to(ud).magnitude
    except Exception as exc:
        raise ValueError(f"units: cannot convert {src!r} to {dst!r} (incompatible dimensions)") from exc


def convert(values, src: str, dst: str):
    return converter(src, dst)(values)
