"""Issue 14's two programs that crashed shared-memory promotion with isl's "cannot handle
void expression": a tensor read by only some statements below a promotion point (or
at only some of its points) had box offsets defined only there. Offsets are total now
(polyhedral.promotion._on_build); both run on PoCL and the CPU target (packing)."""

from __future__ import annotations

import pytest
import torch
from kernel_checks import assert_same
from targets_here import runnable_targets

import tc

GRAPH2 = """def graph2(float(N,C,H,W) I, float(N,C,R,T) J, float(KH,KW) W1) -> (O, Out) {
  O(n,c,h,w) +=! J(n,c,h+r_kh,w+r_kw) * W1(r_kh,r_kw)
  Out(c0,c1) +=! I(n,c0,h,w) * O(n,c1,h,w) }"""
DIAGONAL = "def f(float(A,B,C,D,E) I) -> (O) { O(i) +=! I(j, j+1, i, i+3, 2*i+j+0) }"
CASES = {
    "graph2": (GRAPH2, "graph2", lambda g: (torch.randn(2, 3, 4, 5, generator=g),
                                            torch.randn(2, 3, 5, 7, generator=g),
                                            torch.randn(2, 3, generator=g))),
    "diagonal": (DIAGONAL, "f", lambda g: (torch.randn(3, 4, 5, 6, 7, generator=g),)),
}


@pytest.mark.parametrize("target", runnable_targets())
@pytest.mark.parametrize("case", list(CASES))
def test_shared_memory_promotion_runs(case: str, target: str) -> None:
    text, entry, make = CASES[case]
    inputs = make(torch.Generator().manual_seed(0))
    want = tc.define(text, backend="reference")[entry](*inputs)
    options = tc.MappingOptions("naive").useSharedMemory(True)
    got = tc.compile(text, entry, options, *inputs, backend=target)(*inputs)
    assert_same(got, want, 1e-4, 1e-4, what=f"{case} on {target}")
