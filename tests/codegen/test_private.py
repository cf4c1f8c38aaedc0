"""Register promotion (``codegen.private``, ``usePrivateMemory``).

* Hand-built kernel ASTs: the rewrite happens where it should (matmul's accumulator,
  nested reduction loops, read-only elements) and not where it would be unsafe
  (subscripts varying with the loop, a conditional store only, another element of
  the buffer touched, a barrier or a distributed loop inside, uniform code of a
  multi-thread block, inexact half values), and ``depth`` limits the hoisting.
* A small interpreter of the kernel AST runs random kernels before and after the
  pass: same final memory, and the promoted kernel touches (and writes) no element
  that the original does not.
* End to end: catalogue kernels compiled with ``usePrivateMemory(True)`` (naive, some
  presets and tile sizes) match the reference interpreter on PoCL (only programs whose
  text the option changes are run: the others are the already-tested code); half,
  bfloat16 and int8 kernels give bit-identical results with and without promotion;
  every catalogue kernel compiles with NVRTC for sm_80 without spills and passes the
  structure checks; matmul keeps C in a register across its k loop.
"""

from __future__ import annotations

import functools
import random
import re
from collections.abc import Callable

import pytest
import torch
from kernel_checks import assert_same, structure_problems

import tc
from codegen import kernel as k
from codegen.nvrtc import compile_cuda
from codegen.private import promote_private
from tc.catalogue import KERNELS, Kernel
from tc.ir import nodes as ir
from tc.ir.types import ScalarType as T
from tc.options import MappingOptions

I32, F32, BOOL = T.INT32, T.FLOAT32, T.BOOL


# -- builders ---------------------------------------------------------------------------------


def _int(v: int) -> ir.Expr:
    return ir.IntImm(v, type=I32)


def _var(n: str, kind: str = "loop") -> ir.Expr:
    return ir.Var(n, kind, type=I32)


def _bin(op: str, a: ir.Expr, b: ir.Expr) -> ir.Expr:
    out = BOOL if op in ir.CMP_OPS or op in ir.LOGIC_OPS else a.type
    return ir.Binary(op, a, b, type=out)


def local_var(name: str, t: T = F32) -> ir.Expr:
    return ir.Var(name, "local", type=t)


def _read(buf: str, *idx: ir.Expr, t: T = F32) -> ir.Read:
    return ir.Read(buf, tuple(idx), type=t)


def _loop(var: str, n: ir.Expr | int, body: k.Stmt, mapping: str | None = None) -> k.For:
    n = _int(n) if isinstance(n, int) else n
    return k.For(var, _int(0), _bin("<", _var(var), n), body, 1, mapping)


def _acc(buf: str, idx: tuple[ir.Expr, ...], value: ir.Expr, origin: str = "S0",
         op: str | None = "+") -> k.Store:
    return k.Store(buf, idx, value, op=op, origin=origin)


def _matmul(k_loop_body: Callable[[tuple[ir.Expr, ...]], k.Stmt] | None = None) -> k.Stmt:
    """``for i (thread.x): C[i] = 0; for c_c1: C[i] += A[i][c_c1] * B[c_c1]``."""
    i, kk = _var("c_c0"), _var("c_c1")
    c = (i,)
    update = _acc("t_C", c, _bin("*", _read("t_A", i, kk), _read("t_B", kk)))
    body = k_loop_body(c) if k_loop_body else update
    init = k.Store("t_C", c, ir.FloatImm(0.0, type=F32), origin="S0_init")
    return _loop("c_c0", 4, k.seq(init, _loop("c_c1", _var("s_K", "size"), body)),
                 mapping="thread.x")


def _locals(s: k.Stmt) -> list[k.Local]:
    return [n for n in k.walk_stmts(s) if isinstance(n, k.Local)]


def _stores(s: k.Stmt, buf: str) -> list[k.Store]:
    return [n for n in k.walk_stmts(s) if isinstance(n, k.Store) and n.buffer == buf]


def _reads(s: k.Stmt, buf: str) -> list[ir.Read]:
    out = []
    for n in k.walk_stmts(s):
        exprs: tuple[ir.Expr, ...] = ()
        if isinstance(n, k.Store):
            exprs = (*n.indices, n.value)
        elif isinstance(n, k.Local) and n.init is not None:
            exprs = (n.init,)
        elif isinstance(n, k.Assign):
            exprs = (n.value,)
        elif isinstance(n, k.If):
            exprs = (n.cond,)
        elif isinstance(n, k.For):
            exprs = (n.init, n.cond)
        out += [e for x in exprs for e in ir.walk(x) if isinstance(e, ir.Read) and e.tensor == buf]
    return out


def _write_backs(s: k.Stmt, buf: str) -> list[k.Store]:
    """The stores of a promoted local back to ``buf``."""
    return [n for n in _stores(s, buf) if isinstance(n.value, ir.Var) and n.value.kind == "local"]


def _loop_named(s: k.Stmt, var: str) -> k.For:
    return next(n for n in k.walk_stmts(s) if isinstance(n, k.For) and n.var == var)


# -- a tiny interpreter of the kernel AST -----------------------------------------------------


class _Machine:
    """Runs a kernel body with every hardware id 0 and mapped loops run whole (the
    work of all ids, one after another), recording the elements read and written."""

    def __init__(self, memory: dict[str, dict[tuple[int, ...], float]],
                 sizes: dict[str, int]) -> None:
        self.mem = {b: dict(v) for b, v in memory.items()}
        self.env: dict[str, object] = dict(sizes)
        self.read: set[tuple[str, tuple[int, ...]]] = set()
        self.written: set[tuple[str, tuple[int, ...]]] = set()

    def load(self, buf: str, idx: tuple[int, ...]) -> float:
        self.read.add((buf, idx))
        return self.mem[buf][idx]  # KeyError: out of bounds

    def expr(self, e: ir.Expr) -> object:
        if isinstance(e, ir.IntImm | ir.FloatImm):
            return e.value
        if isinstance(e, ir.Var):
            return self.env[e.name]
        if isinstance(e, k.HwId):
            return 0
        if isinstance(e, ir.Read):
            return self.load(e.tensor, tuple(self.expr(i) for i in e.indices))
        if isinstance(e, ir.Cast):
            v = self.expr(e.a)
            return float(v) if e.type.is_float else v
        if isinstance(e, ir.Select):
            return self.expr(e.a) if self.expr(e.cond) else self.expr(e.b)
        if isinstance(e, ir.Binary):
            a = self.expr(e.a)
            if e.op in ("&&", "||"):
                return (bool(a) and bool(self.expr(e.b))) if e.op == "&&" else (
                    bool(a) or bool(self.expr(e.b)))
            return _apply(e.op, a, self.expr(e.b))
        raise AssertionError(f"unexpected expression {e}")

    def run(self, s: k.Stmt) -> None:
        if isinstance(s, k.Block):
            for c in s.body:
                self.run(c)
        elif isinstance(s, k.Scope):
            self.run(s.body)
        elif isinstance(s, k.For):
            self.env[s.var] = self.expr(s.init)
            while self.expr(s.cond):
                self.run(s.body)
                self.env[s.var] += s.step  # type: ignore[operator]
        elif isinstance(s, k.If):
            if self.expr(s.cond):
                self.run(s.then)
            elif s.otherwise is not None:
                self.run(s.otherwise)
        elif isinstance(s, k.Store):
            idx = tuple(self.expr(i) for i in s.indices)
            value = self.expr(s.value)
            if s.op is not None:
                value = _apply(s.op, self.load(s.buffer, idx), value)
            assert idx in self.mem[s.buffer], f"store out of bounds: {s.buffer}{idx}"
            self.mem[s.buffer][idx] = value
            self.written.add((s.buffer, idx))
        elif isinstance(s, k.Local):
            self.env[s.name] = None if s.init is None else self.expr(s.init)
        elif isinstance(s, k.Assign):
            self.env[s.name] = self.expr(s.value)
        elif not isinstance(s, k.Barrier | k.Comment):
            raise AssertionError(f"unexpected statement {s}")


def _apply(op: str, a, b):  # noqa: ANN001, ANN202 - Python numbers of either kind
    return {"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b,
            "min": lambda: min(a, b), "max": lambda: max(a, b), "<": lambda: a < b,
            "<=": lambda: a <= b, ">": lambda: a > b, ">=": lambda: a >= b,
            "==": lambda: a == b, "!=": lambda: a != b}[op]()


def _canonical(mem: dict[str, dict[tuple[int, ...], float]]) -> dict:
    """Memory with NaN made comparable (random products overflow)."""
    return {b: {i: "nan" if v != v else v for i, v in cells.items()} for b, cells in mem.items()}


def _same_meaning(body: k.Stmt, out: k.Stmt, sizes: dict[str, int], seed: int = 0) -> None:
    """``out`` computes what ``body`` does and touches no element ``body`` does not."""
    rng = random.Random(seed)
    cells = [(i,) for i in range(8)] + [(i, j) for i in range(4) for j in range(4)]
    memory = {b: {c: float(rng.randint(-3, 3)) for c in cells}
              for b in ("t_A", "t_B", "t_C", "t_X", "t_Y")}
    before, after = _Machine(memory, sizes), _Machine(memory, sizes)
    before.run(body)
    after.run(out)
    assert _canonical(after.mem) == _canonical(before.mem)
    assert after.read | after.written <= before.read | before.written
    assert after.written <= before.written


# -- unit tests on hand-built kernels ---------------------------------------------------------


def test_matmul_accumulator_stays_in_a_register_across_the_k_loop() -> None:
    body = _matmul()
    out = promote_private(body)
    kloop = _loop_named(out, "c_c1")
    assert _stores(kloop, "t_C") == [] and _reads(kloop, "t_C") == []
    (local,) = _locals(out)
    assert local.name == "p_0" and local.dtype is F32 and local.init == _read("t_C", _var("c_c0"))
    assigns = [n for n in k.walk_stmts(kloop) if isinstance(n, k.Assign)]
    assert len(assigns) == 1 and assigns[0].name == "p_0"
    assert isinstance(assigns[0].value, ir.Binary) and assigns[0].value.op == "+"
    # Guarded by the loop's first iteration; written back once with the statement's origin.
    thread_body = out.body  # type: ignore[attr-defined]
    guard = thread_body.body[1]
    assert isinstance(guard, k.If) and guard.cond == _bin("<", _int(0), _var("s_K", "size"))
    back = _stores(guard, "t_C")
    assert len(back) == 1 and back[0].origin == "S0" and back[0].value == local_var("p_0")
    assert promote_private(body, 0) == out
    for n in (0, 3):
        _same_meaning(body, out, {"s_K": n})


def test_no_promotion_when_the_subscripts_vary_with_the_loop() -> None:
    def body(c: tuple[ir.Expr, ...]) -> k.Stmt:
        return _acc("t_C", (_var("c_c1"),), _read("t_A", _var("c_c1")))

    out = promote_private(_matmul(body))
    assert _locals(out) == []


def test_no_promotion_when_the_only_store_is_under_a_condition_of_the_loop() -> None:
    def body(c: tuple[ir.Expr, ...]) -> k.Stmt:
        return k.If(_bin("<", _var("c_c1"), _int(2)), _acc("t_C", c, _read("t_B", _var("c_c1"))))

    assert _locals(promote_private(_matmul(body))) == []


def test_a_conditional_store_next_to_an_unconditional_one_is_promoted() -> None:
    # The unconditional store proves that the thread owns the element in the loop.
    def body(c: tuple[ir.Expr, ...]) -> k.Stmt:
        cond = _bin("==", _var("c_c1"), _int(2))
        return k.seq(_acc("t_C", c, _read("t_B", _var("c_c1"))),
                     k.If(cond, _acc("t_C", c, _read("t_C", *c), op=None, origin="S1")))

    src = _matmul(body)
    out = promote_private(src)
    assert len(_locals(out)) == 1 and _stores(_loop_named(out, "c_c1"), "t_C") == []
    # Both statements keep a write-back carrying their origin (barrier placement).
    assert sorted(s.origin for s in _stores(out, "t_C")) == ["S0", "S0_init", "S1"]
    _same_meaning(src, out, {"s_K": 4})


def test_no_promotion_when_another_element_of_the_buffer_is_touched() -> None:
    def body(c: tuple[ir.Expr, ...]) -> k.Stmt:
        other = _bin("+", c[0], _int(1))
        return k.seq(_acc("t_C", c, _read("t_B", _var("c_c1"))),
                     k.Store("t_Y", c, _read("t_C", other), origin="S1"))

    src = _matmul(body)
    out = promote_private(src)
    assert [n for n in _locals(out) if n.init is not None and n.init.tensor == "t_C"] == []
    assert len(_stores(_loop_named(out, "c_c1"), "t_C")) == 1
    _same_meaning(src, out, {"s_K": 3})


def test_no_promotion_across_a_barrier_or_a_distributed_loop() -> None:
    def with_barrier(c: tuple[ir.Expr, ...]) -> k.Stmt:
        return k.seq(_acc("t_C", c, _read("t_B", _var("c_c1"))), k.Barrier())

    assert _locals(promote_private(_matmul(with_barrier))) == []

    def with_threads(c: tuple[ir.Expr, ...]) -> k.Stmt:
        inner = k.Store("t_Y", (_var("c_c2"),), _read("t_B", _var("c_c2")), origin="S1")
        return k.seq(_acc("t_C", c, _read("t_B", _var("c_c1"))),
                     _loop("c_c2", 4, inner, mapping="thread.y"))

    out = promote_private(_matmul(with_threads))
    assert [n for n in _locals(out) if n.init == _read("t_C", _var("c_c0"))] == []

    def with_id_bounds(c: tuple[ir.Expr, ...]) -> k.Stmt:
        # A sequential loop whose bounds read a thread id also distributes work.
        inner = k.Store("t_Y", (_var("c_c2"),), _read("t_B", _var("c_c2")), origin="S1")
        ids = k.For("c_c2", k.hw("thread", "y"), _bin("<", _var("c_c2"), _int(4)), inner)
        return k.seq(_acc("t_C", c, _read("t_B", _var("c_c1"))), ids)

    out = promote_private(_matmul(with_id_bounds))
    assert [n for n in _locals(out) if n.init == _read("t_C", _var("c_c0"))] == []


def test_no_promotion_in_uniform_code_of_a_multi_thread_block_unless_guarded() -> None:
    i = _var("c_c1")
    work = _loop("c_c0", 4, k.Store("t_Y", (_var("c_c0"),), ir.FloatImm(1.0, type=F32),
                                    origin="S9"), mapping="thread.x")
    plain = k.seq(work, _loop("c_c1", 4, _acc("t_X", (_int(0),), _read("t_A", i))))
    assert _locals(promote_private(plain)) == []
    guard = _bin("==", k.hw("thread", "x"), _int(0))
    guarded = k.seq(work, _loop("c_c1", 4, k.If(guard, _acc("t_X", (_int(0),),
                                                            _read("t_A", i)))))
    out = promote_private(guarded)
    assert len(_locals(out)) == 1
    # Only thread 0 loads and writes back: the guard is part of the condition.
    (back,) = _stores(out, "t_X")
    under = [n for n in k.walk_stmts(out) if isinstance(n, k.If) and back in k.walk_stmts(n)]
    assert any(guard in list(ir.walk(n.cond)) for n in under)
    _same_meaning(guarded, out, {})


def test_a_kernel_without_thread_ids_runs_one_thread_per_block() -> None:
    body = _loop("c_c0", 4, _loop("c_c1", 3, _acc("t_C", (_var("c_c0"),),
                                                   _read("t_A", _var("c_c1")))))
    out = promote_private(body)
    assert len(_locals(out)) == 1
    _same_meaning(body, out, {})


def test_nested_reduction_loops_hoist_to_the_outermost_with_invariant_bounds() -> None:
    # conv: for c, kh, kw: O[i] += ...; the inner loops' bounds do not change.
    def body(c: tuple[ir.Expr, ...]) -> k.Stmt:
        val = _read("t_A", _var("c_c2"))
        return _loop("c_c2", _var("s_KH", "size"),
                     _loop("c_c3", _var("s_KW", "size"), _acc("t_C", c, val)))

    src = _matmul(body)
    out = promote_private(src)
    assert len(_write_backs(out, "t_C")) == 1
    outer = _loop_named(out, "c_c1")
    assert _reads(outer, "t_C") == [] and _stores(outer, "t_C") == []
    for sizes in ({"s_K": 2, "s_KH": 3, "s_KW": 2}, {"s_K": 2, "s_KH": 0, "s_KW": 2},
                  {"s_K": 3, "s_KH": 2, "s_KW": 0}):
        _same_meaning(src, out, sizes)
    # depth 2 keeps it below the loop c_c1 (schedule depth 1), depth 4 promotes nothing.
    at2 = promote_private(src, 2)
    assert _stores(_loop_named(at2, "c_c1"), "t_C") != []
    assert _stores(_loop_named(at2, "c_c2"), "t_C") == []
    assert _stores(_loop_named(promote_private(src, 4), "c_c3"), "t_C") != []
    _same_meaning(src, at2, {"s_K": 2, "s_KH": 3, "s_KW": 0})


def test_a_loop_dependent_inner_bound_stops_the_hoisting() -> None:
    def body(c: tuple[ir.Expr, ...]) -> k.Stmt:
        return _loop("c_c2", _var("c_c1"), _acc("t_C", c, _read("t_A", _var("c_c2"))))

    src = _matmul(body)
    out = promote_private(src)
    assert _stores(_loop_named(out, "c_c1"), "t_C") != []
    assert _stores(_loop_named(out, "c_c2"), "t_C") == []
    _same_meaning(src, out, {"s_K": 4})


def test_a_read_only_element_is_loaded_once_and_not_written_back() -> None:
    def body(c: tuple[ir.Expr, ...]) -> k.Stmt:
        return k.Store("t_Y", (_var("c_c1"),), _bin("*", _read("t_B", _var("c_c1")),
                                                    _read("t_A", *c)), origin="S1")

    src = _matmul(body)
    out = promote_private(src)
    kloop = _loop_named(out, "c_c1")
    assert _reads(kloop, "t_A") == [] and _stores(out, "t_A") == []
    assert [n.init for n in _locals(out)] == [_read("t_A", _var("c_c0"))]

    # A read only in a branch of a select may be out of bounds: not hoisted.
    def checked(c: tuple[ir.Expr, ...]) -> k.Stmt:
        sel = ir.Select(_bin("<", c[0], _int(2)), _read("t_A", *c), ir.FloatImm(0.0, type=F32),
                        type=F32)
        return k.Store("t_Y", (_var("c_c1"),), sel, origin="S1")

    assert _locals(promote_private(_matmul(checked))) == []
    _same_meaning(src, out, {"s_K": 3})


def test_half_values_are_promoted_only_when_already_rounded() -> None:
    h = T.FLOAT16
    i, kk = _var("c_c0"), _var("c_c1")

    def kernel(store: k.Stmt) -> k.Stmt:
        return _loop("c_c0", 4, _loop("c_c1", 3, store), mapping="thread.x")

    update = k.Store("t_H", (i,), _read("t_G", kk, t=h), op="+", origin="S0")
    out = promote_private(kernel(update))
    assert [n.dtype for n in _locals(out)] == [h]  # G's subscript varies with the loop
    inexact = k.Store("t_H", (i,), ir.FloatImm(0.1, type=h), origin="S0")
    assert _locals(promote_private(kernel(inexact))) == []
    exact = k.Store("t_H", (i,), ir.FloatImm(0.5, type=h), origin="S0")
    assert len(_locals(promote_private(kernel(exact)))) == 1


# -- random kernels -----------------------------------------------------------------------------


class _Gen:
    """Random kernels over 1-d buffers of 4 elements, with subscripts always in bounds."""

    def __init__(self, seed: int) -> None:
        self.r = random.Random(seed)
        self.depth = 0
        self.n_locals = 0

    def index(self, scope: list[str]) -> ir.Expr:
        if scope and self.r.random() < 0.6:
            return _var(self.r.choice(scope))
        return _int(self.r.randrange(4))

    def value(self, scope: list[str], locals_: list[str], d: int = 0) -> ir.Expr:
        roll = self.r.random()
        if d < 2 and roll < 0.35:
            return _bin(self.r.choice(["+", "*", "min", "max"]), self.value(scope, locals_, d + 1),
                        self.value(scope, locals_, d + 1))
        if d < 2 and roll < 0.45:
            return ir.Select(self.cond(scope), self.value(scope, locals_, d + 1),
                             self.value(scope, locals_, d + 1), type=F32)
        if locals_ and roll < 0.55:
            return local_var(self.r.choice(locals_))
        if roll < 0.9:
            return _read(self.r.choice(["t_X", "t_Y", "t_A"]), self.index(scope))
        return ir.FloatImm(float(self.r.randint(-2, 2)), type=F32)

    def cond(self, scope: list[str]) -> ir.Expr:
        roll = self.r.random()
        if roll < 0.2:
            return _bin("==", k.hw("thread", "x"), _int(0))
        if roll < 0.35:
            return _bin(">", _var("s_n", "size"), _int(self.r.randrange(3)))
        a = _var(self.r.choice(scope)) if scope else _var("s_n", "size")
        return _bin(self.r.choice(["<", "==", ">="]), a, _int(self.r.randrange(4)))

    def stmts(self, scope: list[str], locals_: list[str], d: int) -> k.Stmt:
        return k.seq(*(self.stmt(scope, locals_, d) for _ in range(self.r.randint(1, 3))))

    def stmt(self, scope: list[str], locals_: list[str], d: int) -> k.Stmt:
        roll = self.r.random()
        if d < 3 and roll < 0.3:
            self.depth += 1
            var = f"c_c{self.depth}"
            bound = _int(self.r.randrange(4)) if self.r.random() < 0.7 else _var("s_n", "size")
            return _loop(var, bound, self.stmts([*scope, var], locals_, d + 1))
        if d < 3 and roll < 0.4:
            other = self.stmts(scope, locals_, d + 1) if self.r.random() < 0.25 else None
            return k.If(self.cond(scope), self.stmts(scope, locals_, d + 1), other)
        if d < 3 and roll < 0.45:  # pieces under one guard, as the lowering guards them
            cond = self.cond(scope)
            return k.seq(*(k.If(cond, self.stmt(scope, locals_, d + 1)) for _ in range(2)))
        if roll < 0.52:
            self.n_locals += 1
            name = f"l_{self.n_locals}"
            return k.Scope(k.seq(k.Local(name, F32, self.value(scope, locals_)),
                                 self.stmt(scope, [*locals_, name], d)))
        if locals_ and roll < 0.58:
            return k.Assign(self.r.choice(locals_), self.value(scope, locals_))
        buf = self.r.choice(["t_X", "t_Y"])
        op = self.r.choice([None, "+", "+", "*", "min", "max"])
        return k.Store(buf, (self.index(scope),), self.value(scope, locals_), op=op,
                       origin=self.r.choice(["S0", "S1"]))

    def kernel(self) -> k.Stmt:
        body = self.stmts(["c_c0"], [], 0)
        roll = self.r.random()
        if roll < 0.6:
            return _loop("c_c0", 4, body, mapping="thread.x")
        if roll < 0.8:  # uniform code next to thread work: a block of several threads
            work = k.Store("t_Y", (_var("c_c9"),), ir.FloatImm(1.0, type=F32), origin="S2")
            return k.seq(_loop("c_c9", 4, work, mapping="thread.x"), _loop("c_c0", 4, body))
        return _loop("c_c0", 4, body)


def test_random_kernels_keep_their_meaning_and_touch_nothing_new() -> None:
    changed = 0
    for seed in range(400):
        body = _Gen(seed).kernel()
        for depth in (0, 2):
            out = promote_private(body, depth)
            changed += out != body
            for n in (0, 2):
                _same_meaning(body, out, {"s_n": n}, seed)
    assert changed > 150, changed  # the generator does exercise the rewrite


# -- end to end -----------------------------------------------------------------------------------


@functools.cache
def _reference(text: str) -> tc.TC:
    return tc.define(text, backend="reference")


def _inputs(kernel: Kernel) -> tuple[torch.Tensor, ...]:
    return kernel.make_inputs(kernel.test_sizes[0], torch.Generator().manual_seed(0))


def _check(kernel: Kernel, options: MappingOptions) -> bool:
    """Run ``kernel`` with ``options`` plus register promotion on PoCL if the option
    changes its code; whether it did."""
    inputs = _inputs(kernel)
    plain = tc.compile(kernel.tc, kernel.entry, options, *inputs, backend="opencl")
    promoted_options = options.copy().usePrivateMemory(True)
    ex = tc.compile(kernel.tc, kernel.entry, promoted_options, *inputs, backend="opencl")
    texts = [c.opencl_source for c in ex.program.kernels]
    if texts == [c.opencl_source for c in plain.program.kernels]:
        return False
    saved = [t.clone() for t in inputs]
    got = ex(*inputs)
    want = _reference(kernel.tc)[kernel.entry](*inputs)
    what = f"{kernel.name} {promoted_options!r}"
    assert_same(got, want, kernel.rtol, kernel.atol, what=what)
    assert all(torch.equal(a, b) for a, b in zip(saved, inputs, strict=True))
    assert structure_problems(ex.program) == []
    return True


NAIVE_SUBSET = ("tmm", "group_conv", "moments", "group_norm", "embedding_sum", "softmax",
                "conv2d", "fc_relu_backward", "cross_entropy_mean", "activation_stats")


@pytest.mark.parametrize("name", NAIVE_SUBSET)
def test_naive_catalogue_kernels_with_promotion_match_the_interpreter(name: str) -> None:
    assert _check(KERNELS[name], MappingOptions("naive")), f"{name}: nothing promoted"


OTHER_CASES = [
    ("matmul", MappingOptions("single_thread")),
    ("conv2d", MappingOptions("group_conv")),
    ("layer_norm", MappingOptions("pointwise")),
    ("mlp3", MappingOptions("mlp")),
    ("matmul", MappingOptions("naive").tile(4, 4, 4)),
    ("tbmm", MappingOptions("naive").tile(2, 1, 3).mapToThreads(4, 2)),
]


@pytest.mark.parametrize(("name", "options"), OTHER_CASES,
                         ids=[f"{n}-{i}" for i, (n, _) in enumerate(OTHER_CASES)])
def test_presets_and_tiles_with_promotion_match_the_interpreter(
        name: str, options: MappingOptions) -> None:
    assert _check(KERNELS[name], options), f"{name}: nothing promoted"


TYPED = {
    "float16": "def f(float16(M,K) A, float16(K,N) B) -> (C) { C(m,n) +=! A(m,k) * B(k,n) }",
    "bfloat16": "def f(bfloat16(M,K) A, bfloat16(K,N) B) -> (C) { C(m,n) max=! A(m,k) * B(k,n) }",
    "int8": "def f(int8(M,K) A, int8(K,N) B) -> (C) { C(m,n) +=! A(m,k) * B(k,n) }",
}


@pytest.mark.parametrize("dtype", list(TYPED))
def test_promotion_is_bit_exact_for_half_and_narrow_types(dtype: str) -> None:
    # The local is rounded (or wrapped) after every operation like the element was:
    # the promoted kernel gives exactly the unpromoted kernel's bits.
    gen = torch.Generator().manual_seed(0)
    dt = getattr(torch, dtype)
    if dt.is_floating_point:
        a, b = (torch.randn(s, generator=gen).to(dt) for s in ((3, 37), (37, 5)))
    else:
        a, b = (torch.randint(-100, 100, s, generator=gen).to(dt) for s in ((3, 37), (37, 5)))
    outs = []
    for use in (False, True):
        options = MappingOptions("naive").usePrivateMemory(use)
        ex = tc.compile(TYPED[dtype], "f", options, a, b, backend="opencl")
        assert ("p_0" in ex.program.kernels[0].opencl_source) == use
        outs.append(ex(a, b))
    assert torch.equal(outs[0], outs[1])


def test_matmul_keeps_c_in_a_register_and_does_not_spill() -> None:
    kernel = KERNELS["matmul"]
    options = MappingOptions("naive").usePrivateMemory(True)
    ex = tc.compile(kernel.tc, kernel.entry, options, *_inputs(kernel), backend="cuda",
                    arch="sm_80")
    (ck,) = ex.program.kernels
    text = ck.cuda_source
    stores = re.findall(r"t_C\[[^\]]*\] =", text)
    # The initialisation and the write-back; the k loop (c_c5) works on a local.
    assert len(stores) == 2 and len(re.findall(r"= t_C\[", text)) == 1, text
    start = text.index("for (int c_c5")
    end = text.index("}", start)
    assert "t_C" not in text[start:end] and "p_0 = (p_0 + " in text[start:end], text
    resources = compile_cuda(text, ck.name, arch="sm_80").resources
    assert resources["spill_bytes"] == 0, resources


@pytest.mark.parametrize("kernel", [pytest.param(v, id=n) for n, v in KERNELS.items()])
def test_every_catalogue_kernel_with_promotion_compiles_for_sm80_without_spills(
        kernel: Kernel) -> None:
    # No PoCL here (its compile time): the promoted kernels' structure and NVRTC only.
    options = MappingOptions("naive").usePrivateMemory(True)
    ex = tc.compile(kernel.tc, kernel.entry, options, *_inputs(kernel), backend="cuda",
                    arch="sm_80")
    assert structure_problems(ex.program) == []
    for info in ex.kernels:
        assert info.resources["spill_bytes"] == 0, f"{info.name} spills: {info.resources}"
