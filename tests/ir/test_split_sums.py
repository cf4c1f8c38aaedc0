"""Long float sums split in two stages (tc.ir.split_sums): which sums, the IR it builds,
and that every catalogue kernel computes the same with every reduction split (a tiny
chunk, so that the test sizes split, several levels deep) on the reference
interpreter and on the targets here."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from kernel_checks import assert_same
from targets_here import runnable_targets

import tc
import tc.ir.split_sums as ss
from tc.catalogue import KERNELS
from tc.ir.interpret import run as interpret
from tc.ir.verify import verify

ROW_SUM = "def rs(float(R, N) x) -> (y) {\n  y(r) +=! x(r, i)\n}"


@functools.cache
def _fn(text: str, entry: str):
    return tc.define(text, backend="reference")[entry].ir


def test_short_sums_and_other_reductions_are_left_alone() -> None:
    fn = _fn(ROW_SUM, "rs")
    assert ss.sum_splits(fn, {"R": 3, "N": ss.CHUNK}) == ((-1, 0),)
    assert ss.split_sums(fn, ((-1, 0),)) is fn
    mx = _fn("def m(float(N) x) -> (y) {\n  y max=! x(i)\n}", "m")
    ints = _fn("def s(int32(N) x) -> (y) {\n  y +=! x(i)\n}", "s")
    assert ss.sum_splits(mx, {"N": 10**8}) == ((-1, 0),)
    assert ss.sum_splits(ints, {"N": 10**8}) == ((-1, 0),)


def test_levels_grow_with_the_length() -> None:
    fn = _fn(ROW_SUM, "rs")
    assert ss.sum_splits(fn, {"R": 3, "N": ss.CHUNK + 1}) == ((0, 1),)
    assert ss.sum_splits(fn, {"R": 3, "N": ss.CHUNK ** 2}) == ((0, 1),)
    assert ss.sum_splits(fn, {"R": 3, "N": ss.CHUNK ** 2 + 1}) == ((0, 2),)
    two = _fn("def s(float(A, B) x) -> (y) {\n  y +=! x(a, b)\n}", "s")
    assert ss.sum_splits(two, {"A": 10, "B": 10**6}) == ((1, 1),)  # the longest index


def test_split_function_verifies_and_reads_the_partials() -> None:
    fn = _fn(ROW_SUM, "rs")
    split = ss.split_sums(fn, ((0, 2),))
    verify(split)
    assert [st.tensor for st in split.stages] == ["y_part", "y_part1", "y"]
    assert [t.name for t in split.temps] == ["y_part", "y_part1"]
    assert split.outputs == fn.outputs and split.inputs == fn.inputs


@pytest.mark.parametrize("text, entry, sizes", [
    (ROW_SUM, "rs", {"R": 3, "N": 29}),
    ("def s(float(N) x) -> (y) {\n  y +=! x(i)\n}", "s", {"N": 10}),
    ("def s(float(N) x) -> (y) {\n  y +=! x(i) where i in 3:N-2\n}", "s", {"N": 31}),
    ("def s(float(N) x, float(N) w) -> (y) {\n  y(j) = 1.0 where j in 0:2\n"
     "  y(j) += x(i) * w(i)\n}", "s", {"N": 17}),
])
def test_split_sums_equal_the_unsplit_ones(monkeypatch, text: str, entry: str,
                                           sizes: dict[str, int]) -> None:
    monkeypatch.setattr(ss, "CHUNK", 3)
    fn = _fn(text, entry)
    splits = ss.sum_splits(fn, sizes)
    assert any(levels for _, levels in splits)
    _same_results(fn, ss.split_sums(fn, splits), sizes)
    # A split that sizes would not choose (one term, fewer than a chunk) is exact too.
    _same_results(fn, ss.split_sums(fn, [(0, 2) if lv else (w, lv) for w, lv in splits]),
                  {k: 1 for k in sizes} if text != ROW_SUM else {"R": 1, "N": 1})


def _same_results(fn, split, sizes: dict[str, int]) -> None:
    verify(split)
    rng = np.random.default_rng(1)
    inputs = {t.name: rng.standard_normal([s.evaluate(sizes) for s in t.shape]).astype(
        np.float32) for t in fn.inputs}
    want = interpret(fn, inputs, sizes)
    got = interpret(split, inputs, sizes)
    for t in fn.outputs:
        np.testing.assert_allclose(got[t.name], want[t.name], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("target", runnable_targets())
@pytest.mark.parametrize("name", sorted(KERNELS))
def test_catalogue_with_every_sum_split(monkeypatch, name: str, target: str) -> None:
    monkeypatch.setattr(ss, "CHUNK", 3)
    kernel = KERNELS[name]
    sizes = kernel.test_sizes[0]
    inputs = kernel.make_inputs(sizes, torch.Generator().manual_seed(0))
    want = tc.define(kernel.tc, backend="reference")[kernel.entry](*inputs)
    ex = tc.compile(kernel.tc, kernel.entry, tc.MappingOptions("naive"), *inputs,
                    backend=target)
    assert_same(ex(*inputs), want, max(kernel.rtol, 1e-4), max(kernel.atol, 1e-5),
                what=f"{name} on {target}")
