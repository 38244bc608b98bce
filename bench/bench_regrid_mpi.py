"""Weight generation on MPI ranks against one process: AORC-like grid onto NextGen-like divides.

    python bench/bench_regrid_mpi.py                       # writes bench/results/regrid_mpi.md (+ .json)
    python bench/bench_regrid_mpi.py --divides 2000 --ranks 2 3

The case is section 5 of bench/bench_regrid_sphere.py: synthetic Voronoi divides of NextGen's mean area
(9.7 km^2) in EPSG:5070 over a square region, and an AORC-like 1/120 degree lon/lat grid covering them. For each
geometry (``sphere``, ESMF's definition and the default for this pair; ``plane``, exact intersection in EPSG:5070)
the worker below runs once as a plain process and once under ``mpiexec -n N`` for each N of ``--ranks``; it
builds the cells, then times ``generate_weights_mpi`` between two barriers (``generate``), and the driver also
times the whole launch (``process``: interpreter start, imports, building the synthetic cells, writing the file).
Every parallel file is compared byte for byte with the serial one. The machine's load average is recorded
before and after: on a shared machine the speed-up is bounded by the idle cores, not by N.
"""
from __future__ import annotations

import argparse
import filecmp
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def worker(args: argparse.Namespace) -> None:
    import warnings

    from bench_regrid_sphere import aorc_like_grid_over, synthetic_divides

    from coupler.mpi import get_comm, is_serial
    from coupler.regrid.parallel import generate_weights_mpi

    comm = get_comm()
    divides = synthetic_divides(args.divides)
    grid = aorc_like_grid_over(divides)
    comm.Barrier()
    t0 = time.perf_counter()
    c0 = time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        w = generate_weights_mpi(grid, divides, "conserve", comm=comm, geometry=args.geometry, progress=False,
                                 area_crs="EPSG:5070" if args.geometry == "plane" else "auto")
    cpu = time.process_time() - c0
    comm.Barrier()
    dt = time.perf_counter() - t0
    if w is not None:
        w.to_netcdf(args.out)
        print(json.dumps(dict(generate_s=dt, cpu_rank0_s=cpu, n_s=w.n_s, n_a=w.n_a, n_b=w.n_b,
                              ranks=1 if is_serial(comm) else comm.Get_size())))


def launch(cmd: list, timeout: float) -> tuple[dict, float]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    t0 = time.perf_counter()
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1]), wall


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--divides", type=int, default=4000)
    p.add_argument("--ranks", type=int, nargs="+", default=[2])
    p.add_argument("--geometries", nargs="+", default=["sphere", "plane"])
    p.add_argument("--repeat", type=int, default=2, help="runs of each configuration (the fastest is reported)")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "regrid_mpi.md"))
    p.add_argument("--from-json", action="store_true", help="only rewrite the .md from the saved .json")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--geometry", default="sphere", help=argparse.SUPPRESS)
    p.add_argument("--file", dest="out_file", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        args.out = args.out_file
        worker(args)
        return
    if args.from_json:
        out = Path(args.out)
        write_md(json.loads(out.with_suffix(".json").read_text()), out)
        return
    mpiexec = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")
    if mpiexec is None:
        raise SystemExit("mpiexec not found (pip install mpi4py mpich)")
    load_before = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for geometry in args.geometries:
            ref = None
            for n in [1] + list(args.ranks):
                f = Path(tmp) / f"{geometry}_{n}.nc"
                base = [sys.executable, __file__, "--worker", "--divides", args.divides, "--geometry", geometry,
                        "--file", f]
                cmd = base if n == 1 else [mpiexec, "-n", n, *base]
                best = None
                for _ in range(args.repeat):
                    res, wall = launch(cmd, timeout=3600)
                    res["process_s"] = wall
                    res["load_1min_after"] = os.getloadavg()[0]
                    if best is None or res["generate_s"] < best["generate_s"]:
                        best = res
                best.update(geometry=geometry, ranks=n)
                if n == 1:
                    ref = (f, best)
                else:
                    best["identical_file"] = filecmp.cmp(ref[0], f, shallow=False)
                    best["speedup_generate"] = ref[1]["generate_s"] / best["generate_s"]
                    best["speedup_process"] = ref[1]["process_s"] / best["process_s"]
                rows.append(best)
                print(f"  {geometry} {n} rank(s): generate {best['generate_s']:.1f} s, process {best['process_s']:.1f} s",
                      file=sys.stderr)
    load_after = os.getloadavg()
    info = dict(date=time.strftime("%Y-%m-%d"), machine=platform.machine(), cores=os.cpu_count(),
                load_before=load_before, load_after=load_after, divides=args.divides, rows=rows)
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(info, indent=1))
    write_md(info, out)
    print(f"wrote {out}", file=sys.stderr)


def write_md(info: dict, path: Path) -> None:
    r0 = info["rows"][0]
    lines = [
        "# Regridding weights on MPI ranks: `mpiexec -n N dhydro regrid weights`",
        "",
        f"Written by `python bench/bench_regrid_mpi.py` on {info['date']} ({info['machine']}, {info['cores']} cores). "
        f"Load average (1, 5, 15 min) before: {', '.join(f'{x:.2f}' for x in info['load_before'])}; after: "
        f"{', '.join(f'{x:.2f}' for x in info['load_after'])} (the machine is shared: other jobs' load takes cores "
        f"from the ranks).",
        "",
        f"Case: {r0['n_b']} synthetic NextGen-like divides (Voronoi, 9.7 km² mean, EPSG:5070) under an AORC-like "
        f"1/120° lon/lat grid of {r0['n_a']} cells (bench/bench_regrid_sphere.py section 5), first-order "
        "conservative. `generate`: `generate_weights_mpi` between barriers (every rank reads/builds the cells "
        "first); `process`: the whole launch (interpreter start, imports, building the cells, writing the file). "
        "Best of the repeated runs. `identical`: the parallel weight file equals the serial one byte for byte.",
        "",
        "| geometry | ranks | weights | generate s | speed-up | process s | speed-up | rank 0 CPU s | load after | identical |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in info["rows"]:
        lines.append(
            f"| {r['geometry']} | {r['ranks']} | {r['n_s']} | {r['generate_s']:.1f} | "
            f"{r.get('speedup_generate', 1.0):.2f} | {r['process_s']:.1f} | {r.get('speedup_process', 1.0):.2f} | "
            f"{r['cpu_rank0_s']:.1f} | {r['load_1min_after']:.2f} | "
            f"{'yes' if r.get('identical_file', True) else 'NO'} |")
    lines += [
        "",
        "Each rank intersects only its part of the destination cells (a Z-order stretch, compact in space); the "
        "cell areas on the sphere are computed in one block per rank and shared. What every rank still repeats "
        "(reading or building the cells, their corners on the sphere, the source window, the charts' centres and "
        "radii: about 3 s of the 15 s serial sphere case, measured by running a rank with no destination cells) "
        "plus rank 0's merge and the interpreter start bound the speed-up below N even on idle cores (Amdahl). With 2 cores "
        "shared with other work, at most ~2x is possible here.",
        "",
    ]
    path.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
