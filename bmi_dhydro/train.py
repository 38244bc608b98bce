"""Training and evaluation on CAMELS data (``dhydro train CONFIG [--resume]``).

Data: the CAMELS-US text layout (any product) or a CAMELS-style NetCDF (``data.camels_root``: a folder or a
``.nc`` file), see :mod:`bmi_dhydro.datasets`.

Minibatches: each iteration draws ``batch_basins`` training basins and for each a random window of the training
period: ``window_warmup_days`` run without gradients (explicit spin-up, :meth:`DeltaModel.warmup`), then
``window_days`` with gradients.  Loss: NSE*-batch (squared error normalised per basin by the standard deviation of
its observed training-period flow; Kratzert et al. 2019) or an RMSE-combined loss; missing observations are
masked.  The seed fixes every random draw (basin split, windows, initial weights).

Validation (model selection and early stopping, never the test period): a seeded, HUC-02-stratified fraction of
the training basins is held out of training (``validation.basin_fraction``) and simulated continuously over the
validation period (``periods.validation``, default the training period) after each epoch; the epoch with the
best median NSE there is kept.  With no held-out basins and no validation period the monitoring is in-sample and
the last epoch is kept (as a warning says).

Warm-up has one meaning wherever it appears: the days the model runs (spin-up, no loss, no metrics) before the
window in which the loss or the skill is computed.  ``periods.warmup_days`` precedes every evaluated period
(validation, test; ``dhydro run``/``dhydro evaluate --warmup-days`` are the same thing), ``training.window_warmup_days``
precedes every training window (its old name ``training.warmup_days`` is still read, with a deprecation warning).

NeuralHydrology's names for the common settings are accepted at the top level of the config (``hidden_size``,
``batch_size``, ``epochs``, ``learning_rate``, ``seed``, ``train_basin_file``, ``train_start_date``, ...; the
table is :data:`NEURALHYDROLOGY_KEYS` and the README); a setting given under both names is an error.

Resumable: after every epoch the whole training state (weights, optimiser, random generator, history, best
weights) is written atomically to ``<output.dir>/train_state.pt``; ``--resume`` continues from it and gives the
same result as an uninterrupted run.  A CSV log (``history.csv``), a loss-curve PNG, the checkpoint of the
selected epoch and its validation metrics are written to ``output.dir``.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import re
import subprocess
import time
from datetime import date, datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from tqdm import tqdm

from . import __version__
from ._extras import optional_pyplot
from .checkpoint import atomic_torch_save, save_checkpoint
from .datasets import ATTRIBUTE_UNITS, DEFAULT_ATTRIBUTES, attribute_tensor, model_forcings, open_camels
from .metrics import format_table, skill_table
from .model import DeltaModel, ModelConfig
from .nn import lstm_precision
from .safe_io import atomic_write, save_figure


log = logging.getLogger("dhydro.train")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataSection(_Strict):
    camels_root: str | None = None  # a CAMELS text-layout folder or a CAMELS-style .nc file; None: the bundled subset
    product: str = "nldas"  # forcing product of the text layout (daymet, nldas, maurer, maurer_extended)
    basins: list[str] | None = None
    basins_file: str | None = None  # a text file of gauge ids, one per line, '#' comments (instead of basins)
    attributes_root: str | None = None  # folder holding camels_attributes_v2.0 (default: the bundled tables)

    @model_validator(mode="after")
    def _one_basin_list(self):
        if self.basins is not None and self.basins_file is not None:
            raise ValueError("data: give basins or basins_file, not both")
        return self


class PeriodSection(_Strict):
    train: tuple[str, str] = ("1995-10-01", "2005-09-30")
    validation: tuple[str, str] | None = None  # None: the training period (on the held-out validation basins)
    test: tuple[str, str] | None = None  # evaluated once at the end when given; never used for selection
    warmup_days: int = Field(365, ge=0)  # spin-up days before every evaluated period (validation, test)


class ValidationSection(_Strict):
    basin_fraction: float = Field(0.0, ge=0.0, lt=1.0)  # share of the basins held out of training
    every_epochs: int = Field(1, ge=1)
    patience: int | None = Field(None, ge=1)  # stop after this many validations without improvement
    # seed of the held-out basin split (null: training.seed); fixing it keeps the same validation basins when the
    # training seed changes, so runs with different seeds are compared on the same basins
    seed: int | None = None


class NetworkSection(_Strict):
    variant: str = "hbv1.0"
    nmul: int = 16
    dynamic_params: list[str] | None = None
    routing: bool = True
    lstm_hidden: int = 64
    mlp_hidden: int = 128
    mlp_layers: int = 2
    attributes: list[str] = Field(default_factory=lambda: list(DEFAULT_ATTRIBUTES))
    log_attributes: list[str] = Field(default_factory=list)
    pet_method: str = "hamon"


class OptimSection(_Strict):
    epochs: int = Field(20, ge=1)
    iterations_per_epoch: int = Field(20, ge=1)
    batch_basins: int = Field(16, ge=1)
    window_days: int = Field(365, ge=2)  # days of each training window (the loss is computed on them)
    window_warmup_days: int = Field(365, ge=0)  # spin-up days before each training window (no gradients, no loss)
    learning_rate: float = Field(3e-3, gt=0)
    lr_schedule: str = Field("constant", pattern="^(constant|cosine)$")
    lr_final_fraction: float = Field(0.1, gt=0, le=1)  # cosine: the last iteration's rate as a share of the first
    loss: str = Field("nse_batch", pattern="^(nse_batch|rmse_combined)$")
    grad_clip: float = 1.0
    seed: int = 0
    threads: int = Field(0, ge=0)  # 0: torch default
    device: str = Field("auto", pattern="^(auto|cpu|cuda)$")  # auto: a CUDA GPU when torch sees one, else the CPU
    # the LSTM's arithmetic in the training forward: bfloat16 = mixed precision (torch.autocast) for CPUs with
    # AMX/AVX-512-BF16 and for GPUs; weights, optimiser, physics, validation and the checkpoint stay float32
    precision: str = Field("float32", pattern="^(float32|bfloat16)$")

    @model_validator(mode="before")
    @classmethod
    def _old_warmup_name(cls, data):
        """``training.warmup_days`` (the old name) is read as ``window_warmup_days``, with a deprecation warning."""
        if isinstance(data, dict) and "warmup_days" in data:
            if "window_warmup_days" in data:
                raise ValueError("training.warmup_days (the old name) and training.window_warmup_days name the same "
                                 "setting; give only window_warmup_days")
            log.warning("training.warmup_days is deprecated: it is now training.window_warmup_days (the spin-up days "
                        "before each training window; periods.warmup_days is the spin-up before evaluated periods)")
            data = dict(data)
            data["window_warmup_days"] = data.pop("warmup_days")
        return data


class OutputSection(_Strict):
    dir: str = "runs/train"
    checkpoint: str = "model.pt"
    plots: bool = True


#: NeuralHydrology config keys accepted at the top level of a training config: NH key -> (section, key) here.
#: Each is the same quantity under another name (notes in the README's table).
NEURALHYDROLOGY_KEYS = {
    "train_basin_file": ("data", "basins_file"),
    "data_dir": ("data", "camels_root"),
    "hidden_size": ("model", "lstm_hidden"),
    "static_attributes": ("model", "attributes"),
    "batch_size": ("training", "batch_basins"),
    "epochs": ("training", "epochs"),
    "learning_rate": ("training", "learning_rate"),
    "clip_gradient_norm": ("training", "grad_clip"),
    "seed": ("training", "seed"),
    "validate_every": ("validation", "every_epochs"),
}
#: NeuralHydrology's period keys: (start key, end key) -> periods.<name> = [start, end]
NEURALHYDROLOGY_PERIODS = {
    "train": ("train_start_date", "train_end_date"),
    "validation": ("validation_start_date", "validation_end_date"),
    "test": ("test_start_date", "test_end_date"),
}
#: NeuralHydrology keys that look alike but are not the same quantity here: refused with what to write instead
NEURALHYDROLOGY_NOT_ALIASED = {
    "seq_length": "NeuralHydrology's input length including the spin-up; here training.window_warmup_days "
                  "(spin-up, no loss) + training.window_days (loss) -- with predict_last_n = n: "
                  "window_days = n, window_warmup_days = seq_length - n",
    "predict_last_n": "here training.window_days (the days of each window the loss is computed on), with "
                      "training.window_warmup_days = seq_length - predict_last_n",
    "validation_basin_file": "validation basins are held out of the training basins here: validation.basin_fraction",
    "test_basin_file": "the test period (periods.test) runs on the config's basins here, held-out validation basins "
                       "included; other basins: dhydro evaluate --basins-file",
    "forcings": "data.product: one forcing product (daymet, nldas, maurer, maurer_extended)",
    "loss": "training.loss: nse_batch (NeuralHydrology's NSE) or rmse_combined",
    "run_dir": "output.dir (the folder the run writes into, not a parent of per-run folders)",
    "device": "training.device: auto, cpu or cuda",
}


def _iso_date(key: str, value) -> str:
    """A NeuralHydrology date (DD/MM/YYYY, its format) or an ISO date (YYYY-MM-DD) -> YYYY-MM-DD."""
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):  # YAML reads an unquoted 2001-10-01 as a date
        return value.isoformat()
    if isinstance(value, str):
        text = value.strip()
        if m := re.fullmatch(r"(\d{1,2})/(\d{1,2})/(\d{4})", text):
            ymd = (int(m[3]), int(m[2]), int(m[1]))
        elif m := re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})", text):
            ymd = (int(m[1]), int(m[2]), int(m[3]))
        else:
            ymd = None
        if ymd is not None:
            try:
                return date(*ymd).isoformat()
            except ValueError:
                pass
    raise ValueError(f"{key}: expected one date (DD/MM/YYYY as in NeuralHydrology, or YYYY-MM-DD), got {value!r}")


def neuralhydrology_to_sections(data: dict) -> dict:
    """Move the NeuralHydrology keys of a raw config into this project's sections (a new dict; ``data`` is kept).

    A setting given under both names, a start date without its end date and a NeuralHydrology key that is not the
    same quantity here are errors that name the keys."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}

    def put(nh_key: str, section: str, key: str, value) -> None:
        sec = out.setdefault(section, {})
        if not isinstance(sec, dict):
            raise ValueError(f"{section}: expected a mapping of settings, got {sec!r}")
        if key in sec:
            raise ValueError(f"{nh_key} (NeuralHydrology's name) and {section}.{key} name the same setting; give one")
        sec[key] = value

    for nh_key, hint in NEURALHYDROLOGY_NOT_ALIASED.items():
        if nh_key in out:
            raise ValueError(f"{nh_key} (a NeuralHydrology key) is not the same setting here: {hint}")
    if isinstance(out.get("model"), str):
        raise ValueError(f"model: {out['model']!r} looks like NeuralHydrology's model name; here model is the section "
                         f"of network settings (variant, lstm_hidden, attributes, ...)")
    for nh_key, (section, key) in NEURALHYDROLOGY_KEYS.items():
        if nh_key in out:
            value = out.pop(nh_key)
            if nh_key == "learning_rate" and isinstance(value, dict):
                raise ValueError("learning_rate: a NeuralHydrology schedule {epoch: rate} has no equivalent here; give "
                                 "one rate and training.lr_schedule (constant or cosine)")
            put(nh_key, section, key, value)
    for name, (k0, k1) in NEURALHYDROLOGY_PERIODS.items():
        if k0 in out or k1 in out:
            if k0 not in out or k1 not in out:
                given, missing = (k0, k1) if k0 in out else (k1, k0)
                raise ValueError(f"{given} (NeuralHydrology's name) needs {missing} too (together: periods.{name})")
            start, end = out.pop(k0), out.pop(k1)
            sec = out.get("periods")
            if isinstance(sec, dict) and name in sec:
                raise ValueError(f"{k0}/{k1} (NeuralHydrology's names) and periods.{name} name the same setting; give one")
            put(k0, "periods", name, [_iso_date(k0, start), _iso_date(k1, end)])
    return out


class TrainConfig(_Strict):
    data: DataSection = Field(default_factory=DataSection)
    periods: PeriodSection = Field(default_factory=PeriodSection)
    validation: ValidationSection = Field(default_factory=ValidationSection)
    model: NetworkSection = Field(default_factory=NetworkSection)
    training: OptimSection = Field(default_factory=OptimSection)
    output: OutputSection = Field(default_factory=OutputSection)

    @model_validator(mode="before")
    @classmethod
    def _neuralhydrology_keys(cls, data):
        return neuralhydrology_to_sections(data) if isinstance(data, dict) else data


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


def _legacy_config_json(config_dump: dict) -> str:
    """The config as a training state written before ``training.warmup_days`` became ``window_warmup_days`` holds it
    (so ``--resume`` continues such a run)."""
    old = json.loads(json.dumps(config_dump))
    old["training"]["warmup_days"] = old["training"].pop("window_warmup_days")
    return json.dumps(old, sort_keys=True)


def _resolve(base: Path, p: str | None) -> Path | None:
    if p is None:
        return None
    q = Path(p).expanduser()
    return q if q.is_absolute() else (base / q)


# ---------------------------------------------------------------------------------------------------------------
def simulate(model: DeltaModel, ds, start, end, warmup_days: int = 365, dtype=torch.float32, outputs=None):
    """Continuous run over [start, end] after an explicit warm-up of ``warmup_days`` before ``start``.

    Returns (dict of numpy arrays (basin, time), time index).  Basins without forcing in the window give NaN.
    """
    t0 = pd.Timestamp(start) - pd.Timedelta(days=warmup_days)
    sub = ds.sel(time=slice(t0, pd.Timestamp(end)))
    device = next(model.parameters()).device
    forc = model_forcings(sub, model.config.pet_method, dtype=dtype).to(device)
    attrs = attribute_tensor(sub, model.config.attributes, dtype=dtype).to(device)
    n_warm = int((sub.time < pd.Timestamp(start)).sum())
    with torch.no_grad():
        prep = model.prepare(attrs)
        state = model.initial_state(forc.shape[1], dtype=dtype)
        if n_warm:
            state = model.warmup(state, forc[:n_warm], prep)
        kw = {} if outputs is None else {"outputs": outputs}
        _, out = model.unroll(state, forc[n_warm:], prep, **kw)
    res = {k: v.transpose(0, 1).double().cpu().numpy() for k, v in out.items()}
    return res, sub.time.values[n_warm:]


def evaluate(model, ds, period, warmup_days, dtype=torch.float32):
    res, times = simulate(model, ds, period[0], period[1], warmup_days, dtype=dtype, outputs=("runoff",))
    obs = ds["qobs"].sel(time=slice(*period)).transpose("basin", "time").to_numpy()
    return skill_table(res["runoff"], obs, ds.basin.values), res["runoff"], obs, times


def hydrograph_png(path, times, sim, obs, title: str) -> bool:
    """One basin's simulated and observed flow; False (one warning) without matplotlib (the 'plot' extra)."""
    plt = optional_pyplot("the hydrograph plots (hydrograph_*.png)")
    if plt is None:
        return False

    fig, ax = plt.subplots(figsize=(11, 3.6))
    ax.plot(times, obs, color="black", lw=0.8, label="observed (USGS)")
    ax.plot(times, sim, color="tab:blue", lw=0.8, label="simulated")
    ax.set_ylabel("streamflow (mm d$^{-1}$)")
    ax.set_title(title)
    ax.legend(loc="upper right")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)
    return True


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
    n = len(valid_forc)
    s = np.arange(max(0, lo - warm), max(max(0, lo - warm), min(hi - total + 2, n - total + 1)))
    s = s[s + warm >= lo]
    if s.size == 0:
        return s.astype(np.int64)
    bad = np.concatenate([[0], np.cumsum(~np.asarray(valid_forc, dtype=bool))])
    good = np.concatenate([[0], np.cumsum(np.asarray(valid_obs, dtype=bool))])
    ok = (bad[s + total] - bad[s] == 0) & (good[s + total] - good[s + warm] >= win // 4)
    return s[ok].astype(np.int64)


def split_basins(basins, hucs, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Seeded, HUC-02-stratified split of basin indices into (training, validation)."""
    if fraction <= 0:
        return list(range(len(basins))), []
    rng = np.random.default_rng(seed + 7919)
    val = []
    groups: dict[str, list[int]] = {}
    for i, h in enumerate(hucs):
        groups.setdefault(str(h), []).append(i)
    for h in sorted(groups):
        idx = groups[h]
        k = int(round(fraction * len(idx)))
        val += [idx[j] for j in rng.permutation(len(idx))[:k]]
    val = sorted(val)
    train = [i for i in range(len(basins)) if i not in set(val)]
    if not train:
        raise ValueError(f"validation.basin_fraction: {fraction} leaves no training basin")
    return train, val


def _learning_rate(opt, iteration: int, total: int) -> float:
    if opt.lr_schedule == "constant" or total <= 1:
        return opt.learning_rate
    frac = iteration / (total - 1)
    lo = opt.learning_rate * opt.lr_final_fraction
    return lo + 0.5 * (opt.learning_rate - lo) * (1.0 + math.cos(math.pi * frac))


def _median(rows, key="nse"):
    vals = [r[key] for r in rows if np.isfinite(r[key])]
    return float(np.median(vals)) if vals else float("nan")


def load_training_data(cfg: TrainConfig, base_dir: Path):
    """The Dataset for a training config (basins, attributes and the span of all its periods)."""
    root = _resolve(base_dir, cfg.data.camels_root)
    basins = cfg.data.basins
    bf = None
    if cfg.data.basins_file is not None:
        bf = _resolve(base_dir, cfg.data.basins_file)
        basins = read_basins_file(bf, "data.basins_file")
    periods = [cfg.periods.train] + [p for p in (cfg.periods.validation, cfg.periods.test) if p is not None]
    warm = max(cfg.periods.warmup_days, cfg.training.window_warmup_days)
    start = min(pd.Timestamp(p[0]) for p in periods) - pd.Timedelta(days=warm)
    end = max(pd.Timestamp(p[1]) for p in periods)
    try:
        return open_camels(root, basins, cfg.data.product, cfg.model.attributes, start=start, end=end,
                           attributes_root=_resolve(base_dir, cfg.data.attributes_root))
    except (KeyError, FileNotFoundError) as exc:
        msg = exc.args[0] if exc.args and isinstance(exc.args[0], str) else str(exc)
        if bf is None or not any(b in msg for b in basins):
            raise
        hint = ("; data.camels_root is null, so only the bundled 10-basin subset was searched: give --data PATH"
                if root is None else "")
        raise type(exc)(f"{msg} (basin ids read from data.basins_file {bf}{hint})") from exc


def read_basins_file(path, what: str = "basins file") -> list[str]:
    """Basin ids from a text file: one per line (the first word; NeuralHydrology's basin files are this format),
    blank lines and ``#`` comments ignored; an empty file or a repeated id is an error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what}: file not found: {path}")
    ids, seen, repeated = [], set(), []
    for line in path.read_text().splitlines():
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        b = text.split()[0]
        (repeated if b in seen else ids).append(b)
        seen.add(b)
    if not ids:
        raise ValueError(f"{what} {path}: no basin ids (one per line; blank lines and '#' comments are ignored)")
    if repeated:
        raise ValueError(f"{what} {path}: ids listed more than once: {sorted(set(repeated))[:10]}")
    return ids


def train(cfg: TrainConfig, base_dir: Path, progress: bool = True, resume: bool = False, out_dir=None) -> dict:
    """Train a model; writes the checkpoint, a CSV log, a loss curve and validation metrics.  Returns a summary."""
    opt = cfg.training
    torch.manual_seed(opt.seed)
    rng = np.random.default_rng(opt.seed)
    if opt.threads:
        torch.set_num_threads(opt.threads)
    outdir = Path(out_dir) if out_dir is not None else _resolve(base_dir, cfg.output.dir)
    outdir.mkdir(parents=True, exist_ok=True)
    state_path = outdir / "train_state.pt"
    config_dump = cfg.model_dump(mode="json")
    if not resume and state_path.exists():
        raise FileExistsError(f"training: {state_path} exists from an earlier run; use --resume to continue it, "
                              f"or choose another output.dir")
    ds = load_training_data(cfg, base_dir)
    basins = [str(b) for b in ds.basin.values]
    train_idx, val_idx = split_basins(basins, ds["huc_02"].values, cfg.validation.basin_fraction,
                                      opt.seed if cfg.validation.seed is None else cfg.validation.seed)

    # training arrays over the train period plus its warm-up
    tr0 = pd.Timestamp(cfg.periods.train[0])
    tr1 = pd.Timestamp(cfg.periods.train[1])
    full = ds.isel(basin=train_idx).sel(time=slice(tr0 - pd.Timedelta(days=opt.window_warmup_days), tr1))
    forc = model_forcings(full, cfg.model.pet_method, dtype=torch.float64)
    obs = torch.as_tensor(full["qobs"].transpose("time", "basin").to_numpy())
    attrs = attribute_tensor(full, cfg.model.attributes, dtype=torch.float64)
    lo = int((full.time < tr0).sum())
    hi = full.sizes["time"] - 1
    valid_forc = torch.isfinite(forc).all(-1).numpy()
    valid_obs = torch.isfinite(obs).numpy()
    starts = {b: _window_starts(valid_forc[:, b], valid_obs[:, b], lo, hi, opt.window_warmup_days, opt.window_days) for b in range(len(train_idx))}
    trainable = [b for b in range(len(train_idx)) if len(starts[b])]
    if not trainable:
        raise ValueError("training: no basin has a complete warm-up + window with observations in the training period")

    mcfg = ModelConfig(
        variant=cfg.model.variant, nmul=cfg.model.nmul, dt_days=1.0, dynamic_params=cfg.model.dynamic_params,
        routing=cfg.model.routing, lstm_hidden=cfg.model.lstm_hidden, mlp_hidden=cfg.model.mlp_hidden,
        mlp_layers=cfg.model.mlp_layers, attributes=list(cfg.model.attributes),
        attribute_units=[ATTRIBUTE_UNITS.get(a, "") for a in cfg.model.attributes],
        log_attributes=list(cfg.model.log_attributes), pet_method=cfg.model.pet_method,
    )
    model = DeltaModel(mcfg)
    # normalisation statistics from the training basins over the training period only
    tr_forc = forc[lo:].reshape(-1, 3)
    tr_forc = tr_forc[torch.isfinite(tr_forc).all(-1)]
    t_attrs = model.provider.transform_attributes(attrs.float()).double()
    model.provider.set_normalization(t_attrs.mean(0), t_attrs.std(0).clamp(min=1e-6), tr_forc.mean(0), tr_forc.std(0).clamp(min=1e-6))
    # per-basin std of observed flow for NSE*
    obs_tr = obs[lo:].numpy()
    q_std = torch.tensor([float(np.nanstd(obs_tr[:, b])) if np.isfinite(obs_tr[:, b]).any() else 1.0 for b in range(len(train_idx))])

    device = torch.device("cuda" if opt.device == "cuda" or (opt.device == "auto" and torch.cuda.is_available()) else "cpu")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("training.device: expected a CUDA GPU, but torch sees none (use auto or cpu)")
    low_precision = torch.bfloat16 if opt.precision == "bfloat16" else None
    model = model.to(device)  # the fused physics kernel is CPU-only: on a GPU the eager engine runs (engine: auto)
    q_std = q_std.to(device)
    optim = torch.optim.Adam(model.parameters(), lr=opt.learning_rate)
    forc32, obs32, attrs32 = forc.float().to(device), obs.float().to(device), attrs.float().to(device)
    total_its = opt.epochs * opt.iterations_per_epoch
    history: list[dict] = []
    best = {"epoch": 0, "score": -math.inf, "state_dict": None}
    since_best = 0
    first_epoch = 1
    wall_before = 0.0
    if resume:
        if not state_path.exists():
            raise FileNotFoundError(f"training --resume: no training state at {state_path}")
        st = torch.load(state_path, map_location="cpu", weights_only=True)
        if st.get("config") not in (json.dumps(config_dump, sort_keys=True), _legacy_config_json(config_dump)):
            raise ValueError(f"training --resume: {state_path} was written by a different config; resume with the same config")
        model.load_state_dict(st["model"])
        optim.load_state_dict(st["optimizer"])
        rng.bit_generator.state = json.loads(st["rng"])
        torch.set_rng_state(st["torch_rng"])
        history = json.loads(st["history"])
        best = {"epoch": st["best_epoch"], "score": st["best_score"], "state_dict": st["best_state"] or None}
        since_best = st["since_best"]
        first_epoch = st["epoch"] + 1
        wall_before = st["wall_time_s"]
        if progress:
            print(f"resuming after epoch {st['epoch']} from {state_path}")

    val_period = cfg.periods.validation or cfg.periods.train
    in_sample = not val_idx
    val_ds = ds.isel(basin=val_idx) if val_idx else ds.isel(basin=train_idx)
    if in_sample and cfg.periods.validation is None and progress:
        print("warning: no held-out validation basins and no validation period: monitoring is in-sample, the last epoch is kept")
    select = not (in_sample and cfg.periods.validation is None)
    t_start = time.time()
    done_epochs = first_epoch - 1
    stopped_early = False
    bar = tqdm(total=total_its, initial=done_epochs * opt.iterations_per_epoch, desc="training", unit="it",
               disable=not progress, dynamic_ncols=True)
    for epoch in range(first_epoch, opt.epochs + 1):
        model.train()
        losses = []
        t_ep = time.time()
        for k in range(opt.iterations_per_epoch):
            it = (epoch - 1) * opt.iterations_per_epoch + k
            for g in optim.param_groups:
                g["lr"] = _learning_rate(opt, it, total_its)
            batch = rng.choice(trainable, size=min(opt.batch_basins, len(trainable)), replace=len(trainable) < opt.batch_basins)
            s = np.array([starts[b][rng.integers(len(starts[b]))] for b in batch])
            idx = s[None, :] + np.arange(opt.window_warmup_days + opt.window_days)[:, None]
            bt = torch.as_tensor(batch, device=device)
            f = forc32[torch.as_tensor(idx, device=device), bt]  # (T, B, 3)
            y = obs32[torch.as_tensor(idx[opt.window_warmup_days :], device=device), bt]
            a = attrs32[bt]
            state = model.initial_state(len(batch))
            with lstm_precision(model.provider, low_precision):
                prep = model.prepare(a)
                state = model.warmup(state, f[: opt.window_warmup_days], model.prepare(a.detach()))
                _, out = model.unroll(state, f[opt.window_warmup_days :], prep, outputs=("runoff",))
            loss = _loss(out["runoff"], y, q_std[bt].float(), opt.loss)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"training: loss is {float(loss)} at epoch {epoch}, iteration {k + 1}")
            optim.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), opt.grad_clip)
            optim.step()
            losses.append(float(loss.detach()))
            bar.update(1)
            bar.set_postfix(epoch=epoch, loss=f"{np.mean(losses):.4f}", best=f"{best['score']:.3f}")
        ep_wall = time.time() - t_ep
        row = {"epoch": epoch, "loss": float(np.mean(losses)), "lr": optim.param_groups[0]["lr"],
               "it_per_s": opt.iterations_per_epoch / ep_wall, "val_median_nse": float("nan"), "val_median_kge": float("nan")}
        if epoch % cfg.validation.every_epochs == 0 or epoch == opt.epochs:
            model.eval()
            rows, *_ = evaluate(model, val_ds, val_period, cfg.periods.warmup_days)
            row["val_median_nse"], row["val_median_kge"] = _median(rows, "nse"), _median(rows, "kge")
            if not select or row["val_median_nse"] > best["score"]:
                best = {"epoch": epoch, "score": row["val_median_nse"],
                        "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()}}
                since_best = 0
            else:
                since_best += 1
            bar.write(f"epoch {epoch:3d}  loss {row['loss']:.4f}  validation median NSE {row['val_median_nse']:.3f}"
                      f"  (best {best['score']:.3f} at epoch {best['epoch']})  {row['it_per_s']:.2f} it/s")
        history.append(row)
        done_epochs = epoch
        if cfg.validation.patience is not None and since_best >= cfg.validation.patience and select:
            stopped_early = True
        atomic_torch_save({
            "config": json.dumps(config_dump, sort_keys=True), "epoch": epoch, "model": model.state_dict(),
            "optimizer": optim.state_dict(), "rng": json.dumps(rng.bit_generator.state), "torch_rng": torch.get_rng_state(),
            "history": json.dumps(history), "best_epoch": best["epoch"], "best_score": best["score"],
            "best_state": best["state_dict"] or {}, "since_best": since_best,
            "wall_time_s": wall_before + time.time() - t_start,
            "train_basins": [basins[i] for i in train_idx], "validation_basins": [basins[i] for i in val_idx],
        }, state_path)
        write_history_csv(outdir / "history.csv", history)
        if cfg.output.plots:
            loss_curve_png(outdir / "loss.png", history)
        if stopped_early:
            bar.write(f"early stop: no validation improvement for {cfg.validation.patience} validations")
            break
    bar.close()
    wall = wall_before + time.time() - t_start

    if best["state_dict"] is not None:
        model.load_state_dict(best["state_dict"])
    model = model.cpu()  # the checkpoint and the evaluations are on the CPU
    model.eval()
    val_rows, *_ = evaluate(model, val_ds, val_period, cfg.periods.warmup_days)
    write_metrics_csv(outdir / "metrics_validation.csv", val_rows)
    summary_metrics = {"validation": val_rows, "validation_median_nse": _median(val_rows, "nse"),
                       "validation_median_kge": _median(val_rows, "kge"),
                       "validation_kind": "in-sample" if in_sample and cfg.periods.validation is None else
                       ("held-out basins" if val_idx else "held-out period")}
    rows_test = None
    if cfg.periods.test is not None:
        rows_test, sim, qobs, times = evaluate(model, ds, cfg.periods.test, cfg.periods.warmup_days)
        write_metrics_csv(outdir / "metrics_test.csv", rows_test)
        summary_metrics.update(test=rows_test, test_median_nse=_median(rows_test, "nse"), test_median_kge=_median(rows_test, "kge"))
    its = sum(h["it_per_s"] ** -1 * opt.iterations_per_epoch for h in history)
    provenance = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "code_version": _git_version(),
        "data": {"source": f"CAMELS-US {ds.attrs.get('product', cfg.data.product)} (Newman et al. 2015; Addor et al. 2017)",
                 "product": ds.attrs.get("product", cfg.data.product), "basins": basins,
                 "train_basins": [basins[i] for i in train_idx], "validation_basins": [basins[i] for i in val_idx]},
        "periods": {"train": list(cfg.periods.train), "validation": list(val_period),
                    "test": list(cfg.periods.test) if cfg.periods.test else None, "warmup_days": cfg.periods.warmup_days},
        "training": cfg.training.model_dump(),
        "train_config": config_dump,
        "selected_epoch": best["epoch"],
        "epochs_run": done_epochs,
        "history": history,
        "metrics": summary_metrics,
        "wall_time_s": round(wall, 1),
        "seconds_per_iteration": round(its / max(1, done_epochs * opt.iterations_per_epoch), 4),
        "torch_version": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": str(device),
        "precision": opt.precision,
    }
    ck = save_checkpoint(model, outdir / cfg.output.checkpoint, provenance)
    (outdir / "history.json").write_text(json.dumps(history, indent=1))
    if cfg.output.plots:
        loss_curve_png(outdir / "loss.png", history)
        if rows_test is not None and len(basins) <= 30:
            for i, b in enumerate(basins):
                if np.isfinite(qobs[i]).any() and np.isfinite(sim[i]).any():
                    hydrograph_png(outdir / f"hydrograph_{b}.png", times, sim[i], qobs[i],
                                   f"{b} test period {cfg.periods.test[0]}..{cfg.periods.test[1]}  NSE {rows_test[i]['nse']:.2f}")
    if progress:
        print(f"selected epoch {best['epoch']} (validation median NSE {summary_metrics['validation_median_nse']:.3f}, "
              f"{summary_metrics['validation_kind']}); wrote {ck}")
        if rows_test is not None and len(rows_test) <= 30:
            print(format_table(rows_test))
    return {"checkpoint": str(ck), "wall_time_s": wall, "metrics": summary_metrics, "history": history,
            "selected_epoch": best["epoch"]}


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
    """Per-basin skill as CSV, written atomically (an earlier file stays whole if this fails)."""
    def write(tmp):
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["basin", "nse", "kge", "pbias", "n_obs"])
            w.writeheader()
            for r in rows:
                w.writerow({k: (f"{v:.4f}" if isinstance(v, float) and math.isfinite(v) else v) for k, v in r.items()})

    atomic_write(path, write, "metrics file")


def write_history_csv(path, history):
    keys = ["epoch", "loss", "lr", "it_per_s", "val_median_nse", "val_median_kge"]
    tmp = Path(str(path) + ".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for h in history:
            w.writerow({k: (f"{h[k]:.6g}" if isinstance(h[k], float) else h[k]) for k in keys})
    os.replace(tmp, path)


def loss_curve_png(path, history) -> bool:
    """Training loss and validation NSE by epoch; False (one warning) without matplotlib (the 'plot' extra)."""
    plt = optional_pyplot("the loss curve (loss.png)")
    if plt is None:
        return False

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ep = [h["epoch"] for h in history]
    ax.plot(ep, [h["loss"] for h in history], "o-", label="training loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax2 = ax.twinx()
    vh = [h for h in history if np.isfinite(h["val_median_nse"])]
    ax2.plot([h["epoch"] for h in vh], [h["val_median_nse"] for h in vh], "s--", color="tab:green", label="validation median NSE")
    ax2.set_ylabel("median NSE")
    fig.legend(loc="upper center", ncol=2, fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)
    return True
