"""Shared by the evaluator tests of both executors: a small problem and one
generation's outcomes."""

from __future__ import annotations

import torch

import tc
from autotuner.evaluate import CompileSpec, Evaluator, Outcome, RunSpec, save_tensors
from autotuner.space import SearchSpace

SCALE = "def scale(float(N) X) -> (Y) { Y(i) = X(i) * 2 + 1 }"


def scale_problem(backend: str, n: int, shared_limit: int, *, min_threads: int = 1,
                  timing_runs: int = 3) -> tuple[SearchSpace, CompileSpec, RunSpec]:
    """The search space and the compile and run specs of :data:`SCALE` on ``n`` seeded
    floats for target ``backend``; the expected outputs are computed here by torch, not
    by the code under test."""
    unit = tc.define(SCALE, backend="reference")
    x = torch.randn(n, generator=torch.Generator().manual_seed(0))
    call = unit["scale"].bind(x)
    expected = x * 2 + 1
    space = SearchSpace.build(unit["scale"].ir, call.sizes, min_threads=min_threads)
    compile_spec = CompileSpec(SCALE, "scale", dict(call.sizes), ((1,),), call.signature(),
                               backend, None, space.min_threads, shared_limit)
    run_spec = RunSpec(SCALE, "scale", backend, None, "cpu", save_tensors([x]),
                       save_tensors([expected]), 1e-5, 1e-6, warmup_runs=1,
                       timing_runs=timing_runs)
    return space, compile_spec, run_spec


def evaluate_all(ev: Evaluator, candidates, stop=lambda: False) -> list[Outcome | None]:
    """Each candidate's outcome (None: not reported), checking that none comes twice."""
    outcomes: list[Outcome | None] = [None] * len(candidates)

    def report(i: int, outcome: Outcome) -> None:
        assert outcomes[i] is None, "reported twice"
        outcomes[i] = outcome

    ev.evaluate(candidates, report, stop)
    return outcomes
