"""The special functions IREE's CPU code has no op for, expanded into ``arith``/``math``.

IREE's ``llvm-cpu`` code has no libm, so ``erfinv erfcinv normcdfinv lgamma tgamma
cyl_bessel_i0 cyl_bessel_i1 erfcx j0 j1 y0 y1`` are written here as piecewise
Chebyshev series (Clenshaw's recurrence), range reductions, reflections and
asymptotic expansions, selected with ``arith.select`` between regimes, as
:mod:`codegen.math_helpers` does in C for the targets without them. ``remainder`` and
``nextafter`` are exact (``arith.remf`` and comparisons; integer ops on the bits).

Intent and accuracy: a float (and half, computed in float) argument is widened to
float64 and every step is float64 arithmetic (``arith`` ops, ``math.exp``,
``math.log`` and ``math.sqrt``, the float64 ``math`` ops that link in IREE), the
result rounded once, which is how the interpreter defines most of these builtins. The
series are fitted when first used, by Chebyshev interpolation of the interpreter's
own float64 definitions (:mod:`tc.ir.interpret`) on each piece, to an error below
1e-13 of the piece's largest value (:func:`_series` asserts it); the float results
are within two units in the last place of the interpreter's (most equal it), apart
from the zeros of ``j0 j1 y0 y1`` (absolute error below 1e-12 of the amplitude, as
every implementation's relative error grows there) and of ``lgamma`` near -2.457 and
-2.748 (within 2 ulp of the exact value; the interpreter's float lgamma is up to
1.4e-9 off there, and overflows early, from 4.037e36). ``remainder`` and
``nextafter`` are exact. Traps:

* float64 arguments: float64 ``sin``/``cos``/``fmod`` do not link in IREE and the
  series are not float64-accurate, so only ``nextafter`` exports in float64; the rest
  raise a positioned :class:`~tc.mlir.body.TcExportError`;
* IREE flushes subnormal floats to zero in float arithmetic (``arith.extf`` included):
  a subnormal argument is taken as 0 (``normcdfinv(1e-40)`` is ``-inf``,
  ``tgamma(1e-40)`` is ``inf``, the interpreter's finite values). ``nextafter`` works
  on the bits with integer ops only and returns subnormals exactly
  (``nextafter(0, 1)`` is 1.4e-45, as the interpreter);
* ``j0 j1 y0 y1`` need sin x and cos x for x up to 3.4e38, which IREE's float ``sin``
  gets wrong from about 1e3 (and float64 ``sin`` does not link): the argument is
  reduced modulo pi/2 exactly by products with 24-bit chunks of 2/pi (Payne and
  Hanek), then float64 series;
* torch's float64 ``erfinv`` (a fitting reference) is off by up to 7e-9 in some
  processes: it is refined by Newton steps on libm's ``erf`` before fitting;
* ``erfcinv(x)`` is ``erfinv(1 - x)`` with ``1 - x`` rounded in the argument's type,
  as the interpreter defines it (so ``erfcinv(1e-9)`` is ``inf`` in float).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np

from tc.ir.types import ScalarType

__all__ = ["SPECIAL", "float64_exportable", "expand"]

F64 = ScalarType.FLOAT64
F32 = ScalarType.FLOAT32
BOOL = ScalarType.BOOL

#: The builtins this module expands.
SPECIAL = ("erfinv", "erfcinv", "normcdfinv", "lgamma", "tgamma", "cyl_bessel_i0",
           "cyl_bessel_i1", "erfcx", "j0", "j1", "y0", "y1", "nextafter", "remainder")


def float64_exportable(fn: str) -> bool:
    """Whether builtin ``fn`` exports for float64 arguments (see the module's traps)."""
    return fn == "nextafter"


# -- the series, fitted once to the interpreter's float64 definitions ------------------


def _ref(name: str) -> Callable[[np.ndarray], np.ndarray]:
    """The interpreter's float64 definition of a function the pieces approximate."""
    import torch

    from tc.ir import interpret as it

    def t64(f):
        return lambda x: f(torch.from_numpy(np.asarray(x, np.float64))).numpy()

    ndtri = t64(torch.special.ndtri)
    erf = np.vectorize(math.erf, otypes=[np.float64])

    def erfinv(x: np.ndarray) -> np.ndarray:
        # torch's float64 erfinv is off by up to 7e-9 in some processes (not in
        # others): two Newton steps on libm's erf make it exact
        y = t64(torch.special.erfinv)(x)
        for _ in range(2):
            y = y - (erf(y) - x) * (math.sqrt(math.pi) / 2) * np.exp(y * y)
        return y

    table = {
        "erfinv": erfinv,
        "erfcinv": lambda q: -ndtri(0.5 * q) * math.sqrt(0.5),  # accurate in the tail
        "lgamma": t64(torch.lgamma),
        "gamma": np.vectorize(math.gamma, otypes=[np.float64]),
        "i0e": t64(torch.special.i0e), "i1e": t64(torch.special.i1e),
        "erfcx": t64(torch.special.erfcx),
        "j0": it._bessel_jy(0, False), "j1": it._bessel_jy(1, False),
        "y0": it._bessel_jy(0, True), "y1": it._bessel_jy(1, True),
    }
    return table[name]


def _target(key: str) -> Callable[[np.ndarray], np.ndarray]:
    """The function a piece approximates, by name (see :data:`_PIECES`)."""
    r = _ref
    two_pi = 2.0 / math.pi
    table: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        # erfinv(x) = x * f(x * x) for |x| <= 1/2
        "erfinv_c": lambda u: r("erfinv")(np.sqrt(u)) / np.sqrt(u),
        # erfcinv(q) = s * f(s) with s = sqrt(-log q), q <= 1/2
        "erfcinv_t": lambda s: r("erfcinv")(np.exp(-s * s)) / s,
        "lgamma_h": lambda x: r("lgamma")(x) / ((x - 1.0) * (x - 2.0)),
        "lgamma": r("lgamma"),
        "gamma": r("gamma"),
        "i0e": r("i0e"), "i0e_far": lambda u: r("i0e")(8.0 / u) * np.sqrt(8.0 / u),
        "i1e_x": lambda x: r("i1e")(x) / x,
        "i1e_far": lambda u: r("i1e")(8.0 / u) * np.sqrt(8.0 / u),
        # erfcx(x) * (x + 1) in u = 1 - 8 / (x + 4), for x >= 0
        "erfcx": lambda u: r("erfcx")(8.0 / (1.0 - u) - 4.0) * (8.0 / (1.0 - u) - 3.0),
        "j0": r("j0"), "j1": r("j1"), "y0": r("y0"), "y1": r("y1"),
        "j1_x": lambda x: r("j1")(x) / x,
        "y0_r": lambda x: r("y0")(x) - two_pi * np.log(0.5 * x) * r("j0")(x),
        "y1_r": lambda x: (r("y1")(x) + two_pi / x - two_pi * np.log(0.5 * x) * r("j1")(x)),
        # sin(pi sqrt(u)) / sqrt(u), sin(sqrt u) / sqrt(u), cos(sqrt u) for small u
        "sinpi": lambda u: np.sin(np.pi * np.sqrt(u)) / np.sqrt(u),
        "sin": lambda u: np.sin(np.sqrt(u)) / np.sqrt(u),
        "cos": lambda u: np.cos(np.sqrt(u)),
    }
    return table[key]


@functools.cache
def _series(key: str, lo: float, hi: float) -> tuple[float, ...]:
    """Chebyshev coefficients of piece ``key`` on [lo, hi], of the lowest degree whose
    error (at 4000 points) is below 1e-13 of the piece's largest value."""
    f = _target(key)
    xs = np.linspace(lo, hi, 4001)[1:-1]
    want = f(xs)
    scale = max(float(np.max(np.abs(want))), 1e-300)
    best = math.inf
    for deg in range(4, 90):
        c = np.polynomial.chebyshev.chebinterpolate(
            lambda t: f(lo + (t + 1.0) * (0.5 * (hi - lo))), deg)
        t = (2.0 * xs - (lo + hi)) / (hi - lo)
        err = float(np.max(np.abs(np.polynomial.chebyshev.chebval(t, c) - want)))
        best = min(best, err)
        if err <= 1e-13 * scale:
            return tuple(float(v) for v in c)
    raise AssertionError(f"no Chebyshev series fits {key} on [{lo}, {hi}] (best error "
                         f"{best:.3g} of {scale:.3g})")


# -- emitting float64 arithmetic -------------------------------------------------------

#: 2/pi in 24-bit chunks (fdlibm's ipio2; checked against mpmath): 240 bits cover the
#: reduction of every float (x < 2**128) to 2**-60.
_TWO_OVER_PI = (0xA2F983, 0x6E4E44, 0x1529FC, 0x2757D1, 0xF534DD, 0xC0DB62, 0x95993C,
                0x439041, 0xFE5163, 0xABDEBB)


class _F64:
    """Float64 scalar ops appended to a :class:`tc.mlir.body.Body`."""

    def __init__(self, body) -> None:
        self.b = body

    def c(self, v: float) -> str:
        return self.b.const(v, F64)

    def add(self, a: str, b: str) -> str:
        return self.b.bin("arith.addf", a, b, F64)

    def sub(self, a: str, b: str) -> str:
        return self.b.bin("arith.subf", a, b, F64)

    def mul(self, a: str, b: str) -> str:
        return self.b.bin("arith.mulf", a, b, F64)

    def div(self, a: str, b: str) -> str:
        return self.b.bin("arith.divf", a, b, F64)

    def fn(self, name: str, a: str) -> str:
        return self.b.op(f"math.{name} {a} : f64")

    def neg(self, a: str) -> str:
        return self.b.op(f"arith.negf {a} : f64")

    def sel(self, c: str, a: str, b: str) -> str:
        return self.b.select(c, a, b, F64)

    def cmp(self, pred: str, a: str, b: str) -> str:
        return self.b.cmp(pred, a, b, F64)

    def lt(self, a: str, v: float) -> str:
        return self.cmp("olt", a, self.c(v))

    def series(self, key: str, x: str, lo: float, hi: float) -> str:
        """The fitted series of ``key`` at ``x`` (meant for x in [lo, hi]; Clenshaw)."""
        coef = _series(key, lo, hi)
        t = self.mul(self.sub(x, self.c(0.5 * (lo + hi))), self.c(2.0 / (hi - lo)))
        t2 = self.add(t, t)
        b1, b2 = self.c(0.0), self.c(0.0)
        for ck in coef[:0:-1]:
            b1, b2 = self.add(self.sub(self.mul(t2, b1), b2), self.c(ck)), b1
        return self.add(self.sub(self.mul(t, b1), b2), self.c(coef[0]))

    def pieces(self, x: str, key: str | Callable[[float], str], bounds: list[float]) -> str:
        """``key``'s series on consecutive pieces [bounds[i], bounds[i+1]], selected by
        ``x`` (below the first bound the first piece, above the last the last)."""
        r = None
        for lo, hi in zip(bounds, bounds[1:], strict=False):
            k = key if isinstance(key, str) else key(lo)
            v = self.series(k, x, lo, hi)
            r = v if r is None else self.sel(self.lt(x, lo), r, v)
        assert r is not None
        return r

    def sincos(self, x: str) -> tuple[str, str]:
        """sin(x) and cos(x) for a float x >= 0 (exact in float64): x * 2/pi modulo 4 as
        a sum of exact products with 24-bit chunks of 2/pi, each reduced modulo 4
        exactly (Payne and Hanek's reduction, branch-free), then series on
        [-pi/4, pi/4]: absolute error about 1e-15 for every float x."""
        s = None
        for i, chunk in enumerate(_TWO_OVER_PI):
            term = self.mul(x, self.c(math.ldexp(chunk, -24 * (i + 1))))  # exact
            term = self.sub(term, self.mul(self.c(4.0), self.fn("floor", self.mul(
                term, self.c(0.25)))))  # modulo 4, exact
            s = term if s is None else self.add(s, term)
        assert s is not None
        n = self.fn("round", s)
        r = self.mul(self.sub(s, n), self.c(math.pi / 2))
        u = self.mul(r, r)
        lim = (math.pi / 4) ** 2 * 1.01
        s = self.mul(r, self.series("sin", u, 0.0, lim))
        c = self.series("cos", u, 0.0, lim)
        # quadrant n mod 4: (s, c) -> (s, c), (c, -s), (-s, -c), (-c, s)
        q = self.sub(n, self.mul(self.c(4.0), self.fn("floor", self.mul(n, self.c(0.25)))))
        odd = self.cmp("oeq", self.sub(q, self.mul(self.c(2.0), self.fn(
            "floor", self.mul(q, self.c(0.5))))), self.c(1.0))
        s2, c2 = self.sel(odd, c, s), self.sel(odd, self.neg(s), c)
        flip = self.cmp("oge", q, self.c(2.0))
        return self.sel(flip, self.neg(s2), s2), self.sel(flip, self.neg(c2), c2)

    def sinpi_abs_x(self, x: str) -> str:
        """|x sin(pi x)| (0 at the integers, exactly)."""
        r = self.sub(x, self.mul(self.c(2.0), self.fn("round", self.mul(
            x, self.c(0.5)))))  # [-1, 1], exact
        a = self.fn("absf", r)
        d = self.b.bin("arith.minimumf", a, self.sub(self.c(1.0), a), F64)  # [0, 1/2]
        s = self.mul(d, self.series("sinpi", self.mul(d, d), 0.0, 0.25))
        return self.fn("absf", self.mul(x, s))

    def sinpi(self, x: str) -> str:
        """sin(pi x), exact zeros at the integers."""
        r = self.sub(x, self.mul(self.c(2.0), self.fn("round", self.mul(
            x, self.c(0.5)))))
        a = self.fn("absf", r)
        d = self.b.bin("arith.minimumf", a, self.sub(self.c(1.0), a), F64)
        s = self.mul(d, self.series("sinpi", self.mul(d, d), 0.0, 0.25))
        return self.b.op(f"math.copysign {s}, {r} : f64")


# -- the functions (float64 in, float64 out) -------------------------------------------

_INF, _NAN = math.inf, math.nan


def _erfcinv_q(f: _F64, q: str, x: str) -> str:
    """erfcinv(q) for q in [0, 1], ``x`` = 1 - q (exactly): the tail series in
    sqrt(-log q) below 1/2, the central one on x above; +inf at 0."""
    s = f.fn("sqrt", f.neg(f.fn("log", q)))
    tail = f.mul(s, f.pieces(s, "erfcinv_t", [0.8, 2.0, 4.0, 6.5, 9.5]))
    centre = f.mul(x, f.series("erfinv_c", f.mul(x, x), 0.0, 0.25))
    r = f.sel(f.cmp("ole", q, f.c(0.5)), tail, centre)
    return f.sel(f.cmp("oeq", q, f.c(0.0)), f.c(_INF), r)


def _erfinv(f: _F64, x: str) -> str:
    a = f.fn("absf", x)
    r = f.b.op(f"math.copysign {_erfcinv_q(f, f.sub(f.c(1.0), a), a)}, {x} : f64")
    r = f.sel(f.cmp("ogt", a, f.c(1.0)), f.c(_NAN), r)
    return f.sel(f.cmp("uno", x, x), x, r)


def _normcdfinv(f: _F64, p: str) -> str:
    low = f.lt(p, 0.5)  # not at 1/2: normcdfinv(0.5) is +0
    q = f.mul(f.c(2.0), f.sel(low, p, f.sub(f.c(1.0), p)))  # exact
    r = f.mul(_erfcinv_q(f, q, f.sub(f.c(1.0), q)), f.c(math.sqrt(2.0)))
    r = f.sel(low, f.neg(r), r)
    bad = f.b.bin("arith.ori", f.cmp("ult", p, f.c(0.0)), f.cmp("ugt", p, f.c(1.0)), BOOL)
    return f.sel(bad, f.c(_NAN), r)


def _lgamma_pos(f: _F64, y: str) -> str:
    """lgamma(y) for y >= 1/2: series up to 8, Stirling's series above."""
    h = f.pieces(y, "lgamma_h", [0.5, 1.0, 1.5, 2.0, 3.0])
    near = f.mul(h, f.mul(f.sub(y, f.c(1.0)), f.sub(y, f.c(2.0))))
    mid = f.pieces(y, "lgamma", [3.0, 5.0, 8.0])
    w = f.div(f.c(1.0), f.mul(y, y))
    corr = f.c(-1.0 / 1680.0)
    for c in (1.0 / 1260.0, -1.0 / 360.0, 1.0 / 12.0):
        corr = f.add(f.mul(corr, w), f.c(c))
    far = f.add(f.sub(f.mul(f.sub(y, f.c(0.5)), f.fn("log", y)), y),
                f.add(f.c(0.5 * math.log(2 * math.pi)), f.div(corr, y)))
    r = f.sel(f.lt(y, 8.0), mid, far)
    return f.sel(f.lt(y, 3.0), near, r)


def _lgamma(f: _F64, x: str) -> str:
    a = f.fn("absf", x)
    small = f.lt(a, 0.5)
    neg = f.cmp("ole", x, f.c(-0.5))
    y = f.sel(neg, f.neg(x), f.sel(small, f.add(x, f.c(1.0)), x))
    p = _lgamma_pos(f, y)
    r_small = f.sub(p, f.fn("log", a))
    r_neg = f.sub(f.fn("log", f.div(f.c(math.pi), f.sinpi_abs_x(x))), p)
    r = f.sel(neg, r_neg, f.sel(small, r_small, p))
    r = f.add(r, f.c(0.0))  # +0, not -0, at 1 and 2
    inf = f.cmp("oeq", a, f.c(_INF))
    return f.sel(inf, f.c(_INF), f.sel(f.cmp("uno", x, x), x, r))


_GAMMA_TOP = 50  # Gamma(y) by products up to y = 50 (float Gamma overflows at 35.04)


def _gamma_pos(f: _F64, y: str) -> str:
    """Gamma(y) for 0 < y <= 50: the series on [1, 2] times (y - 1)(y - 2)... (exact
    factors) or divided by y below 1."""
    frac = f.sub(y, f.fn("floor", y))
    base = f.series("gamma", f.add(frac, f.c(1.0)), 1.0, 2.0)
    prod = base
    for j in range(1, _GAMMA_TOP):
        yj = f.sub(y, f.c(float(j)))
        prod = f.sel(f.cmp("oge", yj, f.c(1.0)), f.mul(prod, yj), prod)
    return f.sel(f.lt(y, 1.0), f.div(base, y), prod)


def _tgamma(f: _F64, x: str) -> str:
    neg = f.lt(x, 0.0)
    a = f.fn("absf", x)
    g = _gamma_pos(f, f.b.bin("arith.minimumf", a, f.c(float(_GAMMA_TOP)), F64))
    refl = f.div(f.c(-math.pi), f.mul(f.mul(x, f.sinpi(x)), g))
    r = f.sel(neg, refl, g)  # below -50, Gamma(50) in refl: a signed zero, as C's
    r = f.sel(f.cmp("ogt", x, f.c(36.0)), f.c(_INF), r)
    integer = f.cmp("oeq", f.fn("floor", x), x)
    r = f.sel(f.b.bin("arith.andi", neg, integer, BOOL), f.c(_NAN), r)  # -inf too
    zero = f.cmp("oeq", x, f.c(0.0))
    r = f.sel(zero, f.b.op(f"math.copysign {f.c(_INF)}, {x} : f64"), r)
    return f.sel(f.cmp("uno", x, x), x, r)


def _bessel_i(f: _F64, x: str, odd: bool) -> str:
    a = f.fn("absf", x)
    if odd:
        near = f.mul(a, f.pieces(a, "i1e_x", [0.0, 4.0, 8.0]))
    else:
        near = f.pieces(a, "i0e", [0.0, 4.0, 8.0])
    u = f.div(f.c(8.0), a)
    far = f.div(f.series("i1e_far" if odd else "i0e_far", u, 0.0, 1.0), f.fn("sqrt", a))
    r = f.mul(f.sel(f.lt(a, 8.0), near, far), f.fn("exp", a))
    r = f.sel(f.cmp("oeq", a, f.c(_INF)), a, r)
    return f.sel(f.lt(x, 0.0), f.neg(r), r) if odd else r  # i1(-0) is +0


def _erfcx(f: _F64, x: str) -> str:
    a = f.fn("absf", x)
    u = f.sub(f.c(1.0), f.div(f.c(8.0), f.add(a, f.c(4.0))))
    pos = f.div(f.series("erfcx", u, -1.0, 1.0), f.add(a, f.c(1.0)))
    pos = f.sel(f.cmp("oeq", a, f.c(_INF)), f.c(0.0), pos)
    twice = f.mul(f.c(2.0), f.fn("exp", f.mul(x, x)))  # x*x exact for a float x
    neg = f.sel(f.cmp("oeq", twice, f.c(_INF)), twice, f.sub(twice, pos))
    r = f.sel(f.lt(x, 0.0), neg, pos)
    return f.sel(f.cmp("uno", x, x), x, r)


_HANKEL_TERMS = 14


def _bessel_jy(f: _F64, x: str, n: int, second: bool) -> str:
    """J or Y of order n: series on pieces of [0, 25] (Y: log(x/2) J split off below 5),
    Hankel's expansion above, the phase from sin x and cos x."""
    two_pi = 2.0 / math.pi
    a = f.fn("absf", x)
    name = f"{'y' if second else 'j'}{n}"
    cuts = [0.0, 5.0, 10.0, 15.0, 20.0, 25.0]
    # below 5, J1 as x times a series: full relative accuracy for tiny x
    j = f.series("j0", a, 0.0, 5.0) if n == 0 else f.mul(a, f.series("j1_x", a, 0.0, 5.0))
    if second:
        lg = f.mul(f.c(two_pi), f.mul(f.fn("log", f.mul(a, f.c(0.5))), j))
        head = f.add(f.series(f"{name}_r", a, 0.0, 5.0), lg)
        if n == 1:
            head = f.sub(head, f.div(f.c(two_pi), a))
        rest = f.pieces(a, name, cuts[1:])
        near = f.sel(f.lt(a, 5.0), head, rest)
    else:
        near = f.sel(f.lt(a, 5.0), j, f.pieces(a, name, cuts[1:]))
    # Hankel: P and Q as polynomials in 1/x (the interpreter's terms)
    w = f.div(f.c(1.0), f.sel(f.lt(a, 25.0), f.c(25.0), a))
    coef, t = [1.0], 1.0
    for k in range(1, _HANKEL_TERMS):
        t = t * (4.0 * n * n - (2 * k - 1) ** 2) / (8.0 * k)
        coef.append(t * (-1.0 if (k // 2) % 2 else 1.0))
    p, q = f.c(0.0), f.c(0.0)
    for k in range(_HANKEL_TERMS - 1, -1, -1):
        if k % 2:
            q = f.add(f.mul(q, w), f.c(coef[k]))
            p = f.mul(p, w)
        else:
            p = f.add(f.mul(p, w), f.c(coef[k]))
            q = f.mul(q, w)
    s, c = f.sincos(f.sel(f.lt(a, 25.0), f.c(25.0), a))
    h = math.sqrt(0.5)
    if n:
        cw, sw = f.mul(f.sub(s, c), f.c(h)), f.neg(f.mul(f.add(s, c), f.c(h)))
    else:
        cw, sw = f.mul(f.add(c, s), f.c(h)), f.mul(f.sub(s, c), f.c(h))
    amp = f.fn("sqrt", f.mul(w, f.c(two_pi)))
    body = f.add(f.mul(p, sw), f.mul(q, cw)) if second else f.sub(f.mul(p, cw), f.mul(q, sw))
    r = f.sel(f.lt(a, 25.0), near, f.mul(amp, body))
    r = f.sel(f.cmp("oeq", a, f.c(_INF)), f.c(0.0), r)
    if second:
        r = f.sel(f.cmp("oeq", x, f.c(0.0)), f.c(-_INF), r)
        r = f.sel(f.lt(x, 0.0), f.c(_NAN), r)
    elif n:
        r = f.sel(f.lt(x, 0.0), f.neg(r), r)
    return f.sel(f.cmp("uno", x, x), x, r)


# -- entry -----------------------------------------------------------------------------


def _remainder(body, x: str, y: str, t: ScalarType) -> str:
    """C's remainder (quotient rounded half to even): fmod(x, 2|y|) (exact), then at
    most two subtractions of |y|, in float64 (exact)."""
    from tc.mlir.types import element_type

    et = element_type(t)
    ay = body.op(f"math.absf {y} : {et}")
    two = body.bin("arith.addf", ay, ay, t)
    finite2 = body.cmp("une", two, body.const(_INF, t), t)  # NaN too: remf gives NaN
    r = body.select(finite2, body.bin("arith.remf", x, body.select(
        finite2, two, body.const(1.0, t), t), t), x, t)  # 2|y| = inf: x itself
    f = _F64(body)
    r64, p = body.cast(r, t, F64), body.cast(ay, t, F64)
    v = f.fn("absf", r64)  # in [0, 2|y|)
    first = f.cmp("ogt", f.add(v, v), p)  # above |y|/2: subtract |y| (a tie stays: even)
    v = f.sel(first, f.sub(v, p), v)
    second = f.b.bin("arith.andi", first, f.cmp("oge", f.add(v, v), p), BOOL)
    v = f.sel(second, f.sub(v, p), v)  # still at or above |y|/2: once more (tie: even)
    x_neg = f.lt(f.b.op(f"math.copysign {f.c(1.0)}, {body.cast(x, t, F64)} : f64"), 0.0)
    v = f.sel(x_neg, f.neg(v), v)  # the sign of x flips the result (-0 for remainder(-4, 2))
    v = f.sel(f.cmp("uno", r64, r64), r64, v)  # NaN from x = inf or y = 0 (fmod's)
    x_inf = f.cmp("oeq", f.fn("absf", body.cast(x, t, F64)), f.c(_INF))
    v = f.sel(x_inf, f.c(_NAN), v)  # remainder(inf, inf): fmod was skipped
    return body.cast(v, F64, t)


def _nextafter(body, x: str, y: str, t: ScalarType) -> str:
    """On the bits: a float's bits as a sign-magnitude integer made monotonic (the
    negative ones negated), stepped by one toward y, back to bits; only integer ops,
    so that subnormals (flushed by IREE's float ops) come out exactly."""
    from tc.mlir.types import element_type

    it = {16: ScalarType.INT16, 32: ScalarType.INT32, 64: ScalarType.INT64}[t.bits]
    et, ei = element_type(t), element_type(it)
    sign = 1 << (t.bits - 1)
    inf_bits = {16: 0x7C00, 32: 0x7F800000, 64: 0x7FF0000000000000}[t.bits]
    mag_mask, zero = body.const(sign - 1, it), body.const(0, it)

    def key(v: str) -> tuple[str, str]:
        bits = body.op(f"arith.bitcast {v} : {et} to {ei}")
        mag = body.bin("arith.andi", bits, mag_mask, it)
        negative = body.cmp("slt", bits, zero, it)
        k = body.select(negative, body.bin("arith.subi", zero, mag, it), mag, it)
        return k, body.cmp("ugt", mag, body.const(inf_bits, it), it)  # NaN

    kx, nx = key(x)
    ky, ny = key(y)
    step = body.select(body.cmp("slt", kx, ky, it), body.const(1, it), body.const(-1, it), it)
    k = body.bin("arith.addi", kx, step, it)
    bits = body.select(body.cmp("slt", k, zero, it), body.bin(
        "arith.ori", body.bin("arith.subi", zero, k, it), body.const(-sign, it), it), k, it)
    r = body.op(f"arith.bitcast {bits} : {ei} to {et}")
    r = body.select(body.cmp("eq", kx, ky, it), y, r, t)
    nan = body.bin("arith.ori", nx, ny, BOOL)
    return body.select(nan, body.bin("arith.addf", x, y, t), r, t)


def expand(body, fn: str, args: list[str], t: ScalarType) -> str:
    """The value of builtin ``fn`` (of :data:`SPECIAL`) on ``args`` of float type ``t``
    (float32, or float64 where :func:`float64_exportable`)."""
    if fn == "nextafter":
        return _nextafter(body, args[0], args[1], t)
    if fn == "remainder":
        return _remainder(body, args[0], args[1], t)
    f = _F64(body)
    if fn == "erfcinv":  # the interpreter's definition: 1 - x rounded in the type
        x = body.cast(body.bin("arith.subf", body.const(1.0, t), args[0], t), t, F64)
        fn = "erfinv"
    else:
        x = body.cast(args[0], t, F64)
    if fn == "erfinv":
        r = _erfinv(f, x)
    elif fn == "normcdfinv":
        r = _normcdfinv(f, x)
    elif fn == "lgamma":
        r = _lgamma(f, x)
    elif fn == "tgamma":
        r = _tgamma(f, x)
    elif fn in ("cyl_bessel_i0", "cyl_bessel_i1"):
        r = _bessel_i(f, x, fn.endswith("1"))
    elif fn == "erfcx":
        r = _erfcx(f, x)
    else:
        r = _bessel_jy(f, x, int(fn[1]), fn[0] == "y")
    return body.cast(r, F64, t)
