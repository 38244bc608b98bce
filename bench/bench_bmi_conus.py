"""A continental year through the BMI: ns per unit and hourly step of one many-unit instance, and its CONUS cost.

    python bench/bench_bmi_conus.py            # 10,000 units, 5 model days of hourly steps per configuration
    python bench/bench_bmi_conus.py --quick    # 2,000 units, 2 days (no ratios, no extrapolation printed)

One ``BmiDeltaModel`` over N units (the bundled network; the units are the 671 CAMELS basins' attributes tiled and
jittered, so the network sees realistic inputs) is driven as a framework drives it: every hour ``set_value`` of
precipitation and temperature and one ``update()`` (the daily model advances on every 24th).  Configurations, run
one after the other in alternating rounds (the minimum per configuration is kept: the machine is shared):

* ``float64, 1 thread`` — the BMI default (``dtype: float64``, ``threads: 1``), the baseline of every ratio;
* ``float64, 2 threads``, ``float32, 1 thread``, ``float32, 2 threads`` (``dtype``, ``threads`` in the BMI config).

The figure is wall seconds / (N x hourly updates) in ns, and the CONUS extrapolation is that x 830,000 divides x
8,760 hours.  Accuracy: the float32 runoff of the same run against float64 (max relative difference over units
with runoff above 0.01 mm d-1, and the max absolute difference in mm d-1).  Writes ``bench/results/bmi_conus.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

HERE = Path(__file__).resolve().parent
CONUS_DIVIDES = 830_000
HOURS = 8760
PRECIP = "atmosphere_water__liquid_equivalent_precipitation_rate"
TEMP = "land_surface_air__temperature"
RUNOFF = "land_surface_water__runoff_depth"


def units_table(folder: Path, n: int) -> Path:
    """A units CSV of n units: the bundled CAMELS attribute tables (671 basins) tiled, attributes jittered by 10 %."""
    from bmi_dhydro.checkpoint import load_checkpoint
    from bmi_dhydro.datasets import bundled_camels_root, read_attributes

    model, _ = load_checkpoint()
    names = list(model.config.attributes)
    root = bundled_camels_root()
    ids = pd.read_csv(root / "camels_attributes_v2.0" / "camels_topo.txt", sep=";", dtype={"gauge_id": str})["gauge_id"]
    table = read_attributes(root, list(ids), names).dropna()
    rng = np.random.default_rng(0)
    rows = table.iloc[np.arange(n) % len(table)].reset_index(drop=True)
    df = pd.DataFrame({"id": [f"u{i}" for i in range(n)],
                       "area_km2": rows["area_gages2"].to_numpy() if "area_gages2" in rows else 50.0,
                       "lat": rows["gauge_lat"].to_numpy(), "lon": rows["gauge_lon"].to_numpy()})
    for a in names:
        v = rows[a].to_numpy(dtype="float64")
        df[a] = v * (1.0 + 0.1 * rng.standard_normal(n)) if a not in ("area_gages2",) else v
        if a in ("frac_snow", "frac_forest", "sand_frac", "silt_frac", "clay_frac", "soil_porosity"):
            df[a] = np.clip(df[a], 0.0, 100.0 if a.endswith("_frac") and a != "frac_snow" else 1.0)
    path = folder / f"units_{n}.csv"
    df.to_csv(path, index=False)
    return path


def config(folder: Path, table: Path, dtype: str, threads: int) -> Path:
    cfg = {"units": {"table": str(table)}, "time": {"time_step": 3600, "start": "2015-12-01 00:00:00"},
           "warmup": {"mode": "cold"}, "dtype": dtype, "threads": threads}
    p = folder / f"bmi_{dtype}_{threads}.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def run_one(cfg: Path, n: int, days: int) -> tuple[float, np.ndarray]:
    from bmi_dhydro import BmiDeltaModel

    m = BmiDeltaModel()
    m.initialize(str(cfg))
    rng = np.random.default_rng(1)
    scale = 0.5 + rng.random(n)
    offset = rng.standard_normal(n)
    hours = np.arange(24 * (days + 1))
    p_h = 2e-4 * (np.sin(hours / 7.0) > 0.3)  # mm s-1: rain on some hours
    t_h = 278.0 + 6.0 * np.sin(2 * np.pi * (hours % 24) / 24.0)
    buf_p, buf_t = np.empty(n), np.empty(n)
    daily = []

    def hour(i):
        np.multiply(scale, p_h[i], out=buf_p)
        np.add(offset, t_h[i], out=buf_t)
        m.set_value(PRECIP, buf_p)
        m.set_value(TEMP, buf_t)
        m.update()

    for i in range(24):  # the first day (first model step: network set-up) is not timed
        hour(i)
    t0 = time.perf_counter()
    for i in range(24, 24 * (days + 1)):
        hour(i)
        if (i + 1) % 24 == 0:
            daily.append(m.get_value_ptr(RUNOFF).copy())
    wall = time.perf_counter() - t0
    m.finalize()
    return wall / (n * 24 * days) * 1e9, np.array(daily)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--units", type=int, default=None)
    ap.add_argument("--days", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=None)
    args = ap.parse_args(argv)
    n = args.units or (2000 if args.quick else 10_000)
    days = args.days or (2 if args.quick else 5)
    rounds = args.rounds or (1 if args.quick else 3)
    confs = [("float64", 1), ("float64", 2), ("float32", 1), ("float32", 2)]
    best, series = {}, {}
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        table = units_table(tmp, n)
        for r in range(rounds):
            for dtype, threads in (confs if r % 2 == 0 else confs[::-1]):
                ns, q = run_one(config(tmp, table, dtype, threads), n, days)
                best[(dtype, threads)] = min(best.get((dtype, threads), np.inf), ns)
                series[dtype] = q
                print(f"round {r + 1}: {dtype}, {threads} thread(s): {ns:.1f} ns per unit-hour", file=sys.stderr)
    q64, q32 = series["float64"] * 86400.0 * 1000.0, series["float32"] * 86400.0 * 1000.0  # m per step -> mm d-1
    wet = np.abs(q64) > 0.01
    rel = float(np.max(np.abs(q32 - q64)[wet] / np.abs(q64)[wet])) if wet.any() else 0.0
    absd = float(np.max(np.abs(q32 - q64)))
    load1 = os.getloadavg()
    base = best[("float64", 1)]
    lines = ["# A continental year through the BMI (`python bench/bench_bmi_conus.py`"
             f"{' --quick' if args.quick else ''})", "",
             f"One `BmiDeltaModel` over {n:,} units (bundled network, CAMELS attributes tiled), hourly `set_value` + "
             f"`update()` (the daily model advances every 24th), {days} model days timed after one untimed day; "
             f"minimum of {rounds} alternating round(s); load average {load0[0]:.1f} at start, {load1[0]:.1f} at end "
             "(the machine is shared: the ratios, measured side by side, are the result). CONUS = "
             f"{CONUS_DIVIDES:,} divides x {HOURS:,} hours, extrapolated linearly from ns per unit-hour.", "",
             "| dtype | threads | ns per unit and hourly step | vs float64, 1 thread | CONUS year (min) |",
             "|---|---|---|---|---|"]
    rows = []
    for dtype, threads in confs:
        ns = best[(dtype, threads)]
        conus = ns * 1e-9 * CONUS_DIVIDES * HOURS / 60.0
        ratio = "(quick)" if args.quick else f"×{base / ns:.2f}"
        lines.append(f"| {dtype} | {threads} | {ns:.1f} | {ratio} | {'(quick)' if args.quick else f'{conus:.1f}'} |")
        rows.append({"dtype": dtype, "threads": threads, "ns_per_unit_hour": ns, "conus_minutes": conus})
    lines += ["", f"float32 against float64, same forcing, {days} days: runoff max relative difference {rel:.2e} "
              f"(units with runoff > 0.01 mm d-1), max absolute {absd:.2e} mm d-1.", ""]
    (HERE / "results").mkdir(exist_ok=True)
    name = "bmi_conus_quick" if args.quick else "bmi_conus"
    (HERE / "results" / f"{name}.md").write_text("\n".join(lines))
    (HERE / "results" / f"{name}.json").write_text(json.dumps(
        {"rows": rows, "units": n, "days": days, "rounds": rounds, "float32_max_rel_diff": rel,
         "float32_max_abs_diff_mm_d": absd, "load_start": load0, "load_end": load1}, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
