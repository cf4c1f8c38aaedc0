"""Affine analysis of integer IR expressions: ``sum(coeff * index) + f(sizes)``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from tc.ir import nodes as ir
from tc.ir.sym import Sym, smax, smin


@dataclass(frozen=True)
class Affine:
    """``sum(coeffs[i] * i) + rest``, where ``rest`` depends on size symbols only."""

    coeffs: tuple[tuple[str, int], ...]
    rest: Sym

    @property
    def indices(self) -> tuple[str, ...]:
        return tuple(n for n, _ in self.coeffs)

    def coeff(self, name: str) -> int:
        return dict(self.coeffs).get(name, 0)


def _make(coeffs: dict[str, int], rest: Sym) -> Affine:
    return Affine(tuple(sorted((n, c) for n, c in coeffs.items() if c)), rest)


def linearize(e: ir.Expr, lets: Mapping[str, ir.Expr] | None = None) -> Affine | None:
    """The affine form of ``e``, or None when it is not affine in the indices.

    ``lets`` maps let-bound names to their values, which are inlined.
    """
    lets = lets or {}
    if isinstance(e, ir.IntImm):
        return Affine((), Sym.of(e.value))
    if isinstance(e, ir.Var):
        if e.kind == "index":
            return Affine(((e.name, 1),), Sym.of(0))
        if e.kind == "size":
            return Affine((), Sym.of(e.name))
        if e.name in lets:
            return linearize(lets[e.name], lets)
        return None
    if isinstance(e, ir.Let):
        return linearize(e.body, {**lets, e.name: e.value})
    if isinstance(e, ir.Cast):
        # Integer casts that cannot wrap an index are transparent.
        if e.type.is_int and e.type.bits >= 32 and e.a.type.is_int:
            return linearize(e.a, lets)
        return None
    if isinstance(e, ir.Unary) and e.op == "-":
        a = linearize(e.a, lets)
        return None if a is None else _make({n: -c for n, c in a.coeffs}, -a.rest)
    if isinstance(e, ir.Binary) and e.op in ("+", "-", "*"):
        a, b = linearize(e.a, lets), linearize(e.b, lets)
        if a is None or b is None:
            return None
        if e.op == "*":
            if not a.coeffs and a.rest.is_const:
                a, b = b, a
            if b.coeffs or not b.rest.is_const:
                return None  # a product of two non-constants is not affine
            k = b.rest.const
            return _make({n: c * k for n, c in a.coeffs}, a.rest * k)
        sign = 1 if e.op == "+" else -1
        coeffs = dict(a.coeffs)
        for n, c in b.coeffs:
            coeffs[n] = coeffs.get(n, 0) + sign * c
        return _make(coeffs, a.rest + b.rest * sign)
    return None


def bounds(aff: Affine, ranges: Mapping[str, tuple[Sym, Sym]]) -> tuple[Sym, Sym]:
    """The smallest and largest value of ``aff`` over the box ``ranges`` (half-open)."""
    lo, hi = aff.rest, aff.rest
    for name, c in aff.coeffs:
        r_lo, r_hi = ranges[name]
        if c > 0:
            lo, hi = lo + r_lo * c, hi + (r_hi - 1) * c
        else:
            lo, hi = lo + (r_hi - 1) * c, hi + r_lo * c
    return lo, hi


__all__ = ["Affine", "linearize", "bounds", "smin", "smax"]
