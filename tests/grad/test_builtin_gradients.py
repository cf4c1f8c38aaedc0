"""Gradients of issue 14's builtins (the rest of the original's), checked by
torch.autograd.gradcheck in float64 on the interpreter and on the compiled targets,
and their special points: the Bessel quotients at 0, the functions whose derivative
is 0 almost everywhere (logb) or 1 (nextafter in its first argument)."""

from __future__ import annotations

import math

import pytest
import torch

import tc


def gradcheck(text: str, entry: str, *args: torch.Tensor, backend: str = "reference") -> None:
    fn = tc.define(text, backend=backend)[entry]
    args = tuple(a.requires_grad_() for a in args)
    assert torch.autograd.gradcheck(lambda *a: fn(*a), args, eps=1e-6, atol=1e-5, rtol=1e-4)


def d(n: int, lo: float, hi: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed + n)
    return lo + (hi - lo) * torch.rand(n, generator=g, dtype=torch.float64)


TEXT = """
def unary(double(N) X) -> (Y) {
    Y(n) = cospi(X(n)) + sinpi(X(n)) + cyl_bessel_i0(X(n)) + cyl_bessel_i1(X(n)) + erfcx(X(n))
         + j0(X(n)) + j1(X(n)) + y0(X(n) + 1.5) + y1(X(n) + 1.5) + logb(X(n) + 3.0) * X(n)
         + normcdf(X(n)) + normcdfinv(X(n) / 2.0 + 0.5)
}
def binary(double(N) X, double(N) Z) -> (Y) {
    Y(n) = fdivide(X(n), Z(n) + 3.0) + remainder(X(n) * 3.0, Z(n) + 3.0)
         + nextafter(X(n), Z(n)) + rhypot(X(n), Z(n)) + norm3d(X(n), Z(n), X(n) * Z(n))
         + norm4d(X(n), Z(n), 2.0, Z(n) * 3.0) + rnorm3d(X(n), Z(n), 0.5)
         + rnorm4d(X(n), 0.5, Z(n), X(n))
}
"""


def test_every_differentiable_new_builtin() -> None:
    gradcheck(TEXT, "unary", d(7, -0.9, 0.9))
    # remainder(3x, z + 3): x in 0.1:0.9, z + 3 in 2.1:2.9, so 3x / (z + 3) stays within
    # (0.1, 1.3): away from its jump at 0.5 only by the draw; checked below.
    x, z = d(7, 0.1, 0.9), d(7, -0.9, -0.1, seed=1)
    q = 3 * x / (z + 3)
    assert ((q - 0.5).abs() > 1e-3).all()
    gradcheck(TEXT, "binary", x, z)


def test_compiled_backward(target: str) -> None:
    gradcheck(TEXT, "unary", d(5, -0.9, 0.9), backend=target)
    x, z = d(5, 0.1, 0.9), d(5, -0.9, -0.1, seed=1)
    gradcheck(TEXT, "binary", x, z, backend=target)


@pytest.mark.parametrize("fn", ["j1", "cyl_bessel_i1"])
def test_order_one_bessel_at_zero_has_slope_one_half(fn: str) -> None:
    T = tc.define(f"def f(double(N) X) -> (Y) {{ Y(n) = {fn}(X(n)) }}", backend="reference")
    X = torch.tensor([0.0, 1e-3], dtype=torch.float64, requires_grad=True)
    T.f(X).sum().backward()
    assert X.grad[0].item() == 0.5
    assert X.grad[1].item() == pytest.approx(0.5, abs=1e-6)


def test_logb_and_nextafter() -> None:
    T = tc.define("def f(double(N) X, double(N) Z) -> (Y) {\n"
                  "    Y(n) = logb(X(n)) + nextafter(X(n), Z(n))\n}", backend="reference")
    X = torch.tensor([0.3, 5.0, -7.0], dtype=torch.float64, requires_grad=True)
    Z = torch.tensor([1.0, 0.0, 3.0], dtype=torch.float64, requires_grad=True)
    T.f(X, Z).sum().backward()
    assert X.grad.tolist() == [1.0, 1.0, 1.0] and Z.grad.tolist() == [0.0, 0.0, 0.0]


def test_remainder_gradient_of_the_divisor_is_minus_the_quotient() -> None:
    T = tc.define("def f(double(N) X, double(N) Z) -> (Y) { Y(n) = remainder(X(n), Z(n)) }",
                  backend="reference")
    X = torch.tensor([5.0, 7.2, -9.1], dtype=torch.float64, requires_grad=True)
    Z = torch.tensor([3.0, 2.0, 4.0], dtype=torch.float64, requires_grad=True)
    T.f(X, Z).sum().backward()
    assert X.grad.tolist() == [1.0, 1.0, 1.0]
    assert Z.grad.tolist() == [-float(round(a / b)) for a, b in ((5, 3), (7.2, 2), (-9.1, 4))]


def test_normcdfinv_gradient_is_the_reciprocal_density() -> None:
    T = tc.define("def f(double(N) P) -> (Y) { Y(n) = normcdfinv(P(n)) }", backend="reference")
    P = torch.tensor([0.01, 0.5, 0.9], dtype=torch.float64, requires_grad=True)
    y = T.f(P)
    y.sum().backward()
    density = torch.exp(-y.detach() ** 2 / 2) / math.sqrt(2 * math.pi)
    torch.testing.assert_close(P.grad, 1 / density, rtol=1e-9, atol=0)
