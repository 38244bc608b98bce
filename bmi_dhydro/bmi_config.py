"""The BmiDeltaModel configuration file (YAML): one strict schema, unknown keys are errors.

Relative paths resolve against the folder of the config file.  Example (network mode, one ngen catchment)::

    model:
      checkpoint: null              # null: the bundled default model
    units:
      ids: [cat-27]
      area_km2: [18.92]
      lat: [35.18]
      lon: [-80.73]
      attributes: {p_mean: [3.6], ...}   # every attribute the checkpoint names
    time:
      time_step: 3600               # framework step in seconds (3600 default; 86400 allowed)
      start: "2015-12-01 00:00:00"  # needed for the PET day of year
    warmup:
      mode: cold                    # cold | restart | spinup

Fixed-parameter mode (classic HBV) replaces ``checkpoint`` with ``parameters`` (name → value or per-unit list).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelSection(_Strict):
    checkpoint: str | None = None
    parameters: dict[str, Union[float, list[float]]] | None = None
    variant: Literal["hbv1.0", "hbv1.1p"] = "hbv1.0"  # fixed-parameter mode only
    routing: bool = True  # fixed-parameter mode only
    pet_method: Literal["hamon", "hargreaves", "priestley_taylor", "input"] | None = None  # fixed mode (default hamon)
    time_step: float | None = Field(None, gt=0)  # fixed mode native step in s (default: the framework step)

    @model_validator(mode="after")
    def _one_mode(self):
        if self.checkpoint is not None and self.parameters is not None:
            raise ValueError("model: give either checkpoint (network mode) or parameters (fixed-parameter mode), not both")
        if self.parameters is None:
            for key in ("pet_method", "time_step"):
                if getattr(self, key) is not None:
                    raise ValueError(f"model.{key}: only used in fixed-parameter mode; a checkpoint defines it")
        return self


class UnitsSection(_Strict):
    ids: list[str] | None = None
    area_km2: list[float] | None = None
    lat: list[float] | None = None
    lon: list[float] | None = None
    attributes: dict[str, list[float]] | None = None
    table: str | None = None
    hydrofabric: str | None = None
    layer: str | None = None
    id_field: str | None = None
    attributes_table: str | None = None
    select: Union[str, list[str], None] = None

    @model_validator(mode="after")
    def _one_source(self):
        sources = [k for k in ("ids", "table", "hydrofabric") if getattr(self, k) is not None]
        if len(sources) != 1:
            raise ValueError(f"units: give exactly one of ids (inline), table or hydrofabric; got {sources or 'none'}")
        if self.ids is not None:
            for k in ("area_km2", "lat", "lon"):
                if getattr(self, k) is None:
                    raise ValueError(f"units.{k}: required with inline ids")
        return self


class TimeSection(_Strict):
    time_step: float = Field(3600.0, gt=0)
    start: datetime = datetime(2015, 12, 1, 0, 0, 0)


class WarmupSection(_Strict):
    mode: Literal["cold", "restart", "spinup"] = "cold"
    restart_file: str | None = None
    forcing_file: str | None = None

    @model_validator(mode="after")
    def _needs(self):
        if self.mode == "restart" and not self.restart_file:
            raise ValueError("warmup.restart_file: required when warmup.mode is restart")
        if self.mode == "spinup" and not self.forcing_file:
            raise ValueError("warmup.forcing_file: required when warmup.mode is spinup")
        return self


class MpiSection(_Strict):
    partition: bool = False  # take this rank's share of the units (area-balanced, network-aware)
    fortran_comm: int | None = None  # a Fortran MPI handle (MPI_Comm_c2f / comm%MPI_VAL); default COMM_WORLD


class BmiConfig(_Strict):
    model: ModelSection = Field(default_factory=ModelSection)
    units: UnitsSection
    time: TimeSection = Field(default_factory=TimeSection)
    warmup: WarmupSection = Field(default_factory=WarmupSection)
    outputs: list[str] | None = None
    dtype: Literal["float64", "float32"] = "float64"
    # daily_release: the model steps daily and its runoff is released over the day's framework steps (hourly output
    # lags up to a day); hourly: the physics and routing step at the framework step, the network daily on the day's
    # aggregates (as trained), its parameters used for the next day; day_so_far: every framework step re-runs the
    # day's step on the day so far (the daily model's daily totals, a rain shows within the framework step)
    stepping: Literal["daily_release", "hourly", "day_so_far"] = "daily_release"
    # torch threads of this instance's model steps, set around each step and restored (0: leave torch's setting)
    threads: int = Field(1, ge=0)
    bad_precip: Literal["error", "zero"] = "error"
    # plausibility bound of the precipitation input, mm s-1 (above it: an error naming this key; a unit mix-up)
    max_precip_rate: float = Field(0.1, gt=0)
    mpi: MpiSection = Field(default_factory=MpiSection)


PATH_KEYS = {("model", "checkpoint"), ("units", "table"), ("units", "hydrofabric"), ("units", "attributes_table"),
             ("warmup", "restart_file"), ("warmup", "forcing_file")}


def load_bmi_config(path) -> tuple[BmiConfig, Path]:
    """Parse and validate; resolve relative paths against the config's folder and check that files exist."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"BMI config: file not found: {path} (resolved {path.resolve()})")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f"BMI config {path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ValueError(f"BMI config {path}: expected a mapping at the top level, got {type(raw).__name__}")
    try:
        cfg = BmiConfig.model_validate(raw)
    except ValidationError as exc:
        raise ValueError(f"BMI config {path}: {exc}") from exc
    base = path.parent.resolve()
    for section, key in PATH_KEYS:
        sec = getattr(cfg, section)
        val = getattr(sec, key)
        if val is None:
            continue
        p = Path(val)
        p = p if p.is_absolute() else (base / p)
        if not p.exists():
            raise FileNotFoundError(f"BMI config {path}: {section}.{key} names a missing file: {p}")
        setattr(sec, key, str(p))
    return cfg, base


def model_from_config(cfg: BmiConfig, n: int):
    """``(model, checkpoint payload or None)``: the fixed-parameter model of ``model.parameters`` (for ``n`` units),
    or the (shared) network of ``model.checkpoint``, in the config's dtype."""
    import torch

    from .checkpoint import shared_model
    from .model import DeltaModel

    m = cfg.model
    if m.parameters is not None:
        for name, v in m.parameters.items():
            if isinstance(v, list) and len(v) not in (1, n):
                raise ValueError(f"model.parameters.{name}: expected a value or {n} values (one per unit), got {len(v)}")
        dt_days = (m.time_step or cfg.time.time_step) / 86400.0
        if dt_days > 1.0:
            raise ValueError(f"model.time_step: expected at most 86400 s, got {dt_days * 86400:g}")
        model = DeltaModel.fixed(m.parameters, variant=m.variant, routing=m.routing, dt_days=dt_days,
                                 pet_method=m.pet_method or "hamon")
        return (model if cfg.dtype == "float64" else model.float()), None
    return shared_model(m.checkpoint, torch.float64 if cfg.dtype == "float64" else torch.float32)
