"""Symbolic integer expressions of the size symbols (for ranges and tensor extents).

A :class:`Sym` is a normalised linear combination of atoms plus a constant. The atoms
are size symbols, floor divisions by positive constants, and min / max of several
expressions: exactly what range inference produces and what isl accepts as a
quasi-affine piecewise expression. Normalisation makes structural equality a useful
(sound, incomplete) test of equality.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Atom:
    """A non-linear building block: a symbol, ``floor(e / d)``, ``min(...)`` or ``max(...)``."""

    kind: str  # "sym" | "div" | "min" | "max"
    name: str = ""
    args: tuple[Sym, ...] = ()
    divisor: int = 1


@dataclass(frozen=True, order=True)
class Sym:
    """``sum(coeff * atom) + const``, with atoms sorted and no zero coefficient."""

    terms: tuple[tuple[Atom, int], ...] = ()
    const: int = 0

    # -- construction -------------------------------------------------------
    @staticmethod
    def of(value: int | str | Sym) -> Sym:
        if isinstance(value, Sym):
            return value
        if isinstance(value, bool):
            raise TypeError("a bool is not a size")
        if isinstance(value, int):
            return Sym((), value)
        return Sym(((Atom("sym", name=value), 1),), 0)

    @staticmethod
    def _make(coeffs: dict[Atom, int], const: int) -> Sym:
        terms = tuple(sorted((a, c) for a, c in coeffs.items() if c != 0))
        return Sym(terms, const)

    # -- arithmetic -----------------------------------------------------------
    def __add__(self, other: int | Sym) -> Sym:
        other = Sym.of(other)
        coeffs = dict(self.terms)
        for atom, c in other.terms:
            coeffs[atom] = coeffs.get(atom, 0) + c
        return Sym._make(coeffs, self.const + other.const)

    __radd__ = __add__

    def __neg__(self) -> Sym:
        return self * -1

    def __sub__(self, other: int | Sym) -> Sym:
        return self + (-Sym.of(other))

    def __rsub__(self, other: int | Sym) -> Sym:
        return Sym.of(other) - self

    def __mul__(self, k: int) -> Sym:
        if not isinstance(k, int):
            if isinstance(k, Sym) and k.is_const:
                k = k.const
            elif self.is_const:
                return Sym.of(k) * self.const
            else:
                raise TypeError("only multiplication by a constant is affine")
        return Sym._make({a: c * k for a, c in self.terms}, self.const * k)

    __rmul__ = __mul__

    def floordiv(self, d: int) -> Sym:
        """``floor(self / d)`` for a positive constant ``d``."""
        if d <= 0:
            raise ValueError("division by a non-positive constant")
        if d == 1:
            return self
        # floor((d*q + r + d*k + m) / d) = q + k + floor((r + m) / d): pull out of the
        # division every term and the part of the constant that ``d`` divides, so that
        # equal expressions get one normal form ((N + 3) / 3 is N / 3 + 1).
        whole = Sym._make({a: c // d for a, c in self.terms if c % d == 0}, self.const // d)
        rest = Sym._make({a: c for a, c in self.terms if c % d != 0}, self.const % d)
        if rest.is_const:
            return whole + rest.const // d
        return whole + Sym(((Atom("div", args=(rest,), divisor=d), 1),), 0)

    def ceildiv(self, d: int) -> Sym:
        return (self + (d - 1)).floordiv(d)

    # -- queries ---------------------------------------------------------------
    @property
    def is_const(self) -> bool:
        return not self.terms

    def symbols(self) -> frozenset[str]:
        out: set[str] = set()
        for atom, _ in self.terms:
            if atom.kind == "sym":
                out.add(atom.name)
            for a in atom.args:
                out |= a.symbols()
        return frozenset(out)

    def evaluate(self, env: Mapping[str, int]) -> int:
        """The value for concrete sizes; raises KeyError for a missing symbol."""
        total = self.const
        for atom, c in self.terms:
            total += c * _eval_atom(atom, env)
        return total

    def substitute(self, env: Mapping[str, Sym]) -> Sym:
        total = Sym.of(self.const)
        for atom, c in self.terms:
            if atom.kind == "sym":
                v = env.get(atom.name, Sym.of(atom.name))
            elif atom.kind == "div":
                v = atom.args[0].substitute(env).floordiv(atom.divisor)
            else:
                args = [a.substitute(env) for a in atom.args]
                v = smin(args) if atom.kind == "min" else smax(args)
            total = total + v * c
        return total

    # -- printing ----------------------------------------------------------------
    def __str__(self) -> str:
        return self.render(_tc_atom)

    def __repr__(self) -> str:
        return f"Sym({str(self)!r})"

    def to_isl(self) -> str:
        """The expression in isl's textual syntax."""
        return self.render(_isl_atom)

    def render(self, atom_fmt) -> str:
        parts: list[str] = []
        # Positive terms first, so that ``W - KW`` does not print as ``-KW + W``.
        for atom, c in sorted(self.terms, key=lambda t: t[1] < 0):
            text = atom_fmt(atom)
            if c == 1:
                parts.append(f"+ {text}")
            elif c == -1:
                parts.append(f"- {text}")
            elif c < 0:
                parts.append(f"- {-c} * {text}")
            else:
                parts.append(f"+ {c} * {text}")
        if self.const or not parts:
            parts.append(f"- {-self.const}" if self.const < 0 else f"+ {self.const}")
        text = " ".join(parts)
        if text.startswith("+ "):
            return text[2:]
        return "-" + text[2:]


def _eval_atom(atom: Atom, env: Mapping[str, int]) -> int:
    if atom.kind == "sym":
        value = env[atom.name]
        # Integers (numpy's too) become ints; anything else that does integer arithmetic
        # (torch.SymInt, when torch traces with dynamic shapes) is kept as it is.
        return int(value) if isinstance(value, numbers.Integral) else value
    if atom.kind == "div":
        return atom.args[0].evaluate(env) // atom.divisor
    values = [a.evaluate(env) for a in atom.args]
    return min(values) if atom.kind == "min" else max(values)


def _needs_parens(e: Sym) -> bool:
    return len(e.terms) + (1 if e.const else 0) > 1 or (e.terms and e.terms[0][1] != 1)


def _tc_atom(atom: Atom) -> str:
    if atom.kind == "sym":
        return atom.name
    if atom.kind == "div":
        inner = str(atom.args[0])
        return f"({inner}) / {atom.divisor}" if _needs_parens(atom.args[0]) else (
            f"{inner} / {atom.divisor}"
        )
    return f"{atom.kind}({', '.join(str(a) for a in atom.args)})"


def _isl_atom(atom: Atom) -> str:
    if atom.kind == "sym":
        return atom.name
    if atom.kind == "div":
        return f"floor(({atom.args[0].to_isl()})/{atom.divisor})"
    # isl's syntax takes min/max of two arguments: nest them.
    args = [a.to_isl() for a in atom.args]
    text = args[0]
    for a in args[1:]:
        text = f"{atom.kind}({text}, {a})"
    return text


def _combine(kind: str, items: Iterable[int | Sym]) -> Sym:
    flat: list[Sym] = []
    for item in items:
        e = Sym.of(item)
        if len(e.terms) == 1 and e.const == 0 and e.terms[0][1] == 1:
            atom = e.terms[0][0]
            if atom.kind == kind:
                flat.extend(atom.args)
                continue
        flat.append(e)
    keep: list[Sym] = []
    for e in flat:
        dominated = False
        for i, k in enumerate(keep):
            diff = e - k
            if diff.is_const:
                better = diff.const < 0 if kind == "min" else diff.const > 0
                if better:
                    keep[i] = e
                dominated = True
                break
        if not dominated:
            keep.append(e)
    if len(keep) == 1:
        return keep[0]
    args = tuple(sorted(set(keep), key=str))
    return Sym(((Atom(kind, args=args), 1),), 0)


def smin(items: Iterable[int | Sym]) -> Sym:
    """The minimum of several expressions, simplified where their difference is constant."""
    return _combine("min", items)


def smax(items: Iterable[int | Sym]) -> Sym:
    """The maximum of several expressions, simplified where their difference is constant."""
    return _combine("max", items)
