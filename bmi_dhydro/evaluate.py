"""Skill of a checkpoint over many CAMELS basins (``dhydro evaluate``): the table and plot in the README.

Runs the model continuously over the period after a warm-up (the same ``simulate`` as training, in chunks of
basins), and writes to ``--out``:

* ``metrics.csv`` — per basin: NSE, KGE, PBIAS, FHV, FLV (Yilmaz et al. 2008), HUC-02 region and whether the
  checkpoint trained on the basin (``role``: train / validation (held out) / unseen);
* ``summary.md`` — median and mean NSE and KGE, median FHV and FLV, by role and by HUC-02 region;
* ``nse_cdf.png`` — the NSE distribution (empirical CDF) by role.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ._extras import optional_pyplot
from .checkpoint import load_checkpoint
from .datasets import open_camels
from .metrics import skill_table
from .train import simulate
from .safe_io import atomic_write_text, save_figure

KEYS = ("nse", "kge", "pbias", "fhv", "flv")


def checkpoint_product(payload: dict) -> str:
    """The forcing product a checkpoint was trained on (``nldas`` for checkpoints that do not say)."""
    data = (payload.get("provenance") or {}).get("data") or {}
    if data.get("product"):
        return str(data["product"])
    src = str(data.get("source", "")).lower()
    for p in ("daymet", "maurer_extended", "maurer", "nldas"):
        if p in src:
            return p
    return "nldas"


def _roles(payload, basins):
    data = (payload.get("provenance") or {}).get("data") or {}
    tr = set(data.get("train_basins") or data.get("basins") or [])
    va = set(data.get("validation_basins") or [])
    return ["validation" if b in va else "train" if b in tr else "unseen" for b in basins]


def _stats(rows, key):
    v = np.array([r[key] for r in rows], dtype=float)
    v = v[np.isfinite(v)]
    return (float(np.median(v)), float(np.mean(v)), v.size) if v.size else (math.nan, math.nan, 0)


def evaluate_checkpoint(checkpoint=None, data=None, basins=None, period=("1995-10-01", "2010-09-30"), warmup_days=365,
                        product=None, out="dhydro_eval", chunk=64, progress=True) -> dict:
    model, payload = load_checkpoint(checkpoint)
    product = product or checkpoint_product(payload)
    t0 = np.datetime64(period[0]) - np.timedelta64(warmup_days, "D")
    ds = open_camels(data, basins, product, model.config.attributes, start=str(t0), end=period[1])
    ids = [str(b) for b in ds.basin.values]
    rows = []
    bar = tqdm(total=len(ids), desc="evaluate", unit="basin", disable=not progress)
    torch.set_grad_enabled(False)
    try:
        for i in range(0, len(ids), chunk):
            sub = ds.isel(basin=slice(i, i + chunk))
            res, _ = simulate(model, sub, period[0], period[1], warmup_days, outputs=("runoff",))
            obs = sub["qobs"].sel(time=slice(*period)).transpose("basin", "time").to_numpy()
            rows += skill_table(res["runoff"], obs, ids[i : i + chunk], extended=True)
            bar.update(len(ids[i : i + chunk]))
    finally:
        torch.set_grad_enabled(True)
        bar.close()
    hucs = [str(h) for h in ds["huc_02"].values]
    roles = _roles(payload, ids)
    for r, h, role in zip(rows, hucs, roles):
        r.update(huc_02=h, role=role)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _write_csv(out / "metrics.csv", rows)
    summary = summary_markdown(rows, period, checkpoint, product)
    atomic_write_text(out / "summary.md", summary, "summary")
    wrote_png = nse_cdf_png(out / "nse_cdf.png", rows)
    if progress:
        print(summary)
        print(f"wrote {out / 'metrics.csv'}, {out / 'summary.md'}" + (f" and {out / 'nse_cdf.png'}" if wrote_png else ""))
    return {"rows": rows, "summary": summary}


def _write_csv(path, rows):
    keys = ["basin", "huc_02", "role", *KEYS, "n_obs"]
    tmp = Path(str(path) + ".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{r[k]:.4f}" if isinstance(r[k], float) else r[k]) for k in keys})
    tmp.replace(path)


def summary_markdown(rows, period, checkpoint, product) -> str:
    lines = [f"Checkpoint `{checkpoint or 'bundled default'}`, {product} forcing, {period[0]}..{period[1]} "
             f"(365-day warm-up before it), daily streamflow.", "",
             "| basins | n | median NSE | mean NSE | median KGE | mean KGE | median FHV % | median FLV % |",
             "|---|---|---|---|---|---|---|---|"]
    groups = [("all", rows)] + [(role, [r for r in rows if r["role"] == role]) for role in ("train", "validation", "unseen")]
    for name, rs in groups:
        if not rs:
            continue
        mn, an, n = _stats(rs, "nse")
        mk, ak, _ = _stats(rs, "kge")
        lines.append(f"| {name} | {n} | {mn:.3f} | {an:.3f} | {mk:.3f} | {ak:.3f} | {_stats(rs, 'fhv')[0]:.1f} | "
                     f"{_stats(rs, 'flv')[0]:.1f} |")
    lines += ["", "Medians per HUC-02 region (all basins):", "", "| HUC-02 | n | median NSE | median KGE |", "|---|---|---|---|"]
    for h in sorted({r["huc_02"] for r in rows}):
        rs = [r for r in rows if r["huc_02"] == h]
        mn, _, n = _stats(rs, "nse")
        lines.append(f"| {h or '?'} | {n} | {mn:.3f} | {_stats(rs, 'kge')[0]:.3f} |")
    return "\n".join(lines) + "\n"


def nse_cdf_png(path, rows) -> bool:
    """The NSE distribution by role; False (and one warning) when matplotlib (the 'plot' extra) is missing."""
    plt = optional_pyplot("the NSE plot (nse_cdf.png)")
    if plt is None:
        return False

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for role, color in (("all", "black"), ("train", "tab:blue"), ("validation", "tab:orange"), ("unseen", "tab:green")):
        rs = rows if role == "all" else [r for r in rows if r["role"] == role]
        v = np.sort([r["nse"] for r in rs if np.isfinite(r["nse"])])
        if v.size == 0 or (role != "all" and len(rs) == len(rows)):
            continue
        ax.step(v, np.arange(1, v.size + 1) / v.size, where="post", color=color,
                label=f"{role} (n={v.size}, median {np.median(v):.2f})")
    ax.axvline(0.73, color="gray", ls=":", lw=1, label="published δHBV median (0.73)")
    ax.set_xlim(-0.5, 1.0)
    ax.set_xlabel("NSE (daily streamflow)")
    ax.set_ylabel("fraction of basins")
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)
    return True
