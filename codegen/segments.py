"""The plumbing of programs that ``matchLibraryCalls`` splits into segments (see
``codegen.compiler.Segment``): each segment is compiled on its own, numbering its
kernels and bounds checks from 0, and joined to the program by shifting them."""

from __future__ import annotations

import dataclasses

from codegen import host as host_mod
from codegen import kernel as k
from tc.ir import nodes as ir
from tc.ir.types import INDEX_TYPE

__all__ = ["renumber_checks", "shift_launches"]


def shift_launches(node: host_mod.HostNode, offset: int) -> host_mod.HostNode:
    """A segment's host program with its kernels renumbered from ``offset``."""
    if isinstance(node, host_mod.Launch):
        return host_mod.Launch(node.kernel + offset)
    if isinstance(node, host_mod.HostBlock):
        return host_mod.HostBlock(tuple(shift_launches(n, offset) for n in node.items))
    if isinstance(node, host_mod.HostIf):
        other = None if node.otherwise is None else shift_launches(node.otherwise, offset)
        return host_mod.HostIf(node.cond, shift_launches(node.then, offset), other)
    return node


class _CheckShift(ir.Mutator):
    """Error numbers of in-kernel bounds checks (``tc_oob(n)``) moved by an offset."""

    def __init__(self, offset: int) -> None:
        self.offset = offset

    def mutate_Call(self, e: ir.Call) -> ir.Expr:
        e = self.generic(e)
        if e.fn == "tc_oob" and isinstance(e.args[0], ir.IntImm):
            shifted = ir.IntImm(e.args[0].value + self.offset, type=INDEX_TYPE)
            return dataclasses.replace(e, args=(shifted,))
        return e


def renumber_checks(s: k.Stmt, offset: int) -> k.Stmt:
    """A segment's kernel body with its check numbers following the earlier segments'."""
    if offset == 0:
        return s
    m = _CheckShift(offset).mutate
    if isinstance(s, k.Block):
        return k.Block(tuple(renumber_checks(c, offset) for c in s.body))
    if isinstance(s, k.For):
        return dataclasses.replace(s, init=m(s.init), cond=m(s.cond),
                                   body=renumber_checks(s.body, offset))
    if isinstance(s, k.If):
        other = None if s.otherwise is None else renumber_checks(s.otherwise, offset)
        return k.If(m(s.cond), renumber_checks(s.then, offset), other)
    if isinstance(s, k.Scope):
        return k.Scope(renumber_checks(s.body, offset))
    if isinstance(s, k.Store):
        return dataclasses.replace(s, indices=tuple(map(m, s.indices)), value=m(s.value))
    if isinstance(s, k.Local):
        return s if s.init is None else dataclasses.replace(s, init=m(s.init))
    if isinstance(s, k.Assign):
        return dataclasses.replace(s, value=m(s.value))
    return s
