"""Issue 14's builtins (the rest of the original's) in the front end: each is accepted
with its arity, giving a float call of its arguments' type, and refused with another
arity by a positioned TcTypeError at the builtin's name; its name cannot name a tensor."""

from __future__ import annotations

import pytest

import tc
from tc.errors import TcError, TcTypeError
from tc.ir import nodes as ir
from tc.ir.types import ScalarType
from tc.lang.builtins import MATH_BUILTINS
from tc.lang.frontend import check_text

ARITY = {"cospi": 1, "sinpi": 1, "cyl_bessel_i0": 1, "cyl_bessel_i1": 1, "erfcx": 1,
         "fdivide": 2, "j0": 1, "j1": 1, "y0": 1, "y1": 1, "logb": 1, "nextafter": 2,
         "norm3d": 3, "norm4d": 4, "rnorm3d": 3, "rnorm4d": 4, "normcdf": 1, "normcdfinv": 1,
         "remainder": 2, "rhypot": 2}


@pytest.mark.parametrize("name", sorted(ARITY))
def test_accepted_with_its_arity(name: str) -> None:
    assert MATH_BUILTINS[name] == ARITY[name]
    args = ", ".join(["A(i)", "B(i)", "2", "A(i)"][:ARITY[name]])
    fn = check_text(f"def f(double(N) A, int32(N) B) -> (C) {{ C(i) = {name}({args}) }}"
                    ).functions["f"]
    rhs = fn.stages[0].rhs
    assert isinstance(rhs, ir.Call) and rhs.fn == name and len(rhs.args) == ARITY[name]
    assert rhs.type is ScalarType.FLOAT64
    assert all(a.type is ScalarType.FLOAT64 for a in rhs.args)  # the int converted


@pytest.mark.parametrize("name", sorted(ARITY))
def test_refused_with_another_arity(name: str) -> None:
    n = ARITY[name]
    for wrong in (n - 1, n + 1):
        if wrong < 0:
            continue
        args = ", ".join(["A(i)"] * wrong)
        text = f"def f(float(N) A) -> (C) {{\n    C(i) = 1.0 + {name}({args})\n}}"
        with pytest.raises(TcTypeError) as info:
            tc.define(text, backend="reference")
        err = info.value
        plural = "" if n == 1 else "s"
        assert f"builtin '{name}' takes {n} argument{plural}, got {wrong}" in str(err)
        assert (err.line, err.column) == (2, text.split("\n")[1].index(name) + 1)


@pytest.mark.parametrize("name", ["j0", "y1", "logb", "remainder"])
def test_a_builtin_name_is_not_a_tensor(name: str) -> None:
    with pytest.raises(TcError) as info:
        tc.define(f"def f(float(N) {name}) -> (C) {{ C(i) = {name}(i) }}", backend="reference")
    assert info.value.line == 1
