"""The default options (:mod:`tc.defaults`): right on every catalogue layer, within the
target's limits, and cheap.

* Every kernel of :mod:`tc.catalogue` at its first (small, odd) test size, compiled
  with the default options for that size on the CPU target and on PoCL, gives the
  reference interpreter's outputs and passes the static checks of
  :mod:`kernel_checks` (:func:`~kernel_checks.program_problems`).
* The options chosen at the benchmark sizes (where the rules that depend on long
  loops apply: packing, fusion, tiles) also give the interpreter's outputs at the
  small size (options never decide correctness).
* On every target, GPU ones included, the options respect its launch limits and its
  shared memory, and choosing them takes well under a millisecond or two.
"""

from __future__ import annotations

import functools
import statistics
import time

import pytest
import torch
from kernel_checks import assert_same, program_problems
from targets_here import runnable_targets

import tc
from codegen.targets import TARGETS, get_target
from tc import catalogue
from tc.arguments import BoundCall
from tc.catalogue import KERNELS, Kernel
from tc.defaults import default_options, second_pass, stage_shapes
from tc.options import MappingOptions

KERNEL_PARAMS = [pytest.param(kernel, id=name) for name, kernel in KERNELS.items()]
#: Kernels whose benchmark-size options exercise each rule (packing: fc_relu, tmm;
#: fusion: softmax, layer_norm, group_norm; four tiled loops: conv2d, transpose4d).
BENCH_OPTION_KERNELS = ("tmm", "fc_relu", "fc_relu_dx", "mlp3", "softmax", "layer_norm",
                        "group_norm", "conv2d", "bmm", "transpose4d_0312", "moments",
                        "cross_entropy_mean")


@functools.cache
def _reference(text: str) -> tc.TC:
    return tc.define(text, backend="reference")


def _inputs(kernel: Kernel, sizes: dict[str, int]) -> tuple[torch.Tensor, ...]:
    return kernel.make_inputs(sizes, torch.Generator().manual_seed(0))


def _call(kernel: Kernel, sizes: dict[str, int]) -> tuple[tc.api.TcFunction, BoundCall]:
    """The entry point and its call at ``sizes``, bound to meta tensors (nothing is
    allocated: the benchmark sizes hold hundreds of MB)."""
    fn = _reference(kernel.tc)[kernel.entry]
    metas = [torch.empty(shape, dtype=dtype, device="meta")
             for shape, dtype in catalogue.input_shapes(kernel, sizes)]
    return fn, fn.bind(*metas)


def _options(kernel: Kernel, sizes: dict[str, int], target: str) -> MappingOptions:
    fn, call = _call(kernel, sizes)
    return default_options(fn.ir, call, get_target(target))


def _check(kernel: Kernel, options: MappingOptions, target: str) -> None:
    """Compile at the first test size, run, compare with the interpreter, check the
    program's structure."""
    sizes = kernel.test_sizes[0]
    inputs = _inputs(kernel, sizes)
    want = _reference(kernel.tc)[kernel.entry](*inputs)
    executor = tc.compile(kernel.tc, kernel.entry, options, *inputs, backend=target)
    what = f"{kernel.name} {sizes} on {target} with {options!r}"
    assert_same(executor(*inputs), want, kernel.rtol, kernel.atol, what=what)
    assert program_problems(executor.program) == [], what


@pytest.mark.parametrize("kernel", KERNEL_PARAMS)
def test_default_options_match_the_interpreter(kernel: Kernel) -> None:
    """Every layer at a small odd size, with the options for that size, on every
    runnable target (the CPU target and PoCL)."""
    for target in runnable_targets():
        _check(kernel, _options(kernel, kernel.test_sizes[0], target), target)


@pytest.mark.parametrize("name", BENCH_OPTION_KERNELS)
def test_benchmark_size_options_match_the_interpreter_at_small_sizes(name: str) -> None:
    kernel = KERNELS[name]
    for target in runnable_targets():
        _check(kernel, _options(kernel, kernel.bench_sizes[0], target), target)


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_options_respect_the_target_limits(target: str) -> None:
    """Threads, blocks and shared memory within the target's limits, for every layer
    at its test and benchmark sizes (CUDA's options need no GPU)."""
    t = get_target(target)
    if target == "opencl" and not t.available():
        pytest.skip("PoCL is not available: its limits come from the device")
    limits = t.limits()
    for kernel in KERNELS.values():
        for sizes in (*kernel.test_sizes, *kernel.bench_sizes):
            o = _options(kernel, sizes, target)
            what = f"{kernel.name} {sizes} on {target}: {o!r}"
            assert o.outer_fusion in ("Max", "Preserve3Coincident"), what
            assert not o.fix_parameters, what  # one build serves every shape
            if t.strategy == "cpu":
                assert o.cpu_vectorize, what
                if o.use_shared_memory:
                    assert o.max_shared_memory is not None, what
                    assert o.max_shared_memory <= t.shared_memory_bytes(), what
                continue
            threads = 1
            for axis, n in enumerate(o.threads):
                assert 1 <= n <= limits.max_block[axis], what
                threads *= n
            assert threads <= limits.max_threads_per_block, what
            assert o.threads[0] % 32 == 0 or o.threads[0] < 32, what
            for axis, n in enumerate(o.blocks):
                assert 1 <= n <= limits.max_grid[axis], what
            if o.use_shared_memory:
                assert o.max_shared_memory is not None, what
                assert 0 < o.max_shared_memory <= t.shared_memory_bytes(), what


def test_rules_on_known_layers() -> None:
    """What the heuristic decides for a few layers at their benchmark sizes."""
    cpu = "cpu"
    fc = _options(KERNELS["fc_relu"], KERNELS["fc_relu"].bench_sizes[0], cpu)
    assert fc.use_shared_memory  # x(b, i) * W(o, i): packed into the GEMM form
    mm = _options(KERNELS["matmul"], KERNELS["matmul"].bench_sizes[0], cpu)
    assert not mm.use_shared_memory and mm.tile_sizes == (32, 32, 32)
    for name in ("softmax", "layer_norm"):
        assert _options(KERNELS[name], KERNELS[name].bench_sizes[0], cpu).outer_fusion == "Max"
    # group_norm's second pass is fused where its groups outgrow a core's cache only.
    gn = KERNELS["group_norm"]
    assert [_options(gn, s, cpu).outer_fusion for s in gn.bench_sizes[:2]] == [
        "Preserve3Coincident", "Max"]
    moments = KERNELS["moments"]
    fn = _reference(moments.tc)[moments.entry].ir
    assert not second_pass(stage_shapes(fn, moments.bench_sizes[0]))
    tiny = KERNELS["cross_entropy"]
    assert not _options(tiny, tiny.bench_sizes[0], cpu).cpu_parallel
    # A fourth tiled loop only where it is several tiles long: conv2d_s2's 109-wide
    # output, not conv2d's 54 (whose partial tile would run the guarded form).
    s2 = KERNELS["conv2d_s2"]
    assert _options(s2, s2.bench_sizes[0], cpu).tile_sizes == (0, 32, 32, 32)
    conv = KERNELS["conv2d"]
    assert _options(conv, conv.bench_sizes[0], cpu).tile_sizes == (0, 32, 32)


def test_choosing_is_cheap() -> None:
    """Well under a millisecond or two per layer (the median over the catalogue of the
    fastest of three calls, and every layer under 5 ms)."""
    times = []
    for target in ("cpu", "cuda"):
        t = get_target(target)
        for kernel in KERNELS.values():
            fn, call = _call(kernel, kernel.bench_sizes[0])
            best = float("inf")
            for _ in range(3):
                t0 = time.perf_counter()
                default_options(fn.ir, call, t)
                best = min(best, time.perf_counter() - t0)
            assert best < 5e-3, f"{kernel.name} on {target}: {best * 1e3:.2f} ms"
            times.append(best)
    assert statistics.median(times) < 1e-3


@pytest.mark.parametrize("target", runnable_targets())
def test_a_scalar_result_gets_options_and_the_right_value(target: str) -> None:
    """A definition whose result has no index (a full sum) has no output loop to map:
    the GPU rules once indexed past the empty list."""
    x = torch.rand(1000)
    y = tc.define("def s(float(N) x) -> (y) { y +=! x(i) }", backend=target).s(x)
    torch.testing.assert_close(y, x.double().sum().float(), rtol=1e-5, atol=0)


def test_compile_without_options_takes_the_defaults() -> None:
    """``tc.compile(..., None, ...)`` compiles with the target's default options for
    the call's sizes (not the naive ones), and gives the interpreter's outputs."""
    kernel = KERNELS["softmax"]
    small = kernel.test_sizes[0]
    want = _options(kernel, small, "cpu")
    assert want.key() != MappingOptions("naive").key()  # softmax's fusion rule applies
    inputs = _inputs(kernel, small)
    ex = tc.compile(kernel.tc, kernel.entry, None, *inputs, backend="cpu")
    assert ex.program.options.key() == want.key()
    assert_same(ex(*inputs), _reference(kernel.tc)[kernel.entry](*inputs), kernel.rtol,
                kernel.atol, what="softmax with tc.compile(None)")
