"""Readers: the CAMELS-US layout → xarray Dataset, and model forcing tensors from it.

``read_camels(root, basins, product="nldas")`` returns a Dataset with dims ``(basin, time)``:

* forcing ``prcp`` (mm d-1), ``tmax``/``tmin`` (°C), ``srad`` (W m-2), ``dayl`` (s), ``vp`` (Pa);
* ``qobs`` (mm d-1; NaN where USGS reports -999), converted from cfs with the basin area of the forcing header:
  ``Q · 0.3048³ · 86400 / area_m2 · 1000``;
* per basin: ``lat``, ``lon``, ``area_km2``, ``elev_mean`` and every requested CAMELS attribute.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import xarray as xr

from . import physics

CFS_TO_M3S = 0.3048**3

#: Static attributes used by the bundled model, with units (CAMELS attributes v2.0).
DEFAULT_ATTRIBUTES: dict[str, str] = {
    "p_mean": "mm d-1",
    "pet_mean": "mm d-1",
    "p_seasonality": "1",
    "frac_snow": "1",
    "aridity": "1",
    "elev_mean": "m",
    "slope_mean": "m km-1",
    "area_gages2": "km2",
    "frac_forest": "1",
    "soil_porosity": "1",
    "soil_conductivity": "cm h-1",
    "max_water_content": "m",
}

ATTRIBUTE_FILES = ("topo", "clim", "soil", "vege", "name", "geol", "hydro")
_PRODUCT_FILE = {"nldas": "nldas", "daymet": "cida", "maurer": "maurer", "maurer_extended": "maurer"}


def bundled_camels_root() -> Path:
    return Path(str(resources.files("bmi_dhydro") / "resources" / "camels"))


def bundled_basins() -> list[str]:
    root = bundled_camels_root() / "basin_mean_forcing" / "nldas"
    return sorted(p.name.split("_")[0] for p in root.glob("*/*_lump_nldas_forcing_leap.txt"))


def _find_one(root: Path, pattern: str, what: str) -> Path:
    hits = sorted(root.glob(pattern))
    if not hits:
        raise FileNotFoundError(f"{what}: no file matching {pattern!r} under {root}")
    if len(hits) > 1:
        raise ValueError(f"{what}: expected one file matching {pattern!r} under {root}, found {len(hits)}")
    return hits[0]


def read_forcing_file(path) -> tuple[pd.DataFrame, dict]:
    """One CAMELS ``*_forcing_leap.txt``: (daily DataFrame indexed by date, header {lat, elev, area_m2})."""
    path = Path(path)
    with open(path) as f:
        lat = float(f.readline())
        elev = float(f.readline())
        area = float(f.readline())
    df = pd.read_csv(path, sep=r"\s+", skiprows=3, header=0)
    df.columns = [c.lower() for c in df.columns]
    rename = {}
    for c in df.columns:
        base = c.split("(")[0]
        rename[c] = {"mnth": "month", "prcp": "prcp", "srad": "srad", "swe": "swe", "tmax": "tmax", "tmin": "tmin",
                     "vp": "vp", "dayl": "dayl", "year": "year", "day": "day", "hr": "hr"}.get(base, base)
    df = df.rename(columns=rename)
    df.index = pd.to_datetime(dict(year=df["year"], month=df["month"], day=df["day"]))
    return df[["prcp", "tmax", "tmin", "srad", "dayl", "vp"]].astype("float64"), {"lat": lat, "elev": elev, "area_m2": area}


def read_streamflow_file(path, area_m2: float) -> pd.Series:
    """USGS ``*_streamflow_qc.txt`` → mm d-1 (NaN for -999)."""
    df = pd.read_csv(path, sep=r"\s+", header=None, names=["gauge", "year", "month", "day", "q", "flag"], dtype={"gauge": str})
    idx = pd.to_datetime(dict(year=df["year"], month=df["month"], day=df["day"]))
    q = df["q"].astype("float64").where(df["q"] >= 0)
    return pd.Series(q.to_numpy() * CFS_TO_M3S * 86400.0 / area_m2 * 1000.0, index=idx, name="qobs")


def read_attributes(root, basins, names=None) -> pd.DataFrame:
    """CAMELS attribute tables (``;``-separated, gauge_id kept as text) restricted to ``basins``."""
    root = Path(root) / "camels_attributes_v2.0"
    frames = []
    for key in ATTRIBUTE_FILES:
        p = root / f"camels_{key}.txt"
        if p.exists():
            frames.append(pd.read_csv(p, sep=";", dtype={"gauge_id": str}).set_index("gauge_id"))
    if not frames:
        raise FileNotFoundError(f"attributes: no camels_*.txt tables under {root}")
    table = pd.concat(frames, axis=1)
    table = table.loc[:, ~table.columns.duplicated()]
    missing_b = [b for b in basins if b not in table.index]
    if missing_b:
        raise KeyError(f"attributes: basins {missing_b} are not in the CAMELS attribute tables under {root}")
    if names is not None:
        missing_a = [a for a in names if a not in table.columns]
        if missing_a:
            raise KeyError(f"attributes: {missing_a} are not CAMELS attributes (tables under {root})")
        table = table[list(names) + [c for c in ("gauge_lat", "gauge_lon") if c not in names]]
    return table.loc[list(basins)]


def read_camels(root=None, basins=None, product: str = "nldas", attributes=None, start=None, end=None) -> xr.Dataset:
    """Read CAMELS-US basins into one Dataset (dims basin, time); the time axis is the union, gaps are NaN."""
    root = Path(root) if root is not None else bundled_camels_root()
    if product not in _PRODUCT_FILE:
        raise ValueError(f"product: expected one of {sorted(_PRODUCT_FILE)}, got {product!r}")
    if basins is None:
        basins = sorted(p.name.split("_")[0] for p in (root / "basin_mean_forcing" / product).glob("*/*_forcing_leap.txt"))
    basins = [str(b).zfill(8) for b in basins]
    attributes = list(DEFAULT_ATTRIBUTES) if attributes is None else list(attributes)
    forc, flows, headers = {}, {}, {}
    for b in basins:
        fpath = _find_one(root / "basin_mean_forcing" / product, f"**/{b}_lump_{_PRODUCT_FILE[product]}_forcing_leap.txt", f"forcing of basin {b}")
        df, hdr = read_forcing_file(fpath)
        forc[b], headers[b] = df, hdr
        qpath = _find_one(root / "usgs_streamflow", f"**/{b}_streamflow_qc.txt", f"streamflow of basin {b}")
        flows[b] = read_streamflow_file(qpath, hdr["area_m2"])
    index = pd.DatetimeIndex(sorted(set().union(*[df.index for df in forc.values()])))
    if start is not None or end is not None:
        index = index[(index >= pd.Timestamp(start or index[0])) & (index <= pd.Timestamp(end or index[-1]))]
    data = {}
    for var in ("prcp", "tmax", "tmin", "srad", "dayl", "vp"):
        data[var] = (("basin", "time"), np.stack([forc[b][var].reindex(index).to_numpy() for b in basins]))
    data["qobs"] = (("basin", "time"), np.stack([flows[b].reindex(index).to_numpy() for b in basins]))
    attrs = read_attributes(root, basins, attributes)
    ds = xr.Dataset(data, coords={"basin": basins, "time": index})
    for a in attributes:
        ds[a] = ("basin", attrs[a].to_numpy(dtype="float64"))
        ds[a].attrs["units"] = DEFAULT_ATTRIBUTES.get(a, "")
    ds["lat"] = ("basin", np.array([headers[b]["lat"] for b in basins]))
    ds["lon"] = ("basin", attrs["gauge_lon"].to_numpy(dtype="float64"))
    ds["area_km2"] = ("basin", np.array([headers[b]["area_m2"] / 1e6 for b in basins]))
    units = {"prcp": "mm d-1", "tmax": "degC", "tmin": "degC", "srad": "W m-2", "dayl": "s", "vp": "Pa", "qobs": "mm d-1",
             "lat": "degrees_north", "lon": "degrees_east", "area_km2": "km2"}
    for k, u in units.items():
        ds[k].attrs["units"] = u
    ds.attrs.update(source=f"CAMELS-US ({product})", camels_root=str(root))
    return ds


def model_forcings(ds: xr.Dataset, pet_method: str = "hamon", dtype=torch.float32) -> torch.Tensor:
    """Dataset → model forcings (time, basin, 3): prcp (mm d-1), mean temperature (°C), PET (mm d-1)."""
    prcp = torch.as_tensor(ds["prcp"].transpose("time", "basin").to_numpy(), dtype=torch.float64)
    tmax = torch.as_tensor(ds["tmax"].transpose("time", "basin").to_numpy(), dtype=torch.float64)
    tmin = torch.as_tensor(ds["tmin"].transpose("time", "basin").to_numpy(), dtype=torch.float64)
    tmean = 0.5 * (tmax + tmin)
    doy = torch.as_tensor(ds["time"].dt.dayofyear.to_numpy(), dtype=torch.float64).unsqueeze(-1)
    lat = torch.as_tensor(ds["lat"].to_numpy(), dtype=torch.float64).unsqueeze(0)
    if pet_method == "hamon":
        pet = physics.hamon(tmean, lat, doy)
    elif pet_method == "hargreaves":
        pet = physics.hargreaves(tmin, tmax, lat, doy)
    elif pet_method == "priestley_taylor":
        srad = torch.as_tensor(ds["srad"].transpose("time", "basin").to_numpy(), dtype=torch.float64)
        pet = physics.priestley_taylor(srad, tmean, torch.full_like(srad, 101325.0))
    else:
        raise ValueError(f"pet_method: expected hamon, hargreaves or priestley_taylor, got {pet_method!r}")
    return torch.stack([prcp, tmean, pet], dim=-1).to(dtype)


def attribute_tensor(ds: xr.Dataset, names, dtype=torch.float32) -> torch.Tensor:
    missing = [n for n in names if n not in ds]
    if missing:
        raise KeyError(f"attributes: dataset lacks {missing}")
    return torch.as_tensor(np.stack([ds[n].to_numpy() for n in names], axis=-1), dtype=dtype)
