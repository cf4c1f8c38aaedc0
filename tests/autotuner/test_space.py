"""The search space: candidate sizes, genomes <-> options, rejection before and after
compiling."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest

import tc
from autotuner.space import (
    SearchSpace,
    compiled_rejection,
    launched_threads,
    required_threads,
    shared_bytes,
    size_values,
)
from codegen import kernel as k
from tc.ir import nodes as ir
from tc.ir.types import INDEX_TYPE, ScalarType
from tc.options import MappingOptions

LANG = """
def matmul(float(M, K) A, float(K, N) B) -> (C) {
    C(m, n) +=! A(m, k) * B(k, n)
}
def scale(float(N) X) -> (Y) { Y(i) = X(i) * 2 }
"""


def _fn(name: str) -> ir.Function:
    return tc.define(LANG, backend="reference")[name].ir


def test_size_values_are_powers_of_two_and_halvings() -> None:
    # 10 -> halvings 10, 5, 3, 2, 1; powers of two up to 16.
    assert size_values([10], 1 << 20) == (1, 2, 3, 4, 5, 8, 10, 16)
    assert size_values([10, 6], 1 << 20) == (1, 2, 3, 4, 5, 6, 8, 10, 16)
    assert size_values([10], 4) == (1, 2, 3, 4)  # capped


def test_space_parameters_cover_every_option() -> None:
    space = SearchSpace.build(_fn("matmul"), {"M": 10, "K": 6, "N": 3})
    names = set(space.names)
    assert space.tile_depth == 3  # m, n, k
    assert {"tile_count", "tile_0", "tile_1", "tile_2", "threads_count", "threads_0",
            "threads_1", "threads_2", "blocks_count", "blocks_0", "blocks_1", "blocks_2",
            "unroll", "outer_fusion", "intra_fusion", "outer_allow_skewing",
            "outer_positive_orthant", "intra_allow_skewing", "intra_positive_orthant",
            "fix_parameters", "tile_imperfectly_nested", "match_library_calls",
            "use_shared_memory", "use_private_memory", "unroll_copy_shared",
            "use_readonly_cache", "max_shared_memory", "private_depth",
            "shared_depth"} == names
    choices = {p.name: p.choices for p in space.parameters}
    assert choices["tile_0"] == (0, 1, 2, 3, 4, 5, 6, 8, 10)  # up to the largest extent
    assert choices["outer_fusion"] == ("Max", "Preserve3Coincident", "Min")
    assert None in choices["max_shared_memory"]
    assert max(choices["threads_2"]) <= 64


def test_genome_round_trip_keeps_options() -> None:
    space = SearchSpace.build(_fn("matmul"), {"M": 64, "K": 32, "N": 16})
    o = (MappingOptions("naive").tile(8, 0, 4).mapToThreads(16, 4).mapToBlocks(7)
         .unroll(3).scheduleFusionStrategy("Min").useSharedMemory(True).maxSharedMemory(999)
         .privateDepth(2).usePrivateMemory(True).fixParametersBeforeScheduling(True))
    # Values outside the choices (unroll 3, 7 blocks, 999 bytes) are kept exactly.
    assert space.options(space.genome(o)) == o


def test_genome_drops_tile_sizes_the_compiler_ignores() -> None:
    space = SearchSpace.build(_fn("scale"), {"N": 100})
    naive = MappingOptions("naive")
    assert space.options(space.genome(naive)).tile_sizes == (32,)
    assert space.options(space.genome(naive)).threads == (32, 8)


def test_random_genomes_draw_from_the_choices_and_pass() -> None:
    space = SearchSpace.build(_fn("matmul"), {"M": 33, "K": 17, "N": 9})
    rng = random.Random(0)
    for _ in range(50):
        g = space.random_valid_genome(rng)
        assert g is not None and space.rejection(g) is None
        for p, v in zip(space.parameters, g, strict=True):
            assert v in p.choices
        space.options(g)  # a valid MappingOptions


def test_rejection_before_compiling() -> None:
    space = SearchSpace.build(_fn("matmul"), {"M": 64, "K": 64, "N": 64}, min_threads=64)
    base = space.genome(MappingOptions("naive"))
    idx = space.index

    def with_(**values) -> tuple:
        g = list(base)
        for name, v in values.items():
            g[idx(name)] = v
        return tuple(g)

    assert space.rejection(base) is None
    too_many = with_(threads_count=2, threads_0=64, threads_1=32)  # 2048 threads
    assert "threads per block" in space.rejection(too_many)
    assert "block dimension z" in space.rejection(with_(threads_count=3, threads_0=1,
                                                        threads_1=1, threads_2=128))
    few = with_(threads_count=1, threads_0=4, blocks_count=1, blocks_0=8)  # 32 at most
    assert "fewer than the 64 required" in space.rejection(few)
    ok = with_(threads_count=1, threads_0=8, blocks_count=1, blocks_0=8)
    assert space.rejection(ok) is None


def test_required_threads_shrink_for_tiny_problems() -> None:
    fn = _fn("matmul")
    assert required_threads(fn, {"M": 64, "K": 64, "N": 64}, 64) == 64
    assert required_threads(fn, {"M": 2, "K": 64, "N": 3}, 64) == 6  # 6 outputs
    space = SearchSpace.build(fn, {"M": 2, "K": 64, "N": 3}, min_threads=64)
    assert space.min_threads == 6


def _buffer(name: str, shape: tuple[int, ...], dtype=ScalarType.FLOAT32,
            space: str = "shared") -> k.Buffer:
    dims = tuple(ir.IntImm(n, type=INDEX_TYPE) for n in shape)
    return k.Buffer(name, dtype, dims, dims, space=space)


def _program(*kernels: tuple) -> SimpleNamespace:
    return SimpleNamespace(kernels=[
        SimpleNamespace(name=f"k{i}", grid=g, block=b, kernel=SimpleNamespace(buffers=bufs))
        for i, (g, b, bufs) in enumerate(kernels)])


def test_shared_bytes_counts_shared_buffers_only() -> None:
    kern = SimpleNamespace(buffers=[_buffer("a", (8, 64)), _buffer("b", (3,), ScalarType.FLOAT64),
                                    _buffer("g", (1000,), space="global"),
                                    _buffer("p", (4,), space="private")])
    assert shared_bytes(kern) == 8 * 64 * 4 + 3 * 8


def test_compiled_rejection() -> None:
    small = _program(((1, 1, 1), (32, 1, 1), []), ((2, 1, 1), (16, 1, 1), []))
    assert launched_threads([((1, 1, 1), (32, 1, 1)), ((2, 1, 1), (16, 1, 1))]) == 32
    assert compiled_rejection(small, 32, 1024) is None
    assert "32 threads launched, fewer than the 64" in compiled_rejection(small, 64, 1024)
    big = _program(((4, 1, 1), (64, 1, 1), [_buffer("a", (64, 64))]))
    assert compiled_rejection(big, 64, 64 * 64 * 4) is None
    assert "shared memory exceed" in compiled_rejection(big, 64, 64 * 64 * 4 - 1)


@pytest.mark.parametrize("sizes", [{"M": 1, "K": 1, "N": 1}, {"M": 5, "K": 1, "N": 7}])
def test_space_of_degenerate_sizes(sizes: dict[str, int]) -> None:
    space = SearchSpace.build(_fn("matmul"), sizes, min_threads=64)
    assert space.random_valid_genome(random.Random(1)) is not None
