"""The Python side of the bit-for-bit test: the same run as driver_runoff.f90 / c_host.c.

    python python_reference.py CONFIG FORCING NSTEPS OUT [CLASS_SPEC]

Reads the same forcing stream (float64 records: precipitation [n], temperature [n]), drives the
Python BMI class directly, and writes [get_value copy (n), get_value_ptr view (n), time (1)] per
step, so the files can be compared byte for byte.
"""
import importlib
import importlib.util
import os
import sys

import numpy as np

PRECIP = "atmosphere_water__liquid_equivalent_precipitation_rate"
TEMP = "land_surface_air__temperature"
RUNOFF = "land_surface_water__runoff_depth"


def load_class(spec):
    module_name, _, class_name = spec.rpartition(":")
    if module_name.endswith(".py") or os.sep in module_name:
        loader = importlib.util.spec_from_file_location("_reference_model", module_name)
        module = importlib.util.module_from_spec(loader)
        loader.loader.exec_module(module)
    else:
        module = importlib.import_module(module_name)
    return getattr(module, class_name)


def main(argv):
    config, forcing, nsteps, out = argv[1], argv[2], int(argv[3]), argv[4]
    spec = argv[5] if len(argv) > 5 else "bmi_dhydro:BmiDeltaModel"
    model = load_class(spec)()
    model.initialize(config)
    n = model.get_var_nbytes(RUNOFF) // model.get_var_itemsize(RUNOFF)
    ptr = model.get_value_ptr(RUNOFF)
    records = np.fromfile(forcing, dtype="<f8").reshape(-1, 2, n)
    runoff = np.empty(n)
    with open(out, "wb") as f:
        for step in range(nsteps):
            model.set_value(PRECIP, records[step, 0].copy())
            model.set_value(TEMP, records[step, 1].copy())
            model.update()
            model.get_value(RUNOFF, runoff)
            f.write(runoff.astype("<f8").tobytes())
            f.write(np.asarray(ptr, dtype="<f8").tobytes())
            f.write(np.array([model.get_current_time()], dtype="<f8").tobytes())
    model.finalize()
    print(f"python_reference: OK {nsteps} steps, {n} units")


if __name__ == "__main__":
    main(sys.argv)
