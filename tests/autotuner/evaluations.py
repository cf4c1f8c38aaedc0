"""Shared by the evaluator tests of both executors: one generation's outcomes."""

from __future__ import annotations

from autotuner.evaluate import Evaluator, Outcome


def evaluate_all(ev: Evaluator, candidates, stop=lambda: False) -> list[Outcome | None]:
    """Each candidate's outcome (None: not reported), checking that none comes twice."""
    outcomes: list[Outcome | None] = [None] * len(candidates)

    def report(i: int, outcome: Outcome) -> None:
        assert outcomes[i] is None, "reported twice"
        outcomes[i] = outcome

    ev.evaluate(candidates, report, stop)
    return outcomes
