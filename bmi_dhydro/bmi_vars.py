"""The BMI's variables and the rules their values must follow: two declared tables, one place.

* The **variable table** (:data:`INPUT_VARS`, :data:`OUTPUT_VARS`, :data:`MASS_TABLE`, :data:`SER_TABLE`, and the
  parameters, which come from the physics table) generates every metadata method of
  :class:`~bmi_dhydro.bmi.BmiDeltaModel`.
* The **rule table** (:data:`INPUT_RULES`) says which values an input may hold when ``update()`` reads it;
  :data:`READ_ONLY` says which roles cannot be set; parameter values follow the physics bounds
  (``physics.ALL_BOUNDS``).  Every bad-input error the BMI raises comes from this module.
* Beside it, the physical ranges of everything else that enters or leaves the model: the unit attributes
  (:data:`UNIT_RULES`: area > 0, |lat| <= 90), restart states (:data:`STATE_RULES`: finite, stores within bounds)
  and outputs (:func:`check_outputs`: finite).  Precipitation has a plausibility bound (``max_precip_rate`` in
  the BMI config) that catches unit mix-ups (a rate per hour given as per second is 3600x too large).

A new input is one :class:`Var` in :data:`INPUT_VARS` (and a :class:`Rule` in :data:`INPUT_RULES` if its values
have a valid range); the BMI declares, allocates and checks it from these tables.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace

import numpy as np

from . import physics
from .forcing import PET, PRECIP, PRESSURE, SHORTWAVE, TEMP, TMAX, TMIN

# ---------------------------------------------------------------------------------------------------------------
# The variable table


@dataclass(frozen=True)
class Var:
    name: str
    units: str
    role: str  # input | output | parameter | mass | serialization
    dtype: str = "float64"
    location: str = "node"
    doc: str = ""


RUNOFF_DEPTH = "land_surface_water__runoff_depth"
RUNOFF_FLUX = "land_surface_water__runoff_volume_flux"
ET_FLUX = "land_surface_water__evapotranspiration_volume_flux"
PET_OUT = "hbv__potential_evapotranspiration_volume_flux"
SWE = "snowpack__liquid-equivalent_depth"
STORE_VARS = {
    "snowpack": "hbv__snowpack_storage",
    "meltwater": "hbv__meltwater_storage",
    "sm": "hbv__soil_moisture_storage",
    "suz": "hbv__upper_zone_storage",
    "slz": "hbv__lower_zone_storage",
}
MASS_VARS = ("ngen::mass_in", "ngen::mass_out", "ngen::mass_stored", "ngen::mass_leaked")
SER_CREATE, SER_FREE, SER_SIZE, SER_STATE = (
    "ngen::serialization_create", "ngen::serialization_free", "ngen::serialization_size", "ngen::serialization_state")

INPUT_VARS = {
    PRECIP: Var(PRECIP, "mm s-1", "input", doc="precipitation rate"),
    TEMP: Var(TEMP, "K", "input", doc="near-surface air temperature"),
    SHORTWAVE: Var(SHORTWAVE, "W m-2", "input", doc="incoming shortwave radiation (Priestley-Taylor PET)"),
    PRESSURE: Var(PRESSURE, "Pa", "input", doc="surface air pressure (Priestley-Taylor PET)"),
    PET: Var(PET, "m s-1", "input", doc="potential evapotranspiration; overrides the internal PET where set"),
    TMAX: Var(TMAX, "K", "input", doc="maximum air temperature over the step (Hargreaves PET); optional: NaN (unset) "
                                     "uses the extremes of the temperature input over the model step"),
    TMIN: Var(TMIN, "K", "input", doc="minimum air temperature over the step (Hargreaves PET); optional, as the maximum"),
}
#: inputs every configuration has, and those the PET method adds
BASE_INPUTS = (PRECIP, TEMP)
PET_METHOD_INPUTS = {"hamon": (), "hargreaves": (TMAX, TMIN), "priestley_taylor": (SHORTWAVE, PRESSURE), "input": (PET,)}
#: inputs that may stay unset (NaN) through a run
OPTIONAL_INPUTS = (PET, TMAX, TMIN)
OUTPUT_VARS = {
    RUNOFF_DEPTH: Var(RUNOFF_DEPTH, "m", "output", doc="routed runoff depth over the last update() or update_until() call"),
    RUNOFF_FLUX: Var(RUNOFF_FLUX, "m3 s-1", "output", doc="routed runoff volume flux at the unit outlet, mean over that call"),
    ET_FLUX: Var(ET_FLUX, "m s-1", "output", doc="actual evapotranspiration, mean over the last model step"),
    PET_OUT: Var(PET_OUT, "m s-1", "output", doc="potential evapotranspiration used, mean over the last model step"),
    SWE: Var(SWE, "mm", "output", doc="snow water equivalent (snowpack + liquid water in snow)"),
    **{v: Var(v, "mm", "output", doc=f"HBV {k} store (component mean)") for k, v in STORE_VARS.items()},
}
MASS_TABLE = {n: Var(n, "m", "mass") for n in MASS_VARS}
SER_TABLE = {
    SER_CREATE: Var(SER_CREATE, "ngen::trigger", "serialization", "int32", "none"),
    SER_FREE: Var(SER_FREE, "ngen::trigger", "serialization", "int32", "none"),
    SER_SIZE: Var(SER_SIZE, "bytes", "serialization", "int64", "none"),
    SER_STATE: Var(SER_STATE, "ngen::opaque", "serialization", "uint8", "none"),
}
ITEMSIZE = {"float64": 8, "int32": 4, "int64": 8, "uint8": 1}


def declared_inputs(pet_method: str) -> tuple[str, ...]:
    return BASE_INPUTS + PET_METHOD_INPUTS[pet_method]


def declared_outputs(requested: list[str] | None) -> tuple[str, ...]:
    """The outputs a config asks for (``outputs:``; all when not given), with the runoff depth (ngen's main output)
    always first among them."""
    if requested is None:
        return tuple(OUTPUT_VARS)
    bad = [o for o in requested if o not in OUTPUT_VARS]
    if bad:
        raise ValueError(f"outputs: unknown output variables {bad}; expected among {list(OUTPUT_VARS)}")
    return tuple(requested) if RUNOFF_DEPTH in requested else (RUNOFF_DEPTH,) + tuple(requested)


def parameter_var(name: str) -> Var:
    return Var(name, physics.ALL_UNITS[name], "parameter", doc="HBV parameter (per-day rate where a rate)")


class NonFiniteOutputError(ValueError):
    """The model produced a NaN or infinite output; it never reaches the host."""


class UnknownVariableError(KeyError):
    def __str__(self):  # KeyError quotes its message; keep it readable
        return str(self.args[0])


# ---------------------------------------------------------------------------------------------------------------
# The rule table


@dataclass(frozen=True)
class Rule:
    """Values an input must hold when ``update()`` reads it: finite and within ``[lo, hi]``."""

    lo: float = -np.inf
    hi: float = np.inf
    expect: str = "finite values"  # the error message: "<name>: expected <expect>, got <value> at unit <id>"
    hint: str = ""  # appended to the message in parentheses
    zero_option: str | None = None  # config option that may turn bad values into 0 (with a warning) instead of an error
    nan_ok: bool = False  # NaN means "not given" (an optional input); other values must follow the rule
    hi_option: str | None = None  # config option that sets ``hi`` (a plausibility bound; values above it are errors)
    lo_open: bool = False  # ``lo`` itself is not allowed (area > 0)


#: checked in this order (the first broken rule raises); inputs not listed are not checked (PET: NaN means "unset")
INPUT_RULES = {
    PRECIP: Rule(0.0, np.inf, "finite values >= 0 mm s-1", zero_option="bad_precip", hi_option="max_precip_rate"),
    TEMP: Rule(180.0, 340.0, "kelvin in 180..340 K", hint="was °C passed as K, or was the input never set?"),
    SHORTWAVE: Rule(0.0, 1500.0, "W m-2 in 0..1500", hint="was a daily sum in J m-2 passed as W m-2?"),
    PRESSURE: Rule(20000.0, 120000.0, "Pa in 20000..120000", hint="was hPa or kPa passed as Pa?"),
    TMAX: Rule(180.0, 340.0, "kelvin in 180..340 K, or NaN (not given)", hint="was °C passed as K?", nan_ok=True),
    TMIN: Rule(180.0, 340.0, "kelvin in 180..340 K, or NaN (not given)", hint="was °C passed as K?", nan_ok=True),
    PET: Rule(0.0, np.inf, "finite values >= 0 m s-1, or NaN (not set: the internal PET method is used)",
              hint="negative PET would create water; infinite PET is not 'not set'", nan_ok=True),
}
#: the default of the BMI config's ``max_precip_rate`` (mm s-1): 0.1 mm s-1 = 360 mm h-1, above the world's
#: one-hour record (about 305 mm); a rate in mm h-1 (or kg m-2 per hour) given as mm s-1 is 3600x too large
MAX_PRECIP_RATE = 0.1

#: the units' attributes (:func:`check_unit_table`)
UNIT_RULES = {
    "area_km2": Rule(0.0, np.inf, "finite values > 0 km2", hint="a unit without area cannot turn depth into flux",
                     lo_open=True),
    "lat": Rule(-90.0, 90.0, "degrees north in -90..90", hint="were lat and lon swapped?"),
    "lon": Rule(-360.0, 360.0, "degrees east in -360..360"),
}

#: restart states (:func:`check_state_arrays`): HBV stores in mm, LSTM state, routing buffer, accumulators;
#: arrays not listed must be finite
STATE_RULES = {
    **{f"hbv_{n}": Rule(0.0, 1e6, "finite storage in 0..1e6 mm") for n in physics.STATE_NAMES},
    "lstm_h": Rule(-1.0, 1.0, "finite values in -1..1 (an LSTM output)"),
    "route_buffer": Rule(0.0, 1e6, "finite runoff in 0..1e6 mm"),
}
#: accumulators that are +-inf while nothing is accumulated (the running min/max of temperature): NaN is bad
STATE_INF_OK = ("acc_tmin", "acc_tmax")

#: roles whose variables cannot be set, and why
READ_ONLY = {
    "output": "{name} is an output; outputs are read-only",
    "mass": "mass-balance variables are read-only",
}
NETWORK_PARAMETERS_READ_ONLY = ("parameters come from the network in checkpoint mode and are read-only; "
                                "use fixed-parameter mode (model.parameters) to set them")

_MIN, _MAX = np.minimum.reduce, np.maximum.reduce
_INF = float("inf")


def rules_for(inputs, cfg=None) -> tuple[tuple[str, Rule], ...]:
    """The (name, rule) pairs that apply to a configuration's inputs, in rule-table order, with the bounds the BMI
    config ``cfg`` sets (``hi_option``) filled in."""
    out = []
    for n, r in INPUT_RULES.items():
        if n in inputs:
            if r.hi_option is not None:
                r = replace(r, hi=float(getattr(cfg, r.hi_option, None) or MAX_PRECIP_RATE))
            out.append((n, r))
    return tuple(out)


def _all_ok(v: np.ndarray, r: Rule) -> bool:
    """Fast check (NaN fails every comparison); the slow path below names the problem."""
    if r.nan_ok:
        if v.size == 1:
            x = v.item()
            return x != x or (r.lo <= x <= r.hi and -_INF < x < _INF)
        return bool(np.all(np.isnan(v) | ((v >= r.lo) & (v <= r.hi) & np.isfinite(v))))
    if v.size == 1:  # one catchment (ngen): Python floats, no array operations
        x = v.item()
        return r.lo <= x <= r.hi and -_INF < x < _INF
    lo, hi = _MIN(v), _MAX(v)
    return r.lo <= lo and hi <= r.hi and -_INF < lo and hi < _INF


def check_inputs(buf: dict, rules, unit_ids, cfg, zeroed: dict) -> dict:
    """The inputs the rules cover, checked: ``{name: values}``.  A broken rule raises ``ValueError`` naming the
    input, the value and the unit, unless the rule's ``zero_option`` in the BMI config ``cfg`` is ``"zero"``: then
    the bad values become 0, with a ``RuntimeWarning``, and are counted in ``zeroed[name]``."""
    out = {}
    for name, r in rules:
        v = buf[name]
        out[name] = v if _all_ok(v, r) else _checked(name, v, r, unit_ids, cfg, zeroed)
    return out


def _checked(name: str, v: np.ndarray, r: Rule, unit_ids, cfg, zeroed: dict) -> np.ndarray:
    bad = ~(np.isfinite(v) & (v >= r.lo) & (v <= r.hi))
    if r.nan_ok:
        bad &= ~np.isnan(v)
    if not bad.any():
        return v
    if r.hi_option is not None:
        high = np.isfinite(v) & (v > r.hi)
        if high.any():  # never zeroed: a unit mix-up, not a missing value
            i = int(np.flatnonzero(high)[0])
            raise ValueError(f"{name}: {v[i]:g} at unit {unit_ids[i]!r} is above the plausibility bound "
                             f"{r.hi_option} = {r.hi:g} mm s-1 ({r.hi * 3600:g} mm h-1); was a rate per hour (or an "
                             f"hourly accumulation) passed as mm s-1? If the value is real, raise {r.hi_option} in the "
                             f"BMI config")
    if r.zero_option is not None:
        n_bad = int(bad.sum())
        ids = [unit_ids[i] for i in np.flatnonzero(bad)[:5]]
        if getattr(cfg, r.zero_option) == "error":
            raise ValueError(f"{name}: expected {r.expect}, got {n_bad} NaN or negative value(s) (units {ids}); "
                             f"set {r.zero_option}: zero to treat them as 0")
        zeroed[name] = zeroed.get(name, 0) + n_bad
        warnings.warn(f"{name}: {n_bad} NaN or negative value(s) at units {ids} treated as 0 "
                      f"({zeroed[name]} so far)", RuntimeWarning, stacklevel=4)
        return np.where(bad, 0.0, v)
    i = int(np.flatnonzero(bad)[0])
    hint = f" ({r.hint})" if r.hint else ""
    raise ValueError(f"{name}: expected {r.expect}, got {v[i]} at unit {unit_ids[i]!r}{hint}")


#: update_until refuses a target more framework steps away than this (a time it would not reach in practice)
MAX_UNTIL_STEPS = 10**8


def steps_until(time: float, now: float, dt: float, end: float | None = None) -> int:
    """Framework steps from ``now`` to ``time`` (``update_until``): a finite time, not in the past, a whole number of
    steps away, and reachable (before ``end``, the open-ended component's ``get_end_time()``, and at most
    :data:`MAX_UNTIL_STEPS` steps away)."""
    if not np.isfinite(time):
        raise ValueError(f"update_until: expected a finite time in s, got {time}")
    if end is not None and time >= end:
        raise ValueError(f"update_until: time {time:g} s is the end time of this open-ended component "
                         f"(get_end_time() = {end:g} s, a bound, not a goal), which cannot be reached; "
                         "step to a finite time of your run")
    if time < now - 1e-9:
        raise ValueError(f"update_until: time {time} s is before the current time {now} s")
    n = (time - now) / dt
    if n > MAX_UNTIL_STEPS:
        raise ValueError(f"update_until: time {time:g} s is {n:.3g} time steps of {dt:g} s away (more than "
                         f"{MAX_UNTIL_STEPS:.0e}); that cannot be reached in a run, step to a nearer time")
    if abs(n - round(n)) > 1e-9 * max(1.0, abs(n)):
        raise ValueError(f"update_until: time {time} s is not a whole number of time steps ({dt} s) from the current time {now} s")
    return int(round(n))


def check_settable(var: Var, src, model) -> np.ndarray:
    """``src`` as an array, if a variable of this role may be set (``set_value`` / ``set_value_at_indices``) on a
    BMI running ``model``."""
    name = var.name
    arr = np.asarray(src)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"set_value({name!r}): expected a numeric array (float64), got dtype {arr.dtype}")
    if var.role in READ_ONLY:
        raise ValueError(f"set_value({name!r}): " + READ_ONLY[var.role].format(name=name))
    if var.role == "parameter" and not model.is_fixed:
        raise ValueError(f"set_value({name!r}): {NETWORK_PARAMETERS_READ_ONLY}")
    return arr


def check_indices(where: str, inds, size: int, n_values: int) -> np.ndarray:
    """Integer indices into a variable of ``size`` values, one per each of ``n_values`` values."""
    inds = np.asarray(inds)
    if inds.dtype.kind not in "iu":
        raise TypeError(f"{where}: expected integer indices, got dtype {inds.dtype}")
    if n_values != inds.size:
        raise ValueError(f"{where}: {inds.size} indices but {n_values} values")
    if inds.size and (inds.min() < 0 or inds.max() >= size):
        raise IndexError(f"{where}: indices must be in 0..{size - 1}")
    return inds


def check_parameter_values(name: str, values: np.ndarray, unit_ids) -> None:
    """Fixed-parameter mode: a new value outside the physical bounds (or NaN) is refused before it is stored."""
    lo, hi = physics.ALL_BOUNDS[name]
    bad = ~((values >= lo) & (values <= hi))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"set_value({name!r}): parameter {name} expects values in [{lo}, {hi}] {physics.ALL_UNITS[name]}, "
                         f"got {values[i]} at unit {unit_ids[i]!r}; the parameter was not changed")


def check_parameter_set(values: dict) -> None:
    """A whole fixed-parameter set (torch tensors by name), before the model uses it."""
    physics.check_bounds(values)
    for r in ("route_a", "route_b"):
        lo, hi = physics.ROUTE_BOUNDS[r]
        if ((values[r] < lo) | (values[r] > hi)).any():
            raise ValueError(f"parameter {r}: expected values in [{lo}, {hi}], got {values[r].tolist()}")


def _first_bad(values, r: Rule, inf_ok: bool = False) -> int | None:
    v = np.asarray(values, dtype="float64")
    ok = (v > r.lo if r.lo_open else v >= r.lo) & (v <= r.hi)
    ok &= ~np.isnan(v) if inf_ok else np.isfinite(v)
    if inf_ok:
        ok |= np.isinf(v)
    bad = np.flatnonzero(~ok.reshape(-1))
    return None if not bad.size else int(bad[0])


def check_unit_table(units) -> None:
    """The units' area, latitude and longitude follow :data:`UNIT_RULES` (an error names the unit and the value)."""
    for key, r in UNIT_RULES.items():
        v = np.asarray(getattr(units, key), dtype="float64")
        i = _first_bad(v, r)
        if i is not None:
            hint = f" ({r.hint})" if r.hint else ""
            raise ValueError(f"units: {key} expected {r.expect}, got {v[i]} at unit {units.ids[i]!r}{hint}")


def check_state_arrays(arrays: dict, source: str) -> None:
    """A restart's arrays (a file or an ngen payload) follow :data:`STATE_RULES` before anything is loaded: finite,
    the stores within their bounds.  An error names ``source``, the variable, the value and where."""
    default = Rule(expect="finite values")
    for key, a in arrays.items():
        a = np.asarray(a)
        if a.dtype.kind not in "fiu" or key == "counters":
            continue
        r = STATE_RULES.get(key, default)
        i = _first_bad(a, r, inf_ok=key in STATE_INF_OK)
        if i is not None:
            where = np.unravel_index(i, a.shape) if a.ndim else ()
            raise ValueError(f"{source}: state variable {key} expected {r.expect}, got {a.reshape(-1)[i]} at index "
                             f"{tuple(int(x) for x in where)}; the restart is corrupt or from another model")
    c = np.asarray(arrays.get("counters", np.zeros(3, dtype="int64")))
    if c.size != 3 or (c < 0).any():
        raise ValueError(f"{source}: state variable counters expected 3 non-negative step counters, got {c.tolist()}")


def check_outputs(values: dict, unit_ids, what: str) -> None:
    """Model outputs are finite before they leave the model (``values``: name -> (n,) array)."""
    for key, v in values.items():
        v = np.asarray(v)
        if v.size == 1:
            x = v.item()
            if -_INF < x < _INF:
                continue
        elif np.isfinite(v).all():
            continue
        i = int(np.flatnonzero(~np.isfinite(v.reshape(-1)))[0])
        raise NonFiniteOutputError(f"{what}: output {key} is {v.reshape(-1)[i]} at unit {unit_ids[i]!r}; the model "
                                 "produced a non-finite value (check the inputs and parameters of this unit)")
