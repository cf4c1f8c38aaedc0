"""polyhedral.bounded: a computation that may not end runs in a forked child with a
deadline; its text comes back, or TimedOut."""

from __future__ import annotations

import time

import islpy as isl
import pytest

from polyhedral.bounded import TimedOut, bounded_text


def test_a_result_and_a_failure_come_back() -> None:
    s = isl.Set.read_from_str(isl.Context(), "[N] -> { [i] : 0 <= i < N }")
    assert bounded_text(lambda: str(s.lexmin())) == str(s.lexmin())
    assert bounded_text(lambda: None) is None


def test_a_runaway_computation_is_stopped_at_the_deadline() -> None:
    t = time.monotonic()
    with pytest.raises(TimedOut):
        bounded_text(lambda: time.sleep(30) or "late", seconds=0.5)
    assert time.monotonic() - t < 10


def test_a_crash_in_the_child_is_a_failure_not_a_crash() -> None:
    def boom() -> str:
        raise RuntimeError("in the child")

    assert bounded_text(boom) is None
