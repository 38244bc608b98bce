"""Copy a few basins of a CAMELS-style NetCDF into the CAMELS-US v1.2 text layout (and optionally a small NetCDF).

Used once to make the Daymet subset bundled with the package (the default job) and the reader test data; the
values are copied unchanged (CAMELS text files hold two decimals, the NetCDF stores them exactly as packed
integers, so the text written here has the original digits).

    python tools/make_camels_subset.py SRC.nc OUT_ROOT --basins 01333000 ... --start 1994-10-01 --end 2010-09-30
    python tools/make_camels_subset.py SRC.nc OUT.nc --netcdf --basins 02064000 --start 2000-01-01 --end 2002-12-31
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import xarray as xr


def _sel(src: Path, basins, start, end) -> xr.Dataset:
    ds = xr.open_dataset(src)
    ids = [str(g) for g in ds["gauge_id"].values]
    missing = [b for b in basins if b not in ids]
    if missing:
        raise SystemExit(f"basins {missing} are not in {src}")
    return ds.isel(basin=[ids.index(b) for b in basins]).sel(time=slice(start, end))


def write_text(src: Path, root: Path, basins, start, end) -> None:
    sub = _sel(src, basins, start, end)
    t = sub["time"].to_index()
    for i, b in enumerate(basins):
        one = sub.isel(basin=i)
        huc = str(one["huc_02"].values).zfill(2)
        fdir = root / "basin_mean_forcing" / "daymet" / huc
        qdir = root / "usgs_streamflow" / huc
        fdir.mkdir(parents=True, exist_ok=True)
        qdir.mkdir(parents=True, exist_ok=True)
        v = {k: one[k].to_numpy() for k in ("dayl", "prcp", "srad", "swe", "tmax", "tmin", "vp")}
        lines = [f"{float(one['lat']):7.2f}", f"{float(one['elev']):7.2f}", f"{int(round(float(one['area'])))}",
                 "Year Mnth Day Hr dayl(s) prcp(mm/day) srad(W/m2) swe(mm) tmax(C) tmin(C) vp(Pa)"]
        for j, d in enumerate(t):
            lines.append(f"{d.year} {d.month:02d} {d.day:02d} 12\t" + "\t".join(f"{v[k][j]:.2f}" for k in
                                                                             ("dayl", "prcp", "srad", "swe", "tmax", "tmin", "vp")))
        (fdir / f"{b}_lump_cida_forcing_leap.txt").write_text("\n".join(lines) + "\n")
        q = one["streamflow"].to_numpy()
        qc = one["streamflow_qc"].to_numpy() if "streamflow_qc" in one else np.zeros(len(t), dtype=int)
        flags = {0: "A", 1: "A:e", 2: "M", 3: "A:<"}
        qlines = [f"{b} {d.year} {d.month:02d} {d.day:02d} {(-999.0 if not np.isfinite(q[j]) else q[j]):8.2f} "
                  f"{flags.get(int(qc[j]), 'A') if np.isfinite(q[j]) else 'M'}" for j, d in enumerate(t)]
        (qdir / f"{b}_streamflow_qc.txt").write_text("\n".join(qlines) + "\n")
        print(f"wrote {b} ({huc}): {len(t)} days")


def write_netcdf(src: Path, out: Path, basins, start, end) -> None:
    sub = _sel(src, basins, start, end).load()
    enc = {}
    for k, var in sub.data_vars.items():
        e = {key: var.encoding[key] for key in ("dtype", "scale_factor", "_FillValue", "zlib", "complevel") if key in var.encoding}
        enc[k] = e
    sub.attrs["history"] = f"subset of {src.name}: basins {' '.join(basins)}, {start}..{end} (tools/make_camels_subset.py)"
    sub.to_netcdf(out, encoding=enc)
    print(f"wrote {out}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--basins", nargs="+", required=True)
    p.add_argument("--start", required=True)
    p.add_argument("--end", required=True)
    p.add_argument("--netcdf", action="store_true", help="write a NetCDF subset instead of the text layout")
    a = p.parse_args(argv)
    (write_netcdf if a.netcdf else write_text)(a.src, a.out, a.basins, a.start, a.end)


if __name__ == "__main__":
    main()
