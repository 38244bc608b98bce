"""The fused HBV kernel built for 256-bit and for 512-bit vectors: speed side by side, and equality of outputs.

    python bench/bench_vector_width.py            # N = 1e4 and 1e5 units, 365 days, nmul 16, float32, 2 threads
    python bench/bench_vector_width.py --quick    # N = 1e4 only, fewer repetitions (no ratios printed)

Each width is built into its own cache (``BMI_DHYDRO_VECTOR_WIDTH`` = 256 / 512, the variable ``bmi_dhydro`` reads
at build time) and timed in its own process; the processes alternate (A B A B ...) so that a disturbance of the
shared machine hits both, and the minimum per width is reported.  Every process also saves its outputs and
gradients, which are compared bit for bit.  Writes ``bench/results/vector_width.{md,json}``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def worker(sizes, t_len, out_file):
    import torch

    sys.path.insert(0, str(HERE))
    from baseline import make_problem

    from bmi_dhydro.physics import fast

    torch.set_num_threads(2)
    lib = fast.load_kernel()
    res = {"width": lib.vector_width, "times": {}}
    saved = {}
    for n in sizes:
        state, forc, static, dyn, cap = make_problem(n, t_len, 16, torch.float32)
        for backward in (False, True):
            st = {k: v.detach().requires_grad_(backward) for k, v in static.items()}
            dy = {k: v.detach().requires_grad_(backward) for k, v in dyn.items()}
            t0 = time.perf_counter()
            with torch.set_grad_enabled(backward):
                _, out = fast.hbv_unroll(state, forc, st, dy, cap, outputs=("q",), engine="fast")
                if backward:
                    out["q"].sum().backward()
            res["times"][f"{n}_{'fb' if backward else 'f'}"] = time.perf_counter() - t0
            if backward:
                tensors = {f"{n}_q": out["q"].detach(), **{f"{n}_g_{k}": v.grad for k, v in {**st, **dy}.items()}}
                # every size is compared bit for bit by digest; only the smallest is saved (gigabytes at 1e5)
                res.setdefault("digests", {}).update(
                    {k: hashlib.sha256(v.contiguous().numpy().tobytes()).hexdigest() for k, v in tensors.items()})
                if n == sizes[0]:
                    saved.update(tensors)
        del state, forc, static, dyn, st, dy, out, tensors
    torch.save(saved, out_file)
    print(json.dumps(res))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    sizes = [10_000] if args.quick else [10_000, 100_000]
    t_len = 365
    if args.worker:
        worker(sizes, t_len, args.worker[1])
        return
    import torch

    rounds = 2 if args.quick else 4
    best, outs, digests = {}, {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            for w in ("256", "512"):
                env = dict(os.environ, BMI_DHYDRO_VECTOR_WIDTH=w, BMI_DHYDRO_CACHE=f"{tmp}/cache{w}")
                out_file = f"{tmp}/out{w}.pt"
                proc = subprocess.run([sys.executable, __file__, "--worker", w, out_file], env=env, capture_output=True,
                                      text=True, check=True)
                res = json.loads(proc.stdout.strip().splitlines()[-1])
                assert res["width"] == w, res
                for k, v in res["times"].items():
                    best[(w, k)] = min(best.get((w, k), float("inf")), v)
                outs[w] = torch.load(out_file, weights_only=True)
                digests.setdefault(w, res["digests"])
                assert res["digests"] == digests[w], "a build is not deterministic between its runs"
        a, b = outs["256"], outs["512"]
        identical = digests["256"] == digests["512"]
        max_diff = max(float((a[k] - b[k]).abs().max()) for k in a)
    load = os.getloadavg()[0]
    lines = ["# Kernel vector width: 256-bit against 512-bit (`-mprefer-vector-width=512`)", "",
             f"`python bench/bench_vector_width.py`{' --quick' if args.quick else ''}: 365 days, nmul 16, float32, "
             f"dynamic parameters, 2 threads; minimum of {rounds} alternating runs per width; load average {load:.1f} "
             f"at the end. Outputs and gradients of the two builds, at every size: {'bit-identical' if identical else f'differ (max at 1e4: {max_diff:.3g})'}.",
             "", "| units | pass | 256-bit s | 512-bit s | 512 speed-up |", "|---|---|---|---|---|"]
    rows = []
    for n in sizes:
        for k, name in (("f", "forward"), ("fb", "forward+backward")):
            t256, t512 = best[("256", f"{n}_{k}")], best[("512", f"{n}_{k}")]
            ratio = "(quick: not reported)" if args.quick else f"×{t256 / t512:.2f}"
            lines.append(f"| {n:,} | {name} | {t256:.3f} | {t512:.3f} | {ratio} |")
            rows.append({"units": n, "pass": name, "s_256": t256, "s_512": t512})
    (HERE / "results").mkdir(exist_ok=True)
    name = "vector_width_quick" if args.quick else "vector_width"
    (HERE / "results" / f"{name}.md").write_text("\n".join(lines) + "\n")
    (HERE / "results" / f"{name}.json").write_text(json.dumps({"rows": rows, "bit_identical": identical,
                                                                "max_abs_diff": max_diff, "load": load}, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
