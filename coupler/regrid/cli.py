"""``dhydro regrid``: weight generation, inspection and application from the command line.

Subcommands::

    dhydro regrid weights SRC DST -o weights.nc [--method conserve] [--norm-type dstarea] ...
    dhydro regrid info weights.nc
    dhydro regrid apply weights.nc forcing.nc --var RAINRATE -o forcing_on_divides.nc
    dhydro regrid mesh divides.gpkg -o divides_esmf_mesh.nc [--format esmf|scrip]

``SRC``/``DST`` are NetCDF grid files (CF, SCRIP or ESMF mesh) or polygon files (GeoPackage,
GeoParquet, Shapefile, GeoJSON, FlatGeobuf). The command is registered into the project's
``dhydro`` console script with :func:`add_parser` and run with :func:`run`; :func:`main` runs it
stand-alone (``python -m coupler.regrid.cli weights ...``).
"""
from __future__ import annotations

import argparse
import logging
import sys
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["add_parser", "run", "main"]

log = logging.getLogger("dhydro.regrid")


def _build(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    sub = parser.add_subparsers(dest="regrid_command", metavar="{weights,info,apply,mesh}")
    sub.required = True

    w = sub.add_parser("weights", help="compute ESMF-format regridding weights from SRC to DST",
                       description="Compute regridding weights from SRC cells to DST cells and write them in the "
                                   "ESMF_RegridWeightGen NetCDF format.")
    w.add_argument("src", help="source grid: NetCDF (CF/SCRIP/ESMF mesh) or polygon file")
    w.add_argument("dst", help="destination: polygon file (GeoPackage/GeoParquet/Shapefile/...) or NetCDF grid")
    w.add_argument("-o", "--output", required=True, help="weight file to write (NetCDF)")
    w.add_argument("--method", default="conserve",
                   choices=("conserve", "bilinear", "nearest_stod", "nearest_dtos", "patch"),
                   help="regridding method (ESMF's --method); default conserve")
    w.add_argument("--norm-type", default="dstarea", choices=("dstarea", "fracarea"),
                   help="conservative normalisation (ESMF's --norm_type); default dstarea")
    w.add_argument("--backend", default="native", choices=("native", "esmpy", "auto"),
                   help="native (this package), esmpy (ESMF's Python API, if installed) or auto; default native")
    w.add_argument("--unmapped", default="error", choices=("error", "nan"),
                   help="destinations no source cell maps to: fail (default) or keep them as NaN")
    for side in ("src", "dst"):
        w.add_argument(f"--{side}-var", help=f"{side} NetCDF: data variable whose grid is used")
        w.add_argument(f"--{side}-x", help=f"{side} NetCDF: x/longitude coordinate variable")
        w.add_argument(f"--{side}-y", help=f"{side} NetCDF: y/latitude coordinate variable")
        w.add_argument(f"--{side}-mask", help=f"{side} NetCDF: mask variable (non-zero = active)")
        w.add_argument(f"--{side}-crs", help=f"{side}: CRS to assume (EPSG code, WKT or PROJ string)")
        w.add_argument(f"--{side}-id-field", help=f"{side} polygons: identifier column")
        w.add_argument(f"--{side}-layer", help=f"{side} polygons: layer of a multi-layer file")
        w.add_argument(f"--{side}-mesh", help=f"{side} UGRID file: the mesh_topology variable to use (when it has "
                                              "several 2-D meshes)")
    w.add_argument("--area-crs", default="auto", help="native conserve: equal-area CRS for the intersections")
    w.add_argument("--densify-deg", type=float, default=0.05,
                   help="native conserve: densify lon/lat cell edges to this step (degrees); 0 disables")
    w.add_argument("--geometry", default="auto", choices=("auto", "sphere", "plane"),
                   help="native conserve and bilinear: on the sphere as ESMF (sphere: great-circle cells; bilinear "
                        "in 3-D quadrilaterals of source centres), in a plane (plane: exact intersection in an "
                        "equal-area projection; bilinear in the source grid's coordinates), or plane when both "
                        "sides are projected (auto, default)")
    w.add_argument("--extrap", "--extrap-method", dest="extrap_method", default="none",
                   choices=("none", "nearest_stod"),
                   help="bilinear, nearest_dtos: fill destinations left unmapped with the nearest source "
                        "(ESMF's --extrap_method); default none")
    w.add_argument("--pole-method", default="all", choices=("all", "none"),
                   help="bilinear on a global source grid: map points past the last row through a pole node that "
                        "is the mean of that row (all, ESMF's default) or leave them unmapped (none)")
    w.add_argument("--densify-m", type=float, default=20.0,
                   help="native conserve on the sphere: densify polygons given in a projected CRS to this step (m)")
    w.add_argument("--quiet", "--no-progress", dest="no_progress", action="store_true", help="no progress bar")
    w.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    w.set_defaults(_regrid_handler=_cmd_weights)

    i = sub.add_parser("info", help="summarise a weight file")
    i.add_argument("weights", help="weight file (ESMF format)")
    i.set_defaults(_regrid_handler=_cmd_info)

    a = sub.add_parser("apply", help="regrid variables of a NetCDF file with a weight file, chunk by chunk")
    a.add_argument("weights", help="weight file (ESMF format)")
    a.add_argument("input", help="NetCDF file with the source-grid variables")
    a.add_argument("--var", action="append", required=True, help="variable to regrid (repeatable)")
    a.add_argument("-o", "--output", required=True, help="NetCDF file to write (CF-1.8)")
    a.add_argument("--time-dim", default=None, help="name of the time dimension (default: the unlimited or "
                                                      "first non-grid dimension)")
    a.add_argument("--chunk", type=int, default=None, help="time steps per chunk (default ~2e7 values)")
    a.add_argument("--no-skipna", action="store_true", help="let NaN sources propagate instead of renormalising")
    a.add_argument("--x", help="x/longitude coordinate variable of the input grid")
    a.add_argument("--y", help="y/latitude coordinate variable of the input grid")
    a.add_argument("--crs", help="CRS of the input grid when the file has none")
    a.add_argument("--no-check", action="store_true", help="skip the check of the input grid against the weights")
    a.add_argument("--quiet", "--no-progress", dest="no_progress", action="store_true", help="no progress bar")
    a.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    a.set_defaults(_regrid_handler=_cmd_apply)

    m = sub.add_parser("mesh", help="write polygons or a grid as an ESMF mesh or SCRIP file (for ESMF_RegridWeightGen)")
    m.add_argument("input", help="polygon file or NetCDF grid")
    m.add_argument("-o", "--output", required=True, help="mesh or SCRIP file to write (NetCDF)")
    m.add_argument("--format", default="esmf", choices=("esmf", "scrip"),
                   help="ESMF unstructured mesh or SCRIP; default esmf")
    m.add_argument("--id-field", help="polygons: identifier column")
    m.add_argument("--layer", help="polygons: layer of a multi-layer file")
    m.add_argument("--var", help="NetCDF grid: data variable whose grid is used")
    m.add_argument("--crs", help="CRS to assume (EPSG code, WKT or PROJ string)")
    m.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    m.set_defaults(_regrid_handler=_cmd_mesh)
    return parser


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``regrid`` (with its subcommands) on a ``dhydro`` subparsers object.

    The returned parser has ``func=run`` as default, so a CLI that dispatches with
    ``args.func(args)`` works unchanged; :func:`run` can also be called directly.
    """
    p = subparsers.add_parser("regrid", help="ESMF-format regridding weights (generate, inspect, apply)",
                              description=__doc__.split("\n\n")[0] if __doc__ else None)
    _build(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run a parsed ``regrid`` command; returns the process exit code (runtime errors print one line and return 1;
    a missing subcommand is a usage error, 2)."""
    from .crs import RegridError

    handler = getattr(args, "_regrid_handler", None)
    if handler is None:
        print("dhydro regrid: choose a subcommand: weights, info, apply, mesh", file=sys.stderr)
        return 2
    try:
        return int(handler(args) or 0)
    except Exception as exc:
        if getattr(exc, "_dhydro_agreed", False):
            # under MPI: the failing rank already printed "dhydro: rank R of N failed in ...", every rank stops
            return 1
        if isinstance(exc, (RegridError, FileExistsError, OSError)):
            print(f"dhydro regrid {args.regrid_command}: error: {exc}", file=sys.stderr)
            return 1
        raise


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry point: ``main(["weights", "grid.nc", "divides.gpkg", "-o", "w.nc"])``."""
    parser = _build(argparse.ArgumentParser(prog="dhydro regrid", description=__doc__.split("\n\n")[0]))
    args = parser.parse_args(list(argv) if argv is not None else None)
    from bmi_dhydro.log import configure_logging

    configure_logging()
    return run(args)


# ----------------------------------------------------------------------------------------------
def _check_out(path: str, overwrite: bool) -> Path:
    from .weights import check_output_path

    return check_output_path(path, overwrite)


def _cmd_weights(args: argparse.Namespace) -> int:
    from coupler.mpi import get_comm, is_serial

    from . import generate_weights, read_cells
    from .weights import Weights

    def side_kwargs(side: str) -> dict:
        return dict(var=getattr(args, f"{side}_var"), x=getattr(args, f"{side}_x"), y=getattr(args, f"{side}_y"),
                    mask=getattr(args, f"{side}_mask"), crs=getattr(args, f"{side}_crs"),
                    id_field=getattr(args, f"{side}_id_field"), layer=getattr(args, f"{side}_layer"),
                    mesh=getattr(args, f"{side}_mesh"))

    opts = dict(norm_type=args.norm_type, backend=args.backend, unmapped=args.unmapped, area_crs=args.area_crs,
                densify_deg=args.densify_deg or None, geometry=args.geometry, densify_m=args.densify_m,
                extrap_method=args.extrap_method, pole_method=args.pole_method, progress=not args.no_progress)
    comm = get_comm()  # COMM_WORLD under mpiexec with more than one rank, the serial stand-in otherwise
    if not is_serial(comm):
        from .parallel import generate_weights_mpi

        out = Path(args.output)
        w = generate_weights_mpi(args.src, args.dst, args.method, comm=comm, output=out, overwrite=args.overwrite,
                                 src_kwargs=side_kwargs("src"), dst_kwargs=side_kwargs("dst"), **opts)
        if w is None:  # ranks other than 0: rank 0 wrote the file
            return 0
        log.info(f"{comm.Get_size()} MPI ranks, each the weights of a block of destination cells")
    else:
        out = _check_out(args.output, args.overwrite)
        cells = {}
        for side in ("src", "dst"):
            cells[side] = read_cells(getattr(args, side), **side_kwargs(side))
            log.info(f"{side}: {cells[side].describe()}")
        w: Weights = generate_weights(cells["src"], cells["dst"], args.method, **opts)
        w.to_netcdf(out)
    log.info(w.summary())
    if args.method == "conserve" and args.norm_type == "dstarea" and w.partially_mapped.any():
        log.warning(f"{int(w.partially_mapped.sum())} destinations are only partly covered by the source; with "
                    f"--norm-type dstarea their values are scaled by frac_b (use fracarea for area means)")
    log.info(f"wrote {out}")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from . import read_weights

    w = read_weights(args.weights)
    print(w.summary())
    for k in ("title", "generator", "domain_a", "domain_b", "area_crs"):
        if k in w.attrs:
            print(f"{k}: {w.attrs[k]}")
    return 0


def _cmd_mesh(args: argparse.Namespace) -> int:
    from . import read_cells, write_esmf_mesh, write_scrip

    out = _check_out(args.output, args.overwrite)
    cells = read_cells(args.input, id_field=args.id_field, layer=args.layer, var=args.var, crs=args.crs)
    if args.format == "esmf":
        write_esmf_mesh(cells, out)
    else:
        write_scrip(cells, out)
    log.info(f"wrote {cells.describe()} to {out} ({args.format})")
    return 0


def _cmd_apply(args: argparse.Namespace) -> int:
    import netCDF4
    import xarray as xr
    from tqdm.auto import tqdm

    from bmi_dhydro.cf import CONVENTIONS, cf_name, history_line, standard_name_fits

    from . import read_grid, read_weights
    from .crs import RegridError

    out = _check_out(args.output, args.overwrite)
    w = read_weights(args.weights)
    ds = xr.open_dataset(args.input, decode_times=False, mask_and_scale=True)
    try:
        for v in args.var:
            if v not in ds.data_vars:
                raise RegridError(f"{args.input}: variable {v!r} not found; data variables are {sorted(ds.data_vars)}")
        if not args.no_check:
            grid = read_grid(args.input, var=args.var[0], x=args.x, y=args.y, crs=args.crs)
            w.check_grids(src=grid)
            grid_dims = grid.dims if hasattr(grid, "dims") else None
        else:
            grid_dims = None
        first = ds[args.var[0]]
        if grid_dims is None:
            grid_dims = tuple(first.dims[-len(w.src_shape):])
        lead_dims = [d for d in first.dims if d not in grid_dims]
        if len(lead_dims) > 1:
            raise RegridError(f"{args.var[0]} has dims {first.dims}; only one non-grid (time) dimension is supported")
        tdim = args.time_dim or (lead_dims[0] if lead_dims else None)
        for v in args.var:
            dv = ds[v]
            if set(dv.dims) - set(grid_dims) - ({tdim} if tdim else set()):
                raise RegridError(f"{v} has dims {dv.dims}; expected {tdim} and the grid dims {grid_dims}")
        nt = int(ds.sizes[tdim]) if tdim else 1
        chunk = args.chunk or max(1, int(2e7 // max(w.n_a, 1)))
        tmp = out.with_name(out.name + ".part")
        with netCDF4.Dataset(str(tmp), "w", format="NETCDF4") as nc:
            nc.Conventions = CONVENTIONS
            nc.title = f"{', '.join(args.var)} regridded from {args.input} with {args.weights}"
            nc.source = "bmi-dhydro regrid apply"
            prior = ds.attrs.get("history")
            nc.history = history_line(f"dhydro regrid apply ({w.method}, norm_type {w.norm_type})") + (
                f"\n{prior}" if isinstance(prior, str) and prior else "")
            bounds = None
            if tdim:
                nc.createDimension(tdim, None)
                if tdim in ds.variables:
                    # the input's time axis as it is (its own stamp convention): CF attributes, never a _FillValue
                    tv = nc.createVariable(tdim, ds[tdim].dtype, (tdim,))
                    tv.setncatts({k: val for k, val in ds[tdim].attrs.items() if k not in ("_FillValue", "missing_value")})
                    tv[:] = ds[tdim].values
                    if "long_name" not in tv.ncattrs():
                        tv.long_name = "time (as in the input file)"
                    if "standard_name" not in tv.ncattrs() and "since" in str(tv.getncattr("units")
                                                                             if "units" in tv.ncattrs() else ""):
                        tv.standard_name = "time"
                    bounds = ds[tdim].attrs.get("bounds")
                    if bounds in ds.variables and ds[bounds].ndim == 2:
                        nc.createDimension(ds[bounds].dims[1], ds[bounds].shape[1])
                        bv = nc.createVariable(bounds, ds[bounds].dtype, (tdim, ds[bounds].dims[1]))
                        bv[:] = ds[bounds].values
                    elif "bounds" in tv.ncattrs():
                        tv.delncattr("bounds")
            if len(w.dst_shape) == 1:
                ddims: tuple[str, ...] = ("unit_id",) if w.ids_b is not None else ("cell",)
                nc.createDimension(ddims[0], w.n_b)
                if w.ids_b is not None:
                    # a time series per destination unit (CF-1.8 timeSeries): .sel(unit_id=...) works
                    nc.featureType = "timeSeries"
                    idv = nc.createVariable("unit_id", str, ("unit_id",))
                    idv.long_name = "destination cell (unit) identifier"
                    idv.cf_role = "timeseries_id"
                    idv[:] = np.asarray(w.ids_b, dtype=object)
            else:
                ddims = ("y", "x")
                nc.createDimension("y", w.dst_shape[0])
                nc.createDimension("x", w.dst_shape[1])
            for name, data, units in (("lon", w.xc_b, "degrees_east"), ("lat", w.yc_b, "degrees_north")):
                cv = nc.createVariable(name, "f8", ddims)
                cv.units = units
                cv.standard_name = "longitude" if name == "lon" else "latitude"
                cv.long_name = f"{cv.standard_name} of the destination cell centre"
                cv[:] = data.reshape(w.dst_shape)
            outv = {}
            for v in args.var:
                ov = nc.createVariable(cf_name(v), "f8", ((tdim,) if tdim else ()) + ddims, fill_value=np.nan, zlib=True)
                ov.setncatts({k: val for k, val in ds[v].attrs.items()
                              if k not in ("_FillValue", "missing_value", "scale_factor", "add_offset", "grid_mapping",
                                           "coordinates", "esri_pe_string", "proj4", "valid_range", "valid_min",
                                           "valid_max")})
                if "long_name" not in ov.ncattrs():
                    ov.long_name = v
                std = ov.getncattr("standard_name") if "standard_name" in ov.ncattrs() else None
                if std and standard_name_fits(std, str(ds[v].attrs.get("units", ""))) is False:
                    # units that contradict the standard name (the input's error): keep it only as a note
                    ov.delncattr("standard_name")
                    ov.comment = (f"the input's standard_name {std!r} does not admit its units "
                                  f"{ds[v].attrs.get('units')!r}; dropped")
                if cf_name(v) != v:
                    ov.original_name = v
                ov.coordinates = "lon lat"
                ov.regrid_method = f"{w.method}" + (f" ({w.norm_type})" if w.norm_type else "")
                outv[v] = ov
            bar = tqdm(total=nt * len(args.var), desc="regrid apply", unit="step", disable=args.no_progress)
            try:
                for v in args.var:
                    dv = ds[v].transpose(*(([tdim] if tdim else []) + list(grid_dims)))
                    for s in range(0, nt, chunk):
                        block = dv.isel({tdim: slice(s, s + chunk)}).values if tdim else dv.values
                        res = w.apply(block, skipna=not args.no_skipna)
                        if tdim:
                            outv[v][s:s + block.shape[0]] = res
                        else:
                            outv[v][:] = res
                        nc.sync()
                        bar.update(block.shape[0] if tdim else 1)
            finally:
                bar.close()
        tmp.replace(out)
    finally:
        ds.close()
    log.info(f"wrote {out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    with warnings.catch_warnings():
        sys.exit(main())
