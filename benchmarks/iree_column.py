"""The ``iree`` column of the benchmarks: the same definition exported to MLIR and run
by IREE (``backend="iree"``, ``llvm-cpu`` for the host's CPU features), on the same
tensors as tc's CPU target, torch eager and ``torch.compile``.

The cell is measured like every other (:func:`benchmarks.runner.measure`: checked
against the float64 truth first, then timed as a user calls it: the tensors' copy to
numpy and back, IREE's invocation); the compile happens in its first call and is
reported as the cell's setup time. It is skipped, with a note, when IREE is not
installed (``pip install '.[mlir]'``), with ``--no-iree``, or on a row whose tensors
are not on the CPU. :func:`report_lines` renders the column next to eager,
``torch.compile`` and tc's cells, with the ratios ``iree/eager``, ``iree/compile``,
``tuned/iree`` (tc tuned against IREE: below 1, tc is faster) and ``iree/bound``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

#: The ratios of the column (also in each row's JSON ``ratios``).
IREE_RATIOS = (("iree", "eager"), ("iree", "compile"), ("tuned", "iree"),
               ("default", "iree"), ("iree", "bound"))

__all__ = ["IREE_RATIOS", "cell", "report_lines"]


def cell(kernel, inputs: Sequence[torch.Tensor], expected, check, device: str, s) -> Any:
    """The ``iree`` cell of a row (a :class:`benchmarks.runner.Cell`)."""
    from benchmarks.runner import Cell, measure
    from tc.mlir import run as iree_run

    if not getattr(s, "iree", True):
        return Cell("skipped", note="--no-iree")
    if device != "cpu":
        return Cell("skipped", note=f"IREE's llvm-cpu runs CPU tensors, not {device}")
    if not iree_run.available():
        return Cell("skipped", note=iree_run.missing_reason() or "IREE is not installed")

    def make() -> Callable[[], Any]:
        import tc

        fn = tc.define(kernel.tc, backend="iree")[kernel.entry]
        return lambda: fn(*inputs)

    return measure(make, expected, kernel, device, s, check)


def _geomean(values: list[float]) -> float | None:
    values = [v for v in values if v and v > 0]
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


def report_lines(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The markdown section of the column; nothing when no row measured it."""
    from benchmarks.report import _fmt_cell, _fmt_ratio, _sizes, _table

    measured = [r for r in rows if "iree" in r["cells"]]
    if not measured or all(r["cells"]["iree"]["status"] == "skipped" for r in measured):
        reasons = sorted({r["cells"]["iree"]["note"] for r in measured})
        return ([] if not measured else
                ["", "## IREE", "", f"Not measured: {'; '.join(reasons)}."])
    cols = ("eager", "compile", "naive", "tuned", "iree")
    head = ["kernel", "sizes", "backend", "eager ms", "torch.compile ms", "tc naive ms",
            "tc tuned ms", "IREE ms", *(f"{a}/{b}" for a, b in IREE_RATIOS)]
    body, notes = [], []
    for r in measured:
        cells = [_fmt_cell(r["cells"].get(c, {"status": "skipped"})) for c in cols]
        ratios = [_fmt_ratio(r["ratios"].get(f"{a}/{b}")) for a, b in IREE_RATIOS]
        body.append([r["kernel"], _sizes(r), r["backend"], *cells, *ratios])
        c = r["cells"]["iree"]
        if c["status"] in ("wrong", "error"):
            notes.append(f"- {r['kernel']} ({r['backend']}): {c['status']}: {c['note']}")
    means = {f"{a}/{b}": _geomean([r["ratios"].get(f"{a}/{b}") for r in measured])
             for a, b in IREE_RATIOS}
    summary = ", ".join(f"{k} {_fmt_ratio(v)}" for k, v in means.items() if v is not None)
    return ["", "## IREE beside tc and torch", "",
            "The same definitions exported to MLIR (`tc.to_mlir`) and run by IREE "
            "(`backend=\"iree\"`, llvm-cpu for the host CPU; compiled in the first call), on "
            "the same tensors. tuned/iree below 1: tc's tuned kernel is faster than IREE's.",
            "", *_table(head, body), *([""] + notes if notes else []),
            "", f"Geomeans: {summary or '-'}."]
