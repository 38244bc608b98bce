"""Building the fused HBV kernel from its files (bmi_dhydro/physics/csrc), and the fallback when it cannot be built.

Each test gives the loader a fresh state and an empty cache folder, so nothing built earlier is reused; the
module's state is restored afterwards (monkeypatch), so the rest of the suite keeps its loaded kernel.
"""

from __future__ import annotations

import logging
import os
import stat

import pytest
import torch

from bmi_dhydro import physics
from bmi_dhydro.physics import fast


@pytest.fixture
def fresh_loader(monkeypatch, tmp_path):
    monkeypatch.setattr(fast, "_kernel", None)
    monkeypatch.setattr(fast, "_kernel_error", None)
    monkeypatch.setattr(fast, "_logged", set())
    monkeypatch.delenv("BMI_DHYDRO_FAST", raising=False)
    monkeypatch.setenv("BMI_DHYDRO_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def problem(dtype=torch.float64):
    g = torch.Generator().manual_seed(3)
    n, nmul, t_len = 4, 3, 12
    params = {}
    for k in physics.VARIANT_PARAMS["hbv1.0"]:
        lo, hi = physics.PARAM_BOUNDS[k]
        params[k] = lo + (hi - lo) * torch.rand(n, nmul, generator=g, dtype=dtype)
    forc = torch.stack([torch.rand(t_len, n, generator=g, dtype=dtype) * 20,
                        torch.randn(t_len, n, generator=g, dtype=dtype) * 6,
                        torch.rand(t_len, n, generator=g, dtype=dtype) * 4], -1)
    return physics.initial_state(n, nmul, dtype=dtype), forc, params


def fallback_reason(caplog) -> str:
    msgs = [r.getMessage() for r in caplog.records if "using the eager engine" in r.getMessage()]
    assert len(msgs) == 1, caplog.text  # logged, and once
    return msgs[0]


def test_without_a_compiler_auto_runs_eager_and_logs_why(fresh_loader, monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-c++"))
    caplog.set_level(logging.WARNING, logger="bmi_dhydro.physics.fast")
    state, forc, params = problem()
    end, out = fast.hbv_unroll(state, forc, params, {}, False, outputs=("q", "et"), engine="auto")
    fast.hbv_unroll(state, forc, params, {}, False, outputs=("q",), engine="auto")  # a second call logs nothing new
    ref_end, ref = fast.hbv_unroll(state, forc, params, {}, False, outputs=("q", "et"), engine="eager")
    assert torch.equal(out["q"], ref["q"]) and torch.equal(out["et"], ref["et"]) and torch.equal(end.sm, ref_end.sm)
    assert "no C++ compiler found" in fallback_reason(caplog)
    with pytest.raises(RuntimeError, match=r"engine 'fast' cannot run.*no C\+\+ compiler found"):
        fast.hbv_unroll(state, forc, params, {}, False, engine="fast")
    assert fast.kernel_available() == (False, "fast HBV kernel unavailable: no C++ compiler found (set CXX, or install "
                                              "g++ or clang++)")
    assert not fresh_loader.exists()  # nothing was built


def fake_compiler(tmp_path, log) -> str:
    """A 'compiler' that answers --version, records its arguments and fails like a compile error."""
    path = tmp_path / "fake-c++"
    path.write_text("#!/bin/sh\n"
                    'if [ "$1" = "--version" ]; then echo "fake c++ 0.1"; exit 0; fi\n'
                    f'echo "$@" >> "{log}"\n'
                    'echo "hbv_kernel.cpp:1:1: error: the fake compiler refuses" >&2\n'
                    "exit 1\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


@pytest.mark.skipif(fast._make() is None, reason="needs make")
def test_the_makefile_is_the_build_and_a_compile_error_is_reported(fresh_loader, monkeypatch, tmp_path, caplog):
    log = tmp_path / "calls.txt"
    monkeypatch.setenv("CXX", fake_compiler(tmp_path, log))
    caplog.set_level(logging.WARNING, logger="bmi_dhydro.physics.fast")
    state, forc, params = problem(torch.float32)
    _, out = fast.hbv_unroll(state, forc, params, {}, False, outputs=("q",), engine="auto")
    assert out["q"].dtype == torch.float32 and torch.isfinite(out["q"]).all()
    reason = fallback_reason(caplog)
    assert "compiling the kernel with" in reason and "the fake compiler refuses" in reason
    # the compiler saw the Makefile's flags and the kernel's file; the retry drops -march=native
    native, portable = log.read_text().splitlines()
    makefile = (fast.CSRC / "Makefile").read_text()
    for flag in ("-ffp-contract=off", "-O3", "-std=c++17", "-shared", "-fPIC"):
        assert flag in makefile and flag in native.split() and flag in portable.split()
    assert "hbv_kernel.cpp" in native.split()
    assert "-march=native" in native.split() and "-march=native" not in portable.split()
    assert not list(fresh_loader.glob("*.so"))  # a failed build leaves no library behind


def test_without_make_the_reason_says_so(fresh_loader, monkeypatch, tmp_path, caplog):
    if fast._compiler() is None:
        pytest.skip("needs a C++ compiler (the compiler is checked first)")
    monkeypatch.setenv("MAKE", str(tmp_path / "no-such-make"))
    ok, why = fast.kernel_available()
    assert not ok and "no make found" in why and str(fast.CSRC) in why


def test_the_kernel_sources_ship_as_files():
    for name in fast.BUILD_FILES:
        assert (fast.CSRC / name).is_file(), name
    header = (fast.CSRC / "hbv_kernel.h").read_text()
    assert f"#define HBV_ABI_VERSION {fast._ABI_VERSION}" in header
    assert f"#define HBV_NP {len(fast.KERNEL_PARAMS)}" in header and f"#define HBV_NO {len(fast.FAST_OUTPUTS)}" in header
    assert os.path.getsize(fast.CSRC / "hbv_kernel.cpp") > 10_000


def test_a_bad_vector_width_setting_is_named(fresh_loader, monkeypatch):
    monkeypatch.setenv("BMI_DHYDRO_VECTOR_WIDTH", "1024")
    with pytest.raises(RuntimeError, match=r"BMI_DHYDRO_VECTOR_WIDTH: expected auto, 256 or 512, got '1024'"):
        fast.vector_width()


def test_the_512_bit_request_reaches_the_compiler_only_in_the_native_build(fresh_loader, monkeypatch, tmp_path):
    log = tmp_path / "calls.txt"
    monkeypatch.setenv("CXX", fake_compiler(tmp_path, log))
    monkeypatch.setenv("BMI_DHYDRO_VECTOR_WIDTH", "512")
    state, forc, params = problem(torch.float32)
    fast.hbv_unroll(state, forc, params, {}, False, outputs=("q",), engine="auto")
    native, portable = log.read_text().splitlines()
    assert "-mprefer-vector-width=512" in native.split() and "-mprefer-vector-width=512" not in portable.split()


def test_256_and_512_bit_builds_give_identical_outputs_and_gradients(fresh_loader, monkeypatch, tmp_path):
    """-mprefer-vector-width changes only how many lanes a loop uses, never the arithmetic (-ffp-contract=off):
    both builds, each in its own cache, must agree bit for bit, forward and backward, float32 and float64."""
    if not fast.kernel_available()[0]:
        pytest.skip("needs the fused kernel (a C++ compiler and make)")
    g = torch.Generator().manual_seed(11)
    n, nmul, t_len = 37, 16, 40  # 592 lanes: full 16-wide vectors and a remainder
    results = {}
    for width in ("256", "512"):
        monkeypatch.setattr(fast, "_kernel", None)
        monkeypatch.setattr(fast, "_kernel_error", None)
        monkeypatch.setenv("BMI_DHYDRO_VECTOR_WIDTH", width)
        monkeypatch.setenv("BMI_DHYDRO_CACHE", str(tmp_path / f"cache{width}"))
        lib = fast.load_kernel()
        assert lib.vector_width == width and f"cache{width}" in lib.path
        for dtype in (torch.float32, torch.float64):
            g.manual_seed(11)
            params = {}
            for k in physics.VARIANT_PARAMS["hbv1.0"]:
                lo, hi = physics.PARAM_BOUNDS[k]
                params[k] = (lo + (hi - lo) * torch.rand(n, nmul, generator=g, dtype=dtype)).requires_grad_()
            forc = torch.stack([torch.rand(t_len, n, generator=g, dtype=dtype) * 20,
                                torch.randn(t_len, n, generator=g, dtype=dtype) * 6,
                                torch.rand(t_len, n, generator=g, dtype=dtype) * 4], -1)
            state = physics.initial_state(n, nmul, dtype=dtype)
            _, out = fast.hbv_unroll(state, forc, params, {}, False, outputs=("q",), engine="fast")
            out["q"].pow(2).sum().backward()
            results[(width, dtype)] = [out["q"].detach()] + [params[k].grad for k in sorted(params)]
    for dtype in (torch.float32, torch.float64):
        for a, b in zip(results[("256", dtype)], results[("512", dtype)]):
            assert torch.equal(a, b), (dtype, float((a - b).abs().max()))
