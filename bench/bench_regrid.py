#!/usr/bin/env python
"""Benchmark coupler.regrid: weight generation and apply throughput, scipy vs torch.

Setup (synthetic, shaped like the real NWM/NextGen case): an ``N x N`` grid of 1-km cells in the
National Water Model's Lambert conformal CRS, and ``M`` catchment-like polygons in EPSG:5070
(Voronoi cells of random points clipped to the grid footprint, edges densified every 250 m). The
native conservative weights are computed in EPSG:5070, so every grid cell is reprojected.

Measured:
* weight generation time (native ``conserve``, ``bilinear``), n_s;
* apply throughput in source values per second for a ``(T, N, N)`` block: scipy.sparse (float64),
  scipy with missing values (NaN renormalisation), the differentiable torch module on CPU in
  float64/float32 (forward only and forward+backward) with both CPU kernels (scipy on zero-copy
  views, the default; torch's own sparse CSR kernels), and on CUDA when available. All in the same
  run, side by side.

Usage::

    python bench/bench_regrid.py            # full size: 1000 x 1000 grid onto 10,000 polygons
    python bench/bench_regrid.py --quick    # 200 x 200 onto 400 polygons (seconds)

Writes ``bench/results/regrid.md`` and ``bench/results/regrid.json`` (``--out`` to change).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

NWM_LCC = "+proj=lcc +lat_1=30 +lat_2=60 +lat_0=40 +lon_0=-97 +x_0=0 +y_0=0 +a=6370000 +b=6370000 +units=m +no_defs"


def make_case(n: int, m: int, seed: int = 0):
    import shapely

    from coupler.regrid import Grid, Polygons
    from coupler.regrid.crs import as_crs, transform_xy

    x0, y0 = 1.0e6, -0.5e6  # the NWM grid's south-east quarter
    x = x0 + 1000.0 * (np.arange(n) + 0.5)
    y = y0 + 1000.0 * (np.arange(n) + 0.5)
    grid = Grid(x, y, NWM_LCC)
    # grid footprint in EPSG:5070 (densified boundary)
    t = np.linspace(0, 1, 400)
    L = 1000.0 * n
    bx = np.concatenate([x0 + L * t, np.full_like(t, x0 + L), x0 + L * t[::-1], np.full_like(t, x0)])
    by = np.concatenate([np.full_like(t, y0), y0 + L * t, np.full_like(t, y0 + L), y0 + L * t[::-1]])
    ax, ay = transform_xy(grid.crs, as_crs(5070), bx, by)
    foot = shapely.Polygon(np.column_stack([ax, ay])).buffer(-1500.0)  # stay inside the grid
    rng = np.random.default_rng(seed)
    xmin, ymin, xmax, ymax = foot.bounds
    pts = []
    while sum(len(p) for p in pts) < m:
        cand = shapely.points(rng.uniform(xmin, xmax, 2 * m), rng.uniform(ymin, ymax, 2 * m))
        pts.append(cand[shapely.contains(foot, cand)])
    pts = np.concatenate(pts)[:m]
    cells = shapely.get_parts(shapely.voronoi_polygons(shapely.multipoints(pts), extend_to=foot))
    cells = shapely.intersection(cells, foot)
    cells = cells[shapely.area(cells) > 0]
    cells = shapely.segmentize(cells, 250.0)
    polys = Polygons(cells, 5070, [f"cat-{i}" for i in range(cells.size)])
    return grid, polys


def timeit(fn, repeat: int = 3):
    best = np.inf
    out = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="200 x 200 grid onto 400 polygons")
    ap.add_argument("--n", type=int, help="grid size N (N x N cells)")
    ap.add_argument("--m", type=int, help="number of polygons")
    ap.add_argument("--steps", type=int, default=None, help="time steps per apply block (default 24; 8 quick)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"), help="output folder")
    ap.add_argument("--name", default="regrid", help="output file stem")
    args = ap.parse_args(argv)
    n = args.n or (200 if args.quick else 1000)
    m = args.m or (400 if args.quick else 10000)
    T = args.steps or (8 if args.quick else 24)

    import scipy
    import shapely
    import torch

    from coupler.regrid import generate_weights

    rows = []
    info = {"grid": f"{n} x {n} (1 km, NWM Lambert conformal)", "polygons": m, "time_steps_per_apply": T,
            "python": platform.python_version(), "numpy": np.__version__, "scipy": scipy.__version__,
            "shapely": shapely.__version__, "torch": torch.__version__, "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "machine": platform.machine(), "platform": platform.platform()}
    info["load_average_at_start"] = [round(v, 2) for v in os.getloadavg()]
    print(f"building case: {info['grid']} onto {m} polygons ...", file=sys.stderr)
    t0 = time.perf_counter()
    grid, polys = make_case(n, m)
    info["case_build_s"] = round(time.perf_counter() - t0, 2)
    info["polygons_built"] = polys.size
    info["mean_vertices_per_polygon"] = float(shapely.get_num_coordinates(polys.geoms).mean())

    t0 = time.perf_counter()
    w = generate_weights(grid, polys, "conserve", progress=True)
    t_cons = time.perf_counter() - t0
    rows.append({"task": "weights: native conserve", "backend": "shapely/GEOS", "seconds": t_cons,
                 "n_s": w.n_s, "values_per_s": None})
    t0 = time.perf_counter()
    wb = generate_weights(grid, polys, "bilinear", progress=False)
    rows.append({"task": "weights: native bilinear", "backend": "numpy", "seconds": time.perf_counter() - t0,
                 "n_s": wb.n_s, "values_per_s": None})
    info["frac_b_min"] = float(w.frac_b.min())

    rng = np.random.default_rng(1)
    x = rng.gamma(2.0, 1.0, size=(T,) + grid.shape)
    nvals = x.size
    rep = 3

    def add(task, backend, sec, extra=None):
        rows.append({"task": task, "backend": backend, "seconds": sec, "n_s": w.n_s, "values_per_s": nvals / sec,
                     **(extra or {})})

    w.matrix  # build the CSR matrix once, outside the timings
    sec, ref = timeit(lambda: w.apply(x), rep)
    add(f"apply conserve ({T} steps)", "scipy.sparse float64", sec)
    xn = x.copy()
    xn[:, rng.random(grid.shape) < 0.01] = np.nan
    sec, _ = timeit(lambda: w.apply(xn), rep)
    add(f"apply with 1% NaN ({T} steps)", "scipy.sparse float64", sec)

    configs = [("cpu", "scipy"), ("cpu", "torch")] + ([("cuda", "torch")] if torch.cuda.is_available() else [])
    for dev, kernel in configs:
        for dtype in (torch.float64, torch.float32):
            rt = w.to_torch(dtype=dtype, device=dev, cpu_kernel=kernel)
            label = f"torch {dev} {str(dtype).split('.')[-1]}" + (f" ({kernel} kernel)" if dev == "cpu" else "")
            xt = torch.as_tensor(x, dtype=dtype, device=dev)

            def fwd():
                with torch.no_grad():
                    y = rt(xt)
                if dev == "cuda":
                    torch.cuda.synchronize()
                return y

            fwd()
            sec, y = timeit(fwd, rep)
            err = float(np.nanmax(np.abs(y.cpu().double().numpy() - ref)) / np.nanmax(np.abs(ref)))
            add(f"apply conserve ({T} steps)", label, sec, {"max_rel_diff_vs_scipy": err})
            xg = xt.clone().requires_grad_(True)

            def fwd_bwd():
                xg.grad = None
                rt(xg).sum().backward()
                if dev == "cuda":
                    torch.cuda.synchronize()

            fwd_bwd()
            sec, _ = timeit(fwd_bwd, rep)
            add(f"apply + backward ({T} steps)", label, sec)

    info["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    md = [f"# coupler.regrid benchmark", "",
          f"Grid {info['grid']} = {n * n:,} cells onto {polys.size:,} polygons "
          f"(Voronoi, EPSG:5070, ~{info['mean_vertices_per_polygon']:.0f} vertices each); "
          f"apply on a ({T}, {n}, {n}) block = {nvals:,} source values; best of {rep}.", "",
          f"Machine: {info['cpu_count']} CPUs ({info['machine']}), torch threads {info['torch_threads']}, "
          f"Python {info['python']}, numpy {info['numpy']}, scipy {info['scipy']}, shapely {info['shapely']}, "
          f"torch {info['torch']}. Case build (not timed below): {info['case_build_s']} s. Load average "
          f"(1/5/15 min) at start {info['load_average_at_start']}, at end {info['load_average_at_end']}: other "
          f"processes on the machine slow every row alike.", "",
          "| task | backend | seconds | values/s | n_s | note |", "|---|---|---:|---:|---:|---|"]
    for r in rows:
        vps = f"{r['values_per_s']:.3g}" if r["values_per_s"] else ""
        note = f"max rel diff vs scipy {r['max_rel_diff_vs_scipy']:.1e}" if "max_rel_diff_vs_scipy" in r else ""
        md.append(f"| {r['task']} | {r['backend']} | {r['seconds']:.3f} | {vps} | {r['n_s']:,} | {note} |")
    md.append("")
    stem = args.name + ("_quick" if args.quick and args.name == "regrid" else "")
    (out / f"{stem}.md").write_text("\n".join(md))
    (out / f"{stem}.json").write_text(json.dumps({"info": info, "results": rows}, indent=2))
    print("\n".join(md))
    print(f"wrote {out / (stem + '.md')} and {out / (stem + '.json')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
