"""Guarded reads that their guard keeps in bounds, proved with isl.

A read under a condition (``c ? X(h + kh - 1) : 0``, the right operand of ``&&``) is
not checked on the host, since it may never run; the kernel checks it where it runs
(:mod:`tc.ir.bounds`). That check costs a compare and a branch per element and keeps
the loop from vectorising, yet a TC author usually writes the guard precisely to
keep the read in bounds (``conv2d_dx``'s full correlation). This module proves it:
under the stage's domain and every condition known to hold where the read is
evaluated, each affine subscript lies in ``0 : extent`` for every value of the sizes.

Safety model: a condition that cannot be written as isl constraints (a tensor's
value, a non-affine subscript, ``min`` of sizes) is dropped, which only weakens what
is known; a read is proved only when every occurrence of it (equal reads compare
equal) is; anything unproved keeps its run-time check. The interpreter always
checks.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import islpy as isl

from tc.ir import nodes as ir
from tc.ir.affine import Affine, linearize
from tc.ir.bounds import needs_runtime_check
from tc.ir.sym import Sym

_CMP = {"<": "<", "<=": "<=", ">": ">", ">=": ">=", "==": "=", "!=": "!="}
_NEGATED = {"<": ">=", "<=": ">", ">": "<=", ">=": "<", "==": "!=", "!=": "=="}


def _sym(s: Sym) -> str | None:
    """``s`` over the size parameters in isl syntax (None for min/max atoms)."""
    parts = [str(s.const)]
    for atom, c in s.terms:
        if atom.kind == "sym":
            text = f"p_{atom.name}"
        elif atom.kind == "div" and len(atom.args) == 1:
            inner = _sym(atom.args[0])
            if inner is None:
                return None
            text = f"floor(({inner})/{atom.divisor})"
        else:
            return None
        parts.append(f"{c}*{text}")
    return " + ".join(parts)


def _affine(a: Affine | None) -> str | None:
    if a is None:
        return None
    rest = _sym(a.rest)
    if rest is None:
        return None
    return " + ".join([rest, *(f"{c}*i_{n}" for n, c in a.coeffs)])


def _fact(e: ir.Expr, lets: Mapping[str, ir.Expr], negate: bool = False) -> str | None:
    """``e`` (or its negation) as isl constraints, None when it cannot be written."""
    if isinstance(e, ir.Unary) and e.op == "!":
        return _fact(e.a, lets, not negate)
    if isinstance(e, ir.Binary) and e.op in ("&&", "||"):
        a, b = _fact(e.a, lets, negate), _fact(e.b, lets, negate)
        both = (e.op == "&&") != negate  # a conjunction (De Morgan for a negated ||)
        if both:
            known = [x for x in (a, b) if x is not None]
            return " and ".join(f"({x})" for x in known) or None
        return None if a is None or b is None else f"({a}) or ({b})"
    if isinstance(e, ir.Binary) and e.op in _CMP:
        lhs, rhs = _affine(linearize(e.a, lets)), _affine(linearize(e.b, lets))
        if lhs is None or rhs is None:
            return None
        op = _NEGATED[e.op] if negate else e.op
        if op == "!=":
            return f"({lhs}) < ({rhs}) or ({lhs}) > ({rhs})"
        return f"({lhs}) {_CMP[op]} ({rhs})"
    return None


def _occurrences(e: ir.Expr, facts: tuple[ir.Expr | tuple, ...] = ()
                 ) -> Iterator[tuple[ir.Read, tuple]]:
    """Every read of ``e`` with the conditions known to hold where it is evaluated
    (a negated condition as ``("not", c)``)."""
    if isinstance(e, ir.Read):
        yield e, facts
    if isinstance(e, ir.Select):
        yield from _occurrences(e.cond, facts)
        yield from _occurrences(e.a, (*facts, e.cond))
        yield from _occurrences(e.b, (*facts, ("not", e.cond)))
        return
    if isinstance(e, ir.Binary) and e.op in ("&&", "||"):
        yield from _occurrences(e.a, facts)
        known = e.a if e.op == "&&" else ("not", e.a)
        yield from _occurrences(e.b, (*facts, known))
        return
    for c in ir.children(e):
        yield from _occurrences(c, facts)


def _lets(e: ir.Expr) -> tuple[dict[str, ir.Expr], ir.Expr]:
    lets = {}
    while isinstance(e, ir.Let):
        lets[e.name] = e.value
        e = e.body
    return lets, e


def _proved(fn: ir.Function, stage: ir.Stage, read: ir.Read, facts: tuple,
            lets: Mapping[str, ir.Expr], ctx: isl.Context) -> bool:
    constraints = []
    for d in stage.domain:
        lo, hi = _sym(d.lo), _sym(d.hi)
        if lo is None or hi is None:
            return False
        constraints.append(f"({lo}) <= i_{d.name} < ({hi})")
    for f in facts:
        text = (_fact(f[1], lets, negate=True) if isinstance(f, tuple)
                else _fact(f, lets))
        if text is not None:
            constraints.append(f"({text})")
    params = sorted({f"p_{s}" for s in fn.size_names})
    names = ", ".join(f"i_{d.name}" for d in stage.domain)
    where = " and ".join([*(f"{p} >= 0" for p in params), *constraints])
    try:
        known = isl.Set(f"[{', '.join(params)}] -> {{ [{names}] : {where} }}", context=ctx)
        for sub, extent in zip(read.indices, fn.tensor(read.tensor).shape, strict=True):
            s, ext = _affine(linearize(sub, lets)), _sym(extent)
            if s is None or ext is None:
                return False
            outside = isl.Set(f"[{', '.join(params)}] -> {{ [{names}] : ({s}) < 0 or "
                              f"({s}) >= ({ext}) }}", context=ctx)
            if not known.intersect(outside).is_empty():
                return False
    except isl.Error:
        return False
    return True


def proven_in_bounds(fn: ir.Function, stage: ir.Stage) -> set[ir.Read]:
    """The reads of ``stage`` that need a run-time check by :mod:`tc.ir.bounds` but
    that the conditions guarding them keep in bounds (see the module docstring)."""
    candidates = needs_runtime_check(stage)
    if not candidates:
        return set()
    lets, body = _lets(stage.rhs)
    ctx = isl.Context()
    verdict: dict[ir.Read, bool] = {}
    for value in (*lets.values(), body):
        for read, facts in _occurrences(value):
            if read in candidates and verdict.get(read, True):
                verdict[read] = _proved(fn, stage, read, facts, lets, ctx)
    return {r for r, ok in verdict.items() if ok}


__all__ = ["proven_in_bounds"]
