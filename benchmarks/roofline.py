"""The roofline bound of a layer on the machine at hand, measured in the same run.

No code can run a layer faster than ``max(flops / peak FLOP/s, bytes / bandwidth)``,
where ``flops`` is the arithmetic the layer must do and ``bytes`` the global memory it
must move at least once (its inputs read, its outputs written). Reporting every time
as a multiple of that bound says how much room is left, which a ratio to torch cannot:
torch itself is ~2x its bound on memory-bound layers and ~1x on a large matmul
(``../shared/DESIGN.md``, "How fast is fast: the CPU bound").

The two peaks are measured here rather than taken from a data sheet, because a shared
2-core virtual machine reaches neither its nominal FLOP/s nor its nominal bandwidth,
and what it reaches changes with the load and the thread count:

* peak FLOP/s: a float32 ``torch.mm`` of two ``n x n`` matrices (``2 n^3`` FLOPs,
  ``n = 2048`` by default: large enough for the BLAS to reach its steady state);
* bandwidth: ``dst.copy_(src)`` of a 256 MiB float32 tensor (read + write = 512 MiB,
  far beyond any last-level cache).

Both are medians of several calls after a warm-up, at torch's current thread count
(the runner sets it from ``--threads`` before probing).

The work of a layer comes from the catalogue when a kernel declares it (a ``flops``
or ``compulsory_bytes`` attribute: a number or a function of the sizes), and otherwise
from the IR: :func:`count_flops` counts, per stage, the points of its iteration domain
times the arithmetic operations of its right-hand side (plus one for the accumulation
of a reduction), and :func:`compulsory_traffic` is :func:`benchmarks.traffic.
compulsory_bytes` with every input capped by the number of its element reads, so that
a gather (``embedding_sum`` reads 6400 of the table's million rows) or an input read
only for its size (``wavenet``'s ``dilation``) does not inflate the bound.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch

from benchmarks.traffic import compulsory_bytes, element_bytes
from tc.ir import nodes as ir

log = logging.getLogger(__name__)

MATMUL_N = 2048  # the peak-FLOP/s probe multiplies two MATMUL_N x MATMUL_N matrices
COPY_MIB = 256  # the bandwidth probe copies a tensor of COPY_MIB mebibytes
PROBE_RUNS = 5  # timed calls of each probe (median)

_COUNTED_BINARY = frozenset(ir.ARITH_OPS) | frozenset(ir.CMP_OPS)


# -- the machine ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Peaks:
    """What the machine reached in this run: FLOP/s of a float32 matmul and bytes/s of
    a large copy (medians), the threads torch used and how the probes were sized."""

    flops_per_s: float
    bytes_per_s: float
    threads: int
    matmul_n: int
    copy_bytes: int
    runs: int
    matmul_ms: list[float]
    copy_ms: list[float]
    when: str = ""  # which probe of the run ("start", "end"; "best" for best_of)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> dict[str, Any]:
        """When it was probed and the two figures (without the samples)."""
        return {"when": self.when, "flops_per_s": self.flops_per_s,
                "bytes_per_s": self.bytes_per_s}


def best_of(probes: Sequence[Peaks]) -> Peaks:
    """The highest FLOP/s and the highest bandwidth among several probes of one run
    (each with its samples): a probe is only ever slowed by other work, never sped up."""
    fast = max(probes, key=lambda p: p.flops_per_s)
    wide = max(probes, key=lambda p: p.bytes_per_s)
    return replace(fast, bytes_per_s=wide.bytes_per_s, copy_ms=wide.copy_ms,
                   copy_bytes=wide.copy_bytes, when="best" if len(probes) > 1 else fast.when)


def _median_ms(fn: Callable[[], object], runs: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(max(1, runs)):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000.0)
    return samples


def _probe_matmul(n: int, runs: int, warmup: int) -> list[float]:
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
    c = torch.empty(n, n)
    return _median_ms(lambda: torch.mm(a, b, out=c), runs, warmup)


def _probe_copy(elements: int, runs: int, warmup: int) -> list[float]:
    src, dst = torch.ones(elements), torch.empty(elements)
    return _median_ms(lambda: dst.copy_(src), runs, warmup)


def measure_peaks(matmul_n: int = MATMUL_N, copy_mib: float = COPY_MIB,
                  runs: int = PROBE_RUNS, warmup: int = 2) -> Peaks:
    """Peak float32 FLOP/s and memory bandwidth of this machine now, with torch's
    current thread count. The warm-up calls also fault in the copy's pages, which
    would otherwise be timed as bandwidth; the probes' tensors are freed on return."""
    mm = _probe_matmul(matmul_n, runs, warmup)
    elements = int(copy_mib * 2**20) // 4
    cp = _probe_copy(elements, runs, warmup)
    copy_bytes = 2 * 4 * elements  # read src + write dst
    return Peaks(flops_per_s=2.0 * matmul_n**3 / (statistics.median(mm) / 1000.0),
                 bytes_per_s=copy_bytes / (statistics.median(cp) / 1000.0),
                 threads=torch.get_num_threads(), matmul_n=matmul_n, copy_bytes=copy_bytes,
                 runs=len(mm), matmul_ms=[round(x, 4) for x in mm],
                 copy_ms=[round(x, 4) for x in cp])


# -- the work of a layer --------------------------------------------------------------------


def expr_flops(e: ir.Expr) -> int:
    """Arithmetic operations one evaluation of ``e`` performs on data, as written.

    Counted: ``+ - * / % min max`` and ``-x`` computing a floating-point value, a
    comparison of floating-point operands, and each math builtin (``exp``, ``fmax``,
    ``rsqrt``...) as one operation. Not counted: index arithmetic (inside subscripts,
    or on integers such as ``D * H * W``), casts and reads. A ``c ? a : b`` counts its
    condition and its costlier branch (the work when that branch is taken). Repeated
    sub-expressions count each time, as the text writes them."""
    if isinstance(e, ir.Read):
        return 0  # subscripts are address arithmetic
    if isinstance(e, ir.Select):
        return expr_flops(e.cond) + max(expr_flops(e.a), expr_flops(e.b))
    own = 0
    if isinstance(e, ir.Binary) and e.op in _COUNTED_BINARY:
        own = int(e.a.type.is_float)  # a comparison's own type is bool: ask its operand
    elif isinstance(e, ir.Unary) and e.op == "-":
        own = int(e.type.is_float)
    elif isinstance(e, ir.Call):
        own = 1
    return own + sum(expr_flops(c) for c in ir.children(e))


def domain_points(stage: ir.Stage, sizes: Mapping[str, int]) -> int:
    """The number of points of a stage's (box) iteration domain for ``sizes``."""
    return math.prod(max(0, d.hi.evaluate(sizes) - d.lo.evaluate(sizes)) for d in stage.domain)


def stage_flops(stage: ir.Stage, sizes: Mapping[str, int]) -> int:
    """FLOPs of one stage: domain points x (right-hand side operations, plus one for
    the accumulation ``op=`` of a reduction). Initialising a reduction (``!``) writes
    the identity and is not counted."""
    per_point = expr_flops(stage.rhs) + (stage.op is not None)
    return domain_points(stage, sizes) * per_point


def count_flops(fn: ir.Function, sizes: Mapping[str, int]) -> int:
    """FLOPs of one call of ``fn``: the sum over its stages (``2 M N K`` for a matmul)."""
    return sum(stage_flops(s, sizes) for s in fn.stages)


def element_reads(fn: ir.Function, sizes: Mapping[str, int]) -> dict[str, int]:
    """Per tensor, the element reads of one call: each distinct read in a stage's
    right-hand side (subscripts included) times the stage's domain points."""
    reads: dict[str, int] = {}
    for stage in fn.stages:
        points = domain_points(stage, sizes)
        for r in {n for n in ir.walk(stage.rhs) if isinstance(n, ir.Read)}:
            reads[r.tensor] = reads.get(r.tensor, 0) + points
    return reads


def compulsory_traffic(fn: ir.Function, sizes: Mapping[str, int]) -> int:
    """Bytes a call must move at least: every input read once and every output written
    once (:func:`benchmarks.traffic.compulsory_bytes`), except that an input with fewer
    element reads than elements (a gather, or read for its size only) counts its reads."""
    reads = element_reads(fn, sizes)
    excess = 0
    for t in fn.inputs:
        elements = math.prod(s.evaluate(sizes) for s in t.shape)
        excess += max(0, elements - reads.get(t.name, 0)) * element_bytes(t.dtype)
    return compulsory_bytes(fn, sizes) - excess


@dataclass(frozen=True)
class Roofline:
    """The work of one kernel at one size and its bound on this machine.

    ``flops_from`` / ``bytes_from`` say where the counts come from ("catalogue" or
    "ir"); ``bound_ms`` is None without measured peaks (or for a GPU row, whose bound
    is not the CPU's), ``error`` says why the work could not be counted."""

    flops: int | None = None
    bytes: int | None = None
    flops_from: str = ""
    bytes_from: str = ""
    bound_ms: float | None = None
    limit: str = ""  # "compute" or "memory": which term of the max is larger
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _declared(kernel: Any, attr: str, sizes: Mapping[str, int]) -> int | None:
    value = getattr(kernel, attr, None)
    if value is None:
        return None
    return int(value(dict(sizes)) if callable(value) else value)


def kernel_work(kernel: Any, sizes: Mapping[str, int]) -> Roofline:
    """FLOPs and compulsory bytes of one call of a catalogue kernel at ``sizes`` (no
    bound yet): the catalogue's own counts when it declares them, else the IR's."""
    from tc.lang.frontend import check_text

    flops = _declared(kernel, "flops", sizes)
    nbytes = _declared(kernel, "compulsory_bytes", sizes)
    flops_from = "catalogue" if flops is not None else "ir"
    bytes_from = "catalogue" if nbytes is not None else "ir"
    if flops is None or nbytes is None:
        fn = check_text(kernel.tc).functions[kernel.entry]
        flops = count_flops(fn, sizes) if flops is None else flops
        nbytes = compulsory_traffic(fn, sizes) if nbytes is None else nbytes
    return Roofline(flops, nbytes, flops_from, bytes_from)


def bound_s(flops: float, nbytes: float, peaks: Peaks) -> tuple[float, str]:
    """``max(flops / peak FLOP/s, bytes / bandwidth)`` in seconds, and which term wins."""
    compute, memory = flops / peaks.flops_per_s, nbytes / peaks.bytes_per_s
    return max(compute, memory), "compute" if compute >= memory else "memory"


def with_bound(work: Roofline, peaks: Peaks | None) -> Roofline:
    """``work`` with its bound on the machine of ``peaks`` (unchanged without peaks)."""
    if peaks is None or work.flops is None or work.bytes is None:
        return work
    seconds, limit = bound_s(work.flops, work.bytes, peaks)
    return Roofline(work.flops, work.bytes, work.flops_from, work.bytes_from,
                    seconds * 1000.0, limit, work.note)


def safe_kernel_work(kernel: Any, sizes: Mapping[str, int]) -> Roofline:
    """:func:`kernel_work`, with a failure recorded in the result (a kernel whose work
    cannot be counted still gets its row, without a bound)."""
    try:
        return kernel_work(kernel, sizes)
    except Exception as e:
        first = (str(e).strip().splitlines() or [""])[0]
        log.warning("%s: cannot count its work: %s: %s", kernel.name, type(e).__name__, first)
        return Roofline(note=f"work not counted: {type(e).__name__}: {first}"[:300])


__all__ = ["COPY_MIB", "MATMUL_N", "Peaks", "Roofline", "best_of", "bound_s", "compulsory_traffic",
           "count_flops", "domain_points", "element_reads", "expr_flops", "kernel_work",
           "measure_peaks", "safe_kernel_work", "stage_flops", "with_bound"]
