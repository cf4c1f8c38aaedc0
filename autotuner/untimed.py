"""Tuning what a script used: every untimed entry of a compilation cache, in one job.

A script run with ``tc.define(..., cache=True)`` (or a path) stores each kernel it
compiles as an *untimed* entry: one key per (definition, input signature, target),
forward and derived backwards alike (:mod:`autotuner.cache`). :func:`tune_untimed`
tunes all of those keys (``python -m tc tune --untimed``) and stores the tuned
options, their times and the best kernel under the *same* keys, so the script's next
run finds a timed entry for each call and runs the tuned kernel
(``tc.define(..., cache=)`` prefers a key's tuned options to the default ones).

How a call is rebuilt from a key (:func:`rebuild`): the key holds the entry point's
canonical text (identifiers renamed ``v0, v1, ...``; ``v0`` is the definition's
name), its name, and the dtypes, shapes and strides of the inputs. The definition is
re-printed under its own name and re-checked, and the inputs are random tensors of
exactly those dtypes, shapes and strides. The rebuilt call must give back the very
same key (canonical text, name, signature, target, device, versions), else the key is
reported as failed rather than tuned under another key.

Traps:

* a key is tuned only where its kernels would run: its target must be a tunable one
  (not ``iree-*``: IREE kernels have no mapping options), available here, of this
  machine's device and of this process's compiler versions. Any other key (a cache
  copied from another machine, or written by another tc revision) is *skipped* with
  the reason: tuning it here would store the times of another device or compiler
  under a key that says otherwise.
* integer inputs hold indices, so they are drawn in ``0 .. smallest extent - 1``
  (valid into any dimension), as ``python -m tc tune`` does; booleans are 0 or 1.
* several definitions are in flight at once (``max_in_flight`` threads, each calling
  :func:`autotuner.tuner.tune`); they share one :class:`~autotuner.executors.Session`,
  whose phase gate lets their compiles run together but keeps every timed run alone
  (no compile and no other timing meanwhile), so timings stay comparable.
* Ctrl-C (the session's ``stop`` flag) ends every search after its candidates in
  flight: the keys being tuned store their best so far (status ``interrupted``), the
  keys not started are reported ``not run``.
* with the Ray executor, the tuner stores the times under the device of the nodes that
  measured them; when that is not this machine's, the script's key stays untimed here
  and the result says so.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import logging
import re
import threading
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from autotuner.cache import UNTIMED, CacheKey, TcCacheError, _shapes, device_text, versions_text
from tc.errors import TcError
from tc.options import MappingOptions

if TYPE_CHECKING:
    from autotuner.cache import CompilationCache
    from autotuner.executors import Session
    from autotuner.tuner import TunerConfig

__all__ = ["KeyResult", "entry_text", "rebuild", "script_text", "skipped_keys", "tune_untimed",
           "untimed_keys"]

log = logging.getLogger(__name__)

#: The statuses of a :class:`KeyResult`.
STATUSES = ("tuned", "interrupted", "failed", "not run", "skipped")


@dataclass(frozen=True)
class KeyResult:
    """What became of one untimed key: ``status`` is ``"tuned"``, ``"interrupted"``
    (Ctrl-C: the best options so far are stored), ``"failed"`` (no valid candidate, or
    an error: ``reason``), ``"not run"`` (the job stopped before it started) or
    ``"skipped"`` (not tunable here: ``reason``). ``time`` is the best median in
    seconds and ``options`` the best options, when some candidate was valid."""

    key: CacheKey
    status: str
    time: float | None = None
    options: MappingOptions | None = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        """Whether the key was tuned to the end (or skipped, which is not a failure)."""
        return self.status in ("tuned", "skipped")


# ---------------------------------------------------------------------- which keys


def _untimed(cache: CompilationCache) -> list[CacheKey]:
    """The keys of ``cache`` with no timed entry, in the cache's listing order."""
    return [k for k, best, _ in cache.summary() if not best < UNTIMED]


def _why_not(key: CacheKey) -> str | None:
    """Why ``key`` cannot be tuned here, or None when it can."""
    from codegen.targets import get_target, target_names

    if key.backend.startswith("iree"):
        return "an IREE kernel: it has no mapping options to tune"
    if key.backend not in target_names():
        return f"unknown target {key.backend!r}"
    target = get_target(key.backend)
    try:
        if not target.available():
            return f"the {key.backend} target cannot run on this machine"
        versions = versions_text(key.backend)
        devices = _devices(key.backend)
    except Exception as e:  # a target's tools that fail to load: not tunable here
        return f"the {key.backend} target is not usable here ({e})"
    if key.versions != versions:
        return (f"stored by other compiler versions ({key.versions}; this tc: {versions}); "
                "run the script again with this tc to store its kernels anew")
    if key.device not in devices:
        return (f"stored for another device ({key.device}; here: {', '.join(devices)}); "
                "tune it on that machine")
    return None


def _devices(backend: str) -> dict[str, str]:
    """This machine's devices of target ``backend``: the key's device text -> the torch
    device its inputs go to."""
    from codegen.targets import get_target

    if get_target(backend).device_type != "cuda":
        return {device_text(backend): "cpu"}
    return {device_text(backend, None, i): f"cuda:{i}" for i in range(torch.cuda.device_count())}


def untimed_keys(cache: CompilationCache) -> list[CacheKey]:
    """The keys of ``cache`` that have no timed entry and can be tuned here: of a
    tunable target available on this machine, of this machine's device and of this
    process's compiler versions. See :func:`skipped_keys` for the others."""
    return [k for k in _untimed(cache) if _why_not(k) is None]


def skipped_keys(cache: CompilationCache) -> list[KeyResult]:
    """The keys of ``cache`` with no timed entry that cannot be tuned here, each with
    the reason (status ``"skipped"``)."""
    out = []
    for k in _untimed(cache):
        why = _why_not(k)
        if why is not None:
            out.append(KeyResult(k, "skipped", reason=why))
    return out


# ---------------------------------------------------------------------- rebuilding a call


def entry_text(key: CacheKey) -> str:
    """The TC text of ``key``'s entry point under its own name (``key.entry``), whose
    canonical text is ``key.canonical``; :class:`TcCacheError` when there is none."""
    from tc.lang.frontend import check_text
    from tc.lang.printer import canonical_text, definition_text

    try:
        checked = check_text(key.canonical)
    except TcError as e:
        raise TcCacheError(f"{key.entry}: the key's definition does not check ({e})") from None
    if len(checked.functions) != 1:
        raise TcCacheError(f"{key.entry}: the key's text holds {len(checked.functions)} "
                           "definitions, not one")
    (name,) = checked.functions
    # Every other identifier is v1, v2, ...: renamed under a prefix that cannot be the
    # entry's name (an entry named "v3" must not meet a tensor named "v3").
    prefix = next(p for p in "vtuw" if not re.fullmatch(p + r"\d+", key.entry))

    def rename(ident: str) -> str:
        return key.entry if ident == name else prefix + ident[1:]

    text = definition_text(checked.definition(name), rename, annotations=False)
    try:
        again = canonical_text(check_text(text).definition(key.entry))
    except (TcError, KeyError):
        again = None
    if again != key.canonical:
        raise TcCacheError(f"{key.entry}: the key's definition cannot be rebuilt under the "
                           "name of its entry point")
    return text


def _pair_names(ours, theirs, names: dict[str, str]) -> bool:
    """Walk two IR trees of the same shape side by side, recording in ``names`` which
    name of ``ours`` is which of ``theirs``; False when they differ in shape or a name
    of ``ours`` meets two of ``theirs`` (the caller checks the other direction). Size
    expressions (``Sym``, sorted by name) are not walked: the caller checks the renamed
    IR for equality anyway."""
    from tc.ir.sym import Sym

    def pair(a: str, b: str) -> bool:
        return names.setdefault(a, b) == b

    if type(ours) is not type(theirs):
        return False
    if isinstance(ours, Sym):
        return True
    if isinstance(ours, tuple):
        return len(ours) == len(theirs) and all(
            _pair_names(a, b, names) for a, b in zip(ours, theirs, strict=True))
    if not dataclasses.is_dataclass(ours):
        return True
    for f in dataclasses.fields(ours):
        if not f.compare:
            continue
        a, b = getattr(ours, f.name), getattr(theirs, f.name)
        if f.name in ("name", "tensor") and isinstance(a, str) and isinstance(b, str):
            ok = pair(a, b)
        elif f.name == "lhs" and isinstance(a, tuple) and isinstance(b, tuple):
            ok = len(a) == len(b) and all(pair(x, y) for x, y in zip(a, b, strict=True))
        else:
            ok = _pair_names(a, b, names)
        if not ok:
            return False
    return True


def script_text(key: CacheKey, cache: CompilationCache) -> str | None:
    """The text of ``key``'s entry point with the script's own identifiers, recovered
    from a kernel the script stored (its artefact holds the script's IR), or None.

    The cache only reuses a kernel compiled from the same IR, identifiers included
    (:func:`codegen.artifact.verify_program`): with these names, the kernel the tuner
    stores runs in the script as it is, instead of being compiled again."""
    from codegen.artifact import ArtifactError, load_program
    from tc.lang.frontend import check_text
    from tc.lang.printer import definition_text

    try:
        checked = check_text(key.canonical)
        (name,) = checked.functions
    except (TcError, ValueError):
        return None
    ours = checked.functions[name]
    for entry in cache.lookup(key):
        if entry.artifact is None:
            continue
        try:
            theirs = load_program(entry.artifact)[0].fn
        except ArtifactError:
            continue
        names: dict[str, str] = {}
        if theirs.name != key.entry or not _pair_names(ours, theirs, names) or len(
                set(names.values())) != len(names):
            continue
        try:
            text = definition_text(checked.definition(name), names.__getitem__,
                                   annotations=False)
            if check_text(text).functions[key.entry] == theirs:
                return text
        except (TcError, KeyError):
            continue
    return None


def random_tensor(dtype: torch.dtype, shape: tuple[int, ...], strides: tuple[int, ...],
                  high: int, device: str, gen: torch.Generator) -> torch.Tensor:
    """A tensor of exactly ``shape`` and ``strides`` (overlapping and zero strides
    included): a random storage viewed through them, standard normal floats, booleans,
    and integers in ``0 .. high - 1`` (index inputs: ``python -m tc tune`` draws its
    inputs with it too)."""
    extent = 1 + sum((n - 1) * s for n, s in zip(shape, strides, strict=True)) if all(
        shape) else 0
    if dtype.is_floating_point:
        flat = torch.randn(extent, generator=gen).to(dtype)
    elif dtype == torch.bool:
        flat = torch.randint(0, 2, (extent,), generator=gen).bool()
    else:
        flat = torch.randint(0, high, (extent,), generator=gen).to(dtype)
    return flat.to(device).as_strided(shape, strides)


def rebuild(key: CacheKey, seed: int = 0, cache: CompilationCache | None = None
            ) -> tuple[str, list[torch.Tensor]]:
    """The TC text and random inputs of ``key``'s call: tuning them stores under ``key``
    itself (checked here; :class:`TcCacheError` otherwise). With the ``cache`` holding
    the key, the text has the script's identifiers when a stored kernel tells them
    (:func:`script_text`), else the canonical ones under the entry's name
    (:func:`entry_text`)."""
    from autotuner.cache import cache_key
    from tc.arguments import bind
    from tc.lang.frontend import check_text
    from tc.lang.printer import canonical_text

    text = (script_text(key, cache) if cache is not None else None) or entry_text(key)
    shapes = _shapes(key.signature)
    if shapes is None:
        raise TcCacheError(f"{key.entry}: unreadable signature {key.signature!r}")
    devices = _devices(key.backend)
    if key.device not in devices:
        raise TcCacheError(f"{key.entry}: stored for device {key.device!r}, not one of this "
                           "machine's")
    extents = [n for _, shape, _ in shapes for n in shape]
    high = max(1, min(extents, default=1))
    gen = torch.Generator().manual_seed(seed)
    inputs = []
    for dtype_name, shape, strides in shapes:
        dtype = getattr(torch, dtype_name, None)
        if not isinstance(dtype, torch.dtype) or len(shape) != len(strides):
            raise TcCacheError(f"{key.entry}: unreadable signature {key.signature!r}")
        inputs.append(random_tensor(dtype, shape, strides, high, devices[key.device],
                                     gen))
    checked = check_text(text)
    call = bind(checked.functions[key.entry], inputs)
    again = cache_key(canonical_text(checked.definition(key.entry)), key.entry, call,
                      key.backend)
    if again != key:
        raise TcCacheError(f"{key.entry}: the rebuilt call has another key (signature "
                           f"{again.signature!r}, device {again.device!r}) than the cache's "
                           f"({key.signature!r}, {key.device!r})")
    return text, inputs


# ---------------------------------------------------------------------- the job


def _failure(result) -> str:
    counts = Counter(c.outcome.status for c in result.candidates)
    reasons = sorted({c.outcome.reason for c in result.candidates if c.outcome.reason})
    return (f"no valid candidate among {len(result.candidates)} "
            f"({', '.join(f'{n} {s}' for s, n in sorted(counts.items())) or 'none run'}); "
            f"first reasons: {'; '.join(reasons[:3]) or '-'}")


def _tune_one(key: CacheKey, cache: CompilationCache, config: TunerConfig, session: Session,
              position: int | None, seed: int) -> KeyResult:
    from autotuner.tuner import tune

    if session.stop.is_set():
        return KeyResult(key, "not run", reason="the job was interrupted before it started")
    try:
        text, inputs = rebuild(key, seed, cache)
        result = tune(text, key.entry, *inputs, tuner_config=config, cache=cache,
                      store_to_cache=True, backend=key.backend, session=session,
                      position=position)
    except Exception as e:  # one key's failure is reported; the others go on
        if not isinstance(e, TcError):
            log.exception("tuning %s for %s failed", key.entry, key.signature)
        return KeyResult(key, "failed", reason=f"{type(e).__name__}: {e}" if not isinstance(
            e, TcError) else str(e))
    if result.options is None:
        if result.interrupted:
            return KeyResult(key, "interrupted", reason="interrupted before a candidate was "
                             "timed: nothing stored")
        return KeyResult(key, "failed", reason=_failure(result))
    status = "interrupted" if result.interrupted else "tuned"
    reason = "interrupted: the best options so far are stored" if result.interrupted else ""
    best = cache.best(key)
    if best is None or not best.timed:
        reason = ("the times were stored for the device that measured them, not this "
                  "machine's: the script's key here stays untimed")
    return KeyResult(key, status, result.time, result.options, reason)


def tune_untimed(cache: CompilationCache, config: TunerConfig | None = None, *,
                 keys: list[CacheKey] | None = None, session: Session | None = None,
                 max_in_flight: int = 2, seed: int | None = None) -> list[KeyResult]:
    """Tune the untimed keys of ``cache`` (``keys``: these keys only, timed or not) and
    store the results under the same keys, so that the script that stored them runs tuned
    kernels next time. Returns one :class:`KeyResult` per key, in the cache's order:
    the keys that cannot be tuned here are ``skipped`` with the reason, never tuned.

    ``config`` is the :class:`~autotuner.tuner.TunerConfig` of every search (its
    executor is used when no ``session`` is given). ``session`` is the job's
    :class:`~autotuner.executors.Session` (e.g. a Ray one); without it, one is opened
    for the job, with a Ctrl-C handler that sets its ``stop`` flag (with a session
    given, installing that handler is the caller's: ``with Session(...) as s,
    Interrupt(s.stop):``). ``max_in_flight`` definitions are tuned at once (int >= 1).
    ``seed`` seeds the random inputs (default: the config's seed, else 0). A key
    that fails is reported and does not stop the others.
    """
    from autotuner.executors import Session
    from autotuner.tuner import Interrupt, TunerConfig

    if isinstance(max_in_flight, bool) or not isinstance(max_in_flight, int) or \
            max_in_flight < 1:
        raise TcCacheError(f"max_in_flight: expected an int >= 1, got {max_in_flight!r}")
    config = config if config is not None else TunerConfig()
    settings = config.settings
    seed = seed if seed is not None else settings.seed or 0
    candidates = list(keys) if keys is not None else _untimed(cache)
    results: dict[int, KeyResult] = {}
    todo = []
    for i, key in enumerate(candidates):
        why = _why_not(key)
        if why is None:
            todo.append((i, key))
        else:
            log.info("%s for %s skipped: %s", key.entry, key.signature, why)
            results[i] = KeyResult(key, "skipped", reason=why)
    if todo:
        with contextlib.ExitStack() as stack:
            if session is None:
                session = stack.enter_context(Session(settings.executor, settings.address))
                stack.enter_context(Interrupt(session.stop))
            if session.executor == "ray":
                # Connect here, in the calling thread, not in a tuning thread: Ray's
                # init wants the main thread (its signal handlers), and a cluster that
                # cannot be reached is one error, not one per key.
                session.pool()
            results.update(_run(todo, cache, config, session, max_in_flight, seed))
    return [results[i] for i in range(len(candidates))]


def _run(todo: list[tuple[int, CacheKey]], cache: CompilationCache, config: TunerConfig,
         session: Session, max_in_flight: int, seed: int) -> dict[int, KeyResult]:
    """Tune ``todo`` on ``max_in_flight`` threads, with one overall progress bar."""
    from tqdm.auto import tqdm

    progress = config.settings.progress
    slots = list(range(min(max_in_flight, len(todo)), 0, -1))  # bar positions 1, 2, ...
    lock = threading.Lock()

    def one(key: CacheKey) -> KeyResult:
        with lock:
            slot = slots.pop()
        try:
            return _tune_one(key, cache, config, session, slot if progress else None, seed)
        finally:
            with lock:
                slots.append(slot)

    out: dict[int, KeyResult] = {}
    with tqdm(total=len(todo), desc="tuning the cache's untimed entries", unit="definition",
              position=0, disable=not progress or None) as bar, \
            concurrent.futures.ThreadPoolExecutor(max_in_flight,
                                                  thread_name_prefix="tc-untimed") as pool:
        futures = {pool.submit(one, key): i for i, key in todo}
        pending = set(futures)
        while pending:  # short waits: the main thread stays free for Ctrl-C's handler
            done, pending = concurrent.futures.wait(pending, timeout=0.5)
            for f in done:
                result = f.result()  # _tune_one catches every Exception
                out[futures[f]] = result
                log.info("%s for %s: %s%s", result.key.entry, result.key.signature,
                         result.status, f" ({result.reason})" if result.reason else "")
                bar.update(1)
                bar.set_postfix(failed=sum(r.status == "failed" for r in out.values()),
                                refresh=False)
    return out

