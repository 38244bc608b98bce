"""Regenerate the golden series of the bundled model (tests/data/golden_bundled_wy1996.csv).

Run after the bundled checkpoint changes (tools/bundle_default.sh does), and say why in the commit: the golden
test then guards the physics, the network and the data path together against unintended change.
"""

from pathlib import Path

import pandas as pd

from bmi_dhydro.checkpoint import load_checkpoint
from bmi_dhydro.datasets import read_camels
from bmi_dhydro.train import simulate

BASINS = ["01333000", "09035900"]
PERIOD = ("1995-10-01", "1996-09-30")
OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "golden_bundled_wy1996.csv"


def main():
    m, _ = load_checkpoint()
    ds = read_camels(None, BASINS, "daymet", m.config.attributes)
    res, times = simulate(m, ds, PERIOD[0], PERIOD[1], 365)
    cols = {"date": pd.DatetimeIndex(times).strftime("%Y-%m-%d")}
    for i, b in enumerate(BASINS):
        cols[f"runoff_{b}"] = res["runoff"][i]
        cols[f"et_{b}"] = res["et"][i]
        cols[f"swe_{b}"] = res["swe"][i]
    pd.DataFrame(cols).to_csv(OUT, index=False, float_format="%.8g")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
