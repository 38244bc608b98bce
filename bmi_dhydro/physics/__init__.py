"""Pure torch physics kernels: HBV, gamma unit-hydrograph routing and PET.  No config, no I/O.

The per-step kernels (``step``, ``route_step``, ``in_flight``, the PET methods) also run on numpy arrays, the
same equations (see :mod:`.arrays`)."""

from .hbv import (
    DEFAULT_DYNAMIC,
    INITIAL_STORE_MM,
    PARAM_BOUNDS,
    PARAM_UNITS,
    RATE_PARAMS,
    SM_FLOOR,
    STATE_NAMES,
    VARIANT_PARAMS,
    HbvFluxes,
    HbvState,
    check_bounds,
    descale,
    initial_state,
    scale_rates,
    step,
)
from .pet import PET_METHODS, daylength_hours, hamon, hamon_day_factor, hamon_from_factor, hargreaves, priestley_taylor
from .routing import (
    ROUTE_BOUNDS,
    ROUTE_UNITS,
    gamma_uh,
    in_flight,
    in_flight_weights,
    route_sequence,
    route_step,
    route_step_in_flight,
    step_matrix,
    uh_length,
)

ALL_BOUNDS = {**PARAM_BOUNDS, **ROUTE_BOUNDS}
ALL_UNITS = {**PARAM_UNITS, **ROUTE_UNITS}

__all__ = [
    "ALL_BOUNDS",
    "ALL_UNITS",
    "DEFAULT_DYNAMIC",
    "INITIAL_STORE_MM",
    "PARAM_BOUNDS",
    "PARAM_UNITS",
    "PET_METHODS",
    "RATE_PARAMS",
    "ROUTE_BOUNDS",
    "ROUTE_UNITS",
    "SM_FLOOR",
    "STATE_NAMES",
    "VARIANT_PARAMS",
    "HbvFluxes",
    "HbvState",
    "check_bounds",
    "daylength_hours",
    "descale",
    "gamma_uh",
    "hamon",
    "hamon_day_factor",
    "hamon_from_factor",
    "hargreaves",
    "in_flight",
    "in_flight_weights",
    "initial_state",
    "priestley_taylor",
    "route_sequence",
    "route_step",
    "route_step_in_flight",
    "step_matrix",
    "scale_rates",
    "step",
    "uh_length",
]
