"""Offline gradient feedback: ``dhydro retrain --record REC --obs OBS --checkpoint CK -o NEW``.

Training windows come from the record (:mod:`coupler.record`): each starts at a recorded state snapshot (a warm
start: no warm-up is re-run) and covers ``--window`` model steps of the recorded model forcing.  The loss is
NSE*-batch against the observations (per-unit squared error normalised by the observed standard deviation),
backpropagated through the physics and the network.  Under ``mpiexec -n N`` every rank takes its units; the loss
normaliser and the gradients are summed across ranks (``Allreduce`` on numpy buffers) before every optimiser
step, so all ranks take identical steps and the result equals single-process training up to float rounding.

The new checkpoint carries its lineage: the parent checkpoint (path, sha256, provenance), the record and
observation files (sha256), the settings, and the metrics before and after on the record period.

Observations: a NetCDF with ``streamflow(time, unit)`` (or ``qobs``) and ``unit_id(unit)``, or a CSV with a
``time`` column and one column per unit id; units ``m3 s-1`` (converted with the unit area) or ``mm d-1``
(``--obs-units`` for CSV; the ``units`` attribute for NetCDF).  Times are matched to the start of the model steps.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from bmi_dhydro import physics
from bmi_dhydro.checkpoint import file_sha256, load_checkpoint, save_checkpoint
from bmi_dhydro.metrics import nse
from bmi_dhydro.model import ModelState

from .record import STATE_KEYS


def load_record(path) -> dict:
    import netCDF4

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"record: file not found: {path}")
    with netCDF4.Dataset(path) as nc:
        units = nc["time"].units
        start = pd.Timestamp(units.split("since", 1)[1].strip())
        rec = {
            "forcing": np.asarray(nc["forcing"][:], dtype="float64"),
            "runoff": np.asarray(nc["runoff"][:], dtype="float64"),
            "time": start + pd.to_timedelta(np.asarray(nc["time"][:], dtype="float64"), unit="s"),
            "unit_id": [str(u) for u in nc["unit_id"][:]],
            "area_km2": np.asarray(nc["area_km2"][:], dtype="float64"),
            "attributes": np.asarray(nc["attributes"][:], dtype="float64"),
            "attribute_name": [str(a) for a in nc["attribute_name"][:]],
            "state_step": np.asarray(nc["state_step"][:], dtype="int64"),
            "states": {k: np.asarray(nc[f"state_{k}"][:], dtype="float64") for k in STATE_KEYS},
            "attrs": {k: nc.getncattr(k) for k in nc.ncattrs()},
            "path": str(path),
        }
    if rec["forcing"].shape[0] == 0:
        raise ValueError(f"record {path}: no model step was recorded")
    return rec


def load_obs(path, unit_ids, times, area_km2, units: str | None = None) -> np.ndarray:
    """Observed streamflow as mm per day, (steps, units), NaN where missing."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"observations: file not found: {path}")
    if path.suffix.lower() in (".nc", ".nc4"):
        import xarray as xr

        with xr.open_dataset(path) as ds:
            var = "streamflow" if "streamflow" in ds else ("qobs" if "qobs" in ds else None)
            if var is None:
                raise KeyError(f"observations {path}: expected a variable streamflow or qobs, got {list(ds.data_vars)}")
            ids = [str(u) for u in ds["unit_id"].values]
            df = pd.DataFrame(ds[var].transpose("time", "unit").values, index=pd.DatetimeIndex(ds["time"].values), columns=ids)
            units = units or ds[var].attrs.get("units")
    else:
        df = pd.read_csv(path, parse_dates=["time"]).set_index("time")
        df.columns = [str(c) for c in df.columns]
    if units not in ("m3 s-1", "mm d-1"):
        raise ValueError(f"observations {path}: expected units 'm3 s-1' or 'mm d-1', got {units!r}")
    missing = [u for u in unit_ids if u not in df.columns]
    if missing:
        raise KeyError(f"observations {path}: no series for units {missing[:5]}")
    obs = df.reindex(pd.DatetimeIndex(times))[list(unit_ids)].to_numpy(dtype="float64")
    if units == "m3 s-1":
        obs = obs * 86400.0 / (np.asarray(area_km2) * 1e6) * 1000.0
    return obs


def _state(rec, snap: int, idx, dtype=torch.float64) -> ModelState:
    s = {k: torch.as_tensor(rec["states"][k][snap][idx], dtype=dtype) for k in STATE_KEYS}
    hbv = physics.HbvState(*(s[f"hbv_{n}"] for n in physics.STATE_NAMES))
    return ModelState(hbv, s["lstm_h"], s["lstm_c"], s["route_buffer"])


def simulate_record(model, rec, idx=None) -> np.ndarray:
    """Runoff (mm per model step) over the whole record from its first snapshot, (steps, units)."""
    idx = np.arange(len(rec["unit_id"])) if idx is None else idx
    forc = torch.as_tensor(rec["forcing"][:, idx], dtype=torch.float64)
    attrs = torch.as_tensor(rec["attributes"][idx], dtype=torch.float64)
    with torch.no_grad():
        _, out = model.unroll(_state(rec, 0, idx), forc, attrs, outputs=("runoff",))
    return out["runoff"].numpy()


def retrain(record, obs, checkpoint, out, epochs=20, iterations=10, window=180, lr=1e-3, seed=0, obs_units=None,
            comm=None, progress=True) -> dict:
    from .mpi import allreduce, get_comm, rank_and_size
    from .partition import partition_units

    comm = get_comm(comm)
    rank, size = rank_and_size(comm)
    rec = load_record(record)
    model, payload = load_checkpoint(checkpoint, dtype=torch.float64)
    if list(model.config.attributes) != rec["attribute_name"]:
        raise ValueError(f"retrain: the checkpoint uses attributes {model.config.attributes}, the record {rec['attribute_name']}")
    ids = rec["unit_id"]
    q_obs = load_obs(obs, ids, rec["time"], rec["area_km2"], obs_units)
    n_steps = rec["forcing"].shape[0]
    window = min(window, n_steps)
    starts = [k for k, s in enumerate(rec["state_step"]) if s + window <= n_steps]
    if not starts:
        raise ValueError(f"retrain: no recorded state has {window} model steps after it; record holds {n_steps}")
    parts = partition_units(ids, size) if size > 1 else [ids]
    pos = {u: i for i, u in enumerate(ids)}
    idx = np.array([pos[u] for u in parts[rank]])
    sd = np.array([np.nanstd(q_obs[:, i]) if np.isfinite(q_obs[:, i]).sum() > 1 else 1.0 for i in range(len(ids))])
    forc = torch.as_tensor(rec["forcing"][:, idx], dtype=torch.float64)
    attrs = torch.as_tensor(rec["attributes"][idx], dtype=torch.float64)
    y = torch.as_tensor(q_obs[:, idx], dtype=torch.float64)
    norm = torch.as_tensor((sd[idx] + 0.1) ** 2, dtype=torch.float64)

    before = simulate_record(model, rec)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    optim = torch.optim.Adam(model.parameters(), lr=lr)
    params = [p for p in model.parameters()]
    history = []
    bar = tqdm(total=epochs * iterations, desc="retraining", unit="it", disable=not progress or rank != 0)
    for epoch in range(1, epochs + 1):
        losses = []
        for _ in range(iterations):
            snap = starts[int(rng.integers(len(starts)))]  # same draw on every rank
            s0 = int(rec["state_step"][snap])
            st = _state(rec, snap, idx)
            _, sim = model.unroll(st, forc[s0 : s0 + window], attrs, outputs=("runoff",))
            yy = y[s0 : s0 + window]
            mask = torch.isfinite(yy)
            err = torch.where(mask, (sim["runoff"] - torch.where(mask, yy, 0.0)) ** 2 / norm, torch.zeros_like(yy))
            count = float(allreduce(comm, np.array([float(mask.sum())]))[0])
            loss_local = err.sum() / max(count, 1.0)
            optim.zero_grad()
            loss_local.backward()
            flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])
            flat = torch.as_tensor(allreduce(comm, flat.numpy()))
            off = 0
            for p in params:
                k = p.numel()
                p.grad = flat[off : off + k].reshape(p.shape).clone()
                off += k
            loss = float(allreduce(comm, np.array([float(loss_local.detach())]))[0])
            optim.step()
            losses.append(loss)
            bar.update(1)
            bar.set_postfix(epoch=epoch, loss=f"{np.mean(losses):.4f}")
        history.append({"epoch": epoch, "loss": float(np.mean(losses))})
    bar.close()
    after = simulate_record(model, rec)
    metrics = {
        "units": ids,
        "nse_before": [nse(before[:, i], q_obs[:, i]) for i in range(len(ids))],
        "nse_after": [nse(after[:, i], q_obs[:, i]) for i in range(len(ids))],
        "period": [str(rec["time"][0].date()), str(rec["time"][-1].date())],
    }
    result = {"history": history, "metrics": metrics, "checkpoint": str(out)}
    if rank == 0:
        lineage = {
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "kind": "retrained from a coupled-run record",
            "parent_checkpoint": {"path": str(checkpoint or "bundled default"),
                                  "sha256": file_sha256(checkpoint) if checkpoint else rec["attrs"].get("checkpoint_sha256", ""),
                                  "provenance": payload.get("provenance", {})},
            "record": {"path": str(record), "sha256": file_sha256(record), "checkpoint_sha256": rec["attrs"].get("checkpoint_sha256", ""),
                       "coupling_spec_sha256": rec["attrs"].get("coupling_spec_sha256", "")},
            "observations": {"path": str(obs), "sha256": file_sha256(obs)},
            "settings": {"epochs": epochs, "iterations": iterations, "window": window, "lr": lr, "seed": seed, "ranks": size},
            "history": history,
            "metrics": metrics,
        }
        save_checkpoint(model, out, lineage)  # float64 weights: loads exactly as trained
        loss_png(Path(out).with_suffix(".loss.png"), history)
        Path(out).with_suffix(".metrics.json").write_text(json.dumps(metrics, indent=1))
    return result


def loss_png(path, history) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([h["epoch"] for h in history], [h["loss"] for h in history], "o-")
    ax.set_xlabel("epoch")
    ax.set_ylabel("NSE* loss")
    ax.set_title("retraining loss")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- CLI -----------------------------------------------------------------------------------------------------------
def add_parser(sub) -> None:
    r = sub.add_parser("retrain", help="retrain a checkpoint on a coupled-run record and observations")
    r.add_argument("--record", required=True, help="record NetCDF written by a coupled run (record: in the spec)")
    r.add_argument("--obs", required=True, help="observed streamflow (NetCDF or CSV)")
    r.add_argument("--checkpoint", default=None, help="parent checkpoint (default: the bundled model)")
    r.add_argument("-o", "--out", required=True, help="new checkpoint path")
    r.add_argument("--epochs", type=int, default=20)
    r.add_argument("--iterations", type=int, default=10, help="optimiser steps per epoch")
    r.add_argument("--window", type=int, default=180, help="model steps per training window")
    r.add_argument("--lr", type=float, default=1e-3)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--obs-units", choices=["m3 s-1", "mm d-1"], default=None)
    r.add_argument("--quiet", action="store_true")
    r.set_defaults(func=_cmd)


def _cmd(args) -> int:
    res = retrain(args.record, args.obs, args.checkpoint, args.out, args.epochs, args.iterations, args.window, args.lr,
                  args.seed, args.obs_units, progress=not args.quiet)
    m = res["metrics"]
    from .mpi import get_comm, rank_and_size

    if rank_and_size(get_comm())[0] == 0:
        print(f"{'unit':<12} {'NSE before':>10} {'NSE after':>10}")
        for u, b, a in zip(m["units"], m["nse_before"], m["nse_after"]):
            print(f"{u:<12} {b:>10.3f} {a:>10.3f}")
        print(f"wrote {args.out}")
    return 0
