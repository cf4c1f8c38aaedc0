"""The differential runner's judgement, on made-up outcomes (no compiling), and its
worker on a crash and a hang."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest
import torch

from tc.fuzz.generate import Case, InputSpec
from tc.fuzz.run import Worker, difference, judge, make_inputs, program_precision, promote_text
from tc.options import MappingOptions

CASE = Case("def f(float(N) A) -> (T0) {\n    T0(i) = float(A(i))\n}\n",
            (InputSpec("A", "float", ("N",)),), (("N", 3),), 0, False, False)


def ok(*arrays: np.ndarray) -> dict:
    return {"status": "ok", "outputs": [(f"torch.{a.dtype}", a) for a in arrays],
            "inputs_intact": True}


def tc_error(range_error: bool, positioned: bool = True) -> dict:
    return {"status": "tcerror", "type": "TcRangeError", "message": "read of 'A' out of bounds",
            "positioned": positioned, "range": range_error, "internal": False}


def kinds(outcomes: dict) -> list[tuple[str, str]]:
    return [(f.kind, f.target) for f in judge(CASE, MappingOptions("naive"), outcomes).findings]


def test_difference_tolerances_and_nan() -> None:
    a = np.array([1.0, np.nan, np.inf, -2.0], dtype=np.float32)
    assert difference([("torch.float32", a)], [("torch.float32", a.copy())]) is None
    near = a * np.float32(1 + 1e-6)
    assert difference([("torch.float32", a)], [("torch.float32", near)]) is None
    far = a.copy()
    far[0] = 1.01
    assert "1 of 4 elements differ" in difference([("torch.float32", a)],
                                                  [("torch.float32", far)])
    assert difference([("torch.float32", a)], [("torch.float32", -a)]) is not None  # -inf
    i = np.array([1, 2], dtype=np.int32)
    assert difference([("torch.int32", i)], [("torch.int32", i + 1)]) is not None
    assert difference([("torch.int32", i)], [("torch.int64", i)]) is not None
    # A double result computed from floats is compared at float precision.
    assert program_precision("T0 = double(float(A))") == torch.float32
    assert program_precision("T0 = double(A * 2)") == torch.float64
    assert program_precision("T0 = double(A * 2.5)") == torch.float32


def test_judge() -> None:
    x = np.ones(3, np.float32)
    assert kinds({"reference": ok(x), "cpu": ok(x), "opencl": ok(x)}) == []
    assert kinds({"reference": ok(x), "cpu": ok(x + 1)}) == [("mismatch", "cpu")]
    assert kinds({"reference": ok(x), "cpu": {"status": "crash", "message": "-11"}}) == [
        ("crash", "cpu")]
    assert kinds({"reference": tc_error(True), "cpu": tc_error(True)}) == []
    assert kinds({"reference": tc_error(True), "cpu": ok(x)}) == [("missed-range-error", "cpu")]
    assert kinds({"reference": ok(x), "cpu": tc_error(True)}) == [
        ("spurious-range-error", "cpu")]
    assert kinds({"reference": ok(x), "cpu": tc_error(False, positioned=False)}) == [
        ("bad-error", "cpu")]
    assert kinds({"reference": ok(x), "cuda": {"status": "ok", "resources": [
        {"spill_bytes": 8}]}}) == [("spill", "cuda")]
    assert kinds({"reference": {"status": "exception", "type": "ValueError",
                                "message": "boom"}}) == [("exception", "reference")]


def test_inputs_are_reproducible() -> None:
    special = Case(CASE.text, CASE.inputs, (("N", 50),), 3, True, False)
    a, b = make_inputs(special)[0], make_inputs(special)[0]
    assert torch.equal(a.isnan(), b.isnan()) and a.isnan().any()
    assert torch.equal(a.nan_to_num(), b.nan_to_num())


def crashing(case: Case, target: str, options: MappingOptions) -> dict:
    """A stand-in for ``run_target`` that dies as a segfaulting kernel would."""
    os.kill(os.getpid(), signal.SIGSEGV)
    return {}


def hanging(case: Case, target: str, options: MappingOptions) -> dict:
    time.sleep(60)
    return {}


@pytest.mark.parametrize("kind", ["crash", "hang"])
def test_worker_reports_a_crash_or_a_hang(kind: str) -> None:
    # A crash is reported as soon as it happens: its timeout only has to cover the
    # worker's start-up (imports) on a loaded machine.
    w = Worker(timeout=60.0 if kind == "crash" else 5.0,
               runner=crashing if kind == "crash" else hanging)
    try:
        out = w.run(CASE, MappingOptions("naive"), ("reference", "cpu"))
        assert out["reference"]["status"] == kind and "cpu" not in out
        assert w.proc is None  # replaced on the next case
    finally:
        w.stop()
    assert kinds(out) == [(kind, "reference")]


def test_rounding_amplified_by_cancellation_is_excused() -> None:
    want = [("torch.float32", np.array([5.54], np.float32))]
    got = [("torch.float32", np.array([5.07], np.float32))]
    assert difference(want, got) is not None
    # Both are far from the exact value (-11): the program is ill-conditioned.
    assert difference(want, got, exact=[("torch.float64", np.array([-11.0]))]) is None
    # A target far from an exact value that the reference is close to is still wrong.
    assert difference(want, got, exact=[("torch.float64", np.array([5.55]))]) is not None
    # 0 * (a product that overflowed in float) is NaN; in another order, and exactly, 0.
    nan = [("torch.float32", np.array([np.nan], np.float32))]
    zero = [("torch.float32", np.array([0.0], np.float32))]
    assert difference(nan, zero, exact=[("torch.float64", np.array([0.0]))]) is None
    assert difference(nan, zero, exact=[("torch.float64", np.array([1.0]))]) is not None
    assert promote_text("def f(half(N) A) -> (B) { B(i) = float(A(i)) }") == \
        "def f(double(N) A) -> (B) { B(i) = double(A(i)) }"


_PARENT = """
import sys, time
sys.path.insert(0, {here!r})
from test_judge import CASE, hanging
from tc.fuzz.run import Worker
from tc.options import MappingOptions
w = Worker(timeout=600.0, runner=hanging)
w._start()
print(w.proc.pid, flush=True)
w.run(CASE, MappingOptions("naive"), ("reference",))  # hangs for 60 s
"""


def test_a_worker_dies_with_its_killed_campaign() -> None:
    """SIGKILL on the campaign runs no clean-up; its worker, busy in a hanging case, is
    killed by the kernel all the same (tc.processes.die_with_parent)."""
    from pathlib import Path

    from orphans import assert_worker_dies_with_parent

    here = str(Path(__file__).resolve().parent)
    assert_worker_dies_with_parent(_PARENT.format(here=here), "the fuzz worker")
