"""Range inference (docs/language.md section 4), on symbolic sizes.

Each statement's indices get half-open ranges ``lo:hi`` whose bounds are
expressions of the size symbols. Ranges fixed by ``where i in LO:HI`` come first;
then, round after round, an index that is the only unknown of some subscripts gets
the largest interval that keeps all those subscripts in bounds for every value of
the known indices. Weak constraints (subscripts of reads padded by hand with a
guard) are used in a round only when no other constraint solves anything: they
give a range to an index nothing else reaches, and never narrow one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tc.ir.affine import Affine, bounds, linearize
from tc.ir.nodes import CMP_OPS, Binary, Expr, walk
from tc.ir.sym import Sym, smax, smin


@dataclass(frozen=True)
class Constraint:
    """A subscript that must lie in ``0 : extent`` (``weak``: where nothing else can
    say, see the module's docstring)."""

    subscript: Expr
    extent: Sym
    weak: bool = False


@dataclass(frozen=True)
class Unsolved:
    """An index range inference could not solve, and why."""

    index: str
    reason: str  # "unconstrained" | "coupled"
    partners: tuple[str, ...] = ()


def solve_one(
    aff: Affine, x: str, extent: Sym, known: Mapping[str, tuple[Sym, Sym]]
) -> tuple[Sym, Sym]:
    """The interval of ``x`` keeping ``aff`` in ``0:extent`` for all known indices."""
    a = aff.coeff(x)
    others = Affine(tuple((n, c) for n, c in aff.coeffs if n != x), aff.rest)
    rmin, rmax = bounds(others, known)
    if a > 0:
        # a*x + rmin >= 0  and  a*x + rmax <= extent - 1
        return (-rmin).ceildiv(a), (extent - 1 - rmax).floordiv(a) + 1
    a = -a
    # -a*x + rmax <= extent - 1  and  -a*x + rmin >= 0
    return (rmax - extent + 1).ceildiv(a), rmin.floordiv(a) + 1


def infer(
    indices: Sequence[str],
    fixed: Mapping[str, tuple[Sym, Sym]],
    constraints: Sequence[Constraint],
    lets: Mapping[str, Expr] | None = None,
) -> tuple[dict[str, tuple[Sym, Sym]], list[Unsolved]]:
    """Infer the ranges of ``indices``; returns the ranges and the indices left unsolved."""
    known: dict[str, tuple[Sym, Sym]] = {n: fixed[n] for n in indices if n in fixed}
    forms = []
    for c in constraints:
        aff = linearize(c.subscript, lets)
        if aff is not None and aff.coeffs:
            forms.append((aff, c.extent, c.weak))
    while True:
        found: dict[str, tuple[list[Sym], list[Sym]]] = {}
        for weak in (False, True):
            for aff, extent, w in forms:
                unknown = [n for n in aff.indices if n not in known]
                if w != weak or len(unknown) != 1:
                    continue
                lo, hi = solve_one(aff, unknown[0], extent, known)
                los, his = found.setdefault(unknown[0], ([], []))
                los.append(lo)
                his.append(hi)
            if found:
                break
        if not found:
            break
        for name, (los, his) in found.items():
            known[name] = (smax(los), smin(his))
    unsolved = []
    for n in indices:
        if n in known:
            continue
        partners = sorted({m for aff, _, _ in forms if n in aff.indices for m in aff.indices}
                          - {n} - set(known))
        unsolved.append(Unsolved(n, "coupled" if partners else "unconstrained",
                                 tuple(partners)))
    return known, unsolved


def compared_terms(
    conds: Sequence[Expr], lets: Mapping[str, Expr] | None = None
) -> list[dict[str, int]]:
    """The index terms of the affine comparisons in ``conds`` (``a < b`` gives those of
    ``a - b``): what a guard bounds."""
    out = []
    for cond in conds:
        for n in walk(cond):
            if not (isinstance(n, Binary) and n.op in CMP_OPS):
                continue
            a, b = linearize(n.a, lets), linearize(n.b, lets)
            if a is None or b is None:
                continue
            terms = dict(a.coeffs)
            for name, c in b.coeffs:
                terms[name] = terms.get(name, 0) - c
            terms = {name: c for name, c in terms.items() if c}
            if terms:
                out.append(terms)
    return out


def proportional(a: dict[str, int], b: dict[str, int]) -> bool:
    """Whether two index terms are multiples of each other (``i + k`` and ``-i - k``)."""
    if not a or a.keys() != b.keys():
        return False
    first = next(iter(a))
    return all(a[n] * b[first] == b[n] * a[first] for n in a)
