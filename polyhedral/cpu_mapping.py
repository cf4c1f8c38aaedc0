"""Mapping a tiled schedule tree to CPU loops: OpenMP parallel loops and SIMD loops.

The CPU strategy of the polyhedral level, a peer of the GPU mapping
(:mod:`polyhedral.mapping`) over the same scheduled, tiled tree. The tree is split
into kernels as for a GPU (each subtree below the root's sequences and sets, so the
host program is the same); in each kernel:

* the first member of the kernel's outermost band that no dependence crosses
  (coincident w.r.t. *all* dependences, reductions included) and that is not
  degenerate becomes an OpenMP parallel loop (mark ``cpu.parallel``); a reduction
  therefore never runs in parallel, so results never depend on the thread count.
  A kernel of fewer than :data:`PARALLEL_MIN_INSTANCES` statement instances stays
  serial;
* with ``cpu_vectorize``, in the innermost band of the chain of nested bands, the
  member that most accesses walk with unit stride runs in SIMD lanes: a member no
  dependence crosses (mark ``cpu.vector``), or one that only reductions cross (mark
  ``cpu.reduce``: the printer makes it ``#pragma omp simd reduction(op: acc)`` when
  the accumulation became a scalar update ``acc = acc op v``, else leaves it
  sequential). When that band is permutable (a tiled band's point band is), the
  member is first moved to the innermost position, so that the vector loop is the
  innermost loop: ``C(m, n) += A(m, k) * B(k, n)`` runs ``m, k, n`` with ``n`` in
  lanes; ``y(b, o) += x(b, i) * W(o, i)`` runs ``b, o, i`` as dot products over ``i``.

Each marked member is split into a band of its own with the ``atomic`` loop type, so
that isl emits one loop for it; ``codegen.lower`` turns the loop below a mark into a
``For`` with ``mapping="omp"`` or ``vector=True``. No hardware ids, no barriers: a
kernel's grid and block are (1, 1, 1).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import islpy as isl

from polyhedral.dependences import Dependences
from polyhedral.full_tiles import isolate_full_tiles
from polyhedral.mapping import (
    KernelMapping,
    MappedSchedule,
    constant_members,
    each_kernel,
    member_spans,
)
from polyhedral.register_tile import find_vector_marks, register_tile_kernel
from polyhedral.schedule import (
    band_coincidence,
    lex_nonnegative,
    reduction_members,
    statement_names,
)
from polyhedral.scop import Scop
from tc.ir import nodes as ir
from tc.ir.types import INDEX_TYPE
from tc.options import MappingOptions

_T = isl.schedule_node_type
PARALLEL = "cpu.parallel"
VECTOR = "cpu.vector"
REDUCE = "cpu.reduce"
#: Below this many statement instances, a kernel runs on one thread: waking a team of
#: threads costs more than the work (a few microseconds, far more on a busy machine).
PARALLEL_MIN_INSTANCES = 1 << 15
#: float32 lanes of a 512-bit vector: more iterations than this fill no more lanes.
LANES = 16


def _free(node: isl.ScheduleNode, deps: isl.UnionMap) -> list[bool]:
    """The members of a band that carry no dependence and are not degenerate."""
    const = constant_members(node)
    return [c and not d for c, d in zip(band_coincidence(node, deps), const, strict=True)]


def _isolate(node: isl.ScheduleNode, m: int) -> isl.ScheduleNode:
    """The band at ``node`` split so that member ``m`` is a band of its own; returns
    that band's node."""
    if m > 0:
        node = node.band_split(m).child(0)
    if node.band_n_member() > 1:
        node = node.band_split(1)
    return node.band_member_set_ast_loop_type(0, isl.ast_loop_type.atomic)


def _last_order(n: int, m: int) -> list[int]:
    """The members ``0..n-1`` with ``m`` moved last."""
    return [i for i in range(n) if i != m] + [m]


def _permuted(mupa: isl.MultiUnionPwAff, order: list[int]) -> isl.MultiUnionPwAff:
    """``mupa`` with its members in ``order``."""
    out = mupa
    for j, i in enumerate(order):
        out = out.set_at(j, mupa.get_at(i))
    return out


def _permute_last(node: isl.ScheduleNode, m: int) -> isl.ScheduleNode:
    """The band at ``node`` with member ``m`` moved to the last position (see
    :meth:`_CpuMapper.vector` for when that is legal)."""
    n = node.band_n_member()
    order = _last_order(n, m)
    coincident = [node.band_member_get_coincident(i) for i in range(n)]
    permuted = _permuted(node.band_get_partial_schedule(), order)
    permutable = node.band_get_permutable()
    node = node.delete().insert_partial_schedule(permuted)
    node = node.band_set_permutable(permutable)
    for j, i in enumerate(order):
        node = node.band_member_set_coincident(j, int(coincident[i]))
    return node


def packable_reads(fn: ir.Function, st: ir.Stage) -> set[int]:
    """The positions (in ``ir.walk(st.rhs)`` order) of the reads of ``st`` that CPU
    packing may copy (:mod:`polyhedral.packing`): of a tensor no stage writes, with
    plain index subscripts, reused (some index of the statement subscripts nothing)."""
    written = {s.tensor for s in fn.stages}
    domain = {d.name for d in st.domain}
    out = set()
    reads = [e for e in ir.walk(st.rhs) if isinstance(e, ir.Read)]
    for i, r in enumerate(reads):
        names = {n.name for x in r.indices for n in ir.walk(x)
                 if isinstance(n, ir.Var) and n.kind == "index"}
        if r.tensor not in written and names < domain and all(
                isinstance(n, ir.Var | ir.IntImm | ir.Binary) for x in r.indices
                for n in ir.walk(x)):
            out.add(i)
    return out


def unit_stride_uses(fn: ir.Function, unit: Mapping[str, int | None],
                     sizes: Mapping[str, int] | None = None,
                     packing: bool = False, output_only: bool = False
                     ) -> dict[str, dict[str, float]]:
    """Per scop statement (``S<k>``, ``S<k>_init``) and index variable: how many
    accesses run with unit stride along that variable (``unit``: each tensor's
    dimension of stride 1, None when none), each weighted by the statement's number
    of instances at ``sizes`` (all 1 without sizes), so that the heavy statement of a
    fused group decides. The left-hand side of an update (``+=``) does not count: the
    reduction keeps it in a register. With ``packing``, a read that packing may copy
    counts along every index of its subscripts: the copy makes the one the vector
    loop walks contiguous. With ``output_only``, only the written tensor counts
    (updates too)."""

    def add(counts: dict[str, float], tensor: str, indices, weight: float,
            anywhere: bool = False) -> None:
        d = unit.get(tensor)
        if anywhere:
            names = {n.name for x in indices for n in ir.walk(x)
                     if isinstance(n, ir.Var) and n.kind == "index"}
            for name in names:
                counts[name] = counts.get(name, 0.0) + weight
            return
        if d is None or d >= len(indices):
            return
        for n in ir.walk(indices[d]):
            if isinstance(n, ir.Var) and n.kind == "index":
                counts[n.name] = counts.get(n.name, 0.0) + weight

    def points(dims) -> float:
        if sizes is None:
            return 1.0
        return float(math.prod(max(0, d.hi.evaluate(sizes) - d.lo.evaluate(sizes))
                               for d in dims))

    out: dict[str, dict[str, float]] = {}
    for k, st in enumerate(fn.stages):
        lhs = tuple(ir.Var(n, "index", type=INDEX_TYPE) for n in st.lhs)
        init: dict[str, float] = {}
        add(init, st.tensor, lhs, points(st.lhs_dims))
        out[f"S{k}_init"] = init
        counts: dict[str, float] = {}
        w = points(st.domain)
        if st.op is None or output_only:
            add(counts, st.tensor, lhs, w)
        if output_only:
            out[f"S{k}"] = counts
            continue
        packed = packable_reads(fn, st) if packing else set()
        for i, e in enumerate(e for e in ir.walk(st.rhs) if isinstance(e, ir.Read)):
            add(counts, e.tensor, e.indices, w, i in packed)
        out[f"S{k}"] = counts
    return out


def _member_score(node: isl.ScheduleNode, m: int, fn: ir.Function,
                  uses: Mapping[str, Mapping[str, float]]) -> float:
    """The weighted unit-stride accesses of the band's statements along member ``m``."""
    score = 0.0

    def one(part: isl.Map) -> None:
        nonlocal score
        name = part.get_tuple_name(isl.dim_type.in_)
        if name not in uses:
            return
        k = int(name[1:].removesuffix("_init"))
        st = fn.stages[k]
        dims = st.lhs_dims if name.endswith("_init") else st.domain
        for i, d in enumerate(dims):
            if part.involves_dims(isl.dim_type.in_, i, 1):
                score += uses[name].get(d.name, 0.0)

    upa = node.band_get_partial_schedule().get_at(m)
    isl.UnionMap.from_union_pw_aff(upa).foreach_map(one)
    return score


class _CpuMapper:
    def __init__(self, fn: ir.Function, deps: Dependences, options: MappingOptions,
                 unit: Mapping[str, int | None], context: isl.Set | None,
                 sizes: Mapping[str, int] | None) -> None:
        self.fn = fn
        self.dependences = deps
        self.deps = deps.validity
        self.parallel = options.cpu_parallel
        self.vectorize = options.cpu_vectorize
        self.register_tile = options.cpu_register_tile
        self.packing = options.use_shared_memory
        self.uses = unit_stride_uses(fn, unit, sizes, self.packing)
        self.output_uses = unit_stride_uses(fn, unit, sizes, output_only=True)
        self.context = context
        self.sizes = sizes
        self.threshold = True
        self.kernels: list[KernelMapping] = []

    def visit(self, node: isl.ScheduleNode) -> isl.ScheduleNode:
        return each_kernel(node, self.kernel)

    def kernel(self, node: isl.ScheduleNode) -> isl.ScheduleNode:
        index = len(self.kernels)
        self.kernels.append(KernelMapping(index, statement_names(node.get_domain()),
                                          (1, 1, 1), (1, 1, 1)))
        if node.get_type() == _T.band:
            if self.vectorize:
                node, marked = self.vector(node)
                if marked and self.register_tile > 1:
                    # Compiled for one shape (strides are constants): the SIMD loop
                    # may go outside the reduction (polyhedral.register_tile).
                    node = register_tile_kernel(node, self.deps, self.fn, self.register_tile,
                                                self.context, outer_lanes=self.threshold)
            if self.parallel and (not self.threshold
                                  or self.instances(node) >= PARALLEL_MIN_INSTANCES):
                node = self.parallel_loop(node)
            node = self.isolate(node)
        return node.insert_mark(isl.Id(f"kernel.{index}", context=node.get_ctx()))

    def isolate(self, node: isl.ScheduleNode) -> isl.ScheduleNode:
        """The kernel at ``node`` with the full tiles of the band above each vector
        loop's point band isolated (:mod:`polyhedral.full_tiles`)."""
        for path in find_vector_marks(node):
            if not path:
                continue
            n = node
            for i in path:
                n = n.child(i)
            # Up to the point band above the mark, then to the band above that (the
            # tiles), past bands that have their options (a register tile's strips).
            up, bands = 0, 0
            while up < len(path):
                n, up = n.parent(), up + 1
                if n.get_type() == _T.band:
                    bands += 1
                    if bands >= 2 and n.band_get_ast_build_options().is_empty():
                        n = isolate_full_tiles(n)
                        break
            for _ in range(len(path) - up):
                n = n.parent()
            node = n
        return node

    def instances(self, node: isl.ScheduleNode) -> float:
        """The statement instances below ``node`` at the sizes (infinite without them)."""
        if self.sizes is None:
            return math.inf
        names = statement_names(node.get_domain())
        total = 0.0
        for name in names:
            st = self.fn.stages[int(name[1:].removesuffix("_init"))]
            dims = st.lhs_dims if name.endswith("_init") else st.domain
            total += math.prod(max(0, d.hi.evaluate(self.sizes) - d.lo.evaluate(self.sizes))
                               for d in dims)
        return total

    def parallel_loop(self, node: isl.ScheduleNode) -> isl.ScheduleNode:
        """Mark the parallel loop of the kernel's band at ``node`` (or below the marks
        that :meth:`vector` put there); returns the node at ``node``'s position."""
        below = 0
        while node.get_type() == _T.mark:
            node = node.child(0)
            below += 1
        flags = _free(node, self.deps)
        spans = member_spans(node, self.context)
        # The first dependence-free member with more than one iteration.
        wide = [f and (s is None or s > 1) for f, s in zip(flags, spans, strict=True)]
        if any(wide):
            m = wide.index(True)
            node = _isolate(node, m).insert_mark(isl.Id(PARALLEL, context=node.get_ctx()))
            below += 1 if m > 0 else 0  # the leading members split off above the mark
        for _ in range(below):
            node = node.parent()
        return node

    def candidates(self, node: isl.ScheduleNode) -> list[tuple[tuple, int, str]]:
        """The members of the band at ``node`` that may run in SIMD lanes, each with its
        rank (weighted unit-stride accesses times the lanes its span fills, then a
        reduction's accumulator in a register, then the later member) and mark."""
        free = _free(node, self.deps)
        reduce = reduction_members(node, self.dependences)
        const = constant_members(node)
        spans = member_spans(node, self.context)
        out = []
        for m in range(node.band_n_member()):
            if const[m] or not (free[m] or reduce[m]):
                continue
            # A loop of few iterations fills few lanes: the score counts lanes used.
            lanes = LANES if spans[m] is None else min(spans[m], LANES)
            score = _member_score(node, m, self.fn, self.uses)
            # Packing turns a GEMM's operands so that a free loop reads them along
            # their rows: lanes of independent outputs (no horizontal sums), stored
            # with unit stride, then win.
            first = (self.packing and free[m] and score > 0
                     and _member_score(node, m, self.fn, self.output_uses) > 0)
            rank = (first, score * lanes, not free[m], m)
            out.append((rank, m, VECTOR if free[m] else REDUCE))
        return out

    def vector(self, node: isl.ScheduleNode) -> tuple[isl.ScheduleNode, bool]:
        """Mark the vector loop(s) of the subtree at ``node``; returns the node at
        ``node``'s position and whether a loop was marked.

        The best candidate of the chain of nested bands becomes the innermost loop: it
        moves to the end of its band, and a band below it in the chain is merged into
        its band first. That is legal for any candidate: it has distance 0 on every
        dependence active at its band (a reduction member, on every one but the
        reductions, whose order the vector reduction gives up anyway), and a zero
        column moved later keeps every distance vector lexicographically positive."""
        depth, bands, n = 0, [], node
        while True:
            t = n.get_type()
            if t == _T.band and n.band_n_member() > 0:
                bands.append((depth, self.candidates(n)))
            elif t not in (_T.mark, _T.filter):
                break
            if n.n_children() != 1:
                break
            n = n.child(0)
            depth += 1
        if n.get_type() in (_T.sequence, _T.set):
            # Statements the chain runs one after another (a fused row of softmax):
            # each branch's own inner loops are the lanes, if they have any.
            marked = False
            for i in range(n.n_children()):
                child, got = self.vector(n.child(i))
                n, marked = child.parent(), marked or got
            if marked:
                for _ in range(depth):
                    n = n.parent()
                return n, True
        found = [(rank, d, m, mark) for d, cands in bands for rank, m, mark in cands]
        depths = [d for d, _ in bands]
        if depths != list(range(depths[0], depths[0] + len(depths))) if depths else False:
            # Something other than bands lies between: take the innermost band's best.
            found = [f for f in found if f[1] == depths[-1]]
        # The best candidate whose move keeps every ordering the reductions' own
        # reordering must keep (reduction_members alone looks at the last writers).
        chosen = next((f for f in sorted(found, reverse=True) if self.order_legal(
            node, f[1], sum(d > f[1] for d in depths), f[2])), None)
        if chosen is None:
            for _ in range(depth):
                n = n.parent()
            return n, False
        _, at, m, mark = chosen
        below = [d for d in depths if d > at]
        n = node
        for _ in range(at):
            n = n.child(0)
        if below:
            n = self.merge_below(n, len(below))
        if m != n.band_n_member() - 1:
            n = _permute_last(n, m)
            m = n.band_n_member() - 1
        n = _isolate(n, m)
        n = n.insert_mark(isl.Id(mark, context=n.get_ctx()))
        # Back to the kernel's band: the marked band is ``at`` levels down, plus the
        # band split off above it and the mark.
        for _ in range(at + (1 if m > 0 else 0)):
            n = n.parent()
        return n, True

    def order_legal(self, node: isl.ScheduleNode, at: int, count: int, m: int) -> bool:
        """Whether the band ``at`` levels below ``node``, merged with the ``count``
        bands below it and with member ``m`` moved last, keeps every dependence that
        survives reordering the reductions (``Dependences.reordering``: the init of a
        reduction before all its updates, its readers after all of them) pointing
        forward. Moving a reduction's tile loop inside its point loop may not."""
        for _ in range(at):
            node = node.child(0)
        mupa, child = node.band_get_partial_schedule(), node
        for _ in range(count):
            child = child.child(0)
            mupa = mupa.flat_range_product(child.band_get_partial_schedule())
        permuted = _permuted(mupa, _last_order(mupa.dim(isl.dim_type.set), m))
        dom = node.get_domain()
        active = self.dependences.reordering.intersect_domain(dom).intersect_range(dom)
        if node.get_schedule_depth() > 0:
            active = active.eq_at_multi_union_pw_aff(
                node.get_prefix_schedule_multi_union_pw_aff())
        order = isl.UnionMap.from_multi_union_pw_aff(permuted)
        dist = active.apply_domain(order).apply_range(order).deltas()
        return dist.is_empty() or lex_nonnegative(isl.Set.from_union_set(dist))

    def merge_below(self, node: isl.ScheduleNode, count: int) -> isl.ScheduleNode:
        """The band at ``node`` with the ``count`` bands right below it merged into it
        (their members after its own)."""
        mupa = node.band_get_partial_schedule()
        for _ in range(count):
            child = node.child(0)
            mupa = mupa.flat_range_product(child.band_get_partial_schedule())
            node = child.delete().parent()
        node = node.delete().insert_partial_schedule(mupa)
        for i, c in enumerate(band_coincidence(node, self.deps)):
            node = node.band_member_set_coincident(i, int(c))
        return node


def map_to_cpu(scop: Scop, deps: Dependences, schedule: isl.Schedule,
               options: MappingOptions, unit: Mapping[str, int | None] | None = None,
               context: isl.Set | None = None, sizes: Mapping[str, int] | None = None,
               threshold: bool = True) -> MappedSchedule:
    """Split ``schedule`` (already tiled) into kernels and mark their parallel and
    vector loops (see the module docstring). ``unit`` gives each tensor's dimension
    of stride 1 (the vector loop is chosen to walk those); ``context`` fixes the
    sizes (the spans of loops count), as ``sizes`` do (statements weigh by their
    instances). Without ``threshold`` every kernel gets its parallel loop (a kernel
    compiled for many shapes decides at run time: ``codegen.compiler``)."""
    mapper = _CpuMapper(scop.function, deps, options, unit or {}, context, sizes)
    mapper.threshold = threshold
    root = mapper.visit(schedule.get_root())
    return MappedSchedule(scop, root.get_schedule(), tuple(mapper.kernels))
