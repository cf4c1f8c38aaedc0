"""Definitions without a size symbol (issue 14; found again by the issue 12 fuzzer):
literal shapes, scalar inputs, no inputs, size-1 dimensions compile and run on every
target here and compile with NVRTC. Their scop context used to be read as "{ }",
which isl takes for an empty union set: every compiled back end failed."""

from __future__ import annotations

import pytest
import torch
from kernel_checks import assert_same
from targets_here import runnable_targets

import tc
from codegen.compiler import compile_program
from codegen.nvrtc import compile_cuda
from tc.lang.frontend import check_text

# "literal shapes, accumulating" warns on purpose (a reduction without '!').
pytestmark = pytest.mark.filterwarnings("ignore::tc.TcWarning")

CASES = {
    "literal shape": ("def f(float(4) a) -> (b) { b(i) = a(i) }", lambda: (torch.randn(4),)),
    "scalar input": ("def f(float A) -> (b) { b = A * 2.0 }", lambda: (torch.tensor(3.0),)),
    "literal reduction": ("def f(float(4, 3) a) -> (b) { b(i) +=! a(i, j) }",
                          lambda: (torch.randn(4, 3),)),
    "no inputs": ("def f() -> (b) { b(i) = 1.5 where i in 0:4 }", lambda: ()),
    "size 1": ("def f(float(1, 5) a) -> (b) { b(j) = a(0, j) + 1.0 }",
               lambda: (torch.randn(1, 5),)),
    "two scalars": ("def f(float a, float b) -> (c) { c = a * b + 1.0 }",
                    lambda: (torch.tensor(3.0), torch.tensor(-2.0))),
    "no inputs, reduction": ("def f() -> (s) { s +=! float(i) * 0.5 where i in 0:5 }",
                             lambda: ()),
    "size 1 everywhere": ("def f(float(1, 1) a) -> (b) { b(i, j) +=! a(i, k) * a(k, j) }",
                          lambda: (torch.randn(1, 1),)),
    "literal shapes, accumulating": ("def f(float(2, 3) a) -> (b) { b(i) += a(i, j) }",
                                     lambda: (torch.randn(2, 3),)),
}


@pytest.mark.parametrize("target", runnable_targets())
@pytest.mark.parametrize("case", list(CASES))
def test_runs_like_the_interpreter(case: str, target: str) -> None:
    text, make = CASES[case]
    inputs = make()
    want = tc.define(text, backend="reference").f(*inputs)
    assert_same(tc.define(text, backend=target).f(*inputs), want, 1e-6, 1e-6,
                what=f"{case} on {target}")


@pytest.mark.parametrize("case", list(CASES))
def test_compiles_with_nvrtc(case: str) -> None:
    text, make = CASES[case]
    fn = check_text(text).functions["f"]
    strides = [tuple(t.stride()) for t in make()]
    program = compile_program(fn, tc.MappingOptions("naive"), {}, strides, "gpu")
    for ck in program.kernels:
        compile_cuda(ck.cuda_source, ck.name)
