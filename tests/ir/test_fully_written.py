"""``tc.ir.bounds.fully_written``: which outputs and temporaries the executor may leave
uninitialised (every element written before anything reads it), checked on the
definitions where the answer is known, and end to end: outputs that are not fully
written still start at 0 on every target."""

from __future__ import annotations

import pytest
import torch

import tc
from tc.ir.bounds import fully_written
from tc.lang.frontend import check_text

CASES = {
    "def f(float(N) X) -> (Y) { Y(i) = X(i) + 1.0 }": {"Y"},
    "def f(float(N, K) X) -> (S) { S(n) +=! X(n, k) }": {"S"},
    # the first write leaves S(0) at 0, which the update without "!" then adds to
    "def f(float(N, K) X) -> (S) {\n S(n) = 1.0 where n in 1:N\n S(n) += X(n, k)\n}": set(),
    # writes 1:N only, element 0 reads as 0
    "def f(float(N) X) -> (Y) { Y(i) = X(i) where i in 1:N }": set(),
    # a temporary fully written by its first statement, then the output
    "def f(float(N) X) -> (Y) {\n t(i) = X(i) * 2.0\n Y(i) = t(i) + 1.0\n}": {"t", "Y"},
    # only the second output is written whole
    "def f(float(N) X) -> (Y, Z) {\n Y(i) = X(i) where i in 1:N\n Z(i) = X(i)\n}": {"Z"},
}


@pytest.mark.parametrize("text", list(CASES))
def test_fully_written(text: str) -> None:
    fn = next(iter(check_text(text).functions.values()))
    assert fully_written(fn, {"N": 5, "K": 3}) == CASES[text]


def test_partially_written_outputs_still_start_at_zero(target: str) -> None:
    text = "def f(float(N) X) -> (Y) { Y(i) = X(i) where i in 1:N }"
    x = torch.randn(200) + 3.0
    for _ in range(3):  # reused allocations must not leak old values either
        y = tc.define(text, backend=target).f(x)
        assert y[0] == 0 and torch.equal(y[1:], x[1:])
