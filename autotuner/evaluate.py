"""Evaluating candidates: what every executor shares (one evaluation module, two executors).

For each generation, :meth:`Evaluator.evaluate`

1. rejects candidates the search space turns away before compiling;
2. compiles the others in parallel (the polyhedral pipeline, then the back end's
   compiler: PoCL's build warms PoCL's on-disk cache for the runner, NVRTC gives the
   registers), each under ``compile_timeout``; a compiled program launching too few
   threads or using too much shared memory is rejected (:class:`CompileState`);
3. runs the compiled candidates one at a time per device (:class:`RunState`): a first
   run is compared with the reference outputs (rtol/atol), then warm-up runs, then
   ``timing_runs`` timed runs whose median is the candidate's time. A candidate whose
   first timed run is ``prune_factor`` times slower than the best so far is pruned.

Compiling and running are separate phases so that no compilation competes with a
timed run for the cores; a :class:`PhaseGate` shared by the evaluators of one job
keeps it so when several definitions are tuned at once.

The executors decide where the work runs:

* :class:`autotuner.local.LocalEvaluator` (the default): worker processes on this
  machine, ``threads`` compilers and one runner per device;
* :class:`autotuner.ray_executor.RayEvaluator`: compiles as Ray tasks on any node of
  a cluster, timings in one Ray actor per node (CPU targets) or per GPU.

Both run the same worker-side code (:class:`CompileState`, :class:`RunState`, which
talk through a ``conn`` with a ``send`` method) and read the replies with the same
functions (:func:`compile_outcome`, :func:`run_outcome`). In both a worker that
crashes or does not answer within its deadline is killed and replaced, and the
candidate costs one outcome (``crash``, ``timeout``), never the tuning.

Fault injection (for the tests): :data:`FAULTS` and the ``TC_AUTOTUNER_FAULTS``
environment variable (a JSON list of the same dicts) make the workers crash, hang,
compute a wrong result or run slowly for candidates whose serialized options match
(see :func:`fault`)."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import signal
import statistics
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace

import torch

from autotuner.space import SearchSpace, compiled_rejection
from codegen.launch import CUDA_LIMITS, LaunchLimits
from tc.options import MappingOptions

__all__ = ["FAULTS", "Collect", "CompileSpec", "CompileState", "Compiled", "Evaluator", "Outcome",
           "PhaseGate", "RunSpec", "RunState", "compile_outcome", "fault", "run_outcome"]

log = logging.getLogger(__name__)

#: Injected faults (tests): dicts made by :func:`fault`, read when an Evaluator starts.
FAULTS: list[dict] = []
FAULTS_ENV = "TC_AUTOTUNER_FAULTS"
_PRELOAD = ["torch", "tc", "codegen.compiler", "codegen.executor", "autotuner.evaluate"]


def fault(kind: str, phase: str = "run", *, seconds: float = 3600.0,
          options: MappingOptions | None = None, pid: int | None = None,
          **match: object) -> dict:
    """A fault (for tests) for the candidates equal to ``options``, or whose serialized
    options have the fields ``match`` (``tile_sizes=[3, 5]``, ``unroll_factor=4``, ...).

    ``kind``: ``"crash"`` (the worker exits), ``"hang"`` (it sleeps ``seconds``; in a
    run, at the first timed run), ``"wrong"`` (the outputs are perturbed), ``"slow"``
    (each timed run takes ``seconds`` more) or ``"interrupt"`` (SIGINT is sent to
    process ``pid``, as a Ctrl-C would, and the run goes on). ``phase``: ``"compile"``
    (crash and hang only) or ``"run"``.
    """
    if options is not None:
        match = {k: v for k, v in json.loads(options.serialize()).items() if k != "version"}
    return {"kind": kind, "phase": phase, "seconds": seconds, "pid": pid, "match": match}


def _active_faults() -> list[dict]:
    extra = os.environ.get(FAULTS_ENV)
    return list(FAULTS) + (json.loads(extra) if extra else [])


@dataclass(frozen=True)
class Outcome:
    """The evaluation of one candidate: ``time`` (the median, seconds) when it is valid.

    ``status`` is ``"ok"``, ``"rejected"`` (before or after compiling), ``"compile_error"``,
    ``"run_error"``, ``"wrong"`` (outputs differ from the reference), ``"crash"``,
    ``"timeout"`` or ``"pruned"``.
    """

    status: str
    time: float | None = None
    reason: str = ""
    times: tuple[float, ...] = ()
    device: str = ""  # what the times were measured on (RunState.device_text)


@dataclass(frozen=True)
class CompileSpec:
    """What a compile worker needs."""

    lang: str
    entry: str
    sizes: dict
    strides: tuple
    signature: tuple  # the call's (tc.arguments.BoundCall.signature())
    backend: str
    arch: str | None
    min_threads: int
    shared_limit: int
    limits: LaunchLimits = CUDA_LIMITS
    faults: tuple = ()


@dataclass(frozen=True)
class RunSpec:
    """What a run worker needs; ``inputs`` and ``reference`` are ``torch.save`` bytes."""

    lang: str
    entry: str
    backend: str
    arch: str | None
    device: str
    inputs: bytes
    reference: bytes
    rtol: float
    atol: float
    warmup_runs: int = 1
    timing_runs: int = 5
    faults: tuple = ()


def save_tensors(tensors: Sequence[torch.Tensor]) -> bytes:
    """Tensors as bytes, views keeping their strides (``torch.save``)."""
    buf = io.BytesIO()
    torch.save([t.detach() for t in tensors], buf)
    return buf.getvalue()


def load_tensors(data: bytes, device: str | None = None) -> list[torch.Tensor]:
    return torch.load(io.BytesIO(data), map_location=device, weights_only=True)


def mismatch(outputs: Sequence[torch.Tensor], reference: Sequence[torch.Tensor],
             rtol: float, atol: float) -> str | None:
    """Why ``outputs`` differ from ``reference``, or None. Floats agree within
    ``rtol`` and ``atol`` times the largest reference magnitude (at least 1), so that
    the tolerance follows the scale of long reductions; other types agree exactly."""
    for i, (out, ref) in enumerate(zip(outputs, reference, strict=True)):
        out, ref = out.detach().cpu(), ref.detach().cpu()
        if tuple(out.shape) != tuple(ref.shape):
            return f"output {i}: shape {tuple(out.shape)} instead of {tuple(ref.shape)}"
        if ref.dtype.is_floating_point:
            o, r = out.double(), ref.double()
            finite = r[torch.isfinite(r)]
            scale = max(1.0, float(finite.abs().max())) if finite.numel() else 1.0
            close = torch.isclose(o, r, rtol=rtol, atol=atol * scale, equal_nan=True)
        else:
            close = out == ref
        if not bool(close.all()):
            bad = int((~close).sum())
            return f"output {i}: {bad} of {close.numel()} elements differ from the reference"
    return None


# ---------------------------------------------------------------------- worker side


def _faults(faults: Sequence[dict], options_json: str, phase: str) -> dict[str, dict]:
    """The faults injected for these options in ``phase``, by kind."""
    data = json.loads(options_json)
    out = {}
    for spec in faults:
        if spec["phase"] == phase and all(
                data.get(k) == (list(v) if isinstance(v, tuple) else v)
                for k, v in spec["match"].items()):
            out.setdefault(spec["kind"], spec)
    return out


def _act(found: dict[str, dict], *kinds: str) -> None:
    """Carry out the crash, hang and interrupt faults of ``kinds`` that were found."""
    for kind in kinds:
        spec = found.get(kind)
        if spec is None:
            continue
        if kind == "crash":
            os._exit(70)
        elif kind == "hang":
            time.sleep(spec["seconds"])
        elif kind == "interrupt":
            os.kill(spec["pid"], signal.SIGINT)


class _Rejected(Exception):  # a compiled program the search space turns away
    pass


class CompileState:
    def __init__(self, spec: CompileSpec) -> None:
        from tc.lang.frontend import check_text

        self.spec = spec
        self.fn = check_text(spec.lang).functions[spec.entry]

    def handle(self, conn, options_json: str) -> None:
        from codegen.executor import CallShape, build_executor

        s = self.spec
        _act(_faults(s.faults, options_json, "compile"), "crash", "hang")
        options = MappingOptions.deserialize(options_json)

        def vet(program) -> None:
            if (why := compiled_rejection(program, s.min_threads, s.shared_limit,
                                          s.limits)) is not None:
                raise _Rejected(why)

        # The target's compiler (PoCL, NVRTC, cc) runs here, in parallel, once vet passed;
        # the run worker loads the artefact's binaries without compiling again.
        try:
            ex = build_executor(self.fn, CallShape(s.sizes, s.strides, s.signature), options,
                                s.backend, s.arch, check=vet)
        except _Rejected as e:
            conn.send(("rejected", str(e)))
            return
        for k in ex.kernels:
            shared = k.resources.get("shared_bytes", 0)
            if shared > s.shared_limit:
                conn.send(("rejected", f"kernel {k.name}: {shared} bytes of shared memory "
                                       f"exceed {s.shared_limit}"))
                return
        conn.send(("ok", ex.artifact()))


class RunState:
    def __init__(self, spec: RunSpec) -> None:
        from tc.arguments import bind
        from tc.lang.frontend import check_text

        self.spec = spec
        if spec.device.startswith("cuda"):  # kernels launch on the current device
            torch.cuda.set_device(spec.device)
        self.fn = check_text(spec.lang).functions[spec.entry]
        self.call = bind(self.fn, load_tensors(spec.inputs, spec.device))
        self.reference = load_tensors(spec.reference, "cpu")

    def device_text(self) -> str:
        """What this worker times on, as the cache key names it (the CPU model and cores,
        or the GPU): timings are only compared between workers of the same text."""
        from codegen.targets import get_target

        index = self.call.device.index if self.call.device.type == "cuda" else None
        return get_target(self.spec.backend).device_text(self.spec.arch, index)

    def _timed(self, ex) -> float:
        if self.call.device.type == "cuda":
            start, end = (torch.cuda.Event(enable_timing=True) for _ in range(2))
            start.record()
            ex.run(self.call)
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1000.0
        t0 = time.perf_counter()
        ex.run(self.call)
        return time.perf_counter() - t0

    def handle(self, conn, blob: bytes, options_json: str, prune_above: float) -> None:
        from codegen.executor import Executor

        s = self.spec
        found = _faults(s.faults, options_json, "run")
        _act(found, "crash", "interrupt")
        ex = Executor.from_artifact(blob, s.backend, self.call.signature(), s.arch, self.fn)
        conn.send(("built",))
        outputs = ex.run(self.call)
        if "wrong" in found:
            outputs = [o + 1 for o in outputs]
        why = mismatch(outputs, self.reference, s.rtol, s.atol)
        if why is not None:
            conn.send(("wrong", why))
            return
        conn.send(("checked",))
        for _ in range(s.warmup_runs - 1):
            ex.run(self.call)
            conn.send(("warm",))
        times = []
        for i in range(s.timing_runs):
            _act(found, "hang")
            t = self._timed(ex)
            if "slow" in found:
                time.sleep(found["slow"]["seconds"])
                t += found["slow"]["seconds"]
            times.append(t)
            if i == 0 and t > prune_above:
                conn.send(("pruned", t))
                return
            conn.send(("time", t))
        conn.send(("done", tuple(times)))




class Collect:
    """A ``conn`` for the worker-side handlers that keeps the messages in a list (the
    Ray executor returns them at once instead of streaming them through a pipe)."""

    def __init__(self) -> None:
        self.messages: list[tuple] = []

    def send(self, message: tuple) -> None:
        self.messages.append(message)


# ---------------------------------------------------------------------- tuner side


@dataclass(frozen=True)
class Compiled:
    """A candidate compiled in the first phase, waiting for its run."""

    index: int
    options: MappingOptions
    blob: bytes


def compile_outcome(reply: tuple) -> Outcome | None:
    """The outcome of a compile worker's reply; None when it compiled (``("ok", blob)``)."""
    if reply[0] == "ok":
        return None
    if reply[0] == "rejected":
        return Outcome("rejected", reason=reply[1])
    return Outcome("compile_error", reason=reply[1])


def run_outcome(reply: tuple, best: float | None, prune_factor: float,
                device: str = "") -> Outcome | None:
    """The outcome of a run worker's last message, None for a progress message
    (``built``, ``checked``, ``warm``, ``time``)."""
    kind = reply[0]
    if kind in ("built", "checked", "warm", "time"):
        return None
    if kind == "done":
        return Outcome("ok", statistics.median(reply[1]), times=tuple(reply[1]), device=device)
    if kind == "pruned":
        return Outcome("pruned", reason=f"first timed run {reply[1]:.3g} s, over "
                       f"{prune_factor:g} x the best {best:.3g} s", times=(reply[1],),
                       device=device)
    return Outcome("wrong" if kind == "wrong" else "run_error", reason=reply[1])


class PhaseGate:
    """Keeps timed runs alone: any number of compile phases at once, or one run phase.

    One gate is shared by every evaluator of a tuning job (``tc tune --untimed`` tunes
    several definitions at once), so that no compilation of one definition competes
    with a timed run of another for the cores. Run phases take precedence: once one
    waits, new compile phases wait behind it.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._compiling = 0
        self._timing = False
        self._waiting = 0

    @contextlib.contextmanager
    def compiling(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._timing and not self._waiting)
            self._compiling += 1
        try:
            yield
        finally:
            with self._cond:
                self._compiling -= 1
                self._cond.notify_all()

    @contextlib.contextmanager
    def timing(self) -> Iterator[None]:
        with self._cond:
            self._waiting += 1
            self._cond.wait_for(lambda: not self._timing and not self._compiling)
            self._waiting -= 1
            self._timing = True
        try:
            yield
        finally:
            with self._cond:
                self._timing = False
                self._cond.notify_all()


class Evaluator:
    """Evaluates lists of candidate options for one problem (see the module docs): the
    part every executor shares. Subclasses (:class:`autotuner.local.LocalEvaluator`,
    :class:`autotuner.ray_executor.RayEvaluator`) compile and run; this class rejects
    before compiling, keeps the two phases apart (:class:`PhaseGate`) and tracks the
    best candidate.

    Use as a context manager (or call :meth:`close`) so that the workers exit.
    """

    def __init__(self, space: SearchSpace, compile_spec: CompileSpec, run_spec: RunSpec, *,
                 compile_timeout: float = 120.0, run_timeout: float = 60.0,
                 prune_factor: float = 100.0, gate: PhaseGate | None = None) -> None:
        faults = tuple(_active_faults())
        self.space = space
        self.compile_spec = replace(compile_spec, faults=faults)
        self.run_spec = replace(run_spec, faults=faults)
        self.compile_timeout, self.run_timeout = compile_timeout, run_timeout
        self.prune_factor = prune_factor
        self.gate = gate or PhaseGate()
        # The fastest candidate so far (its compiled artefact, for the cache).
        self.best_time: float | None = None
        self.best_options: MappingOptions | None = None
        self.best_artifact: bytes | None = None
        self.lock = threading.Lock()

    def __enter__(self) -> Evaluator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the workers."""

    @property
    def device(self) -> str:
        """What the candidates are timed on ("" when the executor cannot tell)."""
        return ""

    def step_timeout(self, step: str) -> float:
        """Seconds a run worker may take after its message ``step`` ("sent": the job):
        building the program, then the first run, which includes PoCL's per-launch
        kernel compilation, then each later run."""
        if step == "sent":
            return self.compile_timeout
        if step == "built":
            return self.compile_timeout + self.run_timeout
        return self.run_timeout

    def prune_above(self) -> float:
        """The first timed run beyond which a candidate is pruned."""
        with self.lock:
            best = self.best_time
        return math.inf if best is None else self.prune_factor * best

    def evaluate(self, candidates: Sequence[MappingOptions],
                 report: Callable[[int, Outcome], None],
                 stop: Callable[[], bool] = lambda: False) -> None:
        """Evaluate ``candidates``, calling ``report(i, outcome)`` for each one finished
        (none for those left when ``stop()`` turns true)."""

        def done(i: int, outcome: Outcome, artifact: bytes | None = None) -> None:
            with self.lock:
                if outcome.time is not None and (self.best_time is None
                                                 or outcome.time < self.best_time):
                    self.best_time = outcome.time
                    self.best_options, self.best_artifact = candidates[i], artifact
                log.debug("candidate %r: %s %s", candidates[i], outcome.status,
                          outcome.reason)
                report(i, outcome)

        jobs = []
        for i, options in enumerate(candidates):
            why = self.space.rejection(self.space.genome(options))
            if why is not None:
                done(i, Outcome("rejected", reason=why))
            else:
                jobs.append((i, options))
        compiled: list[Compiled] = []
        if jobs:
            with self.gate.compiling():
                self._compile_all(jobs, compiled, done, stop)
        if compiled and not stop():
            with self.gate.timing():
                self._run_all(sorted(compiled, key=lambda c: c.index), done, stop)

    def _compile_all(self, jobs: list[tuple[int, MappingOptions]], compiled: list[Compiled],
                     done: Callable[..., None], stop: Callable[[], bool]) -> None:
        """Compile ``jobs``: append what compiled to ``compiled`` (under :attr:`lock`),
        ``done(i, outcome)`` the others."""
        raise NotImplementedError

    def _run_all(self, compiled: list[Compiled], done: Callable[..., None],
                 stop: Callable[[], bool]) -> None:
        """Check and time ``compiled``: ``done(i, outcome, blob)`` each."""
        raise NotImplementedError
