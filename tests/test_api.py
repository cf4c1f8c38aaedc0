"""tc.define and the call path: argument checks, strides, scalars, outputs.

Everything runs on the reference back end (the numpy interpreter): the compiled back
ends have their own tests; the argument checks are shared by all back ends."""

from __future__ import annotations

import functools

import pytest
import torch

import tc
from tc.errors import (
    TcArgumentError,
    TcArgumentTypeError,
    TcError,
    TcRangeError,
    TcSyntaxError,
)

define = functools.partial(tc.define, backend="reference")

TEXT = """
def matmul(float(M, K) A, float(K, N) B) -> (C) {
    C(m, n) +=! A(m, k) * B(k, n)
}
def fixed(float(3, N) A) -> (C) {
    C(n) +=! A(i, n)
}
def stats(float(N, D) X, float eps) -> (var, mean) {
    mean(n) +=! X(n, d) / D
    centred(n, d) = X(n, d) - mean(n)
    var(n) +=! centred(n, d) * centred(n, d) / D + eps
}
def scaled(float(N) X, int32 k, double alpha) -> (Y, total) {
    Y(i) = X(i) * float(k) * float(alpha)
    total +=! Y(i)
}
"""


@pytest.fixture(scope="module")
def T() -> tc.TC:
    return define(TEXT)


def randn(*shape: int, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(sum(shape) + len(shape))
    return torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype)


# -- define and entry points ------------------------------------------------------------------


def test_entry_points(T: tc.TC) -> None:
    assert T.entry_points == ("matmul", "fixed", "stats", "scaled")
    assert T.matmul is T["matmul"]
    assert T.matmul.name == "matmul"
    assert "matmul" in dir(T)
    assert "matmul(A, B) -> (C)" in repr(T.matmul)


@pytest.mark.parametrize("key", ["nope", "Matmul", "", 0, None])
def test_unknown_entry_point_is_a_tc_error(T: tc.TC, key) -> None:
    with pytest.raises(TcError) as info:
        T[key]
    assert "matmul" in str(info.value)


def test_unknown_attribute_is_a_tc_error(T: tc.TC) -> None:
    with pytest.raises(TcError):
        T.nope  # noqa: B018


def test_invalid_text_raises_at_define() -> None:
    with pytest.raises(TcSyntaxError):
        define("def f(float(N) A) -> (C) { C(i) = A(i) ")


def test_unknown_backend_is_a_tc_error() -> None:
    with pytest.raises(TcError):
        tc.define(TEXT, backend="nonsense")


# -- call-time errors -----------------------------------------------------------------------------


def call_error(fn, *args) -> TcError:
    with pytest.raises(TcError) as info:
        fn(*args)
    return info.value


def test_wrong_number_of_arguments(T: tc.TC) -> None:
    for args in [(randn(5, 3),), (randn(5, 3), randn(3, 7), randn(7)), ()]:
        err = call_error(T.matmul, *args)
        assert isinstance(err, TcArgumentError) and isinstance(err, ValueError)
        assert "2" in err.message and "A" in err.message and "B" in err.message


def test_wrong_dtype_names_the_parameter(T: tc.TC) -> None:
    err = call_error(T.matmul, randn(5, 3), randn(3, 7, dtype=torch.float64))
    assert isinstance(err, TcArgumentTypeError) and isinstance(err, TypeError)
    assert "'B'" in err.message and "float64" in err.message
    err = call_error(T.matmul, randn(5, 3).to(torch.int32), randn(3, 7))
    assert isinstance(err, TcArgumentTypeError) and "'A'" in err.message


def test_wrong_rank_names_the_parameter(T: tc.TC) -> None:
    err = call_error(T.matmul, randn(5, 3), randn(1, 3, 7))
    assert isinstance(err, TcArgumentError) and "'B'" in err.message
    err = call_error(T.matmul, randn(5), randn(3, 7))
    assert isinstance(err, TcArgumentError) and "'A'" in err.message


def test_size_symbol_bound_to_two_sizes(T: tc.TC) -> None:
    err = call_error(T.matmul, randn(5, 3), randn(4, 7))
    assert isinstance(err, TcArgumentError)
    assert "'K'" in err.message and "'A'" in err.message and "'B'" in err.message
    assert "3" in err.message and "4" in err.message


def test_size_symbol_bound_twice_in_one_tensor() -> None:
    T = define("def f(float(N, N) A) -> (C) { C(i) = A(i, i) }")
    err = call_error(T.f, randn(3, 5))
    assert isinstance(err, TcArgumentError) and "'N'" in err.message


def test_wrong_literal_dimension(T: tc.TC) -> None:
    err = call_error(T.fixed, randn(4, 5))
    assert isinstance(err, TcArgumentError) and "'A'" in err.message and "3" in err.message
    assert T.fixed(randn(3, 5)).shape == (5,)


def test_devices_differ(T: tc.TC) -> None:
    a = randn(5, 3)
    b = torch.empty(3, 7, device="meta")
    for args in [(a, b), (a.to("meta"), randn(3, 7))]:
        err = call_error(T.matmul, *args)
        assert isinstance(err, TcArgumentError)
        assert "A" in err.message and "B" in err.message and "meta" in err.message


def test_bind_without_running(T: tc.TC) -> None:
    call = T.matmul.bind(randn(5, 3), randn(3, 7))
    assert call.sizes == {"M": 5, "K": 3, "N": 7}
    assert call.device == torch.device("cpu")
    meta = T.matmul.bind(torch.empty(5, 3, device="meta"), torch.empty(3, 7, device="meta"))
    assert meta.device == torch.device("meta") and meta.sizes["N"] == 7


def test_non_tensor_arguments(T: tc.TC) -> None:
    err = call_error(T.matmul, randn(5, 3), [[1.0] * 7] * 3)
    assert isinstance(err, TcArgumentTypeError) and "'B'" in err.message
    err = call_error(T.matmul, randn(5, 3), 1.0)
    assert isinstance(err, TcArgumentTypeError)


def test_sizes_giving_empty_ranges_are_positioned_errors() -> None:
    T = define("def f(float(N) A, float(K) W) -> (C) {\n  C(i) +=! A(i + k) * W(k)\n}")
    err = call_error(T.f, randn(3), randn(5))
    assert isinstance(err, TcRangeError) and err.line == 2
    assert T.f(randn(5), randn(5)).shape == (1,)


# -- results ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("m", "k", "n"), [(1, 1, 1), (3, 5, 7), (7, 3, 1)])
def test_matmul(T: tc.TC, m: int, k: int, n: int) -> None:
    a, b = randn(m, k), randn(k, n)
    c = T.matmul(a, b)
    assert isinstance(c, torch.Tensor) and c.dtype == torch.float32 and c.shape == (m, n)
    torch.testing.assert_close(c, a @ b, rtol=1e-5, atol=1e-5)


def test_non_contiguous_inputs(T: tc.TC) -> None:
    base = randn(7, 9)
    cases = [
        (base.t()[:5, :3], randn(3, 5)),                     # transposed
        (base[::2, ::3], randn(3, 5)),                        # sliced with steps
        (base.narrow(0, 2, 3).narrow(1, 1, 3), randn(3, 1)),  # offset view
        (randn(3, 5), base.t()[::2, ::3]),                    # steps on a transpose
        (base.expand(2, 7, 9)[1][:, :4], randn(4, 3)),       # zero stride dimension
        (randn(1, 3).expand(5, 3), randn(3, 3)),              # broadcast view
    ]
    for a, b in cases:
        assert not (a.is_contiguous() and b.is_contiguous())
        torch.testing.assert_close(T.matmul(a, b), a.contiguous() @ b.contiguous(),
                                   rtol=1e-5, atol=1e-5)


def test_channels_last_input() -> None:
    T = define("def f(float(N, C, H, W) X) -> (Y) { Y(n, c, h, w) = X(n, c, h, w) * 2.0 }")
    x = randn(1, 3, 5, 7).to(memory_format=torch.channels_last)
    torch.testing.assert_close(T.f(x), x * 2)


def test_multiple_outputs_in_declared_order_without_temporaries(T: tc.TC) -> None:
    x = randn(5, 7)
    out = T.stats(x, torch.tensor(0.5))
    assert isinstance(out, tuple) and len(out) == 2
    var, mean = out
    torch.testing.assert_close(mean, x.mean(1), rtol=1e-5, atol=1e-6)
    # eps is inside the reduction over d: it is added D = 7 times.
    torch.testing.assert_close(var, x.var(1, unbiased=False) + 7 * 0.5, rtol=1e-5, atol=1e-6)


def test_scalars_as_0d_tensors_and_python_numbers(T: tc.TC) -> None:
    x = randn(5)
    want = x * 3 * 0.5
    for k, alpha in [(3, 0.5), (torch.tensor(3, dtype=torch.int32),
                                torch.tensor(0.5, dtype=torch.float64))]:
        y, total = T.scaled(x, k, alpha)
        torch.testing.assert_close(y, want)
        torch.testing.assert_close(total, want.sum(), rtol=1e-5, atol=1e-6)
    assert T.stats(randn(3, 5), 0.25)[0].shape == (3,)


def test_a_float_for_an_integer_scalar_is_rejected(T: tc.TC) -> None:
    err = call_error(T.scaled, randn(5), 2.5, 0.5)
    assert isinstance(err, TcArgumentTypeError) and "'k'" in err.message


def test_scalar_outputs_are_0d_tensors(T: tc.TC) -> None:
    _, total = T.scaled(randn(5), 1, 1.0)
    assert total.shape == ()
    T2 = define("def f(float(N) X) -> (s) { s +=! X(i) }")
    s = T2.f(randn(7))
    assert isinstance(s, torch.Tensor) and s.dim() == 0


def test_outputs_are_written_into_preallocated_tensors(T: tc.TC) -> None:
    a, b = randn(5, 3), randn(3, 7)
    c = torch.full((5, 7), 99.0)
    r = T.matmul(a, b, outputs=[c])
    assert r is c
    torch.testing.assert_close(c, a @ b, rtol=1e-5, atol=1e-5)
    x = randn(3, 5)
    var, mean = torch.empty(3), torch.empty(3)
    out = T.stats(x, 0.0, outputs=(var, mean))
    assert out[0] is var and out[1] is mean
    torch.testing.assert_close(mean, x.mean(1), rtol=1e-5, atol=1e-6)


def test_preallocated_outputs_are_checked(T: tc.TC) -> None:
    a, b = randn(5, 3), randn(3, 7)
    for outputs in ([torch.empty(5, 6)], [torch.empty(5, 7, dtype=torch.float64)],
                    [torch.empty(5, 7), torch.empty(5, 7)]):
        with pytest.raises(TcError):
            T.matmul(a, b, outputs=outputs)


def test_every_dtype_round_trips() -> None:
    for name, dtype in [("bool", torch.bool), ("int8", torch.int8), ("int16", torch.int16),
                        ("int32", torch.int32), ("int64", torch.int64), ("uint8", torch.uint8),
                        ("half", torch.float16), ("bfloat16", torch.bfloat16),
                        ("float", torch.float32), ("double", torch.float64)]:
        T = define(f"def f({name}(N) X) -> (Y) {{ Y(i) = X(N - 1 - i) }}")
        x = (torch.arange(5) % 2 == 0) if dtype is torch.bool else torch.arange(5).to(dtype)
        y = T.f(x)
        assert y.dtype == dtype
        assert torch.equal(y, x.flip(0))


def test_inputs_are_not_modified(T: tc.TC) -> None:
    x = randn(3, 5)
    before = x.clone()
    T.stats(x, 1.0)
    assert torch.equal(x, before)


def test_empty_inputs() -> None:
    T = define("def f(float(N, K) A) -> (C) { C(n) +=! A(n, k) }")
    assert T.f(torch.empty(3, 0)).tolist() == [0.0, 0.0, 0.0]
    assert T.f(torch.empty(0, 4)).shape == (0,)
