"""Guarded reads that their guards keep in bounds (polyhedral.guards): their run-time
checks go, the others stay, on every target."""

from __future__ import annotations

import pytest
import torch

import tc
from polyhedral.guards import proven_in_bounds

SHIFT = """def shift(float(N) X) -> (Y) {
    Y(i) = i > 0 ? X(i - 1) : 0.0 where i in 0:N
}"""
ELSE_BRANCH = """def shift(float(N) X) -> (Y) {
    Y(i) = i < 1 ? 0.0 : X(i - 1) where i in 0:N
}"""
CONJUNCTION = """def both(float(N) X) -> (Y) {
    Y(i) = (i >= 2 && i < N - 1) ? X(i - 2) + X(i + 1) : 0.0 where i in 0:N
}"""
WRONG_GUARD = """def past(float(N) X) -> (Y) {
    Y(i) = i >= 0 ? X(i + 1) : 0.0 where i in 0:N
}"""
TWICE = """def twice(float(N) X) -> (Y) {
    Y(i) = (i > 0 ? X(i - 1) : 0.0) + (i < N ? X(i - 1) : 0.0) where i in 0:N
}"""
BY_VALUE = """def by_value(float(N) X) -> (Y) {
    Y(i) = X(i) > 0 ? X(i + 1) : 0.0 where i in 0:N
}"""
CONV_DX = """def conv2d_dx(float(F, C, KH, KW) Wt, float(N, F, HO, WO) dO) -> (dI) {
    dI(n, c, h, w) +=!
        (h + kh >= KH - 1 && h + kh < HO + KH - 1 && w + kw >= KW - 1 && w + kw < WO + KW - 1)
        ? dO(n, f, h + kh - (KH - 1), w + kw - (KW - 1)) * Wt(f, c, KH - 1 - kh, KW - 1 - kw)
        : 0.0
        where h in 0:HO+KH-1, w in 0:WO+KW-1, kh in 0:KH, kw in 0:KW
}"""


def _proven(text: str) -> set[str]:
    fn = getattr(tc.define(text), text.split("(")[0].split()[-1]).ir
    return {r.tensor + str(len(r.indices)) for r in proven_in_bounds(fn, fn.stages[0])}


def test_what_the_guards_prove() -> None:
    assert _proven(SHIFT) == {"X1"}
    assert _proven(ELSE_BRANCH) == {"X1"}
    assert _proven(CONJUNCTION) == {"X1"}
    assert _proven(CONV_DX) == {"dO4", "Wt4"}
    assert _proven(WRONG_GUARD) == set()
    assert _proven(TWICE) == set()  # one occurrence is unguarded at i = 0
    assert _proven(BY_VALUE) == set()  # a tensor's value is no constraint


@pytest.mark.parametrize("text", [SHIFT, ELSE_BRANCH, CONJUNCTION])
def test_proved_reads_run_unchecked_and_right(text: str, target: str) -> None:
    x = torch.randn(13)
    entry = text.split("(")[0].split()[-1]
    ex = tc.compile(text, entry, None, x, backend=target)
    assert "tc_oob" not in "".join(k.source for k in ex.kernels)
    want = torch.zeros(13)
    if entry == "both":
        want[2:12] = x[0:10] + x[3:13]
    else:
        want[1:] = x[:-1]
    torch.testing.assert_close(ex(x), want)


@pytest.mark.parametrize("text", [WRONG_GUARD, TWICE])
def test_unproved_reads_keep_their_checks(text: str, target: str) -> None:
    x = torch.randn(7)
    entry = text.split("(")[0].split()[-1]
    ex = tc.compile(text, entry, None, x, backend=target)
    with pytest.raises(tc.TcRangeError, match="'X'"):
        ex(x)


def test_conv2d_dx_without_checks_matches_torch(target: str) -> None:
    g = torch.Generator().manual_seed(0)
    wt, d_o = torch.randn(5, 3, 3, 2, generator=g), torch.randn(2, 5, 7, 6, generator=g)
    ex = tc.compile(CONV_DX, "conv2d_dx", None, wt, d_o, backend=target)
    assert "tc_oob" not in "".join(k.source for k in ex.kernels)
    x = torch.zeros(2, 3, 9, 7, requires_grad=True)
    torch.nn.functional.conv2d(x, wt).backward(d_o)
    torch.testing.assert_close(ex(wt, d_o), x.grad, rtol=1e-4, atol=1e-4)
