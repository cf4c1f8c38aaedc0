"""The MLIR export verified by real MLIR: every catalogue definition, the front end's
valid programs and a seeded sample of the differential generator's programs are
compiled by IREE (``llvm-cpu``) and run against the reference interpreter; the
``iree`` back end memoises and caches its modules. Skipped only when IREE is not
installed (``pip install '.[mlir]'``; ``make setup`` installs it)."""

from __future__ import annotations

import math
import re
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, Phase, given, settings

import tc
from tc.arguments import bind, to_numpy
from tc.catalogue import KERNELS
from tc.ir import interpret
from tc.lang.frontend import check_text
from tc.mlir import run as iree
from tc.mlir.export import export_function

pytestmark = pytest.mark.skipif(not iree.available(), reason=iree.missing_reason() or "")

sys.path.insert(0, str(Path(__file__).parent.parent))
from programs import EVERYTHING, OWN_PROGRAMS  # noqa: E402


def _check(got, want, rtol: float, atol: float) -> None:
    got = got if isinstance(got, tuple) else (got,)
    want = want if isinstance(want, tuple) else (want,)
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        if a.dtype in (torch.float16, torch.bfloat16):
            torch.testing.assert_close(a.float(), b.float(), rtol=2e-2, atol=2e-2)
        else:
            torch.testing.assert_close(a, b, rtol=rtol, atol=atol, equal_nan=True)


# -- the catalogue ---------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_catalogue_definition_on_iree_equals_the_interpreter(name: str) -> None:
    k = KERNELS[name]
    ref = tc.define(k.tc, backend="reference")[k.entry]
    run = tc.define(k.tc, backend="iree")[k.entry]
    # the first two test sizes: odd ones, and 1s or primes
    for sizes in k.test_sizes[:2]:
        inputs = k.make_inputs(sizes, torch.Generator().manual_seed(1))
        _check(run(*inputs), ref(*inputs), max(k.rtol, 1e-4), max(k.atol, 1e-4))


#: Catalogue definitions also checked with one dynamic module for all their test sizes:
#: sub-ranges, strides, guarded and indirect reads, temporaries, two outputs.
DYNAMIC = ("conv2d_s2", "conv2d_dx", "wavenet", "embedding_sum", "softmax", "moments")


@pytest.mark.parametrize("name", DYNAMIC)
def test_catalogue_definition_dynamic_module_serves_every_test_size(name: str) -> None:
    k = KERNELS[name]
    fn = check_text(k.tc).functions[k.entry]
    first = k.make_inputs(k.test_sizes[0], torch.Generator().manual_seed(2))
    text = tc.to_mlir(k.tc, k.entry, *first, dynamic=True)
    mod = iree.load(iree.compile_module(text), fn.name, [t.dtype for t in fn.outputs])
    for sizes in k.test_sizes:
        inputs = k.make_inputs(sizes, torch.Generator().manual_seed(2))
        arrays = [to_numpy(t) for t in inputs]
        got = mod.run(arrays, [t.dtype for t in fn.inputs])
        want = interpret.run(fn, {d.name: a for d, a in zip(fn.inputs, arrays, strict=True)},
                             bind(fn, inputs).sizes)
        for t, a in zip(fn.outputs, got, strict=True):
            np.testing.assert_allclose(a, want[t.name], rtol=1e-4, atol=1e-4,
                                       err_msg=f"{t.name} at {sizes}")


# -- the front end's valid programs, static and dynamic ---------------------------------


def _program_cases() -> list[tuple[str, str]]:
    return [(text, name) for text in [*OWN_PROGRAMS, EVERYTHING]
            for name in check_text(text).functions]


def _inputs(fn, size: int, g: torch.Generator) -> list[torch.Tensor]:
    sizes = {s.name: {"KH": 2, "KW": 3}.get(s.name, size) for s in fn.sizes}
    out = []
    for t in fn.inputs:
        shape = tuple(s.evaluate(sizes) for s in t.shape)
        dtype = tc.arguments.TORCH_DTYPES[t.dtype]
        if t.dtype.is_float:
            out.append(torch.randn(shape, generator=g).to(dtype))
        elif t.dtype.is_bool:
            out.append(torch.rand(shape, generator=g) > 0.5)
        elif t.dtype.is_signed:
            out.append(torch.randint(-7, 8, shape, generator=g).to(dtype))
        else:
            out.append(torch.randint(0, 9, shape, generator=g).to(dtype))
    return out


@pytest.mark.parametrize("text, name", _program_cases(),
                         ids=lambda v: v if len(v) < 20 else None)
def test_front_end_program_on_iree_equals_the_interpreter(text: str, name: str) -> None:
    fn = check_text(text).functions[name]
    g = torch.Generator().manual_seed(3)
    ref = tc.define(text, backend="reference")[name]
    run = tc.define(text, backend="iree")[name]
    inputs = _inputs(fn, 5, g)
    _check(run(*inputs), ref(*inputs), 1e-5, 1e-5)
    # one dynamic module for several sizes (7 and 13: primes; 5: the sizes checked)
    call = bind(fn, inputs)
    mod = iree.load(iree.compile_module(export_function(fn, call.sizes, dynamic=True)),
                    fn.name, [t.dtype for t in fn.outputs])
    for size in (5, 7, 13):
        inputs = _inputs(fn, size, g)
        arrays = [to_numpy(t) for t in inputs]
        got = mod.run(arrays, [t.dtype for t in fn.inputs])
        want = interpret.run(fn, {d.name: a for d, a in zip(fn.inputs, arrays, strict=True)},
                             bind(fn, inputs).sizes)
        for t, a in zip(fn.outputs, got, strict=True):
            tol = 2e-2 if t.dtype.bits == 16 else 1e-5
            np.testing.assert_allclose(a, want[t.name], rtol=tol, atol=tol, err_msg=t.name)


# -- regressions: programs where IREE needed a workaround ------------------------------

REGRESSIONS = [
    # a term repeated along a reduction index it never mentions: IREE summed it once
    ("def f(float A) -> (T1) {\n    T0(i) = uint8(1) where i in 0:2\n"
     "    T1(i) +=! int64(T0(i) + 1) where r in 0:2\n}", [torch.tensor(1.0)]),
    ("def f(float(N) A) -> (P, Q) {\n    P(i) *=! A(i) where r in 0:3\n"
     "    Q(i) max=! A(i) where r in 0:2\n}", [torch.tensor([-2.0, 0.5, 3.0])]),
    # a term that reads a reduction index by value only: IREE failed to vectorise it
    ("def f(float(N) A) -> (T1, T2) {\n    T1(i) +=! float(r) where i in 0:N, r in 1:4\n"
     "    T2(i) min=! A(i) * float(q) where q in 0:3\n}", [torch.tensor([1.0, -2.0])]),
    # a strided read along a loop of one iteration: IREE's unit-loop folding made
    # d0 * 2 + d2 a plain d2 spanning more than its loop
    ("def f(int32(3, M) B) -> (T1) {\n    T1(i, j) min=! B(0, 2 * i + c) + r "
     "where c in 0:2, r in 0:M, i in 0:1, j in 0:M\n}",
     [torch.arange(9, dtype=torch.int32).reshape(3, 3)]),
    # IREE's math.atan2 at zeros and infinities
    ("def f(float(N) Y, float(N) X) -> (Z) {\n    Z(i) = atan2(Y(i), X(i))\n}",
     [torch.tensor([0.0, -0.0, 0.0, math.inf, math.inf, -math.inf, 1.0]),
      torch.tensor([0.0, -0.0, -0.0, math.inf, -math.inf, math.inf, -1.0])]),
    # IREE's math.powf: NaN for every negative base, and at pow(x, 0), pow(1, y)
    ("def f(float(N) Y, float(N) X) -> (Z) {\n    Z(i) = pow(Y(i), X(i))\n}",
     [torch.tensor([-2.0, -2.0, 0.0, 1.0, math.nan, -0.0, -math.inf, 2.0]),
      torch.tensor([3.0, 2.0, 0.0, math.nan, 0.0, -1.0, 3.0, -0.5])]),
    # IREE's sinh/cosh overflow early; sinpi/cospi reduced exactly (zeros at integers)
    ("def f(float(N) X) -> (A, B, C, D) {\n    A(i) = sinh(X(i))  B(i) = cosh(X(i))"
     "  C(i) = sinpi(X(i))  D(i) = cospi(X(i))\n}",
     [torch.tensor([89.0, -89.0, 0.5, -3.0, 1.5, 100.0, 1e30, math.inf])]),
    # IREE's math.asinh/acosh/cbrt at large and infinite arguments
    ("def f(float(N) X) -> (A, B, C) {\n    A(i) = asinh(X(i))  B(i) = acosh(X(i))"
     "  C(i) = cbrt(X(i))\n}",
     [torch.tensor([-math.inf, math.inf, math.nan, 1e30, -1e30, 0.5, -3.0, 1.0, 1e-30])]),
]


@pytest.mark.parametrize("text, inputs", REGRESSIONS)
def test_regressions_on_iree_equal_the_interpreter(text: str, inputs) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = tc.define(text, backend="iree").f(*inputs)
        want = tc.define(text, backend="reference").f(*inputs)
    _check(got, want, 1e-6, 1e-6)


# -- a seeded sample of the differential generator ---------------------------------------

FUZZ_EXAMPLES = 24


def test_generated_programs_on_iree_equal_the_interpreter() -> None:
    """Judged as the differential campaign judges a target (``tc.fuzz.run``): within
    the dtype's tolerance, or as close to the exact (double) value as rounding allows."""
    from tc.fuzz.generate import Case, cases
    from tc.fuzz.run import _arrays, difference, make_inputs, program_precision, run_target
    from tc.options import MappingOptions

    seen = {"compared": 0, "refused": 0, "unlinked": 0}
    naive = MappingOptions("naive")

    @settings(max_examples=FUZZ_EXAMPLES, derandomize=True, database=None, deadline=None,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=cases())
    def one(case: Case) -> None:
        if case.expect_range_error:
            return  # IREE clamps what the interpreter reports
        if case.special and re.search(r"\b(sin|cos|tan)\(", case.text):
            return  # IREE's sin/cos/tan reduce huge arguments (1e30) wrongly (docs/mlir.md)
        ref = run_target(case, "reference", naive)
        if ref["status"] != "ok":
            return
        exact = run_target(case, "exact", naive)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                got = tc.define(case.text, backend="iree")[case.entry](*make_inputs(case))
            except tc.TcExportError as e:  # a builtin with no MLIR equivalent
                assert e.line is not None, e
                seen["refused"] += 1
                return
            except tc.TcBackendError as e:  # a float64 builtin IREE's CPU code lacks
                assert ("undefined symbol" in str(e)
                        or "failed to legalize operation 'math." in str(e)), e
                seen["unlinked"] += 1
                return
        why = difference(ref["outputs"], _arrays(got if isinstance(got, tuple) else (got,)),
                         program_precision(case.text),
                         exact.get("outputs") if exact["status"] == "ok" else None)
        assert why is None, f"{why}\n{case.text}\nsizes {case.sizes}"
        seen["compared"] += 1

    one()
    # most programs the interpreter runs are compared (not refused, nor unlinkable)
    assert seen["compared"] >= 4 and seen["compared"] >= 2 * (seen["refused"]
                                                               + seen["unlinked"]), seen


# -- the back end ------------------------------------------------------------------------

MATMUL = """
def matmul(float(M, K) A, float(K, N) B) -> (C) {
    C(m, n) +=! A(m, k) * B(k, n)
}
"""


def test_iree_backend_memoises_per_signature_and_caches_on_disk(tmp_path, monkeypatch) -> None:
    from autotuner.cache import CompilationCache

    calls = []
    real = iree.compile_module
    monkeypatch.setattr(iree, "compile_module", lambda *a: calls.append(1) or real(*a))
    cache = CompilationCache(tmp_path / "c.sqlite")
    a, b = torch.randn(3, 5), torch.randn(5, 7)
    unit = tc.define(MATMUL, backend="iree", cache=cache)
    torch.testing.assert_close(unit.matmul(a, b), a @ b)
    unit.matmul(a, b)
    assert len(calls) == 1  # memoised per signature
    unit.matmul(torch.randn(2, 5), b)
    assert len(calls) == 2  # another signature compiles
    assert any(k.backend == "iree-llvm-cpu" for k in cache.keys())
    again = tc.define(MATMUL, backend="iree", cache=cache)  # a fresh unit: from the cache
    torch.testing.assert_close(again.matmul(a, b), a @ b)
    assert len(calls) == 2


def test_iree_backend_targets_and_refusals() -> None:
    from tc.backend import get_backend

    assert get_backend("iree").hal_target == "llvm-cpu"
    assert get_backend("iree:vmvx").hal_target == "vmvx"
    assert get_backend("iree", target="vmvx").hal_target == "vmvx"
    with pytest.raises(tc.TcBackendError, match="target="):
        get_backend("cpu", target="vmvx")
    a, b = torch.randn(3, 5), torch.randn(5, 7)
    out = tc.define(MATMUL, backend="iree", target="vmvx").matmul(a, b)
    torch.testing.assert_close(out, a @ b)
    acc = "def f(float(M, K) A) -> (C) { C(m) += A(m, k) }"
    with pytest.raises(tc.TcBackendError, match="outputs="):
        tc.define(acc, backend="iree").f(a, outputs=[torch.ones(3)])
