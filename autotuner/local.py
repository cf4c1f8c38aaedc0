"""The local executor: candidates compiled and timed in worker processes of this machine.

``threads`` compile workers, and one run worker per device (PoCL's or the C target's
CPU, or one per GPU of ``devices``), each a separate process. The ``forkserver``
context's server preloads torch and the compiler but never touches PoCL or CUDA, so
no OpenCL or CUDA state is ever forked. A worker that crashes or does not answer
within its deadline is killed, the candidate is recorded as invalid, and a fresh
worker takes the next one. Each step of a run has its own deadline: building the
program (``compile_timeout``), the first run, which includes PoCL's per-launch kernel
compilation (``compile_timeout + run_timeout``), and each later run (``run_timeout``).

Traps:

* a worker needs nothing of ``__main__``: it is hidden while a worker starts, so a
  script calling the tuner without an ``if __name__ == "__main__"`` guard is not run
  again in every worker;
* Ctrl-C reaches the whole process group: workers ignore SIGINT, the tuner decides
  what stops (:mod:`autotuner.tuner`).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import signal
import sys
import threading
import time
import traceback
import types
from collections.abc import Callable, Sequence
from dataclasses import replace

from autotuner.evaluate import (
    Compiled,
    CompileSpec,
    CompileState,
    Evaluator,
    Outcome,
    RunSpec,
    RunState,
    compile_outcome,
    run_outcome,
)
from autotuner.space import SearchSpace
from tc.options import MappingOptions

__all__ = ["LocalEvaluator"]

log = logging.getLogger(__name__)

_PRELOAD = ["torch", "tc", "codegen.compiler", "codegen.executor", "autotuner.evaluate",
            "autotuner._forkserver"]


def _worker_main(conn, forked_by_server: bool = False) -> None:
    """A worker process: set up from the first message, then answer jobs until "exit"."""
    # Ctrl-C reaches the whole process group: the tuner decides what stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if forked_by_server:
        # The forkserver ends with the tuner, even one killed by SIGKILL; a worker busy
        # in a hanging candidate ends with it (a spawned worker's parent is a thread of
        # the tuner's that may end first: see tc.processes).
        from tc.processes import die_with_parent

        die_with_parent(os.getppid())
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
                state = (CompileState if isinstance(spec, CompileSpec) else RunState)(spec)
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
        proc = ctx.Process(target=_worker_main,
                           args=(child, ctx.get_start_method() == "forkserver"), daemon=True,
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


class LocalEvaluator(Evaluator):
    """:class:`~autotuner.evaluate.Evaluator` with worker processes on this machine:
    ``threads`` compilers, one runner per entry of ``devices``."""

    def __init__(self, space: SearchSpace, compile_spec: CompileSpec, run_spec: RunSpec,
                 *, threads: int = 1, devices: Sequence[str] = ("cpu",),
                 **kwargs) -> None:
        super().__init__(space, compile_spec, run_spec, **kwargs)
        self.compilers = [_Worker(self.compile_spec, f"compile{i}")
                          for i in range(max(1, threads))]
        self.runners = [_Worker(replace(self.run_spec, device=d), f"run-{d}") for d in devices]

    def close(self) -> None:
        for w in self.compilers + self.runners:
            w.close()

    def _compile_all(self, jobs, compiled, done, stop) -> None:
        pending: queue.Queue = queue.Queue()
        for job in jobs:
            pending.put(job)
        self._drain(self.compilers, pending,
                    lambda w, job: self._compile(w, *job, compiled, done, stop), stop)

    def _run_all(self, compiled, done, stop) -> None:
        runs: queue.Queue = queue.Queue()
        for c in compiled:
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
                 compiled: list[Compiled], done: Callable[..., None],
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
        outcome = compile_outcome(reply)
        if outcome is None:  # reply[1]: the artefact (codegen.artifact)
            with self.lock:
                compiled.append(Compiled(index, options, reply[1]))
        else:
            done(index, outcome)

    def _run(self, worker: _Worker, c: Compiled, stop: Callable[[], bool]) -> Outcome:
        with self.lock:
            best = self.best_time
        try:
            worker.send(("run", c.blob, c.options.serialize(), self.prune_above()))
        except _Died as e:
            return Outcome("crash", reason=str(e))
        step, times, clock = "sent", [], time.perf_counter()
        while True:
            timeout = self.step_timeout(step)
            try:
                reply = worker.receive(timeout, stop)
                log.debug("run %s: %s after %.3f s", worker.name, reply[0],
                          time.perf_counter() - clock)
            except _Timeout:
                return Outcome("timeout", reason=f"no answer within {timeout:g} s after "
                                                 f"step '{step}'", times=tuple(times))
            except _Died as e:
                return Outcome("crash", reason=f"after step '{step}': {e}")
            outcome = run_outcome(reply, best, self.prune_factor)
            if outcome is not None:
                return outcome
            step = reply[0]
            if step == "time":
                times.append(reply[1])
