"""The real training step of ``dhydro train``: seconds per iteration and where the time goes.

    python bench/bench_train.py            # hidden 64/128/256, 1 and 2 threads, batch 100 × (365 warm-up + 365)
    python bench/bench_train.py --quick    # hidden 64 only, fewer repetitions

One iteration = a batch of basins × windows: LSTM + MLP + HBV physics (fused kernel) + routing, a 365-day spin-up
without gradients, 365 days forward and backward, an Adam step — the loop of ``bmi_dhydro.train`` on synthetic
forcing of the same shape (25 attributes, nmul 16, dynamic BETA and BETAET).  Reported: the minimum and median
seconds per iteration over R repetitions (the machine is shared; the minimum is the least disturbed), the load
average when measured, and a torch-profiler split of one iteration into LSTM, physics kernel, routing and the rest.
Writes ``bench/results/train_step.md`` and ``train_step.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from bmi_dhydro.model import DeltaModel, ModelConfig
from bmi_dhydro.nn import lstm_precision

HERE = Path(__file__).resolve().parent


def make(hidden, batch=100, n_attr=25, seed=0):
    torch.manual_seed(seed)
    cfg = ModelConfig(nmul=16, dynamic_params=["BETA", "BETAET"], lstm_hidden=hidden, mlp_hidden=256,
                      attributes=[f"a{i}" for i in range(n_attr)])
    m = DeltaModel(cfg)
    g = torch.Generator().manual_seed(seed)
    f = torch.stack([torch.rand(730, batch, generator=g) ** 4 * 40, torch.randn(730, batch, generator=g) * 10 + 8,
                     torch.rand(730, batch, generator=g) * 5], -1)
    a = torch.randn(batch, n_attr, generator=g)
    y = torch.rand(365, batch, generator=g) * 3
    return m, f, a, y


def iteration(m, opt, f, a, y, low=None):
    st = m.initial_state(f.shape[1])
    with lstm_precision(m.provider, low):
        prep = m.prepare(a)
        st = m.warmup(st, f[:365], m.prepare(a.detach()))
        _, out = m.unroll(st, f[365:], prep, outputs=("runoff",))
    loss = ((out["runoff"] - y) ** 2).mean()
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
    opt.step()


def gemm_floor(hidden, threads, reps, batch=100, t_fwd=730, t_bwd=365):
    """Seconds for the LSTM's unavoidable float32 matrix products alone: one (B, H) x (H, 4H) product per forward step
    (spin-up and window), one (B, 4H) x (4H, H) per backward step, and the weight gradient of the window as one
    large product -- the same flops as the training step's recurrence, with nothing else."""
    torch.set_num_threads(threads)
    h, w = torch.randn(batch, hidden), torch.randn(hidden, 4 * hidden)
    d, hs, ds = torch.randn(batch, 4 * hidden), torch.randn(t_bwd * batch, hidden), torch.randn(t_bwd * batch, 4 * hidden)

    def run():
        for _ in range(t_fwd):
            torch.mm(h, w)
        for _ in range(t_bwd):
            torch.mm(d, w.t())
        torch.mm(ds.t(), hs)

    run()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        run()
        ts.append(time.perf_counter() - t0)
    return min(ts)


def measure(hidden, threads, reps, precision="float32"):
    torch.set_num_threads(threads)
    low = torch.bfloat16 if precision == "bfloat16" else None
    m, f, a, y = make(hidden)
    opt = torch.optim.Adam(m.parameters(), 1e-3)
    iteration(m, opt, f, a, y, low)  # warm-up (kernel build, allocator)
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        iteration(m, opt, f, a, y, low)
        ts.append(time.perf_counter() - t0)
    with torch.autograd.profiler.profile() as prof:
        iteration(m, opt, f, a, y, low)
    split = {"lstm": 0.0, "physics": 0.0, "routing": 0.0, "other": 0.0}
    total = 0.0
    for e in prof.key_averages():
        t = e.self_cpu_time_total
        total += t
        name = e.key.lower()
        if "rnn" in name or "lstm" in name:
            split["lstm"] += t
        elif "hbvunroll" in name:
            split["physics"] += t
        elif "conv" in name or "fft" in name or "unfold" in name:
            split["routing"] += t
        else:
            split["other"] += t
    return {"hidden": hidden, "threads": threads, "precision": precision, "min_s": min(ts), "median_s": float(np.median(ts)),
            "reps": reps, "load": os.getloadavg()[0], "split": {k: v / total for k, v in split.items()}}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    hiddens = (64,) if args.quick else (64, 128, 256)
    reps = 3 if args.quick else 5
    rows = [measure(h, t, reps, p) for h in hiddens for t in (1, 2) for p in ("float32", "bfloat16")]
    floors = {h: gemm_floor(h, 2, reps) for h in hiddens}
    lines = ["# Training step (batch 100 basins × 365-day spin-up + 365-day window, nmul 16, 25 attributes)", "",
             f"torch {torch.__version__}, {os.cpu_count()} CPUs; `python bench/bench_train.py`. Minimum and median of "
             f"{reps} iterations; load average at the time. Split: torch profiler self time of one iteration. "
             "float32 is the default training arithmetic; bfloat16 is `training.precision: bfloat16` (the LSTM under "
             "torch.autocast; weights, physics and outputs float32).", "",
             "| LSTM hidden | threads | precision | s/it (min) | s/it (median) | it/s | load | LSTM | physics | routing | other |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        s = r["split"]
        lines.append(f"| {r['hidden']} | {r['threads']} | {r['precision']} | {r['min_s']:.3f} | {r['median_s']:.3f} | "
                     f"{1 / r['min_s']:.2f} | {r['load']:.1f} | {s['lstm']:.0%} | {s['physics']:.0%} | {s['routing']:.0%} | "
                     f"{s['other']:.0%} |")
    lines += ["", "Float32 floor: the LSTM recurrence's matrix products alone at 2 threads (730 forward steps, 365 "
              "backward steps, the window's weight gradient as one product), same flops, nothing else:", "",
              "| LSTM hidden | GFLOP | floor s (2 threads) | float32 step / floor |", "|---|---|---|---|"]
    for h in hiddens:
        gflop = 2 * 100 * h * 4 * h * (730 + 365 + 365) / 1e9
        f32 = next(r for r in rows if r["hidden"] == h and r["threads"] == 2 and r["precision"] == "float32")
        ratio = "(quick: not reported)" if args.quick else f"{f32['min_s'] / floors[h]:.2f}"
        lines.append(f"| {h} | {gflop:.1f} | {floors[h]:.3f} | {ratio} |")
    if not args.quick:
        lines += ["", "bfloat16 speed-up over float32 (same hidden size and threads, same run): " + ", ".join(
            f"H{r['hidden']}/{r['threads']}t ×{r['min_s'] / r16['min_s']:.2f}" for r in rows if r["precision"] == "float32"
            for r16 in rows if r16["precision"] == "bfloat16" and r16["hidden"] == r["hidden"] and r16["threads"] == r["threads"])]
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    name = "train_step_quick" if args.quick else "train_step"
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")
    (out / f"{name}.json").write_text(json.dumps({"rows": rows, "floor_s": floors}, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
