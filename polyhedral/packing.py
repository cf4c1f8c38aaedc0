"""Packing on a CPU: reused input tiles copied into contiguous per-thread buffers.

``useSharedMemory`` on the CPU target, the CPU peer of :mod:`polyhedral.promotion`
(which copies tiles to a GPU block's shared memory). GEMM libraries pack the panel of
each operand that a micro-kernel walks many times into a small contiguous buffer, in
the order the micro-kernel reads it: the rows of a tile, scattered over a large
matrix, then sit in a few cache lines and pages, and a tile read across its rows
(``B(n, k)`` walked along ``n``) becomes one read along its last dimension, so the
vector loop loads consecutive lanes instead of gathering them.

Where: in each kernel, the packing point is a position in the chain of nested bands
below the OpenMP parallel loop (mark ``cpu.parallel``) and above the vector loop
(``cpu.vector`` / ``cpu.reduce``) and the first branching node. Below the parallel
loop, each thread runs the copies and the body in sequence, so the buffer is the
thread's own (it is declared in the loop's body); no barrier is ever needed. By
default the point is the position that packs the most tensors within the limit (a
whole tile of every operand), the shallowest of those; with ``sharedDepth`` the
deepest at a schedule depth of at most it. A kernel without a parallel loop may pack
anywhere in its chain; a kernel that branches above its parallel loop packs nothing.

What: a tensor accessed below the point is packed when

* no statement of the kernel writes it (the copy then reads values nothing changes
  while the kernel runs, and another thread never writes an element of the box: a
  box is a rectangle around the footprint and may hold elements no access reads);
* every access to it below the point is affine and unconditional (a guarded read
  keeps its bounds check on the global tensor);
* it is reused: some element of the footprint is read by several instances;
* the footprint fits a box of constant size (whatever the sizes, when the kernel
  serves every shape) and all boxes together fit the limit (bytes per thread, on
  the stack: :data:`DEFAULT_PACK_LIMIT`).

The box's layout (which dimension is contiguous) is chosen by the lowering
(:func:`codegen.packing.packed_region`), where the vector loop is known. Boxes are
clipped to the tensor: elements outside it are never copied and never read.
"""

from __future__ import annotations

import islpy as isl

from polyhedral.mapping import MappedSchedule
from polyhedral.promotion import (
    Promoted,
    SharedPlan,
    _fix,
    _lower_bound,
    _maps,
    _path,
    _single,
    insert_marks,
)
from polyhedral.scop import Scop

__all__ = ["DEFAULT_PACK_LIMIT", "pack_tiles"]

#: Bytes of packed buffers per thread: they live on the thread's stack, and a tile
#: that fits L2 several times over is what packing is for.
DEFAULT_PACK_LIMIT = 64 * 1024
_T = isl.schedule_node_type
_VECTOR_MARKS = ("cpu.vector", "cpu.reduce")


def _box_sizes(footprint: isl.Map) -> list[int] | None:
    """The extent of each dimension of a box holding every ``footprint(p)``, for every
    value of the parameters left free; None when one is unbounded."""
    n = footprint.dim(isl.dim_type.out)
    sizes = []
    for j in range(n):
        fj = footprint.project_out(isl.dim_type.out, j + 1, n - j - 1).project_out(
            isl.dim_type.out, 0, j)
        deltas = fj.reverse().apply_range(fj).deltas()
        if deltas.is_empty():
            return None
        top = deltas.dim_max_val(0)
        if not top.is_int():
            return None
        sizes.append(int(top.to_python()) + 1)
    return sizes


def _has_parallel(node: isl.ScheduleNode) -> bool:
    if node.get_type() == _T.mark and node.mark_get_id().get_name() == "cpu.parallel":
        return True
    return any(_has_parallel(node.child(i)) for i in range(node.n_children()))


def _positions(kernel_child: isl.ScheduleNode) -> list[isl.ScheduleNode]:
    """The candidate packing points of one kernel, shallowest first (see the module
    docstring)."""
    below_parallel = not _has_parallel(kernel_child)
    n = kernel_child
    positions: list[isl.ScheduleNode] = []
    while True:
        t = n.get_type()
        if t == _T.mark:
            name = n.mark_get_id().get_name()
            if name == "cpu.parallel":
                positions.clear()
                below_parallel = True
                n = n.child(0)
                if n.get_type() == _T.band:
                    n = n.child(0)  # past the parallel loop's own band
                continue
            if name in _VECTOR_MARKS:
                if below_parallel:
                    positions.append(n)
                break
        if t == _T.leaf:
            break
        if below_parallel:
            positions.append(n)
        if n.n_children() != 1:
            break
        n = n.child(0)
    return positions


def _written(scop: Scop, statements: set[str]) -> set[str]:
    return {st.write.tensor for st in scop.statements if st.name in statements}


def _plan_at(node: isl.ScheduleNode, scop: Scop, context: isl.Set, limit: int,
             index: int, written: set[str], symbolic: bool) -> SharedPlan | None:
    prefix = node.get_prefix_schedule_union_map().intersect_domain(node.get_domain())
    if prefix.is_empty():
        return None
    stmts = [scop.statement(m.get_tuple_name(isl.dim_type.in_)) for m in _maps(prefix)]
    by_tensor: dict[str, list[tuple[str, object]]] = {}
    for st in stmts:
        for acc in st.reads:
            by_tensor.setdefault(acc.tensor, []).append((st.name, acc))
    chosen: list[Promoted] = []
    used = 0
    for tensor in sorted(set(by_tensor) - written):
        accs = by_tensor[tensor]
        if any(not a.exact or a.conditional for _, a in accs):
            continue
        rel = isl.UnionMap.empty(prefix.get_space())
        for _, a in accs:
            rel = rel.union(isl.UnionMap.from_map(a.relation))
        if prefix.range_product(rel).is_injective():
            continue  # each element read once per tile: a copy only adds traffic
        fp = _single(prefix.reverse().apply_range(rel))
        if fp is None:
            continue
        # A kernel that serves every shape needs a box whose size no shape changes.
        sizes = _box_sizes(fp if symbolic else _fix(fp, context))
        if sizes is None:
            continue
        decl = scop.function.tensor(tensor)
        nbytes = max(1, decl.dtype.bits // 8)
        for s in sizes:
            nbytes *= s
        if used + nbytes > limit or len(sizes) == 0:
            continue
        used += nbytes
        chosen.append(Promoted(
            tensor, f"pk{index}_{tensor}", decl.dtype,
            tuple(_lower_bound(fp, j) for j in range(len(sizes))), tuple(sizes),
            copy_in=True, copy_out=False, readers=frozenset(s for s, _ in accs),
            writers=frozenset()))
    if not chosen:
        return None
    return SharedPlan(f"pack.{index}", node.get_schedule_depth(), tuple(chosen),
                      frozenset(s.name for s in stmts), prefix)


def _plan_kernel(kernel_child: isl.ScheduleNode, scop: Scop, context: isl.Set, limit: int,
                 depth: int, index: int, symbolic: bool
                 ) -> tuple[isl.ScheduleNode, SharedPlan] | None:
    positions = _positions(kernel_child)
    if not positions:
        return None
    written = _written(scop, {m.get_tuple_name(isl.dim_type.in_)
                              for m in _maps(kernel_child.get_prefix_schedule_union_map()
                                             .intersect_domain(kernel_child.get_domain()))})
    if depth > 0:
        fitting = [p for p in positions if p.get_schedule_depth() <= depth]
        positions = [fitting[-1] if fitting else positions[0]]
    best: tuple[isl.ScheduleNode, SharedPlan] | None = None
    for point in positions:  # the most tensors packed; the shallowest of those
        plan = _plan_at(point, scop, context, limit, index, written, symbolic)
        if plan is not None and (best is None or len(plan.tensors) > len(best[1].tensors)):
            best = point, plan
    return best


def pack_tiles(mapped: MappedSchedule, context: isl.Set, limit: int = DEFAULT_PACK_LIMIT,
               depth: int = 0, symbolic: bool = False
               ) -> tuple[isl.Schedule, dict[str, SharedPlan]]:
    """The schedule with a ``pack.N`` mark at each kernel's packing point that packs
    something, and the plans by mark name (the shape of :func:`promote_shared`'s, so
    that :func:`polyhedral.promotion.build_ast` annotates them alike). ``limit``:
    bytes per thread; ``symbolic``: the kernels serve every size (``context`` then
    only guides nothing here: boxes must be constant for all sizes)."""
    plans: dict[str, SharedPlan] = {}
    paths: list[tuple[list[int], str]] = []

    def walk(node: isl.ScheduleNode) -> None:
        if node.get_type() == _T.mark and node.mark_get_id().get_name().startswith("kernel."):
            found = _plan_kernel(node.child(0), mapped.scop, context, limit, depth,
                                 len(plans), symbolic)
            if found is not None:
                point, plan = found
                plans[plan.mark] = plan
                paths.append((_path(point), plan.mark))
            return
        for i in range(node.n_children()):
            walk(node.child(i))

    walk(mapped.schedule.get_root())
    return insert_marks(mapped.schedule, paths), plans
