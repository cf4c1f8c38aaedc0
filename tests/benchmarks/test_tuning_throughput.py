"""benchmarks.tuning_throughput: the quick run tunes with the local executor and on a
one-node Ray cluster of this machine, and reports candidates per minute for both."""

from __future__ import annotations

import pytest

pytest.importorskip("ray", reason="Ray is not installed (pip install '.[ray]')")

from benchmarks import tuning_throughput as tt  # noqa: E402


def test_quick_run_reports_both_executors(capsys) -> None:
    assert tt.main(["--quick"]) == 0
    text = capsys.readouterr().out
    rows = [line for line in text.splitlines() if line.startswith("| local")
            or line.startswith("| ray-1")]
    assert len(rows) == 2
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        per_minute, candidates, valid = float(cells[1]), int(cells[3]), int(cells[4])
        assert per_minute > 0 and candidates >= 3 and 1 <= valid <= candidates


def test_report_lists_every_row() -> None:
    row = {"config": "ray-2", "per_minute": 12.0, "warm_s": 60.0, "candidates": 12, "ok": 11,
           "cold_s": 9.0, "cluster_start_s": 3.0, "best_ms": None,
           "statuses": {"ok": 11, "pruned": 1}}
    meta = {"date": "d", "machine": "m", "load_before": "1", "load_after": "2", "sizes": "1,2,3",
            "generations": 1, "pop_size": 12}
    text = tt.report([row], meta)
    assert "| ray-2 | 12.0 | 60.0 | 12 | 11 | 9.0 | 3.0 | - | 11 ok, 1 pruned |" in text
