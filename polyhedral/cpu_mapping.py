"""Mapping a tiled schedule tree to CPU loops: OpenMP parallel loops and SIMD loops.

The CPU strategy of the polyhedral level, a peer of the GPU mapping
(:mod:`polyhedral.mapping`) over the same scheduled, tiled tree. The tree is split
into kernels as for a GPU (each subtree below the root's sequences and sets, so the
host program is the same); in each kernel:

* the first member of the kernel's outermost band that no dependence crosses
  (coincident w.r.t. *all* dependences, reductions included) and that is not
  degenerate becomes an OpenMP parallel loop (mark ``cpu.parallel``); a reduction
  therefore never runs in parallel, so results never depend on the thread count;
* with ``cpu_vectorize``, the innermost band with a coincident member on the chain of
  nested bands gets its last coincident member as a SIMD loop (mark ``cpu.vector``);
  when that band is permutable (a tiled band's point band is), the member is first
  moved to the innermost position, so that the vector loop is the innermost loop
  (``C(m, n) += A(m, k) * B(k, n)`` runs ``m, k, n`` with ``n`` in lanes).

Each marked member is split into a band of its own with the ``atomic`` loop type, so
that isl emits one loop for it; ``codegen.lower`` turns the loop below a mark into a
``For`` with ``mapping="omp"`` or ``vector=True``. No hardware ids, no barriers: a
kernel's grid and block are (1, 1, 1).
"""

from __future__ import annotations

import islpy as isl

from polyhedral.dependences import Dependences
from polyhedral.mapping import KernelMapping, MappedSchedule, constant_members
from polyhedral.schedule import band_coincidence, statement_names
from polyhedral.scop import Scop
from tc.options import MappingOptions

_T = isl.schedule_node_type
PARALLEL = "cpu.parallel"
VECTOR = "cpu.vector"


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


def _permute_last(node: isl.ScheduleNode, m: int) -> isl.ScheduleNode:
    """The permutable band at ``node`` with member ``m`` moved to the last position."""
    n = node.band_n_member()
    order = [i for i in range(n) if i != m] + [m]
    mupa = node.band_get_partial_schedule()
    coincident = [node.band_member_get_coincident(i) for i in range(n)]
    permuted = mupa
    for j, i in enumerate(order):
        permuted = permuted.set_at(j, mupa.get_at(i))
    node = node.delete().insert_partial_schedule(permuted)
    node = node.band_set_permutable(1)
    for j, i in enumerate(order):
        node = node.band_member_set_coincident(j, int(coincident[i]))
    return node


class _CpuMapper:
    def __init__(self, deps: Dependences, options: MappingOptions) -> None:
        self.deps = deps.validity
        self.parallel = options.cpu_parallel
        self.vectorize = options.cpu_vectorize
        self.kernels: list[KernelMapping] = []

    def visit(self, node: isl.ScheduleNode) -> isl.ScheduleNode:
        t = node.get_type()
        if t == _T.band and node.band_n_member() > 0 or t == _T.leaf:
            return self.kernel(node)
        for i in range(node.n_children()):
            node = self.visit(node.child(i)).parent()
        return node

    def kernel(self, node: isl.ScheduleNode) -> isl.ScheduleNode:
        index = len(self.kernels)
        self.kernels.append(KernelMapping(index, statement_names(node.get_domain()),
                                          (1, 1, 1), (1, 1, 1)))
        if node.get_type() == _T.band:
            if self.vectorize:
                node = self.vector(node)
            if self.parallel:
                node = self.parallel_loop(node)
        return node.insert_mark(isl.Id(f"kernel.{index}", context=node.get_ctx()))

    def parallel_loop(self, node: isl.ScheduleNode) -> isl.ScheduleNode:
        """Mark the parallel loop of the kernel's band at ``node`` (or below the marks
        that :meth:`vector` put there); returns the node at ``node``'s position."""
        below = 0
        while node.get_type() == _T.mark:
            node = node.child(0)
            below += 1
        flags = _free(node, self.deps)
        if any(flags):
            m = flags.index(True)
            node = _isolate(node, m).insert_mark(isl.Id(PARALLEL, context=node.get_ctx()))
            below += 1 if m > 0 else 0  # the leading members split off above the mark
        for _ in range(below):
            node = node.parent()
        return node

    def vector(self, node: isl.ScheduleNode) -> isl.ScheduleNode:
        """Mark the vector loop below the kernel's band ``node``; returns ``node``."""
        depth, best, n = 0, None, node
        while True:
            t = n.get_type()
            if t == _T.band and n.band_n_member() > 0:
                flags = _free(n, self.deps)
                if any(flags):
                    best = (depth, len(flags) - 1 - flags[::-1].index(True))
            elif t not in (_T.mark, _T.filter):
                break
            if n.n_children() != 1:
                break
            n = n.child(0)
            depth += 1
        if best is None:
            return node
        n = node
        for _ in range(best[0]):
            n = n.child(0)
        m = best[1]
        if m != n.band_n_member() - 1 and n.band_get_permutable():
            n = _permute_last(n, m)
            m = n.band_n_member() - 1
        n = _isolate(n, m)
        n = n.insert_mark(isl.Id(VECTOR, context=n.get_ctx()))
        # Back to the kernel's band: the marked band is best[0] levels down, plus the
        # band split off above it and the mark.
        up = best[0] + (1 if m > 0 else 0)
        for _ in range(up):
            n = n.parent()
        return n


def map_to_cpu(scop: Scop, deps: Dependences, schedule: isl.Schedule,
               options: MappingOptions) -> MappedSchedule:
    """Split ``schedule`` (already tiled) into kernels and mark their parallel and
    vector loops (see the module docstring)."""
    mapper = _CpuMapper(deps, options)
    root = mapper.visit(schedule.get_root())
    return MappedSchedule(scop, root.get_schedule(), tuple(mapper.kernels))
