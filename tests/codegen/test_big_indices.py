"""64-bit index arithmetic for tensors too large for int32 offsets (issue 12, item 5).

The big tests allocate 2 GiB+ with ``torch.empty``: virtual memory until touched, and
they write only the elements they read. Views expanded to huge sizes (stride 0, one
element of memory) test the 64-bit paths that need no memory at all.
"""

from __future__ import annotations

import re

import pytest
import torch

import tc
from codegen import executor as executor_mod
from tc.ir.index_width import LIMIT_32, element_span
from tests.targets_here import runnable_targets

LASTROW = "def lastrow(int8(M, N) x) -> (y) {\n y(i) = x(M - 1, i) where i in 0:4\n}"
TAIL = "def tail(int8(N) x) -> (y) {\n y(i) = x(N - 4 + i) + i where i in 0:4\n}"
# Its rows expanded from one, a tensor of any number of rows is one signature class.
LAST = "def last(int8(N, M) x) -> (y) {\n y(j) = x(N - 1, j) + N\n}"
BIG_1D = 2**31 + 100


def _available_bytes() -> int:
    """MemAvailable of /proc/meminfo (0 where there is none)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


big_memory = pytest.mark.skipif(_available_bytes() < 6 * 2**30,
                                reason="needs 6 GiB of available memory (MemAvailable)")


def _cpu_available() -> bool:
    return "cpu" in runnable_targets()


needs_cpu = pytest.mark.skipif(not _cpu_available(), reason="no C compiler for the cpu target")
WANT = torch.tensor([1, 2, 3, 4], dtype=torch.int8)


@pytest.fixture(scope="module")
def big_matrix() -> torch.Tensor:
    """(2**16 + 1, 2**15) int8: 2 GiB + 32 KiB, with its last row's first four set."""
    x = torch.empty(2**16 + 1, 2**15, dtype=torch.int8)
    x[-1, :4] = WANT
    return x


@pytest.fixture(scope="module")
def big_vector() -> torch.Tensor:
    """2**31 + 100 int8 elements, the last four set."""
    x = torch.empty(BIG_1D, dtype=torch.int8)
    x[-4:] = WANT
    return x


def _sources(T, name: str) -> list[str]:
    """The printed kernels of every executor ``T`` compiled for ``name``."""
    return [k.source for key, ex in T.backend._executors.items() if key[0].name == name
            for k in ex.kernels]


# -- the repro of the issue -------------------------------------------------------------------


@big_memory
@pytest.mark.parametrize("backend", [pytest.param("cpu", marks=needs_cpu), "reference"])
def test_lastrow_of_a_2gib_matrix(big_matrix, backend) -> None:
    T = tc.define(LASTROW, backend=backend)
    assert torch.equal(T.lastrow(big_matrix), WANT)
    if backend == "cpu":
        (source,) = _sources(T, "lastrow")
        assert "long long c_" in source and "long long s_M" in source


@big_memory
@pytest.mark.parametrize("backend", [pytest.param("cpu", marks=needs_cpu), "reference"])
def test_end_of_a_vector_past_2_31(big_vector, backend) -> None:
    T = tc.define(TAIL, backend=backend)
    assert torch.equal(T.tail(big_vector), WANT.int() + torch.arange(4, dtype=torch.int32))


@big_memory
def test_end_of_a_vector_past_2_31_on_pocl(big_vector) -> None:
    if "opencl" not in runnable_targets():
        pytest.skip("PoCL is not available")
    from codegen.opencl import pocl_device

    limit = pocl_device()[0].devices[0].max_mem_alloc_size
    if limit < BIG_1D:
        # The refusal is a TcBackendError that says why (not a bare INVALID_BUFFER_SIZE).
        with pytest.raises(tc.TcBackendError, match="allocates at once"):
            tc.define(TAIL, backend="opencl").tail(big_vector)
        pytest.skip(f"the PoCL device allocates at most {limit} bytes at once, less than "
                    f"the {BIG_1D} bytes of the tensor")
    T = tc.define(TAIL, backend="opencl")
    assert torch.equal(T.tail(big_vector), WANT.int() + torch.arange(4, dtype=torch.int32))


# -- 64-bit paths without memory: expanded views ----------------------------------------------


def _expanded(n: int, value: int = 7) -> torch.Tensor:
    """A 1-d int8 view of ``n`` elements on one element of memory."""
    return torch.tensor([value], dtype=torch.int8).expand(n)


@pytest.mark.parametrize("backend", [*runnable_targets(), "reference"])
def test_sizes_past_2_31_on_every_back_end(backend) -> None:
    # N = 2**31 + 100 needs 64-bit sizes and loop bounds (the first, int32, gave
    # "scalar 2147483748 does not fit int32"); the index used as a value stays int32.
    y = tc.define(TAIL, backend=backend).tail(_expanded(BIG_1D))
    assert torch.equal(y, torch.tensor([7, 8, 9, 10], dtype=torch.int32))


@pytest.mark.parametrize("backend", [*runnable_targets(), "reference"])
def test_huge_indices_converted_or_compared_keep_their_value(backend) -> None:
    # An index past 2**31 converted to double, or compared, is exact on every back
    # end (in int32 value arithmetic it would wrap: the language's type).
    text = ("def big(int8(N) x) -> (y, z) {\n y(i) = double(N - 4 + i) + double(x(i))"
            " where i in 0:4\n z(i) = x(i) < N - 4 + i ? 1 : 0 where i in 0:4\n}")
    y, z = tc.define(text, backend=backend).big(_expanded(BIG_1D, 0))
    want = torch.arange(BIG_1D - 4, BIG_1D, dtype=torch.float64)
    assert torch.equal(y, want) and z.tolist() == [1, 1, 1, 1]


def test_nvrtc_compiles_a_64_bit_kernel() -> None:
    pytest.importorskip("cupy")
    outer = "def outer(float(N) a, float(M) b) -> (y) {\n y(i, j) = a(i) * b(j)\n}"
    a, b = torch.ones(1).expand(2**20), torch.ones(1).expand(2**12)  # y: 2**32 elements
    ex = tc.compile(outer, "outer", None, a, b, backend="cuda")
    assert ex.program.index_bits == 64
    (k,) = ex.kernels
    assert k.ptx  # NVRTC compiled it
    assert "long long s_N" in k.source and "long long c_" in k.source
    assert not re.search(r"\bint c_", k.source)
    small = tc.compile(outer, "outer", None, torch.ones(5), torch.ones(3), backend="cuda")
    assert small.program.index_bits == 32 and "long long" not in small.kernels[0].source


# -- small tensors keep 32 bits; the choice is part of a symbolic kernel's class ------------------


@pytest.mark.parametrize("backend", [*runnable_targets(), "cuda"])
def test_small_tensors_keep_32_bit_kernels(backend) -> None:
    if backend == "cuda":
        pytest.importorskip("cupy")
    mm = "def mm(float(M, K) A, float(K, N) B) -> (C) {\n C(m, n) +=! A(m, k) * B(k, n)\n}"
    ex = tc.compile(mm, "mm", None, torch.ones(64, 32), torch.ones(32, 48), backend=backend)
    assert ex.program.index_bits == 32
    for k in ex.kernels:
        assert "long long c_" not in k.source and "long c_" not in k.source
        assert re.search(r"\bint c_", k.source)


@needs_cpu
def test_symbolic_cpu_kernel_is_not_reused_for_a_huge_call() -> None:
    # Rows expanded from one (stride 0) and a unit-stride row: one signature class
    # (dtype, rank, unit strides) whatever the number of rows.
    row = torch.arange(4, dtype=torch.int8)
    T = tc.define(LAST, backend="cpu")
    assert torch.equal(T.last(row.expand(10, 4)), torch.arange(4, dtype=torch.int32) + 10)
    huge = row.expand(BIG_1D, 4)
    assert torch.equal(T.last(huge), torch.arange(4, dtype=torch.int32) + (BIG_1D - 2**32))
    T.last(row.expand(20, 4))  # another small size reuses the first (symbolic) build
    bits = sorted(ex.program.index_bits for ex in T.backend._executors.values())
    assert bits == [32, 64]
    # An executor compiled for small sizes refuses a call that needs 64 bits.
    ex = tc.compile(LAST, "last", None, row.expand(10, 4), backend="cpu")
    assert ex.program.symbolic and ex.program.index_bits == 32
    with pytest.raises(tc.TcArgumentError, match="64 bits"):
        ex(huge)


@needs_cpu
def test_transposed_view_spanning_2_31_needs_64_bits() -> None:
    # Few elements, a huge span: the strides count, not only the sizes.
    assert element_span((2, 3), (2**31, 1)) == 2**31 + 3
    from tc.ir.index_width import index_bits

    fn = tc.define(LASTROW, backend="cpu")["lastrow"].ir
    assert index_bits(fn, {"M": 2, "N": 3}, [(2**31, 1)]) == 64
    assert index_bits(fn, {"M": 2, "N": 3}, [(3, 1)]) == 32
    assert LIMIT_32 < 2**31


@needs_cpu
def test_stored_32_bit_program_refuses_a_huge_signature() -> None:
    from codegen.artifact import ArtifactError, verify_program

    ex = tc.compile(TAIL, "tail", None, torch.arange(10, dtype=torch.int8), backend="cpu")
    x = _expanded(BIG_1D)
    sig = ((x.dtype, tuple(x.shape), tuple(x.stride())), "cpu")
    with pytest.raises(ArtifactError, match="64 bits"):
        verify_program(ex.program, sig)


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", [*runnable_targets(), "reference"])
def test_more_than_64_bits_names_the_tensor_and_dimension(backend) -> None:
    outer = "def outer(int8(N) a, int8(M) b) -> (y) {\n y(i, j) = a(i) * b(j)\n}"
    with pytest.raises(tc.TcArgumentError, match=r"outer: the element count of 'y' up to "
                       r"dimension 1 is 2\*\*70|1180591620717411303424"):
        tc.define(outer, backend=backend).outer(_expanded(2**40), _expanded(2**30))
    near = torch.tensor([1], dtype=torch.int8).expand(2**63 - 1)
    with pytest.raises(tc.TcArgumentError, match=r"size 'N' \(dimension 0 of 'x'\)"):
        tc.define(TAIL, backend=backend).tail(near)


@needs_cpu
def test_a_size_argument_that_does_not_fit_is_named(monkeypatch) -> None:
    # With the width check bypassed, the size arguments' range check names the size
    # (it used to say "scalar 2147483748 does not fit int32" and nothing else).
    row = torch.arange(4, dtype=torch.int8)
    ex = tc.compile(LAST, "last", None, row.expand(10, 4), backend="cpu")
    monkeypatch.setattr(executor_mod, "call_index_bits", lambda *a: 32)
    with pytest.raises(tc.TcArgumentError, match=r"last: size 'N' is 2147483748"):
        ex(row.expand(BIG_1D, 4))


# -- every kernel shape in 64 bits, at small sizes ---------------------------------------------

MIX = """
def mix(float(M, K) A, float(K, N) B, int32(M) idx) -> (C, g, r, v) {
    C(m, n) +=! A(m, k) * B(k, n)
    g(m, k) = A(idx(m), k) + float(k)
    r(m) max=! A(m, k)
    v(m) = float(m / 3) + float(m % 4 - N) where m in 0:M
}
"""


def _options(backend: str) -> list[tc.MappingOptions]:
    naive = tc.MappingOptions("naive")
    shared = tc.MappingOptions("naive").tile(8, 8).useSharedMemory(True)
    if backend == "opencl":
        library = tc.MappingOptions("naive").matchLibraryCalls(True)
        return [naive, shared.mapToThreads(8, 4), library]
    return [naive, shared]


@pytest.mark.parametrize("backend", runnable_targets())
def test_forced_64_bit_kernels_match_the_reference(backend, monkeypatch) -> None:
    # Widening is exercised on every kernel shape (tiles, shared memory or packing,
    # reduction templates, gathers, indices used as values) without 2 GiB tensors.
    import codegen.compiler

    monkeypatch.setattr(codegen.compiler, "index_bits", lambda *a: 64)
    g = torch.Generator().manual_seed(0)
    A, B = torch.randn(37, 45, generator=g), torch.randn(45, 23, generator=g)
    idx = torch.randint(0, 37, (37,), generator=g, dtype=torch.int32)
    want = tc.define(MIX, backend="reference").mix(A, B, idx)
    for options in _options(backend):
        ex = tc.compile(MIX, "mix", options, A, B, idx, backend=backend)
        assert ex.program.index_bits == 64
        assert all(not re.search(r"\bint (c_|s_)", k.source) for k in ex.kernels)
        for got, exp in zip(ex(A, B, idx), want, strict=True):
            torch.testing.assert_close(got, exp, rtol=1e-5, atol=1e-5)
