"""Which dependences cross threads: the instance-level test behind barrier placement.

A barrier is needed between two statements only when some instance of the second
depends on an instance of the first that another thread of the block ran. Whether
that happens depends on which thread runs each instance, which the lowering decides
(``codegen.lower``): a thread-mapped loop over schedule dimension ``D`` gives the
iteration with value ``v`` to thread ``v mod T`` of its axis (``T`` threads along it),
and a statement that no mapped loop distributes along an axis runs on thread 0 of it.
The lowering reports, for each statement, the dimension mapped along each axis (a
:data:`Placement`); this module composes the dependences with those thread functions
and keeps the statement pairs with an instance pair on two different threads.

Matmul's reduction over ``k`` (``C(i,j)`` updated by the thread that owns ``(i,j)`` in
every ``k`` tile) thus needs no barrier, while a stage that reads what neighbouring
threads wrote does.
"""

from __future__ import annotations

from collections.abc import Mapping

import islpy as isl

__all__ = ["Placement", "prefix_schedules", "thread_crossing_pairs"]

# For each thread axis with more than one thread ("x", "y", "z" order): the schedule
# dimension distributed over it, or None when the statement runs on thread 0 only.
Placement = tuple[int | None, ...]


def prefix_schedules(schedule: isl.Schedule) -> dict[str, isl.Map]:
    """For each statement, the map from its instances to their prefix schedule (the
    band members above its leaf, one dimension per schedule depth)."""
    out: dict[str, isl.Map] = {}

    def walk(node: isl.ScheduleNode) -> None:
        if node.get_type() == isl.schedule_node_type.leaf:
            umap = node.get_prefix_schedule_union_map()

            def add(m: isl.Map) -> None:
                name = m.get_tuple_name(isl.dim_type.in_)
                out[name] = out[name].union(m) if name in out else m

            umap.foreach_map(add)
            return
        for i in range(node.n_children()):
            walk(node.child(i))

    walk(schedule.get_root())
    return out


def _thread_map(prefix: isl.Map, placement: Placement, threads: tuple[int, ...]) -> isl.Map:
    """Statement instances -> thread coordinates (one output per axis of ``threads``)."""
    n = prefix.dim(isl.dim_type.out)
    ins = ", ".join(f"c{i}" for i in range(n))
    outs = ", ".join(f"t{a}" for a in range(len(threads)))
    cons = []
    for a, (dim, count) in enumerate(zip(placement, threads, strict=True)):
        cons.append(f"t{a} = 0" if dim is None else f"t{a} = c{dim} mod {count}")
    text = f"{{ [{ins}] -> [{outs}] : {' and '.join(cons) or 'true'} }}"
    hw = isl.Map.read_from_str(prefix.get_ctx(), text)
    hw = hw.align_params(prefix.get_space())
    return prefix.apply_range(hw)


def thread_crossing_pairs(
    prefixes: Mapping[str, isl.Map],
    deps: isl.UnionMap,
    placements: Mapping[str, Placement | None],
    threads: tuple[int, ...],
    context: isl.Set,
) -> frozenset[tuple[str, str]]:
    """The statement pairs (source, sink) of ``deps`` with some instance pair that runs
    on different threads. ``placements`` gives each statement's placement (None: not
    known, so every dependence involving it counts as crossing); ``threads`` the number
    of threads of each axis with more than one; ``context`` fixes the parameters."""
    out: set[tuple[str, str]] = set()
    thread_of: dict[str, isl.Map | None] = {}
    for name, placement in placements.items():
        prefix = prefixes.get(name)
        bad = placement is None or prefix is None or any(
            d is not None and d >= prefix.dim(isl.dim_type.out) for d in placement)
        thread_of[name] = None if bad else _thread_map(prefix, placement, threads)

    def visit(m: isl.Map) -> None:
        src = m.get_tuple_name(isl.dim_type.in_)
        dst = m.get_tuple_name(isl.dim_type.out)
        if src not in thread_of or dst not in thread_of:
            return  # not both in this kernel: the kernel boundary orders them
        a, b = thread_of[src], thread_of[dst]
        if a is None or b is None:
            out.add((src, dst))
            return
        m = m.intersect_params(context.align_params(m.get_space()))
        pairs = m.apply_domain(a).apply_range(b)
        same = isl.Map.identity(pairs.get_space())
        if not pairs.subtract(same).is_empty():
            out.add((src, dst))

    deps.foreach_map(visit)
    return frozenset(out)
