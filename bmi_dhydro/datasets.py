"""Readers: CAMELS-US data → xarray Dataset, and model forcing tensors from it.

Two layouts give the same Dataset (tested on the same basins):

* ``read_camels(root, basins, product)`` — the CAMELS-US v1.2 text layout as users download it:
  ``basin_mean_forcing/<product>/<huc02>/<gauge>_lump_<cida|nldas|maurer>_forcing_leap.txt``,
  ``usgs_streamflow/<huc02>/<gauge>_streamflow_qc.txt`` and ``camels_attributes_v2.0/camels_*.txt``, for the
  products ``daymet``, ``nldas``, ``maurer`` (and ``maurer_extended``);
* ``read_camels_netcdf(path, basins)`` — a CAMELS-style NetCDF (dims ``basin`` × ``time``, variables ``gauge_id``,
  ``huc_02``, ``lat``, ``area`` (m2), ``prcp``, ``tmax``, ``tmin``, ``srad``, ``dayl``, ``vp``, ``streamflow``
  (ft3 s-1)), read lazily: only the requested basins and period are loaded.  Attributes come from the CAMELS
  attribute tables (the bundled copy holds all 671 basins).

``open_camels(source, ...)`` picks the reader from the path (a ``.nc`` file or a folder).  The Dataset has dims
``(basin, time)``:

* forcing ``prcp`` (mm d-1), ``tmax``/``tmin`` (°C), ``srad`` (W m-2), ``dayl`` (s), ``vp`` (Pa);
* ``qobs`` (mm d-1; NaN where USGS reports -999), converted from cfs with the basin area of the forcing header:
  ``Q · 0.3048³ · 86400 / area_m2 · 1000``;
* per basin: ``lat``, ``lon``, ``area_km2``, ``huc_02`` and every requested CAMELS attribute;
* ``ds.attrs["product"]``: the forcing product.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import xarray as xr

import logging

from . import physics

log = logging.getLogger(__name__)

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

#: Further numeric CAMELS attributes (no gaps over the 671 basins) available to a model config, with units.
EXTRA_ATTRIBUTES: dict[str, str] = {
    "high_prec_freq": "d yr-1",
    "high_prec_dur": "d",
    "low_prec_freq": "d yr-1",
    "low_prec_dur": "d",
    "lai_max": "1",
    "lai_diff": "1",
    "gvf_max": "1",
    "gvf_diff": "1",
    "soil_depth_pelletier": "m",
    "soil_depth_statsgo": "m",
    "sand_frac": "percent",
    "silt_frac": "percent",
    "clay_frac": "percent",
}
ATTRIBUTE_UNITS: dict[str, str] = {**DEFAULT_ATTRIBUTES, **EXTRA_ATTRIBUTES}

ATTRIBUTE_FILES = ("topo", "clim", "soil", "vege", "name", "geol", "hydro")
_PRODUCT_FILE = {"nldas": "nldas", "daymet": "cida", "maurer": "maurer", "maurer_extended": "maurer"}
PRODUCTS = tuple(_PRODUCT_FILE)
FORCING_VARS = ("prcp", "tmax", "tmin", "srad", "dayl", "vp")
_UNITS = {"prcp": "mm d-1", "tmax": "degC", "tmin": "degC", "srad": "W m-2", "dayl": "s", "vp": "Pa", "qobs": "mm d-1",
          "lat": "degrees_north", "lon": "degrees_east", "area_km2": "km2"}


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


def read_camels(root=None, basins=None, product: str = "nldas", attributes=None, start=None, end=None,
                attributes_root=None) -> xr.Dataset:
    """Read CAMELS-US basins into one Dataset (dims basin, time); the time axis is the union, gaps are NaN.

    Attributes come from ``attributes_root``, else ``root/camels_attributes_v2.0`` when present, else the bundled
    tables (all 671 basins)."""
    root = Path(root) if root is not None else bundled_camels_root()
    if product not in _PRODUCT_FILE:
        raise ValueError(f"product: expected one of {sorted(_PRODUCT_FILE)}, got {product!r}")
    pdir = root / "basin_mean_forcing" / product
    if not pdir.is_dir():
        have = sorted(p.name for p in (root / "basin_mean_forcing").glob("*") if p.is_dir())
        raise FileNotFoundError(f"forcing product {product!r}: folder {pdir} not found (products under {root}: {have or 'none'})")
    if basins is None:
        basins = sorted(p.name.split("_")[0] for p in (root / "basin_mean_forcing" / product).glob("*/*_forcing_leap.txt"))
    basins = [str(b).zfill(8) for b in basins]
    attributes = list(DEFAULT_ATTRIBUTES) if attributes is None else list(attributes)
    forc, flows, headers, hucs = {}, {}, {}, {}
    for b in basins:
        fpath = _find_one(pdir, f"**/{b}_lump_{_PRODUCT_FILE[product]}_forcing_leap.txt", f"forcing of basin {b} ({product})")
        df, hdr = read_forcing_file(fpath)
        forc[b], headers[b] = df, hdr
        hucs[b] = fpath.parent.name if fpath.parent != pdir else ""
        qpath = _find_one(root / "usgs_streamflow", f"**/{b}_streamflow_qc.txt", f"streamflow of basin {b}")
        flows[b] = read_streamflow_file(qpath, hdr["area_m2"])
    index = pd.DatetimeIndex(sorted(set().union(*[df.index for df in forc.values()])))
    if start is not None or end is not None:
        index = index[(index >= pd.Timestamp(start or index[0])) & (index <= pd.Timestamp(end or index[-1]))]
    data = {}
    for var in FORCING_VARS:
        data[var] = np.stack([forc[b][var].reindex(index).to_numpy() for b in basins])
    qobs = np.stack([flows[b].reindex(index).to_numpy() for b in basins])
    if attributes_root is None:
        attributes_root = root if (root / "camels_attributes_v2.0").is_dir() else bundled_camels_root()
    return _assemble(attributes_root, basins, index, data, qobs, np.array([headers[b]["lat"] for b in basins]),
                     np.array([headers[b]["area_m2"] / 1e6 for b in basins]), [hucs[b] for b in basins], attributes, product,
                     source=str(root))


def _assemble(attr_root, basins, index, data, qobs, lat, area_km2, hucs, attributes, product, source) -> xr.Dataset:
    """The common Dataset of both readers."""
    attrs = read_attributes(attr_root, basins, attributes)
    ds = xr.Dataset({k: (("basin", "time"), v) for k, v in data.items()}, coords={"basin": list(basins), "time": index})
    ds["qobs"] = (("basin", "time"), qobs)
    for a in attributes:
        ds[a] = ("basin", attrs[a].to_numpy(dtype="float64"))
        ds[a].attrs["units"] = ATTRIBUTE_UNITS.get(a, "")
    ds["lat"] = ("basin", np.asarray(lat, dtype="float64"))
    ds["lon"] = ("basin", attrs["gauge_lon"].to_numpy(dtype="float64"))
    ds["area_km2"] = ("basin", np.asarray(area_km2, dtype="float64"))
    ds["huc_02"] = ("basin", np.asarray(hucs, dtype=str))
    for k, u in _UNITS.items():
        ds[k].attrs["units"] = u
    ds.attrs.update(source=f"CAMELS-US ({product})", product=product, camels_root=source)
    return ds


def read_camels_netcdf(path, basins=None, attributes=None, start=None, end=None, attributes_root=None) -> xr.Dataset:
    """A CAMELS-style NetCDF (basin × time, as ``camels_daymet_train.nc``) → the Dataset of :func:`read_camels`.

    Only the requested basins and period are read.  Streamflow (ft3 s-1) becomes mm d-1 with the basin ``area``
    (m2) of the file.  Attributes are read from ``attributes_root`` (a folder holding ``camels_attributes_v2.0``;
    default: the bundled tables of all 671 CAMELS basins)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CAMELS NetCDF: file not found: {path}")
    attributes = list(DEFAULT_ATTRIBUTES) if attributes is None else list(attributes)
    try:
        src = xr.open_dataset(path)
    except Exception as exc:
        raise ValueError(f"CAMELS NetCDF {path}: cannot be opened as NetCDF ({type(exc).__name__}: {exc})") from exc
    with src:
        need = ("gauge_id", "lat", "area", "streamflow") + FORCING_VARS
        missing = [v for v in need if v not in src.variables]
        if missing:
            raise ValueError(f"CAMELS NetCDF {path}: expected variables {list(need)}, missing {missing}")
        ids = [str(g).zfill(8) for g in src["gauge_id"].values]
        pos = {g: i for i, g in enumerate(ids)}
        basins = ids if basins is None else [str(b).zfill(8) for b in basins]
        absent = [b for b in basins if b not in pos]
        if absent:
            raise KeyError(f"CAMELS NetCDF {path}: basins {absent[:10]}{' ...' if len(absent) > 10 else ''} are not in the file")
        sel = src.isel(basin=[pos[b] for b in basins])
        if start is not None or end is not None:
            sel = sel.sel(time=slice(start, end))
        index = pd.DatetimeIndex(sel["time"].values)
        data = {v: sel[v].transpose("basin", "time").to_numpy().astype("float64") for v in FORCING_VARS}
        area_m2 = sel["area"].to_numpy().astype("float64")
        q = sel["streamflow"].transpose("basin", "time").to_numpy().astype("float64")
        q = np.where(q >= 0, q, np.nan)
        qobs = q * CFS_TO_M3S * 86400.0 / area_m2[:, None] * 1000.0
        hucs = [str(h).zfill(2) for h in sel["huc_02"].values] if "huc_02" in sel else [""] * len(basins)
        product = "daymet" if "daymet" in str(src.attrs.get("source", "")).lower() else str(src.attrs.get("product", "unknown"))
        lat = sel["lat"].to_numpy()
    return _assemble(attributes_root or bundled_camels_root(), basins, index, data, qobs, lat, area_m2 / 1e6, hucs,
                     attributes, product, source=str(path))


def open_camels(source=None, basins=None, product: str = "nldas", attributes=None, start=None, end=None,
                attributes_root=None) -> xr.Dataset:
    """CAMELS data from a folder (text layout, ``product``) or a ``.nc`` file (CAMELS-style NetCDF)."""
    if source is not None and Path(source).suffix in (".nc", ".nc4"):
        ds = read_camels_netcdf(source, basins, attributes, start, end, attributes_root)
        if product and ds.attrs["product"] not in (product, "unknown"):
            raise ValueError(f"forcing product: expected {product!r}, but {source} holds {ds.attrs['product']!r} forcing")
        return ds
    return read_camels(source, basins, product, attributes, start, end, attributes_root)


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
        n_inv = int(((tmax < tmin) & torch.isfinite(tmax) & torch.isfinite(tmin)).sum())
        if n_inv:
            log.info("hargreaves PET: %d basin-days with tmax < tmin (swapped, see physics.hargreaves)", n_inv)
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
