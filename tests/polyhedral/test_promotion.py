"""Shared-memory promotion plans (``polyhedral.promotion``, wired in by the compiler).

The plans are read from what the compiler produces: the ``shared.N`` marks of the
mapped schedule, the ``__shared__`` buffers of each kernel (``space == "shared"``)
and the copy statements of the kernel AST; and, for the fields of a plan, from
:func:`promote_shared` itself on the mapped schedule of the same pipeline. The
expected plans are worked out by hand from the TC text and the mapping options
(tile 32, threads (32, 8), 48 KiB of shared memory by default):

* matmul promotes the 32x32 tiles of A and B (each read by 32 threads of the block)
  but not C (each element is updated by one thread only);
* an elementwise kernel promotes nothing (each element is read once);
* ``maxSharedMemory`` bounds the promoted bytes, ``sharedDepth`` moves the point (and
  so the boxes);
* a tensor with an indirect (data-dependent) subscript is never promoted;
* a tensor written below the point is copied back only when the block writes its
  whole box there.
"""

from __future__ import annotations

import re

import islpy as isl
import pytest
import torch
from kernel_checks import assert_same, structure_problems

import tc
from codegen import kernel as k
from codegen.compiler import CompiledProgram, compile_program
from polyhedral.dependences import compute_dependences
from polyhedral.intra_tile import reschedule_tiles
from polyhedral.mapping import map_to_gpu
from polyhedral.promotion import DEFAULT_SHARED_LIMIT, SharedPlan, promote_shared
from polyhedral.schedule import compute_schedule, tile_schedule
from polyhedral.scop import build_scop
from tc.catalogue import KERNELS
from tc.ir import nodes as ir
from tc.options import MappingOptions

MATMUL = "def matmul(float(M, K) A, float(K, N) B) -> (C) { C(m, n) +=! A(m, k) * B(k, n) }"
# Under Max fusion, one kernel: T written by thread (i, j), then read along a row.
ROWSUM = """
def rowsum(float(N, M) A) -> (T, O) {
    T(i, j) = A(i, j) * 2.0
    O(i) +=! T(i, j)
}
"""
# Under Max fusion, one kernel: C(i) reads B(i + 1), written by the next thread.
NEIGHBOUR = """
def neighbour(float(N) A) -> (B, C) {
    B(i) = A(i) * 2.0
    C(i) = B(i) + B(i + 1) where i in 0:N-1
}
"""
SHARED_NAME = re.compile(r"sh(\d+)_(.+)")


def _shared_on() -> MappingOptions:
    return MappingOptions("naive").useSharedMemory(True)


def _max_fusion() -> MappingOptions:
    return _shared_on().outerScheduleFusionStrategy("Max")


def _entry(text: str, entry: str):
    return tc.define(text, backend="reference")[entry]


def _program(text: str, entry: str, options: MappingOptions,
             *inputs: torch.Tensor) -> CompiledProgram:
    fn = _entry(text, entry)
    call = fn.bind(*inputs)
    return compile_program(fn.ir, options, call.sizes, [t.stride() for t in call.inputs])


def _catalogue(name: str, options: MappingOptions) -> CompiledProgram:
    kernel = KERNELS[name]
    inputs = kernel.make_inputs(kernel.test_sizes[0], torch.Generator().manual_seed(0))
    return _program(kernel.tc, kernel.entry, options, *inputs)


def _shared(program: CompiledProgram) -> dict[str, tuple[int, ...]]:
    """Every shared buffer of the program's kernels -> its shape."""
    out = {}
    for ck in program.kernels:
        for b in ck.kernel.buffers:
            if b.space == "shared":
                assert b.name not in out, f"{b.name} declared by two kernels"
                out[b.name] = tuple(s.value for s in b.shape)
    return out


def _promoted_tensors(program: CompiledProgram) -> set[str]:
    return {SHARED_NAME.fullmatch(name).group(2) for name in _shared(program)}


def _marks(program: CompiledProgram) -> list[tuple[str, int, list[str], list[str]]]:
    """The ``shared.N`` marks of the mapped schedule: (name, schedule depth, the marks
    above it, the marks below it)."""
    out = []

    def below(node: isl.ScheduleNode) -> list[str]:
        names = []
        if node.get_type() == isl.schedule_node_type.mark:
            names.append(node.mark_get_id().get_name())
        for i in range(node.n_children()):
            names += below(node.child(i))
        return names

    def walk(node: isl.ScheduleNode, above: list[str]) -> None:
        if node.get_type() == isl.schedule_node_type.mark:
            name = node.mark_get_id().get_name()
            if name.startswith("shared."):
                out.append((name, node.get_schedule_depth(), above, below(node.child(0))))
            above = [*above, name]
        for i in range(node.n_children()):
            walk(node.child(i), above)

    walk(program.mapped.schedule.get_root(), [])
    return out


def _copy_outs(kern: k.Kernel) -> list[k.Store]:
    """The stores of a shared buffer's elements back to the global buffer of the same
    tensor (``t_X[...] = shN_X[...]``)."""
    shared = {b.name for b in kern.buffers if b.space == "shared"}
    out = []
    for s in k.walk_stmts(kern.body):
        if (isinstance(s, k.Store) and isinstance(s.value, ir.Read)
                and s.value.tensor in shared
                and s.buffer == f"t_{SHARED_NAME.fullmatch(s.value.tensor).group(2)}"):
            out.append(s)
    return out


def _plans(text: str, entry: str, options: MappingOptions, *inputs: torch.Tensor,
           limit: int = DEFAULT_SHARED_LIMIT) -> dict[str, SharedPlan]:
    """:func:`promote_shared` on the mapped schedule of the compiler's pipeline."""
    fn = _entry(text, entry)
    call = fn.bind(*inputs)
    scop = build_scop(fn.ir, None)
    deps = compute_dependences(scop)
    schedule = compute_schedule(scop, deps, options)
    tiled = reschedule_tiles(scop, deps, tile_schedule(schedule, options.tile_sizes), options)
    names = ", ".join(scop.param_ids.values())
    fixed = " and ".join(f"{p} = {call.sizes[n]}" for n, p in scop.param_ids.items())
    context = isl.Set.read_from_str(scop.context.get_ctx(), f"[{names}] -> {{ : {fixed} }}")
    mapped = map_to_gpu(scop, deps, tiled, options, context)
    _, plans = promote_shared(mapped, call.sizes, context, limit, options.shared_depth)
    return plans


def _value_at(pa: isl.PwAff, point: str, sizes: dict[str, int]) -> int:
    """``pa`` (a function of the prefix schedule) at one prefix point, sizes fixed."""
    names = ", ".join(sizes)
    fixed = " and ".join(f"{n} = {v}" for n, v in sizes.items())
    m = isl.Map.from_pw_aff(pa)
    at = isl.Set.read_from_str(m.get_ctx(), f"[{names}] -> {{ {point} : {fixed} }}")
    image = m.intersect_domain(at.align_params(m.get_space())).range()
    assert image.is_singleton(), f"{pa} at {point}: {image}"
    return int(image.sample_point().get_coordinate_val(isl.dim_type.set, 0).to_python())


# -- matmul ----------------------------------------------------------------------------------


def test_matmul_promotes_both_operands_but_not_the_output() -> None:
    a, b = torch.randn(64, 64), torch.randn(64, 64)
    program = _program(MATMUL, "matmul", _shared_on(), a, b)
    assert _shared(program) == {"sh0_A": (32, 32), "sh0_B": (32, 32)}
    # One point per kernel, below the block-mapped bands (m tile, n tile) and the
    # sequential k tile, above the thread-mapped ones.
    [(name, depth, above, below)] = _marks(program)
    assert name == "shared.0" and depth == 3
    assert {"block.x", "block.y"} <= set(above) and not any(m.startswith("thread.") for m in above)
    assert {"thread.x", "thread.y"} <= set(below)
    # The update reads the tiles from shared memory: global A and B are read only by
    # the copies, and C never goes through shared memory.
    (ck,) = program.kernels
    for s in k.walk_stmts(ck.kernel.body):
        if isinstance(s, k.Store):
            for r in ir.walk(s.value):
                if isinstance(r, ir.Read) and r.tensor in ("t_A", "t_B"):
                    assert s.buffer == f"sh0_{r.tensor[2:]}", f"{s.buffer} reads {r.tensor}"
    assert "__shared__ float sh0_A[1024];" in ck.cuda_source
    assert "__shared__ float sh0_B[1024];" in ck.cuda_source
    assert "sh0_C" not in ck.cuda_source
    assert "__local float sh0_A[1024];" in ck.opencl_source


def test_without_the_option_nothing_is_promoted() -> None:
    a, b = torch.randn(64, 64), torch.randn(64, 64)
    program = _program(MATMUL, "matmul", MappingOptions("naive"), a, b)
    assert _shared(program) == {} and _marks(program) == []
    assert "__shared__" not in program.kernels[0].cuda_source


def test_a_box_never_exceeds_the_tensor() -> None:
    """3x5 @ 5x7 fits one tile: the boxes are the whole operands, not 32x32."""
    program = _program(MATMUL, "matmul", _shared_on(), torch.randn(3, 5), torch.randn(5, 7))
    assert _shared(program) == {"sh0_A": (3, 5), "sh0_B": (5, 7)}


def test_matmul_plan() -> None:
    """The plan's fields: what is copied in and out, by which statements, and the
    box offsets as functions of the tile loops (m tile, n tile, k tile)."""
    plans = _plans(MATMUL, "matmul", MappingOptions("naive"), torch.randn(64, 96),
                   torch.randn(96, 128))
    (plan,) = plans.values()
    assert plan.mark == "shared.0" and plan.depth == 3
    assert plan.statements == {"S0", "S0_init"}
    tensors = {p.tensor: p for p in plan.tensors}
    assert set(tensors) == {"A", "B"}
    a, b = tensors["A"], tensors["B"]
    assert (a.buffer, a.sizes, a.elements) == ("sh0_A", (32, 32), 1024)
    assert a.copy_in and not a.copy_out and b.copy_in and not b.copy_out
    assert a.readers == b.readers == {"S0"} and a.writers == b.writers == frozenset()
    sizes = {"M": 64, "K": 96, "N": 128}
    # tile (m, n, k) = (1, 3, 2): A's box starts at (32, 64), B's at (64, 96)
    assert [_value_at(off, "[1, 3, 2]", sizes) for off in a.offsets] == [32, 64]
    assert [_value_at(off, "[1, 3, 2]", sizes) for off in b.offsets] == [64, 96]


# -- nothing to reuse --------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "entry", "shapes"), [
    ("def add(float(N, M) A, float(N, M) B) -> (O) { O(i, j) = A(i, j) + B(i, j) }", "add",
     [(40, 50), (40, 50)]),
    ("def scale(float(N) A) -> (O) { O(i) = A(i) * 2.0 }", "scale", [(1000,)]),
])
def test_an_elementwise_kernel_promotes_nothing(text: str, entry: str,
                                                shapes: list[tuple[int, ...]]) -> None:
    program = _program(text, entry, _shared_on(), *[torch.randn(s) for s in shapes])
    assert _shared(program) == {} and _marks(program) == []


def test_catalogue_copies_promote_nothing() -> None:
    assert _shared(_catalogue("copy3d", _shared_on())) == {}
    assert _shared(_catalogue("copy4d", _shared_on())) == {}


def test_a_broadcast_operand_is_promoted_and_the_elementwise_one_is_not() -> None:
    """b(j) is read by every thread row (thread.y runs over i): reused; A is not."""
    text = "def bias(float(N, M) A, float(M) b) -> (O) { O(i, j) = A(i, j) + b(j) }"
    program = _program(text, "bias", _shared_on(), torch.randn(40, 50), torch.randn(50))
    assert _shared(program) == {"sh0_b": (32,)}


# -- the limit ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("limit", "count"), [
    (0, 0), (4095, 0), (4096, 1), (8191, 1), (8192, 2), (None, 2), (1 << 20, 2)])
def test_max_shared_memory_bounds_the_promoted_bytes(limit: int | None, count: int) -> None:
    """Each operand's tile is 32x32 floats = 4096 bytes."""
    a, b = torch.randn(512, 512), torch.randn(512, 512)
    program = _program(MATMUL, "matmul", _shared_on().maxSharedMemory(limit), a, b)
    shared = _shared(program)
    assert len(shared) == count, shared
    assert set(shared) <= {"sh0_A", "sh0_B"}
    assert all(shape == (32, 32) for shape in shared.values())
    assert len(_marks(program)) == (1 if count else 0)
    assert program.kernels[0].cuda_source.count("__shared__") == count


def test_the_limit_counts_bytes_of_the_element_type() -> None:
    """A 32x32 tile of halves is 2048 bytes: both fit in 4096, one float tile only."""
    text = MATMUL.replace("float", "half")
    options = _shared_on().maxSharedMemory(4096)
    a, b = torch.randn(64, 64), torch.randn(64, 64)
    halves = _program(text, "matmul", options, a.half(), b.half())
    assert _shared(halves) == {"sh0_A": (32, 32), "sh0_B": (32, 32)}
    assert len(_shared(_program(MATMUL, "matmul", options, a, b))) == 1
    doubles = _program(MATMUL.replace("float", "double"), "matmul", options, a.double(),
                       b.double())
    assert len(_shared(doubles)) == 0  # 8192 bytes each


# -- the depth ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("depth", "mark_depth", "a_box", "b_box"), [
    (0, 3, (32, 32), (32, 32)),   # the default: one tile of m, n and k
    (3, 3, (32, 32), (32, 32)),   # the deepest point is at depth 3
    (6, 3, (32, 32), (32, 32)),   # deeper than any point: the deepest
    (2, 2, (32, 64), (64, 32)),   # above the k tile loop: all of k
    (1, 2, (32, 64), (64, 32)),   # above every point: the shallowest (k tile loop)
])
def test_shared_depth_moves_the_promotion_point(depth: int, mark_depth: int,
                                                a_box: tuple[int, int],
                                                b_box: tuple[int, int]) -> None:
    a, b = torch.randn(64, 64), torch.randn(64, 64)
    program = _program(MATMUL, "matmul", _shared_on().sharedDepth(depth), a, b)
    [(_, got_depth, _, _)] = _marks(program)
    assert got_depth == mark_depth
    assert _shared(program) == {"sh0_A": a_box, "sh0_B": b_box}


def test_a_shallow_point_whose_boxes_exceed_the_limit_promotes_nothing() -> None:
    """At 512, the whole k range of one operand is 32x512 floats = 64 KiB > 48 KiB."""
    a, b = torch.randn(512, 512), torch.randn(512, 512)
    program = _program(MATMUL, "matmul", _shared_on().sharedDepth(2), a, b)
    assert _shared(program) == {}
    roomy = _shared_on().sharedDepth(2).maxSharedMemory(2 * 32 * 512 * 4)
    program = _program(MATMUL, "matmul", roomy, a, b)
    assert _shared(program) == {"sh0_A": (32, 512), "sh0_B": (512, 32)}


# -- indirect reads -----------------------------------------------------------------------------


def test_an_indirectly_read_tensor_is_not_promoted() -> None:
    """embedding_sum: O(b, d) +=! T(I(b, l), d). T's rows are picked by data: no
    footprint; the index tensor I itself is read affinely by all the d threads."""
    program = _catalogue("embedding_sum", _shared_on())
    promoted = _promoted_tensors(program)
    assert "T" not in promoted
    assert "I" in promoted


def test_a_tensor_with_any_indirect_read_is_not_promoted() -> None:
    """cross_entropy reads X(n, c) affinely and X(n, label(n)) indirectly;
    cross_entropy_mean reads logp(n, label(n)) only indirectly."""
    assert "X" not in _promoted_tensors(_catalogue("cross_entropy", _shared_on()))
    assert "logp" not in _promoted_tensors(_catalogue("cross_entropy_mean", _shared_on()))


# -- written tensors ---------------------------------------------------------------------------


def test_a_written_tensor_is_copied_in_and_back() -> None:
    """rowsum under Max fusion: T (written by S0, read by other threads in S1) and O
    (accumulated by S1) are promoted with their whole tile written by the block."""
    plans = _plans(ROWSUM, "rowsum", MappingOptions("naive").outerScheduleFusionStrategy("Max"),
                   torch.randn(40, 70))
    (plan,) = plans.values()
    tensors = {p.tensor: p for p in plan.tensors}
    assert set(tensors) == {"T", "O"}
    t, o = tensors["T"], tensors["O"]
    assert t.sizes == (32, 32) and o.sizes == (32,)
    assert t.copy_out and t.writers == {"S0"} and "S1" in t.readers
    assert o.copy_out and o.writers == {"S1", "S1_init"}
    program = _program(ROWSUM, "rowsum", _max_fusion(), torch.randn(40, 70))
    (ck,) = program.kernels
    assert {s.buffer for s in _copy_outs(ck.kernel)} == {"t_T", "t_O"}


@pytest.mark.parametrize(("n", "promoted"), [(20, True), (40, False), (70, False)])
def test_a_written_tensor_is_copied_back_only_when_the_block_writes_its_whole_box(
        n: int, promoted: bool) -> None:
    """neighbour under Max fusion: the tile of C(i) needs B(i .. i + 1) one element
    past the B(i) the tile writes, except when one tile covers the whole tensor. With
    several tiles, a copy back of the 33-element box would overwrite the element
    that the next block owns: B must then stay in global memory."""
    program = _program(NEIGHBOUR, "neighbour", _max_fusion(), torch.randn(n))
    assert len(program.kernels) == 1
    copies = _copy_outs(program.kernels[0].kernel)
    if promoted:
        assert _shared(program) == {"sh0_B": (n,)}
        assert [s.buffer for s in copies] == ["t_B"]
    else:
        assert "B" not in _promoted_tensors(program)
        assert copies == []


def test_a_copied_back_tensor_gives_the_interpreters_result() -> None:
    """With fixed parameters, one tile covers the 20 elements of B: its whole box is
    promoted and copied back (as the per-shape case above)."""
    a = torch.randn(20)
    want = _entry(NEIGHBOUR, "neighbour")(a)
    options = _max_fusion().fixParametersBeforeScheduling(True)
    executor = tc.compile(NEIGHBOUR, "neighbour", options, a, backend="opencl")
    assert not executor.program.symbolic
    assert _shared(executor.program) == {"sh0_B": (20,)}
    copies = _copy_outs(executor.program.kernels[0].kernel)
    assert copies and {s.buffer for s in copies} == {"t_B"}, "B is not copied back any more"
    assert_same(executor(a), want, what="neighbour")
    assert structure_problems(executor.program) == []


def test_with_symbolic_sizes_a_box_of_the_whole_tensor_is_not_promoted() -> None:
    """Symbolic sizes: whether one tile covers B depends on N, and B's box (a tile and
    one element past it) is only safe to copy back when it does; B stays in global
    memory, and the one kernel gives the interpreter's results at every size."""
    executor = tc.compile(NEIGHBOUR, "neighbour", _max_fusion(), torch.randn(20),
                          backend="opencl")
    assert executor.program.symbolic
    assert len(executor.program.kernels) == 1
    assert "B" not in _promoted_tensors(executor.program)
    assert _copy_outs(executor.program.kernels[0].kernel) == []
    assert structure_problems(executor.program) == []
    for n in (20, 2, 33, 64, 70):
        a = torch.randn(n)
        assert_same(executor(a), _entry(NEIGHBOUR, "neighbour")(a), what=f"neighbour N={n}")


COPY_OUT_KERNELS = ("softmax", "layer_norm", "mlp3", "group_norm", "fc_relu_backward",
                    "fc_relu_db")


def test_every_copy_back_writes_a_tensor_that_its_kernel_writes() -> None:
    """Over kernels with temporaries, fused with Max (so that a written tensor is
    reused in its kernel): every copy back stores to a tensor written by the
    statements the copy stands for, and a shared buffer is copied back at most once
    per promotion point."""
    seen = 0
    for name in COPY_OUT_KERNELS:
        for options in (_shared_on(), _max_fusion()):
            program = _catalogue(name, options)
            scop = program.mapped.scop
            for ck in program.kernels:
                for s in _copy_outs(ck.kernel):
                    seen += 1
                    tensor = s.buffer.removeprefix("t_")
                    # "copy:S0|copy:S0_init": the copy of statements S0 and S0_init
                    writers = [o.removeprefix("copy:") for o in s.origin.split("|")]
                    assert writers and all(scop.statement(w).write.tensor == tensor
                                           for w in writers), (name, s.buffer, s.origin)
    assert seen > 0, "no kernel copies anything back: the test checks nothing"


def test_a_written_scalar_does_not_crash_the_promotion() -> None:
    """m +=! l(n) / N fused with l(n) +=! X(n, c): the scalar m is written by every
    thread. Its box has no dimension (a regression: the copy-back check indexed
    offsets[0])."""
    text = "def m4(float(N, C) X) -> (l, m) { l(n) +=! X(n, c)\n m +=! l(n) / N }"
    x = torch.randn(3, 7)
    program = _program(text, "m4", _max_fusion(), x)
    assert structure_problems(program) == []
    got = tc.compile(text, "m4", _max_fusion(), x, backend="opencl")(x)
    want = tc.define(text, backend="reference").m4(x)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)
