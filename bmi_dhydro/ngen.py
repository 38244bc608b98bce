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

#: the BMI stepping `dhydro ngen-config` writes unless told otherwise (README, Sub-daily stepping: why this one)
NGEN_STEPPING = "day_so_far"

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
                       precip_field="precip_rate", min_climate_days: int = 365, names=None,
                       stepping: str = NGEN_STEPPING) -> list[Path]:
    """Write ``OUT/attributes.csv`` and ``OUT/attributes_provenance.csv`` (each attribute of each divide from the
    best available source, see :mod:`bmi_dhydro.divide_attributes`; ``attributes`` is the user table, consulted
    after the divide's forcing and the hydrofabric and before the nearest CAMELS basin), ``OUT/config/<id>.yaml``
    for every divide (pointing at ``OUT/attributes.csv``) and ``OUT/realization.json``.  Returns the written paths.

    The forcing for the climate attributes is found from ``forcing_pattern`` relative to the working directory,
    else relative to ``OUT`` (where ngen runs the realization).  ``stepping`` is written into every config (the
    BMI's ``stepping``: how the hourly framework steps drive the daily model).  Every file is written atomically."""
    from .checkpoint import default_checkpoint_path, read_checkpoint
    from .divide_attributes import derive_attributes, source_summary, write_attributes
    from .safe_io import atomic_write_text
    from .stepper import STEPPINGS

    if stepping not in STEPPINGS:
        raise ValueError(f"stepping: expected one of {', '.join(STEPPINGS)}, got {stepping!r}")

    hydrofabric = Path(hydrofabric).resolve()
    out = Path(out)
    (out / "config").mkdir(parents=True, exist_ok=True)
    if names is None:
        names = read_checkpoint(Path(checkpoint) if checkpoint else default_checkpoint_path())["config"]["attributes"]
    climate_pattern = forcing_pattern
    if climate_pattern and not Path(climate_pattern).is_absolute() and not Path(climate_pattern).parent.is_dir() \
            and (out / Path(climate_pattern).parent).is_dir():
        climate_pattern = str(out / climate_pattern)
    values, sources = derive_attributes(hydrofabric, names, climate_pattern, attributes, layer, id_field,
                                        min_climate_days=min_climate_days)
    table_path, prov_path = write_attributes(values, sources, out)
    print(f"attributes of {len(values)} divides by source ({source_summary(sources)}): {table_path}, {prov_path}")
    table = from_hydrofabric(hydrofabric, layer, id_field, table_path)
    written = [table_path, prov_path]
    for uid in table.ids:
        cfg = {
            "model": {"checkpoint": str(Path(checkpoint).resolve()) if checkpoint else None},
            "units": {"hydrofabric": os.path.relpath(hydrofabric, out / "config"), "select": uid},
            "time": {"time_step": 3600, "start": start},
            "stepping": stepping,
            "warmup": {"mode": "cold"},
        }
        if layer:
            cfg["units"]["layer"] = layer
        if id_field:
            cfg["units"]["id_field"] = id_field
        cfg["units"]["attributes_table"] = os.path.relpath(table_path.resolve(), (out / "config").resolve())
        p = out / "config" / f"{uid}.yaml"
        atomic_write_text(p, yaml.safe_dump(cfg, sort_keys=False), "per-catchment config")
        written.append(p)
    real = realization("./config/{{id}}.yaml", forcing_pattern, start, end, precip_field=precip_field)
    rp = out / "realization.json"
    atomic_write_text(rp, json.dumps(real, indent=2) + "\n", "realization")
    written.append(rp)
    print(f"wrote {len(table.ids)} per-catchment configs and {rp}")
    return written
