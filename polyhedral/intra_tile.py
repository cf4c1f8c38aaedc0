"""Re-scheduling inside tiles with the intra-tile options.

After tiling, the point loops (and whatever lies below them) only have to order the
instances of one tile: the dependences that matter are those between instances of
the same tile. When the intra-tile options (fusion strategy, skewing, orthant) differ
from the outer ones, isl schedules each tile's statements again under those
dependences and the intra-tile options, and the result replaces the subtree below
the tile band. Dependences between different tiles stay ordered by the tile band,
which comes from the valid outer schedule.
"""

from __future__ import annotations

import islpy as isl

from polyhedral.dependences import Dependences
from polyhedral.schedule import schedule_domain
from polyhedral.scop import Scop
from tc.options import MappingOptions

_T = isl.schedule_node_type


def _graft(dst: isl.ScheduleNode, src: isl.ScheduleNode) -> isl.ScheduleNode:
    """Copy the subtree at ``src`` in place of the leaf ``dst``; returns the node at
    ``dst``'s position."""
    t = src.get_type()
    if t == _T.leaf:
        return dst
    if t == _T.domain:
        return _graft(dst, src.child(0))
    if t == _T.band:
        dst = dst.insert_partial_schedule(src.band_get_partial_schedule())
        dst = dst.band_set_permutable(src.band_get_permutable())
        for i in range(src.band_n_member()):
            dst = dst.band_member_set_coincident(i, src.band_member_get_coincident(i))
        return _graft(dst.child(0), src.child(0)).parent()
    if t == _T.filter:
        dst = dst.insert_filter(src.filter_get_filter())
        return _graft(dst.child(0), src.child(0)).parent()
    if t in (_T.sequence, _T.set):
        filters = isl.UnionSetList.alloc(src.get_ctx(), src.n_children())
        for i in range(src.n_children()):
            filters = filters.add(src.child(i).filter_get_filter())
        dst = dst.insert_sequence(filters) if t == _T.sequence else dst.insert_set(filters)
        for i in range(src.n_children()):
            dst = _graft(dst.child(i).child(0), src.child(i).child(0)).parent().parent()
        return dst
    raise ValueError(f"cannot graft a schedule node of type {t}")


def _differs(options: MappingOptions) -> bool:
    return (options.intra_fusion != options.outer_fusion
            or options.intra_allow_skewing != options.outer_allow_skewing
            or options.intra_positive_orthant != options.outer_positive_orthant)


def reschedule_tiles(scop: Scop, deps: Dependences, tiled: isl.Schedule,
                     options: MappingOptions, tile_bands: int = 1) -> isl.Schedule:
    """Re-schedule below every tile band (the outermost band of each path of a tiled
    schedule) with the intra-tile options; unchanged if they equal the outer ones."""
    if not _differs(options) or not any(options.tile_sizes):
        return tiled

    def visit(node: isl.ScheduleNode) -> isl.ScheduleNode:
        if node.get_type() == _T.band and node.band_n_member() > 0:
            point = node.child(0)
            if point.get_type() != _T.band:
                return node
            domain = point.get_domain()
            prefix = point.get_prefix_schedule_multi_union_pw_aff()

            def same_tile(deps_map: isl.UnionMap) -> isl.UnionMap:
                inside = deps_map.intersect_domain(domain).intersect_range(domain)
                return inside.eq_at_multi_union_pw_aff(prefix)

            new = schedule_domain(
                scop.ctx, domain, scop.context, same_tile(deps.validity),
                same_tile(deps.coincidence), options.intra_fusion,
                options.intra_allow_skewing, options.intra_positive_orthant)
            if new is None:
                return node
            point = _graft(point.cut(), new.get_root())
            return point.parent()
        for i in range(node.n_children()):
            node = visit(node.child(i)).parent()
        return node

    return visit(tiled.get_root()).get_schedule()
