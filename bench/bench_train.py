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


def iteration(m, opt, f, a, y):
    st = m.initial_state(f.shape[1])
    prep = m.prepare(a)
    st = m.warmup(st, f[:365], m.prepare(a.detach()))
    _, out = m.unroll(st, f[365:], prep, outputs=("runoff",))
    loss = ((out["runoff"] - y) ** 2).mean()
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
    opt.step()


def measure(hidden, threads, reps):
    torch.set_num_threads(threads)
    m, f, a, y = make(hidden)
    opt = torch.optim.Adam(m.parameters(), 1e-3)
    iteration(m, opt, f, a, y)  # warm-up (kernel build, allocator)
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        iteration(m, opt, f, a, y)
        ts.append(time.perf_counter() - t0)
    with torch.autograd.profiler.profile() as prof:
        iteration(m, opt, f, a, y)
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
    return {"hidden": hidden, "threads": threads, "min_s": min(ts), "median_s": float(np.median(ts)),
            "reps": reps, "load": os.getloadavg()[0], "split": {k: v / total for k, v in split.items()}}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    hiddens = (64,) if args.quick else (64, 128, 256)
    reps = 3 if args.quick else 5
    rows = [measure(h, t, reps) for h in hiddens for t in (1, 2)]
    lines = ["# Training step (batch 100 basins × 365-day spin-up + 365-day window, nmul 16)", "",
             f"torch {torch.__version__}, {os.cpu_count()} CPUs; `python bench/bench_train.py`. Minimum and median of "
             f"{reps} iterations; load average at the time. Split: torch profiler self time of one iteration.", "",
             "| LSTM hidden | threads | s/it (min) | s/it (median) | it/s | load | LSTM | physics | routing | other |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        s = r["split"]
        lines.append(f"| {r['hidden']} | {r['threads']} | {r['min_s']:.3f} | {r['median_s']:.3f} | {1 / r['min_s']:.2f} | "
                     f"{r['load']:.1f} | {s['lstm']:.0%} | {s['physics']:.0%} | {s['routing']:.0%} | {s['other']:.0%} |")
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "train_step.md").write_text("\n".join(lines) + "\n")
    (out / "train_step.json").write_text(json.dumps(rows, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
