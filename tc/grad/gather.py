"""Writing a scatter as a gather: the adjoint of a read ``X(f(i))`` as a TC statement.

Reverse mode adds ``dV(lhs) * d rhs / d X(f(i))`` into ``dX`` at ``f(i)`` for every
point ``i`` of a statement's domain. TC statements write at plain indices, so the
derivation turns the scatter into a gather over ``dX``'s indices by inverting the
subscripts ``f``.
"""

from __future__ import annotations

from tc.grad import build as b
from tc.ir import nodes as ir
from tc.ir.affine import linearize
from tc.ir.sym import Sym

Range = tuple[str, Sym, Sym]


def gather(st: ir.Stage, indices: tuple[ir.Expr, ...], expr: ir.Expr,
           shape: tuple[Sym, ...], taken: set[str]
           ) -> tuple[tuple[str, ...], tuple[Range, ...], ir.Expr]:
    """The statement ``dX(lhs) += body where ranges`` that adds ``expr`` (an expression
    over stage ``st``'s domain) into ``dX`` (of ``shape``) at ``indices``.

    Each subscript is solved for one index of the stage when it can be (``h + kh`` at
    ``i2`` gives ``h = i2 - kh``, guarded by ``h``'s range; ``2 * h + kh`` also by a
    divisibility test), else compared (``i2 == idx(b)``). The indices left unsolved
    are the gather's reduction. ``taken`` holds the names the new indices must avoid.
    """
    dims = {d.name: d for d in st.domain}
    unbound = [d.name for d in st.domain]
    local = set(taken) | set(dims)
    subst: dict[str, ir.Expr] = {}
    guards: list[ir.Expr] = []
    lhs: list[str] = []
    ranges: list[Range] = []

    def new_var() -> str:
        j, base = 0, f"i{len(lhs)}"
        name = base
        while name in local:
            j += 1
            name = f"{base}_{j}"
        local.add(name)
        return name

    def bind(x: str, value: ir.Expr) -> None:
        subst[x] = value
        for other in list(subst):
            subst[other] = b.Substitute({x: value}).mutate(subst[other])
        unbound.remove(x)
        d = dims[x]
        guards.append(b.cmp(">=", b.var(x), b.sym(d.lo)))
        guards.append(b.cmp("<", b.var(x), b.sym(d.hi)))

    later = [{n for n in _index_names(e)} for e in indices]
    for j, sub in enumerate(indices):
        extent = shape[j]
        sub = b.Substitute(subst).mutate(sub)
        if isinstance(sub, ir.Var) and sub.kind == "index" and sub.name in unbound:
            x = sub.name
            lhs.append(x)
            ranges.append((x, Sym.of(0), extent))
            unbound.remove(x)
            d = dims[x]
            if d.lo != Sym.of(0):
                guards.append(b.cmp(">=", b.var(x), b.sym(d.lo)))
            if d.hi != extent:
                guards.append(b.cmp("<", b.var(x), b.sym(d.hi)))
            continue
        y = new_var()
        lhs.append(y)
        ranges.append((y, Sym.of(0), extent))
        aff = linearize(sub)
        cands = [] if aff is None else [(x, c) for x, c in aff.coeffs if x in unbound]
        if cands:
            x, c = min(cands, key=lambda xc: _cost(xc, dims, st.lhs, later[j + 1:]))
            rest = _affine_expr([(n, a) for n, a in aff.coeffs if n != x], aff.rest)
            num = b.sub(b.var(y), rest)
            if abs(c) == 1:
                bind(x, num if c == 1 else b.neg(num))
            else:
                guards.append(b.cmp("==", ir.Binary(type=b.INT32, op="%", a=num,
                                                    b=b.const(c, b.INT32)), b.const(0, b.INT32)))
                bind(x, ir.Binary(type=b.INT32, op="/", a=num, b=b.const(c, b.INT32)))
            continue
        guards.append(b.cmp("==", b.var(y), sub))
    for x in unbound:
        ranges.append((x, dims[x].lo, dims[x].hi))
    final = b.Substitute(subst)
    cond = None
    for gd in guards:
        cond = b.land(cond, final.mutate(gd))
    return tuple(lhs), tuple(ranges), b.select(cond, final.mutate(expr), b.const(0, expr.type))


def _cost(cand: tuple[str, int], dims: dict[str, ir.Dim], lhs: tuple[str, ...],
          later: list[set[str]]) -> tuple:
    """How bad solving this subscript for index ``cand[0]`` is. The indices left
    unsolved become the loops of the gather, so solve for the wide ones (those with
    a symbolic range, the forward's output positions: ``h`` in ``h + kh``) and keep
    the narrow ones (the kernel offsets ``kh``) as loops; then prefer a unit
    coefficient (no divisibility guard) and an index later subscripts do not need."""
    x, c = cand
    d = dims[x]
    return ((d.hi - d.lo).is_const, x not in lhs, abs(c) != 1, any(x in s for s in later))


def _index_names(e: ir.Expr) -> set[str]:
    return {n.name for n in ir.walk(e) if isinstance(n, ir.Var) and n.kind == "index"}


def _affine_expr(coeffs: list[tuple[str, int]], rest: Sym) -> ir.Expr:
    out: ir.Expr = b.sym(rest)
    for n, c in coeffs:
        out = b.add(out, b.mul(b.const(c, b.INT32), b.var(n)))
    return out
