"""Barrier placement: only before work that depends on work since the last barrier,
never under a condition, never twice in a row."""

from __future__ import annotations

from codegen import kernel as k
from codegen.barriers import barrier_count, place_barriers
from tc.ir import nodes as ir
from tc.ir.types import ScalarType as T

I32 = T.INT32


def _int(v: int) -> ir.Expr:
    return ir.IntImm(v, type=I32)


def _var(n: str) -> ir.Expr:
    return ir.Var(n, "loop", type=I32)


def _work(origin: str) -> k.Stmt:
    """A thread-distributed loop running statement ``origin``."""
    store = k.Store("t_A", (_var("t"),), ir.FloatImm(1.0, type=T.FLOAT32), origin=origin)
    cond = ir.Binary("<", _var("t"), _int(8), type=T.BOOL)
    return k.For("t", _int(0), cond, store, mapping="thread.x")


def _loop(var: str, body: k.Stmt) -> k.Stmt:
    return k.For(var, _int(0), ir.Binary("<", _var(var), _int(4), type=T.BOOL), body)


def _barriers_under_if(s: k.Stmt, under: bool = False) -> int:
    if isinstance(s, k.Barrier):
        return int(under)
    if isinstance(s, k.Block):
        return sum(_barriers_under_if(c, under) for c in s.body)
    if isinstance(s, k.For):
        return _barriers_under_if(s.body, under)
    if isinstance(s, k.If):
        other = _barriers_under_if(s.otherwise, True) if s.otherwise else 0
        return _barriers_under_if(s.then, True) + other
    return 0


def test_independent_statements_need_no_barrier() -> None:
    body = k.seq(_work("S0"), _work("S1"))
    assert barrier_count(place_barriers(body, set())) == 0


def test_a_dependence_between_pieces_gets_one_barrier_between_them() -> None:
    out = place_barriers(k.seq(_work("S0"), _work("S1")), {("S0", "S1")})
    assert isinstance(out, k.Block)
    assert [type(s).__name__ for s in out.body] == ["For", "Barrier", "For"]


def test_a_loop_carried_dependence_gets_a_barrier_in_each_iteration() -> None:
    out = place_barriers(_loop("i", _work("S0")), {("S0", "S0")})
    assert barrier_count(out) == 1
    assert barrier_count(place_barriers(_loop("i", _work("S0")), set())) == 0


def test_barriers_leave_conditions_and_never_repeat() -> None:
    cond = ir.Binary("==", _var("i"), _int(0), type=T.BOOL)
    body = _loop("i", k.seq(_work("S0"), k.If(cond, k.seq(_work("S1"), _work("S2")))))
    out = place_barriers(body, {("S0", "S1"), ("S1", "S2"), ("S2", "S0")})
    assert barrier_count(out) >= 2
    assert _barriers_under_if(out) == 0
    for s in k.walk_stmts(out):
        if isinstance(s, k.Block):
            kinds = [type(c).__name__ for c in s.body]
            assert all(not (a == b == "Barrier") for a, b in zip(kinds, kinds[1:], strict=False))
