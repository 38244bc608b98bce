"""Add CAMELS attributes to stand-in attribute tables (examples whose units borrow a CAMELS gauge's attributes).

Each row's source gauge is found by matching its p_mean, aridity and frac_snow values to the CAMELS attribute
tables (every stand-in row is a verbatim copy of one gauge's values, with its own area); the missing columns are
copied from that gauge.  Rows that match no gauge are an error.

    python tools/fill_attributes.py TABLE.csv [TABLE.csv ...] --attributes a b c ...
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from bmi_dhydro.datasets import bundled_camels_root, read_attributes

KEYS = ("p_mean", "aridity", "frac_snow")


def fill(path, names) -> None:
    root = bundled_camels_root()
    topo = pd.read_csv(root / "camels_attributes_v2.0" / "camels_topo.txt", sep=";", dtype={"gauge_id": str})
    table = read_attributes(root, list(topo["gauge_id"]))
    df = pd.read_csv(path, dtype={"id": str})
    missing = [n for n in names if n not in df.columns]
    if not missing:
        print(f"{path}: nothing to add")
        return
    src = []
    for _, row in df.iterrows():
        hit = np.ones(len(table), dtype=bool)
        for k in KEYS:
            hit &= np.isclose(table[k].to_numpy(dtype=float), float(row[k]), rtol=1e-12, atol=0)
        gauges = list(table.index[hit])
        if len(gauges) != 1:
            raise SystemExit(f"{path}: row {row['id']}: expected one CAMELS gauge with its {KEYS}, found {gauges}")
        src.append(gauges[0])
    for n in missing:
        df[n] = table.loc[src, n].to_numpy()
    tail = [c for c in ("attribute_source",) if c in df.columns]
    cols = [c for c in df.columns if c not in tail] + tail
    df[cols].to_csv(path, index=False)
    print(f"{path}: added {missing} from gauges {sorted(set(src))}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("tables", nargs="+")
    p.add_argument("--attributes", nargs="+", required=True)
    a = p.parse_args(argv)
    for t in a.tables:
        fill(t, a.attributes)


if __name__ == "__main__":
    main()
