"""Sub-daily stepping (`hourly`, `day_so_far`) against the daily model on CAMELS basins: skill of the daily totals,
mass, and ngen's cost.

    python bench/bench_hourly.py            # the bundled Daymet basins, test period 1995-10-01..2010-09-30
    python bench/bench_hourly.py --quick    # 2 basins, 2 test years
    python bench/bench_hourly.py --data DATA [--basins-file FILE]
                                            # a large sample: the CAMELS Daymet NetCDF (or v1.2 folder) the model
                                            # was trained from, basins examples/train/basins_camels515.txt by default
                                            # (writes hourly_camels<N>.{md,json,csv,png})

The bundled model (daily network) runs through the BMI three times, one instance over all basins, a 365-day
spin-up before the test period:

* **daily**: ``time_step: 86400`` — the daily model itself (what `dhydro run` and the README's skill table use);
* **hourly**: ``time_step: 3600, stepping: hourly`` — the physics and routing step every hour;
* **day_so_far**: ``time_step: 3600, stepping: day_so_far`` — every hour re-runs the day's step on the day so far.

In the sub-daily runs each day's precipitation is spread evenly over its 24 hours and the daily mean temperature
held, so the network sees the same daily aggregates; their runoff is summed to days.  Reported: NSE of each against
observed daily streamflow per basin, the differences, the largest relative mass-balance error of the sub-daily runs,
and ngen's per-catchment call pattern (``bench/bmi_bench.py``'s replay, call for call, of the calls a real ngen made
into one catchment per catchment-step, ``tests/data/ngen_calls_per_step.txt``; real hourly AORC forcing of cat-27)
in µs per catchment-step for each stepping.  Writes ``bench/results/hourly.{md,json}``.
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
ROOT = HERE.parent
PRECIP = "atmosphere_water__liquid_equivalent_precipitation_rate"
TEMP = "land_surface_air__temperature"
DEPTH = "land_surface_water__runoff_depth"
SUBDAILY = ("hourly", "day_so_far")  # the sub-daily steppings compared with the daily model
SKILL_TOL, MASS_TOL, COST_US = 0.02, 1e-12, 100.0  # the targets a sub-daily mode meets to be ngen's default


def nse(sim, obs):
    ok = np.isfinite(obs) & np.isfinite(sim)
    o, s = obs[ok], sim[ok]
    return float(1.0 - np.sum((s - o) ** 2) / np.sum((o - o.mean()) ** 2))


def run_bmi(cfg_path, prcp_mm_d, tmean_c, hourly: bool):
    """Daily runoff (mm d-1), (days, units), and the largest relative mass-balance error."""
    from bmi_dhydro import BmiDeltaModel

    b = BmiDeltaModel()
    b.initialize(str(cfg_path))
    n_days, n = prcp_mm_d.shape
    k = 24 if hourly else 1
    out = np.zeros((n_days, n))
    worst = 0.0
    p_rate = prcp_mm_d / 86400.0  # mm s-1: the same rate every hour of the day
    t_k = tmean_c + 273.15
    for d in range(n_days):
        b.set_value(TEMP, t_k[d])
        for _ in range(k):
            b.set_value(PRECIP, p_rate[d])
            b.update()
            out[d] += b.get_value_ptr(DEPTH) * 1000.0
        if hourly and d % 30 == 0:
            m = [b.get_value_ptr(f"ngen::mass_{x}") for x in ("in", "out", "stored", "leaked")]
            worst = max(worst, float(np.max(np.abs(m[0] - m[1] - m[2] - m[3]) / m[0])))
    b.finalize()
    return out, worst


def ngen_cost(tmp: Path, stepping: str, steps: int) -> float:
    sys.path.insert(0, str(HERE))
    import bmi_bench

    row = pd.read_csv(ROOT / "examples/ngen/data/attributes.csv", dtype={"id": str}).set_index("id").loc["cat-27"]
    row = row.drop(labels=["attribute_source"], errors="ignore")
    cfg = {"units": {"ids": ["cat-27"], "area_km2": [18.92], "lat": [35.18], "lon": [-80.73],
                     "attributes": {a: [float(v)] for a, v in row.items()}},
           "time": {"time_step": 3600, "start": "2015-12-01 00:00:00"}, "stepping": stepping}
    p = tmp / f"ngen_{stepping}.yaml"
    p.write_text(yaml.safe_dump(cfg))
    best = min(bmi_bench.ngen_pattern_us(p, steps, None)["us_per_catchment_step"] for _ in range(3))
    return best


def _scatter_png(df, path) -> None:
    """NSE of the hourly run's daily totals against the daily run's, per basin (matplotlib, written atomically)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot", file=sys.stderr)
        return
    from bmi_dhydro.safe_io import save_figure

    fig, axes = plt.subplots(1, len(SUBDAILY), figsize=(5 * len(SUBDAILY), 5), squeeze=False)
    for ax, mode in zip(axes[0], SUBDAILY):
        for role, colour in (("train", "tab:blue"), ("validation", "tab:orange"), ("unseen", "tab:green")):
            part = df[df.role == role]
            if len(part):
                ax.scatter(part.nse_daily.clip(-1, 1), part[f"nse_{mode}"].clip(-1, 1), s=8, c=colour,
                           label=f"{role} ({len(part)})")
        ax.plot([-1, 1], [-1, 1], "k-", lw=0.8)
        ax.plot([-1, 1], [-1.02, 0.98], "k:", lw=0.8)
        ax.plot([-1, 1], [-0.98, 1.02], "k:", lw=0.8, label="±0.02")
        ax.set(xlim=(-1, 1), ylim=(-1, 1), xlabel="NSE, daily model (test period)",
               ylabel=f"NSE, stepping: {mode}, daily totals", title=f"{mode} vs daily (below -1 shown at -1)")
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, "hourly bench plot", dpi=120)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--data", type=Path, help="CAMELS-style NetCDF or CAMELS v1.2 folder (default: the bundled basins)")
    ap.add_argument("--basins-file", type=Path, help="basin list (with --data; default "
                    "examples/train/basins_camels515.txt)")
    args = ap.parse_args(argv)
    from bmi_dhydro.checkpoint import load_checkpoint
    from bmi_dhydro.datasets import bundled_camels_root, open_camels
    from bmi_dhydro.train import read_basins_file

    model, payload = load_checkpoint()
    if args.data is not None:
        root = args.data
        basins = read_basins_file(args.basins_file or ROOT / "examples/train/basins_camels515.txt")
    else:
        if args.basins_file is not None:
            ap.error("--basins-file needs --data (the bundled data holds 10 basins)")
        root = bundled_camels_root()
        basins = sorted(p.name.split("_")[0]
                        for p in (root / "basin_mean_forcing" / "daymet").glob("*/*_lump_*forcing*.txt"))
    test = ("1995-10-01", "2010-09-30") if not args.quick else ("1995-10-01", "1997-09-30")
    if args.quick:
        basins = basins[:2]
    t0 = pd.Timestamp(test[0]) - pd.Timedelta(days=365)
    ds = open_camels(root, basins, "daymet", model.config.attributes, start=str(t0.date()), end=test[1])
    ids = [str(b) for b in ds.basin.values]
    prcp = ds["prcp"].transpose("time", "basin").to_numpy()
    tmean = ((ds["tmax"] + ds["tmin"]) / 2.0).transpose("time", "basin").to_numpy() if "tmax" in ds else \
        ds["tmean"].transpose("time", "basin").to_numpy()
    days = pd.DatetimeIndex(ds["time"].values)
    obs = ds["qobs"].transpose("time", "basin").to_numpy()
    units = {"ids": ids, "area_km2": [float(x) for x in ds["area_km2"].values], "lat": [float(x) for x in ds["lat"].values],
             "lon": [float(x) for x in ds["lon"].values],
             "attributes": {a: [float(x) for x in ds[a].values] for a in model.config.attributes}}
    from bmi_dhydro.evaluate import _roles

    roles = dict(zip(ids, _roles(payload, ids)))
    res, wall = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for mode in ("daily",) + SUBDAILY:
            cfg = {"units": units, "time": {"time_step": 86400 if mode == "daily" else 3600,
                                            "start": f"{t0.date()} 00:00:00"}}
            if mode != "daily":
                cfg["stepping"] = mode
            p = tmp / f"{mode}.yaml"
            p.write_text(yaml.safe_dump(cfg))
            t_start = time.perf_counter()
            res[mode] = run_bmi(p, prcp, tmean, hourly=mode != "daily")
            wall[mode] = time.perf_counter() - t_start
            print(f"{mode}: {wall[mode]:.1f} s", file=sys.stderr)
        cost = {s: ngen_cost(tmp, s, 2000 if args.quick else 6000) for s in ("daily_release",) + SUBDAILY}
    keep = (days >= pd.Timestamp(test[0])) & (days <= pd.Timestamp(test[1]))
    rows = []
    for j, b in enumerate(ids):
        row = {"basin": b, "role": roles[b], "nse_daily": nse(res["daily"][0][keep, j], obs[keep, j])}
        for mode in SUBDAILY:
            row[f"nse_{mode}"] = nse(res[mode][0][keep, j], obs[keep, j])
            row[f"diff_{mode}"] = row[f"nse_{mode}"] - row["nse_daily"]
            row[f"volume_ratio_{mode}"] = float(np.nansum(res[mode][0][keep, j]) / np.nansum(res["daily"][0][keep, j]))
        rows.append(row)
    df = pd.DataFrame(rows)
    load = os.getloadavg()[0]
    large = args.data is not None
    invocation = "python bench/bench_hourly.py" + (" --quick" if args.quick else "") + (" --data DATA" if large else "")
    what = (f"CAMELS Daymet basins of {(args.basins_file or 'examples/train/basins_camels515.txt')} ({len(ids)}; "
            f"data {args.data.name})" if large else f"bundled CAMELS Daymet basins ({len(ids)})")
    lines = [f"# Sub-daily stepping against the daily model (`{invocation}`)", "",
             f"Bundled model, {what}, test period {test[0]}..{test[1]} after a 365-day spin-up, one BMI instance per "
             "mode. The sub-daily runs step hourly (`time_step: 3600`): each day's precipitation spread evenly over 24 "
             "hours, the daily mean temperature held; daily totals of their runoff against USGS daily flow. "
             "`hourly`: the physics and routing step every hour; `day_so_far`: every hour re-runs the day's step on "
             f"the day so far (the README). Load average {load:.1f} at the end.", ""]
    if len(rows) <= 20:
        lines += ["| basin | role | NSE daily | NSE hourly | difference | NSE day_so_far | difference |",
                  "|---|---|---|---|---|---|---|"]
        for r in rows:
            lines.append(f"| {r['basin']} | {r['role']} | {r['nse_daily']:.3f} | {r['nse_hourly']:.3f} | "
                         f"{r['diff_hourly']:+.3f} | {r['nse_day_so_far']:.3f} | {r['diff_day_so_far']:+.3f} |")
        lines += [f"| **median** | | {df.nse_daily.median():.3f} | {df.nse_hourly.median():.3f} | "
                  f"{df.diff_hourly.median():+.3f} | {df.nse_day_so_far.median():.3f} | "
                  f"{df.diff_day_so_far.median():+.3f} |", ""]
    else:
        lines += ["| mode | basins | n | median NSE daily | median NSE, daily totals | difference of medians | "
                  "median of differences | basins within 0.02 | mean NSE daily / mode |", "|---|---|---|---|---|---|---|---|---|"]
        for mode in SUBDAILY:
            for role, part in [("all", df)] + [(r, df[df.role == r]) for r in ("train", "validation", "unseen")]:
                if len(part):
                    d = part[f"diff_{mode}"]
                    lines.append(f"| {mode} | {role} | {len(part)} | {part.nse_daily.median():.3f} | "
                                 f"{part[f'nse_{mode}'].median():.3f} | "
                                 f"{part[f'nse_{mode}'].median() - part.nse_daily.median():+.3f} | {d.median():+.3f} | "
                                 f"{(d.abs() <= 0.02).mean():.0%} | {part.nse_daily.mean():.3f} / "
                                 f"{part[f'nse_{mode}'].mean():.3f} |")
        lines.append("")
        for mode in SUBDAILY:
            q = df[f"diff_{mode}"].quantile([0.05, 0.25, 0.75, 0.95])
            lines.append(f"Per-basin differences, {mode} − daily: 5 % {q[0.05]:+.3f}, 25 % {q[0.25]:+.3f}, 75 % "
                         f"{q[0.75]:+.3f}, 95 % {q[0.95]:+.3f}; volume {mode} / daily: median "
                         f"{df[f'volume_ratio_{mode}'].median():.3f}.")
        lines += ["", "Every basin: the `.csv` beside this file; the `.png` plots them.", ""]
    # the targets a sub-daily mode must meet to become ngen's default (README, "Sub-daily stepping")
    verdict = []
    for mode in SUBDAILY:
        d_med = df[f"nse_{mode}"].median() - df.nse_daily.median()
        med_d = df[f"diff_{mode}"].median()
        ok = {"skill": abs(d_med) <= SKILL_TOL and abs(med_d) <= SKILL_TOL, "mass": res[mode][1] <= MASS_TOL,
              "cost": cost[mode] <= COST_US}
        verdict.append(f"{mode}: skill {'met' if ok['skill'] else 'missed'} ({d_med:+.3f} / {med_d:+.3f}), mass "
                       f"{'met' if ok['mass'] else 'missed'} ({res[mode][1]:.1e}), cost "
                       f"{'met' if ok['cost'] else 'missed'} ({cost[mode]:.0f} µs): "
                       + ("**meets every target**" if all(ok.values()) else "does not meet every target"))
    lines += [f"Targets (daily totals within {SKILL_TOL} NSE of the daily run, as the difference of medians and the "
              f"median of differences; mass closes to {MASS_TOL:g}; ngen's call pattern ≤ {COST_US:g} µs per "
              "catchment-step): " + "; ".join(verdict) + ".", ""]
    lines += ["Mass balance, largest relative error (in − out − stored − leaked, checked every 30 days over every "
              "unit): " + ", ".join(f"{mode} {res[mode][1]:.1e}" for mode in SUBDAILY) + ".", "",
              "Run time: " + ", ".join(f"{mode} {wall[mode]:.1f} s" for mode in wall) + ".", "",
              "ngen's per-catchment call pattern (one catchment, real hourly AORC forcing; minimum of 3 runs), µs per "
              "catchment-step: " + ", ".join(f"{s} {cost[s]:.1f}" for s in cost)
              + (" (quick: no ratios)." if args.quick else
                 " (" + ", ".join(f"{s} ×{cost[s] / cost['daily_release']:.2f}" for s in SUBDAILY) + " of daily_release)."),
              ""]
    (HERE / "results").mkdir(exist_ok=True)
    name = ("hourly_quick" if args.quick else "hourly") + (f"_camels{len(ids)}" if large else "")
    if large:
        from bmi_dhydro.safe_io import atomic_write_text

        atomic_write_text(HERE / "results" / f"{name}.csv", df.to_csv(index=False, float_format="%.5f"))
        _scatter_png(df, HERE / "results" / f"{name}.png")
    (HERE / "results" / f"{name}.md").write_text("\n".join(lines))
    (HERE / "results" / f"{name}.json").write_text(json.dumps({"rows": rows, "mass_max_rel": {m: res[m][1] for m in SUBDAILY},
                                                                "ngen_us": cost, "wall_s": wall, "load": load}, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
