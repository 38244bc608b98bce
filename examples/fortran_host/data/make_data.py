"""Regenerate this folder's data from the CAMELS files bundled with bmi_dhydro.

    python examples/fortran_host/data/make_data.py

Writes, for three CAMELS basins and water year 2006 (2005-10-01 .. 2006-09-30):

* units.csv        id, area_km2, lat, lon and the 12 static attributes the bundled network reads;
* forcing_wy2006.txt  the Fortran land model's own forcing file: one row per day,
                   "year month day" then per basin prcp (mm/day), mean air temperature (degC) and
                   observed streamflow (mm/day, -999 where USGS has no value).

Values are CAMELS values (NLDAS basin means; temperature is the mean of the tmax/tmin columns,
which are equal in CAMELS v1.2 NLDAS; streamflow converted from cfs to mm/day with the basin
area), see ATTRIBUTION.md.
"""
from pathlib import Path

import numpy as np

from bmi_dhydro.datasets import DEFAULT_ATTRIBUTES, read_camels

BASINS = ["01022500", "01333000", "03010655"]
HERE = Path(__file__).resolve().parent


def main():
    ds = read_camels(basins=BASINS, start="2005-10-01", end="2006-09-30")
    attrs = list(DEFAULT_ATTRIBUTES)
    with open(HERE / "units.csv", "w") as f:
        f.write(",".join(["id", "area_km2", "lat", "lon"] + attrs) + "\n")
        for i, b in enumerate(BASINS):
            row = [b] + [repr(float(ds[k].values[i])) for k in ["area_km2", "lat", "lon"] + attrs]
            f.write(",".join(row) + "\n")
    prcp = ds["prcp"].values
    tmean = 0.5 * (ds["tmax"].values + ds["tmin"].values)
    qobs = np.where(np.isfinite(ds["qobs"].values), ds["qobs"].values, -999.0)
    times = ds["time"].to_index()
    with open(HERE / "forcing_wy2006.txt", "w") as f:
        f.write(f"# CAMELS-US NLDAS daily forcing and USGS streamflow, basins {' '.join(BASINS)}\n")
        f.write("# year month day, then per basin: prcp(mm/day) tmean(degC) qobs(mm/day, -999 missing)\n")
        f.write(f"{len(BASINS)} {len(times)}\n")
        for t, day in enumerate(times):
            cols = [f"{day.year:4d} {day.month:2d} {day.day:2d}"]
            for i in range(len(BASINS)):
                cols.append(f"{prcp[i, t]:9.2f} {tmean[i, t]:8.2f} {qobs[i, t]:10.4f}")
            f.write("  ".join(cols) + "\n")
    print(f"wrote {HERE / 'units.csv'} and {HERE / 'forcing_wy2006.txt'} ({len(times)} days)")


if __name__ == "__main__":
    main()
