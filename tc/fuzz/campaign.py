"""Campaigns: rounds of hypothesis examples (a program with sizes and inputs, and
mapping options) through the differential runner; a finding is shrunk by hypothesis
and written out as a JSON repro (``tests/fuzz/test_findings.py`` replays them).

Each round is one hypothesis run with its own seed; a round that finds something ends
with hypothesis shrinking it (re-running only the interpreter and the failing target),
and the smallest failing example of each kind of finding is kept.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import HealthCheck, given, seed, settings
from hypothesis.errors import HypothesisException

from tc.fuzz.generate import Case, cases
from tc.fuzz.run import Finding, Worker, available_targets, judge, mapping_options
from tc.options import MappingOptions

_log = logging.getLogger(__name__)


#: Messages of bugs known and being fixed elsewhere (issue 12's list): not findings.
KNOWN_ELSEWHERE = (re.compile(r"isl_ast_build_expr_from_pw_aff"),)


def known_elsewhere(finding: Finding) -> bool:
    """Whether a finding is one of the bugs of :data:`KNOWN_ELSEWHERE`."""
    return any(p.search(finding.detail) or p.search(finding.observed) for p in KNOWN_ELSEWHERE)


class FindingError(AssertionError):
    """Raised in a hypothesis example that found something; one subclass per (kind,
    target), so that hypothesis shrinks each kind of finding on its own."""


_ERRORS: dict[tuple[str, str], type[FindingError]] = {}


def _error_class(kind: str, target: str) -> type[FindingError]:
    key = (kind, target)
    if key not in _ERRORS:
        _ERRORS[key] = type(f"Finding_{kind.replace('-', '_')}_{target}", (FindingError,), {})
    return _ERRORS[key]


@dataclass
class Stats:
    """What a campaign did."""

    programs: int = 0
    runs: Counter = field(default_factory=Counter)  # (target, event) -> count
    findings: list[Finding] = field(default_factory=list)
    seconds: float = 0.0
    rounds: int = 0
    known: int = 0  # stored findings left out
    declined: Counter = field(default_factory=Counter)  # (target, error) -> count

    def summary(self) -> str:
        """A few lines for humans."""
        targets = sorted({t for t, _ in self.runs})
        lines = [f"{self.programs} programs in {self.rounds} rounds, {self.seconds:.0f} s, "
                 f"{len(self.findings)} new findings ({self.known} stored ones left out)"]
        for t in targets:
            events = ", ".join(f"{e} {n}" for (tt, e), n in sorted(self.runs.items()) if tt == t)
            lines.append(f"  {t}: {sum(n for (tt, _), n in self.runs.items() if tt == t)} runs "
                         f"({events})")
        for (t, message), n in self.declined.most_common(8):
            lines.append(f"  declined {n}x on {t}: {message}")
        for f in self.findings:
            lines.append(f"  finding {f.kind} on {f.target}: {f.detail.splitlines()[0][:160]}")
        return "\n".join(lines)


def _size(item: tuple[Case, MappingOptions]) -> tuple[int, int]:
    case = item[0]
    return len(case.text), sum(v for _, v in case.sizes)


def stored_keys(directory: str | Path) -> set[tuple[str, str, str]]:
    """The keys (:meth:`Finding.key`) of the findings stored in ``directory`` that are
    not fixed yet (a fixed one found again is a regression: news)."""
    from tc.fuzz.run import load_finding

    out = set()
    for path in sorted(Path(directory).glob("*.json")):
        record, case, options = load_finding(path)
        if record.get("fixed"):
            continue
        out.add(Finding(record["kind"], record["target"], record["detail"], case, options).key())
    return out


class Campaign:
    """Runs rounds until a deadline, collecting shrunk findings (deduplicated, and
    leaving out those stored in ``known_dir``)."""

    def __init__(self, out_dir: str | Path | None = None, timeout: float = 120.0,
                 targets: tuple[str, ...] | None = None, shrink_seconds: float = 180.0,
                 known_dir: str | Path | None = None) -> None:
        self.shrink_seconds = shrink_seconds
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.targets = available_targets() if targets is None else targets
        self.worker = Worker(timeout)
        self.stats = Stats()
        self.known = stored_keys(known_dir) if known_dir is not None else set()
        self.stats.known = len(self.known)
        self.deadline = float("inf")

    def check(self, case: Case, options: MappingOptions,
              targets: tuple[str, ...] | None = None) -> list[Finding]:
        """Run one case everywhere (or on ``targets`` after the interpreter); its findings."""
        targets = self.targets if targets is None else targets
        outcomes = self.worker.run(case, options, ("reference", "exact", *targets))
        verdict = judge(case, options, outcomes)
        self.stats.programs += 1
        for target, event in verdict.events.items():
            self.stats.runs[target, event] += 1
        for target, message in verdict.declined.items():
            self.stats.declined[target, re.sub(r"\d+", "#", message)[:120]] += 1
        return verdict.findings

    def stop(self) -> None:
        """End the campaign after the case under way (a signal handler may call it)."""
        self.deadline = 0.0
        self.shrink_seconds = 0.0

    def round(self, examples: int, round_seed: int) -> list[Finding]:
        """One hypothesis run of ``examples`` cases (until :attr:`deadline`); the shrunk
        findings it made."""
        failing: dict[tuple[str, str], list[tuple[Case, MappingOptions, Finding]]] = {}
        focus: list[str] = []  # once something is found, shrink on its target only
        shrink: list[float] = []  # when shrinking began

        @seed(round_seed)
        @settings(max_examples=examples, deadline=None, database=None, derandomize=False,
                  suppress_health_check=list(HealthCheck), report_multiple_bugs=True,
                  print_blob=False)
        @given(case=cases(), options=mapping_options())
        def example(case: Case, options: MappingOptions) -> None:
            now = time.monotonic()
            if not failing and now > self.deadline:
                return  # out of time: the remaining examples are skipped
            if failing and now > shrink[0] + self.shrink_seconds:
                return  # enough shrinking: hypothesis stops when nothing fails any more
            targets = tuple(t for t in self.targets if t in focus) if focus else None
            # Findings already recorded do not end a round again.
            found = [f for f in self.check(case, options, targets)
                     if f.key() not in self.known and not known_elsewhere(f)]
            if found and not shrink:
                shrink.append(now)
            for f in found:
                failing.setdefault((f.kind, f.target), []).append((case, options, f))
                if f.target not in focus and f.target != "reference":
                    focus.append(f.target)
            if found:
                f = found[0]
                raise _error_class(f.kind, f.target)(f"{f.kind} on {f.target}: {f.detail}")

        try:
            example()
        except (FindingError, HypothesisException, BaseExceptionGroup) as e:
            _log.info("round %d ended with %s", round_seed, type(e).__name__)
        out = []
        for runs in failing.values():
            case, options, finding = min(runs, key=lambda r: _size((r[0], r[1])))
            out.append(finding)
        return out

    def record(self, finding: Finding) -> Path | None:
        """Keep a new finding (and write it out); None for one already known."""
        if finding.key() in self.known:
            return None
        self.known.add(finding.key())
        self.stats.findings.append(finding)
        _log.warning("finding %s on %s: %s\n%s", finding.kind, finding.target,
                     finding.detail.splitlines()[0][:200], finding.case.text)
        if self.out_dir is None:
            return None
        self.out_dir.mkdir(parents=True, exist_ok=True)
        record = finding.to_json()
        digest = hashlib.sha1(json.dumps(record, sort_keys=True).encode()).hexdigest()[:12]
        path = self.out_dir / f"finding_{digest}.json"
        path.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
        return path

    def run(self, seconds: float, first_seed: int = 0, examples_per_round: int = 20,
            progress=None) -> Stats:
        """Rounds until ``seconds`` have passed; returns the stats (findings included)."""
        start = time.monotonic()
        self.deadline = start + seconds
        round_seed = first_seed
        try:
            while time.monotonic() < self.deadline:
                before = self.stats.programs
                for finding in self.round(examples_per_round, round_seed):
                    self.record(finding)
                self.stats.rounds += 1
                round_seed += 1
                if progress is not None:
                    progress.update(self.stats.programs - before)
                    progress.set_postfix(findings=len(self.stats.findings))
        finally:
            self.worker.stop()
            self.stats.seconds = time.monotonic() - start
        return self.stats


def replay(path: str | Path, worker: Worker | None = None,
           targets: tuple[str, ...] | None = None) -> list[Finding]:
    """Re-run a stored finding's case (on its target, or ``targets``): the findings of
    the same kind on that target it still gives (empty once fixed)."""
    from tc.fuzz.run import load_finding

    record, case, options = load_finding(path)
    own = worker or Worker()
    try:
        chosen = targets or (() if record["target"] == "reference" else (record["target"],))
        outcomes = own.run(case, options, ("reference", "exact", *chosen))
    finally:
        if worker is None:
            own.stop()
    return [f for f in judge(case, options, outcomes).findings
            if f.kind == record["kind"] and f.target == record["target"]]
