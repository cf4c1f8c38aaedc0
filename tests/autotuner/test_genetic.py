"""The genetic search on formulas instead of kernels: selection, crossover, mutation,
elites, re-randomisation, stopping, reproducibility."""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass

import pytest

import tc
from autotuner.genetic import (
    MIN_CANDIDATES_FOR_BREEDING,
    GeneticSearch,
    Scored,
    crossover,
    fitness,
    mutate,
    select,
)
from autotuner.space import Parameter, SearchSpace
from codegen.launch import CUDA_LIMITS
from tc.options import MappingOptions

LANG = "def matmul(float(M, K) A, float(K, N) B) -> (C) { C(m, n) +=! A(m, k) * B(k, n) }"


@dataclass(frozen=True)
class Out:
    time: float | None
    status: str = "ok"


def _space() -> SearchSpace:
    fn = tc.define(LANG, backend="reference")["matmul"].ir
    return SearchSpace.build(fn, {"M": 256, "K": 128, "N": 64}, min_threads=64)


def _scored(time: float | None, tag: int = 0) -> Scored:
    return Scored((tag,), MappingOptions("naive").unroll(tag + 1), Out(time))


def test_fitness_is_inverse_time() -> None:
    assert fitness(0.5) == 2.0
    assert fitness(None) == 0.0


def test_selection_is_proportional_to_fitness() -> None:
    pool = [_scored(1.0, 0), _scored(1.0, 1), _scored(2.0, 2), _scored(None, 3)]
    chosen = select(pool, 2500, random.Random(0))
    counts = Counter(s.genome[0] for s in chosen)
    # fitness 1 : 1 : 0.5 : 0 -> 1000 : 1000 : 500 : 0 (stochastic universal sampling
    # hits the expected counts within one).
    assert abs(counts[0] - 1000) <= 1 and abs(counts[1] - 1000) <= 1
    assert abs(counts[2] - 500) <= 1
    assert counts[3] == 0


def test_selection_of_invalid_only_is_empty() -> None:
    assert select([_scored(None), _scored(None, 1)], 3, random.Random(0)) == []


def test_crossover_takes_each_parameter_from_one_of_three_parents() -> None:
    parents = [(0,) * 30, (1,) * 30, (2,) * 30]
    rng = random.Random(3)
    seen = Counter()
    for _ in range(200):
        child = crossover(parents, rng)
        assert len(child) == 30 and set(child) <= {0, 1, 2}
        seen.update(child)
    for parent in range(3):  # each parent gives about a third of the genes
        assert abs(seen[parent] / 6000 - 1 / 3) < 0.03


def _disjoint_space(n: int) -> SearchSpace:
    """A space whose choices never contain the genome (0, ..., 0): a gene changes iff it
    was redrawn."""
    params = tuple(Parameter(f"p{i}", (10, 11, 12)) for i in range(n))
    return SearchSpace(params, 1, CUDA_LIMITS, 1)


@pytest.mark.parametrize("rate", [0.0, 0.07, 0.5, 1.0])
def test_mutation_redraws_each_parameter_at_the_rate(rate: float) -> None:
    space = _disjoint_space(50)
    rng = random.Random(7)
    changed = 0
    for _ in range(200):
        child = mutate((0,) * 50, space, rate, rng)
        changed += sum(1 for v in child if v != 0)
        assert all(v == 0 or v in (10, 11, 12) for v in child)
    assert abs(changed / 10000 - rate) < 0.02


def _cost(options: MappingOptions) -> Out:
    """A smooth synthetic cost: best at tile (16, 8), 128 threads, unroll 4."""
    tiles = (options.tile_sizes + (0, 0))[:2]
    cost = 1.0
    cost += abs(math.log2(max(tiles[0], 1)) - 4) + abs(math.log2(max(tiles[1], 1)) - 3)
    cost += abs(math.log2(math.prod(options.threads)) - 7)
    cost += abs(math.log2(options.unroll_factor) - 2)
    if options.match_library_calls:  # "crashes"
        return Out(None, "crash")
    return Out(cost * 1e-3)


def _evaluator(log: list):
    def evaluate(candidates, report):
        log.append(list(candidates))
        for i, o in enumerate(candidates):
            report(i, _cost(o))

    return evaluate


def _search(seed: int | None = 1, **kwargs) -> GeneticSearch:
    settings = {"pop_size": 12, "generations": 8, "crossover_rate": 0.8, "mutation_rate": 0.1,
                "number_elites": 2} | kwargs
    return GeneticSearch(_space(), seed=seed, **settings)


def test_search_improves_on_the_starting_options() -> None:
    calls: list = []
    generations = []
    search = _search()
    best = search.run([MappingOptions("naive")], _evaluator(calls),
                      on_generation=generations.append)
    assert len(calls) == 8 and len(generations) == 8
    first = min(c.time for c in generations[0].candidates if c.time is not None)
    assert best.time < first
    assert best.time == min(s.time for s in search.history.values() if s.time is not None)
    assert _cost(best.options).time == best.time
    # the best so far never gets worse, and invalid candidates never win
    bests = [g.best.time for g in generations]
    assert bests == sorted(bests, reverse=True)
    assert not best.options.match_library_calls


def test_first_generation_holds_the_starting_options() -> None:
    start = [MappingOptions("naive").tile(4, 4).mapToThreads(16, 4),
             MappingOptions("naive").unroll(8)]
    search = _search()
    population = search.first_generation(start)
    assert len(population) == 12
    assert [search.space.options(g) for g in population[:2]] == start
    assert len({search.space.options(g).key() for g in population}) == 12
    assert all(search.space.rejection(g) is None for g in population[2:])


def test_candidates_are_evaluated_once() -> None:
    calls: list = []
    _search().run([MappingOptions("naive")], _evaluator(calls))
    keys = [o.key() for gen in calls for o in gen]
    assert len(keys) == len(set(keys))


def test_elites_survive() -> None:
    search = _search(number_elites=3)
    scored = search.evaluate(search.first_generation([MappingOptions("naive")]),
                             _evaluator([]))
    top = sorted((s for s in scored if s.time is not None), key=lambda s: s.time)[:3]
    following = search.next_generation(scored)
    assert following[:3] == [s.genome for s in top]
    assert len(following) == 12


def test_same_seed_same_search() -> None:
    runs = []
    for _ in range(2):
        calls: list = []
        _search(seed=42).run([MappingOptions("naive")], _evaluator(calls))
        runs.append([[o.key() for o in gen] for gen in calls])
    assert runs[0] == runs[1]
    calls = []
    _search(seed=43).run([MappingOptions("naive")], _evaluator(calls))
    assert [[o.key() for o in gen] for gen in calls] != runs[0]


def test_too_few_valid_candidates_redraw_around_the_best() -> None:
    search = _search(pop_size=10)
    space = search.space
    population = search.first_generation([MappingOptions("naive")])
    # Only two candidates are valid: breeding would be meaningless.
    outcomes = [Out(1e-3), Out(2e-3)] + [Out(None, "crash")] * 8
    it = iter(outcomes)

    def evaluate(candidates, report):
        for i, _ in enumerate(candidates):
            report(i, next(it))

    scored = search.evaluate(population, evaluate)
    assert sum(1 for s in scored if s.time is not None) < MIN_CANDIDATES_FOR_BREEDING
    best = search.best.genome
    following = search.next_generation(scored)
    assert following[0] == best and len(following) == 10

    def agreement(g) -> float:
        return sum(a == b for a, b in zip(g, best, strict=True)) / len(best)

    rng = random.Random(5)
    randoms = [space.random_valid_genome(rng) for _ in range(50)]
    around = sum(agreement(g) for g in following[1:]) / 9
    baseline = sum(agreement(g) for g in randoms) / 50
    assert around > 0.45 and baseline < 0.35


def test_stop_ends_the_search_with_the_best_so_far() -> None:
    calls: list = []
    stop = {"now": False}
    inner = _evaluator(calls)

    def evaluate(candidates, report):
        inner(candidates, report)
        stop["now"] = True  # as if Ctrl-C arrived during the first generation

    search = _search()
    best = search.run([MappingOptions("naive")], evaluate, stop=lambda: stop["now"])
    assert len(calls) == 1
    assert best.time == min(_cost(o).time or math.inf for o in calls[0])


def test_no_valid_candidate_gives_none() -> None:
    def evaluate(candidates, report):
        for i, _ in enumerate(candidates):
            report(i, Out(None, "crash"))

    assert _search(generations=3, pop_size=4).run([MappingOptions("naive")], evaluate) is None
