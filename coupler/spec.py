"""The coupling spec (YAML): one strict schema; unknown keys are errors; paths resolve against the spec's folder.

::

    period: {start: "2020-12-18 01:00:00", end: "2020-12-21 01:00:00", time_step: 3600}
    components:
      forcing: {python_type: coupler.components.gridded_forcing.GriddedForcingBmi, config: forcing.yaml}
      hydro:   {python_type: bmi_dhydro.BmiDeltaModel, config: hydro_dhbv.yaml}
    connections:
      - source: forcing.atmosphere_water__liquid_equivalent_precipitation_rate
        destination: hydro.atmosphere_water__liquid_equivalent_precipitation_rate
        weights: weights_conserve.nc          # an ESMF weight file, or:
        method: conserve                      # generate from source_grid + destination_polygons
        source_grid: data/grid.nc
        destination_polygons: data/divides.parquet
        time: mean                            # mean over source steps in a coupler step, or hold
        # units: kg m-2 s-1                   # override the source's units (UDUNITS-2)
        # water_density: true                 # only to convert a water mass flux to a depth rate (1000 kg m-3)
    constants:
      - {destination: hydro.land_surface_air__temperature, value: 283.15, units: K}
    outputs: {path: out/coupled.nc, component: hydro, variables: [land_surface_water__runoff_volume_flux]}

Component swap: change ``components.hydro.python_type`` / ``config`` — nothing else.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PeriodSpec(_Strict):
    start: datetime
    end: datetime
    time_step: float = Field(3600.0, gt=0)

    @model_validator(mode="after")
    def _order(self):
        if self.end <= self.start:
            raise ValueError(f"period: end {self.end} must be after start {self.start}")
        n = (self.end - self.start).total_seconds() / self.time_step
        if abs(n - round(n)) > 1e-9:
            raise ValueError(f"period: {self.start}..{self.end} is not a whole number of {self.time_step} s steps")
        return self


class ComponentSpec(_Strict):
    python_type: str
    config: str


def _split(ref: str, what: str) -> tuple[str, str]:
    if "." not in ref:
        raise ValueError(f"{what}: expected 'component.variable', got {ref!r}")
    comp, var = ref.split(".", 1)
    return comp, var


class ConnectionSpec(_Strict):
    source: str
    destination: str
    weights: str | None = None
    method: Literal["conserve", "bilinear", "nearest_stod", "nearest_dtos", "patch"] | None = None
    source_grid: str | None = None
    source_grid_var: str | None = None
    destination_polygons: str | None = None
    destination_id_field: str | None = None
    norm_type: Literal["dstarea", "fracarea"] = "dstarea"
    save_weights: str | None = None
    unmapped: Literal["error", "nan"] = "error"
    units: str | None = None  # override the source's units (UDUNITS-2, parsed by cf_xarray)
    # allow a water mass <-> volume conversion (kg m-2 s-1 -> mm s-1: divide by 1000 kg m-3); without it units of
    # different dimensions are an error
    water_density: bool = False
    time: Literal["mean", "hold"] = "mean"
    beyond_data: Literal["error", "hold"] = "error"  # past the source's end time: fail, or persist its last value

    @field_validator("source", "destination")
    @classmethod
    def _ref(cls, v):
        _split(v, "connection")
        return v

    @model_validator(mode="after")
    def _regrid(self):
        if self.weights and self.method:
            raise ValueError("connection: give weights (a file) or method (generate), not both")
        if self.method and not (self.source_grid and self.destination_polygons):
            raise ValueError("connection: method needs source_grid and destination_polygons to generate weights")
        return self


class ConstantSpec(_Strict):
    destination: str
    value: float
    units: str
    water_density: bool = False  # as on a connection: allow kg m-2 s-1 <-> mm s-1 with 1000 kg m-3

    @field_validator("destination")
    @classmethod
    def _ref(cls, v):
        _split(v, "constant")
        return v


class OutputSpec(_Strict):
    path: str = "coupled.nc"
    component: str
    variables: list[str]
    flush_every: int = Field(24, ge=1)
    plots: bool = True
    overwrite: bool = False  # replace an existing output (and record) file, only once the new run ends well


class RecordSpec(_Strict):
    path: str
    component: str
    state_every: int = Field(24, ge=1)  # framework steps between recorded states


class HotSwapSpec(_Strict):
    time: datetime  # at the step boundary at this time
    component: str
    checkpoint: str


class CouplingSpec(_Strict):
    period: PeriodSpec
    components: dict[str, ComponentSpec]
    connections: list[ConnectionSpec] = Field(default_factory=list)
    constants: list[ConstantSpec] = Field(default_factory=list)
    outputs: OutputSpec
    record: RecordSpec | None = None
    hot_swaps: list[HotSwapSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _refs(self):
        names = set(self.components)
        for c in self.connections:
            for ref in (c.source, c.destination):
                comp, _ = _split(ref, "connection")
                if comp not in names:
                    raise ValueError(f"connection {ref!r}: unknown component {comp!r}; components are {sorted(names)}")
        for c in self.constants:
            comp, _ = _split(c.destination, "constant")
            if comp not in names:
                raise ValueError(f"constant {c.destination!r}: unknown component {comp!r}; components are {sorted(names)}")
        if self.outputs.component not in names:
            raise ValueError(f"outputs.component: unknown component {self.outputs.component!r}; components are {sorted(names)}")
        return self


PATH_FIELDS = {
    "components": ("config",),
    "connections": ("weights", "source_grid", "destination_polygons"),
}


def load_spec(path) -> tuple[CouplingSpec, Path]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"coupling spec: file not found: {path} (resolved {path.resolve()})")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ValueError(f"coupling spec {path}: not valid YAML{where}: {problem}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"coupling spec {path}: expected a mapping at the top level")
    try:
        spec = CouplingSpec.model_validate(raw)
    except ValidationError as exc:
        raise ValueError(f"coupling spec {path}: {exc}") from exc
    base = path.parent.resolve()

    def resolve(p, where, must_exist=True):
        q = Path(p)
        q = q if q.is_absolute() else (base / q).resolve()
        if must_exist and not q.exists():
            raise FileNotFoundError(f"coupling spec {path}: {where} names a missing file: {q}")
        return str(q)

    for name, c in spec.components.items():
        c.config = resolve(c.config, f"components.{name}.config")
    for i, c in enumerate(spec.connections):
        for key in ("weights", "source_grid", "destination_polygons"):
            if getattr(c, key):
                setattr(c, key, resolve(getattr(c, key), f"connections[{i}].{key}"))
        if c.save_weights:
            c.save_weights = resolve(c.save_weights, f"connections[{i}].save_weights", must_exist=False)
    for i, h in enumerate(spec.hot_swaps):
        h.checkpoint = resolve(h.checkpoint, f"hot_swaps[{i}].checkpoint")
    spec.outputs.path = resolve(spec.outputs.path, "outputs.path", must_exist=False)
    if spec.record:
        spec.record.path = resolve(spec.record.path, "record.path", must_exist=False)
    return spec, base


def split_ref(ref: str) -> tuple[str, str]:
    return _split(ref, "reference")


def spec_provenance(spec_path) -> dict:
    """The spec's text and sha256, for the attributes of the files a run writes."""
    text = Path(spec_path).read_text()
    return {"coupling_spec": text, "coupling_spec_sha256": hashlib.sha256(text.encode()).hexdigest()}
