"""Full reductions on several threads: per-chunk partial results, combined in order.

The CPU mapping (:mod:`polyhedral.cpu_mapping`) runs only dependence-free loops in
parallel, so a kernel whose outer loop is a reduction (``S +=! X(n, d)``: every
iteration adds to one scalar) runs on one thread. After register promotion the
accumulation is a local updated in that loop::

    float p = S[0];
    for (n ...) { ... p = p + v(n); ... }
    S[0] = p;

This pass splits the loop's iterations into :data:`CHUNKS` contiguous chunks run by an
OpenMP parallel loop, each accumulating into a partial result of its own, then adds
the partials to ``p`` in chunk order::

    float part[CHUNKS];
    #pragma omp parallel for
    for (t = 0; t < CHUNKS; t++) {
      float q = 0; for (n in chunk t) { ... q = q + v(n); } part[t] = q;
    }
    for (t = 0; t < CHUNKS; t++) p = p + part[t];

Determinism: the chunks are fixed by the iteration count, not by the number of
threads, so the result is bit-identical for any thread count; it differs from the
one-thread loop only by the reassociation of a float sum (a ``max``/``min``, or
integer arithmetic, gives exactly the same result).

When it applies: a top-level sequential loop of a kernel with no parallel loop,
``for (v = a; v < b or v <= b; v += 1)`` with bounds that do not change inside it,
whose only effects outside its own locals are updates ``acc = acc op e`` (``op`` in
``+ * max min``, a type whose reassociation is allowed) of locals declared before it,
read nowhere else in it; no store to memory (another thread's chunk could read it).
"""

from __future__ import annotations

import dataclasses

from codegen import kernel as k
from codegen.private import invariant, loop_bound_names
from tc.ir import nodes as ir
from tc.ir.types import INDEX_TYPE, ScalarType

#: The chunks of a split reduction: a fixed count, so that results do not depend on
#: the thread count (at least the threads of any machine this runs on, for balance).
CHUNKS = 16
_OPS = ("+", "*", "max", "min")
_TYPES = (ScalarType.FLOAT32, ScalarType.FLOAT64, ScalarType.INT32, ScalarType.INT64,
          ScalarType.UINT32, ScalarType.UINT64)
_I64 = ScalarType.INT64


def _int(v: int, t: ScalarType = INDEX_TYPE) -> ir.IntImm:
    return ir.IntImm(v, type=t)


def _accumulators(loop: k.For) -> dict[str, tuple[str, ScalarType]] | None:
    """The locals declared outside ``loop`` that it only accumulates into, with their
    operator and type; None when it has any other effect outside its own locals."""
    inner = {s.name for s in k.walk_stmts(loop.body) if isinstance(s, k.Local)}
    acc: dict[str, tuple[str, ScalarType]] = {}
    updates = []
    for s in k.walk_stmts(loop.body):
        if isinstance(s, k.Store | k.Barrier):
            return None
        if isinstance(s, k.For) and s.mapping is not None:
            return None
        if isinstance(s, k.Assign) and s.name not in inner:
            v = s.value
            if not (isinstance(v, ir.Binary) and v.op in _OPS and v.type in _TYPES
                    and v.a == ir.Var(s.name, "local", type=v.type)):
                return None
            if acc.setdefault(s.name, (v.op, v.type)) != (v.op, v.type):
                return None
            updates.append(s)
    if not acc:
        return None
    for s in k.walk_stmts(loop.body):
        for e in k.own_exprs(s):
            if s in updates and e is s.value:
                e = s.value.b
            if any(isinstance(n, ir.Var) and n.name in acc for n in ir.walk(e)):
                return None
    if any(isinstance(n, ir.Var) and n.name in acc
           for e in (loop.init, loop.cond) for n in ir.walk(e)):
        return None
    return acc


def _identity(op: str, t: ScalarType) -> ir.Expr:
    v = ir.identity(op, t)
    return ir.FloatImm(float(v), type=t) if t.is_float else ir.IntImm(int(v), type=t)


class _Rename(ir.Mutator):
    def __init__(self, names: dict[str, str]) -> None:
        self.names = names

    def mutate_Var(self, e: ir.Var) -> ir.Expr:
        name = self.names.get(e.name)
        return dataclasses.replace(e, name=name) if name and e.kind == "local" else e


def _renamed(s: k.Stmt, m: _Rename) -> k.Stmt:
    if isinstance(s, k.Block):
        return k.Block(tuple(_renamed(c, m) for c in s.body))
    if isinstance(s, k.Scope):
        return k.Scope(_renamed(s.body, m))
    if isinstance(s, k.If):
        other = None if s.otherwise is None else _renamed(s.otherwise, m)
        return k.If(m.mutate(s.cond), _renamed(s.then, m), other)
    if isinstance(s, k.For):
        return dataclasses.replace(s, init=m.mutate(s.init), cond=m.mutate(s.cond),
                                   body=_renamed(s.body, m))
    if isinstance(s, k.Assign):
        return k.Assign(m.names.get(s.name, s.name), m.mutate(s.value))
    if isinstance(s, k.Local):
        return dataclasses.replace(s, init=None if s.init is None else m.mutate(s.init))
    return s


class _Splitter:
    def __init__(self, kern: k.Kernel) -> None:
        taken = {b.name for b in kern.buffers}
        taken |= {s.name for s in k.walk_stmts(kern.body) if isinstance(s, k.Local)}
        taken |= {s.var for s in k.walk_stmts(kern.body) if isinstance(s, k.For)}
        self.taken = taken
        self.new: list[k.Buffer] = []

    def fresh(self, stem: str) -> str:
        n = 0
        while f"{stem}{n}" in self.taken:
            n += 1
        self.taken.add(f"{stem}{n}")
        return f"{stem}{n}"

    def stmt(self, s: k.Stmt) -> k.Stmt:
        """``s`` with its top-level reduction loops split (loops inside loops are not)."""
        if isinstance(s, k.Block):
            return k.Block(tuple(self.stmt(c) for c in s.body))
        if isinstance(s, k.Scope):
            return k.Scope(self.stmt(s.body))
        if isinstance(s, k.If):
            other = None if s.otherwise is None else self.stmt(s.otherwise)
            return k.If(s.cond, self.stmt(s.then), other)
        if isinstance(s, k.For) and s.mapping is None and s.vector is None:
            return self.split(s) or s
        return s

    def split(self, loop: k.For) -> k.Stmt | None:
        c = loop.cond
        if loop.step != 1 or not (isinstance(c, ir.Binary) and c.op in ("<", "<=")
                                  and c.a == ir.Var(loop.var, "loop", type=c.a.type)):
            return None
        bound = loop_bound_names(loop)
        if not (invariant(loop.init, bound) and invariant(c.b, bound)):
            return None
        acc = _accumulators(loop)
        if acc is None:
            return None
        t = self.fresh("t_")
        tv = ir.Var(t, "loop", type=INDEX_TYPE)
        # count = b - a (+1 for <=), in 64 bits; chunk t runs a + count*t/CHUNKS ...
        wide = [ir.Cast(x, type=_I64) for x in (loop.init, c.b)]
        count = ir.Binary("-", wide[1], wide[0], type=_I64)
        if c.op == "<=":
            count = ir.Binary("+", count, _int(1, _I64), type=_I64)

        def edge(i: ir.Expr) -> ir.Expr:
            part = ir.Binary("/", ir.Binary("*", count, ir.Cast(i, type=_I64), type=_I64),
                             _int(CHUNKS, _I64), type=_I64)
            return ir.Cast(ir.Binary("+", wide[0], part, type=_I64), type=INDEX_TYPE)

        v = ir.Var(loop.var, "loop", type=INDEX_TYPE)
        names = {a: self.fresh(f"{a}_t") for a in acc}
        parts = {a: self.fresh(f"{a}_part") for a in acc}
        chunk = dataclasses.replace(
            loop, init=edge(tv), cond=ir.Binary("<", v, edge(ir.Binary(
                "+", tv, _int(1), type=INDEX_TYPE)), type=ScalarType.BOOL),
            body=_renamed(loop.body, _Rename(names)))
        body = k.seq(*(k.Local(names[a], t_, _identity(op, t_)) for a, (op, t_) in acc.items()),
                     chunk,
                     *(k.Store(parts[a], (tv,), ir.Var(names[a], "local", type=t_))
                       for a, (_, t_) in acc.items()))
        parallel = k.For(t, _int(0), ir.Binary("<", tv, _int(CHUNKS), type=ScalarType.BOOL),
                         k.Scope(body), mapping="omp")
        self.new += [k.Buffer(parts[a], t_, (_int(CHUNKS),), (_int(1),), space="register")
                     for a, (_, t_) in acc.items()]
        combine = k.For(t, _int(0), ir.Binary("<", tv, _int(CHUNKS), type=ScalarType.BOOL),
                        k.seq(*(k.Assign(a, ir.Binary(op, ir.Var(a, "local", type=t_),
                                                      ir.Read(parts[a], (tv,), type=t_),
                                                      type=t_))
                                for a, (op, t_) in acc.items())))
        declared = [k.Local(parts[a], t_, size=CHUNKS) for a, (_, t_) in acc.items()]
        return k.Scope(k.seq(*declared, parallel, combine))


def split_reductions(kern: k.Kernel) -> k.Kernel:
    """``kern`` with its full reductions split over threads (see the module
    docstring), when it has no parallel loop of its own."""
    if any(isinstance(s, k.For) and s.mapping is not None for s in k.walk_stmts(kern.body)):
        return kern
    sp = _Splitter(kern)
    body = sp.stmt(kern.body)
    if not sp.new:
        return kern
    return dataclasses.replace(kern, body=body, buffers=kern.buffers + tuple(sp.new))


__all__ = ["CHUNKS", "split_reductions"]
