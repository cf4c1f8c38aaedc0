"""Full reductions split over threads (codegen.split_reductions): chunks fixed by the
iteration count, so results are bit-identical for any thread count, and right."""

from __future__ import annotations

import pytest
import torch

import tc
from codegen import kernel as k
from codegen.targets import TARGETS
from tc.options import MappingOptions

pytestmark = pytest.mark.skipif(not TARGETS["cpu"].available(), reason="no C compiler")

SUM = "def total(float(N, D) X) -> (S) { S +=! X(n, d) * X(n, d) }"
MAX = "def top(float(N, D) X) -> (S) { S max=! X(n, d) }"
ISUM = "def itotal(int32(N, D) X) -> (S) { S +=! X(n, d) }"


def _parallel(ex) -> bool:
    return any(isinstance(s, k.For) and s.mapping == "omp"
               for ck in ex.program.kernels for s in k.walk_stmts(ck.kernel.body))


@pytest.mark.parametrize("fixed", [False, True])
@pytest.mark.parametrize("shape", [(1000, 300), (257, 129), (61, 1031)])
def test_sum_is_parallel_right_and_the_same_on_any_thread_count(shape, fixed) -> None:
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(3))
    want = (x.double() ** 2).sum().float()
    results = []
    for threads in (1, 2, 3):
        options = MappingOptions("naive").cpuThreads(threads).fixParametersBeforeScheduling(fixed)
        ex = tc.compile(SUM, "total", options, x, backend="cpu")
        assert _parallel(ex)
        out = ex(x)
        torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-3)
        results.append(out)
    assert all(torch.equal(results[0], r) for r in results[1:])


def test_max_and_integer_sums_are_exact() -> None:
    x = torch.randn(500, 301, generator=torch.Generator().manual_seed(4))
    ex = tc.compile(MAX, "top", None, x, backend="cpu")
    assert _parallel(ex) and torch.equal(ex(x), x.max())
    i = torch.randint(-1000, 1000, (700, 300), dtype=torch.int32)
    ex = tc.compile(ISUM, "itotal", None, i, backend="cpu")
    assert _parallel(ex) and torch.equal(ex(i), i.sum(dtype=torch.int32))


def test_small_fixed_size_reductions_stay_serial() -> None:
    x = torch.randn(5, 7)
    options = MappingOptions("naive").fixParametersBeforeScheduling(True)
    ex = tc.compile(SUM, "total", options, x, backend="cpu")
    assert not _parallel(ex)
    torch.testing.assert_close(ex(x), (x.double() ** 2).sum().float())


def test_without_cpu_parallel_nothing_is_split() -> None:
    x = torch.randn(1000, 300)
    ex = tc.compile(SUM, "total", MappingOptions("naive").cpuParallel(False), x,
                    backend="cpu")
    assert not _parallel(ex)
