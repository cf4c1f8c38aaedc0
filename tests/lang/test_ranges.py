"""Range inference (LANGUAGE.md section 4): the inferred domains, checked by evaluating
their symbolic bounds at several concrete sizes against formulas written by hand."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest

from tc.errors import TcRangeError
from tc.ir.sym import Sym
from tc.lang.frontend import check_text

Sizes = dict[str, int]
Bounds = Callable[[Sizes], tuple[int, int]]


def function(text: str, name: str | None = None):
    fns = check_text(text).functions
    return fns[name] if name else next(iter(fns.values()))


def size_grid(**choices: tuple[int, ...]) -> list[Sizes]:
    names = list(choices)
    return [dict(zip(names, combo, strict=True))
            for combo in itertools.product(*(choices[n] for n in names))]


def check_domain(text: str, stage: int, expected: dict[str, Bounds], grid: list[Sizes]) -> None:
    """The domain of ``stage`` lists exactly ``expected``'s indices (in that order), with
    bounds that evaluate to ``expected[index](sizes)`` for every sizes of ``grid``."""
    st = function(text).stages[stage]
    assert [d.name for d in st.domain] == list(expected)
    for d in st.domain:
        assert isinstance(d.lo, Sym) and isinstance(d.hi, Sym)
    for sizes in grid:
        got = {d.name: (d.lo.evaluate(sizes), d.hi.evaluate(sizes)) for d in st.domain}
        want = {n: f(sizes) for n, f in expected.items()}
        assert got == want, sizes


# -- convolutions ---------------------------------------------------------------------


def test_strided_convolution() -> None:
    text = "def f(float(H) I, float(KH) W) -> (O) { O(h) +=! I(2 * h + kh) * W(kh) }"
    check_domain(text, 0, {
        "h": lambda s: (0, (s["H"] - s["KH"]) // 2 + 1),
        "kh": lambda s: (0, s["KH"]),
    }, size_grid(H=(9, 7, 5, 3), KH=(1, 3)))
    # The documented example: H = 9, KH = 3 gives h in 0:4.
    fn = function(text)
    assert fn.stages[0].domain[0].hi.evaluate({"H": 9, "KH": 3}) == 4
    assert fn.outputs[0].shape[0].evaluate({"H": 9, "KH": 3}) == 4


def test_strided_2d_convolution_with_batch_and_channels() -> None:
    text = """
    def conv(float(N, C, H, W) I, float(F, C, KH, KW) Wt) -> (O) {
        O(n, f, h, w) +=! I(n, c, 3 * h + kh, 2 * w + kw) * Wt(f, c, kh, kw)
    }"""
    check_domain(text, 0, {
        "n": lambda s: (0, s["N"]),
        "f": lambda s: (0, s["F"]),
        "h": lambda s: (0, (s["H"] - s["KH"]) // 3 + 1),
        "w": lambda s: (0, (s["W"] - s["KW"]) // 2 + 1),
        "c": lambda s: (0, s["C"]),
        "kh": lambda s: (0, s["KH"]),
        "kw": lambda s: (0, s["KW"]),
    }, size_grid(N=(1, 3), F=(5,), C=(3,), H=(7, 11), W=(5, 9), KH=(1, 3), KW=(3,)))


def test_unstrided_convolution_with_where_fixed_kernel() -> None:
    text = "def f(float(H) I) -> (O) { O(h) +=! I(2 * h + kh) where kh in 0:3 }"
    check_domain(text, 0, {
        "h": lambda s: (0, (s["H"] - 3) // 2 + 1),
        "kh": lambda s: (0, 3),
    }, size_grid(H=(3, 4, 5, 9, 10)))


def test_average_pool_of_the_language_document() -> None:
    text = """
    def avgpool2x2(float(B, C, H, W) I) -> (O) {
        O(b, c, h, w) +=! I(b, c, 2 * h + kh, 2 * w + kw) / 4.0 where kh in 0:2, kw in 0:2
    }"""
    check_domain(text, 0, {
        "b": lambda s: (0, s["B"]),
        "c": lambda s: (0, s["C"]),
        "h": lambda s: (0, s["H"] // 2),
        "w": lambda s: (0, s["W"] // 2),
        "kh": lambda s: (0, 2),
        "kw": lambda s: (0, 2),
    }, size_grid(B=(1,), C=(3,), H=(2, 5, 7), W=(3, 4)))


# -- where clauses and exists -------------------------------------------------------------


def test_where_clause_fixes_the_range() -> None:
    text = "def f(float(N) A) -> (O) { O(i) = A(i) where i in 1:N-1 }"
    check_domain(text, 0, {"i": lambda s: (1, s["N"] - 1)}, size_grid(N=(3, 5, 7)))
    assert str(function(text).outputs[0].shape[0]) == "N - 1"


def test_where_clause_with_min_and_division() -> None:
    text = "def f(float(N) A) -> (O) { O(i) = A(i) where i in 0:min(N, 4) }"
    check_domain(text, 0, {"i": lambda s: (0, min(s["N"], 4))}, size_grid(N=(1, 3, 5, 7)))
    text = "def f(float(N) A) -> (O) { O(i) = A(2 * i) where i in 0:(N + 1) / 2 }"
    check_domain(text, 0, {"i": lambda s: (0, (s["N"] + 1) // 2)}, size_grid(N=(1, 3, 5, 7)))


def test_exists_takes_part_in_inference() -> None:
    text = """
    def f(float(N) I, float(K) W) -> (O) {
        O(i) +=! W(k) where k in 0:K, exists I(i + k)
    }"""
    check_domain(text, 0, {
        "i": lambda s: (0, s["N"] - s["K"] + 1),
        "k": lambda s: (0, s["K"]),
    }, size_grid(N=(3, 5, 7), K=(1, 3)))


def test_exists_with_a_stride() -> None:
    text = "def f(float(N) I) -> (O) { O(i) = 1.0 where exists I(3 * i) }"
    check_domain(text, 0, {"i": lambda s: (0, (s["N"] - 1) // 3 + 1)}, size_grid(N=(1, 3, 5, 7)))


# -- diagonal, shifts, negative coefficients ------------------------------------------------


def test_diagonal_of_a_square_matrix() -> None:
    text = "def f(float(N, N) A) -> (O) { O(i) = A(i, i) }"
    check_domain(text, 0, {"i": lambda s: (0, s["N"])}, size_grid(N=(1, 3, 5)))


def test_diagonal_of_a_rectangular_matrix_is_the_min() -> None:
    text = "def f(float(N, M) A) -> (O) { O(i) = A(i, i) }"
    check_domain(text, 0, {"i": lambda s: (0, min(s["N"], s["M"]))},
                 size_grid(N=(1, 3, 5), M=(1, 3, 7)))


def test_shifted_read_forward_with_where() -> None:
    text = "def f(float(N) A) -> (O) { O(i) = A(i + 1) - A(i) where i in 0:N-1 }"
    check_domain(text, 0, {"i": lambda s: (0, s["N"] - 1)}, size_grid(N=(2, 3, 5)))


def test_shifted_read_backward_has_a_nonzero_lower_bound() -> None:
    text = "def f(float(N) A) -> (O) { O(i) = A(i - 1) }"
    check_domain(text, 0, {"i": lambda s: (1, s["N"] + 1)}, size_grid(N=(1, 3, 5)))
    assert str(function(text).outputs[0].shape[0]) == "N + 1"


def test_shifted_reads_both_ways_intersect() -> None:
    text = "def f(float(N) A) -> (O) { O(i) = A(i - 1) + A(i + 1) }"
    check_domain(text, 0, {"i": lambda s: (1, s["N"] - 1)}, size_grid(N=(3, 5, 7)))


def test_stencil_with_symbolic_offsets() -> None:
    text = "def f(float(N) A, float(K) W) -> (O) { O(i) +=! A(i + k - K + 1) * W(k) }"
    check_domain(text, 0, {
        "i": lambda s: (s["K"] - 1, s["N"]),
        "k": lambda s: (0, s["K"]),
    }, size_grid(N=(3, 5, 7), K=(1, 3)))


def test_negative_coefficient_reverses() -> None:
    text = "def f(float(N) A) -> (O) { O(i) = A(N - 1 - i) }"
    check_domain(text, 0, {"i": lambda s: (0, s["N"])}, size_grid(N=(1, 3, 5, 7)))


def test_negative_stride() -> None:
    # 0 <= N - 2 * i <= N - 1  gives  1 <= i <= N / 2.
    text = "def f(float(N) A) -> (O) { O(i) = A(N - 2 * i) }"
    check_domain(text, 0, {"i": lambda s: (1, s["N"] // 2 + 1)}, size_grid(N=(2, 3, 5, 7)))


def test_positive_stride() -> None:
    text = "def f(float(N) A) -> (O) { O(i) = A(3 * i) }"
    check_domain(text, 0, {"i": lambda s: (0, (s["N"] - 1) // 3 + 1)}, size_grid(N=(1, 3, 5, 7)))


# -- several constraints, several rounds ---------------------------------------------------


def test_min_of_two_constraints() -> None:
    text = "def f(float(N) A, float(M) B) -> (O) { O(i) = A(i) + B(i) }"
    check_domain(text, 0, {"i": lambda s: (0, min(s["N"], s["M"]))},
                 size_grid(N=(1, 3, 5), M=(1, 3, 7)))


def test_min_of_a_read_and_a_shifted_read() -> None:
    text = "def f(float(N) A) -> (O) { O(i) = A(i) + A(i + 2) }"
    check_domain(text, 0, {"i": lambda s: (0, s["N"] - 2)}, size_grid(N=(3, 5, 7)))


def test_an_index_solved_in_one_round_is_known_in_the_next() -> None:
    text = "def f(float(N) A, float(M) B) -> (O) { O(i) +=! A(i) * B(i + j) }"
    check_domain(text, 0, {
        "i": lambda s: (0, s["N"]),
        "j": lambda s: (0, s["M"] - s["N"] + 1),
    }, size_grid(N=(1, 3), M=(3, 5, 7)))


def test_two_dimensional_triangle_like_coupling() -> None:
    text = "def f(float(N, M) A) -> (O) { O(i, j) = A(i, j + i) }"
    check_domain(text, 0, {
        "i": lambda s: (0, s["N"]),
        "j": lambda s: (0, s["M"] - s["N"] + 1),
    }, size_grid(N=(1, 3), M=(3, 5, 7)))


def test_sizes_used_as_values() -> None:
    text = "def mean(float(N, D) X) -> (m) { m(n) +=! X(n, d) / D + N * 0 }"
    check_domain(text, 0, {"n": lambda s: (0, s["N"]), "d": lambda s: (0, s["D"])},
                 size_grid(N=(1, 3), D=(5, 7)))


def test_sizes_in_subscripts() -> None:
    text = "def f(float(N) A) -> (O) { O(i) = A(N - 1) + A(i) }"
    check_domain(text, 0, {"i": lambda s: (0, s["N"])}, size_grid(N=(1, 3, 5)))


def test_let_bound_subscripts_are_analysed() -> None:
    text = "def f(float(N) A) -> (O) { O(i) = A(k) where k = 2 * i }"
    check_domain(text, 0, {"i": lambda s: (0, (s["N"] - 1) // 2 + 1)}, size_grid(N=(1, 3, 5, 7)))


def test_indirect_reads_constrain_only_their_own_subscripts() -> None:
    text = "def f(float(N, D) T, int32(K) idx) -> (O) { O(k, d) = T(idx(k), d) }"
    check_domain(text, 0, {"k": lambda s: (0, s["K"]), "d": lambda s: (0, s["D"])},
                 size_grid(N=(3,), D=(5,), K=(1, 7)))


def test_typed_result_constrains_its_left_hand_side() -> None:
    text = "def f(float(N) A) -> (float(N, 3) O) { O(i, j) = A(i) * float(j) }"
    check_domain(text, 0, {"i": lambda s: (0, s["N"]), "j": lambda s: (0, 3)},
                 size_grid(N=(1, 5)))


def test_a_written_tensor_constrains_later_statements() -> None:
    text = """
    def f(float(N) A) -> (O) {
        O(i) = A(i) where i in 0:N-1
        O(i) = O(i) * 2.0 + 1.0
    }"""
    check_domain(text, 1, {"i": lambda s: (0, s["N"] - 1)}, size_grid(N=(2, 5)))


def test_scalar_reduction_over_a_matrix() -> None:
    text = "def f(float(N, M) A) -> (s) { s +=! A(i, j) }"
    check_domain(text, 0, {"i": lambda s: (0, s["N"]), "j": lambda s: (0, s["M"])},
                 size_grid(N=(1, 3), M=(5,)))


def test_equal_extents_written_differently_agree() -> None:
    # (H - 3) / 2 + 1 (inferred) and (H - 1) / 2 (written) are the same extent.
    text = """
    def f(float(H) I) -> (O) {
        O(h) +=! I(2 * h + kh) where kh in 0:3
        O(h) = O(h) + 1.0 where h in 0:(H - 1) / 2
    }"""
    check_domain(text, 1, {"h": lambda s: (0, (s["H"] - 1) // 2)}, size_grid(H=(3, 4, 5, 9)))


def test_temporary_extents_come_from_its_statement() -> None:
    fn = function("""
    def f(float(N, K) X) -> (Y) {
        t(n) +=! X(n, k)
        Y(n) = t(n)
    }""")
    assert [str(s) for s in fn.temps[0].shape] == ["N"]


# -- failures -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "index", "why"),
    [
        ("def f(float(N) A) -> (O) { O(i) = A(0) }", "i", "no subscript"),
        ("def f(float(N) A) -> (O) { O(i) +=! A(i) * float(k) }", "k", "no subscript"),
        ("def f(float(N) I) -> (O) { O(i) +=! I(i + j) }", "i", "(j)"),
        ("def f(float(N) I) -> (s) { s +=! I(i - j) }", "i", "(j)"),
        ("def f(float(N, M) A) -> (O) { O(i) +=! A(i + j, i - j) }", "i", "(j)"),
        ("def f(float(N) A) -> (O) { O(i) = A(i / 2) }", "i", "no subscript"),
        ("def f(float(N) A) -> (O) { O(i) = A(i * i) }", "i", "no subscript"),
        ("def f(float(N) A) -> (O) { O(i) = A(i % 3) }", "i", "no subscript"),
    ],
)
def test_unsolvable_and_unconstrained(text: str, index: str, why: str) -> None:
    with pytest.raises(TcRangeError) as info:
        check_text(text)
    msg = info.value.message
    assert f"'{index}'" in msg and why in msg and f"where {index} in" in msg


def test_non_affine_subscripts_are_fine_with_a_where_clause() -> None:
    text = "def f(float(N) A) -> (O) { O(i) = A(i / 2) + A(i % 3) where i in 0:N }"
    check_domain(text, 0, {"i": lambda s: (0, s["N"])}, size_grid(N=(3, 5)))


@pytest.mark.parametrize(
    "text",
    [
        "def f(float(4) A) -> (O) { O(i) = A(i + 5) where i in 0:1 }",
        "def f(float(N) A) -> (O) { O(i) = A(i + 1) }",
    ],
)
def test_impossible_ranges(text: str) -> None:
    with pytest.raises(TcRangeError):
        check_text(text)


@pytest.mark.parametrize(
    "text, extent",
    [
        ("def f(float(N) A) -> (O) { O(i) = A(i) where i in 2:2 }", "2"),
        ("def f(float(N) A) -> (O) { O(i) = A(i) where i in 0:-1 }", "0"),
        ("def f(float(3) A) -> (O) { O(i) +=! A(i + k) where k in 0:4 }", "0"),
    ],
)
def test_empty_ranges_are_warnings_and_the_statement_does_nothing(text: str,
                                                                   extent: str) -> None:
    # Issue 14: as in the original (tests/lang/test_warnings.py has the positions).
    checked = check_text(text)
    assert len(checked.warnings) == 1 and "empty" in checked.warnings[0].message
    assert [str(s) for s in checked.functions["f"].outputs[0].shape] == [extent]


def test_literal_sizes_give_literal_ranges() -> None:
    text = "def f(float(7) A) -> (O) { O(i) +=! A(2 * i + k) where k in 0:3 }"
    st = function(text).stages[0]
    assert [(d.lo.const, d.hi.const) for d in st.domain if d.lo.is_const and d.hi.is_const] == [
        (0, 3), (0, 3)]
