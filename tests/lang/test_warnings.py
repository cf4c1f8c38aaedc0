"""Issue 12, "never a wrong answer": texts that define nothing, guarded reads in range
inference, and the warnings (tc.TcWarning) about valid texts that are probably not
what was meant (LANGUAGE.md sections 4 and 5)."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from programs import EVERYTHING, OWN_PROGRAMS
from targets_here import runnable_targets

import tc
from tc.catalogue import KERNELS
from tc.cli import main
from tc.lang.frontend import check_text

# -- texts that define nothing ------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "   \n\t\n", "# only a comment\n", "\n# two\n# lines"])
def test_a_text_without_definition_is_a_positioned_error(text: str) -> None:
    with pytest.raises(tc.TcSyntaxError) as info:
        tc.define(text)
    err = info.value
    assert (err.line, err.column) == (1, 1)
    assert "no definition" in err.message and "def " in err.message  # says what to write


@pytest.mark.parametrize("results", ["()", "( )", "(\n)"])
def test_a_definition_without_results_is_a_positioned_error(results: str) -> None:
    text = f"def f(float(N) A) -> {results} {{\n    B(i) = A(i)\n}}"
    with pytest.raises(tc.TcSemanticError) as info:
        tc.define(text)
    err = info.value
    assert (err.line, err.column) == (1, text.index("->") + 1)  # at the '->'
    assert "no results" in err.message and "-> (" in err.message
    assert str(err).splitlines()[-1].index("^") == str(err).splitlines()[-2].index("->")


def test_a_missing_arrow_is_named_in_the_syntax_error() -> None:
    with pytest.raises(tc.TcSyntaxError, match="expected '->'"):
        tc.define("def f(float(N) A) (B) { B(i) = A(i) }")


def test_cli_check_rejects_empty_texts_and_definitions_without_results(tmp_path: Path,
                                                                        capsys) -> None:
    empty, none = tmp_path / "empty.tc", tmp_path / "none.tc"
    empty.write_text("# nothing here\n")
    none.write_text("def f(float(N) A) -> () {}\n")
    assert main(["check", str(empty)]) == 1
    assert f"{empty}:1:1: syntax error: the text has no definition" in capsys.readouterr().err
    assert main(["check", str(none)]) == 1
    assert f"{none}:1:19: error: definition 'f' has no results" in capsys.readouterr().err


# -- guarded reads in range inference -----------------------------------------------------

CONV1D_PADDED = """
def conv1d(float(L) x, float(KW) w) -> (y) {
  y(i) +=! (i+kw-1 >= 0 && i+kw-1 < L) ? x(i+kw-1) * w(kw) : 0.0 where i in 0:L
}
"""
CONV1D_UNPADDED = """
def conv1d(float(L) x, float(KW) w) -> (y) {
  y(i) +=! x(i+kw-1) * w(kw) where i in 0:L
}
"""
# Only the lower bound is guarded: the last output reads x(L).
CONV1D_HALF_GUARDED = """
def conv1d(float(L) x, float(KW) w) -> (y) {
  y(i) +=! (i+kw-1 >= 0) ? x(i+kw-1) * w(kw) : 0.0 where i in 0:L
}
"""


def _domain(text: str) -> dict[str, tuple[str, str]]:
    fn = next(iter(check_text(text).functions.values()))
    return {d.name: (str(d.lo), str(d.hi)) for d in fn.stages[0].domain}


def test_a_read_guarded_by_its_subscript_does_not_narrow_ranges() -> None:
    assert _domain(CONV1D_PADDED) == {"i": ("0", "L"), "kw": ("0", "KW")}
    # Without the guard, x(i + kw - 1) for every i in 0:L leaves only the middle tap.
    assert _domain(CONV1D_UNPADDED)["kw"] == ("1", "min(2, KW)")


@pytest.mark.parametrize("text", [
    # the same guard through a let, written the other way round, or as x(p) under '||'
    """def f(float(L) x, float(KW) w) -> (y) {
         y(i) +=! (p >= 0 && p < L) ? x(p) * w(kw) : 0.0 where i in 0:L, p = i + kw - 1 }""",
    """def f(float(L) x, float(KW) w) -> (y) {
         y(i) +=! (0 <= i + kw - 1 && L > i + kw - 1) ? w(kw) * x(i + kw - 1) : 0.0
         where i in 0:L }""",
    """def f(float(L) x, float(KW) w) -> (y) {
         y(i) +=! (1 - i - kw > 0 || i + kw - 1 >= L) ? 0.0 : x(i + kw - 1) * w(kw)
         where i in 0:L }""",
])
def test_guard_forms(text: str) -> None:
    assert _domain(text) == {"i": ("0", "L"), "kw": ("0", "KW")}


def test_a_guarded_subscript_still_gives_a_range_nothing_else_gives() -> None:
    # k is constrained only by the guarded idx(k): its range comes from there.
    assert _domain("def f(float(N) A, int32(K) idx) -> (C) { C(k) = k > 0 ? A(idx(k)) : 0.0 }"
                   ) == {"k": ("0", "K")}


def test_a_condition_on_another_expression_does_not_excuse_a_read() -> None:
    # The guard compares i alone, not the subscript i + kw - 1: the read still narrows.
    text = """def f(float(L) x, float(KW) w) -> (y) {
        y(i) +=! i >= 1 ? x(i + kw - 1) * w(kw) : 0.0 where i in 0:L }"""
    with pytest.warns(tc.TcWarning):
        tc.define(text)
    assert _domain(text)["kw"] == ("1", "min(2, KW)")


def _conv1d_inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x = torch.arange(1.0, 9.0) * 10
    w = torch.tensor([1.0, 2.0, 3.0])
    want = torch.nn.functional.conv1d(x.view(1, 1, -1), w.view(1, 1, -1), padding=1).view(-1)
    return x, w, want


def test_padded_conv1d_matches_torch_on_the_interpreter() -> None:
    x, w, want = _conv1d_inputs()
    got = tc.define(CONV1D_PADDED, backend="reference").conv1d(x, w)
    torch.testing.assert_close(got, want)


def test_padded_conv1d_matches_torch(target: str) -> None:
    x, w, want = _conv1d_inputs()
    got = tc.define(CONV1D_PADDED, backend=target).conv1d(x, w)
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("backend", ["reference", "cpu", "opencl"])
def test_an_unguarded_bound_is_a_range_error_not_garbage(backend: str) -> None:
    if backend != "reference" and backend not in runnable_targets():
        pytest.skip(f"{backend} does not run here")
    x, w, _ = _conv1d_inputs()
    T = tc.define(CONV1D_HALF_GUARDED, backend=backend)
    with pytest.raises(tc.TcRangeError) as info:
        T.conv1d(x, w)
    assert info.value.line == 3 and "'x'" in info.value.message


# -- warnings: an index narrowed below a dimension it subscripts ----------------------------


def _warnings(text: str) -> list[tc.TcWarning]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tc.define(text)
    assert all(issubclass(w.category, tc.TcWarning) for w in caught)
    return [w.message for w in caught]


def test_a_narrowed_reduction_index_warns_at_its_subscript() -> None:
    [w] = _warnings(CONV1D_UNPADDED)
    line = CONV1D_UNPADDED.split("\n")[2]
    assert (w.line, w.column) == (3, line.index("w(kw)") + 3)  # at kw in w(kw)
    assert "'kw'" in w.message and "'w'" in w.message and "i + kw - 1" in w.message
    text = str(w)
    assert text.startswith("warning: ") and text.splitlines()[-2].strip() == line.strip()
    with warnings.catch_warnings():
        warnings.simplefilter("error", tc.TcWarning)
        with pytest.raises(tc.TcWarning):
            tc.define(CONV1D_UNPADDED)


def test_a_narrowed_index_with_literal_sizes_warns() -> None:
    [w] = _warnings("def f(float(8) x, float(3) w) -> (y) {\n"
                    "  y(i) +=! x(i + kw) * w(kw) where i in 0:8 }")
    assert w.line == 2 and "'kw' ranges over 0:1" in w.message


def test_the_guarded_conv1d_does_not_warn() -> None:
    assert _warnings(CONV1D_PADDED) == []


@pytest.mark.parametrize("text", [
    # a shift by a constant: the index's own subscripts give its range
    "def f(float(N) x) -> (s) { s +=! x(k) * x(k + 1) }",
    "def f(float(N) A) -> (O) { O(i) = A(i) + A(i + 2) }",
    # a window whose sizes agree when M = N - K + 1
    "def f(float(N) A, float(M) B) -> (O) { O(i) +=! A(i + k) * B(i) where k in 0:3 }",
    "def f(float(N) A, float(K) W, float(M) B) -> (O) { O(i) +=! A(i + k) * W(k) * B(i) }",
    # two different sizes read directly: they agree when equal
    "def f(float(N) A, float(M) B) -> (s) { s +=! A(k) * B(k) }",
    # the user fixed the range
    "def f(float(L) x, float(KW) w) -> (y) { y(i) +=! x(i + kw) * w(kw) "
    "where i in 0:L - 2, kw in 0:3 }",
    # ordinary reductions
    "def f(float(M, K) A) -> (s) { s +=! A(m, k) }",
    "def f(float(N, D) X) -> (s) { s(n) +=! X(n, d) }",
    "def f(float(M, K) A, float(K, N) B) -> (C) { C(m, n) +=! A(m, k) * B(k, n) }",
    # two single-use indices over different ranges: a product of two sums, not a typo
    "def f(float(N) A, float(M) B) -> (s) { s +=! A(i) * B(j) }",
    # the same, meant: a where clause says so
    "def f(float(N) A, float(N) B) -> (s) { s +=! A(i) * B(j) where j in 0:N }",
])
def test_legitimate_programs_do_not_warn(text: str) -> None:
    assert _warnings(text) == []


# -- warnings: a reduction index used once, next to another ---------------------------------


def test_a_typo_in_a_reduction_index_warns_at_the_typo() -> None:
    text = "def mm(float(M, K) A, float(K, N) B) -> (C) {\n  C(m,n) +=! A(m,k) * B(kk,n)\n}"
    [w] = _warnings(text)
    assert (w.line, w.column) == (2, text.split("\n")[1].index("kk") + 1)
    assert "'kk'" in w.message and "'k'" in w.message and "(line 2, column 18)" in w.message


def test_a_typo_in_a_matrix_vector_product_warns() -> None:
    [w] = _warnings("def mv(float(M, K) A, float(K) x) -> (y) { y(m) +=! A(m, k) * x(j) }")
    assert "'j'" in w.message and "'k'" in w.message


# -- no false alarms on the shipped kernels ---------------------------------------------------


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_catalogue_kernels_define_without_warnings(name: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", tc.TcWarning)
        T = tc.define(KERNELS[name].tc)
    # The derived backwards are checked without emitting anything, and hold no warning.
    for entry in T.entry_points:
        try:
            text = T[entry].gradient_text()
        except tc.TcGradientError:
            continue
        assert check_text(text).warnings == ()


@pytest.mark.parametrize("text", [EVERYTHING, *OWN_PROGRAMS])
def test_test_programs_define_without_warnings(text: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", tc.TcWarning)
        tc.define(text)


# -- python -m tc check --strict ----------------------------------------------------------------


def test_cli_check_prints_warnings_and_strict_fails_on_them(tmp_path: Path, capsys) -> None:
    f = tmp_path / "conv.tc"
    f.write_text(CONV1D_UNPADDED)
    assert main(["check", str(f)]) == 0
    out = capsys.readouterr()
    assert "ok (conv1d, 1 warning(s))" in out.out
    assert f"{f}:3:26: warning: index 'kw'" in out.err
    assert main(["check", "--strict", str(f)]) == 1
    out = capsys.readouterr()
    assert out.out == ""
    assert f"{f}:3:26: error" in out.err and "index 'kw'" in out.err
    lines = out.err.splitlines()
    assert lines[-1].index("^") == lines[-2].index("w(kw)") + 2


def test_cli_check_strict_passes_clean_files(tmp_path: Path, capsys) -> None:
    f = tmp_path / "conv.tc"
    f.write_text(CONV1D_PADDED)
    assert main(["check", "--strict", str(f)]) == 0
    assert "ok (conv1d)" in capsys.readouterr().out


def test_python_m_tc_check_strict_exit_status(tmp_path: Path) -> None:
    f = tmp_path / "typo.tc"
    f.write_text("def mm(float(M, K) A, float(K, N) B) -> (C) {\n"
                 "  C(m,n) +=! A(m,k) * B(kk,n)\n}\n")
    run = subprocess.run([sys.executable, "-m", "tc", "check", "--strict", str(f)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 1
    assert f"{f}:2:25: error: reduction index 'kk'" in run.stderr


# -- warnings: the original's lenient forms (issue 14) -------------------------------------------


@pytest.mark.parametrize("op", ["+=", "*=", "min=", "max="])
def test_a_reduction_without_bang_into_an_unwritten_result_warns_at_its_operator(op: str
                                                                                 ) -> None:
    text = f"def f(float(N, M) A) -> (C) {{\n  C(i) {op} A(i, j)\n}}"
    [w] = _warnings(text)
    assert (w.line, w.column) == (2, text.split("\n")[1].index(op) + 1)
    assert f"'{op}'" in w.message and f"'{op}!'" in w.message and "'C'" in w.message
    assert "outputs=" in w.message and "zeros" in w.message
    assert str(w).splitlines()[-1] == " " * (4 + w.column - 1) + "^"


def test_a_reduction_without_bang_into_a_temporary_warns_and_says_zeros() -> None:
    text = "def f(float(N) A) -> (C) {\n  T(i) += A(i)\n  C(i) = T(i)\n}"
    [w] = _warnings(text)
    assert (w.line, w.column) == (2, 8) and "'T'" in w.message and "zeros" in w.message
    assert "outputs=" not in w.message


def test_a_reduction_without_bang_after_a_write_does_not_warn() -> None:
    assert _warnings("def f(float(N, M) A) -> (C) {\n  C(i) = 1.0 where i in 0:N\n"
                     "  C(i) += A(i, j)\n}") == []


@pytest.mark.parametrize("text, needle", [
    ("def f(float(N) A) -> (C) { C(i) = A(i) where i in 3:3 }", "i in 3:3"),
    ("def f(float(N) A) -> (C) { C(i) = A(i) where i in 8:4 }", "i in 8:4"),
    ("def f(float(N) A) -> (C) { C(i) = A(i) where i in N:N }", "i in N:N"),
    # a reduction range, and an empty statement after a full one (extents not compared)
    ("def f(float(N) A) -> (C) { C(i) +=! A(i) * A(k) where k in 2:0 }", "k in 2:0"),
    ("def f(float(N) A) -> (C) {\n  C(i) = A(i)\n  C(i) = A(i + 10) where i in 8:4\n}",
     "i in 8:4"),
    # ranges inferred empty from literal sizes: at the index's first use
    ("def f(float(2) A) -> (C) { C(i) +=! A(i + k) where k in 0:3 }", "i)"),
    ("def f(float(3) A) -> (C) { C(i) +=! A(2 * i + k) where k in 0:4 }", "i)"),
])
def test_an_empty_range_warns_at_the_range(text: str, needle: str) -> None:
    [w] = _warnings(text)
    start = text.index(needle)
    line = text.count("\n", 0, start) + 1
    assert (w.line, w.column) == (line, start - (text.rfind("\n", 0, start) + 1) + 1)
    assert "empty" in w.message and "does nothing" in w.message


def test_an_empty_statement_is_not_checked_for_bounds_nor_linted() -> None:
    # A(i + 10) is out of bounds and kw narrowed, but nothing is evaluated.
    [w] = _warnings("def f(float(N) A, float(3) w) -> (C) {\n  C(i) = A(i)\n"
                    "  C(i) +=! A(i + kw + 10) * w(kw) where i in 5:5\n}")
    assert "empty" in w.message


def test_a_negative_literal_extent_becomes_zero() -> None:
    fn = check_text("def f(float(N) A) -> (C) { C(i) = A(i) where i in 0:-3 }").functions["f"]
    assert [str(s) for s in fn.outputs[0].shape] == ["0"]


@pytest.mark.parametrize("text", [
    # empty for some sizes only: checked at call time, where it does nothing
    "def f(float(N) A) -> (C) { C(i) = A(i) where i in 3:N }",
    "def f(float(N) A) -> (C) { C(i) +=! A(i + k) where k in 0:3 }",
    "def f(float(N) A) -> (C) { C(i) +=! A(i) * A(k) where k in 0:N - 4 }",
])
def test_ranges_empty_only_for_some_sizes_do_not_warn(text: str) -> None:
    assert _warnings(text) == []


def test_cli_check_strict_fails_on_the_lenient_forms(tmp_path: Path, capsys) -> None:
    f = tmp_path / "acc.tc"
    f.write_text("def f(float(M, K) A, float(K, N) B) -> (C) {\n"
                 "  C(m, n) += A(m, k) * B(k, n)\n}\n")
    assert main(["check", str(f)]) == 0
    assert f"{f}:2:11: warning: reduction '+='" in capsys.readouterr().err
    assert main(["check", "--strict", str(f)]) == 1
