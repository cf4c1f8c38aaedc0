"""Candidate evaluation: isolated workers, faults (crash, hang, wrong result, slow run),
pruning, rejection, the output check."""

from __future__ import annotations

import math
import time

import pytest
import torch
from evaluations import evaluate_all, scale_problem

from autotuner import evaluate
from autotuner.evaluate import mismatch
from autotuner.local import LocalEvaluator as Evaluator
from tc.options import MappingOptions

N = 1024


def _evaluator(*, min_threads: int = 1, **kwargs) -> Evaluator:
    space, compile_spec, run_spec = scale_problem("opencl", N, 48 * 1024,
                                                  min_threads=min_threads)
    settings = {"threads": 2, "compile_timeout": 60.0, "run_timeout": 1.5} | kwargs
    return Evaluator(space, compile_spec, run_spec, **settings)


def _tile(n: int) -> MappingOptions:
    return MappingOptions("naive").tile(n).mapToThreads(32).mapToBlocks(8)


def test_crash_hang_and_wrong_result_cost_one_candidate_each(monkeypatch) -> None:
    good, crash, hang, wrong, good2 = (_tile(n) for n in (4, 8, 16, 32, 64))
    monkeypatch.setattr(evaluate, "FAULTS", [
        evaluate.fault("crash", options=crash), evaluate.fault("hang", options=hang),
        evaluate.fault("wrong", options=wrong)])
    with _evaluator() as ev:
        start = time.monotonic()
        outcomes = evaluate_all(ev, [good, crash, hang, wrong, good2])
        elapsed = time.monotonic() - start
        runner_starts = ev.runners[0].starts
    assert [o.status for o in outcomes] == ["ok", "crash", "timeout", "wrong", "ok"]
    assert "exit code 70" in outcomes[1].reason
    assert "differ from the reference" in outcomes[3].reason
    for o in (outcomes[0], outcomes[4]):
        assert len(o.times) == 3 and o.time == sorted(o.times)[1] > 0
    assert all(o.time is None for o in outcomes[1:4])
    assert runner_starts == 3  # replaced after the crash and after the hang
    assert elapsed < 45  # the hang cost its run timeout, not its hour of sleep


def test_faults_while_compiling(monkeypatch) -> None:
    good, crash, hang = _tile(4), _tile(2), _tile(1)
    monkeypatch.setattr(evaluate, "FAULTS", [
        evaluate.fault("crash", "compile", options=crash),
        evaluate.fault("hang", "compile", options=hang)])
    with _evaluator(threads=1) as ev:
        outcomes = evaluate_all(ev, [crash, good])
    assert [o.status for o in outcomes] == ["crash", "ok"]
    assert "while compiling" in outcomes[0].reason
    with _evaluator(threads=1, compile_timeout=2.0) as ev:
        (outcome,) = evaluate_all(ev, [hang])
    assert outcome.status == "timeout" and "compiling took over 2 s" in outcome.reason


def test_slow_candidate_is_pruned_after_one_timed_run(monkeypatch) -> None:
    good, slow = _tile(4), _tile(8)
    monkeypatch.setattr(evaluate, "FAULTS", [evaluate.fault("slow", options=slow,
                                                            seconds=1.0)])
    with _evaluator(prune_factor=100.0) as ev:
        outcomes = evaluate_all(ev, [good, slow])
    assert outcomes[0].status == "ok"
    # The kernel itself takes well under 10 ms, so 1 s is over 100x the best.
    assert outcomes[0].time < 0.01
    assert outcomes[1].status == "pruned" and outcomes[1].time is None
    assert len(outcomes[1].times) == 1 and outcomes[1].times[0] >= 1.0


def test_rejection_before_and_after_compiling() -> None:
    few = MappingOptions("naive").tile(4).mapToThreads(16).mapToBlocks(16)  # 256 at most
    # 64 x 64 threads on paper, but the compiler tightens the block to the 4-point
    # tiles: 64 blocks x 4 threads = 256 launched.
    tight = MappingOptions("naive").tile(4).mapToThreads(64).mapToBlocks(64)
    enough = MappingOptions("naive").tile(32).mapToThreads(32).mapToBlocks(32)  # 1024
    with _evaluator(min_threads=1024) as ev:
        assert ev.space.min_threads == 1024
        outcomes = evaluate_all(ev, [few, tight, enough])
    assert outcomes[0].status == "rejected" and "at most 256 threads" in outcomes[0].reason
    assert outcomes[1].status == "rejected"
    assert "256 threads launched, fewer than the 1024" in outcomes[1].reason
    assert outcomes[2].status == "ok"


def test_stop_reports_nothing_more() -> None:
    with _evaluator() as ev:
        assert evaluate_all(ev, [_tile(4), _tile(8)], stop=lambda: True) == [None, None]


def test_mismatch() -> None:
    ref = [torch.tensor([1.0, 100.0, float("nan")]), torch.tensor([3, 4], dtype=torch.int32)]
    same = [ref[0].clone(), ref[1].clone()]
    assert mismatch(same, ref, 1e-4, 1e-5) is None
    near = [ref[0] * (1 + 5e-5), ref[1]]
    assert mismatch(near, ref, 1e-4, 1e-5) is None
    far = [ref[0] * (1 + 5e-3), ref[1]]
    assert "output 0: 2 of 3 elements differ" in mismatch(far, ref, 1e-4, 1e-5)
    ints = [ref[0], ref[1] + torch.tensor([0, 1], dtype=torch.int32)]
    assert "output 1: 1 of 2" in mismatch(ints, ref, 1.0, 1.0)  # integers are exact
    # atol follows the largest reference magnitude: 1e-5 * 100 = 1e-3 absolute
    small = [torch.tensor([0.0, 100.0]), ref[1]]
    assert mismatch([torch.tensor([5e-4, 100.0]), ref[1]], small, 0.0, 1e-5) is None
    assert mismatch([torch.tensor([2e-3, 100.0]), ref[1]], small, 0.0, 1e-5) is not None
    assert "shape" in mismatch([ref[0][:2], ref[1]], ref, 1e-4, 1e-5)


@pytest.mark.parametrize("kind", ["crash", "hang", "wrong", "slow", "interrupt"])
def test_fault_matches_only_its_options(kind: str) -> None:
    target = _tile(4)
    spec = evaluate.fault(kind, options=target, pid=1)
    found = evaluate._faults([spec], target.serialize(), "run")
    assert list(found) == [kind]
    assert evaluate._faults([spec], _tile(8).serialize(), "run") == {}
    assert evaluate._faults([spec], target.serialize(), "compile") == {}
    by_field = evaluate.fault(kind, unroll_factor=1)
    assert evaluate._faults([by_field], target.serialize(), "run")
    assert math.isfinite(spec["seconds"])


def test_the_phase_gate_keeps_timed_runs_alone() -> None:
    """Compile phases overlap; a run phase waits for them, and new compile phases wait
    for a run phase that is waiting (so timings are never starved)."""
    import threading

    gate = evaluate.PhaseGate()
    log: list[str] = []
    compiling = gate.compiling()
    compiling.__enter__()  # a first definition compiles
    with gate.compiling():  # a second one may compile meanwhile
        log.append("second compiles")

    def timing() -> None:
        with gate.timing():
            log.append("timed")

    def late_compile() -> None:
        with gate.compiling():
            log.append("late compiles")

    timer = threading.Thread(target=timing)
    timer.start()
    time.sleep(0.2)
    late = threading.Thread(target=late_compile)
    late.start()
    time.sleep(0.2)
    assert log == ["second compiles"]  # the timing waits for the first compile phase,
    compiling.__exit__(None, None, None)  # and the late compile waits behind the timing
    timer.join(5)
    late.join(5)
    assert log == ["second compiles", "timed", "late compiles"]


_TUNER = """
import sys, threading, time
sys.path.insert(0, {here!r})
from test_evaluate import _evaluator, _tile
from autotuner import evaluate
evaluate.FAULTS.append(evaluate.fault("hang"))  # every run hangs (an hour)
ev = _evaluator(run_timeout=600.0)
threading.Thread(target=ev.evaluate, args=([_tile(4)], lambda i, o: None), daemon=True).start()
while ev.runners[0].proc is None:
    time.sleep(0.05)
print(ev.runners[0].proc.pid, flush=True)
time.sleep(600)
"""


def test_workers_die_with_a_killed_tuner() -> None:
    """SIGKILL on the tuner runs no clean-up; its run worker, hanging in a candidate, is
    killed all the same (the forkserver ends with the tuner; tc.processes)."""
    from pathlib import Path

    from orphans import assert_worker_dies_with_parent

    here = str(Path(__file__).resolve().parent)
    assert_worker_dies_with_parent(_TUNER.format(here=here), "the run worker")
