"""tc.ir.wide_accumulators: half-precision sums and products accumulate in float32 on
every target and under every option, as torch's do; the expected values come from
torch (``x.float().sum().half()``), never from tc."""

from __future__ import annotations

import pytest
import torch
from targets_here import runnable_targets

import tc
from tc.ir import nodes as ir
from tc.ir.interpret import run as interpret
from tc.ir.verify import verify
from tc.ir.wide_accumulators import widen_accumulators
from tc.lang.frontend import check_text

TARGETS = ["reference", *runnable_targets()]
OPTIONS = {
    "default": None,
    "tiled": tc.MappingOptions("naive").tile([4, 8]),
    "no register promotion": tc.MappingOptions("naive").tile([0]).usePrivateMemory(False),
}
ROW_SUM = "def rs(half(R, N) x) -> (y) {\n  y(r) +=! x(r, i)\n}"


def _fn(text: str) -> ir.Function:
    checked = check_text(text)
    return next(iter(checked.functions.values()))


def test_only_half_sums_and_products_are_widened() -> None:
    fn = _fn("""def f(half(N) x, float(N) z, bfloat16(N) b) -> (s, p, m, w, c) {
        s +=! x(i)
        p *=! b(i)
        m max=! x(i)
        w +=! z(i)
        c(i) = x(i)
        c(i) += x(i)
    }""")
    wide = widen_accumulators(fn)
    verify(wide)
    assert [t.name for t in wide.temps] == ["s_acc", "p_acc"]
    assert [st.tensor for st in wide.stages] == ["s_acc", "s", "p_acc", "p", "m", "w", "c",
                                                 "c"]
    assert widen_accumulators(wide) is wide or widen_accumulators(fn) is wide
    plain = _fn("def g(float(N) x) -> (s) { s +=! x(i) }")
    assert widen_accumulators(plain) is plain


def test_a_reduction_without_bang_starts_from_the_tensor() -> None:
    fn = _fn("""def f(half(N, K) x) -> (y) {
        y(n) = x(n, 0)
        y(n) += x(n, k)
    }""")
    wide = widen_accumulators(fn)
    verify(wide)
    assert [(st.tensor, st.op, st.init) for st in wide.stages] == [
        ("y", None, False), ("y_acc", None, False), ("y_acc", "+", False), ("y", None, False)]
    x = (torch.rand(3, 40) * 100).half()
    got = interpret(fn, {"x": x.numpy()}, {"N": 3, "K": 40})["y"]
    want = (x[:, 0].float() + x.float().sum(1)).half()
    torch.testing.assert_close(torch.from_numpy(got), want, rtol=1e-3, atol=0)


@pytest.mark.parametrize("options", list(OPTIONS), ids=list(OPTIONS))
@pytest.mark.parametrize("backend", TARGETS)
def test_half_row_sums_match_torch(backend: str, options: str) -> None:
    """200 terms near 100: a float16 accumulator would be off by tens."""
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(5, 200, generator=g) * 100 + 50).half()
    factory = None if OPTIONS[options] is None else (lambda *a, o=OPTIONS[options]: o)
    y = tc.define(ROW_SUM, factory, backend=backend).rs(x)
    want = x.float().sum(1).half()
    torch.testing.assert_close(y, want, rtol=2e-3, atol=0)


@pytest.mark.parametrize("backend", TARGETS)
def test_half_product_does_not_overflow_on_the_way(backend: str) -> None:
    """10 factors of 300 times 10 of 1/300 is 1: a float16 running product overflows
    to inf in some orders (and inf * 0 makes NaN)."""
    x = torch.cat([torch.full((10,), 300.0), torch.full((10,), 1 / 300.0)]).half()
    x = x.repeat(2, 1)
    x[1, 5] = 0
    y = tc.define("def p(half(R, N) x) -> (y) { y(r) *=! x(r, i) }", backend=backend).p(x)
    want = x.float().prod(1).half()
    torch.testing.assert_close(y, want, rtol=2e-2, atol=0)


@pytest.mark.parametrize("backend", TARGETS)
def test_where_bindings_survive_the_rewrite(backend: str) -> None:
    text = """def f(half(R, N) x, half(R) b) -> (y) {
        y(r) +=! x(r, i) * c where c = b(r)
    }"""
    x, b = (torch.rand(4, 30) * 10).half(), (torch.rand(4) * 3).half()
    y = tc.define(text, backend=backend).f(x, b)
    want = (x * b[:, None]).float().sum(1).half()
    torch.testing.assert_close(y, want, rtol=2e-3, atol=0)


@pytest.mark.parametrize("backend", TARGETS)
def test_long_split_sum_with_a_where_binding(backend: str) -> None:
    """A sum long enough to be split (tc.ir.split_sums) keeps its where binding, and
    the padding of the last chunk reads nothing."""
    text = "def f(float(N) x, float s) -> (y) { y +=! x(i) * c where c = s * x(i) }"
    x = torch.rand(4096 * 2 + 7)
    y = tc.define(text, backend=backend).f(x, torch.tensor(0.5))
    torch.testing.assert_close(y, (x * x * 0.5).double().sum().float(), rtol=1e-5, atol=0)
