"""The benchmark suite: fast HBV physics against the eager baseline, side by side, plus the BMI.

    python bench/run.py            # the full suite (about 15-25 minutes on 2 cores)
    python bench/run.py --quick    # smaller sizes and fewer repetitions (a few minutes)

Writes ``bench/results/results.json`` and ``bench/results/README.md`` (the tables).  Every speed figure is a ratio
of two measurements taken in the same run, interleaved, best of R repetitions (the minimum wall time: the machine
is shared, and the minimum is the least disturbed run).  Problems: bundled CAMELS forcing tiled over N units,
random parameters over the physical bounds, dynamic BETA and BETAET (see ``bench/baseline.py``).

Sections (``--only`` picks some): forward, backward, memory, equality, profile, compile, bmi.  ``regrid.json`` and
``mpi.json`` in the results folder, written by ``bench/bench_regrid.py`` and ``bench/bench_mpi_scaling.py``, are
included when present.
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

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import torch  # noqa: E402
from baseline import eager_unroll, make_problem  # noqa: E402

from bmi_dhydro import physics  # noqa: E402
from bmi_dhydro.physics import fast  # noqa: E402

SECTIONS = ("forward", "backward", "memory", "equality", "profile", "compile", "bmi")
EAGER_BYTES_PER_ELEMENT_STEP = 230  # eager forward+backward, float32 (measured: about 212; margin included)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def mem_available() -> float:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024.0
    except OSError:
        pass
    return 8e9


def meta(args) -> dict:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    ok, kernel = fast.kernel_available()
    from bmi_dhydro.model import DeltaModel, ModelConfig

    try:
        import numpy

        np_version = numpy.__version__
    except ImportError:  # pragma: no cover
        np_version = "?"
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                timeout=10).stdout.strip()
        dirty = bool(subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain"], capture_output=True, text=True,
                                    timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "", None
    if not commit:
        commit, dirty = "(not a git checkout)", None
    return {
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "mode": "quick" if args.quick else "full",
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "numpy": np_version,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "kernel_available": ok,
        "kernel": kernel,
        "git_commit": commit,
        "git_dirty": dirty,
        "deltamodel_engine_switch": "engine" in ModelConfig.model_fields,
        "advance_uses_engine": "engine" in __import__("inspect").getsource(
            getattr(DeltaModel, "_advance_torch", DeltaModel.advance)),
        "numpy_one_unit_steps": hasattr(DeltaModel, "advance_numpy"),
        "load_average_start": list(os.getloadavg()),
        "note": args.note,
    }


# ----------------------------------------------------------------------------------------------------------------
# physics throughput


def _grad(d: dict, flag: bool) -> dict:
    return {k: v.detach().requires_grad_(flag) for k, v in d.items()}


def _run(engine: str, prob, backward: bool, compiled=None) -> float:
    state, forc, static, dyn, cap = prob
    static, dyn = _grad(static, backward), _grad(dyn, backward)
    t0 = time.perf_counter()
    with torch.set_grad_enabled(backward):
        if engine == "eager":
            _, out = eager_unroll(state, forc, static, dyn, cap, ("q",))
            q = out["q"]
        elif engine == "fast":
            _, out = fast.hbv_unroll(state, forc, static, dyn, cap, outputs=("q",), engine="fast")
            q = out["q"]
        else:  # torch.compile of the eager step, for reference
            st, qs = state, []
            f_steps = forc.unbind(0)
            d_steps = {k: v.unbind(0) for k, v in dyn.items()}
            for t in range(forc.shape[0]):
                p = dict(static)
                p.update({k: v[t] for k, v in d_steps.items()})
                st, qt = compiled(st, f_steps[t], p)
                qs.append(qt)
            q = torch.stack(qs)
        if backward:
            q.sum().backward()
    return time.perf_counter() - t0


def _best(engines: list, prob, backward: bool, reps: int, compiled=None) -> dict:
    best = {e: float("inf") for e in engines}
    for _ in range(reps):  # interleaved
        for e in engines:
            best[e] = min(best[e], _run(e, prob, backward, compiled))
    return best


def throughput(sizes, t_len: int, backward: bool, reps_for, quick: bool) -> list[dict]:
    rows = []
    avail = mem_available()
    for n in sizes:
        prob = make_problem(n, t_len, 16, torch.float32)
        fast.hbv_unroll(*prob[:4], prob[4], engine="fast")  # warm (kernel build/load)
        row = {"n": n, "steps": t_len, "nmul": 16, "dtype": "float32"}
        reps = reps_for(n)
        t_eager = t_len
        if backward:
            need = EAGER_BYTES_PER_ELEMENT_STEP * n * 16 * t_len
            if need > 0.35 * avail:
                t_eager = max(4, int(0.35 * avail / (EAGER_BYTES_PER_ELEMENT_STEP * n * 16)))
        eprob = prob
        if t_eager < t_len:
            eprob = (prob[0], prob[1][:t_eager], prob[2], {k: v[:t_eager] for k, v in prob[3].items()}, prob[4])
            row["eager_note"] = (f"eager over {t_eager} steps: {t_len} would need about "
                                 f"{EAGER_BYTES_PER_ELEMENT_STEP * n * 16 * t_len / 2**30:.0f} GiB")
        row["eager_steps"] = t_eager
        eager_reps = 1 if n * t_eager > 2e6 else reps  # a slow eager run is long enough to be stable
        best = {"eager": float("inf"), "fast": float("inf"), "fast_forward": float("inf")}
        for i in range(max(reps, eager_reps)):  # interleaved
            if i < eager_reps:
                best["eager"] = min(best["eager"], _run("eager", eprob, backward))
            if i < reps:
                best["fast"] = min(best["fast"], _run("fast", prob, backward))
                if backward:  # the fast forward alone, in the same rounds: the fwd+bwd / fwd ratio
                    best["fast_forward"] = min(best["fast_forward"], _run("fast", prob, False))
        row["eager_unit_steps_per_s"] = n * row["eager_steps"] / best["eager"]
        row["fast_unit_steps_per_s"] = n * t_len / best["fast"]
        row["speedup"] = row["fast_unit_steps_per_s"] / row["eager_unit_steps_per_s"]
        row["eager_s"], row["fast_s"] = best["eager"], best["fast"]
        if backward:
            row["fast_forward_s"] = best["fast_forward"]
            row["fast_fwd_bwd_over_fwd"] = best["fast"] / best["fast_forward"]
        row["reps"] = reps
        log(f"  {'fwd+bwd' if backward else 'forward'} N={n}: eager {row['eager_unit_steps_per_s']:.3g}, "
            f"fast {row['fast_unit_steps_per_s']:.3g} unit-steps/s, x{row['speedup']:.1f}")
        rows.append(row)
    return rows


def compiled_reference(sizes, t_len: int) -> list[dict]:
    """torch.compile (inductor) of the eager step, forward only: a reference, not a baseline."""

    def one(st, f_t, params):
        st, fl = physics.step(st, f_t[:, 0], f_t[:, 1], f_t[:, 2], params)
        return st, fl.q.mean(-1)

    rows = []
    for n in sizes:
        prob = make_problem(n, t_len, 16, torch.float32)
        try:
            torch._dynamo.reset()
            comp = torch.compile(one, dynamic=False)
            t0 = time.perf_counter()
            _run("compiled", (prob[0], prob[1][:2], prob[2], {k: v[:2] for k, v in prob[3].items()}, prob[4]), False, comp)
            compile_s = time.perf_counter() - t0
            best = _best(["compiled", "fast"], prob, False, 2 if n < 1e5 else 1, comp)
            rows.append({"n": n, "steps": t_len, "compile_s": compile_s,
                         "compiled_unit_steps_per_s": n * t_len / best["compiled"],
                         "fast_unit_steps_per_s": n * t_len / best["fast"],
                         "fast_over_compiled": best["compiled"] / best["fast"]})
            log(f"  torch.compile N={n}: {rows[-1]['compiled_unit_steps_per_s']:.3g} unit-steps/s "
                f"(fast x{rows[-1]['fast_over_compiled']:.2f})")
        except Exception as exc:  # noqa: BLE001 - a reference only: record why it did not run
            rows.append({"n": n, "steps": t_len, "error": f"{type(exc).__name__}: {str(exc)[:300]}"})
            log(f"  torch.compile N={n}: failed ({type(exc).__name__})")
    return rows


# ----------------------------------------------------------------------------------------------------------------
# memory


def _mem_worker(engine: str, n: int, t_len: int) -> dict:
    res = subprocess.run([sys.executable, str(HERE / "memory_bench.py"), engine, str(n), str(t_len)],
                         capture_output=True, text=True, timeout=3600)
    if res.returncode != 0:
        raise RuntimeError(f"memory worker {engine} N={n} T={t_len} failed:\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def memory(quick: bool) -> dict:
    n, t_len = (1000, 146) if quick else (10_000, 730)
    out = {"n": n, "steps": t_len, "nmul": 16, "dtype": "float32", "runs": []}
    fast_run = _mem_worker("fast", n, t_len)
    out["runs"].append(fast_run)
    log(f"  memory fast N={n} T={t_len}: {fast_run['peak_mib']:.0f} MiB")
    need = EAGER_BYTES_PER_ELEMENT_STEP * n * 16 * t_len
    if need < 0.5 * mem_available():
        eager_run = _mem_worker("eager", n, t_len)
        out["runs"].append(eager_run)
        out["eager_peak_mib"] = eager_run["peak_mib"]
        out["eager_method"] = "measured"
    else:
        # eager's graph grows linearly with the steps: fit peak = a + b T on runs that fit, extrapolate
        ts = [30, 60, 120]
        pts = []
        for t in ts:
            r = _mem_worker("eager", n, t)
            out["runs"].append(r)
            pts.append((t, r["peak_mib"]))
            log(f"  memory eager N={n} T={t}: {r['peak_mib']:.0f} MiB")
        tm = sum(t for t, _ in pts) / len(pts)
        pm = sum(p for _, p in pts) / len(pts)
        b = sum((t - tm) * (p - pm) for t, p in pts) / sum((t - tm) ** 2 for t, _ in pts)
        a = pm - b * tm
        out["eager_peak_mib"] = a + b * t_len
        out["eager_method"] = (f"extrapolated: peak = {a:.0f} MiB + {b:.1f} MiB x steps, fitted on {ts} steps "
                               f"(the {t_len}-step run needs more memory than this machine has free)")
    out["fast_peak_mib"] = fast_run["peak_mib"]
    out["ratio"] = out["fast_peak_mib"] / out["eager_peak_mib"]
    # the same comparison at a size where both run in full
    n2 = 1000
    small = {"n": n2, "steps": 730}
    for eng in ("eager", "fast"):
        r = _mem_worker(eng, n2, 730)
        out["runs"].append(r)
        small[f"{eng}_peak_mib"] = r["peak_mib"]
    small["ratio"] = small["fast_peak_mib"] / small["eager_peak_mib"]
    out["both_measured"] = small
    log(f"  memory N={n} T={t_len}: fast {out['fast_peak_mib']:.0f} MiB, eager {out['eager_peak_mib']:.0f} MiB "
        f"({out['eager_method'].split(':')[0]}), ratio {out['ratio']:.3f}")
    return out


# ----------------------------------------------------------------------------------------------------------------
# equality (the tests' criterion, on a benchmark problem)


def equality() -> list[dict]:
    rows = []
    for dtype in (torch.float32, torch.float64):
        prob = make_problem(1000, 365, 16, dtype, seed=3)
        res = {}
        for eng in ("eager", "fast"):
            state, forc, static, dyn, cap = prob
            static, dyn = _grad(static, True), _grad(dyn, True)
            if eng == "eager":
                end, out = eager_unroll(state, forc, static, dyn, cap, ("q", "et", "sm"))
            else:
                end, out = fast.hbv_unroll(state, forc, static, dyn, cap, outputs=("q", "et", "sm"), engine="fast")
            loss = out["q"].sum() + out["et"].sum() + 0.01 * out["sm"].sum()
            grads = torch.autograd.grad(loss, [*static.values(), *dyn.values()])
            res[eng] = ([out[k].detach() for k in ("q", "et", "sm")], grads)

        def rel(a, b):
            return float((a - b).abs().max() / b.abs().max())

        rows.append({
            "dtype": str(dtype).replace("torch.", ""),
            "outputs_max_rel": max(rel(a, b) for a, b in zip(res["fast"][0], res["eager"][0])),
            "grads_max_rel": max(rel(a, b) for a, b in zip(res["fast"][1], res["eager"][1])),
            "tolerance": 1e-5 if dtype == torch.float32 else 1e-10,
        })
        log(f"  equality {rows[-1]['dtype']}: outputs {rows[-1]['outputs_max_rel']:.2e}, grads {rows[-1]['grads_max_rel']:.2e}")
    return rows


# ----------------------------------------------------------------------------------------------------------------
# profile


def kernel_profile(quick: bool) -> dict:
    """Single-thread cost per element-step of the kernel's parts, and the eager step's operator profile."""
    out: dict = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        n, t_len = (2000, 146) if quick else (10_000, 365)
        state, forc, static, dyn, cap = make_problem(n, t_len, 16, torch.float32)
        elems = n * 16 * t_len

        def cpu(fn):
            best = float("inf")
            for _ in range(3):
                c0 = time.process_time()
                fn()
                best = min(best, time.process_time() - c0)
            return best / elems * 1e9

        with torch.no_grad():
            out["forward_ns"] = cpu(lambda: fast.hbv_unroll(state, forc, static, dyn, cap, engine="fast"))
        st_g, dy_g = _grad(static, True), _grad(dyn, True)
        timing = {}

        def fwd_bwd():
            c0 = time.process_time()
            _, o = fast.hbv_unroll(state, forc, st_g, dy_g, cap, engine="fast")
            c1 = time.process_time()
            o["q"].sum().backward()
            c2 = time.process_time()
            timing.setdefault("f", []).append(c1 - c0)
            timing.setdefault("b", []).append(c2 - c1)

        cpu(fwd_bwd)
        out["forward_keeping_chunk_states_ns"] = min(timing["f"]) / elems * 1e9
        out["backward_ns"] = min(timing["b"]) / elems * 1e9
        out["pow_probe"] = _pow_probe(state, forc, static, dyn, elems)
        out["eager_ops"] = _eager_op_profile()
    finally:
        torch.set_num_threads(threads)
    return out


def _pow_probe(state, forc, static, dyn, elems) -> dict:
    """The kernel rebuilt with x**b replaced by a multiply (a cost probe, not a model): how much of the forward the
    two pow take."""
    import ctypes

    src = (fast.CSRC / "hbv_kernel.cpp").read_text()
    a = "if (!STORED) { T l; const T r = pow_lx(w.x, w.BETA, l); w.pw = r; w.lx = l; }"
    b = "if (!STORED) { T l; const T r = pow_lx(w.y, w.BETAET, l); w.pe = r; w.ly = l; }"
    if a not in src or b not in src:
        return {"error": "source changed; probe not applicable"}
    probe = src.replace(a, "if (!STORED) { w.pw = w.x * w.BETA; w.lx = w.x; }").replace(
        b, "if (!STORED) { w.pe = w.y * w.BETAET; w.ly = w.y; }")
    with tempfile.TemporaryDirectory() as tmp:
        res = {}
        for name, text in (("kernel", src), ("kernel_without_pow", probe)):
            csrc = Path(tmp) / name
            shutil.copytree(fast.CSRC, csrc)  # the header and the Makefile (its flags) with the probe's source
            (csrc / "hbv_kernel.cpp").write_text(text)
            so = Path(tmp) / f"{name}.so"
            r = fast._compile(fast._make(), fast._compiler(), so, native=True, csrc=csrc)
            if r.returncode != 0:
                return {"error": r.stderr[-500:]}
            lib = ctypes.CDLL(str(so))
            lib.hbv_forward.argtypes = [ctypes.POINTER(fast._Args), ctypes.c_int]
            n, nmul = state[0].shape
            t_len = forc.shape[0]
            params, flags = [], []
            for p in fast.KERNEL_PARAMS:
                if p in dyn:
                    params.append(dyn[p].contiguous()); flags.append(1)  # noqa: E702
                elif p in static:
                    params.append(static[p].contiguous()); flags.append(0)  # noqa: E702
                else:
                    params.append(torch.zeros(n, nmul)); flags.append(0)  # noqa: E702
            best = float("inf")
            for _ in range(3):
                args = fast._fill_args(t_len, n, nmul, 64, False, forc.contiguous(), [s.contiguous() for s in state],
                                       params, flags)
                args.n_threads = 1
                q = torch.empty(t_len, n)
                args.out[0] = q.data_ptr()
                outs = [torch.empty(n, nmul) for _ in range(5)]
                for k in range(5):
                    args.state_out[k] = outs[k].data_ptr()
                c0 = time.process_time()
                lib.hbv_forward(ctypes.byref(args), 0)
                best = min(best, time.process_time() - c0)
            res[f"{name}_ns"] = best / elems * 1e9
        res["pow_share"] = 1.0 - res["kernel_without_pow_ns"] / res["kernel_ns"]
    return res


def _eager_op_profile(n: int = 10_000, t_len: int = 20) -> dict:
    from torch.profiler import ProfilerActivity, profile

    state, forc, static, dyn, cap = make_problem(n, t_len, 16, torch.float32, forcing="synthetic")
    with torch.no_grad():
        eager_unroll(state, forc, static, dyn, cap, ("q",))
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            eager_unroll(state, forc, static, dyn, cap, ("q",))
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    ops = sorted(events, key=lambda e: -e.self_cpu_time_total)
    top = [{"op": e.key, "calls_per_step": e.count / t_len, "share": e.self_cpu_time_total / total,
            "self_us_per_call": e.self_cpu_time_total / max(e.count, 1)} for e in ops[:8]]
    allocs = sum(e.count for e in events if e.key in ("[memory]",))
    return {"n": n, "steps": t_len, "top_ops": top, "aten_calls_per_step": sum(
        e.count for e in events if e.key.startswith("aten::")) / t_len, "memory_events": allocs}


# ----------------------------------------------------------------------------------------------------------------
# report


def _fmt(x, digits=3):
    if x is None:
        return ""
    if isinstance(x, str):
        return x
    if abs(x) >= 1e6:
        return f"{x / 1e6:.{digits}g} M"
    if abs(x) >= 1e3:
        return f"{x / 1e3:.{digits}g} k"
    return f"{x:.{digits}g}"


def _table(headers, rows) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---:" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _generic(data) -> str:
    """A table from {"results": [dict, ...]} or a list of dicts; key-values otherwise."""
    rows = data.get("results") if isinstance(data, dict) else data
    if isinstance(rows, list) and rows and all(isinstance(r, dict) for r in rows):
        keys = list(dict.fromkeys(k for r in rows for k in r))
        return _table(keys, [[_fmt(r.get(k)) if isinstance(r.get(k), (int, float)) else (r.get(k) if r.get(k) is not None else "")
                              for k in keys] for r in rows])
    if isinstance(data, dict):
        return "\n".join(f"- {k}: {v}" for k, v in data.items())
    return f"```\n{json.dumps(data, indent=1)[:3000]}\n```"


def targets(res: dict) -> list[dict]:
    t = []
    fw = {r["n"]: r for r in res.get("forward", [])}
    bw = {r["n"]: r for r in res.get("backward", [])}
    if fw:
        nmax = max(fw)
        t.append({"target": f"forward >= 10x eager at N = {nmax:.0e}", "value": f"x{fw[nmax]['speedup']:.1f}",
                  "met": fw[nmax]["speedup"] >= 10})
    if bw:
        for n in sorted(bw):
            if n >= 1000:
                t.append({"target": f"forward+backward >= 10x eager at N = {n:.0e}", "value": f"x{bw[n]['speedup']:.1f}",
                          "met": bw[n]["speedup"] >= 10})
    for n in sorted(bw):
        if n >= 1000 and "fast_fwd_bwd_over_fwd" in bw[n]:
            ratio = bw[n]["fast_fwd_bwd_over_fwd"]
            t.append({"target": f"fast forward+backward <= 3x fast forward (N = {n:.0e}, same rounds)",
                      "value": f"{ratio:.2f}x", "met": ratio <= 3})
    if "memory" in res:
        m = res["memory"]
        t.append({"target": f"peak memory, {m['steps']}-step backward at N = {m['n']:.0e}: <= 1/4 of eager",
                  "value": f"{m['ratio']:.3f} ({m['eager_method'].split(':')[0]} eager)", "met": m["ratio"] <= 0.25})
    for e in res.get("equality", []):
        worst = max(e["outputs_max_rel"], e["grads_max_rel"])
        t.append({"target": f"outputs and gradients equal eager within {e['tolerance']:g} ({e['dtype']})",
                  "value": f"{worst:.1e}", "met": worst <= e["tolerance"]})
    if "bmi" in res:
        for eng, u in res["bmi"]["update"].items():
            t.append({"target": f"BMI update() <= 50 us, 1 unit, nmul 16, every update a model step ({eng})",
                      "value": f"{u['daily']['median_us']:.0f} us", "met": u["daily"]["median_us"] <= 50})
            t.append({"target": f"BMI update() <= 50 us, 1 unit, hourly framework steps, mean ({eng})",
                      "value": f"{u['hourly']['mean_us']:.0f} us", "met": u["hourly"]["mean_us"] <= 50})
    return t


def write_readme(res: dict, path: Path) -> None:
    m = res["meta"]
    L = [
        "# Benchmarks: fast HBV physics against the eager baseline",
        "",
        "Written by `python bench/run.py` (`--quick` for a short run); raw numbers in `results.json`.  Every ratio "
        "compares two measurements of the same run, interleaved, best (minimum) of R repetitions.",
        "",
        f"- run: {m['date']}, mode **{m['mode']}**, git {m['git_commit']}{' (uncommitted changes)' if m['git_dirty'] else ''}",
        f"- machine: {m['cpu']}, {m['cpu_count']} cores, torch {m['torch']} ({m['torch_threads']} threads), numpy "
        f"{m['numpy']}, Python {m['python']}",
        f"- load average at start {m['load_average_start']}, at end {m.get('load_average_end')}: the machine is "
        "shared with other engineers' jobs, so absolute figures are noisy; the side-by-side ratios are the result.",
        f"- fast kernel: {m['kernel']}",
        f"- ModelConfig.engine present: {m['deltamodel_engine_switch']}; DeltaModel.advance (the BMI's path) uses it "
        f"for torch steps: {m.get('advance_uses_engine')}"
        + ("; one-unit inference steps run in numpy (DeltaModel.advance_numpy), so the BMI rows do not depend on the "
           "engine" if m.get("numpy_one_unit_steps") else "")
        + (f"; note: {m['note']}" if m.get("note") else ""),
        "",
        "Problem: nmul 16, float32, bundled CAMELS NLDAS daily forcing tiled over N units (precipitation and "
        "temperature jittered per unit), random parameters across the physical bounds, dynamic BETA and BETAET "
        "(T, N, 16).  **eager** = `bench/baseline.py`: a Python loop over `physics.step`, one torch op per equation "
        "(the published δHBV pattern; also the tests' oracle).  **fast** = `bmi_dhydro.physics.fast.hbv_unroll`.",
        "",
    ]
    if "targets" in res:
        L += ["## Targets (issue 8)", "", _table(["target", "measured", "met"],
                                                 [[t["target"], t["value"], "yes" if t["met"] else "**no**"] for t in res["targets"]]), ""]
    for key, title in (("forward", "Forward throughput"), ("backward", "Forward + backward throughput (loss = sum of runoff; gradients for all parameters)")):
        if key in res:
            rows = [[f"{r['n']:,}", r["steps"], f"{r['eager_steps']}", _fmt(r["eager_unit_steps_per_s"]),
                     _fmt(r["fast_unit_steps_per_s"]), f"x{r['speedup']:.1f}", r["reps"]]
                    + ([f"{r['fast_fwd_bwd_over_fwd']:.2f}"] if "fast_fwd_bwd_over_fwd" in r else []) for r in res[key]]
            extra = ["fast fwd+bwd time / fast fwd time"] if key == "backward" else []
            L += [f"## {title}", "", "unit-steps/s (units x steps / wall seconds), 365 daily steps.", "",
                  _table(["N units", "steps", "eager steps", "eager", "fast", "speed-up", "reps"] + extra, rows), ""]
            notes = [r["eager_note"] for r in res[key] if r.get("eager_note")]
            if notes:
                L += ["Notes: " + "; ".join(f"N={r['n']:,}: {r['eager_note']}" for r in res[key] if r.get("eager_note")) +
                      ".  Eager's cost per unit-step does not depend on the number of steps (it is a loop of identical "
                      "steps), so its throughput over fewer steps is the same quantity.", ""]
    if res.get("compile"):
        rows = [[f"{r['n']:,}", _fmt(r.get("compiled_unit_steps_per_s")), _fmt(r.get("fast_unit_steps_per_s")),
                 f"x{r['fast_over_compiled']:.2f}" if "fast_over_compiled" in r else r.get("error", ""),
                 f"{r['compile_s']:.1f}" if "compile_s" in r else ""] for r in res["compile"]]
        L += ["## Reference: torch.compile of the eager step (forward)", "",
              "Inductor fuses one step's ops into a C++ loop; the Python time loop remains and states go through memory "
              "every step.  Not a baseline: shown because the issue quotes it.", "",
              _table(["N units", "compiled", "fast", "fast / compiled", "compile s"], rows), ""]
    if "memory" in res:
        mm = res["memory"]
        bm = mm["both_measured"]
        L += ["## Peak memory of forward + backward", "",
              f"{mm['steps']} daily steps, N = {mm['n']:,}, nmul 16, float32.  Method: a fresh process per run; the peak "
              "resident set size (VmHWM, reset with /proc/self/clear_refs after the inputs exist) minus the RSS before "
              "the forward pass.  It counts everything the run adds, whoever allocates it (torch, the C++ kernel).", "",
              _table(["", "fast", "eager", "fast / eager"],
                     [[f"N = {mm['n']:,}, {mm['steps']} steps", f"{mm['fast_peak_mib']:.0f} MiB",
                       f"{mm['eager_peak_mib']:.0f} MiB ({mm['eager_method'].split(':')[0]})", f"{mm['ratio']:.3f}"],
                      [f"N = {bm['n']:,}, {bm['steps']} steps (both measured)", f"{bm['fast_peak_mib']:.0f} MiB",
                       f"{bm['eager_peak_mib']:.0f} MiB", f"{bm['ratio']:.3f}"]]), "",
              f"Eager at the full size: {mm['eager_method']}.  The fast figure is almost all the gradient of the dynamic "
              "parameters, which has the size of those inputs (2 x T x N x 16 floats); the forward pass itself adds the "
              "chunk-start states (5 x N x 16 per 64 steps) and the outputs.", "",
              "Runs: " + "; ".join(f"{r['engine']} N={r['n']} T={r['steps']}: {r['peak_mib']:.0f} MiB" for r in mm["runs"]), ""]
    if "equality" in res:
        L += ["## Equality on a benchmark problem (N = 1,000, 365 steps)", "",
              _table(["dtype", "outputs max rel. error", "gradients max rel. error", "tolerance"],
                     [[e["dtype"], f"{e['outputs_max_rel']:.1e}", f"{e['grads_max_rel']:.1e}", f"{e['tolerance']:g}"]
                      for e in res["equality"]]),
              "", "max|fast - eager| / max|eager| per array; the full checks are `tests/test_fast_physics.py`.", ""]
    if "bmi" in res:
        b = res["bmi"]
        rows = []
        for eng, u in b["update"].items():
            rows.append([eng, f"{u['daily']['median_us']:.0f}", f"{u['hourly']['mean_us']:.0f}",
                         f"{u['hourly']['model_step_update_us']:.0f}", f"{u['hourly']['accumulate_only_update_us']:.0f}",
                         f"{b['ngen_pattern'][eng]['us_per_catchment_step']:.0f}",
                         f"{b['ngen_pattern'][eng]['python_calls_per_step']:.0f}"])
        L += ["## BMI: one ngen catchment (bundled network, nmul 16, float64)", "",
              "update() in µs: with daily framework steps every update advances the model; with hourly steps "
              "(ngen's) the daily model advances on every 24th update and the others only accumulate inputs.  The ngen "
              "pattern is the whole Python call sequence a real ngen makes into one catchment per catchment-step, call for "
              "call as recorded inside ngen (`tests/data/ngen_calls_per_step.txt`, `bench/bench_ngen_inside.py`; "
              "replayed by `bench/bmi_bench.py`), with cat-27's real hourly AORC forcing.", "",
              _table(["physics engine", "update, daily (median)", "update, hourly (mean)", "hourly: model-step update",
                      "hourly: accumulate-only update", "ngen pattern per catchment-step", "Python calls per step"], rows), "",
              "Where a model-step update goes (one unit): one step of the model runs in numpy (`DeltaModel.advance_numpy`: "
              "the LSTM cell and head, the HBV step, routing, component means) plus Hamon PET (day length cached per "
              "day of year), the stepper's bookkeeping (accumulators, mass terms, release) and the copy into the live "
              "BMI buffers.  That is about 160 numpy calls on arrays of 1 to 256 values, each 0.35-0.7 µs of dispatch; "
              "the arithmetic is negligible.  So a daily update costs ~160 µs in Python, and 50 µs would need the whole "
              "one-unit step (network, physics, routing, bookkeeping) in compiled code.  Accumulate-only updates (23 of "
              "24 with ngen's hourly steps) touch only the accumulators and mass terms.", ""]
        rows = []
        for eng, u in b["many_units"].items():
            rows.append([eng, f"{u['daily']['s_per_update'] * 1e3:.1f}", _fmt(u["daily"]["unit_steps_per_s"]),
                         f"{u['hourly']['s_per_update'] * 1e3:.2f}", _fmt(u["hourly"]["unit_steps_per_s"])])
        L += ["## BMI: one instance over 10,000 units", "",
              "Inline units (the 12 attributes of the bundled network around ngen's sample catchments' CAMELS values); "
              "unit-steps/s = units x updates / seconds.", "",
              _table(["physics engine", "daily: ms per update", "daily: unit-steps/s", "hourly: ms per update",
                      "hourly: unit-steps/s (framework steps)"], rows), ""]
        for eng, prof in b["profile"].items():
            for kind, rows_ in prof.items():
                L += [f"Profile of the one-unit update, {kind} framework steps ({eng}; cProfile, top by own time):", "",
                      _table(["function", "calls per update", "own µs per update", "cumulative µs per update"],
                             [[r["function"].replace("|", "/"), f"{r['calls_per_update']:.1f}", f"{r['own_us_per_update']:.1f}",
                               f"{r['cum_us_per_update']:.1f}"] for r in rows_]), ""]
    if "profile" in res:
        p = res["profile"]
        pp = p.get("pow_probe", {})
        L += ["## Where the fast kernel's time goes (one thread)", "",
              _table(["part", "ns per element-step (one unit x one component x one step)"],
                     [["forward", f"{p['forward_ns']:.2f}"],
                      ["forward keeping chunk states (training)", f"{p['forward_keeping_chunk_states_ns']:.2f}"],
                      ["backward (recompute chunk + adjoint)", f"{p['backward_ns']:.2f}"],
                      ["forward, kernel rebuilt without the two pow (cost probe)", f"{pp.get('kernel_without_pow_ns', float('nan')):.2f}"]]),
              "", f"The two `x ** b` (soil wetness and ET factor), evaluated in float32 as 2^(b log2 x) from short "
              f"polynomials, take {pp.get('pow_share', float('nan')):.0%} of the forward; they are serial (the ET factor "
              "needs the soil moisture after recharge).  The rest of the step is about 120 vector instructions per "
              "16 columns (loads and stores included), two divisions, and streaming the dynamic parameters "
              "(T x N x 16 each) from memory.  The "
              "backward recomputes each chunk's forward once (with its pow) and then runs the adjoint (no "
              "transcendental functions, but about twice the forward's arithmetic, and six divisions), so "
              "forward + backward costs about 3 forwards.", ""]
        big = max(res.get("forward", []), key=lambda r: r["n"], default=None)
        if big and big["n"] >= 100_000 and p.get("forward_ns"):
            need = p["forward_ns"] * big["speedup"] / 10.0
            L += [f"What a 10x forward at N = {big['n']:,} would take: the run above is x{big['speedup']:.1f}, so the "
                  f"kernel would have to cost about {need:.2f} ns per element-step on one thread instead of "
                  f"{p['forward_ns']:.2f}.  The same kernel with both pow replaced by a multiply costs "
                  f"{pp.get('kernel_without_pow_ns', float('nan')):.2f}: even free pow would leave it near the target, "
                  "so the remaining gap is the step's own arithmetic and memory traffic on 2 cores, not overhead.", ""]
        eo = p.get("eager_ops")
        if eo:
            L += [f"Eager step's operator profile (torch.profiler, N = {eo['n']:,}, {eo['steps']} steps, no grad): "
                  f"{eo['aten_calls_per_step']:.0f} aten calls per step, each streaming N x 16 floats through memory "
                  "and allocating its result.", "",
                  _table(["op", "calls per step", "share of CPU time", "µs per call"],
                         [[o["op"], f"{o['calls_per_step']:.0f}", f"{o['share']:.0%}", f"{o['self_us_per_call']:.0f}"]
                          for o in eo["top_ops"]]), ""]
    L += ["## Regrid apply throughput", ""]
    if res.get("regrid"):
        L += ["From `regrid.json` (written by `bench/bench_regrid.py`):", "", _generic(res["regrid"]), ""]
    else:
        L += ["(slot: `bench/results/regrid.json` was not present; run `bench/bench_regrid.py`.)", ""]
    L += ["## 1 against 2 MPI ranks", ""]
    if res.get("mpi"):
        L += ["From `mpi.json` (written by `bench/bench_mpi_scaling.py`):", "", _generic(res["mpi"]), ""]
    else:
        md = sorted(p.name for p in path.parent.glob("mpi*.md"))
        L += ["(slot: `bench/results/mpi.json` was not present; run `bench/bench_mpi_scaling.py`"
              + (f"; see {', '.join(md)}" if md else "") + ".)", ""]
    path.write_text("\n".join(L))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes, fewer repetitions")
    ap.add_argument("--only", nargs="+", choices=SECTIONS, help="run only these sections")
    ap.add_argument("--out", default=str(HERE / "results"), help="results folder (default bench/results)")
    ap.add_argument("--note", default="", help="free text recorded with the results")
    ap.add_argument("--render", action="store_true",
                    help="measure nothing: rebuild README.md from results.json (picking up regrid.json / mpi.json)")
    ap.add_argument("--merge", action="store_true",
                    help="with --only: update those sections in an existing results.json instead of starting anew")
    args = ap.parse_args(argv)
    if args.render:
        outdir = Path(args.out)
        res = json.loads((outdir / "results.json").read_text())
        for name in ("regrid", "mpi"):
            p = outdir / f"{name}.json"
            if p.is_file():
                res[name] = json.loads(p.read_text())
        res["targets"] = targets(res)
        (outdir / "results.json").write_text(json.dumps(res, indent=1))
        write_readme(res, outdir / "README.md")
        print(f"rebuilt {outdir / 'README.md'}")
        return 0
    sections = args.only or list(SECTIONS)
    if args.quick and not args.only:
        sections = [s for s in sections if s != "compile"]
    outdir = Path(args.out)
    outdir.mkdir(parents=True, exist_ok=True)
    ok, why = fast.kernel_available()
    if not ok:
        print(f"bench: {why}", file=sys.stderr)
        return 2
    res: dict = {"meta": meta(args)}
    previous = Path(args.out) / "results.json"
    if args.merge and previous.is_file():
        old = json.loads(previous.read_text())
        res = {**old, "meta": {**old.get("meta", {}), "merged": sorted(set(old.get("meta", {}).get("merged", []))
                                                                     | set(sections)), "merged_at": res["meta"]["date"]}}
    log(f"bench ({res['meta']['mode']}): {', '.join(sections)}")
    sizes = [1, 1000, 10_000] if args.quick else [1, 1000, 10_000, 100_000]
    t_len = 365
    reps_for = (lambda n: 3 if n <= 1000 else 1) if args.quick else (lambda n: 5 if n <= 1000 else 3)
    if "forward" in sections:
        log("forward throughput")
        res["forward"] = throughput(sizes, t_len, False, reps_for, args.quick)
    if "backward" in sections:
        log("forward + backward throughput")
        res["backward"] = throughput(sizes, t_len, True, reps_for, args.quick)
    if "compile" in sections:
        log("torch.compile reference")
        res["compile"] = compiled_reference(sizes, t_len)
    if "memory" in sections:
        log("peak memory")
        res["memory"] = memory(args.quick)
    if "equality" in sections:
        log("equality")
        res["equality"] = equality()
    if "profile" in sections:
        log("kernel profile")
        res["profile"] = kernel_profile(args.quick)
    if "bmi" in sections:
        log("BMI")
        import bmi_bench

        res["bmi"] = bmi_bench.run(args.quick, log=log)
    for name in ("regrid", "mpi"):
        p = outdir / f"{name}.json"
        if p.is_file():
            try:
                res[name] = json.loads(p.read_text())
            except json.JSONDecodeError as exc:
                res[name] = {"error": f"{p} is not valid JSON: {exc}"}
    res["targets"] = targets(res)
    res["meta"]["load_average_end"] = list(os.getloadavg())
    (outdir / "results.json").write_text(json.dumps(res, indent=1))
    write_readme(res, outdir / "README.md")
    log(f"wrote {outdir / 'results.json'} and {outdir / 'README.md'}")
    for t in res["targets"]:
        log(f"  {'MET ' if t['met'] else 'MISS'} {t['target']}: {t['value']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
