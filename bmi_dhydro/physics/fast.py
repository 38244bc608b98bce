"""Fast HBV: a fused C++ time loop with a hand-derived, checkpointed backward, behind a torch autograd Function.

:func:`hbv_unroll` runs :func:`bmi_dhydro.physics.hbv.step` over a whole sequence and returns component means;
it is a drop-in for the physics loop of ``DeltaModel.unroll``::

    state, out = hbv_unroll(state, forcings, static, dynamic, capillary, outputs=("q", "et"))

* ``state`` — :class:`~bmi_dhydro.physics.hbv.HbvState`, each store ``(n, nmul)``;
* ``forcings`` — ``(T, n, 3)``: precipitation (mm per step), temperature (°C), PET (mm per step);
* ``static`` — parameter name → tensor broadcastable to ``(n, nmul)``;
* ``dynamic`` — parameter name → tensor broadcastable to ``(T, n, nmul)`` (time-varying parameters);
* every parameter already scaled to the step (:func:`~bmi_dhydro.physics.hbv.scale_rates`), as for ``step``;
* returns the end state (each ``(n, nmul)``) and ``outputs`` as component means ``(T, n)``: fluxes of the step
  (``q q0 q1 q2 et leak recharge excess perc capillary``, mm per step) and stores after it
  (``snowpack meltwater sm suz slz``, mm).

It is differentiable with respect to the initial state, the forcings and every parameter.  dtype (float32 or
float64) follows the inputs.

Engines (``engine=``):

* ``"fast"`` — the C++ kernel.  CPU tensors in float32/float64 only; raises ``RuntimeError`` with the reason when
  it cannot run.
* ``"eager"`` — a loop over :func:`~bmi_dhydro.physics.hbv.step` (the reference; any device and dtype).
* ``"auto"`` (default) — ``"fast"`` where it can run, otherwise ``"eager"``, logging the reason once (logger
  ``bmi_dhydro.physics.fast``).  ``BMI_DHYDRO_FAST=0`` in the environment switches the kernel off.

How the kernel works
--------------------
Every (unit, component) pair is an independent column.  Units are split over ``torch.get_num_threads()``
threads; each thread takes blocks of about 1024 columns and runs the whole time loop on a block, its stores
staying in L1/L2, one SIMD loop over the block's columns per step (so the (T, n, nmul) inputs stream through in
contiguous runs, prefetched a step ahead).  The arithmetic is the eager step's, in the same order and the same
precision (float32 data in float32, float64 in float64, no fused multiply-adds); only ``x**b`` is evaluated
differently, branch-free so the loops vectorise.  In float64 it is ``exp(b·log x)`` with a double-double exponent,
about 1 ulp like torch's own ``pow``.  In float32 it is ``2**(b·log2 x)`` from short polynomials (no division), a
few ulp plus the rounding of ``b·log2 x``: relative error about 1e-6 where the result is above 1e-3, results below
about 2.4e-38 flushed to 0, and ``1**b == 1`` exactly (the clamp after it needs its boundary); it is 2-3 times
cheaper than an extra-precision float32 ``pow`` and the two ``pow`` are most of the step's cost.  ``clamp``/``max``/
``min`` and the soil-moisture floor are the same operations, so mass balance holds exactly as in the eager step.
The per-block scratch rows are padded to an odd number of cache lines (rows 4 KiB apart stall every load behind
the previous row's store: "4K aliasing").

Backward (a hand-derived adjoint of the step, with torch's conventions at kinks: ``minimum`` splits the gradient
in half on ties, ``clamp`` passes it on the boundary, ``pow`` follows ``torch.pow``).  The forward pass stores
only the states at the start of every chunk of ``chunk`` steps (``5·n·nmul`` values per chunk).  The backward
pass walks the chunks backwards; for each unit it recomputes the chunk forward from its start state into a small
per-thread scratch (states and the ``pow``/``log`` values), then runs the adjoint backwards through the chunk.
Memory is therefore ``O(T/chunk · n · nmul)`` instead of the eager graph's dozens of tensors per step, and there
is no autograd graph per step.  The dynamic parameters' gradients (as large as the parameters)
are written once, straight into fresh buffers whose pages each thread faults in ahead for its own rows
(``MADV_POPULATE_WRITE``); a transparent huge-page advice was tried and cost more system time than 4 KiB faults at
1e5 units (bench/results/backward.md).  Keeping the forward's ``pow``/``log`` values for the backward was measured
and not kept: they are a third of the recompute, less than writing and faulting in the stored values costs.
Double backward is not supported.

The C++ source is in ``csrc/`` next to this file (``hbv_kernel.cpp``; the C ABI in ``hbv_kernel.h``).  At first use
``csrc/Makefile`` (where the build flags are) builds it once per machine with ``make`` and the system C++ compiler
(``$CXX``, else ``c++``/``g++``/``clang++``) into a cache folder (``$BMI_DHYDRO_CACHE``, else
``$XDG_CACHE_HOME/bmi_dhydro`` or ``~/.cache/bmi_dhydro``), under a name keyed on the sources, the compiler and
the CPU; the library is loaded with ctypes and needs no torch headers.  On load a short self-test compares it with
the eager step; a failure (no compiler, no ``make``, a compile error, a failed self-test) disables it, and
``engine="auto"`` falls back to the eager loop with the reason logged.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from .hbv import SM_FLOOR, VARIANT_PARAMS, HbvState, step

logger = logging.getLogger(__name__)

#: Parameter slots of the kernel, in its order.
KERNEL_PARAMS: tuple[str, ...] = (
    "BETA", "FC", "K0", "K1", "K2", "LP", "PERC", "UZL", "TT", "CFMAX", "CFR", "CWH", "BETAET", "C",
)
#: Outputs (component means per step) the kernel can produce, in its order.
FAST_OUTPUTS: tuple[str, ...] = (
    "q", "q0", "q1", "q2", "et", "leak", "recharge", "excess", "perc", "capillary",
    "snowpack", "meltwater", "sm", "suz", "slz",
)
STATE_FIELDS = ("snowpack", "meltwater", "sm", "suz", "slz")
ENGINES = ("auto", "fast", "eager")
#: Default number of steps between stored states in the backward pass.
DEFAULT_CHUNK = 64
_MAX_NMUL = 4096

_ABI_VERSION = 1
_NS, _NP, _NO = 5, len(KERNEL_PARAMS), len(FAST_OUTPUTS)


class _Args(ctypes.Structure):  # HbvArgs of csrc/hbv_kernel.h, field by field
    _fields_ = [
        ("n_t", ctypes.c_int64),
        ("n_units", ctypes.c_int64),
        ("nmul", ctypes.c_int64),
        ("chunk", ctypes.c_int64),
        ("n_threads", ctypes.c_int64),
        ("capillary", ctypes.c_int64),
        ("forcing", ctypes.c_void_p),
        ("state_in", ctypes.c_void_p * _NS),
        ("state_out", ctypes.c_void_p * _NS),
        ("param", ctypes.c_void_p * _NP),
        ("param_dynamic", ctypes.c_int64 * _NP),
        ("out", ctypes.c_void_p * _NO),
        ("ckpt", ctypes.c_void_p),
        ("g_out", ctypes.c_void_p * _NO),
        ("g_state_out", ctypes.c_void_p * _NS),
        ("g_state_in", ctypes.c_void_p * _NS),
        ("g_forcing", ctypes.c_void_p),
        ("g_param", ctypes.c_void_p * _NP),
    ]


# ----------------------------------------------------------------------------------------------------------------
# Build and load
# ----------------------------------------------------------------------------------------------------------------

_lock = threading.Lock()
_kernel: ctypes.CDLL | None = None
_kernel_error: str | None = None
_logged: set[str] = set()


def _cache_dir() -> Path:
    env = os.environ.get("BMI_DHYDRO_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "bmi_dhydro"


def _compiler() -> str | None:
    env = os.environ.get("CXX")
    if env:
        return shutil.which(env) or (env if Path(env).is_file() else None)
    for name in ("c++", "g++", "clang++"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _cpu_signature() -> str:
    """Identifies the instruction set the build targets (-march=native), so a shared cache never mixes CPUs."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith(("flags", "Features")):
                    return line.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


CSRC = Path(__file__).with_name("csrc")
#: what the build reads: a change to any of them is a new cache key
BUILD_FILES = ("hbv_kernel.cpp", "hbv_kernel.h", "Makefile")


def _make() -> str | None:
    return shutil.which(os.environ.get("MAKE") or "make")


def vector_width() -> str:
    """The kernel's vector width: ``BMI_DHYDRO_VECTOR_WIDTH`` (``auto``, ``256`` or ``512``); ``auto`` is 512 on CPUs
    with AVX-512 (x1.14 to x1.28 faster there, measured side by side, bit-identical outputs: bench/results/vector_width.md), else the compiler's
    default for ``-march=native`` (reported as 256)."""
    env = os.environ.get("BMI_DHYDRO_VECTOR_WIDTH", "auto").strip().lower() or "auto"
    if env not in ("auto", "256", "512"):
        raise RuntimeError(f"BMI_DHYDRO_VECTOR_WIDTH: expected auto, 256 or 512, got {env!r}")
    if env != "auto":
        return env
    return "512" if "avx512f" in _cpu_signature().split() else "256"


def _compile(make: str, cxx: str, out: Path, native: bool, csrc: Path = CSRC, width: str = "256") -> subprocess.CompletedProcess:
    """``make -C csrc CXX=... OUT=...`` (the flags are the Makefile's; ``HBV_ARCH=`` drops ``-march=native``; width
    512 adds ``HBV_VECWIDTH=-mprefer-vector-width=512`` to a native build)."""
    cmd = [make, "-C", str(csrc), f"CXX={cxx}", f"OUT={out}"] + ([] if native else ["HBV_ARCH=", "HBV_VECWIDTH="])
    if native and width == "512":
        cmd.append("HBV_VECWIDTH=-mprefer-vector-width=512")
    # a parent make's flags (e.g. -n, -e, variable overrides) must not change this build
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEFILES", "GNUMAKEFLAGS")}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)


def _build() -> ctypes.CDLL:
    if os.environ.get("BMI_DHYDRO_FAST", "1").strip().lower() in ("0", "false", "no", "off"):
        raise RuntimeError("switched off by BMI_DHYDRO_FAST=0")
    cxx = _compiler()
    if cxx is None:
        raise RuntimeError("no C++ compiler found (set CXX, or install g++ or clang++)")
    try:
        version = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise RuntimeError(f"C++ compiler {cxx} does not run: {exc}") from exc
    try:
        sources = [(CSRC / name).read_bytes() for name in BUILD_FILES]
    except OSError as exc:
        raise RuntimeError(f"the kernel sources are missing ({exc})") from exc
    width = vector_width()
    key = hashlib.sha256(b"\0".join([*sources, *(s.encode() for s in (cxx, version, _cpu_signature(), sys.platform, width))]))
    key = key.hexdigest()[:20]
    suffix = ".dll" if sys.platform == "win32" else ".so"
    cache = _cache_dir()
    candidates = [cache, Path(tempfile.gettempdir()) / f"bmi_dhydro-{os.getuid() if hasattr(os, 'getuid') else 'u'}"]
    last_error = ""
    for folder in candidates:
        lib_path = folder / f"hbv_kernel_{key}{suffix}"
        if not lib_path.is_file():
            if any(c.isspace() for c in str(folder)):
                last_error = f"cannot build the kernel in {folder}: make cannot take a path with spaces"
                continue
            make = _make()
            if make is None:
                raise RuntimeError(f"no make found to build the kernel from {CSRC} (install make, or set MAKE)")
            try:
                folder.mkdir(parents=True, exist_ok=True)
                with tempfile.TemporaryDirectory(dir=folder) as tmp:
                    tmp_lib = Path(tmp) / lib_path.name
                    res = _compile(make, cxx, tmp_lib, native=True, width=width)
                    if res.returncode != 0:
                        res = _compile(make, cxx, tmp_lib, native=False)
                    if res.returncode != 0:
                        raise RuntimeError(f"compiling the kernel with {cxx} failed:\n{res.stderr.strip()[-2000:]}")
                    os.replace(tmp_lib, lib_path)  # atomic: concurrent builders end with one complete file
            except OSError as exc:
                last_error = f"cannot write the kernel cache in {folder}: {exc}"
                continue
        lib = ctypes.CDLL(str(lib_path))
        lib.hbv_forward.argtypes = [ctypes.POINTER(_Args), ctypes.c_int]
        lib.hbv_forward.restype = ctypes.c_int
        lib.hbv_backward.argtypes = [ctypes.POINTER(_Args), ctypes.c_int]
        lib.hbv_backward.restype = ctypes.c_int
        lib.hbv_abi_version.restype = ctypes.c_int
        lib.hbv_args_size.restype = ctypes.c_int64
        for name in ("hbv_sm_floor", "hbv_pow_test", "hbv_pow_test_f", "hbv_log_test", "hbv_exp_test"):
            getattr(lib, name).restype = ctypes.c_double
        lib.hbv_pow_test.argtypes = [ctypes.c_double, ctypes.c_double]
        lib.hbv_pow_test_f.argtypes = [ctypes.c_double, ctypes.c_double]
        lib.hbv_log_test.argtypes = [ctypes.c_double]
        lib.hbv_exp_test.argtypes = [ctypes.c_double]
        if lib.hbv_abi_version() != _ABI_VERSION or lib.hbv_args_size() != ctypes.sizeof(_Args):
            raise RuntimeError(f"kernel {lib_path} does not match this version of bmi_dhydro (delete it to rebuild)")
        if lib.hbv_sm_floor() != SM_FLOOR:
            raise RuntimeError(f"kernel {lib_path}: HBV_SM_FLOOR {lib.hbv_sm_floor()!r} in hbv_kernel.h differs from "
                               f"bmi_dhydro.physics.hbv.SM_FLOOR {SM_FLOOR!r}")
        lib.path = str(lib_path)
        lib.vector_width = width
        return lib
    raise RuntimeError(last_error or "no writable cache folder for the kernel")


def _self_test() -> None:
    """A few steps on random columns against the eager step, forward and backward (float64)."""
    g = torch.Generator().manual_seed(12345)
    n, nmul, t_len = 3, 5, 6
    from .hbv import PARAM_BOUNDS, initial_state

    for capillary in (False, True):
        names = VARIANT_PARAMS["hbv1.1p" if capillary else "hbv1.0"]
        params = {}
        for k in names:
            lo, hi = PARAM_BOUNDS[k]
            params[k] = (lo + (hi - lo) * torch.rand(n, nmul, generator=g, dtype=torch.float64)).requires_grad_()
        forc = torch.stack([torch.rand(t_len, n, generator=g, dtype=torch.float64) * 30,
                            torch.randn(t_len, n, generator=g, dtype=torch.float64) * 5,
                            torch.rand(t_len, n, generator=g, dtype=torch.float64) * 8], -1).requires_grad_()
        s0 = initial_state(n, nmul, dtype=torch.float64)
        s0 = HbvState(*(s + 10.0 * torch.rand(n, nmul, generator=g, dtype=torch.float64) for s in s0))
        results = []
        for eng in ("eager", "fast"):
            st, out = hbv_unroll(s0, forc, params, {}, capillary, outputs=("q", "et", "sm"), engine=eng, chunk=4,
                                 _self_testing=True)
            loss = out["q"].sum() + 0.5 * out["et"].sum() + 0.01 * out["sm"].sum() + st.slz.sum()
            grads = torch.autograd.grad(loss, [forc, *params.values()])
            results.append((torch.cat([out["q"].flatten(), out["et"].flatten(), st.sm.flatten()]), grads))
        (v_e, g_e), (v_f, g_f) = results
        if not torch.allclose(v_e, v_f, rtol=1e-10, atol=1e-12):
            raise RuntimeError(f"self-test failed (capillary={capillary}): outputs differ from the eager step by "
                               f"{float((v_e - v_f).abs().max()):.3g}")
        for name, a, b in zip(("forcings", *params), g_e, g_f):
            if not torch.allclose(a, b, rtol=1e-9, atol=1e-11):
                raise RuntimeError(f"self-test failed (capillary={capillary}): gradient of {name} differs from the "
                                   f"eager step by {float((a - b).abs().max()):.3g}")


def load_kernel() -> ctypes.CDLL:
    """Build (once per machine) and load the kernel; raise RuntimeError with the reason when it is unavailable."""
    global _kernel, _kernel_error
    if _kernel is not None:
        return _kernel
    if _kernel_error is not None:
        raise RuntimeError(_kernel_error)
    with _lock:
        if _kernel is not None:
            return _kernel
        if _kernel_error is not None:
            raise RuntimeError(_kernel_error)
        try:
            lib = _build()
            _kernel = lib
            try:
                # the first use may come from inside no_grad/inference_mode (the BMI): the test needs autograd
                with torch.inference_mode(False), torch.enable_grad():
                    _self_test()
            except Exception:
                _kernel = None
                raise
            logger.debug("fast HBV kernel loaded from %s", lib.path)
        except Exception as exc:  # noqa: BLE001 - any failure means: not available, say why
            _kernel_error = f"fast HBV kernel unavailable: {exc}"
            raise RuntimeError(_kernel_error) from None
    return _kernel


def kernel_available() -> tuple[bool, str]:
    """(True, path of the loaded library) or (False, the reason)."""
    try:
        lib = load_kernel()
    except RuntimeError as exc:
        return False, str(exc)
    return True, lib.path


def _log_once(reason: str) -> None:
    if reason not in _logged:
        _logged.add(reason)
        logger.warning("HBV physics: using the eager engine: %s", reason)


def _fast_unsupported(forcings: torch.Tensor, nmul: int) -> str | None:
    if forcings.device.type != "cpu":
        return f"the fast kernel runs on CPU tensors; these are on {forcings.device}"
    if forcings.dtype not in (torch.float32, torch.float64):
        return f"the fast kernel supports float32 and float64; got {forcings.dtype}"
    if nmul > _MAX_NMUL:
        return f"the fast kernel supports nmul <= {_MAX_NMUL}; got {nmul}"
    return None


def resolve_engine(engine: str, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                   nmul: int = 1) -> tuple[str, str]:
    """The engine that ``engine`` selects for tensors on ``device`` in ``dtype``: ("fast" | "eager", reason)."""
    if engine not in ENGINES:
        raise ValueError(f"engine: expected one of {list(ENGINES)}, got {engine!r}")
    if engine == "eager":
        return "eager", "selected"
    probe = torch.empty(0, device=device, dtype=dtype)
    reason = _fast_unsupported(probe, nmul)
    if reason is None:
        ok, why = kernel_available()
        if ok:
            return "fast", why
        reason = why
    if engine == "fast":
        raise RuntimeError(f"engine 'fast' cannot run: {reason}")
    return "eager", reason


# ----------------------------------------------------------------------------------------------------------------
# Autograd
# ----------------------------------------------------------------------------------------------------------------

_DT_CODE = {torch.float32: 0, torch.float64: 1}


def _ptr(t: torch.Tensor | None):
    return None if t is None else t.data_ptr()


def _fill_args(n_t, n, nmul, chunk, capillary, forcing, states, params, dyn_flags) -> _Args:
    a = _Args()
    a.n_t, a.n_units, a.nmul, a.chunk = n_t, n, nmul, chunk
    a.n_threads = max(1, torch.get_num_threads()) if n_t * n * nmul >= 32768 else 1
    a.capillary = 1 if capillary else 0
    a.forcing = forcing.data_ptr()
    a.state_in[:] = [s.data_ptr() for s in states]
    a.param[:] = [t.data_ptr() for t in params]
    a.param_dynamic[:] = dyn_flags
    return a


def _run(lib_fn, args: _Args, dtype: torch.dtype, what: str) -> None:
    rc = lib_fn(ctypes.byref(args), _DT_CODE[dtype])
    if rc != 0:
        raise RuntimeError(f"fast HBV kernel: {what} failed (code {rc}; out of memory?)")


def _kernel_forward(forcing, states, params, dyn_flags, capillary, out_mask, chunk, keep_ckpt):
    lib = load_kernel()
    n_t, n, _ = forcing.shape
    nmul = states[0].shape[1]
    dtype = forcing.dtype
    args = _fill_args(n_t, n, nmul, chunk, capillary, forcing, states, params, dyn_flags)
    wanted = [o for o in range(_NO) if out_mask[o]]
    if keep_ckpt:  # autograd outputs: separate tensors
        new_states = [torch.empty((n, nmul), dtype=dtype) for _ in range(_NS)]
        outs = [torch.empty((n_t, n), dtype=dtype) for _ in wanted]
    else:  # inference: two allocations (this path also serves one-step calls, where overhead counts)
        new_states = list(torch.empty((_NS, n, nmul), dtype=dtype).unbind(0))
        outs = list(torch.empty((len(wanted), n_t, n), dtype=dtype).unbind(0)) if wanted else []
    args.state_out[:] = [s.data_ptr() for s in new_states]
    for o, t in zip(wanted, outs):
        args.out[o] = t.data_ptr()
    ckpt = None
    if keep_ckpt:
        ckpt = torch.empty(((n_t + chunk - 1) // chunk, _NS, n, nmul), dtype=dtype)
        args.ckpt = ckpt.data_ptr()
    _run(lib.hbv_forward, args, dtype, "forward")
    return new_states, outs, ckpt


class _HbvUnroll(torch.autograd.Function):
    """Inputs: (meta, forcing, 5 states, 14 params); outputs: 5 end states then the requested means."""

    @staticmethod
    def forward(ctx, meta, forcing, *tensors):
        capillary, out_mask, dyn_flags, chunk = meta
        states, params = tensors[:_NS], tensors[_NS:]
        new_states, outs, ckpt = _kernel_forward(forcing, states, params, dyn_flags, capillary, out_mask, chunk, True)
        ctx.meta = meta
        ctx.save_for_backward(forcing, ckpt, *params)
        ctx.set_materialize_grads(False)
        return (*new_states, *outs)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, *grads):
        capillary, out_mask, dyn_flags, chunk = ctx.meta
        forcing, ckpt, *params = ctx.saved_tensors
        lib = load_kernel()
        n_t, n, _ = forcing.shape
        nmul = ckpt.shape[-1]
        dtype = forcing.dtype
        # the states at chunk starts stand in for the initial state (chunk 0 holds it)
        dummy_states = [ckpt[0, k] for k in range(_NS)]
        args = _fill_args(n_t, n, nmul, chunk, capillary, forcing, dummy_states, params, dyn_flags)
        args.ckpt = ckpt.data_ptr()
        g_states_out, g_outs = grads[:_NS], grads[_NS:]
        keep = []
        for k, g in enumerate(g_states_out):
            if g is not None:
                g = g.contiguous()
                keep.append(g)
                args.g_state_out[k] = g.data_ptr()
        j = 0
        for o in range(_NO):
            if out_mask[o]:
                g = g_outs[j]
                j += 1
                if g is not None:
                    g = g.contiguous()
                    keep.append(g)
                    args.g_out[o] = g.data_ptr()
        need = ctx.needs_input_grad  # (meta, forcing, states..., params...)
        g_forcing = torch.empty_like(forcing) if need[1] else None
        args.g_forcing = _ptr(g_forcing)
        g_states = [torch.empty((n, nmul), dtype=dtype) if need[2 + k] else None for k in range(_NS)]
        for k, g in enumerate(g_states):
            args.g_state_in[k] = _ptr(g)
        # every element is written once by the kernel (no zero fill); the kernel's threads fault in the pages of
        # the dynamic parameters' gradients, their own rows each (MADV_POPULATE_WRITE)
        g_params = [torch.empty_like(p) if need[2 + _NS + i] else None
                    for i, p in enumerate(params)]
        for i, g in enumerate(g_params):
            args.g_param[i] = _ptr(g)
        _run(lib.hbv_backward, args, dtype, "backward")
        return (None, g_forcing, *g_states, *g_params)


# ----------------------------------------------------------------------------------------------------------------
# Public entry points
# ----------------------------------------------------------------------------------------------------------------


def _eager_unroll(state: HbvState, forcings, static, dynamic, capillary, outputs):
    """The reference: a loop over physics.hbv.step, collecting component means."""
    flux_names = {"q", "q0", "q1", "q2", "et", "leak", "recharge", "excess", "perc", "capillary"}
    collected = {k: [] for k in outputs}
    st = state
    for t in range(forcings.shape[0]):
        params = dict(static)
        for k, v in dynamic.items():
            params[k] = v[t]
        st, fl = step(st, forcings[t, :, 0], forcings[t, :, 1], forcings[t, :, 2], params, capillary=capillary)
        for k in outputs:
            src = getattr(fl, k) if k in flux_names else getattr(st, k)
            collected[k].append(src.mean(-1))
    n = forcings.shape[1]
    out = {k: torch.stack(v) if v else forcings.new_zeros((0, n)) for k, v in collected.items()}
    return st, out


def _full(v: torch.Tensor, shape: tuple, dtype: torch.dtype) -> torch.Tensor:
    """``v`` as a contiguous ``shape`` tensor of ``dtype`` (no copy when it already is one)."""
    if v.dtype != dtype:
        v = v.to(dtype)
    if tuple(v.shape) != shape:
        v = v.expand(shape)
    if not v.is_contiguous():
        v = v.contiguous()
    return v


def _broadcastable(shape: tuple, target: tuple) -> bool:
    if shape == target:
        return True
    if len(shape) > len(target):
        return False
    return all(a == b or a == 1 for a, b in zip(reversed(shape), reversed(target)))


def _check_inputs(state, forcings, static, dynamic, capillary, outputs):
    if not isinstance(forcings, torch.Tensor) or forcings.dim() != 3 or forcings.shape[-1] != 3:
        shape = tuple(forcings.shape) if isinstance(forcings, torch.Tensor) else type(forcings).__name__
        raise ValueError(f"forcings: expected a (time, n_units, 3) tensor of precipitation, temperature and PET, got {shape}")
    if not forcings.is_floating_point():
        raise TypeError(f"forcings: expected a floating-point tensor, got {forcings.dtype}")
    n_t, n, _ = forcings.shape
    if not isinstance(state, tuple) or len(state) != _NS:
        raise TypeError(f"state: expected an HbvState of {_NS} stores, got {type(state).__name__}")
    nmul = None
    for name, s in zip(STATE_FIELDS, state):
        if not isinstance(s, torch.Tensor) or s.dim() != 2 or s.shape[0] != n:
            shape = tuple(s.shape) if isinstance(s, torch.Tensor) else type(s).__name__
            raise ValueError(f"state.{name}: expected an (n_units={n}, nmul) tensor, got {shape}")
        if nmul is None:
            nmul = s.shape[1]
        elif s.shape[1] != nmul:
            raise ValueError(f"state.{name}: expected nmul={nmul} components like state.snowpack, got {s.shape[1]}")
    if nmul < 1:
        raise ValueError("state: expected at least one component (nmul >= 1), got 0")
    names = VARIANT_PARAMS["hbv1.1p" if capillary else "hbv1.0"]
    both = sorted(set(static) & set(dynamic))
    if both:
        raise ValueError(f"parameters {both} are given both as static and as dynamic; give each once")
    unknown = sorted((set(static) | set(dynamic)) - set(KERNEL_PARAMS))
    if unknown:
        raise ValueError(f"parameters: unknown names {unknown}; expected among {list(KERNEL_PARAMS)}")
    missing = [p for p in names if p not in static and p not in dynamic]
    if missing:
        raise ValueError(f"parameters: missing {missing} (the {'hbv1.1p' if capillary else 'hbv1.0'} physics needs {list(names)})")
    for p, v in static.items():
        if not isinstance(v, torch.Tensor):
            raise TypeError(f"parameter {p}: expected a tensor broadcastable to (n_units={n}, nmul={nmul}), got {type(v).__name__}")
        if not _broadcastable(tuple(v.shape), (n, nmul)):
            raise ValueError(f"parameter {p} (static): expected a shape broadcastable to (n_units={n}, nmul={nmul}), got {tuple(v.shape)}")
    for p, v in dynamic.items():
        if not isinstance(v, torch.Tensor):
            raise TypeError(f"parameter {p}: expected a tensor broadcastable to (time={n_t}, n_units={n}, nmul={nmul}), got {type(v).__name__}")
        if v.dim() != 3 or not _broadcastable(tuple(v.shape), (n_t, n, nmul)):
            raise ValueError(f"parameter {p} (dynamic): expected a (time={n_t}, n_units={n}, nmul={nmul}) tensor, got {tuple(v.shape)}")
    bad = [o for o in outputs if o not in FAST_OUTPUTS]
    if bad:
        raise ValueError(f"outputs: unknown names {bad}; expected among {list(FAST_OUTPUTS)}")
    return n_t, n, nmul


def hbv_unroll(
    state: HbvState,
    forcings: torch.Tensor,
    static: Mapping[str, torch.Tensor],
    dynamic: Mapping[str, torch.Tensor] | None = None,
    capillary: bool = False,
    *,
    outputs: Sequence[str] = ("q",),
    engine: str = "auto",
    chunk: int = DEFAULT_CHUNK,
    _self_testing: bool = False,
) -> tuple[HbvState, dict[str, torch.Tensor]]:
    """Run the HBV step over ``forcings`` (T, n, 3); see the module docstring.

    Returns ``(end_state, {name: (T, n) component mean})`` for each name in ``outputs`` (see :data:`FAST_OUTPUTS`).
    """
    dynamic = {} if dynamic is None else dict(dynamic)
    static = dict(static)
    outputs = tuple(outputs)
    n_t, n, nmul = _check_inputs(state, forcings, static, dynamic, capillary, outputs)
    if not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk: expected a positive number of steps, got {chunk!r}")
    if engine not in ENGINES:
        raise ValueError(f"engine: expected one of {list(ENGINES)}, got {engine!r}")

    if engine == "eager":
        return _eager_unroll(state, forcings, static, dynamic, capillary, outputs)
    reason = _fast_unsupported(forcings, nmul)
    if reason is None and not _self_testing:
        try:
            load_kernel()
        except RuntimeError as exc:
            reason = str(exc)
    if reason is not None:
        if engine == "fast":
            raise RuntimeError(f"engine 'fast' cannot run: {reason}")
        _log_once(reason)
        return _eager_unroll(state, forcings, static, dynamic, capillary, outputs)

    # common dtype (as eager type promotion would give), contiguous, full shapes
    dtype = forcings.dtype
    for v in (*state, *static.values(), *dynamic.values()):
        if v.dtype is not dtype:
            dtype = torch.promote_types(dtype, v.dtype)
    if dtype not in _DT_CODE:
        raise TypeError(f"parameters/state: expected float32 or float64 tensors, got {dtype}")
    forc = _full(forcings, (n_t, n, 3), dtype)
    states = [_full(s, (n, nmul), dtype) for s in state]
    params, flags = [], []
    for p in KERNEL_PARAMS:
        if p in dynamic:
            params.append(_full(dynamic[p], (n_t, n, nmul), dtype))
            flags.append(1)
        elif p in static:
            params.append(_full(static[p], (n, nmul), dtype))
            flags.append(0)
        else:  # C without capillary rise: never read
            params.append(states[0])
            flags.append(0)
    out_mask = tuple(1 if o in outputs else 0 for o in FAST_OUTPUTS)
    inputs = [forc, *states, *params]
    grad = torch.is_grad_enabled() and any(t.requires_grad for t in inputs)
    if n_t == 0:
        new_states = [s.clone() for s in states]
        outs = [forc.new_zeros((0, n)) for o in FAST_OUTPUTS if o in outputs]
    elif grad:
        meta = (bool(capillary), out_mask, tuple(flags), min(chunk, n_t))
        res = _HbvUnroll.apply(meta, *inputs)
        new_states, outs = list(res[:_NS]), list(res[_NS:])
    else:
        new_states, outs, _ = _kernel_forward(forc, states, params, flags, capillary, out_mask, min(chunk, n_t), False)
    kernel_order = [o for o in FAST_OUTPUTS if o in outputs]
    by_name = dict(zip(kernel_order, outs))
    return HbvState(*new_states), {o: by_name[o] for o in outputs}


class OneStep:
    """Repeated single inference steps of the fused kernel on numpy arrays, the call's arguments prepared once.

    For a tiny problem stepping often (the BMI's hourly stepping of one catchment), where building tensors and
    arguments per call would cost more than the step.  ``static``: name -> (n, nmul) per-step parameters (already
    scaled), ``dynamic``: the names given per step.  :meth:`step` returns the five new states (fresh arrays; the
    inputs are never written) and the component means of q, et, leak and the stores: the numbers of
    :func:`hbv_unroll` over one step."""

    OUTPUTS = ("q", "et", "leak") + STATE_FIELDS

    def __init__(self, static: Mapping[str, np.ndarray], dynamic: Sequence[str], n: int, nmul: int, dtype,
                 capillary: bool, state_in: np.ndarray | None = None):
        """``state_in``: a (5, n, nmul) array of ``dtype`` the kernel reads the states from, shared with other
        instances (callers loading one state into several: :meth:`run_unit`); by default its own."""
        self.lib = load_kernel()
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise TypeError(f"OneStep: expected float32 or float64, got {self.dtype}")
        self.code = _DT_CODE[torch.float64 if self.dtype == np.float64 else torch.float32]
        self.n, self.nmul = n, nmul
        a = self.args = _Args()
        a.n_t, a.n_units, a.nmul, a.chunk, a.n_threads, a.capillary = 1, n, nmul, 1, 1, 1 if capillary else 0
        self.forcing = np.zeros((1, n, 3), self.dtype)
        a.forcing = self.forcing.ctypes.data
        self._keep, self.dyn_buf, self._dyn_src = [], {}, None
        for i, p in enumerate(KERNEL_PARAMS):
            if p in dynamic:
                buf = self.dyn_buf[p] = np.zeros((1, n, nmul), self.dtype)
            elif p in static:
                buf = np.ascontiguousarray(np.asarray(static[p], dtype=self.dtype).reshape(n, nmul))
            else:  # C without capillary rise: never read
                buf = np.zeros((n, nmul), self.dtype)
            self._keep.append(buf)
            a.param[i] = buf.ctypes.data
            a.param_dynamic[i] = 1 if p in dynamic else 0
        self.out = np.zeros((len(self.OUTPUTS), 1, n), self.dtype)
        for j, o in enumerate(self.OUTPUTS):
            a.out[FAST_OUTPUTS.index(o)] = self.out[j].ctypes.data
        # fixed state blocks: the pointers are set once; step() copies the states in and the new states out
        if state_in is not None and (state_in.shape != (_NS, n, nmul) or state_in.dtype != self.dtype
                                     or not state_in.flags.c_contiguous):
            raise ValueError(f"OneStep: state_in expected a C-contiguous {(_NS, n, nmul)} {self.dtype} array, got "
                             f"{state_in.shape} {state_in.dtype}")
        self.s_in = np.zeros((_NS, n, nmul), self.dtype) if state_in is None else state_in
        self.s_out = np.zeros((_NS, n, nmul), self.dtype)
        a.state_in[:] = [self.s_in[k].ctypes.data for k in range(_NS)]
        a.state_out[:] = [self.s_out[k].ctypes.data for k in range(_NS)]
        self._argref = ctypes.byref(a)
        self._forcing0 = self.forcing[0, 0]  # unit 0's (P, T, PET), a view
        self._out0 = self.out[:, 0, 0]  # unit 0's outputs, a view

    def _set_dynamic(self, dynamic: Mapping[str, np.ndarray] | None) -> None:
        if dynamic is not None and dynamic is not self._dyn_src:
            for p, v in dynamic.items():
                self.dyn_buf[p][0] = v
            self._dyn_src = dynamic

    def run_unit(self, p: float, t: float, pet: float, dynamic: Mapping[str, np.ndarray] | None = None) -> list:
        """One step of a single unit (``n == 1``) from the states already in ``s_in`` (loaded by the caller, e.g.
        through a shared ``state_in``) on the forcing ``p`` mm, ``t`` degC, ``pet`` mm, with no copies: the
        component means ``[q, et, leak, *stores]`` (:attr:`OUTPUTS`) as Python floats, the numbers of :meth:`step`.
        The new states stay in ``s_out`` until the next call."""
        if self.n != 1:
            raise ValueError(f"OneStep.run_unit: expected one unit, this kernel steps {self.n}")
        f = self._forcing0
        f[0] = p
        f[1] = t
        f[2] = pet
        self._set_dynamic(dynamic)
        rc = self.lib.hbv_forward(self._argref, self.code)
        if rc != 0:
            raise RuntimeError(f"fast HBV kernel: one step failed (code {rc})")
        return self._out0.tolist()

    def step(self, states: Sequence[np.ndarray], forcing: np.ndarray, dynamic: Mapping[str, np.ndarray] | None = None):
        """``dynamic``: copied in when it is another mapping than the last call's (a caller stepping hourly passes
        the same mapping all day and a new one each day; it must not change a mapping's arrays in place)."""
        self.forcing[0] = forcing
        self._set_dynamic(dynamic)
        self.s_in[...] = states  # the five (n, nmul) states in one copy
        rc = self.lib.hbv_forward(self._argref, self.code)
        if rc != 0:
            raise RuntimeError(f"fast HBV kernel: one step failed (code {rc})")
        return list(self.s_out.copy()), dict(zip(self.OUTPUTS, self.out[:, 0, :].copy()))


__all__ = [
    "OneStep",
    "DEFAULT_CHUNK",
    "ENGINES",
    "FAST_OUTPUTS",
    "KERNEL_PARAMS",
    "hbv_unroll",
    "kernel_available",
    "load_kernel",
    "resolve_engine",
]
