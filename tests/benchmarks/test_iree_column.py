"""The ``iree`` column of the benchmarks (benchmarks.iree_column): measured beside
eager, torch.compile and tc on the same tensors, checked, rendered; skipped with a
note when asked or when IREE is missing."""

from __future__ import annotations

import pytest

from benchmarks import iree_column, runner
from benchmarks import report as report_mod
from benchmarks.runner import Settings, bench_kernel
from tc import catalogue
from tc.mlir import run as iree_run

FAST = Settings(runs=2, warmup=0, torch_compile=False, tune=False, cache_latency=False)


def _report(rows) -> dict:
    return {"name": "i", "date": "d", "elapsed_s": 1.0, "machine": runner.machine_facts(),
            "settings": {**vars(FAST), "quick": True}, "rows": [r.as_dict() for r in rows],
            "tuning": {"available": False, "note": "x"},
            "cache_latency": {"available": False, "note": "y"}}


@pytest.mark.skipif(not iree_run.available(), reason=iree_run.missing_reason() or "")
def test_iree_cell_is_measured_beside_tc_and_torch() -> None:
    kernel = catalogue.get("tmm")
    row = bench_kernel(kernel, kernel.test_sizes[0], "cpu", FAST)
    cell = row.cells["iree"]
    assert cell.status == "ok", cell.note
    assert cell.ms > 0 and cell.runs == 2 and cell.setup_s > 0
    assert row.ratio("iree", "eager") == pytest.approx(cell.ms / row.cells["eager"].ms)
    d = row.as_dict()
    assert d["ratios"]["iree/eager"] is not None and "default/iree" in d["ratios"]
    md = report_mod.to_markdown(_report([row]))
    assert "## IREE beside tc and torch" in md
    line = next(ln for ln in md.splitlines() if ln.startswith("| tmm | M=3 N=5 K=7 | cpu |")
                and ln.count("|") == len(iree_column.IREE_RATIOS) + 9)
    assert "Geomeans: iree/eager" in md and line


def test_iree_cell_skipped_with_a_note() -> None:
    kernel = catalogue.get("tmm")
    row = bench_kernel(kernel, kernel.test_sizes[0], "cpu",
                       Settings(**{**vars(FAST), "iree": False}))
    assert row.cells["iree"] == runner.Cell("skipped", note="--no-iree")
    md = report_mod.to_markdown(_report([row]))
    assert "## IREE" in md and "Not measured: --no-iree." in md
    assert iree_column.report_lines([]) == []
