"""The main job without a coupling spec: the bundled (or a named) model over CAMELS-layout basins.

``dhydro run`` with no arguments runs the bundled model over the bundled basins for the test period
2005-10-01..2013-09-30 (after a 365-day warm-up), writes a CF NetCDF of streamflow, ET, SWE and the stores and
a hydrograph PNG, and prints the skill table.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .checkpoint import load_checkpoint
from .datasets import read_camels
from .metrics import format_table, skill_table
from .output import timeseries_dataset, write_netcdf
from .train import hydrograph_png, simulate, write_metrics_csv

DEFAULT_PERIOD = ("2005-10-01", "2013-09-30")


def run_camels(checkpoint=None, camels_root=None, basins=None, period=DEFAULT_PERIOD, warmup_days=365, out="dhydro_out", progress=True):
    model, payload = load_checkpoint(checkpoint)
    ds = read_camels(camels_root, basins, attributes=model.config.attributes)
    # keep basins with forcing over warm-up + period; say which are dropped
    t0 = pd.Timestamp(period[0]) - pd.Timedelta(days=warmup_days)
    window = ds["prcp"].sel(time=slice(t0, period[1]))
    ok = np.isfinite(window.to_numpy()).all(axis=1) & (window.sizes["time"] > 0)
    dropped = [str(b) for b, k in zip(ds.basin.values, ok) if not k]
    if dropped:
        print(f"note: basins without forcing over {t0.date()}..{period[1]} are skipped: {', '.join(dropped)}")
    if not ok.any():
        raise ValueError(f"run: no basin has forcing over {t0.date()}..{period[1]}")
    ds = ds.isel(basin=np.flatnonzero(ok))
    res, times = simulate(model, ds, period[0], period[1], warmup_days)
    area = ds["area_km2"].to_numpy()
    res["streamflow"] = res["runoff"] * area[:, None] * 1e6 / 1000.0 / 86400.0
    keep = ("streamflow", "runoff", "et", "pet", "precip", "swe", "snowpack", "meltwater", "sm", "suz", "slz", "routing_store", "storage", "leak")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    obs = ds["qobs"].sel(time=slice(*period)).transpose("basin", "time").to_numpy()
    cf = timeseries_dataset(
        times, ds.basin.values, {k: res[k] for k in keep}, ds["lat"].to_numpy(), ds["lon"].to_numpy(), area,
        attrs={"title": "bmi-dhydro run on CAMELS-US basins", "checkpoint": str(checkpoint or "bundled default"),
               "period": f"{period[0]}..{period[1]}", "warmup_days": warmup_days},
    )
    cf["qobs"] = (("time", "unit"), obs.T)
    cf["qobs"].attrs.update(units="mm d-1", long_name="observed streamflow (USGS), runoff depth")
    nc = write_netcdf(cf, out / "dhydro_run.nc")
    rows = skill_table(res["runoff"], obs, ds.basin.values)
    write_metrics_csv(out / "metrics.csv", rows)
    png = out / "hydrographs.png"
    _grid_png(png, times, res["runoff"], obs, ds.basin.values, rows)
    print(format_table(rows))
    print(f"wrote {nc}, {out / 'metrics.csv'} and {png}")
    return {"netcdf": nc, "png": png, "rows": rows}


def _grid_png(path, times, sim, obs, names, rows):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(names)
    ncol = 3
    nrow = int(np.ceil(n / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(15, 2.2 * nrow), sharex=True, squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.axis("off")
            continue
        ax.plot(times, obs[i], color="black", lw=0.5, label="observed")
        ax.plot(times, sim[i], color="tab:blue", lw=0.5, label="bmi-dhydro")
        ax.set_title(f"{names[i]}  NSE {rows[i]['nse']:.2f}  KGE {rows[i]['kge']:.2f}", fontsize=9)
        ax.tick_params(labelsize=7)
    axes.flat[0].legend(fontsize=7, loc="upper right")
    fig.supylabel("streamflow (mm d$^{-1}$)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


__all__ = ["run_camels", "hydrograph_png"]
