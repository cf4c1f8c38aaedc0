"""The abstract syntax tree of TC text: frozen dataclasses, each with its source span.

The AST mirrors the text one to one (no name resolution, no types): sema turns it
into the Halide-like IR.
"""

from __future__ import annotations

from dataclasses import dataclass

from tc.ir.span import Span


@dataclass(frozen=True)
class Ident:
    name: str
    span: Span


# -- expressions -------------------------------------------------------------------
@dataclass(frozen=True)
class Expr:
    span: Span


@dataclass(frozen=True)
class IntLit(Expr):
    value: int


@dataclass(frozen=True)
class FloatLit(Expr):
    value: float
    text: str


@dataclass(frozen=True)
class Name(Expr):
    """A bare identifier: an index, a size symbol, a let binding or a scalar tensor."""

    name: str


@dataclass(frozen=True)
class Call(Expr):
    """``NAME(args)``: a tensor read or a builtin call, told apart by sema."""

    func: Ident
    args: tuple[Expr, ...]


@dataclass(frozen=True)
class Cast(Expr):
    """``TYPE(expr)``."""

    type_name: Ident
    args: tuple[Expr, ...]


@dataclass(frozen=True)
class Unary(Expr):
    op: str
    op_span: Span
    operand: Expr


@dataclass(frozen=True)
class Binary(Expr):
    op: str
    op_span: Span
    lhs: Expr
    rhs: Expr


@dataclass(frozen=True)
class Select(Expr):
    op_span: Span
    cond: Expr
    if_true: Expr
    if_false: Expr


# -- declarations and statements ----------------------------------------------------
@dataclass(frozen=True)
class DimDecl:
    """One dimension of a parameter: a size symbol (``name``) or a literal (``value``)."""

    span: Span
    name: str | None = None
    value: int | None = None


@dataclass(frozen=True)
class Param:
    span: Span
    type_name: Ident
    dims: tuple[DimDecl, ...]
    name: Ident


@dataclass(frozen=True)
class Result:
    span: Span
    name: Ident
    type_name: Ident | None = None  # None for a bare result, whose type is inferred
    dims: tuple[DimDecl, ...] = ()


@dataclass(frozen=True)
class RangeClause:
    span: Span
    index: Ident
    lo: Expr
    hi: Expr


@dataclass(frozen=True)
class ExistsClause:
    span: Span
    expr: Expr


@dataclass(frozen=True)
class LetClause:
    span: Span
    name: Ident
    expr: Expr


Clause = RangeClause | ExistsClause | LetClause


@dataclass(frozen=True)
class Equivalent:
    """``<=> name(args)`` after a right-hand side: the original's annotation declaring
    the statement equal to a library computation. Kept and printed, never checked nor
    computed (its arguments are any expressions)."""

    span: Span
    name: Ident
    args: tuple[Expr, ...]


@dataclass(frozen=True)
class Statement:
    span: Span
    tensor: Ident
    indices: tuple[Ident, ...]
    op: str
    op_span: Span
    rhs: Expr
    clauses: tuple[Clause, ...]
    equivalent: Equivalent | None = None


@dataclass(frozen=True)
class Definition:
    span: Span
    name: Ident
    params: tuple[Param, ...]
    results: tuple[Result, ...]
    statements: tuple[Statement, ...]
    arrow: Span | None = None  # the '->', where a definition without results is reported


@dataclass(frozen=True)
class Program:
    definitions: tuple[Definition, ...]
    source: str


def expr_children(e: Expr) -> tuple[Expr, ...]:
    """The sub-expressions of ``e``, in source order."""
    if isinstance(e, Call | Cast):
        return e.args
    if isinstance(e, Unary):
        return (e.operand,)
    if isinstance(e, Binary):
        return (e.lhs, e.rhs)
    if isinstance(e, Select):
        return (e.cond, e.if_true, e.if_false)
    return ()


def walk(e: Expr):
    """Every node of ``e``, pre-order, in source order."""
    stack = [e]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(reversed(expr_children(node)))
