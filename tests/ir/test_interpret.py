"""The reference interpreter against numpy, torch and Python written independently."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tc.errors import TcRangeError
from tc.ir import interpret
from tc.ir import nodes as ir
from tc.ir.types import ScalarType
from tc.lang.frontend import check_text

RNG = np.random.default_rng(1234)


def run(text: str, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """Run the text's first definition on numpy arrays; returns its outputs in order.

    The sizes are bound here from the arrays' shapes (not by tc's argument checks)."""
    fn = next(iter(check_text(text).functions.values()))
    sizes: dict[str, int] = {}
    for decl, a in zip(fn.inputs, arrays, strict=True):
        assert a.ndim == decl.rank
        for s, n in zip(decl.shape, a.shape, strict=True):
            if not s.is_const:
                (name,) = s.symbols()
                sizes[name] = n
    out = interpret.run(fn, {d.name: a for d, a in zip(fn.inputs, arrays, strict=True)}, sizes)
    return tuple(out[t.name] for t in fn.outputs)


def run1(text: str, *arrays: np.ndarray) -> np.ndarray:
    (out,) = run(text, *arrays)
    return out


def bf16(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(x, np.float32)).to(torch.bfloat16)


def as_np(t: torch.Tensor) -> np.ndarray:
    return (t.float() if t.dtype is torch.bfloat16 else t).numpy()


# -- every dtype family ---------------------------------------------------------------------

INT_TYPES = ["int8", "int16", "int32", "int64", "uint8"]
ALL_NUMERIC = INT_TYPES + ["float16", "bfloat16", "float32", "float64"]


def sample(tc_type: str, shape: tuple[int, ...]) -> np.ndarray:
    if tc_type == "bool":
        return RNG.random(shape) > 0.5
    if tc_type.startswith("uint"):
        return RNG.integers(0, 256, shape).astype(tc_type)
    if tc_type.startswith("int"):
        info = np.iinfo(tc_type)
        return RNG.integers(max(info.min, -300), min(info.max, 300), shape).astype(tc_type)
    if tc_type == "bfloat16":
        return as_np(bf16(RNG.standard_normal(shape) * 4))
    return (RNG.standard_normal(shape) * 4).astype(tc_type)


def to_torch(a: np.ndarray, tc_type: str) -> torch.Tensor:
    return bf16(a) if tc_type == "bfloat16" else torch.from_numpy(a)


@pytest.mark.parametrize("t", ALL_NUMERIC)
def test_arithmetic_in_every_type(t: str) -> None:
    a, b = sample(t, (5, 3)), sample(t, (5, 3))
    text = f"""
    def f({t}(N, M) A, {t}(N, M) B) -> (S, D, P, L, G) {{
        S(i, j) = A(i, j) + B(i, j)
        D(i, j) = A(i, j) - B(i, j)
        P(i, j) = A(i, j) * B(i, j) - A(i, j)
        L(i, j) = A(i, j) < B(i, j)
        G(i, j) = max(A(i, j), B(i, j))
    }}"""
    S, D, P, L, G = run(text, a, b)
    ta, tb = to_torch(a, t), to_torch(b, t)
    np.testing.assert_array_equal(S, as_np(ta + tb))
    np.testing.assert_array_equal(D, as_np(ta - tb))
    np.testing.assert_array_equal(P, as_np(ta * tb - ta))
    np.testing.assert_array_equal(L, as_np(ta < tb))
    np.testing.assert_array_equal(G, as_np(torch.maximum(ta, tb)))
    assert S.dtype == (np.float32 if t == "bfloat16" else np.dtype(t))
    assert L.dtype == np.bool_


def test_bool_logic() -> None:
    a, b = sample("bool", (7,)), sample("bool", (7,))
    text = """
    def f(bool(N) A, bool(N) B) -> (X, Y, Z, W, C) {
        X(i) = A(i) && B(i)
        Y(i) = A(i) || !B(i)
        Z(i) = A(i) == B(i)
        W(i) = A(i) != B(i)
        C(i) = int32(A(i)) + int32(B(i)) * 2
    }"""
    X, Y, Z, W, C = run(text, a, b)
    np.testing.assert_array_equal(X, a & b)
    np.testing.assert_array_equal(Y, a | ~b)
    np.testing.assert_array_equal(Z, a == b)
    np.testing.assert_array_equal(W, a ^ b)
    np.testing.assert_array_equal(C, a.astype(np.int32) + 2 * b.astype(np.int32))
    assert X.dtype == np.bool_


def test_bool_reductions_are_any_and_all() -> None:
    a = np.array([[True, False, True], [True, True, True], [False, False, False]])
    any_, all_ = run("def f(bool(N, M) A) -> (X, Y) { X(i) +=! A(i, j)\n Y(i) *=! A(i, j) }", a)
    np.testing.assert_array_equal(any_, a.any(1))
    np.testing.assert_array_equal(all_, a.all(1))


@pytest.mark.parametrize(("ta", "tb", "want"), [
    ("int8", "int16", "int16"),
    ("uint8", "int32", "int32"),
    ("int32", "float16", "float16"),
    ("float16", "float64", "float64"),
    ("int64", "float32", "float32"),
    ("bool", "uint8", "uint8"),
])
def test_promotion(ta: str, tb: str, want: str) -> None:
    a, b = sample(ta, (5,)), sample(tb, (5,))
    out = run1(f"def f({ta}(N) A, {tb}(N) B) -> (C) {{ C(i) = A(i) + B(i) }}", a, b)
    assert out.dtype == np.dtype(want)
    np.testing.assert_array_equal(out, a.astype(want) + b.astype(want))


def test_bfloat16_rounds_after_every_operation() -> None:
    a = as_np(bf16(np.array([1.1, 3.3, -7.7, 100.5, 0.01], np.float32)))
    b = as_np(bf16(np.array([2.9, -0.3, 7.6, 0.5, 1e-4], np.float32)))
    out = run1("def f(bfloat16(N) A, bfloat16(N) B) -> (C) { C(i) = (A(i) + B(i)) * A(i) }",
               a, b)
    ta, tb = bf16(a), bf16(b)
    np.testing.assert_array_equal(out, as_np((ta + tb) * ta))


def test_half_literal_arithmetic_with_cast() -> None:
    a = np.array([1.5, -2.25, 1000.0], np.float16)
    out = run1("def f(half(N) A) -> (half(N) C) { C(i) = half(A(i) * 3.1) }", a)
    want = (torch.from_numpy(a).float() * np.float32(3.1)).half()
    np.testing.assert_array_equal(out, want.numpy())


# -- integer division and modulo -----------------------------------------------------------


def floor_div(a: int, b: int) -> int:
    return 0 if b == 0 else a // b  # Python's // is floor division


def floor_mod(a: int, b: int) -> int:
    return 0 if b == 0 else a - b * (a // b)


@pytest.mark.parametrize("t", ["int8", "int32", "int64"])
def test_integer_division_and_modulo_round_toward_minus_infinity(t: str) -> None:
    pairs = [(a, b) for a in (-7, -6, -1, 0, 1, 5, 7) for b in (-3, -2, -1, 0, 1, 2, 3)]
    a = np.array([p[0] for p in pairs], t)
    b = np.array([p[1] for p in pairs], t)
    q, r = run(f"def f({t}(N) A, {t}(N) B) -> (Q, R) {{ Q(i) = A(i) / B(i)\n"
               f" R(i) = A(i) % B(i) }}", a, b)
    assert q.tolist() == [floor_div(x, y) for x, y in pairs]
    assert r.tolist() == [floor_mod(x, y) for x, y in pairs]
    assert q.dtype == np.dtype(t) and r.dtype == np.dtype(t)


def test_unsigned_division_and_modulo() -> None:
    a = np.array([0, 7, 255, 200, 9], np.uint8)
    b = np.array([3, 0, 16, 7, 9], np.uint8)
    q, r = run("def f(uint8(N) A, uint8(N) B) -> (Q, R) { Q(i) = A(i) / B(i)\n"
               " R(i) = A(i) % B(i) }", a, b)
    assert q.tolist() == [floor_div(int(x), int(y)) for x, y in zip(a, b, strict=True)]
    assert r.tolist() == [floor_mod(int(x), int(y)) for x, y in zip(a, b, strict=True)]


def test_index_arithmetic_with_negative_values() -> None:
    out = run1("def f(float(N) A) -> (C) { C(i) = (i - 3) / 2 * 10 + (i - 3) % 2 where i in 0:N }",
               np.zeros(7, np.float32))
    assert out.dtype == np.int32
    assert out.tolist() == [floor_div(i - 3, 2) * 10 + floor_mod(i - 3, 2) for i in range(7)]


def test_float_division() -> None:
    a = np.array([1.0, -1.0, 0.0, 7.0], np.float32)
    b = np.array([0.0, 0.0, 0.0, -2.0], np.float32)
    out = run1("def f(float(N) A, float(N) B) -> (C) { C(i) = A(i) / B(i) }", a, b)
    assert out[0] == np.inf and out[1] == -np.inf and np.isnan(out[2]) and out[3] == -3.5


# -- casts --------------------------------------------------------------------------------------


def test_casts() -> None:
    x = np.array([-2.7, -0.5, 0.0, 0.5, 2.7, 100.9], np.float32)
    text = """
    def f(float(N) X) -> (I, U, B, D, H, back) {
        I(i) = int32(X(i))
        U(i) = uint8(fabs(X(i)))
        B(i) = bool(X(i))
        D(i) = double(X(i)) * 2
        H(i) = half(X(i))
        back(i) = float(int64(X(i))) + float(B(i))
    }"""
    I, U, B, D, H, back = run(text, x)
    t = torch.from_numpy(x)
    np.testing.assert_array_equal(I, t.to(torch.int32).numpy())  # truncation toward zero
    np.testing.assert_array_equal(U, t.abs().to(torch.uint8).numpy())
    np.testing.assert_array_equal(B, (t != 0).numpy())
    np.testing.assert_array_equal(D, t.double().numpy() * 2)
    np.testing.assert_array_equal(H, t.half().numpy())
    np.testing.assert_array_equal(back, np.trunc(x) + (x != 0))
    assert (I.dtype, U.dtype, B.dtype, D.dtype, H.dtype) == (
        np.int32, np.uint8, np.bool_, np.float64, np.float16)


def test_integer_narrowing_cast_wraps() -> None:
    a = np.array([127, 128, 255, 256, -129], np.int32)
    out = run1("def f(int32(N) A) -> (C) { C(i) = int8(A(i)) }", a)
    np.testing.assert_array_equal(out, torch.from_numpy(a).to(torch.int8).numpy())


# -- reductions ----------------------------------------------------------------------------------


@pytest.mark.parametrize("t", ["float32", "float64", "int32", "int64", "uint8", "int8"])
def test_reductions(t: str) -> None:
    a = sample(t, (3, 5))
    if not t.startswith("float"):
        a = (a % 4).astype(t)  # small values: products do not overflow
    text = f"""
    def f({t}(N, M) A) -> (S, P, lo, hi) {{
        S(i) +=! A(i, j)
        P(i) *=! A(i, j)
        lo(i) min=! A(i, j)
        hi(i) max=! A(i, j)
    }}"""
    S, P, lo, hi = run(text, a)
    ta = torch.from_numpy(a).to(torch.float64)
    np.testing.assert_allclose(S, ta.sum(1).numpy().astype(t), rtol=1e-6)
    np.testing.assert_allclose(P, ta.prod(1).numpy().astype(t), rtol=1e-6)
    np.testing.assert_array_equal(lo, a.min(1))
    np.testing.assert_array_equal(hi, a.max(1))
    assert S.dtype == np.dtype(t)


@pytest.mark.parametrize(("t", "lo", "hi"), [
    ("float32", math.inf, -math.inf),
    ("float64", math.inf, -math.inf),
    ("int32", 2**31 - 1, -(2**31)),
    ("int8", 127, -128),
    ("uint8", 255, 0),
    ("int64", 2**63 - 1, -(2**63)),
])
def test_min_max_identities_on_an_empty_reduction(t: str, lo, hi) -> None:
    a = np.zeros((3, 0), t)
    mn, mx, s, p = run(f"def f({t}(N, K) A) -> (mn, mx, s, p) {{ mn(i) min=! A(i, k)\n"
                       f" mx(i) max=! A(i, k)\n s(i) +=! A(i, k)\n p(i) *=! A(i, k) }}", a)
    assert mn.tolist() == [lo] * 3 and mx.tolist() == [hi] * 3
    assert s.tolist() == [0] * 3 and p.tolist() == [1] * 3


def test_identity_function() -> None:
    assert ir.identity("+", ScalarType.FLOAT32) == 0
    assert ir.identity("*", ScalarType.INT8) == 1
    assert ir.identity("min", ScalarType.UINT8) == 255
    assert ir.identity("max", ScalarType.INT16) == -32768
    assert ir.identity("min", ScalarType.BFLOAT16) == math.inf
    assert ir.identity("max", ScalarType.BOOL) is False
    with pytest.raises(ValueError):
        ir.identity("-", ScalarType.FLOAT32)


def test_scalar_and_matrix_reductions() -> None:
    a = sample("float64", (3, 5))
    s, m = run("def f(double(N, M) A) -> (s, m) { s +=! A(i, j) * A(i, j)\n m max=! A(i, j) }", a)
    assert s.shape == () and m.shape == ()
    assert s == pytest.approx(float((a * a).sum()))
    assert m == a.max()


def test_reduction_without_bang_accumulates_after_an_init() -> None:
    a, b = sample("float64", (3, 5)), sample("float64", (3,))
    out = run1("""
    def f(double(N, M) A, double(N) B) -> (C) {
        C(i) = B(i)
        C(i) += A(i, j)
        C(i) max= 0.5
        C(i) *= 2.0
    }""", a, b)
    np.testing.assert_allclose(out, np.maximum(b + a.sum(1), 0.5) * 2)


def test_bang_resets_what_was_written_before() -> None:
    a = sample("float64", (3, 5))
    out = run1("def f(double(N, M) A) -> (C) { C(i) = double(100.0) where i in 0:N\n"
               " C(i) +=! A(i, j) }", a)
    np.testing.assert_allclose(out, a.sum(1))


def test_product_reduction_over_two_indices() -> None:
    a = (RNG.random((3, 2, 2)) + 0.5).astype(np.float64)
    out = run1("def f(double(N, M, K) A) -> (C) { C(i) *=! A(i, j, k) }", a)
    np.testing.assert_allclose(out, torch.from_numpy(a).flatten(1).prod(1).numpy())


def test_matmul_and_plus_equals_bang_without_reduction_index() -> None:
    a, b = sample("float64", (5, 3)), sample("float64", (3, 7))
    c, d = run("def f(double(M, K) A, double(K, N) B) -> (C, D) { C(m, n) +=! A(m, k) * B(k, n)\n"
               " D(m, n) +=! C(m, n) }", a, b)
    np.testing.assert_allclose(c, (torch.from_numpy(a) @ torch.from_numpy(b)).numpy())
    np.testing.assert_allclose(d, c)


# -- statements, selects, lets -----------------------------------------------------------------


def test_statements_run_one_after_another() -> None:
    a = sample("float32", (5,))
    out, tmp_user = run("""
    def f(float(N) A) -> (C, D) {
        t(i) = A(i) * 2.0
        C(i) = t(i) + 1.0
        C(i) = C(i) * C(i)
        D(i) = C(N - 1 - i)
    }""", a)
    want = (a * np.float32(2) + np.float32(1)) ** 2
    np.testing.assert_allclose(out, want, rtol=1e-6)
    np.testing.assert_allclose(tmp_user, want[::-1], rtol=1e-6)


def test_temporaries_are_computed_but_not_outputs() -> None:
    fn = check_text("def f(float(N) A) -> (C) { t(i) = A(i) + 1.0\n C(i) = t(i) * 2.0 }")
    fn = fn.functions["f"]
    res = interpret.run(fn, {"A": np.arange(3, dtype=np.float32)}, {"N": 3})
    assert set(res) == {"C", "t"}
    assert res["C"].tolist() == [2.0, 4.0, 6.0]


def test_guarded_out_of_bounds_read_is_not_evaluated() -> None:
    a = np.array([5.0, 3.0, 9.0], np.float32)
    sel, land, lor = run("""
    def f(float(N) A) -> (S, L, O) {
        S(i) = i > 0 ? A(i - 1) : -1.0 where i in 0:N
        L(i) = i > 0 && A(i - 1) > 4.0 where i in 0:N
        O(i) = i == 0 || A(i - 1) > 4.0 where i in 0:N
    }""", a)
    assert sel.tolist() == [-1.0, 5.0, 3.0]
    assert land.tolist() == [False, True, False]
    assert lor.tolist() == [True, True, False]


def test_guarded_indirect_read() -> None:
    a = np.array([10.0, 20.0, 30.0], np.float32)
    idx = np.array([2, -1, 0, 3, 1], np.int32)
    out = run1("def f(float(N) A, int32(K) idx) -> (C) {"
               " C(k) = idx(k) >= 0 && idx(k) < N ? A(idx(k)) : 0.0 }", a, idx)
    assert out.tolist() == [30.0, 0.0, 10.0, 0.0, 20.0]


def test_unguarded_out_of_bounds_read_raises_a_positioned_error() -> None:
    text = ("def f(float(N) A, int32(K) idx) -> (C) {\n"
            "    C(k) = A(idx(k)) + 1.0\n}")
    a = np.array([10.0, 20.0, 30.0], np.float32)
    (ok,) = run(text, a, np.array([2, 0], np.int32))
    assert ok.tolist() == [31.0, 11.0]
    with pytest.raises(TcRangeError) as info:
        run(text, a, np.array([1, 3, 0], np.int32))
    err = info.value
    assert (err.line, err.column) == (2, 12)
    assert "'A'" in err.message and "3" in err.message and "k=1" in err.message
    assert "C(k) = A(idx(k)) + 1.0" in str(err) and "^" in str(err)


def test_wrong_branch_of_select_is_checked() -> None:
    text = "def f(float(N) A, int32(K) idx) -> (C) { C(k) = k > 0 ? A(idx(k)) : 0.0 }"
    a = np.zeros(3, np.float32)
    assert run1(text, a, np.array([7, 1], np.int32)).tolist() == [0.0, 0.0]
    with pytest.raises(TcRangeError):
        run1(text, a, np.array([0, 7], np.int32))


def test_lets() -> None:
    a = sample("float64", (5,))
    out = run1("def f(double(N) A) -> (C) { C(i) = y * y - x where x = A(i) + 1.0, y = x * 2.0 }",
               a)
    x = a + 1
    np.testing.assert_allclose(out, (2 * x) ** 2 - x)


def test_let_bound_subscript() -> None:
    a = np.arange(7, dtype=np.float32)
    assert run1("def f(float(N) A) -> (C) { C(i) = A(k) where k = N - 1 - i }",
                a).tolist() == a[::-1].tolist()


def test_scalar_inputs_and_outputs() -> None:
    x = sample("float32", (5,))
    s, m = run("def f(float(N) X, float alpha) -> (s, m) { s +=! X(i) * alpha\n m = s + alpha }",
               x, np.array(2.0, np.float32))
    assert s.shape == () and s == pytest.approx(float(x.sum() * 2), rel=1e-5)
    assert m == pytest.approx(float(s) + 2.0)


def test_unwritten_output_elements_are_zero() -> None:
    a = np.array([1.0, 2.0, 3.0], np.float32)
    assert run1("def f(float(N) A) -> (C) { C(i) = A(i - 1) }", a).tolist() == [0, 1, 2, 3]
    assert run1("def f(float(N) A) -> (C) { C(i) = A(i) where i in 2:N }",
                a).tolist() == [0, 0, 3]
    out = run1("def f(int32(N) A) -> (C) { C(i) = A(i - 1) + A(i + 1) }",
               np.array([1, 2, 3, 4], np.int32))
    assert out.tolist() == [0, 4, 6]


def test_sizes_and_indices_as_values() -> None:
    x = sample("float32", (3, 5))
    mean, pos = run("def f(float(N, D) X) -> (m, p) { m(n) +=! X(n, d) / D\n"
                    " p(n, d) = float(n * D + d) where n in 0:N, d in 0:D }", x)
    np.testing.assert_allclose(mean, x.mean(1), rtol=1e-5)
    assert pos.tolist() == [[float(n * 5 + d) for d in range(5)] for n in range(3)]


def test_strided_convolution_against_torch() -> None:
    x, w = sample("float64", (1, 3, 9, 7)), sample("float64", (5, 3, 3, 3))
    out = run1("""
    def conv(double(N, C, H, W) I, double(F, C, KH, KW) Wt) -> (O) {
        O(n, f, h, w) +=! I(n, c, 2 * h + kh, 2 * w + kw) * Wt(f, c, kh, kw)
    }""", x, w)
    ref = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), stride=2)
    np.testing.assert_allclose(out, ref.numpy(), rtol=1e-10, atol=1e-12)


# -- builtins -------------------------------------------------------------------------------------

POS = np.array([0.05, 0.3, 0.9, 1.0, 1.7, 2.5, 7.0, 20.0])
ANY = np.array([-20.0, -3.3, -1.0, -0.4, 0.0, 0.4, 1.0, 2.6, 20.0])
UNIT = np.array([-0.99, -0.5, -0.1, 0.0, 0.2, 0.7, 0.95])
ABOVE1 = np.array([1.0, 1.3, 2.0, 10.0])

UNARY = {
    "exp": (np.exp, ANY), "exp2": (np.exp2, ANY), "exp10": (lambda x: 10.0 ** x, ANY),
    "expm1": (np.expm1, ANY), "log": (np.log, POS), "log2": (np.log2, POS),
    "log10": (np.log10, POS), "log1p": (np.log1p, POS), "sqrt": (np.sqrt, POS),
    "rsqrt": (lambda x: torch.rsqrt(torch.from_numpy(x)).numpy(), POS),
    "cbrt": (lambda x: np.sign(x) * np.abs(x) ** (1 / 3), ANY),
    "rcbrt": (lambda x: 1 / (np.sign(x) * np.abs(x) ** (1 / 3)), POS),
    "sin": (np.sin, ANY), "cos": (np.cos, ANY), "tan": (np.tan, UNIT),
    "asin": (np.arcsin, UNIT), "acos": (np.arccos, UNIT), "atan": (np.arctan, ANY),
    "sinh": (np.sinh, UNIT), "cosh": (np.cosh, UNIT), "tanh": (np.tanh, ANY),
    "asinh": (np.arcsinh, ANY), "acosh": (np.arccosh, ABOVE1), "atanh": (np.arctanh, UNIT),
    "erf": (np.vectorize(math.erf), ANY), "erfc": (np.vectorize(math.erfc), ANY),
    "erfinv": (lambda x: torch.special.erfinv(torch.from_numpy(x)).numpy(), UNIT),
    "erfcinv": (lambda x: torch.special.erfinv(torch.from_numpy(1 - x)).numpy(), UNIT + 1),
    "lgamma": (np.vectorize(math.lgamma), POS), "tgamma": (np.vectorize(math.gamma), POS),
    "fabs": (np.abs, ANY), "floor": (np.floor, ANY), "ceil": (np.ceil, ANY),
    "trunc": (lambda x: np.sign(x) * np.floor(np.abs(x)), ANY),
    "round": (lambda x: np.sign(x) * np.floor(np.abs(x) + 0.5), ANY),
    "sigmoid": (lambda x: torch.sigmoid(torch.from_numpy(x)).numpy(), ANY),
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_builtins(name: str, dtype: str) -> None:
    ref, domain = UNARY[name]
    x = domain.astype(dtype)
    out = run1(f"def f({dtype}(N) X) -> (Y) {{ Y(i) = {name}(X(i)) }}", x)
    assert out.dtype == np.dtype(dtype)
    want = ref(x.astype(np.float64))
    rtol = 2e-6 if dtype == "float32" else 1e-12
    if name == "erfinv" or name == "erfcinv":
        rtol = max(rtol, 1e-6)
    np.testing.assert_allclose(out, want, rtol=rtol, atol=rtol)


def test_erfcinv_inverts_erfc() -> None:
    x = np.array([0.05, 0.5, 1.0, 1.5, 1.9])
    out = run1("def f(double(N) X) -> (Y) { Y(i) = erfcinv(X(i)) }", x)
    np.testing.assert_allclose([math.erfc(v) for v in out], x, rtol=1e-9)


def test_round_is_half_away_from_zero() -> None:
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 0.49999997, -0.49999997, 2.4999998, 7.0,
                  -0.0, 1e30], np.float32)
    out = run1("def f(float(N) X) -> (Y) { Y(i) = round(X(i)) }", x)
    assert out.tolist() == [1.0, 2.0, 3.0, -1.0, -2.0, -3.0, 0.0, -0.0, 2.0, 7.0, 0.0,
                            float(np.float32(1e30))]
    assert np.signbit(out[7]) and np.signbit(out[10])
    d = np.array([0.49999999999999994, 2.5, -3.5], np.float64)
    assert run1("def f(double(N) X) -> (Y) { Y(i) = round(X(i)) }", d).tolist() == [0, 3, -4]


BINARY = {
    "atan2": np.arctan2, "fmax": np.fmax, "fmin": np.fmin,
    "fmod": np.vectorize(math.fmod), "fdim": lambda x, y: np.where(x > y, x - y, 0.0),
    "hypot": np.vectorize(math.hypot), "copysign": np.vectorize(math.copysign),
}


@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_builtins(name: str) -> None:
    x = np.array([-3.5, -1.0, 0.0, 2.0, 7.25, 5.0, -6.0])
    y = np.array([2.0, -0.75, 3.0, -2.5, 0.5, 5.0, 4.0])
    out = run1(f"def f(double(N) X, double(N) Y) -> (Z) {{ Z(i) = {name}(X(i), Y(i)) }}", x, y)
    np.testing.assert_allclose(out, BINARY[name](x, y), rtol=1e-12, atol=1e-15)


def test_pow_and_fma() -> None:
    x = np.array([0.5, 2.0, 3.0, 1.5])
    y = np.array([2.0, -1.0, 0.5, 3.0])
    p, f = run("def f(double(N) X, double(N) Y) -> (P, F) { P(i) = pow(X(i), Y(i))\n"
               " F(i) = fma(X(i), Y(i), 1.0) }", x, y)
    np.testing.assert_allclose(p, x ** y, rtol=1e-12)
    np.testing.assert_allclose(f, x * y + 1, rtol=1e-12)


def test_fmax_and_fmin_ignore_nan() -> None:
    x = np.array([np.nan, 1.0, np.nan], np.float32)
    y = np.array([2.0, np.nan, np.nan], np.float32)
    hi, lo = run("def f(float(N) X, float(N) Y) -> (A, B) { A(i) = fmax(X(i), Y(i))\n"
                 " B(i) = fmin(X(i), Y(i)) }", x, y)
    assert hi[:2].tolist() == [2.0, 1.0] and np.isnan(hi[2])
    assert lo[:2].tolist() == [2.0, 1.0] and np.isnan(lo[2])


def test_math_on_integers_computes_in_float() -> None:
    a = np.array([1, 4, 9], np.int32)
    out = run1("def f(int32(N) A) -> (C) { C(i) = sqrt(A(i)) + exp(0) }", a)
    assert out.dtype == np.float32 and out.tolist() == [2.0, 3.0, 4.0]


def test_integer_min_max_keep_the_type() -> None:
    a, b = sample("int64", (7,)), sample("int64", (7,))
    lo, hi = run("def f(int64(N) A, int64(N) B) -> (L, H) { L(i) = min(A(i), B(i))\n"
                 " H(i) = max(A(i), 3) }", a, b)
    assert lo.dtype == np.int64 and lo.tolist() == np.minimum(a, b).tolist()
    assert hi.tolist() == np.maximum(a, 3).tolist()


@pytest.mark.parametrize("t", ["float16", "bfloat16"])
@pytest.mark.parametrize("name", ["exp", "sigmoid", "tanh", "sqrt", "log1p"])
def test_half_precision_math_matches_torch(t: str, name: str) -> None:
    x = np.array([0.1, 0.5, 1.0, 2.0, 3.75], np.float32)
    tx = bf16(x) if t == "bfloat16" else torch.from_numpy(x).half()
    out = run1(f"def f({t}(N) X) -> (Y) {{ Y(i) = {name}(X(i)) }}", as_np(tx).astype(
        np.float16 if t == "float16" else np.float32))
    want = getattr(torch, name)(tx.float()).to(tx.dtype)
    np.testing.assert_array_equal(out, as_np(want))


def test_builtins_on_scalars() -> None:
    s = np.array(0.5, np.float32)
    a, b = run("def f(float x) -> (a, b) { a = erf(x)\n b = lgamma(x) + round(x) }", s)
    assert a.shape == () and a == pytest.approx(math.erf(0.5), rel=1e-6)
    assert b == pytest.approx(math.lgamma(0.5) + 1.0, rel=1e-6)
