"""Skill metrics over the valid (non-NaN) pairs of a simulated and observed series."""

from __future__ import annotations

import numpy as np


def _valid(sim, obs):
    sim = np.asarray(sim, dtype="float64")
    obs = np.asarray(obs, dtype="float64")
    ok = np.isfinite(sim) & np.isfinite(obs)
    return sim[ok], obs[ok]


def nse(sim, obs) -> float:
    """Nash–Sutcliffe efficiency; NaN when fewer than 2 valid pairs or constant observations."""
    s, o = _valid(sim, obs)
    if o.size < 2 or np.var(o) == 0:
        return float("nan")
    return float(1.0 - np.sum((s - o) ** 2) / np.sum((o - o.mean()) ** 2))


def kge(sim, obs) -> float:
    """Kling–Gupta efficiency (Gupta et al. 2009)."""
    s, o = _valid(sim, obs)
    if o.size < 2 or o.std() == 0 or o.mean() == 0:
        return float("nan")
    r = np.corrcoef(s, o)[0, 1] if s.std() > 0 else 0.0
    alpha = s.std() / o.std()
    beta = s.mean() / o.mean()
    return float(1.0 - np.sqrt((r - 1) ** 2 + (alpha - 1) ** 2 + (beta - 1) ** 2))


def pbias(sim, obs) -> float:
    """Percent volume bias, 100·Σ(sim − obs)/Σobs."""
    s, o = _valid(sim, obs)
    if o.size == 0 or o.sum() == 0:
        return float("nan")
    return float(100.0 * (s.sum() - o.sum()) / o.sum())


def fhv(sim, obs, h: float = 0.02) -> float:
    """Percent bias of the high-flow segment of the flow-duration curve (the top ``h`` of flows; Yilmaz et al.
    2008, eq. A1): 100·Σ(sim_i − obs_i)/Σobs_i over the highest 2 % of each series, both sorted."""
    s, o = _valid(sim, obs)
    n = int(np.ceil(h * o.size))
    if n < 1:
        return float("nan")
    so, oo = np.sort(s)[::-1][:n], np.sort(o)[::-1][:n]
    if oo.sum() == 0:
        return float("nan")
    return float(100.0 * (so - oo).sum() / oo.sum())


def flv(sim, obs, l: float = 0.3, floor: float = 1e-6) -> float:  # noqa: E741
    """Percent bias of the low-flow segment of the flow-duration curve (the lowest ``l`` of flows; Yilmaz et al.
    2008, eq. A4), in log space relative to each segment's minimum; flows below ``floor`` are set to it."""
    s, o = _valid(sim, obs)
    if o.size < 2:
        return float("nan")
    s = np.maximum(s, floor)
    o = np.maximum(o, floor)
    n = max(1, int(np.ceil(l * o.size)))
    sl, ol = np.log(np.sort(s)[:n]), np.log(np.sort(o)[:n])
    qs = (sl - sl.min()).sum()
    qo = (ol - ol.min()).sum()
    if qo == 0:
        return float("nan")
    return float(-100.0 * (qs - qo) / qo)


def skill_table(sim: np.ndarray, obs: np.ndarray, names, extended: bool = False) -> list[dict]:
    """Rows {basin, nse, kge, pbias, n_obs} for (basin, time) arrays; with ``extended`` also fhv and flv."""
    rows = []
    for i, name in enumerate(names):
        s, o = sim[i], obs[i]
        row = {"basin": str(name), "nse": nse(s, o), "kge": kge(s, o), "pbias": pbias(s, o), "n_obs": int(np.isfinite(o).sum())}
        if extended:
            row.update(fhv=fhv(s, o), flv=flv(s, o))
        rows.append(row)
    return rows


def format_table(rows: list[dict]) -> str:
    lines = [f"{'basin':<10} {'NSE':>7} {'KGE':>7} {'PBIAS%':>8} {'n_obs':>6}"]
    for r in rows:
        lines.append(f"{r['basin']:<10} {r['nse']:>7.3f} {r['kge']:>7.3f} {r['pbias']:>8.1f} {r['n_obs']:>6d}")
    valid = [r for r in rows if np.isfinite(r["nse"])]
    if valid:
        lines.append(
            f"{'median':<10} {np.median([r['nse'] for r in valid]):>7.3f} {np.median([r['kge'] for r in valid]):>7.3f} "
            f"{np.median([r['pbias'] for r in valid]):>8.1f} {len(valid):>6d} basins"
        )
    return "\n".join(lines)
