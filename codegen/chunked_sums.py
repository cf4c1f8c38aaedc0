"""Long float sums in blocks: a partial sum per chunk of iterations, added in order.

A reduction becomes a loop adding into one accumulator (a local after register
promotion, ``p = p + v``, or a memory element, ``y[0] += v``). Added one by one in
float32, 2**25 ones sum to 2**24 (each further 1 is lost to rounding), and a row mean
of 4M values near 100 comes out 97.9: the error grows with the count. torch sums in
blocks; so does this pass, on every target, for every loop whose trip count is not a
small constant::

    for (i = a; i < b; i++) { ... p = p + v(i); ... }

becomes::

    for (i0 = a; i0 < b; i0 += CHUNK) {
      float q = 0;
      for (i = i0; i < min(i0 + CHUNK, b); i++) { ... q = q + v(i); ... }
      p = p + q;
    }

and the loop over chunks, itself a long sum, is chunked again, up to :data:`LEVELS`
levels: the error then grows with ``CHUNK * LEVELS`` plus the count over
``CHUNK ** LEVELS``, not with the count. Iterations run in the same order as before
(strip-mining), so the loop's other effects are unchanged; only the additions into
the accumulator are re-associated, as a vectorised or a parallel reduction is. The
chunks are fixed by the iteration count: results do not depend on threads or lanes.

What is chunked: in a sequential loop (not a loop mapped to threads, whose
iterations other threads run), the float32/float64 ``+`` accumulators

* locals declared outside the loop, updated only as ``acc = acc + v`` and read
  nowhere else in it;
* memory elements ``B[idx] += v`` whose indices do not change in the loop, under
  conditions that do not either (the final ``B[idx] += q`` keeps them), with no other
  access to ``B`` in the loop.

Products, ``max``/``min`` and integer sums are exact or lose nothing with the count.
"""

from __future__ import annotations

import dataclasses
import itertools

from codegen import kernel as k
from tc.ir import nodes as ir
from tc.ir.types import INDEX_TYPE, ScalarType

__all__ = ["CHUNK", "LEVELS", "chunk_sums"]

#: Iterations per chunk, and how many times a loop over chunks is chunked again.
CHUNK = 256
LEVELS = 3
_FLOATS = (ScalarType.FLOAT32, ScalarType.FLOAT64)
_I = INDEX_TYPE


def _int(v: int) -> ir.Expr:
    return ir.IntImm(v, type=_I)


def _bin(op: str, a: ir.Expr, b: ir.Expr, t: ScalarType = _I) -> ir.Expr:
    return ir.Binary(op, a, b, type=t)


def _names(e: ir.Expr) -> set[str]:
    return {n.name for n in ir.walk(e) if isinstance(n, ir.Var)}


def _bound_in(loop: k.For) -> set[str]:
    """Names that change inside ``loop``: its variable, inner loops', locals and
    assigned names."""
    out = {loop.var}
    for s in k.walk_stmts(loop.body):
        if isinstance(s, k.For):
            out.add(s.var)
        elif isinstance(s, k.Local | k.Assign):
            out.add(s.name)
    return out


def _linear(e: ir.Expr) -> dict[str, int] | None:
    """``e`` as ``{name: coefficient, "": constant}`` when it is linear in its
    variables (None otherwise)."""
    if isinstance(e, ir.IntImm):
        return {"": e.value}
    if isinstance(e, ir.Var):
        return {e.name: 1}
    if isinstance(e, ir.Binary) and e.op in ("+", "-"):
        a, b = _linear(e.a), _linear(e.b)
        if a is None or b is None:
            return None
        sign = 1 if e.op == "+" else -1
        return {n: a.get(n, 0) + sign * b.get(n, 0) for n in a.keys() | b.keys()}
    if isinstance(e, ir.Binary) and e.op == "*":
        a, b = _linear(e.a), _linear(e.b)
        if a is None or b is None:
            return None
        for x, y in ((a, b), (b, a)):
            if set(x) <= {""}:
                return {n: x.get("", 0) * c for n, c in y.items()}
    return None


def _trip_bound(loop: k.For) -> int | None:
    """An upper bound on the iterations of ``loop`` when a constant one follows from
    its condition: ``i < hi`` or ``i <= hi`` where ``hi`` (or one argument of a
    ``min``) minus the loop's start is a constant (a tile's point loop: ``i <=
    min(4 * t + 3, K - 1)`` from ``i = 4 * t``)."""
    c = loop.cond
    if not (isinstance(c, ir.Binary) and c.op in ("<", "<=")
            and c.a == ir.Var(loop.var, "loop", type=_I)):
        return None
    start = _linear(loop.init)
    if start is None:
        return None
    bounds, todo = [], [c.b]
    while todo:
        e = todo.pop()
        if isinstance(e, ir.Binary) and e.op == "min":
            todo += [e.a, e.b]
            continue
        hi = _linear(e)
        if hi is None:
            continue
        diff = {n: hi.get(n, 0) - start.get(n, 0) for n in hi.keys() | start.keys()}
        if all(v == 0 for n, v in diff.items() if n):
            last = diff.get("", 0) + (1 if c.op == "<=" else 0)
            bounds.append(max(0, -(-last // loop.step)))
    return min(bounds) if bounds else None


def _upper(loop: k.For) -> ir.Expr | None:
    """``hi`` of a loop ``var < hi`` (or ``var <= hi - 1``) whose ``hi`` does not
    depend on the loop; None for any other condition."""
    c = loop.cond
    if not (isinstance(c, ir.Binary) and c.op in ("<", "<=")
            and c.a == ir.Var(loop.var, "loop", type=_I)):
        return None
    if loop.var in _names(c.b):
        return None
    return c.b if c.op == "<" else _bin("+", c.b, _int(1))


@dataclasses.dataclass
class _Accumulators:
    locals_: dict[str, ScalarType]  # name -> type
    stores: list[tuple[k.Store, tuple[ir.Expr, ...]]]  # the store, its guards


def _find(loop: k.For, declared_outside: set[str]) -> _Accumulators:
    bound = _bound_in(loop)
    inner = {s.name for s in k.walk_stmts(loop.body) if isinstance(s, k.Local)}
    assigns: dict[str, list[k.Assign]] = {}
    for s in k.walk_stmts(loop.body):
        if isinstance(s, k.Assign) and s.name not in inner:
            assigns.setdefault(s.name, []).append(s)
    locals_: dict[str, ScalarType] = {}
    for name, updates in assigns.items():
        if name not in declared_outside:
            continue
        v = updates[0].value
        acc = ir.Var(name, "local", type=v.type)
        if v.type not in _FLOATS or not all(
                isinstance(u.value, ir.Binary) and u.value.op == "+" and u.value.a == acc
                and u.value.type == v.type and name not in _names(u.value.b) for u in updates):
            continue
        # Read nowhere else in the loop.
        reads = sum(1 for s in k.walk_stmts(loop.body) for e in k.own_exprs(s)
                    for n in ir.walk(e) if isinstance(n, ir.Var) and n.name == name)
        if reads == len(updates):
            locals_[name] = v.type
    stores: list[tuple[k.Store, tuple[ir.Expr, ...]]] = []
    touched: dict[str, int] = {}
    for s in k.walk_stmts(loop.body):
        for e in k.own_exprs(s):
            for n in ir.walk(e):
                if isinstance(n, ir.Read):
                    touched[n.tensor] = touched.get(n.tensor, 0) + 1
        if isinstance(s, k.Store):
            touched[s.buffer] = touched.get(s.buffer, 0) + 1

    def walk(s: k.Stmt, guards: tuple[ir.Expr, ...]) -> None:
        if isinstance(s, k.Store):
            if (s.op == "+" and s.value.type in _FLOATS and touched.get(s.buffer) == 1
                    and not any(_names(i) & bound for i in s.indices)):
                stores.append((s, guards))
            return
        if isinstance(s, k.If):
            if _names(s.cond) & bound:
                return  # a guard that changes in the loop: the final store could not keep it
            walk(s.then, (*guards, s.cond))
            if s.otherwise is not None:
                walk(s.otherwise, (*guards, ir.Unary("!", s.cond, type=ScalarType.BOOL)))
            return
        if isinstance(s, k.For | k.Scope | k.Block):
            for c in k.children(s):
                walk(c, guards)

    walk(loop.body, ())
    return _Accumulators(locals_, stores)


class _Chunker:
    def __init__(self) -> None:
        self.names = itertools.count()

    def fresh(self, base: str) -> str:
        return f"{base}_ch{next(self.names)}"

    def stmt(self, s: k.Stmt, declared: set[str]) -> k.Stmt:
        if isinstance(s, k.Block):
            out, seen = [], set(declared)
            for c in s.body:
                out.append(self.stmt(c, seen))
                if isinstance(c, k.Local):
                    seen.add(c.name)
            return k.Block(tuple(out))
        if isinstance(s, k.Scope):
            return k.Scope(self.stmt(s.body, set(declared)))
        if isinstance(s, k.If):
            return k.If(s.cond, self.stmt(s.then, declared),
                        None if s.otherwise is None else self.stmt(s.otherwise, declared))
        if isinstance(s, k.For):
            body = self.stmt(s.body, declared)
            return self.loop(dataclasses.replace(s, body=body), declared, LEVELS)
        return s

    def loop(self, loop: k.For, declared: set[str], levels: int) -> k.Stmt:
        if levels == 0 or loop.mapping is not None:
            return loop
        count = _trip_bound(loop)
        if count is not None and count <= CHUNK:
            return loop
        hi = _upper(loop)
        if hi is None:
            return loop
        acc = _find(loop, declared)
        if not acc.locals_ and not acc.stores:
            return loop
        # Partials: one per local accumulator and per accumulated memory element.
        part = {name: self.fresh(name) for name in acc.locals_}
        store_parts = [(st, guards, self.fresh(f"{st.buffer}_acc")) for st, guards in acc.stores]

        def rewrite(s: k.Stmt) -> k.Stmt:
            if isinstance(s, k.Assign) and s.name in part:
                v = s.value
                q = ir.Var(part[s.name], "local", type=v.type)
                return k.Assign(part[s.name], _bin("+", q, v.b, v.type))
            for st, _, name in store_parts:
                if s is st:
                    t = st.value.type
                    return k.Assign(name, _bin("+", ir.Var(name, "local", type=t), st.value, t))
            if isinstance(s, k.Block):
                return k.Block(tuple(rewrite(c) for c in s.body))
            if isinstance(s, k.Scope):
                return k.Scope(rewrite(s.body))
            if isinstance(s, k.If):
                return k.If(s.cond, rewrite(s.then),
                            None if s.otherwise is None else rewrite(s.otherwise))
            if isinstance(s, k.For):
                return dataclasses.replace(s, body=rewrite(s.body))
            return s

        outer = self.fresh(loop.var)
        ov = ir.Var(outer, "loop", type=_I)
        iv = ir.Var(loop.var, "loop", type=_I)
        end = _bin("min", _bin("+", ov, _int(CHUNK * loop.step)), hi)
        inner = dataclasses.replace(loop, init=ov, cond=_bin("<", iv, end, ScalarType.BOOL),
                                    body=rewrite(loop.body))
        zero = {ScalarType.FLOAT32: ir.FloatImm(0.0, type=ScalarType.FLOAT32),
                ScalarType.FLOAT64: ir.FloatImm(0.0, type=ScalarType.FLOAT64)}
        before: list[k.Stmt] = [k.Local(q, t, zero[t]) for name, q in part.items()
                                for t in (acc.locals_[name],)]
        before += [k.Local(q, st.value.type, zero[st.value.type]) for st, _, q in store_parts]
        after: list[k.Stmt] = []
        for name, q in part.items():
            t = acc.locals_[name]
            after.append(k.Assign(name, _bin("+", ir.Var(name, "local", type=t),
                                             ir.Var(q, "local", type=t), t)))
        for st, guards, q in store_parts:
            final: k.Stmt = k.Store(st.buffer, st.indices,
                                    ir.Var(q, "local", type=st.value.type), "+", st.origin)
            for g in reversed(guards):
                final = k.If(g, final)
            after.append(final)
        chunks = k.For(outer, loop.init, _bin("<", ov, hi, ScalarType.BOOL),
                       k.Scope(k.seq(*before, inner, *after)), CHUNK * loop.step)
        # The loop over chunks sums its partials into the same accumulators: chunk it
        # again (the partials are locals of its body, declared inside it).
        return self.loop(chunks, declared, levels - 1)


def chunk_sums(kern: k.Kernel) -> k.Kernel:
    """``kern`` with its long float sums added in chunks (see the module docstring)."""
    return dataclasses.replace(kern, body=_Chunker().stmt(kern.body, set()))
