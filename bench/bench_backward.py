"""Backward against forward: the fused HBV kernel before and after this change, and the whole model.

    python bench/bench_backward.py               # kernel at 1e4 and 1e5 units (365 days, nmul 16, float32,
                                                 # dynamic BETA/BETAET, 2 threads, loss = sum of q) + model
    python bench/bench_backward.py --quick       # 1e4 only, 2 rounds
    python bench/bench_backward.py --base REV    # the "before" kernel: bmi_dhydro as of git revision REV

The ratio is (forward+backward time) / (forward time), the forward being the same call without autograd.
"before" is the package at ``--base`` (extracted with ``git archive`` and built into its own cache), "after" this
working tree; each (version, size) runs in its own process, the processes alternate (before, after, before, ...)
and each process times forward, forward+backward, forward, forward+backward; the minimum per cell is reported.
Every process also records CPU and system time and page faults of its backward passes and its peak resident
memory.  Outputs and gradients at 1e4 are compared bit for bit by digest.

The model row: ``DeltaModel.unroll`` of the bundled network (``load_checkpoint``), 100 basins x 730 days, bundled
CAMELS attributes jittered by 10 %, random forcing, loss = sum of the routed runoff; forward+backward against
forward without autograd.  Writes ``bench/results/backward.{md,json}``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_BASE = "056af8d"  # the kernel before the backward work (issue 13 item 2)


def _problem(n, t_len, nmul, dtype):
    """make_problem's forcing/static parameters; the dynamic BETA and BETAET drawn directly in float32 (the float64
    draw of make_problem needs twice the memory at 1e5 units)."""
    import torch

    sys.path.insert(0, str(HERE))
    from baseline import make_problem

    from bmi_dhydro import physics

    state, forc, static, _, cap = make_problem(n, t_len, nmul, dtype, dynamic=())
    g = torch.Generator().manual_seed(1)
    dyn = {}
    for k in ("BETA", "BETAET"):
        static.pop(k)
        lo, hi = physics.PARAM_BOUNDS[k]
        dyn[k] = torch.rand(t_len, n, nmul, generator=g, dtype=dtype) * (hi - lo) + lo
    return state, forc, static, dyn, cap


def _cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime, r.ru_minflt


def worker_kernel(n, t_len):
    import torch

    from bmi_dhydro.physics import fast

    torch.set_num_threads(2)
    fast.load_kernel()
    state, forc, static, dyn, cap = _problem(n, t_len, 16, torch.float32)
    res = {"f": [], "fb": [], "bw_user": [], "bw_sys": [], "bw_faults": []}
    for _ in range(2):
        t0 = time.perf_counter()
        with torch.no_grad():
            fast.hbv_unroll(state, forc, static, dyn, cap, outputs=("q",), engine="fast")
        res["f"].append(time.perf_counter() - t0)
        st = {k: v.detach().requires_grad_(True) for k, v in static.items()}
        dy = {k: v.detach().requires_grad_(True) for k, v in dyn.items()}
        t0 = time.perf_counter()
        _, out = fast.hbv_unroll(state, forc, st, dy, cap, outputs=("q",), engine="fast")
        c0 = _cpu()
        out["q"].sum().backward()
        c1 = _cpu()
        res["fb"].append(time.perf_counter() - t0)
        res["bw_user"].append(c1[0] - c0[0])
        res["bw_sys"].append(c1[1] - c0[1])
        res["bw_faults"].append(c1[2] - c0[2])
        if n <= 10_000 and "digests" not in res:
            tensors = {"q": out["q"].detach(), **{f"g_{k}": v.grad for k, v in {**st, **dy}.items()}}
            res["digests"] = {k: hashlib.sha256(v.contiguous().numpy().tobytes()).hexdigest() for k, v in tensors.items()}
        del st, dy, out
    res["maxrss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return res


def worker_model(n, t_len):
    import numpy as np
    import pandas as pd
    import torch

    from bmi_dhydro.checkpoint import load_checkpoint
    from bmi_dhydro.datasets import bundled_camels_root, read_attributes

    torch.set_num_threads(2)
    model, _ = load_checkpoint(dtype=torch.float32)
    names = list(model.config.attributes)
    root = bundled_camels_root()
    ids = pd.read_csv(root / "camels_attributes_v2.0" / "camels_topo.txt", sep=";", dtype={"gauge_id": str})["gauge_id"]
    table = read_attributes(root, list(ids), names).dropna()
    rng = np.random.default_rng(0)
    rows = table[names].iloc[np.arange(n) % len(table)].to_numpy(dtype="float64")
    attrs = torch.tensor(rows * (1.0 + 0.1 * rng.standard_normal(rows.shape)), dtype=torch.float32).abs()
    g = torch.Generator().manual_seed(2)
    wet = torch.rand(t_len, n, generator=g) < 0.4
    forc = torch.stack([torch.where(wet, torch.rand(t_len, n, generator=g) * 20.0, torch.zeros(())),
                        torch.randn(t_len, n, generator=g) * 8.0 + 8.0,
                        torch.rand(t_len, n, generator=g) * 5.0], dim=-1)
    res = {"f": [], "fb": []}
    for _ in range(3):
        state = model.initial_state(n)
        t0 = time.perf_counter()
        with torch.no_grad():
            model.unroll(state, forc, attrs)
        res["f"].append(time.perf_counter() - t0)
        model.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        _, out = model.unroll(state, forc, attrs)
        key = "runoff" if "runoff" in out else next(iter(out))
        out[key].sum().backward()
        res["fb"].append(time.perf_counter() - t0)
    res["output"] = key
    return res


def _extract(base: str, dest: Path) -> Path:
    with tempfile.TemporaryFile() as fh:
        subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", base, "bmi_dhydro", "bench/baseline.py"],
                       stdout=fh, check=True)
        fh.seek(0)
        with tarfile.open(fileobj=fh) as tar:
            tar.extractall(dest)
    return dest


def _run(kind, root: Path, cache: Path, what: str, n: int, t_len: int):
    env = dict(os.environ, BMI_DHYDRO_CACHE=str(cache), PYTHONPATH=str(root))
    proc = subprocess.run([sys.executable, __file__, "--worker", what, str(n), str(t_len), str(root)], env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} {what} {n}: worker failed\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--base", default=DEFAULT_BASE)
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        what, n, t_len, root = args.worker
        sys.path.insert(0, root)
        fn = worker_kernel if what == "kernel" else worker_model
        print(json.dumps(fn(int(n), int(t_len))))
        return
    sizes = [10_000] if args.quick else [10_000, 100_000]
    rounds = args.rounds or (2 if args.quick else 3)
    rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", args.base], capture_output=True, text=True,
                         check=True).stdout.strip()
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    cells: dict = {}
    digests: dict = {}
    loads = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        roots = {"before": _extract(args.base, tmp / "before"), "after": ROOT}
        for r in range(rounds):
            for n in sizes:
                for kind in ("before", "after"):
                    res = _run(kind, roots[kind], tmp / f"cache_{kind}", "kernel", n, 365)
                    c = cells.setdefault((kind, n), {"f": [], "fb": [], "bw_user": [], "bw_sys": [], "bw_faults": [],
                                                     "maxrss_gb": []})
                    for k in ("f", "fb", "bw_user", "bw_sys", "bw_faults"):
                        c[k] += res[k]
                    c["maxrss_gb"].append(res["maxrss_gb"])
                    if "digests" in res:
                        digests.setdefault(kind, res["digests"])
                    loads.append(os.getloadavg()[0])
                    print(kind, n, {k: round(min(v), 3) for k, v in res.items() if isinstance(v, list)}, flush=True)
            for kind in ("before", "after"):
                res = _run(kind, roots[kind], tmp / f"cache_{kind}", "model", 100, 730)
                c = cells.setdefault((kind, "model"), {"f": [], "fb": []})
                c["f"] += res["f"]
                c["fb"] += res["fb"]
                loads.append(os.getloadavg()[0])
                print(kind, "model", {k: round(min(v), 3) for k, v in res.items() if isinstance(v, list)}, flush=True)
    identical = digests.get("before") == digests.get("after")
    lines = ["# Backward against forward: fused HBV kernel before/after, and the whole model", "",
             f"`python bench/bench_backward.py{' --quick' if args.quick else ''}` (before = `{rev}`, after = `{head}` + working tree). "
             "Kernel: 365 days, nmul 16, float32, dynamic BETA/BETAET, 2 threads, loss = sum of q; each (version, size) in "
             f"its own process, processes alternating, {rounds} rounds x 2 repetitions, minimum per cell. Ratio = "
             "(forward+backward) / forward (forward without autograd). Backward CPU/system time and page faults: "
             "minimum over the repetitions (resource.getrusage of the process, both threads). Load average during the "
             f"run: {min(loads):.1f} to {max(loads):.1f} (2 cores, shared). Outputs and gradients at 1e4, before vs after: "
             f"{'bit-identical' if identical else 'DIFFER'}.", "",
             "| units | version | forward s | forward+backward s | ratio | backward user CPU s | backward system s | backward page faults | peak RSS GB |",
             "|---|---|---|---|---|---|---|---|---|"]
    rows = []
    for n in sizes:
        for kind in ("before", "after"):
            c = cells[(kind, n)]
            f, fb = min(c["f"]), min(c["fb"])
            row = {"units": n, "version": kind, "forward_s": f, "forward_backward_s": fb, "ratio": fb / f,
                   "bw_user_s": min(c["bw_user"]), "bw_sys_s": min(c["bw_sys"]), "bw_faults": min(c["bw_faults"]),
                   "maxrss_gb": max(c["maxrss_gb"]), "all": c}
            rows.append(row)
            ratio = "(quick)" if args.quick else f"{fb / f:.2f}"  # quick mode: too few repetitions to trust a ratio
            lines.append(f"| {n:,} | {kind} | {f:.3f} | {fb:.3f} | {ratio} | {row['bw_user_s']:.2f} | "
                         f"{row['bw_sys_s']:.2f} | {row['bw_faults']:,} | {row['maxrss_gb']:.1f} |")
    lines += ["", "Whole model (`DeltaModel.unroll`, bundled network, 100 basins x 730 days, float32, 2 threads):", "",
              "| version | forward s | forward+backward s | ratio |", "|---|---|---|---|"]
    for kind in ("before", "after"):
        c = cells[(kind, "model")]
        f, fb = min(c["f"]), min(c["fb"])
        rows.append({"units": "model", "version": kind, "forward_s": f, "forward_backward_s": fb, "ratio": fb / f, "all": c})
        lines.append(f"| {kind} | {f:.3f} | {fb:.3f} | {'(quick)' if args.quick else f'{fb / f:.2f}'} |")
    (HERE / "results").mkdir(exist_ok=True)
    name = "backward_quick" if args.quick else "backward"
    (HERE / "results" / f"{name}.md").write_text("\n".join(lines) + "\n")
    (HERE / "results" / f"{name}.json").write_text(json.dumps({"base": rev, "head": head, "rows": rows,
                                                                "bit_identical_1e4": identical, "loads": loads}, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
