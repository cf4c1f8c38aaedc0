"""Row promotion: a register tile's output rows kept in local arrays across a reduction.

The CPU register tile (:mod:`polyhedral.register_tile`) gives loops like::

    for (k ...)                                   L: sequential, the reduction
      #pragma omp simd
      for (j = 0; j <= 31; j++) {                 J: SIMD lanes, constant bounds
        C[r0][j0 + j] = C[r0][j0 + j] + A[r0][k] * B[k][j0 + j];
        ...
        C[r3][j0 + j] = C[r3][j0 + j] + A[r3][k] * B[k][j0 + j];
      }

Each ``C`` element is loaded and stored on every ``k``: three memory accesses per
multiply-add. Here each row ``C[r][j0 + j]`` becomes a local array ``p[j]`` for the
whole of ``L``: loaded before it, stored after it, by SIMD loops over the same ``j``.
(Scalar accumulators with the SIMD loop outside ``L`` would be better still, but
GCC's outer-loop vectoriser gives up on the strides that kernels compiled for every
shape take as arguments.)

When it applies: ``L`` is a sequential loop whose body is one ``lanes`` loop ``J``
(or perfectly nested sequential loops around it, a convolution's ``c, kh, kw``)
with constant bounds and a body of plain stores (no branch, no loop). A buffer is
promoted when every access to it in ``L`` is to one of several rows, each a tuple
of subscripts invariant in ``L`` (they may use ``J``'s variable), the rows differing
by a nonzero constant in a subscript that does not use ``J``'s variable (so no two
rows ever share an element), every store to it being ``=`` or an update in the
scalar promotion's operators, in a type computed exactly (not a half type).

Why results cannot change: ``J``'s iterations are independent (a ``lanes`` loop),
so each row element is touched by one ``j`` only; no other code runs in ``L``; the
array element holds exactly the value the memory element would (same operations, same
type), and is written back after ``L``. The load runs under ``L``'s
first-iteration condition (so nothing is touched when ``L`` does not run).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator

from codegen import kernel as k
from codegen.private import OPS as _OPS
from codegen.private import distinct_rows, first_iteration, invariant, loop_bound_names
from tc.ir import nodes as ir
from tc.ir.types import INDEX_TYPE, ScalarType

_HALF = (ScalarType.FLOAT16, ScalarType.BFLOAT16)
#: The most elements a kernel keeps in one promoted loop's arrays (4 KiB of float32).
MAX_ELEMENTS = 1024


def _int(v: int) -> ir.IntImm:
    return ir.IntImm(v, type=INDEX_TYPE)


def _constant_range(loop: k.For) -> tuple[int, int] | None:
    """``(lo, count)`` of a loop ``for (v = lo; v <= hi or v < end; v += 1)`` with
    constant bounds, else None."""
    c = loop.cond
    if loop.step != 1 or not isinstance(loop.init, ir.IntImm) or not (
            isinstance(c, ir.Binary) and c.op in ("<=", "<") and c.a == ir.Var(
                loop.var, "loop", type=c.a.type) and isinstance(c.b, ir.IntImm)):
        return None
    count = c.b.value - loop.init.value + (1 if c.op == "<=" else 0)
    return (loop.init.value, count) if count > 0 else None


def _accesses(s: k.Stmt) -> Iterator[tuple[str, tuple[ir.Expr, ...], ir.Expr | None]]:
    """Every buffer access of a straight-line body: ``(buffer, indices, store)``, with
    the store statement for stores and None for reads."""
    for st in k.walk_stmts(s):
        if isinstance(st, k.Store):
            yield st.buffer, st.indices, st
        for e in k.own_exprs(st):
            for n in ir.walk(e):
                if isinstance(n, ir.Read):
                    yield n.tensor, n.indices, None


@dataclasses.dataclass(frozen=True)
class _Row:
    buffer: str
    indices: tuple[ir.Expr, ...]
    dtype: ScalarType
    name: str


class _Promoter:
    def __init__(self, kern: k.Kernel) -> None:
        self.kern = kern
        taken = {b.name for b in kern.buffers}
        taken |= {s.name for s in k.walk_stmts(kern.body) if isinstance(s, k.Local)}
        self.taken = taken
        self.new: list[k.Buffer] = []

    def fresh(self) -> str:
        name = next(f"r_{n}" for n in itertools.count() if f"r_{n}" not in self.taken)
        self.taken.add(name)
        return name

    def stmt(self, s: k.Stmt) -> k.Stmt:
        if isinstance(s, k.Block):
            return k.Block(tuple(self.stmt(c) for c in s.body))
        if isinstance(s, k.Scope):
            return k.Scope(self.stmt(s.body))
        if isinstance(s, k.If):
            other = None if s.otherwise is None else self.stmt(s.otherwise)
            return k.If(s.cond, self.stmt(s.then), other)
        if isinstance(s, k.For):
            if s.mapping is None and s.vector is None:
                done = self.promote(s)
                if done is not None:
                    return done
            return dataclasses.replace(s, body=self.stmt(s.body))
        return s

    def rows(self, loop: k.For, inner: k.For) -> list[_Row] | None:
        """The rows of ``loop`` (see the module docstring), or None."""
        if any(not isinstance(st, k.Store | k.Block) for st in k.walk_stmts(inner.body)):
            return None
        bound = loop_bound_names(loop) - {inner.var}
        accesses: dict[str, dict[tuple[ir.Expr, ...], list[ir.Expr | None]]] = {}
        for buf, idx, store in _accesses(inner.body):
            accesses.setdefault(buf, {}).setdefault(idx, []).append(store)
        stored = {b for b, groups in accesses.items()
                  if any(st is not None for sts in groups.values() for st in sts)}
        out: list[_Row] = []
        for buf in stored:
            groups = accesses[buf]
            b = self.kern.buffer(buf)
            if b.space != "global" or b.dtype in _HALF or b.dtype is ScalarType.BOOL:
                continue
            stores = [st for sts in groups.values() for st in sts if st is not None]
            if any(st.op not in _OPS or st.value.type != b.dtype for st in stores):
                continue
            if not all(invariant(i, bound) for idx in groups for i in idx):
                continue
            if not all(distinct_rows(a, b_, inner.var)
                       for a, b_ in itertools.combinations(groups, 2)):
                continue
            out += [_Row(buf, idx, b.dtype, "") for idx in groups]
        return out or None

    def promote(self, loop: k.For) -> k.Stmt | None:
        # ``loop`` may be the first of perfectly nested sequential loops (a convolution's
        # ``c, kh, kw``) around the SIMD loop: the rows stay in arrays across them all.
        chain, inner = [loop], loop.body
        while (isinstance(inner, k.For) and inner.mapping is None and inner.vector is None):
            chain.append(inner)
            inner = inner.body
        if not (isinstance(inner, k.For) and inner.vector == "lanes"
                and inner.mapping is None):
            return None
        span = _constant_range(inner)
        bound = loop_bound_names(loop)
        firsts = [first_iteration(c) for c in chain]
        if span is None or not all(invariant(f, bound) for f in firsts):
            return None
        rows = self.rows(loop, inner)
        if rows is None or len(rows) * span[1] > MAX_ELEMENTS:
            return None
        lo, count = span
        rows = [dataclasses.replace(r, name=self.fresh()) for r in rows]
        j = ir.Var(inner.var, "loop", type=INDEX_TYPE)
        slot = (ir.Binary("-", j, _int(lo), type=INDEX_TYPE),) if lo else (j,)
        self.new += [k.Buffer(r.name, r.dtype, (_int(count),), (_int(1),), space="register")
                     for r in rows]
        where = {(r.buffer, r.indices): r.name for r in rows}
        body = _Rewrite(where, slot).stmt(inner.body)
        loads = dataclasses.replace(inner, body=k.seq(*(
            k.Store(r.name, slot, ir.Read(r.buffer, r.indices, type=r.dtype)) for r in rows)))
        stores = dataclasses.replace(inner, body=k.seq(*(
            k.Store(r.buffer, r.indices, ir.Read(r.name, slot, type=r.dtype),
                    origin=_origin(inner.body, r)) for r in rows)))
        promoted: k.Stmt = dataclasses.replace(inner, body=body)
        for c in reversed(chain):
            promoted = dataclasses.replace(c, body=promoted)
        declared = [k.Local(r.name, r.dtype, size=count) for r in rows]
        guard = firsts[0]
        for f in firsts[1:]:
            guard = ir.Binary("&&", guard, f, type=ScalarType.BOOL)
        return k.If(guard, k.Scope(k.seq(*declared, loads, promoted, stores)))


def _origin(body: k.Stmt, row: _Row) -> str:
    for st in k.walk_stmts(body):
        if isinstance(st, k.Store) and (st.buffer, st.indices) == (row.buffer, row.indices):
            return st.origin
    return ""


class _Rewrite(ir.Mutator):
    """Accesses to promoted rows redirected to their arrays."""

    def __init__(self, where: dict[tuple[str, tuple[ir.Expr, ...]], str],
                 slot: tuple[ir.Expr, ...]) -> None:
        self.where = where
        self.slot = slot

    def mutate_Read(self, e: ir.Read) -> ir.Expr:
        name = self.where.get((e.tensor, e.indices))
        return ir.Read(name, self.slot, type=e.type) if name else self.generic(e)

    def stmt(self, s: k.Stmt) -> k.Stmt:
        if isinstance(s, k.Block):
            return k.Block(tuple(self.stmt(c) for c in s.body))
        if isinstance(s, k.Store):
            value = self.mutate(s.value)
            name = self.where.get((s.buffer, s.indices))
            if name is None:
                return dataclasses.replace(s, value=value,
                                           indices=tuple(map(self.mutate, s.indices)))
            return dataclasses.replace(s, buffer=name, indices=self.slot, value=value)
        return s


def promote_rows(kern: k.Kernel) -> k.Kernel:
    """``kern`` with its register tiles' rows in local arrays (see the module docstring)."""
    p = _Promoter(kern)
    body = p.stmt(kern.body)
    if not p.new:
        return kern
    return dataclasses.replace(kern, body=body, buffers=kern.buffers + tuple(p.new))


__all__ = ["MAX_ELEMENTS", "promote_rows"]
