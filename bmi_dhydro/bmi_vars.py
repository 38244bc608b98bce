"""The BMI's variables and the rules their values must follow: two declared tables, one place.

* The **variable table** (:data:`INPUT_VARS`, :data:`OUTPUT_VARS`, :data:`MASS_TABLE`, :data:`SER_TABLE`, and the
  parameters, which come from the physics table) generates every metadata method of
  :class:`~bmi_dhydro.bmi.BmiDeltaModel`.
* The **rule table** (:data:`INPUT_RULES`) says which values an input may hold when ``update()`` reads it;
  :data:`READ_ONLY` says which roles cannot be set; parameter values follow the physics bounds
  (``physics.ALL_BOUNDS``).  Every bad-input error the BMI raises comes from this module.

A new input is one :class:`Var` in :data:`INPUT_VARS` (and a :class:`Rule` in :data:`INPUT_RULES` if its values
have a valid range); the BMI declares, allocates and checks it from these tables.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

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


#: checked in this order (the first broken rule raises); inputs not listed are not checked (PET: NaN means "unset")
INPUT_RULES = {
    PRECIP: Rule(0.0, np.inf, "finite values >= 0 mm s-1", zero_option="bad_precip"),
    TEMP: Rule(180.0, 340.0, "kelvin in 180..340 K", hint="was °C passed as K, or was the input never set?"),
    SHORTWAVE: Rule(),
    PRESSURE: Rule(),
    TMAX: Rule(180.0, 340.0, "kelvin in 180..340 K, or NaN (not given)", hint="was °C passed as K?", nan_ok=True),
    TMIN: Rule(180.0, 340.0, "kelvin in 180..340 K, or NaN (not given)", hint="was °C passed as K?", nan_ok=True),
}

#: roles whose variables cannot be set, and why
READ_ONLY = {
    "output": "{name} is an output; outputs are read-only",
    "mass": "mass-balance variables are read-only",
}
NETWORK_PARAMETERS_READ_ONLY = ("parameters come from the network in checkpoint mode and are read-only; "
                                "use fixed-parameter mode (model.parameters) to set them")

_MIN, _MAX = np.minimum.reduce, np.maximum.reduce
_INF = float("inf")


def rules_for(inputs) -> tuple[tuple[str, Rule], ...]:
    """The (name, rule) pairs that apply to a configuration's inputs, in rule-table order."""
    return tuple((n, r) for n, r in INPUT_RULES.items() if n in inputs)


def _all_ok(v: np.ndarray, r: Rule) -> bool:
    """Fast check (NaN fails every comparison); the slow path below names the problem."""
    if r.nan_ok:
        return bool(np.all(np.isnan(v) | ((v >= r.lo) & (v <= r.hi))))
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


def steps_until(time: float, now: float, dt: float) -> int:
    """Framework steps from ``now`` to ``time`` (``update_until``): a finite time, not in the past, a whole number of
    steps away."""
    if not np.isfinite(time):
        raise ValueError(f"update_until: expected a finite time in s, got {time}")
    if time < now - 1e-9:
        raise ValueError(f"update_until: time {time} s is before the current time {now} s")
    n = (time - now) / dt
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
