"""A static report of every suite kernel at its benchmark sizes (runs without a GPU).

    python -m benchmarks.static_report [--backend cpu|opencl|cuda] [--kernels tmm,softmax]
        [--options naive] [--arch sm_80] [--sizes bench|test] [--first] [--json FILE]
        [--time | --no-time]

For each kernel of ``tc.catalogue`` and size binding, one row per generated kernel,
compiled for ``--backend`` as that target compiles it (default: ``cuda`` where there
is a CUDA device, else the CPU default, :func:`codegen.targets.default_target`):

* a GPU target (``cuda``, ``opencl``: the same mapping): ptxas resources for
  ``--arch`` of the kernel printed as CUDA (registers, spill bytes, static shared
  bytes), launch (threads per block, blocks = the grid's product, launches per call);
* the CPU target: its OpenMP parallel loops and its SIMD loops (lanes, or a
  reduction in lanes) by loop variable, launches per call, and per suite kernel the
  size of the C library's source;

and the estimated global bytes of one launch; per suite kernel, the estimated bytes of
one call, the compulsory minimum and their ratio. For the ``cuda`` target with a CUDA
device (or ``--time``) it also times tc against the catalogue's torch reference
(``benchmarks.gpu_timing``); otherwise it is a static report only (``python -m
benchmarks`` times every target).

The traffic estimate is :mod:`benchmarks.traffic`'s (it applies to CPU kernels too:
they have no hardware ids, their loops count as sequential loops).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

from tqdm import tqdm

from benchmarks.traffic import compulsory_bytes, estimate_traffic
from codegen import host as host_mod
from codegen import kernel as k
from codegen.compiler import CompiledProgram, compile_program, contiguous_strides
from codegen.executor import uses_symbolic_sizes
from codegen.nvrtc import compile_cuda
from codegen.targets import Target, default_target, get_target, target_names
from tc import catalogue
from tc.errors import TcError
from tc.lang.frontend import check_text
from tc.options import MappingOptions

log = logging.getLogger(__name__)

# -- the report ----------------------------------------------------------------------------


@dataclass
class GpuKernelRow:
    """One generated GPU kernel: resources (None without NVRTC), launch, bytes/launch."""

    name: str
    launches: int
    registers: int | None
    spill_bytes: int | None
    shared_bytes: int | None
    threads_per_block: int
    blocks: int
    bytes_read: int
    bytes_written: int


@dataclass
class CpuKernelRow:
    """One generated CPU kernel: its OpenMP parallel loops and its SIMD loops (``"var
    lanes"`` or ``"var reduction"``), each loop of the kernel AST once, in program
    order; launches and bytes/launch."""

    name: str
    launches: int
    parallel_loops: list[str]
    simd_loops: list[str]
    bytes_read: int
    bytes_written: int


@dataclass
class SuiteRow:
    """One suite kernel at one size binding; ``estimated_bytes`` is per call.
    ``strategy`` is the target's ("gpu": :class:`GpuKernelRow` rows; "cpu":
    :class:`CpuKernelRow` rows and ``source_bytes``, the C library's source)."""

    kernel: str
    sizes: dict[str, int]
    kernels: list[GpuKernelRow | CpuKernelRow] = field(default_factory=list)
    estimated_bytes: int = 0
    minimum_bytes: int = 0
    error: str | None = None
    timing: dict[str, float] | None = None
    target: str = "cuda"
    strategy: str = "gpu"
    source_bytes: int | None = None

    @property
    def ratio(self) -> float | None:
        return self.estimated_bytes / self.minimum_bytes if self.minimum_bytes else None


def report_kernel(kernel: catalogue.Kernel, sizes: Mapping[str, int], options: MappingOptions,
                  arch: str | None = "sm_80", nvrtc: bool = True,
                  target: str | Target = "cuda") -> SuiteRow:
    """Compile one suite kernel for ``sizes`` as ``target`` compiles it and describe
    each of its kernels (NVRTC's resources for ``arch`` only on a GPU target)."""
    target = get_target(target)
    row = SuiteRow(kernel.name, dict(sizes), target=target.name, strategy=target.strategy)
    try:
        fn = check_text(kernel.tc).functions[kernel.entry]
        strides = [contiguous_strides([s.evaluate(sizes) for s in t.shape]) for t in fn.inputs]
        # As the executor compiles it: a CPU kernel serves every size unless the options
        # fix them (its loops and traffic can differ from a fixed-size compilation's).
        program = compile_program(fn, options, sizes, strides, target.strategy,
                                  uses_symbolic_sizes(target, options))
    except Exception as e:  # a compiler bug on one kernel must not stop the report
        log.warning("%s %s: compilation failed: %s", kernel.name, sizes, e)
        first = (str(e).splitlines() or [""])[0]
        row.error = f"compilation failed: {type(e).__name__}: {first}".replace("|", "/")
        return row
    row.minimum_bytes = compulsory_bytes(fn, sizes)
    launched = Counter(host_mod.launches(program.host, sizes))
    if target.strategy == "cpu":
        return _cpu_rows(row, program, launched, target)
    for index, ck in enumerate(program.kernels):
        res: dict[str, int] = {}
        if nvrtc:
            try:
                res = compile_cuda(ck.cuda_source, ck.name, arch).resources
            except TcError as e:
                log.warning("%s: NVRTC failed: %s", ck.name, str(e).splitlines()[0])
        read, written = estimate_traffic(ck.kernel, sizes)
        row.kernels.append(GpuKernelRow(
            ck.name, launched[index], res.get("registers"), res.get("spill_bytes"),
            res.get("shared_bytes"), math.prod(ck.block), math.prod(ck.grid), read, written))
        row.estimated_bytes += launched[index] * (read + written)
    return row


def _cpu_rows(row: SuiteRow, program: CompiledProgram, launched: Mapping[int, int],
              target: Target) -> SuiteRow:
    """``row`` filled with the CPU kernels of ``program``."""
    kernels = [ck.kernel for ck in program.kernels]
    # The C target builds one library from every kernel (helpers once); another CPU
    # target would print each kernel on its own.
    library = getattr(target, "library_source", None)
    source = library(kernels) if library else "".join(map(target.source, kernels))
    row.source_bytes = len(source.encode())
    for index, kern in enumerate(kernels):
        parallel, simd = cpu_loops(kern)
        read, written = estimate_traffic(kern, row.sizes)
        row.kernels.append(CpuKernelRow(kern.name, launched[index], parallel, simd, read,
                                        written))
        row.estimated_bytes += launched[index] * (read + written)
    return row


def cpu_loops(kernel: k.Kernel) -> tuple[list[str], list[str]]:
    """The loop variables of ``kernel``'s OpenMP parallel loops, and its SIMD loops as
    ``"var lanes"`` or ``"var reduction"``, in program order."""
    loops = [s for s in k.walk_stmts(kernel.body) if isinstance(s, k.For)]
    return ([s.var for s in loops if s.mapping == "omp"],
            [f"{s.var} {s.vector}" for s in loops if s.vector is not None])


def tally(items: Sequence[str]) -> str:
    """``["a", "b", "a"]`` -> ``"a x2, b"`` (first-seen order); ``"-"`` when empty. The
    CPU mapping repeats a loop in each isolated part (full tiles, partial ones)."""
    counts = Counter(items)
    return ", ".join(f"{item} x{n}" if n > 1 else item for item, n in counts.items()) or "-"


def human_bytes(n: float) -> str:
    """``1234567`` -> ``"1.23 MB"`` (decimal units)."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:.0f} B"


COLUMNS = ("kernel", "sizes", "GPU kernel", "launches", "registers", "spill B", "shared B",
           "threads/block", "blocks", "est. bytes/launch", "est. bytes/call", "minimum bytes",
           "est./min")
CPU_COLUMNS = ("kernel", "sizes", "CPU kernel", "launches", "parallel loops", "SIMD loops",
               "est. bytes/launch", "C source", "est. bytes/call", "minimum bytes",
               "est./min")
TIMING_COLUMNS = ("tc ms", "torch ms", "tc/torch")


def markdown(rows: Sequence[SuiteRow], timing: bool = False) -> str:
    """The report as a markdown table: one line per generated kernel, grouped by suite
    kernel, the per-call columns on the group's first line. The rows must come from
    targets of one strategy (their columns differ)."""
    strategies = {row.strategy for row in rows}
    if len(strategies) > 1:
        raise ValueError(f"rows of several mapping strategies: {sorted(strategies)}")
    cpu = strategies == {"cpu"}
    cols = (CPU_COLUMNS if cpu else COLUMNS) + (TIMING_COLUMNS if timing else ())
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]

    def cell(v: object) -> str:
        return "-" if v is None else str(v)

    for row in rows:
        group = [row.kernel, " ".join(f"{n}={v}" for n, v in row.sizes.items())]
        if row.error is not None:
            lines.append("| " + " | ".join(group + [row.error] + [""] * (len(cols) - 3)) + " |")
            continue
        summary = [human_bytes(row.estimated_bytes), human_bytes(row.minimum_bytes),
                   "-" if row.ratio is None else f"{row.ratio:.2f}"]
        if cpu:
            summary.insert(0, cell(None if row.source_bytes is None
                                   else human_bytes(row.source_bytes)))
        if timing:
            t = row.timing
            summary += ([f"{t['tc_ms']:.3f}", f"{t['torch_ms']:.3f}", f"{t['ratio']:.2f}"]
                        if t else ["-"] * 3)
        for i, g in enumerate(row.kernels):
            if isinstance(g, CpuKernelRow):
                cells = [g.name, str(g.launches), tally(g.parallel_loops), tally(g.simd_loops)]
            else:
                cells = [g.name, str(g.launches), cell(g.registers), cell(g.spill_bytes),
                         cell(g.shared_bytes), str(g.threads_per_block), str(g.blocks)]
            cells.append(human_bytes(g.bytes_read + g.bytes_written))
            head, tail = (group, summary) if i == 0 else (["", ""], [""] * len(summary))
            lines.append("| " + " | ".join(head + cells + tail) + " |")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The runner's command line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", choices=target_names(),
                   help="the target compiled for (default: cuda with a CUDA device, else "
                        "the CPU default)")
    p.add_argument("--kernels", help="comma-separated suite kernels (default: all)")
    p.add_argument("--options", default="naive",
                   help="a preset (naive, mlp, conv, ...) or serialized options (JSON)")
    p.add_argument("--arch", default="sm_80",
                   help="the architecture of the ptxas resources (GPU targets)")
    p.add_argument("--sizes", choices=("bench", "test"), default="bench",
                   help="the catalogue's benchmark sizes (default) or its test sizes")
    p.add_argument("--first", action="store_true", help="only the first size of each kernel")
    p.add_argument("--no-nvrtc", action="store_true",
                   help="skip the ptxas resources (GPU targets)")
    p.add_argument("--json", metavar="FILE", help="also write the report as JSON")
    t = p.add_mutually_exclusive_group()
    t.add_argument("--time", action="store_true", default=None,
                   help="time on the CUDA device (the cuda target's default when there is "
                        "one)")
    t.add_argument("--no-time", dest="time", action="store_false")
    p.add_argument("--runs", type=int, default=100, help="timed calls (median)")
    p.add_argument("--warmup", type=int, default=10, help="untimed calls first")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the report (and the timings with a device); returns the exit status."""
    from benchmarks import gpu_timing

    args = build_parser().parse_args(argv)
    try:
        kernels = [catalogue.get(n.strip()) for n in args.kernels.split(",")] \
            if args.kernels else list(catalogue.KERNELS.values())
        text = args.options
        options = (MappingOptions.deserialize(text) if text.lstrip().startswith("{")
                   else MappingOptions(text))
    except (KeyError, TcError) as e:
        print(e.args[0] if isinstance(e, KeyError) else e, file=sys.stderr)
        return 2
    device = gpu_timing.timing_available()
    target = get_target(args.backend) if args.backend else \
        default_target("cuda" if device else "cpu")
    # gpu_timing runs CUDA tensors only: the other targets are timed by the suite runner.
    timed = target.device_type == "cuda"
    timing = timed and device and args.time is not False
    ignored = " (--time ignored)" if args.time else ""
    if not timed:
        print(f"{target.name} target: static report only{ignored}; python -m benchmarks "
              f"--backends {target.name} times it")
    elif not device:
        print(f"no CUDA device: static report only{ignored}")
    elif not timing:
        print("CUDA device present; timing skipped (--no-time)")
    jobs = [(kern, s) for kern in kernels
            for s in (kern.bench_sizes if args.sizes == "bench" else kern.test_sizes)
            [: 1 if args.first else None]]
    rows = []
    for kern, sizes in tqdm(jobs, desc="static report", unit="size", leave=False):
        row = report_kernel(kern, sizes, options, args.arch,
                            not args.no_nvrtc and target.strategy == "gpu", target)
        if timing and row.error is None:
            row.timing = gpu_timing.time_or_none(kern, sizes, options, args.warmup, args.runs)
        rows.append(row)
    what = (f"resources for {args.arch}" if target.strategy == "gpu" else
            "OpenMP parallel and SIMD loops, the C library's source size")
    print(f"Static report for the {target.name} target: {args.sizes} sizes, options "
          f"{args.options}, {what}; bytes are estimated global traffic (no caching "
          "modelled)\n")
    print(markdown(rows, timing))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump([asdict(r) | {"ratio": r.ratio} for r in rows], f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
