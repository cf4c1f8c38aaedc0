"""A float literal cast straight to float64 keeps the decimal's double value (not the
float32 rounding of it), on every back end and in derived gradients of double
programs, whose constants are written that way."""

from __future__ import annotations

import torch
from targets_here import runnable_targets

import tc
from tc.ir import nodes as ir
from tc.ir.types import ScalarType


def test_cast_literal_is_a_double_constant() -> None:
    fn = tc.define("def f(double(N) x) -> (y) { y(i) = x(i) * float64(0.1) }",
                   backend="reference").f.ir
    consts = [n for n in ir.walk(fn.stages[0].rhs) if isinstance(n, ir.FloatImm)]
    assert [(c.value, c.type) for c in consts] == [(0.1, ScalarType.FLOAT64)]
    # the same value as a literal promoted by a double operand (the rule it matches)
    fn = tc.define("def g(double(N) x) -> (y) { y(i) = x(i) * 0.1 }", backend="reference").g.ir
    (c,) = [n for n in ir.walk(fn.stages[0].rhs) if isinstance(n, ir.FloatImm)]
    assert (c.value, c.type) == (0.1, ScalarType.FLOAT64)


def test_every_target_computes_with_the_double_value() -> None:
    text = ("def f(double(N) x) -> (y) "
            "{ y(i) = x(i) * float64(0.1) + float64(-1e300) * float64(1e-300) }")
    x = torch.linspace(-3, 7, 11, dtype=torch.float64)
    want = x * 0.1 + (-1e300) * 1e-300
    for backend in ["reference", *runnable_targets()]:
        got = tc.define(text, backend=backend).f(x)
        torch.testing.assert_close(got, want, rtol=1e-15, atol=1e-15, msg=backend)


def test_derived_gradient_of_a_double_program_is_exact() -> None:
    """exp2's derivative constant ln 2 was rounded to float32 (2.7e-9 relative off)."""
    T = tc.define("def f(double(N) x) -> (y) { y(i) = exp2(x(i)) }", backend="reference")
    x = torch.linspace(-2, 3, 7, dtype=torch.float64)
    grad = tc.define(T.f.gradient_text(), backend="reference")
    entry = grad[grad.entry_points[0]]
    got = entry(x, torch.ones_like(x))
    torch.testing.assert_close(got, torch.exp2(x) * torch.log(torch.tensor(2.0,
                               dtype=torch.float64)), rtol=1e-15, atol=0)
