#!/usr/bin/env python
"""Strong and weak MPI scaling of a domain-decomposed run (writes a table).

Strong scaling: a fixed domain (default 20,000 units) on 1, 2, ... ranks;
speed-up S(n) = T(1) / T(n), efficiency E(n) = S(n) / n.
Weak scaling: a fixed number of units per rank (default 10,000);
efficiency E(n) = T(1) / T(n).

Each configuration runs ``mpiexec -n N python bench/bench_mpi_scaling.py
--worker ...``; the worker builds a synthetic river network, decomposes it
with ``bmi_dhydro.partition.decompose`` (area-balanced, network-aware), scatters
forcing and parameters from rank 0 with ``coupler.mpi.scatter_rows``, then
time-steps its own units and gathers every step's output on rank 0 with
``gather_rows`` (as the coupler's output writer will), inside a
``FaultGuard``.  Phases are timed separately (max over ranks) and the best of
``--repeat`` runs is reported.

Workloads
---------
``synthetic`` (default, works now)
    A vectorised multi-bucket rainfall-runoff step in numpy (snow, soil,
    two reservoirs, ``--substeps`` sub-steps per time step) whose cost per
    unit is of the order of an HBV step.
``model``
    The real ``BmiDeltaModel`` (bundled network, float64) over the rank's
    units, with attributes drawn from the bundled CAMELS basins and the
    synthetic forcing as daily precipitation and temperature.

Every rank runs single-threaded (``OMP_NUM_THREADS=1`` etc.), so the numbers
measure the decomposition, not thread-level parallelism inside one rank.

Usage::

    python bench/bench_mpi_scaling.py                       # 1 and 2 ranks, table to stdout
    python bench/bench_mpi_scaling.py --ranks 1 2 3 --out bench/results/mpi_scaling.md
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")
for _v in _THREAD_VARS:
    os.environ.setdefault(_v, "1")
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

# --------------------------------------------------------------------------- #
# synthetic domain and workload
# --------------------------------------------------------------------------- #


def synthetic_domain(n_units: int, seed: int = 1):
    """Ids, a cat -> nex -> cat network (random dendritic forest) and areas (km2)."""
    rng = np.random.default_rng(seed)
    ids = [f"cat-{i}" for i in range(n_units)]
    toid: dict = {}
    down = np.where(
        rng.random(n_units) < 0.95,
        np.minimum(np.arange(n_units) + rng.integers(1, 60, n_units), n_units - 1),
        -1,
    )
    down[-1] = -1
    for i, u in enumerate(ids):
        toid[u] = f"nex-{i}"
        toid[f"nex-{i}"] = ids[down[i]] if down[i] > i else "NA"
    area = rng.lognormal(1.5, 0.8, n_units)
    return ids, toid, area


def synthetic_inputs(n_units: int, n_steps: int, seed: int = 2):
    rng = np.random.default_rng(seed)
    forcing = np.empty((n_units, n_steps, 3))
    forcing[..., 0] = rng.gamma(0.4, 6.0, (n_units, n_steps))  # precipitation mm/step
    forcing[..., 1] = rng.normal(5.0, 8.0, (n_units, n_steps))  # temperature C
    forcing[..., 2] = rng.uniform(0.0, 4.0, (n_units, n_steps))  # PET mm/step
    params = np.column_stack(
        [
            rng.uniform(50, 500, n_units),  # field capacity
            rng.uniform(1, 6, n_units),  # beta
            rng.uniform(0.05, 0.5, n_units),  # k0
            rng.uniform(0.01, 0.2, n_units),  # k1
            rng.uniform(0.001, 0.05, n_units),  # k2
            rng.uniform(1, 5, n_units),  # degree-day factor
        ]
    )
    return forcing, params


class SyntheticWorkload:
    """HBV-like buckets, vectorised over the rank's units."""

    def __init__(self, params: np.ndarray, substeps: int):
        self.p = params
        self.substeps = substeps
        n = params.shape[0]
        self.snow = np.zeros(n)
        self.soil = np.zeros(n)
        self.upper = np.zeros(n)
        self.lower = np.zeros(n)

    def step(self, forcing_t: np.ndarray) -> np.ndarray:
        fc, beta, k0, k1, k2, ddf = (self.p[:, j] for j in range(6))
        h = 1.0 / self.substeps
        q = np.zeros(self.p.shape[0])
        for _ in range(self.substeps):
            prcp, temp, pet = forcing_t[:, 0] * h, forcing_t[:, 1], forcing_t[:, 2] * h
            snowfall = np.where(temp < 0.0, prcp, 0.0)
            melt = np.minimum(self.snow, np.maximum(temp, 0.0) * ddf * h)
            self.snow = self.snow + snowfall - melt
            inflow = prcp - snowfall + melt
            frac = np.power(np.clip(self.soil / fc, 0.0, 1.0), beta)
            recharge = inflow * frac
            self.soil = self.soil + inflow - recharge
            et = np.minimum(self.soil, pet * np.minimum(self.soil / (0.7 * fc), 1.0))
            self.soil = self.soil - et
            self.upper = self.upper + recharge
            q0 = k0 * np.maximum(self.upper - 20.0, 0.0)
            q1 = k1 * self.upper
            perc = np.minimum(self.upper - q0 - q1, 0.5 * h)
            self.upper = self.upper - q0 - q1 - perc
            self.lower = self.lower + perc
            q2 = k2 * self.lower
            self.lower = self.lower - q2
            q = q + q0 + q1 + q2 * np.exp(-0.01 * self.lower)
        return q


class ModelWorkload:
    """The real BmiDeltaModel (bundled network, float64, one thread) over this rank's units, daily steps."""

    def __init__(self, local_ids, rank: int):
        import tempfile

        import torch
        import yaml

        from bmi_dhydro import BmiDeltaModel
        from bmi_dhydro.datasets import DEFAULT_ATTRIBUTES, read_camels

        torch.set_num_threads(1)
        camels = read_camels(start="2000-01-01", end="2000-01-02")  # attribute values of the bundled basins
        # per-unit values depend on the unit id only, so every rank count models the same domain
        num = np.array([int(str(u).split("-")[-1]) for u in local_ids])
        pick = (num * 7919) % camels.sizes["basin"]
        cfg = {
            "units": {"ids": list(local_ids), "area_km2": (1.0 + (num * 37) % 100 / 10.0).tolist(),
                      "lat": camels["lat"].values[pick].tolist(), "lon": camels["lon"].values[pick].tolist(),
                      "attributes": {a: camels[a].values[pick].tolist() for a in DEFAULT_ATTRIBUTES}},
            "time": {"time_step": 86400, "start": "2000-01-01 00:00:00"},
            "threads": 1,
        }
        path = Path(tempfile.mkdtemp()) / f"rank{rank}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        self.bmi = BmiDeltaModel()
        self.bmi.initialize(str(path))
        self.out = self.bmi.get_value_ptr("land_surface_water__runoff_depth")

    def step(self, forcing_t: np.ndarray) -> np.ndarray:
        self.bmi.set_value("atmosphere_water__liquid_equivalent_precipitation_rate", forcing_t[:, 0] / 86400.0)
        self.bmi.set_value("land_surface_air__temperature", np.clip(forcing_t[:, 1], -40, 45) + 273.15)
        self.bmi.update()
        return self.out.copy()


def make_model_workload(local_ids, comm, params):
    """The real model over the rank's units (``--workload model``)."""
    from coupler import mpi as cm

    return ModelWorkload(local_ids, cm.rank_and_size(comm)[0])


# --------------------------------------------------------------------------- #
# worker (runs on every rank)
# --------------------------------------------------------------------------- #


def worker(args: argparse.Namespace) -> None:
    from coupler import mpi as cm
    from bmi_dhydro.partition import count_cut_links, decompose

    comm = cm.get_comm()
    rank, size = cm.rank_and_size(comm)
    clock = time.perf_counter
    timings = {}

    def sync():
        if not cm.is_serial(comm):
            comm.Barrier()

    sync()
    t0 = clock()
    ids, toid, area = synthetic_domain(args.units)
    dec = decompose(ids, size, cost=area, toid=toid)
    timings["decompose"] = clock() - t0

    sync()
    t0 = clock()
    forcing = params = None
    if rank == 0:
        forcing, params = synthetic_inputs(args.units, args.steps)
        forcing, params = dec.to_rank_major(forcing), dec.to_rank_major(params)
    local_f = cm.scatter_rows(comm, forcing, dec.counts)
    local_p = cm.scatter_rows(comm, params, dec.counts)
    del forcing, params
    timings["scatter"] = clock() - t0

    if args.workload == "synthetic":
        model = SyntheticWorkload(local_p, args.substeps)
    else:
        model = make_model_workload(dec.units(rank), comm, local_p)

    out = np.empty((args.units, args.steps)) if rank == 0 else None
    compute = gather = 0.0
    guard = cm.FaultGuard(comm, timeout=60)
    sync()
    t_loop = clock()
    for t in cm.rank0_progress(range(args.steps), comm, desc=f"{size} rank(s)", disable=not args.progress):
        t0 = clock()
        with guard(f"time step {t}"):
            q = model.step(np.ascontiguousarray(local_f[:, t, :]))
        t1 = clock()
        g = cm.gather_rows(comm, q, dec.counts)
        if rank == 0:
            out[:, t] = dec.from_rank_major(g)
        compute += t1 - t0
        gather += clock() - t1
    sync()
    timings["loop"] = clock() - t_loop
    timings["compute"] = compute
    timings["gather"] = gather
    guard.close()
    timings["total"] = timings["decompose"] + timings["scatter"] + timings["loop"]

    names = sorted(timings)
    worst = cm.allreduce(comm, np.array([timings[k] for k in names]), "max")
    if rank == 0:
        result = dict(zip(names, worst.tolist()))
        result.update(
            ranks=size,
            units=args.units,
            steps=args.steps,
            counts=dec.counts.tolist(),
            imbalance=dec.imbalance(area),
            cut_links=count_cut_links(dec, toid),
            checksum=float(out.sum()),
        )
        Path(args.json).write_text(json.dumps(result))


# --------------------------------------------------------------------------- #
# driver
# --------------------------------------------------------------------------- #


def find_mpiexec() -> str:
    local = Path(sys.executable).parent / "mpiexec"
    found = str(local) if local.exists() else shutil.which("mpiexec")
    if not found:
        sys.exit("bench_mpi_scaling: mpiexec not found; install an MPI (e.g. `pip install mpich mpi4py`)")
    return found


def run_config(mpiexec: str, n: int, units: int, args: argparse.Namespace) -> dict:
    best = None
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "result.json"
            cmd = [
                mpiexec, "-n", str(n), sys.executable, str(Path(__file__).resolve()), "--worker",
                "--units", str(units), "--steps", str(args.steps), "--substeps", str(args.substeps),
                "--workload", args.workload, "--json", str(out),
            ] + (["--progress"] if args.progress else [])
            env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
            for v in _THREAD_VARS:
                env[v] = "1"
            res = subprocess.run(cmd, env=env, timeout=args.timeout, capture_output=not args.progress, text=True)
            if res.returncode != 0:
                sys.exit(f"bench_mpi_scaling: {' '.join(cmd)} failed ({res.returncode}):\n{res.stderr}")
            result = json.loads(out.read_text())
        if best is None or result["total"] < best["total"]:
            best = result
    return best


def table(rows: list[dict], kind: str) -> str:
    head = (
        "| ranks | units | units/rank | total s | loop s | compute s | gather s | scatter s | decompose s "
        "| speed-up | efficiency | imbalance | cut links |\n"
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    base = rows[0]
    lines = []
    for r in rows:
        if kind == "strong":
            speedup = base["total"] / r["total"]
            eff = speedup / (r["ranks"] / base["ranks"])
        else:
            speedup = float("nan")
            eff = base["total"] / r["total"]
        lines.append(
            f"| {r['ranks']} | {r['units']} | {r['units'] // r['ranks']} | {r['total']:.3f} | {r['loop']:.3f} "
            f"| {r['compute']:.3f} | {r['gather']:.3f} | {r['scatter']:.3f} | {r['decompose']:.3f} "
            f"| {'' if speedup != speedup else f'{speedup:.2f}'} | {eff:.2f} | {r['imbalance']:.3f} "
            f"| {r['cut_links']} |"
        )
    return head + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--json", help=argparse.SUPPRESS)
    ap.add_argument("--units", type=int, default=20000, help="strong scaling: units of the fixed domain")
    ap.add_argument("--weak-units", type=int, default=10000, help="weak scaling: units per rank (0 = skip)")
    ap.add_argument("--steps", type=int, default=240, help="time steps")
    ap.add_argument("--substeps", type=int, default=24, help="synthetic workload: sub-steps per step")
    ap.add_argument("--ranks", type=int, nargs="+", default=[1, 2], help="rank counts (first = baseline)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per configuration (best is kept)")
    ap.add_argument("--workload", choices=["synthetic", "model"], default="synthetic")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per mpiexec run")
    ap.add_argument("--out", help="also write the markdown table to this file")
    ap.add_argument("--progress", action="store_true", help="show the rank-0 progress bar")
    args = ap.parse_args(argv)
    for name in ("units", "steps", "substeps", "repeat"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.weak_units < 0 or any(n < 1 for n in args.ranks):
        ap.error("--weak-units must be >= 0 and --ranks >= 1")
    if args.worker:
        worker(args)
        return

    mpiexec = find_mpiexec()
    cores = os.cpu_count() or 1
    strong = [run_config(mpiexec, n, args.units, args) for n in args.ranks]
    weak = [run_config(mpiexec, n, args.weak_units * n, args) for n in args.ranks] if args.weak_units else []
    for rows in (strong, weak):
        sums = {r["ranks"]: r["checksum"] for r in rows}
        if rows is strong and len(set(sums.values())) > 1:
            sys.exit(f"bench_mpi_scaling: results differ between rank counts: {sums}")
    try:
        mpich = subprocess.run([mpiexec, "--version"], capture_output=True, text=True, timeout=30).stdout
        mpi_version = next((" ".join(ln.split()) for ln in mpich.splitlines() if "Version" in ln), "")
        mpi_version = f"MPI {mpi_version or mpich.strip()[:60]}"
    except Exception:  # noqa: BLE001
        mpi_version = "unknown"
    text = (
        f"# MPI scaling ({args.workload} workload)\n\n"
        f"{_dt.datetime.now().isoformat(timespec='seconds')} on {platform.node()} "
        f"({cores} cores, {platform.processor() or platform.machine()}), Python {platform.python_version()}, "
        f"numpy {np.__version__}, {mpi_version}; {args.steps} steps x {args.substeps} sub-steps, "
        f"best of {args.repeat}; times are the slowest rank's.\n"
        + (
            f"\nNote: {max(args.ranks)} ranks on {cores} cores is oversubscribed; those rows are not scaling "
            "data.\n" if max(args.ranks) > cores else ""
        )
        + f"\n## Strong scaling ({args.units} units)\n\n" + table(strong, "strong")
        + (f"\n## Weak scaling ({args.weak_units} units per rank)\n\n" + table(weak, "weak") if weak else "")
        + "\nThe strong-scaling outputs of all rank counts are identical (checked by checksum).\n"
    )
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
