"""Symbolic sizes: normalisation, simplification, evaluation, printing, isl syntax."""

from __future__ import annotations

import itertools

import islpy as isl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tc.ir.sym import Sym, smax, smin

N, M, K, H = (Sym.of(n) for n in ("N", "M", "K", "H"))

ENVS = [dict(zip("NMKH", v, strict=True)) for v in itertools.product((1, 3, 7), (2, 5), (1, 4),
                                                                      (3, 9))]


def values(s: Sym) -> list[int]:
    return [s.evaluate(env) for env in ENVS]


def test_linear_normalisation() -> None:
    assert N + M == M + N
    assert N + M - N == M
    assert (N - N).is_const and (N - N).const == 0
    assert 2 * N + 3 - N == N + 3
    assert -N * -1 == N
    assert 3 - N == -(N - 3)
    assert (N + 1) * 2 == 2 * N + 2
    assert Sym.of(4) * Sym.of(5) == Sym.of(20)
    assert Sym.of(3) * N == N * 3


def test_multiplication_of_two_symbols_is_rejected() -> None:
    with pytest.raises(TypeError):
        N * M  # noqa: B018
    with pytest.raises(TypeError):
        Sym.of(True)


def test_floordiv_simplification() -> None:
    assert (2 * N + 4).floordiv(2) == N + 2
    assert (N + 3).floordiv(3) == N.floordiv(3) + 1
    assert (H - K + 2).floordiv(2) == (H - K).floordiv(2) + 1
    assert (N + 1).ceildiv(3) == N.floordiv(3) + 1
    assert Sym.of(7).floordiv(2) == Sym.of(3)
    assert Sym.of(-7).floordiv(2) == Sym.of(-4)
    assert N.floordiv(1) == N
    with pytest.raises(ValueError):
        N.floordiv(0)


@pytest.mark.parametrize(
    ("expr", "ref"),
    [
        ((H - K).floordiv(2) + 1, lambda e: (e["H"] - e["K"]) // 2 + 1),
        ((3 * N + M - 7).floordiv(3), lambda e: (3 * e["N"] + e["M"] - 7) // 3),
        ((-N - 1).floordiv(2), lambda e: (-e["N"] - 1) // 2),
        ((N - 5).ceildiv(4), lambda e: -((5 - e["N"]) // 4)),
        ((N + M).floordiv(2).floordiv(3), lambda e: (e["N"] + e["M"]) // 6),
        (smin([N, M]) * 2 - K, lambda e: 2 * min(e["N"], e["M"]) - e["K"]),
        (smax([N - 1, M + 1, 3]), lambda e: max(e["N"] - 1, e["M"] + 1, 3)),
        (smin([N, M]) + smin([N, K]), lambda e: min(e["N"], e["M"]) + min(e["N"], e["K"])),
        (smax([smin([N, M]), K]) - smin([M, N]),
         lambda e: max(min(e["N"], e["M"]), e["K"]) - min(e["M"], e["N"])),
    ],
)
def test_evaluate(expr: Sym, ref) -> None:
    assert values(expr) == [ref(env) for env in ENVS]


def test_min_max_with_constant_differences() -> None:
    assert smin([N, N + 1]) == N
    assert smax([N, N + 1]) == N + 1
    assert smin([N - 1, N + 5, N]) == N - 1
    assert smin([3, 5, 1]) == Sym.of(1)
    assert smax([Sym.of(3), 5]) == Sym.of(5)
    assert smin([N, 3, 5]) == smin([3, N])
    assert smin([smin([N, M]), N - 1]) == smin([M, N - 1])
    assert smin([N, M]) == smin([M, N])
    assert smin([N]) == N
    assert str(smin([N, M])) == "min(M, N)"


def test_symbols_and_substitute() -> None:
    e = smin([N, M + 1]) + (H - K).floordiv(2)
    assert e.symbols() == {"N", "M", "H", "K"}
    sub = e.substitute({"N": Sym.of(4), "H": K + 6})
    assert sub.symbols() == {"M"}  # (K + 6 - K) / 2 simplifies to 3
    for env in ENVS:
        assert sub.evaluate(env) == e.evaluate({**env, "N": 4, "H": env["K"] + 6})
    with pytest.raises(KeyError):
        N.evaluate({"M": 1})


def test_printing() -> None:
    assert str(N - K) == "N - K"
    assert str(K - N) == "K - N"
    assert str(-N) == "-N"
    assert str(Sym.of(0)) == "0"
    assert str(Sym.of(-3)) == "-3"
    assert str(2 * N - 3 * M + 1) == "2 * N - 3 * M + 1"
    assert str((H - K).floordiv(2) + 1) == "(H - K) / 2 + 1"
    assert repr(N + 1) == "Sym('N + 1')"


def _isl_value(text: str, params: list[str], env: dict[str, int]) -> int:
    """Evaluate an isl quasi-affine expression through isl itself."""
    fixed = " and ".join(f"{p} = {env[p]}" for p in params)
    space = f"[{', '.join(params)}] -> "
    s = isl.Set(space + "{ [x] : x = " + text + (" and " + fixed if fixed else "") + " }")
    (point,) = _points(s)
    return point


def _points(s: isl.Set) -> list[int]:
    out: list[int] = []
    s.foreach_point(lambda p: out.append(p.get_coordinate_val(isl.dim_type.set, 0).to_python()))
    return out


@pytest.mark.parametrize(
    "expr",
    [
        N,
        Sym.of(5),
        -N + 3,
        (H - K).floordiv(2) + 1,
        smin([N, M]),
        smax([N, M - 1, K + 3]),
        smin([N, M, (N + M).floordiv(3)]) * 2 - 5,
        smin([N, M]) + smax([K, H]) - (N + 7).floordiv(4),
    ],
)
def test_to_isl_parses_and_agrees(expr: Sym) -> None:
    params = sorted(expr.symbols())
    space = f"[{', '.join(params)}] -> " if params else ""
    pa = isl.PwAff(space + "{ [(" + expr.to_isl() + ")] }")
    assert pa.dim(isl.dim_type.param) == len(params)
    dom = isl.Set(space + "{ [i] : 0 <= i < " + expr.to_isl() + " }")
    assert dom.dim(isl.dim_type.param) == len(params)
    for env in ENVS[:6]:
        assert _isl_value(expr.to_isl(), params, env) == expr.evaluate(env)
        bound = dom
        for p in params:
            k = bound.find_dim_by_name(isl.dim_type.param, p)
            bound = bound.fix_val(isl.dim_type.param, k, isl.Val.int_from_si(bound.get_ctx(),
                                                                             env[p]))
        assert len(_points(bound)) == max(0, expr.evaluate(env))


_atoms = st.sampled_from([N, M, K, H])
_ints = st.integers(-6, 6)


@st.composite
def syms(draw, depth: int = 2) -> Sym:
    kind = draw(st.integers(0, 4 if depth > 0 else 1))
    if kind == 0:
        return Sym.of(draw(_ints))
    if kind == 1:
        return draw(_atoms) * draw(_ints) + draw(_ints)
    a, b = draw(syms(depth - 1)), draw(syms(depth - 1))
    if kind == 2:
        return a + b * draw(_ints)
    if kind == 3:
        return a.floordiv(draw(st.integers(1, 4)))
    return (smin if draw(st.booleans()) else smax)([a, b])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(syms(), syms(), st.integers(1, 4))
def test_algebra_agrees_with_integers(a: Sym, b: Sym, d: int) -> None:
    for env in ENVS[::5]:
        x, y = a.evaluate(env), b.evaluate(env)
        assert (a + b).evaluate(env) == x + y
        assert (a - b).evaluate(env) == x - y
        assert (a * 3).evaluate(env) == 3 * x
        assert a.floordiv(d).evaluate(env) == x // d
        assert a.ceildiv(d).evaluate(env) == -(-x // d)
        assert smin([a, b]).evaluate(env) == min(x, y)
        assert smax([a, b, 2]).evaluate(env) == max(x, y, 2)
    params = sorted(a.symbols())
    space = f"[{', '.join(params)}] -> " if params else ""
    isl.PwAff(space + "{ [(" + a.to_isl() + ")] }")
