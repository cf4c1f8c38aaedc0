"""The GPU-performance options end to end: structure of the kernels and results.

* shared-memory promotion: the 512^3 matmul of the issue (both operands in shared
  memory, 8 KiB, no spill, NVRTC sm_80 and sm_90); every catalogue kernel, and a few
  at other ``sharedDepth`` values, small ``maxSharedMemory`` limits and with
  ``unrollCopyShared``, on PoCL against the interpreter;
* the launch tightened to the domain (grid and block no larger than the values the
  mapped loops take);
* ``unroll``: small sequential point loops disappear;
* ``useReadOnlyCache``: ``__ldg`` on CUDA reads of inputs only;
* ``__syncwarp`` for one-warp blocks, ``__syncthreads`` otherwise;
* every catalogue kernel under every preset compiles with NVRTC without spilling.

Expected values are computed here from the sizes and options (or by torch / the
interpreter), never by the code under test. PoCL compiles each new kernel (0.5-3 s,
more with barriers), so the PoCL cases are few and small.
"""

from __future__ import annotations

import functools
import re
import time

import pytest
import torch
from kernel_checks import as_tuple, assert_same, structure_problems

import tc
from codegen import kernel as k
from codegen.compiler import CompiledProgram, compile_program
from codegen.executor import Executor
from tc.catalogue import KERNELS, Kernel
from tc.options import PRESETS, MappingOptions

ARCHS = ("sm_80", "sm_90")
MATMUL = "def matmul(float(M, K) A, float(K, N) B) -> (C) { C(m, n) +=! A(m, k) * B(k, n) }"
KERNEL_PARAMS = [pytest.param(name, id=name) for name in KERNELS]
DEFAULT_SHARED_LIMIT = 48 * 1024


@pytest.fixture
def long_run(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--fuzz-long"))


def _shared() -> MappingOptions:
    return MappingOptions("naive").useSharedMemory(True)


@functools.cache
def _reference(text: str) -> tc.TC:
    return tc.define(text, backend="reference")


def _inputs(kernel: Kernel, sizes: dict[str, int] | None = None) -> tuple[torch.Tensor, ...]:
    return kernel.make_inputs(sizes or kernel.test_sizes[0], torch.Generator().manual_seed(0))


def _program(text: str, entry: str, options: MappingOptions,
             *inputs: torch.Tensor) -> CompiledProgram:
    fn = _reference(text)[entry]
    call = fn.bind(*inputs)
    return compile_program(fn.ir, options, call.sizes, [t.stride() for t in call.inputs])


def _shared_bytes(kern: k.Kernel) -> int:
    total = 0
    for b in kern.buffers:
        if b.space == "shared":
            n = max(1, b.dtype.bits // 8)
            for s in b.shape:
                n *= s.value
            total += n
    return total


def _shared_buffers(program: CompiledProgram) -> dict[str, tuple[int, ...]]:
    return {b.name: tuple(s.value for s in b.shape) for ck in program.kernels
            for b in ck.kernel.buffers if b.space == "shared"}


def _run_opencl(text: str, entry: str, options: MappingOptions, inputs: tuple[torch.Tensor, ...],
                rtol: float = 1e-4, atol: float = 1e-5,
                more: tuple[tuple[torch.Tensor, ...], ...] = ()) -> CompiledProgram:
    """Compile for PoCL, run, compare with the interpreter, check the inputs are left
    alone and the static structure (as ``_check_opencl`` of test_compile_catalogue).
    ``more``: other calls (of the same signature class) for the same executor, each
    compared with the interpreter too (a program with symbolic sizes serves them)."""
    executor = tc.compile(text, entry, options, *inputs, backend="opencl")
    what = f"{entry} {options!r}"
    for call in (inputs, *more):
        saved = [t.clone() for t in call]
        want = _reference(text)[entry](*call)
        got = executor(*call)
        shapes = [tuple(t.shape) for t in call]
        assert_same(got, want, rtol, atol, what=f"{what} at {shapes}")
        for before, after in zip(saved, call, strict=True):
            assert torch.equal(before, after), f"{what}: an input was modified"
        assert len(as_tuple(got)) == len(executor.fn.outputs)
    assert structure_problems(executor.program) == [], what
    return executor.program


# -- (a) the structural test --------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHS)
def test_matmul_512_naive_with_shared_memory_promotes_both_operands_and_spills_nothing(
        arch: str) -> None:
    a, b = torch.randn(512, 512), torch.randn(512, 512)
    executor = tc.compile(MATMUL, "matmul", _shared(), a, b, backend="cuda", arch=arch)
    (info,) = executor.kernels
    assert f".target {arch}" in info.ptx
    assert info.resources["spill_bytes"] == 0, info.resources
    assert info.resources["shared_bytes"] == 2 * 32 * 32 * 4, info.resources
    assert "__shared__ float sh0_A[1024];" in info.source
    assert "__shared__ float sh0_B[1024];" in info.source
    assert "__syncthreads();" in info.source
    assert (info.grid, info.block) == ((16, 16, 1), (32, 8, 1))


def test_matmul_naive_without_shared_memory_uses_none() -> None:
    a, b = torch.randn(512, 512), torch.randn(512, 512)
    executor = tc.compile(MATMUL, "matmul", MappingOptions("naive"), a, b, backend="cuda",
                          arch="sm_80")
    (info,) = executor.kernels
    assert info.resources["shared_bytes"] == 0 and "__shared__" not in info.source
    assert "__sync" not in info.source  # nothing crosses threads: no barrier


# -- (b) grid and block tightened to the domain --------------------------------------------------


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


@pytest.mark.parametrize(("m", "r", "n"), [
    (3, 5, 7), (1, 1, 1), (33, 5, 70), (100, 3, 1000), (512, 512, 512), (9000, 2, 40)])
@pytest.mark.parametrize("shared", [False, True], ids=["global", "shared"])
def test_matmul_launch_is_tightened_to_the_domain(m: int, r: int, n: int, shared: bool) -> None:
    """naive: tiles of 32, blocks (256, 256) over the m and n tiles, threads (32, 8)
    over the n and m points of a tile."""
    options = MappingOptions("naive").useSharedMemory(shared)
    program = _program(MATMUL, "matmul", options, torch.randn(m, r), torch.randn(r, n))
    (ck,) = program.kernels
    assert ck.grid == (min(256, _cdiv(m, 32)), min(256, _cdiv(n, 32)), 1)
    assert ck.block == (min(32, n), min(8, m), 1)


@pytest.mark.parametrize(("shape", "grid", "block"), [
    ((5,), (1, 1, 1), (5, 1, 1)),
    ((1000,), (32, 1, 1), (32, 1, 1)),
    ((100000,), (256, 1, 1), (32, 1, 1)),
    ((5, 3), (1, 1, 1), (3, 5, 1)),
    ((40, 1000), (2, 32, 1), (32, 8, 1)),
    ((20000, 33), (256, 2, 1), (32, 8, 1)),
])
def test_elementwise_launch_is_tightened_to_the_domain(shape: tuple[int, ...],
                                                       grid: tuple[int, int, int],
                                                       block: tuple[int, int, int]) -> None:
    idx = ", ".join("ijk"[: len(shape)])
    dims = ", ".join(f"N{d}" for d in range(len(shape)))
    text = f"def scale(float({dims}) A) -> (O) {{ O({idx}) = A({idx}) * 2.0 }}"
    (ck,) = _program(text, "scale", MappingOptions("naive"), torch.randn(*shape)).kernels
    assert (ck.grid, ck.block) == (grid, block)


def test_a_tightened_launch_computes_every_element() -> None:
    """Tails in both tile dimensions (33 = 32 + 1 rows, 70 = 2 * 32 + 6 columns)."""
    a, b = torch.randn(33, 5), torch.randn(5, 70)
    executor = tc.compile(MATMUL, "matmul", MappingOptions("naive"), a, b, backend="opencl")
    assert (executor.kernels[0].grid, executor.kernels[0].block) == ((2, 3, 1), (32, 8, 1))
    torch.testing.assert_close(executor(a, b), a @ b, rtol=1e-4, atol=1e-5)


# -- (c) unroll ---------------------------------------------------------------------------------


def _sequential_loops_in_threads(kern: k.Kernel) -> list[str]:
    """The loops that no id distributes, inside a thread-mapped loop."""
    out: list[str] = []

    def visit(s: k.Stmt, inside: bool) -> None:
        if isinstance(s, k.For):
            if inside and s.mapping is None:
                out.append(s.var)
            visit(s.body, inside or bool(s.mapping and s.mapping.startswith("thread")))
        elif isinstance(s, k.Block):
            for c in s.body:
                visit(c, inside)
        elif isinstance(s, k.If):
            visit(s.then, inside)
            if s.otherwise is not None:
                visit(s.otherwise, inside)
        elif isinstance(s, k.Scope):
            visit(s.body, inside)

    visit(kern.body, False)
    return out


def _stores(kern: k.Kernel, buffer: str) -> int:
    return sum(isinstance(s, k.Store) and s.buffer == buffer for s in k.walk_stmts(kern.body))


def test_unroll_removes_the_k_point_loop_and_keeps_the_results() -> None:
    """tile (4, 4, 4): the k point loop has 4 values; unroll(4) replaces it by four
    guarded updates (K = 6: the second k tile has 2 values)."""
    a, b = torch.randn(9, 6), torch.randn(6, 11)
    tiled = MappingOptions("naive").tile(4, 4, 4)
    plain = _program(MATMUL, "matmul", tiled.copy(), a, b).kernels[0].kernel
    assert len(_sequential_loops_in_threads(plain)) == 1
    assert _stores(plain, "t_C") == 2  # the init and the update
    short = _program(MATMUL, "matmul", tiled.copy().unroll(3), a, b).kernels[0].kernel
    assert len(_sequential_loops_in_threads(short)) == 1  # 4 values > 3: kept
    unrolled_options = tiled.copy().unroll(4)
    unrolled = _program(MATMUL, "matmul", unrolled_options, a, b).kernels[0].kernel
    assert _sequential_loops_in_threads(unrolled) == []
    assert _stores(unrolled, "t_C") == 1 + 4
    executor = tc.compile(MATMUL, "matmul", unrolled_options, a, b, backend="opencl")
    torch.testing.assert_close(executor(a, b), a @ b, rtol=1e-4, atol=1e-5)
    assert structure_problems(executor.program) == []


def test_unroll_leaves_the_thread_loops_alone() -> None:
    """The m and n point loops (4 values each) are distributed, never unrolled."""
    a, b = torch.randn(9, 6), torch.randn(6, 11)
    kern = _program(MATMUL, "matmul", MappingOptions("naive").tile(4, 4, 4).unroll(64),
                    a, b).kernels[0].kernel
    mapped = sorted(s.mapping for s in k.walk_stmts(kern.body)
                    if isinstance(s, k.For) and s.mapping is not None)
    assert mapped == ["block.x", "block.y", "thread.x", "thread.y"]


# -- (d) the read-only cache --------------------------------------------------------------------


def test_read_only_cache_loads_inputs_through_ldg_in_cuda_only() -> None:
    a, b = torch.randn(64, 48), torch.randn(48, 40)
    program = _program(MATMUL, "matmul", MappingOptions("naive").useReadOnlyCache(True), a, b)
    (ck,) = program.kernels
    assert "__ldg(&t_A[" in ck.cuda_source and "__ldg(&t_B[" in ck.cuda_source
    assert "__ldg(&t_C" not in ck.cuda_source  # an output, read and written
    assert "__ldg" not in ck.opencl_source
    plain = _program(MATMUL, "matmul", MappingOptions("naive"), a, b).kernels[0]
    assert "__ldg" not in plain.cuda_source
    executor = Executor(program, "cuda", (), "sm_80")
    assert executor.kernels[0].resources["spill_bytes"] == 0


def test_read_only_cache_skips_temporaries_and_outputs() -> None:
    """softmax: X is an input; mx, e and s are written by one kernel and read by the
    next (not read-only for the program)."""
    kernel = KERNELS["softmax"]
    program = _program(kernel.tc, kernel.entry, MappingOptions("naive").useReadOnlyCache(True),
                       *_inputs(kernel))
    cuda = "\n".join(ck.cuda_source for ck in program.kernels)
    assert set(re.findall(r"__ldg\(&(t_\w+)\[", cuda)) == {"t_X"}


def test_read_only_cache_with_shared_memory_loads_the_copies_through_ldg() -> None:
    a, b = torch.randn(64, 64), torch.randn(64, 64)
    options = _shared().useReadOnlyCache(True)
    (ck,) = _program(MATMUL, "matmul", options, a, b).kernels
    assert re.search(r"sh0_A\[[^\n]*\] = __ldg\(&t_A\[", ck.cuda_source), ck.cuda_source


# -- (e) warp and block barriers ----------------------------------------------------------------


@pytest.mark.parametrize(("threads", "size", "block", "warp"), [
    ((4, 4), 8, (4, 4, 1), True),
    ((8, 4), 8, (8, 4, 1), True),     # exactly one warp
    ((8, 8), 8, (8, 8, 1), False),    # two warps
    ((32, 8), 64, (32, 8, 1), False),
])
def test_one_warp_blocks_use_syncwarp(threads: tuple[int, int], size: int,
                                      block: tuple[int, int, int], warp: bool) -> None:
    a, b = torch.randn(size, size), torch.randn(size, size)
    program = _program(MATMUL, "matmul", _shared().mapToThreads(*threads), a, b)
    (ck,) = program.kernels
    assert ck.block == block
    assert any(isinstance(s, k.Barrier) for s in k.walk_stmts(ck.kernel.body))
    if warp:
        assert "__syncwarp();" in ck.cuda_source and "__syncthreads" not in ck.cuda_source
    else:
        assert "__syncthreads();" in ck.cuda_source and "__syncwarp" not in ck.cuda_source
    # OpenCL: always the same, ordering global memory too (temporaries pass through it).
    assert "barrier(CLK_LOCAL_MEM_FENCE | CLK_GLOBAL_MEM_FENCE);" in ck.opencl_source
    assert "__sync" not in ck.opencl_source


@pytest.mark.parametrize("fixed", [False, True], ids=["symbolic", "fixed"])
def test_a_one_warp_block_with_shared_memory_compiles_and_runs(fixed: bool) -> None:
    # 8x8 boxes: from the tiles when sizes stay symbolic (a box bounded at every
    # size), from the 8x8 operands when they are fixed.
    a, b = torch.randn(8, 8), torch.randn(8, 8)
    options = _shared().mapToThreads(4, 4)
    options = options.fixParametersBeforeScheduling(True) if fixed else options.tile(8, 8, 8)
    executor = tc.compile(MATMUL, "matmul", options, a, b, backend="cuda", arch="sm_80")
    assert executor.program.symbolic is not fixed
    (info,) = executor.kernels
    assert info.block == (4, 4, 1)
    assert "__syncwarp();" in info.source and "__syncthreads" not in info.source
    assert info.resources["spill_bytes"] == 0 and info.resources["shared_bytes"] == 2 * 64 * 4
    # Symbolic: the same kernel serves sizes below, across and above the 8x8 tiles.
    more = () if fixed else tuple((torch.randn(m, kk), torch.randn(kk, n))
                                  for m, kk, n in ((3, 5, 7), (19, 11, 17)))
    program = _run_opencl(MATMUL, "matmul", options, (a, b), more=more)
    assert _shared_buffers(program) == {"sh0_A": (8, 8), "sh0_B": (8, 8)}


# -- (f) shared promotion on PoCL ---------------------------------------------------------------


# Copies to shared memory bring barriers, and PoCL compiles kernels with barriers
# slowly: by default a subset that promotes (reuse, transposes, convolutions, indirect
# reads, reductions); the whole catalogue under --fuzz-long.
SHARED_SUBSET = ("matmul", "tmm", "transpose3d_021", "conv2d", "group_conv",
                 "embedding_sum", "softmax", "fc_relu_backward", "mlp3", "avgpool3x3")


@pytest.mark.parametrize("name", KERNEL_PARAMS)
def test_catalogue_with_shared_memory_matches_the_interpreter(name: str,
                                                             long_run: bool) -> None:
    if name not in SHARED_SUBSET and not long_run:
        pytest.skip("the whole catalogue with shared memory runs under --fuzz-long")
    kernel = KERNELS[name]
    options = _shared()
    program = _run_opencl(kernel.tc, kernel.entry, options, _inputs(kernel), kernel.rtol,
                          kernel.atol)
    for ck in program.kernels:
        assert _shared_bytes(ck.kernel) <= DEFAULT_SHARED_LIMIT, ck.name
        assert all(b <= t for b, t in zip(ck.block, (*options.threads, 1, 1), strict=False))
        assert all(g <= n for g, n in zip(ck.grid, (*options.blocks, 1, 1), strict=False))


def _fixed(options: MappingOptions) -> MappingOptions:
    return options.fixParametersBeforeScheduling(True)


# (kernel, sizes (None: the first test size), options on top of naive + shared).
# Boxes of whole dimensions (a shallow sharedDepth, a convolution's image) are bounded
# only at one shape: those cases fix the parameters. With symbolic sizes, tiles small
# enough give constant boxes that fit the limits; those run at a second size too.
VARIANTS = [
    ("matmul", {"M": 40, "K": 70, "N": 33}, lambda o: _fixed(o.sharedDepth(2))),
    ("matmul", None, lambda o: _fixed(o.maxSharedMemory(64).unrollCopyShared(True))),
    ("conv2d", None, lambda o: _fixed(o.sharedDepth(1))),
    ("group_conv", None, lambda o: _fixed(o.sharedDepth(1).unrollCopyShared(True))),
    ("tbmm", None, lambda o: _fixed(o.maxSharedMemory(64))),
    ("mlp3", None, lambda o: o.maxSharedMemory(200)),
    ("softmax", None, lambda o: _fixed(o.maxSharedMemory(64).unrollCopyShared(True))),
    ("matmul", {"M": 40, "K": 70, "N": 33}, lambda o: o.tile(8, 8, 8).sharedDepth(3)),
    ("matmul", None, lambda o: o.tile(4, 4, 4).maxSharedMemory(64).unrollCopyShared(True)),
    ("tbmm", None, lambda o: o.tile(1, 4, 4, 4).maxSharedMemory(64)),
    ("softmax", None, lambda o: o.tile(4, 4).maxSharedMemory(64).unrollCopyShared(True)),
]


@pytest.mark.parametrize(("name", "sizes", "tweak"), [
    pytest.param(n, s, t, id=f"{n}-{i}") for i, (n, s, t) in enumerate(VARIANTS)])
def test_shared_depths_limits_and_unrolled_copies_match_the_interpreter(name, sizes,
                                                                        tweak) -> None:
    kernel = KERNELS[name]
    options = tweak(_shared())
    first = sizes or kernel.test_sizes[0]
    more = () if options.fix_parameters else (
        _inputs(kernel, {s: 2 * v + 1 for s, v in first.items()}),)
    program = _run_opencl(kernel.tc, kernel.entry, options, _inputs(kernel, sizes),
                          kernel.rtol, kernel.atol, more)
    assert program.symbolic is not options.fix_parameters
    limit = options.max_shared_memory
    assert _shared_buffers(program), f"{name}: nothing promoted, the case tests nothing"
    for ck in program.kernels:
        assert _shared_bytes(ck.kernel) <= (DEFAULT_SHARED_LIMIT if limit is None else limit)
        copies = [s for s in k.walk_stmts(ck.kernel.body)
                  if isinstance(s, k.For) and s.var.startswith("sh")]
        assert all(s.unroll == options.unroll_copy_shared for s in copies), ck.name
        if copies and options.unroll_copy_shared:
            assert "#pragma unroll" in ck.cuda_source


def test_a_shallow_promotion_point_gives_bigger_boxes() -> None:
    """The sharedDepth(2) matmul case above copies all of k at once."""
    kernel = KERNELS["matmul"]
    inputs = _inputs(kernel, {"M": 40, "K": 70, "N": 33})
    deep = _program(kernel.tc, kernel.entry, _shared(), *inputs)
    shallow = _program(kernel.tc, kernel.entry, _shared().sharedDepth(2), *inputs)
    assert _shared_buffers(deep) == {"sh0_A": (32, 32), "sh0_B": (32, 32)}
    assert _shared_buffers(shallow) == {"sh0_A": (32, 70), "sh0_B": (70, 32)}


MAX_FUSED = ("softmax", "mlp3", "fc_relu_backward")


@pytest.mark.parametrize("name", MAX_FUSED)
def test_max_fusion_with_shared_memory_matches_the_interpreter(name: str) -> None:
    """One kernel per definition: temporaries are promoted and copied back."""
    kernel = KERNELS[name]
    options = _shared().outerScheduleFusionStrategy("Max")
    program = _run_opencl(kernel.tc, kernel.entry, options, _inputs(kernel), kernel.rtol,
                          kernel.atol)
    assert len(program.kernels) == 1


def test_a_sequential_loop_below_the_promotion_point_has_no_barrier() -> None:
    """matmul at sharedDepth(2): the copies sit above the k tile loop; inside it each
    thread only updates its own C elements and reads the shared tiles. Two barriers:
    after the copy in and after the body (regression: the copies' statements used to
    count as crossing threads, which put a barrier at the top of the k tile loop,
    right after the copy-in barrier)."""
    a, b = torch.randn(64, 64), torch.randn(64, 64)
    program = _program(MATMUL, "matmul", _shared().sharedDepth(2), a, b)
    (ck,) = program.kernels
    assert sum(isinstance(s, k.Barrier) for s in k.walk_stmts(ck.kernel.body)) == 2
    assert structure_problems(program) == []


@pytest.mark.parametrize(("name", "size"), [("group_norm", 1), ("kru3", 0), ("wavenet", 0)])
def test_max_fusion_with_shared_memory_places_no_barrier_twice(name: str, size: int) -> None:
    """Regression: a barrier right before a sequential loop whose body begins with one."""
    kernel = KERNELS[name]
    options = _shared().outerScheduleFusionStrategy("Max")
    program = _program(kernel.tc, kernel.entry, options,
                       *_inputs(kernel, kernel.test_sizes[size]))
    assert structure_problems(program) == []


# -- (g) NVRTC for every preset ------------------------------------------------------------------


@functools.cache
def _preset_programs(preset: str) -> tuple[tuple[str, CompiledProgram, tuple], ...]:
    out = []
    for name, kernel in KERNELS.items():
        fn = _reference(kernel.tc)[kernel.entry]
        call = fn.bind(*_inputs(kernel))
        program = compile_program(fn.ir, MappingOptions(preset), call.sizes,
                                  [t.stride() for t in call.inputs])
        out.append((name, program, call.signature()))
    return tuple(out)


@pytest.mark.parametrize("arch", ARCHS)
# naive: test_compile_catalogue.py checks it on both architectures.
@pytest.mark.parametrize("preset", [p for p in PRESETS if p != "naive"])
def test_every_kernel_compiles_with_nvrtc_without_spills(preset: str, arch: str,
                                                        long_run: bool) -> None:
    """Every catalogue kernel at its first test size, for both architectures (the
    programs are compiled once per preset and shared by the two)."""
    start = time.perf_counter()
    for name, program, signature in _preset_programs(preset):
        executor = Executor(program, "cuda", signature, arch)
        assert executor.kernels, name
        for info in executor.kernels:
            assert f".target {arch}" in info.ptx, (name, info.name)
            assert info.resources["spill_bytes"] == 0, (
                f"{name}: {info.name} spills with {preset} on {arch}: {info.resources}")
            assert 1 <= info.block[0] * info.block[1] * info.block[2] <= 1024
    print(f"{preset} {arch}: {time.perf_counter() - start:.1f} s")
