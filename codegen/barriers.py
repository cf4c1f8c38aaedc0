"""Barrier placement: only where a dependence may cross threads, only in uniform code.

Code outside thread-distributed regions (mapped thread loops, statements guarded to
one thread) is uniform across a block: isl's loops and conditions never mention the
hardware ids. A barrier goes right before a piece of thread work when some statement
run since the last barrier has a dependence to a statement of that piece, counting
the work of earlier iterations of the loops around it. Dependences between instances
of one piece need none: the mapped loops carry no dependence, so such instances run
in the same thread.

PoCL 3.0 mishandles barriers under conditions (even uniform ones) and back-to-back
barriers, so a barrier that would sit inside an ``if`` is hoisted out of it (the
condition is uniform and only reads loop counters and sizes, so splitting the ``if``
around the barrier keeps the meaning).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Set as AbstractSet

from codegen import kernel as k
from tc.ir import nodes as ir

Pairs = AbstractSet[tuple[str, str]]


def _origins(s: k.Stmt) -> frozenset[str]:
    # A copy to or from shared memory stands for several statements: "S0|S1".
    return frozenset(o for n in k.walk_stmts(s) if isinstance(n, k.Store)
                     for o in n.origin.split("|"))


def _mentions_threads(e: ir.Expr) -> bool:
    return any(isinstance(n, k.HwId) and n.kind == "thread" for n in ir.walk(e))


def _is_thread_region(s: k.Stmt) -> bool:
    if isinstance(s, k.For) and (s.mapping and s.mapping.startswith("thread")
                                 or _mentions_threads(s.init) or _mentions_threads(s.cond)):
        return True
    if isinstance(s, k.If) and any(
        isinstance(n, k.HwId) and n.kind == "thread" for n in ir.walk(s.cond)
    ):
        return True
    return isinstance(s, k.Store | k.Scope | k.Local | k.Assign)


def _needs(pending: frozenset[str], names: frozenset[str], deps: Pairs) -> bool:
    return any((a, b) in deps for a in pending for b in names)


def _place(s: k.Stmt, pending: frozenset[str], deps: Pairs) -> tuple[k.Stmt, frozenset[str]]:
    """``s`` with barriers, given the statements run since the last barrier; returns
    the statements that may have run since the last barrier at the end of ``s``."""
    if isinstance(s, k.Barrier):
        return s, frozenset()
    names = _origins(s)
    if not names:
        return s, pending
    if _is_thread_region(s):
        if _needs(pending, names, deps):
            return k.seq(k.Barrier(), s), names
        return s, pending | names
    if isinstance(s, k.Block):
        out: list[k.Stmt] = []
        for c in s.body:
            c, pending = _place(c, pending, deps)
            out.append(c)
        return k.seq(*out), pending
    if isinstance(s, k.For):
        # An iteration also follows the previous ones (the iterations of a loop over
        # blocks are independent: its member carries no dependence).
        entry = pending
        while True:
            body, end = _place(s.body, entry, deps)
            if s.mapping or end <= entry:
                break
            # A later iteration follows what the body ran since its last barrier: grow
            # the entry set until it covers that (a fixpoint: names are finite).
            entry = entry | end
        loop = dataclasses.replace(s, body=body)
        return loop, pending | end  # the loop may run no iteration
    if isinstance(s, k.If):
        then, end = _place(s.then, pending, deps)
        other, end_other = (None, frozenset()) if s.otherwise is None else _place(
            s.otherwise, pending, deps)
        return k.If(s.cond, then, other), pending | end | end_other
    if isinstance(s, k.Scope):
        body, end = _place(s.body, pending, deps)
        return k.Scope(body), end
    return s, pending


def _has_barrier(s: k.Stmt) -> bool:
    return any(isinstance(n, k.Barrier) for n in k.walk_stmts(s))


def _guard(cond: ir.Expr, s: k.Stmt) -> k.Stmt:
    """``if (cond) s`` with every barrier of ``s`` moved out of the condition."""
    if not _has_barrier(s):
        return k.If(cond, s)
    if isinstance(s, k.Barrier):
        return s
    if isinstance(s, k.Block):
        return k.seq(*(_guard(cond, c) for c in s.body))
    if isinstance(s, k.For):
        # if (c) for (...) body == for (...) if (c) body: the bounds only read loop
        # counters and sizes, and the barrier now runs in every iteration, uniformly.
        return dataclasses.replace(s, body=_guard(cond, s.body))
    if isinstance(s, k.If):
        inner = _hoist(s)
        return _guard(cond, inner) if not isinstance(inner, k.If) else k.If(cond, inner)
    return k.If(cond, s)


def _hoist(s: k.Stmt) -> k.Stmt:
    """No barrier under an ``if``."""
    if isinstance(s, k.Block):
        return k.seq(*(_hoist(c) for c in s.body))
    if isinstance(s, k.For):
        return dataclasses.replace(s, body=_hoist(s.body))
    if isinstance(s, k.Scope):
        return k.Scope(_hoist(s.body))
    if isinstance(s, k.If) and _has_barrier(s):
        then = _guard(s.cond, _hoist(s.then))
        if s.otherwise is None:
            return then
        negated = ir.Unary("!", s.cond, type=s.cond.type)
        return k.seq(then, _guard(negated, _hoist(s.otherwise)))
    return s


def _dedupe(s: k.Stmt) -> k.Stmt:
    """No barrier right after another one."""
    if isinstance(s, k.Block):
        out: list[k.Stmt] = []
        for c in (_dedupe(c) for c in s.body):
            if isinstance(c, k.Barrier) and out and isinstance(out[-1], k.Barrier):
                continue
            out.append(c)
        return k.seq(*out)
    if isinstance(s, k.For):
        return dataclasses.replace(s, body=_dedupe(s.body))
    if isinstance(s, k.If):
        other = _dedupe(s.otherwise) if s.otherwise is not None else None
        return k.If(s.cond, _dedupe(s.then), other)
    return s


def place_barriers(body: k.Stmt, deps: Pairs) -> k.Stmt:
    """``body`` with the barriers its dependences need (``deps``: pairs of statement
    names with a dependence from the first to the second)."""
    placed, _ = _place(body, frozenset(), deps)
    return _dedupe(_hoist(placed))


def barrier_count(s: k.Stmt) -> int:
    return sum(isinstance(n, k.Barrier) for n in k.walk_stmts(s))
