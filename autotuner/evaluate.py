"""Evaluating candidates: compiled in parallel workers, run and timed in isolated ones.

For each generation, :meth:`Evaluator.evaluate`

1. rejects candidates the search space turns away before compiling;
2. compiles the others in a pool of ``threads`` worker processes (the polyhedral
   pipeline, then the back end's compiler: PoCL's build warms PoCL's on-disk cache for
   the runner, NVRTC gives the registers), each under ``compile_timeout``; a compiled
   program launching too few threads or using too much shared memory is rejected;
3. runs the compiled candidates one at a time in a run worker per device (one for
   PoCL's CPU device, one per GPU of ``devices``): a first run is compared with the
   reference outputs (rtol/atol), then warm-up runs, then ``timing_runs`` timed runs
   whose median is the candidate's time. A candidate whose first timed run is
   ``prune_factor`` times slower than the best so far is pruned.

Compiling and running are separate phases so that no compilation competes with a
timed run for the CPU. Every worker is a separate process (``forkserver`` context,
whose server preloads torch and the compiler but never touches PoCL or CUDA, so no
OpenCL or CUDA state is ever forked); a worker that crashes or does not answer
within its timeout is killed, the candidate is recorded as invalid, and a fresh
worker takes the next one. Each step of a run has its own deadline: building the
program (``compile_timeout``), the first run, which includes PoCL's per-launch kernel
compilation (``compile_timeout + run_timeout``), and each later run (``run_timeout``).

Fault injection (for the tests): :data:`FAULTS` and the ``TC_AUTOTUNER_FAULTS``
environment variable (a JSON list of the same dicts) make the workers crash, hang,
compute a wrong result or run slowly for candidates whose serialized options match
(see :func:`fault`).
"""

from __future__ import annotations

import io
import json
import logging
import math
import multiprocessing
import os
import queue
import signal
import statistics
import sys
import threading
import time
import traceback
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch

from autotuner.space import SearchSpace, compiled_rejection
from codegen.launch import CUDA_LIMITS, LaunchLimits
from tc.options import MappingOptions

__all__ = ["FAULTS", "CompileSpec", "Evaluator", "Outcome", "RunSpec", "fault"]

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


class _CompileState:
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


class _RunState:
    def __init__(self, spec: RunSpec) -> None:
        from tc.arguments import bind
        from tc.lang.frontend import check_text

        self.spec = spec
        if spec.device.startswith("cuda"):  # kernels launch on the current device
            torch.cuda.set_device(spec.device)
        self.fn = check_text(spec.lang).functions[spec.entry]
        self.call = bind(self.fn, load_tensors(spec.inputs, spec.device))
        self.reference = load_tensors(spec.reference, "cpu")

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


def _worker_main(conn) -> None:
    """A worker process: set up from the first message, then answer jobs until "exit"."""
    # Ctrl-C reaches the whole process group: the tuner decides what stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    state, broken = None, None
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        try:
            if msg[0] == "exit":
                return
            if msg[0] == "setup":
                spec = msg[1]
                state = (_CompileState if isinstance(spec, CompileSpec) else _RunState)(spec)
            elif broken is not None:
                conn.send(("error", broken))
            else:
                state.handle(conn, *msg[1:])
        except Exception as e:  # noqa: BLE001 - reported to the tuner, which goes on
            text = f"{type(e).__name__}: {e}"
            log.debug("worker error: %s", traceback.format_exc())
            if msg[0] == "setup":
                broken = f"worker setup failed: {text}"
            else:
                conn.send(("error", text))


# ---------------------------------------------------------------------- tuner side


class _Died(Exception):  # the worker process is gone
    pass


class _Timeout(Exception):  # the worker did not answer in time (it was killed)
    pass


class _Stopped(Exception):  # stop() turned true (the worker was killed)
    pass


def _context():
    methods = multiprocessing.get_all_start_methods()
    if "forkserver" not in methods:
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    # Only effective before the server starts (once per process); the modules are
    # imported, nothing is run, so the forked workers start without PoCL/CUDA state.
    ctx.set_forkserver_preload(_PRELOAD)
    return ctx


_MAIN_LOCK = threading.Lock()


class _Worker:
    """One worker process, (re)started on demand and set up with ``spec``."""

    def __init__(self, spec: CompileSpec | RunSpec, name: str) -> None:
        self.spec, self.name = spec, name
        self.proc = None
        self.conn = None
        self.starts = 0

    def _start(self) -> None:
        ctx = _context()
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_worker_main, args=(child,), daemon=True,
                           name=f"tc-tuner-{self.name}")
        # A worker needs nothing of the __main__ module: hide it, so that a script
        # calling the tuner is not run again in every worker (it would without an
        # ``if __name__ == "__main__"`` guard). The lock keeps threads from
        # interleaving the swap.
        with _MAIN_LOCK:
            main = sys.modules["__main__"]
            sys.modules["__main__"] = types.ModuleType("__main__")
            try:
                proc.start()
            finally:
                sys.modules["__main__"] = main
        child.close()
        self.proc, self.conn = proc, parent
        self.conn.send(("setup", self.spec))
        self.starts += 1

    def send(self, msg: tuple) -> None:
        """Send a job, (re)starting the worker first when it is not running."""
        for attempt in range(2):
            if self.proc is None or not self.proc.is_alive():
                self.kill()
                self._start()
            try:
                self.conn.send(msg)
                return
            except (OSError, ValueError):  # it died just now: once more with a new one
                code = self.kill()
                if attempt:
                    raise _Died(f"the worker died on start (exit code {code})") from None

    def receive(self, timeout: float, stop: Callable[[], bool]) -> tuple:
        """The next message; raises _Timeout, _Died or _Stopped (and kills the worker)."""
        deadline = time.monotonic() + timeout
        while True:
            if stop():
                self.kill()
                raise _Stopped
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                raise _Timeout
            try:
                if self.conn.poll(min(left, 0.1)):
                    return self.conn.recv()
            except (EOFError, OSError):
                code = self.kill()
                raise _Died(f"the worker died (exit code {code})") from None

    def kill(self) -> int | None:
        """Stop the process now; returns its exit code."""
        code = None
        if self.proc is not None:
            if self.proc.is_alive():
                self.proc.kill()
            self.proc.join(5)
            code = self.proc.exitcode
            self.proc = None
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        return code

    def close(self) -> None:
        if self.proc is not None and self.proc.is_alive():
            try:
                self.conn.send(("exit",))
                self.proc.join(2)
            except (OSError, ValueError):
                pass
        self.kill()


@dataclass(frozen=True)
class _Compiled:
    index: int
    options: MappingOptions
    blob: bytes


class Evaluator:
    """Evaluates lists of candidate options for one problem (see the module docs).

    Use as a context manager (or call :meth:`close`) so that the workers exit.
    """

    def __init__(self, space: SearchSpace, compile_spec: CompileSpec, run_spec: RunSpec,
                 *, threads: int = 1, devices: Sequence[str] = ("cpu",),
                 compile_timeout: float = 120.0, run_timeout: float = 60.0,
                 prune_factor: float = 100.0) -> None:
        faults = tuple(_active_faults())
        self.space = space
        self.compile_timeout, self.run_timeout = compile_timeout, run_timeout
        self.prune_factor = prune_factor
        self.compilers = [_Worker(replace(compile_spec, faults=faults), f"compile{i}")
                          for i in range(max(1, threads))]
        self.runners = [_Worker(replace(run_spec, device=d, faults=faults), f"run-{d}")
                        for d in devices]
        # The fastest candidate so far (its compiled artefact, for the cache).
        self.best_time: float | None = None
        self.best_options: MappingOptions | None = None
        self.best_artifact: bytes | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> Evaluator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for w in self.compilers + self.runners:
            w.close()

    def evaluate(self, candidates: Sequence[MappingOptions],
                 report: Callable[[int, Outcome], None],
                 stop: Callable[[], bool] = lambda: False) -> None:
        """Evaluate ``candidates``, calling ``report(i, outcome)`` for each one finished
        (none for those left when ``stop()`` turns true)."""

        def done(i: int, outcome: Outcome, artifact: bytes | None = None) -> None:
            with self._lock:
                if outcome.time is not None and (self.best_time is None
                                                 or outcome.time < self.best_time):
                    self.best_time = outcome.time
                    self.best_options, self.best_artifact = candidates[i], artifact
                log.debug("candidate %r: %s %s", candidates[i], outcome.status,
                          outcome.reason)
                report(i, outcome)

        jobs: queue.Queue = queue.Queue()
        for i, options in enumerate(candidates):
            why = self.space.rejection(self.space.genome(options))
            if why is not None:
                done(i, Outcome("rejected", reason=why))
            else:
                jobs.put((i, options))
        compiled: list[_Compiled] = []
        self._drain(self.compilers, jobs,
                    lambda w, job: self._compile(w, *job, compiled, done, stop), stop)
        runs: queue.Queue = queue.Queue()
        for c in sorted(compiled, key=lambda c: c.index):
            runs.put(c)
        self._drain(self.runners, runs,
                    lambda w, c: done(c.index, self._run(w, c, stop), c.blob), stop)

    @staticmethod
    def _drain(workers: Sequence[_Worker], jobs: queue.Queue,
               work: Callable[[_Worker, object], None], stop: Callable[[], bool]) -> None:
        """Process ``jobs`` with one thread per worker (the caller's for a single one)."""

        def loop(worker: _Worker) -> None:
            while not stop():
                try:
                    job = jobs.get_nowait()
                except queue.Empty:
                    return
                try:
                    work(worker, job)
                except _Stopped:
                    return
                except Exception:  # a bug here must not hang the other threads
                    log.exception("autotuner: evaluating a candidate failed")

        busy = workers[: max(1, min(len(workers), jobs.qsize()))]
        if len(busy) == 1:
            loop(busy[0])
            return
        threads = [threading.Thread(target=loop, args=(w,), daemon=True) for w in busy]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def _compile(self, worker: _Worker, index: int, options: MappingOptions,
                 compiled: list[_Compiled], done: Callable[[int, Outcome], None],
                 stop: Callable[[], bool]) -> None:
        try:
            clock = time.perf_counter()
            worker.send(("compile", options.serialize()))
            reply = worker.receive(self.compile_timeout, stop)
            log.debug("compile %s: %s after %.3f s", worker.name, reply[0],
                      time.perf_counter() - clock)
        except _Timeout:
            done(index, Outcome("timeout", reason=f"compiling took over "
                                                  f"{self.compile_timeout:g} s"))
            return
        except _Died as e:
            done(index, Outcome("crash", reason=f"while compiling: {e}"))
            return
        if reply[0] == "ok":  # reply[1]: the artefact (codegen.artifact)
            with self._lock:
                compiled.append(_Compiled(index, options, reply[1]))
        elif reply[0] == "rejected":
            done(index, Outcome("rejected", reason=reply[1]))
        else:
            done(index, Outcome("compile_error", reason=reply[1]))

    def _run(self, worker: _Worker, c: _Compiled, stop: Callable[[], bool]) -> Outcome:
        with self._lock:
            best = self.best_time
        prune_above = math.inf if best is None else self.prune_factor * best
        try:
            worker.send(("run", c.blob, c.options.serialize(), prune_above))
        except _Died as e:
            return Outcome("crash", reason=str(e))
        step, times, clock = "sent", [], time.perf_counter()
        while True:
            timeout = {"sent": self.compile_timeout,
                       "built": self.compile_timeout + self.run_timeout}.get(step,
                                                                             self.run_timeout)
            try:
                reply = worker.receive(timeout, stop)
                log.debug("run %s: %s after %.3f s", worker.name, reply[0],
                          time.perf_counter() - clock)
            except _Timeout:
                return Outcome("timeout", reason=f"no answer within {timeout:g} s after "
                                                 f"step '{step}'", times=tuple(times))
            except _Died as e:
                return Outcome("crash", reason=f"after step '{step}': {e}")
            kind = reply[0]
            if kind in ("built", "checked", "warm"):
                step = kind
            elif kind == "time":
                step = "time"
                times.append(reply[1])
            elif kind == "done":
                return Outcome("ok", statistics.median(reply[1]), times=tuple(reply[1]))
            elif kind == "pruned":
                return Outcome("pruned", reason=f"first timed run {reply[1]:.3g} s, over "
                               f"{self.prune_factor:g} x the best {best:.3g} s",
                               times=(reply[1],))
            else:  # "wrong" or "error"
                return Outcome("wrong" if kind == "wrong" else "run_error", reason=reply[1])
