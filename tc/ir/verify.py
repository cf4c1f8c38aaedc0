"""The IR verifier: structural invariants every pass may rely on."""

from __future__ import annotations

from tc.errors import TcInternalError
from tc.ir import nodes as ir
from tc.ir.types import ScalarType


def verify(fn: ir.Function) -> None:
    """Raise :class:`TcInternalError` if ``fn`` breaks an IR invariant."""
    names = [t.name for t in fn.tensors]
    _check(len(names) == len(set(names)), fn, "tensor names are not unique")
    sizes = set(fn.size_names)
    written: set[str] = set()
    for t in fn.tensors:
        _check(all(s.symbols() <= sizes for s in t.shape), fn,
               f"the shape of {t.name} uses an unknown size")
    for k, st in enumerate(fn.stages):
        where = f"stage {k}"
        _check(st.tensor in names, fn, f"{where} writes undeclared tensor {st.tensor}")
        t = fn.tensor(st.tensor)
        _check(t.role != "input", fn, f"{where} writes input {t.name}")
        _check(len(st.lhs) == t.rank, fn, f"{where}: {len(st.lhs)} indices for rank {t.rank}")
        dom = [d.name for d in st.domain]
        _check(len(dom) == len(set(dom)), fn, f"{where}: repeated domain index")
        _check(tuple(dom[: len(st.lhs)]) == st.lhs, fn, f"{where}: lhs is not the domain prefix")
        has_red = len(st.domain) > len(st.lhs)
        _check(not has_red or st.op in ir.REDUCTION_OPS, fn,
               f"{where}: reduction indices without a reduction operator")
        _check(st.op is None or st.op in ir.REDUCTION_OPS, fn, f"{where}: bad operator {st.op}")
        _check(not st.init or st.op is not None, fn, f"{where}: init without an operator")
        _check(st.rhs.type == t.dtype, fn, f"{where}: rhs type {st.rhs.type} is not {t.dtype}")
        for d in st.domain:
            _check(d.lo.symbols() <= sizes and d.hi.symbols() <= sizes, fn,
                   f"{where}: range of {d.name} uses an unknown size")
        _check_expr(fn, st.rhs, set(dom), set(), sizes, written | {n for n in names
                                                                   if fn.tensor(n).role ==
                                                                   "input"}, where)
        _check(st.op is not None or st.init or st.tensor not in _reads(st.rhs) or
               st.tensor in written, fn, f"{where}: reads {st.tensor} before writing it")
        written.add(st.tensor)
    for t in fn.outputs:
        _check(t.name in written, fn, f"output {t.name} is never written")


def _reads(e: ir.Expr) -> set[str]:
    return {n.tensor for n in ir.walk(e) if isinstance(n, ir.Read)}


def _check(cond: bool, fn: ir.Function, msg: str) -> None:
    if not cond:
        raise TcInternalError(f"IR verifier: function {fn.name}: {msg}")


def _check_expr(fn, e, indices, lets, sizes, readable, where) -> None:
    if isinstance(e, ir.Let):
        _check_expr(fn, e.value, indices, lets, sizes, readable, where)
        _check_expr(fn, e.body, indices, lets | {e.name}, sizes, readable, where)
        _check(e.type == e.body.type, fn, f"{where}: let type")
        return
    if isinstance(e, ir.IntImm):
        _check(e.type.is_int or e.type.is_bool, fn, f"{where}: integer literal of type {e.type}")
    elif isinstance(e, ir.FloatImm):
        _check(e.type.is_float, fn, f"{where}: float literal of type {e.type}")
    elif isinstance(e, ir.Var):
        ok = {"index": indices, "size": sizes, "let": lets}.get(e.kind)
        _check(ok is not None and e.name in ok, fn, f"{where}: unbound {e.kind} {e.name}")
        _check(e.kind == "let" or e.type.is_int, fn, f"{where}: {e.kind} {e.name} is {e.type}")
    elif isinstance(e, ir.Unary):
        want = ScalarType.BOOL if e.op == "!" else e.a.type
        _check(e.op in ("-", "!") and e.type == want == e.a.type, fn,
               f"{where}: unary {e.op} on {e.a.type} giving {e.type}")
    elif isinstance(e, ir.Read):
        _check(any(t.name == e.tensor for t in fn.tensors), fn,
               f"{where}: reads undeclared tensor {e.tensor}")
        t = fn.tensor(e.tensor)
        _check(t.name in readable, fn, f"{where}: reads {t.name} before it is written")
        _check(len(e.indices) == t.rank and e.type == t.dtype, fn, f"{where}: bad read {t.name}")
        for i in e.indices:
            _check(i.type.is_int, fn, f"{where}: non-integer subscript of {t.name}")
    elif isinstance(e, ir.Binary):
        _check(e.op in ir.ARITH_OPS + ir.CMP_OPS + ir.LOGIC_OPS, fn, f"{where}: bad op {e.op}")
        _check(e.a.type == e.b.type, fn, f"{where}: operands of {e.op} differ in type")
        _check(e.op not in ir.LOGIC_OPS or e.a.type is ScalarType.BOOL, fn,
               f"{where}: {e.op} on {e.a.type}")
        if e.op in ir.CMP_OPS or e.op in ir.LOGIC_OPS:
            _check(e.type is ScalarType.BOOL, fn, f"{where}: {e.op} must give bool")
        else:
            _check(e.type == e.a.type, fn, f"{where}: {e.op} changes type")
    elif isinstance(e, ir.Select):
        _check(e.cond.type is ScalarType.BOOL, fn, f"{where}: non-bool condition")
        _check(e.a.type == e.b.type == e.type, fn, f"{where}: select branches differ in type")
    elif isinstance(e, ir.Call):
        _check(e.type.is_float and all(a.type == e.type for a in e.args), fn,
               f"{where}: {e.fn} argument types")
    for c in ir.children(e):
        _check_expr(fn, c, indices, lets, sizes, readable, where)
