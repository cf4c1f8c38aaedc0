"""The CPU target's goals in the benchmark report (benchmarks.goals), and re-rendering a
report from its JSON (``python -m benchmarks.report``)."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import goals, report
from tc.catalogue import KERNELS


def _row(kernel: str, **ratios: float) -> dict:
    return {"kernel": kernel, "backend": "cpu", "sizes": {}, "ratios": ratios,
            "roofline": {"limit": "memory"}}


def _report(rows: list[dict], overhead_us: float = 9.0) -> dict:
    return {"rows": rows, "geomeans": report.geomeans(rows),
            "overhead": {"calls": 10, "rows": [["torch eager x + 1.0", 2.0],
                                               ["cpu: compiled executor", overhead_us]],
                         "notes": []}}


def test_every_cause_names_a_catalogue_layer() -> None:
    assert set(goals.CAUSES) <= set(KERNELS)


def test_met_goals_list_no_layer() -> None:
    rows = [_row(k, **{"tuned/eager": 0.5, "tuned/compile": 0.5, "naive/tuned": 3.0})
            for k in ("matmul", "softmax", "fc_relu")]
    text = "\n".join(goals.goal_lines(_report(rows)))
    assert "| no |" not in text and "wrong side" not in text


def test_a_missed_goal_names_its_layers_with_their_cause() -> None:
    rows = [_row("matmul", **{"tuned/eager": 2.5, "tuned/compile": 0.9, "naive/tuned": 3.0}),
            _row("copy3d", **{"tuned/eager": 0.5, "tuned/compile": 0.5, "naive/tuned": 0.5}),
            _row("softmax", **{"tuned/eager": 0.5, "tuned/compile": 0.5, "naive/tuned": 3.0})]
    lines = goals.goal_lines(_report(rows, overhead_us=25.0))
    text = "\n".join(lines)
    assert "| matmul-like layers: tuned tc / torch eager, each | <= 2 | 0 of 1 layers | no |" \
        in text
    assert "- matmul (memory-bound" in text and goals.CAUSES["matmul"] in text
    # The tuning goal (a geomean of 1.44 < 2) names the layer tuning did not help.
    assert "copy3d 0.50" in text and goals.TUNING_CAUSE in text
    assert "| per-call overhead of a memoised kernel on cpu (us) | <= 20 | 25.0 | no |" in text


def test_overhead_goals_per_target() -> None:
    """At most 20 us on the CPU target, 60 on PoCL (issue 13), each in its own row."""
    rows = [_row("softmax", **{"tuned/eager": 0.5, "tuned/compile": 0.5, "naive/tuned": 3.0})]
    report = _report(rows, overhead_us=12.0)
    report["overhead"]["rows"] += [["opencl: tc.define entry point", 58.0],
                                   ["opencl: compiled executor", 61.5]]
    text = "\n".join(goals.goal_lines(report))
    assert "| per-call overhead of a memoised kernel on cpu (us) | <= 20 | 12.0 | yes |" in text
    assert "| per-call overhead of a memoised kernel on opencl (us) | <= 60 | 61.5 | no |" in text


def test_report_is_rendered_again_from_its_json(tmp_path) -> None:
    # A committed run: its document predates the goals and the overhead section.
    committed = Path(report.__file__).parent / "results" / "cpu-2026-12-04.json"
    path = tmp_path / "run.json"
    path.write_text(committed.read_text())
    assert report.main([str(path)]) == 0
    text = (tmp_path / "run.md").read_text()
    assert "## Goals of the CPU target" in text and "What limits each of them" in text
    assert json.loads(path.read_text())["rows"]  # the JSON is rewritten whole
