"""The derived backward as text, its corner cases, and what cannot be differentiated."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import tc
from tc import catalogue
from tc.grad import derive
from tc.lang.frontend import check_text


def gradcheck(text: str, entry: str, *args: torch.Tensor, backend: str = "reference") -> None:
    fn = tc.define(text, backend=backend)[entry]
    args = tuple(a.requires_grad_() if a.dtype.is_floating_point else a for a in args)
    assert torch.autograd.gradcheck(lambda *a: fn(*a), args, eps=1e-6, atol=1e-5, rtol=1e-4)


def d(*shape: int, lo: float = -1.0, hi: float = 1.0, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed + sum(shape))
    return lo + (hi - lo) * torch.rand(*shape, generator=g, dtype=torch.float64)


def test_matmul_backward_is_two_contractions() -> None:
    bw = derive(check_text(catalogue.MATMUL).functions["matmul"])
    body = [line.strip() for line in bw.text.splitlines() if "+=!" in line]
    assert bw.name == "matmul_grad" and bw.grad_inputs == (0, 1) and bw.grad_outputs == (0,)
    assert sorted(body) == sorted([
        "d_A(m, k) +=! d_C(m, n) * B(k, n) where m in 0:M, k in 0:K, n in 0:N",
        "d_B(k, n) +=! d_C(m, n) * A(m, k) where k in 0:K, n in 0:N, m in 0:M"])


def test_conv_input_gradient_loops_over_the_kernel_not_the_image() -> None:
    # h + kh is solved for h (the wide index), so the gather loops over kh only.
    text = derive(check_text(catalogue.CONV2D).functions["conv2d"]).text
    (line,) = [ln for ln in text.splitlines() if ln.strip().startswith("d_I(")]
    assert "kh in 0:KH" in line and " h in " not in line


def test_cli_prints_the_derived_text(tmp_path) -> None:
    path = tmp_path / "sm.tc"
    path.write_text(catalogue.SOFTMAX)
    out = subprocess.run([sys.executable, "-m", "tc", "grad", str(path)], capture_output=True,
                         text=True, check=True).stdout
    assert out == tc.define(catalogue.SOFTMAX).softmax.gradient_text()
    assert out.startswith("def softmax_grad(float32(M, N) X, float32(M, N) d_Y)")
    check_text(out)


def test_cli_reports_a_non_differentiable_statement(tmp_path) -> None:
    path = tmp_path / "p.tc"
    path.write_text("def lg(float(N, K) X) -> (P) {\n    P(n) +=! lgamma(X(n, k))\n}\n")
    r = subprocess.run([sys.executable, "-m", "tc", "grad", str(path)], capture_output=True,
                       text=True)
    assert r.returncode == 1
    assert "statement 1 (P(n) +=! lgamma(X(n, k))) cannot be differentiated" in r.stderr
    assert "line 2, column 5" in r.stderr and "^" in r.stderr


@pytest.mark.parametrize("text, why", [
    ("def f(float(N) X) -> (Y) { Y(n) = lgamma(X(n)) }", "lgamma"),
    ("def f(float(N) X) -> (Y) {\n Y(n) = X(n)\n Y(n) = 2.0 * X(n) where n in 1:N\n}",
     "only part of 'Y'"),
    ("def f(int32(N) X) -> (Y) { Y(n) = X(n) + 1 }", "no floating-point input"),
    ("def f(float(N) X) -> (Y) { Y(n) = int32(X(n)) }", "no floating-point output"),
])
def test_what_cannot_be_differentiated(text: str, why: str) -> None:
    with pytest.raises(tc.TcGradientError, match=why):
        derive(check_text(text).functions["f"])


def test_a_non_differentiable_definition_fails_at_the_backward_call() -> None:
    T = tc.define("def lg(double(N, K) X) -> (P) {\n    P(n) +=! lgamma(X(n, k))\n}\n",
                  backend="reference")
    X = d(2, 3, lo=0.5, hi=2.0).requires_grad_()
    P = T.lg(X)  # the forward runs
    torch.testing.assert_close(P, torch.lgamma(X.detach()).sum(1))
    with pytest.raises(tc.TcGradientError, match=r"statement 1 \(P\(n\) \+=! lgamma") as e:
        P.sum().backward()
    assert e.value.line == 2 and e.value.column == 5


def test_product_reductions_with_zeros() -> None:
    # d e(r) = g * prod_{r' != r} e(r'), computed as such: a zero factor gives the
    # others' product, never NaN.
    text = """
def f(double(N, H, W) X, double(N) b) -> (P, Q) {
    P(n) *=! X(n, h, w)
    Q(n) = b(n)
    Q(n) *= X(n, h, 0) * b(n)
}
"""
    X = d(3, 2, 3)
    X[0, 1, 1] = 0.0
    X[1, 0, 0] = X[1, 1, 2] = 0.0
    T = tc.define(text, backend="reference")
    Xa, ba = X.clone().requires_grad_(), d(3, lo=0.5, hi=1.5).requires_grad_()
    P, Q = T.f(Xa, ba)
    (P.sum() + Q.sum()).backward()
    Xt, bt = X.clone().requires_grad_(), ba.detach().clone().requires_grad_()
    Pt = Xt.flatten(1).prod(1)
    Qt = bt * (Xt[:, :, 0] * bt[:, None]).prod(1)
    (Pt.sum() + Qt.sum()).backward()
    torch.testing.assert_close(Xa.grad, Xt.grad)
    torch.testing.assert_close(ba.grad, bt.grad)
    gradcheck(text, "f", d(2, 2, 3), d(2, lo=0.5, hi=1.5))


def test_max_reduction_gives_the_gradient_to_the_first_maximum() -> None:
    T = tc.define("def rowmax(double(N, K) X) -> (Y) { Y(n) max=! X(n, k) }",
                  backend="reference")
    X = torch.tensor([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0]], dtype=torch.float64,
                     requires_grad=True)
    T.rowmax(X).sum().backward()
    expect = torch.tensor([[0.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    assert torch.equal(X.grad, expect)


def test_min_reduction_over_two_indices() -> None:
    text = "def m(double(N, H, W) X) -> (Y) { Y(n) min=! X(n, h, w) * X(n, h, w) }"
    gradcheck(text, "m", d(2, 3, 4))


def test_relu_as_fmax_has_torch_gradient_at_zero() -> None:
    T = tc.define("def relu(double(N) X) -> (Y) { Y(n) = fmax(X(n), 0.0) }",
                  backend="reference")
    X = torch.tensor([-1.0, 0.0, 2.0], dtype=torch.float64, requires_grad=True)
    T.relu(X).sum().backward()
    Xt = X.detach().clone().requires_grad_()
    torch.relu(Xt).sum().backward()
    assert torch.equal(X.grad, Xt.grad)


BUILTINS = """
def unary(double(N) X) -> (Y) {
    Y(n) = exp(X(n)) + exp2(X(n)) + exp10(X(n) / 4.0) + expm1(X(n)) + log(X(n) + 2.0)
         + log2(X(n) + 2.0) + log10(X(n) + 2.0) + log1p(X(n) + 1.5) + sqrt(X(n) + 2.0)
         + rsqrt(X(n) + 2.0) + cbrt(X(n) + 2.0) + rcbrt(X(n) + 2.0) + sin(X(n)) + cos(X(n))
         + tan(X(n) / 2.0) + asin(X(n) / 2.0) + acos(X(n) / 2.0) + atan(X(n)) + sinh(X(n))
         + cosh(X(n)) + tanh(X(n)) + asinh(X(n)) + acosh(X(n) + 3.0) + atanh(X(n) / 2.0)
         + erf(X(n)) + erfc(X(n)) + erfinv(X(n) / 2.0) + erfcinv(X(n) / 2.0 + 1.0)
         + sigmoid(X(n)) + fabs(X(n)) + floor(X(n)) * X(n) + -X(n)
}
def binary(double(N) X, double(N) Z) -> (Y) {
    Y(n) = atan2(X(n), Z(n)) + fmax(X(n), Z(n)) + fmin(X(n), Z(n)) + max(X(n), Z(n))
         + min(X(n), Z(n)) + fmod(X(n), Z(n) + 3.0) + fdim(X(n), Z(n)) + hypot(X(n), Z(n))
         + pow(X(n) + 2.0, Z(n)) + pow(X(n) + 2.0, 3.0) + copysign(X(n), Z(n))
         + fma(X(n), Z(n), X(n)) + X(n) / (Z(n) + 3.0)
         + (X(n) > Z(n) ? X(n) * Z(n) : X(n) - Z(n))
}
"""


def test_every_differentiable_builtin() -> None:
    gradcheck(BUILTINS, "unary", d(7, lo=-0.9, hi=0.9))
    gradcheck(BUILTINS, "binary", d(7, lo=0.1, hi=0.9), d(7, lo=-0.9, hi=-0.1, seed=1))


def test_lets_guarded_reads_and_a_diagonal() -> None:
    text = """
def f(double(N) X, double(2) w, double(N, N) A) -> (Y, Z) {
    Y(i) = a * a where a = X(i) + w(0)
    Z(i) = (i > 0 ? X(i - 1) * w(1) : 0.0) + A(i, i) * A(i, i)
}
"""
    gradcheck(text, "f", d(5), d(2), d(5, 5))


def test_updates_without_bang_and_several_writes() -> None:
    text = """
def f(double(N, K) X, double(N) b) -> (S, M, P) {
    S(n) +=! X(n, k)
    S(n) += X(n, k) * X(n, k)
    S(n) = S(n) * b(n)
    M(n) max=! X(n, k)
    M(n) max= b(n) * X(n, k)
    P(n) = b(n)
    P(n) *= X(n, 0)
}
"""
    gradcheck(text, "f", d(3, 4), d(3, lo=0.5, hi=2.0))


def test_strided_and_indirect_reads_accumulate() -> None:
    text = """
def f(double(E, D) T, int64(B) idx, double(H) X) -> (O, P) {
    O(b, e) = T(idx(b), e)
    P(h) +=! X(2 * h + k) where k in 0:3
}
"""
    idx = torch.tensor([2, 0, 2, 2, 1])  # repeated rows accumulate their gradients
    gradcheck(text, "f", d(4, 3), idx, d(9))


def test_unused_outputs_and_integer_outputs() -> None:
    text = """
def f(double(N, K) X) -> (mean, var, arg) {
    mean(n) +=! X(n, k) / K
    var(n) +=! (X(n, k) - mean(n)) * (X(n, k) - mean(n)) / K
    arg(n) max=! int32(X(n, k) > 0.0)
}
"""
    T = tc.define(text, backend="reference")
    X = d(3, 4).requires_grad_()
    mean, var, arg = T.f(X)
    assert not arg.requires_grad
    var.sum().backward()  # mean's gradient is None for autograd: zeros for tc
    Xt = X.detach().clone().requires_grad_()
    Xt.var(1, unbiased=False).sum().backward()
    torch.testing.assert_close(X.grad, Xt.grad)


def test_gradient_arguments_are_checked() -> None:
    fn = tc.define(catalogue.MATMUL, backend="reference").matmul
    back = fn.gradient()
    A, B = torch.randn(2, 3), torch.randn(3, 4)
    with pytest.raises(tc.TcError):
        back(A, B, torch.randn(2, 5))  # d_C must be M x N
    with pytest.raises(tc.TcArgumentTypeError):
        back(A, B, torch.randn(2, 4, dtype=torch.float64))


def test_gradients_of_some_inputs_only() -> None:
    fn = tc.define(catalogue.FC_RELU, backend="reference").fc_relu
    text = fn.gradient_text(wrt=[1, 2])
    assert "-> (float32(O, I) d_W, float32(O) d_bias)" in text and "d_x" not in text
    assert fn.gradient_text(wrt=[0, 1, 2]) == fn.gradient_text()
    x, W, bias = torch.randn(3, 4), torch.randn(5, 4), torch.randn(5)
    dy = torch.randn(3, 5)
    dW, dbias = fn.gradient(wrt=[1, 2])(x, W, bias, dy)
    full = fn.gradient()(x, W, bias, dy)
    torch.testing.assert_close((dW, dbias), full[1:])
    with pytest.raises(tc.TcGradientError, match=r"wrt=\[7\]: give input names or "
                       r"indices 0..2"):
        fn.gradient(wrt=[7])
    # Names, as the CLI's --wrt takes them.
    assert fn.gradient_text(wrt=["W", "bias"]) == text
    assert fn.gradient(wrt=["bias", 1]) is fn.gradient(wrt=[1, 2])
    with pytest.raises(tc.TcGradientError, match="'w', which is not an input; the inputs "
                       "are x, W, bias"):
        fn.gradient(wrt=["w"])
    ints = tc.define("def f(float(N) X, int32(N) i) -> (Y) { Y(n) = X(n) }",
                     backend="reference").f
    with pytest.raises(tc.TcGradientError, match="'i' is not floating-point"):
        ints.gradient(wrt=["i"])
    with pytest.raises(tc.TcGradientError, match="none of the inputs"):
        derive(check_text("def f(float(N) X, int32(N) i) -> (Y) { Y(n) = X(n) }")
               .functions["f"], wrt=(1,))


def test_cli_wrt(tmp_path) -> None:
    path = tmp_path / "fc.tc"
    path.write_text(catalogue.FC_RELU)
    args = [sys.executable, "-m", "tc", "grad", str(path), "--entry", "fc_relu"]
    out = subprocess.run(args + ["--wrt", "W"], capture_output=True, text=True,
                         check=True).stdout
    assert out.startswith("def fc_relu_grad_W(") and "-> (float32(O, I) d_W)" in out
    bad = subprocess.run(args + ["--wrt", "Q"], capture_output=True, text=True)
    assert bad.returncode == 1 and "--wrt: Q not among the inputs" in bad.stderr


@pytest.mark.parametrize("options", ["naive", "mlp"])
def test_max_of_an_expression_compiled_selects_its_maximum(options: str, target: str) -> None:
    # The max's values are stored once in the backward, so that no kernel rounds them
    # differently (an fma in one kernel, a multiply-add in another) and loses the max.
    text = "def f(float(N, K) X, float(K) w) -> (Y) { Y(n) max=! X(n, k) * w(k) + 1.0 }"
    T = tc.define(text, lambda *a: tc.MappingOptions(options), backend=target)
    g = torch.Generator().manual_seed(5)
    X, w = torch.randn(6, 11, generator=g), torch.randn(11, generator=g)
    Xa, wa = X.clone().requires_grad_(), w.clone().requires_grad_()
    T.f(Xa, wa).sum().backward()
    Xt, wt = X.clone().requires_grad_(), w.clone().requires_grad_()
    (Xt * wt + 1.0).max(1).values.sum().backward()
    torch.testing.assert_close(Xa.grad, Xt.grad)
    torch.testing.assert_close(wa.grad, wt.grad)
