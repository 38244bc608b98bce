"""CDO as an independent reference: write cells for ``cdo gencon/genbil``, run it, read its SCRIP weights.

CDO (Climate Data Operators, MPI-M; ``apt-get install cdo``) computes first-order conservative
weights with YAC's spherical polygon clipping and writes them in the SCRIP remap-file layout
(``remap_matrix``, ``src_address``, ``dst_address``, ``src_grid_frac``, ``dst_grid_frac``,
``dst_grid_area``...). Used by the tests and ``bench/bench_regrid_sphere.py`` to check the native
backend; nothing here is needed to generate or apply weights.

Edges: YAC knows great-circle, latitude-circle and longitude-circle edges. CDO gives a grid whose
four-corner cells all have two constant-latitude and two constant-longitude sides *latitude-circle*
edges (``get_lonlat_circle_index`` in CDO's ``remap_conserv.cc``); ESMF always uses great circles.
:func:`write_cdo_cells` therefore lists the corners of the first cell starting one corner later
(``great_circles=True``, the default): the cells are unchanged, CDO no longer recognises the
longitude/latitude pattern, and every edge is a great circle as in ESMF.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from bmi_dhydro._extras import require

from .crs import REGRIDDING, RegridError
from .grids import CellSet, Grid, Polygons
from .weights import Weights

shapely = require("shapely", "geo", REGRIDDING)

__all__ = ["cdo_available", "write_cdo_cells", "write_cdo_grid", "read_scrip_weights", "cdo_weights"]


def cdo_available() -> bool:
    return shutil.which("cdo") is not None


def _corner_arrays(cells: CellSet) -> tuple[np.ndarray, np.ndarray]:
    """Corner longitudes/latitudes ``(n, nv)`` (degrees); short rings padded with their last corner."""
    if not isinstance(cells, (Grid, Polygons)):
        raise RegridError(f"cells must be a Grid or Polygons, got {type(cells).__name__}")
    if isinstance(cells, Polygons) and (np.any(shapely.get_type_id(cells.geoms) != 3)
                                        or np.any(shapely.get_num_interior_rings(cells.geoms) > 0)):
        raise RegridError("CDO cells must be simple polygons (no holes, one part)")
    if isinstance(cells, Grid):
        return cells.lonlat_vertices()
    v = cells.lonlat_vertices(max_values=2**62)
    assert v is not None
    return v


def write_cdo_cells(cells: CellSet, path: str | os.PathLike, values: Any = None, great_circles: bool = True) -> None:
    """Write ``cells`` as a CF unstructured grid (cell centres, corner bounds) with one field ``f`` for CDO."""
    import netCDF4

    lon_b, lat_b = _corner_arrays(cells)
    lon_b, lat_b = lon_b.copy(), lat_b.copy()
    if great_circles and lon_b.shape[1] == 4:
        lon_b[0], lat_b[0] = np.roll(lon_b[0], -1), np.roll(lat_b[0], -1)
    lon, lat = cells.lonlat_centers()
    if values is None:
        values = np.ones(cells.size)
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if values.size != cells.size:
        raise RegridError(f"values has {values.size} entries, the cells are {cells.size}")
    with netCDF4.Dataset(str(path), "w", format="NETCDF4") as nc:
        nc.createDimension("ncells", cells.size)
        nc.createDimension("nv", lon_b.shape[1])
        for name, c, b, units, sn in (("lon", lon, lon_b, "degrees_east", "longitude"),
                                      ("lat", lat, lat_b, "degrees_north", "latitude")):
            v = nc.createVariable(name, "f8", ("ncells",))
            v.units, v.standard_name, v.bounds = units, sn, f"{name}_bnds"
            v[:] = c
            vb = nc.createVariable(f"{name}_bnds", "f8", ("ncells", "nv"))
            vb[:] = b
        v = nc.createVariable("f", "f8", ("ncells",), fill_value=-9e33)
        v.coordinates = "lat lon"
        data = np.where(cells.mask, values, -9e33)
        v[:] = data


def write_cdo_grid(grid: Grid, path: str | os.PathLike, values: Any = None) -> None:
    """Write a structured grid as a CF grid CDO's bilinear accepts: 1-D ``lon``/``lat`` for a rectilinear
    longitude/latitude grid, 2-D ``lon(y, x)``/``lat(y, x)`` (curvilinear) otherwise; masked cells missing.

    CDO takes the grid as cyclic (global in longitude) when its longitudes span 360 degrees.
    """
    import netCDF4

    if not isinstance(grid, Grid):
        raise RegridError(f"grid must be a Grid (CDO's bilinear needs a structured source), got {type(grid).__name__}")
    if values is None:
        values = np.ones(grid.size)
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if values.size != grid.size:
        raise RegridError(f"values has {values.size} entries, the grid has {grid.size} cells")
    lon, lat = grid.lonlat_centers()
    with netCDF4.Dataset(str(path), "w", format="NETCDF4") as nc:
        if grid.kind == "rectilinear" and grid.is_geographic:
            nc.createDimension("lat", grid.ny)
            nc.createDimension("lon", grid.nx)
            dims_lon, dims_lat, fdims = ("lon",), ("lat",), ("lat", "lon")
            lon_v, lat_v = grid.x, grid.y
        else:
            nc.createDimension("y", grid.ny)
            nc.createDimension("x", grid.nx)
            dims_lon = dims_lat = fdims = ("y", "x")
            lon_v, lat_v = lon.reshape(grid.shape), lat.reshape(grid.shape)
        for name, dims, data, units, sn in (("lon", dims_lon, lon_v, "degrees_east", "longitude"),
                                            ("lat", dims_lat, lat_v, "degrees_north", "latitude")):
            v = nc.createVariable(name, "f8", dims)
            v.units, v.standard_name = units, sn
            v[:] = data
        v = nc.createVariable("f", "f8", fdims, fill_value=-9e33)
        if fdims == ("y", "x"):
            v.coordinates = "lat lon"
        v[:] = np.where(grid.mask, values, -9e33).reshape(grid.shape)


def read_scrip_weights(path: str | os.PathLike, method: str = "conserve") -> Weights:
    """Read a SCRIP-layout remap file (CDO's ``gen*`` output) as :class:`~coupler.regrid.weights.Weights`."""
    import netCDF4

    with netCDF4.Dataset(str(path)) as nc:
        nc.set_auto_mask(False)
        for name in ("remap_matrix", "src_address", "dst_address"):
            if name not in nc.variables:
                raise RegridError(f"{path}: not a SCRIP remap file ({name} missing)")
        S = np.asarray(nc["remap_matrix"][:], dtype=np.float64)
        S = S[:, 0] if S.ndim == 2 else S
        col = np.asarray(nc["src_address"][:], dtype=np.int64) - 1
        row = np.asarray(nc["dst_address"][:], dtype=np.int64) - 1
        get = {n: np.asarray(nc[n][:], dtype=np.float64) for n in ("src_grid_frac", "dst_grid_frac", "src_grid_area",
                                                                    "dst_grid_area") if n in nc.variables}
        n_a = len(nc.dimensions["src_grid_size"])
        n_b = len(nc.dimensions["dst_grid_size"])
        norm = str(getattr(nc, "normalization", "fracarea")).lower()
    order = np.lexsort((col, row))
    conserve = method == "conserve"
    return Weights(n_a=n_a, n_b=n_b, row=row[order], col=col[order], S=S[order],
                   frac_a=get.get("src_grid_frac"), frac_b=get.get("dst_grid_frac"),
                   area_a=get.get("src_grid_area") if conserve else None,
                   area_b=get.get("dst_grid_area") if conserve else None, method=method,
                   norm_type=("fracarea" if norm.startswith("frac") else "dstarea") if conserve else None)


def cdo_weights(src: CellSet, dst: CellSet, method: str = "conserve", norm_type: str = "dstarea",
                great_circles: bool = True, workdir: str | os.PathLike | None = None, timeout: float = 600) -> Weights:
    """Weights from CDO (``gencon`` for ``conserve``, ``genbil`` for ``bilinear``) between two cell sets.

    ``genbil`` reads the source as a longitude/latitude or curvilinear grid (:func:`write_cdo_grid`) and
    interpolates at the destination cell centres. CDO's bilinear works in longitude/latitude (a Newton
    iteration on the quad of four source centres with longitude differences wrapped), not in 3-D as ESMF;
    where no quad contains a point it falls back to an inverse-distance average of the 4 nearest source
    points when the source is global (CDO's ``REMAP_EXTRAPOLATE``, on by default for cyclic grids).
    """
    if not cdo_available():
        raise RegridError("cdo is not on PATH (apt-get install cdo)")
    op = {"conserve": "gencon", "bilinear": "genbil", "nearest_stod": "gennn"}.get(method)
    if op is None:
        raise RegridError(f"method must be conserve, bilinear or nearest_stod for CDO, got {method!r}")
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        s, d, w = Path(tmp) / "src.nc", Path(tmp) / "dst.nc", Path(tmp) / "w.nc"
        if method == "bilinear":
            if not isinstance(src, Grid):
                raise RegridError(f"cdo genbil needs a structured source grid, got {src.describe()}")
            write_cdo_grid(src, s)
        else:
            write_cdo_cells(src, s, great_circles=great_circles)
        write_cdo_cells(dst, d, great_circles=great_circles)
        env = dict(os.environ, CDO_REMAP_NORM="destarea" if norm_type == "dstarea" else "fracarea",
                   OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
        r = subprocess.run(["cdo", "-s", f"{op},{d}", str(s), str(w)], capture_output=True, text=True, env=env,
                           timeout=timeout)
        if r.returncode != 0 or not w.exists():
            raise RegridError(f"cdo {op} failed ({r.returncode}): {r.stderr.strip()[-2000:]}")
        return read_scrip_weights(w, method)
