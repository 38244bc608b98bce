"""The eager baseline and the benchmark problems.

``eager_unroll`` is the plain eager way published δHBV code runs the physics: a Python loop over time that calls
:func:`bmi_dhydro.physics.hbv.step` (one torch op per equation) and averages the components.  It has the same
signature and outputs as :func:`bmi_dhydro.physics.fast.hbv_unroll`, so the benchmark runs both side by side and
the tests (``tests/test_fast_physics.py``) use it as the correctness oracle.

``make_problem`` builds a benchmark problem: real daily forcing from the CAMELS basins bundled with the package
(NLDAS, Hamon PET), tiled over ``n`` units, with random parameters spanning the physical bounds and dynamic
(time-varying) BETA and BETAET as the LSTM would produce them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from bmi_dhydro import physics

FLUX_NAMES = ("q", "q0", "q1", "q2", "et", "leak", "recharge", "excess", "perc", "capillary")


def eager_unroll(
    state: physics.HbvState,
    forcings: torch.Tensor,
    static: Mapping[str, torch.Tensor],
    dynamic: Mapping[str, torch.Tensor] | None = None,
    capillary: bool = False,
    outputs: Sequence[str] = ("q",),
) -> tuple[physics.HbvState, dict[str, torch.Tensor]]:
    """Loop over ``physics.step``; returns the end state and component means ``(T, n)`` of ``outputs``."""
    dynamic = dynamic or {}
    collected: dict[str, list[torch.Tensor]] = {k: [] for k in outputs}
    st = state
    # unbind once: indexing [t] inside the loop would make the backward O(T^2) (a full-size zero gradient per step)
    f_steps = forcings.unbind(0)
    d_steps = {k: v.unbind(0) for k, v in dynamic.items()}
    for t in range(forcings.shape[0]):
        params = dict(static)
        for k, v in d_steps.items():
            params[k] = v[t]
        f_t = f_steps[t]
        st, fl = physics.step(st, f_t[:, 0], f_t[:, 1], f_t[:, 2], params, capillary=capillary)
        for k in outputs:
            src = getattr(fl, k) if k in FLUX_NAMES else getattr(st, k)
            collected[k].append(src.mean(-1))
    n = forcings.shape[1]
    return st, {k: torch.stack(v) if v else forcings.new_zeros((0, n)) for k, v in collected.items()}


_FORCING_CACHE: dict = {}


def camels_forcing(t_len: int, start: str = "2000-10-01") -> torch.Tensor:
    """Daily forcing (t_len, 15 basins, 3) in float64 from the bundled CAMELS NLDAS files (Hamon PET)."""
    key = (t_len, start)
    if key not in _FORCING_CACHE:
        import pandas as pd

        from bmi_dhydro.datasets import model_forcings, read_camels

        end = (pd.Timestamp(start) + pd.Timedelta(days=t_len - 1)).strftime("%Y-%m-%d")
        ds = read_camels(start=start, end=end)
        f = model_forcings(ds, "hamon", dtype=torch.float64)
        f = torch.nan_to_num(f, nan=0.0)  # a basin whose record starts later: dry, 0 °C
        if f.shape[0] != t_len:
            raise RuntimeError(f"bundled CAMELS forcing: expected {t_len} days from {start}, got {f.shape[0]}")
        _FORCING_CACHE[key] = f
    return _FORCING_CACHE[key]


def make_problem(
    n: int,
    t_len: int,
    nmul: int = 16,
    dtype: torch.dtype = torch.float32,
    variant: str = "hbv1.0",
    dynamic: Sequence[str] = ("BETA", "BETAET"),
    seed: int = 0,
    forcing: str = "camels",
):
    """(state, forcings (T, n, 3), static {name: (n, nmul)}, dynamic {name: (T, n, nmul)}, capillary)."""
    g = torch.Generator().manual_seed(seed)
    if forcing == "camels":
        base = camels_forcing(t_len)
        idx = torch.arange(n) % base.shape[1]
        f = base[:, idx, :].clone()
        # jitter so the units differ: precipitation x [0.7, 1.3], temperature +- 2 K
        f[..., 0] *= 0.7 + 0.6 * torch.rand(1, n, generator=g, dtype=torch.float64)
        f[..., 1] += 4.0 * torch.rand(1, n, generator=g, dtype=torch.float64) - 2.0
    elif forcing == "synthetic":
        wet = torch.rand(t_len, n, generator=g, dtype=torch.float64) < 0.4
        f = torch.stack([
            torch.where(wet, torch.rand(t_len, n, generator=g, dtype=torch.float64) * 30.0, torch.zeros(())),
            torch.randn(t_len, n, generator=g, dtype=torch.float64) * 10.0 + 5.0,
            torch.rand(t_len, n, generator=g, dtype=torch.float64) * 6.0,
        ], dim=-1)
    else:
        raise ValueError(f"forcing: expected 'camels' or 'synthetic', got {forcing!r}")
    names = physics.VARIANT_PARAMS[variant]
    static, dyn = {}, {}
    for k in names:
        lo, hi = physics.PARAM_BOUNDS[k]
        if k in dynamic:
            dyn[k] = lo + (hi - lo) * torch.rand(t_len, n, nmul, generator=g, dtype=torch.float64)
        else:
            static[k] = lo + (hi - lo) * torch.rand(n, nmul, generator=g, dtype=torch.float64)
    state = physics.initial_state(n, nmul, dtype=dtype)
    cast = lambda d: {k: v.to(dtype) for k, v in d.items()}  # noqa: E731
    return state, f.to(dtype), cast(static), cast(dyn), variant == "hbv1.1p"
