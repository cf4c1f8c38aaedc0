"""Full-tile isolation: CPU point loops with constant trip counts.

A kernel compiled for every shape (symbolic sizes) tiles ``0 <= m < M`` into
``for (m_t ...) for (m_p = 0; m_p <= min(31, M - 32*m_t - 1); ...)``: the point loop's
trip count is unknown, so the C compiler vectorises it with a remainder loop and
guards every unrolled copy of a register tile, and keeps the register tile's
accumulators in memory. Most tiles are full, though: isl's ``isolate`` AST option
on the band above the point loops makes it generate the full tiles separately, where
every point loop runs from 0 to its tile size minus one (a constant), and the
partial tiles at the edges with the general bounds (the PPCG technique).

Safety model: the isolate option only changes how the AST generator splits the
iterations of a band into loops; every iteration is generated exactly once, in the
same order, whatever set is isolated. So a wrong or empty "full tiles" set costs
speed, never results, and anything this module cannot analyse is left alone.

The full tiles of a band ``B`` (prefix schedule ``O``): the tile coordinates
``(o, b)`` that statements reach, minus those of a point of the tile's box outside a
statement's domain, where the box of a tile is every integer point that the
schedule's affine expressions, evaluated without the domain, send there, within the
domain's bounds on the dimensions those expressions do not use (inner loops).
"""

from __future__ import annotations

import islpy as isl

_T = isl.schedule_node_type


def _affs(mupa: isl.MultiUnionPwAff, name: str) -> list[isl.Aff] | None:
    """The single affine expression of each member on statement ``name`` (None when a
    member is piecewise there)."""
    out: list[isl.Aff] = []
    for i in range(mupa.dim(isl.dim_type.out)):
        upa = mupa.get_at(i).get_pw_aff_list()
        pieces = [aff for pa in (upa.get_at(j) for j in range(upa.n_pw_aff()))
                  if pa.get_domain_space().get_tuple_name(isl.dim_type.set) == name
                  for _set, aff in pa.get_pieces()]
        if len(pieces) != 1:
            return None
        out.append(pieces[0])
    return out


def full_tiles(node: isl.ScheduleNode) -> isl.Set | None:
    """The full tiles of the band at ``node``, as a set over its prefix schedule
    followed by its members (None when they cannot be computed)."""
    sched = node.get_prefix_schedule_multi_union_pw_aff().flat_range_product(
        node.band_get_partial_schedule())
    n = sched.dim(isl.dim_type.out)
    domain = node.get_domain()
    sets = [domain.get_set_list().get_at(i) for i in range(domain.n_set())]
    reached: isl.Set | None = None
    partial: isl.Set | None = None
    for d in sets:
        affs = _affs(sched, d.get_tuple_name())
        if affs is None:
            return None
        if n == 0:
            return None
        sigma = isl.Map.from_aff(affs[0])
        for a in affs[1:]:
            sigma = sigma.flat_range_product(isl.Map.from_aff(a))
        image = d.apply(sigma)
        # The dimensions the tiles do not cover (inner loops) keep the domain's own
        # bounds: only a tiled dimension can make a tile partial.
        rest = d
        for i in range(d.dim(isl.dim_type.set)):
            if any(a.involves_dims(isl.dim_type.in_, i, 1) for a in affs):
                rest = rest.eliminate(isl.dim_type.set, i, 1)
        box = sigma.intersect_range(image).domain().intersect(rest)
        cut = box.subtract(d).apply(sigma)
        image = image.align_params(cut.get_space())
        reached = image if reached is None else reached.align_params(image.get_space()).union(
            image.align_params(reached.get_space()))
        partial = cut if partial is None else partial.align_params(cut.get_space()).union(
            cut.align_params(partial.get_space()))
    if reached is None or partial is None:
        return None
    return reached.subtract(partial.align_params(reached.get_space())).coalesce()


def isolate_full_tiles(node: isl.ScheduleNode) -> isl.ScheduleNode:
    """The band at ``node`` with its full tiles isolated (see the module docstring);
    unchanged when none can be found or it has options of its own."""
    if node.get_type() != _T.band or node.band_n_member() == 0:
        return node
    if not node.band_get_ast_build_options().is_empty():
        return node  # an atomic parallel loop: keep it one loop
    try:
        full = full_tiles(node)
    except isl.Error:
        return node
    if full is None or full.is_empty():
        return node
    outer = node.get_prefix_schedule_multi_union_pw_aff().dim(isl.dim_type.out)
    isolated = isl.Map.from_range(full).move_dims(isl.dim_type.in_, 0, isl.dim_type.out,
                                                  0, outer)
    option = isolated.wrap().set_tuple_name("isolate")
    return node.band_set_ast_build_options(isl.UnionSet.from_set(option))


__all__ = ["full_tiles", "isolate_full_tiles"]
