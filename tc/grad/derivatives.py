"""Reverse-mode differentiation of one right-hand side: the adjoint of each tensor read.

``partials(rhs, seed)`` walks the expression from the root, multiplying the adjoint
by each node's local derivative, and returns, for every floating-point tensor read,
the expression of ``seed * d rhs / d read``. Integer and boolean sub-expressions
(subscripts, conditions, casts from float to int) are piecewise constant: nothing
flows through them. A builtin without a derivative the language can express raises
:class:`NotDifferentiable`, which the caller turns into a positioned error.
"""

from __future__ import annotations

import math

from tc.grad import build as b
from tc.ir import nodes as ir


class NotDifferentiable(Exception):
    """The expression uses an operation with no derivative in the language."""


def _has_float_read(e: ir.Expr) -> bool:
    return any(isinstance(n, ir.Read) and n.type.is_float for n in ir.walk(e))


def _c(value: float, like: ir.Expr) -> ir.Expr:
    return b.const(value, like.type)


def _unary(fn: str, x: ir.Expr, y: ir.Expr, g: ir.Expr) -> ir.Expr | None:
    """``g * d fn(x) / dx``, with ``y = fn(x)``; None when the derivative is zero."""
    one = _c(1, x)
    if fn == "exp":
        return b.mul(g, y)
    if fn == "exp2":
        return b.mul(g, b.mul(y, _c(math.log(2), x)))
    if fn == "exp10":
        return b.mul(g, b.mul(y, _c(math.log(10), x)))
    if fn == "expm1":
        return b.mul(g, b.add(y, one))
    if fn == "log":
        return b.div(g, x)
    if fn == "log2":
        return b.div(g, b.mul(x, _c(math.log(2), x)))
    if fn == "log10":
        return b.div(g, b.mul(x, _c(math.log(10), x)))
    if fn == "log1p":
        return b.div(g, b.add(one, x))
    if fn == "sqrt":
        return b.div(b.mul(g, _c(0.5, x)), y)
    if fn == "rsqrt":  # d x^-1/2 = -x^-3/2 / 2
        return b.div(b.mul(g, b.mul(_c(-0.5, x), y)), x)
    if fn == "cbrt":
        return b.div(g, b.mul(_c(3, x), b.mul(y, y)))
    if fn == "rcbrt":
        return b.div(b.mul(g, b.mul(_c(-1 / 3, x), y)), x)
    if fn == "sin":
        return b.mul(g, b.call("cos", x))
    if fn == "cos":
        return b.neg(b.mul(g, b.call("sin", x)))
    if fn == "tan":
        return b.mul(g, b.add(one, b.mul(y, y)))
    if fn in ("asin", "acos"):
        d = b.mul(g, b.call("rsqrt", b.sub(one, b.mul(x, x))))
        return d if fn == "asin" else b.neg(d)
    if fn == "atan":
        return b.div(g, b.add(one, b.mul(x, x)))
    if fn == "sinh":
        return b.mul(g, b.call("cosh", x))
    if fn == "cosh":
        return b.mul(g, b.call("sinh", x))
    if fn == "tanh":
        return b.mul(g, b.sub(one, b.mul(y, y)))
    if fn == "asinh":
        return b.mul(g, b.call("rsqrt", b.add(b.mul(x, x), one)))
    if fn == "acosh":
        return b.mul(g, b.call("rsqrt", b.sub(b.mul(x, x), one)))
    if fn == "atanh":
        return b.div(g, b.sub(one, b.mul(x, x)))
    if fn in ("erf", "erfc"):
        d = b.mul(g, b.mul(_c(2 / math.sqrt(math.pi), x), b.call("exp", b.neg(b.mul(x, x)))))
        return d if fn == "erf" else b.neg(d)
    if fn in ("erfinv", "erfcinv"):
        d = b.mul(g, b.mul(_c(math.sqrt(math.pi) / 2, x), b.call("exp", b.mul(y, y))))
        return d if fn == "erfinv" else b.neg(d)
    if fn == "sigmoid":
        return b.mul(g, b.mul(y, b.sub(one, y)))
    if fn == "fabs":
        zero = _c(0, x)
        return b.select(b.cmp(">", x, zero), g,
                        b.select(b.cmp("<", x, zero), b.neg(g), b.const(0, g.type)))
    if fn in ("floor", "ceil", "round", "trunc", "logb"):
        return None
    return _unary_extra(fn, x, y, g)


def _unary_extra(fn: str, x: ir.Expr, y: ir.Expr, g: ir.Expr) -> ir.Expr:
    """The unary builtins of issue 14 (the rest of the original's)."""
    if fn == "cospi":
        return b.mul(g, b.mul(_c(-math.pi, x), b.call("sinpi", x)))
    if fn == "sinpi":
        return b.mul(g, b.mul(_c(math.pi, x), b.call("cospi", x)))
    if fn == "cyl_bessel_i0":
        return b.mul(g, b.call("cyl_bessel_i1", x))
    if fn in ("j0", "y0"):
        return b.neg(b.mul(g, b.call("j1" if fn == "j0" else "y1", x)))
    if fn in ("cyl_bessel_i1", "j1", "y1"):
        # I1' = I0 - I1/x, and J1', Y1' alike; I1 and J1 are x/2 + O(x^3) at 0, where
        # the quotient is 0/0 and the derivative 1/2 (Y1 has a pole there).
        order0 = {"cyl_bessel_i1": "cyl_bessel_i0", "j1": "j0", "y1": "y0"}[fn]
        d = b.sub(b.call(order0, x), b.div(y, x))
        if fn != "y1":
            d = b.select(b.cmp("==", x, _c(0, x)), _c(0.5, x), d)
        return b.mul(g, d)
    if fn == "erfcx":  # d exp(x^2) erfc(x) = 2x erfcx(x) - 2/sqrt(pi)
        return b.mul(g, b.sub(b.mul(_c(2, x), b.mul(x, y)), _c(2 / math.sqrt(math.pi), x)))
    if fn == "normcdf":
        density = b.call("exp", b.mul(_c(-0.5, x), b.mul(x, x)))
        return b.mul(g, b.mul(_c(1 / math.sqrt(2 * math.pi), x), density))
    if fn == "normcdfinv":
        return b.mul(g, b.mul(_c(math.sqrt(2 * math.pi), x),
                              b.call("exp", b.mul(_c(0.5, x), b.mul(y, y)))))
    raise NotDifferentiable(f"the builtin {fn}() has no derivative tc can express")


def _binary(fn: str, x: ir.Expr, z: ir.Expr, y: ir.Expr, g: ir.Expr
            ) -> tuple[ir.Expr | None, ir.Expr | None]:
    """Adjoints of the two arguments of ``y = fn(x, z)``."""
    zero = b.const(0, g.type)
    if fn in ("fmax", "fmin", "max", "min"):
        # The gradient goes to the argument chosen; ties go to the second one, so that
        # fmax(v, 0) has relu's gradient (0) at v == 0.
        first = b.cmp(">" if fn in ("fmax", "max") else "<", x, z)
        return b.select(first, g, zero), b.select(first, zero, g)
    if fn == "atan2":  # y = atan2(x, z)
        r = b.add(b.mul(x, x), b.mul(z, z))
        return b.div(b.mul(g, z), r), b.neg(b.div(b.mul(g, x), r))
    if fn == "fmod":
        return g, b.neg(b.mul(g, b.call("trunc", b.div(x, z))))
    if fn == "fdim":
        pos = b.cmp(">", x, z)
        return b.select(pos, g, zero), b.select(pos, b.neg(g), zero)
    if fn == "hypot":
        return b.div(b.mul(g, x), y), b.div(b.mul(g, z), y)
    if fn == "pow":
        dx = b.mul(g, b.mul(z, b.call("pow", x, b.sub(z, _c(1, z)))))
        dz = b.mul(g, b.mul(y, b.call("log", x))) if _has_float_read(z) else None
        return dx, dz
    if fn == "copysign":
        one = _c(1, x)
        return b.mul(g, b.mul(b.call("copysign", one, x), b.call("copysign", one, z))), None
    if fn == "fdivide":
        return b.div(g, z), b.neg(b.div(b.mul(g, x), b.mul(z, z)))
    if fn == "remainder":  # x - n * z, n = (x - y) / z rounded (an integer, exactly)
        return g, b.neg(b.mul(g, b.call("round", b.div(b.sub(x, y), z))))
    if fn == "nextafter":  # x moved by one ulp: x's gradient, as floor's is 0
        return g, None
    if fn == "rhypot":  # d (x^2 + z^2)^-1/2 / dx = -x y^3
        y3 = b.mul(y, b.mul(y, y))
        return b.neg(b.mul(g, b.mul(x, y3))), b.neg(b.mul(g, b.mul(z, y3)))
    raise NotDifferentiable(f"the builtin {fn}() has no derivative tc can express")


def partials(rhs: ir.Expr, seed: ir.Expr) -> list[tuple[ir.Read, ir.Expr]]:
    """``(read, seed * d rhs / d read)`` for every floating-point read of ``rhs``.

    ``rhs`` must have no lets (see :func:`tc.grad.build.inline_lets`). A read that
    occurs several times appears once per occurrence. Each adjoint is guarded by the
    conditions of the selects on the way to its read, so that it evaluates nothing
    (a neighbour's read, a local derivative) where the forward did not.
    """
    out: list[tuple[ir.Read, ir.Expr]] = []
    stack: list[tuple[ir.Expr, ir.Expr, ir.Expr | None]] = [(rhs, seed, None)]
    while stack:
        e, g, cond = stack.pop()
        if not e.type.is_float or not _has_float_read(e):
            continue
        if isinstance(e, ir.Read):
            out.append((e, b.select(cond, g, b.const(0, g.type))))
        elif isinstance(e, ir.Select):
            stack.append((e.a, g, b.land(cond, e.cond)))
            stack.append((e.b, g, b.land(cond, ir.Unary(type=b.BOOL, op="!", a=e.cond))))
        else:
            for child, adj in _local(e, g):
                if adj is not None and child.type.is_float:
                    stack.append((child, adj, cond))
    return out


def _local(e: ir.Expr, g: ir.Expr) -> list[tuple[ir.Expr, ir.Expr | None]]:
    """The children of ``e`` that gradients reach, each with its adjoint."""
    if isinstance(e, ir.Read):
        return []
    if isinstance(e, ir.Unary):
        return [(e.a, b.neg(g))] if e.op == "-" else []
    if isinstance(e, ir.Cast):
        return [(e.a, b.cast(g, e.a.type))] if e.a.type.is_float else []
    if isinstance(e, ir.Binary):
        x, z = e.a, e.b
        if e.op == "+":
            return [(x, g), (z, g)]
        if e.op == "-":
            return [(x, g), (z, b.neg(g))]
        if e.op == "*":
            return [(x, b.mul(g, z)), (z, b.mul(g, x))]
        if e.op == "/":
            return [(x, b.div(g, z)), (z, b.neg(b.div(b.mul(g, x), b.mul(z, z))))]
        if e.op in ("min", "max"):
            dx, dz = _binary(e.op, x, z, e, g)
            return [(x, dx), (z, dz)]
        return []  # comparisons and logic give bool
    if isinstance(e, ir.Call):
        if len(e.args) == 1:
            return [(e.args[0], _unary(e.fn, e.args[0], e, g))]
        if e.fn == "fma":
            x, z, w = e.args
            return [(x, b.mul(g, z)), (z, b.mul(g, x)), (w, g)]
        if e.fn in ("norm3d", "norm4d"):  # as hypot: x / y for each component
            return [(a, b.div(b.mul(g, a), e)) for a in e.args]
        if e.fn in ("rnorm3d", "rnorm4d"):  # -x y^3 for each component
            y3 = b.mul(e, b.mul(e, e))
            return [(a, b.neg(b.mul(g, b.mul(a, y3)))) for a in e.args]
        dx, dz = _binary(e.fn, e.args[0], e.args[1], e, g)
        return [(e.args[0], dx), (e.args[1], dz)]
    if isinstance(e, ir.Let):
        raise NotDifferentiable("internal: lets must be inlined before differentiating")
    return []
