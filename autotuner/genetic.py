"""The genetic search over mapping options.

A population of genomes (points of an :class:`~autotuner.space.SearchSpace`) is
evaluated, then bred into the next generation:

* the ``number_elites`` fastest valid candidates survive unchanged;
* every other child is, with probability ``crossover_rate``, a crossover of three
  parents (each parameter taken from one of the three) and otherwise a copy of one
  parent; parents are selected with a probability proportional to their fitness
  ``1 / time`` (stochastic universal sampling), so invalid candidates never breed;
* each parameter of a child is then redrawn with probability ``mutation_rate``.

Children that the space rejects before compiling are redrawn, and so are children
already evaluated (their time is known). When a generation has fewer than
:data:`MIN_CANDIDATES_FOR_BREEDING` valid candidates, the next one is drawn around the
best candidate so far (strong mutations of it) instead. The first generation holds
the starting options, mutations of them and random points.

This module knows nothing about compiling or timing: :class:`GeneticSearch` calls an
``evaluate(options_list, on_result)`` function (``autotuner.evaluate`` in the tuner,
a formula in the tests) and reads each outcome's ``time`` (None when invalid).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from autotuner.space import Genome, SearchSpace
from tc.options import MappingOptions

__all__ = [
    "MIN_CANDIDATES_FOR_BREEDING",
    "GeneticSearch",
    "Generation",
    "Scored",
    "crossover",
    "fitness",
    "mutate",
    "select",
]

log = logging.getLogger(__name__)

#: Below this many valid candidates in a generation, the next is drawn around the best.
MIN_CANDIDATES_FOR_BREEDING = 3
#: The mutation rate used to re-randomise around the best candidate.
RERANDOMISE_RATE = 0.5
#: How many times a child is redrawn when the space rejects it or it was seen before.
REDRAWS = 50


class Outcome(Protocol):
    """What an evaluation returns for one candidate."""

    @property
    def time(self) -> float | None:  # seconds; None when the candidate is invalid
        ...


@dataclass(frozen=True)
class Scored:
    """A genome with its options and evaluation outcome."""

    genome: Genome
    options: MappingOptions
    outcome: Outcome

    @property
    def time(self) -> float | None:
        return self.outcome.time


@dataclass(frozen=True)
class Generation:
    """One evaluated generation (``index`` from 0) and the best candidate so far."""

    index: int
    candidates: tuple[Scored, ...]
    best: Scored | None

    @property
    def valid(self) -> int:
        return sum(1 for c in self.candidates if c.time is not None)

    @property
    def invalid(self) -> int:
        return len(self.candidates) - self.valid


# ---------------------------------------------------------------------- operators


def fitness(time: float | None) -> float:
    """A candidate's fitness: ``1 / time``, 0 for an invalid one."""
    if time is None or time <= 0:
        return 0.0
    return 1.0 / time


def select(scored: Sequence[Scored], count: int, rng: random.Random) -> list[Scored]:
    """``count`` parents drawn with probability proportional to fitness (stochastic
    universal sampling: evenly spaced pointers over the cumulative fitness, which keeps
    the number of copies of each parent close to its expected share). Empty when no
    candidate is valid."""
    weights = [fitness(s.time) for s in scored]
    total = sum(weights)
    if total <= 0 or count <= 0:
        return []
    step = total / count
    pointer = rng.uniform(0, step)
    chosen, acc, i = [], weights[0], 0
    for _ in range(count):
        while pointer > acc and i < len(weights) - 1:
            i += 1
            acc += weights[i]
        chosen.append(scored[i])
        pointer += step
    rng.shuffle(chosen)  # pointers walk in order: shuffle so parents pair at random
    return chosen


def crossover(parents: Sequence[Genome], rng: random.Random) -> Genome:
    """A child that takes each parameter from a parent chosen at random."""
    return tuple(rng.choice(parents)[i] for i in range(len(parents[0])))


def mutate(genome: Genome, space: SearchSpace, rate: float, rng: random.Random) -> Genome:
    """``genome`` with each parameter redrawn from its choices with probability ``rate``."""
    return tuple(rng.choice(p.choices) if rng.random() < rate else v
                 for p, v in zip(space.parameters, genome, strict=True))


# ---------------------------------------------------------------------- the search


@dataclass
class GeneticSearch:
    """The genetic algorithm: :meth:`run` evaluates ``generations`` populations."""

    space: SearchSpace
    pop_size: int = 10
    generations: int = 2
    crossover_rate: float = 0.8
    mutation_rate: float = 0.1
    number_elites: int = 1
    seed: int | None = None
    history: dict = field(default_factory=dict)  # options.key() -> Scored
    best: Scored | None = None

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    # -- breeding

    def _valid_child(self, make: Callable[[], Genome], taken: set) -> Genome | None:
        """A child from ``make`` that the space accepts and that is new, or (after
        :data:`REDRAWS` tries) one that is only accepted, or None."""
        fallback = None
        for _ in range(REDRAWS):
            g = make()
            if self.space.rejection(g) is not None:
                continue
            if self.space.options(g).key() not in taken:
                return g
            fallback = fallback or g
        return fallback

    def _fill(self, population: list[Genome], make: Callable[[], Genome],
              target: int | None = None) -> list[Genome]:
        """``population`` grown to ``target`` (the population size) with children of
        ``make``."""
        target = self.pop_size if target is None else target
        taken = set(self.history) | {self.space.options(g).key() for g in population}
        while len(population) < target:
            child = self._valid_child(make, taken)
            if child is None:
                child = self.space.random_valid_genome(self.rng)
            if child is None:  # nothing in the space passes: stop growing
                break
            taken.add(self.space.options(child).key())
            population.append(child)
        return population

    def first_generation(self, starting: Sequence[MappingOptions]) -> list[Genome]:
        """The starting options (as given), then mutations of them and random points,
        half and half."""
        population: list[Genome] = []
        for o in starting:
            g = self.space.genome(o)
            if g not in population and len(population) < self.pop_size:
                population.append(g)
        seeds = population or [None]
        mutants = (self.pop_size - len(population)) // 2

        def around() -> Genome:
            base = self.rng.choice(seeds)
            if base is None:
                return self.space.random_genome(self.rng)
            return mutate(base, self.space, RERANDOMISE_RATE, self.rng)

        population = self._fill(population, around, len(population) + mutants)
        return self._fill(population, lambda: self.space.random_genome(self.rng))

    def next_generation(self, scored: Sequence[Scored]) -> list[Genome]:
        """Breed the next population from an evaluated one (see the module docs)."""
        valid = sorted((s for s in scored if s.time is not None), key=lambda s: s.time)
        if len(valid) < MIN_CANDIDATES_FOR_BREEDING:
            log.info("only %d valid candidates: drawing the next generation around the best",
                     len(valid))
            base = self.best.genome if self.best is not None else None
            population = [base] if base is not None else []

            def around() -> Genome:
                if base is None:
                    return self.space.random_genome(self.rng)
                return mutate(base, self.space, RERANDOMISE_RATE, self.rng)

            return self._fill(population, around)
        population = [s.genome for s in valid[: self.number_elites]]

        def child() -> Genome:
            if self.rng.random() < self.crossover_rate:
                parents = [p.genome for p in select(valid, 3, self.rng)]
            else:
                parents = [select(valid, 1, self.rng)[0].genome]
            return mutate(crossover(parents, self.rng), self.space, self.mutation_rate,
                          self.rng)

        return self._fill(population, child)

    # -- the loop

    def evaluate(self, population: Sequence[Genome],
                 evaluate: Callable[..., Sequence[Outcome]],
                 on_result: Callable[[Scored], None] | None = None) -> list[Scored]:
        """Evaluate the new genomes of ``population`` (known ones are not re-run)."""
        options = [self.space.options(g) for g in population]
        first: dict = {}
        for i, o in enumerate(options):
            if o.key() not in self.history:
                first.setdefault(o.key(), i)
        fresh = list(first.values())

        def report(i: int, outcome: Outcome) -> None:
            s = Scored(population[fresh[i]], options[fresh[i]], outcome)
            self.history[s.options.key()] = s
            if s.time is not None and (self.best is None or s.time < self.best.time):
                self.best = s
            if on_result is not None:
                on_result(s)

        evaluate([options[i] for i in fresh], report)
        return [self.history[o.key()] for o in options if o.key() in self.history]

    def run(self, starting: Sequence[MappingOptions],
            evaluate: Callable[..., Sequence[Outcome]],
            stop: Callable[[], bool] = lambda: False,
            on_generation: Callable[[Generation], None] | None = None,
            on_result: Callable[[Scored], None] | None = None) -> Scored | None:
        """Evaluate ``generations`` populations; returns the best valid candidate (None
        when none was valid). ``evaluate(options_list, report)`` must call
        ``report(i, outcome)`` for each candidate it finishes (in any order) and may
        stop early when ``stop()`` becomes true; the search then ends after that
        generation with the best candidate so far."""
        population = self.first_generation(starting)
        for index in range(self.generations):
            scored = self.evaluate(population, evaluate, on_result)
            generation = Generation(index, tuple(scored), self.best)
            if on_generation is not None:
                on_generation(generation)
            if stop() or index == self.generations - 1:
                break
            population = self.next_generation(scored)
        return self.best
