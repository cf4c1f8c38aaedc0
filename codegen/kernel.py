"""The kernel AST: what the GPU mapping produces and the CUDA / OpenCL printers print.

Scalar computations reuse the IR's expression nodes (``tc.ir.nodes``): loop
variables are ``Var(kind="loop")``, kernel size parameters ``Var(kind="size")``,
locals ``Var(kind="local")``, and the hardware ids are :class:`HwId` nodes. A
``Read`` of a buffer is printed with that buffer's real strides, so a strided view
is never read as dense. Statements are frozen dataclasses too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tc.ir import nodes as ir
from tc.ir.types import INDEX_TYPE, ScalarType

AXES = ("x", "y", "z")


@dataclass(frozen=True)
class HwId(ir.Expr):
    """A hardware index: ``kind`` is "block", "thread", "grid" (blocks per grid) or
    "block_dim" (threads per block); ``axis`` is "x", "y" or "z"."""

    kind: str
    axis: str


def hw(kind: str, axis: str) -> HwId:
    return HwId(kind, axis, type=INDEX_TYPE)


@dataclass(frozen=True)
class Buffer:
    """A tensor as the kernel sees it.

    ``space`` is "global" (a kernel argument), "shared" (block-local), "private"
    (a per-thread array, declared with the kernel) or "register" (a per-thread
    array declared where its :class:`Local` is). ``strides`` are in elements; global
    buffers use the real strides of the tensor passed in.
    """

    name: str
    dtype: ScalarType
    shape: tuple[ir.Expr, ...]
    strides: tuple[ir.Expr, ...]
    space: str = "global"
    read_only: bool = False


# -- statements -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stmt:
    pass


@dataclass(frozen=True)
class Block(Stmt):
    body: tuple[Stmt, ...]


@dataclass(frozen=True)
class For(Stmt):
    """``for (int var = init; cond; var += step)``.

    ``mapping`` "block.x" / "thread.y" / ... distributes the iterations over the
    hardware ids with wrap-around: id ``h`` starts at ``init + h*step`` and adds
    ``count*step``, so every iteration runs exactly once whatever the grid or block
    size. ``"omp"`` (the CPU mapping) distributes the iterations over the threads of
    an OpenMP team. None is a sequential loop (isl's own loops, mapped through
    filters on the hardware ids, are sequential loops whose bounds mention the ids).

    ``vector`` (the CPU mapping): ``"lanes"``, the iterations carry no dependence, so
    the loop may run in SIMD lanes (``#pragma omp simd``); ``"reduction"``, they carry
    only reductions, so the loop may run in lanes with partial accumulators when its
    updates are scalar ``acc = acc op v`` (``#pragma omp simd reduction``).
    """

    var: str
    init: ir.Expr
    cond: ir.Expr
    body: Stmt
    step: int = 1
    mapping: str | None = None
    unroll: bool = False
    vector: str | None = None


@dataclass(frozen=True)
class If(Stmt):
    cond: ir.Expr
    then: Stmt
    otherwise: Stmt | None = None


@dataclass(frozen=True)
class Store(Stmt):
    """``buffer[indices] = value`` or, with ``op``, ``buffer[indices] op= value``.

    ``origin`` names the scop statement it comes from (for barrier placement)."""

    buffer: str
    indices: tuple[ir.Expr, ...]
    value: ir.Expr
    op: str | None = None
    origin: str = field(default="", compare=False)


@dataclass(frozen=True)
class Local(Stmt):
    """A per-thread scalar: ``type name = init;``; with ``size``, an uninitialised
    array ``type name[size];`` (the buffer of space "register" of that name)."""

    name: str
    dtype: ScalarType
    init: ir.Expr | None = None
    size: int = 0


@dataclass(frozen=True)
class Assign(Stmt):
    """``name = value`` for a :class:`Local`."""

    name: str
    value: ir.Expr


@dataclass(frozen=True)
class Scope(Stmt):
    """A braced block, giving its locals their own scope."""

    body: Stmt


@dataclass(frozen=True)
class Barrier(Stmt):
    """A block-wide barrier; only ever placed in control flow uniform across the block."""


@dataclass(frozen=True)
class Comment(Stmt):
    text: str


@dataclass(frozen=True)
class Kernel:
    """One GPU kernel: its arguments, its body and its launch configuration."""

    name: str
    buffers: tuple[Buffer, ...]  # global buffers first (the arguments), then shared/private
    sizes: tuple[str, ...]  # int parameters (size symbols), after the buffers
    body: Stmt
    grid: tuple[int, int, int] = (1, 1, 1)
    block: tuple[int, int, int] = (1, 1, 1)
    meta: dict = field(default_factory=dict, compare=False, hash=False)
    # The width of its index arithmetic (loop variables, sizes, offsets): 32, or 64 for
    # tensors too large for int32 offsets (tc.ir.index_width, codegen.wide_indices).
    index_bits: int = 32

    @property
    def index_type(self) -> ScalarType:
        """The type of its loop variables and size arguments."""
        return ScalarType.INT64 if self.index_bits == 64 else INDEX_TYPE

    @property
    def arguments(self) -> tuple[Buffer, ...]:
        return tuple(b for b in self.buffers if b.space == "global")

    def buffer(self, name: str) -> Buffer:
        for b in self.buffers:
            if b.name == name:
                return b
        raise KeyError(name)


def seq(*stmts: Stmt | None) -> Stmt:
    """A block of the given statements, flattening nested blocks and dropping None."""
    out: list[Stmt] = []
    for s in stmts:
        if s is None:
            continue
        if isinstance(s, Block):
            out.extend(s.body)
        else:
            out.append(s)
    return out[0] if len(out) == 1 else Block(tuple(out))


def children(s: Stmt) -> tuple[Stmt, ...]:
    """The statements directly inside ``s``."""
    if isinstance(s, Block):
        return s.body
    if isinstance(s, For | Scope):
        return (s.body,)
    if isinstance(s, If):
        return (s.then,) if s.otherwise is None else (s.then, s.otherwise)
    return ()


def walk_stmts(s: Stmt):
    """Every statement of ``s``, pre-order."""
    yield s
    for c in children(s):
        yield from walk_stmts(c)


def own_exprs(s: Stmt) -> tuple[ir.Expr, ...]:
    """The expressions ``s`` evaluates itself (not those of the statements inside it)."""
    if isinstance(s, Store):
        return (*s.indices, s.value)
    if isinstance(s, Local):
        return () if s.init is None else (s.init,)
    if isinstance(s, Assign):
        return (s.value,)
    if isinstance(s, If):
        return (s.cond,)
    if isinstance(s, For):
        return (s.init, s.cond)
    return ()
