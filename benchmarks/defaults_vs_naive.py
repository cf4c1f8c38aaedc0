"""Default options against naive on the CPU target, timed alternately in one process.

``python -m benchmarks.defaults_vs_naive [--kernels a,b] [--seconds S] [--pairs P]
[--out benchmarks/results/NAME]`` writes ``NAME.md`` and ``NAME.json``.

Why alternately: on a machine shared with other work a 2-thread OpenMP call waits for
a busy core a scheduler tick at a time, so two cells timed seconds apart can differ
by far more than the options do. Here each layer's naive and default executors are
built first and then called ABAB on the same tensors (up to ``pairs`` pairs, at most
``seconds``), so both see the same load; the report gives the median and the fastest
call of each, as chosen (the options' own ``cpuParallel``) and both serial
(``cpuParallel(False)``: the options' loop structure without the threads' waits).
Results are checked against the layer's torch reference before anything is timed.
The goals it reports on (issue 13): no layer slower than naive, and with
``--tuned REPORT.json`` (a ``python -m benchmarks`` report whose rows hold tuned
options) the default options within 2x of the tuned ones (geomean), timed in the same
rotation.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

__all__ = ["compare_kernel", "main", "markdown", "tuned_options"]

#: A layer whose default median is more than this factor of naive's is "slower".
SLOWER = 1.10


def _time_rounds(executors: Sequence[Any], inputs: Sequence[Any], rounds: int,
                 seconds: float) -> list[list[float]]:
    """Seconds per call of each executor, called in turn (ABAB...) for ``rounds``
    rounds at most and ``seconds`` in all."""
    times: list[list[float]] = [[] for _ in executors]
    for ex in executors:
        ex(*inputs)  # warm: first-call set-up is not the options' cost
    end = time.perf_counter() + seconds
    while len(times[0]) < rounds and time.perf_counter() < end:
        for ex, out in zip(executors, times, strict=True):
            t0 = time.perf_counter()
            ex(*inputs)
            out.append(time.perf_counter() - t0)
    return times


def _cell(ts: list[float]) -> list[float]:
    return [statistics.median(ts) * 1e3, min(ts) * 1e3]


def compare_kernel(name: str, pairs: int = 15, seconds: float = 6.0,
                   small: bool = False, tuned: Any = None) -> dict[str, Any]:
    """One layer at its benchmark size (``small``: its first test size): naive and
    default options, as chosen and serial (medians and fastest calls in ms); with
    ``tuned`` options, those too in the same rotation (as chosen only: tuned options
    pick their own threads)."""
    import torch

    import tc
    from tc.catalogue import KERNELS
    from tc.options import MappingOptions

    kernel = KERNELS[name]
    sizes = dict((kernel.test_sizes if small else kernel.bench_sizes)[0])
    inputs = kernel.make_inputs(sizes, torch.Generator().manual_seed(0))
    def build(options: Any) -> Any:
        return tc.compile(kernel.tc, kernel.entry, options, *inputs, backend="cpu")

    default = build(None)  # the default options for these sizes
    chosen = default.program.options
    row: dict[str, Any] = {"sizes": sizes, "default_options": repr(chosen)}
    want = kernel.reference(*inputs)
    refs = want if isinstance(want, (list, tuple)) else [want]
    for label, parallel in (("as chosen", None), ("serial", False)):
        if parallel is None:
            executors = [build(MappingOptions("naive")), default]
            executors += [build(tuned)] if tuned is not None else []
        else:
            executors = [build(MappingOptions("naive").cpuParallel(False)),
                         build(chosen.copy().cpuParallel(False))]
        for ex in executors:
            got = ex(*inputs)
            got = got if isinstance(got, (list, tuple)) else [got]
            for g, r in zip(got, refs, strict=False):
                torch.testing.assert_close(g.float(), r.float(), rtol=kernel.rtol * 10,
                                           atol=kernel.atol * 10)
        times = _time_rounds(executors, inputs, pairs, seconds)
        row[label] = {k: _cell(t) for k, t in zip(("naive", "default", "tuned"), times,
                                                      strict=False)}
        row[label]["pairs"] = len(times[0])
    return row


def tuned_options(report: str) -> dict[str, Any]:
    """The tuned options of each layer's first row in a benchmark report's JSON."""
    from tc.options import MappingOptions

    with open(report) as f:
        rows = json.load(f)["rows"]
    out: dict[str, Any] = {}
    for r in rows:
        text = (r.get("tuning") or {}).get("options")
        if text and r["kernel"] not in out:
            out[r["kernel"]] = MappingOptions.deserialize(text)
    return out


def _ratio(row: dict[str, Any], label: str, k: int = 0, of: str = "naive") -> float:
    return row[label]["default"][k] / row[label][of][k]


def _geomean(xs: list[float]) -> float:
    return math.exp(sum(map(math.log, xs)) / len(xs))


def markdown(rows: dict[str, dict[str, Any]], header: str) -> str:
    """The report: one line per layer, then the geomeans and the layers slower."""
    tuned = [n for n, r in rows.items() if "tuned" in r["as chosen"]]
    extra = " tuned ms | default / tuned |" if tuned else ""
    out = [header, "",
           "| kernel | default options | naive ms | default ms | ratio | serial naive ms "
           "| serial default ms | serial ratio |" + extra,
           "|---|---|---|---|---|---|---|---|" + ("---|---|" if tuned else "")]

    def f(c: list[float]) -> str:
        return f"{c[0]:.3g} / {c[1]:.3g}"

    for name, r in rows.items():
        a, s = r["as chosen"], r["serial"]
        line = (f"| {name} | `{r['default_options']}` | {f(a['naive'])} | "
                f"{f(a['default'])} | {_ratio(r, 'as chosen'):.2f} | {f(s['naive'])} | "
                f"{f(s['default'])} | {_ratio(r, 'serial'):.2f} |")
        if tuned:
            line += (f" {f(a['tuned'])} | {_ratio(r, 'as chosen', of='tuned'):.2f} |"
                     if name in tuned else " | |")
        out.append(line)
    if tuned:
        by = {k: _geomean([_ratio(rows[n], "as chosen", k, "tuned") for n in tuned])
              for k in (0, 1)}
        out += ["", f"Geomean default / tuned: {by[0]:.2f} by the median, {by[1]:.2f} by the "
                f"fastest call (n={len(tuned)})."]
    for label in ("as chosen", "serial"):
        ratios = [_ratio(r, label) for r in rows.values()]
        geo = _geomean(ratios)
        slow = [f"{n} {_ratio(r, label):.2f} (fastest call {_ratio(r, label, 1):.2f})"
                for n, r in rows.items() if _ratio(r, label) > SLOWER]
        out += ["", f"Geomean default / naive, {label}: {geo:.2f} (n={len(ratios)}); "
                f"more than {SLOWER:.2f}x slower by the median: {', '.join(slow) or 'none'}."]
    return "\n".join(out) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    from tc.catalogue import KERNELS

    p = argparse.ArgumentParser(prog="python -m benchmarks.defaults_vs_naive",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--kernels", default="", help="comma-separated layers (default: all)")
    p.add_argument("--seconds", type=float, default=6.0, help="timing budget per cell")
    p.add_argument("--pairs", type=int, default=15, help="ABAB pairs per cell at most")
    p.add_argument("--small", action="store_true", help="the test sizes (a quick check)")
    p.add_argument("--tuned", default="", help="a benchmark report's JSON: time its tuned "
                   "options too, in the same rotation")
    p.add_argument("--out", default="", help="write OUT.md and OUT.json")
    args = p.parse_args(argv)
    names = [n for n in args.kernels.split(",") if n] or list(KERNELS)
    loads = {"start": [round(x, 2) for x in os.getloadavg()]}
    start = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M")
    rows: dict[str, dict[str, Any]] = {}
    tuned = tuned_options(args.tuned) if args.tuned else {}
    from tqdm import tqdm

    for name in tqdm(names, desc="layers", file=sys.stderr):
        rows[name] = compare_kernel(name, args.pairs, args.seconds, args.small,
                                    tuned.get(name))
    loads["end"] = [round(x, 2) for x in os.getloadavg()]
    header = (f"# Default options against naive, interleaved (CPU target)\n\n"
              f"{start} UTC, {os.cpu_count()} cores, OMP_NUM_THREADS="
              f"{os.environ.get('OMP_NUM_THREADS', 'unset')}, load average {loads['start']} "
              f"at the start and {loads['end']} at the end. Each layer's naive and default "
              f"executors called alternately (at most {args.pairs} pairs, {args.seconds:g} s)"
              f", at the {'test' if args.small else 'benchmark'} sizes; milliseconds, "
              f"median / fastest call; ratio = default / naive of the medians.")
    text = markdown(rows, header)
    sys.stdout.write(text)
    if args.out:
        with open(args.out + ".md", "w") as f:
            f.write(text)
        with open(args.out + ".json", "w") as f:
            json.dump({"date": start, "load_average": loads, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
