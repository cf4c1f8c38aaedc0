"""Issue 14: the original's texts tc used to reject, at run time on every back end here
(the reference interpreter and each runnable target; CUDA compiled only).

* A reduction without ``!`` into a tensor no earlier statement wrote accumulates into
  the caller's ``outputs=`` (``C(m, n) += A(m, k) * B(k, n)`` is A·B + C) and into
  zeros when the runtime allocates the tensor (LANGUAGE.md section 2: zeros for every
  operator, so ``*=`` gives zeros and ``max=`` clamps at 0).
* An empty range makes its statement do nothing, whether literal (warned at define)
  or empty only for the call's sizes.

The expected values are computed with torch, independently of tc.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from targets_here import runnable_targets

import tc
from codegen.compiler import compile_program
from codegen.nvrtc import compile_cuda
from tc.arguments import bind
from tc.lang.frontend import check_text

BACKENDS = ["reference", *runnable_targets()]
MATMUL_ACC = "def mm(float(M, K) A, float(K, N) B) -> (C) { C(m, n) += A(m, k) * B(k, n) }"


def _define(text: str, backend: str) -> tc.TC:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", tc.TcWarning)  # the lenient forms warn, on purpose
        return tc.define(text, backend=backend)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


# -- reductions without '!' into unwritten tensors ----------------------------------------------


@pytest.mark.parametrize("m, k, n", [(1, 1, 1), (3, 5, 7), (13, 2, 11)])
def test_matmul_accumulates_into_the_callers_outputs(backend: str, m: int, k: int,
                                                     n: int) -> None:
    a, b, c0 = torch.randn(m, k), torch.randn(k, n), torch.randn(m, n)
    mm = _define(MATMUL_ACC, backend).mm
    out = c0.clone()
    got = mm(a, b, outputs=[out])
    assert got is out
    torch.testing.assert_close(out, a @ b + c0)
    # Without outputs=, the runtime allocates C: it starts at zeros.
    torch.testing.assert_close(mm(a, b), a @ b)
    # Once more with the same executor: a call's outputs never leak into the next.
    torch.testing.assert_close(mm(a, b), a @ b)


def test_a_strided_output_is_read_and_written_in_place(backend: str) -> None:
    a, b = torch.randn(4, 3), torch.randn(3, 5)
    base = torch.randn(5, 4)
    out = base.t()  # (4, 5), not contiguous
    want = a @ b + out.clone()
    _define(MATMUL_ACC, backend).mm(a, b, outputs=out)
    torch.testing.assert_close(out, want)


@pytest.mark.parametrize("op, reduce, combine", [
    ("max=", lambda x: x.amax(1), torch.maximum),
    ("min=", lambda x: x.amin(1), torch.minimum),
    ("*=", lambda x: x.prod(1), torch.mul),
    ("+=", lambda x: x.sum(1), torch.add),
])
def test_every_operator_starts_from_outputs_or_zeros(backend: str, op: str, reduce,
                                                     combine) -> None:
    x = torch.rand(7, 3) + 0.5
    x[2] -= 2.0  # a row below 0: max= from zeros clamps it, min= keeps it
    o0 = torch.randn(7)
    f = _define(f"def f(float(N, M) X) -> (O) {{ O(i) {op} X(i, j) }}", backend).f
    out = o0.clone()
    f(x, outputs=[out])
    torch.testing.assert_close(out, combine(o0, reduce(x)))
    torch.testing.assert_close(f(x), combine(torch.zeros(7), reduce(x)))


def test_an_elementwise_accumulation_without_reduction_index(backend: str) -> None:
    x, o0 = torch.randn(5), torch.randn(5)
    f = _define("def f(float(N) X) -> (O) { O(i) += X(i) * 2.0 }", backend).f
    out = o0.clone()
    f(x, outputs=[out])
    torch.testing.assert_close(out, o0 + 2 * x)
    torch.testing.assert_close(f(x), 2 * x)


def test_only_the_accumulated_output_reads_outputs(backend: str) -> None:
    # D is written by '=' first: its contents in outputs= are overwritten, as always.
    a, b = torch.randn(3, 4), torch.randn(4, 2)
    c0, d0 = torch.randn(3, 2), torch.randn(3, 2)
    f = _define("def f(float(M, K) A, float(K, N) B) -> (C, D) {\n"
                "  C(m, n) += A(m, k) * B(k, n)\n  D(m, n) = C(m, n) * 2.0\n}", backend).f
    c, d = c0.clone(), d0.clone()
    f(a, b, outputs=[c, d])
    torch.testing.assert_close(c, a @ b + c0)
    torch.testing.assert_close(d, 2 * (a @ b + c0))


@pytest.mark.parametrize("op, start", [("+=", lambda s: s), ("max=", lambda s: s.clamp(min=0))])
def test_a_temporary_starts_at_zeros(backend: str, op: str, start) -> None:
    x = torch.randn(6, 4)
    f = _define(f"def f(float(N, M) X) -> (O) {{\n  T(i) {op} X(i, j)\n"
                "  O(i) = T(i) * 3.0\n}", backend).f
    reduced = x.sum(1) if op == "+=" else x.amax(1)
    torch.testing.assert_close(f(x), 3 * start(reduced))


def test_the_gradient_of_a_sum_into_zeros_is_that_of_the_bang_form() -> None:
    text = MATMUL_ACC.replace("float", "double")
    a = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, 2, dtype=torch.float64, requires_grad=True)
    mm = _define(text, "reference").mm
    assert torch.autograd.gradcheck(mm, (a, b))
    assert mm.gradient_text() == tc.define(text.replace("+=", "+=!")).mm.gradient_text()


@pytest.mark.parametrize("op", ["*=", "min=", "max="])
def test_the_gradient_of_other_operators_into_zeros_is_refused(op: str) -> None:
    f = _define(f"def f(float(N, M) X) -> (O) {{ O(i) {op} X(i, j) }}", "reference").f
    with pytest.raises(tc.TcGradientError) as info:
        f.gradient()
    assert info.value.line == 1 and f"'{op}!'" in info.value.message


def test_a_traced_call_refuses_outputs_it_would_accumulate_into() -> None:
    class Traced(torch.Tensor):  # what tc.traced takes for a tracer's tensor
        pass

    a, b = torch.randn(2, 3), torch.randn(3, 4)
    mm = _define(MATMUL_ACC, "reference").mm
    with pytest.raises(tc.TcArgumentError, match="outputs="):
        mm(a.as_subclass(Traced), b, outputs=[torch.zeros(2, 4)])


def test_a_registered_operator_starts_from_zeros() -> None:
    with pytest.warns(tc.TcWarning, match="'\\+='"):
        op = tc.register_op("tc_issue14::mm_acc", MATMUL_ACC, backend="reference")
    a, b = torch.randn(3, 4), torch.randn(4, 5)
    torch.testing.assert_close(op(a, b), a @ b)
    torch.testing.assert_close(op(a, b), a @ b)


# -- empty ranges --------------------------------------------------------------------------------


@pytest.mark.parametrize("text, want", [
    # a statement over a literal empty range after a full one
    ("def f(float(N) A) -> (C) {\n  C(i) = A(i) + 1.0\n  C(i) = A(i + 10) * 0.0 "
     "where i in 8:4\n}", lambda a: a + 1),
    # an empty first statement does not fix the sizes: the next one does
    ("def f(float(N) A) -> (C) {\n  C(i) = A(i) * 5.0 where i in 3:3\n  C(i) = A(i) + 1.0\n}",
     lambda a: a + 1),
    # every statement of a result empty: allocated, zeros
    ("def f(float(N) A) -> (C) { C(i) = A(i) where i in 3:3 }", lambda a: torch.zeros(3)),
    # an empty reduction range with '!': the identity
    ("def f(float(N) A) -> (C) { C(i) +=! A(i) * A(k) where k in 2:2 }",
     lambda a: torch.zeros_like(a)),
    ("def f(float(N) A) -> (C) { C(i) max=! A(i) * A(k) where k in 2:2 }",
     lambda a: torch.full_like(a, -torch.inf)),
    # a temporary written by an empty statement only
    ("def f(float(N) A) -> (C) {\n  T(i) = A(i) where i in 0:0\n  C(i) = A(i) * 2.0\n}",
     lambda a: 2 * a),
])
def test_a_literal_empty_range_does_nothing(backend: str, text: str, want) -> None:
    a = torch.randn(5)
    torch.testing.assert_close(_define(text, backend).f(a), want(a))


def test_a_literal_empty_output_has_no_elements(backend: str) -> None:
    f = _define("def f(float(2) A) -> (C) { C(i) +=! A(i + k) where k in 0:3 }", backend).f
    assert f(torch.randn(2)).shape == (0,)


@pytest.mark.parametrize("n", [3, 7])
def test_a_range_empty_for_the_calls_sizes_does_nothing(backend: str, n: int) -> None:
    text = ("def f(float(N) A) -> (C, s) {\n  C(i) = A(i)\n  C(i) = C(i) + 1.0 where i in 5:N\n"
            "  s +=! A(k) where k in 5:N\n}")
    a = torch.randn(n)
    c, s = _define(text, backend).f(a)
    want = a.clone()
    want[5:] += 1
    torch.testing.assert_close(c, want)
    torch.testing.assert_close(s, a[5:].sum())


def test_an_output_empty_for_the_calls_sizes(backend: str) -> None:
    f = _define("def f(float(N) A) -> (C) { C(i) +=! A(i + k) where k in 0:3 }", backend).f
    torch.testing.assert_close(f(torch.arange(4.0)), torch.tensor([3.0, 6.0]))
    assert f(torch.randn(2)).shape == (0,)
    # Below that the output's extent N - 2 is negative: a positioned error.
    with pytest.raises(tc.TcRangeError, match="negative") as info:
        f(torch.randn(1))
    assert info.value.line == 1


# -- CUDA: compiled only ---------------------------------------------------------------


@pytest.mark.parametrize("text, inputs", [
    (MATMUL_ACC, [(3, 5), (5, 7)]),
    ("def f(float(N) A) -> (C) { C(i) = A(i) where i in 3:3 }", [(5,)]),
    ("def f(float(N) A) -> (C) {\n  C(i) = A(i) + 1.0\n  C(i) = A(i) where i in 8:4\n}",
     [(5,)]),
])
@pytest.mark.parametrize("preset", ["naive", "conv"])
def test_cuda_compiles(text: str, inputs, preset: str) -> None:
    [fn] = check_text(text).functions.values()
    tensors = [torch.zeros(s) for s in inputs]
    sizes = bind(fn, tensors).sizes
    program = compile_program(fn, tc.MappingOptions(preset), sizes,
                              [tuple(t.stride()) for t in tensors], "gpu")
    for ck in program.kernels:
        compile_cuda(ck.cuda_source, ck.name)
