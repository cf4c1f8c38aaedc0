"""The benchmark's "default" cell: tc with the options of :func:`tc.defaults.default_options`.

Issue 13 (good defaults): when no options factory is given, the options come from a
cheap per-target heuristic instead of ``MappingOptions("naive")``. The runner measures
that cell on the same tensors as the naive and tuned ones
(:func:`benchmarks.runner.bench_kernel`), and the report's goals section checks it
(:func:`goal_lines`): the default options within :data:`DEFAULT_VS_TUNED` of the tuned
ones (geomean of default / tuned over the catalogue) and no layer slower than naive.

On a machine shared with other work, a median time moves with the load (a 2-thread
OpenMP call waits for a busy core a scheduler tick at a time), so the layers slower
than naive are also counted by the fastest call of each cell, which the load can only
slow down: a layer slower by its median only is noise, one slower by its fastest call
too is the heuristic's.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["DEFAULT_VS_TUNED", "NOISE_MARGIN", "default_options_for", "goal_lines"]

#: The goal: geomean of default / tuned over the catalogue at most this (CPU target).
DEFAULT_VS_TUNED = 2.0
#: A default cell within this factor of the naive one counts as "as fast" in the
#: fastest-call count (timer resolution and cache state, not the options).
NOISE_MARGIN = 1.05


def default_options_for(text: str, entry: str, inputs: Sequence[Any], backend: str
                        ) -> tuple[Any, float]:
    """The default options of ``entry`` of ``text`` for ``inputs`` on target ``backend``,
    and the seconds :func:`tc.defaults.default_options` took (parsing excluded)."""
    import tc
    from codegen.targets import get_target
    from tc.defaults import default_options

    fn = tc.define(text, backend="reference")[entry]
    call = fn.bind(*inputs)
    target = get_target(backend)
    t0 = time.perf_counter()
    options = default_options(fn.ir, call, target)
    return options, time.perf_counter() - t0


def _ms(cell: Mapping[str, Any] | None, fastest: bool = False) -> float | None:
    if not cell or cell.get("status") != "ok":
        return None
    return cell.get("min_ms") if fastest else cell.get("ms")


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def goal_lines(report: Mapping[str, Any], backend: str = "cpu"
               ) -> tuple[list[str], list[str]]:
    """The default-options goals of ``backend`` as markdown: rows of the goals table
    (:func:`benchmarks.goals.goal_lines`' format) and notes (the layers slower than
    naive, the furthest from tuned); empty for a report without default cells."""
    from benchmarks.report import geomean

    rows = [r for r in report["rows"]
            if r["backend"] == backend and "default" in r.get("cells", {})]
    if not rows:
        return [], []
    vs_tuned = [r["ratios"].get("default/tuned") for r in rows]
    vs_tuned = [v for v in vs_tuned if v is not None]
    g = geomean(vs_tuned)
    fastest = [_ms(r["cells"]["default"], True) / _ms(r["cells"]["tuned"], True)
               for r in rows if _ms(r["cells"]["default"], True)
               and _ms(r["cells"]["tuned"], True)]
    g_fast = geomean(fastest)
    compared = [r for r in rows if r["ratios"].get("default/naive") is not None]
    slower = [r for r in compared if r["ratios"]["default/naive"] > 1.0]
    slower_fast = [r for r in compared
                   if _ms(r["cells"]["default"], True) > NOISE_MARGIN
                   * _ms(r["cells"]["naive"], True)]  # type: ignore[operator]
    lines = [
        f"| default options / tuned, geomean over the catalogue | <= {DEFAULT_VS_TUNED:g} | "
        f"{_fmt(g)} (n={len(vs_tuned)}; fastest calls: {_fmt(g_fast)}) | "
        f"{'yes' if g is not None and g <= DEFAULT_VS_TUNED else 'no'} |",
        f"| layers where the default options are slower than naive | none | "
        f"{len(slower)} of {len(compared)} (fastest calls, beyond {NOISE_MARGIN:g}x: "
        f"{len(slower_fast)}) | {'yes' if compared and not slower else 'no'} |",
    ]
    def fast_ratio(r: Mapping[str, Any]) -> float:
        return _ms(r["cells"]["default"], True) / _ms(r["cells"]["naive"], True)

    notes = []
    if slower:
        notes.append("- **default options slower than naive** (default / naive, median; "
                     "fastest calls in brackets): " + ", ".join(
                         f"{r['kernel']} {_fmt(r['ratios']['default/naive'])} "
                         f"({_fmt(fast_ratio(r))})"
                         for r in sorted(slower, key=lambda r: -r["ratios"]["default/naive"])))
    worst = sorted((r for r in rows if r["ratios"].get("default/tuned") is not None),
                   key=lambda r: -r["ratios"]["default/tuned"])[:5]
    if worst:
        notes.append("- furthest from tuned (default / tuned): " + ", ".join(
            f"{r['kernel']} {_fmt(r['ratios']['default/tuned'])}" for r in worst))
    return lines, notes
