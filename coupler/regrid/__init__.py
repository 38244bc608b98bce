"""ESMF-format regridding: gridded forcing onto catchment polygons and back.

The ESMF weight file (as written by ``ESMF_RegridWeightGen``) is the common currency: weights
made here can be used by ESMF tools, and weights made by ESMF on an HPC system are applied here.

Quick start::

    from coupler.regrid import read_grid, read_polygons, generate_weights, read_weights

    grid = read_grid("test_template_grid.nc")            # NWM 1-km Lambert grid (proj4 attribute)
    divides = read_polygons("test_ngen_divides.parquet")  # NextGen divides, EPSG:5070
    w = generate_weights(grid, divides, method="conserve", norm_type="fracarea")
    w.to_netcdf("weights.nc")
    w = read_weights("weights.nc")
    w.check_grids(grid, divides)                          # refuses a mismatched grid
    rain = w.apply(rainrate)                              # (time, y, x) -> (time, 10), NaN-aware
    rt = w.to_torch()                                     # differentiable torch version
    y = rt(torch_tensor, correction=learned_factor)

Command line: ``dhydro regrid weights SRC DST --method conserve -o weights.nc`` (see
:mod:`coupler.regrid.cli`).

Backends
--------
``native`` (default)
    exact polygon intersection (GEOS through vectorised shapely 2) in an **equal-area plane**
    (the destination's or source's CRS when equal-area, e.g. the hydrofabric's EPSG:5070;
    otherwise a Lambert azimuthal equal-area projection centred on the destination). Cell edges
    are straight lines in that plane between projected vertices, after densifying lon/lat
    cells (0.05 degree) so that their edges follow parallels and meridians. **ESMF instead
    treats every cell edge as a great-circle arc on the sphere** and measures areas on the unit
    sphere. The two agree to ~1e-6 for km-scale cells; for coarse lon/lat cells ESMF's
    great-circle edges cut across the parallels that really bound the cells (up to ~8 m of
    sagitta for a 0.25 degree cell at mid-latitudes), which changes individual weights of small
    polygons by up to ~2e-3 (ERA5 0.25 degree onto 51 HRUs).
    See :mod:`coupler.regrid.native` for details and for how bilinear, nearest_stod and nearest_dtos work
    (bilinear on the sphere as ESMF defines it: :mod:`coupler.regrid.interp_sphere`).
``esmpy``
    ESMF itself through ESMPy, when it can be imported (:mod:`coupler.regrid.esmpy_backend`);
    same API, same :class:`Weights` and file output.

What conservative weights conserve
----------------------------------
With ``A_ij`` the intersection area of source cell ``i`` and destination ``j``, ``frac_a_i =
sum_j A_ij / area_a_i`` and ``frac_b_j = sum_i A_ij / area_b_j``:

* ``norm_type="dstarea"``: ``sum_j d_j area_b_j = sum_i s_i frac_a_i area_a_i`` -- the integral
  of the source over the part of it that the destination covers. When the destination covers
  the source completely (``frac_a = 1``) that is the whole source integral.
* ``norm_type="fracarea"``: ``sum_j d_j frac_b_j area_b_j = sum_i s_i frac_a_i area_a_i``; each
  ``d_j`` is the area-weighted mean of the source over the covered part of ``j``.
* Masked source cells (``mask_a = 0``) take no part: their area is simply not covered, so the
  identities above hold over the active cells.
* Missing values at apply time (NaN, ``skipna=True``) are filled with the weighted mean of the
  valid sources of the same destination, so the identities hold exactly for destinations without
  missing sources and only approximately for the others (see :mod:`coupler.regrid.weights`).
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

# The names below load on first use (PEP 562), so that ``coupler.regrid.cli`` (registered into the ``dhydro``
# command line) imports without the 'geo' extra; using them without it raises one message naming the extra.
_EXPORTS = {
    "UnmappedError": "api", "esmpy_available": "api", "generate_weights": "api",
    "generate_weights_mpi": "parallel", "destination_parts": "parallel",
    "RegridError": "crs",
    "CellSet": "grids", "Grid": "grids", "Polygons": "grids", "read_cells": "grids", "read_grid": "grids",
    "read_polygons": "grids", "write_esmf_mesh": "grids", "write_scrip": "grids",
    "METHODS": "weights", "NORM_TYPES": "weights", "Weights": "weights", "read_weights": "weights",
    "TorchRegridder": "torch_apply",  # imports torch only when the torch regridder is used
}

if TYPE_CHECKING:  # for readers and type checkers; at run time the names come from __getattr__
    from .api import UnmappedError, esmpy_available, generate_weights
    from .crs import RegridError
    from .grids import CellSet, Grid, Polygons, read_cells, read_grid, read_polygons, write_esmf_mesh, write_scrip
    from .parallel import destination_parts, generate_weights_mpi
    from .torch_apply import TorchRegridder
    from .weights import METHODS, NORM_TYPES, Weights, read_weights

__all__ = [
    "CellSet",
    "Grid",
    "Polygons",
    "RegridError",
    "UnmappedError",
    "Weights",
    "METHODS",
    "NORM_TYPES",
    "esmpy_available",
    "generate_weights",
    "generate_weights_mpi",
    "destination_parts",
    "read_cells",
    "read_grid",
    "read_polygons",
    "read_weights",
    "write_esmf_mesh",
    "write_scrip",
]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
