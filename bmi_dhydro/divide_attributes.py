"""Model attributes of hydrofabric divides, each from the best available source, with its provenance.

Source order, per attribute and divide (the first that has a finite value wins):

1. **forcing** — the climate attributes (:data:`CLIMATE`) computed from the divide's own forcing record with the
   CAMELS definitions (Addor et al. 2017, HESS 21, 5293, table 2; Newman et al. 2015), provided the record holds at
   least ``min_climate_days`` complete days (a month is not a climate);
2. **hydrofabric** — ``area_gages2`` from the divides' ``areasqkm`` (else the polygon's geodesic area);
   ``elev_mean`` (m) and ``slope_mean`` (m km-1) only from columns of exactly those names in the divides layer or a
   ``divide-attributes``/``model-attributes`` layer (no unit-guessing from other fields);
3. **table** — a user CSV (column ``id``) holding the attribute for that divide;
4. **camels** — the nearest CAMELS basin (great-circle distance from the divide's centroid to ``gauge_lat``/
   ``gauge_lon``) that has a value.

:func:`derive_attributes` returns two frames of the same shape (index ``id``, one column per attribute): the
values and a source string per value, e.g. ``forcing:forcing/cat-27.csv (2015-12-01..2016-11-30, 366 d)``,
``hydrofabric:divides.areasqkm``, ``table:attributes.csv``, ``camels:01073000 (12.3 km)``, followed by
``[...]`` with the reason each better source was skipped (``forcing record 30 d < 365 d``).

Climate statistics (:func:`climate_statistics`) on daily series; hourly forcing is first summed (precipitation)
and averaged (temperature) to UTC calendar days, keeping only complete days:

* ``p_mean``, ``pet_mean`` — mean daily precipitation and PET (mm d-1).  PET is the model's own method (Hamon,
  :func:`bmi_dhydro.physics.hamon`, from the daily mean temperature and the centroid latitude); CAMELS used
  Priestley–Taylor, so the values differ from CAMELS' (noted in the provenance);
* ``aridity`` = ``pet_mean / p_mean``;
* ``p_seasonality`` (Woods 2009, as in CAMELS): sine curves of period τ = 365.25 d are fitted to daily
  precipitation, ``P(t) = P̄ (1 + δp sin(2π(t − sp)/τ))``, and temperature, ``T(t) = T̄ + δT sin(2π(t − sT)/τ)``
  (least squares); ``p_seasonality = δp · sign(δT) · cos(2π(sp − sT)/τ)`` — positive when precipitation peaks in
  summer, negative in winter, near 0 when uniform;
* ``frac_snow`` — fraction of precipitation falling on days with mean air temperature < 0 °C;
* ``high_prec_freq`` — days per year (365.25 d) with P ≥ 5 × ``p_mean``; ``high_prec_dur`` — mean length (d) of
  runs of consecutive such days;
* ``low_prec_freq`` — days per year with P < 1 mm d-1; ``low_prec_dur`` — mean length (d) of such dry runs.

Runs cut by the start or end of the record count with the length they have in it.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

CLIMATE = ("p_mean", "pet_mean", "p_seasonality", "frac_snow", "aridity", "high_prec_freq", "high_prec_dur",
           "low_prec_freq", "low_prec_dur")
#: attributes a hydrofabric can give: CAMELS name -> accepted column names (in CAMELS units: m, m km-1)
HYDROFABRIC_COLUMNS = {"elev_mean": ("elev_mean",), "slope_mean": ("slope_mean",)}
#: GeoPackage layers, besides the divides, that may hold per-divide attributes (joined on the divide id)
ATTRIBUTE_LAYERS = ("divide-attributes", "model-attributes", "divide_attributes", "model_attributes")
DAYS_PER_YEAR = 365.25
TAU_DAYS = 365.25
EARTH_RADIUS_KM = 6371.0088  # mean Earth radius (IUGG)
PET_NOTE = "Hamon, the model's PET method; CAMELS used Priestley-Taylor"


# ------------------------------------------------------------------------------------------------------------------
# climate statistics


def _runs(mask: np.ndarray) -> np.ndarray:
    """Lengths of the runs of consecutive True values."""
    m = np.concatenate([[0], np.asarray(mask, dtype=np.int8), [0]])
    d = np.diff(m)
    return np.flatnonzero(d == -1) - np.flatnonzero(d == 1)


def _sine_fit(t_days: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Least-squares ``y ≈ m + A sin(2π(t − s)/τ)`` with A ≥ 0: (m, A, s in days)."""
    w = 2.0 * math.pi / TAU_DAYS
    x = np.column_stack([np.ones_like(t_days), np.sin(w * t_days), np.cos(w * t_days)])
    (m, b, c), *_ = np.linalg.lstsq(x, y, rcond=None)
    # A sin(w(t - s)) = A cos(ws) sin(wt) - A sin(ws) cos(wt)  =>  b = A cos(ws), c = -A sin(ws)
    return float(m), float(math.hypot(b, c)), float(math.atan2(-c, b) / w)


def p_seasonality(dates, precip, temp) -> float:
    """Woods (2009) seasonality index as in CAMELS: δp · sign(δT) · cos(2π(sp − sT)/τ) (see the module doc)."""
    dates = pd.DatetimeIndex(dates)
    t = np.asarray((dates - pd.Timestamp("2000-01-01")) / pd.Timedelta(days=1), dtype="float64")
    pm, pa, ps = _sine_fit(t, np.asarray(precip, dtype="float64"))
    _, ta, ts = _sine_fit(t, np.asarray(temp, dtype="float64"))
    if pm <= 0:
        return float("nan")
    # the fit keeps δT ≥ 0 (a negative amplitude is the same curve shifted by τ/2), so sign(δT) = 1 unless flat
    sign_t = 1.0 if ta > 0 else 0.0
    return float(pa / pm * sign_t * math.cos(2.0 * math.pi * (ps - ts) / TAU_DAYS))


def climate_statistics(dates, precip, temp, pet) -> dict[str, float]:
    """CAMELS climate indices of daily series: precipitation and PET (mm d-1), mean air temperature (°C)."""
    p = np.asarray(precip, dtype="float64")
    t = np.asarray(temp, dtype="float64")
    e = np.asarray(pet, dtype="float64")
    n = p.size
    if n == 0 or not (np.isfinite(p).all() and np.isfinite(t).all() and np.isfinite(e).all()):
        raise ValueError("climate_statistics: expected non-empty, finite daily series")
    p_mean = float(p.mean())
    pet_mean = float(e.mean())
    high = p >= 5.0 * p_mean
    low = p < 1.0
    hr, lr = _runs(high), _runs(low)
    total = float(p.sum())
    return {
        "p_mean": p_mean,
        "pet_mean": pet_mean,
        "p_seasonality": p_seasonality(dates, p, t),
        "frac_snow": float(p[t < 0.0].sum() / total) if total > 0 else float("nan"),
        "aridity": pet_mean / p_mean if p_mean > 0 else float("nan"),
        "high_prec_freq": float(high.sum()) / n * DAYS_PER_YEAR,
        "high_prec_dur": float(hr.mean()) if hr.size else float("nan"),
        "low_prec_freq": float(low.sum()) / n * DAYS_PER_YEAR,
        "low_prec_dur": float(lr.mean()) if lr.size else float("nan"),
    }


def daily_series(times, precip_mm_s, temp_k, step_s: float) -> pd.DataFrame:
    """Forcing at ``step_s`` (≤ 1 d, dividing a day) → complete UTC days: ``prcp`` (mm d-1, the sum) and ``tmean``
    (°C, the mean).  Days with fewer records than a full day, or a missing value, are dropped."""
    if step_s <= 0 or step_s > 86400 or 86400 % step_s:
        raise ValueError(f"forcing step {step_s:g} s: expected a step that divides a day")
    per_day = int(round(86400 / step_s))
    times = pd.DatetimeIndex(times)
    p = np.asarray(precip_mm_s, dtype="float64") * step_s
    tc = np.asarray(temp_k, dtype="float64") - 273.15
    ok = np.isfinite(p) & np.isfinite(tc)
    df = pd.DataFrame({"prcp": p, "tmean": tc, "ok": ok.astype(int)}, index=times)
    g = df.groupby(times.floor("D"))
    out = pd.DataFrame({"prcp": g["prcp"].sum(), "tmean": g["tmean"].mean(), "n": g["ok"].sum()})
    return out[out["n"] == per_day][["prcp", "tmean"]]


# ------------------------------------------------------------------------------------------------------------------
# sources


def _forcing_file(pattern: str, uid: str) -> tuple[Path | None, str | None]:
    """The forcing CSV of ``uid``: the pattern with ``{{id}}`` replaced, else the one CSV in that folder whose name
    starts with the id (not followed by a letter or digit; ngen's CsvPerFeature matches ``.*{{id}}.*.csv``)."""
    p = Path(pattern.replace("{{id}}", uid))
    if p.is_file():
        return p, None
    d = p.parent
    if d.is_dir():
        rx = re.compile(re.escape(uid) + r"(?![0-9A-Za-z]).*\.csv$")
        hits = sorted(f for f in d.iterdir() if f.is_file() and rx.match(f.name))
        if len(hits) == 1:
            return hits[0], None
        if len(hits) > 1:
            return None, f"forcing: {len(hits)} files for {uid} in {d}"
    return None, f"forcing: no file {p}"


def _read_forcing(pattern: str, uid: str, cache: dict):
    """(source path, times, precip mm s-1, temp K, step s) or (None, reason)."""
    from .forcing import PRECIP, TEMP, check_time_axis, read_aorc_csv, read_aorc_netcdf

    if pattern.lower().endswith((".nc", ".nc4")):
        path = Path(pattern.replace("{{id}}", uid))
        if not path.is_file():
            return None, f"forcing: no file {path}"
        try:
            if path not in cache:
                cache[path] = read_aorc_netcdf(path)
            times, ids, data = cache[path]
            if uid not in ids:
                return None, f"forcing: {uid} not in {path}"
            j = ids.index(uid)
            prec, temp = data[PRECIP][:, j], data.get(TEMP)
            temp = temp[:, j] if temp is not None else None
        except (OSError, ValueError, KeyError) as exc:
            return None, f"forcing: {path} unreadable ({str(exc).splitlines()[0]})"
    else:
        path, why = _forcing_file(pattern, uid)
        if path is None:
            return None, why
        try:
            times, data = read_aorc_csv(path)
            prec, temp = data[PRECIP], data.get(TEMP)
        except (OSError, ValueError, KeyError) as exc:
            return None, f"forcing: {path} unreadable ({str(exc).splitlines()[0]})"
    if temp is None:
        return None, f"forcing: {path} has no air temperature"
    step = check_time_axis(times, f"forcing {path}")
    return path, times, prec, temp, step


def _climate_from_forcing(pattern, uid, lat, min_days, cache):
    """({name: value}, source, None) or ({}, None, reason)."""
    from .physics import hamon

    got = _read_forcing(pattern, uid, cache)
    if got[0] is None:
        return {}, None, got[1]
    path, times, prec, temp, step = got
    try:
        daily = daily_series(times, prec, temp, step)
    except ValueError as exc:
        return {}, None, f"forcing: {path}: {exc}"
    n = len(daily)
    if n < min_days:
        return {}, None, f"forcing record {n} d < {min_days} d ({path})"
    dates = pd.DatetimeIndex(daily.index)
    pet = np.asarray(hamon(daily["tmean"].to_numpy(), float(lat), dates.dayofyear.to_numpy(dtype="float64")))
    stats = climate_statistics(dates, daily["prcp"].to_numpy(), daily["tmean"].to_numpy(), pet)
    source = f"forcing:{path} ({dates[0]:%Y-%m-%d}..{dates[-1]:%Y-%m-%d}, {n} d)"
    return stats, source, None


def _hydrofabric_columns(divides) -> tuple[pd.DataFrame, dict[str, str]]:
    """Per-divide columns for :data:`HYDROFABRIC_COLUMNS` (index = divide ids) and where each came from."""
    frames = [(divides.layer or divides.path.stem, divides.frame.set_axis(divides.ids, axis=0))]
    if divides.path.suffix.lower() == ".gpkg":
        import pyogrio

        names = [l[0] for l in pyogrio.list_layers(divides.path)]
        for lay in ATTRIBUTE_LAYERS:
            if lay in names and lay != divides.layer:
                meta, _, _, fields = pyogrio.raw.read(divides.path, layer=lay, read_geometry=False)
                df = pd.DataFrame({c: fields[i] for i, c in enumerate(meta["fields"])})
                key = next((c for c in ("divide_id", "id") if c in df.columns), None)
                if key is not None:
                    df = df.drop_duplicates(key)
                    frames.append((lay, df.set_axis(df[key].astype(str).to_list(), axis=0)))
    cols, where = {}, {}
    for name, aliases in HYDROFABRIC_COLUMNS.items():
        for lay, df in frames:
            c = next((a for a in aliases if a in df.columns), None)
            if c is not None:
                cols[name] = pd.to_numeric(df[c], errors="coerce").reindex(divides.ids)
                where[name] = f"{lay}.{c}"
                break
    return pd.DataFrame(cols, index=divides.ids), where


def _geodesic_area_km2(divides) -> np.ndarray:
    import shapely
    from pyproj import Geod, Transformer

    to_ll = Transformer.from_crs(divides.crs, 4326, always_xy=True)
    geod = Geod(ellps="WGS84")
    ll = shapely.transform(divides.geometry, lambda xy: np.column_stack(to_ll.transform(xy[:, 0], xy[:, 1])))
    return np.array([abs(geod.geometry_area_perimeter(g)[0]) / 1e6 if g is not None else np.nan for g in ll])


def _read_user_table(path) -> tuple[pd.DataFrame, pd.Series | None]:
    at = pd.read_csv(path, dtype={"id": str})
    if "id" not in at.columns:
        raise KeyError(f"attributes table {path}: expected an 'id' column, got {list(at.columns)}")
    if at["id"].duplicated().any():
        raise ValueError(f"attributes table {path}: id {at['id'][at['id'].duplicated()].iloc[0]!r} appears twice")
    at = at.set_index("id")
    note = at["attribute_source"].astype(str) if "attribute_source" in at.columns else None
    return at.drop(columns=[c for c in ("attribute_source",) if c in at.columns]).apply(pd.to_numeric, errors="coerce"), note


def _camels_table(names, camels_root=None) -> pd.DataFrame:
    from .datasets import bundled_camels_root, read_attributes

    root = Path(camels_root) if camels_root else bundled_camels_root()
    topo = pd.read_csv(root / "camels_attributes_v2.0" / "camels_topo.txt", sep=";", dtype={"gauge_id": str})
    have = [a for a in names if a not in ("gauge_lat", "gauge_lon")]
    return read_attributes(root, list(topo["gauge_id"]), have).apply(pd.to_numeric, errors="coerce")


def great_circle_km(lat1, lon1, lat2, lon2):
    """Haversine distance (km) on a sphere of the mean Earth radius."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp, dl = p2 - p1, np.radians(np.asarray(lon2) - np.asarray(lon1))
    a = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2.0 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def derive_attributes(hydrofabric, names, forcing_pattern=None, user_table=None, layer=None, id_field=None,
                      min_climate_days: int = 365, camels_root=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Values and sources (two frames, index ``id``, columns ``names``) of every divide's attributes; the source
    order is in the module doc.  An attribute no source has for a divide is an error naming both."""
    from .units import read_divides

    names = list(names)
    div = read_divides(hydrofabric, layer, id_field)
    values = pd.DataFrame(np.nan, index=pd.Index(div.ids, name="id"), columns=names, dtype="float64")
    sources = pd.DataFrame("", index=values.index, columns=names, dtype=object)
    skipped: dict[tuple[str, str], list[str]] = {}

    def skip(uid, a, reason):
        skipped.setdefault((uid, a), []).append(reason)

    def put(uid, a, v, src):
        if not sources.at[uid, a] and v is not None and np.isfinite(v):
            values.at[uid, a] = float(v)
            sources.at[uid, a] = src
            return True
        return False

    # 1. climate from each divide's own forcing record
    climate = [a for a in names if a in CLIMATE]
    if climate:
        cache: dict = {}
        for i, uid in enumerate(div.ids):
            if not forcing_pattern:
                continue
            stats, src, why = _climate_from_forcing(str(forcing_pattern), uid, div.lat[i], min_climate_days, cache)
            for a in climate:
                if why is not None:
                    skip(uid, a, why)
                elif not put(uid, a, stats.get(a), src + (f"; {PET_NOTE}" if a in ("pet_mean", "aridity") else "")):
                    skip(uid, a, f"forcing: {a} undefined in the record ({src.split(' ', 1)[0]})")

    # 2. the hydrofabric: area, and elevation/slope columns where it has them
    if "area_gages2" in names:
        geo = None
        for i, uid in enumerate(div.ids):
            if not put(uid, "area_gages2", div.area_km2[i], f"hydrofabric:{div.area_source}"):
                geo = _geodesic_area_km2(div) if geo is None else geo
                where = div.layer or div.path.stem
                put(uid, "area_gages2", geo[i], f"hydrofabric:{where} polygon (geodesic area on WGS84)")
    hf_names = [a for a in names if a in HYDROFABRIC_COLUMNS]
    if hf_names:
        cols, where = _hydrofabric_columns(div)
        for a in hf_names:
            for uid in div.ids:
                if a in cols:
                    if not put(uid, a, cols.at[uid, a], f"hydrofabric:{where[a]}"):
                        skip(uid, a, f"hydrofabric: {where[a]} empty")
                else:
                    skip(uid, a, f"hydrofabric: no {a} column")

    # 3. the user table
    if user_table is not None:
        at, note = _read_user_table(user_table)
        label = Path(user_table).name
        for uid in div.ids:
            for a in names:
                if sources.at[uid, a]:
                    continue
                if a not in at.columns:
                    skip(uid, a, f"table: no column {a}")
                elif uid not in at.index:
                    skip(uid, a, f"table: no row {uid}")
                else:
                    extra = f" ({note.at[uid]})" if note is not None and isinstance(note.at[uid], str) and note.at[uid] != "nan" else ""
                    if not put(uid, a, at.at[uid, a], f"table:{label}{extra}"):
                        skip(uid, a, "table: empty")

    # 4. the nearest CAMELS basin that has the attribute
    todo = [a for a in names if (sources[a] == "").any()]
    if todo:
        cam = _camels_table(todo, camels_root)
        glat, glon = cam["gauge_lat"].to_numpy(dtype="float64"), cam["gauge_lon"].to_numpy(dtype="float64")
        for i, uid in enumerate(div.ids):
            dist = great_circle_km(div.lat[i], div.lon[i], glat, glon)
            order = np.argsort(dist, kind="stable")
            for a in todo:
                if sources.at[uid, a] or a not in cam.columns:
                    continue
                col = cam[a].to_numpy(dtype="float64")[order]
                ok = np.flatnonzero(np.isfinite(col))
                if ok.size:
                    k = order[ok[0]]
                    put(uid, a, col[ok[0]], f"camels:{cam.index[k]} ({dist[k]:.1f} km)")

    for uid in div.ids:
        for a in names:
            if not sources.at[uid, a]:
                raise KeyError(f"divide attributes: no source has {a!r} for divide {uid!r} "
                               f"({'; '.join(skipped.get((uid, a), [])) or 'not a CAMELS attribute'})")
            if (uid, a) in skipped:
                sources.at[uid, a] += " [" + "; ".join(skipped[(uid, a)]) + "]"
    return values, sources


def write_attributes(values: pd.DataFrame, sources: pd.DataFrame, out) -> tuple[Path, Path]:
    """``OUT/attributes.csv`` (values, column ``id``) and ``OUT/attributes_provenance.csv`` (same shape, sources)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    vp, sp = out / "attributes.csv", out / "attributes_provenance.csv"
    values.to_csv(vp, index_label="id", float_format="%.17g")
    sources.to_csv(sp, index_label="id")
    return vp, sp


def source_summary(sources: pd.DataFrame) -> str:
    """``forcing 27, hydrofabric 3, table 0, camels 45`` over all values."""
    kinds = np.array([str(s).split(":", 1)[0] for s in sources.to_numpy().ravel()])
    return ", ".join(f"{k} {int((kinds == k).sum())}" for k in ("forcing", "hydrofabric", "table", "camels"))
