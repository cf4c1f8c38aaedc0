"""backend="iree" never turns a wrong subscript into an answer: its modules clamp the
reads they cannot prove in bounds, so a subscript read from data (``X(idx(i))``) is
checked by the reference first and an out-of-bounds one raises a TcRangeError."""

from __future__ import annotations

import pytest
import torch

import tc
from tc.mlir import run as iree
from tc.mlir.backend import data_dependent_reads

pytestmark = pytest.mark.skipif(not iree.available(), reason=iree.missing_reason() or "")

GATHER = "def g(float(N) X, int32(M) idx) -> (Y) { Y(i) = X(idx(i)) }"


def test_gather_in_bounds_equals_the_reference() -> None:
    x, idx = torch.randn(7), torch.tensor([6, 0, 3, 3, 1], dtype=torch.int32)
    got = tc.define(GATHER, backend="iree").g(x, idx)
    torch.testing.assert_close(got, x[idx.long()])


@pytest.mark.parametrize("bad", [7, -1])
def test_gather_out_of_bounds_raises(bad: int) -> None:
    x, idx = torch.randn(7), torch.tensor([2, bad, 0], dtype=torch.int32)
    with pytest.raises(tc.TcRangeError):
        tc.define(GATHER, backend="iree").g(x, idx)


def test_only_data_dependent_subscripts_are_checked() -> None:
    ref = tc.define(GATHER + "\ndef s(float(N) X) -> (Y) { Y(i) = X(i) + X(N - 1 - i) }",
                    backend="reference")
    assert data_dependent_reads(ref.g.ir)
    assert not data_dependent_reads(ref.s.ir)
