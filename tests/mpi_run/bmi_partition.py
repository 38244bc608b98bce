"""Run under mpiexec: each rank's BmiDeltaModel takes its share of the gauge_01073000 divides (mpi.partition)
from a host communicator, steps 72 hours of real forcing, and rank 0 writes the gathered runoff (.npy)."""
import sys
from pathlib import Path

import numpy as np
import yaml
from mpi4py import MPI

from bmi_dhydro import BmiDeltaModel
from bmi_dhydro.forcing import PRECIP, TEMP, read_aorc_netcdf

ex = Path(sys.argv[1])
out = Path(sys.argv[2])
cfg = yaml.safe_load((ex / "bmi" / "gauge_01073000_hourly.yaml").read_text())
for k in ("hydrofabric", "attributes_table"):
    cfg["units"][k] = str((ex / "bmi" / cfg["units"][k]).resolve())
cfg["mpi"] = {"partition": True, "fortran_comm": MPI.COMM_WORLD.py2f()}  # as a Fortran host would pass it
p = out.with_suffix(f".{MPI.COMM_WORLD.Get_rank()}.yaml")
p.write_text(yaml.safe_dump(cfg))
b = BmiDeltaModel()
b.initialize(str(p))
times, ids, data = read_aorc_netcdf(ex / "ngen" / "data" / "gauge_01073000" / "forcing.nc")
col = [ids.index(u) for u in b.units.ids]
q = []
for t in range(72):
    b.set_value(PRECIP, data[PRECIP][t][col])
    b.set_value(TEMP, data[TEMP][t][col])
    b.update()
    q.append(b.get_value_ptr("land_surface_water__runoff_depth").copy())
q = np.array(q)
allq = MPI.COMM_WORLD.gather((list(b.units.ids), q), root=0)
if MPI.COMM_WORLD.Get_rank() == 0:
    assert sum(len(i) for i, _ in allq) == 5 and all(len(i) < 5 for i, _ in allq)
    res = {u: qq[:, j] for i, qq in allq for j, u in enumerate(i)}
    np.save(out, np.stack([res[u] for u in sorted(res)], axis=1))
