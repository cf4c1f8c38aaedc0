"""The Ray executor: candidates compiled as Ray tasks anywhere, timed in one actor per machine.

``tc.TunerConfig().executor("ray", address=None)`` (or ``python -m tc tune --executor
ray``) evaluates each generation on a Ray cluster: a local Ray started on demand for
``address=None`` (on 127.0.0.1 only, and stopped at the end of the job), an existing
cluster for ``"auto"``, ``"host:port"`` or ``"ray://host:port"``. The driver (the
process that tunes) keeps the generation loop, the selection and the compilation
cache: it is the only writer of the SQLite file. The workers run the same code as the
local executor's (:class:`~autotuner.evaluate.CompileState`,
:class:`~autotuner.evaluate.RunState`).

**Compiles** are Ray tasks (one CPU each), placed by the driver on the nodes that may
compile for the timing device (for the CPU targets, nodes of the same CPU model:
kernels are built with ``-march=native``; for CUDA, any node), at most as many at once
per node as the node has CPUs, across every definition of the job (:class:`RayPool`
counts the slots).

**Timings** run in timing actors: one per *machine* (per node IP address) for the
CPU targets, so that two timings never share a core even when several Ray nodes run
on one host (as in ``ray.cluster_utils.Cluster``), and one per GPU (``num_gpus=1``)
for CUDA. An actor reserves no logical CPU, since the compile tasks must still fit on
its node; what keeps its timings alone is the job's
:class:`~autotuner.evaluate.PhaseGate` (no compile task of the job is in flight while
a run phase lasts), and each timing uses the machine's cores (``torch.set_num_threads``,
which also sets the kernels' OpenMP threads: Ray would give a worker one). Actors
report the device they time on (:meth:`RunState.device_text`); a generation is timed
only on the actors of one device type (the most numerous), so times are compared
only with times of the same device, and the cache entry names that device.

**Faults.** A task or actor lost mid-candidate (its worker crashed, its node died)
costs nothing the first time: the candidate is retried once, on another node or actor
when there is one, then recorded as ``crash``. A candidate that does not answer in time
is cancelled (its worker killed) and recorded as ``timeout``: a compile after
``compile_timeout``, a run after each step's deadline, as with the local workers (the
actor streams its messages: built, checked, each timed run). A lost or killed actor is
replaced, on another node of the same machine if its node is gone. Ctrl-C sets the
job's stop flag: tasks in flight are cancelled, the best so far is returned, and
:meth:`RayPool.close` kills the actors (and stops a Ray it started).

Traps:

* ``ray.init()`` without an address joins a cluster it finds recorded on this machine;
  the pool asks for ``address="local"`` and binds Ray to the loopback interface
  instead of the machine's network address.
* A Ray worker imports tc from its own Python environment: every node of a real
  cluster needs tc installed (``pip install 'tc[ray]'``), as the README explains.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

from autotuner.evaluate import (
    Collect,
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
from tc.errors import TcBackendError, TcOptionsError
from tc.options import MappingOptions

__all__ = ["RayEvaluator", "RayPool", "ray_module"]

log = logging.getLogger(__name__)

#: Problems (compile or run specs) a worker keeps set up, the most recent first.
STATES_KEPT = 8
#: Object store of a local Ray started on demand (bytes): artefacts and inputs only.
LOCAL_OBJECT_STORE = 256 * 2**20


def ray_module():
    """The ``ray`` module, or a :class:`TcOptionsError` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise TcOptionsError("the ray executor needs Ray: pip install 'tc[ray]' (or pip "
                             "install 'ray>=2.9'); or use TunerConfig().executor('local')"
                             ) from None
    return ray


@contextlib.contextmanager
def _loopback(ray) -> Iterator[None]:
    """Ray binds to the loopback interface while a private local instance starts."""
    from ray._private import ray_constants

    saved = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved


#: Seconds to reach a cluster's address before Ray's own (minutes-long) retries.
CONNECT_TIMEOUT = 10.0


def _reachable(address: str) -> None:
    """A :class:`TcBackendError` now, rather than Ray retrying for minutes, when nothing
    answers at a ``host:port`` or ``ray://host:port`` address (``auto`` is Ray's)."""
    import socket

    target = address.removeprefix("ray://")
    host, sep, port = target.rpartition(":")
    if address == "auto" or not sep or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), CONNECT_TIMEOUT).close()
    except OSError as e:
        raise TcBackendError(
            f"no Ray cluster answers at {address!r} ({e}): start one (`ray start --head` "
            "on its head node), check the address, or use executor('ray') without an "
            "address for a local Ray") from None


# ---------------------------------------------------------------------- worker side

_STATES: collections.OrderedDict = collections.OrderedDict()  # explicit cache, per worker


def _state(key: str, make: Callable[[], object]):
    """This worker's set-up problem ``key`` (made on first use, a few kept)."""
    state = _STATES.get(key)
    if state is None:
        state = _STATES[key] = make()
        while len(_STATES) > STATES_KEPT:
            _STATES.popitem(last=False)
    _STATES.move_to_end(key)
    return state


def _answer(conn, key: str, make: Callable[[], object], handle: Callable[[object], None]
            ) -> None:
    """Run ``handle(state)`` on this worker's set-up problem ``key`` (made by ``make``
    on first use); a failure is sent on ``conn`` as ``("error", text)``, as the local
    workers do (``worker setup failed: ...`` when it is the set-up's)."""
    try:
        state = _state(key, make)
    except Exception as e:  # noqa: BLE001 - reported to the driver, which goes on
        conn.send(("error", f"worker setup failed: {type(e).__name__}: {e}"))
        return
    try:
        handle(state)
    except Exception as e:  # noqa: BLE001
        log.debug("worker error: %s", traceback.format_exc())
        conn.send(("error", f"{type(e).__name__}: {e}"))


def _compile(key: str, spec: CompileSpec, options_json: str) -> list[tuple]:
    """A compile task: the local compile worker's answer."""
    conn = Collect()
    _answer(conn, key, lambda: CompileState(spec),
            lambda state: state.handle(conn, options_json))
    return conn.messages


class _TimingActor:
    """Times candidates on its machine's device (the methods run one at a time)."""

    def __init__(self, backend: str, device: str) -> None:
        import signal

        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver decides what stops
        self.backend, self.device = backend, device
        self.threads = os.cpu_count() or 1

    def describe(self) -> tuple[str, str, int]:
        """(node id, the device timed on, threads per timing)."""
        import ray

        from codegen.targets import get_target

        index = 0 if self.device.startswith("cuda") else None
        return (ray.get_runtime_context().get_node_id(),
                get_target(self.backend).device_text(None, index), self.threads)

    def run(self, key: str, spec: RunSpec, blob: bytes, options_json: str,
            prune_above: float) -> Iterator[tuple]:
        """The run worker's messages, streamed as they come (a generator method: the
        driver gives each step its own deadline, as with the local workers)."""
        import queue

        import torch

        messages: queue.SimpleQueue = queue.SimpleQueue()
        end = object()

        class Stream:
            send = messages.put

        def timed(state: RunState) -> None:
            # Ray starts workers with one OpenMP thread (a per-thread setting, so set in
            # the thread that runs the kernels); a timing has the whole machine.
            torch.set_num_threads(self.threads)
            state.handle(Stream, blob, options_json, prune_above)

        def work() -> None:
            try:
                _answer(Stream, key, lambda: RunState(replace(spec, device=self.device)),
                        timed)
            finally:
                messages.put(end)

        threading.Thread(target=work, daemon=True).start()
        while (message := messages.get()) is not end:
            yield message


# ---------------------------------------------------------------------- the cluster


@dataclass
class _Slot:
    """One timing actor: where it runs and what it times on."""

    host: str
    actor: object
    node: str = ""
    device: str = ""


class RayPool:
    """A job's view of the Ray cluster: the nodes and their compile slots, and the
    timing actors per back end, made on first need and replaced when lost."""

    def __init__(self, address: str | None = None) -> None:
        ray = self.ray = ray_module()
        self.started = False
        if not ray.is_initialized():
            common = {"log_to_driver": False, "configure_logging": False}
            if address is None:
                with _loopback(ray):
                    ray.init(address="local", include_dashboard=False,
                             object_store_memory=LOCAL_OBJECT_STORE, **common)
                log.info("ray: started a local Ray at %s",
                         ray.get_runtime_context().gcs_address)
            else:
                _reachable(address)
                ray.init(address=address, **common)
            self.started = True
        self._compile_task = ray.remote(num_cpus=1, max_retries=0)(_compile)
        self._actor_class = ray.remote(max_restarts=0, max_task_retries=0)(_TimingActor)
        self._lock = threading.Condition()
        self._busy: collections.Counter = collections.Counter()
        self._slots: dict[str, list[_Slot]] = {}
        self.retried = 0  # candidates retried after a lost task or actor (for the tests)
        self.refresh()

    # -- nodes and compile slots

    def refresh(self) -> None:
        """Read the alive nodes: id -> (host address, CPUs)."""
        nodes = {}
        for n in self.ray.nodes():
            if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) >= 1:
                nodes[n["NodeID"]] = (n["NodeManagerAddress"], int(n["Resources"]["CPU"]))
        with self._lock:
            self.nodes = nodes
            self._lock.notify_all()
        log.debug("ray nodes: %s", nodes)

    def acquire(self, eligible: set[str] | None, avoid: str | None,
                stop: Callable[[], bool]) -> str | None:
        """A compile slot: the eligible node with the most free CPUs (``avoid`` last);
        waits while all are busy; None when stopped or no eligible node is left."""
        with self._lock:
            while True:
                free = [(cpus - self._busy[n], n != avoid, n) for n, (_, cpus)
                        in self.nodes.items() if eligible is None or n in eligible]
                if not free:
                    return None
                best = max(free)
                if best[0] > 0:
                    self._busy[best[2]] += 1
                    return best[2]
                if stop():
                    return None
                self._lock.wait(0.1)

    def release(self, node: str) -> None:
        with self._lock:
            self._busy[node] -= 1
            self._lock.notify_all()

    def compile_remote(self, node: str, key: str, spec_ref, options_json: str):
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        strategy = NodeAffinitySchedulingStrategy(node, soft=False)
        return self._compile_task.options(scheduling_strategy=strategy).remote(
            key, spec_ref, options_json)

    # -- timing actors

    def _start(self, backend: str, host: str, device: str, node: str | None = None) -> _Slot:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        if device.startswith("cuda"):
            actor = self._actor_class.options(num_gpus=1).remote(backend, "cuda:0")
        else:
            nodes = [n for n, (h, _) in self.nodes.items() if h == host]
            if not nodes:
                raise TcBackendError(f"no alive Ray node on {host}")
            if node in nodes:
                nodes = [node]
            actor = self._actor_class.options(
                num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(
                    nodes[0], soft=False)).remote(backend, device)
        node, text, _ = self.ray.get(actor.describe.remote())
        return _Slot(host, actor, node, text)

    def slots(self, backend: str, gpu: bool) -> list[_Slot]:
        """The timing actors of ``backend`` (started on first call): one per GPU, or
        one per machine."""
        with self._lock:
            if not self._slots.get(backend):  # none yet, or all discarded
                if gpu:
                    gpus = int(self.ray.cluster_resources().get("GPU", 0))
                    if not gpus:
                        raise TcBackendError("the Ray cluster has no GPU to time CUDA "
                                             "candidates on")
                    wanted = [("", "cuda")] * gpus
                else:
                    wanted = [(h, "cpu") for h in sorted({h for h, _ in self.nodes.values()})]
                self._slots[backend] = [self._start(backend, h, d) for h, d in wanted]
                log.info("ray: %d timing actor(s) for %s: %s", len(wanted), backend,
                         sorted({s.device for s in self._slots[backend]}))
            return list(self._slots[backend])

    def replace(self, backend: str, slot: _Slot, node: str | None = None) -> _Slot | None:
        """A fresh actor instead of ``slot``'s (killed first), on ``node`` if given, else
        on a node of the same machine; None when the machine has no alive node left."""
        with contextlib.suppress(Exception):
            self.ray.kill(slot.actor, no_restart=True)
        self.refresh()
        with self._lock:
            slots = self._slots.get(backend, [])
            try:
                new = self._start(backend, slot.host, "cuda" if slot.host == "" else "cpu",
                                  node)
            except Exception as e:  # noqa: BLE001 - the machine is gone: one actor less
                log.warning("ray: timing actor on %s not replaced: %s", slot.host or "GPU", e)
                new = None
            if slot in slots:
                slots.remove(slot)
            if new is not None:
                slots.append(new)
            return new

    def discard(self, backend: str, slot: _Slot) -> None:
        """Kill ``slot``'s actor without a replacement (the job is stopping)."""
        with contextlib.suppress(Exception):
            self.ray.kill(slot.actor, no_restart=True)
        with self._lock:
            if slot in self._slots.get(backend, []):
                self._slots[backend].remove(slot)

    def close(self) -> None:
        """Kill the actors; stop Ray if this pool started it."""
        with self._lock:
            slots = [s for group in self._slots.values() for s in group]
            self._slots.clear()
        for s in slots:
            with contextlib.suppress(Exception):
                self.ray.kill(s.actor, no_restart=True)
        if self.started:
            self.ray.shutdown()
            self.started = False


# ---------------------------------------------------------------------- driver side


@dataclass
class _Flight:
    """A task or actor call in flight."""

    index: int
    options: MappingOptions
    attempt: int
    where: str  # the node (compile) or host (run)
    deadline: float
    compiled: Compiled | None = None
    slot: _Slot | None = None
    step: str = "sent"  # the run's last message
    timeout: float = 0.0  # the current step's
    times: tuple[float, ...] = ()


class RayEvaluator(Evaluator):
    """:class:`~autotuner.evaluate.Evaluator` on a Ray cluster (see the module docs)."""

    def __init__(self, space: SearchSpace, compile_spec: CompileSpec, run_spec: RunSpec, *,
                 pool: RayPool, **kwargs) -> None:
        super().__init__(space, compile_spec, run_spec, **kwargs)
        self.pool, self.ray = pool, pool.ray
        self.key = uuid.uuid4().hex
        self.backend = run_spec.backend
        from codegen.targets import get_target

        self.gpu = get_target(self.backend).device_type == "cuda"
        slots = pool.slots(self.backend, self.gpu)
        by_device = collections.Counter(s.device for s in slots)
        self._device = max(by_device, key=lambda d: (by_device[d], d))
        if len(by_device) > 1:
            log.warning("ray: timing only on %s (%d actors); not on %s", self._device,
                        by_device[self._device],
                        ", ".join(d for d in by_device if d != self._device))
        self._compile_ref = self.ray.put(self.compile_spec)
        self._run_ref = self.ray.put(self.run_spec)

    @property
    def device(self) -> str:
        return self._device

    def _timing_slots(self) -> list[_Slot]:
        return [s for s in self.pool.slots(self.backend, self.gpu) if s.device == self._device]

    def _compile_nodes(self) -> set[str] | None:
        """Nodes whose code runs on the timing device (any node for a GPU)."""
        if self.gpu:
            return None
        hosts = {s.host for s in self._timing_slots()}
        return {n for n, (h, _) in self.pool.nodes.items() if h in hosts} or None

    def _lost(self, error: Exception) -> bool:
        """Whether ``error`` is a lost worker, actor or node (worth one retry)."""
        ex = self.ray.exceptions
        return isinstance(error, ex.WorkerCrashedError | ex.NodeDiedError | ex.RayActorError
                          | ex.ObjectLostError | ex.OwnerDiedError)

    # -- compiles

    def _compile_all(self, jobs, compiled, done, stop) -> None:
        pending = collections.deque((i, o, 0, None) for i, o in jobs)
        flights: dict = {}
        try:
            while (pending or flights) and not stop():
                while pending:
                    node = self.pool.acquire(self._compile_nodes(), pending[0][3],
                                             lambda: bool(flights) or stop())
                    if node is None:
                        break
                    i, options, attempt, _ = pending.popleft()
                    ref = self.pool.compile_remote(node, self.key, self._compile_ref,
                                                   options.serialize())
                    flights[ref] = _Flight(i, options, attempt, node,
                                           time.monotonic() + self.compile_timeout)
                if not flights:
                    if pending and not stop():  # no eligible node is left
                        for i, _, _, _ in pending:
                            done(i, Outcome("crash", reason="no Ray node left to compile on"))
                        pending.clear()
                    continue
                ready, _ = self.ray.wait(list(flights), num_returns=1, timeout=0.1)
                for ref in ready:
                    f = flights.pop(ref)
                    self.pool.release(f.where)
                    self._compiled(ref, f, pending, compiled, done)
                now = time.monotonic()
                for ref, f in list(flights.items()):
                    if now > f.deadline:
                        flights.pop(ref)
                        self.ray.cancel(ref, force=True)
                        self.pool.release(f.where)
                        done(f.index, Outcome("timeout", reason=f"compiling took over "
                                                                f"{self.compile_timeout:g} s"))
        finally:
            for ref, f in flights.items():  # stopped: cancel what is left
                self.ray.cancel(ref, force=True)
                self.pool.release(f.where)

    def _compiled(self, ref, f: _Flight, pending, compiled, done) -> None:
        try:
            messages = self.ray.get(ref)
        except Exception as e:  # noqa: BLE001 - a lost task costs a retry, then the candidate
            if self._lost(e) and f.attempt == 0:
                self.pool.retried += 1
                self.pool.refresh()
                log.info("ray: compile of candidate %d lost (%s); retried once",
                         f.index, type(e).__name__)
                pending.append((f.index, f.options, 1, f.where))
            else:
                done(f.index, Outcome("crash", reason=f"while compiling: {_brief(e)}"))
            return
        outcome = compile_outcome(messages[-1])
        if outcome is None:
            with self.lock:
                compiled.append(Compiled(f.index, f.options, messages[-1][1]))
        else:
            done(f.index, outcome)

    # -- runs

    def _run_all(self, compiled, done, stop) -> None:
        pending = collections.deque((c, 0, None) for c in compiled)
        flights: dict = {}  # the actor's message stream -> what it runs
        try:
            while (pending or flights) and not stop():
                idle = [s for s in self._timing_slots()
                        if all(f.slot is not s for f in flights.values())]
                if not idle and not flights:
                    for c, _, _ in pending:
                        done(c.index, Outcome("crash", reason="no timing actor left"), c.blob)
                    return
                while pending and idle:
                    c, attempt, avoid = pending.popleft()
                    idle.sort(key=lambda s: s.host == avoid)
                    slot = idle.pop(0)
                    stream = slot.actor.run.options(num_returns="streaming").remote(
                        self.key, self._run_ref, c.blob, c.options.serialize(),
                        self.prune_above())
                    timeout = self.step_timeout("sent")
                    flights[stream] = _Flight(c.index, c.options, attempt, slot.host,
                                              time.monotonic() + timeout, c, slot,
                                              timeout=timeout)
                ready, _ = self.ray.wait(list(flights), num_returns=1, timeout=0.1)
                for stream in ready:
                    if self._step(stream, flights[stream], pending, done):
                        del flights[stream]
                now = time.monotonic()
                for stream, f in list(flights.items()):
                    if now > f.deadline:
                        del flights[stream]
                        self.pool.replace(self.backend, f.slot)
                        done(f.index, Outcome("timeout", reason=f"no answer within "
                                                                f"{f.timeout:g} s after step "
                                                                f"'{f.step}'", times=f.times),
                             f.compiled.blob)
        finally:
            for f in flights.values():  # stopped mid-run: the job ends, the actor goes
                self.pool.discard(self.backend, f.slot)

    def _step(self, stream, f: _Flight, pending, done) -> bool:
        """Read the next message of a run; True when the run is over."""
        try:
            message = self.ray.get(next(stream))
        except StopIteration:
            done(f.index, Outcome("run_error", reason=f"the run ended after step '{f.step}'"),
                 f.compiled.blob)
            return True
        except Exception as e:  # noqa: BLE001 - the actor is lost
            lost = self._lost(e)
            self.pool.replace(self.backend, f.slot)
            if lost and f.attempt == 0:
                self.pool.retried += 1
                log.info("ray: run of candidate %d lost (%s); retried once", f.index,
                         type(e).__name__)
                pending.append((f.compiled, 1, f.where))
            else:
                done(f.index, Outcome("crash", reason=f"after step '{f.step}': {_brief(e)}"),
                     f.compiled.blob)
            return True
        with self.lock:
            best = self.best_time
        outcome = run_outcome(message, best, self.prune_factor, f.slot.device)
        if outcome is not None:
            done(f.index, outcome, f.compiled.blob)
            return True
        f.step = message[0]
        if f.step == "time":
            f.times += (message[1],)
        f.timeout = self.step_timeout(f.step)
        f.deadline = time.monotonic() + f.timeout
        return False


def _brief(error: Exception) -> str:
    """A Ray error's first line (they carry whole tracebacks)."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:300]
