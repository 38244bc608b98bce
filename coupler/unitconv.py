"""The project's one unit parser and converter: UDUNITS-2 strings (``mm s-1``, ``m3 s-1``, ``kg m-2 s-1``,
``W m-2``, ``degC``, ``K``, ``1``, ``%``) are parsed by :data:`cf_xarray.units.units`, a maintained UDUNITS-2 /
CF parser on top of pint, so no hand-written grammar lives here.

Mass and volume are different dimensions and are never mixed silently.  A water mass flux or amount
(``kg m-2 s-1``, ``kg m-2``, ``kg s-1``) converts to a depth rate, depth or volume (``mm s-1``, ``mm``,
``m3 s-1``) only when the caller opts in with ``water_density=True`` — in a spec, the key
``water_density: true`` on the connection or forcing variable (:data:`WATER_DENSITY_KEY`); the density of
liquid water is then :data:`WATER_DENSITY` (1000 kg m-3, so 1 kg m-2 is 1 mm).  Without the opt-in such a
conversion is a :class:`UnitError` naming the variable, both units and the key to set.

Used by the coupler's connections and constants (:mod:`coupler.loop`) and by the gridded forcing component
(:mod:`coupler.components.gridded_forcing`).
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import numpy as np

__all__ = ["WATER_DENSITY", "WATER_DENSITY_KEY", "UnitError", "parse_units", "converter", "convert",
           "linear_coefficients"]

#: the spec key that allows a water mass <-> volume (depth) conversion
WATER_DENSITY_KEY = "water_density"
#: density of liquid water used by that conversion
WATER_DENSITY = (1000.0, "kg m-3")

# BMI components spell "no units" in several ways; UDUNITS-2 spells it "1"
_DIMENSIONLESS = {"", "1", "-", "none", "dimensionless", "unitless"}


class UnitError(ValueError):
    """A unit string that does not parse, or two units that do not convert."""


@functools.lru_cache(maxsize=1)
def _registry() -> Any:
    # cf_xarray.units.units: pint registry with UDUNITS-2 preprocessing (powers "m2 s-2", "%", CF aliases);
    # imported lazily, it pulls in xarray and matplotlib's unit support.  Building it, cf_xarray redefines some of
    # pint's units (percent, year, C, d, h, ...) on purpose and pint logs a warning for each: not the user's concern
    import logging

    pint_log = logging.getLogger("pint")
    level = pint_log.level
    pint_log.setLevel(logging.ERROR)
    try:
        from cf_xarray.units import units
    finally:
        pint_log.setLevel(level)
    return units


@functools.lru_cache(maxsize=512)
def _parse(text: str) -> Any:
    t = text.strip()
    ureg = _registry()
    if t.lower() in _DIMENSIONLESS:
        return ureg.dimensionless
    return ureg.parse_units(t)


def parse_units(text: str, what: str | None = None) -> Any:
    """The pint unit of the UDUNITS-2 string ``text``; a :class:`UnitError` naming it (and ``what``) if it does
    not parse."""
    if not isinstance(text, str):
        raise UnitError(f"{what + ': ' if what else ''}units must be a string, got {text!r}")
    try:
        return _parse(text)
    except Exception as exc:
        raise UnitError(f"{what + ': ' if what else ''}cannot parse units {text!r} as UDUNITS-2 "
                        f"({type(exc).__name__}: {exc})") from None


def _dims(u: Any) -> str:
    d = str(u.dimensionality)
    return "dimensionless" if d in ("", "dimensionless") else d


@functools.lru_cache(maxsize=512)
def _plan(src: str, dst: str, water_density: bool) -> tuple[str, Any, Any, Any]:
    """``(kind, us, ud, rho)`` for parsed ``src`` and ``dst``: kind is ``same``, ``direct`` (same dimension),
    ``divide`` / ``multiply`` (by the water density, allowed), ``needs_density`` (the density would do but is not
    allowed) or ``incompatible``; the caller words the error."""
    us, ud = _parse(src), _parse(dst)
    q = _registry().Quantity
    if us == ud:
        return "same", us, ud, None
    if us.dimensionality == ud.dimensionality:
        return "direct", us, ud, None
    rho = q(*WATER_DENSITY)
    if (us / rho.units).dimensionality == ud.dimensionality:
        return ("divide" if water_density else "needs_density"), us, ud, rho
    if (us * rho.units).dimensionality == ud.dimensionality:
        return ("multiply" if water_density else "needs_density"), us, ud, rho
    return "incompatible", us, ud, None


def converter(src: str, dst: str, *, water_density: bool = False, what: str | None = None,
              where: str | None = None) -> Callable[[Any], Any]:
    """A function converting array-likes (to float64 arrays) from ``src`` to ``dst`` units.

    ``water_density``: allow a water mass <-> volume conversion (divide or multiply by 1000 kg m-3).  ``what``
    names the variable in error messages, ``where`` the place of the ``water_density`` key (for instance
    ``connections[0]``).  Raises :class:`UnitError` naming the variable and both units when the units do not
    parse or do not convert, and the key to set when only the density is missing."""
    head = f"{what}: " if what else ""
    parse_units(src, what)
    parse_units(dst, what)
    kind, us, ud, rho = _plan(src, dst, bool(water_density))
    q = _registry().Quantity
    if kind == "same":
        return lambda x: np.asarray(x, dtype="float64")
    if kind == "direct":
        return lambda x: np.asarray(q(np.asarray(x, dtype="float64"), us).to(ud).magnitude, dtype="float64")
    if kind == "divide":
        return lambda x: np.asarray((q(np.asarray(x, dtype="float64"), us) / rho).to(ud).magnitude, dtype="float64")
    if kind == "multiply":
        return lambda x: np.asarray((q(np.asarray(x, dtype="float64"), us) * rho).to(ud).magnitude, dtype="float64")
    if kind == "needs_density":
        at = f" on {where}" if where else ""
        raise UnitError(f"{head}cannot convert {src!r} to {dst!r}: one is a mass and the other a volume or depth "
                        f"({_dims(us)} vs {_dims(ud)}); to convert with the density of liquid water "
                        f"({WATER_DENSITY[0]:g} {WATER_DENSITY[1]}), set '{WATER_DENSITY_KEY}: true'{at}")
    raise UnitError(f"{head}cannot convert {src!r} to {dst!r} (incompatible dimensions: {_dims(us)} vs {_dims(ud)})")


def convert(values, src: str, dst: str, *, water_density: bool = False, what: str | None = None,
            where: str | None = None):
    """``values`` (array-like) converted from ``src`` to ``dst`` units (see :func:`converter`)."""
    return converter(src, dst, water_density=water_density, what=what, where=where)(values)


def linear_coefficients(src: str, dst: str, *, water_density: bool = False, what: str | None = None,
                        where: str | None = None) -> tuple[float, float]:
    """``(a, b)`` with ``value_in_dst = a * value_in_src + b`` (every conversion here is affine: scale, offset
    for temperatures, and the water density)."""
    conv = converter(src, dst, water_density=water_density, what=what, where=where)
    b = float(conv(0.0))
    a = float(conv(1.0)) - b
    return a, b
