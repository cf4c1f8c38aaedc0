"""Every error category of LANGUAGE.md section 5 raises the right TcError, at the right
line and column, with the source line and a caret in its message."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

import tc
from tc.errors import (
    TcError,
    TcNameError,
    TcRangeError,
    TcSemanticError,
    TcSyntaxError,
    TcTypeError,
)


def position(text: str, needle: str, nth: int = 1) -> tuple[int, int]:
    """The 1-based (line, column) of the ``nth`` occurrence of ``needle`` in ``text``."""
    start = -1
    for _ in range(nth):
        start = text.index(needle, start + 1)
    line = text.count("\n", 0, start) + 1
    column = start - (text.rfind("\n", 0, start) + 1) + 1
    return line, column


def check_rendering(err: TcError, text: str) -> None:
    """The message shows the offending line and a caret under the reported column."""
    rendered = str(err).split("\n")
    src = text.split("\n")[err.line - 1].rstrip("\r").expandtabs(1)
    assert f"line {err.line}, column {err.column}" in rendered[0]
    k = rendered.index("    " + src)
    assert rendered[k + 1] == " " * (4 + err.column - 1) + "^"


@dataclass(frozen=True)
class Case:
    id: str
    text: str
    cls: type[TcError]
    needle: str  # the offending token
    nth: int = 1  # which occurrence of needle
    words: tuple[str, ...] = ()  # words the message must contain


CASES = [
    # -- syntax errors ------------------------------------------------------------------
    Case("syntax-missing-operand", "def f(float(N) A) -> (C) {\n  C(i) = A(i) +\n}",
         TcSyntaxError, "}", words=("unexpected",)),
    Case("syntax-results-without-parentheses", "def f(float(N) A) -> C { C(i) = A(i) }",
         TcSyntaxError, "C {", words=("'('",)),
    Case("syntax-expression-on-lhs", "def f(float(N) A) -> (C) { C(i + 1) = A(i) }",
         TcSyntaxError, "+"),
    Case("syntax-literal-on-lhs", "def f(float(N) A) -> (C) { C(0) = A(0) }",
         TcSyntaxError, "0"),
    Case("syntax-unclosed-parenthesis", "def f(float(N) A) -> (C) {\n  C(i) = (A(i) * 2\n}",
         TcSyntaxError, "}", words=("')'",)),
    Case("syntax-chained-comparison", "def f(float(N) A) -> (C) { C(i) = A(i) < 1 < 2 }",
         TcSyntaxError, "<", nth=2),
    Case("syntax-missing-arrow", "def f(float(N) A) (C) { C(i) = A(i) }",
         TcSyntaxError, "(C)"),
    Case("syntax-double-operator", "def f(float(N) A) -> (C) { C(i) = A(i) * * 2.0 }",
         TcSyntaxError, "*", nth=2),
    Case("syntax-bad-character", "def f(float(N) A) -> (C) {\n  C(i) = A(i) @ 2\n}",
         TcSyntaxError, "@", words=("'@'",)),
    Case("syntax-bad-character-caret", "def f(float(N) A) -> (C) {\n\tC(i) = A(i) ^ 2\n}",
         TcSyntaxError, "^", words=("'^'",)),
    Case("syntax-non-ascii-name", "def f(float(N) A) -> (C) { C(i) = A(i) * é }",
         TcSyntaxError, "é"),
    Case("type-as-name", "def f(float(N) float) -> (C) { C(i) = 1.0 }",
         TcNameError, "float)", words=("reserved",)),
    Case("keyword-as-name", "def f(float(N) where) -> (C) { C(i) = 1.0 }",
         TcNameError, "where", words=("reserved",)),
    Case("type-as-index", "def f(float(N) A) -> (C) { C(half) = 1.0 }",
         TcNameError, "half", words=("reserved",)),
    Case("keyword-as-let", "def f(float(N) A) -> (C) { C(i) = A(i) where in = 1.0 }",
         TcNameError, "in =", words=("reserved",)),
    Case("type-as-size", "def f(float(int8) A) -> (C) { C(i) = A(i) }",
         TcNameError, "int8", words=("reserved",)),
    Case("keyword-as-temporary", "def f(float(N) A) -> (C) {\n  exists(i) = A(i)\n"
         "  C(i) = A(i)\n}", TcNameError, "exists", words=("reserved",)),
    Case("syntax-no-unary-plus", "def f(float(N) A) -> (C) { C(i) = + A(i) }",
         TcSyntaxError, "+"),
    Case("syntax-empty-dims", "def f(float() A) -> (C) { C(i) = 1.0 }",
         TcSyntaxError, ")"),
    # -- names ------------------------------------------------------------------------------
    Case("undefined-tensor", "def f(float(M, K) A) -> (C) {\n    C(m, n) +=! A(m, k) * W(k, n)\n}",
         TcNameError, "W(", words=("undefined", "'W'")),
    Case("undefined-size-in-result", "def f(float(N) A) -> (float(M) C) { C(i) = A(i) }",
         TcNameError, "M", words=("'M'",)),
    Case("undefined-size-in-range", "def f(float(N) A) -> (C) { C(i) = A(i) where i in 0:j }",
         TcNameError, "j", words=("'j'",)),
    Case("duplicate-params", "def f(float(N) A, float(N) A) -> (C) { C(i) = A(i) }",
         TcNameError, "A", nth=2, words=("duplicate", "'A'")),
    Case("duplicate-param-result", "def f(float(N) A) -> (A) { A(i) = 1.0 where i in 0:N }",
         TcNameError, "A", nth=2, words=("duplicate",)),
    Case("duplicate-results", "def f(float(N) A) -> (C, C) { C(i) = A(i) }",
         TcNameError, "C", nth=2, words=("duplicate",)),
    Case("duplicate-param-size", "def f(float(N) A, float(A) B) -> (C) { C(i) = A(i) }",
         TcNameError, "A", nth=2, words=("duplicate",)),
    Case("duplicate-size-then-tensor", "def f(float(A) A) -> (C) { C(i) = A(i) }",
         TcNameError, "A", nth=2, words=("duplicate",)),
    Case("duplicate-definitions",
         "def f(float(N) A) -> (C) { C(i) = A(i) }\ndef f(float(N) A) -> (C) { C(i) = A(i) }",
         TcNameError, "f(float", nth=2, words=("duplicate", "'f'")),
    Case("duplicate-let", "def f(float(N) A) -> (C) { C(i) = x where x = A(i), x = 1.0 }",
         TcNameError, "x", nth=3, words=("duplicate",)),
    Case("duplicate-range", "def f(float(N) A) -> (C) { C(i) = A(i) where i in 0:N, i in 0:2 }",
         TcNameError, "i", nth=5, words=("duplicate",)),
    Case("let-shadows-tensor", "def f(float(N) A) -> (C) { C(i) = A(i) where A = 1.0 }",
         TcNameError, "A =", words=("duplicate",)),
    Case("builtin-as-parameter", "def f(float(N) exp) -> (C) { C(i) = 1.0 where i in 0:N }",
         TcNameError, "exp", words=("builtin", "'exp'")),
    Case("builtin-as-scalar-parameter", "def f(float exp) -> (C) { C = 1.0 }",
         TcNameError, "exp", words=("builtin",)),
    Case("builtin-as-result", "def f(float(N) A) -> (exp) { exp(i) = A(i) }",
         TcNameError, "exp", words=("builtin",)),
    Case("builtin-as-temporary", "def f(float(N) A) -> (C) {\n  exp(i) = A(i)\n  C(i) = A(i)\n}",
         TcNameError, "exp", words=("builtin",)),
    Case("builtin-as-index", "def f(float(N) A) -> (C) { C(exp) = A(exp) }",
         TcNameError, "exp", words=("builtin", "index")),
    Case("builtin-as-let", "def f(float(N) A) -> (C) { C(i) = A(i) where exp = 1.0 }",
         TcNameError, "exp", words=("builtin", "let")),
    Case("builtin-as-size", "def f(float(sqrt) A) -> (C) { C(i) = A(i) }",
         TcNameError, "sqrt", words=("builtin",)),
    Case("min-as-tensor", "def f(float(N) min) -> (C) { C(i) = 1.0 where i in 0:N }",
         TcNameError, "min", words=("builtin",)),
    Case("builtin-as-value", "def f(float(N) A) -> (C) { C(i) = A(i) + exp }",
         TcNameError, "exp", words=("builtin",)),
    Case("size-as-lhs-index", "def f(float(N) A) -> (C) { C(N) = 1.0 }",
         TcNameError, "N", nth=2, words=("size",)),
    Case("tensor-as-index", "def f(float(N) A, float(N) B) -> (C) { C(B) = A(B) }",
         TcNameError, "B", nth=2, words=("tensor",)),
    Case("size-written-as-tensor", "def f(float(N) A) -> (C) {\n  N(i) = A(i)\n  C(i) = A(i)\n}",
         TcNameError, "N(", words=("size",)),
    # -- subscripts, arity, types ------------------------------------------------------------
    Case("too-many-subscripts", "def f(float(N) A) -> (C) { C(i) = A(i, i) }",
         TcTypeError, "A(i,", words=("subscripts", "'A'")),
    Case("too-few-subscripts", "def f(float(N, M) A) -> (C) { C(i) = A(i) }",
         TcTypeError, "A(i)", words=("subscripts",)),
    Case("tensor-as-bare-name", "def f(float(N) A) -> (C) { C = A }",
         TcTypeError, "A }", words=("subscripts",)),
    Case("scalar-with-subscript", "def f(float x) -> (C) { C = x(0) }",
         TcTypeError, "x(0)", words=("subscripts",)),
    Case("wrong-lhs-subscripts",
         "def f(float(N) A) -> (float(N) C) { C(i, j) = A(i) where j in 0:2 }",
         TcTypeError, "C(i,", words=("subscripts", "'C'")),
    Case("float-subscript", "def f(float(N) A) -> (C) { C(i) = A(1.0 * i) }",
         TcTypeError, "1.0", words=("integer",)),
    Case("tensor-value-subscript", "def f(float(N) A, float(N) B) -> (C) { C(i) = A(i, B(i)) }"
         .replace("float(N) A", "float(N, N) A"), TcTypeError, "B(i))", words=("integer",)),
    Case("bool-subscript", "def f(float(N) A) -> (C) { C(i) = A(i > 0) }",
         TcTypeError, "i > 0", nth=1, words=("integer",)),
    Case("builtin-arity-1", "def f(float(N) A) -> (C) { C(i) = exp(A(i), 1.0) }",
         TcTypeError, "exp", words=("'exp'", "1 argument")),
    Case("builtin-arity-2", "def f(float(N) A) -> (C) { C(i) = pow(A(i)) }",
         TcTypeError, "pow", words=("'pow'", "2 arguments")),
    Case("builtin-arity-3", "def f(float(N) A) -> (C) { C(i) = fma(A(i), 1.0) }",
         TcTypeError, "fma", words=("'fma'", "3 arguments")),
    Case("builtin-arity-min", "def f(float(N) A) -> (C) { C(i) = min(A(i), 1.0, 2.0) }",
         TcTypeError, "min", words=("'min'",)),
    Case("builtin-arity-zero", "def f(float(N) A) -> (C) { C(i) = A(i) + sqrt() }",
         TcTypeError, "sqrt", words=("'sqrt'",)),
    Case("cast-arity", "def f(float(N) A) -> (C) { C(i) = int32(A(i), 1) }",
         TcTypeError, "int32"),
    Case("modulo-on-floats", "def f(float(N) A) -> (C) { C(i) = A(i) % 2.0 }",
         TcTypeError, "%", words=("'%'",)),
    Case("and-on-numbers", "def f(float(N) A) -> (C) { C(i) = A(i) > 0.0 && 1.0 ? 1.0 : 0.0 }",
         TcTypeError, "&&", words=("'&&'",)),
    Case("or-on-numbers", "def f(int32(N) A) -> (C) { C(i) = A(i) || A(i) > 0 }",
         TcTypeError, "||", words=("'||'",)),
    Case("not-on-number", "def f(float(N) A) -> (C) { C(i) = !A(i) }",
         TcTypeError, "!", words=("'!'",)),
    Case("minus-on-bool", "def f(float(N) A) -> (C) { C(i) = -(A(i) > 0) }",
         TcTypeError, "-(A", words=("bool",)),
    Case("plus-on-bools", "def f(bool(N) A) -> (C) { C(i) = A(i) + A(i) }",
         TcTypeError, "+", words=("bool",)),
    Case("builtin-on-bool", "def f(bool(N) A) -> (C) { C(i) = exp(A(i)) }",
         TcTypeError, "A(i))", words=("bool",)),
    Case("non-bool-condition", "def f(float(N) A) -> (C) { C(i) = A(i) ? 1.0 : 2.0 }",
         TcTypeError, "?", words=("condition",)),
    Case("double-into-float", "def f(double(N) A) -> (float(N) C) { C(i) = A(i) }",
         TcTypeError, "=", nth=1, words=("float64", "float32", "cast")),
    Case("float-into-int", "def f(float(N) A) -> (int32(N) C) { C(i) = A(i) }",
         TcTypeError, "=", words=("cast",)),
    Case("float-literal-into-half", "def f(half(N) A) -> (half(N) C) { C(i) = A(i) * 2.0 }",
         TcTypeError, "=", words=("cast",)),
    Case("int-into-bool", "def f(int32(N) A) -> (bool(N) C) { C(i) = A(i) }",
         TcTypeError, "=", words=("cast",)),
    Case("later-statement-wider", "def f(float(N) A, double(N) D) -> (C) {\n"
         "  C(i) = A(i)\n  C(i) = D(i)\n}", TcTypeError, "=", nth=2, words=("cast",)),
    Case("huge-integer-literal", "def f() -> (C) { C = 99999999999999999999 }",
         TcTypeError, "9999", words=("int64",)),
    Case("huge-float-literal", "def f() -> (C) { C = 1e39 }", TcTypeError, "1e39"),
    Case("non-affine-range-bound", "def f(float(N, M) A) -> (C) { C(i) = 1.0 where i in 0:N*M }",
         TcTypeError, "N*M"),
    Case("size-read-as-tensor", "def f(float(N) A) -> (C) { C(i) = A(i) * N(i) }",
         TcTypeError, "N(i)", words=("size",)),
    # -- statements ----------------------------------------------------------------------------
    Case("reduction-index-with-plain-assign",
         "def f(float(N, M) A) -> (C) { C(i) = A(i, j) + A(i, j) }",
         TcSemanticError, "j", words=("'j'", "reduction")),
    Case("reduction-index-only-in-where", "def f(float(N) A) -> (C) { C(i) = A(i) where j in 0:3 }",
         TcSemanticError, "j", words=("'j'",)),
    Case("reduction-index-in-let", "def f(float(N, M) A) -> (C) { C(i) = y where y = A(i, j) }",
         TcSemanticError, "j", words=("'j'",)),
    Case("writing-an-input", "def f(float(N) A) -> (C) {\n  A(i) = 1.0 where i in 0:N\n"
         "  C(i) = A(i)\n}", TcSemanticError, "A(i) =", words=("input", "'A'")),
    Case("writing-a-scalar-input", "def f(float a) -> (C) { a = 1.0\n C = a }",
         TcSemanticError, "a =", words=("input",)),
    Case("read-before-write", "def f(float(N) A) -> (C) { C(i) = C(i) + A(i) }",
         TcSemanticError, "C(i) +", words=("'C'", "before")),
    Case("read-result-before-write", "def f(float(N) A) -> (C, D) {\n  D(i) = C(i)\n"
         "  C(i) = A(i)\n}", TcSemanticError, "C(i)\n", words=("'C'",)),
    Case("read-temporary-before-write", "def f(float(N) A) -> (C) {\n  C(i) = T(i)\n"
         "  T(i) = A(i)\n}", TcSemanticError, "T(i)", words=("'T'", "before")),
    Case("read-scalar-temporary-before-write", "def f(float(N) A) -> (C) {\n  C = t\n"
         "  t = 1.0\n}", TcSemanticError, "t\n", words=("'t'", "before")),
    Case("index-named-like-a-later-temporary", "def f(float(N) A) -> (C) {\n  C(t) = A(t)\n"
         "  t = 1.0\n}", TcNameError, "t)", words=("'t'", "tensor")),
    Case("let-named-like-a-later-temporary", "def f(float(N) A) -> (C) {\n"
         "  C(i) = A(i) * t where t = 2.0\n  t = 1.0\n}", TcNameError, "t =",
         words=("duplicate",)),
    Case("result-never-written", "def f(float(N) A) -> (C, D) { C(i) = A(i) }",
         TcSemanticError, "D", words=("'D'",)),
    Case("reduction-reads-its-target",
         "def f(float(N) A) -> (C) {\n  C(i) = A(i)\n  C(i) += C(i) * A(j)\n}",
         TcSemanticError, "C(i) *", words=("'C'",)),
    Case("self-read-at-other-subscripts",
         "def f(float(N) A) -> (C) {\n  C(i) = A(i)\n  C(i) = C(N - 1 - i)\n}",
         TcSemanticError, "C(N", words=("'C'",)),
    Case("repeated-lhs-index", "def f(float(N, N) A) -> (C) { C(i, i) = A(i, i) }",
         TcSemanticError, "i", nth=2),
    # -- ranges ------------------------------------------------------------------------------------
    Case("unconstrained-index", "def f(float(N) A) -> (C) { C(i) = A(0) + 1.0 }",
         TcRangeError, "i", words=("'i'", "where")),
    Case("unconstrained-reduction-index", "def f(float(N) A) -> (C) { C(i) +=! A(i) * k }",
         TcRangeError, "k", words=("'k'", "where")),
    Case("coupled-indices", "def f(float(N) I) -> (C) { C(i) +=! I(i + j) }",
         TcRangeError, "i", words=("'i'", "where")),
    Case("coupled-indices-scalar", "def f(float(N) I) -> (s) { s +=! I(i + j) }",
         TcRangeError, "i", nth=1, words=("'i'",)),
    Case("coupled-three-indices",
         "def f(float(N) I) -> (C) { C(i) +=! I(i + j + k) where j in 0:2 }",
         TcRangeError, "i", words=("'i'",)),
    Case("inconsistent-sizes", "def f(float(N) A, float(M) B) -> (C) {\n  C(i) = A(i)\n"
         "  C(i) = B(i)\n}", TcRangeError, "C(i) = B", words=("inconsistent", "'C'")),
    Case("inconsistent-with-declaration", "def f(float(N) A) -> (float(N) C) {\n"
         "  C(i) = A(i) where i in 0:3\n}", TcRangeError, "C(i)", words=("inconsistent",)),
    Case("negative-lhs-range", "def f(float(N) A) -> (C) { C(i) = A(i + 1) }",
         TcRangeError, "i", words=("negative",)),
    Case("out-of-bounds-for-every-size",
         "def f(float(N) A) -> (C) { C(i) = A(i) + A(i + 1) where i in 0:N }",
         TcRangeError, "i + 1", words=("'A'", "bounds")),
    Case("where-range-exceeds-tensor", "def f(float(N) A) -> (C) { C(i) = A(i) where i in 0:N+1 }",
         TcRangeError, "i) where", words=("bounds",)),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_error(case: Case) -> None:
    with pytest.raises(TcError) as info:
        tc.define(case.text)
    err = info.value
    assert type(err) is case.cls, f"{type(err).__name__}: {err}"
    assert (err.line, err.column) == position(case.text, case.needle, case.nth), str(err)
    for word in case.words:
        assert word in err.message, err.message
    check_rendering(err, case.text)


def test_the_documented_example() -> None:
    text = ("def matmul(float(M, K) A, float(K, N) B) -> (C) {\n"
            "    C(m, n) +=! A(m, k) * W(k, n)\n}")
    with pytest.raises(TcNameError) as info:
        tc.define(text)
    assert str(info.value) == (
        "error: undefined tensor 'W' at line 2, column 27\n"
        "        C(m, n) +=! A(m, k) * W(k, n)\n"
        "                              ^"
    )


@pytest.mark.parametrize(
    "text",
    [
        "def f(float(N) A) -> (C) {\n  C(i) = A(i)\n",
        "def f(float(N) A) -> (C) {\n  C(i) = A(i)\n\n   \n",
        "def f(float(N) A) -> (C) {\n  C(i) = A(i) # trailing comment",
        "def f(float(N) A) -> (C) { C(i) = A(i) +",
        "def f(float(N) A",
        "def",
    ],
)
def test_unexpected_end_of_text_points_after_the_last_token(text: str) -> None:
    with pytest.raises(TcSyntaxError) as info:
        tc.define(text)
    err = info.value
    assert "end of text" in err.message
    stripped = text.rstrip()
    assert (err.line, err.column) == (stripped.count("\n") + 1,
                                      len(stripped.split("\n")[-1]) + 1)
    check_rendering(err, text)


def test_error_lines_count_newlines_only() -> None:
    # \f and \r are white space, not line breaks: the shown line is the reported one.
    text = "def f(float(N) A) -> (C) {\f\r C(i) = A(i) +\n}"
    with pytest.raises(TcSyntaxError) as info:
        tc.define(text)
    assert (info.value.line, info.value.column) == (2, 1)
    check_rendering(info.value, text)


def test_errors_in_the_second_definition_have_its_lines() -> None:
    text = ("def f(float(N) A) -> (C) { C(i) = A(i) }\n\n"
            "def g(float(N) A) -> (C) {\n  C(i) = A(i) * B(i)\n}")
    with pytest.raises(TcNameError) as info:
        tc.define(text)
    assert (info.value.line, info.value.column) == (4, 17)


def test_a_non_string_text_is_a_tc_error() -> None:
    with pytest.raises(TcSyntaxError):
        tc.define(b"def f() -> () {}")  # type: ignore[arg-type]


@pytest.mark.parametrize("depth", [300, 5000])
@pytest.mark.parametrize("form", ["-", "A(i) + ("])
def test_deep_nesting_is_a_positioned_tc_error(depth: int, form: str) -> None:
    closing = ")" * depth if form.endswith("(") else ""
    text = "def f(float(N) A) -> (C) { C(i) = " + form * depth + "A(i)" + closing + " }"
    with pytest.raises(TcSyntaxError) as info:
        tc.define(text)
    assert "nested too deeply" in info.value.message
    assert info.value.line == 1 and 35 <= info.value.column <= len(text)
    check_rendering(info.value, text)


def test_nesting_within_the_limit_runs_end_to_end() -> None:
    import torch

    depth = 200
    text = ("def f(float(N) A) -> (C, D) {\n  C(i) = " + "-" * depth + "A(i)\n  D(i) = "
            + " + ".join(["A(i)"] * depth) + "\n}")
    C, D = tc.define(text).f(torch.tensor([1.0, -2.0, 3.0]))
    assert C.tolist() == [1.0, -2.0, 3.0]
    assert D.tolist() == [200.0, -400.0, 600.0]


def test_every_error_class_is_a_tc_error() -> None:
    for cls in (TcSyntaxError, TcNameError, TcTypeError, TcSemanticError, TcRangeError):
        assert issubclass(cls, TcError)
    assert issubclass(tc.TcArgumentError, ValueError)
    assert issubclass(tc.TcArgumentTypeError, TypeError)
