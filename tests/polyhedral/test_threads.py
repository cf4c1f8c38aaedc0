"""Which dependences cross threads (``polyhedral.threads``), and the barriers that follow.

A thread-mapped loop gives value ``v`` to thread ``v mod T`` of its axis; a statement
that no mapped loop distributes along an axis runs on thread 0 of it. A barrier is
needed between two statements of a kernel only when an instance of the second
depends on an instance of the first that ran on another thread.

* :func:`thread_crossing_pairs` on hand-written prefix schedules and dependences;
* compiled kernels: matmul (each C element owned by one thread) has no barrier; a
  kernel whose second statement reads what the neighbouring thread wrote keeps one
  between the two statements, and gives the interpreter's result on PoCL.
"""

from __future__ import annotations

import islpy as isl
import pytest
import torch
from kernel_checks import assert_same, structure_problems

import tc
from codegen import kernel as k
from codegen.compiler import CompiledProgram, compile_program
from codegen.lower import placements
from polyhedral.dependences import compute_dependences
from polyhedral.threads import prefix_schedules, thread_crossing_pairs
from tc.options import MappingOptions

CTX = isl.Context()
MATMUL = "def matmul(float(M, K) A, float(K, N) B) -> (C) { C(m, n) +=! A(m, k) * B(k, n) }"
# Fused (Max) into one kernel: C(i) reads B(i + 1), which the next thread writes.
NEIGHBOUR = """
def neighbour(float(N) A) -> (B, C) {
    B(i) = A(i) * 2.0
    C(i) = B(i) + B(i + 1) where i in 0:N-1
}
"""
# Fused (Max) into one kernel: C(i) reads only B(i), which its own thread writes.
SAME = """
def same(float(N) A) -> (B, C) {
    B(i) = A(i) * 2.0
    C(i) = B(i) * 3.0
}
"""
# Fused (Max) into one kernel: T(i, j) written by thread (i, j), summed by thread i.
ROWSUM = """
def rowsum(float(N, M) A) -> (T, O) {
    T(i, j) = A(i, j) * 2.0
    O(i) +=! T(i, j)
}
"""


# -- thread_crossing_pairs on hand-written maps ----------------------------------------------


def _map(text: str) -> isl.Map:
    return isl.Map.read_from_str(CTX, text)


def _context(n: int) -> isl.Set:
    return isl.Set.read_from_str(CTX, f"[N] -> {{ : N = {n} }}")


PREFIX_1D = {"S0": _map("[N] -> { S0[i] -> [i] : 0 <= i < N }"),
             "S1": _map("[N] -> { S1[i] -> [i] : 0 <= i < N }")}


def _crossing_1d(dep: str, threads: int = 32, n: int = 100,
                 placement=((0,), (0,))) -> frozenset[tuple[str, str]]:
    deps = isl.UnionMap.read_from_str(CTX, dep)
    places = {"S0": placement[0], "S1": placement[1]}
    return thread_crossing_pairs(PREFIX_1D, deps, places, (threads,), _context(n))


def test_a_dependence_within_one_thread_does_not_cross() -> None:
    assert _crossing_1d("[N] -> { S0[i] -> S1[i] : 0 <= i < N }") == frozenset()


def test_a_dependence_on_the_neighbour_crosses() -> None:
    dep = "[N] -> { S0[a] -> S1[i] : a = i + 1 and 0 <= i < N - 1 }"
    assert _crossing_1d(dep) == {("S0", "S1")}


@pytest.mark.parametrize(("shift", "threads", "crosses"), [
    (32, 32, False),  # value v and v + 32 both run on thread v mod 32
    (64, 32, False),
    (32, 16, False),
    (8, 16, True),
    (16, 32, True),
    (33, 32, True),
])
def test_threads_take_the_values_modulo_their_count(shift: int, threads: int,
                                                     crosses: bool) -> None:
    dep = f"[N] -> {{ S0[a] -> S1[i] : a = i + {shift} and 0 <= i < N - {shift} }}"
    want = {("S0", "S1")} if crosses else set()
    assert _crossing_1d(dep, threads) == want


def test_the_sizes_decide_whether_an_instance_pair_exists() -> None:
    dep = "[N] -> { S0[a] -> S1[i] : a = i + 1 and 0 <= i < N - 1 }"
    assert _crossing_1d(dep, n=1) == frozenset()  # no i: no dependence at all
    assert _crossing_1d(dep, n=2) == {("S0", "S1")}


def test_statements_on_thread_zero() -> None:
    """Placement None along an axis: the statement runs on thread 0 of it."""
    every = "[N] -> { S0[i] -> S1[j] : 0 <= i < N and 0 <= j < N }"
    # Both on thread 0: never crosses.
    assert _crossing_1d(every, placement=((None,), (None,))) == frozenset()
    # Written by all threads, read by thread 0: crosses (N > 1).
    assert _crossing_1d(every, placement=((0,), (None,))) == {("S0", "S1")}
    # Only instance 0 of a distributed statement feeds thread 0: no crossing.
    only_zero = "[N] -> { S0[0] -> S1[j] : 0 <= j < N }"
    assert _crossing_1d(only_zero, placement=((0,), (None,))) == frozenset()
    assert _crossing_1d("[N] -> { S0[32] -> S1[j] : 0 <= j < N }",
                        placement=((0,), (None,))) == frozenset()
    assert _crossing_1d("[N] -> { S0[5] -> S1[j] : 0 <= j < N }",
                        placement=((0,), (None,))) == {("S0", "S1")}


def test_an_unknown_placement_counts_as_crossing() -> None:
    dep = "[N] -> { S0[i] -> S1[i] : 0 <= i < N }"
    assert _crossing_1d(dep, placement=(None, (0,))) == {("S0", "S1")}
    assert _crossing_1d(dep, placement=((0,), None)) == {("S0", "S1")}


def test_dependences_to_statements_of_other_kernels_are_ignored() -> None:
    deps = isl.UnionMap.read_from_str(
        CTX, "[N] -> { S0[a] -> S1[i] : a = i + 1 and 0 <= i < N - 1; "
             "S0[i] -> S2[i] : 0 <= i < N }")
    prefixes = {**PREFIX_1D, "S2": _map("[N] -> { S2[i] -> [i] : 0 <= i < N }")}
    got = thread_crossing_pairs(prefixes, deps, {"S0": (0,), "S2": (0,)}, (32,), _context(9))
    assert got == frozenset()  # S1 is not in this kernel; S0 -> S2 stays in its thread
    # A statement without a prefix schedule has no known thread: crossing.
    got = thread_crossing_pairs(PREFIX_1D, deps, {"S0": (0,), "S2": (0,)}, (32,), _context(9))
    assert got == {("S0", "S2")}


def test_two_thread_axes() -> None:
    """thread.x over dimension 1 (j), thread.y over dimension 0 (i), 8 x 4 threads."""
    prefixes = {"S0": _map("[N] -> { S0[i, j] -> [i, j] : 0 <= i, j < N }"),
                "S1": _map("[N] -> { S1[i, j] -> [i, j] : 0 <= i, j < N }")}
    places = {"S0": (1, 0), "S1": (1, 0)}

    def crossing(dep: str, n: int = 4) -> frozenset[tuple[str, str]]:
        deps = isl.UnionMap.read_from_str(CTX, dep)
        return thread_crossing_pairs(prefixes, deps, places, (8, 4), _context(n))

    assert crossing("[N] -> { S0[i, j] -> S1[i, j] : 0 <= i, j < N }") == frozenset()
    transpose = "[N] -> { S0[a, b] -> S1[i, j] : a = j and b = i and 0 <= i, j < N }"
    assert crossing(transpose) == {("S0", "S1")}
    # Rows 4 apart run on the same thread.y (4 threads along y).
    rows = "[N] -> { S0[a, j] -> S1[i, j] : a = i + 4 and 0 <= i < N - 4 and 0 <= j < N }"
    assert crossing(rows, n=8) == frozenset()
    columns = "[N] -> { S0[i, b] -> S1[i, j] : b = j + 1 and 0 <= i < N and 0 <= j < N - 1 }"
    assert crossing(columns) == {("S0", "S1")}
    # The diagonal: i == j, the same thread only when the axes agree.
    assert crossing(transpose.replace(" }", " and i = j }")) == frozenset()


# -- compiled kernels ----------------------------------------------------------------------------


def _program(text: str, entry: str, options: MappingOptions,
             *inputs: torch.Tensor) -> CompiledProgram:
    fn = tc.define(text, backend="reference")[entry]
    call = fn.bind(*inputs)
    return compile_program(fn.ir, options, call.sizes, [t.stride() for t in call.inputs])


def _crossing(program: CompiledProgram, index: int) -> frozenset[tuple[str, str]]:
    """thread_crossing_pairs of one kernel, recomputed from the compiled program."""
    scop = program.mapped.scop
    ck = program.kernels[index]
    names = ", ".join(scop.param_ids.values())
    fixed = " and ".join(f"{p} = {program.sizes[n]}" for n, p in scop.param_ids.items())
    context = isl.Set.read_from_str(scop.context.get_ctx(), f"[{names}] -> {{ : {fixed} }}")
    threads = tuple(n for n in ck.block if n > 1)
    return thread_crossing_pairs(prefix_schedules(program.mapped.schedule),
                                 compute_dependences(scop).validity,
                                 placements(ck.kernel.body, ck.block), threads, context)


def _barriers(kern: k.Kernel) -> int:
    return sum(isinstance(s, k.Barrier) for s in k.walk_stmts(kern.body))


def _store_order(kern: k.Kernel) -> list[str]:
    """Statements (by origin) and barriers ("|") in the order of the kernel text."""
    out = []
    for s in k.walk_stmts(kern.body):
        if isinstance(s, k.Barrier):
            out.append("|")
        elif isinstance(s, k.Store):
            out.append(s.origin)
    return out


def _barrier_between(order: list[str], first: str, then: tuple[str, ...]) -> bool:
    """Is there a barrier between the first store of ``first`` and the next store of a
    statement of ``then`` after it (in the kernel text)?"""
    start = order.index(first)
    end = next(i for i in range(start, len(order)) if order[i] in then)
    return "|" in order[start:end]


def _max_fusion() -> MappingOptions:
    return MappingOptions("naive").outerScheduleFusionStrategy("Max")


@pytest.mark.parametrize("size", [(3, 5, 7), (64, 64, 64), (40, 70, 33)])
def test_matmul_naive_has_no_barrier(size: tuple[int, int, int]) -> None:
    """C(m, n) is initialised and updated by the thread that owns (m, n) in every k
    tile: no dependence crosses threads."""
    m, r, n = size
    program = _program(MATMUL, "matmul", MappingOptions("naive"), torch.randn(m, r),
                       torch.randn(r, n))
    (ck,) = program.kernels
    assert ck.block[0] * ck.block[1] > 1
    assert _crossing(program, 0) == frozenset()
    assert _barriers(ck.kernel) == 0
    assert "barrier(" not in ck.opencl_source and "__sync" not in ck.cuda_source


def test_statements_in_one_thread_need_no_barrier() -> None:
    program = _program(SAME, "same", _max_fusion(), torch.randn(70))
    (ck,) = program.kernels
    assert _store_order(ck.kernel) == ["S0", "S1"]  # one kernel, no barrier
    assert _crossing(program, 0) == frozenset()


@pytest.mark.parametrize("n", [20, 70])
def test_reading_the_neighbours_write_keeps_a_barrier(n: int) -> None:
    program = _program(NEIGHBOUR, "neighbour", _max_fusion(), torch.randn(n))
    (ck,) = program.kernels
    assert ck.block[0] > 1
    assert ("S0", "S1") in _crossing(program, 0)
    order = _store_order(ck.kernel)
    assert _barrier_between(order, "S0", ("S1",)), order
    assert structure_problems(program) == []


def test_a_reduction_over_what_other_threads_wrote_keeps_a_barrier() -> None:
    program = _program(ROWSUM, "rowsum", _max_fusion(), torch.randn(6, 5))
    (ck,) = program.kernels
    assert ("S0", "S1") in _crossing(program, 0)
    order = _store_order(ck.kernel)
    assert _barrier_between(order, "S0", ("S1",)), order


@pytest.mark.parametrize(("text", "entry", "shape"), [
    (NEIGHBOUR, "neighbour", (70,)),
    (SAME, "same", (45,)),
    (ROWSUM, "rowsum", (40, 37)),
])
def test_fused_kernels_give_the_interpreters_result(text: str, entry: str,
                                                    shape: tuple[int, ...]) -> None:
    a = torch.randn(*shape)
    want = tc.define(text, backend="reference")[entry](a)
    executor = tc.compile(text, entry, _max_fusion(), a, backend="opencl")
    assert len(executor.kernels) == 1
    assert_same(executor(a), want, rtol=1e-4, atol=1e-5, what=entry)
    assert structure_problems(executor.program) == []
