"""Shared pieces of the scripts in tests/mpi (run under ``mpiexec``).

The workload is a small bucket model that uses only IEEE-754 correctly
rounded operations (+, -, *, /, sqrt, min, max) element by element over
units, so each unit's result is bit-for-bit independent of which other units
share its array: any difference between a parallel and a serial run can only
come from the exchange itself.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def make_domain(n_units: int, seed: int = 7):
    """Unit ids, a cat -> nex -> cat network (a random forest), and areas."""
    rng = np.random.default_rng(seed)
    ids = [f"cat-{i:05d}" for i in range(n_units)]
    toid: dict = {}
    for i, u in enumerate(ids):
        nex = f"nex-{i:05d}"
        toid[u] = nex
        # drain into a later unit (keeps the network acyclic) or leave the domain
        if i < n_units - 1 and rng.random() < 0.85:
            j = int(rng.integers(i + 1, min(n_units, i + 40)))
            toid[nex] = ids[j]
        else:
            toid[nex] = "NA"
    area = rng.uniform(2.0, 40.0, n_units)
    return ids, toid, area


def make_inputs(n_units: int, n_steps: int, seed: int = 11):
    """Forcing (n, T, 2) [precip, pet] and parameters (n, 3), float64."""
    rng = np.random.default_rng(seed)
    forcing = np.empty((n_units, n_steps, 2))
    forcing[..., 0] = rng.gamma(0.4, 6.0, (n_units, n_steps))
    forcing[..., 1] = rng.uniform(0.0, 5.0, (n_units, n_steps))
    params = np.column_stack(
        [rng.uniform(50.0, 300.0, n_units), rng.uniform(0.01, 0.3, n_units), rng.uniform(0.1, 0.9, n_units)]
    )
    return forcing, params


def bucket_step(state, forcing_t, params):
    """One time step for all given units; returns (new_state, runoff)."""
    cap, k, frac = params[:, 0], params[:, 1], params[:, 2]
    s = state + forcing_t[:, 0]
    over = np.maximum(s - cap, 0.0)
    s = s - over
    et = np.minimum(forcing_t[:, 1] * (s / cap), s)
    s = s - et
    q = k * s
    s = s - q
    return s, q + over * frac + np.sqrt(s) / 100.0


def bucket_model(forcing, params):
    n, T, _ = forcing.shape
    state = np.zeros(n)
    out = np.empty((n, T))
    for t in range(T):
        state, out[:, t] = bucket_step(state, forcing[:, t, :], params)
    return out


def write_json(path: str, obj) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=1, default=str)
    os.replace(tmp, path)
