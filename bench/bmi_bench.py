"""BMI benchmarks: ngen's per-catchment pattern and one instance over many units.

* ``update_us`` — ``BmiDeltaModel.update()`` alone, one unit (the bundled network, nmul 16), inputs set once per
  step with ``set_value``.  Measured with hourly framework steps (ngen's: the daily model advances on every 24th
  update; the mean over updates is reported, and the model-step and accumulate-only updates separately) and with
  daily framework steps (every update advances the model).
* ``ngen_pattern_us`` — the whole call sequence a real ngen (NOAA-OWP/ngen master dd04bbcc, ``bmi_python``) makes
  into one catchment per catchment-step, call for call as recorded from inside the model by
  ``bench/bench_ngen_inside.py`` (``tests/data/ngen_calls_per_step.txt``, 158 calls): the clock and end time; per
  input nine metadata queries and ``set_value``; ``get_time_step``; ``update``; the main output (11 calls, through
  ``get_value_at_indices``); the four ``ngen::mass_*`` through ``get_value_ptr``; every output for the output line
  (11 calls each).
  Forcing: the real hourly AORC CSV of ngen's sample catchment cat-27 (examples/ngen/data), December 2015.
* ``many_units`` — one instance over 10,000 units (inline units, the attributes the bundled network reads, from
  ``examples/ngen/data/attributes.csv``, jittered around real basins' values), daily and hourly framework steps:
  unit-steps/s.
* ``profile`` — cProfile of the one-unit update, top functions by own time.

Each measurement runs with the model's physics engine (``ModelConfig.engine``) set to ``eager`` and to ``fast``.
The BMI steps tiny problems (one unit here) through ``DeltaModel.advance_numpy`` whatever the engine, larger ones
through ``DeltaModel.advance``: the engine changes the numbers only for the 10,000-unit instance.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
NGEN_CSV = ROOT / "examples" / "ngen" / "data" / "forcing" / "cat-27_2015-12-01_00_00_00_2015-12-30_23_00_00.csv"
ATTRS_CSV = ROOT / "examples" / "ngen" / "data" / "attributes.csv"
PRECIP = "atmosphere_water__liquid_equivalent_precipitation_rate"
TEMP = "land_surface_air__temperature"
MASS = ("ngen::mass_in", "ngen::mass_out", "ngen::mass_stored", "ngen::mass_leaked")
ATTRIBUTES = tuple(c for c in pd.read_csv(ATTRS_CSV, nrows=0).columns if c not in ("id", "attribute_source"))


def hourly_forcing() -> pd.DataFrame:
    """cat-27 hourly AORC forcing; precip_rate recomputed from APCP_surface (the shipped column is 1000x off)."""
    df = pd.read_csv(NGEN_CSV)
    df["precip_rate"] = df["APCP_surface"] / 3600.0  # mm per hour -> mm s-1
    return df


def write_config(folder: Path, n_units: int, time_step: int, seed: int = 0) -> Path:
    """An inline-units config: n units around the real attributes of ngen's sample catchments."""
    base = pd.read_csv(ATTRS_CSV)
    rng = np.random.default_rng(seed)
    rows = base.iloc[np.arange(n_units) % len(base)]
    attrs = {}
    for a in ATTRIBUTES:
        v = rows[a].to_numpy(dtype="float64")
        jitter = 1.0 + (0.1 * rng.standard_normal(n_units) if n_units > 1 else 0.0)
        attrs[a] = [round(float(x), 6) for x in np.abs(v * jitter)]
    cfg = {
        "units": {
            "ids": [f"u{i}" for i in range(n_units)],
            "area_km2": [round(float(x), 4) for x in (10.0 + 90.0 * rng.random(n_units))],
            "lat": [round(float(x), 4) for x in (35.0 + 0.5 * rng.standard_normal(n_units))],
            "lon": [round(float(x), 4) for x in (-80.0 + 0.5 * rng.standard_normal(n_units))],
            "attributes": attrs,
        },
        "time": {"time_step": time_step, "start": "2015-12-01 00:00:00"},
        "warmup": {"mode": "cold"},
    }
    path = folder / f"bmi_{n_units}units_{time_step}s.yaml"
    path.write_text(yaml.safe_dump(cfg, default_flow_style=None, width=10_000))
    return path


def _make(config: Path, engine: str | None):
    from bmi_dhydro import BmiDeltaModel

    m = BmiDeltaModel()
    m.initialize(str(config))
    if engine is not None:
        m.model.config.engine = engine  # the network is shared by the instances of a process: set per run
    return m


def engines_available() -> list[str | None]:
    """["eager", "fast"] when the model config has an engine switch, else [None] (the code as it is)."""
    from bmi_dhydro.model import ModelConfig

    return ["eager", "fast"] if "engine" in ModelConfig.model_fields else [None]


def update_us(config: Path, steps: int, engine: str | None, k: int) -> dict:
    """Mean µs per update() with real cat-27 inputs; k = framework steps per model step."""
    df = hourly_forcing()
    p = df["precip_rate"].to_numpy()
    t = df["TMP_2maboveground"].to_numpy()
    m = _make(config, engine)
    buf_p, buf_t = np.zeros(1), np.zeros(1)
    warm = 2 * k
    for i in range(warm):
        buf_p[0], buf_t[0] = p[i % len(p)], t[i % len(t)]
        m.set_value(PRECIP, buf_p)
        m.set_value(TEMP, buf_t)
        m.update()
    per = []
    for i in range(steps):
        buf_p[0], buf_t[0] = p[(warm + i) % len(p)], t[(warm + i) % len(t)]
        m.set_value(PRECIP, buf_p)
        m.set_value(TEMP, buf_t)
        t0 = time.perf_counter()
        m.update()
        per.append(time.perf_counter() - t0)
    per = np.array(per) * 1e6
    model_steps = per[(np.arange(steps) + warm + 1) % k == 0] if k > 1 else per
    other = per[(np.arange(steps) + warm + 1) % k != 0] if k > 1 else np.array([])
    return {
        "mean_us": float(per.mean()),
        "median_us": float(np.median(per)),
        "model_step_update_us": float(np.median(model_steps)),
        "accumulate_only_update_us": float(np.median(other)) if other.size else None,
        "updates": steps,
    }


NGEN_CALLS = ROOT / "tests" / "data" / "ngen_calls_per_step.txt"


def ngen_calls_per_step() -> list[tuple[str, str | None]]:
    """The BMI calls a real ngen made into one catchment for one catchment-step (recorded by
    ``bench/bench_ngen_inside.py``), rotated to start with the step's first call: the clock and end-time queries,
    the inputs, ``update``, then the main output, the mass-balance check and the output line.  (method, variable)."""
    calls = []
    for line in NGEN_CALLS.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            method, _, name = line.strip().partition(" ")
            calls.append((method, name or None))
    first = next(i for i, (m, _) in enumerate(calls) if m == "get_current_time")
    return calls[first:] + calls[:first]


class NgenReplay:
    """The per-catchment-step Python calls of a real ngen (``ngen_calls_per_step``), call for call."""

    def __init__(self, model):
        self.m = model
        self.calls = 0
        self.sequence = [(getattr(model, method), method, name) for method, name in ngen_calls_per_step()]
        self.index = np.zeros(1, dtype="int32")

    def step(self, values: dict):
        for fn, method, name in self.sequence:
            if method == "set_value":
                fn(name, np.full(1, values[name], dtype="float64"))
            elif method == "get_value_at_indices":
                dest = np.zeros(1, dtype="float64")
                fn(name, dest, self.index)
            elif method == "get_value_ptr":
                fn(name)[0]
            elif name is None:
                fn()
            else:
                fn(name)
        self.calls += len(self.sequence)


def ngen_pattern_us(config: Path, steps: int, engine: str | None) -> dict:
    df = hourly_forcing()
    m = _make(config, engine)
    rep = NgenReplay(m)
    names = m.get_input_var_names()
    cols = {PRECIP: df["precip_rate"].to_numpy(), TEMP: df["TMP_2maboveground"].to_numpy()}
    missing = [n for n in names if n not in cols]
    if missing:
        raise RuntimeError(f"ngen pattern bench: no forcing column for inputs {missing}")
    for i in range(48):
        rep.step({n: cols[n][i % len(df)] for n in names})
    rep.calls = 0
    t0 = time.perf_counter()
    for i in range(steps):
        rep.step({n: cols[n][(48 + i) % len(df)] for n in names})
    dt = time.perf_counter() - t0
    return {"us_per_catchment_step": dt / steps * 1e6, "python_calls_per_step": rep.calls / steps, "steps": steps}


def many_units(config: Path, steps: int, engine: str | None, n_units: int) -> dict:
    df = hourly_forcing()
    m = _make(config, engine)
    rng = np.random.default_rng(1)
    scale_p = 0.5 + rng.random(n_units)
    off_t = rng.standard_normal(n_units)
    p = df["precip_rate"].to_numpy()
    t = df["TMP_2maboveground"].to_numpy()
    buf_p, buf_t = np.zeros(n_units), np.zeros(n_units)

    def one(i):
        np.multiply(scale_p, p[i % len(p)], out=buf_p)
        np.add(off_t, t[i % len(t)], out=buf_t)
        m.set_value(PRECIP, buf_p)
        m.set_value(TEMP, buf_t)
        m.update()

    one(0)
    t0 = time.perf_counter()
    for i in range(1, steps + 1):
        one(i)
    dt = time.perf_counter() - t0
    return {"s_per_update": dt / steps, "unit_steps_per_s": n_units * steps / dt, "updates": steps}


def profile_update(config: Path, steps: int, engine: str | None, top: int = 14) -> list[dict]:
    df = hourly_forcing()
    m = _make(config, engine)
    p = df["precip_rate"].to_numpy()
    t = df["TMP_2maboveground"].to_numpy()
    a, b = np.zeros(1), np.zeros(1)

    def loop():
        for i in range(steps):
            a[0], b[0] = p[i % len(p)], t[i % len(t)]
            m.set_value(PRECIP, a)
            m.set_value(TEMP, b)
            m.update()

    loop()
    prof = cProfile.Profile()
    prof.enable()
    loop()
    prof.disable()
    st = pstats.Stats(prof, stream=io.StringIO())
    rows = []
    for (fname, line, func), (cc, nc, tt, ct, callers) in st.stats.items():
        rows.append({"function": f"{Path(fname).name}:{line}({func})" if line else func, "calls_per_update": nc / steps,
                     "own_us_per_update": tt / steps * 1e6, "cum_us_per_update": ct / steps * 1e6})
    rows.sort(key=lambda r: -r["own_us_per_update"])
    return rows[:top]


def run(quick: bool = False, log=print) -> dict:
    engines = engines_available()
    out: dict = {"engines": [e or "as-is" for e in engines], "update": {}, "ngen_pattern": {}, "many_units": {},
                 "profile": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cfg_h = write_config(tmp, 1, 3600)
        cfg_d = write_config(tmp, 1, 86400)
        n_many = 10_000
        cfg_many_d = write_config(tmp, n_many, 86400, seed=2)
        cfg_many_h = write_config(tmp, n_many, 3600, seed=2)
        n_h = 480 if quick else 2400
        n_d = 100 if quick else 400
        for eng in engines:
            key = eng or "as-is"
            log(f"  BMI update, 1 unit, engine {key}")
            out["update"][key] = {"hourly": update_us(cfg_h, n_h, eng, 24), "daily": update_us(cfg_d, n_d, eng, 1)}
            log(f"  ngen call pattern, engine {key}")
            out["ngen_pattern"][key] = ngen_pattern_us(cfg_h, n_h, eng)
            log(f"  one instance over {n_many} units, engine {key}")
            out["many_units"][key] = {
                "daily": many_units(cfg_many_d, 3 if quick else 10, eng, n_many),
                "hourly": many_units(cfg_many_h, 24 if quick else 72, eng, n_many),
            }
            out["profile"][key] = {"daily": profile_update(cfg_d, 100 if quick else 300, eng),
                                   "hourly": profile_update(cfg_h, 480 if quick else 2400, eng)}
    return out


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(quick="--quick" in sys.argv), indent=1))
