"""float64 log1p, expm1, sinh and atanh through IREE: its own ops are only float
accurate (log1p and expm1 give 0 for tiny arguments), so the export writes them with
float64 log and exp, which IREE computes exactly (Kahan's forms)."""

from __future__ import annotations

import pytest
import torch

import tc
from tc.mlir import run as iree

pytestmark = pytest.mark.skipif(not iree.available(), reason=iree.missing_reason() or "")

TEXT = """
def f(double(N) X) -> (A, B, C, D, E) {
    A(i) = log1p(X(i))
    B(i) = expm1(X(i))
    C(i) = asinh(X(i))
    D(i) = sinh(X(i))
    E(i) = atanh(X(i))
}
"""


def test_log1p_and_expm1_in_float64_match_the_interpreter() -> None:
    g = torch.Generator().manual_seed(5)
    special = [0.0, -0.0, 1e-300, -1e-300, 1e-20, -1e-17, 1e-10, 3e-8, -0.5, -1.0, -2.0,
               0.999999, -0.99, 1.0 - 2.0 ** -52, 0.25, 20.0, -30.0,
               1.0, 700.0, 710.0, -745.0, -1e3, 1e300, float("inf"), float("-inf"),
               float("nan")]
    x = torch.cat([torch.tensor(special, dtype=torch.float64),
                   torch.randn(200, generator=g, dtype=torch.float64)
                   * 10.0 ** torch.randint(-12, 3, (200,), generator=g)])
    want = tc.define(TEXT, backend="reference").f(x)
    got = tc.define(TEXT, backend="iree").f(x)
    for name, w, o in zip("ABCDE", want, got, strict=True):
        # a few ulp (Kahan's forms); zeros keep their sign
        torch.testing.assert_close(o, w, rtol=1e-15, atol=0, equal_nan=True, msg=name)
        assert torch.equal(torch.signbit(o[:2]), torch.signbit(w[:2])), name
