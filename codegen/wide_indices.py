"""64-bit index arithmetic in a kernel (:mod:`tc.ir.index_width` decides when).

The kernel AST types index arithmetic as ``INDEX_TYPE`` (int32). :func:`widen_kernel`
retypes every index expression to int64: loop variables and size arguments (the
kernel's ``index_bits`` makes the printers declare them ``long long`` / ``long``),
hardware ids, integer constants, the locals that hold indices, the global buffers'
strides and shapes, and the arithmetic, comparisons and casts over them.

An index expression is one built from loop variables, sizes, hardware ids, integer
constants and index locals only, never from a tensor's value (as in the C printer's
``_indexing``). Subscripts, loop bounds and guards stay 64-bit, and so do an index
converted to another type (``float(i)``, ``int64(i)``) and one compared with a value.
Where one is an operand of value arithmetic or stored as a value of the declared
int32 (``y(i) = i``, ``x(i) + i``), it is cast back to that type: the IR's int32
semantics (it wraps beyond 2**31). A subscript computed from a tensor's value (a
gather) keeps its int32 value, and the 64-bit strides make its offset 64-bit.
"""

from __future__ import annotations

import dataclasses

from codegen import kernel as k
from tc.ir import nodes as ir
from tc.ir.types import INDEX_TYPE, ScalarType

_I64 = ScalarType.INT64
_INDEX_VARS = ("loop", "size", "index")
# Operators whose result is an index when their operands are.
_ARITH = ("+", "-", "*", "/", "%", "min", "max")


class _Widen:
    """One kernel's rewrite; ``locals`` are the names of the locals holding indices."""

    def __init__(self) -> None:
        self.locals: set[str] = set()

    # -- expressions: each returns (rewritten, is_index) ---------------------------------------
    def index(self, e: ir.Expr) -> tuple[ir.Expr, bool]:
        if isinstance(e, ir.IntImm):
            if e.type is INDEX_TYPE:
                return ir.IntImm(e.value, type=_I64), True
            return e, e.type is _I64
        if isinstance(e, ir.Var):
            if (e.kind in _INDEX_VARS or e.kind == "local" and e.name in self.locals) and (
                    e.type in (INDEX_TYPE, _I64)):
                return dataclasses.replace(e, type=_I64), True
            return e, False
        if isinstance(e, k.HwId):
            return dataclasses.replace(e, type=_I64), True
        if isinstance(e, ir.Binary):
            (a, ia), (b, ib) = self.index(e.a), self.index(e.b)
            if ia and ib and (e.op in _ARITH or e.op in ir.CMP_OPS or e.op in ir.LOGIC_OPS):
                t = e.type if e.type is ScalarType.BOOL else _I64
                return dataclasses.replace(e, a=a, b=b, type=t), True
            if e.op in ir.CMP_OPS:  # C compares an int with a long long exactly
                return dataclasses.replace(e, a=a, b=b), False
            return dataclasses.replace(e, a=self.narrow(a, e.a), b=self.narrow(b, e.b)), False
        if isinstance(e, ir.Unary):
            a, ia = self.index(e.a)
            if ia:
                t = e.type if e.type is ScalarType.BOOL else _I64
                return dataclasses.replace(e, a=a, type=t), True
            return dataclasses.replace(e, a=self.narrow(a, e.a)), False
        if isinstance(e, ir.Cast):
            a, ia = self.index(e.a)
            if ia and e.type in (INDEX_TYPE, _I64):
                return a, True  # an index cast to an index type: already 64-bit
            # Converted from its exact 64-bit value (float(i) of a huge i is not wrapped).
            return dataclasses.replace(e, a=a), False
        if isinstance(e, ir.Select):
            (c, ic), (a, ia), (b, ib) = self.index(e.cond), self.index(e.a), self.index(e.b)
            if ic and ia and ib:
                t = e.type if e.type is ScalarType.BOOL else _I64
                return dataclasses.replace(e, cond=c, a=a, b=b, type=t), True
            return dataclasses.replace(e, cond=c, a=self.narrow(a, e.a),
                                       b=self.narrow(b, e.b)), False
        if isinstance(e, ir.Read):
            return dataclasses.replace(e, indices=tuple(self.subscript(i)
                                                        for i in e.indices)), False
        if isinstance(e, ir.Call):
            return dataclasses.replace(e, args=tuple(self.value(a) for a in e.args)), False
        return e, False

    @staticmethod
    def narrow(new: ir.Expr, old: ir.Expr) -> ir.Expr:
        """``new`` (the rewrite of ``old``) where a value of ``old``'s type is used."""
        if isinstance(old, ir.IntImm):
            return old  # a constant of the value's type, rather than a cast of a wide one
        if new.type != old.type and old.type is not ScalarType.BOOL:
            return ir.Cast(new, type=old.type)
        return new

    def value(self, e: ir.Expr) -> ir.Expr:
        """``e`` rewritten where a value of its declared type is used."""
        return self.narrow(self.index(e)[0], e)

    def subscript(self, e: ir.Expr) -> ir.Expr:
        """A subscript: 64-bit if it is an index, its own type otherwise."""
        new, is_index = self.index(e)
        return new if is_index else self.narrow(new, e)

    # -- statements ----------------------------------------------------------------------------
    def stmt(self, s: k.Stmt) -> k.Stmt:
        if isinstance(s, k.Block):
            return k.Block(tuple(self.stmt(c) for c in s.body))
        if isinstance(s, k.For):
            return dataclasses.replace(s, init=self.subscript(s.init),
                                       cond=self.subscript(s.cond), body=self.stmt(s.body))
        if isinstance(s, k.If):
            return dataclasses.replace(
                s, cond=self.subscript(s.cond), then=self.stmt(s.then),
                otherwise=None if s.otherwise is None else self.stmt(s.otherwise))
        if isinstance(s, k.Scope):
            return k.Scope(self.stmt(s.body))
        if isinstance(s, k.Store):
            return dataclasses.replace(s, indices=tuple(self.subscript(i) for i in s.indices),
                                       value=self.value(s.value))
        if isinstance(s, k.Local):
            if s.init is None:
                return s
            new, is_index = self.index(s.init)
            if is_index and s.dtype in (INDEX_TYPE, _I64) and not s.size:
                self.locals.add(s.name)  # an index local (a shared copy's global index)
                return dataclasses.replace(s, dtype=_I64, init=new)
            return dataclasses.replace(s, init=self.narrow(new, s.init))
        if isinstance(s, k.Assign):
            new, is_index = self.index(s.value)
            return dataclasses.replace(s, value=new if is_index and s.name in self.locals
                                       else self.narrow(new, s.value))
        return s

    def buffer(self, b: k.Buffer) -> k.Buffer:
        """A global buffer with 64-bit strides and shape (a gather's int32 subscript
        times a 64-bit stride is a 64-bit offset); a stride of 1 stays the literal 1,
        which the printers leave out."""
        if b.space != "global":
            return b

        def wide(e: ir.Expr) -> ir.Expr:
            if isinstance(e, ir.IntImm) and e.value == 1:
                return e
            return self.index(e)[0]

        return dataclasses.replace(b, shape=tuple(map(wide, b.shape)),
                                   strides=tuple(map(wide, b.strides)))


def widen_kernel(kern: k.Kernel) -> k.Kernel:
    """``kern`` with 64-bit index arithmetic (see the module docstring); idempotent
    (a kernel of 64-bit segments given 32-bit buffers is widened again)."""
    w = _Widen()
    body = w.stmt(kern.body)
    meta = dict(kern.meta)
    if "parallel_if" in meta:
        meta["parallel_if"] = w.index(meta["parallel_if"])[0]
    return dataclasses.replace(kern, buffers=tuple(map(w.buffer, kern.buffers)), body=body,
                               meta=meta, index_bits=64)
