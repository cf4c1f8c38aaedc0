"""The native CPU target (C + OpenMP), against the reference interpreter.

* every catalogue kernel, naive options, first test size: the interpreter's outputs,
  inputs untouched, no GPU construct and no store a parallel loop could race on
  (``kernel_checks.cpu_problems``);
* random options (the generic fields and the CPU ones) on random kernels at odd sizes;
* OpenMP thread counts 1, 2 and 3 give bit-identical results: the mapping never runs
  a reduction in parallel, so no result depends on the thread count;
* the printed C: parallel and SIMD loops where the schedule allows them, none on a
  reduction; the compiled library as the cache's artefact (a new executor loads it
  without compiling); ``backend=None`` picks the CPU target for CPU tensors, and
  falls back to PoCL with a warning when there is no C compiler.
"""

from __future__ import annotations

import functools
import logging

import pytest
import torch
from catalogue_cases import kernel_and_inputs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kernel_checks import assert_same, cpu_problems

import codegen.cc
import tc
from codegen import kernel as k
from codegen import stats
from codegen.executor import Executor
from codegen.targets import TARGETS, default_target
from tc.catalogue import KERNELS, Kernel
from tc.options import FUSION_STRATEGIES, MappingOptions

pytestmark = pytest.mark.skipif(not TARGETS["cpu"].available(), reason="no C compiler")

GROUPS = 6
EXAMPLES = 5
KERNEL_GROUPS = [sorted(KERNELS)[i::GROUPS] for i in range(GROUPS)]
TILE_SIZES = (0, 1, 2, 3, 5, 7, 16, 32, 64)


@functools.cache
def _reference(text: str) -> tc.TC:
    return tc.define(text, backend="reference")


def _inputs(kernel: Kernel, sizes: dict[str, int], seed: int = 0) -> tuple[torch.Tensor, ...]:
    return kernel.make_inputs(sizes, torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("kernel", list(KERNELS.values()), ids=list(KERNELS))
def test_catalogue_matches_the_interpreter(kernel: Kernel) -> None:
    sizes = kernel.test_sizes[0]
    inputs = _inputs(kernel, sizes)
    saved = [t.clone() for t in inputs]
    want = _reference(kernel.tc)[kernel.entry](*inputs)
    executor = tc.compile(kernel.tc, kernel.entry, None, *inputs, backend="cpu")
    assert_same(executor(*inputs), want, kernel.rtol, kernel.atol, what=kernel.name)
    for before, after in zip(saved, inputs, strict=True):
        assert torch.equal(before, after), f"{kernel.name} wrote an input"
    assert cpu_problems(executor.program) == [], kernel.name


@st.composite
def cpu_options(draw) -> MappingOptions:
    o = MappingOptions("naive")
    o.tile(draw(st.lists(st.sampled_from(TILE_SIZES), min_size=1, max_size=4)))
    o.outerScheduleFusionStrategy(draw(st.sampled_from(FUSION_STRATEGIES)))
    o.intraTileScheduleFusionStrategy(draw(st.sampled_from(FUSION_STRATEGIES)))
    o.outerScheduleAllowSkewing(draw(st.booleans()))
    o.outerSchedulePositiveOrthant(draw(st.booleans()))
    o.intraTileScheduleAllowSkewing(draw(st.booleans()))
    o.intraTileSchedulePositiveOrthant(draw(st.booleans()))
    o.fixParametersBeforeScheduling(draw(st.booleans()))
    o.tileImperfectlyNested(draw(st.booleans()))
    o.unroll(draw(st.integers(1, 8)))
    o.usePrivateMemory(draw(st.booleans()))
    o.privateDepth(draw(st.integers(0, 6)))
    # Shared memory means packing on a CPU (polyhedral.packing), at any depth and
    # under small limits; matchLibraryCalls is GPU-only: drawn to show it is ignored.
    o.useSharedMemory(draw(st.booleans()))
    o.sharedDepth(draw(st.integers(0, 6)))
    o.maxSharedMemory(draw(st.sampled_from([None, 64, 1024, 1 << 20])))
    o.matchLibraryCalls(draw(st.booleans()))
    o.cpuThreads(draw(st.sampled_from([0, 1, 2, 3])))
    o.cpuParallel(draw(st.booleans()))
    o.cpuVectorize(draw(st.booleans()))
    o.cpuRegisterTile(draw(st.sampled_from([1, 2, 3, 4, 8])))
    return o


@pytest.mark.parametrize("names", KERNEL_GROUPS, ids=[f"group{i}" for i in range(GROUPS)])
def test_random_options_match_the_interpreter(names: list[str], fuzz_examples) -> None:
    @settings(max_examples=fuzz_examples(EXAMPLES), deadline=None, derandomize=True,
              database=None, suppress_health_check=[HealthCheck.too_slow])
    @given(case=kernel_and_inputs(names), options=cpu_options())
    def check(case, options: MappingOptions) -> None:
        kernel, sizes, inputs = case
        what = f"{kernel.name} {sizes} {options!r}"
        want = _reference(kernel.tc)[kernel.entry](*inputs)
        executor = tc.compile(kernel.tc, kernel.entry, options, *inputs, backend="cpu")
        assert_same(executor(*inputs), want, kernel.rtol, kernel.atol, what=what)
        assert cpu_problems(executor.program) == [], what

    check()


THREAD_CASES = {
    "matmul": {"M": 67, "K": 45, "N": 71},
    "softmax": {"M": 67, "N": 523},
    "layer_norm": {"M": 61, "N": 541},
    "conv2d": None,  # its largest test size
}


@pytest.mark.parametrize("name", list(THREAD_CASES))
def test_thread_counts_give_identical_bits(name: str) -> None:
    """No reduction runs in parallel, so every thread count gives the same bits; a race
    between threads would show as a difference (and a wrong value)."""
    kernel = KERNELS[name]
    sizes = THREAD_CASES[name] or max(kernel.test_sizes, key=lambda s: sum(s.values()))
    inputs = _inputs(kernel, sizes, 1)
    want = _reference(kernel.tc)[kernel.entry](*inputs)
    results = []
    for threads in (1, 2, 3):
        options = MappingOptions("naive").tile(8, 8, 8).cpuThreads(threads)
        ex = tc.compile(kernel.tc, kernel.entry, options, *inputs, backend="cpu")
        src = "".join(k.source for k in ex.kernels)
        assert "parallel" not in src or f"num_threads({threads})" in src
        out = ex(*inputs)
        results.append(out if isinstance(out, tuple) else (out,))
        assert_same(out, want, kernel.rtol, kernel.atol, what=f"{name} on {threads} threads")
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            assert torch.equal(a, b), name


MATMUL = "def mm(float(M, K) A, float(K, N) B) -> (C) { C(m, n) +=! A(m, k) * B(k, n) }"
ROWSUM = "def rs(float(N, D) X) -> (S) { S(n) +=! X(n, d) }"


def test_matmul_source_has_a_parallel_and_an_innermost_simd_loop() -> None:
    a, b = torch.randn(40, 30), torch.randn(30, 50)
    # (without the register tile, whose loops tests/polyhedral/test_register_tile.py checks)
    options = MappingOptions("naive").cpuRegisterTile(1)
    ex = tc.compile(MATMUL, "mm", options, a, b, backend="cpu")
    assert "#pragma omp parallel for" in ex.kernels[0].source
    loops = [s for s in k.walk_stmts(ex.program.kernels[0].kernel.body)
             if isinstance(s, k.For)]
    simd = [s for s in loops if s.vector is not None]
    assert simd
    for s in simd:
        # the SIMD loop is the innermost (full and partial tiles each have one): n,
        # with unit stride in C and B
        assert s.var.endswith(str(max(int(v.var[3:]) for v in loops)))
        assert not any(isinstance(t, k.For) for t in k.walk_stmts(s.body))


def test_reduction_is_never_parallel() -> None:
    x = torch.randn(5, 300)
    for options in (MappingOptions("naive").tile(0, 0), MappingOptions("naive").tile(1, 64)):
        ex = tc.compile(ROWSUM, "rs", options, x, backend="cpu")
        assert cpu_problems(ex.program) == []
        torch.testing.assert_close(ex(x), x.sum(1), rtol=1e-5, atol=1e-5)
    total = "def t(float(N) X) -> (S) { S +=! X(i) }"
    src = tc.compile(total, "t", None, torch.randn(100), backend="cpu").kernels[0].source
    assert "parallel" not in src


def test_switches_remove_the_pragmas() -> None:
    a, b = torch.randn(9, 7), torch.randn(7, 5)
    options = MappingOptions("naive").cpuParallel(False).cpuVectorize(False)
    ex = tc.compile(MATMUL, "mm", options, a, b, backend="cpu")
    assert "#pragma omp" not in ex.kernels[0].source
    torch.testing.assert_close(ex(a, b), a @ b, rtol=1e-5, atol=1e-5)


def test_artifact_reloads_without_compiling() -> None:
    a, b = torch.randn(13, 7), torch.randn(7, 11)
    ex = tc.compile(MATMUL, "mm", None, a, b, backend="cpu")
    blob = ex.artifact()
    before = stats.snapshot()
    again = Executor.from_artifact(blob, "cpu", ex.signature)
    after = stats.snapshot()
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    assert delta.get("cc_compile", 0) == 0 and delta.get("compile_program", 0) == 0
    assert delta.get("cc_load_binary", 0) == 1
    torch.testing.assert_close(again(a, b), a @ b, rtol=1e-5, atol=1e-5)


def test_artifact_of_one_strategy_is_refused_by_the_other() -> None:
    a, b = torch.randn(3, 2), torch.randn(2, 4)
    blob = tc.compile(MATMUL, "mm", None, a, b, backend="cpu").artifact()
    with pytest.raises(tc.TcBackendError, match="mapped for CPUs"):
        Executor.from_artifact(blob, "opencl", tc.compile(MATMUL, "mm", None, a, b,
                                                          backend="cpu").signature)


def test_default_backend_is_the_cpu_target() -> None:
    assert default_target("cpu").name == "cpu"
    assert default_target("cuda").name == "cuda"
    unit = tc.define(MATMUL)
    a, b = torch.randn(4, 3), torch.randn(3, 2)
    torch.testing.assert_close(unit.mm(a, b), a @ b, rtol=1e-5, atol=1e-5)
    assert unit.backend.pick(unit.mm.bind(a, b)).name == "cpu"


def test_without_a_compiler_cpu_raises_and_default_falls_back(monkeypatch, caplog) -> None:
    monkeypatch.setenv("CC", "/nonexistent/cc-for-tc-tests")
    codegen.cc.compiler.cache_clear()
    import codegen.targets as targets

    monkeypatch.setattr(targets, "_warned", set())
    try:
        assert not TARGETS["cpu"].available()
        a, b = torch.randn(4, 3), torch.randn(3, 2)
        with pytest.raises(tc.TcBackendError, match="C compiler"):
            tc.compile(MATMUL, "mm", MappingOptions("naive").tile(3), a, b, backend="cpu")
        with caplog.at_level(logging.WARNING, logger="codegen.targets"):
            assert default_target("cpu").name == "opencl"
            assert default_target("cpu").name == "opencl"
        assert sum("PoCL" in r.getMessage() for r in caplog.records) == 1
    finally:
        monkeypatch.delenv("CC")
        codegen.cc.compiler.cache_clear()
    assert TARGETS["cpu"].available()


def test_kernels_release_the_gil() -> None:
    """While a long kernel runs, another Python thread keeps running (ctypes releases
    the GIL): a ticker thread advances during one call."""
    import threading
    import time

    x = torch.randn(1, 1 << 22)
    heavy = "def t(float(N, D) X) -> (S) { S(n) +=! exp(sin(X(n, d))) * cos(X(n, d)) }"
    ex = tc.compile(heavy, "t", MappingOptions("naive").cpuThreads(1), x, backend="cpu")
    ex(x)
    ticks: list[float] = []
    stop = threading.Event()

    def tick() -> None:
        while not stop.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.0005)

    t = threading.Thread(target=tick)
    t.start()
    time.sleep(0.01)
    start = time.perf_counter()
    ex(x)
    end = time.perf_counter()
    stop.set()
    t.join()
    during = [s for s in ticks if start < s < end]
    assert end - start > 0.005, "the kernel is too short to tell"
    assert len(during) >= 3, (len(during), end - start)


# -- one library for every shape (symbolic sizes) ----------------------------------------------

FC = """
def fc_relu(float(B, I) x, float(O, I) W, float(O) bias) -> (y) {
    y(b, o) +=! x(b, i) * W(o, i)
    y(b, o) = fmax(y(b, o) + bias(o), 0)
}
def gather(float(N) A, int32(M) idx) -> (O) { O(i) = A(idx(i)) }
"""


def _fc(x, W, bias):
    return torch.relu(x @ W.T + bias)


def test_one_compile_serves_every_batch_size_and_stride() -> None:
    unit = tc.define(FC, backend="cpu")
    ref = _reference(FC)
    W, bias = torch.randn(7, 19), torch.randn(7)
    before = stats.snapshot().get("compile_program", 0)
    inputs = [torch.randn(b, 19) for b in (1, 2, 3, 64, 257, 5)]
    inputs.append(torch.randn(300, 40)[::3, 5:24])  # another outer stride, an offset
    inputs.append(torch.randn(4, 1, 19)[:, 0])  # a size-1 dimension squeezed away
    for x in inputs:
        assert_same(unit.fc_relu(x, W, bias), ref.fc_relu(x, W, bias), 1e-5, 1e-5,
                    what=str(tuple(x.shape)))
    assert stats.snapshot()["compile_program"] - before == 1
    # the unit stride moves to the other dimension: another class, compiled once more
    xt = torch.randn(19, 11).t()
    assert_same(unit.fc_relu(xt, W, bias), ref.fc_relu(xt, W, bias), 1e-5, 1e-5)
    assert stats.snapshot()["compile_program"] - before == 2


def test_fixed_parameters_compile_per_shape() -> None:
    options = MappingOptions("naive").fixParametersBeforeScheduling(True)
    unit = tc.define(FC, lambda *a: options.copy(), backend="cpu")
    W, bias = torch.randn(7, 19), torch.randn(7)
    before = stats.snapshot().get("compile_program", 0)
    for b in (2, 3):
        x = torch.randn(b, 19)
        torch.testing.assert_close(unit.fc_relu(x, W, bias), _fc(x, W, bias), rtol=1e-5,
                                   atol=1e-5)
    assert stats.snapshot()["compile_program"] - before == 2
    ex = tc.compile(FC, "fc_relu", options, torch.randn(3, 19), W, bias, backend="cpu")
    assert not ex.program.symbolic and "st_" not in ex.kernels[0].source


def test_symbolic_kernels_take_sizes_and_strides() -> None:
    x, W, bias = torch.randn(50, 19), torch.randn(300, 19), torch.randn(300)
    ex = tc.compile(FC, "fc_relu", None, x, W, bias, backend="cpu")
    src = ex.kernels[0].source
    assert ex.program.symbolic
    assert "int s_B, int s_I, int s_O, int st_x_0, int st_W_0)" in src
    assert "if(" in src  # the parallel loop decides at run time whether it pays
    # the executor serves another size of the same class, and refuses another class
    x2 = torch.randn(3, 19)
    torch.testing.assert_close(ex(x2, W, bias), _fc(x2, W, bias), rtol=1e-5, atol=1e-5)
    with pytest.raises(tc.TcArgumentError, match="unit strides"):
        ex(torch.randn(19, 3).t(), W, bias)


def test_symbolic_artifact_serves_its_class_only() -> None:
    x, W, bias = torch.randn(5, 19), torch.randn(7, 19), torch.randn(7)
    blob = tc.compile(FC, "fc_relu", None, x, W, bias, backend="cpu").artifact()
    x2 = torch.randn(33, 19)
    call = tc.define(FC, backend="reference").fc_relu.bind(x2, W, bias)
    ex = Executor.from_artifact(blob, "cpu", call.signature())
    torch.testing.assert_close(ex(x2, W, bias), _fc(x2, W, bias), rtol=1e-5, atol=1e-5)
    other = tc.define(FC, backend="reference").fc_relu.bind(torch.randn(19, 4).t(), W, bias)
    with pytest.raises(tc.TcBackendError, match="class"):
        Executor.from_artifact(blob, "cpu", other.signature())


def test_symbolic_bounds_checks_use_the_call_sizes() -> None:
    gather = tc.define(FC, backend="cpu").gather
    for n in (6, 40):
        a = torch.randn(n)
        with pytest.raises(tc.TcRangeError, match="'A'"):
            gather(a, torch.tensor([0, n], dtype=torch.int32))
        idx = torch.tensor([n - 1, 0], dtype=torch.int32)
        torch.testing.assert_close(gather(a, idx), a[idx.long()])


def test_c_compiler_warnings_go_to_logging(capfd, caplog) -> None:
    """The C compiler's warnings of a build that works are logged, not shown."""
    import logging
    import uuid

    from codegen import cc

    if cc.compiler() is None:
        pytest.skip("no C compiler")
    tag = uuid.uuid4().hex
    with caplog.at_level(logging.DEBUG, logger="codegen.cc"):
        cc.build_library(f'#warning "tc-test {tag}"\nint tc_probe(void) {{ return 1; }}\n')
    out, err = capfd.readouterr()
    assert tag not in out + err
    assert tag in caplog.text
