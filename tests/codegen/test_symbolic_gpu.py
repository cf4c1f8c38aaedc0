"""GPU kernels compiled once for every size (issue 13): the OpenCL and CUDA targets take
sizes and strides as kernel arguments when the options leave sizes symbolic.

One program serves every call of its class (dtypes, ranks, unit strides: see
``codegen.executor.signature_class``) with the reference interpreter's results, at sizes
of 1, primes, sizes below a tile and above grid x block (the mapped loops wrap
around); the grid of each call is clipped on the host (``codegen.launch_config``), the
block and the shared-memory boxes are bounds valid for every size. What stays per
shape (fixed parameters, the reduction templates of ``matchLibraryCalls``) is still
right and simply compiles again.
"""

from __future__ import annotations

import functools

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kernel_checks import assert_same, structure_problems

import tc
from codegen import kernel as k
from codegen import nvrtc, stats
from codegen.executor import memo_key, signature_class
from codegen.launch_config import GRID_SPANS, call_grid
from codegen.targets import get_target
from tc.catalogue import KERNELS
from tc.options import FUSION_STRATEGIES, MappingOptions

pytestmark = pytest.mark.skipif(not get_target("opencl").available(),
                                reason="PoCL is not available")

FC = """
def fc_relu(float(B, I) x, float(O, I) W, float(O) bias) -> (y) {
    y(b, o) +=! x(b, i) * W(o, i)
    y(b, o) = fmax(y(b, o) + bias(o), 0)
}
def rowmax(float(B, N) x) -> (m) { m(b) max=! x(b, n) }
"""
ROWSUM = "def rowsum(float(M, N) X) -> (S) { S(m) +=! X(m, n) }"
MM = "def mm(float(M, K) A, float(K, N) B) -> (C) { C(m, n) +=! A(m, k) * B(k, n) }"


@functools.cache
def _reference(text: str) -> tc.TC:
    return tc.define(text, backend="reference")


def _count(event: str) -> int:
    return stats.COUNTERS[event]


def _served(kernel, executor, sizes_list, seed: int = 1) -> int:
    """Run ``executor`` (compiled for ``kernel``) at each of ``sizes_list`` that is valid
    and of its class, comparing with the reference; returns how many ran."""
    ref = _reference(kernel.tc)[kernel.entry]
    ran = 0
    for sizes in sizes_list:
        try:
            inputs = kernel.make_inputs(sizes, torch.Generator().manual_seed(seed))
            call = ref.bind(*inputs)
        except (tc.TcError, RuntimeError, ValueError):
            continue  # not a valid binding of this kernel (a window larger than its image)
        if signature_class(call.signature()) != signature_class(executor.signature):
            continue
        assert_same(executor(*inputs), ref(*inputs), kernel.rtol, kernel.atol,
                    what=f"{kernel.name} at {sizes}")
        ran += 1
    return ran


def _variants(base: dict[str, int]) -> list[dict[str, int]]:
    """Sizes of ``base``'s class mostly: each size > 1 replaced by 2, 3 or other primes,
    or one at a time by a size above the grids x blocks of the options below; and
    every size 1 in turn (which leaves the class when the dimension is a tensor's
    unit-stride one)."""
    small = {s: 2 if v > 1 else 1 for s, v in base.items()}
    out = [small, {s: (v and 3) for s, v in base.items()},
           {s: (7, 5, 11, 13, 3)[i % 5] if v > 1 else 1
            for i, (s, v) in enumerate(base.items())}]
    out += [{**small, s: 37} for s in list(base)[:2]]  # one long dimension at a time
    out += [{**base, s: 1} for s in base]
    return out


LAYERS = ("matmul", "softmax", "conv2d", "tbmm", "layer_norm", "maxpool2x2",
          "transpose3d_021", "group_norm", "fc_relu_backward")
FIXED_OPTIONS = {
    "naive": MappingOptions("naive"),
    "wrapping": MappingOptions("naive").tile(3, 4).mapToThreads(2, 3).mapToBlocks(2, 2),
    "shared": MappingOptions("naive").tile(4, 8, 4).mapToThreads(8, 4).mapToBlocks(3, 2)
    .useSharedMemory(True).usePrivateMemory(True).unroll(4),
}


@pytest.mark.parametrize("name", LAYERS)
@pytest.mark.parametrize("which", sorted(FIXED_OPTIONS))
def test_one_program_serves_many_sizes(name: str, which: str) -> None:
    kernel = KERNELS[name]
    base = kernel.test_sizes[0]
    inputs = kernel.make_inputs(base, torch.Generator().manual_seed(0))
    before = _count("compile_program")
    ex = tc.compile(kernel.tc, kernel.entry, FIXED_OPTIONS[which], *inputs, backend="opencl")
    assert ex.program.symbolic and _count("compile_program") - before == 1
    assert _served(kernel, ex, [base, *_variants(base)]) >= 4
    for ck in ex.program.kernels:  # nothing in the code depends on the first call's sizes
        assert not any(b.space == "shared" and not all(isinstance(e, tc.ir.nodes.IntImm)
                                                       for e in b.shape)
                       for b in ck.kernel.buffers)
    assert structure_problems(ex.program) == []


def test_the_grid_is_clipped_per_call_and_the_block_is_not() -> None:
    options = MappingOptions("naive").tile(16, 16, 8).mapToThreads(16, 16).mapToBlocks(8, 8)
    ex = tc.compile(MM, "mm", options.useSharedMemory(True), torch.randn(40, 30),
                    torch.randn(30, 50), backend="opencl")
    kern = ex.program.kernels[0].kernel
    assert (kern.grid, kern.block) == ((8, 8, 1), (16, 16, 1))  # bounds for every size
    assert call_grid(kern, {"M": 40, "K": 30, "N": 50}) == (3, 4, 1)
    assert call_grid(kern, {"M": 1, "K": 1, "N": 1}) == (1, 1, 1)
    assert call_grid(kern, {"M": 1000, "K": 1, "N": 129}) == (8, 8, 1)
    # the shared boxes are the tiles' footprints, whatever the sizes
    shared = {b.name: tuple(e.value for e in b.shape) for b in kern.buffers
              if b.space == "shared"}
    assert shared == {"sh0_A": (16, 8), "sh0_B": (8, 16)}
    for m, kk, n in ((1, 2, 3), (17, 3, 129), (200, 9, 5)):
        a, b = torch.randn(m, kk), torch.randn(kk, n)
        torch.testing.assert_close(ex(a, b), a @ b, rtol=1e-5, atol=1e-5)


def test_untiled_shared_memory_is_not_size_dependent() -> None:
    # Without tiles a footprint grows with the sizes: nothing is promoted for all of
    # them (a concrete compilation would promote it at small sizes).
    options = MappingOptions("naive").tile(0).useSharedMemory(True)
    ex = tc.compile(MM, "mm", options, torch.randn(4, 3), torch.randn(3, 5), backend="opencl")
    assert ex.program.symbolic
    assert not [b for ck in ex.program.kernels for b in ck.kernel.buffers
                if b.space == "shared"]
    a, b = torch.randn(9, 20), torch.randn(20, 6)
    torch.testing.assert_close(ex(a, b), a @ b, rtol=1e-5, atol=1e-5)


def test_a_training_loop_over_20_batch_sizes_builds_each_definition_once() -> None:
    unit = tc.define(FC, backend="opencl")
    ref = _reference(FC)
    W, bias = torch.randn(7, 19), torch.randn(7)
    before = stats.snapshot()
    for batch in (64, 64, 33, 1, 2, 3, 5, 7, 11, 13, 17, 31, 63, 65, 100, 127, 128, 129, 200,
                  8, 27):
        x = torch.randn(batch, 19)
        assert_same(unit.fc_relu(x, W, bias), ref.fc_relu(x, W, bias), 1e-5, 1e-5,
                    what=f"batch {batch}")
        assert_same(unit.rowmax(x), ref.rowmax(x), what=f"batch {batch}")
    assert _count("compile_program") - before.get("compile_program", 0) == 2
    # ... and PoCL builds each kernel once
    executors = list(unit.backend._executors.values())
    assert len(executors) == 2 and all(ex.program.symbolic for ex in executors)
    kernels = sum(len(ex.program.kernels) for ex in executors)
    assert _count("opencl_build") - before.get("opencl_build", 0) == kernels


def test_long_sums_and_fixed_parameters_compile_again() -> None:
    # A sum long enough to split (tc.ir.split_sums) is another program: its own class.
    unit = tc.define(ROWSUM, backend="opencl")
    before = _count("compile_program")
    for n in (100, 5000, 200, 6000):
        x = torch.randn(3, n)
        torch.testing.assert_close(unit.rowsum(x), x.sum(1), rtol=1e-4, atol=1e-4)
    assert _count("compile_program") - before == 2
    # fixed parameters: one program per shape, as asked
    fixed = MappingOptions("naive").fixParametersBeforeScheduling(True)
    unit = tc.define(ROWSUM, lambda *a: fixed.copy(), backend="opencl")
    before = _count("compile_program")
    for m in (2, 3, 2):
        x = torch.randn(m, 9)
        torch.testing.assert_close(unit.rowsum(x), x.sum(1), rtol=1e-5, atol=1e-5)
    assert _count("compile_program") - before == 2


def test_library_reductions_stay_per_shape_and_right() -> None:
    options = MappingOptions("naive").matchLibraryCalls(True).mapToThreads(32)
    unit = tc.define(ROWSUM, lambda *a: options.copy(), backend="opencl")
    before = _count("compile_program")
    for m, n in ((4, 300), (5, 300), (4, 300)):
        x = torch.randn(m, n)
        torch.testing.assert_close(unit.rowsum(x), x.sum(1), rtol=1e-4, atol=1e-4)
    assert _count("compile_program") - before == 2
    x = torch.randn(4, 300)
    assert not tc.compile(ROWSUM, "rowsum", options, x, backend="opencl").program.symbolic


def test_memo_key_is_the_class_on_gpu_targets() -> None:
    fn = _reference(FC).fc_relu.ir
    W, bias = torch.randn(7, 19), torch.randn(7)
    calls = [_reference(FC).fc_relu.bind(torch.randn(b, 19), W, bias) for b in (2, 3, 50)]
    options = MappingOptions("naive")
    for name in ("opencl", "cuda"):
        keys = {memo_key(fn, c, options, get_target(name)) for c in calls}
        assert len(keys) == 1
        fixed = options.copy().fixParametersBeforeScheduling(True)
        assert len({memo_key(fn, c, fixed, get_target(name)) for c in calls}) == 3


# -- CUDA: NVRTC compiles a symbolic kernel once -------------------------------------------------

def _nvrtc_available() -> bool:
    try:
        from cupy.cuda import nvrtc as _  # noqa: F401
    except Exception:  # noqa: BLE001 - any import failure means no NVRTC here
        return False
    return True


@pytest.mark.skipif(not _nvrtc_available(), reason="NVRTC (cupy) is not installed")
def test_nvrtc_compiles_a_symbolic_kernel_once_for_every_size() -> None:
    options = MappingOptions("naive").tile(16, 16, 8).mapToThreads(16, 8).mapToBlocks(64, 64) \
        .useSharedMemory(True).usePrivateMemory(True)
    nvrtc.clear_compile_cache()
    before = _count("nvrtc_compile")
    sources = set()
    for m, n in ((40, 50), (1, 2), (7, 1000), (129, 3)):
        ex = tc.compile(MM, "mm", options, torch.randn(m, 30), torch.randn(30, n),
                        backend="cuda")
        assert ex.program.symbolic
        (info,) = ex.kernels
        assert "int s_M, int s_K, int s_N, int st_A_0, int st_B_0)" in info.source
        assert info.resources["registers"] > 0 and info.resources["spill_stores"] == 0
        assert info.resources["shared_bytes"] == (16 * 8 + 8 * 16) * 4
        assert info.block == (16, 8, 1) and info.ptx
        sources.add(info.source)
    assert len(sources) == 1 and _count("nvrtc_compile") - before == 1


# -- random options --------------------------------------------------------------------------

RANDOM_LAYERS = sorted(("matmul", "softmax", "conv2d", "tbmm", "layer_norm", "maxpool3x3",
                        "transpose4d_0312", "group_norm", "moments", "cross_entropy",
                        "fc_relu", "avgpool2x2", "kru3", "mlp3"))
TILE_SIZES = (0, 1, 2, 3, 5, 7, 16)
THREADS = (1, 2, 3, 4, 5, 8, 13, 32)
BLOCKS = (1, 2, 3, 5, 16)


@st.composite
def _options(draw) -> MappingOptions:
    o = MappingOptions("naive")
    o.tile(*draw(st.lists(st.sampled_from(TILE_SIZES), min_size=1, max_size=4)))
    threads = draw(st.lists(st.sampled_from(THREADS), min_size=1, max_size=3))
    while len(threads) > 1 and threads[0] * threads[1] * (threads[2:] or [1])[0] > 256:
        threads.pop()
    o.mapToThreads(*threads)
    o.mapToBlocks(*draw(st.lists(st.sampled_from(BLOCKS), min_size=1, max_size=3)))
    o.outerScheduleFusionStrategy(draw(st.sampled_from(FUSION_STRATEGIES)))
    o.intraTileScheduleFusionStrategy(draw(st.sampled_from(FUSION_STRATEGIES)))
    o.useSharedMemory(draw(st.booleans()))
    o.sharedDepth(draw(st.integers(0, 3)))
    o.maxSharedMemory(draw(st.sampled_from((None, 64, 1024, 48 * 1024))))
    o.usePrivateMemory(draw(st.booleans()))
    o.privateDepth(draw(st.integers(0, 2)))
    o.unroll(draw(st.sampled_from((1, 2, 4, 8))))
    return o


@given(name=st.sampled_from(RANDOM_LAYERS), options=_options(), seed=st.integers(0, 2**16))
@settings(max_examples=24, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
def test_random_options_serve_many_sizes(name: str, options: MappingOptions, seed: int) -> None:
    kernel = KERNELS[name]
    base = {s: v + 1 if v > 1 else v for s, v in kernel.test_sizes[0].items()}
    try:
        inputs = kernel.make_inputs(base, torch.Generator().manual_seed(seed))
        _reference(kernel.tc)[kernel.entry].bind(*inputs)
    except (tc.TcError, RuntimeError, ValueError):
        base = kernel.test_sizes[0]
        inputs = kernel.make_inputs(base, torch.Generator().manual_seed(seed))
    ex = tc.compile(kernel.tc, kernel.entry, options, *inputs, backend="opencl")
    assert ex.program.symbolic
    assert structure_problems(ex.program) == [], options
    assert _served(kernel, ex, [base, *_variants(base)], seed) >= 2, options
    for ck in ex.program.kernels:
        kern: k.Kernel = ck.kernel
        spans = kern.meta.get(GRID_SPANS, ())
        assert len(spans) <= 3


def test_a_symbolic_gpu_kernel_is_not_reused_for_a_call_needing_64_bits() -> None:
    # Rows expanded from one (stride 0): one signature class whatever the number of rows,
    # but a row index past 2**31 needs 64-bit index arithmetic: a class of its own.
    last = "def last(int8(N, M) x) -> (y) {\n y(j) = x(N - 1, j) + N\n}"
    row = torch.arange(4, dtype=torch.int8)
    unit = tc.define(last, backend="opencl")
    assert torch.equal(unit.last(row.expand(10, 4)), torch.arange(4, dtype=torch.int32) + 10)
    big = 2**31 + 100
    assert torch.equal(unit.last(row.expand(big, 4)),
                       torch.arange(4, dtype=torch.int32) + (big - 2**32))
    unit.last(row.expand(20, 4))  # reuses the first build
    bits = sorted(ex.program.index_bits for ex in unit.backend._executors.values())
    assert bits == [32, 64]
    assert all(ex.program.symbolic for ex in unit.backend._executors.values())
