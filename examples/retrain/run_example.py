"""The gradient-feedback loop, end to end, on bundled CAMELS basins (see README.md in this folder).

1. coupled run (CAMELS daily forcing -> bundled model) over the retraining period, recording what the model saw;
2. ``dhydro retrain`` on the record and the USGS observations;
3. skill before and after, on the retraining period and on a later independent period: table + plot.

    python examples/retrain/run_example.py            # full: retrain 2005-10..2009-09, evaluate 2009-10..2013-09
    python examples/retrain/run_example.py --quick    # CI: a few months, 2 epochs
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
import yaml

HERE = Path(__file__).resolve().parent
BASINS = ["04015330", "05057200", "05291000", "07291000"]


def write_inputs(out: Path, rec_period, eval_period, checkpoint=None, tag="rec", record=True):
    from bmi_dhydro.checkpoint import load_checkpoint
    from bmi_dhydro.datasets import read_camels

    names = load_checkpoint(checkpoint)[0].config.attributes  # the attributes the model reads
    ds = read_camels(basins=BASINS, attributes=names)
    units = pd.DataFrame({"id": BASINS, "area_km2": ds["area_km2"].values, "lat": ds["lat"].values, "lon": ds["lon"].values,
                          **{a: ds[a].values for a in names}})
    units.to_csv(out / "units.csv", index=False)
    (out / "forcing.yaml").write_text(yaml.safe_dump({"camels": {"basins": BASINS, "product": "nldas"}}))
    specs = {}
    for name, (start, end), ck, rec in (("rec", rec_period, None, record), ("eval", eval_period, checkpoint, False)):
        hydro = {"model": {"checkpoint": ck}, "units": {"table": "units.csv"},
                 "time": {"time_step": 86400, "start": f"{start} 00:00:00"}}
        (out / f"hydro_{name}_{tag}.yaml").write_text(yaml.safe_dump(hydro))
        spec = {
            "period": {"start": f"{start} 00:00:00", "end": f"{end} 00:00:00", "time_step": 86400},
            "components": {"forcing": {"python_type": "coupler.catchment_forcing.CatchmentForcingBmi", "config": "forcing.yaml"},
                           "hydro": {"python_type": "bmi_dhydro.BmiDeltaModel", "config": f"hydro_{name}_{tag}.yaml"}},
            "connections": [
                {"source": "forcing.atmosphere_water__liquid_equivalent_precipitation_rate",
                 "destination": "hydro.atmosphere_water__liquid_equivalent_precipitation_rate"},
                {"source": "forcing.land_surface_air__temperature", "destination": "hydro.land_surface_air__temperature"}],
            "outputs": {"path": f"{name}_{tag}.nc", "component": "hydro", "plots": False,
                        "variables": ["land_surface_water__runoff_depth"], "flush_every": 365,
                        "overwrite": True},  # the example reruns into its own folder
        }
        if rec:
            spec["record"] = {"path": "record.nc", "component": "hydro", "state_every": 30}
        (out / f"{name}_{tag}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
        specs[name] = out / f"{name}_{tag}.yaml"
    obs = ds["qobs"].transpose("time", "basin").rename(basin="unit")
    xr.Dataset({"streamflow": obs.assign_attrs(units="mm d-1"), "unit_id": ("unit", np.array(BASINS, dtype=object))},
               coords={"time": ds["time"].values}).drop_vars("unit", errors="ignore").to_netcdf(out / "obs.nc")
    return specs


def skill(nc_path, obs_path, start, end):
    from bmi_dhydro.metrics import kge, nse

    with xr.open_dataset(nc_path) as sim, xr.open_dataset(obs_path) as obs:
        # runoff depth (m per day) of the day ending at time t; observation dates are the day's start
        q = sim["land_surface_water__runoff_depth"].to_pandas() * 1000.0
        q.index = q.index - pd.Timedelta(days=1)
        q.columns = [str(u) for u in sim["unit_id"].values]
        o = obs["streamflow"].to_pandas()
        o.columns = [str(u) for u in obs["unit_id"].values]
        o = o.loc[start:end]
        q = q.reindex(o.index)
        return {b: (nse(q[b].values, o[b].values), kge(q[b].values, o[b].values)) for b in BASINS}, q, o


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="short periods and 2 epochs (CI)")
    ap.add_argument("--out", default=str(HERE.parents[1] / "dhydro_out" / "retrain"))
    args = ap.parse_args(argv)
    from dhydro.cli import main as dhydro

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.quick:
        rec_period, eval_period, epochs, iters, window = ("2005-10-01", "2006-03-31"), ("2006-04-01", "2006-06-30"), 2, 3, 60
    else:
        rec_period, eval_period, epochs, iters, window = ("2004-10-01", "2009-09-30"), ("2008-10-01", "2013-09-30"), 15, 10, 365
    specs = write_inputs(out, rec_period, eval_period, checkpoint=None, tag="before")
    assert dhydro(["run", str(specs["rec"]), "--quiet"]) == 0
    assert dhydro(["run", str(specs["eval"]), "--quiet"]) == 0
    new = out / "retrained.pt"
    assert dhydro(["retrain", "--record", str(out / "record.nc"), "--obs", str(out / "obs.nc"), "-o", str(new),
                   "--epochs", str(epochs), "--iterations", str(iters), "--window", str(window), "--quiet"]) == 0
    specs_after = write_inputs(out, rec_period, eval_period, checkpoint=str(new), tag="after", record=False)
    # the "rec" spec of the after-set runs the retrained model over the retraining period
    hydro = yaml.safe_load((out / "hydro_rec_after.yaml").read_text())
    hydro["model"]["checkpoint"] = str(new)
    (out / "hydro_rec_after.yaml").write_text(yaml.safe_dump(hydro))
    assert dhydro(["run", str(specs_after["rec"]), "--quiet"]) == 0
    assert dhydro(["run", str(specs_after["eval"]), "--quiet"]) == 0
    # retraining period skill excludes the first (cold-start) year of the record in the full run
    r0 = rec_period[0] if args.quick else "2005-10-01"
    e0 = eval_period[0] if args.quick else "2009-10-01"
    rows = []
    for period, (a, b), tag in (("retraining", (r0, rec_period[1]), "rec"), ("independent", (e0, eval_period[1]), "eval")):
        sb, qb, o = skill(out / f"{tag}_before.nc", out / "obs.nc", a, b)
        sa, qa, _ = skill(out / f"{tag}_after.nc", out / "obs.nc", a, b)
        for basin in BASINS:
            rows.append({"period": f"{period} {a}..{b}", "basin": basin, "nse_before": sb[basin][0], "nse_after": sa[basin][0],
                         "kge_before": sb[basin][1], "kge_after": sa[basin][1]})
        if tag == "eval":
            plot(out / "before_after.png", o, qb, qa, f"independent period {a}..{b}")
    df = pd.DataFrame(rows)
    df.to_csv(out / "skill_before_after.csv", index=False, float_format="%.3f")
    table = df.to_markdown(index=False, floatfmt=".3f") if _has_tabulate() else df.to_string(index=False, float_format="%.3f")
    (out / "skill_before_after.md").write_text(table + "\n")
    print(table)
    print(json.dumps({"median_nse_after_minus_before": float((df.nse_after - df.nse_before).median())}))
    return 0


def _has_tabulate():
    try:
        import tabulate  # noqa: F401

        return True
    except ImportError:
        return False


def plot(path, obs, before, after, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(BASINS), 1, figsize=(11, 2.3 * len(BASINS)), sharex=True)
    for ax, b in zip(axes, BASINS):
        ax.plot(obs.index, obs[b], color="black", lw=0.6, label="observed")
        ax.plot(before.index, before[b], color="tab:orange", lw=0.6, label="bundled model")
        ax.plot(after.index, after[b], color="tab:blue", lw=0.6, label="retrained")
        ax.set_title(b, fontsize=9)
    axes[0].legend(fontsize=7, ncol=3)
    fig.suptitle(title)
    fig.supylabel("streamflow (mm d$^{-1}$)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
