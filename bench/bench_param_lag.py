"""What a one-day lag of the network's dynamic parameters costs the daily model (the lag of `stepping: day_so_far`
and `stepping: hourly`, whose network advances at the end of a day and drives the next one).

    python bench/bench_param_lag.py --data DATA [--basins-file FILE]

DATA: the CAMELS Daymet NetCDF (or v1.2 folder) the bundled model was trained from; basins
examples/train/basins_camels515.txt by default.  On the training years 1988-10-01..1995-09-30 (after a 365-day
warm-up; never the test period: this informed a design choice), the bundled model runs twice in float64 with the
same network outputs: parameters of the same day (as trained) and of the day before.  Writes
``bench/results/param_lag.md`` with the median NSE of each, by role.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PERIOD = ("1988-10-01", "1995-09-30")


def nse(sim, obs) -> float:
    ok = np.isfinite(obs)
    o, s = obs[ok], sim[ok]
    return float(1.0 - np.sum((s - o) ** 2) / np.sum((o - o.mean()) ** 2))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--basins-file", type=Path, default=ROOT / "examples/train/basins_camels515.txt")
    args = ap.parse_args(argv)
    from bmi_dhydro.checkpoint import load_checkpoint
    from bmi_dhydro.datasets import attribute_tensor, model_forcings, open_camels
    from bmi_dhydro.evaluate import _roles
    from bmi_dhydro.safe_io import atomic_write_text
    from bmi_dhydro.train import read_basins_file

    model, payload = load_checkpoint()
    model = model.double()
    basins = read_basins_file(args.basins_file)
    t0 = pd.Timestamp(PERIOD[0]) - pd.Timedelta(days=365)
    ds = open_camels(args.data, basins, "daymet", model.config.attributes, start=str(t0.date()), end=PERIOD[1])
    forc = model_forcings(ds, model.config.pet_method, dtype=torch.float64)
    attrs = attribute_tensor(ds, model.config.attributes, dtype=torch.float64)
    n_warm = int((ds.time < pd.Timestamp(PERIOD[0])).sum())
    obs = ds["qobs"].transpose("time", "basin").to_numpy()[n_warm:]
    res = {}
    with torch.no_grad():
        prep = model.prepare(attrs)
        st = model.initial_state(forc.shape[1], dtype=torch.float64)
        dyn, h, c = model.provider.dynamic_sequence(forc, prep.attrs_norm, st.h, st.c)
        for name, shift in (("same day (as trained)", 0), ("the day before", 1)):
            d = {k: torch.cat([v[:1]] * shift + [v[: v.shape[0] - shift]], 0) for k, v in dyn.items()}
            _, out = model.unroll(st, forc, prep, outputs=("runoff",), dynamic=(d, h, c))
            q = out["runoff"].numpy()[n_warm:]
            res[name] = np.array([nse(q[:, j], obs[:, j]) for j in range(q.shape[1])])
    roles = np.array(_roles(payload, [str(b) for b in ds.basin.values]))
    lines = ["# A one-day lag of the dynamic parameters (`python bench/bench_param_lag.py --data DATA`)", "",
             f"Bundled model, float64, {len(basins)} basins of {args.basins_file.name}, training years "
             f"{PERIOD[0]}..{PERIOD[1]} after a 365-day warm-up (not the test period).", "",
             "| basins | n | median NSE, parameters of the same day | of the day before | median of differences |",
             "|---|---|---|---|---|"]
    a, b = res["same day (as trained)"], res["the day before"]
    for role in ("all", "train", "validation"):
        m = np.ones(len(roles), bool) if role == "all" else roles == role
        lines.append(f"| {role} | {int(m.sum())} | {np.median(a[m]):.4f} | {np.median(b[m]):.4f} | "
                     f"{np.median(b[m] - a[m]):+.4f} |")
    (HERE / "results").mkdir(exist_ok=True)
    atomic_write_text(HERE / "results" / "param_lag.md", "\n".join(lines) + "\n", "bench table")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
