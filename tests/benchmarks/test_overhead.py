"""``benchmarks.overhead``: the rows it measures (not how fast: timings are the
report's, never a test's)."""

from __future__ import annotations

from benchmarks import overhead


def test_measure_gives_a_row_per_path() -> None:
    rows = overhead.measure(["cpu"], calls=20)
    assert [what for what, _ in rows] == [
        "torch eager x + 1.0", "cpu: tc.define entry point", "cpu: compiled executor"]
    assert all(us > 0 for _, us in rows)


def test_main_prints_a_markdown_table(capsys) -> None:
    assert overhead.main(["--calls", "10", "--backends", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "| cpu: compiled executor |" in out and "load average" in out
