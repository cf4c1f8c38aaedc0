"""Shared-memory promotion: which tile footprints to copy to shared memory, and where.

For each kernel of a mapped schedule, the promotion point is a position in the chain
of bands below the block-mapped members and above the thread-mapped ones (all threads
of a block reach it together, so the copies and their barriers are in uniform control
flow): by default the deepest such position (the footprint of one tile), or with
``sharedDepth`` the deepest one at a schedule depth of at most that.

At that point, with ``p`` the values of the schedule dimensions above it, each tensor
accessed below has a footprint ``F(p)``. A tensor is promoted when

* every access to it below the point is affine (an over-approximated subscript has no
  reliable footprint);
* it is reused: some element of ``F(p)`` is accessed by more than one instance (a
  tensor read once per element gains nothing from a copy);
* ``F(p)`` fits a box of constant size (``offset(p) + [0, size)``) and all promoted
  boxes together fit the shared-memory limit;
* if it is written below the point, the writes cover the whole box (clipped to the
  tensor): the copy back then writes exactly the elements the block wrote, never an
  element another block owns.

The point gets a mark ``shared.N``; :func:`build_ast` asks isl for the box offsets as
expressions of the loop iterators at the mark (for the copies) and at each statement
below it (for the accesses), whatever loops isl emitted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import islpy as isl

from polyhedral.mapping import MappedSchedule
from polyhedral.scop import Scop, _sym
from tc.ir.types import ScalarType

__all__ = ["Promoted", "SharedPlan", "build_ast", "promote_shared", "DEFAULT_SHARED_LIMIT"]

DEFAULT_SHARED_LIMIT = 48 * 1024  # bytes per block without opting in, on every CUDA GPU
_T = isl.schedule_node_type


@dataclass(frozen=True, eq=False)
class Promoted:
    """One tensor copied to a shared buffer at a promotion point."""

    tensor: str  # TC name
    buffer: str  # the shared buffer's kernel name
    dtype: ScalarType
    offsets: tuple[isl.PwAff, ...]  # the box's first element, on the prefix schedule
    sizes: tuple[int, ...]  # the box's extent per tensor dimension
    copy_in: bool  # read below the point (or only partly written): copy in first
    copy_out: bool  # written below the point: copy back after
    readers: frozenset[str]  # statements below the point that access the tensor
    writers: frozenset[str]  # statements below the point that write it

    @property
    def elements(self) -> int:
        n = 1
        for s in self.sizes:
            n *= s
        return n


@dataclass(frozen=True, eq=False)
class SharedPlan:
    """The tensors promoted at one mark ``shared.N`` (schedule depth ``depth``)."""

    mark: str
    depth: int
    tensors: tuple[Promoted, ...]
    statements: frozenset[str]
    prefix: isl.UnionMap  # the instances below the mark -> their prefix schedule


def _bytes(dtype: ScalarType) -> int:
    return max(1, dtype.bits // 8)


def _point(kernel_child: isl.ScheduleNode, shared_depth: int) -> isl.ScheduleNode | None:
    """The promotion point of one kernel (a mark goes right above the returned node):
    below every block-mapped member, at or above the first thread mark and the first
    branching node; the deepest such position, or with ``shared_depth`` > 0 the deepest
    at a schedule depth of at most it (the shallowest if none is)."""
    n = kernel_child
    positions: list[isl.ScheduleNode] = []
    while True:
        t = n.get_type()
        if t == _T.mark and n.mark_get_id().get_name().startswith("block."):
            positions.clear()
            n = n.child(0).child(0)  # past the mapped member's band
            continue
        if t == _T.leaf:
            break
        positions.append(n)
        if t == _T.mark and n.mark_get_id().get_name().startswith("thread."):
            break
        if n.n_children() != 1:
            break
        n = n.child(0)
    if not positions:
        return None
    if shared_depth > 0:
        fitting = [p for p in positions if p.get_schedule_depth() <= shared_depth]
        return fitting[-1] if fitting else positions[0]
    return positions[-1]


def _maps(umap: isl.UnionMap) -> list[isl.Map]:
    out: list[isl.Map] = []
    umap.foreach_map(out.append)
    return out


def _single(umap: isl.UnionMap) -> isl.Map | None:
    """A union map with one range space as a map (None if empty or mixed)."""
    maps = _maps(umap)
    if not maps:
        return None
    m = maps[0]
    for other in maps[1:]:
        m = m.union(other)
    return m


def _fix(m: isl.Map, context: isl.Set) -> isl.Map:
    return m.intersect_params(context.align_params(m.get_space()))


def _box(footprint: isl.Map, symbolic: bool = False) -> tuple[list[isl.PwAff], list[int]] | None:
    """Offsets (functions of the prefix) and constant sizes of a box holding every
    ``footprint(p)`` (parameters already fixed); None when no constant-size box does.

    ``symbolic``: the parameters are not fixed, and the sizes must bound the box for
    every value of them (a kernel compiled for every shape allocates it once)."""
    n = footprint.dim(isl.dim_type.out)
    offsets, sizes = [], []
    for j in range(n):
        fj = footprint.project_out(isl.dim_type.out, j + 1, n - j - 1).project_out(
            isl.dim_type.out, 0, j)
        deltas = fj.reverse().apply_range(fj).deltas()
        if symbolic:  # the largest extent at any sizes, not at some sample of them
            deltas = deltas.project_out(isl.dim_type.param, 0, deltas.dim(isl.dim_type.param))
        if deltas.is_empty() or not deltas.is_bounded():
            return None
        top = deltas.lexmax()
        if not top.is_singleton():
            return None
        size = int(top.sample_point().get_coordinate_val(isl.dim_type.set, 0).to_python()) + 1
        offsets.append(fj.lexmin_pw_multi_aff().get_pw_aff(0))
        sizes.append(size)
    return offsets, sizes


def _lower_bound(footprint: isl.Map, j: int) -> isl.PwAff:
    n = footprint.dim(isl.dim_type.out)
    fj = footprint.project_out(isl.dim_type.out, j + 1, n - j - 1).project_out(
        isl.dim_type.out, 0, j)
    return fj.lexmin_pw_multi_aff().get_pw_aff(0).coalesce()


def _box_map(offsets: list[isl.PwAff], sizes: list[int], like: isl.Map) -> isl.Map:
    """``p -> the box at p`` in the space of ``like`` (p -> tensor elements)."""
    if not offsets:  # a scalar: its one element at every p
        return isl.Map.universe(like.get_space())
    offs = isl.Map.from_pw_aff(offsets[0])
    for off in offsets[1:]:
        offs = offs.flat_range_product(isl.Map.from_pw_aff(off))
    n = len(sizes)
    o = ", ".join(f"o{j}" for j in range(n))
    e = ", ".join(f"e{j}" for j in range(n))
    cons = " and ".join(f"o{j} <= e{j} < o{j} + {s}" for j, s in enumerate(sizes))
    spread = isl.Map.read_from_str(like.get_ctx(), f"{{ [{o}] -> [{e}] : {cons} }}")
    box = offs.apply_range(spread.align_params(offs.get_space()))
    box = box.set_tuple_id(isl.dim_type.out, like.get_tuple_id(isl.dim_type.out))
    return box.align_params(like.get_space())


def _in_bounds(like: isl.Map, shape: list[int] | list[str], params: str = "") -> isl.Set:
    """The tensor's elements: ``shape`` holds its extents, numbers or isl expressions
    of the parameters listed in ``params`` (``[N, M] -> ``)."""
    n = len(shape)
    e = ", ".join(f"e{j}" for j in range(n))
    cons = " and ".join(f"0 <= e{j} < {x}" for j, x in enumerate(shape)) or "true"
    b = isl.Set.read_from_str(like.get_ctx(), f"{params}{{ [{e}] : {cons} }}")
    b = b.set_tuple_id(like.get_tuple_id(isl.dim_type.out))
    return b.align_params(like.get_space())


def _plan_at(node: isl.ScheduleNode, scop: Scop, sizes: Mapping[str, int],
             context: isl.Set, limit: int, index: int, symbolic: bool = False
             ) -> SharedPlan | None:
    prefix = node.get_prefix_schedule_union_map().intersect_domain(node.get_domain())
    stmts = [scop.statement(m.get_tuple_name(isl.dim_type.in_)) for m in _maps(prefix)]
    points = None if prefix.is_empty() else isl.Set.from_union_set(prefix.range())
    if points is not None:
        points = points.intersect_params(context.align_params(points.get_space()))
    threads = _thread_values(node)
    schedules, x_dims = _leaf_schedules(node)
    by_tensor: dict[str, list[tuple[str, object]]] = {}
    for st in stmts:
        for acc in (st.write, *st.reads):
            by_tensor.setdefault(acc.tensor, []).append((st.name, acc))
    chosen: list[Promoted] = []
    used = 0
    for tensor in sorted(by_tensor):
        accs = by_tensor[tensor]
        if any(not a.exact for _, a in accs):
            continue  # an over-approximated subscript: no reliable footprint
        rel = isl.UnionMap.empty(prefix.get_space())
        writes = isl.UnionMap.empty(prefix.get_space())
        for _, a in accs:
            rel = rel.union(isl.UnionMap.from_map(a.relation))
            if a.kind == "write":
                writes = writes.union(isl.UnionMap.from_map(a.relation))
        read_only = all(a.kind == "read" for _, a in accs)
        shared_reuse = not prefix.range_product(rel).is_injective() and not (
            threads is not None and _one_thread(prefix, threads, rel))
        # Reuse within one thread is the registers' business, not the block's; a read
        # that neighbouring threads make far apart in memory is worth a coalesced copy.
        if not shared_reuse and not (read_only and any(
                _uncoalesced(schedules, x_dims, stmt, a.relation) for stmt, a in accs)):
            continue
        fp = _single(prefix.reverse().apply_range(rel))
        if fp is None:
            continue
        box = _box(_fix(fp, context), symbolic)
        if box is None:
            continue
        box_sizes = box[1]
        # The offsets stay functions of the parameters: kernels take the sizes as
        # arguments (only the box sizes are fixed: by the concrete sizes, or for
        # symbolic ones by a bound at every size).
        offsets = [_lower_bound(fp, j) for j in range(len(box_sizes))]
        decl = scop.function.tensor(tensor)
        nbytes = _bytes(decl.dtype)
        for s in box_sizes:
            nbytes *= s
        if used + nbytes > limit:
            continue
        written = not writes.is_empty()
        if written:
            # The copy back writes the whole box at every execution of the point: the
            # block must write all of it there, or it could overwrite another block's.
            w = _fix(_single(prefix.reverse().apply_range(writes)), context)
            if symbolic:  # the coverage must hold at every size: a parametric extent
                params = f"[{', '.join(scop.param_ids.values())}] -> "
                bounds = _in_bounds(w, [_sym(s, scop.param_ids) for s in decl.shape], params)
            else:
                bounds = _in_bounds(w, [s.evaluate(sizes) for s in decl.shape])
            box_map = _box_map(offsets, box_sizes, w).intersect_range(bounds)
            if points is None or not points.is_subset(w.domain()):
                continue
            if not box_map.intersect_domain(points).is_subset(w):
                continue
        used += nbytes
        chosen.append(Promoted(
            tensor, f"sh{index}_{tensor}", decl.dtype, tuple(offsets), tuple(box_sizes),
            copy_in=any(a.kind == "read" for _, a in accs), copy_out=written,
            readers=frozenset(s for s, _ in accs),
            writers=frozenset(s for s, a in accs if a.kind == "write")))
    if not chosen:
        return None
    return SharedPlan(f"shared.{index}", node.get_schedule_depth(), tuple(chosen),
                      frozenset(s.name for s in stmts), prefix)


def _thread_values(point: isl.ScheduleNode) -> isl.UnionMap | None:
    """Instances below ``point`` -> the values of their thread-mapped schedule
    dimensions; None when statements have different numbers of them."""
    out: isl.UnionMap | None = None
    counts: set[int] = set()

    def walk(node: isl.ScheduleNode, dims: tuple[int, ...]) -> None:
        nonlocal out
        t = node.get_type()
        if t == _T.mark and node.mark_get_id().get_name().startswith("thread."):
            dims = (*dims, node.get_schedule_depth())
        if t == _T.leaf:
            sched = node.get_prefix_schedule_union_map().intersect_domain(node.get_domain())
            for m in _maps(sched):
                n = m.dim(isl.dim_type.out)
                keep = sorted(dims)
                proj = m
                for d in reversed(range(n)):
                    if d not in keep:
                        proj = proj.project_out(isl.dim_type.out, d, 1)
                counts.add(len(keep))
                u = isl.UnionMap.from_map(proj)
                out = u if out is None else out.union(u)
            return
        for i in range(node.n_children()):
            walk(node.child(i), dims)

    walk(point, ())
    return out if len(counts) == 1 else None


def _leaf_schedules(point: isl.ScheduleNode) -> tuple[dict[str, isl.Map], dict[str, int]]:
    """For each statement below ``point``: its full prefix schedule at its leaf, and the
    schedule dimension mapped to ``thread.x`` above it (if any)."""
    scheds: dict[str, isl.Map] = {}
    xdims: dict[str, int] = {}

    def walk(node: isl.ScheduleNode, x: int | None) -> None:
        t = node.get_type()
        if t == _T.mark and node.mark_get_id().get_name().startswith("thread.x"):
            x = node.get_schedule_depth()
        if t == _T.leaf:
            sched = node.get_prefix_schedule_union_map().intersect_domain(node.get_domain())
            for m in _maps(sched):
                name = m.get_tuple_name(isl.dim_type.in_)
                scheds[name] = scheds[name].union(m) if name in scheds else m
                if x is not None:
                    xdims[name] = x
            return
        for i in range(node.n_children()):
            walk(node.child(i), x)

    walk(point, None)
    return scheds, xdims


def _uncoalesced(schedules: Mapping[str, isl.Map], x_dims: Mapping[str, int], stmt: str,
                 access: isl.Map) -> bool:
    """Do neighbouring ``thread.x`` instances of ``stmt`` read elements that are not
    neighbours (nor the same) in the tensor's last dimension?"""
    if stmt not in schedules or stmt not in x_dims:
        return False
    sched = schedules[stmt]
    n, x = sched.dim(isl.dim_type.out), x_dims[stmt]
    if x >= n:
        return False
    cs = ", ".join(f"c{i}" for i in range(n))
    shifted = ", ".join(f"c{i} + 1" if i == x else f"c{i}" for i in range(n))
    step = isl.Map.read_from_str(sched.get_ctx(), f"{{ [{cs}] -> [{shifted}] }}")
    nxt = sched.apply_range(step.align_params(sched.get_space())).apply_range(sched.reverse())
    pairs = nxt.apply_domain(access).apply_range(access)
    if pairs.is_empty():
        return False
    d = access.dim(isl.dim_type.out)
    if d == 0:
        return False
    zeros = ", ".join(["0"] * d)
    unit = ", ".join(["0"] * (d - 1) + ["1"])
    ok = isl.Set.read_from_str(sched.get_ctx(), f"{{ [{zeros}]; [{unit}] }}")
    deltas = pairs.deltas()
    ok = ok.set_tuple_id(deltas.get_tuple_id()) if deltas.has_tuple_id() else ok
    return not deltas.is_subset(ok.align_params(deltas.get_space()))


def _one_thread(prefix: isl.UnionMap, threads: isl.UnionMap, rel: isl.UnionMap) -> bool:
    """Is each element of each tile accessed by a single thread?"""
    where = prefix.range_product(rel)  # instance -> [p -> element]
    who = prefix.range_product(threads)  # instance -> [p -> thread values]
    return where.reverse().apply_range(who).is_single_valued()


def _path(node: isl.ScheduleNode) -> list[int]:
    out = []
    while node.has_parent():
        out.append(node.get_child_position())
        node = node.parent()
    return out[::-1]


def promote_shared(mapped: MappedSchedule, sizes: Mapping[str, int], context: isl.Set,
                   limit: int, shared_depth: int = 0, symbolic: bool = False
                   ) -> tuple[isl.Schedule, dict[str, SharedPlan]]:
    """The schedule with a ``shared.N`` mark at each kernel's promotion point that
    promotes something, and the plans by mark name. ``limit``: bytes per block.

    ``symbolic``: ``context`` only constrains the parameters (the kernels serve every
    size), so every decision holds for all sizes: a box is promoted only when a
    constant bounds it at any size (tile footprints), with that bound as its size, and
    a written box only when the block writes all of it at every size."""
    plans: dict[str, SharedPlan] = {}
    paths: list[tuple[list[int], str]] = []

    def walk(node: isl.ScheduleNode) -> None:
        if node.get_type() == _T.mark and node.mark_get_id().get_name().startswith("kernel."):
            point = _point(node.child(0), shared_depth)
            if point is not None:
                plan = _plan_at(point, mapped.scop, sizes, context, limit, len(plans),
                                symbolic)
                if plan is not None:
                    plans[plan.mark] = plan
                    paths.append((_path(point), plan.mark))
            return
        for i in range(node.n_children()):
            walk(node.child(i))

    walk(mapped.schedule.get_root())
    return insert_marks(mapped.schedule, paths), plans


def insert_marks(schedule: isl.Schedule, paths: Sequence[tuple[list[int], str]]
                 ) -> isl.Schedule:
    """``schedule`` with a mark named ``mark`` above the node at each ``(path, mark)``
    (child positions from the root), for points in different kernels: one insertion
    then moves no other point."""
    for path, mark in paths:
        node = schedule.get_root()
        for i in path:
            node = node.child(i)
        schedule = node.insert_mark(isl.Id(mark, context=node.get_ctx())).get_schedule()
    return schedule


def _on_build(pa: isl.PwAff, build: isl.AstBuild, prefix: isl.UnionMap) -> isl.PwAff:
    """``pa``, a function of the prefix schedule at a promotion point, as a function of
    the schedule space of ``build`` (at the mark or at a statement below it). isl may
    leave dimensions out of that space (those fixed by outer ones), so go through the
    statement instances the build generates: schedule -> instances -> prefix."""
    to_prefix = build.get_schedule().reverse().apply_range(prefix)
    maps = _maps(to_prefix)
    m = maps[0]
    for other in maps[1:]:
        m = m.union(other)
    pa = pa.align_params(m.get_space())
    # A tensor only some statements read has a footprint, hence offsets, only where
    # they run; the build may also generate points where only the others do (a tile
    # where ``bias`` is not read). There the copy is of no use but must still have an
    # offset: 0 (the copy is clipped to the tensor, and a tensor without an offset
    # everywhere is never written below the point: ``_plan_at``).
    missing = m.range().subtract(pa.domain())
    if not missing.is_empty():
        zero = isl.PwAff.zero_on_domain(isl.LocalSpace.from_space(missing.get_space()))
        pa = pa.union_add(zero.intersect_domain(missing))
    f = m.apply_range(isl.Map.from_pw_aff(pa))
    return isl.PwMultiAff.from_map(f.coalesce()).get_pw_aff(0)


def without_unrolling(schedule: isl.Schedule) -> isl.Schedule:
    """``schedule`` with every band member's ``unroll`` loop type reset to default."""

    def walk(node: isl.ScheduleNode) -> isl.ScheduleNode:
        if node.get_type() == _T.band:
            for i in range(node.band_n_member()):
                if node.band_member_get_ast_loop_type(i) == isl.ast_loop_type.unroll:
                    node = node.band_member_set_ast_loop_type(i, isl.ast_loop_type.default)
        for i in range(node.n_children()):
            node = walk(node.child(i)).parent()
        return node

    return walk(schedule.get_root()).get_schedule()


# annotation name -> (the plan's mark, {tensor: offset expressions})
Annotations = dict[str, tuple[str, dict[str, list[isl.AstExpr]]]]


def build_ast(schedule: isl.Schedule, context: isl.Set, plans: Mapping[str, SharedPlan]
              ) -> tuple[isl.AstNode, Annotations]:
    """isl's AST of ``schedule``; each ``shared.N`` mark and each statement below one
    is annotated with the box offsets of its promoted tensors as isl expressions of
    the loop iterators (``annotations[node.get_annotation().get_name()]``)."""
    annotations: Annotations = {}
    errors: list[BaseException] = []

    def annotate(node: isl.AstNode, build: isl.AstBuild, plan: SharedPlan,
                 tensors: list[Promoted]) -> isl.AstNode:
        try:
            exprs = {p.tensor: [build.expr_from_pw_aff(_on_build(off, build, plan.prefix))
                                for off in p.offsets] for p in tensors}
            key = f"tc_ann{len(annotations)}"
            annotations[key] = (plan.mark, exprs)
            return node.set_annotation(isl.Id(key, context=node.get_ctx()))
        except BaseException as e:  # isl swallows exceptions raised in callbacks
            errors.append(e)
            return node

    def after_mark(node: isl.AstNode, build: isl.AstBuild) -> isl.AstNode:
        plan = plans.get(node.mark_get_id().get_name())
        return node if plan is None else annotate(node, build, plan, list(plan.tensors))

    def at_domain(node: isl.AstNode, build: isl.AstBuild) -> isl.AstNode:
        name = node.user_get_expr().get_op_arg(0).get_id().get_name()
        for plan in plans.values():
            # A statement may also have instances outside the promoted subtree.
            if name in plan.statements and build.get_schedule().domain().is_subset(
                    plan.prefix.domain()):
                return annotate(node, build, plan,
                                [p for p in plan.tensors if name in p.readers])
        return node

    build = isl.AstBuild.from_context(context)
    handles = []
    if plans:
        build, h1 = build.set_after_each_mark(after_mark)
        build, h2 = build.set_at_each_domain(at_domain)
        handles += [h1, h2]  # the callbacks must outlive the AST generation
    try:
        ast = build.node_from_schedule(schedule)
    except isl.Error:
        # isl unrolls only loops with a lower bound it can express; keep those rolled.
        annotations.clear()
        errors.clear()
        ast = build.node_from_schedule(without_unrolling(schedule))
    del handles
    if errors:
        raise errors[0]
    return ast, annotations
