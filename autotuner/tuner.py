"""The autotuner's API: ``tc.autotune``, ``tc.TunerConfig``, ``tc.make_autotuned_options_factory``.

``autotune(lang, entry_point, *inputs)`` searches the mapping options of one
definition for the signature of ``inputs`` with the genetic algorithm of
:mod:`autotuner.genetic`, evaluating candidates with :mod:`autotuner.evaluate` on
the target the inputs' device defaults to (the native CPU target for CPU tensors,
the GPU for CUDA tensors; ``backend=`` picks another, e.g. PoCL), and returns the
fastest valid options. With a compilation cache (:mod:`autotuner.cache`),
``load_from_cache`` returns the cached best options without tuning when the cache
holds some, and ``store_to_cache`` stores the best options
found (the :data:`~autotuner.cache.KEEP` best, with their times) and the best
candidate's compiled artefact.

The reference outputs that every candidate must reproduce come from the reference
interpreter, or, for problems too large for it (more than
:data:`REFERENCE_POINTS` statement instances), from a run of the starting options.

Ctrl-C (SIGINT) during tuning stops the search after the candidates in flight and
returns the best options so far; a second Ctrl-C raises KeyboardInterrupt.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

from tqdm.auto import tqdm

from autotuner.evaluate import CompileSpec, Outcome, RunSpec, save_tensors
from autotuner.executors import Session, check_executor
from autotuner.genetic import Generation, GeneticSearch, Scored
from autotuner.space import SearchSpace, stage_points
from polyhedral.promotion import DEFAULT_SHARED_LIMIT
from tc.errors import TcArgumentError, TcBackendError, TcError, TcOptionsError
from tc.options import MappingOptions

__all__ = ["REFERENCE_POINTS", "TunerConfig", "TunerSettings", "TuningResult", "autotune",
           "make_autotuned_options_factory", "tune"]

log = logging.getLogger(__name__)

#: Up to this many statement instances, the interpreter computes the reference outputs.
REFERENCE_POINTS = 1 << 26

#: Default tolerances (rtol, atol) of the output check, per floating-point dtype name.
TOLERANCES = {"float16": (1e-2, 1e-3), "bfloat16": (5e-2, 1e-2), "float32": (1e-4, 1e-5),
              "float64": (1e-7, 1e-9)}


@dataclass(frozen=True)
class TunerSettings:
    """The values of a :class:`TunerConfig` (defaults as in the original TC)."""

    generations: int = 25
    pop_size: int = 100
    crossover_rate: float = 0.8
    mutation_rate: float = 0.07
    number_elites: int = 10
    threads: int = max(1, min(8, os.cpu_count() or 1))
    devices: tuple[int, ...] | None = None  # GPU ids; None: the inputs' device
    tuner_min_launch_total_threads: int = 64
    seed: int | None = None
    compile_timeout: float = 120.0
    run_timeout: float = 60.0
    warmup_runs: int = 1
    timing_runs: int = 5
    prune_factor: float = 100.0
    rtol: float | None = None  # None: by the outputs' dtype (TOLERANCES)
    atol: float | None = None
    progress: bool = True
    executor: str = "local"  # autotuner.executors.EXECUTORS
    address: str | None = None  # the Ray cluster (None: a local Ray started on demand)


def _int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise TcOptionsError(f"TunerConfig.{name}: expected an int >= {minimum}, got "
                             f"{value!r}")
    return value


def _number(name: str, value: object, minimum: float, strict: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(
            value) or value < minimum or (strict and value == minimum):
        raise TcOptionsError(f"TunerConfig.{name}: expected a number {'>' if strict else '>='}"
                             f" {minimum}, got {value!r}")
    return float(value)


def _rate(name: str, value: object) -> float:
    """A rate as a fraction in [0, 1] (a float) or a percentage (an int 0..100, as in
    the original TC)."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 100:
        return value / 100
    if isinstance(value, float) and 0.0 <= value <= 1.0:
        return value
    raise TcOptionsError(f"TunerConfig.{name}: expected a fraction 0.0..1.0 or a percentage "
                         f"0..100 (int), got {value!r}")


class TunerConfig:
    """The configuration of the autotuner, built with chainable setters::

        config = tc.TunerConfig().generations(3).pop_size(10).threads(4)

    ``generations``, ``pop_size``, ``crossover_rate`` and ``mutation_rate`` (fractions,
    or percentages as ints like the original TC), ``number_elites``, ``threads``
    (compile workers), ``devices`` (GPU ids, ``"0,1"`` or ``[0, 1]``: one run worker
    per GPU), ``tuner_min_launch_total_threads``; and beyond the original: ``seed``
    (reproducible searches), ``compile_timeout`` and ``run_timeout`` (seconds),
    ``warmup_runs`` and ``timing_runs``, ``prune_factor``, ``tolerances(rtol, atol)``
    of the output check, ``progress`` (the progress bar) and ``executor`` (where the
    candidates are evaluated: this machine's processes, or a Ray cluster).
    :attr:`settings` holds the values.
    """

    __slots__ = ("settings",)

    def __init__(self) -> None:
        self.settings = TunerSettings()

    def _set(self, **changes: Any) -> TunerConfig:
        self.settings = replace(self.settings, **changes)
        return self

    def generations(self, n: int) -> TunerConfig:
        """Number of generations (int >= 1)."""
        return self._set(generations=_int("generations", n, 1))

    def pop_size(self, n: int) -> TunerConfig:
        """Candidates per generation (int >= 2)."""
        return self._set(pop_size=_int("pop_size", n, 2))

    def crossover_rate(self, rate: float | int) -> TunerConfig:
        """Probability that a child is a crossover of three parents."""
        return self._set(crossover_rate=_rate("crossover_rate", rate))

    def mutation_rate(self, rate: float | int) -> TunerConfig:
        """Probability that each parameter of a child is redrawn."""
        return self._set(mutation_rate=_rate("mutation_rate", rate))

    def number_elites(self, n: int) -> TunerConfig:
        """How many of the best candidates survive unchanged (int >= 0; at most
        ``pop_size - 1`` are kept)."""
        return self._set(number_elites=_int("number_elites", n, 0))

    def threads(self, n: int) -> TunerConfig:
        """Compile worker processes (int >= 1)."""
        return self._set(threads=_int("threads", n, 1))

    def devices(self, ids: str | Sequence[int]) -> TunerConfig:
        """GPU ids to run candidates on, one worker each: ``"0,1"`` or ``[0, 1]``."""
        if isinstance(ids, str):
            try:
                ids = [int(p) for p in ids.split(",") if p.strip()]
            except ValueError:
                raise TcOptionsError(f"TunerConfig.devices: expected GPU ids like '0,1', "
                                     f"got {ids!r}") from None
        values = tuple(_int("devices", i, 0) for i in ids)
        if not values:
            raise TcOptionsError("TunerConfig.devices: give at least one GPU id")
        return self._set(devices=values)

    def tuner_min_launch_total_threads(self, n: int) -> TunerConfig:
        """Reject candidates launching fewer threads (grid x block) than this."""
        return self._set(tuner_min_launch_total_threads=_int(
            "tuner_min_launch_total_threads", n, 1))

    def seed(self, n: int | None) -> TunerConfig:
        """Seed of the search's random draws (None: a different search each time)."""
        return self._set(seed=None if n is None else _int("seed", n, 0))

    def compile_timeout(self, seconds: float) -> TunerConfig:
        """Seconds a candidate may take to compile (and to build on its device)."""
        return self._set(compile_timeout=_number("compile_timeout", seconds, 0, True))

    def run_timeout(self, seconds: float) -> TunerConfig:
        """Seconds one run of a candidate may take before it counts as hung."""
        return self._set(run_timeout=_number("run_timeout", seconds, 0, True))

    def warmup_runs(self, n: int) -> TunerConfig:
        """Untimed runs first (int >= 1; the first one is checked against the reference)."""
        return self._set(warmup_runs=_int("warmup_runs", n, 1))

    def timing_runs(self, n: int) -> TunerConfig:
        """Timed runs per candidate; its time is their median (int >= 1)."""
        return self._set(timing_runs=_int("timing_runs", n, 1))

    def prune_factor(self, factor: float) -> TunerConfig:
        """Prune a candidate whose first timed run is this many times the best time."""
        return self._set(prune_factor=_number("prune_factor", factor, 1))

    def tolerances(self, rtol: float | None = None, atol: float | None = None) -> TunerConfig:
        """Tolerances of the output check (None: by the outputs' dtype)."""
        return self._set(rtol=None if rtol is None else _number("rtol", rtol, 0),
                         atol=None if atol is None else _number("atol", atol, 0))

    def executor(self, kind: str = "local", address: str | None = None) -> TunerConfig:
        """Where candidates are compiled and timed: ``"local"`` (this machine's worker
        processes, the default) or ``"ray"`` (compiles as Ray tasks on any node, timings
        in one Ray actor per node or GPU; :mod:`autotuner.ray_executor`). ``address``
        (Ray only): None starts a local Ray on demand; ``"auto"``, ``"host:port"`` or
        ``"ray://host:port"`` connects to an existing cluster."""
        kind, address = check_executor(kind, address)
        return self._set(executor=kind, address=address)

    def progress(self, show: bool) -> TunerConfig:
        """Show a progress bar per generation (on a terminal)."""
        return self._set(progress=bool(show))

    def __repr__(self) -> str:
        default = TunerSettings()
        text = "TunerConfig()"
        for f in fields(TunerSettings):
            value = getattr(self.settings, f.name)
            if f.name == "address" or value == getattr(default, f.name):
                continue
            if f.name == "executor" and self.settings.address is not None:
                text += f".executor({value!r}, address={self.settings.address!r})"
            else:
                text += f".{f.name}({value!r})"
        return text


@dataclass(frozen=True)
class TuningResult:
    """What :func:`tune` found: the best options (None if no candidate was valid), its
    median time, whether it came from the cache or the search was interrupted, and
    every evaluated candidate and generation."""

    options: MappingOptions | None
    time: float | None
    from_cache: bool = False
    interrupted: bool = False
    candidates: tuple[Scored, ...] = ()
    generations: tuple[Generation, ...] = ()

    def count(self, status: str) -> int:
        """How many evaluated candidates have ``status`` (see ``Outcome``)."""
        return sum(1 for c in self.candidates if c.outcome.status == status)


# ---------------------------------------------------------------------- helpers


def _starting(starting_options: Any) -> list[MappingOptions]:
    if starting_options is None:
        return [MappingOptions("naive")]
    if isinstance(starting_options, str):
        return [MappingOptions(starting_options)]
    if isinstance(starting_options, MappingOptions):
        return [starting_options.copy()]
    if isinstance(starting_options, list | tuple) and starting_options and all(
            isinstance(o, MappingOptions) for o in starting_options):
        return [o.copy() for o in starting_options]
    raise TcArgumentError("starting_options must be None, a preset name, tc.MappingOptions "
                          "or a list of them")


def _tolerances(fn, settings: TunerSettings) -> tuple[float, float]:
    names = [t.dtype.value for t in fn.outputs if t.dtype.is_float]
    loosest = max((TOLERANCES.get(n, TOLERANCES["float32"]) for n in names),
                  default=TOLERANCES["float32"])
    return (loosest[0] if settings.rtol is None else settings.rtol,
            loosest[1] if settings.atol is None else settings.atol)


def _reference_outputs(fn, call, backend: str, start: MappingOptions) -> list:
    from tc.backend import CompiledBackend, get_backend

    points = sum(stage_points(fn, call.sizes, False))
    if points <= REFERENCE_POINTS:
        return get_backend("reference").run(fn, call, lambda f, c: start)
    log.info("%s: %d statement instances are too many for the interpreter; the reference "
             "outputs come from the starting options", fn.name, points)
    return CompiledBackend(backend).executor(fn, call, start).run(call)


def _target(backend: str | None, call):
    """The target to tune on: ``backend``'s, or the default of the tensors' device;
    ``TcArgumentError`` for an unknown name, ``TcBackendError`` for tensors the target
    cannot run on."""
    from codegen.targets import default_target, get_target, target_names

    if backend is None:
        return default_target(call.device.type)
    try:
        target = get_target(backend)
    except TcError:
        raise TcArgumentError(f"autotune needs a compiled backend ({', '.join(target_names())}), "
                              f"not {backend!r}") from None
    if call.device.type != target.device_type:
        raise TcBackendError(f"backend {target.name!r} tunes on {target.device_type.upper()} "
                             f"tensors, got tensors on {call.device}")
    return target


def _run_devices(call, settings: TunerSettings) -> tuple[str, ...]:
    if call.device.type != "cuda":
        return ("cpu",)
    if settings.devices is None:
        return (str(call.device),)
    return tuple(f"cuda:{i}" for i in settings.devices)


def _open_cache(cache_filename, load: bool, store: bool, cache=None):
    if cache is not None or not (cache_filename is not None or load or store):
        return cache
    from autotuner.cache import CompilationCache

    return CompilationCache(cache_filename)


def _seconds(t: float | None) -> str:
    return "-" if t is None else f"{t * 1e3:.4g} ms"


class Interrupt:
    """SIGINT sets ``flag``, which the searches poll (main thread only); a second one
    raises KeyboardInterrupt."""

    def __init__(self, flag: threading.Event | None = None) -> None:
        self.flag = flag if flag is not None else threading.Event()
        self.previous = None

    def _handler(self, signum, frame) -> None:
        if self.flag.is_set():
            raise KeyboardInterrupt
        log.warning("autotuner interrupted: finishing with the best options so far "
                    "(Ctrl-C again to abort)")
        self.flag.set()

    def __enter__(self) -> Interrupt:
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


# ---------------------------------------------------------------------- tuning


def tune(lang: str, entry_point: str, *inputs: Any, starting_options: Any = None,
         tuner_config: TunerConfig | None = None, cache_filename: str | None = None,
         load_from_cache: bool = False, store_to_cache: bool = False,
         backend: str | None = None, cache=None, session: Session | None = None,
         position: int | None = None) -> TuningResult:
    """:func:`autotune` with the whole story: see :class:`TuningResult`. ``cache`` is an
    already open ``CompilationCache`` (instead of ``cache_filename``). ``session`` is
    the :class:`~autotuner.executors.Session` of a job tuning several definitions
    (its executor then replaces the config's, and its ``stop`` flag, set by the job's
    Ctrl-C handler, ends the search); ``position`` places the progress bar."""
    from tc.api import TC
    from tc.backend import get_backend

    settings = (tuner_config or TunerConfig()).settings
    unit = TC(lang, None, get_backend("reference"))
    function = unit[entry_point]
    fn, call = function.ir, function.bind(*inputs)
    target = _target(backend, call)
    backend = target.name
    starting = _starting(starting_options)
    cache = _open_cache(cache_filename, load_from_cache, store_to_cache, cache)
    key = None
    if cache is not None:
        from autotuner.cache import cache_key

        key = cache_key(function.canonical, entry_point, call, backend)
        entries = cache.lookup(key)
        if load_from_cache and entries and entries[0].timed:
            log.info("%s: tuned options loaded from %s", entry_point, cache.path)
            return TuningResult(entries[0].options.copy(), entries[0].median, from_cache=True)
        starting += [e.options for e in entries if e.options not in starting]

    # The target's limits bound the space: the tuner never draws what it cannot run.
    limits = target.limits()
    # A GPU block gets 48 KiB without opting in; a CPU thread's packed tiles, the
    # target's own limit.
    shared_limit = (min(DEFAULT_SHARED_LIMIT, target.shared_memory_bytes())
                    if target.has_barriers else target.shared_memory_bytes())
    space = SearchSpace.build(fn, call.sizes, min_threads=settings.tuner_min_launch_total_threads,
                              limits=limits, shared_limit=shared_limit,
                              strategy=target.strategy,
                              cpu_threads=starting[0].cpu_threads or (os.cpu_count() or 1))
    rtol, atol = _tolerances(fn, settings)
    reference = _reference_outputs(fn, call, backend, starting[0])
    compile_spec = CompileSpec(lang, entry_point, dict(call.sizes),
                               tuple(tuple(t.stride()) for t in call.inputs), call.signature(),
                               backend, None, space.min_threads, shared_limit, limits)
    run_spec = RunSpec(lang, entry_point, backend, None, "cpu", save_tensors(call.inputs),
                       save_tensors(reference), rtol, atol, settings.warmup_runs,
                       settings.timing_runs)
    search = GeneticSearch(space, settings.pop_size, settings.generations,
                           settings.crossover_rate, settings.mutation_rate,
                           min(settings.number_elites, settings.pop_size - 1), settings.seed)
    generations: list[Generation] = []

    with contextlib.ExitStack() as stack:
        if session is None:  # a job of one definition: its own session and Ctrl-C handler
            session = stack.enter_context(Session(settings.executor, settings.address))
            stack.enter_context(Interrupt(session.stop))
        stopped = session.stop
        evaluator = stack.enter_context(session.evaluator(
            space, compile_spec, run_spec, threads=settings.threads,
            devices=_run_devices(call, settings), compile_timeout=settings.compile_timeout,
            run_timeout=settings.run_timeout, prune_factor=settings.prune_factor))

        def evaluate(candidates: Sequence[MappingOptions],
                     report: Callable[[int, Outcome], None]) -> None:
            desc = f"tuning {entry_point}: generation {len(generations) + 1}/" \
                   f"{settings.generations}"
            with tqdm(total=len(candidates), desc=desc, unit="candidate",
                      leave=position is None, position=position,
                      disable=not settings.progress or None) as bar:

                def progress(i: int, outcome: Outcome) -> None:
                    report(i, outcome)
                    bar.update(1)
                    bar.set_postfix(best=_seconds(evaluator.best_time), refresh=False)

                evaluator.evaluate(candidates, progress, stopped.is_set)

        def on_generation(g: Generation) -> None:
            generations.append(g)
            statuses = Counter(c.outcome.status for c in g.candidates)
            log.info("%s generation %d/%d: %d valid, %d invalid (%s); best %s: %r",
                     entry_point, g.index + 1, settings.generations, g.valid, g.invalid,
                     ", ".join(f"{n} {s}" for s, n in sorted(statuses.items())),
                     _seconds(g.best.time if g.best else None),
                     g.best.options if g.best else None)

        best = search.run(starting, evaluate, stopped.is_set, on_generation)
        artifact = evaluator.best_artifact if best is not None and \
            evaluator.best_options == best.options else None
        timed_on = evaluator.device
    candidates = tuple(search.history.values())
    result = TuningResult(None if best is None else best.options.copy(),
                          None if best is None else best.time, False, stopped.is_set(),
                          candidates, tuple(generations))
    if store_to_cache and cache is not None and best is not None:
        ranked = sorted((c for c in candidates if c.time is not None), key=lambda c: c.time)
        from autotuner.cache import KEEP, CacheKey

        if timed_on and timed_on != key.device:
            # Timed on a cluster's nodes: the kernels are for the machines they were
            # timed on, which the key names (a script run there finds them).
            key = CacheKey.create(key.canonical, key.entry, key.signature, key.backend,
                                  timed_on, key.versions)
        for rank, c in enumerate(ranked[:KEEP]):
            cache.store(key, c.options, c.outcome.times, artifact if rank == 0 else None)
        log.info("%s: stored the %d best options in %s", entry_point, min(KEEP, len(ranked)),
                 cache.path)
    return result


def autotune(lang: str, entry_point: str, *inputs: Any, starting_options: Any = None,
             tuner_config: TunerConfig | None = None, cache_filename: str | None = None,
             load_from_cache: bool = False, store_to_cache: bool = False,
             backend: str | None = None) -> MappingOptions:
    """Tune the mapping options of ``entry_point`` of ``lang`` for ``inputs``' signature.

    ``starting_options`` (None: naive; a preset name, options, or a list of options)
    seed the first generation; ``tuner_config`` is a :class:`TunerConfig`.
    ``cache_filename`` names the compilation cache (None: the default one, when
    ``load_from_cache`` or ``store_to_cache`` asks for a cache); ``load_from_cache``
    returns the cached best options without tuning when there are some;
    ``store_to_cache`` stores the best options found with their times and compiled
    kernel. ``backend`` is a target: "cpu", "opencl" (PoCL) for CPU tensors, or
    "cuda" (None: the default target of the inputs' device). Raises
    ``TcBackendError`` when no candidate is valid.
    """
    result = tune(lang, entry_point, *inputs, starting_options=starting_options,
                  tuner_config=tuner_config, cache_filename=cache_filename,
                  load_from_cache=load_from_cache, store_to_cache=store_to_cache,
                  backend=backend)
    if result.options is None:
        counts = Counter(c.outcome.status for c in result.candidates)
        reasons = sorted({c.outcome.reason for c in result.candidates if c.outcome.reason})
        raise TcBackendError(
            f"autotune {entry_point}: no valid candidate among {len(result.candidates)} "
            f"({', '.join(f'{n} {s}' for s, n in sorted(counts.items())) or 'none run'}); "
            f"first reasons: {'; '.join(reasons[:3]) or '-'}. Check the starting options "
            "(tc.compile with them), or lower tuner_min_launch_total_threads")
    return result.options


def make_autotuned_options_factory(starting_options: Any = None,
                                   tuner_config: TunerConfig | None = None,
                                   cache_filename: str | None = None,
                                   load_from_cache: bool = False,
                                   store_to_cache: bool = False
                                   ) -> Callable[..., MappingOptions]:
    """An options factory for ``tc.define`` that tunes (or loads from the cache) the
    options of each entry point once per input signature, with :func:`autotune`'s
    arguments. Its ``cache`` attribute is the compilation cache (None without one), so
    that ``tc.define`` runs the stored compiled kernels."""
    cache = _open_cache(cache_filename, load_from_cache, store_to_cache)
    tuned: dict[tuple, MappingOptions] = {}

    def factory(lang: str, entry_point: str, *inputs: Any) -> MappingOptions:
        from tc.arguments import bind
        from tc.lang.frontend import check_text

        call = bind(check_text(lang).functions[entry_point], inputs)
        memo = (lang, entry_point, call.signature())
        if memo not in tuned:
            result = tune(lang, entry_point, *inputs, starting_options=starting_options,
                          tuner_config=tuner_config, load_from_cache=load_from_cache,
                          store_to_cache=store_to_cache, cache=cache)
            if result.options is None:
                raise TcBackendError(f"autotune {entry_point}: no valid candidate; see the "
                                     "log, or call tc.autotune for the reasons")
            tuned[memo] = result.options
        return tuned[memo].copy()

    factory.cache = cache  # type: ignore[attr-defined]
    return factory
