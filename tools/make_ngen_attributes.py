"""Regenerate the sample domains' divide attributes with `dhydro ngen-config`, and the units table from them.

    python tools/make_ngen_attributes.py

For the two sample domains (cat-27/52/67 and the Oyster River divides of gauge_01073000) this runs
``dhydro ngen-config`` from the realization's folder, with the forcing the realization reads, so each attribute
comes from the first source that has it (the divide's forcing when it covers --min-climate-days, the hydrofabric,
then the nearest CAMELS basin) and says why a better one was skipped.  It writes, atomically:

* ``examples/ngen/data/attributes.csv``: the model attributes of every divide of both domains;
* ``examples/ngen/data/attributes_provenance.csv``: where each value came from;
* ``examples/ngen/data/units.csv``: what ``units.hydrofabric: catchment_data.geojson`` with that table gives (id,
  area, centroid, toid, attributes) for configs that name their units as a table (the core install).

The configs and realizations in ``examples/ngen`` are not rewritten (their relative paths are laid out by hand).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
NGEN = ROOT / "examples" / "ngen"
DATA = NGEN / "data"
#: (folder of the realization, hydrofabric, forcing pattern), paths relative to the folder, as the realization has them
DOMAINS = (
    (NGEN, "data/catchment_data.geojson", "./data/forcing_corrected/{{id}}.csv"),
    (NGEN / "gauge_01073000", "../data/gauge_01073000/gauge_01073000.gpkg", "../data/gauge_01073000/forcing/{{id}}.csv"),
)


def main() -> int:
    from bmi_dhydro.safe_io import atomic_write_text
    from bmi_dhydro.units import from_hydrofabric

    attrs, prov = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (cwd, hydrofabric, pattern) in enumerate(DOMAINS):
            out = Path(tmp) / str(i)
            subprocess.run([sys.executable, "-m", "dhydro", "ngen-config", hydrofabric, "--out", str(out),
                            "--forcing-pattern", pattern], cwd=cwd, check=True)
            attrs.append(pd.read_csv(out / "attributes.csv", dtype={"id": str}))
            prov.append(pd.read_csv(out / "attributes_provenance.csv", dtype=str))
    table = pd.concat(attrs, ignore_index=True)
    provenance = pd.concat(prov, ignore_index=True)
    if table["id"].duplicated().any():
        raise SystemExit(f"divide ids repeat across the sample domains: {table['id'][table['id'].duplicated()].tolist()}")
    atomic_write_text(DATA / "attributes.csv", table.to_csv(index=False), "attributes table")
    atomic_write_text(DATA / "attributes_provenance.csv", provenance.to_csv(index=False), "attribute provenance")

    units = from_hydrofabric(DATA / "catchment_data.geojson", attributes_table=DATA / "attributes.csv")
    rows = pd.DataFrame({"id": units.ids, "area_km2": units.area_km2, "lat": units.lat, "lon": units.lon,
                         "toid": units.toid})
    for name in table.columns.drop("id"):
        rows[name] = units.attributes[name]
    atomic_write_text(DATA / "units.csv", rows.to_csv(index=False), "units table")
    print(f"wrote {DATA / 'attributes.csv'} ({len(table)} divides), attributes_provenance.csv and units.csv")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
