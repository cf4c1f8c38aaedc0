"""The host program: which kernels to launch, in which order, under which conditions.

isl may guard a kernel with conditions on the sizes (``if (K >= 1)``); the host
program keeps them and evaluates them with the sizes of each call.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import islpy as isl

from codegen import lower
from tc.errors import TcInternalError
from tc.ir import nodes as ir


@dataclass(frozen=True)
class HostNode:
    pass


@dataclass(frozen=True)
class Launch(HostNode):
    kernel: int


@dataclass(frozen=True)
class HostIf(HostNode):
    cond: ir.Expr
    then: HostNode
    otherwise: HostNode | None = None


@dataclass(frozen=True)
class HostBlock(HostNode):
    items: tuple[HostNode, ...]


def split_program(ast: isl.AstNode, params: Mapping[str, str]
                  ) -> tuple[HostNode, dict[int, isl.AstNode]]:
    """The host program of a whole-function AST and the AST under each kernel mark."""
    kernels: dict[int, isl.AstNode] = {}

    def visit(n: isl.AstNode) -> HostNode:
        t = n.get_type()
        if t == isl.ast_node_type.block:
            kids = n.block_get_children()
            return HostBlock(tuple(visit(kids.get_at(i)) for i in range(kids.n_ast_node())))
        if t == isl.ast_node_type.if_:
            other = visit(n.if_get_else_node()) if n.if_has_else_node() else None
            return HostIf(lower.expr(n.if_get_cond(), params), visit(n.if_get_then_node()),
                          other)
        if t == isl.ast_node_type.mark:
            name = n.mark_get_id().get_name()
            if name.startswith("kernel."):
                index = int(name.split(".")[1])
                kernels[index] = n.mark_get_node()
                return Launch(index)
            return visit(n.mark_get_node())
        raise TcInternalError(f"unexpected isl AST node {t} outside kernels")

    return visit(ast), kernels


def renumber_launches(node: HostNode, new: Mapping[int, int]) -> HostNode:
    """The host program with kernel ``k`` launched as kernel ``new[k]``."""
    if isinstance(node, Launch):
        return Launch(new[node.kernel])
    if isinstance(node, HostBlock):
        return HostBlock(tuple(renumber_launches(n, new) for n in node.items))
    if isinstance(node, HostIf):
        other = None if node.otherwise is None else renumber_launches(node.otherwise, new)
        return HostIf(node.cond, renumber_launches(node.then, new), other)
    return node


def evaluate(e: ir.Expr, sizes: Mapping[str, int]) -> int | bool:
    """An integer/boolean expression of the sizes (``s_<name>`` variables)."""
    if isinstance(e, ir.IntImm):
        return e.value
    if isinstance(e, ir.Var):
        return sizes[e.name.removeprefix("s_")]
    if isinstance(e, ir.Unary):
        v = evaluate(e.a, sizes)
        return -v if e.op == "-" else not v
    if isinstance(e, ir.Select):
        return evaluate(e.a if evaluate(e.cond, sizes) else e.b, sizes)
    if isinstance(e, ir.Cast):
        return evaluate(e.a, sizes)
    if isinstance(e, ir.Binary):
        a, b = evaluate(e.a, sizes), evaluate(e.b, sizes)
        ops = {
            "+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b,
            "/": lambda: a // b if b else 0, "%": lambda: a % b if b else 0,
            "min": lambda: min(a, b), "max": lambda: max(a, b), "<": lambda: a < b,
            "<=": lambda: a <= b, ">": lambda: a > b, ">=": lambda: a >= b,
            "==": lambda: a == b, "!=": lambda: a != b, "&&": lambda: bool(a and b),
            "||": lambda: bool(a or b),
        }
        return ops[e.op]()
    raise TcInternalError(f"cannot evaluate {type(e).__name__} on the host")


def launches(program: HostNode, sizes: Mapping[str, int]) -> list[int]:
    """The kernels to launch, in order, for concrete sizes."""
    out: list[int] = []

    def run(n: HostNode | None) -> None:
        if n is None:
            return
        if isinstance(n, Launch):
            out.append(n.kernel)
        elif isinstance(n, HostBlock):
            for item in n.items:
                run(item)
        elif isinstance(n, HostIf):
            run(n.then if evaluate(n.cond, sizes) else n.otherwise)

    run(program)
    return out


def host_str(program: HostNode, depth: int = 0) -> str:
    """The host program as text."""
    from tc.ir.printer import expr_str

    pad = "  " * depth
    if isinstance(program, Launch):
        return f"{pad}launch kernel {program.kernel}"
    if isinstance(program, HostBlock):
        return "\n".join(host_str(i, depth) for i in program.items)
    if isinstance(program, HostIf):
        text = f"{pad}if {expr_str(program.cond)}:\n{host_str(program.then, depth + 1)}"
        if program.otherwise is not None:
            text += f"\n{pad}else:\n{host_str(program.otherwise, depth + 1)}"
        return text
    return f"{pad}?"
