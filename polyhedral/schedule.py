"""Scheduling a scop with isl, and tiling the result.

:func:`compute_schedule` runs isl's scheduler (``ScheduleConstraints.compute_schedule``)
with validity = proximity = all dependences and coincidence = all but the reduction
dependences, under the scop's context (fixed sizes included). The fusion strategy
and the coefficient restrictions of the *outer* options are mapped onto isl's
context options (set for the call and restored after it):

``Max``
    ``schedule_whole_component=1`` and ``schedule_separate_components=0``: one
    Pluto-like band problem for all statements at once, unrelated ones included, so
    isl fuses everything it can (the original TC's ``FuseAll`` merge callback).
``Min``
    ``schedule_serialize_sccs=1``: every strongly connected component of the
    dependence graph (here: every statement) gets its own sequence child.
``Preserve3Coincident``
    Max fusion if it keeps, for every statement, as many leading coincident members
    in its outermost band as it has when scheduled alone (``Min``), capped at three;
    else isl's incremental clustering (``schedule_whole_component=0``) with
    ``schedule_maximize_coincidence=1``, which merges clusters only when that does
    not lose coincidence, under the same check; else ``Min``. (The original TC decides
    this merge by merge in a callback that upstream isl does not have; the result is
    the same whenever fusing all or nothing is the right answer.)
``allowSkewing=False``
    ``schedule_max_coefficient=1``, and the result is checked: every band member of
    every statement must be a single loop variable with coefficient +-1 (the original
    TC's ``unit_max_var_coefficient_sum``, which upstream isl lacks).
``positiveOrthant=True``
    Checked likewise: no negative loop-variable coefficient (the original TC's
    ``nonneg_var_coefficient``, which upstream isl lacks; isl already prefers
    non-negative coefficients, so the check rarely fails).

A schedule that fails a check is replaced by the next one of the strategy's chain
(``Max``: whole component, clustering, Min; ``Min``: Min), and finally by the
original textual order (one band per statement, always valid and unskewed).

Intra-tile options (``intra_fusion``, ``intra_allow_skewing``,
``intra_positive_orthant``) re-schedule what lies below each tile band when they
differ from the outer ones (``polyhedral.intra_tile``).

Band flags. After scheduling, the coincidence flags of every band are recomputed
exactly against *all* dependences, reductions included: a member is coincident
iff every dependence not carried by the outer schedule nor by the earlier members of
its band has distance zero on it, so coincident members may run in parallel as they
are. :func:`reduction_members` tells which members only a reduction prevents from
being coincident (candidates for a tree reduction).

:func:`tile_schedule` tiles the outermost band of every root-to-leaf path.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import islpy as isl

from polyhedral.bounded import TimedOut, bounded_text
from polyhedral.dependences import Dependences
from polyhedral.scop import Scop
from tc.options import MappingOptions

__all__ = [
    "compute_schedule",
    "schedule_domain",
    "tile_schedule",
    "schedule_str",
    "band_coincidence",
    "reduction_members",
    "outer_coincidence",
    "statement_names",
    "check_schedule",
    "respects_coefficient_limits",
]

_BAND = isl.schedule_node_type.band
log = logging.getLogger(__name__)

# The scheduler's options of each strategy (isl option name without "schedule_").
_MAX = {"whole_component": 1, "separate_components": 0, "serialize_sccs": 0,
        "maximize_coincidence": 0}
# Clustering counts coincidence against all dependences, as the original TC does, so
# that isl merges two clusters only when the merged band keeps their parallelism.
_CLUSTER = {"whole_component": 0, "separate_components": 1, "serialize_sccs": 0,
            "maximize_coincidence": 1, "coincidence_all": 1}
_MIN = {"whole_component": 0, "separate_components": 1, "serialize_sccs": 1,
        "maximize_coincidence": 0}
_OPTIONS = ("whole_component", "separate_components", "serialize_sccs",
            "maximize_coincidence", "max_coefficient", "max_constant_term")


@contextmanager
def _isl_options(ctx: isl.Context, values: dict[str, int]) -> Iterator[None]:
    """Set ``schedule_*`` options of ``ctx`` for the duration of the block."""
    saved = {n: getattr(ctx, f"get_schedule_{n}")() for n in values}
    try:
        for n, v in values.items():
            getattr(ctx, f"set_schedule_{n}")(v)
        yield
    finally:
        for n, v in saved.items():
            getattr(ctx, f"set_schedule_{n}")(v)


#: The largest constant term (shift) of a schedule isl may search for (see
#: _isl_schedule).
MAX_CONSTANT_TERM = 16
#: Scheduling problems of this many statements or more run with a deadline
#: (polyhedral.bounded); smaller ones never ran away and stay in the process.
BOUNDED_STATEMENTS = 4


def _isl_schedule(ctx: isl.Context, domain: isl.UnionSet, context: isl.Set,
                  validity: isl.UnionMap, coincidence: isl.UnionMap,
                  values: dict[str, int]) -> isl.Schedule | None:
    constraints = (
        isl.ScheduleConstraints.on_domain(domain)
        .set_context(context)
        .set_validity(validity)
        .set_proximity(validity)
        .set_coincidence(validity if values.get("coincidence_all") else coincidence)
    )
    # Bounded constant terms: with whole components and fixed sizes, isl's search for
    # shifts ran for minutes (fuzz finding ce25c6d15c30: a compile that never ended,
    # at 32 as at no bound, 0.7 s at 16). A try that would need a longer shift fails
    # like an infeasible one; the next is taken, the textual order last.
    values = {"max_constant_term": MAX_CONSTANT_TERM, **values}
    with _isl_options(ctx, {n: values[n] for n in _OPTIONS if n in values}):
        if domain.n_set() < BOUNDED_STATEMENTS:
            try:
                return constraints.compute_schedule()
            except isl.Error:
                return None

        # With several statements isl's search ran for minutes on some programs,
        # whatever the bounds (fuzz findings 21fcbbd5b946: clustering; 89c7c2490818:
        # whole components, fixed sizes): a deadline, in a forked child (5 ms).
        def compute() -> str | None:
            try:
                return str(constraints.compute_schedule())
            except isl.Error:
                return None

        try:
            text = bounded_text(compute)
        except TimedOut as e:
            log.info("isl's scheduler gave up: %s", e)
            return None
        return None if text is None else isl.Schedule.read_from_str(ctx, text)


# -- walking schedule trees ------------------------------------------------------------


def _nodes(node: isl.ScheduleNode) -> Iterator[isl.ScheduleNode]:
    """``node`` and its descendants, pre-order."""
    yield node
    for i in range(node.n_children()):
        yield from _nodes(node.child(i))


def statement_names(s: isl.UnionSet) -> tuple[str, ...]:
    """The statement (tuple) names of a union set, sorted."""
    names: list[str] = []
    s.foreach_set(lambda x: names.append(x.get_tuple_name()))
    return tuple(sorted(names))


def _outer_bands(node: isl.ScheduleNode) -> Iterator[isl.ScheduleNode]:
    """The first band with members on every path down from ``node``."""
    if node.get_type() == _BAND and node.band_n_member() > 0:
        yield node
        return
    for i in range(node.n_children()):
        yield from _outer_bands(node.child(i))


# -- coincidence and permutability ---------------------------------------------------------


def _distances(node: isl.ScheduleNode, deps: isl.UnionMap) -> isl.Set | None:
    """Distance vectors, in the band's members, of the dependences active at the band."""
    dom = node.get_domain()
    active = deps.intersect_domain(dom).intersect_range(dom)
    if node.get_schedule_depth() > 0:
        active = active.eq_at_multi_union_pw_aff(node.get_prefix_schedule_multi_union_pw_aff())
    partial = node.band_get_partial_schedule_union_map()
    dist = active.apply_domain(partial).apply_range(partial).deltas()
    if dist.is_empty():
        return None
    return isl.Set.from_union_set(dist)


def band_coincidence(node: isl.ScheduleNode, deps: isl.UnionMap) -> tuple[bool, ...]:
    """For each member of the band at ``node``: is it coincident w.r.t. ``deps``?

    A member is coincident when every dependence of ``deps`` between instances that
    the outer schedule and the earlier members of the band do not separate has
    distance zero on it.
    """
    n = node.band_n_member()
    dist = _distances(node, deps)
    if dist is None:
        return (True,) * n
    flags = []
    for i in range(n):
        zero = dist.fix_val(isl.dim_type.set, i, 0)
        flags.append(dist.is_subset(zero))
        dist = zero
    return tuple(flags)


def _band_permutable(node: isl.ScheduleNode, deps: isl.UnionMap) -> bool:
    dist = _distances(node, deps)
    if dist is None:
        return True
    return all(
        dist.is_subset(dist.lower_bound_val(isl.dim_type.set, i, 0))
        for i in range(node.band_n_member())
    )


def lex_nonnegative(dist: isl.Set) -> bool:
    """Whether every vector of ``dist`` is lexicographically >= 0 (a schedule whose
    dependence distances are ``dist`` runs every source no later than its sink)."""
    for i in range(dist.dim(isl.dim_type.set)):
        if not dist.upper_bound_val(isl.dim_type.set, i, isl.Val.int_from_si(
                dist.get_ctx(), -1)).is_empty():
            return False
        dist = dist.fix_val(isl.dim_type.set, i, 0)
        if dist.is_empty():
            return True
    return True


def reduction_members(node: isl.ScheduleNode, deps: Dependences) -> tuple[bool, ...]:
    """For each member of a band: is it kept from being coincident only by reductions?"""
    exact = band_coincidence(node, deps.validity)
    relaxed = band_coincidence(node, deps.coincidence)
    return tuple(r and not e for e, r in zip(exact, relaxed, strict=True))


def _annotate(schedule: isl.Schedule, deps: isl.UnionMap, permutable: bool) -> isl.Schedule:
    """Exact coincidence flags on every band (and permutability flags if asked)."""

    def visit(node: isl.ScheduleNode) -> isl.ScheduleNode:
        if node.get_type() == _BAND and node.band_n_member() > 0:
            flags = band_coincidence(node, deps)
            if permutable:
                node = node.band_set_permutable(int(_band_permutable(node, deps)))
            for i, f in enumerate(flags):
                node = node.band_member_set_coincident(i, int(f))
        for i in range(node.n_children()):
            node = visit(node.child(i)).parent()
        return node

    # Explicit navigation rather than map_descendant_bottom_up: isl swallows the
    # exceptions of Python callbacks.
    return visit(schedule.get_root()).get_schedule()


def outer_coincidence(schedule: isl.Schedule) -> dict[str, int]:
    """For each statement: the leading coincident members of its outermost band."""
    out = {name: 0 for name in statement_names(schedule.get_domain())}
    for band in _outer_bands(schedule.get_root()):
        count = 0
        while count < band.band_n_member() and band.band_member_get_coincident(count):
            count += 1
        for name in statement_names(band.get_domain()):
            out[name] = count
    return out


# -- restrictions on coefficients ---------------------------------------------------------


def _coefficient_rows(schedule: isl.Schedule) -> Iterator[list[int]]:
    """The loop-variable coefficients of every band member of every statement piece."""
    for node in _nodes(schedule.get_root()):
        if node.get_type() != _BAND:
            continue
        mupa = node.band_get_partial_schedule()
        for i in range(node.band_n_member()):
            pas = mupa.get_at(i).get_pw_aff_list()
            for k in range(pas.n_pw_aff()):
                for _, aff in pas.get_at(k).get_pieces():
                    n = aff.dim(isl.dim_type.in_)
                    yield [aff.get_coefficient_val(isl.dim_type.in_, j).to_python()
                           for j in range(n)]


def respects_coefficient_limits(
    schedule: isl.Schedule, allow_skewing: bool, positive_orthant: bool
) -> bool:
    """Whether every band member of every statement obeys the limits of the options.

    Without skewing a member is at most one loop variable with coefficient +-1; in the
    positive orthant no loop variable has a negative coefficient.
    """
    for row in _coefficient_rows(schedule):
        if positive_orthant and any(c < 0 for c in row):
            return False
        if not allow_skewing and sum(abs(c) for c in row) > 1:
            return False
    return True


# -- the scheduler -------------------------------------------------------------------------


def _original(scop: Scop, deps: Dependences) -> isl.Schedule:
    return _annotate(scop.original_schedule, deps.validity, permutable=True)


def schedule_domain(
    ctx: isl.Context, domain: isl.UnionSet, context: isl.Set, validity: isl.UnionMap,
    coincidence: isl.UnionMap, strategy: str, allow_skewing: bool, positive_orthant: bool,
) -> isl.Schedule | None:
    """isl's schedule of ``domain`` for one fusion strategy and coefficient limits (see
    the module docstring), with exact coincidence flags; None if every try fails."""
    restrict: dict[str, int] = {}
    if not allow_skewing:
        restrict["max_coefficient"] = 1

    def run(values: dict[str, int]) -> isl.Schedule | None:
        s = _isl_schedule(ctx, domain, context, validity, coincidence, {**values, **restrict})
        if s is None:
            return None
        s = _annotate(s, validity, permutable=False)
        if not respects_coefficient_limits(s, allow_skewing, positive_orthant):
            return None
        return s

    if strategy == "Min":
        chain: list[tuple[dict[str, int], Callable[[isl.Schedule], bool] | None]] = [(_MIN, None)]
    elif strategy == "Max":
        chain = [(_MAX, None), (_CLUSTER, None), (_MIN, None)]
    else:  # Preserve3Coincident
        alone = run(_MIN)
        accept = _preserves(alone) if alone is not None else None
        chain = [(_MAX, accept), (_CLUSTER, accept)]
        if alone is not None:
            return _first(chain, run) or alone
    return _first(chain, run)


def compute_schedule(scop: Scop, deps: Dependences, options: MappingOptions) -> isl.Schedule:
    """A schedule tree of ``scop`` for the outer options (see the module docstring)."""
    s = schedule_domain(scop.ctx, scop.domain, scop.context, deps.validity, deps.coincidence,
                        options.outer_fusion, options.outer_allow_skewing,
                        options.outer_positive_orthant)
    return s if s is not None else _original(scop, deps)


def _preserves(alone: isl.Schedule) -> Callable[[isl.Schedule], bool]:
    """Accepts a schedule that keeps min(3, alone) outer coincident members per statement."""
    target = {k: min(3, v) for k, v in outer_coincidence(alone).items()}

    def accept(s: isl.Schedule) -> bool:
        got = outer_coincidence(s)
        return all(got[k] >= v for k, v in target.items())

    return accept


def _first(
    chain: Sequence[tuple[dict[str, int], Callable[[isl.Schedule], bool] | None]],
    run: Callable[[dict[str, int]], isl.Schedule | None],
) -> isl.Schedule | None:
    for values, accept in chain:
        s = run(values)
        if s is not None and (accept is None or accept(s)):
            return s
    return None


# -- tiling --------------------------------------------------------------------------------


def _tile_band(node: isl.ScheduleNode, sizes: Sequence[int],
               spans: Callable[[isl.ScheduleNode], Sequence[int | None]] | None = None
               ) -> isl.ScheduleNode:
    """Tile the band at ``node``; returns the node of the tile band (or the band)."""
    n = node.band_n_member()
    eff = [int(sizes[i]) if i < len(sizes) else 0 for i in range(n)]
    if spans is not None:
        # A member spanning no more than its tile would be one partial tile: untiled.
        eff = [0 if s is not None and s <= e else e for e, s in zip(eff, spans(node),
                                                                    strict=True)]
    if n > 1 and not node.band_get_permutable():
        eff = eff[:1] + [0] * (n - 1)  # only the first member can be strip-mined alone
    if not any(eff):
        return node
    mupa = node.band_get_partial_schedule()
    permutable = node.band_get_permutable()
    coincident = [node.band_member_get_coincident(i) for i in range(n)]
    ctx = node.get_ctx()
    tile, point = mupa, mupa
    for i, size in enumerate(eff):
        upa = mupa.get_at(i)
        if size > 0:
            t = upa.scale_down_val(isl.Val.int_from_si(ctx, size)).floor()
            tile = tile.set_at(i, t)  # tile_scale_tile_loops = 0
            point = point.set_at(i, upa.sub(t.scale_val(isl.Val.int_from_si(ctx, size))))
        else:
            tile = tile.set_at(i, upa.scale_val(isl.Val.int_from_si(ctx, 0)))
    node = node.delete().insert_partial_schedule(point)
    node = _flags(node, permutable, coincident)
    node = node.insert_partial_schedule(tile)
    return _flags(node, permutable, coincident)


def _flags(node: isl.ScheduleNode, permutable: bool, coincident: list[bool]) -> isl.ScheduleNode:
    node = node.band_set_permutable(int(permutable))
    for i, c in enumerate(coincident):
        node = node.band_member_set_coincident(i, int(c))
    return node


def tile_schedule(schedule: isl.Schedule, tile_sizes: Sequence[int],
                  spans: Callable[[isl.ScheduleNode], Sequence[int | None]] | None = None
                  ) -> isl.Schedule:
    """Tile the outermost band of every root-to-leaf path of ``schedule``.

    ``tile_sizes[i]`` is the tile size of member ``i``; 0 (or a missing size) leaves
    that member untiled, sizes beyond the band's depth are ignored. A band of ``n``
    members becomes a tile band of ``n`` members (``floor(x / size)``, or the constant
    0 for an untiled member) above a point band of ``n`` members (``x - size * tile``,
    or ``x`` itself when untiled), both with the band's permutability and
    coincidence flags. A band that is not permutable only has its first member tiled.
    ``spans`` (the CPU strategy) gives each member's number of values at the call's
    sizes: a member spanning no more than its tile size is left untiled (its one
    tile would be partial, and partial tiles get no constant loops).
    """
    if any(int(s) < 0 for s in tile_sizes):
        raise ValueError(f"tile sizes must be >= 0, got {tuple(tile_sizes)}")

    def walk(node: isl.ScheduleNode) -> isl.ScheduleNode:
        if node.get_type() == _BAND and node.band_n_member() > 0:
            return _tile_band(node, tile_sizes, spans)
        for i in range(node.n_children()):
            node = walk(node.child(i)).parent()
        return node

    return walk(schedule.get_root()).get_schedule()


# -- printing and checking -------------------------------------------------------------------


def schedule_str(schedule: isl.Schedule) -> str:
    """The schedule tree as isl's block-style YAML text."""
    printer = isl.Printer.to_str(schedule.get_ctx())
    printer = printer.set_yaml_style(isl.yaml_style.BLOCK)
    return printer.print_schedule(schedule).get_str()


def check_schedule(scop: Scop, deps: Dependences, schedule: isl.Schedule) -> list[str]:
    """What is wrong with ``schedule`` for ``scop`` (an empty list when nothing is).

    Checks that it schedules exactly the scop's domain, every instance at its own
    time, and every dependence source strictly before its sink.
    """
    problems = []
    smap = schedule.get_map().intersect_domain(scop.domain)
    if not smap.domain().is_equal(scop.domain):
        problems.append("the schedule does not cover exactly the domain")
    if not smap.is_single_valued():
        problems.append("an instance is scheduled more than once")
    if not smap.is_injective():
        problems.append("two instances are scheduled at the same time")
    before = smap.lex_lt_union_map(smap)
    broken = deps.validity.subtract(before)
    if not broken.is_empty():
        problems.append(f"dependences not respected: {broken}")
    return problems
