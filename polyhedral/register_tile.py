"""Register tiling of CPU contractions: several output rows per SIMD loop.

After :mod:`polyhedral.cpu_mapping` has chosen a kernel's SIMD loop ``v`` (the
``cpu.vector`` or ``cpu.reduce`` mark) below a point band ``P``, a contraction such as
``C(m, n) +=! A(m, k) * B(k, n)`` runs ``m, k`` then ``n`` in lanes: each vector of
``B`` is loaded for one multiply-add, and each element of ``C`` is loaded and stored
on every ``k``. Register tiling (the micro-kernel of every fast GEMM) works on an
``R``-row block of ``C`` while the reduction runs, so that each vector of ``B`` is
loaded once and used ``R`` times::

    for m_o:                           P's free members (the chosen ones strip-mined)
      if (first k tile)                the initialisations, in a sequence before
        #pragma omp simd
        for n: C[R*m_o + r][n] = 0     (r = 0 .. R-1, unrolled)
      for k:                           P's other members (the reductions)
        #pragma omp simd               v, as before
        for n:
          C[R*m_o + 0][n] += A[R*m_o + 0][k] * B[k][n]    the strip-mined remainders,
          ...                                             unrolled by isl
          C[R*m_o + R-1][n] += A[R*m_o + R-1][k] * B[k][n]

:mod:`codegen.register_arrays` then keeps the ``R`` rows in local arrays across the
``k`` loop. When ``v`` is itself a reduction (``y(b, o) +=! x(b, i) * W(o, i)``: dot
products), two free members are unrolled below it: ``2 x R/2`` dot products, each a
scalar accumulator of an ``omp simd reduction``, share their loads of ``x`` and ``W``.

The chosen free members (:func:`_reuse_members`) are those that the most vector
loads do not depend on: unrolling them reuses those loads. Full-tile isolation
(:mod:`polyhedral.full_tiles`) gives the unrolled rows of full tiles no guards.

Why results cannot change: the new bands are a permutation of a strip-mined copy of
``P`` and ``v``, plus a sequence putting initialisations first; they are applied only
when every validity dependence of the subtree stays lexicographically non-negative
under the new schedule (checked with isl, not assumed from the band's
permutability). Each output element still sums its terms in the same ``k`` order.
"""

from __future__ import annotations

from collections.abc import Sequence

import islpy as isl

from polyhedral.full_tiles import isolate_full_tiles
from polyhedral.mapping import constant_members, member_spans
from polyhedral.schedule import band_coincidence
from tc.ir import nodes as ir

_T = isl.schedule_node_type
#: The most accumulators per lane: more would spill AVX-512's 32 vector registers.
MAX_ACCUMULATORS = 16
#: The most ``omp simd reduction`` accumulators of one loop: with more, GCC (12) keeps
#: its per-lane copies in memory and the loop runs ten times slower (measured).
MAX_REDUCTIONS = 4


def _member_vars(node: isl.ScheduleNode, m: int, fn: ir.Function) -> dict[str, set[str]]:
    """Per statement below the band: the index variables that member ``m`` involves."""
    out: dict[str, set[str]] = {}
    upa = node.band_get_partial_schedule().get_at(m)
    for part in _maps(isl.UnionMap.from_union_pw_aff(upa)):
        name = part.get_tuple_name(isl.dim_type.in_)
        st = fn.stages[int(name[1:].removesuffix("_init"))]
        dims = st.lhs_dims if name.endswith("_init") else st.domain
        out[name] = {d.name for i, d in enumerate(dims)
                     if part.involves_dims(isl.dim_type.in_, i, 1)}
    return out


def _reads(fn: ir.Function, name: str) -> list[set[str]]:
    """The index variables of each read of an update statement ``S<k>``."""
    if name.endswith("_init"):
        return []
    st = fn.stages[int(name[1:])]
    return [{n.name for i in r.indices for n in ir.walk(i)
             if isinstance(n, ir.Var) and n.kind == "index"}
            for r in ir.walk(st.rhs) if isinstance(r, ir.Read)]


def _reuse_members(band: isl.ScheduleNode, vector: isl.ScheduleNode, fn: ir.Function,
                   candidates: Sequence[int]) -> list[tuple[int, int]]:
    """The candidate members of ``band``, each with how many reads along the vector
    loop it leaves invariant (loads that unrolling it reuses), best first."""
    lanes = _member_vars(vector, 0, fn)
    scored = []
    for m in candidates:
        along = _member_vars(band, m, fn)
        reuse = 0
        for name, lane_vars in lanes.items():
            for r in _reads(fn, name):
                if r & lane_vars and not r & along.get(name, set()):
                    reuse += 1
        scored.append((reuse, m))
    scored.sort(key=lambda t: (-t[0], -t[1]))
    return [(m, reuse) for reuse, m in scored]


def _factors(count: int, tile: int) -> list[int]:
    """How ``tile`` accumulators split over ``count`` unrolled members (powers of two,
    the first member taking the larger share)."""
    if count == 1:
        return [tile]
    inner = max(1, tile // 2)
    return [tile // inner, inner]


def _single(upa: isl.UnionPwAff) -> isl.MultiUnionPwAff:
    return isl.MultiUnionPwAff.from_union_pw_aff(upa)


def _concat(parts: Sequence[isl.UnionPwAff]) -> isl.MultiUnionPwAff:
    out = _single(parts[0])
    for p in parts[1:]:
        out = out.flat_range_product(_single(p))
    return out


def _legal(band: isl.ScheduleNode, bands: Sequence[Sequence[isl.UnionPwAff]],
           deps: isl.UnionMap) -> bool:
    """Whether the subtree at ``band`` may run with ``bands`` (in order) instead of its
    band and the vector band: every dependence between its statements, under the
    prefix schedule followed by the new members, is lexicographically non-negative
    (a zero distance is ordered by the unchanged subtree below)."""
    domain = band.get_domain()
    local = deps.intersect_domain(domain).intersect_range(domain)
    if local.is_empty():
        return True
    sched = band.get_prefix_schedule_union_map()
    new = isl.UnionMap.from_multi_union_pw_aff(_concat([u for b in bands for u in b]))
    sched = sched.flat_range_product(new) if sched.n_map() and not _empty_range(sched) \
        else new
    distances = local.apply_domain(sched).apply_range(sched)
    return all(m.is_subset(isl.Map.lex_le(m.get_space().domain()))
               for m in _maps(distances))


def _maps(u: isl.UnionMap) -> list[isl.Map]:
    """The maps of ``u`` (a list, not a callback: isl swallows Python exceptions)."""
    lst = u.get_map_list()
    return [lst.get_at(i) for i in range(lst.n_map())]


def _empty_range(sched: isl.UnionMap) -> bool:
    return all(m.dim(isl.dim_type.out) == 0 for m in _maps(sched))


def _constant_statements(parts: Sequence[isl.UnionPwAff], domain: isl.UnionSet
                         ) -> isl.UnionSet:
    """The statements of ``domain`` on which every member in ``parts`` is constant
    (an update's initialisation, on the reduction members)."""
    out = domain.empty(domain.get_space())
    sets = [domain.get_set_list().get_at(i) for i in range(domain.n_set())]
    for d in sets:
        name = d.get_tuple_name()
        constant = True
        for upa in parts:
            lst = upa.get_pw_aff_list()
            for j in range(lst.n_pw_aff()):
                pa = lst.get_at(j)
                if pa.get_domain_space().get_tuple_name(isl.dim_type.set) != name:
                    continue
                n_in = pa.dim(isl.dim_type.in_)
                if pa.involves_dims(isl.dim_type.in_, 0, n_in):
                    constant = False
        if constant:
            out = out.union(isl.UnionSet.from_set(d))
    return out


def register_tile(mark: isl.ScheduleNode, deps: isl.UnionMap, fn: ir.Function,
                  accumulators: int, context: isl.Set | None,
                  outer_lanes: bool = False) -> isl.ScheduleNode:
    """The subtree of the vector ``mark`` (``cpu.vector`` or ``cpu.reduce``, whose
    parent is the band ``P``) register-tiled with ``accumulators`` per lane, when it
    is a contraction that gains from it and the new order is legal; returns the node
    at ``P``'s position (``mark``'s parent), changed or not."""
    band = mark.parent()
    if band.get_type() != _T.band or accumulators < 2:
        return band
    vector = mark.child(0)
    reduce = mark.mark_get_id().get_name() == "cpu.reduce"
    n = band.band_n_member()
    free = band_coincidence(band, deps)
    const = constant_members(band)
    spans = member_spans(band, context)
    wide = [m for m in range(n) if free[m] and not const[m]
            and (spans[m] is None or spans[m] >= 2)]
    nonfree = [m for m in range(n) if not free[m] and not const[m]]
    if not wide or (not reduce and not nonfree):
        return band  # no reduction to keep the accumulators across, or nothing to unroll
    ranked = [(m, r) for m, r in _reuse_members(band, vector, fn, wide) if r > 0]
    chosen = [m for m, _ in ranked[:2 if reduce else 1]]
    if not chosen:
        return band
    limit = MAX_REDUCTIONS if reduce else MAX_ACCUMULATORS
    factors = _factors(len(chosen), min(accumulators, limit))
    factors = [f if spans[m] is None else min(f, spans[m]) for m, f in zip(chosen, factors,
                                                                          strict=True)]
    if all(f < 2 for f in factors):
        return band
    mupa = band.band_get_partial_schedule()
    outer, unrolled = [], []
    for m in range(n):
        if m in nonfree:
            continue
        upa = mupa.get_at(m)
        if m in chosen:
            f = factors[chosen.index(m)]
            outer.append(upa.scale_down_val(isl.Val.int_from_si(upa.get_ctx(), f)).floor())
            unrolled.append(upa.mod_val(isl.Val.int_from_si(upa.get_ctx(), f)))
        else:
            outer.append(upa)
    middle = [mupa.get_at(m) for m in nonfree]
    lanes = [vector.band_get_partial_schedule().get_at(0)]
    # An update's initialisation (constant on the reduction loops) runs before the
    # SIMD loop, not under an ``if (k == 0)`` in it, where it would keep the
    # accumulators in memory and the loop from vectorising: a sequence above it.
    domain = band.get_domain()
    # Likewise a statement using the finished reduction (``fmax(y + b, 0)``) runs after.
    constant = _constant_statements(lanes if reduce else middle, domain)
    updates = domain.subtract(constant)
    finals = deps.intersect_domain(updates).intersect_range(constant).range()
    inits = constant.subtract(finals)
    groups = [g for g in (inits, updates, finals) if not g.is_empty()]
    split = len(groups) > 1 and not updates.is_empty()
    order: list[isl.UnionPwAff] = []
    if split:
        ctx = band.get_ctx()
        position = [isl.UnionPwAff.val_on_domain(g, isl.Val.int_from_si(ctx, i))
                    for i, g in enumerate(groups)]
        for p in position[1:]:
            position[0] = position[0].union_add(p)
        order = [position[0]]
    # With constant strides, the SIMD loop goes outside the reduction: each lane keeps
    # its rows in scalars (vector registers, by GCC's outer-loop vectorisation, which
    # gives up on strides passed as arguments).
    # GCC vectorises an outer loop around one inner loop only: not a convolution's three.
    outer_lanes = outer_lanes and len(middle) == 1 and not reduce
    bands = ([outer, order, lanes, middle, unrolled] if outer_lanes
             else [outer, order, middle, lanes, unrolled])
    try:
        legal = _legal(band, [b for b in bands if b], deps)
    except isl.Error:  # an analysis isl cannot do: keep the kernel as it is
        legal = False
    if not legal:
        return band
    ctx = band.get_ctx()
    mark_id = mark.mark_get_id()
    node = band.delete().delete().delete()  # P, the mark and v; at v's child now
    node = node.insert_partial_schedule(_concat(unrolled))
    for i in range(len(unrolled)):
        node = node.band_member_set_ast_loop_type(i, isl.ast_loop_type.unroll)
    if middle and outer_lanes:
        node = node.insert_partial_schedule(_concat(middle))
    node = node.insert_partial_schedule(_concat(lanes))
    node = node.band_member_set_coincident(0, int(not reduce))
    node = node.band_member_set_ast_loop_type(0, isl.ast_loop_type.atomic)
    node = node.insert_mark(isl.Id(mark_id.get_name(), context=ctx))
    if middle and not outer_lanes:
        node = node.insert_partial_schedule(_concat(middle))
    if split:
        node = _sequence(node, groups)
        if reduce and not middle:
            # The other statements' copies of the reduction loop are single iterations:
            # no SIMD loop there (isl emits no loop for them).
            for i, g in enumerate(groups):
                if g is not updates:
                    node = node.child(i).child(0).delete().parent().parent()
    node = node.insert_partial_schedule(_concat(outer))
    node = node.band_set_permutable(1)
    for i, c in enumerate(band_coincidence(node, deps)):
        node = node.band_member_set_coincident(i, int(c))
    # Strips whose rows all exist are generated apart: their unrolled rows need no
    # guard (a guard in the SIMD loop would keep it from vectorising).
    return isolate_full_tiles(node)


def _sequence(node: isl.ScheduleNode, groups: Sequence[isl.UnionSet]) -> isl.ScheduleNode:
    """A sequence above ``node`` running the statements of each group in turn."""
    filters = isl.UnionSetList.alloc(node.get_ctx(), len(groups))
    for g in groups:
        filters = filters.add(g)
    return node.insert_sequence(filters)


def find_vector_marks(node: isl.ScheduleNode) -> list[tuple[int, ...]]:
    """The child paths from ``node`` to each ``cpu.vector``/``cpu.reduce`` mark below."""
    out: list[tuple[int, ...]] = []

    def walk(n: isl.ScheduleNode, path: tuple[int, ...]) -> None:
        if n.get_type() == _T.mark and n.mark_get_id().get_name() in ("cpu.vector", "cpu.reduce"):
            out.append(path)
            return
        for i in range(n.n_children()):
            walk(n.child(i), (*path, i))

    walk(node, ())
    return out


def register_tile_kernel(node: isl.ScheduleNode, deps: isl.UnionMap, fn: ir.Function,
                         accumulators: int, context: isl.Set | None,
                         outer_lanes: bool = False) -> isl.ScheduleNode:
    """Register-tile every vector loop of the kernel at ``node`` (see
    :func:`register_tile`); returns the node at ``node``'s position."""
    for path in find_vector_marks(node):
        if not path:
            continue  # the mark is the kernel's top: its band is outside the kernel
        n = node
        for i in path:
            n = n.child(i)
        n = register_tile(n, deps, fn, accumulators, context, outer_lanes)
        # Back up to the kernel's node: the tiled subtree has as many levels above
        # the mark's old position as before (P's position is returned).
        for _ in range(len(path) - 1):
            n = n.parent()
        node = n
    return node


__all__ = ["MAX_ACCUMULATORS", "MAX_REDUCTIONS", "find_vector_marks", "register_tile",
           "register_tile_kernel"]
