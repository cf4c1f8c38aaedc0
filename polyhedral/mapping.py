"""Mapping a tiled schedule tree to GPU kernels, blocks and threads.

The tree is split into kernels: every subtree below the root's sequences and sets
(one per statement group that isl did not fuse) becomes one kernel, since only a
kernel boundary can order work done by different blocks. In each kernel:

* the leading members of the outermost band that no dependence crosses (coincident
  with respect to *all* dependences, reductions included) map to blocks, at most
  three and at most as many as ``mapToBlocks`` gives (outermost to ``x``);
* below, on every path, the first band with coincident members maps them to
  threads, innermost to ``x``, at most as many as ``mapToThreads`` gives;
* everything else runs sequentially in each thread.

Each mapped member is split into a band of its own, with a mark ``block.x`` /
``thread.y`` / ... above it and the ``atomic`` loop type, so that isl emits at most
one loop for it; ``kernel.N`` marks each kernel's root. isl generates the loops
without knowing the hardware ids; ``codegen.lower`` turns the marked loops into
wrap-around loops over the ids (so any grid covers any domain), guards statements
no marked loop distributes, and places barriers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import islpy as isl

from polyhedral.dependences import Dependences
from polyhedral.schedule import band_coincidence, statement_names
from polyhedral.scop import Scop
from tc.options import MappingOptions

AXES = ("x", "y", "z")
_T = isl.schedule_node_type


@dataclass(frozen=True)
class KernelMapping:
    """One kernel: its statements and launch configuration (grid in blocks)."""

    index: int
    statements: tuple[str, ...]
    grid: tuple[int, int, int]
    block: tuple[int, int, int]
    # Symbolic sizes (``map_to_gpu(symbolic=True)``): per block-mapped axis, the number
    # of values its member takes as a function of the parameters (None: unknown), so
    # that the host can launch no more blocks than a call needs; ``grid`` is then an
    # upper bound valid for every size (see :func:`member_bounds`).
    grid_spans: tuple[isl.PwAff | None, ...] = ()


@dataclass(frozen=True, eq=False)
class MappedSchedule:
    """A schedule tree with kernel and hardware-mapping marks."""

    scop: Scop
    schedule: isl.Schedule
    kernels: tuple[KernelMapping, ...]

    def __str__(self) -> str:
        lines = [f"kernel {m.index}: grid {m.grid}, block {m.block}, statements "
                 f"{', '.join(m.statements)}" for m in self.kernels]
        return "\n".join(lines + [str(self.schedule)])


def constant_members(node: isl.ScheduleNode) -> tuple[bool, ...]:
    """For each member of a band: does it take a single value (an untiled member's
    constant tile coordinate, or a dimension of extent 1)? Such a loop is degenerate:
    mapping it would leave all but one block or thread idle."""
    mupa = node.band_get_partial_schedule()
    out = []
    for i in range(node.band_n_member()):
        values = isl.UnionMap.from_union_pw_aff(mupa.get_at(i)).intersect_domain(
            node.get_domain()).range()
        out.append(values.is_empty() or isl.Set.from_union_set(values).is_singleton())
    return tuple(out)


def member_spans(node: isl.ScheduleNode, context: isl.Set | None) -> tuple[int | None, ...]:
    """For each member of a band: how many consecutive values it spans (max - min + 1)
    with the parameters fixed by ``context``; None when unbounded or unknown."""
    if context is None:
        return (None,) * node.band_n_member()
    mupa = node.band_get_partial_schedule()
    out: list[int | None] = []
    for i in range(node.band_n_member()):
        values = isl.UnionMap.from_union_pw_aff(mupa.get_at(i)).intersect_domain(
            node.get_domain()).range()
        if values.is_empty():
            out.append(1)
            continue
        v = isl.Set.from_union_set(values)
        v = v.intersect_params(context.align_params(v.get_space()))
        if v.is_empty():
            out.append(1)
            continue
        if not v.is_bounded():
            out.append(None)
            continue
        lo, hi = v.lexmin(), v.lexmax()
        if not (lo.is_singleton() and hi.is_singleton()):
            out.append(None)
            continue
        a = lo.sample_point().get_coordinate_val(isl.dim_type.set, 0).to_python()
        b = hi.sample_point().get_coordinate_val(isl.dim_type.set, 0).to_python()
        out.append(int(b) - int(a) + 1)
    return tuple(out)


def _member_values(node: isl.ScheduleNode, i: int, context: isl.Set) -> isl.Set | None:
    """The values member ``i`` of a band takes (parameters constrained by ``context``);
    None when it takes none."""
    mupa = node.band_get_partial_schedule()
    values = isl.UnionMap.from_union_pw_aff(mupa.get_at(i)).intersect_domain(
        node.get_domain()).range()
    if values.is_empty():
        return None
    v = isl.Set.from_union_set(values)
    v = v.intersect_params(context.align_params(v.get_space()))
    return None if v.is_empty() else v


def member_bounds(node: isl.ScheduleNode, context: isl.Set) -> tuple[int | None, ...]:
    """For each member of a band: a constant bound on its span (max - min + 1) that
    holds for every value of the parameters allowed by ``context`` (a tile's point
    loop: the tile size); None when the span grows with the sizes.

    A kernel compiled for every size may clip its block to such a bound only: the
    block size is baked into the kernel (shared copies, barriers, thread placement)."""
    out: list[int | None] = []
    for i in range(node.band_n_member()):
        v = _member_values(node, i, context)
        if v is None:
            out.append(1)
            continue
        # Differences of two values taken for the same parameters, over all of them.
        deltas = isl.Map.from_domain_and_range(v, v).deltas()
        deltas = deltas.project_out(isl.dim_type.param, 0, deltas.dim(isl.dim_type.param))
        if not deltas.is_bounded():
            out.append(None)
            continue
        top = deltas.lexmax()
        if not top.is_singleton():
            out.append(None)
            continue
        out.append(int(top.sample_point().get_coordinate_val(isl.dim_type.set, 0)
                       .to_python()) + 1)
    return tuple(out)


def member_span_functions(node: isl.ScheduleNode, context: isl.Set
                          ) -> tuple[isl.PwAff | None, ...]:
    """For each member of a band: its span (max - min + 1) as a piecewise quasi-affine
    function of the parameters (None when isl gives none)."""
    out: list[isl.PwAff | None] = []
    for i in range(node.band_n_member()):
        v = _member_values(node, i, context)
        if v is None:
            out.append(None)
            continue
        try:
            span = v.dim_max(0).sub(v.dim_min(0)).add_constant_val(
                isl.Val.one(v.get_ctx())).coalesce()
        except isl.Error:
            span = None
        out.append(span)
    return tuple(out)


def each_kernel(node: isl.ScheduleNode,
                kernel: Callable[[isl.ScheduleNode], isl.ScheduleNode]) -> isl.ScheduleNode:
    """``kernel`` applied to each kernel's subtree: the first band (or leaf) on every
    path down through the root's sequences, sets, filters and marks. Returns the node
    at ``node``'s position (every mapping strategy splits kernels this way)."""
    t = node.get_type()
    if t == _T.band and node.band_n_member() > 0 or t == _T.leaf:
        return kernel(node)
    for i in range(node.n_children()):
        node = each_kernel(node.child(i), kernel).parent()
    return node


def _tight(limit: int, span: int | None) -> int:
    """A grid or block size: the option's, but no more than the values to cover."""
    return limit if span is None else max(1, min(limit, span))


def _pad(sizes: list[int]) -> tuple[int, int, int]:
    out = list(sizes) + [1] * (3 - len(sizes))
    return out[0], out[1], out[2]


class _Mapper:
    def __init__(self, deps: Dependences, options: MappingOptions,
                 context: isl.Set | None = None, symbolic: bool = False) -> None:
        self.deps = deps.validity
        self.context = context
        self.symbolic = symbolic and context is not None
        self.thread_spans: dict[int, int | None] = {}
        self.blocks = tuple(options.blocks)
        self.threads = tuple(options.threads)
        self.unroll = options.unroll_factor
        self.kernels: list[KernelMapping] = []
        self.thread_axes: set[int] = set()

    def spans(self, node: isl.ScheduleNode) -> tuple[int | None, ...]:
        """The spans that bound grid, block and unrolling: this call's (the context
        fixes the sizes), or bounds valid for every size (symbolic sizes)."""
        if self.symbolic:
            return member_bounds(node, self.context)
        return member_spans(node, self.context)

    # -- kernels ---------------------------------------------------------------------------
    def visit(self, node: isl.ScheduleNode) -> isl.ScheduleNode:
        return each_kernel(node, self.kernel)

    def kernel(self, node: isl.ScheduleNode) -> isl.ScheduleNode:
        index = len(self.kernels)
        stmts = statement_names(node.get_domain())
        self.thread_axes = set()
        self.thread_spans = {}
        spans: tuple[int | None, ...] = ()
        chosen: list[int] = []  # band members mapped to blocks x, y, z
        depth = 0  # how many leading members the block mapping spans
        if node.get_type() == _T.band:
            flags = band_coincidence(node, self.deps)
            const = constant_members(node)
            spans = self.spans(node)
            if self.symbolic:  # before the mapping splits the band
                functions = member_span_functions(node, self.context)
            while depth < len(flags) and (flags[depth] or const[depth]):
                if len(chosen) == min(3, len(self.blocks)):
                    break
                if not const[depth]:
                    chosen.append(depth)
                depth += 1
        if chosen:
            axes = {m: j for j, m in enumerate(chosen)}
            node = self.map_blocks(node, 0, chosen[-1] + 1, axes)
        else:
            node = self.map_threads(node)
        grid = _pad([_tight(self.blocks[j], spans[m]) for j, m in enumerate(chosen)])
        used = max(self.thread_axes) + 1 if self.thread_axes else 0
        block = _pad([_tight(self.threads[j], self.thread_spans.get(j)) if j in self.thread_axes
                      else 1 for j in range(used)])
        grid_spans: tuple[isl.PwAff | None, ...] = ()
        if self.symbolic and chosen:
            grid_spans = tuple(functions[m] for m in chosen)
        self.kernels.append(KernelMapping(index, stmts, grid, block, grid_spans))
        return node.insert_mark(isl.Id(f"kernel.{index}", context=node.get_ctx()))

    # -- blocks ------------------------------------------------------------------------------
    def map_blocks(self, node: isl.ScheduleNode, j: int, n: int,
                   axes: dict[int, int]) -> isl.ScheduleNode:
        """Split the first ``n`` members into single bands, marking those in ``axes``."""
        if j == n:
            return self.map_threads(node)
        if node.band_n_member() > 1:
            node = node.band_split(1)
        if j in axes:
            node = node.band_member_set_ast_loop_type(0, isl.ast_loop_type.atomic)
        node = self.map_blocks(node.child(0), j + 1, n, axes).parent()
        if j not in axes:
            return node
        return node.insert_mark(isl.Id(f"block.{AXES[axes[j]]}", context=node.get_ctx()))

    # -- threads -----------------------------------------------------------------------------
    def thread_flags(self, node: isl.ScheduleNode) -> list[bool]:
        """The members of a band that threads may run in parallel (coincident, and not
        a degenerate single-valued loop)."""
        const = constant_members(node)
        return [c and not k for c, k in zip(band_coincidence(node, self.deps), const,
                                            strict=True)]

    def map_threads(self, node: isl.ScheduleNode) -> isl.ScheduleNode:
        """Map threads on the innermost band with parallel members along the chain of
        nested bands starting at ``node`` (for a tiled band, its point band); with none,
        in each branch of the sequence or set that ends the chain."""
        depth, best = 0, None
        n = node
        while True:
            t = n.get_type()
            if t == _T.band and n.band_n_member() > 0:
                flags = self.thread_flags(n)
                if any(flags) and self.threads:
                    best = (depth, flags)
            elif t not in (_T.band, _T.mark, _T.filter):
                break
            if n.n_children() != 1:
                break
            n = n.child(0)
            depth += 1
        if best is None:
            for i in range(n.n_children()):
                n = self.map_threads(n.child(i)).parent()
        else:
            n = node
            for _ in range(best[0]):
                n = n.child(0)
            flags = best[1]
            inner_first = [i for i in reversed(range(len(flags))) if flags[i]]
            chosen = {m: a for a, m in enumerate(inner_first[: min(3, len(self.threads))])}
            self.thread_axes |= set(chosen.values())
            spans_n = self.spans(n)
            for m, a in chosen.items():
                # Several thread bands of one kernel share the block: keep the largest.
                old = self.thread_spans.get(a, 0)
                self.thread_spans[a] = None if old is None or spans_n[m] is None else max(
                    old, spans_n[m])
            last = max(chosen)
            unroll = {m for m in range(last + 1, len(flags))
                      if spans_n[m] is not None and 1 < spans_n[m] <= self.unroll}
            n = self.split_threads(n, 0, len(flags), chosen, unroll)
            depth = best[0]
        for _ in range(depth):
            n = n.parent()
        return n

    def split_threads(self, node: isl.ScheduleNode, pos: int, n: int,
                      chosen: dict[int, int], unroll: set[int]) -> isl.ScheduleNode:
        """Split the band into single members from ``pos`` on: marks on those in
        ``chosen``; isl unrolls those in ``unroll`` (sequential, inside every thread
        loop, with at most ``unroll`` values)."""
        if node.band_n_member() > 1:
            node = node.band_split(1)
        if pos in chosen:
            node = node.band_member_set_ast_loop_type(0, isl.ast_loop_type.atomic)
        elif pos in unroll:
            node = node.band_member_set_ast_loop_type(0, isl.ast_loop_type.unroll)
        if pos + 1 < n:
            node = self.split_threads(node.child(0), pos + 1, n, chosen, unroll).parent()
        if pos in chosen:
            node = node.insert_mark(isl.Id(f"thread.{AXES[chosen[pos]]}",
                                           context=node.get_ctx()))
        return node


def map_to_gpu(scop: Scop, deps: Dependences, schedule: isl.Schedule,
               options: MappingOptions, context: isl.Set | None = None,
               symbolic: bool = False) -> MappedSchedule:
    """Split ``schedule`` (already tiled) into kernels and map them to blocks/threads.

    With ``context`` fixing the parameters to concrete sizes, grid and block are
    tightened to the values the mapped loops take (the options give upper bounds).
    With ``symbolic`` (``context`` then only constrains the parameters), they are
    tightened to bounds that hold for every size, and each kernel's ``grid_spans``
    gives the blocks a call needs as functions of the sizes."""
    mapper = _Mapper(deps, options, context, symbolic)
    root = mapper.visit(schedule.get_root())
    return MappedSchedule(scop, root.get_schedule(), tuple(mapper.kernels))


def build_ast(mapped: MappedSchedule) -> isl.AstNode:
    """isl's AST of the mapped schedule (loops named ``c0``, ``c1``, ...)."""
    build = isl.AstBuild.from_context(mapped.scop.context)
    return build.node_from_schedule(mapped.schedule)
