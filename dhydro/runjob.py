"""The main job without a coupling spec: the bundled (or a named) model over CAMELS-layout basins.

``dhydro run`` with no arguments runs the bundled model over the bundled basins (the Daymet subset) for the
δHBV test period 1995-10-01..2010-09-30 (after a 365-day warm-up), writes a CF NetCDF of streamflow, ET, SWE and
the stores and a hydrograph PNG, and prints the skill table.  ``--camels-root`` takes any CAMELS v1.2 folder (or a
CAMELS-style NetCDF); the forcing product defaults to the one the checkpoint was trained on (``--forcing``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from bmi_dhydro._extras import optional_pyplot
from bmi_dhydro.checkpoint import load_checkpoint
from bmi_dhydro.datasets import open_camels
from bmi_dhydro.metrics import format_table, skill_table
from bmi_dhydro.cf import select, variable_attrs
from bmi_dhydro.output import timeseries_dataset, write_netcdf
from bmi_dhydro.train import hydrograph_png, write_metrics_csv
from bmi_dhydro.safe_io import save_figure

DEFAULT_PERIOD = ("1995-10-01", "2010-09-30")
#: the daily temperature range reaches models that use it (Hargreaves PET)
log = logging.getLogger("dhydro.run")
TEMPERATURE_RANGE_CONNECTIONS = [
    {"source": f"forcing.{v}", "destination": f"hydro.{v}"}
    for v in ("land_surface_air__max_of_temperature", "land_surface_air__min_of_temperature")]


def run_camels(checkpoint=None, camels_root=None, basins=None, period=DEFAULT_PERIOD, warmup_days=365, out="dhydro_out",
               progress=True, forcing=None):
    """The main job, driven the way users run the model: CAMELS forcing component -> coupler -> BmiDeltaModel."""
    import pandas as pd
    import xarray as xr
    import yaml

    from coupler.serial import run_serial
    from coupler.spec import load_spec

    from bmi_dhydro.evaluate import checkpoint_product

    model, payload = load_checkpoint(checkpoint)
    product = forcing or checkpoint_product(payload)
    ds = open_camels(camels_root, basins, product, model.config.attributes)
    t0 = pd.Timestamp(period[0]) - pd.Timedelta(days=warmup_days)
    t1 = pd.Timestamp(period[1])
    window = ds["prcp"].sel(time=slice(t0, t1))
    ok = np.isfinite(window.to_numpy()).all(axis=1) & (window.sizes["time"] > 0)
    ok &= window.sizes["time"] == (t1 - t0).days + 1
    dropped = [str(b) for b, k in zip(ds.basin.values, ok) if not k]
    if dropped:
        log.warning(f"basins without forcing over {t0.date()}..{t1.date()} are skipped: {', '.join(dropped)}")
    if not ok.any():
        raise ValueError(f"run: no basin has forcing over {t0.date()}..{t1.date()}")
    ds = ds.isel(basin=np.flatnonzero(ok))
    ids = [str(b) for b in ds.basin.values]
    out = Path(out)
    work = out / "coupled_inputs"
    work.mkdir(parents=True, exist_ok=True)
    table = {"id": ids, "area_km2": ds["area_km2"].values, "lat": ds["lat"].values, "lon": ds["lon"].values}
    table.update({a: ds[a].values for a in model.config.attributes})
    pd.DataFrame(table).to_csv(work / "units.csv", index=False)
    forcing_cfg = {"camels": {"basins": ids, "product": product, "start": str(t0.date()), "end": str((t1 + pd.Timedelta(days=1)).date())}}
    if camels_root:
        forcing_cfg["camels"]["root"] = str(Path(camels_root).resolve())
    (work / "forcing.yaml").write_text(yaml.safe_dump(forcing_cfg))
    ck = str(Path(checkpoint).resolve()) if checkpoint else None
    (work / "hydro.yaml").write_text(yaml.safe_dump({
        "model": {"checkpoint": ck}, "units": {"table": "units.csv"},
        "time": {"time_step": 86400, "start": f"{t0.date()} 00:00:00"}}))
    variables = {"runoff": "land_surface_water__runoff_depth", "et": "land_surface_water__evapotranspiration_volume_flux",
                 "pet": "hbv__potential_evapotranspiration_volume_flux", "swe": "snowpack__liquid-equivalent_depth",
                 "snowpack": "hbv__snowpack_storage", "meltwater": "hbv__meltwater_storage", "sm": "hbv__soil_moisture_storage",
                 "suz": "hbv__upper_zone_storage", "slz": "hbv__lower_zone_storage"}
    spec = {
        "period": {"start": f"{t0.date()} 00:00:00", "end": f"{(t1 + pd.Timedelta(days=1)).date()} 00:00:00", "time_step": 86400},
        "components": {"forcing": {"python_type": "coupler.catchment_forcing.CatchmentForcingBmi", "config": "forcing.yaml"},
                       "hydro": {"python_type": "bmi_dhydro.BmiDeltaModel", "config": "hydro.yaml"}},
        "connections": [
            {"source": "forcing.atmosphere_water__liquid_equivalent_precipitation_rate",
             "destination": "hydro.atmosphere_water__liquid_equivalent_precipitation_rate"},
            {"source": "forcing.land_surface_air__temperature", "destination": "hydro.land_surface_air__temperature"},
            *(TEMPERATURE_RANGE_CONNECTIONS if model.config.pet_method == "hargreaves" else [])],
        # the default job replaces its own previous outputs, atomically: only once the new run ended well
        "outputs": {"path": "coupled_raw.nc", "component": "hydro", "variables": list(variables.values()), "plots": False,
                    "flush_every": 365, "overwrite": True},
    }
    (work / "spec.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    spec_obj, _ = load_spec(work / "spec.yaml")
    run_serial(spec_obj, work / "spec.yaml", progress=progress)
    with xr.open_dataset(work / "coupled_raw.nc") as raw:
        # a value stamped t covers the day ending at t (bmi_dhydro.cf: stamp = end of the interval); drop the warm-up
        end = pd.DatetimeIndex(raw["time"].values)
        day = end - pd.Timedelta(days=1)
        keep = (day >= pd.Timestamp(period[0])) & (day <= t1)
        res = {k: select(raw, v).values[keep].T for k, v in variables.items()}
    times = day[keep]  # the day each value covers (plots, skill)
    ends = end[keep]  # its stamp in the NetCDF
    res["runoff"] = res["runoff"] * 1000.0  # m per day -> mm d-1
    for k in ("et", "pet"):
        res[k] = res[k] * 1000.0 * 86400.0  # m s-1 -> mm d-1
    area = ds["area_km2"].to_numpy()
    res["streamflow"] = res["runoff"] * area[:, None] * 1e6 / 1000.0 / 86400.0
    keep_vars = ("streamflow", "runoff", "et", "pet", "swe", "snowpack", "meltwater", "sm", "suz", "slz")
    obs = ds["qobs"].sel(time=slice(*period)).transpose("basin", "time").to_numpy()
    cf = timeseries_dataset(
        ends, ids, {k: res[k] for k in keep_vars}, ds["lat"].to_numpy(), ds["lon"].to_numpy(), area,
        attrs={"title": f"bmi-dhydro run on CAMELS-US basins (CAMELS {product} forcing -> coupler -> BmiDeltaModel)",
               "checkpoint": str(checkpoint or "bundled default"), "period": f"{period[0]}..{period[1]}",
               "warmup_days": warmup_days},
    )
    cf["qobs"] = (("time", "unit_id"), obs.T)
    cf["qobs"].attrs.update(variable_attrs("qobs", "mm d-1"))
    cf["qobs"].encoding["coordinates"] = "lat lon"
    nc = write_netcdf(cf, out / "dhydro_run.nc")
    rows = skill_table(res["runoff"], obs, ids)
    write_metrics_csv(out / "metrics.csv", rows)
    png = out / "hydrographs.png"
    if not _grid_png(png, times, res["runoff"], obs, ids, rows):
        png = None  # no matplotlib (the 'plot' extra): said once in a warning, the run goes on
    print(format_table(rows))
    log.info(f"wrote {nc}, {out / 'metrics.csv'}" + (f" and {png}" if png else ""))
    return {"netcdf": nc, "png": png, "rows": rows}


def _grid_png(path, times, sim, obs, names, rows) -> bool:
    plt = optional_pyplot("the hydrograph plot of the main job (hydrographs.png)")
    if plt is None:
        return False

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
    save_figure(fig, path, dpi=100)
    plt.close(fig)
    return True


__all__ = ["run_camels", "hydrograph_png"]
