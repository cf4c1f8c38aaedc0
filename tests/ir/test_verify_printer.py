"""The IR verifier rejects broken IR; the IR and AST printers show every stage."""

from __future__ import annotations

import dataclasses

import pytest

from tc.errors import TcInternalError
from tc.ir import nodes as ir
from tc.ir.printer import expr_str, function_str, stage_str
from tc.ir.sym import Sym
from tc.ir.types import ScalarType
from tc.ir.verify import verify
from tc.lang.frontend import check_text
from tc.lang.printer import definition_text, tree_text

F32, F64, I32, BOOL = ScalarType.FLOAT32, ScalarType.FLOAT64, ScalarType.INT32, ScalarType.BOOL

TEXT = """def f(float(N, K) A, float(K) B, float alpha) -> (C, s) {
  t(n) max=! A(n, k)
  C(n) +=! A(n, k) * B(k) + t(n) where y = 1
  C(n) = C(n) > 0.0 ? -C(n) : alpha * float(n) / 2.0
  s +=! n % 2 == 0 || !(n < 2) ? 1 : 0 where n in 0:N
}"""


@pytest.fixture
def fn() -> ir.Function:
    return check_text(TEXT).functions["f"]


def idx(name: str) -> ir.Var:
    return ir.Var(name, "index", type=I32)


def with_stage(fn: ir.Function, k: int, **changes) -> ir.Function:
    stages = list(fn.stages)
    stages[k] = dataclasses.replace(stages[k], **changes)
    return dataclasses.replace(fn, stages=tuple(stages))


def test_the_front_end_output_verifies(fn: ir.Function) -> None:
    verify(fn)


# Each breaks one invariant of a valid function.
BREAKERS = {
    "rhs-type": lambda fn: with_stage(fn, 2, rhs=ir.FloatImm(1.0, type=F64)),
    "binary-operand-types": lambda fn: with_stage(fn, 2, rhs=ir.Binary(
        "+", ir.FloatImm(1.0, type=F32), ir.IntImm(1, type=I32), type=F32)),
    "comparison-not-bool": lambda fn: with_stage(fn, 2, rhs=ir.Binary(
        "<", ir.FloatImm(1.0, type=F32), ir.FloatImm(2.0, type=F32), type=F32)),
    "logic-on-floats": lambda fn: with_stage(fn, 3, rhs=ir.Cast(ir.Binary(
        "&&", ir.FloatImm(1.0, type=F32), ir.FloatImm(2.0, type=F32), type=BOOL), type=I32)),
    "unknown-operator": lambda fn: with_stage(fn, 2, rhs=ir.Binary(
        "**", ir.FloatImm(1.0, type=F32), ir.FloatImm(2.0, type=F32), type=F32)),
    "unbound-index": lambda fn: with_stage(fn, 2, rhs=ir.Cast(idx("z"), type=F32)),
    "unbound-size": lambda fn: with_stage(fn, 2, rhs=ir.Cast(ir.Var("Q", "size", type=I32),
                                                              type=F32)),
    "unbound-let": lambda fn: with_stage(fn, 2, rhs=ir.Var("y", "let", type=F32)),
    "bad-var-kind": lambda fn: with_stage(fn, 2, rhs=ir.Var("n", "global", type=F32)),
    "float-index": lambda fn: with_stage(fn, 2, rhs=ir.Var("n", "index", type=F32)),
    "int-literal-of-float-type": lambda fn: with_stage(fn, 2, rhs=ir.IntImm(1, type=F32)),
    "float-literal-of-int-type": lambda fn: with_stage(fn, 3, rhs=ir.FloatImm(1.0, type=I32)),
    "select-cond": lambda fn: with_stage(fn, 2, rhs=ir.Select(
        ir.FloatImm(1.0, type=F32), ir.FloatImm(1.0, type=F32), ir.FloatImm(2.0, type=F32),
        type=F32)),
    "select-branches": lambda fn: with_stage(fn, 2, rhs=ir.Select(
        ir.Binary("<", idx("n"), idx("n"), type=BOOL), ir.FloatImm(1.0, type=F32),
        ir.FloatImm(2.0, type=F64), type=F32)),
    "unary-not-on-float": lambda fn: with_stage(fn, 2, rhs=ir.Unary(
        "!", ir.FloatImm(1.0, type=F32), type=F32)),
    "call-on-ints": lambda fn: with_stage(fn, 3, rhs=ir.Call(
        "exp", (ir.IntImm(1, type=I32),), type=I32)),
    "call-argument-types": lambda fn: with_stage(fn, 2, rhs=ir.Call(
        "pow", (ir.FloatImm(1.0, type=F32), ir.FloatImm(1.0, type=F64)), type=F32)),
    "read-undeclared": lambda fn: with_stage(fn, 2, rhs=ir.Read("Z", (idx("n"),), type=F32)),
    "read-rank": lambda fn: with_stage(fn, 2, rhs=ir.Read("B", (idx("n"), idx("n")), type=F32)),
    "read-type": lambda fn: with_stage(fn, 2, rhs=ir.Cast(
        ir.Read("B", (idx("n"),), type=F64), type=F32)),
    "float-subscript": lambda fn: with_stage(fn, 2, rhs=ir.Read(
        "B", (ir.FloatImm(0.0, type=F32),), type=F32)),
    "read-before-write": lambda fn: with_stage(fn, 0, rhs=ir.Read("C", (idx("n"),), type=F32)),
    "write-undeclared": lambda fn: with_stage(fn, 2, tensor="Z"),
    "write-input": lambda fn: with_stage(fn, 2, tensor="B"),
    "lhs-rank": lambda fn: with_stage(fn, 2, lhs=()),
    "lhs-not-domain-prefix": lambda fn: with_stage(fn, 1, lhs=("k",)),
    "repeated-domain-index": lambda fn: with_stage(fn, 2, domain=(
        fn.stages[2].domain[0], fn.stages[2].domain[0])),
    "reduction-without-operator": lambda fn: with_stage(fn, 1, op=None, init=False),
    "bad-operator": lambda fn: with_stage(fn, 1, op="-"),
    "init-without-operator": lambda fn: with_stage(fn, 2, init=True),
    "range-with-unknown-size": lambda fn: with_stage(fn, 2, domain=(
        ir.Dim("n", Sym.of(0), Sym.of("Q")),)),
    "shape-with-unknown-size": lambda fn: dataclasses.replace(fn, outputs=(
        dataclasses.replace(fn.outputs[0], shape=(Sym.of("Q"),)), fn.outputs[1])),
    "output-never-written": lambda fn: dataclasses.replace(fn, stages=fn.stages[:3]),
    "duplicate-tensor-names": lambda fn: dataclasses.replace(fn, temps=fn.temps + (
        dataclasses.replace(fn.inputs[0], role="temp"),)),
    "let-type": lambda fn: with_stage(fn, 2, rhs=ir.Let(
        "q", ir.FloatImm(1.0, type=F32), ir.Var("q", "let", type=F32), type=F64)),
}


@pytest.mark.parametrize("name", sorted(BREAKERS))
def test_verifier_rejects_broken_ir(fn: ir.Function, name: str) -> None:
    broken = BREAKERS[name](fn)
    with pytest.raises(TcInternalError) as info:
        verify(broken)
    assert "IR verifier" in str(info.value) and "f" in str(info.value)


def test_a_valid_let_verifies(fn: ir.Function) -> None:
    rhs = ir.Let("q", ir.FloatImm(1.0, type=F32),
                 ir.Binary("+", ir.Var("q", "let", type=F32), ir.Cast(idx("n"), type=F32),
                           type=F32), type=F32)
    verify(with_stage(fn, 2, rhs=rhs))


# -- printers -----------------------------------------------------------------------------------


def test_function_str_prints_every_stage(fn: ir.Function) -> None:
    text = function_str(fn)
    lines = text.split("\n")
    assert lines[0] == ("func f(float32(N, K) A, float32(K) B, float32 alpha) -> "
                        "(float32(N) C, int32 s)")
    assert "  sizes: N = A.size(0), K = A.size(1)" in lines
    assert "  temp float32(N) t" in lines
    for k, st in enumerate(fn.stages):
        assert f"  stage {k}: {stage_str(st)}" in text
    assert "stage 0: t(n) max=! A(n, k)\n      over n in 0:N, k in 0:K" in text
    assert "stage 1: C(n) +=! (let y = 1 in A(n, k) * B(k) + t(n))" in text
    assert "stage 2: C(n) = C(n) > 0.0 ? -C(n) : alpha * float32(n) / 2.0" in text
    assert "stage 3: s +=! n % 2 == 0 || !(n < 2) ? 1 : 0\n      over n in 0:N" in text


def test_function_str_with_concrete_sizes(fn: ir.Function) -> None:
    text = function_str(fn, {"N": 3, "K": 5})
    assert "float32(3, 5) A" in text and "N = A.size(0) = 3" in text
    assert "over n in 0:3, k in 0:5" in text and "temp float32(3) t" in text


def test_printer_of_a_strided_stage_and_scalar_stage() -> None:
    fn = check_text("""
    def f(float(H) I) -> (O, s) {
        O(h) +=! I(2 * h + kh) where kh in 0:3
        s = 1.0
    }""").functions["f"]
    assert stage_str(fn.stages[0]) == ("O(h) +=! I(2 * h + kh)\n"
                                       "      over h in 0:(H + 1) / 2 - 1, kh in 0:3")
    assert stage_str(fn.stages[1]) == "s = 1.0\n      over (a single point)"


@pytest.mark.parametrize(
    ("expr", "text"),
    [
        (ir.Binary("-", idx("a"), ir.Binary("-", idx("b"), idx("c"), type=I32), type=I32),
         "a - (b - c)"),
        (ir.Binary("-", ir.Binary("-", idx("a"), idx("b"), type=I32), idx("c"), type=I32),
         "a - b - c"),
        (ir.Binary("*", ir.Binary("+", idx("a"), idx("b"), type=I32), idx("c"), type=I32),
         "(a + b) * c"),
        (ir.Unary("-", ir.Binary("+", idx("a"), idx("b"), type=I32), type=I32), "-(a + b)"),
        (ir.Binary("min", idx("a"), ir.IntImm(3, type=I32), type=I32), "min(a, 3)"),
        (ir.IntImm(3, type=ScalarType.INT64), "int64(3)"),
        (ir.FloatImm(0.5, type=F64), "float64(0.5)"),
        (ir.Call("exp", (ir.FloatImm(0.5, type=F32),), type=F32), "exp(0.5)"),
        (ir.Read("s", (), type=F32), "s"),
    ],
)
def test_expr_str(expr: ir.Expr, text: str) -> None:
    assert expr_str(expr) == text


def test_ast_printers() -> None:
    checked = check_text(TEXT)
    d = checked.definition("f")
    dump = tree_text(d)
    assert dump.startswith("Definition @1:1")
    assert "Ident 'alpha' @1:40" in dump
    assert dump.count("Statement") == len(d.statements)
    text = definition_text(d)
    assert text.count("\n") == len(d.statements) + 1
    assert list(check_text(text).functions) == ["f"]
