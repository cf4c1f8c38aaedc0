"""Replays every finding of the differential fuzzer stored in ``tests/fuzz/findings/``
(a JSON repro each: program, sizes, input seed, mapping options, target, what was
observed and expected).

A finding with a ``"reason"`` is a known compiler bug that reproduces
deterministically: an expected failure (strict), so that whoever fixes the bug sees
the test pass, and marks it ``"fixed"`` (the fixing commit): it is then a regression
test that must pass. One without a reason is not triaged yet: expected to fail, not
strictly.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tc.fuzz.campaign import replay
from tc.fuzz.run import Worker, available_targets

FINDINGS = Path(__file__).parent / "findings"


def _params() -> list:
    out = []
    for path in sorted(FINDINGS.glob("*.json")):
        record = json.loads(path.read_text())
        reason = record.get("reason")
        if record.get("fixed"):  # a regression test now: it must pass
            out.append(pytest.param(path, id=path.stem))
            continue
        mark = (pytest.mark.xfail(strict=True, reason=reason) if reason else
                pytest.mark.xfail(strict=False, reason="untriaged finding"))
        out.append(pytest.param(path, marks=mark, id=path.stem))
    return out


@pytest.fixture(scope="module")
def worker():
    w = Worker(timeout=120.0)
    yield w
    w.stop()


@pytest.mark.parametrize("path", _params())
def test_stored_finding(path: Path, worker: Worker) -> None:
    record = json.loads(path.read_text())
    if record["target"] not in ("reference", *available_targets()):
        pytest.skip(f"{record['target']} is not available here")
    again = replay(path, worker)
    assert not again, f"{again[0].kind} on {again[0].target}: {again[0].detail}"
