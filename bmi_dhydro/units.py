"""Where the modelled units (basins, catchments, HRUs) come from: inline lists, a CSV/NetCDF table, or a
hydrofabric GeoPackage/GeoJSON plus an attribute table.  Every loader returns a :class:`UnitTable`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ._extras import require


@dataclass
class UnitTable:
    ids: list[str]
    area_km2: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    attributes: dict[str, np.ndarray] = field(default_factory=dict)
    toid: list[str] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def attribute_matrix(self, names) -> np.ndarray:
        """(n_units, n_attributes) in the order of ``names``; a unit missing one is an error naming both."""
        cols = []
        for a in names:
            if a not in self.attributes:
                raise KeyError(f"units: attribute {a!r} is required by the model but missing for every unit "
                               f"(have {sorted(self.attributes)}); units: {self.ids[:5]}{'...' if len(self.ids) > 5 else ''}")
            v = np.asarray(self.attributes[a], dtype="float64")
            bad = np.flatnonzero(~np.isfinite(v))
            if bad.size:
                raise ValueError(f"units: unit {self.ids[bad[0]]!r} has no value for attribute {a!r} (got {v[bad[0]]})")
            cols.append(v)
        return np.stack(cols, axis=-1) if cols else np.zeros((len(self.ids), 0))

    def select(self, ids) -> "UnitTable":
        index = {u: i for i, u in enumerate(self.ids)}
        missing = [u for u in ids if u not in index]
        if missing:
            raise KeyError(f"units.select: ids {missing} not found (available: {self.ids[:10]}{'...' if len(self.ids) > 10 else ''})")
        ix = np.array([index[u] for u in ids], dtype=int)
        return UnitTable(
            [self.ids[i] for i in ix], self.area_km2[ix], self.lat[ix], self.lon[ix],
            {k: np.asarray(v)[ix] for k, v in self.attributes.items()},
            [self.toid[i] for i in ix] if self.toid else None,
        )


def _check_lengths(n, **arrays):
    for name, arr in arrays.items():
        if arr is not None and len(arr) != n:
            raise ValueError(f"units.{name}: expected {n} values (one per id), got {len(arr)}")


def from_inline(ids, area_km2, lat, lon, attributes=None) -> UnitTable:
    ids = [str(i) for i in ids]
    n = len(ids)
    if n == 0:
        raise ValueError("units.ids: expected at least one unit id, got none")
    if len(set(ids)) != n:
        raise ValueError("units.ids: ids must be unique")
    attributes = attributes or {}
    _check_lengths(n, area_km2=area_km2, lat=lat, lon=lon, **{f"attributes.{k}": v for k, v in attributes.items()})
    return UnitTable(ids, np.asarray(area_km2, dtype="float64"), np.asarray(lat, dtype="float64"),
                     np.asarray(lon, dtype="float64"), {k: np.asarray(v, dtype="float64") for k, v in attributes.items()})


_ID_COLS = ("id", "divide_id", "unit_id", "basin", "gauge_id", "hru_id")


def _frame_to_table(df: pd.DataFrame, source: str, id_field=None) -> UnitTable:
    cols = {c.lower(): c for c in df.columns}
    idc = id_field or next((cols[c] for c in _ID_COLS if c in cols), None)
    if idc is None or idc not in df.columns:
        raise KeyError(f"units table {source}: expected an id column ({id_field or ' / '.join(_ID_COLS)}), got columns {list(df.columns)}")
    need = {"area_km2": ("area_km2", "areasqkm", "area"), "lat": ("lat", "latitude"), "lon": ("lon", "longitude")}
    found = {}
    for key, alts in need.items():
        c = next((cols[a] for a in alts if a in cols), None)
        if c is None:
            raise KeyError(f"units table {source}: expected a column {key} (or {', '.join(alts[1:])}), got {list(df.columns)}")
        found[key] = c
    skip = {idc, *found.values(), "toid", "geometry"}
    attrs = {c: pd.to_numeric(df[c], errors="coerce").to_numpy(dtype="float64") for c in df.columns if c not in skip}
    return UnitTable([str(v) for v in df[idc]], df[found["area_km2"]].to_numpy(dtype="float64"),
                     df[found["lat"]].to_numpy(dtype="float64"), df[found["lon"]].to_numpy(dtype="float64"),
                     attrs, [str(v) for v in df["toid"]] if "toid" in df.columns else None)


def from_table(path) -> UnitTable:
    """CSV (``id, area_km2, lat, lon, <attributes>...``) or NetCDF (dim ``unit`` with the same variables)."""
    path = Path(path)
    if path.suffix.lower() in (".nc", ".nc4", ".netcdf"):
        import xarray as xr

        with xr.open_dataset(path) as ds:
            df = ds.to_dataframe().reset_index()
    else:
        df = pd.read_csv(path, dtype={"id": str, "gauge_id": str, "basin": str, "divide_id": str})
    return _frame_to_table(df, str(path))


def _read_geoparquet(path):
    """GeoParquet through pyarrow (GDAL builds often lack the Parquet driver): (meta with crs, WKB array, frame)."""
    import json

    feature = f"reading the GeoParquet file {Path(path).name}"
    pq = require("pyarrow.parquet", "geo", feature)
    CRS = require("pyproj", "geo", feature).CRS

    table = pq.read_table(path)
    geo = json.loads((table.schema.metadata or {}).get(b"geo", b"{}") or b"{}")
    gcol = geo.get("primary_column", "geometry")
    if gcol not in table.column_names:
        raise KeyError(f"{path}: no geometry column {gcol!r} (columns {table.column_names})")
    crs = geo.get("columns", {}).get(gcol, {}).get("crs")
    crs = CRS.from_json_dict(crs).to_wkt() if isinstance(crs, dict) else (crs or "EPSG:4326")
    geoms = table.column(gcol).to_numpy(zero_copy_only=False)
    df = table.drop([gcol]).to_pandas()
    return {"crs": crs}, geoms, df


@dataclass
class Divides:
    """The divides of a hydrofabric as read: ids, the layer's fields, polygons, centroids and areas with their source."""
    path: Path
    layer: str | None
    frame: pd.DataFrame
    ids: list[str]
    geometry: np.ndarray
    crs: object
    lon: np.ndarray
    lat: np.ndarray
    area_km2: np.ndarray
    area_source: str


def read_divides(path, layer=None, id_field=None) -> Divides:
    """Read a hydrofabric's divides (GeoPackage layer ``divides`` by default, GeoJSON, GeoParquet) without geopandas."""
    path = Path(path)
    feature = f"reading the hydrofabric {path.name}"
    pyogrio = require("pyogrio", "geo", feature)
    require("pyogrio.raw", "geo", feature)
    pyproj = require("pyproj", "geo", feature)
    CRS, Transformer = pyproj.CRS, pyproj.Transformer
    shapely = require("shapely", "geo", feature)
    if layer is None and path.suffix.lower() == ".gpkg":
        names = [l[0] for l in pyogrio.list_layers(path)]
        layer = "divides" if "divides" in names else names[0]
    if path.suffix.lower() in (".parquet", ".geoparquet"):
        meta, geoms, df = _read_geoparquet(path)
    else:
        meta, _, geoms, fields = pyogrio.raw.read(path, layer=layer)  # no geopandas needed
        df = pd.DataFrame({c: fields[i] for i, c in enumerate(meta["fields"])})
    cols = list(df.columns)
    idc = id_field or next((c for c in ("divide_id", "id") if c in df.columns), None)
    if idc is None or idc not in df.columns:
        raise KeyError(f"hydrofabric {path}: expected an id field (divide_id or id), got {cols}")
    geom = shapely.from_wkb(geoms)
    crs = CRS.from_user_input(meta["crs"]) if meta.get("crs") else CRS.from_epsg(4326)
    cen = shapely.centroid(geom)
    to_ll = Transformer.from_crs(crs, 4326, always_xy=True)
    lon, lat = to_ll.transform(np.array([c.x for c in cen]), np.array([c.y for c in cen]))
    where = layer or path.stem
    if "areasqkm" in df.columns:
        area = pd.to_numeric(df["areasqkm"]).to_numpy(dtype="float64")
        area_source = f"{where}.areasqkm"
    else:
        to_ea = Transformer.from_crs(crs, 5070, always_xy=True)  # CONUS Albers equal-area
        projected = shapely.transform(geom, lambda xy: np.column_stack(to_ea.transform(xy[:, 0], xy[:, 1])))
        area = shapely.area(projected) / 1e6
        area_source = f"{where} polygon area (EPSG:5070 equal-area)"
    ids = [str(v) for v in df[idc]]
    return Divides(path, layer, df, ids, geom, crs, np.asarray(lon, dtype="float64"), np.asarray(lat, dtype="float64"),
                   np.asarray(area, dtype="float64"), area_source)


def from_hydrofabric(path, layer=None, id_field=None, attributes_table=None) -> UnitTable:
    """Divides from a NextGen hydrofabric GeoPackage (layer ``divides``) or a GeoJSON catchment file.

    Area comes from ``areasqkm`` (or the polygon area in an equal-area projection); lat/lon are the centroids
    in EPSG:4326.  Model attributes come from ``attributes_table`` (CSV with an ``id`` column) or, failing that,
    from numeric columns of the layer itself.
    """
    d = read_divides(path, layer, id_field)
    df, area, lon, lat, ids = d.frame, d.area_km2, d.lon, d.lat, d.ids
    attrs: dict[str, np.ndarray] = {}
    if attributes_table is not None:
        at = pd.read_csv(attributes_table, dtype={"id": str})
        if "id" not in at.columns:
            raise KeyError(f"attributes_table {attributes_table}: expected an 'id' column, got {list(at.columns)}")
        at = at.set_index("id").apply(pd.to_numeric, errors="coerce")
        missing = [u for u in ids if u not in at.index]
        for c in at.columns:
            vals = np.full(len(ids), np.nan)
            for i, u in enumerate(ids):
                if u in at.index:
                    vals[i] = float(at.at[u, c])
            attrs[c] = vals
        if missing and len(missing) == len(ids):
            raise KeyError(f"attributes_table {attributes_table}: none of the divide ids {ids[:5]} appear in it")
    toid = [str(v) for v in df["toid"]] if "toid" in df.columns else None
    return UnitTable(ids, area, np.asarray(lat), np.asarray(lon), attrs, toid)


def load_units(section) -> UnitTable:
    """The units named by a BMI config's ``units:`` section (inline, table or hydrofabric, then ``select``)."""
    if section.ids is not None:
        table = from_inline(section.ids, section.area_km2, section.lat, section.lon, section.attributes)
    elif section.table is not None:
        table = from_table(section.table)
    else:
        table = from_hydrofabric(section.hydrofabric, section.layer, section.id_field, section.attributes_table)
    if section.select is not None:
        table = table.select([section.select] if isinstance(section.select, str) else list(section.select))
    return table
