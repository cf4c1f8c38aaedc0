"""Where a tuning job evaluates its candidates: the executors, and what one job shares.

``tc.TunerConfig().executor("local")`` (the default) evaluates on this machine's
worker processes (:mod:`autotuner.local`); ``executor("ray", address=None)`` on a Ray
cluster (:mod:`autotuner.ray_executor`): a local Ray started on demand for
``address=None``, an existing cluster for ``"auto"``, ``"host:port"`` or a
``ray://`` address.

A :class:`Session` holds what the :func:`autotuner.tuner.tune` calls of one job
share: the :class:`~autotuner.evaluate.PhaseGate` that keeps timings alone, the Ray
connection and its timing actors (started once, not per definition), and the flag
that Ctrl-C sets. ``tune`` opens a session of its own when it is not given one;
``python -m tc tune --untimed`` opens one for all the definitions it tunes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from autotuner.evaluate import CompileSpec, Evaluator, PhaseGate, RunSpec
from autotuner.space import SearchSpace
from tc.errors import TcOptionsError

__all__ = ["EXECUTORS", "Session", "check_executor"]

log = logging.getLogger(__name__)

#: The executors ``TunerConfig.executor`` accepts.
EXECUTORS = ("local", "ray")


def check_executor(kind: object, address: object) -> tuple[str, str | None]:
    """``(kind, address)`` checked, or a ``TcOptionsError`` that says what is accepted."""
    if kind not in EXECUTORS:
        raise TcOptionsError(f"TunerConfig.executor: expected one of {', '.join(EXECUTORS)}, "
                             f"got {kind!r}")
    if address is not None and (kind != "ray" or not isinstance(address, str) or not address):
        raise TcOptionsError("TunerConfig.executor: an address is for the ray executor only "
                             "(None: a local Ray started on demand; 'auto', 'host:port' or "
                             f"'ray://host:port': an existing cluster), got {address!r}")
    return kind, address


class Session:
    """The resources one tuning job shares (see the module docs). Use as a context
    manager, or call :meth:`close`: it stops the Ray actors (and a Ray it started)."""

    def __init__(self, executor: str = "local", address: str | None = None) -> None:
        self.executor, self.address = check_executor(executor, address)
        self.gate = PhaseGate()
        #: Set on Ctrl-C (by the job's handler): every search of the job stops.
        self.stop = threading.Event()
        self._pool = None
        self._lock = threading.Lock()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def pool(self):
        """The Ray cluster's timing actors and nodes (:class:`RayPool`), started once."""
        with self._lock:
            if self._pool is None:
                from autotuner.ray_executor import RayPool

                self._pool = RayPool(self.address)
            return self._pool

    def evaluator(self, space: SearchSpace, compile_spec: CompileSpec, run_spec: RunSpec, *,
                  threads: int, devices: Sequence[str], compile_timeout: float,
                  run_timeout: float, prune_factor: float) -> Evaluator:
        """An evaluator of one problem on this session's executor."""
        common = {"compile_timeout": compile_timeout, "run_timeout": run_timeout,
                  "prune_factor": prune_factor, "gate": self.gate}
        if self.executor == "ray":
            from autotuner.ray_executor import RayEvaluator

            return RayEvaluator(space, compile_spec, run_spec, pool=self.pool(), **common)
        from autotuner.local import LocalEvaluator

        return LocalEvaluator(space, compile_spec, run_spec, threads=threads, devices=devices,
                              **common)

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()
