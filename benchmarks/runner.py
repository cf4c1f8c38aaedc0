"""The benchmark runner: tc against torch eager, ``torch.compile`` and the roofline bound.

    python -m benchmarks [--quick] [--kernels tmm,softmax] [--backends cpu,opencl]
        [--runs N] [--warmup N] [--generations G] [--pop-size P] [--no-tune]
        [--no-torch-compile] [--no-iree] [--no-cache-latency] [--no-roofline] [--threads N]
        [--out DIR] [--name NAME]

For each kernel of ``tc.catalogue`` (its first test size with ``--quick``, its first
benchmark size otherwise) and each back end (:data:`BACKENDS`; by default "cpu", the
native C + OpenMP target, and "cuda" when a CUDA device is present; "opencl" on
PoCL's CPU device only when asked, as it is the slow check of GPU-faithful code), one
row of five cells on the same tensors:

* ``eager``: the catalogue's torch reference, whose outputs are the expected values
  (a reference that returns a view of its input is timed followed by the copy that
  materialises it, as tc writes its result; the row's note says so);
* ``compile``: ``torch.compile(reference)`` (an error is recorded in its cell);
* ``naive``: ``tc.compile`` with ``MappingOptions("naive")``;
* ``default``: ``tc.compile`` with the options of :func:`tc.defaults.default_options`,
  the heuristic used when no options factory is given (:mod:`benchmarks.defaults`);
* ``tuned``: the options of ``tc.autotune`` (skipped, with a note, without it);
* ``iree`` (beside them, on CPU rows): the definition exported to MLIR and run by IREE
  (:mod:`benchmarks.iree_column`; skipped without IREE or with ``--no-iree``).

Every cell is checked before it is timed (:func:`checker`) against the float64 truth,
the reference run on the inputs widened to float64: right within the kernel's
rtol/atol of it, or at most :data:`EAGER_FACTOR` times as far from it as eager is (plus
atol), since a long float32 reduction moves with its summation order and eager is not
exact either; integer outputs, and kernels without that truth, are compared with
eager's within the tolerance. Each cell records its error and eager's
(:class:`Accuracy`). A wrong or crashing cell is reported as such and never timed, and
never stops the run. Times are the median of ``--runs`` calls after ``--warmup`` untimed
ones (``time.perf_counter`` on the CPU, CUDA events on a GPU), each call as a user
makes it (for tc: output allocation, every launch and the read of the error flag).
Ratios are tc / torch: below 1, tc is faster.

Before the rows, :mod:`benchmarks.roofline` measures the machine's peak FLOP/s and
bandwidth at the run's thread count; each CPU row gets its bound, ``max(flops / peak,
compulsory bytes / bandwidth)``, and every time is also reported as a multiple of it.
The report (:mod:`benchmarks.report`: markdown printed and written, JSON, a chart of
the ratios) goes to ``benchmarks/results/NAME.{md,json,png}``, with geomeans over
kernel subsets, the tuning throughput (candidates per minute) and the latency of a
cache hit in a fresh process against a cold compile (:mod:`benchmarks.cache_latency`).
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

from benchmarks import cache_latency, defaults, gpu_timing, iree_column, overhead, roofline
from benchmarks.checks import (
    EAGER_FACTOR,
    Accuracy,
    Check,
    Outputs,
    _short,
    aliases_input,
    aliasing_outputs,
    checker,
    float64_truth,
    materialising,
    mismatch,
    reference_accuracy,
)
from benchmarks.roofline import Peaks, Roofline
from codegen.targets import TARGETS
from tc import catalogue

log = logging.getLogger(__name__)

#: The back ends the runner can time, with the torch device their tensors live on: the
#: compiler's registry of targets is the one list of valid ``--backends`` names, so
#: that a new target is benchmarked without touching the runner.
BACKEND_DEVICES = {name: t.device_type for name, t in TARGETS.items()}
BACKENDS = tuple(BACKEND_DEVICES)
#: The cells of a row, in table order.
COLUMNS = ("eager", "compile", "naive", "default", "tuned")
#: The ratios of a row: (tc cell, torch cell), reported as tc / torch.
RATIOS = (("naive", "eager"), ("naive", "compile"), ("tuned", "eager"), ("tuned", "compile"))
#: Each cell against the roofline bound (``"bound"`` stands for the row's bound).
BOUND_RATIOS = (("naive", "bound"), ("default", "bound"), ("tuned", "bound"),
                ("eager", "bound"), ("compile", "bound"))
#: What tuning bought: naive / tuned (2 means the tuned options run twice as fast).
TUNING_RATIO = ("naive", "tuned")
#: The default options against tuned (goal: within 2x) and naive (goal: never slower).
DEFAULT_RATIOS = (("default", "tuned"), ("default", "naive"))
ALL_RATIOS = (*RATIOS, TUNING_RATIO, *DEFAULT_RATIOS, *BOUND_RATIOS,
              *iree_column.IREE_RATIOS)
RESULTS_DIR = Path(__file__).resolve().parent / "results"
SCHEMA_VERSION = 5  # 2: the roofline (machine peaks, per-row work and bound);
#                      3: each cell's accuracy against the float64 truth, row notes;
#                      4: the "default" cell (tc.defaults); 5: the "iree" cell
#: The note of a row whose torch reference returns a view of (or aliases) an input.
ALIAS_NOTE = ("the torch reference returns a view of its input (output {outputs}), so it "
              "copies nothing: eager and torch.compile are timed with .clone() (.contiguous() "
              "for a strided view) after it, materialising the result as tc must")
#: A cell whose median is more than this many times its fastest call is flagged noisy.
NOISY = 5.0



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
    roofline: bool = True  # probe the machine's peaks and report each row's bound
    iree: bool = True  # the "iree" cell (benchmarks.iree_column), where IREE is installed


@dataclass(frozen=True)
class Cell:
    """One measurement. ``status``: ``ok`` (timed), ``wrong`` (outputs wrong, see
    :func:`checker`; not timed), ``error`` (raised, not timed) or ``skipped`` (not
    measured). ``accuracy``: its distance to the float64 truth, when there is one (also
    in ``note``)."""

    status: str
    ms: float | None = None
    runs: int = 0
    setup_s: float | None = None
    note: str = ""
    min_ms: float | None = None
    accuracy: Accuracy | None = None

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
    """The cells of one kernel at one size on one back end; ``note``: what the report
    must say about the whole row (e.g. that torch was timed with a copy)."""

    kernel: str
    sizes: dict[str, int]
    backend: str
    cells: dict[str, Cell]
    tuning: Tuning | None = None
    roofline: Roofline | None = None
    note: str = ""

    def _ms(self, col: str) -> float | None:
        if col == "bound":
            return self.roofline.bound_ms if self.roofline else None
        cell = self.cells.get(col)  # a row built without a column has no time for it
        return cell.ms if cell is not None and cell.status == "ok" else None

    def ratio(self, num: str, den: str) -> float | None:
        """Median of cell ``num`` over median of cell ``den`` (or over the roofline bound
        for ``den == "bound"``), when both are known."""
        a, b = self._ms(num), self._ms(den)
        if a is None or not b:
            return None
        return a / b

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for c, cell in self.cells.items():
            d["cells"][c]["noisy"] = cell.noisy
        d["ratios"] = {f"{a}/{b}": self.ratio(a, b) for a, b in ALL_RATIOS}
        return d


# -- measuring -------------------------------------------------------------------------------


def default_backends() -> tuple[str, ...]:
    """The back ends measured when none is named: "cpu" always, "cuda" when a CUDA
    device is present. "opencl" (PoCL) only when asked: it runs the GPU-faithful
    kernels on the CPU, a correctness check far slower than the native CPU target."""
    from codegen.nvrtc import cuda_device_available

    return ("cpu", "cuda") if cuda_device_available() else ("cpu",)


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


def measure(make: Callable[[], Callable[[], Outputs]], expected: Outputs | None,
            kernel: catalogue.Kernel, device: str, s: Settings,
            check: Check | None = None) -> Cell:
    """Build a callable with ``make`` (compiling happens there or in its first call),
    check its first outputs against ``expected`` (with ``check`` when given: see
    :func:`checker`; else with :func:`mismatch` and the kernel's tolerance) and, if
    they are right, time it. The cell's note says how far it is from the float64 truth."""
    t0 = time.perf_counter()
    try:
        fn = make()
        out = fn()
        _sync(device)
    except Exception as e:  # one failing cell must not stop the report
        log.warning("%s: %s", kernel.name, _short(e))
        return Cell("error", note=_short(e))
    setup = time.perf_counter() - t0
    accuracy = None
    if expected is not None:
        if check is None:
            bad = mismatch(out, expected, kernel.rtol, kernel.atol)
        else:
            bad, accuracy = check(out)
        if bad:
            return Cell("wrong", setup_s=setup, note=bad, accuracy=accuracy)
    note = accuracy.describe() if accuracy else ""
    try:
        samples = time_ms(fn, device, s.warmup, s.runs, s.budget_s)
    except Exception as e:
        return Cell("error", setup_s=setup, note=f"while timing: {_short(e)}",
                    accuracy=accuracy)
    return Cell("ok", statistics.median(samples), len(samples), setup, min_ms=min(samples),
                note=note, accuracy=accuracy)


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
    """The row of ``kernel`` at ``sizes`` on ``backend``: eager, torch.compile, tc naive,
    tc with the default options and tc tuned, on the same tensors."""
    import tc
    from tc.options import MappingOptions

    device = BACKEND_DEVICES[backend]
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
    truth = float64_truth(kernel, inputs)
    check = checker(expected, truth, kernel.rtol, kernel.atol)
    # A reference returning a view of its input does no work, while tc writes its
    # result: time eager and torch.compile making that copy too.
    alias = aliasing_outputs(expected, inputs)
    reference = materialising(kernel.reference, alias)
    row_note = (ALIAS_NOTE.format(outputs=", ".join(str(i) for i, a in enumerate(alias) if a))
                if any(alias) else "")
    eager = measure(lambda: lambda: reference(*inputs), None, kernel, device, s)
    accuracy = reference_accuracy(expected, truth)
    note = "; ".join(filter(None, (eager.note, accuracy and accuracy.describe(),
                                   row_note and "timed with the copy")))
    cells["eager"] = replace(eager, note=note, accuracy=accuracy)

    if s.torch_compile:
        def compiled() -> Callable[[], Outputs]:
            torch._dynamo.reset()  # a fresh cache: no recompile limit across kernels
            cf = torch.compile(reference)
            return lambda: cf(*inputs)

        cell = measure(compiled, expected, kernel, device, s, check)
        cells["compile"] = replace(cell, note="; ".join(filter(None, (
            cell.note, row_note and cell.status == "ok" and "timed with the copy"))))
    else:
        cells["compile"] = Cell("skipped", note="--no-torch-compile")
    cells["iree"] = iree_column.cell(kernel, inputs, expected, check, device, s)

    def tc_call(options: Any) -> Callable[[], Callable[[], Outputs]]:
        def make() -> Callable[[], Outputs]:
            ex = tc.compile(kernel.tc, kernel.entry, options, *inputs, backend=backend)
            return lambda: ex(*inputs)
        return make

    cells["naive"] = measure(tc_call(MappingOptions("naive")), expected, kernel, device, s,
                             check)
    try:
        options, seconds = defaults.default_options_for(kernel.tc, kernel.entry, inputs,
                                                        backend)
    except Exception as e:
        cells["default"] = Cell("error", note=f"default_options failed: {_short(e)}")
    else:
        cell = measure(tc_call(options), expected, kernel, device, s, check)
        chosen = f"{options!r} (chosen in {seconds * 1e3:.2f} ms)"
        cells["default"] = replace(cell, note=f"{cell.note}; {chosen}" if cell.note else chosen)

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
            cell = measure(tc_call(options), expected, kernel, device, s, check)
            tuned_note = f"tuned in {tuning.seconds:.1f} s"
            cells["tuned"] = replace(cell, note=f"{cell.note}; {tuned_note}" if cell.note
                                     else tuned_note)
    return Row(kernel.name, sizes, backend, {c: cells[c] for c in (*COLUMNS, "iree")},
               tuning, note=row_note)


# -- the run ---------------------------------------------------------------------------------


def machine_facts() -> dict[str, Any]:
    """CPU model and cores, torch and tc versions, the C compiler, the thread settings
    of the OpenMP and PoCL runtimes, the PoCL device, the CUDA GPU if any."""
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
    return {"cpu": cpu, "processor": platform.processor() or None, "cores": os.cpu_count(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "tc": tc.__version__, "python": platform.python_version(),
            "c_compiler": _first_line(["gcc", "--version"]),
            # The native CPU kernels use OpenMP and PoCL its own pthreads: --threads sets
            # torch's count only, so record what the others were told.
            "thread_env": {v: os.environ.get(v) for v in
                           ("OMP_NUM_THREADS", "POCL_MAX_PTHREAD_COUNT")},
            "pocl_device": pocl, "cuda_gpu": gpu,
            "commit": _first_line(["git", "rev-parse", "--short", "HEAD"])}


def _first_line(cmd: Sequence[str]) -> str | None:
    """The first line a command prints (None if it cannot run)."""
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).parent,
                             timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out.splitlines()[0] if out else None


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


def probe_peaks(s: Settings, when: str = "start") -> tuple[Peaks | None, str]:
    """The machine's peaks (:func:`benchmarks.roofline.measure_peaks`) or why there are
    none: ``--no-roofline``, or a failed probe (recorded, the run goes on)."""
    if not s.roofline:
        return None, "--no-roofline"
    try:
        return replace(roofline.measure_peaks(), when=when), ""
    except Exception as e:  # e.g. no memory for the 512 MiB copy: rows without bounds
        log.warning("roofline probe failed: %s", _short(e))
        return None, f"the probe failed: {_short(e)}"


def row_roofline(work: Roofline, backend: str, peaks: Peaks | None, why: str) -> Roofline:
    """A row's work with its bound: on a CPU back end, from the measured peaks; a GPU
    row keeps its work but gets no bound (the peaks are the CPU's)."""
    if BACKEND_DEVICES[backend] != "cpu":
        return replace(work, note=work.note or "no bound: the peaks measured are the CPU's")
    if peaks is None:
        return replace(work, note=work.note or f"no bound: {why}")
    return roofline.with_bound(work, peaks)


def run(s: Settings, progress: bool = True) -> dict[str, Any]:
    """Run the benchmark; returns the report (the JSON document)."""
    from benchmarks import report  # imported here: it imports this module's constants

    started = time.perf_counter()
    load_before = _loadavg()
    backends = s.backends or default_backends()
    kernels = select_kernels(s.kernels)
    jobs = [(k, b) for k in kernels for b in backends]
    rows: list[Row] = []
    work: dict[str, Roofline] = {}
    threads = torch.get_num_threads()
    try:
        if s.torch_threads:
            torch.set_num_threads(s.torch_threads)
        first, no_peaks = probe_peaks(s)  # at the thread count of the rows
        with tempfile.TemporaryDirectory(prefix="tc-bench-") as tmp:
            cache_file = s.cache_file or str(Path(tmp) / "tuning.cache")
            bar = tqdm(jobs, desc="benchmarks", unit="row", disable=not progress)
            for kernel, backend in bar:
                bar.set_postfix_str(f"{kernel.name} on {backend}")
                sizes = kernel.test_sizes[0] if s.quick else kernel.bench_sizes[0]
                rows.append(bench_kernel(kernel, sizes, backend, s, cache_file))
                if s.roofline and kernel.name not in work:
                    work[kernel.name] = roofline.safe_kernel_work(kernel, sizes)
            latency = _cache_latency(rows, s, cache_file)
        calls = overhead.measure_report([b for b in backends if b != "cuda"] or ["cpu"],
                                        200 if s.quick else 3000)
        # Probed again at the end: others' work can only slow a probe down, so the
        # faster of the two is nearer the machine's peak (and their gap shows the noise).
        last = probe_peaks(s, "end")[0] if first else None
        peaks = roofline.best_of([p for p in (first, last) if p]) if first else None
        if s.roofline:
            rows = [replace(r, roofline=row_roofline(work[r.kernel], r.backend, peaks,
                                                     no_peaks)) for r in rows]
        machine = machine_facts()
    finally:
        torch.set_num_threads(threads)
    machine["load_average"] = {"start": load_before, "end": _loadavg()}
    machine["peaks"] = peaks.as_dict() if peaks else {"available": False, "note": no_peaks}
    if peaks:
        machine["peaks"]["probes"] = [p.summary() for p in (first, last) if p]
    settings = asdict(s)
    settings["backends"] = list(backends)
    settings["kernels"] = [k.name for k in kernels]
    row_dicts = [r.as_dict() for r in rows]
    return {
        "schema": SCHEMA_VERSION,
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine,
        "settings": settings,
        "rows": row_dicts,
        "geomeans": report.geomeans(row_dicts),
        "tuning": tuning_throughput(rows, s),
        "cache_latency": latency,
        "overhead": calls,
        "elapsed_s": time.perf_counter() - started,
    }


def tuning_throughput(rows: Sequence[Row], s: Settings) -> dict[str, Any]:
    """Candidates evaluated per minute of tuning, over every tuned row and per back end
    (a PoCL candidate and a native CPU candidate cost very different times)."""
    tuned = [r for r in rows if r.tuning is not None]
    if not tuned:
        why = "--no-tune" if not s.tune else "the autotuner is not available"
        return {"available": False, "note": why}

    def summary(sel: Sequence[Row]) -> dict[str, Any]:
        seconds = sum(r.tuning.seconds for r in sel)
        candidates = sum(r.tuning.candidates for r in sel)
        return {"tunings": len(sel), "candidates": candidates,
                "valid": sum(r.tuning.valid for r in sel), "seconds": seconds,
                "candidates_per_minute": 60.0 * candidates / seconds if seconds > 0 else None}

    backends = dict.fromkeys(r.backend for r in tuned)
    return {"available": True, **summary(tuned), "generations": s.generations,
            "pop_size": s.pop_size,
            "per_backend": {b: summary([r for r in tuned if r.backend == b]) for b in backends}}


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


# -- naming ---------------------------------------------------------------------------------


def default_name(quick: bool) -> str:
    """A timestamp, ``-quick`` appended for quick runs."""
    return datetime.now().strftime("%Y%m%d-%H%M%S") + ("-quick" if quick else "")


__all__ = ["ALL_RATIOS", "BACKENDS", "BACKEND_DEVICES", "BOUND_RATIOS", "COLUMNS",
           "DEFAULT_RATIOS",
           "EAGER_FACTOR", "RATIOS", "RESULTS_DIR", "TUNING_RATIO", "Accuracy", "Cell", "Row",
           "Settings", "Tuning", "aliases_input", "aliasing_outputs", "bench_kernel",
           "checker", "default_backends", "default_name", "float64_truth", "machine_facts",
           "materialising", "measure", "mismatch", "probe_peaks", "reference_accuracy",
           "row_roofline", "run", "time_ms", "tuning_throughput"]
