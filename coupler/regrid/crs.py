"""Coordinate reference system helpers for :mod:`coupler.regrid`.

Everything here is a thin layer over :mod:`pyproj`; it exists to give one place that

* reads a CRS from the many ways NetCDF files carry one (a CF ``grid_mapping``
  variable, ``crs_wkt``/``spatial_ref`` attributes, or the ``proj4`` /
  ``esri_pe_string`` attributes the National Water Model writes on its variables),
* decides whether a CRS is equal-area (so conservative weights can be computed in it),
* builds a Lambert azimuthal equal-area projection centred on a domain, and
* gives the authalic radius used to express areas in ESMF's "square radians".
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from bmi_dhydro._extras import require

#: the feature named when the 'geo' extra is missing
REGRIDDING = "regridding (coupler.regrid, dhydro regrid, gridded forcing)"
_pyproj = require("pyproj", "geo", REGRIDDING)
CRS, Transformer = _pyproj.CRS, _pyproj.Transformer

__all__ = [
    "LONLAT",
    "RegridError",
    "as_crs",
    "crs_from_attrs",
    "is_equal_area",
    "laea_crs",
    "authalic_radius",
    "transformer",
]

#: Longitude/latitude in degrees (WGS 84), the coordinate system of ESMF weight files.
LONLAT = CRS.from_epsg(4326)


class RegridError(ValueError):
    """Raised for bad regridding input (files, grids, weights, values)."""


def as_crs(value: Any, what: str = "crs") -> CRS:
    """Turn ``value`` (CRS, EPSG int, WKT/PROJ string, PROJJSON dict) into a :class:`pyproj.CRS`."""
    if isinstance(value, CRS):
        return value
    try:
        return CRS.from_user_input(value)
    except Exception as exc:  # pyproj raises CRSError; keep the message
        raise RegridError(f"{what}: cannot interpret {value!r} as a coordinate reference system ({exc})") from None


# Order matters: standard WKT first, then PROJ strings, then ESRI WKT (the NWM's esri_pe_string carries
# lat_0=40.0000076294, a float32 round-off of the documented +lat_0=40 in its proj4 attribute).
_CRS_ATTRS = ("crs_wkt", "spatial_ref", "srs_wkt", "proj4", "proj4text", "proj4_params", "proj_params",
              "esri_pe_string", "crs")


def crs_from_attrs(*attr_dicts: Mapping[str, Any], grid_mapping_attrs: Mapping[str, Any] | None = None) -> CRS | None:
    """Find a CRS in NetCDF attributes.

    ``grid_mapping_attrs`` are the attributes of a CF grid-mapping variable (tried first, via
    :meth:`pyproj.CRS.from_cf`, then through any WKT it carries). Each mapping in ``attr_dicts``
    (a data variable's attributes, then the global attributes, ...) is searched for one of the
    attributes in which tools store a CRS (``crs_wkt``, ``spatial_ref``, ``esri_pe_string``,
    ``proj4``...). Returns ``None`` when nothing is found.
    """
    if grid_mapping_attrs:
        gm = {k: _plain(v) for k, v in grid_mapping_attrs.items()}
        for key in ("crs_wkt", "spatial_ref"):
            if isinstance(gm.get(key), str) and gm[key].strip():
                try:
                    return CRS.from_wkt(gm[key])
                except Exception:
                    pass
        try:
            return CRS.from_cf(gm)
        except Exception:
            pass
        for key in _CRS_ATTRS:
            crs = _try_crs(gm.get(key))
            if crs is not None:
                return crs
    for attrs in attr_dicts:
        if not attrs:
            continue
        for key in _CRS_ATTRS:
            crs = _try_crs(attrs.get(key))
            if crs is not None:
                return crs
    return None


def _plain(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return v.tolist() if v.size != 1 else v.item()
    if isinstance(v, np.generic):
        return v.item()
    return v


def _try_crs(text: Any) -> CRS | None:
    if not isinstance(text, str) or not text.strip():
        return None
    candidate = text.strip()
    # ESRI writes "PROJCS[...];-35691800 -29075200 126180232.640845;..." (WKT + coordinate precision info)
    if candidate.startswith(("PROJCS[", "GEOGCS[")) and ";" in candidate:
        candidate = candidate.split(";")[0]
    try:
        return CRS.from_user_input(candidate)
    except Exception:
        return None


_EQUAL_AREA_METHOD_WORDS = ("equal area", "equal-area", "equal earth", "mollweide", "sinusoidal")
_EQUAL_AREA_PROJ = ("aea", "laea", "cea", "eqearth", "moll", "sinu")


def is_equal_area(crs: CRS) -> bool:
    """True when ``crs`` is a projection that preserves areas (Albers, LAEA, Equal Earth, ...)."""
    if not crs.is_projected:
        return False
    op = crs.coordinate_operation
    name = (op.method_name if op is not None else "") or ""
    if any(w in name.lower() for w in _EQUAL_AREA_METHOD_WORDS):
        return True
    try:
        proj = crs.to_dict().get("proj", "")
    except Exception:
        proj = ""
    return proj in _EQUAL_AREA_PROJ


def laea_crs(lon0: float, lat0: float, like: CRS | None = None) -> CRS:
    """Lambert azimuthal equal-area projection centred on (lon0, lat0).

    The ellipsoid is taken from ``like`` when it is a known one, WGS 84 otherwise.
    """
    lon0 = ((float(lon0) + 180.0) % 360.0) - 180.0
    lat0 = float(np.clip(lat0, -90.0, 90.0))
    ell = "+ellps=WGS84"
    if like is not None and like.ellipsoid is not None:
        e = like.ellipsoid
        a = e.semi_major_metre
        b = e.semi_minor_metre
        if a and b and math.isfinite(a) and math.isfinite(b):
            ell = f"+a={a!r} +b={b!r}"
    return CRS.from_proj4(f"+proj=laea +lat_0={lat0!r} +lon_0={lon0!r} +x_0=0 +y_0=0 {ell} +units=m +no_defs +type=crs")


def authalic_radius(crs: CRS | None) -> float:
    """Radius of the sphere with the same surface area as ``crs``'s ellipsoid (m).

    Used to convert areas in m^2 to ESMF's "square radians" (area on the unit sphere).
    Falls back to the WGS 84 value (6371007.18 m) when the CRS has no usable ellipsoid.
    """
    a, b = 6378137.0, 6356752.314245179
    if crs is not None and crs.ellipsoid is not None:
        ea, eb = crs.ellipsoid.semi_major_metre, crs.ellipsoid.semi_minor_metre
        if ea and eb and math.isfinite(ea) and math.isfinite(eb):
            a, b = ea, eb
    if a == b:
        return float(a)
    e2 = 1.0 - (b * b) / (a * a)
    e = math.sqrt(e2)
    qp = 1.0 + (1.0 - e2) / (2.0 * e) * math.log((1.0 + e) / (1.0 - e))
    return float(a * math.sqrt(qp / 2.0))


def ellipsoid_area_lonlat_box(lon0: np.ndarray, lon1: np.ndarray, lat0: np.ndarray, lat1: np.ndarray,
                              crs: CRS | None = None) -> np.ndarray:
    """Exact area (m^2) of longitude/latitude rectangles on the ellipsoid of ``crs`` (WGS 84 default)."""
    a, b = 6378137.0, 6356752.314245179
    if crs is not None and crs.ellipsoid is not None:
        ea, eb = crs.ellipsoid.semi_major_metre, crs.ellipsoid.semi_minor_metre
        if ea and eb and math.isfinite(ea) and math.isfinite(eb):
            a, b = ea, eb
    dlon = np.deg2rad(np.abs(np.asarray(lon1, float) - np.asarray(lon0, float)))
    s0 = np.sin(np.deg2rad(np.clip(lat0, -90, 90)))
    s1 = np.sin(np.deg2rad(np.clip(lat1, -90, 90)))
    if a == b:
        return a * a * dlon * np.abs(s1 - s0)
    e2 = 1.0 - (b * b) / (a * a)
    e = math.sqrt(e2)

    def q(s):
        return s / (1.0 - e2 * s * s) - (1.0 / (2.0 * e)) * np.log((1.0 - e * s) / (1.0 + e * s))

    return 0.5 * a * a * (1.0 - e2) * dlon * np.abs(q(s1) - q(s0))


def transformer(src: CRS, dst: CRS) -> Transformer:
    """An ``always_xy`` transformer (x/longitude first) between two CRSs."""
    return Transformer.from_crs(src, dst, always_xy=True)


def transform_xy(src: CRS, dst: CRS, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Transform coordinate arrays, returning float64 arrays of the same shape."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if src == dst:
        return x.copy(), y.copy()
    tx, ty = transformer(src, dst).transform(x, y)
    return np.asarray(tx, dtype=np.float64).reshape(x.shape), np.asarray(ty, dtype=np.float64).reshape(y.shape)


def describe(crs: CRS) -> str:
    """Short human description of a CRS (EPSG code or name)."""
    try:
        code = crs.to_epsg()
    except Exception:
        code = None
    if code:
        return f"EPSG:{code}"
    if crs.name and crs.name.lower() != "unknown":
        return crs.name
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return crs.to_proj4()
