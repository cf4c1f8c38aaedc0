"""Printing the AST: back to TC text (optionally with canonical names) and as a tree dump.

:func:`definition_text` prints everything the text says, the ``<=>`` equivalence
annotations included (a round trip keeps them). :func:`canonical_text` leaves them out:
an annotation declares what a statement equals but changes nothing it computes, and the
canonical text (the compilation cache's key) changes only with the meaning, so an
annotated and an unannotated text share their tuned and compiled kernels.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable

from tc.ir.types import TYPE_NAMES
from tc.lang import ast
from tc.lang.builtins import BUILTINS

Rename = Callable[[str], str]


def _same(name: str) -> str:
    return name


def expr_text(e: ast.Expr, rn: Rename = _same) -> str:
    """An expression, fully parenthesised, so that the text has one reading."""
    if isinstance(e, ast.IntLit):
        return str(e.value)
    if isinstance(e, ast.FloatLit):
        return repr(e.value) if "e" in repr(e.value) or "." in repr(e.value) else f"{e.value}.0"
    if isinstance(e, ast.Name):
        return rn(e.name)
    if isinstance(e, ast.Call):
        fn = e.func.name if e.func.name in BUILTINS else rn(e.func.name)
        return f"{fn}({', '.join(expr_text(a, rn) for a in e.args)})"
    if isinstance(e, ast.Cast):
        return f"{_type(e.type_name)}({', '.join(expr_text(a, rn) for a in e.args)})"
    if isinstance(e, ast.Unary):
        return f"{e.op}({expr_text(e.operand, rn)})"
    if isinstance(e, ast.Binary):
        return f"({expr_text(e.lhs, rn)} {e.op} {expr_text(e.rhs, rn)})"
    if isinstance(e, ast.Select):
        return (f"({expr_text(e.cond, rn)} ? {expr_text(e.if_true, rn)} : "
                f"{expr_text(e.if_false, rn)})")
    raise TypeError(type(e).__name__)


def _type(ident: ast.Ident) -> str:
    return TYPE_NAMES[ident.name].value


def _dims(dims: tuple[ast.DimDecl, ...], rn: Rename) -> str:
    if not dims:
        return ""
    return "(" + ", ".join(str(d.value) if d.name is None else rn(d.name) for d in dims) + ")"


def definition_text(d: ast.Definition, rn: Rename = _same, annotations: bool = True) -> str:
    """The definition as TC text, one statement per line; ``annotations=False`` leaves
    out the ``<=>`` equivalence annotations."""
    name = rn(d.name.name)
    params = ", ".join(f"{_type(p.type_name)}{_dims(p.dims, rn)} {rn(p.name.name)}"
                       for p in d.params)
    results = ", ".join(
        rn(r.name.name) if r.type_name is None
        else f"{_type(r.type_name)}{_dims(r.dims, rn)} {rn(r.name.name)}"
        for r in d.results
    )
    lines = [f"def {name}({params}) -> ({results}) {{"]
    for st in d.statements:
        lhs = rn(st.tensor.name)
        if st.indices:
            lhs += "(" + ", ".join(rn(i.name) for i in st.indices) + ")"
        text = f"    {lhs} {st.op} {expr_text(st.rhs, rn)}"
        if annotations and st.equivalent is not None:
            # The annotation's names are the library's and the caller's, never renamed.
            eq = st.equivalent
            text += f" <=> {eq.name.name}({', '.join(expr_text(a) for a in eq.args)})"
        clauses = []
        for c in st.clauses:
            if isinstance(c, ast.RangeClause):
                clauses.append(f"{rn(c.index.name)} in {expr_text(c.lo, rn)}:"
                               f"{expr_text(c.hi, rn)}")
            elif isinstance(c, ast.ExistsClause):
                clauses.append(f"exists {expr_text(c.expr, rn)}")
            else:
                clauses.append(f"{rn(c.name.name)} = {expr_text(c.expr, rn)}")
        if clauses:
            text += " where " + ", ".join(clauses)
        lines.append(text)
    lines.append("}")
    return "\n".join(lines)


def canonical_text(d: ast.Definition) -> str:
    """The definition with every identifier renamed in order of appearance.

    Renaming tensors, sizes or indices, reformatting, comments and redundant
    parentheses leave it unchanged; any change of meaning changes it. It is the
    basis of the compilation cache's key. ``<=>`` annotations are left out: they
    change no meaning (see the module docstring).
    """
    names: dict[str, str] = {}

    def rn(name: str) -> str:
        if name not in names:
            names[name] = f"v{len(names)}"
        return names[name]

    return definition_text(d, rn, annotations=False)


def canonical_hash(d: ast.Definition) -> str:
    """A short stable digest of :func:`canonical_text`."""
    return hashlib.sha256(canonical_text(d).encode()).hexdigest()[:16]


def tree_text(node, indent: int = 0) -> str:
    """A dump of the AST, one node per line with its position (``--stage ast``)."""
    pad = "  " * indent
    if isinstance(node, tuple):
        return "\n".join(tree_text(n, indent) for n in node)
    if not dataclasses.is_dataclass(node):
        return f"{pad}{node!r}"
    if isinstance(node, ast.Ident):
        return f"{pad}Ident {node.name!r} @{node.span}"
    head = f"{pad}{type(node).__name__}"
    span = getattr(node, "span", None)
    scalars, kids = [], []
    for f in dataclasses.fields(node):
        if f.name in ("span", "op_span", "arrow", "source"):
            continue
        v = getattr(node, f.name)
        if v is None and f.name == "equivalent":
            continue  # most statements have no annotation: not shown
        if isinstance(v, str | int | float) or v is None:
            scalars.append(f"{f.name}={v!r}")
        elif isinstance(v, tuple) and not v:
            continue
        else:
            kids.append((f.name, v))
    line = head + (" " + " ".join(scalars) if scalars else "") + (f" @{span}" if span else "")
    out = [line]
    for name, v in kids:
        out.append(f"{pad}  .{name}:")
        out.append(tree_text(v, indent + 2))
    return "\n".join(out)
