"""Where the time goes inside a real ngen run: every BMI call ngen makes into the model, timed from inside.

    python bench/bench_ngen_inside.py --ngen /path/to/ngen/build/ngen [--runs 3] [--out bench/results/ngen_inside]

Needs an ngen binary built with Python (README, NextGen, step 1) and this environment activated (step 3): it is not
run in CI.  For each stepping (daily_release, day_so_far) it copies ``examples/ngen`` (cat-27/52/67, 720 hourly
AORC steps) to a temporary folder, points the realization at :class:`TimedBmi` (this module, found through
``PYTHONPATH``) with that stepping, runs ngen ``--runs`` times (and as many times with the plain model), and writes a
table of µs per catchment-step by BMI method, the model's own ``update`` in steady state (after the first day, which
pays one-off imports and lazy initialization), what the timing itself adds (the recorded calls replayed in this
process, timed and untimed) and ngen's ``NGen::simulation`` time with and without the timing.

:class:`TimedBmi` is ``BmiDeltaModel`` with every public method timed (count and seconds) and each ``update`` time
kept; at ``finalize`` it writes them as JSON into ``$DHYDRO_TIMING_DIR`` (atomically).  Part of what the timing costs
falls inside the calls it times; the table subtracts that, as measured on the replay.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from bmi_dhydro import BmiDeltaModel  # noqa: E402
from bmi_dhydro.safe_io import atomic_write_text  # noqa: E402

STEPPINGS = ("daily_release", "day_so_far")
CATS = ("cat-27", "cat-52", "cat-67")
FIRST_DAY = 24  # updates per catchment that pay the one-off costs (imports, lazy initialization)
CALL_LOG_AFTER = 200  # the calls of one whole catchment-step are recorded: those after this update, to the next


class TimedBmi(BmiDeltaModel):
    """``BmiDeltaModel`` with every public method timed; see the module's docstring."""

    def __init__(self):
        super().__init__()
        self._timing = {}  # method -> [calls, seconds]
        self._update_s = []  # the seconds of each update, in order
        self._sequence = []  # the calls of one catchment-step (after update CALL_LOG_AFTER, up to the next update)


def _timed(name, fn):
    @functools.wraps(fn)
    def wrapper(self, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(self, *args, **kwargs)
        finally:
            dt = time.perf_counter() - t0
            if len(self._update_s) == CALL_LOG_AFTER + 1:  # (an update counts once it has returned)
                self._sequence.append(" ".join([name] + [a for a in args[:1] if isinstance(a, str)]))
            if name == "update":
                self._update_s.append(dt)
            c = self._timing.setdefault(name, [0, 0.0])
            c[0] += 1
            c[1] += dt
    return wrapper


for _name in dir(BmiDeltaModel):
    if not _name.startswith("_") and callable(getattr(BmiDeltaModel, _name)) and _name != "finalize":
        setattr(TimedBmi, _name, _timed(_name, getattr(BmiDeltaModel, _name)))


def _finalize(self):
    BmiDeltaModel.finalize(self)
    folder = os.environ.get("DHYDRO_TIMING_DIR")
    if not folder:
        raise RuntimeError("TimedBmi: DHYDRO_TIMING_DIR is not set: expected the folder to write the timings into")
    ids = list(getattr(self.units, "ids", [])) if getattr(self, "units", None) is not None else []
    record = {"ids": [str(i) for i in ids], "calls": self._timing, "sequence": self._sequence,
              "update_s": self._update_s}
    atomic_write_text(Path(folder) / f"timing_{os.getpid()}_{id(self)}.json", json.dumps(record), "timing record")


TimedBmi.finalize = _finalize


# ---------------------------------------------------------------------------------------------------------------
# the driver


def _prepare(run_dir: Path, stepping: str, timed: bool = True) -> None:
    shutil.copytree(ROOT / "examples" / "ngen", run_dir)
    real = run_dir / "realization.json"
    text = real.read_text()
    if '"bmi_dhydro.BmiDeltaModel"' not in text:
        raise RuntimeError(f"{real}: expected python_type bmi_dhydro.BmiDeltaModel")
    if timed:
        real.write_text(text.replace('"bmi_dhydro.BmiDeltaModel"', '"bench_ngen_inside.TimedBmi"'))
    for cfg in (run_dir / "config").glob("*.yaml"):
        lines = [ln for ln in cfg.read_text().splitlines() if not ln.startswith("stepping:")]
        cfg.write_text("\n".join(lines + [f"stepping: {stepping}"]) + "\n")


def _run(ngen: str, run_dir: Path, timing_dir: Path) -> float:
    env = dict(os.environ, DHYDRO_TIMING_DIR=str(timing_dir),
               PYTHONPATH=os.pathsep.join([str(HERE)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    r = subprocess.run([ngen, "data/catchment_data.geojson", "all", "data/nexus_data.geojson", "all", "realization.json"],
                       cwd=run_dir, env=env, capture_output=True, text=True, timeout=900)
    if r.returncode != 0 or "Finished" not in r.stdout:
        raise RuntimeError(f"ngen failed in {run_dir} (rc {r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    m = re.search(r"NGen::simulation:\s*([0-9.eE+-]+)", r.stdout)
    if not m:
        raise RuntimeError(f"ngen in {run_dir}: no NGen::simulation timing in its output")
    return float(m.group(1))


def _replay_us(run_dir: Path, cls, steps: int = 720, warm: int = 48) -> tuple[float, float | None]:
    """One catchment (cat-27) driven by bmi_bench's replay of the recorded calls, in this process: wall µs per
    catchment-step after ``warm`` steps, and for TimedBmi the same as its timings see it (the time inside the calls)."""
    import bmi_bench

    here = os.getcwd()
    os.chdir(run_dir)
    try:
        f = bmi_bench.hourly_forcing()
        p, t = f["precip_rate"].to_numpy(), f["TMP_2maboveground"].to_numpy()
        m = cls()
        m.initialize("config/cat-27.yaml")
        rep = bmi_bench.NgenReplay(m)
        timing = getattr(m, "_timing", None)  # TimedBmi's; None for the plain model
        inside0 = 0.0
        for i in range(steps):
            if i == warm:
                t0 = time.perf_counter()
                inside0 = sum(v[1] for v in (timing or {}).values())
            rep.step({bmi_bench.PRECIP: p[i % len(p)], bmi_bench.TEMP: t[i % len(t)]})
        wall = (time.perf_counter() - t0) / (steps - warm) * 1e6
        inside = None if timing is None else (sum(v[1] for v in timing.values()) - inside0) / (steps - warm) * 1e6
        return wall, inside
    finally:
        os.chdir(here)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ngen", required=True, help="the ngen binary (built with Python)")
    ap.add_argument("--runs", type=int, default=3, help="runs per stepping, alternated (default %(default)s)")
    ap.add_argument("--out", default=str(HERE / "results" / "ngen_inside"), help="output stem (.md, .json)")
    ap.add_argument("--calls-out", default=str(ROOT / "tests" / "data" / "ngen_calls_per_step.txt"),
                    help="where the recorded calls of one catchment-step go (default %(default)s)")
    args = ap.parse_args(argv)
    if not Path(args.ngen).is_file():
        ap.error(f"--ngen: expected the ngen binary, got {args.ngen!r} (no such file)")
    res = {s: {"sim_s": [], "plain_sim_s": [], "records": [], "replay": []} for s in STEPPINGS}
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(args.runs):
            for s in STEPPINGS:  # alternated, so both see the same machine load
                plain_dir = Path(tmp) / f"plain_{s}_{run}"
                _prepare(plain_dir, s, timed=False)  # ngen's loop without the timing
                res[s]["plain_sim_s"].append(_run(args.ngen, plain_dir, Path(tmp)))
                # what the timing adds, measured on the replay in this process: plain wall against timed inside
                (plain, _), (_, inside) = _replay_us(plain_dir, BmiDeltaModel), _replay_us(plain_dir, TimedBmi)
                res[s]["replay"].append({"plain_us": plain, "timed_inside_us": inside})
                run_dir, tdir = Path(tmp) / f"{s}_{run}", Path(tmp) / f"t_{s}_{run}"
                tdir.mkdir()
                _prepare(run_dir, s)
                res[s]["sim_s"].append(_run(args.ngen, run_dir, tdir))
                recs = [json.loads(p.read_text()) for p in sorted(tdir.glob("timing_*.json"))]
                if len(recs) != len(CATS):
                    raise RuntimeError(f"{s} run {run}: {len(recs)} timing records, expected {len(CATS)}")
                res[s]["records"].append(recs)
                print(f"{s} run {run + 1}/{args.runs}: NGen::simulation {res[s]['sim_s'][-1]:.3f} s", flush=True)
    summary = {}
    for s in STEPPINGS:
        steps = sum(len(r["update_s"]) for r in res[s]["records"][0])  # catchment-steps per run
        per_run = []
        for recs in res[s]["records"]:
            calls = {}
            for r in recs:
                for k, (c, t) in r["calls"].items():
                    calls.setdefault(k, [0, 0.0])
                    calls[k][0] += c
                    calls[k][1] += t
            upd = np.concatenate([np.asarray(r["update_s"][FIRST_DAY:]) for r in recs])
            first = sum(float(np.sum(r["update_s"][:FIRST_DAY])) for r in recs)
            per_run.append({"calls": calls, "update_steady_us_mean": float(upd.mean() * 1e6),
                            "update_steady_us_median": float(np.median(upd) * 1e6), "first_day_update_s": first})
        best = min(range(args.runs), key=lambda i: res[s]["sim_s"][i])
        overhead = float(np.median([r["timed_inside_us"] - r["plain_us"] for r in res[s]["replay"]]))
        summary[s] = {"catchment_steps": steps, "sim_s": res[s]["sim_s"], "plain_sim_s": res[s]["plain_sim_s"],
                      "best_run": best, **per_run[best], "replay": res[s]["replay"], "timing_overhead_us": overhead,
                      "steady_mean_us_all_runs": [p["update_steady_us_mean"] for p in per_run]}
    write_tables(summary, Path(args.out), args.runs)
    # the calls of one catchment-step, as ngen made them (tests/test_ngen_protocol.py and bmi_bench replay these)
    rec = next(r for r in res[STEPPINGS[-1]]["records"][0] if r["ids"] == [CATS[0]])
    info = subprocess.run([args.ngen, "--info"], capture_output=True, text=True).stdout
    version = info.splitlines()[:1]
    src = re.search(r"Source directory:\s*(\S+)", info)
    if src:  # the commit it was built from, where the source is a git checkout
        rev = subprocess.run(["git", "-C", src.group(1), "rev-parse", "--short=8", "HEAD"], capture_output=True, text=True)
        version += [f"(commit {rev.stdout.strip()})"] if rev.returncode == 0 else []
    head = [f"# the BMI calls ngen made into {CATS[0]} for one catchment-step (after update {CALL_LOG_AFTER}, up to and "
            f"including the next update), recorded by bench/bench_ngen_inside.py from {' '.join(version) or 'ngen'}",
            "# one call per line: the BMI method and, where it has one, the variable name"]
    atomic_write_text(Path(args.calls_out), "\n".join(head + rec["sequence"]) + "\n", "call sequence")
    print(f"wrote {args.calls_out} ({len(rec['sequence'])} calls per catchment-step)")
    return 0


def write_tables(summary: dict, out: Path, runs: int) -> None:
    steps = summary[STEPPINGS[0]]["catchment_steps"]
    names = sorted({k for s in STEPPINGS for k in summary[s]["calls"] if k not in ("initialize", "finalize")},
                   key=lambda k: -summary[STEPPINGS[-1]]["calls"].get(k, [0, 0.0])[1])
    lines = [f"# The model inside a real ngen run (`python bench/bench_ngen_inside.py --ngen NGEN`)", "",
             f"`examples/ngen` (cat-27/52/67, {steps // len(CATS)} hourly AORC steps, {steps} catchment-steps per run) in "
             f"a real ngen binary, every BMI call timed from inside the model (`TimedBmi`); {runs} runs per stepping, "
             "alternated; the run with the shortest `NGen::simulation` is tabulated. µs per catchment-step.", "",
             "| BMI method | calls per catchment-step | " + " | ".join(STEPPINGS) + " |",
             "|---|---|" + "---|" * len(STEPPINGS)]
    for k in names:
        c = summary[STEPPINGS[-1]]["calls"].get(k, summary[STEPPINGS[0]]["calls"].get(k))[0]
        lines.append(f"| `{k}` | {c / steps:.1f} | " + " | ".join(
            f"{summary[s]['calls'].get(k, [0, 0.0])[1] / steps * 1e6:.1f}" for s in STEPPINGS) + " |")
    tot = {s: sum(t for k, (c, t) in summary[s]["calls"].items() if k not in ("initialize", "finalize")) / steps * 1e6
           for s in STEPPINGS}
    lines.append("| **all calls into the model** | | " + " | ".join(f"**{tot[s]:.1f}**" for s in STEPPINGS) + " |")
    steady = {s: tot[s] - summary[s]["calls"]["update"][1] / steps * 1e6 + summary[s]["update_steady_us_mean"]
              for s in STEPPINGS}
    lines.append("| **all calls into the model, steady state** (`update` after the first day) | | " + " | ".join(
        f"**{steady[s]:.1f}**" for s in STEPPINGS) + " |")
    lines.append("| less what the timing adds inside the calls (measured on the replay, below) | | " + " | ".join(
        f"**{steady[s] - summary[s]['timing_overhead_us']:.1f}**" for s in STEPPINGS) + " |")
    lines.append("| `NGen::simulation` (ngen's whole loop, the whole run), timed model | | " + " | ".join(
        f"{summary[s]['sim_s'][summary[s]['best_run']] / steps * 1e6:.1f}" for s in STEPPINGS) + " |")
    lines.append("| `NGen::simulation`, the model untimed (fastest run) | | " + " | ".join(
        f"{min(summary[s]['plain_sim_s']) / steps * 1e6:.1f}" for s in STEPPINGS) + " |")
    lines += ["", "`update` in steady state (after each catchment's first day), µs: " + "; ".join(
        f"{s} mean {summary[s]['update_steady_us_mean']:.1f}, median {summary[s]['update_steady_us_median']:.1f} "
        f"(means of all runs: {', '.join(f'{v:.1f}' for v in summary[s]['steady_mean_us_all_runs'])})"
        for s in STEPPINGS) + ".", "",
        "The first day's updates (one-off imports and lazy initialization, paid once per process), s: " + "; ".join(
            f"{s} {summary[s]['first_day_update_s']:.3f}" for s in STEPPINGS) + ".", "",
        "`NGen::simulation`, s, every run (timed model): " + "; ".join(
            f"{s} {', '.join(f'{v:.3f}' for v in summary[s]['sim_s'])}" for s in STEPPINGS) + "; untimed model: "
        + "; ".join(f"{s} {', '.join(f'{v:.3f}' for v in summary[s]['plain_sim_s'])}" for s in STEPPINGS) + ".", "",
        "What the timing adds: the same recorded calls replayed in one process (`bench/bmi_bench.py`, cat-27, 672 steps "
        "after 48), µs per catchment-step, untimed wall against the time the timed model sees inside its calls, per run: "
        + "; ".join(f"{s} " + ", ".join(f"{r['plain_us']:.1f} / {r['timed_inside_us']:.1f}" for r in summary[s]["replay"])
                    + f" (median difference {summary[s]['timing_overhead_us']:.1f})" for s in STEPPINGS) + ".", ""]
    atomic_write_text(out.with_suffix(".md"), "\n".join(lines), "bench table")
    atomic_write_text(out.with_suffix(".json"), json.dumps(summary, indent=1), "bench results")
    print("\n".join(lines))


if __name__ == "__main__":
    raise SystemExit(main())
