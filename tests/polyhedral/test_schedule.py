"""Tests of polyhedral.schedule: validity under every option, fusion, coincidence, tiling."""

from __future__ import annotations

import functools
import itertools

import islpy as isl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from poly_cases import SIZES, TEXTS, pairs, points, scop_and_deps

from polyhedral.schedule import (
    band_coincidence,
    check_schedule,
    compute_schedule,
    outer_coincidence,
    reduction_members,
    respects_coefficient_limits,
    schedule_str,
    statement_names,
    tile_schedule,
)
from tc.options import FUSION_STRATEGIES, MappingOptions

BAND = isl.schedule_node_type.band
SEQUENCE = isl.schedule_node_type.sequence
TILES = [(), (1,), (0,), (1, 1, 1), (0, 4), (3, 0, 2), (1000, 1000, 1000), (32, 32, 32, 32)]


def _options(fusion: str, skew: bool = False, orthant: bool = True) -> MappingOptions:
    return (MappingOptions().outerScheduleFusionStrategy(fusion)
            .outerScheduleAllowSkewing(skew).outerSchedulePositiveOrthant(orthant))


@functools.cache
def _scheduled(name: str, fusion: str, skew: bool = False, orthant: bool = True, fixed=False):
    scop, deps = scop_and_deps(name, SIZES[name] if fixed else None)
    return scop, deps, compute_schedule(scop, deps, _options(fusion, skew, orthant))


def _assert_valid(scop, deps, schedule: isl.Schedule) -> None:
    """The checks of the brief, written independently of check_schedule."""
    smap = schedule.get_map().intersect_domain(scop.domain)
    assert smap.domain().is_equal(scop.domain), "every instance is scheduled"
    assert smap.is_single_valued(), "... once"
    assert smap.is_injective(), "... at its own time"
    timed = deps.validity.apply_domain(smap).apply_range(smap)
    if not timed.is_empty():
        timed = isl.Map.from_union_map(timed)
        space = timed.get_space().range()
        assert timed.is_subset(isl.Map.lex_lt(space)), "sources run before sinks"
    assert check_schedule(scop, deps, schedule) == []


def _outer_bands(node: isl.ScheduleNode):
    if node.get_type() == BAND and node.band_n_member() > 0:
        yield node
        return
    for i in range(node.n_children()):
        yield from _outer_bands(node.child(i))


# -- validity ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(TEXTS))
@pytest.mark.parametrize("fusion", FUSION_STRATEGIES)
def test_schedules_and_tilings_respect_dependences(name, fusion):
    for skew, orthant in itertools.product((False, True), repeat=2):
        scop, deps, schedule = _scheduled(name, fusion, skew, orthant)
        _assert_valid(scop, deps, schedule)
        assert respects_coefficient_limits(schedule, skew, orthant)
    for tiles in TILES:
        _assert_valid(scop, deps, tile_schedule(schedule, tiles))


def _times(smap: isl.UnionMap) -> dict:
    """(statement, instance) -> time tuple, by enumeration."""
    time: dict = {}

    def record(m: isl.Map) -> None:
        n = m.dim(isl.dim_type.in_)
        for _, c in points(m.wrap()):
            time[(m.get_tuple_name(isl.dim_type.in_), c[:n])] = c[n:]

    smap.foreach_map(record)
    return time


@pytest.mark.parametrize("name", ["matmul", "softmax", "conv", "fc_relu", "indirect", "scalar"])
@pytest.mark.parametrize("fusion", FUSION_STRATEGIES)
def test_brute_force_order_with_fixed_sizes(name, fusion):
    """Enumerate instances and times: every dependence goes forward in time."""
    scop, deps, schedule = _scheduled(name, fusion, fixed=True)
    for tiles in ((), (2, 3, 1), (1, 0, 5)):
        tiled = tile_schedule(schedule, tiles)
        time = _times(tiled.get_map().intersect_domain(scop.domain))
        assert len(time) == len(points(scop.domain))
        assert len(set(time.values())) == len(time)
        for a, b in pairs(deps.validity):
            assert time[a] < time[b], (a, b)


def test_fixed_parameters_schedule():
    for name in ("matmul", "softmax", "conv"):
        scop, deps, schedule = _scheduled(name, "Preserve3Coincident", fixed=True)
        _assert_valid(scop, deps, schedule)
        _assert_valid(scop, deps, tile_schedule(schedule, (2, 2, 2)))


# -- fusion --------------------------------------------------------------------------------


def test_min_fusion_separates_the_softmax_statements():
    scop, _, schedule = _scheduled("softmax", "Min")
    seq = schedule.get_root().child(0)
    assert seq.get_type() == SEQUENCE
    children = [statement_names(seq.child(i).filter_get_filter()) for i in range(seq.n_children())]
    assert children == [(s.name,) for s in scop.statements]


def test_max_fusion_fuses_the_softmax_statements():
    scop, _, schedule = _scheduled("softmax", "Max")
    band = schedule.get_root().child(0)
    assert band.get_type() == BAND
    assert statement_names(band.get_domain()) == tuple(sorted(s.name for s in scop.statements))
    assert band_coincidence(band, scop_and_deps("softmax")[1].validity)[0]


def test_max_fuses_init_reduction_and_update():
    scop, _, schedule = _scheduled("fc_relu", "Max")
    bands = list(_outer_bands(schedule.get_root()))
    assert len(bands) == 1
    assert statement_names(bands[0].get_domain()) == ("S0", "S0_init", "S1")


def test_preserve3coincident_keeps_the_parallelism_of_each_statement():
    for name in ("softmax", "fc_relu", "matmul", "conv"):
        alone = outer_coincidence(_scheduled(name, "Min")[2])
        fused = outer_coincidence(_scheduled(name, "Preserve3Coincident")[2])
        assert all(fused[k] >= min(3, v) for k, v in alone.items()), name
    # softmax: fusing across n would lose the parallel d of e and Y; inits fuse with theirs.
    schedule = _scheduled("softmax", "Preserve3Coincident")[2]
    seq = schedule.get_root().child(0)
    groups = [statement_names(seq.child(i).filter_get_filter()) for i in range(seq.n_children())]
    assert groups == [("S0", "S0_init"), ("S1",), ("S2", "S2_init"), ("S3",)]


# -- coincidence ---------------------------------------------------------------------------


@pytest.mark.parametrize("fusion", FUSION_STRATEGIES)
def test_matmul_coincidence(fusion):
    scop, deps, schedule = _scheduled("matmul", fusion)
    band = [b for b in _outer_bands(schedule.get_root())
            if "S0" in statement_names(b.get_domain())][0]
    assert band.band_n_member() == 3
    s0 = isl.UnionSet.from_set(scop.statement("S0").domain)
    rows = band.band_get_partial_schedule_union_map().intersect_domain(s0)
    params = ", ".join(scop.params)
    expected = isl.UnionMap.read_from_str(scop.ctx, f"[{params}] -> {{ S0[m, n, k] -> [m, n, k] }}")
    assert rows.is_equal(expected.intersect_domain(s0))
    coincident = tuple(bool(band.band_member_get_coincident(i)) for i in range(3))
    assert coincident == (True, True, False)
    assert reduction_members(band, deps) == (False, False, True)
    tiled = tile_schedule(schedule, (16, 16, 16))
    for b in _outer_bands(tiled.get_root()):
        if "S0" in statement_names(b.get_domain()):
            flags = [bool(b.band_member_get_coincident(i)) for i in range(3)]
            point = b.child(0)
            assert flags == [True, True, False]
            assert [bool(point.band_member_get_coincident(i)) for i in range(3)] == flags
            assert b.band_get_permutable() and point.band_get_permutable()


def test_scalar_reduction_is_not_coincident():
    _, deps, schedule = _scheduled("scalar", "Max")
    for band in _outer_bands(schedule.get_root()):
        assert not band.band_member_get_coincident(0)
        assert reduction_members(band, deps) == (True,)


def test_transpose_is_fully_parallel():
    _, _, schedule = _scheduled("transpose", "Preserve3Coincident")
    band = next(_outer_bands(schedule.get_root()))
    assert [band.band_member_get_coincident(i) for i in range(2)] == [1, 1]


# -- tiling ------------------------------------------------------------------------------------


@pytest.mark.parametrize("sizes", [(4, 5, 3), (1, 1, 1), (7, 2, 100)])
def test_tiling_matches_isl_band_tile(sizes):
    scop, _, schedule = _scheduled("matmul", "Max")
    ctx = scop.ctx
    ctx.set_tile_scale_tile_loops(0)
    ctx.set_tile_shift_point_loops(1)
    band = schedule.get_root().child(0)
    mv = isl.MultiVal.zero(band.band_get_space())
    for i, s in enumerate(sizes):
        mv = mv.set_val(i, isl.Val.int_from_si(ctx, s))
    expected = band.band_tile(mv).get_schedule()
    ctx.set_tile_scale_tile_loops(1)
    assert tile_schedule(schedule, sizes).get_map().is_equal(expected.get_map())


def test_untiled_members_and_extra_sizes():
    _, _, schedule = _scheduled("matmul", "Max")
    assert tile_schedule(schedule, (0, 0, 0)).get_map().is_equal(schedule.get_map())
    assert tile_schedule(schedule, ()).get_map().is_equal(schedule.get_map())
    a = tile_schedule(schedule, (4, 4, 4, 4, 4)).get_map()
    assert a.is_equal(tile_schedule(schedule, (4, 4, 4)).get_map())
    b = tile_schedule(schedule, (4,))
    assert b.get_map().is_equal(tile_schedule(schedule, (4, 0, 0)).get_map())
    tile = b.get_root().child(0)
    point = tile.child(0)
    assert tile.band_n_member() == point.band_n_member() == 3
    assert "(0)" in str(tile.band_get_partial_schedule().get_at(1))
    with pytest.raises(ValueError):
        tile_schedule(schedule, (4, -1))


def test_min_fusion_tiles_every_branch():
    _, _, schedule = _scheduled("softmax", "Min")
    tiled = tile_schedule(schedule, (8, 8))
    bands = list(_outer_bands(tiled.get_root()))
    assert len(bands) == 6
    assert all(b.child(0).get_type() == BAND for b in bands)


@settings(max_examples=12, deadline=None)
@given(st.sampled_from(["matmul", "conv", "softmax", "fc_relu"]),
       st.sampled_from(FUSION_STRATEGIES),
       st.lists(st.integers(0, 6), max_size=5))
def test_random_tile_sizes_stay_valid(name, fusion, sizes):
    scop, deps, schedule = _scheduled(name, fusion)
    _assert_valid(scop, deps, tile_schedule(schedule, sizes))


# -- checks, limits, printing, options -------------------------------------------------------


def test_check_schedule_finds_wrong_orders():
    scop, deps = scop_and_deps("matmul")
    params = ", ".join(scop.params)
    wrong = isl.MultiUnionPwAff.read_from_str(
        scop.ctx, f"[{params}] -> [{{ S0_init[m, n] -> [(1)]; S0[m, n, k] -> [(0)] }}]")
    schedule = isl.Schedule.from_domain(scop.domain).insert_partial_schedule(wrong)
    problems = check_schedule(scop, deps, schedule)
    assert any("not respected" in p for p in problems)
    assert any("same time" in p for p in problems)


def test_coefficient_limits():
    ctx = isl.Context()
    skewed = isl.Schedule.read_from_str(
        ctx, '{ domain: "{ S[i, j] : 0 <= i, j < 4 }", child: { schedule: '
             '"[{ S[i, j] -> [(i + j)] }, { S[i, j] -> [(j)] }]" } }')
    negative = isl.Schedule.read_from_str(
        ctx, '{ domain: "{ S[i] : 0 <= i < 4 }", child: { schedule: "[{ S[i] -> [(-i)] }]" } }')
    assert not respects_coefficient_limits(skewed, False, True)
    assert respects_coefficient_limits(skewed, True, True)
    assert not respects_coefficient_limits(negative, True, True)
    assert respects_coefficient_limits(negative, True, False)
    assert respects_coefficient_limits(negative, False, False)


def test_scheduling_restores_the_isl_options():
    scop, deps = scop_and_deps("softmax")
    before = (scop.ctx.get_schedule_serialize_sccs(), scop.ctx.get_schedule_whole_component(),
              scop.ctx.get_schedule_max_coefficient())
    for fusion in FUSION_STRATEGIES:
        compute_schedule(scop, deps, _options(fusion))
    after = (scop.ctx.get_schedule_serialize_sccs(), scop.ctx.get_schedule_whole_component(),
             scop.ctx.get_schedule_max_coefficient())
    assert before == after


def test_schedule_str():
    _, _, schedule = _scheduled("matmul", "Max")
    text = schedule_str(tile_schedule(schedule, (32, 32, 32)))
    assert "domain:" in text and "schedule:" in text and "coincident: [ 1, 1, 0 ]" in text
