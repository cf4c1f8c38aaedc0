"""Warnings about valid TC text that is probably not what was meant (docs/language.md
section 5), from what range inference saw of one statement.

* **Narrowed index.** An index whose range is inferred and that subscripts a tensor
  dimension directly (``w(kw)``), while a subscript it shares with other indices cuts
  its range below what its own subscripts allow (``x(i + kw - 1)`` with ``i in 0:L``
  leaves ``kw`` in ``1:2``): the direct read sees part of its dimension, and a sum over
  ``kw`` silently drops taps. Ranges that agree for some sizes (every size at least
  2) are not flagged: ``min(N - K + 1, M)`` against ``M`` is the user's
  ``M = N - K + 1``, whereas ``1:2`` against ``0:KW`` never agrees.
* **Single-use reduction indices.** Two reduction indices over the same range that
  each appear exactly once, as a whole subscript of two different reads
  (``C(m, n) +=! A(m, k) * B(kk, n)``): the statement sums a cross product, most likely
  a typo for one index. One reduction index used once (``s(m) +=! A(m, k)``), or two
  in the same read (``s +=! A(m, k)``), is an ordinary reduction.

An index given a ``where`` range is the user's choice: neither check applies to it.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tc.errors import TcWarning
from tc.ir import nodes as ir
from tc.ir.affine import linearize
from tc.ir.printer import expr_str
from tc.ir.span import Span
from tc.ir.sym import Sym
from tc.lang.ranges import Constraint, infer, solve_one

Range = tuple[Sym, Sym]


@dataclass(frozen=True)
class Access:
    """A subscript of range inference: dimension ``dim`` of ``read``, the
    ``read_no``-th read of its statement."""

    read: ir.Read
    dim: int
    subscript: ir.Expr
    extent: Sym
    read_no: int
    weak: bool = False  # compared in the read's guard: see tc.lang.ranges


@dataclass(frozen=True)
class StatementFacts:
    """What one statement's range inference used and found."""

    accesses: Sequence[Access]
    constraints: Sequence[Constraint]
    ranges: Mapping[str, Range]
    fixed: set[str]  # indices with a `where` range
    lhs: Sequence[str]
    reductions: Sequence[str]  # empty unless the statement reduces
    exprs: Sequence[ir.Expr]  # right-hand side, let values and exists clauses
    lets: Mapping[str, ir.Expr]


def lint_statement(facts: StatementFacts, source: str) -> list[TcWarning]:
    """The warnings of one statement, in source order."""
    out = _narrowed(facts, source) + _single_use(facts, source)
    return sorted(out, key=lambda w: (w.line or 0, w.column or 0))


def _warning(msg: str, span: Span | None, source: str) -> TcWarning:
    if span is None:
        return TcWarning(msg)
    return TcWarning(msg, line=span.line, column=span.column, source=source)


def _direct(a: Access) -> str | None:
    s = a.subscript
    return s.name if isinstance(s, ir.Var) and s.kind == "index" else None


def _narrowed(facts: StatementFacts, source: str) -> list[TcWarning]:
    out = []
    forms = []
    # The accesses' constraints come first, then those of a typed result (no access).
    for c, a in itertools.zip_longest(facts.constraints, facts.accesses):
        aff = linearize(c.subscript, facts.lets)
        if aff is not None and aff.coeffs and not c.weak:
            forms.append((aff, c, a))
    warned: set[str] = set()
    for a in facts.accesses:
        n = _direct(a) if not a.weak else None
        if n is None or n in facts.fixed or n in warned or n not in facts.ranges:
            continue
        own = [c for aff, c, _ in forms if set(aff.indices) == {n}]
        mine, _ = infer([n], {}, own, facts.lets)
        if n not in mine:
            continue
        wide, got = mine[n], facts.ranges[n]
        if got == wide or _could_agree(got, wide):
            continue
        warned.add(n)
        culprit = _culprit(n, wide, forms, facts)
        why = ("; a subscript that also uses other indices narrows it. If a read is meant "
               "to be padded, guard it with a condition comparing its subscript to the "
               "bounds")
        if culprit is not None:
            at = culprit.read.span
            where = f" at line {at.line}, column {at.column}" if at else ""
            sub = expr_str(culprit.subscript)
            why = (f"; the subscript '{sub}' of '{culprit.read.tensor}'{where}, which also "
                   f"uses other indices, narrows it. If that read is meant to be padded, "
                   f"guard it: '{sub} >= 0 && {sub} < {culprit.extent} ? ... : 0.0'")
        out.append(_warning(
            f"index '{n}' ranges over {got[0]}:{got[1]}, so '{a.read.tensor}' is read over "
            f"only part of its dimension {a.dim + 1} (extent {a.extent}){why}; if the range "
            f"is meant, write 'where {n} in {got[0]}:{got[1]}'",
            a.subscript.span or a.read.span, source))
    return out


def _culprit(n: str, wide: Range, forms, facts: StatementFacts) -> Access | None:
    """The first subscript sharing ``n`` with other indices that cuts ``wide``."""
    for aff, c, a in forms:
        if a is None or n not in aff.indices or len(aff.indices) < 2:
            continue
        if any(m not in facts.ranges for m in aff.indices):
            continue
        known = {m: facts.ranges[m] for m in aff.indices if m != n}
        if not _could_agree(solve_one(aff, n, c.extent, known), wide, covers=True):
            return a
    return None


def _could_agree(a: Range, b: Range, covers: bool = False) -> bool:
    """Whether ranges ``a`` and ``b`` are equal for some sizes, every size at least 2 (a
    size of 1 makes any range of one element "full"); with ``covers``, whether ``a``
    contains ``b`` for some sizes."""
    names = sorted(frozenset().union(*(s.symbols() for s in (*a, *b))))

    def agree(env: Mapping[str, int]) -> bool:
        lo_a, hi_a, lo_b, hi_b = (s.evaluate(env) for s in (*a, *b))
        if covers:
            return lo_a <= lo_b and hi_a >= hi_b
        return lo_a == lo_b and hi_a == hi_b

    if len(names) <= 4:
        envs = (dict(zip(names, v, strict=True))
                for v in itertools.product(range(2, 10), repeat=len(names)))
    else:  # too many sizes to enumerate: a fixed sample, so the answer is repeatable
        rng = random.Random(0)
        envs = ({m: rng.randrange(2, 17) for m in names} for _ in range(4000))
    return any(agree(env) for env in envs)


def _single_use(facts: StatementFacts, source: str) -> list[TcWarning]:
    if len(facts.reductions) < 2:
        return []
    count: dict[str, int] = {}
    for e in facts.exprs:
        for node in ir.walk(e):
            if isinstance(node, ir.Var) and node.kind == "index":
                count[node.name] = count.get(node.name, 0) + 1
    once: dict[str, Access] = {}
    for a in facts.accesses:
        n = _direct(a) if not a.weak else None
        if (n in facts.reductions and n not in facts.fixed and count.get(n) == 1
                and n in facts.ranges):
            once[n] = a
    out = []
    seen: list[str] = []
    for n in sorted(once, key=lambda m: _pos(once[m])):
        a = once[n]
        twin = next((m for m in seen if once[m].read_no != a.read_no
                     and facts.ranges[m] == facts.ranges[n]), None)
        seen.append(n)
        if twin is None:
            continue
        at = once[twin].subscript.span or once[twin].read.span
        where = f" (line {at.line}, column {at.column})" if at else ""
        lo, hi = facts.ranges[n]
        out.append(_warning(
            f"reduction index '{n}' appears only here, and so does '{twin}'{where}, both "
            f"over {lo}:{hi}: the statement sums over every pair ({twin}, {n}), a cross "
            f"product. If they are meant to be one index, use one name; if the cross "
            f"product is meant, write 'where {n} in {lo}:{hi}'",
            a.subscript.span or a.read.span, source))
    return out


def _pos(a: Access) -> tuple[int, int]:
    span = a.subscript.span or a.read.span
    return (span.line, span.column) if span else (0, 0)
