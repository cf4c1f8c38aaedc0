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

CASES = {
    "literal shape": ("def f(float(4) a) -> (b) { b(i) = a(i) }", lambda: (torch.randn(4),)),
    "scalar input": ("def f(float A) -> (b) { b = A * 2.0 }", lambda: (torch.tensor(3.0),)),
    "literal reduction": ("def f(float(4, 3) a) -> (b) { b(i) +=! a(i, j) }",
                          lambda: (torch.randn(4, 3),)),
    "no inputs": ("def f() -> (b) { b(i) = 1.5 where i in 0:4 }", lambda: ()),
    "size 1": ("def f(float(1, 5) a) -> (b) { b(j) = a(0, j) + 1.0 }",
               lambda: (torch.randn(1, 5),)),
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
