"""Peak memory of forward + backward, measured as the peak resident set size of a fresh process.

Method (Linux): the worker builds the problem (forcing, static and dynamic parameters that require gradients),
resets the kernel's peak-RSS counter (``echo 5 > /proc/self/clear_refs``), notes the current RSS, runs the forward
pass and ``loss.backward()`` and reads the peak (``VmHWM`` in ``/proc/self/status``).  The figure is
``peak - RSS before``: everything the run added — the autograd graph or the kernel's chunk states and scratch, the
outputs and the gradients — whoever allocated it (torch, the C++ kernel, Python).  tracemalloc would miss torch's
allocations and torch's profiler would miss the kernel's own buffers, so the operating system's count is used.
Without ``clear_refs`` the peak since process start is used (then the setup is included; noted in the result).

Run as ``python bench/memory_bench.py ENGINE N T [NMUL]``; prints one JSON line.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _status(key: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0  # MiB
    raise RuntimeError(f"/proc/self/status has no {key}")


def main(engine: str, n: int, t_len: int, nmul: int = 16) -> dict:
    import torch
    from baseline import eager_unroll, make_problem

    from bmi_dhydro.physics import fast

    torch.manual_seed(0)
    state, forc, static, dyn, cap = make_problem(n, t_len, nmul, torch.float32, forcing="synthetic")
    static = {k: v.requires_grad_() for k, v in static.items()}
    dyn = {k: v.requires_grad_() for k, v in dyn.items()}
    if engine == "fast":
        fast.load_kernel()
    inputs_mb = sum(t.numel() * t.element_size() for t in (forc, *static.values(), *dyn.values())) / 2**20
    reset = True
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        reset = False
    rss0 = _status("VmRSS")
    if engine == "eager":
        _, out = eager_unroll(state, forc, static, dyn, cap, ("q",))
    else:
        _, out = fast.hbv_unroll(state, forc, static, dyn, cap, outputs=("q",), engine="fast")
    after_forward = _status("VmRSS") - rss0
    out["q"].sum().backward()
    peak = _status("VmHWM") - rss0
    return {"engine": engine, "n": n, "steps": t_len, "nmul": nmul, "peak_mib": peak,
            "after_forward_mib": after_forward, "inputs_mib": inputs_mb, "peak_reset": reset}


if __name__ == "__main__":
    args = sys.argv[1:]
    res = main(args[0], int(args[1]), int(args[2]), *(int(a) for a in args[3:4]))
    print(json.dumps(res))
