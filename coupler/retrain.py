"""Offline gradient feedback: ``dhydro retrain --record REC --obs OBS --checkpoint CK -o NEW``.

Training windows come from the record (:mod:`coupler.record`): each starts at a recorded state snapshot (a warm
start: no warm-up is re-run) and covers ``--window`` model steps of the recorded model forcing.  The loss is
NSE*-batch against the observations (per-unit squared error normalised by the observed standard deviation),
backpropagated through the physics and the network.  Under ``mpiexec -n N`` every rank takes its units; the loss
normaliser and the gradients are summed across ranks (``Allreduce`` on numpy buffers) before every optimiser
step, so all ranks take identical steps and the result equals single-process training up to float rounding.

The new checkpoint carries its lineage: the parent checkpoint (path, sha256, provenance), the record and
observation files (sha256), the settings, and the metrics before and after on the record period.

Forcing correction (``--forcing-correction``): when the record holds the source precipitation before regridding
(:mod:`coupler.record`: ``source_precip``, the weight rows), log-multipliers ``c`` (one per source cell the rows
read, initialised at 0) are learned jointly with the network: the precipitation of a unit for a model step is
``W @ (exp(c) * source_precip)`` (torch sparse, differentiable; renormalised over valid cells like the coupler where
source values are missing), the other forcing as recorded.  The loss gets ``--correction-l2 * mean(c**2)``.  ``c``
is global: under MPI every rank uses its units' rows and the gradient of ``c`` is summed across ranks with the
network's.  The learned correction goes into the checkpoint's lineage and into ``<out>.forcing_correction.nc``
(dimension ``cell``, with the source grid cell index), with a map ``<out>.forcing_correction.png`` when the record
knows the source grid shape.

Observations: a NetCDF with ``streamflow(time, unit_id)`` (or ``qobs``; the dimension may also be ``unit``) and
``unit_id``, or a CSV with a ``time`` column and one column per unit id; units ``m3 s-1`` (converted with the unit
area) or ``mm d-1`` (``--obs-units`` for CSV; the ``units`` attribute for NetCDF).  Times are matched to the start of
the model steps: a NetCDF whose ``time`` has bounds (this project's outputs stamp the end of the interval,
:mod:`bmi_dhydro.cf`) is matched by the start of each interval, so ``dhydro_run.nc``'s ``qobs`` can be used as is.
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
from bmi_dhydro._extras import optional_pyplot
from bmi_dhydro.checkpoint import file_sha256, load_checkpoint, save_checkpoint
from bmi_dhydro.metrics import nse
from bmi_dhydro.model import ModelState

from .record import STATE_KEYS
from bmi_dhydro.safe_io import save_figure


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
            # the start of each model step: the lower time bound (records stamp the end of the step, bmi_dhydro.cf)
            "time": start + pd.to_timedelta(np.asarray(
                nc["time_bnds"][:, 0] if "time_bnds" in nc.variables else nc["time"][:], dtype="float64"), unit="s"),
            "unit_id": [str(u) for u in nc["unit_id"][:]],
            "area_km2": np.asarray(nc["area_km2"][:], dtype="float64"),
            "attributes": np.asarray(nc["attributes"][:], dtype="float64"),
            "attribute_name": [str(a) for a in nc["attribute_name"][:]],
            "state_step": np.asarray(nc["state_step"][:], dtype="int64"),
            "states": {k: np.asarray(nc[f"state_{k}"][:], dtype="float64") for k in STATE_KEYS},
            "attrs": {k: nc.getncattr(k) for k in nc.ncattrs()},
            "path": str(path),
        }
        if "source_precip" in nc.variables:
            shape = nc.getncattr("source_grid_shape") if "source_grid_shape" in nc.ncattrs() else None
            rec["source"] = {
                "precip": np.asarray(np.ma.filled(nc["source_precip"][:], np.nan), dtype="float64"),
                "cell_index": np.asarray(nc["source_cell_index"][:], dtype="int64"),
                "row": np.asarray(nc["regrid_row"][:], dtype="int64"),
                "col": np.asarray(nc["regrid_col"][:], dtype="int64"),
                "S": np.asarray(nc["regrid_S"][:], dtype="float64"),
                "n_source_cells": int(nc.getncattr("source_n_cells")),
                "grid_shape": [int(x) for x in np.atleast_1d(shape)] if shape is not None else None,
                "variable": str(nc.getncattr("source_variable")),
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
            udim = "unit_id" if "unit_id" in ds[var].dims else "unit"
            # the day a value covers: the lower time bound where the file has bounds (stamp = end of the interval)
            tb = ds["time"].attrs.get("bounds")
            days = ds[tb].values[:, 0] if tb in ds.variables else ds["time"].values
            df = pd.DataFrame(ds[var].transpose("time", udim).values, index=pd.DatetimeIndex(days), columns=ids)
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


class SourceForcing:
    """The recorded model forcing of some units, with the precipitation rebuilt from the recorded source field
    through the weight rows and a multiplier ``exp(c)`` per source cell (see the module docstring)."""

    def __init__(self, rec, idx):
        src = rec.get("source")
        if src is None:
            raise ValueError(f"retrain --forcing-correction: record {rec['path']} has no source_precip: its "
                             "precipitation input did not arrive through a regrid connection (weights or method) "
                             "when it was recorded, so there is no source grid to correct; record a run whose "
                             "precipitation is regridded, or drop --forcing-correction")
        idx = np.asarray(idx, dtype="int64")
        n_units = len(rec["unit_id"])
        n_cells = src["precip"].shape[1]
        local = np.full(n_units, -1, dtype="int64")
        local[idx] = np.arange(idx.size)
        keep = local[src["row"]] >= 0  # this rank's rows only
        import scipy.sparse as sp

        rows, cols, vals = local[src["row"][keep]], src["col"][keep], src["S"][keep]
        self.W = torch.sparse_coo_tensor(torch.as_tensor(np.stack([rows, cols])), torch.as_tensor(vals),
                                         (idx.size, n_cells), check_invariants=True).coalesce()
        w = sp.csr_matrix((vals, (rows, cols)), shape=(idx.size, n_cells))
        p = src["precip"]
        ok = np.isfinite(p)
        self.p = torch.as_tensor(np.where(ok, p, 0.0))  # (steps, cells)
        full = w @ np.ones(n_cells)  # (units,)
        den = np.asarray((w @ ok.T.astype("float64")).T)  # (steps, units): weight of the valid cells
        self.scale = torch.as_tensor(np.where(den > 0, full / np.where(den > 0, den, 1.0), 0.0))
        self.reached = torch.as_tensor(den > 0)
        self.forcing = torch.as_tensor(rec["forcing"][:, idx], dtype=torch.float64)
        self.n_cells = n_cells

    def window(self, c: torch.Tensor, s0: int, n: int) -> torch.Tensor:
        """Model forcing (n, units, 3) for model steps s0..s0+n with precipitation ``W @ (exp(c) * source)``."""
        x = torch.exp(c)[:, None] * self.p[s0 : s0 + n].T  # (cells, n)
        prcp = torch.sparse.mm(self.W, x).T * self.scale[s0 : s0 + n]  # (n, units)
        rec_f = self.forcing[s0 : s0 + n]
        # destinations no valid source cell reached: the model got the recorded value (the BMI's NaN -> 0)
        prcp = torch.where(self.reached[s0 : s0 + n], prcp, rec_f[..., 0])
        return torch.cat([prcp[..., None], rec_f[..., 1:]], dim=-1)


def simulate_record(model, rec, idx=None, c=None) -> np.ndarray:
    """Runoff (mm per model step) over the whole record from its first snapshot, (steps, units); with ``c``, the
    precipitation is rebuilt from the source field with the forcing correction ``exp(c)``."""
    idx = np.arange(len(rec["unit_id"])) if idx is None else idx
    if c is None:
        forc = torch.as_tensor(rec["forcing"][:, idx], dtype=torch.float64)
    else:
        with torch.no_grad():
            forc = SourceForcing(rec, idx).window(torch.as_tensor(c, dtype=torch.float64), 0, rec["forcing"].shape[0])
    attrs = torch.as_tensor(rec["attributes"][idx], dtype=torch.float64)
    with torch.no_grad():
        _, out = model.unroll(_state(rec, 0, idx), forc, attrs, outputs=("runoff",))
    return out["runoff"].numpy()


def retrain(record, obs, checkpoint, out, epochs=20, iterations=10, window=180, lr=1e-3, seed=0, obs_units=None,
            comm=None, progress=True, forcing_correction=False, correction_l2=1e-3, correction_lr=None) -> dict:
    from .mpi import allreduce, get_comm, rank_and_size
    from bmi_dhydro.partition import partition_units

    comm = get_comm(comm)
    rank, size = rank_and_size(comm)
    rec = load_record(record)
    if forcing_correction and "source" not in rec:
        SourceForcing(rec, [])  # raises the explanatory error
    if correction_l2 < 0:
        raise ValueError(f"retrain: correction_l2 must be >= 0, got {correction_l2}")
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
    params = [p for p in model.parameters()]
    groups = [{"params": params, "lr": lr}]
    c = None
    if forcing_correction:
        src_forc = SourceForcing(rec, idx)
        c = torch.zeros(src_forc.n_cells, dtype=torch.float64, requires_grad=True)  # log-multipliers, global
        groups.append({"params": [c], "lr": lr if correction_lr is None else correction_lr})
        params = params + [c]
    optim = torch.optim.Adam(groups)
    history = []
    bar = tqdm(total=epochs * iterations, desc="retraining", unit="it", disable=not progress or rank != 0)
    for epoch in range(1, epochs + 1):
        losses = []
        for _ in range(iterations):
            snap = starts[int(rng.integers(len(starts)))]  # same draw on every rank
            s0 = int(rec["state_step"][snap])
            st = _state(rec, snap, idx)
            fw = forc[s0 : s0 + window] if c is None else src_forc.window(c, s0, window)
            _, sim = model.unroll(st, fw, attrs, outputs=("runoff",))
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
            if c is not None and correction_l2 > 0:  # the penalty is global: added once, after the sum over ranks
                with torch.no_grad():
                    c.grad += 2.0 * correction_l2 * c / c.numel()
                    loss += float(correction_l2 * (c**2).mean())
            optim.step()
            losses.append(loss)
            bar.update(1)
            bar.set_postfix(epoch=epoch, loss=f"{np.mean(losses):.4f}")
        history.append({"epoch": epoch, "loss": float(np.mean(losses))})
    bar.close()
    c_np = None if c is None else c.detach().numpy().copy()
    after = simulate_record(model, rec, c=c_np)
    metrics = {
        "units": ids,
        "nse_before": [nse(before[:, i], q_obs[:, i]) for i in range(len(ids))],
        "nse_after": [nse(after[:, i], q_obs[:, i]) for i in range(len(ids))],
        "period": [str(rec["time"][0].date()), str(rec["time"][-1].date())],
    }
    if c is not None:  # the checkpoint alone (as the BMI runs it) does not carry the correction
        net_only = simulate_record(model, rec)
        metrics["nse_after_network_only"] = [nse(net_only[:, i], q_obs[:, i]) for i in range(len(ids))]
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
            "settings": {"epochs": epochs, "iterations": iterations, "window": window, "lr": lr, "seed": seed, "ranks": size,
                         "forcing_correction": bool(forcing_correction)},
            "history": history,
            "metrics": metrics,
        }
        if c_np is not None:
            src = rec["source"]
            nc_path = Path(out).with_suffix(".forcing_correction.nc")
            lineage["settings"].update(correction_l2=correction_l2, correction_lr=lr if correction_lr is None else correction_lr)
            lineage["forcing_correction"] = {
                "description": "log-multiplier per source cell: precipitation = W @ (exp(log_multiplier) * source)",
                "source_variable": src["variable"],
                "source_grid_shape": src["grid_shape"],
                "source_cell_index": src["cell_index"].tolist(),
                "log_multiplier": c_np.tolist(),
                "netcdf": str(nc_path),
            }
            result["forcing_correction"] = {"log_multiplier": c_np, "netcdf": str(nc_path)}
            png = write_correction(nc_path, c_np, src, str(out))
            if png:
                result["forcing_correction"]["png"] = str(png)
        save_checkpoint(model, out, lineage)  # float64 weights: loads exactly as trained
        loss_png(Path(out).with_suffix(".loss.png"), history)
        Path(out).with_suffix(".metrics.json").write_text(json.dumps(metrics, indent=1))
    return result


def write_correction(nc_path, c: np.ndarray, src: dict, checkpoint: str):
    """The learned forcing correction as NetCDF (dimension cell) and, if the grid shape is known, a PNG map.
    Returns the PNG path or None."""
    import netCDF4

    nc_path = Path(nc_path)
    with netCDF4.Dataset(nc_path, "w") as nc:
        nc.setncatts({"title": "bmi-dhydro learned multiplicative forcing correction per source cell",
                      "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                      "checkpoint": checkpoint, "source_variable": src["variable"],
                      "source_n_cells": src["n_source_cells"],
                      "comment": "precipitation of a unit = W @ (multiplier * source precipitation)"})
        if src["grid_shape"]:
            nc.setncattr("source_grid_shape", np.array(src["grid_shape"], dtype="int64"))
        nc.createDimension("cell", c.size)
        v = nc.createVariable("source_cell_index", "i8", ("cell",))
        v[:] = src["cell_index"]
        v.long_name = "flat (row-major) index of the cell in the source grid"
        v = nc.createVariable("log_multiplier", "f8", ("cell",))
        v[:] = c
        v = nc.createVariable("multiplier", "f8", ("cell",))
        v[:] = np.exp(c)
        v.units = "1"
    shape = src["grid_shape"]
    if not shape or len(shape) != 2 or shape[0] * shape[1] != src["n_source_cells"]:
        return None
    plt = optional_pyplot("the map of the forcing correction (*.forcing_correction.png)")
    if plt is None:
        return None

    grid = np.full(shape[0] * shape[1], np.nan)
    grid[src["cell_index"]] = np.exp(c)
    grid = grid.reshape(shape)
    iy, ix = np.divmod(src["cell_index"], shape[1])
    box = grid[iy.min() : iy.max() + 1, ix.min() : ix.max() + 1]  # the cells the weights read
    dev = max(float(np.nanmax(np.abs(box - 1.0))), 1e-6)
    fig, ax = plt.subplots(figsize=(6, 5))
    im = ax.imshow(box, origin="lower", cmap="RdBu", vmin=1 - dev, vmax=1 + dev,
                   extent=(ix.min() - 0.5, ix.max() + 0.5, iy.min() - 0.5, iy.max() + 0.5))
    fig.colorbar(im, ax=ax, label="precipitation multiplier")
    ax.set_xlabel("source grid column")
    ax.set_ylabel("source grid row")
    ax.set_title(f"learned forcing correction\n{src['variable']}", fontsize=9)
    fig.tight_layout()
    png = nc_path.with_suffix(".png")
    save_figure(fig, png, dpi=110)
    plt.close(fig)
    return png


def loss_png(path, history) -> bool:
    """The retraining loss by epoch; False (one warning) without matplotlib (the 'plot' extra)."""
    plt = optional_pyplot("the retraining loss curve (*.loss.png)")
    if plt is None:
        return False

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([h["epoch"] for h in history], [h["loss"] for h in history], "o-")
    ax.set_xlabel("epoch")
    ax.set_ylabel("NSE* loss")
    ax.set_title("retraining loss")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)
    return True


# -- CLI -----------------------------------------------------------------------------------------------------------
def add_parser(sub) -> None:
    r = sub.add_parser("retrain", help="retrain a checkpoint on a coupled-run record and observations")
    r.add_argument("--record", required=True, help="record NetCDF written by a coupled run (record: in the spec)")
    r.add_argument("--obs", required=True, help="observed streamflow (NetCDF or CSV)")
    r.add_argument("--checkpoint", default=None, help="parent checkpoint (default: the bundled model)")
    r.add_argument("-o", "--out", required=True, help="new checkpoint path")
    r.add_argument("--epochs", type=int, default=20, help="training epochs (default 20)")
    r.add_argument("--iterations", type=int, default=10, help="optimiser steps per epoch")
    r.add_argument("--window", type=int, default=180, help="model steps per training window")
    r.add_argument("--lr", type=float, default=1e-3, help="learning rate (default 1e-3)")
    r.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    r.add_argument("--obs-units", choices=["m3 s-1", "mm d-1"], default=None,
                   help="units of the observations (default: the NetCDF's units attribute)")
    r.add_argument("--forcing-correction", action="store_true",
                   help="also learn a precipitation multiplier per source cell through the regridding weights "
                        "(needs a record of a run whose precipitation was regridded)")
    r.add_argument("--correction-l2", type=float, default=1e-3, help="penalty on mean(log-multiplier**2)")
    r.add_argument("--correction-lr", type=float, default=None, help="learning rate of the correction (default: --lr)")
    r.add_argument("--quiet", "--no-progress", dest="quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=_cmd)


def _cmd(args) -> int:
    res = retrain(args.record, args.obs, args.checkpoint, args.out, args.epochs, args.iterations, args.window, args.lr,
                  args.seed, args.obs_units, progress=not args.quiet, forcing_correction=args.forcing_correction,
                  correction_l2=args.correction_l2, correction_lr=args.correction_lr)
    m = res["metrics"]
    from .mpi import get_comm, rank_and_size

    if rank_and_size(get_comm())[0] == 0:
        net = m.get("nse_after_network_only")
        print(f"{'unit':<12} {'NSE before':>10} {'NSE after':>10}" + (f" {'network only':>12}" if net else ""))
        for i, (u, b, a) in enumerate(zip(m["units"], m["nse_before"], m["nse_after"])):
            print(f"{u:<12} {b:>10.3f} {a:>10.3f}" + (f" {net[i]:>12.3f}" if net else ""))
        fc = res.get("forcing_correction")
        if fc:
            mult = np.exp(fc["log_multiplier"])
            print(f"forcing correction: {mult.size} source cells, multiplier {mult.min():.3f}..{mult.max():.3f}; "
                  f"wrote {fc['netcdf']}" + (f" and {fc['png']}" if fc.get("png") else ""))
        print(f"wrote {args.out}")
    return 0
