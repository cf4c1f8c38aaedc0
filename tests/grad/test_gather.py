"""tc.grad.gather: the scatter of an adjoint written as a gather, on single statements."""

from __future__ import annotations

from tc.grad import build as b
from tc.grad.gather import gather
from tc.ir.printer import expr_str
from tc.lang.frontend import check_text


def gather_of(text: str, read: int = 0) -> tuple[tuple[str, ...], list[str], str]:
    fn = check_text(text).functions["f"]
    st = fn.stages[0]
    r = b.reads(st.rhs)[read]
    lhs, ranges, body = gather(st, r.indices, b.const(1.0, st.rhs.type),
                               fn.tensor(r.tensor).shape, {"f", *fn.size_names})
    return lhs, [f"{n} in {lo}:{hi}" for n, lo, hi in ranges], expr_str(body)


def test_plain_indices_are_kept() -> None:
    lhs, ranges, body = gather_of("def f(float(M, K) A) -> (C) { C(m) +=! A(m, k) }")
    assert lhs == ("m", "k") and ranges == ["m in 0:M", "k in 0:K"] and body == "1.0"


def test_an_offset_is_solved_for_the_wide_index() -> None:
    lhs, ranges, body = gather_of(
        "def f(float(H) I, float(KH) Wt) -> (O) { O(h) +=! I(h + kh) * Wt(kh) }")
    assert lhs == ("i0",) and ranges == ["i0 in 0:H", "kh in 0:KH"]
    assert body == "i0 - kh >= 0 && i0 - kh < (H - KH + 1) ? 1.0 : 0.0"


def test_a_stride_gets_a_divisibility_guard() -> None:
    _, ranges, body = gather_of(
        "def f(float(H) I) -> (O) { O(h) +=! I(2 * h + kh) where kh in 0:3 }")
    assert ranges == ["i0 in 0:H", "kh in 0:3"]
    assert body.startswith("(i0 - kh) % 2 == 0 && (i0 - kh) / 2 >= 0")


def test_a_diagonal_and_an_indirect_read_become_equalities() -> None:
    lhs, ranges, body = gather_of("def f(float(N, N) A) -> (O) { O(i) = A(i, i) }")
    assert lhs == ("i", "i1") and body == "i1 == i ? 1.0 : 0.0"
    lhs, ranges, body = gather_of(
        "def f(float(E, D) T, int64(B) idx) -> (O) { O(b, d) = T(idx(b), d) }")
    assert lhs == ("i0", "d") and "b in 0:B" in ranges and body == "i0 == idx(b) ? 1.0 : 0.0"
