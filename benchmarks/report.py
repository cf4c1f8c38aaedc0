"""The report of a benchmark run: markdown, JSON and a chart, from the run's JSON document.

Everything here reads the plain dictionaries :func:`benchmarks.runner.run` returns (and
writes as JSON), so a report can be re-rendered from an old JSON file without running
anything. Besides the per-row tables, the markdown summarises each back end by geometric
means over kernel subsets (:data:`SUBSETS`): one number per question ("is tuned tc
faster than torch?", "does tuning help?", "how far from the bound?") and per kind of
layer, because a mean over all kernels hides that memory-bound fused layers and
matmul-like layers have very different headroom.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmarks import cache_latency, goals
from benchmarks.runner import (
    BOUND_RATIOS,
    COLUMNS,
    DEFAULT_RATIOS,
    EAGER_FACTOR,
    NOISY,
    RATIOS,
    TUNING_RATIO,
)

log = logging.getLogger(__name__)

#: Layers that chain several operations over the same data (normalisations, softmax,
#: reductions, a linear layer with its bias and activation): where one fused pass can
#: beat a library that runs one kernel per operation. The catalogue has no pure
#: activation chain; mlp3 (linear + bias + ReLU three times) and wavenet (two
#: convolutions, tanh x sigmoid, two 1x1 convolutions) are its activation chains.
FUSED_LAYERS = ("fc_relu", "mlp3", "softmax", "layer_norm", "group_norm", "moments",
                "cross_entropy", "cross_entropy_mean", "activation_stats", "wavenet")
#: Contractions with much reuse per byte: compute-bound, they need register tiling,
#: packing and vector FMAs to come near the peak.
MATMUL_LIKE = ("matmul", "tmm", "tbmm", "bmm", "conv2d", "conv2d_s2", "group_conv")
#: The subsets the geomeans are taken over (None: every kernel of the run).
SUBSETS: dict[str, tuple[str, ...] | None] = {
    "all kernels": None, "fused layers": FUSED_LAYERS, "matmul-like": MATMUL_LIKE}
#: The ratios summarised by geomeans, as ``"num/den"`` keys of a row's ``ratios``.
GEOMEAN_RATIOS = ("tuned/eager", "tuned/compile", "naive/tuned", "naive/eager",
                  "default/tuned", "default/naive", "default/eager",
                  "tuned/bound", "naive/bound", "default/bound", "eager/bound",
                  "compile/bound")
#: A report written before the "default" cell existed (schema < 4) shows it as this.
_NOT_MEASURED = {"status": "skipped", "note": "not measured (report of schema < 4)"}


# -- geomeans --------------------------------------------------------------------------------


def geomean(values: Iterable[float | None]) -> float | None:
    """The geometric mean of the positive values (None where there are none)."""
    logs = [math.log(v) for v in values if v is not None and v > 0]
    return math.exp(sum(logs) / len(logs)) if logs else None


def geomeans(rows: Sequence[Mapping[str, Any]],
             subsets: Mapping[str, Sequence[str] | None] = SUBSETS,
             ratios: Sequence[str] = GEOMEAN_RATIOS) -> dict[str, Any]:
    """Per back end, per ratio and per subset: ``{"geomean": x, "n": rows counted}``
    over the rows where the ratio was measured (back ends are never mixed: a GPU
    and a CPU ratio have nothing to average)."""
    out: dict[str, Any] = {}
    for backend in dict.fromkeys(r["backend"] for r in rows):
        mine = [r for r in rows if r["backend"] == backend]
        out[backend] = {}
        for key in ratios:
            out[backend][key] = {}
            for subset, names in subsets.items():
                vals = [r["ratios"].get(key) for r in mine if names is None
                        or r["kernel"] in names]
                vals = [v for v in vals if v is not None and v > 0]
                out[backend][key][subset] = {"geomean": geomean(vals), "n": len(vals)}
    return out


# -- markdown --------------------------------------------------------------------------------


def _fmt_load(load: Mapping[str, list[float] | None]) -> str:
    return " -> ".join(f"{when}: " + "/".join(f"{x:.2f}" for x in v)
                       for when, v in load.items() if v)


def _fmt_ms(ms: float) -> str:
    return f"{ms:.0f}" if ms >= 100 else f"{ms:.2f}" if ms >= 1 else f"{ms:.4f}" \
        if ms >= 0.001 else f"{ms:.2g}"


def _fmt_ratio(r: float | None) -> str:
    if r is None:
        return "-"
    return f"{r:.0f}" if r >= 100 else f"{r:.1f}" if r >= 10 else f"{r:.2f}" if r >= 0.1 \
        else f"{r:.3g}"


def _fmt_cell(c: Mapping[str, Any]) -> str:
    if c["status"] == "ok":
        return _fmt_ms(c["ms"]) + (" (!)" if c.get("noisy") else "")
    return {"wrong": "WRONG", "error": "error", "skipped": "-"}[c["status"]]


def _fmt_count(n: float | None, unit: str = "") -> str:
    """``1234567`` -> ``1.23 M`` (decimal prefixes; ``unit`` appended)."""
    if n is None:
        return "-"
    for prefix, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {prefix}{unit}"
    return f"{n:.0f} {unit}".rstrip()


def _sizes(r: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in r["sizes"].items())


def _table(head: Sequence[str], body: Iterable[Sequence[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head),
            *("| " + " | ".join(cells) + " |" for cells in body)]


def machine_lines(report: Mapping[str, Any]) -> list[str]:
    """The header: date, CPU, thread counts, load, versions, devices and peaks."""
    m, st = report["machine"], report["settings"]
    lines = [f"- date: {report['date']}",
             f"- CPU: {m['cpu']}, {m['cores']} cores (torch uses {m['torch_threads']} threads)"
             + (f"; load average (1/5/15 min) {_fmt_load(m['load_average'])}"
                if m.get("load_average") else "")]
    if "c_compiler" in m:
        lines.append((f"- platform.processor(): {m['processor']}; " if m.get("processor")
                      else "- ") + f"C compiler: {m['c_compiler'] or 'none found'}; thread "
                     "settings: " + ", ".join(f"{k}={v or 'unset'}"
                                              for k, v in (m.get("thread_env") or {}).items()))
    lines += [f"- torch {m['torch']}, tc {m['tc']}, Python {m['python']}"
              + (f", commit {m['commit']}" if m.get("commit") else ""),
              f"- OpenCL device (PoCL): {m['pocl_device']}",
              f"- CUDA: {m['cuda_gpu']}"]
    p = m.get("peaks")
    if p and p.get("available", True):
        probes = "; ".join(f"{q['when']}: {q['flops_per_s'] / 1e9:.0f} GFLOP/s, "
                           f"{q['bytes_per_s'] / 1e9:.1f} GB/s" for q in p.get("probes", ()))
        lines.append(f"- machine peaks (measured in this run, {p['threads']} torch threads, "
                     f"median of {p['runs']}): **{p['flops_per_s'] / 1e9:.0f} GFLOP/s** "
                     f"(float32 torch.mm, {p['matmul_n']}^3) and **{p['bytes_per_s'] / 1e9:.1f}"
                     f" GB/s** (copy of {p['copy_bytes'] / 2 / 2**20:.0f} MiB, read + write)"
                     + (f"; the best of the probes ({probes})" if len(p.get("probes", ())) > 1
                        else ""))
    elif p:
        lines.append(f"- machine peaks: not measured ({p['note']})")
    sizes = "first test size (--quick)" if st["quick"] else "first benchmark size"
    lines.append(f"- sizes: {sizes}; median of up to {st['runs']} runs after {st['warmup']} "
                 f"warm-up calls; tuning: {st['generations']} generations x {st['pop_size']} "
                 "candidates")
    return lines


def _cell(r: Mapping[str, Any], c: str) -> Mapping[str, Any]:
    """Cell ``c`` of row ``r`` (a "not measured" cell where an old report has none)."""
    return r["cells"].get(c, _NOT_MEASURED)


def _times_table(rows: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[str]]:
    shown = (*RATIOS, TUNING_RATIO, *DEFAULT_RATIOS)
    head = ["kernel", "sizes", "backend", "eager ms", "torch.compile ms", "tc naive ms",
            "tc default ms", "tc tuned ms"] + [f"{a}/{b}" for a, b in shown]
    body, notes = [], []
    for r in rows:
        if r.get("note"):
            notes.append(f"- {r['kernel']} ({r['backend']}): {r['note']}")
        cells = [_fmt_cell(_cell(r, c)) for c in COLUMNS]
        ratios = [_fmt_ratio(r["ratios"].get(f"{a}/{b}")) for a, b in shown]
        body.append([r["kernel"], _sizes(r), r["backend"], *cells, *ratios])
        for c in COLUMNS:
            cell = _cell(r, c)
            if c == "default" and "default" not in r["cells"]:
                continue
            if cell["status"] in ("wrong", "error") or (cell["status"] == "skipped"
                                                         and c != "tuned"):
                notes.append(f"- {r['kernel']} ({r['backend']}), {c}: {cell['status']}: "
                             f"{cell['note']}")
            elif cell.get("noisy"):
                notes.append(f"- {r['kernel']} ({r['backend']}), {c}: noisy: median "
                             f"{_fmt_ms(cell['ms'])} ms, fastest {_fmt_ms(cell['min_ms'])} ms")
    return _table(head, body), notes


def _fmt_errors(c: Mapping[str, Any]) -> str:
    """A cell's max |error| against the float64 truth (per float output), with what
    accepted it: ``8.87e-05 (4x)``, ``1 WRONG``; ``-`` without a record."""
    acc = c.get("accuracy")
    if not acc:
        return "WRONG" if c["status"] == "wrong" else "-"
    errs = "/".join("-" if e is None else f"{e:.3g}" for e in acc["errors"])
    return errs + {"4x eager": f" ({EAGER_FACTOR:g}x)", "wrong": " WRONG"}.get(acc["rule"], "")


def accuracy_lines(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The rows where a cell was outside the catalogue's tolerance of the float64 truth
    (accepted as within EAGER_FACTOR x eager's error, or wrong), with each cell's error
    against the truth next to eager's; nothing for a report written before cells
    recorded their accuracy."""
    if not any("accuracy" in _cell(r, c) for r in rows for c in COLUMNS):
        return []

    def flagged(r: Mapping[str, Any]) -> bool:
        return any((_cell(r, c).get("accuracy") or {}).get("rule") in ("4x eager", "wrong")
                   for c in COLUMNS)

    checked = [r for r in rows if (r["cells"]["eager"].get("accuracy") or {}).get("errors")]
    lines = [f"Each cell is checked against the torch reference run on float64 inputs (the "
             f"exact result, to rounding): right when within the kernel's rtol/atol of it, "
             f"or at most {EAGER_FACTOR:g}x as far from it as torch eager is (+ atol), as a "
             "long float32 reduction's summation order moves it; integer outputs, and rows "
             "without that truth, are compared with eager within the tolerance. "
             f"{len(checked)} of {len(rows)} rows had the float64 truth."]
    body = [[r["kernel"], _sizes(r), r["backend"],
             *(_fmt_errors(_cell(r, c)) for c in COLUMNS)]
            for r in rows if flagged(r)]
    if not body:
        return [*lines, "", "Every checked cell was within the tolerance of the float64 "
                "truth."]
    head = ["kernel", "sizes", "backend", "eager", "torch.compile", "tc naive", "tc default",
            "tc tuned"]
    return [*lines, "", "Max |error| against float64 where a cell was outside the tolerance "
            f"({EAGER_FACTOR:g}x: accepted as within {EAGER_FACTOR:g}x eager's error; "
            "several outputs: one error each):", "",
            *_table(head, body)]


def _roofline_table(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    head = ["kernel", "sizes", "backend", "FLOPs", "bytes once", "FLOP/byte", "bound ms",
            "limit"] + [f"{a}/{b}" for a, b in BOUND_RATIOS]
    body, notes = [], []
    for r in rows:
        w = r.get("roofline")
        if not w:
            continue
        flops, nbytes = w["flops"], w["bytes"]
        mark = "" if w["flops_from"] != "catalogue" and w["bytes_from"] != "catalogue" \
            else " (c)"
        body.append([r["kernel"] + mark, _sizes(r), r["backend"], _fmt_count(flops),
                     _fmt_count(nbytes, "B"),
                     f"{flops / nbytes:.3g}" if flops is not None and nbytes else "-",
                     _fmt_ms(w["bound_ms"]) if w["bound_ms"] is not None else "-",
                     w["limit"] or "-",
                     *(_fmt_ratio(r["ratios"].get(f"{a}/{b}")) for a, b in BOUND_RATIOS)])
        if w.get("note") and w["bound_ms"] is None:
            notes.append(f"- {r['kernel']} ({r['backend']}): {w['note']}")
    if not body:
        return []
    return [*_table(head, body), *([""] + notes if notes else [])]


def _geomean_lines(g: Mapping[str, Any]) -> list[str]:
    head = ["backend", "ratio", *(f"{s}" for s in SUBSETS)]
    body = []
    for backend, per in g.items():
        for key, cells in per.items():
            if not any(c["n"] for c in cells.values()):
                continue
            body.append([backend, key, *(f"{_fmt_ratio(c['geomean'])} (n={c['n']})"
                                         if c["n"] else "-" for c in cells.values())])
    if not body:
        return ["No ratio was measured."]
    return _table(head, body)


def to_markdown(report: Mapping[str, Any]) -> str:
    """The report as markdown: machine facts and peaks, the times, the roofline, the
    geomeans, notes, tuning throughput and cache latency."""
    rows = report["rows"]
    lines = [f"# tc benchmarks: {report.get('name', '')}".rstrip(": "), "",
             *machine_lines(report), "",
             "Times in milliseconds. Ratios are tc / torch: below 1, tc is faster; naive/tuned"
             " is what tuning bought (2: the tuned options run twice as fast); tc default: "
             "the options of `tc.defaults.default_options` (the heuristic used without an "
             "options factory; each cell's note in the JSON names them), default/tuned and "
             "default/naive compare it with the other two. WRONG: "
             "outputs further from the float64 truth than the tolerance and than "
             f"{EAGER_FACTOR:g}x torch eager's error (not timed; see Accuracy). (!): noisy, "
             f"the median is over {NOISY:g}x the fastest call (other processes held the "
             "cores).", ""]
    table, notes = _times_table(rows)
    lines += table
    if notes:
        lines += ["", "Notes:", "", *notes]
    from benchmarks import iree_column

    lines += iree_column.report_lines(rows)
    roof = _roofline_table(rows)
    if roof:
        lines += ["", "## Against the roofline bound", "",
                  "bound = max(FLOPs / peak FLOP/s, bytes once / bandwidth): no code runs "
                  "faster. x/bound is a time over the bound (1 is the best possible). FLOPs: "
                  "each stage's domain points x the operations of its right-hand side (from "
                  "the IR); bytes once: inputs read once, outputs written once (gathered "
                  "inputs count their reads); (c): counts declared by the catalogue."
                  + (" At --quick sizes the bound is microseconds: x/bound is mostly the "
                     "cost of a call." if report["settings"].get("quick") else ""), "",
                  *roof]
    accuracy = accuracy_lines(rows)
    if accuracy:
        lines += ["", "## Accuracy against float64", "", *accuracy]
    lines += ["", "## Geomeans", "",
              "Per back end, over the rows where both times exist (n). fused layers: "
              + ", ".join(FUSED_LAYERS) + "; matmul-like: " + ", ".join(MATMUL_LIKE) + ".",
              "", *_geomean_lines(report.get("geomeans") or geomeans(rows))]
    for backend in dict.fromkeys(r["backend"] for r in rows):
        if backend == "cpu":
            lines += ["", "## Goals of the CPU target", "", *goals.goal_lines(report, backend)]
    calls = goals.overhead_lines(report)
    if calls:
        lines += ["", "## Per-call overhead", "", *calls]
    lines += ["", "## Tuning throughput", "", *_tuning_lines(report["tuning"])]
    lines += ["", "## Cache hit in a fresh process vs cold compile", ""]
    lat = report["cache_latency"]
    lines.append(cache_latency.describe(lat) if lat.get("available")
                 else f"Not measured: {lat['note']}.")
    lines += ["", f"Run time: {report['elapsed_s']:.0f} s.", ""]
    return "\n".join(lines)


def _tuning_lines(t: Mapping[str, Any]) -> list[str]:
    if not t["available"]:
        return [f"Not measured: {t['note']}."]
    per_min = t["candidates_per_minute"]
    lines = [(f"{per_min:.1f} candidates per minute: " if per_min is not None else "")
             + f"{t['candidates']} candidates ({t['valid']} valid) evaluated in "
             f"{t['seconds']:.1f} s of tuning over {t['tunings']} tunings of "
             f"{t['generations']} generations x {t['pop_size']} candidates (counted from the "
             "tuner's result; wall time of the whole tuning, reference outputs included)."]
    per = t.get("per_backend") or {}
    if len(per) > 1:
        lines.append("")
        lines += [f"- {b}: {_fmt_ratio(v['candidates_per_minute'])} candidates per minute "
                  f"({v['candidates']} in {v['seconds']:.1f} s)" for b, v in per.items()]
    return lines


# -- the chart -------------------------------------------------------------------------------


def _bars(ax: Any, rows: Sequence[Mapping[str, Any]], keys: Sequence[str], title: str) -> None:
    """One panel: a horizontal bar per row and ratio, log scale, a line at 1."""
    keys = [k for k in keys if any(r["ratios"].get(k) is not None for r in rows)]
    height = 0.8 / max(1, len(keys))
    for j, key in enumerate(keys):
        ys = [i + (j - (len(keys) - 1) / 2) * height for i in range(len(rows))]
        vals = [r["ratios"].get(key) or float("nan") for r in rows]
        ax.barh(ys, vals, height=height, label=key)
    ax.set_yticks(range(len(rows)), [f"{r['kernel']} ({r['backend']})" for r in rows])
    ax.set_ylim(len(rows) - 0.5, -0.5)
    if keys:
        ax.set_xscale("log")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.06), ncol=2,
                  fontsize="small", frameon=False)
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_title(title, fontsize="medium")


def plot_ratios(report: Mapping[str, Any], path: Path) -> None:
    """Two panels of horizontal bars per row (log scale, a line at 1), saved as PNG:
    tc / torch (below 1: tc faster) and each time / the roofline bound (1: the best
    possible), so that "faster than torch" and "near the machine" read side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["rows"]
    bound_keys = [f"{a}/{b}" for a, b in BOUND_RATIOS]
    with_bound = any(r["ratios"].get(k) is not None for r in rows for k in bound_keys)
    panels = [([f"{a}/{b}" for a, b in RATIOS], "time ratio tc / torch (below 1: tc faster)")]
    if with_bound:
        panels.append((bound_keys, "time / roofline bound (1: the best possible)"))
    fig, axes = plt.subplots(1, len(panels), squeeze=False, sharey=True,
                             figsize=(7 * len(panels), 2.5 + 0.35 * max(1, len(rows))),
                             layout="constrained")
    for ax, (keys, title) in zip(axes[0], panels, strict=True):
        _bars(ax, rows, keys, title)
    fig.suptitle(f"tc vs torch: {report.get('name', '')} (no bar: not measured)")
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(report: dict[str, Any], out: Path, name: str) -> dict[str, Path]:
    """Write NAME.md, NAME.json and NAME.png under ``out``; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    report["name"] = name
    paths = {ext: out / f"{name}.{ext}" for ext in ("md", "json", "png")}
    paths["json"].write_text(json.dumps(report, indent=1) + "\n")
    paths["md"].write_text(to_markdown(report))
    try:
        plot_ratios(report, paths["png"])
    except ImportError as e:  # the chart is optional; the table and JSON are the report
        log.warning("no chart (%s): pip install matplotlib", e)
        del paths["png"]
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m benchmarks.report FILE.json [...]``: render the markdown and the chart
    of earlier runs again (with the current goals and analysis), next to their JSON."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m benchmarks.report", description=main.__doc__)
    p.add_argument("json", nargs="+", type=Path)
    for path in p.parse_args(argv).json:
        report = json.loads(path.read_text())
        paths = write_report(report, path.parent, path.stem)
        print(" ".join(str(x) for x in paths.values()))
    return 0


__all__ = ["FUSED_LAYERS", "GEOMEAN_RATIOS", "MATMUL_LIKE", "SUBSETS", "accuracy_lines",
           "geomean",
           "geomeans", "machine_lines", "plot_ratios", "to_markdown", "write_report"]


if __name__ == "__main__":
    raise SystemExit(main())
