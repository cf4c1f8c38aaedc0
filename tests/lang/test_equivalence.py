"""Issue 14: the original's ``<=>`` equivalence annotation (LANGUAGE.md section 3):
parsed after the right-hand side and before ``where``, kept on the statement, printed
by the round-trip printer, left out of the canonical text (the cache key), and
ignored by sema (no range inference from it, no check of its names)."""

from __future__ import annotations

import dataclasses
import warnings

import pytest
import torch

import tc
from tc.lang import ast
from tc.lang.frontend import check_text
from tc.lang.parser import parse
from tc.lang.printer import canonical_hash, canonical_text, definition_text, tree_text

MATMUL = """def mm(float(M, K) A, float(K, N) B) -> (O) {
    O(m, n) +=! A(m, k) * B(k, n) <=> matmul(A, B)
}"""
SIGMOID = "def sig(float(N) x) -> (y) { y(i) = 1 / (1 + exp(-x(i))) <=> sigmoid(x) }"
WITH_WHERE = ("def f(float(N) x, float(3) w) -> (y) {\n"
              "    y(i) +=! x(i + k) * w(k) <=> conv1d(x, w, 0) where k in 0:3\n}")


def _statement(text: str, k: int = 0) -> ast.Statement:
    return parse(text).definitions[0].statements[k]


def test_the_annotation_is_kept_on_the_statement() -> None:
    eq = _statement(MATMUL).equivalent
    assert eq is not None and eq.name.name == "matmul"
    assert [a.name for a in eq.args] == ["A", "B"]
    line = MATMUL.split("\n")[1]
    assert (eq.span.line, eq.span.column) == (2, line.index("<=>") + 1)
    assert (eq.name.span.line, eq.name.span.column) == (2, line.index("matmul") + 1)
    sig = _statement(SIGMOID).equivalent
    assert sig.name.name == "sigmoid" and [a.name for a in sig.args] == ["x"]


def test_the_annotation_comes_before_where_and_takes_any_expressions() -> None:
    st = _statement(WITH_WHERE)
    assert st.equivalent.name.name == "conv1d"
    assert isinstance(st.equivalent.args[2], ast.IntLit)
    assert [c.index.name for c in st.clauses] == ["k"]
    st = _statement("def f(float(N) x) -> (y) { y(i) = x(i) <=> lib(x(i) * 2, N - 1, y) }")
    assert isinstance(st.equivalent.args[0], ast.Binary)
    assert _statement("def f(float(N) x) -> (y) { y(i) = x(i) <=> copy() }").equivalent.args == ()


def test_a_statement_without_annotation_has_none_and_the_field_is_frozen() -> None:
    st = _statement("def f(float(N) x) -> (y) { y(i) = x(i) }")
    assert st.equivalent is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        _statement(MATMUL).equivalent = None  # type: ignore[misc]


def test_the_printer_round_trips_the_annotation() -> None:
    for text in (MATMUL, SIGMOID, WITH_WHERE):
        printed = definition_text(parse(text).definitions[0])
        assert "<=>" in printed
        again = parse(printed).definitions[0]
        assert definition_text(again) == printed
        assert again.statements[0].equivalent.name.name == _statement(text).equivalent.name.name
    printed = definition_text(parse(WITH_WHERE).definitions[0])
    assert "<=> conv1d(x, w, 0) where k in 0:3" in printed
    assert "<=>" not in definition_text(parse(MATMUL).definitions[0], annotations=False)


def test_the_canonical_text_leaves_the_annotation_out() -> None:
    plain = MATMUL.replace(" <=> matmul(A, B)", "")
    other = MATMUL.replace("matmul(A, B)", "gemm(B, A, 1.0)")
    d, p, o = (parse(t).definitions[0] for t in (MATMUL, plain, other))
    assert canonical_text(d) == canonical_text(p) == canonical_text(o)
    assert "<=>" not in canonical_text(d) and "matmul" not in canonical_text(d)
    assert canonical_hash(d) == canonical_hash(p)
    # The unit's cache key is the canonical text: annotated or not, one entry.
    assert tc.define(MATMUL).mm.canonical == tc.define(plain).mm.canonical


def test_the_tree_dump_shows_the_annotation() -> None:
    dump = tree_text(parse(MATMUL).definitions[0])
    assert ".equivalent:" in dump and "Ident 'matmul' @2:39" in dump
    assert ".equivalent" not in tree_text(parse(SIGMOID.replace(" <=> sigmoid(x)", ""))
                                          .definitions[0])


def test_sema_ignores_the_annotation() -> None:
    # Names the definition does not know, indices it does not use: accepted silently,
    # and no range is inferred from them (j would be unconstrained).
    text = "def f(float(N) x) -> (y) { y(i) = x(i) <=> library_op(Z(j), q, 3.5) }"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        unit = tc.define(text, backend="reference")
    assert [d.name for d in unit.f.ir.stages[0].domain] == ["i"]
    plain = check_text(text.replace(" <=> library_op(Z(j), q, 3.5)", "")).functions["f"]
    assert check_text(text).functions["f"] == plain


def test_annotated_definitions_compute_as_without(target: str) -> None:
    a, b = torch.randn(3, 5), torch.randn(5, 7)
    torch.testing.assert_close(tc.define(MATMUL, backend=target).mm(a, b), a @ b)
    x = torch.randn(11)
    torch.testing.assert_close(tc.define(SIGMOID, backend=target).sig(x), torch.sigmoid(x))


@pytest.mark.parametrize("text, needle, words", [
    # no call after '<=>'
    ("def f(float(N) x) -> (y) { y(i) = x(i) <=> matmul }", "}", ("'('",)),
    ("def f(float(N) x) -> (y) { y(i) = x(i) <=> (x) }", "(x)", ("a name",)),
    ("def f(float(N) x) -> (y) { y(i) = x(i) <=> 3 }", "3", ("a name",)),
    # unterminated arguments
    ("def f(float(N) x) -> (y) { y(i) = x(i) <=> g(x, }", "}", ()),
    # after the where clauses: the original's order is right-hand side, <=>, where
    ("def f(float(N) x) -> (y) { y(i) = x(i) where i in 0:N <=> copy(x) }", "<=>", ()),
    # two annotations
    ("def f(float(N) x) -> (y) { y(i) = x(i) <=> a(x) <=> b(x) }", "<=> b", ()),
    # inside an expression
    ("def f(float(N) x) -> (y) { y(i) = (x(i) <=> a(x)) }", "<=>", ()),
])
def test_malformed_annotations_are_positioned_syntax_errors(text: str, needle: str,
                                                              words: tuple[str, ...]) -> None:
    with pytest.raises(tc.TcSyntaxError) as info:
        tc.define(text)
    err = info.value
    assert (err.line, err.column) == (1, text.index(needle) + 1), str(err)
    for w in words:
        assert w in err.message, err.message
    assert str(err).splitlines()[-1] == " " * (4 + err.column - 1) + "^"
