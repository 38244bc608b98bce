"""Gamma unit-hydrograph routing (pure torch; the per-step functions also take numpy arrays).

Shape a = relu(route_a) + 0.1 and scale θ = relu(route_b) + 0.5 (days).  The gamma density
``t^(a-1) exp(-t/θ)`` is evaluated at the step mid-points t = (k + 0.5)·dt for k = 0..L-1 (with dt = 1 day this
is t = 0.5, 1.5, …, L − 0.5) and normalised to sum to one, so routing conserves volume: what enters the
convolution leaves it, delayed.  The normalisation is done in log space (a softmax), which is exact and cannot
overflow.  L covers 15 days whatever the step (15 steps at a daily step).

Two equivalent ways to apply it:

* :func:`route_sequence` — causal convolution over a whole series (training, batch runs);
* :func:`route_step` — step-wise with a buffer of the last L unrouted inputs as state (BMI).  Both give the same
  numbers (tested to 1e-12 in float64).  Like the HBV step it also runs on numpy arrays (see :mod:`.arrays`).

The water "in flight" (entered but not yet released) is :func:`in_flight`; it is part of the stored mass.
"""

from __future__ import annotations

import numpy as np
import torch

from .arrays import ops

ROUTE_BOUNDS = {"route_a": (0.0, 2.9), "route_b": (0.0, 6.5)}
ROUTE_UNITS = {"route_a": "1", "route_b": "d"}
UH_DAYS = 15.0


def uh_length(dt_days: float) -> int:
    """Number of unit-hydrograph ordinates for a step of ``dt_days`` (15 at a daily step)."""
    return max(1, int(round(UH_DAYS / dt_days)))


def gamma_uh(route_a: torch.Tensor, route_b: torch.Tensor, length: int, dt_days: float = 1.0,
             center_days: float = 0.0) -> torch.Tensor:
    """Unit-hydrograph weights ``(n_units, length)`` summing to one along the last axis.

    ``center_days`` (sub-daily steps of a daily-trained model): the daily weights ``w_j ∝ g(j + 0.5)`` are the
    fractions of a day's runoff that leave j days later, counted between the days' centres; the equivalent kernel
    over the lag τ at a finer step is ``g(τ + center_days)`` for τ ≥ −center_days.  Ordinates are evaluated at
    ``(k + 0.5)·dt + center_days`` for k = −m..length−1 (m = center_days / dt, rounded), normalised together, and
    the part at negative lags is released in the first step (causal).  With center_days = 0 (the default) this is
    the plain mid-point rule above."""
    a = torch.relu(route_a) + 0.1
    theta = torch.relu(route_b) + 0.5
    m = int(round(center_days / dt_days)) if center_days else 0
    t = (torch.arange(-m, length, dtype=a.dtype, device=a.device) + 0.5) * dt_days + center_days
    logw = (a.unsqueeze(-1) - 1.0) * torch.log(t) - t / theta.unsqueeze(-1)
    w = torch.softmax(logw, dim=-1)
    if m:
        w = torch.cat([w[..., : m + 1].sum(-1, keepdim=True), w[..., m + 1:]], dim=-1)
    return w


def route_sequence(q: torch.Tensor, weights: torch.Tensor, buffer: torch.Tensor | None = None):
    """Causal convolution of ``q`` (time, n_units) with ``weights`` (n_units, L).

    ``buffer`` (n_units, L) holds the previous L inputs, newest last (zeros for a cold start).  Returns
    ``(routed (time, n_units), new_buffer)``.
    """
    n_t, n = q.shape
    length = weights.shape[-1]
    if buffer is None:
        buffer = q.new_zeros((n, length))
    # history newest-last followed by the new inputs: (n, L + T)
    hist = torch.cat([buffer, q.transpose(0, 1)], dim=1)
    # output at time t (0-based) = sum_k w_k * x[L + t - k]
    windows = hist.unfold(1, length, 1)[:, 1:, :]  # (n, T, L), window j covers x[j+1 .. j+L]
    routed = (windows * weights.flip(-1).unsqueeze(1)).sum(-1)  # (n, T)
    return routed.transpose(0, 1), hist[:, -length:]


def route_step(q: torch.Tensor, weights: torch.Tensor, buffer: torch.Tensor):
    """One step: push ``q`` (n_units,) into ``buffer`` (n_units, L, newest last) and return ``(routed, buffer)``."""
    xp = ops(q)
    buffer = xp.cat([buffer[:, 1:], q[:, None]], 1)
    routed = xp.sum(buffer * xp.flip(weights))
    return routed, buffer


def in_flight_weights(weights: torch.Tensor) -> torch.Tensor:
    """``tail`` (n_units, L): ``tail[:, j]`` is the part of an input j steps ago still to be released (ordinates
    j+1..L-1).  Depends on the weights only: callers stepping many times compute it once (see :func:`in_flight`)."""
    xp = ops(weights)
    remaining = xp.flip(xp.cumsum(xp.flip(weights)))  # remaining[k] = sum_{i>=k} w_i
    return xp.cat([remaining[:, 1:], xp.zeros_like(remaining[:, :1])], -1)


def in_flight(weights: torch.Tensor, buffer: torch.Tensor, tail: torch.Tensor | None = None) -> torch.Tensor:
    """Water (mm) that has entered the routing but not yet left it, per unit.

    The input j steps ago (buffer[:, -1 - j]) has released ordinates 0..j; what remains is the sum of ordinates
    j+1..L-1.  ``tail`` is :func:`in_flight_weights` of ``weights`` when the caller has it already.
    """
    if tail is None:
        tail = in_flight_weights(weights)
    xp = ops(buffer)
    return xp.sum(xp.flip(buffer) * tail)


def step_matrix(weights):
    """``(n_units, L, 2)`` numpy: the unit hydrograph and :func:`in_flight_weights`, both oldest-first, for
    :func:`route_step_in_flight` (depends on the weights only: callers stepping many times compute it once)."""
    return np.ascontiguousarray(np.stack([weights[:, ::-1], in_flight_weights(weights)[:, ::-1]], -1))


def route_step_in_flight(q, buffer, matrix):
    """:func:`route_step` and :func:`in_flight` of the new buffer in one product (numpy; ``matrix`` from
    :func:`step_matrix`): for one catchment stepping hourly, where each numpy call costs more than its arithmetic.
    Returns ``(routed, new_buffer, in_flight)``; equal to the two calls to rounding."""
    new = np.empty_like(buffer)
    new[:, :-1] = buffer[:, 1:]
    new[:, -1] = q
    both = np.matmul(new[:, None, :], matrix)[:, 0]
    return both[:, 0], new, both[:, 1]
