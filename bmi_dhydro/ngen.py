"""Write ngen inputs for a hydrofabric: one BmiDeltaModel config per divide and a realization using ``{{id}}``.

ngen loads the model as ``"name": "bmi_python"`` with ``"python_type": "bmi_dhydro.BmiDeltaModel"``, one
instance per catchment, each initialised with its own YAML file.  The realization maps ngen's AORC forcing
fields onto the model's input names.

Precipitation is mapped from ``precip_rate`` by default.  ngen's CSV forcing provider declares ``precip_rate`` as
``mm s^-1`` (converted exactly to the model's ``mm s-1``) but ``APCP_surface`` as ``kg m^-2``, an amount per
forcing step that UDUNITS cannot convert to a rate: ngen then warns and passes the raw value, i.e. mm per hour
read as mm per second (3600x too much rain).  Forcing whose ``precip_rate`` column is wrong (ngen's cat-27/52/67
sample, where it is 1000x too small) must be corrected first (``precip_rate = APCP_surface / 3600``); pass
``precip_field="APCP_surface"`` only for forcing that stores a rate in kg m-2 s-1 under that name.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import yaml

from .units import from_hydrofabric

PYTHON_TYPE = "bmi_dhydro.BmiDeltaModel"
MAIN_OUTPUT = "land_surface_water__runoff_depth"
OUTPUT_PRECISION = 17


def realization(init_config_pattern: str, forcing_pattern: str, start: str, end: str, output_interval: int = 3600,
                precip_field: str = "precip_rate") -> dict:
    return {
        "global": {
            "formulations": [
                {
                    "name": "bmi_python",
                    "params": {
                        "python_type": PYTHON_TYPE,
                        "model_type_name": "bmi_dhydro",
                        "init_config": init_config_pattern,
                        "main_output_variable": MAIN_OUTPUT,
                        "variables_names_map": {
                            "atmosphere_water__liquid_equivalent_precipitation_rate": precip_field,
                            "land_surface_air__temperature": "TMP_2maboveground",
                        },
                        # ngen's mass-balance protocol (ngen::mass_*): float64 rounding is ~1e-16 m, above ngen's
                        # default tolerance of 1e-16
                        "mass_balance": {"check": True, "tolerance": 1e-12, "frequency": 1, "fatal": False},
                    },
                }
            ],
            "forcing": {"file_pattern": ".*{{id}}.*.csv", "path": os.path.dirname(forcing_pattern) + "/", "provider": "CsvPerFeature"},
        },
        "time": {"start_time": start, "end_time": end, "output_interval": output_interval},
        # ngen master writes catchment CSVs with 9 significant digits unless the top-level output block says more
        # (a formulation-level "output_precision" is not read by its CSV writer); 17 round-trips float64
        "output": {"precision": OUTPUT_PRECISION},
    }


def write_ngen_configs(hydrofabric, out, attributes=None, forcing_pattern="./forcing/{{id}}.csv", checkpoint=None,
                       layer=None, id_field=None, start="2015-12-01 00:00:00", end="2015-12-30 23:00:00",
                       precip_field="precip_rate") -> list[Path]:
    """Write ``OUT/config/<id>.yaml`` for every divide and ``OUT/realization.json``.  Returns the written paths."""
    hydrofabric = Path(hydrofabric).resolve()
    out = Path(out)
    (out / "config").mkdir(parents=True, exist_ok=True)
    table = from_hydrofabric(hydrofabric, layer, id_field, attributes)
    written = []
    for uid in table.ids:
        cfg = {
            "model": {"checkpoint": str(Path(checkpoint).resolve()) if checkpoint else None},
            "units": {"hydrofabric": os.path.relpath(hydrofabric, out / "config"), "select": uid},
            "time": {"time_step": 3600, "start": start},
            "warmup": {"mode": "cold"},
        }
        if layer:
            cfg["units"]["layer"] = layer
        if id_field:
            cfg["units"]["id_field"] = id_field
        if attributes:
            cfg["units"]["attributes_table"] = os.path.relpath(Path(attributes).resolve(), out / "config")
        p = out / "config" / f"{uid}.yaml"
        p.write_text(yaml.safe_dump(cfg, sort_keys=False))
        written.append(p)
    real = realization("./config/{{id}}.yaml", forcing_pattern, start, end, precip_field=precip_field)
    rp = out / "realization.json"
    rp.write_text(json.dumps(real, indent=2))
    written.append(rp)
    print(f"wrote {len(table.ids)} per-catchment configs and {rp}")
    return written
