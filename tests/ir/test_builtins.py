"""The reference interpreter's values of issue 14's builtins (the rest of the original's:
``cospi sinpi cyl_bessel_i0 cyl_bessel_i1 erfcx fdivide j0 j1 y0 y1 logb nextafter
norm3d norm4d rnorm3d rnorm4d normcdf normcdfinv remainder rhypot``), against
independent references: mpmath at 30 digits, Python's ``math`` (C99's remainder,
nextafter, frexp, hypot), and known values. Float32 inputs give float32 results (the
value computed in float64, rounded once), float64 inputs float64; sizes are odd.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from tc.ir.interpret import run as interpret_run
from tc.lang.builtins import MATH_BUILTINS
from tc.lang.frontend import check_text

mpmath = pytest.importorskip("mpmath")

NEW = ("cospi sinpi cyl_bessel_i0 cyl_bessel_i1 erfcx fdivide j0 j1 y0 y1 logb nextafter "
       "norm3d norm4d rnorm3d rnorm4d normcdf normcdfinv remainder rhypot").split()
INF, NAN = math.inf, math.nan


def run(fn: str, dtype: str, *args: np.ndarray) -> np.ndarray:
    """``Y(i) = fn(A(i), B(i), ...)`` on the interpreter."""
    names = "ABCD"[:len(args)]
    params = ", ".join(f"{dtype}(N) {n}" for n in names)
    call = ", ".join(f"{n}(i)" for n in names)
    f = check_text(f"def f({params}) -> (Y) {{ Y(i) = {fn}({call}) }}").functions["f"]
    arrays = [np.asarray(a, dtype=dtype) for a in args]
    return interpret_run(f, dict(zip(names, arrays, strict=True)), {"N": arrays[0].size})["Y"]


def test_the_twenty_builtins_and_their_arities() -> None:
    arity = {"norm3d": 3, "rnorm3d": 3, "norm4d": 4, "rnorm4d": 4, "fdivide": 2,
             "nextafter": 2, "remainder": 2, "rhypot": 2}
    assert {n: MATH_BUILTINS[n] for n in NEW} == {n: arity.get(n, 1) for n in NEW}


def mp_ref(fn: str):
    """fn's value (a float) from mpmath at 30 digits."""
    mp = mpmath.mp

    def f(*xs: float) -> float:
        with mpmath.workdps(30):
            x = [mpmath.mpf(v) for v in xs]
            if fn == "cyl_bessel_i0":
                return float(mp.besseli(0, x[0]))
            if fn == "cyl_bessel_i1":
                return float(mp.besseli(1, x[0]))
            if fn in ("j0", "j1"):
                return float(mp.besselj(int(fn[1]), x[0]))
            if fn in ("y0", "y1"):
                return float(mp.bessely(int(fn[1]), x[0]))
            if fn == "erfcx":
                if x[0] > 1e6:  # mpmath's erfc fails there; the asymptotic series is exact
                    w = 1 / (2 * x[0] ** 2)
                    return float((1 - w + 3 * w * w) / (x[0] * mp.sqrt(mp.pi)))
                return float(mp.exp(x[0] ** 2) * mp.erfc(x[0]))
            if fn == "normcdf":
                return float(mp.ncdf(x[0]))
            if fn == "normcdfinv":  # solved with mpmath's root finder on its ncdf
                with mpmath.workdps(60):
                    p = x[0]
                    guess = -mp.sqrt(2) * mp.erfinv(1 - 2 * p) if p > 1e-15 else -mp.sqrt(
                        -2 * mp.log(p))
                    return float(mp.findroot(lambda z: mp.log(mp.ncdf(z)) - mp.log(p), guess))
            if fn in ("cospi", "sinpi"):
                return float((mp.cospi if fn == "cospi" else mp.sinpi)(x[0]))
        raise AssertionError(fn)

    return f


# (builtin, arguments, absolute tolerance in float64 (relative for I, erfcx, normcdf(inv)))
SMOOTH = {
    "j0": np.r_[np.linspace(-40, 40, 161), 1e-300, 0.999, 1.001, 24.99, 25.01, 1e5, 1e10, 1e20],
    "j1": np.r_[np.linspace(-40, 40, 161), 1e-300, 0.999, 1.001, 24.99, 25.01, 1e5, 1e10, 1e20],
    "y0": np.r_[np.linspace(0.05, 40, 160), 1e-300, 0.999, 1.001, 24.99, 25.01, 1e5, 1e10],
    "y1": np.r_[np.linspace(0.05, 40, 160), 1e-100, 0.999, 1.001, 24.99, 25.01, 1e5, 1e10],
    "cyl_bessel_i0": np.r_[np.linspace(-40, 40, 81), 1e-20, 29.9, 30.1, 100.0, 700.0, 713.0],
    "cyl_bessel_i1": np.r_[np.linspace(-40, 40, 81), 1e-20, 29.9, 30.1, 100.0, 700.0, -713.0],
    "erfcx": np.r_[np.linspace(-26, 40, 133), 1e-10, 24.99, 25.01, 1e3, 1e10, 1e200],
    "normcdf": np.r_[np.linspace(-37, 8, 91), -1e-10, 1e-300],
    "normcdfinv": np.r_[np.linspace(0.001, 0.999, 75), 1e-300, 1e-100, 1e-20, 1e-10, 0.25,
                        0.75, 0.5 + 1e-9, 0.5 - 1e-9, 1 - 1e-10, 1 - 2**-53],
    "cospi": np.r_[np.linspace(-5, 5, 91), 0.1, 1e-8, 1e10 + 0.3, 2**52 + 0.5],
    "sinpi": np.r_[np.linspace(-5, 5, 91), 0.1, 1e-8, 1e10 + 0.3, 2**52 + 0.5],
}
RELATIVE = ("cyl_bessel_i0", "cyl_bessel_i1", "erfcx", "normcdf", "normcdfinv")
#: normcdf is erfc(-x / sqrt(2)) / 2 (as CUDA's): the rounding of x / sqrt(2) grows
#: x^2 times in the tail, 1.6e-13 at -37.
RTOL = {"normcdf": 2e-13}


@pytest.mark.parametrize("fn", sorted(SMOOTH))
def test_smooth_builtins_in_double_against_mpmath(fn: str) -> None:
    x = SMOOTH[fn]
    got = run(fn, "float64", x)
    want = np.array([mp_ref(fn)(v) for v in x])
    assert got.dtype == np.float64
    if fn in RELATIVE:
        np.testing.assert_allclose(got, want, rtol=RTOL.get(fn, 3e-14), atol=0)
    else:  # J, Y, cospi and sinpi near their zeros: an absolute error, relative to 1
        np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("fn", sorted(SMOOTH))
def test_smooth_builtins_in_float_round_the_double_value(fn: str) -> None:
    x = SMOOTH[fn]
    x = x[(np.abs(x) < 3e38) & (np.abs(x) > 1e-38)].astype(np.float32)
    got = run(fn, "float32", x)
    assert got.dtype == np.float32
    with np.errstate(over="ignore"):  # I(700) is beyond float32: inf, as it should be
        want = run(fn, "float64", x.astype(np.float64)).astype(np.float32)
    np.testing.assert_array_equal(got, want)


def test_known_values() -> None:
    f32 = "float32"
    assert run("j0", f32, [0.0]).tolist() == [1.0]
    assert run("j1", f32, [0.0]).tolist() == [0.0]
    assert run("y0", "float64", [0.0, -1.0]).tolist()[0] == -INF
    assert np.isnan(run("y1", "float64", [-1.0])).all()
    assert run("cyl_bessel_i0", f32, [0.0]).tolist() == [1.0]
    assert run("cospi", f32, [0.5, 1.0, 1.5, 2.0, -0.5, 0.0, 1e30]).tolist() == [
        0.0, -1.0, 0.0, 1.0, 0.0, 1.0, 1.0]
    assert run("sinpi", f32, [0.5, 1.0, 1.5, 2.0, -0.5, 0.0]).tolist() == [
        1.0, 0.0, -1.0, 0.0, -1.0, 0.0]
    assert run("cospi", "float64", [0.25])[0] == pytest.approx(math.sqrt(0.5), rel=1e-16)
    assert run("remainder", f32, [5.0, 4.0, 6.0, -5.0, 5.5], [3.0, 3.0, 4.0, 3.0, 1.0]).tolist() \
        == [-1.0, 1.0, -2.0, 1.0, -0.5]  # ties (6/4, 5.5/1) go to the even quotient
    assert run("logb", f32, [8.0, 0.3, -8.0, 1.0, 2**-140]).tolist() == [3.0, -2.0, 3.0, 0.0,
                                                                           -140.0]
    assert run("normcdf", f32, [0.0]).tolist() == [0.5]
    assert run("normcdfinv", f32, [0.5]).tolist() == [0.0]
    assert run("erfcx", f32, [0.0]).tolist() == [1.0]
    up = run("nextafter", f32, [1.0, 1.0], [2.0, 0.0])
    assert up.dtype == np.float32
    assert up.tolist() == [1.0 + 2.0**-23, 1.0 - 2.0**-24]
    assert run("nextafter", "float64", [1.0], [2.0]).tolist() == [1.0 + 2.0**-52]
    assert run("fdivide", f32, [1.0, 7.0], [3.0, -2.0]).tolist() == [
        float(np.float32(1) / np.float32(3)), -3.5]
    assert run("rhypot", f32, [3.0], [4.0]).tolist() == [float(np.float32(0.2))]
    assert run("norm3d", f32, [2.0], [3.0], [6.0]).tolist() == [7.0]
    assert run("norm4d", f32, [2.0], [4.0], [5.0], [6.0]).tolist() == [9.0]
    assert run("rnorm3d", f32, [2.0], [3.0], [6.0]).tolist() == [float(np.float32(1 / 7))]
    assert run("rnorm4d", "float64", [1.0], [1.0], [1.0], [1.0]).tolist() == [0.5]


def test_edge_values() -> None:
    d = "float64"
    assert run("j0", d, [INF, -INF]).tolist() == [0.0, 0.0]
    assert run("y0", d, [INF]).tolist() == [0.0]
    assert run("cyl_bessel_i0", d, [INF, -INF]).tolist() == [INF, INF]
    assert run("cyl_bessel_i1", d, [INF, -INF]).tolist() == [INF, -INF]
    assert run("erfcx", d, [INF, -INF, -30.0]).tolist() == [0.0, INF, INF]
    assert run("normcdfinv", d, [0.0, 1.0]).tolist() == [-INF, INF]
    assert np.isnan(run("normcdfinv", d, [-0.1, 1.1])).all()
    assert run("logb", d, [0.0, INF, -INF, 5e-324]).tolist() == [-INF, INF, INF, -1074.0]
    assert np.isnan(run("cospi", d, [INF, NAN])).all()
    assert np.isnan(run("remainder", d, [INF, 1.0], [1.0, 0.0])).all()
    assert run("remainder", d, [2.5], [INF]).tolist() == [2.5]
    for fn in ("j0", "j1", "y0", "y1", "cyl_bessel_i0", "erfcx", "normcdf", "sinpi", "logb"):
        assert np.isnan(run(fn, d, [NAN])).all(), fn
    # no overflow in the squares; an infinite component wins over a NaN, as in hypot
    assert run("norm3d", d, [1e300, INF], [1e300, NAN], [1e300, 1.0]).tolist() == [
        pytest.approx(math.sqrt(3) * 1e300, rel=1e-15), INF]
    assert run("norm4d", d, [3e-310], [4e-310], [0.0], [0.0]).tolist() == [
        pytest.approx(5e-310, rel=1e-9)]
    assert run("rnorm3d", d, [0.0], [0.0], [0.0]).tolist() == [INF]
    assert run("norm3d", "float32", [2e38], [3e38], [0.0]).tolist() == [INF]  # 3.6e38 > max


def test_binary_builtins_against_math() -> None:
    rng = np.random.default_rng(14)
    x = np.r_[rng.normal(0, 10, 29), [0.0, -0.0, 7.5, -7.5, 1e300, 1e-310]]
    y = np.r_[rng.normal(0, 3, 29), [1.0, 2.0, 5.0, 5.0, 3.0, 1e-311]]
    d = "float64"
    np.testing.assert_array_equal(run("remainder", d, x, y),
                                  [math.remainder(a, b) for a, b in zip(x, y, strict=True)])
    np.testing.assert_array_equal(run("nextafter", d, x, y),
                                  [math.nextafter(a, b) for a, b in zip(x, y, strict=True)])
    np.testing.assert_allclose(run("rhypot", d, x, y),
                               [1 / math.hypot(a, b) for a, b in zip(x, y, strict=True)],
                               rtol=1e-15)
    np.testing.assert_array_equal(run("fdivide", d, x, y), x / y)
    z, w = rng.normal(0, 5, (2, x.size))
    np.testing.assert_allclose(run("norm3d", d, x, y, z),
                               [math.hypot(*v) for v in zip(x, y, z, strict=True)], rtol=1e-15)
    np.testing.assert_allclose(run("rnorm4d", d, x, y, z, w),
                               [1 / math.hypot(*v) for v in zip(x, y, z, w, strict=True)],
                               rtol=1e-15)
    # float32: the remainder of float32 values is exact, so equal to math's
    x32, y32 = x[:29].astype(np.float32), y[:29].astype(np.float32)
    got = run("remainder", "float32", x32, y32)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, [math.remainder(a, b) for a, b in
                                        zip(x32.tolist(), y32.tolist(), strict=True)])


def test_logb_against_frexp() -> None:
    x = np.r_[np.geomspace(1e-300, 1e300, 101), -np.geomspace(1e-5, 1e5, 11), 5e-324, 1e-310]
    want = [math.frexp(v)[1] - 1.0 for v in x]
    np.testing.assert_array_equal(run("logb", "float64", x), want)
    x32 = np.r_[np.geomspace(1e-44, 1e38, 57)].astype(np.float32)
    got = run("logb", "float32", x32)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, [math.frexp(v)[1] - 1.0 for v in x32.tolist()])


def test_half_precision_computes_in_float() -> None:
    x = np.array([0.25, 0.5, 1.5, 3.0, -2.0], np.float16)
    out = run("cospi", "float16", x)
    assert out.dtype == np.float16
    np.testing.assert_array_equal(out, run("cospi", "float32", x.astype(np.float32)).astype(
        np.float16))
