"""Per-call overhead of a memoised tc kernel against a torch eager op.

    python -m benchmarks.overhead [--calls N] [--backends cpu,opencl]

A tiny elementwise definition (4 floats: the kernel's own work is nanoseconds) is
called repeatedly through the two paths a user has: the entry point of ``tc.define``
(argument checking, the options factory, the memo lookup, the executor) and a
compiled executor (``tc.compile``); beside it, ``x + 1.0`` in torch eager. Medians of
``--calls`` calls after a warm-up, in microseconds, with the load average: on these
shared machines timings drift between runs, so compare within one run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable, Sequence

import torch

import tc

LANG = "def add1(float(N) X) -> (Y) { Y(i) = X(i) + 1.0 }"


def median_us(f: Callable[[], object], calls: int) -> float:
    """The median time of one call of ``f``, in microseconds."""
    for _ in range(min(100, calls)):
        f()
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def measure(backends: Sequence[str], calls: int) -> list[tuple[str, float]]:
    """(what, microseconds) rows: torch eager, then each back end's two paths."""
    x = torch.randn(4)
    rows = [("torch eager x + 1.0", median_us(lambda: x + 1.0, calls))]
    for backend in backends:
        fn = tc.define(LANG, backend=backend).add1
        ex = tc.compile(LANG, "add1", None, x, backend=backend)
        rows.append((f"{backend}: tc.define entry point", median_us(lambda f=fn: f(x), calls)))
        rows.append((f"{backend}: compiled executor", median_us(lambda e=ex: e(x), calls)))
    return rows


def measure_report(backends: Sequence[str], calls: int) -> dict[str, object]:
    """:func:`measure` as the benchmark report keeps it (``rows``: [what, us]); a back
    end that cannot run here leaves a note instead of failing the report."""
    rows: list[tuple[str, float]] = []
    notes = []
    try:
        rows = measure([], calls)
    except Exception as e:  # noqa: BLE001 - a report section, never the whole report
        notes.append(f"torch eager: {e}")
    for b in backends:
        try:
            rows += measure([b], calls)[1:]
        except Exception as e:  # noqa: BLE001
            notes.append(f"{b}: {e}")
    return {"calls": calls, "rows": [list(r) for r in rows], "notes": notes}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=5000)
    p.add_argument("--backends", default="cpu", help="comma-separated targets")
    args = p.parse_args(argv)
    before = os.getloadavg()
    rows = measure([b.strip() for b in args.backends.split(",") if b.strip()], args.calls)
    after = os.getloadavg()
    print(f"Per-call overhead, median of {args.calls} calls (load average {before[0]:.2f} "
          f"-> {after[0]:.2f}, {torch.get_num_threads()} torch threads)\n")
    print("| call | microseconds |\n|---|---|")
    for what, us in rows:
        print(f"| {what} | {us:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
