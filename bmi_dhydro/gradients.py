"""Gradients of a host's loss through the model over a recorded window (the BMI gradient-export extension).

A window is the sequence of model steps since :meth:`BmiDeltaModel.begin_gradient_window`: the model state at
its start and the model forcing of every model step (what the model actually saw, after the time-step
aggregation).  The host supplies adjoint seeds ``d loss / d output`` for model-step outputs and gets back
``d loss / d parameters`` (or ``d loss / d network weights``), computed by replaying the window with autograd
in float64 from the saved state — the same code path as :meth:`DeltaModel.unroll`.

Seeds (``(n_model_steps, N)`` arrays, one row per model step in the window, one column per unit):

=========================================== =========================================================
output name                                  meaning of one output value (its units)
=========================================== =========================================================
``land_surface_water__runoff_depth``        routed runoff over the model step (m)
``land_surface_water__evapotranspiration_depth``  actual ET over the model step (m)
``snowpack__liquid-equivalent_depth``       SWE at the end of the model step (mm)
``hbv__soil_moisture_storage`` etc.         the HBV store at the end of the model step (mm)
=========================================== =========================================================

Results (``wrt="parameters"``), each ``d loss / d parameter`` in (loss units) per (parameter units, per-day
values as in the BMI parameter table):

* fixed-parameter mode: ``{name: (N,)}`` for every HBV and routing parameter;
* network mode: ``{name: (N, nmul)}`` for each static parameter (one per component), ``{name: (n_steps, N,
  nmul)}`` for each dynamic parameter, and ``{route_a, route_b: (N,)}``.

``wrt="weights"`` (network mode): ``{parameter name in the state_dict: array of the same shape}``.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from . import physics
from .model import DeltaModel, ModelState
from .nn import ROUTE_NAMES

#: seedable output → (model output key, factor from model units to the seed's units)
SEED_OUTPUTS = {
    "land_surface_water__runoff_depth": ("runoff", 1e-3),
    "land_surface_water__evapotranspiration_depth": ("et", 1e-3),
    "snowpack__liquid-equivalent_depth": ("swe", 1.0),
    "hbv__snowpack_storage": ("snowpack", 1.0),
    "hbv__meltwater_storage": ("meltwater", 1.0),
    "hbv__soil_moisture_storage": ("sm", 1.0),
    "hbv__upper_zone_storage": ("suz", 1.0),
    "hbv__lower_zone_storage": ("slz", 1.0),
}


def _loss(out: dict, seeds: dict) -> torch.Tensor:
    total = 0.0
    for name, seed in seeds.items():
        key, factor = SEED_OUTPUTS[name]
        total = total + (out[key] * factor * torch.as_tensor(seed, dtype=out[key].dtype)).sum()
    return total


def window_gradients(model: DeltaModel, state0: ModelState, forcings: torch.Tensor, attributes: torch.Tensor,
                     seeds: dict, wrt: str = "parameters") -> dict:
    """Replay ``forcings`` (T, n, 3) from ``state0`` and return the gradients described in the module docstring."""
    if wrt not in ("parameters", "weights"):
        raise ValueError(f"wrt: expected 'parameters' or 'weights', got {wrt!r}")
    unknown = sorted(set(seeds) - set(SEED_OUTPUTS))
    if unknown:
        raise KeyError(f"adjoint seeds: unknown outputs {unknown}; seedable outputs: {sorted(SEED_OUTPUTS)}")
    t_len, n, _ = forcings.shape
    for name, seed in seeds.items():
        if np.shape(seed) != (t_len, n):
            raise ValueError(f"adjoint seed {name}: expected shape ({t_len}, {n}) (model steps in the window, units), "
                             f"got {np.shape(seed)}")
    m = copy.deepcopy(model).double()  # never touch the (shared) running model
    forcings = forcings.double()
    attributes = torch.as_tensor(attributes, dtype=torch.float64)
    state0 = ModelState(physics.HbvState(*(s.double() for s in state0.hbv)), state0.h.double(), state0.c.double(),
                        state0.route_buffer.double())
    if m.is_fixed:
        if wrt == "weights":
            raise ValueError("wrt='weights': a fixed-parameter model has no network weights")
        names = m.provider.param_names
        leaves = {}
        for name in tuple(names) + ROUTE_NAMES:
            v = m.provider.value(name).double()
            leaves[name] = (v.expand(n) if v.numel() == 1 else v).clone().requires_grad_(True)
        with torch.enable_grad():  # also when the host runs under torch.no_grad()
            static = {k: leaves[k].unsqueeze(-1) for k in names}
            route = {k: leaves[k] for k in ROUTE_NAMES}
            prep = m.prepared_from(static, route, attributes)
            _, out = m.unroll(state0, forcings, prep)
            _loss(out, seeds).backward()
        # a leaf the loss does not depend on (the routing parameters with routing off) has gradient 0
        return {k: (v.grad.detach().numpy().copy() if v.grad is not None else np.zeros(tuple(v.shape)))
                for k, v in leaves.items()}
    with torch.enable_grad():
        static, route, attrs_norm = m.provider.static_parameters(attributes)
        dyn, h, c = m.provider.dynamic_sequence(forcings, attrs_norm, state0.h, state0.c)
        tracked = {**static, **route, **dyn}
        for v in tracked.values():
            v.retain_grad()
        m.zero_grad(set_to_none=True)
        prep = m.prepared_from(static, route, attrs_norm)
        _, out = m.unroll(state0, forcings, prep, dynamic=(dyn, h, c))
        _loss(out, seeds).backward()
    if wrt == "weights":
        return {k: (p.grad.detach().numpy().copy() if p.grad is not None else np.zeros(tuple(p.shape)))
                for k, p in m.named_parameters()}
    return {k: v.grad.detach().numpy().copy() for k, v in tracked.items()}


# -- the window on a running stepper (the BMI's begin_gradient_window / compute_gradients) ---------------------------
def begin_window(stepper) -> ModelState:
    """Open a window on ``stepper`` at a model-step boundary (dropping any open one); returns the start state."""
    if stepper.sub != 0:
        raise ValueError(f"begin_gradient_window: call it at a model-step boundary; {stepper.sub} of {stepper.k} "
                         "framework steps of the current model step are already taken")
    state0 = stepper.state.detach()
    stepper.tape = []
    return state0


def window_size(stepper) -> int:
    """Model steps recorded in the open window (0 when none is open)."""
    tape = getattr(stepper, "tape", None)
    return 0 if tape is None else len(tape)


def stepper_gradients(stepper, state0: ModelState, seeds: dict, wrt: str = "parameters") -> dict:
    """:func:`window_gradients` over the window recorded on ``stepper`` since :func:`begin_window`."""
    if not window_size(stepper):
        raise ValueError("compute_gradients: no gradient window recorded; call begin_gradient_window, then update")
    return window_gradients(stepper.model, state0, torch.stack(stepper.tape), stepper._attrs, seeds, wrt)
