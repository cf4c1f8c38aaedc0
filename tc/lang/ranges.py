"""Range inference (LANGUAGE.md section 4), on symbolic sizes.

Each statement's indices get half-open ranges ``lo:hi`` whose bounds are
expressions of the size symbols. Ranges fixed by ``where i in LO:HI`` come first;
then, round after round, an index that is the only unknown of some subscripts gets
the largest interval that keeps all those subscripts in bounds for every value of
the known indices.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tc.ir.affine import Affine, bounds, linearize
from tc.ir.nodes import Expr
from tc.ir.sym import Sym, smax, smin


@dataclass(frozen=True)
class Constraint:
    """A subscript that must lie in ``0 : extent``."""

    subscript: Expr
    extent: Sym


@dataclass(frozen=True)
class Unsolved:
    """An index range inference could not solve, and why."""

    index: str
    reason: str  # "unconstrained" | "coupled"
    partners: tuple[str, ...] = ()


def _solve_one(aff: Affine, x: str, extent: Sym, known: Mapping[str, tuple[Sym, Sym]]):
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
            forms.append((aff, c.extent))
    while True:
        found: dict[str, tuple[list[Sym], list[Sym]]] = {}
        for aff, extent in forms:
            unknown = [n for n in aff.indices if n not in known]
            if len(unknown) != 1:
                continue
            lo, hi = _solve_one(aff, unknown[0], extent, known)
            los, his = found.setdefault(unknown[0], ([], []))
            los.append(lo)
            his.append(hi)
        if not found:
            break
        for name, (los, his) in found.items():
            known[name] = (smax(los), smin(his))
    unsolved = []
    for n in indices:
        if n in known:
            continue
        partners = sorted({m for aff, _ in forms if n in aff.indices for m in aff.indices}
                          - {n} - set(known))
        unsolved.append(Unsolved(n, "coupled" if partners else "unconstrained",
                                 tuple(partners)))
    return known, unsolved
