"""CPU packing (``useSharedMemory`` on the CPU target): polyhedral.packing + codegen.packing.

* what is packed: reused inputs only (never a tensor the kernel writes, never a read
  used once per tile), within the limit; the arrays are declared inside the parallel
  loop (each thread its own) and the static race checks hold;
* the layout: the dimension the vector loop walks is contiguous (``B(n, k)`` read
  along ``n`` is packed transposed);
* symbolic kernels: boxes of one size for every shape, so one library serves sizes
  smaller than a tile, primes and 1;
* random options with packing always on, on random catalogue kernels at odd sizes,
  against the interpreter (``--fuzz-long``: 20 times more);
* the box offsets of a tensor that only some statements below the point read (the
  ``bias`` of fc_relu, read in the last tile of the reduction only): isl's "void
  expression" error, on the CPU and in GPU shared-memory promotion alike.
"""

from __future__ import annotations

import functools

import pytest
import torch
from catalogue_cases import kernel_and_inputs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kernel_checks import assert_same, cpu_problems

import tc
from codegen import kernel as k
from codegen.targets import TARGETS
from tc.catalogue import KERNELS
from tc.options import FUSION_STRATEGIES, MappingOptions

pytestmark = pytest.mark.skipif(not TARGETS["cpu"].available(), reason="no C compiler")

TMM = "def tmm(float(M, K) A, float(N, K) B) -> (C) {\n  C(m, n) +=! A(m, k) * B(n, k)\n}"
GROUPS = 4
EXAMPLES = 6
KERNEL_GROUPS = [sorted(KERNELS)[i::GROUPS] for i in range(GROUPS)]


@functools.cache
def _reference(text: str) -> tc.TC:
    return tc.define(text, backend="reference")


def packing(tile: list[int], **more) -> MappingOptions:
    o = MappingOptions("naive").tile(tile).useSharedMemory(True)
    for setter, value in more.items():
        getattr(o, setter)(value)
    return o


def _packed(ex) -> list[k.Buffer]:
    return [b for ck in ex.program.kernels for b in ck.kernel.buffers
            if b.name.startswith("pk")]


def _declared_in_parallel_loop(kern: k.Kernel, name: str) -> bool:
    for s in k.walk_stmts(kern.body):
        if isinstance(s, k.For) and s.mapping == "omp":
            if any(isinstance(d, k.Local) and d.name == name for d in k.walk_stmts(s.body)):
                return True
    return False


def test_tmm_packs_both_operands_with_the_vector_dimension_contiguous() -> None:
    A, B = torch.randn(70, 45), torch.randn(66, 45)
    ex = tc.compile(TMM, "tmm", packing([16, 16, 16]).fixParametersBeforeScheduling(True),
                    A, B, backend="cpu")
    assert_same(ex(A, B), (A @ B.T,), 1e-4, 1e-4, what="tmm")
    bufs = {b.name.split("_", 1)[1]: b for b in _packed(ex)}
    assert set(bufs) == {"A", "B"}
    # Lanes run along n: B(n, k) is packed with n (its dimension 0) contiguous.
    b = bufs["B"]
    assert [s.value for s in b.strides] == [1, b.shape[0].value]
    kern = ex.program.kernels[0].kernel
    assert all(_declared_in_parallel_loop(kern, b.name) for b in bufs.values())
    assert cpu_problems(ex.program) == []


def test_without_packing_nothing_is_packed_and_the_results_agree() -> None:
    A, B = torch.randn(33, 20), torch.randn(17, 20)
    plain = tc.compile(TMM, "tmm", MappingOptions("naive").tile([8, 8, 8]), A, B, backend="cpu")
    packed = tc.compile(TMM, "tmm", packing([8, 8, 8]), A, B, backend="cpu")
    assert _packed(plain) == [] and _packed(packed) != []
    assert_same(packed(A, B), plain(A, B), 1e-5, 1e-5, what="tmm")


def test_written_tensors_and_single_use_reads_are_never_packed() -> None:
    text = ("def f(float(M, N) X) -> (Y) {\n  t(m, n) = X(m, n) * 2\n"
            "  Y(m, n) = t(m, n) + t(m, n) * X(m, 0)\n}")
    X = torch.randn(37, 50)
    ex = tc.compile(text, "f", packing([8, 16]).outerScheduleFusionStrategy("Max"), X,
                    backend="cpu")
    t = X * 2
    assert_same(ex(X), (t + t * X[:, :1],), 1e-5, 1e-5, what="f")
    # t is written by the kernel; X(m, n) is read once per element, but X(m, 0) by a
    # whole row: X is packed only where the second statement reads it alone.
    assert {b.name.split("_", 1)[1] for b in _packed(ex)} <= {"X"}
    assert cpu_problems(ex.program) == []
    single = "def g(float(M, N) X) -> (Y) {\n  Y(m, n) = exp(X(m, n))\n}"
    ex = tc.compile(single, "g", packing([8, 16]), X, backend="cpu")
    assert _packed(ex) == []


def test_the_limit_bounds_the_packed_bytes() -> None:
    A, B = torch.randn(40, 40), torch.randn(40, 40)
    for limit in (64, 1024, 4096):
        ex = tc.compile(TMM, "tmm", packing([32, 32, 32], maxSharedMemory=limit), A, B,
                        backend="cpu")
        total = sum(4 * b.shape[0].value * b.shape[1].value for b in _packed(ex))
        assert total <= limit
        assert_same(ex(A, B), (A @ B.T,), 1e-4, 1e-4, what=f"limit {limit}")


def test_one_symbolic_library_serves_every_size() -> None:
    A, B = torch.randn(64, 48), torch.randn(80, 48)
    ex = tc.compile(TMM, "tmm", packing([16, 16, 16]), A, B, backend="cpu")
    assert ex.program.symbolic and _packed(ex)
    for m, n, kk in ((1, 3, 2), (7, 5, 3), (17, 33, 15), (64, 80, 48)):
        a, b = torch.randn(m, kk), torch.randn(n, kk)
        assert_same(ex(a, b), (a @ b.T,), 1e-4, 1e-4, what=f"{m}x{n}x{kk}")


def test_a_tensor_read_in_the_last_reduction_tile_only_gets_offsets_everywhere() -> None:
    kernel = KERNELS["fc_relu"]
    x, W, b = torch.randn(9, 70), torch.randn(13, 70), torch.randn(13)
    for opts in (packing([32, 32, 32], cpuRegisterTile=4), packing([4, 4, 16])):
        ex = tc.compile(kernel.tc, kernel.entry, opts, x, W, b, backend="cpu")
        assert_same(ex(x, W, b), (torch.relu(x @ W.T + b),), 1e-4, 1e-4, what="fc_relu")


@pytest.mark.parametrize("backend", ["cpu", "opencl"])
def test_partial_range_reduction_with_shared_memory(backend: str) -> None:
    """Issue 12's repro: isl's "cannot handle void expression" with shared memory."""
    opts = MappingOptions.deserialize(
        '{"blocks":[32],"fix_parameters":false,"intra_allow_skewing":false,'
        '"intra_fusion":"Preserve3Coincident","intra_positive_orthant":true,'
        '"match_library_calls":false,"max_shared_memory":null,"outer_allow_skewing":false,'
        '"outer_fusion":"Max","outer_positive_orthant":true,"private_depth":0,'
        '"shared_depth":0,"threads":[16,2],"tile_imperfectly_nested":false,'
        '"tile_sizes":[16,32,32,64],"unroll_copy_shared":false,"unroll_factor":2,'
        '"use_private_memory":false,"use_readonly_cache":false,"use_shared_memory":true,'
        '"version":1}')
    if not TARGETS[backend].available():
        pytest.skip(f"{backend} is not available here")
    text = "def partial_sum(float(N, D) X) -> (S) {\n    S(n) +=! X(n, d) where d in 1:D-1\n}"
    X = torch.randn(6, 10)
    ex = tc.compile(text, "partial_sum", opts, X, backend=backend)
    assert_same(ex(X), (X[:, 1:9].sum(1),), 1e-5, 1e-5, what=backend)


@st.composite
def packing_options(draw) -> MappingOptions:
    o = packing(draw(st.lists(st.sampled_from((0, 1, 2, 3, 5, 7, 16, 32)), min_size=1,
                              max_size=4)))
    o.sharedDepth(draw(st.integers(0, 6)))
    o.maxSharedMemory(draw(st.sampled_from([None, 16, 256, 4096])))
    o.outerScheduleFusionStrategy(draw(st.sampled_from(FUSION_STRATEGIES)))
    o.fixParametersBeforeScheduling(draw(st.booleans()))
    o.cpuParallel(draw(st.booleans()))
    o.cpuVectorize(draw(st.booleans()))
    o.cpuRegisterTile(draw(st.sampled_from([1, 2, 4, 8])))
    o.unroll(draw(st.sampled_from([1, 2, 4])))
    return o


@pytest.mark.parametrize("names", KERNEL_GROUPS, ids=[f"group{i}" for i in range(GROUPS)])
def test_random_packing_matches_the_interpreter(names: list[str], fuzz_examples) -> None:
    @settings(max_examples=fuzz_examples(EXAMPLES), deadline=None, derandomize=True,
              database=None, suppress_health_check=[HealthCheck.too_slow])
    @given(case=kernel_and_inputs(names), options=packing_options())
    def check(case, options: MappingOptions) -> None:
        kernel, sizes, inputs = case
        what = f"{kernel.name} {sizes} {options!r}"
        want = _reference(kernel.tc)[kernel.entry](*inputs)
        ex = tc.compile(kernel.tc, kernel.entry, options, *inputs, backend="cpu")
        assert_same(ex(*inputs), want, kernel.rtol, kernel.atol, what=what)
        assert cpu_problems(ex.program) == [], what

    check()
