"""Small constructors of IR expressions for the derived backward, with light folding.

The backward is printed as TC text and checked again by the front end, so these
nodes only need the types that decide how a constant is spelt (``0.5`` in float32,
``float64(0.5)`` in double); sema re-derives every cast. Folding ``x * 1``, ``x + 0``
and ``c ? 0 : 0`` keeps the derived text close to what a person would write.
"""

from __future__ import annotations

from tc.ir import nodes as ir
from tc.ir.sym import Sym
from tc.ir.types import ScalarType

BOOL = ScalarType.BOOL
INT32 = ScalarType.INT32
INT64 = ScalarType.INT64


def const(value: float, t: ScalarType) -> ir.Expr:
    """The constant ``value`` in type ``t``."""
    if t.is_float:
        return ir.FloatImm(type=t, value=float(value))
    return ir.IntImm(type=t, value=int(value))


def is_const(e: ir.Expr, value: float) -> bool:
    return isinstance(e, ir.FloatImm | ir.IntImm) and e.value == value


def var(name: str, t: ScalarType = INT32, kind: str = "index") -> ir.Var:
    return ir.Var(type=t, name=name, kind=kind)


def sym(s: Sym) -> ir.Expr:
    """A size expression as an integer IR expression (printed as its TC spelling)."""
    if s.is_const:
        return ir.IntImm(type=INT32, value=s.const)
    text = str(s)
    simple = text.isidentifier()
    return ir.Var(type=INT32, name=text if simple else f"({text})", kind="size")


def read(tensor: str, indices: tuple[ir.Expr, ...], t: ScalarType) -> ir.Read:
    return ir.Read(type=t, tensor=tensor, indices=indices)


def neg(a: ir.Expr) -> ir.Expr:
    if isinstance(a, ir.Unary) and a.op == "-":
        return a.a
    if isinstance(a, ir.FloatImm | ir.IntImm):
        return const(-a.value, a.type)
    return ir.Unary(type=a.type, op="-", a=a)


def add(a: ir.Expr, b: ir.Expr) -> ir.Expr:
    if is_const(a, 0):
        return b
    if is_const(b, 0):
        return a
    return ir.Binary(type=a.type, op="+", a=a, b=b)


def sub(a: ir.Expr, b: ir.Expr) -> ir.Expr:
    if is_const(b, 0):
        return a
    if is_const(a, 0):
        return neg(b)
    return ir.Binary(type=a.type, op="-", a=a, b=b)


def mul(a: ir.Expr, b: ir.Expr) -> ir.Expr:
    if is_const(a, 1):
        return b
    if is_const(b, 1):
        return a
    if is_const(a, -1):
        return neg(b)
    if is_const(b, -1):
        return neg(a)
    return ir.Binary(type=a.type, op="*", a=a, b=b)


def div(a: ir.Expr, b: ir.Expr) -> ir.Expr:
    if is_const(b, 1):
        return a
    return ir.Binary(type=a.type, op="/", a=a, b=b)


def cmp(op: str, a: ir.Expr, b: ir.Expr) -> ir.Expr:
    return ir.Binary(type=BOOL, op=op, a=a, b=b)


def land(a: ir.Expr | None, b: ir.Expr | None) -> ir.Expr | None:
    """``a && b``, where None means "true"."""
    if a is None:
        return b
    if b is None:
        return a
    return ir.Binary(type=BOOL, op="&&", a=a, b=b)


def select(cond: ir.Expr | None, a: ir.Expr, b: ir.Expr) -> ir.Expr:
    if cond is None:
        return a
    if is_const(a, 0) and is_const(b, 0):
        return a
    return ir.Select(type=a.type, cond=cond, a=a, b=b)


def call(fn: str, *args: ir.Expr) -> ir.Expr:
    return ir.Call(type=args[0].type, fn=fn, args=tuple(args))


def cast(a: ir.Expr, t: ScalarType) -> ir.Expr:
    return a if a.type == t else ir.Cast(type=t, a=a)


class Substitute(ir.Mutator):
    """Replaces index variables (by name) and renames tensor reads."""

    def __init__(self, indices: dict[str, ir.Expr] | None = None,
                 tensors: dict[str, str] | None = None) -> None:
        self.indices = indices or {}
        self.tensors = tensors or {}

    def mutate_Var(self, e: ir.Var) -> ir.Expr:
        if e.kind == "index" and e.name in self.indices:
            return self.indices[e.name]
        return e

    def mutate_Read(self, e: ir.Read) -> ir.Expr:
        e = self.generic(e)
        name = self.tensors.get(e.tensor)
        return e if name is None else ir.Read(type=e.type, tensor=name, indices=e.indices,
                                              span=e.span)


class InlineLets(ir.Mutator):
    """Replaces every let-bound name by its (inlined) value."""

    def __init__(self, env: dict[str, ir.Expr] | None = None) -> None:
        self.env = env or {}

    def mutate_Let(self, e: ir.Let) -> ir.Expr:
        value = self.mutate(e.value)
        return InlineLets({**self.env, e.name: value}).mutate(e.body)

    def mutate_Var(self, e: ir.Var) -> ir.Expr:
        if e.kind == "let" and e.name in self.env:
            return self.env[e.name]
        return e


def inline_lets(e: ir.Expr) -> ir.Expr:
    return InlineLets().mutate(e)


def reads(e: ir.Expr) -> list[ir.Read]:
    """Every tensor read of ``e`` (subscripts included)."""
    return [n for n in ir.walk(e) if isinstance(n, ir.Read)]
