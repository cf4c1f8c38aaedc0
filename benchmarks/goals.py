"""The CPU target's performance goals, checked against a benchmark report, with the
reasons of each miss.

The goals are the native CPU target's (its issue): tuned tc against torch eager and
torch.compile over the catalogue and its subsets, matmul-like layers within 2x of the
library, what tuning buys, and the per-call overhead. A goal that a run misses is
reported with the layers that miss it, each with what its roofline row says (which
limit applies and how far from it tc and torch are) and the cause found by reading
its generated code and timing it under changed options (:data:`CAUSES`): a number alone does not say
what to build next.

Everything reads the report's plain dictionaries, so that ``python -m benchmarks.report
FILE.json`` re-renders an old run with the current analysis.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from benchmarks import defaults

__all__ = ["CAUSES", "GOALS", "Goal", "goal_lines"]


@dataclass(frozen=True)
class Goal:
    """``ratio`` (a row ratio key) over ``subset``: its geomean (``per_row`` False) or
    every row (True) at most ``limit`` (``at_least``: at least)."""

    text: str
    ratio: str
    limit: float
    subset: str = "all kernels"
    per_row: bool = False
    at_least: bool = False

    def met(self, value: float) -> bool:
        return value >= self.limit if self.at_least else value <= self.limit


GOALS = (
    Goal("tuned tc / torch eager, geomean over the catalogue", "tuned/eager", 1.0),
    Goal("tuned tc / torch eager, geomean over the fused layers", "tuned/eager", 0.6,
         "fused layers"),
    Goal("tuned tc / torch.compile, geomean over the catalogue", "tuned/compile", 1.0),
    Goal("matmul-like layers: tuned tc / torch eager, each", "tuned/eager", 2.0,
         "matmul-like", per_row=True),
    Goal("naive / tuned (what tuning buys), geomean over the catalogue", "naive/tuned", 2.0,
         at_least=True),
)
#: Per-call overhead of a memoised kernel, in microseconds.
OVERHEAD_GOAL_US = 20.0
#: ... per target (issue 13: at most 20 us on the CPU target, 60 on PoCL).
OVERHEAD_GOALS_US = {"cpu": OVERHEAD_GOAL_US, "opencl": 60.0}

#: Why a layer misses, from its generated C (``python -m tc explain --stage cpu``), its
#: roofline row and timing experiments (one option changed at a time) on the 2-core
#: AVX-512 machine of the reports. Keyed by
#: catalogue name; a layer missing here is reported as "not analysed".
CAUSES: dict[str, str] = {
    "tmm": "2 MFLOP: eager takes 13 us, so the call overhead (about 9 us) and waking the "
           "OpenMP team are most of tc's time; the kernel itself is the packed GEMM form "
           "when tuning picks packing",
    "tbmm": "500 tiny 26x72x26 products: a tile per batch fills 26 of 32 lanes at best "
            "and leaves partial tiles everywhere; MKL batches them in its own micro-kernel",
    "matmul": "compute-bound at 256^3: gcc's auto-vectorised 4-row register tile reaches "
              "about a third of the peak; MKL's hand-written 6x64 FMA micro-kernel with "
              "software prefetch reaches nearly all of it",
    "bmm": "as matmul, per batch",
    "conv2d": "compute-bound; the 3x3 window walks input rows with a stride of W per "
              "tap and the register tile holds one output row: oneDNN's direct "
              "convolution blocks channels by 16 in a packed layout (nChw16c)",
    "conv2d_s2": "as conv2d, and the stride 2 makes every input read a gather",
    "group_conv": "4 channels per group: too few for a vector over channels, and the "
                  "window's loops are short",
    "kru3": "three chained contractions with their temporaries through memory (no "
            "contraction of the temporaries into a tile buffer yet)",
    "fc_relu": "a GEMM (as matmul) plus bias and ReLU in the epilogue; MKL's GEMM is "
               "3x faster on the product itself",
    "fc_relu_dx": "a GEMM with a transposed operand; the forward product is recomputed "
                  "(the gradient definition recomputes the ReLU mask)",
    "fc_relu_dw": "as fc_relu_dx, reduced over the batch",
    "fc_relu_backward": "three products and a reduction in one definition, each a GEMM "
                        "at gcc's speed",
    "conv2d_dx": "the transposed convolution reads through guards (the padding): a "
                 "guarded read stops vectorisation of the window loop",
    "conv2d_dw": "reduces over the whole image per weight: a reduction over the "
                 "parallel dimension's neighbours, no packing of the image tiles",
    "softmax": "four statements; the temporary e(m, n) goes through memory (written "
               "once, read twice): three passes over the data against torch's two, and "
               "256-wide rows leave little for the threads",
    "layer_norm": "two passes of reductions (mean, variance) then the normalisation: "
                  "memory-bound at 1.2-1.3x the bound, where torch's fused kernel is at "
                  "0.7-0.9x (it keeps a row in cache between passes)",
    "group_norm": "tiny (4x32 groups of 2304): the call overhead and four kernels "
                  "dominate; the temporaries go through memory",
    "cross_entropy": "1,280 elements: a 15 us call in torch; tc's call overhead alone "
                     "is most of that",
    "cross_entropy_mean": "as cross_entropy",
    "embedding_sum": "random rows of a 256 MB table: memory latency, as for torch",
    "wavenet": "five stages with temporaries through memory at batch 1",
    "maxpool2x2": "against torch.compile: the window's stride-2 reads are gathers; "
                  "eager is slower still",
    "maxpool3x3": "as maxpool2x2",
    "avgpool3x3": "as maxpool2x2",
    "avgpool2x2": "as maxpool2x2",
    "transpose3d_210": "a transpose walks one side with a large stride; without a "
                       "blocked (cache-tile) copy both tc and torch are at 5-10x the "
                       "bandwidth bound",
    "transpose3d_021": "as transpose3d_210",
    "transpose3d_120": "as transpose3d_210",
    "transpose4d_0312": "as transpose3d_210",
    "transpose4d_0231": "as transpose3d_210",
    "transpose4d_3210": "as transpose3d_210",
    "copy3d": "memory-bound; the tuner's pick under load was slower than naive",
    "copy4d": "as copy3d",
    "activation_stats": "a reduction over the batch (the first dimension) of 128x512: "
                        "each thread sums columns with stride; small",
    "moments": "memory-bound reductions",
    "mlp3": "small chained products",
    "depthwise_conv": "memory-bound; one channel per plane",
}


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def _geomean(report: Mapping[str, Any], backend: str, goal: Goal) -> tuple[float | None, int]:
    cell = (report.get("geomeans") or {}).get(backend, {}).get(goal.ratio, {}).get(goal.subset)
    return (cell["geomean"], cell["n"]) if cell else (None, 0)


def _rows(report: Mapping[str, Any], backend: str, goal: Goal) -> list[Mapping[str, Any]]:
    from benchmarks.report import SUBSETS

    names = SUBSETS.get(goal.subset)
    return [r for r in report["rows"] if r["backend"] == backend
            and (names is None or r["kernel"] in names)
            and r["ratios"].get(goal.ratio) is not None]


def _cause_line(r: Mapping[str, Any]) -> str:
    roof = r.get("roofline") or {}
    where = ""
    if roof.get("available", True) and roof.get("limit"):
        where = (f" ({roof['limit']}-bound; tuned {_fmt(r['ratios'].get('tuned/bound'))}x "
                 f"the bound, eager {_fmt(r['ratios'].get('eager/bound'))}x)")
    return f"- {r['kernel']}{where}: {CAUSES.get(r['kernel'], 'not analysed')}"


#: Why tuning buys less than the goal, for the goal that is about tuning itself.
TUNING_CAUSE = (
    "the CPU mapping's defaults already give most layers the structure tuning would "
    "find (the outer loop parallel, the unit-stride loop in lanes, register tiles, "
    "full tiles isolated), so tuning picks tile sizes, fusion and packing; on two "
    "cores shared with other work, timing noise also costs it picks (layers whose "
    "tuned time is above the naive one)")


def goal_lines(report: Mapping[str, Any], backend: str = "cpu") -> list[str]:
    """The goals as markdown lines for ``backend``: each goal's value and whether it
    is met, then for each missed one the layers on the wrong side (worst first), and
    once per layer what limits it and why."""
    if not any(r["backend"] == backend for r in report["rows"]):
        return []
    out = [f"| goal ({backend}) | aim | measured | met |", "|---|---|---|---|"]
    misses: list[str] = []
    missing: dict[str, Mapping[str, Any]] = {}
    for goal in GOALS:
        aim = f"{'>=' if goal.at_least else '<='} {goal.limit:g}"
        rows = _rows(report, backend, goal)
        # The layers on the wrong side: they miss a per-layer goal, or pull a
        # geomean the wrong way.
        bad = [r for r in rows if not goal.met(r["ratios"][goal.ratio])]
        if goal.per_row:
            value = f"{len(rows) - len(bad)} of {len(rows)} layers"
            ok = not bad and bool(rows)
        else:
            g, n = _geomean(report, backend, goal)
            value = f"{_fmt(g)} (n={n})"
            ok = g is not None and goal.met(g)
        out.append(f"| {goal.text} | {aim} | {value} | {'yes' if ok else 'no'} |")
        if ok or not bad:
            continue
        bad.sort(key=lambda r: r["ratios"][goal.ratio], reverse=not goal.at_least)
        names = ", ".join(f"{r['kernel']} {_fmt(r['ratios'][goal.ratio])}" for r in bad)
        if goal.at_least:
            misses.append(f"- **{goal.text}**: {names}. Why: {TUNING_CAUSE}.")
            continue
        misses.append(f"- **{goal.text}**: {names}.")
        missing.update((r["kernel"], r) for r in bad if r["kernel"] not in missing)
    default_rows, default_notes = defaults.goal_lines(report, backend)
    out += default_rows
    calls = report.get("overhead") or {}
    for target, goal in OVERHEAD_GOALS_US.items():
        mine = [v for what, v in calls.get("rows", []) if what.startswith(f"{target}:")]
        if mine:
            worst = max(mine)
            out.append(f"| per-call overhead of a memoised kernel on {target} (us) | <= "
                       f"{goal:g} | {worst:.1f} | {'yes' if worst <= goal else 'no'} |")
    if misses:
        out += ["", "Layers on the wrong side of each missed goal (tc / torch):", "", *misses]
    if default_notes:
        out += ["", "Default options (`tc.defaults`, issue 13):", "", *default_notes]
    if missing:
        out += ["", "What limits each of them (its roofline row, and the cause found in its "
                "generated code and timing experiments; kept in `benchmarks/goals.py`):", "",
                *(_cause_line(r) for r in missing.values())]
    return out


def overhead_lines(report: Mapping[str, Any]) -> list[str]:
    """The per-call overhead table of a report (empty when it was not measured)."""
    calls = report.get("overhead") or {}
    rows: Sequence = calls.get("rows", [])
    if not rows:
        return []
    lines = [f"Median of {calls['calls']} calls of a 4-element definition (the kernel's "
             "own work is nanoseconds), in microseconds:", "", "| call | us |", "|---|---|"]
    lines += [f"| {what} | {us:.1f} |" for what, us in rows]
    lines += [f"- {n}" for n in calls.get("notes", [])]
    return lines
