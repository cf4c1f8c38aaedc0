"""A static report of every suite kernel at its benchmark sizes (runs without a GPU).

    python -m benchmarks.static_report [--kernels tmm,softmax] [--options naive]
        [--arch sm_80] [--sizes bench|test] [--first] [--json FILE] [--time | --no-time]

For each kernel of ``tc.catalogue`` and size binding, one row per generated GPU
kernel: ptxas resources for ``--arch`` (registers, spill bytes, static shared bytes),
launch (threads per block, blocks = the grid's product, launches per call) and the
estimated global bytes of one launch; per suite kernel, the estimated bytes of one
call, the compulsory minimum and their ratio. With a CUDA device (or ``--time``) it
also times tc against the catalogue's torch reference (``benchmarks.gpu_timing``);
without one it says "no CUDA device: static report only".

The traffic estimate is :mod:`benchmarks.traffic`'s.
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
from codegen.compiler import compile_program, contiguous_strides
from codegen.nvrtc import compile_cuda
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
class SuiteRow:
    """One suite kernel at one size binding; ``estimated_bytes`` is per call."""

    kernel: str
    sizes: dict[str, int]
    kernels: list[GpuKernelRow] = field(default_factory=list)
    estimated_bytes: int = 0
    minimum_bytes: int = 0
    error: str | None = None
    timing: dict[str, float] | None = None

    @property
    def ratio(self) -> float | None:
        return self.estimated_bytes / self.minimum_bytes if self.minimum_bytes else None


def report_kernel(kernel: catalogue.Kernel, sizes: Mapping[str, int], options: MappingOptions,
                  arch: str | None = "sm_80", nvrtc: bool = True) -> SuiteRow:
    """Compile one suite kernel for ``sizes`` and describe each of its GPU kernels."""
    row = SuiteRow(kernel.name, dict(sizes))
    try:
        fn = check_text(kernel.tc).functions[kernel.entry]
        strides = [contiguous_strides([s.evaluate(sizes) for s in t.shape]) for t in fn.inputs]
        program = compile_program(fn, options, sizes, strides)
    except Exception as e:  # a compiler bug on one kernel must not stop the report
        log.warning("%s %s: compilation failed: %s", kernel.name, sizes, e)
        first = (str(e).splitlines() or [""])[0]
        row.error = f"compilation failed: {type(e).__name__}: {first}".replace("|", "/")
        return row
    row.minimum_bytes = compulsory_bytes(fn, sizes)
    launched = Counter(host_mod.launches(program.host, sizes))
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


def human_bytes(n: float) -> str:
    """``1234567`` -> ``"1.23 MB"`` (decimal units)."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:.0f} B"


COLUMNS = ("kernel", "sizes", "GPU kernel", "launches", "registers", "spill B", "shared B",
           "threads/block", "blocks", "est. bytes/launch", "est. bytes/call", "minimum bytes",
           "est./min")
TIMING_COLUMNS = ("tc ms", "torch ms", "tc/torch")


def markdown(rows: Sequence[SuiteRow], timing: bool = False) -> str:
    """The report as a markdown table: one line per GPU kernel, grouped by suite kernel,
    the per-call columns on the group's first line."""
    cols = COLUMNS + (TIMING_COLUMNS if timing else ())
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
        if timing:
            t = row.timing
            summary += ([f"{t['tc_ms']:.3f}", f"{t['torch_ms']:.3f}", f"{t['ratio']:.2f}"]
                        if t else ["-"] * 3)
        for i, g in enumerate(row.kernels):
            cells = [g.name, str(g.launches), cell(g.registers), cell(g.spill_bytes),
                     cell(g.shared_bytes), str(g.threads_per_block), str(g.blocks),
                     human_bytes(g.bytes_read + g.bytes_written)]
            head, tail = (group, summary) if i == 0 else (["", ""], [""] * len(summary))
            lines.append("| " + " | ".join(head + cells + tail) + " |")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The runner's command line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kernels", help="comma-separated suite kernels (default: all)")
    p.add_argument("--options", default="naive",
                   help="a preset (naive, mlp, conv, ...) or serialized options (JSON)")
    p.add_argument("--arch", default="sm_80", help="the architecture of the ptxas resources")
    p.add_argument("--sizes", choices=("bench", "test"), default="bench",
                   help="the catalogue's benchmark sizes (default) or its test sizes")
    p.add_argument("--first", action="store_true", help="only the first size of each kernel")
    p.add_argument("--no-nvrtc", action="store_true", help="skip the ptxas resources")
    p.add_argument("--json", metavar="FILE", help="also write the report as JSON")
    t = p.add_mutually_exclusive_group()
    t.add_argument("--time", action="store_true", default=None,
                   help="time on the CUDA device (the default when there is one)")
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
    timing = device and args.time is not False
    if not device:
        print("no CUDA device: static report only" + (" (--time ignored)" if args.time else ""))
    elif not timing:
        print("CUDA device present; timing skipped (--no-time)")
    jobs = [(kern, s) for kern in kernels
            for s in (kern.bench_sizes if args.sizes == "bench" else kern.test_sizes)
            [: 1 if args.first else None]]
    rows = []
    for kern, sizes in tqdm(jobs, desc="static report", unit="size", leave=False):
        row = report_kernel(kern, sizes, options, args.arch, not args.no_nvrtc)
        if timing and row.error is None:
            row.timing = gpu_timing.time_or_none(kern, sizes, options, args.warmup, args.runs)
        rows.append(row)
    print(f"Static report: {args.sizes} sizes, options {args.options}, resources for "
          f"{args.arch}; bytes are estimated global traffic (no caching modelled)\n")
    print(markdown(rows, timing))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump([asdict(r) | {"ratio": r.ratio} for r in rows], f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
