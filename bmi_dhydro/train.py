"""Training and evaluation on CAMELS-layout data (``dhydro train CONFIG``).

Training draws random windows: ``warmup_days`` run without gradients (explicit spin-up, :meth:`DeltaModel.warmup`)
followed by ``window_days`` with gradients, on a random batch of basins.  The loss is NSE*-batch (squared error
normalised per basin by the standard deviation of its observed training-period flow; Kratzert et al. 2019) or an
RMSE-combined loss.  Missing observations are masked.  The seed fixes every random draw.  After each epoch the
model is run continuously over the validation period and its median NSE is logged (monitoring only: the last
epoch's weights are kept, nothing is selected on the test period).
"""

from __future__ import annotations

import csv
import json
import math
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from tqdm import tqdm

from . import __version__
from .checkpoint import save_checkpoint
from .datasets import DEFAULT_ATTRIBUTES, attribute_tensor, bundled_camels_root, model_forcings, read_camels
from .metrics import format_table, skill_table
from .model import DeltaModel, ModelConfig


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataSection(_Strict):
    camels_root: str | None = None  # None: the bundled CAMELS subset
    product: str = "nldas"
    basins: list[str] | None = None


class PeriodSection(_Strict):
    train: tuple[str, str] = ("1995-10-01", "2005-09-30")
    validation: tuple[str, str] | None = None  # None: the training period (in-sample monitoring)
    test: tuple[str, str] = ("2005-10-01", "2013-09-30")
    warmup_days: int = Field(365, ge=0)


class NetworkSection(_Strict):
    variant: str = "hbv1.0"
    nmul: int = 16
    dynamic_params: list[str] | None = None
    routing: bool = True
    lstm_hidden: int = 64
    mlp_hidden: int = 128
    mlp_layers: int = 2
    attributes: list[str] = Field(default_factory=lambda: list(DEFAULT_ATTRIBUTES))
    pet_method: str = "hamon"


class OptimSection(_Strict):
    epochs: int = Field(20, ge=1)
    iterations_per_epoch: int = Field(20, ge=1)
    batch_basins: int = Field(16, ge=1)
    window_days: int = Field(365, ge=2)
    warmup_days: int = Field(365, ge=0)
    learning_rate: float = Field(3e-3, gt=0)
    loss: str = Field("nse_batch", pattern="^(nse_batch|rmse_combined)$")
    grad_clip: float = 1.0
    seed: int = 0
    threads: int = Field(0, ge=0)  # 0: torch default


class OutputSection(_Strict):
    dir: str = "runs/train"
    checkpoint: str = "model.pt"
    plots: bool = True


class TrainConfig(_Strict):
    data: DataSection = Field(default_factory=DataSection)
    periods: PeriodSection = Field(default_factory=PeriodSection)
    model: NetworkSection = Field(default_factory=NetworkSection)
    training: OptimSection = Field(default_factory=OptimSection)
    output: OutputSection = Field(default_factory=OutputSection)


def load_train_config(path) -> tuple[TrainConfig, Path]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"train config: file not found: {path}")
    raw = yaml.safe_load(path.read_text()) or {}
    try:
        cfg = TrainConfig.model_validate(raw)
    except ValidationError as exc:
        raise ValueError(f"train config {path}: {exc}") from exc
    return cfg, path.parent.resolve()


def _resolve(base: Path, p: str | None) -> Path | None:
    if p is None:
        return None
    q = Path(p)
    return q if q.is_absolute() else (base / q)


# ---------------------------------------------------------------------------------------------------------------
def simulate(model: DeltaModel, ds, start, end, warmup_days: int = 365, dtype=torch.float32, outputs=None):
    """Continuous run over [start, end] after an explicit warm-up of ``warmup_days`` before ``start``.

    Returns (dict of numpy arrays (basin, time), time index).  Basins without forcing in the window give NaN.
    """
    t0 = pd.Timestamp(start) - pd.Timedelta(days=warmup_days)
    sub = ds.sel(time=slice(t0, pd.Timestamp(end)))
    forc = model_forcings(sub, model.config.pet_method, dtype=dtype)
    attrs = attribute_tensor(sub, model.config.attributes, dtype=dtype)
    n_warm = int((sub.time < pd.Timestamp(start)).sum())
    with torch.no_grad():
        prep = model.prepare(attrs)
        state = model.initial_state(forc.shape[1], dtype=dtype)
        if n_warm:
            state = model.warmup(state, forc[:n_warm], prep)
        kw = {} if outputs is None else {"outputs": outputs}
        _, out = model.unroll(state, forc[n_warm:], prep, **kw)
    res = {k: v.transpose(0, 1).double().numpy() for k, v in out.items()}
    return res, sub.time.values[n_warm:]


def evaluate(model, ds, period, warmup_days, dtype=torch.float32):
    res, times = simulate(model, ds, period[0], period[1], warmup_days, dtype=dtype, outputs=("runoff",))
    obs = ds["qobs"].sel(time=slice(*period)).transpose("basin", "time").to_numpy()
    return skill_table(res["runoff"], obs, ds.basin.values), res["runoff"], obs, times


def hydrograph_png(path, times, sim, obs, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 3.6))
    ax.plot(times, obs, color="black", lw=0.8, label="observed (USGS)")
    ax.plot(times, sim, color="tab:blue", lw=0.8, label="simulated")
    ax.set_ylabel("streamflow (mm d$^{-1}$)")
    ax.set_title(title)
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _git_version() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent)
        return f"{__version__}+{rev.stdout.strip()}" if rev.returncode == 0 and rev.stdout.strip() else __version__
    except Exception:
        return __version__


def _window_starts(valid_forc: np.ndarray, valid_obs: np.ndarray, lo: int, hi: int, warm: int, win: int) -> np.ndarray:
    """Start indices s (of the warm-up) with forcing valid over [s, s+warm+win) inside [lo, hi] and observations in
    the target part."""
    total = warm + win
    starts = []
    for s in range(max(0, lo - warm), hi - total + 2):
        e = s + total
        if e > len(valid_forc):
            break
        if s + warm < lo:
            continue
        if valid_forc[s:e].all() and valid_obs[s + warm : e].sum() >= win // 4:
            starts.append(s)
    return np.asarray(starts, dtype=np.int64)


def train(cfg: TrainConfig, base_dir: Path, progress: bool = True) -> dict:
    """Train a model; writes the checkpoint, a metrics CSV, a loss curve and hydrographs.  Returns a summary."""
    opt = cfg.training
    torch.manual_seed(opt.seed)
    rng = np.random.default_rng(opt.seed)
    if opt.threads:
        torch.set_num_threads(opt.threads)
    root = _resolve(base_dir, cfg.data.camels_root) or bundled_camels_root()
    outdir = _resolve(base_dir, cfg.output.dir)
    outdir.mkdir(parents=True, exist_ok=True)
    ds = read_camels(root, cfg.data.basins, cfg.data.product, cfg.model.attributes)
    basins = list(ds.basin.values)

    # training arrays over the train period plus its warm-up
    tr0 = pd.Timestamp(cfg.periods.train[0])
    tr1 = pd.Timestamp(cfg.periods.train[1])
    full = ds.sel(time=slice(tr0 - pd.Timedelta(days=opt.warmup_days), tr1))
    forc = model_forcings(full, cfg.model.pet_method, dtype=torch.float64)
    obs = torch.as_tensor(full["qobs"].transpose("time", "basin").to_numpy())
    attrs = attribute_tensor(full, cfg.model.attributes, dtype=torch.float64)
    lo = int((full.time < tr0).sum())
    hi = full.sizes["time"] - 1
    valid_forc = torch.isfinite(forc).all(-1).numpy()
    valid_obs = torch.isfinite(obs).numpy()
    starts = {b: _window_starts(valid_forc[:, b], valid_obs[:, b], lo, hi, opt.warmup_days, opt.window_days) for b in range(len(basins))}
    trainable = [b for b in range(len(basins)) if len(starts[b])]
    if not trainable:
        raise ValueError("training: no basin has a complete warm-up + window with observations in the training period")

    # normalisation statistics from the training data (train period only)
    mcfg = ModelConfig(
        variant=cfg.model.variant, nmul=cfg.model.nmul, dt_days=1.0, dynamic_params=cfg.model.dynamic_params,
        routing=cfg.model.routing, lstm_hidden=cfg.model.lstm_hidden, mlp_hidden=cfg.model.mlp_hidden,
        mlp_layers=cfg.model.mlp_layers, attributes=list(cfg.model.attributes),
        attribute_units=[DEFAULT_ATTRIBUTES.get(a, "") for a in cfg.model.attributes], pet_method=cfg.model.pet_method,
    )
    model = DeltaModel(mcfg)
    tr_forc = forc[lo:].reshape(-1, 3)
    tr_forc = tr_forc[torch.isfinite(tr_forc).all(-1)]
    model.provider.set_normalization(attrs.mean(0), attrs.std(0).clamp(min=1e-6), tr_forc.mean(0), tr_forc.std(0).clamp(min=1e-6))
    # per-basin std of observed flow for NSE*
    obs_tr = obs[lo:]
    q_std = torch.tensor([float(np.nanstd(obs_tr[:, b].numpy())) if np.isfinite(obs_tr[:, b].numpy()).any() else 1.0 for b in range(len(basins))])

    optim = torch.optim.Adam(model.parameters(), lr=opt.learning_rate)
    forc32, obs32, attrs32 = forc.float(), obs.float(), attrs.float()
    history = []
    val_period = cfg.periods.validation or cfg.periods.train
    t_start = time.time()
    bar = tqdm(total=opt.epochs * opt.iterations_per_epoch, desc="training", unit="it", disable=not progress)
    for epoch in range(1, opt.epochs + 1):
        model.train()
        losses = []
        for _ in range(opt.iterations_per_epoch):
            batch = rng.choice(trainable, size=min(opt.batch_basins, len(trainable)), replace=len(trainable) < opt.batch_basins)
            s = np.array([starts[b][rng.integers(len(starts[b]))] for b in batch])
            idx = s[None, :] + np.arange(opt.warmup_days + opt.window_days)[:, None]
            bt = torch.as_tensor(batch)
            f = forc32[torch.as_tensor(idx), bt]  # (T, B, 3)
            y = obs32[torch.as_tensor(idx[opt.warmup_days :]), bt]
            a = attrs32[bt]
            state = model.initial_state(len(batch))
            prep = model.prepare(a)
            state = model.warmup(state, f[: opt.warmup_days], model.prepare(a.detach()))
            _, out = model.unroll(state, f[opt.warmup_days :], prep, outputs=("runoff",))
            loss = _loss(out["runoff"], y, q_std[bt].float(), opt.loss)
            optim.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), opt.grad_clip)
            optim.step()
            losses.append(float(loss))
            bar.update(1)
            bar.set_postfix(epoch=epoch, loss=f"{np.mean(losses):.4f}")
        model.eval()
        rows, *_ = evaluate(model, ds, val_period, cfg.periods.warmup_days)
        vnse = float(np.nanmedian([r["nse"] for r in rows]))
        history.append({"epoch": epoch, "loss": float(np.mean(losses)), "val_median_nse": vnse})
        bar.write(f"epoch {epoch:3d}  loss {np.mean(losses):.4f}  validation median NSE {vnse:.3f}")
    bar.close()
    wall = time.time() - t_start

    rows_test, sim, qobs, times = evaluate(model, ds, cfg.periods.test, cfg.periods.warmup_days)
    rows_train, *_ = evaluate(model, ds, cfg.periods.train, cfg.periods.warmup_days)
    summary_metrics = {
        "test": rows_test,
        "train": rows_train,
        "test_median_nse": float(np.nanmedian([r["nse"] for r in rows_test])) if any(np.isfinite(r["nse"]) for r in rows_test) else None,
        "test_median_kge": float(np.nanmedian([r["kge"] for r in rows_test])) if any(np.isfinite(r["kge"]) for r in rows_test) else None,
    }
    provenance = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "code_version": _git_version(),
        "data": {"source": f"CAMELS-US {cfg.data.product} (Newman et al. 2015; Addor et al. 2017)", "basins": basins},
        "periods": {"train": list(cfg.periods.train), "test": list(cfg.periods.test), "warmup_days": cfg.periods.warmup_days},
        "training": cfg.training.model_dump(),
        "history": history,
        "metrics": summary_metrics,
        "wall_time_s": round(wall, 1),
        "torch_version": torch.__version__,
    }
    ck = save_checkpoint(model, outdir / cfg.output.checkpoint, provenance)
    write_metrics_csv(outdir / "metrics_test.csv", rows_test)
    write_metrics_csv(outdir / "metrics_train.csv", rows_train)
    (outdir / "history.json").write_text(json.dumps(history, indent=1))
    if cfg.output.plots:
        loss_curve_png(outdir / "loss.png", history)
        for i, b in enumerate(basins):
            if np.isfinite(qobs[i]).any() and np.isfinite(sim[i]).any():
                hydrograph_png(outdir / f"hydrograph_{b}.png", times, sim[i], qobs[i],
                               f"{b} test period {cfg.periods.test[0]}..{cfg.periods.test[1]}  NSE {rows_test[i]['nse']:.2f}")
    print(format_table(rows_test))
    return {"checkpoint": str(ck), "wall_time_s": wall, "metrics": summary_metrics, "history": history}


def _loss(sim, obs, q_std, kind):
    mask = torch.isfinite(obs)
    obs0 = torch.where(mask, obs, torch.zeros_like(obs))
    if kind == "nse_batch":
        err = (sim - obs0) ** 2 / (q_std + 0.1) ** 2
        return (err * mask).sum() / mask.sum().clamp(min=1)
    # rmse_combined: RMSE on flow and on sqrt-flow, weighted 0.75 / 0.25
    n = mask.sum().clamp(min=1)
    r1 = torch.sqrt((((sim - obs0) ** 2) * mask).sum() / n)
    r2 = torch.sqrt((((torch.sqrt(sim.clamp(min=0) + 1e-6) - torch.sqrt(obs0.clamp(min=0) + 1e-6)) ** 2) * mask).sum() / n)
    return 0.75 * r1 + 0.25 * r2


def write_metrics_csv(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["basin", "nse", "kge", "pbias", "n_obs"])
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.4f}" if isinstance(v, float) and math.isfinite(v) else v) for k, v in r.items()})


def loss_curve_png(path, history):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ep = [h["epoch"] for h in history]
    ax.plot(ep, [h["loss"] for h in history], "o-", label="training loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax2 = ax.twinx()
    ax2.plot(ep, [h["val_median_nse"] for h in history], "s--", color="tab:green", label="validation median NSE")
    ax2.set_ylabel("median NSE")
    fig.legend(loc="upper center", ncol=2, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
