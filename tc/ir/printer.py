"""Printing the IR as readable text (``python -m tc explain --stage ir``)."""

from __future__ import annotations

from collections.abc import Mapping

from tc.ir import nodes as ir
from tc.ir.sym import Sym

# Binding strength of each operator, for minimal parentheses.
_PREC = {"||": 1, "&&": 2, "<": 3, "<=": 3, ">": 3, ">=": 3, "==": 3, "!=": 3,
         "+": 4, "-": 4, "*": 5, "/": 5, "%": 5}


def expr_str(e: ir.Expr, prec: int = 0) -> str:
    """An expression in TC-like syntax with explicit casts."""
    if isinstance(e, ir.IntImm):
        return str(e.value) if e.type.value == "int32" else f"{e.type}({e.value})"
    if isinstance(e, ir.FloatImm):
        text = repr(float(e.value))
        return text if e.type.value == "float32" else f"{e.type}({text})"
    if isinstance(e, ir.Var):
        return e.name
    if isinstance(e, ir.Read):
        if not e.indices:
            return e.tensor
        return f"{e.tensor}({', '.join(expr_str(i) for i in e.indices)})"
    if isinstance(e, ir.Unary):
        return f"{e.op}{expr_str(e.a, 6)}"
    if isinstance(e, ir.Cast):
        return f"{e.type}({expr_str(e.a)})"
    if isinstance(e, ir.Call):
        return f"{e.fn}({', '.join(expr_str(a) for a in e.args)})"
    if isinstance(e, ir.Binary):
        if e.op in ("min", "max"):
            return f"{e.op}({expr_str(e.a)}, {expr_str(e.b)})"
        p = _PREC[e.op]
        text = f"{expr_str(e.a, p)} {e.op} {expr_str(e.b, p + 1)}"
        return f"({text})" if p < prec else text
    if isinstance(e, ir.Select):
        text = f"{expr_str(e.cond, 1)} ? {expr_str(e.a, 1)} : {expr_str(e.b)}"
        return f"({text})" if prec > 0 else text
    if isinstance(e, ir.Let):
        return f"(let {e.name} = {expr_str(e.value)} in {expr_str(e.body)})"
    raise TypeError(f"not an IR expression: {e!r}")


def _sym(s: Sym, sizes: Mapping[str, int] | None) -> str:
    if sizes:
        try:
            return str(s.evaluate(sizes))
        except KeyError:
            pass
    return str(s)


def _decl(t: ir.TensorDecl, sizes: Mapping[str, int] | None) -> str:
    if not t.shape:
        return f"{t.dtype} {t.name}"
    return f"{t.dtype}({', '.join(_sym(s, sizes) for s in t.shape)}) {t.name}"


def stage_str(stage: ir.Stage, sizes: Mapping[str, int] | None = None) -> str:
    op = "=" if stage.op is None else f"{stage.op}={'!' if stage.init else ''}"
    lhs = stage.tensor + (f"({', '.join(stage.lhs)})" if stage.lhs else "")
    dom = ", ".join(f"{d.name} in {_sym(d.lo, sizes)}:{_sym(d.hi, sizes)}" for d in stage.domain)
    return f"{lhs} {op} {expr_str(stage.rhs)}\n      over {dom or '(a single point)'}"


def function_str(fn: ir.Function, sizes: Mapping[str, int] | None = None) -> str:
    """The whole function: signature, tensors, and one stage per statement."""
    lines = [
        f"func {fn.name}({', '.join(_decl(t, sizes) for t in fn.inputs)})"
        f" -> ({', '.join(_decl(t, sizes) for t in fn.outputs)})"
    ]
    if fn.sizes:
        binds = ", ".join(
            f"{s.name} = {s.tensor}.size({s.dim})"
            + (f" = {sizes[s.name]}" if sizes and s.name in sizes else "")
            for s in fn.sizes
        )
        lines.append(f"  sizes: {binds}")
    for t in fn.temps:
        lines.append(f"  temp {_decl(t, sizes)}")
    for k, st in enumerate(fn.stages):
        lines.append(f"  stage {k}: {stage_str(st, sizes)}")
    return "\n".join(lines)
