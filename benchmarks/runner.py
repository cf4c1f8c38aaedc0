"""The benchmark runner: tc against torch eager and ``torch.compile`` on the same tensors.

    python -m benchmarks [--quick] [--kernels tmm,softmax] [--backends opencl]
        [--runs N] [--warmup N] [--generations G] [--pop-size P] [--no-tune]
        [--no-torch-compile] [--no-cache-latency] [--threads N] [--out DIR] [--name NAME]

For each kernel of ``tc.catalogue`` (its first test size with ``--quick``, its first
benchmark size otherwise) and each available back end ("opencl" on PoCL's CPU device,
"cuda" when a CUDA device is present), one row of four cells on the same tensors:

* ``eager``: the catalogue's torch reference, whose outputs are the expected values;
* ``compile``: ``torch.compile(reference)`` (an error is recorded in its cell);
* ``naive``: ``tc.compile`` with ``MappingOptions("naive")``;
* ``tuned``: the options of ``tc.autotune`` (skipped, with a note, without it).

Every cell is checked against the eager outputs with the kernel's rtol/atol before it
is timed; a wrong or crashing cell is reported as such and never timed. Times are the
median of ``--runs`` calls after ``--warmup`` untimed ones (``time.perf_counter`` on
the CPU, CUDA events on a GPU), each call as a user makes it (for tc: output
allocation, every launch and the read of the error flag). Ratios are tc / torch: below
1, tc is faster. The report (markdown printed and written, JSON, a bar chart of the
ratios) goes to ``benchmarks/results/NAME.{md,json,png}``, with the tuning throughput
(candidates per minute) and the latency of a cache hit in a fresh process against a
cold compile (:mod:`benchmarks.cache_latency`).
"""

from __future__ import annotations

import logging
import os
import platform
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from benchmarks import cache_latency, gpu_timing
from tc import catalogue

log = logging.getLogger(__name__)

#: The cells of a row, in table order.
COLUMNS = ("eager", "compile", "naive", "tuned")
#: The ratios of a row: (tc cell, torch cell), reported as tc / torch.
RATIOS = (("naive", "eager"), ("naive", "compile"), ("tuned", "eager"), ("tuned", "compile"))
RESULTS_DIR = Path(__file__).resolve().parent / "results"
SCHEMA_VERSION = 1
#: A cell whose median is more than this many times its fastest call is flagged noisy.
NOISY = 5.0

Outputs = torch.Tensor | tuple[torch.Tensor, ...]


@dataclass(frozen=True)
class Settings:
    """What one run measures (``python -m benchmarks`` builds it from its options)."""

    quick: bool = False
    kernels: tuple[str, ...] = ()
    backends: tuple[str, ...] = ()
    runs: int = 20
    warmup: int = 3
    budget_s: float = 10.0
    generations: int = 5
    pop_size: int = 10
    tune: bool = True
    torch_compile: bool = True
    cache_latency: bool = True
    cache_file: str | None = None
    torch_threads: int | None = None  # torch.set_num_threads for the run (None: as is)


@dataclass(frozen=True)
class Cell:
    """One measurement. ``status``: ``ok`` (timed), ``wrong`` (outputs differ from eager,
    not timed), ``error`` (raised, not timed) or ``skipped`` (not measured)."""

    status: str
    ms: float | None = None
    runs: int = 0
    setup_s: float | None = None
    note: str = ""
    min_ms: float | None = None

    @property
    def noisy(self) -> bool:
        """A median far above the fastest call: something else held the cores (on a
        shared machine a 2-thread call waits for a core a scheduler tick at a time)."""
        return self.status == "ok" and self.runs >= 3 and self.ms > NOISY * self.min_ms


@dataclass(frozen=True)
class Tuning:
    """One tuning: wall time, candidates evaluated (distinct option sets compiled and
    run, or rejected), how many of them were valid, and the best options (serialized)."""

    seconds: float
    candidates: int
    valid: int
    options: str


@dataclass(frozen=True)
class Row:
    """The cells of one kernel at one size on one back end."""

    kernel: str
    sizes: dict[str, int]
    backend: str
    cells: dict[str, Cell]
    tuning: Tuning | None = None

    def ratio(self, tc_col: str, torch_col: str) -> float | None:
        """Median of ``tc_col`` over median of ``torch_col``, when both were timed."""
        a, b = self.cells[tc_col], self.cells[torch_col]
        if a.status != "ok" or b.status != "ok" or not b.ms:
            return None
        return a.ms / b.ms

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for c in COLUMNS:
            d["cells"][c]["noisy"] = self.cells[c].noisy
        d["ratios"] = {f"{a}/{b}": self.ratio(a, b) for a, b in RATIOS}
        return d


# -- measuring -------------------------------------------------------------------------------


def available_backends() -> tuple[str, ...]:
    """"opencl" (PoCL on the CPU) always, "cuda" when a CUDA device is present."""
    from codegen.nvrtc import cuda_device_available

    return ("opencl", "cuda") if cuda_device_available() else ("opencl",)


def tuner_available() -> bool:
    """Whether the autotuner (``autotuner.tuner``: ``tune``, ``TunerConfig``) is present."""
    try:
        from autotuner.tuner import TunerConfig, tune  # noqa: F401
    except ImportError:
        return False
    return True


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_ms(fn: Callable[[], object], device: str, warmup: int, runs: int,
            budget_s: float = float("inf")) -> list[float]:
    """Milliseconds of up to ``runs`` calls of ``fn`` after ``warmup`` untimed calls.

    On the CPU each call is timed with ``time.perf_counter``, and the timed calls stop
    once they have used ``budget_s`` seconds (at least one call), so that a slow naive
    kernel at benchmark sizes cannot hold the run for minutes. On CUDA the events of
    :func:`benchmarks.gpu_timing.time_events` time the calls (the budget bounds the
    number of calls from one probe call)."""
    if device == "cuda":
        t0 = time.perf_counter()
        fn()
        _sync(device)
        probe = time.perf_counter() - t0
        n = max(1, min(runs, int(budget_s / probe) if probe > 0 else runs))
        return gpu_timing.time_events(fn, max(0, warmup - 1), n)
    for _ in range(warmup):
        fn()
    samples: list[float] = []
    spent = 0.0
    for _ in range(max(1, runs)):
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        samples.append(dt * 1000.0)
        spent += dt
        if spent >= budget_s:
            break
    return samples


def _tuple(outputs: Outputs) -> tuple[torch.Tensor, ...]:
    return (outputs,) if isinstance(outputs, torch.Tensor) else tuple(outputs)


def mismatch(actual: Outputs, expected: Outputs, rtol: float, atol: float) -> str | None:
    """None when ``actual`` matches ``expected`` within ``|a - e| <= atol + rtol |e|``
    (NaN where both are NaN); else what differs: output count, shape or largest error."""
    got, want = _tuple(actual), _tuple(expected)
    if len(got) != len(want):
        return f"{len(got)} outputs, expected {len(want)}"
    for i, (a, e) in enumerate(zip(got, want, strict=True)):
        a, e = a.detach().cpu().double(), e.detach().cpu().double()
        if a.shape != e.shape:
            return f"output {i}: shape {tuple(a.shape)}, expected {tuple(e.shape)}"
        if not torch.allclose(a, e, rtol=rtol, atol=atol, equal_nan=True):
            # NaN where both are NaN agrees; NaN on one side only is an infinite error.
            diff = (a - e).abs().masked_fill(a.isnan() & e.isnan(), 0.0)
            err = diff.nan_to_num(nan=float("inf")).max().item()
            return f"output {i}: max |error| {err:.3g} (rtol {rtol:g}, atol {atol:g})"
    return None


def _short(e: BaseException) -> str:
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {first}"[:300]


def measure(make: Callable[[], Callable[[], Outputs]], expected: Outputs | None,
            kernel: catalogue.Kernel, device: str, s: Settings) -> Cell:
    """Build a callable with ``make`` (compiling happens there or in its first call),
    check its first outputs against ``expected`` and, if they match, time it."""
    t0 = time.perf_counter()
    try:
        fn = make()
        out = fn()
        _sync(device)
    except Exception as e:  # one failing cell must not stop the report
        log.warning("%s: %s", kernel.name, _short(e))
        return Cell("error", note=_short(e))
    setup = time.perf_counter() - t0
    if expected is not None:
        bad = mismatch(out, expected, kernel.rtol, kernel.atol)
        if bad:
            return Cell("wrong", setup_s=setup, note=bad)
    try:
        samples = time_ms(fn, device, s.warmup, s.runs, s.budget_s)
    except Exception as e:
        return Cell("error", setup_s=setup, note=f"while timing: {_short(e)}")
    return Cell("ok", statistics.median(samples), len(samples), setup, min_ms=min(samples))


def tuner_config(s: Settings) -> Any:
    """The ``tc.TunerConfig`` of a run: ``s.generations`` x ``s.pop_size``, a fixed seed,
    no progress bar of its own; with ``--quick``, no minimum of launched threads (the
    tiny test sizes launch fewer than a GPU's default minimum of 64)."""
    from autotuner.tuner import TunerConfig

    config = (TunerConfig().generations(s.generations).pop_size(s.pop_size)
              .number_elites(max(1, s.pop_size // 10)).seed(0).progress(False))
    return config.tuner_min_launch_total_threads(1) if s.quick else config


def autotune(kernel: catalogue.Kernel, inputs: Sequence[torch.Tensor], backend: str,
             s: Settings, cache_file: str) -> tuple[Any, Tuning]:
    """Tune ``kernel`` on ``inputs``, storing the best options in ``cache_file``; returns
    the best ``MappingOptions`` and what the tuning cost.

    It calls ``autotuner.tuner.tune``, the function behind ``tc.autotune`` with the
    same arguments, because its result also lists the candidates evaluated."""
    from autotuner import tuner
    from tc.errors import TcBackendError

    t0 = time.perf_counter()
    result = tuner.tune(kernel.tc, kernel.entry, *inputs, tuner_config=tuner_config(s),
                        backend=backend, cache_filename=cache_file, store_to_cache=True)
    seconds = time.perf_counter() - t0
    if result.options is None:
        raise TcBackendError(f"no valid candidate among {len(result.candidates)}")
    return result.options, Tuning(seconds, len(result.candidates), result.count("ok"),
                                  result.options.serialize())


def bench_kernel(kernel: catalogue.Kernel, sizes: Mapping[str, int], backend: str,
                 s: Settings, cache_file: str | None = None) -> Row:
    """The row of ``kernel`` at ``sizes`` on ``backend``: eager, torch.compile, tc naive
    and tc tuned, on the same tensors."""
    import tc
    from tc.options import MappingOptions

    device = "cuda" if backend == "cuda" else "cpu"
    sizes = dict(sizes)
    inputs = kernel.make_inputs(sizes, torch.Generator().manual_seed(0))
    inputs = tuple(t.to(device) for t in inputs)
    cells: dict[str, Cell] = {}
    try:
        expected = kernel.reference(*inputs)
        _sync(device)
    except Exception as e:
        note = f"the torch reference failed: {_short(e)}"
        return Row(kernel.name, sizes, backend, {c: Cell("error", note=note) for c in COLUMNS})
    cells["eager"] = measure(lambda: lambda: kernel.reference(*inputs), None, kernel, device, s)

    if s.torch_compile:
        def compiled() -> Callable[[], Outputs]:
            torch._dynamo.reset()  # a fresh cache: no recompile limit across kernels
            cf = torch.compile(kernel.reference)
            return lambda: cf(*inputs)

        cells["compile"] = measure(compiled, expected, kernel, device, s)
    else:
        cells["compile"] = Cell("skipped", note="--no-torch-compile")

    def tc_call(options: Any) -> Callable[[], Callable[[], Outputs]]:
        def make() -> Callable[[], Outputs]:
            ex = tc.compile(kernel.tc, kernel.entry, options, *inputs, backend=backend)
            return lambda: ex(*inputs)
        return make

    cells["naive"] = measure(tc_call(MappingOptions("naive")), expected, kernel, device, s)

    tuning = None
    if not s.tune:
        cells["tuned"] = Cell("skipped", note="--no-tune")
    elif not tuner_available():
        cells["tuned"] = Cell("skipped", note="the autotuner is not available")
    elif cache_file is None:
        cells["tuned"] = Cell("skipped", note="no cache file to store the tuned options in")
    else:
        try:
            options, tuning = autotune(kernel, inputs, backend, s, cache_file)
        except Exception as e:
            log.warning("%s: tuning failed: %s", kernel.name, _short(e))
            cells["tuned"] = Cell("error", note=f"tuning failed: {_short(e)}")
        else:
            cell = measure(tc_call(options), expected, kernel, device, s)
            cells["tuned"] = replace(cell, note=cell.note or f"tuned in {tuning.seconds:.1f} s")
    return Row(kernel.name, sizes, backend, {c: cells[c] for c in COLUMNS}, tuning)


# -- the run ---------------------------------------------------------------------------------


def machine_facts() -> dict[str, Any]:
    """CPU model and cores, torch and tc versions, the PoCL device, the CUDA GPU if any."""
    import tc

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        from codegen.opencl import pocl_device

        ctx, _ = pocl_device()
        pocl = ctx.devices[0].name
    except Exception as e:
        pocl = f"unavailable ({_short(e)})"
    from codegen.nvrtc import cuda_device_available

    gpu = torch.cuda.get_device_name(0) if cuda_device_available() else "no CUDA GPU"
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, cwd=Path(__file__).parent, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "tc": tc.__version__,
            "python": platform.python_version(), "pocl_device": pocl, "cuda_gpu": gpu,
            "commit": commit or None}


def _loadavg() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (others' work on a shared machine skews
    times: a 2-thread torch or PoCL call waits for a core a scheduler tick at a time)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def select_kernels(names: Sequence[str]) -> list[catalogue.Kernel]:
    """The catalogue kernels named (all of them for an empty selection), in catalogue order."""
    if not names:
        return list(catalogue.KERNELS.values())
    return [catalogue.get(n) for n in names]


def run(s: Settings, progress: bool = True) -> dict[str, Any]:
    """Run the benchmark; returns the report (the JSON document)."""
    started = time.perf_counter()
    load_before = _loadavg()
    backends = s.backends or available_backends()
    kernels = select_kernels(s.kernels)
    jobs = [(k, b) for k in kernels for b in backends]
    rows: list[Row] = []
    threads = torch.get_num_threads()
    try:
        if s.torch_threads:
            torch.set_num_threads(s.torch_threads)
        with tempfile.TemporaryDirectory(prefix="tc-bench-") as tmp:
            cache_file = s.cache_file or str(Path(tmp) / "tuning.cache")
            bar = tqdm(jobs, desc="benchmarks", unit="row", disable=not progress)
            for kernel, backend in bar:
                bar.set_postfix_str(f"{kernel.name} on {backend}")
                sizes = kernel.test_sizes[0] if s.quick else kernel.bench_sizes[0]
                rows.append(bench_kernel(kernel, sizes, backend, s, cache_file))
            latency = _cache_latency(rows, s, cache_file)
        machine = machine_facts()
    finally:
        torch.set_num_threads(threads)
    machine["load_average"] = {"start": load_before, "end": _loadavg()}
    settings = asdict(s)
    settings["backends"] = list(backends)
    settings["kernels"] = [k.name for k in kernels]
    return {
        "schema": SCHEMA_VERSION,
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine,
        "settings": settings,
        "rows": [r.as_dict() for r in rows],
        "tuning": tuning_throughput(rows, s),
        "cache_latency": latency,
        "elapsed_s": time.perf_counter() - started,
    }


def tuning_throughput(rows: Sequence[Row], s: Settings) -> dict[str, Any]:
    """Candidates evaluated per minute of tuning, over every tuned row."""
    tuned = [r.tuning for r in rows if r.tuning is not None]
    if not tuned:
        why = "--no-tune" if not s.tune else "the autotuner is not available"
        return {"available": False, "note": why}
    seconds = sum(t.seconds for t in tuned)
    candidates = sum(t.candidates for t in tuned)
    return {"available": True, "tunings": len(tuned), "candidates": candidates,
            "valid": sum(t.valid for t in tuned), "seconds": seconds,
            "candidates_per_minute": 60.0 * candidates / seconds if seconds > 0 else None,
            "generations": s.generations, "pop_size": s.pop_size}


def _cache_latency(rows: Sequence[Row], s: Settings, cache_file: str) -> dict[str, Any]:
    """The cache-hit latency of the first kernel whose tuned options were stored."""
    if not s.cache_latency:
        return {"available": False, "note": "--no-cache-latency"}
    if not cache_latency.cache_available():
        return {"available": False, "note": "cache not available "
                "(tc.make_load_from_cache_options_factory does not exist yet)"}
    row = next((r for r in rows if r.tuning is not None and r.cells["tuned"].status == "ok"),
               None)
    if row is None:
        return {"available": False, "note": "no kernel was tuned, so no cache entry to load"}
    try:
        return cache_latency.measure(row.kernel, row.sizes, row.backend, cache_file,
                                     row.tuning.options).as_dict()
    except Exception as e:
        log.warning("cache latency: %s", _short(e))
        return {"available": False, "note": f"measuring failed: {_short(e)}"}


# -- the report ------------------------------------------------------------------------------


def _fmt_load(load: Mapping[str, list[float] | None]) -> str:
    return " -> ".join(f"{when}: " + "/".join(f"{x:.2f}" for x in v)
                       for when, v in load.items() if v)


def _fmt_ms(ms: float) -> str:
    return f"{ms:.0f}" if ms >= 100 else f"{ms:.2f}" if ms >= 1 else f"{ms:.4f}"


def _fmt_ratio(r: float | None) -> str:
    if r is None:
        return "-"
    return f"{r:.0f}" if r >= 100 else f"{r:.1f}" if r >= 10 else f"{r:.2f}" if r >= 0.1 \
        else f"{r:.3g}"


def _fmt_cell(c: Mapping[str, Any]) -> str:
    if c["status"] == "ok":
        return _fmt_ms(c["ms"]) + (" (!)" if c.get("noisy") else "")
    return {"wrong": "WRONG", "error": "error", "skipped": "-"}[c["status"]]


def to_markdown(report: Mapping[str, Any]) -> str:
    """The report as markdown: machine facts, the table, notes, tuning and cache latency."""
    m, st = report["machine"], report["settings"]
    lines = [f"# tc benchmarks: {report.get('name', '')}".rstrip(": "), "",
             f"- date: {report['date']}",
             f"- CPU: {m['cpu']}, {m['cores']} cores (torch uses {m['torch_threads']} threads)"
             + (f"; load average (1/5/15 min) {_fmt_load(m['load_average'])}"
                if m.get("load_average") else ""),
             f"- torch {m['torch']}, tc {m['tc']}, Python {m['python']}"
             + (f", commit {m['commit']}" if m.get("commit") else ""),
             f"- OpenCL device (PoCL): {m['pocl_device']}",
             f"- CUDA: {m['cuda_gpu']}",
             f"- sizes: {'first test size (--quick)' if st['quick'] else 'first benchmark size'}"
             f"; median of up to {st['runs']} runs after {st['warmup']} warm-up calls"
             f"; tuning: {st['generations']} generations x {st['pop_size']} candidates", "",
             "Times in milliseconds. Ratios are tc / torch: below 1, tc is faster. "
             "WRONG: outputs differ from torch eager (not timed). (!): noisy, the median "
             f"is over {NOISY:g}x the fastest call (other processes held the cores).", ""]
    head = ["kernel", "sizes", "backend", "eager ms", "torch.compile ms", "tc naive ms",
            "tc tuned ms"] + [f"{a}/{b}" for a, b in RATIOS]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    notes = []
    for r in report["rows"]:
        sizes = " ".join(f"{k}={v}" for k, v in r["sizes"].items())
        cells = [_fmt_cell(r["cells"][c]) for c in COLUMNS]
        ratios = [_fmt_ratio(r["ratios"][f"{a}/{b}"]) for a, b in RATIOS]
        lines.append("| " + " | ".join([r["kernel"], sizes, r["backend"], *cells, *ratios])
                     + " |")
        for c in COLUMNS:
            cell = r["cells"][c]
            if cell["status"] in ("wrong", "error") or (cell["status"] == "skipped"
                                                         and c != "tuned"):
                notes.append(f"- {r['kernel']} ({r['backend']}), {c}: {cell['status']}: "
                             f"{cell['note']}")
            elif cell.get("noisy"):
                notes.append(f"- {r['kernel']} ({r['backend']}), {c}: noisy: median "
                             f"{_fmt_ms(cell['ms'])} ms, fastest {_fmt_ms(cell['min_ms'])} ms")
    if notes:
        lines += ["", "Notes:", "", *notes]
    t = report["tuning"]
    lines += ["", "## Tuning throughput", ""]
    if t["available"]:
        lines.append(f"{t['candidates_per_minute']:.1f} candidates per minute: "
                     f"{t['candidates']} candidates ({t['valid']} valid) evaluated in "
                     f"{t['seconds']:.1f} s of tuning over {t['tunings']} tunings of "
                     f"{t['generations']} generations x {t['pop_size']} candidates (counted "
                     "from the tuner's result; wall time of the whole tuning, reference "
                     "outputs included).")
    else:
        lines.append(f"Not measured: {t['note']}.")
    lines += ["", "## Cache hit in a fresh process vs cold compile", ""]
    lat = report["cache_latency"]
    lines.append(cache_latency.describe(lat) if lat.get("available")
                 else f"Not measured: {lat['note']}.")
    lines += ["", f"Run time: {report['elapsed_s']:.0f} s.", ""]
    return "\n".join(lines)


def plot_ratios(report: Mapping[str, Any], path: Path) -> None:
    """A horizontal bar chart of every row's ratios (log scale, a line at 1) as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["rows"]
    # Only the ratios measured somewhere get a bar series (no tuner: no tuned bars).
    keys = [k for k in (f"{a}/{b}" for a, b in RATIOS)
            if any(r["ratios"][k] is not None for r in rows)]
    height = 0.8 / max(1, len(keys))
    fig, ax = plt.subplots(figsize=(9, 2 + 0.1 * (len(keys) + 1) * max(1, len(rows))),
                           layout="constrained")
    for j, key in enumerate(keys):
        ys = [i + (j - (len(keys) - 1) / 2) * height for i in range(len(rows))]
        vals = [r["ratios"][key] if r["ratios"][key] is not None else float("nan")
                for r in rows]
        ax.barh(ys, vals, height=height, label=f"tc {key}")
    ax.set_yticks(range(len(rows)), [f"{r['kernel']} ({r['backend']})" for r in rows])
    ax.set_ylim(len(rows) - 0.5, -0.5)
    if keys:
        ax.set_xscale("log")
        fig.legend(loc="outside lower center", ncol=len(keys), fontsize="small",
                   frameon=False)
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xlabel("time ratio tc / torch (below 1: tc faster; no bar: not measured)")
    ax.set_title(f"tc vs torch: {report.get('name', '')}")
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(report: dict[str, Any], out: Path, name: str) -> dict[str, Path]:
    """Write NAME.md, NAME.json and NAME.png under ``out``; returns their paths."""
    import json

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


def default_name(quick: bool) -> str:
    """A timestamp, ``-quick`` appended for quick runs."""
    return datetime.now().strftime("%Y%m%d-%H%M%S") + ("-quick" if quick else "")


__all__ = ["COLUMNS", "RATIOS", "RESULTS_DIR", "Cell", "Row", "Settings", "Tuning",
           "bench_kernel", "default_name", "machine_facts", "measure", "mismatch",
           "plot_ratios", "run", "time_ms", "to_markdown", "tuning_throughput",
           "write_report"]
