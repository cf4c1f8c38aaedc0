"""Register promotion (``usePrivateMemory``): scalar replacement on the kernel AST.

In a sequential loop ``L`` that one thread runs, an element ``X[idx]`` whose every
access in ``L`` has the same subscripts, unchanged while ``L`` runs, is kept in a local:
loaded before ``L``, written back once after it (not at all if ``L`` only reads ``X``)::

    if (<L runs at least once>) { T p = X[idx]; for (L) { ... p = p + v; ... } X[idx] = p; }

Why results cannot change:

* No other thread touches ``X[idx]`` during ``L``: ``L`` is in a thread-mapped loop,
  or in a kernel of one-thread blocks, or all its accesses to ``X`` are guarded to
  thread 0, and it holds no barrier and no distributed loop; the mapping distributes
  only dependence-free loops, so such an access would already be a race. Barriers,
  placed after this pass, go around whole pieces of thread work, never inside them.
* The load and the write-back run only if the original stores ``X[idx]`` (reads it,
  for a read-only element) in ``L``'s first iteration: under ``L``'s first-iteration
  condition and loop-invariant conditions (``if``s, inner loops' first iterations)
  that every access to ``X`` in ``L`` lies under. They touch nothing new, and when
  they do not run, ``L`` never uses the local.
* ``X[idx] op= v`` becomes ``p = p op v`` at the same types, printed with the same
  operations and, for half types (computed in float), the same rounding after each:
  the local holds the element's exact value. Plain stores of half values are
  promoted only when the printed value is already rounded.
* Each statement whose store became an assignment keeps an (identical) write-back
  store with its ``origin``, so barrier placement still sees it.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import operator
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from codegen import kernel as k
from tc.ir import nodes as ir
from tc.ir.affine import linearize
from tc.ir.types import ScalarType

_OPS = (None, "+", "*", "min", "max")
_HALF = (ScalarType.FLOAT16, ScalarType.BFLOAT16)
_DEPTH = re.compile(r"c_c(\d+)$")


def promote_private(body: k.Stmt, depth: int = 0) -> k.Stmt:
    """``body`` (a kernel body, before barrier placement) with the elements that one
    thread owns across a sequential loop kept in locals.

    ``depth`` 0 hoists as far out as is legal; ``depth`` d > 0 never hoists around
    a loop of schedule depth below d (isl names the loop of depth D ``c_c<D>``)."""
    taken = {s.var for s in k.walk_stmts(body) if isinstance(s, k.For)}
    taken |= {s.name for s in k.walk_stmts(body) if isinstance(s, k.Local | k.Assign)}
    return _Promoter(depth, taken).stmt(body, _one_thread_per_block(body))


def _one_thread_per_block(body: k.Stmt) -> bool:
    """Whether blocks have one thread: the lowering maps every statement over each
    thread axis of more than one id or guards it to id 0, so a body that never
    mentions a thread id runs in one-thread blocks."""
    for s in k.walk_stmts(body):
        if isinstance(s, k.For) and s.mapping is not None and s.mapping.startswith("thread"):
            return False
        if any(isinstance(n, k.HwId) and n.kind in ("thread", "block_dim")
               for e in k.own_exprs(s) for n in ir.walk(e)):
            return False
    return True


class _LoopsAsIndices(ir.Mutator):
    """Loop variables as index variables, for :func:`tc.ir.affine.linearize`."""

    def mutate_Var(self, e: ir.Var) -> ir.Expr:
        return dataclasses.replace(e, kind="index") if e.kind == "loop" else e


def distinct_rows(a: tuple[ir.Expr, ...], b: tuple[ir.Expr, ...], lane: str) -> bool:
    """Whether subscripts ``a`` and ``b`` never name one element, even at different
    values of the loop variable ``lane``: in some dimension that does not use
    ``lane``, they differ by a nonzero constant."""
    to_index = _LoopsAsIndices()
    for x, y in zip(a, b, strict=True):
        if any(isinstance(n, ir.Var) and n.name == lane for e in (x, y) for n in ir.walk(e)):
            continue
        la, lb = linearize(to_index.mutate(x)), linearize(to_index.mutate(y))
        if la is None or lb is None or la.coeffs != lb.coeffs:
            continue
        d = la.rest - lb.rest
        if d.is_const and d.const != 0:
            return True
    return False


def _distinct(a: tuple[ir.Expr, ...], b: tuple[ir.Expr, ...]) -> bool:
    """Whether subscripts ``a`` and ``b`` name different elements whatever the loop
    variables: in some dimension they differ by a nonzero constant."""
    to_index = _LoopsAsIndices()
    for x, y in zip(a, b, strict=True):
        la, lb = linearize(to_index.mutate(x)), linearize(to_index.mutate(y))
        if la is None or lb is None or la.coeffs != lb.coeffs:
            continue
        d = la.rest - lb.rest
        if d.is_const and d.const != 0:
            return True
    return False


def _conjuncts(e: ir.Expr) -> Iterator[ir.Expr]:
    if isinstance(e, ir.Binary) and e.op == "&&":
        yield from _conjuncts(e.a)
        yield from _conjuncts(e.b)
    else:
        yield e


def _thread_guard(e: ir.Expr) -> bool:
    """Whether ``e`` is a lowering guard ``id == 0 && ...`` naming a thread id: what
    it guards runs on one thread of the block."""
    ids = [c.a for c in _conjuncts(e) if isinstance(c, ir.Binary) and c.op == "=="
           and isinstance(c.a, k.HwId) and c.b == ir.IntImm(0, type=c.b.type)]
    return len(ids) == len(list(_conjuncts(e))) and any(i.kind == "thread" for i in ids)


def _hoistable(loop: k.For) -> bool:
    """No barrier and no loop distributed over ids (mapped, or with an id in its
    bounds) in ``loop``, itself included: its body is the work of one thread."""
    for s in k.walk_stmts(loop):
        if isinstance(s, k.Barrier):
            return False
        if isinstance(s, k.For) and (s.mapping is not None or any(
                isinstance(n, k.HwId) for e in (s.init, s.cond) for n in ir.walk(e))):
            return False
    return True


def _bound(loop: k.For) -> frozenset[str]:
    """The names that may change while ``loop`` runs: its loop variables and the
    locals declared or assigned in it."""
    return frozenset(s.var if isinstance(s, k.For) else s.name for s in k.walk_stmts(loop)
                     if isinstance(s, k.For | k.Local | k.Assign))


def _invariant(e: ir.Expr, bound: frozenset[str]) -> bool:
    """Whether ``e`` keeps its value while the loop runs and may be evaluated before
    it: no read (of memory the loop may write, or out of bounds) and no call (the
    bounds-check report has a side effect)."""
    return not any(isinstance(n, ir.Var) and n.name in bound
                   or isinstance(n, ir.Read | ir.Call | ir.Let) for n in ir.walk(e))


class _Subst(ir.Mutator):
    """``name`` replaced by ``value``."""

    def __init__(self, name: str, value: ir.Expr) -> None:
        self.name = name
        self.value = value

    def mutate_Var(self, e: ir.Var) -> ir.Expr:
        return self.value if e.name == self.name else e


def _first(loop: k.For) -> ir.Expr:
    """The condition under which ``loop`` runs at least one iteration."""
    return _Subst(loop.var, loop.init).mutate(loop.cond)


def _unconditional_reads(e: ir.Expr) -> Iterator[ir.Read]:
    """The reads evaluated whenever ``e`` is: not in a branch of a select or in the
    right operand of a short-circuit operator."""
    if isinstance(e, ir.Read):
        yield e
    if isinstance(e, ir.Select):
        yield from _unconditional_reads(e.cond)
        return
    if isinstance(e, ir.Binary) and e.op in ir.LOGIC_OPS:
        yield from _unconditional_reads(e.a)
        return
    for c in ir.children(e):
        yield from _unconditional_reads(c)


def _exact16(e: ir.Expr, t: ScalarType, exact_vars: set[str]) -> bool:
    """Whether the printed value of ``e`` (a half or bfloat16 expression, computed in
    float) is a value of ``t``: the printer rounds operations, not literals, selects
    and variables."""
    if isinstance(e, ir.FloatImm):
        v = float(e.value)
        try:
            if t is ScalarType.FLOAT16:
                same = struct.unpack("<e", struct.pack("<e", v))[0] == v
            else:  # bfloat16: the upper half of a float
                same = struct.unpack("<f", struct.pack("<f", v))[0] == v and not (
                    struct.unpack("<I", struct.pack("<f", v))[0] & 0xFFFF)
        except OverflowError:
            return False
        return same or math.isnan(v)
    if isinstance(e, ir.Select):
        return _exact16(e.a, t, exact_vars) and _exact16(e.b, t, exact_vars)
    if isinstance(e, ir.Var):
        return e.name in exact_vars
    return not isinstance(e, ir.IntImm | ir.Let)


@dataclass(frozen=True)
class _Element:
    """``buffer[indices]`` kept in local ``name`` across a loop; ``origins`` are the
    statements storing it (none: read only); ``guard`` the conditions (conjuncts)
    under which the loop touches it."""

    buffer: str
    indices: tuple[ir.Expr, ...]
    dtype: ScalarType
    origins: tuple[str, ...]
    guard: tuple[ir.Expr, ...] = ()
    name: str = ""
    # Stored, and every access to the buffer in the loop is to one of several
    # elements with provably distinct subscripts: accesses are told apart by them.
    exact: bool = False

    @property
    def var(self) -> ir.Var:
        return ir.Var(self.name, "local", type=self.dtype)

    @property
    def read(self) -> ir.Read:
        return ir.Read(self.buffer, self.indices, type=self.dtype)

    def hits(self, e: ir.Expr) -> bool:
        """Whether ``e`` reads the element (for a stored one: any element of its buffer)."""
        return any(isinstance(n, ir.Read) and n.tensor == self.buffer
                   and ((self.origins and not self.exact) or n.indices == self.indices)
                   for n in ir.walk(e))

    def stores(self, s: k.Stmt) -> bool:
        """Whether ``s`` is a store to the element (for an inexact one: to its buffer)."""
        return isinstance(s, k.Store) and s.buffer == self.buffer and (
            not self.exact or s.indices == self.indices)

    def touches(self, s: k.Stmt) -> bool:
        return any(self.stores(n) or any(self.hits(e) for e in k.own_exprs(n))
                   for n in k.walk_stmts(s))

    def definite(self, s: k.Stmt) -> bool:
        """Whether running ``s`` certainly stores (or, read only, reads) the element."""
        if isinstance(s, k.Block):
            return any(self.definite(c) for c in s.body)
        if isinstance(s, k.Scope):
            return self.definite(s.body)
        if self.origins:
            return self.stores(s)
        if isinstance(s, k.Store | k.Local | k.Assign | k.If):
            return any(r == self.read for e in k.own_exprs(s) for r in _unconditional_reads(e))
        return False

    def conditions(self, s: k.Stmt, bound: frozenset[str]) -> tuple[ir.Expr, ...] | None:
        """Loop-invariant conditions that every access to the element in ``s`` lies
        under and under which running ``s`` certainly touches it (None: none found)."""
        if self.definite(s):
            return ()
        if isinstance(s, k.Scope):
            return self.conditions(s.body, bound)
        if isinstance(s, k.Block):
            hit = [c for c in s.body if self.touches(c)]
            if not hit:
                return None
            if len(hit) == 1:
                return self.conditions(hit[0], bound)
            # Several pieces under one invariant condition: as one ``if`` around them.
            if not all(isinstance(c, k.If) and c.otherwise is None and c.cond == hit[0].cond
                       for c in hit):
                return None
            s = k.If(hit[0].cond, k.Block(tuple(c.then for c in hit)))  # type: ignore[union-attr]
        if isinstance(s, k.If):
            if self.hits(s.cond) or not _invariant(s.cond, bound) or (
                    s.otherwise is not None and self.touches(s.otherwise)):
                return None
            inner = self.conditions(s.then, bound)
            return None if inner is None else (s.cond, *inner)
        if isinstance(s, k.For):
            first = _first(s)
            if self.hits(s.init) or self.hits(s.cond) or not _invariant(first, bound):
                return None
            inner = self.conditions(s.body, bound)
            return None if inner is None else (first, *inner)
        return None


class _Replace(ir.Mutator):
    """Reads of promoted elements replaced by their locals."""

    def __init__(self, elements: list[_Element]) -> None:
        self.locals = {(e.buffer, e.indices): e.var for e in elements}

    def mutate_Read(self, e: ir.Read) -> ir.Expr:
        local = self.locals.get((e.tensor, e.indices))
        return local if local is not None else self.generic(e)


def _rewrite(s: k.Stmt, m: _Replace,
             stored: dict[tuple[str, tuple[ir.Expr, ...]], ir.Var]) -> k.Stmt:
    """``s`` working on the locals: reads through ``m``, stores to a buffer of
    ``stored`` become assignments of its local."""
    if isinstance(s, k.Block):
        return k.Block(tuple(_rewrite(c, m, stored) for c in s.body))
    if isinstance(s, k.Scope):
        return k.Scope(_rewrite(s.body, m, stored))
    if isinstance(s, k.For):
        return dataclasses.replace(s, init=m.mutate(s.init), cond=m.mutate(s.cond),
                                   body=_rewrite(s.body, m, stored))
    if isinstance(s, k.If):
        other = None if s.otherwise is None else _rewrite(s.otherwise, m, stored)
        return k.If(m.mutate(s.cond), _rewrite(s.then, m, stored), other)
    if isinstance(s, k.Store):
        value = m.mutate(s.value)
        local = stored.get((s.buffer, s.indices))
        if local is None:
            return dataclasses.replace(s, indices=tuple(map(m.mutate, s.indices)), value=value)
        if s.op is not None:
            value = ir.Binary(s.op, local, value, type=local.type)
        return k.Assign(local.name, value)
    if isinstance(s, k.Local) and s.init is not None:
        return dataclasses.replace(s, init=m.mutate(s.init))
    if isinstance(s, k.Assign):
        return dataclasses.replace(s, value=m.mutate(s.value))
    return s


def _and(conds: tuple[ir.Expr, ...]) -> ir.Expr:
    return functools.reduce(lambda a, b: ir.Binary("&&", a, b, type=ScalarType.BOOL), conds)


_CMP = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
        "==": operator.eq, "!=": operator.ne}


def _constant(e: ir.Expr) -> bool | None:
    """The value of a comparison of constants (isl's bounds often give ``0 <= 1``)."""
    if isinstance(e, ir.Binary) and e.op in _CMP and isinstance(e.a, ir.IntImm) and isinstance(
            e.b, ir.IntImm):
        return bool(_CMP[e.op](e.a.value, e.b.value))
    return None


def _wrap(loop: k.For, elements: list[_Element]) -> k.Stmt:
    """Loads before ``loop``, write-backs after it, both under the elements' guards."""

    def back(e: _Element) -> list[k.Stmt]:
        # One store per statement, identical: each statement keeps a store carrying
        # its origin for barrier placement (the C compilers merge them).
        return [k.Store(e.buffer, e.indices, e.var, origin=o) for o in e.origins]

    def under(guard: tuple[ir.Expr, ...], stmts: list[k.Stmt]) -> k.Stmt:
        return k.If(_and(guard), k.seq(*stmts)) if guard else k.seq(*stmts)

    first = tuple(c for c in _conjuncts(_first(loop)) if _constant(c) is not True)
    if all(e.guard == first for e in elements):
        # Guarded by the loop running only: the whole promoted loop goes under it.
        loads: list[k.Stmt] = [k.Local(e.name, e.dtype, e.read) for e in elements]
        return under(first, [k.Scope(k.seq(*loads, loop, *(s for e in elements
                                                                 for s in back(e))))])
    # Guards beyond the first iteration's: the loop must still run when they are
    # false, so only the loads and the write-backs are guarded.
    groups: dict[tuple[ir.Expr, ...], list[_Element]] = {}
    for e in elements:
        groups.setdefault(e.guard, []).append(e)
    zero = {e.dtype: ir.FloatImm(0.0, type=e.dtype) if e.dtype.is_float
            else ir.IntImm(0, type=e.dtype) for e in elements}
    loads = [k.Local(e.name, e.dtype, zero[e.dtype] if e.guard else e.read) for e in elements]
    loads += [under(g, [k.Assign(e.name, e.read) for e in es]) for g, es in groups.items() if g]
    stores = [under(g, [s for e in es for s in back(e)])
              for g, es in groups.items() if any(e.origins for e in es)]
    return k.Scope(k.seq(*loads, loop, *stores))


class _Promoter:
    """The pass over one kernel body: ``depth`` as in :func:`promote_private`,
    ``taken`` the names in use (locals are named ``p_<n>``)."""

    def __init__(self, depth: int, taken: set[str]) -> None:
        self.depth = depth
        self.taken = taken
        self.exact: set[str] = set()  # promoted locals of half types: always rounded

    def fresh(self) -> str:
        name = next(f"p_{n}" for n in itertools.count() if f"p_{n}" not in self.taken)
        self.taken.add(name)
        return name

    def stmt(self, s: k.Stmt, single: bool) -> k.Stmt:
        """``s`` promoted; ``single``: in code that one thread of a block runs."""
        if isinstance(s, k.Block):
            return k.Block(tuple(self.stmt(c, single) for c in s.body))
        if isinstance(s, k.Scope):
            return k.Scope(self.stmt(s.body, single))
        if isinstance(s, k.If):
            other = None if s.otherwise is None else self.stmt(s.otherwise, single)
            return k.If(s.cond, self.stmt(s.then, single), other)
        if isinstance(s, k.For) and s.mapping is not None:
            inner = single or s.mapping.startswith("thread")
            return dataclasses.replace(s, body=self.stmt(s.body, inner))
        if isinstance(s, k.For):
            # Outermost first: an element promoted here is hoisted as far as it can go.
            promoted = self.promote(s, single)
            if promoted is not None:
                return promoted
            return dataclasses.replace(s, body=self.stmt(s.body, single))
        return s

    def promote(self, loop: k.For, single: bool) -> k.Stmt | None:
        depth = _DEPTH.match(loop.var)
        if self.depth and (depth is None or int(depth.group(1)) < self.depth):
            return None
        # The first-iteration guard is evaluated before and after the loop: it must
        # not depend on anything the loop changes.
        if not _hoistable(loop) or not _invariant(_first(loop), _bound(loop)):
            return None
        elements = self.elements(loop, single)
        if not elements:
            return None
        stored = {(e.buffer, e.indices): e.var for e in elements if e.origins}
        body = _rewrite(loop.body, _Replace(elements), stored)
        return _wrap(dataclasses.replace(loop, body=self.stmt(body, single)), elements)

    def elements(self, loop: k.For, single: bool) -> list[_Element]:
        """The elements ``loop`` can keep in locals."""
        bound = _bound(loop)
        stores: dict[str, list[k.Store]] = {}
        reads: dict[str, list[ir.Read]] = {}
        for s in k.walk_stmts(loop.body):
            if isinstance(s, k.Store):
                stores.setdefault(s.buffer, []).append(s)
            for n in (n for e in k.own_exprs(s) for n in ir.walk(e)):
                if isinstance(n, ir.Read):
                    reads.setdefault(n.tensor, []).append(n)
        candidates = [e for b, sts in stores.items()
                      for e in self.stored_elements(b, sts, reads.get(b, []), bound)]
        for buf, rds in reads.items():  # elements only read: never a buffer stored in L
            for idx in dict.fromkeys(r.indices for r in rds) if buf not in stores else ():
                types = {r.type for r in rds if r.indices == idx}
                if len(types) == 1 and all(_invariant(i, bound) for i in idx):
                    candidates.append(_Element(buf, idx, types.pop(), ()))
        out = []
        for e in candidates:
            guard = None if e is None or e.hits(loop.init) or e.hits(loop.cond) else (
                e.conditions(loop.body, bound))
            # In uniform code of a multi-thread block, only work guarded to one thread.
            if e is None or guard is None or not (single or any(map(_thread_guard, guard))):
                continue
            # The full guard, without the conjuncts that fold to true; false: never touched.
            full = [c for g in (_first(loop), *guard) for c in _conjuncts(g)]
            if any(_constant(c) is False for c in full):
                continue
            guard = tuple(c for c in full if _constant(c) is None)
            e = dataclasses.replace(e, guard=guard, name=self.fresh())
            if e.dtype in _HALF:
                self.exact.add(e.name)
            out.append(e)
        return out

    def stored_elements(self, buf: str, stores: list[k.Store], reads: list[ir.Read],
                        bound: frozenset[str]) -> list[_Element]:
        """The elements of ``buf`` the loop can keep in locals: its one element (see
        :meth:`stored_element`), or each of several whose subscripts are provably
        distinct (a register tile's rows), all accesses being to those."""
        groups: dict[tuple[ir.Expr, ...], list[k.Store]] = {}
        for st in stores:
            groups.setdefault(st.indices, []).append(st)
        if len(groups) == 1:
            one = self.stored_element(buf, stores, reads, bound)
            return [] if one is None else [one]
        if any(r.indices not in groups for r in reads) or not all(
                _distinct(a, b) for a, b in itertools.combinations(groups, 2)):
            return []
        out = []
        for idx, sts in groups.items():
            e = self.stored_element(buf, sts, [r for r in reads if r.indices == idx], bound)
            if e is None:
                return []
            out.append(dataclasses.replace(e, exact=True))
        return out

    def stored_element(self, buf: str, stores: list[k.Store], reads: list[ir.Read],
                       bound: frozenset[str]) -> _Element | None:
        """``buf``'s element if every store and read of ``buf`` in the loop is of one
        element, at invariant subscripts, with one type and a promotable operator."""
        idx = stores[0].indices
        types = {s.value.type for s in stores} | {r.type for r in reads}
        if any(s.indices != idx or s.op not in _OPS for s in stores) or len(types) != 1 or any(
                r.indices != idx for r in reads) or not all(_invariant(i, bound) for i in idx):
            return None
        t = types.pop()
        if t in _HALF and not all(s.op is not None or _exact16(s.value, t, self.exact)
                                  for s in stores):
            return None
        return _Element(buf, idx, t, tuple(dict.fromkeys(s.origin for s in stores)))


# The helpers other promotions share (codegen.register_arrays).
OPS = _OPS
first_iteration = _first
invariant = _invariant
loop_bound_names = _bound
