"""Run under mpiexec: regridding weights of the repository's examples on N ranks (coupler.regrid.parallel).

Usage: mpiexec -n N python tests/mpi_run/regrid_weights.py MODE OUT_DIR

MODE
  cases      rank 0 writes OUT_DIR/<case>.nc for every case of CASES (generate_weights_mpi)
  fail       rank 1's generator raises: every rank stops, the job exits non-zero
  fail_busy  as fail, while rank 0 is still computing (sleeps 60 s): rank 1 aborts the job after 1 s
"""
from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from coupler.regrid import read_grid, read_polygons  # noqa: E402
from coupler.regrid.crs import RegridError  # noqa: E402

NWM = ROOT / "examples" / "gridded" / "data" / "nwm_grid_ngen_divides"
ERA = ROOT / "examples" / "gridded" / "data" / "era5_latlon_hrus"


def cells():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # self-touching HRU rings are repaired (tested elsewhere)
        hrus = read_polygons(ERA / "HRUs_coarse.shp")
        hrus.valid_geoms
    return {"era": read_grid(ERA / "era5-crop.nc"), "hrus": hrus,
            "nwm": read_grid(NWM / "test_template_grid.nc"), "divides": read_polygons(NWM / "test_ngen_divides.parquet")}


#: name -> (src, dst, method, options); tests/test_regrid_mpi.py computes the same serially
CASES = {
    "era_conserve_sphere": ("era", "hrus", "conserve", {}),
    "era_conserve_fracarea": ("era", "hrus", "conserve", {"norm_type": "fracarea"}),
    "era_conserve_plane": ("era", "hrus", "conserve", {"geometry": "plane"}),
    "nwm_conserve_plane": ("nwm", "divides", "conserve", {}),
    "nwm_conserve_sphere": ("nwm", "divides", "conserve", {"geometry": "sphere"}),
    "hrus_to_grid_conserve": ("hrus", "era", "conserve", {"unmapped": "nan"}),  # 2-D destination grid
    "era_bilinear_sphere": ("era", "hrus", "bilinear", {}),
    "nwm_bilinear_plane": ("nwm", "divides", "bilinear", {"geometry": "plane"}),
    "era_bilinear_extrap": ("era", "hrus", "bilinear", {"extrap_method": "nearest_stod", "pole_method": "none"}),
    "era_nearest_stod": ("era", "hrus", "nearest_stod", {}),
    "era_nearest_dtos": ("era", "hrus", "nearest_dtos", {"unmapped": "nan"}),
}


def main() -> int:
    from mpi4py import MPI

    from coupler.regrid import native
    from coupler.regrid.parallel import generate_weights_mpi

    mode, out = sys.argv[1], Path(sys.argv[2])
    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    c = cells()
    if mode == "cases":
        for name, (s, d, method, kw) in CASES.items():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                generate_weights_mpi(c[s], c[d], method, comm=comm, output=out / f"{name}.nc", progress=False, **kw)
        return 0
    real = native.conserve_weights_sphere

    def failing(*a, **k):
        if rank == 1:
            raise RegridError("injected failure on rank 1")
        if mode == "fail_busy":
            time.sleep(60.0)
        return real(*a, **k)

    native.conserve_weights_sphere = failing
    try:
        generate_weights_mpi(c["era"], c["hrus"], "conserve", comm=comm, output=out / "w.nc", progress=False,
                             timeout=1.0 if mode == "fail_busy" else 30.0)
    except Exception:  # noqa: BLE001 - every rank stops; the failing rank printed the message
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
