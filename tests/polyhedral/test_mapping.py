"""The structure of the GPU mapping: kernels, grids, blocks, barriers.

Compiling needs no device: these tests look at ``executor.kernels`` (launch
configuration) and at the kernel AST that the OpenCL and CUDA printers print. The
static checks of ``kernel_checks`` run on every catalogue kernel under every preset:
no barrier in thread-dependent control flow, only coincident band members distributed
over ids, and every statement run by one id of each axis that does not distribute it.
"""

from __future__ import annotations

import logging

import islpy as isl
import pytest
import torch
from kernel_checks import (
    MappedMember,
    barrier_problems,
    distribution_problems,
    structure_problems,
)

import tc
from codegen import kernel as k
from codegen.compiler import compile_program, make_buffers
from codegen.executor import Executor
from codegen.host import split_program
from codegen.lower import lower_kernel, mark_depths, synchronize_kernel
from codegen.printer import print_kernel
from polyhedral.scop import build_scop
from tc.catalogue import KERNELS
from tc.ir import nodes as ir
from tc.ir.types import INDEX_TYPE, ScalarType
from tc.options import PRESETS, MappingOptions

SOFTMAX = KERNELS["softmax"]
MATMUL = "def matmul(float(M, K) A, float(K, N) B) -> (C) { C(m, n) +=! A(m, k) * B(k, n) }"


def _executor(text: str, entry: str, options: MappingOptions, *inputs: torch.Tensor):
    return tc.compile(text, entry, options, *inputs, backend="opencl")


def _catalogue_inputs(name: str) -> tuple[torch.Tensor, ...]:
    kernel = KERNELS[name]
    return kernel.make_inputs(kernel.test_sizes[0], torch.Generator().manual_seed(0))


# -- launch configurations --------------------------------------------------------------------

def _one_shape_executor(text: str, entry: str, options: MappingOptions, how: str,
                        *inputs: torch.Tensor) -> Executor:
    """An executor for the shape of ``inputs`` only: with fixed parameters ("fixed"), or
    scheduled with symbolic parameters under a context fixing them to these sizes
    ("per_shape", ``compile_program(symbolic=False)``)."""
    if how == "fixed":
        return _executor(text, entry, options.fixParametersBeforeScheduling(True), *inputs)
    fn = tc.define(text)[entry]
    call = fn.bind(*inputs)
    program = compile_program(fn.ir, options, call.sizes, [t.stride() for t in call.inputs])
    return Executor(program, "opencl", call.signature())


@pytest.mark.parametrize("how", ["fixed", "per_shape"])
@pytest.mark.parametrize(("m", "r", "n"), [(3, 5, 7), (64, 64, 64), (1, 1, 1)])
def test_matmul_naive_is_one_kernel_with_grid_and_block_tightened_to_the_domain(
        m: int, r: int, n: int, how: str) -> None:
    """naive compiled for one shape: 32x32 tiles, blocks (256, 256), threads (32, 8);
    the launch covers the tiles and tile points that exist, no more."""
    a, b = torch.randn(m, r), torch.randn(r, n)
    ex = _one_shape_executor(MATMUL, "matmul", MappingOptions("naive"), how, a, b)
    assert not ex.program.symbolic
    # With fixed parameters, a single instance (1x1x1) gives the scheduler no loop to
    # fuse the init and the update over: two kernels, each launched on one thread.
    assert len(ex.kernels) == (2 if how == "fixed" and m * r * n == 1 else 1)
    tiles_m, tiles_n = -(-m // 32), -(-n // 32)
    for info in ex.kernels:
        assert info.grid == (min(256, tiles_m), min(256, tiles_n), 1)
        assert info.block == (min(32, n), min(8, m), 1)
    # the reduction is not distributed: k is a sequential loop, m and n are mapped
    torch.testing.assert_close(ex(a, b), a @ b, rtol=1e-4, atol=1e-5)


def _launched(caplog: pytest.LogCaptureFixture) -> list[tuple[tuple[int, ...], ...]]:
    """(grid, block) of each launch the executor logged."""
    out = []
    for rec in caplog.records:
        if rec.name == "codegen.executor" and rec.msg.startswith("launch "):
            _, grid, block = rec.args
            out.append((tuple(grid), tuple(block)))
    return out


@pytest.mark.parametrize(("m", "r", "n"), [(3, 5, 7), (1, 1, 1)])
def test_symbolic_matmul_naive_keeps_its_block_and_clips_the_grid_per_call(
        m: int, r: int, n: int, caplog: pytest.LogCaptureFixture) -> None:
    """naive with symbolic sizes: one kernel for every size of the call's class, whose
    block comes from the options' threads (bounded by the 32x32 tiles at every size),
    never from the call it was compiled for; the host clips the grid to the tiles of
    each call, up to the options' (256, 256) blocks."""
    a, b = torch.randn(m, r), torch.randn(r, n)
    ex = _executor(MATMUL, "matmul", MappingOptions("naive"), a, b)
    assert ex.program.symbolic
    assert len(ex.kernels) == 1
    assert ex.kernels[0].block == (32, 8, 1)
    # Shown with the launch of the call compiled for.
    assert ex.kernels[0].grid == (-(-m // 32), -(-n // 32), 1)
    # Calls of the same class (a dimension of 1 has no unit stride: another class).
    calls = [(m, r, n)] if m * r * n == 1 else [
        (m, r, n), (2, 2, 2), (64, 64, 64), (33, 2, 65), (8200, 2, 3), (3, 2, 8250)]
    for mm, rr, nn in calls:
        a, b = torch.randn(mm, rr), torch.randn(rr, nn)
        caplog.clear()
        with caplog.at_level(logging.DEBUG, logger="codegen.executor"):
            got = ex(a, b)
        torch.testing.assert_close(got, a @ b, rtol=1e-4, atol=1e-5)
        want_grid = (min(256, -(-mm // 32)), min(256, -(-nn // 32)), 1)
        assert _launched(caplog) == [(want_grid, (32, 8, 1))], (mm, rr, nn)


def test_softmax_kernel_count_follows_the_fusion_strategy() -> None:
    inputs = _catalogue_inputs("softmax")
    counts = {}
    for strategy in ("Preserve3Coincident", "Min", "Max"):
        options = MappingOptions("naive").outerScheduleFusionStrategy(strategy)
        ex = _executor(SOFTMAX.tc, SOFTMAX.entry, options, *inputs)
        counts[strategy] = len(ex.kernels)
        want = tc.define(SOFTMAX.tc, backend="reference")[SOFTMAX.entry](*inputs)
        torch.testing.assert_close(ex(*inputs), want)
    assert counts["Preserve3Coincident"] == 4
    assert counts["Min"] > 4
    assert counts["Max"] == 1


def test_scalar_reduction_maps_no_block() -> None:
    text = "def total(float(N) X) -> (s) { s +=! X(i) }"
    x = torch.randn(100)
    ex = _executor(text, "total", MappingOptions("naive"), x)
    assert [info.grid for info in ex.kernels] == [(1, 1, 1)]
    torch.testing.assert_close(ex(x), x.sum(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["matmul", "softmax", "conv2d", "moments", "kru3"])
def test_single_thread_preset_launches_one_thread(name: str) -> None:
    kernel = KERNELS[name]
    ex = _executor(kernel.tc, kernel.entry, MappingOptions("single_thread"),
                   *_catalogue_inputs(name))
    assert ex.kernels
    for info in ex.kernels:
        assert info.grid == (1, 1, 1) and info.block == (1, 1, 1), info.name
        assert "get_group_id" not in info.source and "get_local_id" not in info.source


def test_grid_and_block_follow_the_options() -> None:
    """Mapped axes take the options' sizes (outermost to x) unless the domain is
    smaller; unused ones are 1."""
    a, b = torch.randn(9, 5), torch.randn(5, 11)
    options = MappingOptions("naive").mapToBlocks(7, 3, 5).mapToThreads(5, 3, 7).tile(4, 4, 4)
    ex = _executor(MATMUL, "matmul", options, a, b)
    (info,) = ex.kernels
    assert info.grid == (3, 3, 1)  # two parallel loops: m, n; 3 tiles of 4 each
    assert info.block == (4, 3, 1)  # n's 4 tile points (of 5 threads), m's 3 threads
    big = MappingOptions("naive").mapToBlocks(2, 3).mapToThreads(2, 3).tile(4, 4, 4)
    (info,) = _executor(MATMUL, "matmul", big, a, b).kernels
    assert info.grid == (2, 3, 1) and info.block == (2, 3, 1)
    torch.testing.assert_close(ex(a, b), a @ b, rtol=1e-4, atol=1e-5)


def test_launch_dimensions_never_exceed_the_options() -> None:
    inputs = _catalogue_inputs("group_norm")
    kernel = KERNELS["group_norm"]
    options = MappingOptions("naive").mapToBlocks(3).mapToThreads(2, 5)
    for info in _executor(kernel.tc, kernel.entry, options, *inputs).kernels:
        assert info.grid[1:] == (1, 1) and 1 <= info.grid[0] <= 3
        assert info.block[2] == 1 and 1 <= info.block[0] <= 2 and 1 <= info.block[1] <= 5


# -- barriers -----------------------------------------------------------------------------------

def _barrier_lines(source: str) -> list[int]:
    return [i for i, line in enumerate(source.splitlines()) if "barrier(" in line]


def _thread_dependent_ranges(source: str) -> list[tuple[int, int]]:
    """Line ranges (of the OpenCL text) of loops over local ids and ifs on local ids."""
    lines = source.splitlines()
    out = []
    for i, line in enumerate(lines):
        head = line.strip()
        if head.startswith(("for (", "if (")) and "get_local_id" in head:
            depth = len(line) - len(line.lstrip())
            end = next(j for j in range(i + 1, len(lines))
                       if lines[j].startswith(" " * depth + "}")
                       and len(lines[j]) - len(lines[j].lstrip()) == depth)
            out.append((i, end))
    return out


@pytest.mark.parametrize("preset", PRESETS)
def test_no_barrier_in_thread_dependent_code(preset: str) -> None:
    """On the kernel AST and, independently, on the printed OpenCL text."""
    options = MappingOptions(preset)
    for name, kernel in KERNELS.items():
        inputs = _catalogue_inputs(name)
        entry = tc.define(kernel.tc, backend="reference")[kernel.entry]
        fn, call = entry.ir, entry.bind(*inputs)
        program = compile_program(fn, options, call.sizes, [t.stride() for t in call.inputs])
        for ck in program.kernels:
            assert barrier_problems(ck.kernel) == [], (name, preset)
            source = print_kernel(ck.kernel, "opencl")
            for line in _barrier_lines(source):
                for lo, hi in _thread_dependent_ranges(source):
                    assert not lo < line < hi, (
                        f"{name} ({preset}): barrier at line {line} inside the "
                        f"thread-dependent code of lines {lo}-{hi}:\n{source}")
        assert structure_problems(program) == [], (name, preset)


def test_barrier_check_catches_a_barrier_under_a_thread_loop() -> None:
    """The checker itself: a barrier below a thread-mapped loop or a thread guard."""
    tid, zero = k.hw("thread", "x"), ir.IntImm(0, type=INDEX_TYPE)
    cond = ir.Binary("<", ir.Var("c_c0", "loop", type=INDEX_TYPE), ir.IntImm(8, type=INDEX_TYPE),
                     type=ScalarType.BOOL)

    def kernel(body: k.Stmt) -> k.Kernel:
        return k.Kernel("probe", (), (), body, (1, 1, 1), (8, 1, 1))

    assert barrier_problems(kernel(k.For("c_c0", zero, cond, k.Barrier(), 1, "thread.x")))
    guard = ir.Binary("==", tid, zero, type=ScalarType.BOOL)
    assert barrier_problems(kernel(k.If(guard, k.Barrier())))
    fine = k.seq(k.For("c_c0", zero, cond, k.Comment("work"), 1, "thread.x"), k.Barrier())
    assert barrier_problems(kernel(fine)) == []


def test_a_degenerate_marked_band_leaves_the_loop_below_sequential() -> None:
    """isl emits no loop for a marked band that is single-valued given the outer loops;
    the loop found right below the mark then belongs to a deeper band (here the
    reduction over k) and must not be distributed over the threads (a race)."""
    entry = tc.define("def rows(float(N, K) X) -> (s) { s(n) +=! X(n, k) }",
                      backend="reference").rows
    fn = entry.ir
    scop = build_scop(fn, None)
    ctx = scop.ctx
    updates = scop.domain.intersect(isl.UnionSet.read_from_str(ctx, "[N, K] -> { S0[n, k] }"))
    node = isl.Schedule.from_domain(updates).get_root().child(0)
    for member in ("k", "n", "n"):  # inserted bottom-up: [n] (blocks), [n] (threads), [k]
        mupa = isl.MultiUnionPwAff.read_from_str(ctx, f"[N, K] -> [{{ S0[n, k] -> [({member})] }}]")
        node = node.insert_partial_schedule(mupa)
        node = node.band_member_set_ast_loop_type(0, isl.ast_loop_type.atomic)
    node = node.child(0).insert_mark(isl.Id("thread.x", context=ctx)).parent()
    node = node.insert_mark(isl.Id("block.x", context=ctx))
    node = node.insert_mark(isl.Id("kernel.0", context=ctx))
    ast = isl.AstBuild.from_context(scop.context).node_from_schedule(
        mark_depths(node.get_schedule()))
    params = {isl_name: name for name, isl_name in scop.param_ids.items()}
    _, kernels = split_program(ast, params)
    sizes = {"N": 3, "K": 5}
    kern = lower_kernel(kernels[0], fn, "probe", (4, 1, 1), (8, 1, 1),
                        make_buffers(fn, sizes, [(5, 1)]), params, {"X": (3, 5), "s": (3,)}, [])
    kern = synchronize_kernel(kern, {("S0", "S0")})
    loops = {s.var: s.mapping for s in k.walk_stmts(kern.body) if isinstance(s, k.For)}
    assert loops == {"c_c0": "block.x", "c_c2": None}, print_kernel(kern, "kernel")
    members = [MappedMember(0, "block.x", 0, True), MappedMember(0, "thread.x", 1, True)]
    assert distribution_problems(kern, members) == []
    assert barrier_problems(kern) == []


def test_moments_under_the_mlp_preset() -> None:
    """The case that found the bug above: Max fusion and tile(1) give a thread-marked
    band that is single-valued given the block loop."""
    kernel = KERNELS["moments"]
    inputs = _catalogue_inputs("moments")
    ex = _executor(kernel.tc, kernel.entry, MappingOptions("mlp"), *inputs)
    assert structure_problems(ex.program) == []
    torch.testing.assert_close(ex(*inputs), tuple(
        tc.define(kernel.tc, backend="reference")[kernel.entry](*inputs)))


def test_no_two_barriers_in_a_row() -> None:
    """Found by the random-options test: Max fusion with small tiles gives sequential
    loops whose bodies run thread work; a barrier at the end of each iteration and one
    after the loop (two in a row) made PoCL 3.0 drop the sums (softmax gave inf).
    Barriers go right before thread work that may follow other thread work."""
    options = (MappingOptions("naive").tile(2, 2).mapToThreads(3).mapToBlocks(2)
               .outerScheduleFusionStrategy("Max").fixParametersBeforeScheduling(True))
    x = torch.randn(3, 7, generator=torch.Generator().manual_seed(0))
    ex = _executor(SOFTMAX.tc, SOFTMAX.entry, options, x)
    for ck in ex.program.kernels:
        assert barrier_problems(ck.kernel) == []
        assert ck.opencl_source.count("barrier(") >= 1
    assert structure_problems(ex.program) == []
    torch.testing.assert_close(ex(x), torch.softmax(x, dim=1))


def _barrier_under_if(s: k.Stmt, inside: bool = False) -> bool:
    if isinstance(s, k.Barrier):
        return inside
    if isinstance(s, k.Block):
        return any(_barrier_under_if(c, inside) for c in s.body)
    if isinstance(s, k.For | k.Scope):
        return _barrier_under_if(s.body, inside)
    if isinstance(s, k.If):
        return _barrier_under_if(s.then, True) or (
            s.otherwise is not None and _barrier_under_if(s.otherwise, True))
    return False


def test_the_barrier_before_a_branch_is_hoisted_out_of_it() -> None:
    """Found by the random-options test: kru3 under Max fusion runs its statements on
    thread 0 below isl's uniform ``if``s; with the barrier inside the ``if`` PoCL 3.0
    ran the guarded updates on every work-item (results 256 times too large)."""
    kernel = KERNELS["kru3"]
    sizes = {"M": 3, "N0": 1, "N1": 3, "N2": 5, "D0": 2, "D1": 3, "D2": 5}
    inputs = kernel.make_inputs(sizes, torch.Generator().manual_seed(0))
    options = (MappingOptions("naive").tile(32, 16, 16, 5).mapToThreads(256).mapToBlocks(1, 1)
               .outerScheduleFusionStrategy("Max").fixParametersBeforeScheduling(True))
    ex = _executor(kernel.tc, kernel.entry, options, *inputs)
    for ck in ex.program.kernels:
        assert not _barrier_under_if(ck.kernel.body), print_kernel(ck.kernel, "kernel")
    assert structure_problems(ex.program) == []
    want = tc.define(kernel.tc, backend="reference")[kernel.entry](*inputs)
    torch.testing.assert_close(ex(*inputs), want, rtol=kernel.rtol, atol=kernel.atol)
