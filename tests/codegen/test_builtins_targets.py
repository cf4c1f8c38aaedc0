"""Issue 14's builtins compiled: every one on the CPU target and on PoCL (OpenCL)
against the interpreter, in float and double, over a spread of arguments with the
edge values (0, -0, negatives, half-integers, the crossovers of the helpers'
algorithms, huge values, infinities, NaN); and compiled by NVRTC for CUDA, where all
of them are the math library's (no GPU here to run them).

One definition holds all twenty builtins (one build per target and type): PoCL
builds are slow. Float results are compared at the compiled tests' usual tolerances
(glibc's ``j0f``... are within 3e-7 of the interpreter's rounded double values);
double ones at 1e-12 relative and 1e-14 absolute (the Bessel functions J and Y near
their zeros), where the helpers measure 5e-14 and 7e-15 at worst.
"""

from __future__ import annotations

import re

import pytest
import torch
from kernel_checks import assert_same

import tc
from codegen import math_helpers

UNARY = "cospi sinpi cyl_bessel_i0 cyl_bessel_i1 erfcx j0 j1 y0 y1 logb normcdf normcdfinv".split()
BINARY = "fdivide nextafter remainder rhypot".split()
LINES = ([f"U_{f}(i) = {f}(X(i))" for f in UNARY]
         + [f"B_{f}(i) = {f}(X(i), Y(i))" for f in BINARY]
         + ["N_norm3d(i) = norm3d(X(i), Y(i), X(i) * 0.5)",
            "N_rnorm3d(i) = rnorm3d(X(i), Y(i), X(i) * 0.5)",
            "N_norm4d(i) = norm4d(X(i), Y(i), 3.0, X(i))",
            "N_rnorm4d(i) = rnorm4d(X(i), 0.25, Y(i), X(i))"])
OUTPUTS = [line.split("(")[0] for line in LINES]
assert sorted(o.partition("_")[2] for o in OUTPUTS) == sorted(math_helpers.EXTRA_MATH)


def text(dtype: str) -> str:
    return (f"def all20({dtype}(N) X, {dtype}(N) Y) -> ({', '.join(OUTPUTS)}) {{\n    "
            + "\n    ".join(LINES) + "\n}")


INF, NAN = float("inf"), float("nan")
EDGES = [0.0, -0.0, 0.5, 1.0, -1.0, 1.5, 2.0, -2.5, 0.25, 0.1, 0.9999, 1e-3, 0.999, 3.7, 7.9,
         8.1, 0.99999, 1.00001, 12.3, 16.0, 24.99, 25.01, 29.9, 30.1, 40.0, 100.3, 700.0,
         713.0, 1e4, 1e6, 1e10, 1e30, -3.7, -30.5, -27.0, -26.5, -40.0, 1e-30, 0.5 + 1e-7,
         0.75, 1 - 1e-7, INF, -INF, NAN, 5.5, -6.0]


def arguments(dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    values = EDGES + [-30 + 0.2 * k for k in range(301)]  # 347 values: an odd size
    x = torch.tensor(values, dtype=dtype)
    return x, torch.flip(x, [0])


@pytest.mark.parametrize("dtype", ["float", "double"])
def test_every_new_builtin_matches_the_interpreter(target: str, dtype: str) -> None:
    t = torch.float32 if dtype == "float" else torch.float64
    x, y = arguments(t)
    want = tc.define(text(dtype), backend="reference").all20(x, y)
    got = tc.define(text(dtype), backend=target).all20(x, y)
    tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == "float" else {"rtol": 1e-12, "atol": 1e-14}
    for name, g, w in zip(OUTPUTS, got, want, strict=True):
        assert_same(g, w, what=f"{target} {dtype} {name}", **tol)
    # exact ones: reduced exactly, or exact by definition
    for name in ("U_logb", "B_nextafter", "B_remainder", "B_fdivide"):
        k = OUTPUTS.index(name)
        g, w = (torch.nan_to_num(v[k], nan=7.0) for v in (got, want))
        assert torch.equal(g, w), name
    # exact at the integers and half-integers (the helper and OpenCL's own)
    half = torch.isfinite(x) & (2 * x == torch.round(2 * x))
    for name in ("U_cospi", "U_sinpi"):
        k = OUTPUTS.index(name)
        assert torch.equal(got[k][half], want[k][half]), name
        assert set(got[k][half].tolist()) == {-1.0, 0.0, 1.0}, name


def test_the_sources_call_the_library_or_one_helper_each() -> None:
    from codegen.targets import get_target

    x, y = arguments(torch.float64)
    for backend, native, helpers in (
        ("cpu", ["j0(", "y1(", "logb(", "nextafter(", "remainder("],
         ["tc_sincospi", "tc_bessel_i", "tc_erfcx", "tc_normcdf", "tc_normcdfinv", "tc_norm4d"]),
        ("opencl", ["cospi(", "sinpi(", "logb(", "nextafter(", "remainder("],
         ["tc_bessel_jy", "tc_bessel_i", "tc_erfcx", "tc_normcdfinv", "tc_norm4d"]),
    ):
        if not get_target(backend).available():
            continue
        ex = tc.compile(text("double"), "all20", None, x, y, backend=backend)
        source = "\n".join(k.source for k in ex.kernels)
        for name in native:
            assert re.search(rf"(?<![\w]){re.escape(name)}", source), (backend, name)
        for h in helpers:  # defined once in each kernel's source that calls it
            assert re.search(rf"\b{h}\(double", source), (backend, h)
            for k in ex.kernels:
                assert len(re.findall(rf"\b{h}\(double", k.source)) <= 1, (backend, h)
        assert "fdivide(" not in source


@pytest.mark.parametrize("dtype", ["float", "double"])
def test_nvrtc_compiles_them_as_cuda_library_calls(dtype: str) -> None:
    t = torch.float32 if dtype == "float" else torch.float64
    x, y = arguments(t)
    ex = tc.compile(text(dtype), "all20", None, x, y, backend="cuda")
    source = "\n".join(k.source for k in ex.kernels)
    assert all(k.ptx for k in ex.kernels)
    suffix = "f" if dtype == "float" else ""
    for f in sorted(math_helpers.EXTRA_MATH - {"fdivide"}):
        assert re.search(rf"\b{f}{suffix}\(", source), f
    assert "tc_bessel" not in source and "fdivide(" not in source and "fdividef(" not in source
