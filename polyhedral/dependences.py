"""Data dependences of a scop, by isl's dataflow analysis on the original (textual) order.

Three kinds, each an isl union map from source instances to sink instances:

* ``flow`` (read after write): each read from the last write of the element before
  it (exact dataflow; over-approximated and conditional reads are sinks too);
* ``output`` (write after write): each write from the previous write of the element;
* ``anti`` (write after read): each write from the reads of the element since the
  previous write (a write kills the earlier reads).

Every memory-based dependence of the original order is the composition of a chain
of these (a write is ordered after all earlier accesses of its element by a chain
of output dependences ending in one anti or output dependence, and a read after the
writes through its flow dependence), so a schedule that respects their union respects
them all.

``reduction`` holds the dependences that only the associativity and commutativity of
a reduction allow to reorder: those between instances of one reduction statement
(``op`` in ``+ * min max`` with reduction dimensions, whose right-hand side does not
read the reduced tensor). They are validity constraints like the others, but not
coincidence constraints, so the scheduler may keep a reduction dimension in a
parallel band (the GPU mapping then realises it as a tree reduction, or keeps it
sequential).
"""

from __future__ import annotations

from dataclasses import dataclass

import islpy as isl

from polyhedral.scop import Scop

__all__ = ["Dependences", "compute_dependences", "reduction_statements"]


@dataclass(frozen=True, eq=False)
class Dependences:
    """The dependences of a scop and the scheduler's constraints built from them."""

    flow: isl.UnionMap
    anti: isl.UnionMap
    output: isl.UnionMap
    reduction: isl.UnionMap

    @property
    def all(self) -> isl.UnionMap:
        """Every dependence: flow, anti and output."""
        return self.flow.union(self.anti).union(self.output).coalesce()

    @property
    def validity(self) -> isl.UnionMap:
        """What every schedule must respect: all dependences."""
        return self.all

    @property
    def proximity(self) -> isl.UnionMap:
        """What the scheduler tries to keep close: all dependences."""
        return self.all

    #: The dependences the reductions' chains carried transitively (see
    #: :func:`_around_reductions`); empty when built without them.
    around: isl.UnionMap | None = None

    @property
    def coincidence(self) -> isl.UnionMap:
        """All dependences but the reductions' (see the module docstring)."""
        return self.all.subtract(self.reduction).coalesce()

    @property
    def reordering(self) -> isl.UnionMap:
        """What a schedule that reorders reductions must still respect: all dependences
        but the reductions', plus what their chains carried (a statement before a
        reduction precedes every instance that accumulates into the same element, one
        after it follows every such instance: :func:`_around_reductions`)."""
        rest = self.all.subtract(self.reduction)
        if self.around is not None:
            rest = rest.union(self.around)
        return rest.coalesce()

    def __str__(self) -> str:
        def show(title: str, m: isl.UnionMap) -> list[str]:
            maps: list[isl.Map] = []
            m.foreach_map(maps.append)
            if not maps:
                return [f"{title}: none"]
            return [f"{title}:"] + sorted(f"  {x}" for x in maps)

        return "\n".join(
            show("flow (RAW)", self.flow)
            + show("anti (WAR)", self.anti)
            + show("output (WAW)", self.output)
            + show("reduction", self.reduction)
        )


def reduction_statements(scop: Scop) -> tuple[str, ...]:
    """The statements whose self-dependences are reduction dependences."""
    out = []
    for s in scop.statements:
        if s.is_reduction and not any(a.tensor == s.tensor and a.read is not None for a in s.reads):
            out.append(s.name)
    return tuple(out)


def _flow(
    sink: isl.UnionMap,
    must: isl.UnionMap | None,
    may: isl.UnionMap | None,
    kill: isl.UnionMap | None,
    schedule: isl.Schedule,
) -> isl.UnionMap:
    info = isl.UnionAccessInfo.from_sink(sink)
    if must is not None:
        info = info.set_must_source(must)
    if may is not None:
        info = info.set_may_source(may)
    if kill is not None:
        info = info.set_kill(kill)
    info = info.set_schedule(schedule)
    return info.compute_flow().get_may_dependence().coalesce()


def compute_dependences(scop: Scop) -> Dependences:
    """The flow, anti, output and reduction dependences of ``scop``."""
    sched = scop.original_schedule
    may_only = scop.may_writes.subtract(scop.must_writes)
    flow = _flow(scop.reads, scop.must_writes, may_only, None, sched)
    output = _flow(scop.may_writes, scop.must_writes, may_only, None, sched)
    anti = _flow(scop.may_writes, None, scop.reads, scop.must_writes, sched)

    reduction = isl.UnionMap.empty(flow.get_space())
    for name in reduction_statements(scop):
        dom = isl.UnionSet.from_set(scop.statement(name).domain)
        for deps in (flow, anti, output):
            reduction = reduction.union(deps.intersect_domain(dom).intersect_range(dom))
    reduction = reduction.coalesce()
    others = flow.union(anti).union(output).subtract(reduction)
    return Dependences(flow=flow, anti=anti, output=output, reduction=reduction,
                       around=_around_reductions(scop, others))


def _around_reductions(scop: Scop, others: isl.UnionMap) -> isl.UnionMap:
    """The dependences that the reduction chains carried transitively.

    isl's dataflow gives each access its *last* writer: the init of ``y(r) +=! x(r, i)``
    precedes only the update at ``i = 0``, the reader of ``y(r)`` follows only the one
    at ``i = N - 1``, and the chain of updates orders the rest. Dropping the chain
    (a reduction may run in any order) must not drop that order too: here the init is
    made to precede every update of the same element and the reader to follow every
    one. Without this, a mapping that moved a reduction's tile loop inside its point
    loop (the CPU's vector reduction made innermost) ran the init after some updates
    and the reader before others: a wrong sum (``acc(r) +=! x(r, i); y(r) = acc(r)``
    tiled 4 x 8 on the CPU target). Not coincidence constraints: an init fused at
    ``k = 0`` of a reduction's band still lets the mapping reduce along ``k``.
    """
    around = isl.UnionMap.empty(others.get_space())
    for name in reduction_statements(scop):
        st = scop.statement(name)
        dom = isl.UnionSet.from_set(st.domain)
        write = isl.UnionMap.from_map(st.write.relation).intersect_domain(dom)
        same = write.apply_range(write.reverse())  # instances writing the same element
        into = others.intersect_range(dom).subtract(others.intersect_domain(dom))
        out_of = others.intersect_domain(dom).subtract(others.intersect_range(dom))
        around = around.union(into.apply_range(same)).union(same.apply_range(out_of))
    return around.coalesce()
