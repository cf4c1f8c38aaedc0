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

The traffic is an estimate made from the kernel AST (``codegen.kernel``), without
interpreting instances. No cache is modelled: every global access that the kernel
executes counts, once per executing thread and iteration.

* An executed ``Store`` moves the bytes of the distinct global ``Read`` nodes of its
  value and indices (equal reads in one statement count once, as a compiler loads
  them once; both sides of a ``?:`` count) and the bytes it writes; a ``Store`` with
  ``op`` (``+=``, ``max=``...) also reads its target. ``Local`` initialisers and
  ``Assign`` values count their global reads. Shared and private buffers
  (``Buffer.space != "global"``) count zero, so a copy between global and shared
  memory counts its global side only.
* A loop multiplies its body's bytes by its trip count, computed from its bounds with
  the enclosing variables bound. A loop mapped to hardware ids (``mapping`` set,
  wrap-around) counts its whole range once across the launch, not once per thread.
  When the body's bytes depend on the loop variable (``min(31, M - 32 * c0 - 1)``
  bounds, an ``if (c2 == 0)`` initialisation) the body is summed exactly up to 5
  iterations, and otherwise interpolated linearly between the first two, middle and
  last two iterations: exact for constant or linear bodies and for full tiles with a
  partial last one.
* Code outside the loops mapped to an axis runs on every id of that axis; where a
  bound or a condition reads an id (``if (thread.x == 0)`` guards, strided per-thread
  loops), the bytes are summed over the ids in the same way. Integer locals (the
  global coordinates of a shared-memory copy) are evaluated for the conditions that
  follow them; a condition that cannot be evaluated (data) counts as taken.

The compulsory minimum reads every input once and writes every output once
(temporaries excluded); a gather (``embedding_sum``) can move less than it.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

from tqdm import tqdm

from codegen import host as host_mod
from codegen import kernel as k
from codegen.compiler import compile_program, contiguous_strides
from codegen.nvrtc import compile_cuda
from tc import catalogue
from tc.errors import TcError
from tc.ir import nodes as ir
from tc.ir.types import ScalarType
from tc.lang.frontend import check_text
from tc.options import MappingOptions

log = logging.getLogger(__name__)

EXACT_TRIPS = 5  # a sum over a variable body is exact up to this many terms
MAX_SCAN = 1 << 20  # iterations scanned for a loop condition of an unknown form
Bytes = tuple[float, float]  # (read, written)
_ZERO: Bytes = (0, 0)
_BINARY: dict[str, Callable[[int, int], int | bool]] = {
    "/": lambda a, b: a // b if b else 0, "%": lambda a, b: a % b if b else 0,  # isl floors
    "+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b, "min": min,
    "max": max, "<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b, "==": lambda a, b: a == b, "!=": lambda a, b: a != b,
    "&&": lambda a, b: bool(a and b), "||": lambda a, b: bool(a or b),
}


def element_bytes(dtype: ScalarType) -> int:
    """Bytes of one element in memory (bool is stored as a byte)."""
    return max(1, dtype.bits // 8)


class _Unknown(Exception):
    """An expression whose value the estimator cannot compute (a read, a call...)."""


def _add(a: Bytes, b: Bytes) -> Bytes:
    return (a[0] + b[0], a[1] + b[1])


def _scale(a: Bytes, f: float) -> Bytes:
    return (a[0] * f, a[1] * f)


def _variables(e: ir.Expr) -> set[str]:
    """The loop variables, locals and hardware ids (``"thread.x"``) that ``e`` reads."""
    return {n.name if isinstance(n, ir.Var) else f"{n.kind}.{n.axis}" for n in ir.walk(e)
            if (isinstance(n, ir.Var) and n.kind in ("loop", "local"))
            or (isinstance(n, k.HwId) and n.kind in ("block", "thread"))}


def _children(s: k.Stmt) -> tuple[k.Stmt, ...]:
    if isinstance(s, k.Block):
        return s.body
    if isinstance(s, k.If):
        return (s.then,) if s.otherwise is None else (s.then, s.otherwise)
    return (s.body,) if isinstance(s, k.For | k.Scope) else ()


def _conjuncts(e: ir.Expr) -> list[ir.Expr]:
    if isinstance(e, ir.Binary) and e.op == "&&":
        return _conjuncts(e.a) + _conjuncts(e.b)
    return [e]


def sum_samples(f: Callable[[int], Bytes], n: int) -> Bytes:
    """``f(0) + ... + f(n - 1)``: exact up to EXACT_TRIPS terms, else interpolated
    linearly between the values of ``f`` at 0, 1, n // 2, n - 2 and n - 1."""
    total: Bytes = _ZERO
    if n <= EXACT_TRIPS:
        for i in range(n):
            total = _add(total, f(i))
        return total
    points = sorted({0, 1, n // 2, n - 2, n - 1})
    values = [f(i) for i in points]
    total = values[-1]
    for j in range(len(points) - 1):
        (p, fa), (q, fb) = (points[j], values[j]), (points[j + 1], values[j + 1])
        m = q - p  # the terms p .. q-1, on the line from (p, fa) to (q, fb)
        total = _add(total, (m * fa[0] + (fb[0] - fa[0]) * (m - 1) / 2,
                             m * fa[1] + (fb[1] - fa[1]) * (m - 1) / 2))
    return total


class TrafficEstimator:
    """Estimated global bytes (read, written) of one launch of a kernel for ``sizes``.

    The environment of the walk binds loop variables and, once summed over, the
    hardware ids (``"thread.x"``); ``replicated`` holds the hardware axes (of more than
    one id) whose every id runs the statement at hand, each id counting once."""

    def __init__(self, kernel: k.Kernel, sizes: Mapping[str, int]) -> None:
        self.kernel = kernel
        self.sizes = {f"s_{n}": v for n, v in sizes.items()}
        self.elem = {b.name: element_bytes(b.dtype) if b.space == "global" else 0
                     for b in kernel.buffers}
        self.hw = {f"block.{a}": g for a, g in zip(k.AXES, kernel.grid, strict=True)}
        self.hw |= {f"thread.{a}": b for a, b in zip(k.AXES, kernel.block, strict=True)}
        self.int_locals = {s.name for s in k.walk_stmts(kernel.body)
                           if isinstance(s, k.Local) and s.dtype.is_int}
        self._free: dict[int, frozenset[str]] = {}
        self._own: dict[int, frozenset[str]] = {}
        self._static: dict[int, Bytes] = {}
        self._memo: dict[tuple, Bytes] = {}

    # -- expressions -------------------------------------------------------------------------
    def value(self, e: ir.Expr, env: Mapping[str, int]) -> int:
        """An integer or boolean index expression; unbound hardware ids are 0."""
        if isinstance(e, ir.IntImm):
            return e.value
        if isinstance(e, ir.Var):
            table = self.sizes if e.kind == "size" else env  # loop variables, int locals
            if e.name not in table:
                raise _Unknown(e.name)
            return table[e.name]
        if isinstance(e, k.HwId):  # a count (gridDim, blockDim) or an id
            count = {"grid": "block", "block_dim": "thread"}.get(e.kind)
            return self.hw[f"{count}.{e.axis}"] if count else env.get(f"{e.kind}.{e.axis}", 0)
        if isinstance(e, ir.Cast):
            return self.value(e.a, env)
        if isinstance(e, ir.Unary):
            v = self.value(e.a, env)
            return -v if e.op == "-" else int(not v)
        if isinstance(e, ir.Select):
            return self.value(e.a if self.value(e.cond, env) else e.b, env)
        if isinstance(e, ir.Binary) and e.op in _BINARY:
            return int(_BINARY[e.op](self.value(e.a, env), self.value(e.b, env)))
        raise _Unknown(type(e).__name__)

    def trips(self, s: k.For, env: Mapping[str, int]) -> tuple[int, int]:
        """The first value of the loop variable and the number of iterations."""
        first = self.value(s.init, env)
        upper = self._upper(s.cond, s.var, env) if s.step > 0 else None
        if upper is not None:
            return first, max(0, (upper - first) // s.step + 1)
        n = 0  # a condition of another form: scan it (up to MAX_SCAN iterations)
        while n < MAX_SCAN and self.value(s.cond, {**env, s.var: first + n * s.step}):
            n += 1
        return first, n

    def _upper(self, cond: ir.Expr, var: str, env: Mapping[str, int]) -> int | None:
        """The last value allowed by ``var <= e``, ``var < e`` or a conjunction of them."""
        bounds = []
        for c in _conjuncts(cond):
            if not isinstance(c, ir.Binary):
                return None
            flipped = {">=": "<=", ">": "<"}.get(c.op)
            lhs, op, rhs = (c.b, flipped, c.a) if flipped else (c.a, c.op, c.b)
            if op not in ("<=", "<") or not (isinstance(lhs, ir.Var) and lhs.name == var):
                return None
            bounds.append(self.value(rhs, env) - (op == "<"))
        return min(bounds)

    # -- statements --------------------------------------------------------------------------
    def _int_local(self, s: k.Stmt) -> bool:
        return isinstance(s, k.Local | k.Assign) and s.name in self.int_locals

    def _bind(self, s: k.Local | k.Assign, env: dict[str, int]) -> dict[str, int]:
        try:
            value = s.init if isinstance(s, k.Local) else s.value
            if value is None:
                raise _Unknown(s.name)
            return {**env, s.name: self.value(value, env)}
        except _Unknown:
            return {n: v for n, v in env.items() if n != s.name}

    def own(self, s: k.For | k.If) -> frozenset[str]:
        """The variables and ids a loop's bounds or a condition read."""
        if id(s) not in self._own:
            exprs = (s.init, s.cond) if isinstance(s, k.For) else (s.cond,)
            self._own[id(s)] = frozenset().union(*map(_variables, exprs))
        return self._own[id(s)]

    def free(self, s: k.Stmt) -> frozenset[str]:
        """The variables and ids the bytes of ``s`` depend on (bounds and conditions)."""
        if id(s) not in self._free:
            inner: frozenset[str] = frozenset()
            defined: set[str] = set()
            for c in _children(s):  # in a block, an int local stands for its value
                if self._int_local(c):
                    value = c.init if isinstance(c, k.Local) else c.value
                    inner |= (_variables(value) if value else set()) - defined
                    defined.add(c.name)
                else:
                    inner |= self.free(c) - defined
            if isinstance(s, k.For):
                inner = self.own(s) | (inner - {s.var})
            self._free[id(s)] = self.own(s) | inner if isinstance(s, k.If) else inner
        return self._free[id(s)]

    def static_bytes(self, s: k.Store | k.Local | k.Assign) -> Bytes:
        """The bytes one execution of a statement moves."""
        if id(s) not in self._static:
            reads: set[ir.Read] = set()
            if isinstance(s, k.Store) and s.op is not None:
                reads.add(ir.Read(s.buffer, s.indices, type=s.value.type))
            exprs = ((s.value, *s.indices) if isinstance(s, k.Store) else
                     (s.value,) if isinstance(s, k.Assign) else (s.init,) if s.init else ())
            reads |= {n for e in exprs for n in ir.walk(e) if isinstance(n, ir.Read)}
            written = self.elem.get(s.buffer, 0) if isinstance(s, k.Store) else 0
            self._static[id(s)] = (sum(self.elem.get(r.tensor, 0) for r in reads), written)
        return self._static[id(s)]

    def count(self, s: k.Stmt, env: dict[str, int], replicated: frozenset[str]) -> Bytes:
        """The bytes ``s`` moves across the launch for the bindings of ``env``."""
        if isinstance(s, k.Store | k.Local | k.Assign):
            copies = math.prod(self.hw[a] for a in replicated)
            return _scale(self.static_bytes(s), copies)
        if isinstance(s, k.Block):
            total: Bytes = _ZERO
            for c in s.body:
                total = _add(total, self.count(c, env, replicated))
                if self._int_local(c):  # later statements see its value (if computable)
                    env = self._bind(c, env)
            return total
        if isinstance(s, k.Scope):
            return self.count(s.body, env, replicated)
        if not isinstance(s, k.For | k.If):
            return _ZERO  # Barrier, Comment
        ids = sorted(self.own(s) & replicated)
        if ids:  # bounds or a condition depending on an id: sum over that id's values
            axis, rest = ids[0], replicated - {ids[0]}
            return sum_samples(lambda h: self.count(s, {**env, axis: h}, rest), self.hw[axis])
        if isinstance(s, k.If):
            try:
                taken = self.value(s.cond, env)
            except _Unknown:  # a data-dependent condition: count the then branch
                taken = True
            branch = s.then if taken else s.otherwise
            return self.count(branch, env, replicated) if branch is not None else _ZERO
        key = (id(s), replicated, tuple(env.get(v) for v in sorted(self.free(s))))
        if key not in self._memo:
            self._memo[key] = self._loop(s, env, replicated)
        return self._memo[key]

    def _loop(self, s: k.For, env: dict[str, int], replicated: frozenset[str]) -> Bytes:
        try:
            first, n = self.trips(s, env)
        except _Unknown as e:  # bounds read data: count one iteration
            log.warning("%s: loop %s has unknown bounds (%s)", self.kernel.name, s.var, e)
            first, n = 0, 1
        if s.mapping is not None:  # the whole range runs once across the axis's ids
            replicated = replicated - {s.mapping}

        def body(i: int) -> Bytes:
            return self.count(s.body, {**env, s.var: first + i * s.step}, replicated)

        if n > 0 and s.var not in self.free(s.body):
            return _scale(body(0), n)
        return sum_samples(body, n)


def estimate_traffic(kernel: k.Kernel, sizes: Mapping[str, int]) -> tuple[int, int]:
    """Estimated global bytes (read, written) of one launch of ``kernel``."""
    est = TrafficEstimator(kernel, sizes)
    read, written = est.count(kernel.body, {}, frozenset(a for a, n in est.hw.items() if n > 1))
    return round(read), round(written)


def compulsory_bytes(fn: ir.Function, sizes: Mapping[str, int]) -> int:
    """Every input read once and every output written once (no temporaries)."""
    return sum(math.prod(s.evaluate(sizes) for s in t.shape) * element_bytes(t.dtype)
               for t in fn.inputs + fn.outputs)


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
