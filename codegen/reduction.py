"""Block-parallel reductions: the template ``matchLibraryCalls`` uses for reduction stages.

The polyhedral mapping gives a reduction's left-hand elements to threads and runs
every reduction loop sequentially inside one thread, which leaves most of a GPU idle
when the output is small (a few rows of 65,536 elements each, a scalar sum). A stage
that :func:`plan_reduction` accepts is compiled here instead, in one or two kernels:

* kernel 1 walks the rows (the left-hand elements, flattened) with its blocks along
  x, and cuts each row's reduction range into ``splits`` chunks along grid y. Each of
  the ``threads`` threads of a block folds a strided share of its chunk into a private
  partial, starting from the operator's identity; the block then combines the
  partials with a tree in shared memory (a uniform loop of ``log2(threads)`` levels,
  one barrier per level, never unrolled: PoCL's compile time grows with the number of
  barriers). Thread 0 writes the row's result into the output, or with several
  splits into the scratch buffer ``partial[row][split]``;
* kernel 2 (only with several splits) combines each row's partials, again with a tree
  in one block, and writes the output.

The combination order depends only on the plan (sizes and options), never on timing:
no atomics, so the same options give bit-identical results.

float16 and bfloat16 accumulate in float32 (private partials, shared tree and scratch)
and are rounded once, on the final store: more accurate than rounding after every
step, and what the interpreter's numpy reduction does too (bfloat16 is reduced in
float32 there and float16 sums are pairwise in float). Other types accumulate in
their own type, so integers wrap exactly as the interpreter's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from codegen import kernel as k
from codegen.lower import _Subst, buffer_name, size_name
from tc.ir import nodes as ir
from tc.ir.bounds import needs_runtime_check
from tc.ir.types import INDEX_TYPE, ScalarType
from tc.options import MappingOptions

__all__ = [
    "MIN_REDUCTION",
    "ReductionPlan",
    "describe",
    "lower_reduction",
    "plan_reduction",
    "scratch_buffer",
]

#: Smallest reduction extent (elements per output element) worth a block per row.
MIN_REDUCTION = 32
#: Threads in flight that fill a large GPU (~100 SMs x 2048 threads, with slack).
TARGET_THREADS = 160 * 1024
#: Splitting a row never leaves a thread fewer elements than this per split: below it,
#: the second kernel and the scratch traffic cost more than the parallelism gains.
MIN_PER_THREAD = 4
#: From this many outputs on, one thread per output (the pipeline, reducing sequentially)
#: fills the device by itself, and a block per output would only add tree overhead.
MAX_ROWS = TARGET_THREADS
MAX_GRID_X = 2**31 - 1
MAX_GRID_Y = 65535
_INT32_MAX = 2**31 - 1
_I = INDEX_TYPE
_HALVES = (ScalarType.FLOAT16, ScalarType.BFLOAT16)


@dataclass(frozen=True)
class ReductionPlan:
    """How one reduction stage is computed: extents, block size and splits.

    ``row_dims`` and ``red_dims`` hold ``(name, lo, extent)`` of the left-hand and
    the reduction indices, with concrete bounds.
    """

    index: int  # the stage's position in fn.stages
    stage: ir.Stage
    dtype: ScalarType  # the written tensor's type
    acc: ScalarType  # the type partials accumulate in
    row_dims: tuple[tuple[str, int, int], ...]
    red_dims: tuple[tuple[str, int, int], ...]
    threads: int  # per block of kernel 1, a power of two
    splits: int  # blocks per row along grid y (kernel 2 runs when > 1)
    chunk: int  # reduction elements per split

    @property
    def rows(self) -> int:
        return math.prod(e for _, _, e in self.row_dims)

    @property
    def extent(self) -> int:
        return math.prod(e for _, _, e in self.red_dims)

    @property
    def combine_threads(self) -> int:
        """Threads per block of kernel 2: enough for one partial each, at most ``threads``."""
        return min(self.threads, _next_pow2(self.splits))

    @property
    def scratch_name(self) -> str:
        return f"tc_partial{self.index}"


def _next_pow2(n: int) -> int:
    return 1 << max(0, n - 1).bit_length()


def _floor_pow2(n: int) -> int:
    return 1 << (max(1, n).bit_length() - 1)


def plan_reduction(fn: ir.Function, index: int, sizes: Mapping[str, int],
                   options: MappingOptions) -> ReductionPlan | None:
    """The plan of stage ``index`` of ``fn`` for concrete ``sizes``, or None (the
    polyhedral pipeline then compiles the stage) when it is no reduction, reads the
    tensor it writes, its domain is not a box of constant bounds, an extent is empty
    or too large for int32 indexing, the reduction is shorter than
    :data:`MIN_REDUCTION`, or there are :data:`MAX_ROWS` outputs or more."""
    stage = fn.stages[index]
    if stage.op not in ir.REDUCTION_OPS or len(stage.domain) <= len(stage.lhs):
        return None
    if any(isinstance(n, ir.Read) and n.tensor == stage.tensor for n in ir.walk(stage.rhs)):
        return None  # the front end rejects it; a block could read what another wrote
    known = set(fn.size_names) & set(sizes)
    dims = []
    for d in stage.domain:
        # Bounds naming anything but a size (another index) make a non-box domain.
        if not (d.lo.symbols() | d.hi.symbols()) <= known:
            return None
        lo, hi = d.lo.evaluate(sizes), d.hi.evaluate(sizes)
        if hi <= lo:
            return None  # empty: the pipeline keeps the interpreter's semantics
        dims.append((d.name, lo, hi - lo))
    row_dims, red_dims = tuple(dims[: len(stage.lhs)]), tuple(dims[len(stage.lhs):])
    rows = math.prod(e for _, _, e in row_dims)
    extent = math.prod(e for _, _, e in red_dims)
    if extent < MIN_REDUCTION or rows >= MAX_ROWS:
        return None
    if extent + 1024 > _INT32_MAX:
        return None  # flat indices are int32, and a thread steps once past the end
    threads = min(1024, max(32, _floor_pow2(math.prod(options.threads))))
    threads = min(threads, _next_pow2(extent))
    splits, chunk = 1, extent
    if rows * threads < TARGET_THREADS:
        want = -(-TARGET_THREADS // (rows * threads))
        splits = max(1, min(want, extent // (MIN_PER_THREAD * threads), MAX_GRID_Y))
        if splits > 1:
            # Chunks of whole rounds of the block, so every thread has the same share.
            chunk = -(-extent // (splits * threads)) * threads
            splits = -(-extent // chunk)
        if splits == 1 or rows * splits > _INT32_MAX:
            splits, chunk = 1, extent
    dtype = fn.tensor(stage.tensor).dtype
    acc = ScalarType.FLOAT32 if dtype in _HALVES else dtype
    return ReductionPlan(index, stage, dtype, acc, row_dims, red_dims, threads, splits, chunk)


def scratch_buffer(plan: ReductionPlan) -> k.Buffer | None:
    """The global ``partial[row][split]`` buffer of a split reduction (None without splits)."""
    if plan.splits == 1:
        return None
    return k.Buffer(plan.scratch_name, plan.acc, (_int(plan.rows), _int(plan.splits)),
                    (_int(plan.splits), _int(1)))


def describe(plan: ReductionPlan) -> str:
    """One line saying how a stage is reduced (for ``explain`` and the logs)."""
    shape = " x ".join(str(e) for _, _, e in plan.row_dims) or "scalar"
    text = (f"stage {plan.index} ({plan.stage.tensor} {plan.stage.op}=): block reduction of "
            f"{plan.extent} elements into {shape}, {plan.threads} threads per block")
    if plan.splits > 1:
        text += (f", {plan.splits} splits of {plan.chunk} combined by "
                 f"{plan.combine_threads} threads")
    return text


# -- kernel AST helpers ------------------------------------------------------------------------


def _int(v: int) -> ir.Expr:
    return ir.IntImm(v, type=_I)


def _var(name: str, dtype: ScalarType = _I) -> ir.Var:
    return ir.Var(name, "local", type=dtype)


def _bin(op: str, a: ir.Expr, b: ir.Expr) -> ir.Expr:
    out = ScalarType.BOOL if op in ir.CMP_OPS or op in ir.LOGIC_OPS else a.type
    return ir.Binary(op, a, b, type=out)


def _identity(op: str, dtype: ScalarType) -> ir.Expr:
    v = ir.identity(op, dtype)
    if dtype.is_float:
        return ir.FloatImm(float(v), type=dtype)
    return ir.IntImm(int(v), type=dtype)


def _decode(flat: ir.Expr, dims: Sequence[tuple[str, int, int]], prefix: str
            ) -> list[k.Local]:
    """Locals ``<prefix><name>`` holding the indices of a row-major flat position."""
    out = []
    stride = math.prod(e for _, _, e in dims)
    for pos, (name, lo, extent) in enumerate(dims):
        stride //= extent
        e = flat if stride == 1 else _bin("/", flat, _int(stride))
        if math.prod(x for _, _, x in dims[:pos]) > 1:
            e = _bin("%", e, _int(extent))  # the outermost (non-unit) index needs none
        if lo:
            e = _bin("+", e, _int(lo))
        out.append(k.Local(f"{prefix}{name}", _I, e))
    return out


class _Builder:
    """Builds the kernels of one plan (see the module docstring)."""

    def __init__(self, fn: ir.Function, plan: ReductionPlan, buffers: tuple[k.Buffer, ...],
                 shapes: Mapping[str, tuple[int, ...]], checks: list[ir.Read],
                 readonly_cache: bool) -> None:
        self.fn = fn
        self.readonly_cache = readonly_cache
        self.plan = plan
        self.buffers = buffers
        self.shapes = shapes
        self.checks = checks
        self.tid = k.hw("thread", "x")
        self.row = ir.Var("tc_row", "loop", type=_I)
        self.acc = _var("tc_acc", plan.acc)

    def combine(self, a: ir.Expr, b: ir.Expr) -> ir.Expr:
        return _bin(self.plan.stage.op, a, b)

    def row_loop(self, body: k.Stmt) -> k.Stmt:
        """Rows over the blocks along x, wrapping around when the grid is smaller."""
        cond = _bin("<", self.row, _int(self.plan.rows))
        return k.For(self.row.name, _int(0), cond, body, mapping="block.x")

    def lhs_env(self) -> tuple[list[k.Local], dict[str, ir.Expr]]:
        locs = _decode(self.row, self.plan.row_dims, "i_")
        return locs, {name: _var(f"i_{name}") for name, _, _ in self.plan.row_dims}

    def element(self, env: dict[str, ir.Expr], flat: ir.Expr) -> k.Stmt:
        """``acc = acc op rhs`` at flat reduction position ``flat``, the right-hand side
        instantiated as the pipeline does (lets, casts, in-kernel bounds checks)."""
        stage = self.plan.stage
        locs = _decode(flat, self.plan.red_dims, "i_")
        env = env | {name: _var(f"i_{name}") for name, _, _ in self.plan.red_dims}
        body, lets = stage.rhs, []
        while isinstance(body, ir.Let):
            lets.append(body)
            body = body.body
        names = {let.name: f"l_{let.name}" for let in lets}
        sub = _Subst(env, names, needs_runtime_check(stage), self.shapes, self.checks)
        locs += [k.Local(names[let.name], let.value.type, sub.mutate(let.value))
                 for let in lets]
        value = sub.mutate(body)
        if value.type != self.plan.acc:
            value = ir.Cast(value, type=self.plan.acc)
        return k.Scope(k.seq(*locs, k.Assign(self.acc.name, self.combine(self.acc, value))))

    def tree(self, threads: int) -> list[k.Stmt]:
        """The block's partials combined into ``tc_sh[0]``; every barrier is in
        control flow uniform across the block (the level loop has constant bounds)."""
        sh = "tc_sh"
        out: list[k.Stmt] = [k.Store(sh, (self.tid,), self.acc), k.Barrier()]
        if threads > 1:
            step = _var("tc_s")
            level = ir.Var("tc_level", "loop", type=_I)
            pair = ir.Read(sh, (_bin("+", self.tid, step),), type=self.plan.acc)
            mine = ir.Read(sh, (self.tid,), type=self.plan.acc)
            body = k.seq(
                k.If(_bin("<", self.tid, step), k.Store(sh, (self.tid,), self.combine(mine, pair))),
                k.Barrier(),
                k.Assign(step.name, _bin("/", step, _int(2))),
            )
            out += [k.Local(step.name, _I, _int(threads // 2)),
                    k.For(level.name, _int(0), _bin("<", level, _int(threads.bit_length() - 1)),
                          body)]
        return out

    def result(self, env: dict[str, ir.Expr]) -> k.Stmt:
        """Thread 0 writes the block's result into the output."""
        stage = self.plan.stage
        value: ir.Expr = ir.Read("tc_sh", (_int(0),), type=self.plan.acc)
        if self.plan.acc != self.plan.dtype:
            value = ir.Cast(value, type=self.plan.dtype)
        indices = tuple(env[n] for n in stage.lhs)
        target = buffer_name(stage.tensor)
        # The ``!`` form: identity op total == total, so the result is stored as is.
        store = k.Store(target, indices, value, op=None if stage.init else stage.op,
                        origin=f"S{self.plan.index}")
        return k.If(_bin("==", self.tid, _int(0)), store)

    def kernel(self, name: str, body: k.Stmt, grid: tuple[int, int, int], threads: int,
               part: int) -> k.Kernel:
        shared = k.Buffer("tc_sh", self.plan.acc, (_int(threads),), (_int(1),), space="shared")
        meta = {"template": "reduction", "stage": self.plan.index, "part": part,
                "readonly_cache": self.readonly_cache}
        return k.Kernel(name, self.buffers + (shared,),
                        tuple(size_name(s) for s in self.fn.size_names), body, grid,
                        (threads, 1, 1), meta)

    def partials(self, name: str) -> k.Kernel:
        """Kernel 1: per (row, split) block, a strided private fold then the tree."""
        plan = self.plan
        locs, env = self.lhs_env()
        j = ir.Var("tc_j", "loop", type=_I)
        if plan.splits > 1:
            # j counts from 0 within the split, so thread t takes elements t, t + T, ...
            # (a mapped loop starting elsewhere pays a modulo to align its threads).
            lo = _bin("*", k.hw("block", "y"), _int(plan.chunk))
            count = _bin("min", _int(plan.chunk), _bin("-", _int(plan.extent), lo))
            flat = _bin("+", lo, j)
            value = ir.Read("tc_sh", (_int(0),), type=plan.acc)
            out: k.Stmt = k.If(_bin("==", self.tid, _int(0)),
                               k.Store(plan.scratch_name, (self.row, k.hw("block", "y")), value))
        else:
            count, flat = _int(plan.extent), j
            out = self.result(env)
        fold = k.For(j.name, _int(0), _bin("<", j, count), self.element(env, flat),
                     mapping="thread.x")
        body = k.seq(*locs, k.Local(self.acc.name, plan.acc, _identity(plan.stage.op, plan.acc)),
                     fold, *self.tree(plan.threads), out)
        grid = (min(plan.rows, MAX_GRID_X), plan.splits, 1)
        return self.kernel(name, self.row_loop(body), grid, plan.threads, 1)

    def final(self, name: str) -> k.Kernel:
        """Kernel 2: one block per row folds the row's partials in a fixed order."""
        plan = self.plan
        threads = plan.combine_threads
        locs, env = self.lhs_env()
        flat = ir.Var("tc_j", "loop", type=_I)
        part = ir.Read(plan.scratch_name, (self.row, flat), type=plan.acc)
        fold = k.For(flat.name, _int(0), _bin("<", flat, _int(plan.splits)),
                     k.Assign(self.acc.name, self.combine(self.acc, part)), mapping="thread.x")
        body = k.seq(*locs, k.Local(self.acc.name, plan.acc, _identity(plan.stage.op, plan.acc)),
                     fold, *self.tree(threads), self.result(env))
        return self.kernel(name, self.row_loop(body), (min(plan.rows, MAX_GRID_X), 1, 1),
                           threads, 2)


def lower_reduction(fn: ir.Function, plan: ReductionPlan, names: Sequence[str],
                    buffers: tuple[k.Buffer, ...], shapes: Mapping[str, tuple[int, ...]],
                    checks: list[ir.Read], readonly_cache: bool = False) -> list[k.Kernel]:
    """The kernels of ``plan`` (one, or two with splits), named from ``names``.

    ``buffers`` are the program's global buffers (every kernel takes them all, scratch
    included); ``shapes`` the tensors' concrete shapes; guarded reads are appended to
    the program-wide ``checks``, whose positions the kernels report on failure;
    ``readonly_cache`` reads the inputs through the read-only cache (CUDA)."""
    b = _Builder(fn, plan, buffers, shapes, checks, readonly_cache)
    out = [b.partials(names[0])]
    if plan.splits > 1:
        out.append(b.final(names[1]))
    return out
