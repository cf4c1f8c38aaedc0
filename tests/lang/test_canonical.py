"""canonical_text: invariant under renaming and reformatting, changed by any change of
meaning (it keys the compilation cache)."""

from __future__ import annotations

import re

import pytest

from tc.catalogue import KERNELS
from tc.lang.parser import parse
from tc.lang.printer import canonical_hash, canonical_text

BASE = """
def conv_relu(float(N, C, H, W) I, float(F, C, KH, KW) Wt, float(F) bias) -> (O, s) {
    O(n, f, h, w) +=! I(n, c, 2 * h + kh, w + kw) * Wt(f, c, kh, kw)
    O(n, f, h, w) = fmax(O(n, f, h, w) + bias(f), 0.0) where h in 0:(H - KH) / 2 + 1
    s +=! O(n, f, h, w) > 0.5 && n < N - 1 ? float(n) : -1.0e-3 where x = 1
    t(f) max=! Wt(f, c, kh, kw)
}
"""


def canon(text: str, name: str | None = None) -> str:
    defs = parse(text).definitions
    d = defs[0] if name is None else next(x for x in defs if x.name.name == name)
    return canonical_text(d)


def rename(text: str, mapping: dict[str, str]) -> str:
    return re.sub(r"\b[A-Za-z_]\w*\b", lambda m: mapping.get(m.group(0), m.group(0)), text)


RENAMED = rename(BASE, {
    "conv_relu": "other", "I": "input", "Wt": "weight", "bias": "b", "O": "out", "s": "total",
    "N": "Batch", "C": "Cin", "H": "Height", "W": "Width", "F": "Cout", "KH": "R", "KW": "S",
    "n": "q", "c": "r", "h": "y", "w": "z", "f": "o", "kh": "dy", "kw": "dx", "x": "unused",
    "t": "tmp",
})

REFORMATTED = """# a comment before
def conv_relu(float(N,C,H,W) I,float(F,C,KH,KW) Wt,float(F) bias)->(O,s){# comment
  O(n,f,h,w)+=!I(n,c,(2*h)+kh,w+kw)*Wt(f,c,kh,kw)   # comment
  O(n, f, h, w)
     = fmax((O(n, f, h, w) + bias(f)), 0.0)
       where h in 0 : ((H - KH) / 2) + 1
  s +=! (((O(n, f, h, w) > 0.5) && (n < (N - 1))) ? float(n) : -.001) where x = 1
\tt(f) max=! Wt(f, c, kh, kw)
}
"""


def test_renaming_every_identifier_keeps_the_canonical_text() -> None:
    assert RENAMED != BASE
    assert canon(RENAMED) == canon(BASE)
    assert canonical_hash(parse(RENAMED).definitions[0]) == canonical_hash(
        parse(BASE).definitions[0])


def test_reformatting_comments_and_parentheses_keep_the_canonical_text() -> None:
    assert canon(REFORMATTED) == canon(BASE)


def test_type_aliases_are_canonical() -> None:
    a = "def f(float(N) A, double(N) B, half(N) C) -> (D) { D(i) = A(i) + B(i) + C(i) }"
    b = "def f(float32(N) A, float64(N) B, float16(N) C) -> (D) { D(i) = A(i) + B(i) + C(i) }"
    assert canon(a) == canon(b)


def test_other_definitions_of_the_text_do_not_matter() -> None:
    extra = "def other(float(N) X) -> (Y) { Y(i) = X(i) }\n" + BASE
    assert canon(extra, "conv_relu") == canon(BASE)


def test_equal_float_literals_written_differently() -> None:
    a = "def f(float(N) A) -> (B) { B(i) = A(i) * 250.0 + 0.5 }"
    b = "def f(float(N) A) -> (B) { B(i) = A(i) * 2.5e2 + .5 }"
    assert canon(a) == canon(b)


# Each change of meaning: (old, new) substrings of BASE, replaced once.
CHANGES = [
    ("+=! I(", "max=! I("),                 # the reduction operator
    ("+=! I(", "+= I("),                    # ! or not
    ("* Wt(f", "+ Wt(f"),                   # an arithmetic operator
    ("> 0.5", ">= 0.5"),                    # a comparison
    ("&&", "||"),                           # a logical operator
    ("0.5 &&", "0.25 &&"),                  # a float literal
    ("2 * h", "3 * h"),                     # an integer literal
    ("w + kw", "kw + w"),                   # operand order
    ("Wt(f, c, kh, kw)\n    O", "Wt(f, c, kw, kh)\n    O"),   # subscript order
    ("O(n, f, h, w) +=!", "O(n, f, w, h) +=!"),               # lhs index order
    ("float(F) bias", "float(C) bias"),     # a dimension
    ("float(F) bias", "float(3) bias"),     # a literal dimension
    ("float(F) bias", "double(F) bias"),    # a type
    ("fmax(", "fmin("),                     # a builtin
    ("float(n)", "double(n)"),              # a cast
    ("0:(H - KH) / 2 + 1", "1:(H - KH) / 2 + 1"),  # a range
    ("where x = 1", "where x = 2"),         # a let
    ("-1.0e-3", "1.0e-3"),                  # a unary minus
    ("-> (O, s)", "-> (s, O)"),             # result order
    ("float(F) bias) ", "float(F) bias, float z) "),  # a parameter
]


@pytest.mark.parametrize(("old", "new"), CHANGES, ids=[f"{o}->{n}" for o, n in CHANGES])
def test_a_change_of_meaning_changes_the_canonical_text(old: str, new: str) -> None:
    assert old in BASE, old
    changed = BASE.replace(old, new, 1)
    assert canon(changed) != canon(BASE)


def test_canonical_text_is_a_valid_program_with_the_same_canonical_text() -> None:
    for kernel in KERNELS.values():
        for d in parse(kernel.tc).definitions:
            text = canonical_text(d)
            (again,) = parse(text).definitions
            assert canonical_text(again) == text, kernel.name


def test_canonical_text_keeps_precedence() -> None:
    a = canon("def f(float(N) A) -> (B) { B(i) = A(i) - A(i) - A(i) * A(i) / A(i) }")
    b = canon("def f(float(N) A) -> (B) { B(i) = A(i) - (A(i) - A(i)) * A(i) / A(i) }")
    c = canon("def f(float(N) A) -> (B) { B(i) = a ? b : c ? d : e }")
    d = canon("def f(float(N) A) -> (B) { B(i) = (a ? b : c) ? d : e }")
    assert a != b and c != d
