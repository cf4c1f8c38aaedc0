"""Helper functions for the builtins a target's math library lacks (issue 14: the rest
of the original's builtins), printed into the kernel's source by the C and OpenCL
printers; CUDA has every one of them natively (``cospif``, ``cyl_bessel_i0f``,
``normcdfinvf``, ...).

Each helper is written once, in the C that C11 and OpenCL C share (``static inline``
is replaced by the target's helper storage class), and computes in double: a float
argument is widened, the double result rounded once, which is how the interpreter
defines these builtins for float (it computes them in float64 and rounds), so the
compiled and interpreted results agree to the rounding of the last step. OpenCL
kernels using a helper therefore enable ``cl_khr_fp64`` (``OpenCLPrinter.preamble``).

``fdivide`` is ``/`` on every target (CUDA's too: ``fdividef`` may be the approximate
``__fdividef``) and ``rhypot`` is ``1 / hypot`` in double where the library lacks it.

The algorithms, with the accuracy measured against mpmath (30 digits) in double:

* ``cospi``/``sinpi``: the argument is reduced exactly (``fmod(x, 2)`` and the nearest
  quarter turn), so integers and half-integers give exact 0 and +-1; one ``sin`` or
  ``cos`` of ``pi * f``, ``|f| <= 1/4``: about 1 ulp.
* ``j0 j1 y0 y1`` (OpenCL only; C's libm has them): power series below 1, Miller's
  backward recurrence with the Neumann series for Y between 1 and 25, Hankel's
  asymptotic expansion (phase from ``sin x`` and ``cos x``, not ``x - pi/4``) above:
  error below 3e-16 of ``max(1, |value|)`` (the relative error grows near the zeros,
  as every implementation's does).
* ``cyl_bessel_i0``/``i1``: the power series (positive terms) up to 30, the
  asymptotic expansion above, ``exp(x/2)`` applied twice so that the result is finite
  wherever it is representable: relative error below 1e-15.
* ``erfcx``: ``exp(x*x) * erfc(x)`` below 25, with ``x*x`` split into an exact high
  part and a small low part so that ``exp`` does not amplify its rounding; the
  asymptotic series of ``erfc`` above 25. Relative error below 5e-16 (with glibc's
  and PoCL's ``erfc``).
* ``normcdf``: ``erfc(-x / sqrt(2)) / 2``: relative error 2e-16 near 0, growing as
  ``x*x`` in the left tail (the rounding of ``x / sqrt(2)``): 2e-13 at -37.
* ``normcdfinv``: ``sqrt(2) * erfinv(2p - 1)`` (``2p - 1`` exact) for ``p`` in
  [1/4, 3/4], with the erfinv helper (``codegen.printer.ERFINV``); in the tails
  ``-sqrt(2) * erfcinv(2p)``, the inverse computed by Newton's method on
  ``log(erfc(x)) = log(erfcx(x)) - x*x`` (concave, so the iteration converges
  monotonically from any start), which keeps full relative accuracy down to the
  smallest double, where ``erfinv(1 - 2p)`` would lose it: relative error below 1e-15.
* ``norm3d norm4d`` (and their reciprocals): the components scaled by a power of two
  (exact), so no square overflows or underflows; an infinite component gives +inf
  even with a NaN, as C's ``hypot``.
"""

from __future__ import annotations

#: The builtins of issue 14 (CUDA has all of them).
EXTRA_MATH = frozenset(
    "cospi sinpi cyl_bessel_i0 cyl_bessel_i1 erfcx fdivide j0 j1 y0 y1 logb nextafter "
    "norm3d norm4d rnorm3d rnorm4d normcdf normcdfinv remainder rhypot".split())

SINCOSPI = """static inline double tc_sincospi(double x, int want_cos) {
  if (!isfinite(x)) return x - x;
  double r = fmod(x, 2.0);
  double n = rint(2.0 * r);
  double f = r - 0.5 * n;
  int q = ((int)n % 4 + 4) % 4;
  double s = sin(3.141592653589793 * f), c = cos(3.141592653589793 * f);
  if (want_cos) return (q == 0 ? c : q == 1 ? -s : q == 2 ? -c : s) + 0.0;
  double v = q == 0 ? s : q == 1 ? c : q == 2 ? -s : -c;
  return v == 0.0 ? copysign(0.0, x) : v;
}"""

BESSEL_I = """static inline double tc_bessel_i(double x, int nu) {
  double ax = fabs(x), r;
  if (isnan(x)) return x;
  if (isinf(x)) return nu ? x : ax;
  if (ax <= 30.0) {
    double y = 0.25 * ax * ax, t = nu ? 0.5 * ax : 1.0, s = t;
    for (int k = 1; k < 200 && t > 1e-17 * s; k++) {
      t *= y / ((double)k * (double)(k + nu));
      s += t;
    }
    r = s;
  } else {
    double mu = 4.0 * nu * nu, t = 1.0, s = 1.0;
    for (int k = 1; k < 60; k++) {
      t *= -(mu - (2.0 * k - 1.0) * (2.0 * k - 1.0)) / (8.0 * k * ax);
      s += t;
      if (fabs(t) < 1e-17) break;
    }
    double e = exp(0.5 * ax);
    r = e * (e * (s / sqrt(6.283185307179586 * ax)));
  }
  return nu && x < 0 ? -r : r;
}"""

BESSEL_JY = """static inline double tc_bessel_jy(double x, int n, int second) {
  if (isnan(x)) return x;
  if (second && x < 0) return NAN;
  if (second && x == 0) return -INFINITY;
  double sg = n && x < 0 ? -1.0 : 1.0, ax = fabs(x);
  const double two_pi = 0.6366197723675814, gamma = 0.5772156649015329;
  if (isinf(ax)) return 0.0;
  if (ax >= 25.0) {
    double mu = 4.0 * n * n, p = 1.0, q = 0.0, t = 1.0;
    for (int k = 1; k < 60; k++) {
      t *= (mu - (2.0 * k - 1.0) * (2.0 * k - 1.0)) / (8.0 * k * ax);
      double term = (k / 2) % 2 ? -t : t;
      if (k % 2) q += term; else p += term;
      if (fabs(t) < 1e-17) break;
    }
    double c = cos(ax), s = sin(ax), h = 0.7071067811865476;
    double cw = n ? (s - c) * h : (c + s) * h, sw = n ? -(s + c) * h : (s - c) * h;
    double amp = sqrt(two_pi / ax);
    return sg * amp * (second ? p * sw + q * cw : p * cw - q * sw);
  }
  if (ax < 1.0) {
    double y = 0.25 * ax * ax, hx = 0.5 * ax, hk = 0.0;
    if (n == 0) {
      double t = 1.0, j = 1.0, ys = 0.0;
      for (int k = 1; k < 30; k++) {
        t *= -y / ((double)k * k); hk += 1.0 / k; j += t; ys -= hk * t;
      }
      return second ? two_pi * ((log(hx) + gamma) * j + ys) : j;
    }
    double t = hx, j = hx, ys = (1.0 - 2.0 * gamma) * hx;
    for (int k = 1; k < 30; k++) {
      t *= -y / ((double)k * (k + 1)); hk += 1.0 / k; j += t;
      ys += (2.0 * hk + 1.0 / (k + 1) - 2.0 * gamma) * t;
    }
    return second ? -two_pi / ax + two_pi * log(hx) * j - 0.5 * two_pi * ys : sg * j;
  }
  int top = 2 * ((int)ax / 2) + 36;
  double jp1 = 0.0, j = 1.0, norm = 0.0, s0 = 0.0, s1 = 0.0;
  for (int m = top; m >= 1; m--) {
    if (m % 2 == 0) {
      int k = m / 2;
      norm += 2.0 * j;
      s0 += (k % 2 ? -j : j) / k;
    } else if (m >= 3) {
      int k = (m - 1) / 2;
      s1 += (k % 2 ? -1.0 : 1.0) * (2.0 * k + 1.0) * j / ((double)k * (k + 1));
    }
    double jm1 = (2.0 * m / ax) * j - jp1;
    jp1 = j; j = jm1;
  }
  norm += j;
  double j0 = j / norm, j1 = jp1 / norm, l = log(0.5 * ax) + gamma;
  if (!second) return n ? sg * j1 : j0;
  if (n == 0) return two_pi * (l * j0 - 2.0 * s0 / norm);
  return -two_pi * j0 / ax + two_pi * ((l - 1.0) * j1 - s1 / norm);
}"""

ERFCX = """static inline double tc_erfcx(double x) {
  if (isnan(x)) return x;
  if (x < 25.0) {
    if (x < -26.7) return INFINITY;
    double hi = (double)(float)x, lo = (x - hi) * (x + hi);
    return exp(hi * hi) * exp(lo) * erfc(x);
  }
  double w = 0.5 / (x * x), t = 1.0, s = 1.0;
  for (int k = 1; k < 12; k++) { t *= -(2.0 * k - 1.0) * w; s += t; }
  return 0.5641895835477563 / x * s;
}"""

NORMCDF = """static inline double tc_normcdf(double x) {
  return 0.5 * erfc(-0.7071067811865476 * x);
}"""

#: Uses :data:`ERFCX` and ``codegen.printer.ERFINV`` (helpers print in sorted order of
#: their names: "erfcx" and "erfinv" before "normcdfinv").
NORMCDFINV = """static inline double tc_normcdfinv(double p) {
  if (!(p >= 0.0 && p <= 1.0)) return NAN;
  if (p == 0.0 || p == 1.0) return p == 0.0 ? -INFINITY : INFINITY;
  if (p >= 0.25 && p <= 0.75) return 1.4142135623730951 * tc_erfinv(2.0 * p - 1.0);
  double sg = p > 0.5 ? 1.0 : -1.0, q = 2.0 * (p > 0.5 ? 1.0 - p : p);
  double lq = log(q), x = sqrt(-lq);
  for (int i = 0; i < 60; i++) {
    double ex = tc_erfcx(x);
    double dx = (log(ex) - x * x - lq) * 0.886226925452758 * ex;
    x += dx;
    if (fabs(dx) <= 1e-16 * x) break;
  }
  return sg * 1.4142135623730951 * x;
}"""

NORM = """static inline double tc_norm4d(double a, double b, double c, double d) {
  a = fabs(a); b = fabs(b); c = fabs(c); d = fabs(d);
  if (isinf(a) || isinf(b) || isinf(c) || isinf(d)) return INFINITY;
  if (isnan(a + b + c + d)) return NAN;
  double m = fmax(fmax(a, b), fmax(c, d));
  if (m == 0.0) return 0.0;
  int e = ilogb(m);
  a = ldexp(a, -e); b = ldexp(b, -e); c = ldexp(c, -e); d = ldexp(d, -e);
  return ldexp(sqrt(a * a + b * b + c * c + d * d), e);
}"""

#: helper name (for ``CFamilyPrinter.use``) -> its text.
TEXTS = {"sincospi": SINCOSPI, "bessel_i": BESSEL_I, "bessel_jy": BESSEL_JY,
         "erfcx": ERFCX, "normcdf": NORMCDF, "normcdfinv": NORMCDFINV, "norm": NORM}

#: helper -> the helpers its text calls.
DEPENDS = {"normcdfinv": ("erfcx", "erfinv")}

_CALLS = {
    "cospi": ("sincospi", "tc_sincospi({}, 1)"), "sinpi": ("sincospi", "tc_sincospi({}, 0)"),
    "cyl_bessel_i0": ("bessel_i", "tc_bessel_i({}, 0)"),
    "cyl_bessel_i1": ("bessel_i", "tc_bessel_i({}, 1)"),
    "j0": ("bessel_jy", "tc_bessel_jy({}, 0, 0)"), "j1": ("bessel_jy", "tc_bessel_jy({}, 1, 0)"),
    "y0": ("bessel_jy", "tc_bessel_jy({}, 0, 1)"), "y1": ("bessel_jy", "tc_bessel_jy({}, 1, 1)"),
    "erfcx": ("erfcx", "tc_erfcx({})"), "normcdf": ("normcdf", "tc_normcdf({})"),
    "normcdfinv": ("normcdfinv", "tc_normcdfinv({})"),
    "norm3d": ("norm", "tc_norm4d({}, 0.0)"), "norm4d": ("norm", "tc_norm4d({})"),
    "rnorm3d": ("norm", "(1.0 / tc_norm4d({}, 0.0))"),
    "rnorm4d": ("norm", "(1.0 / tc_norm4d({}))"),
    "rhypot": (None, "(1.0 / hypot({}))"),
}


def helpers_of(fn: str) -> tuple[str, ...]:
    """The helpers (with what they call) that builtin ``fn`` needs on a target that
    lacks it."""
    if fn not in _CALLS or _CALLS[fn][0] is None:
        return ()
    h = _CALLS[fn][0]
    return (*DEPENDS.get(h, ()), h)


def call_text(fn: str, args: list[str], double: bool) -> str:
    """The call of builtin ``fn`` (of :data:`EXTRA_MATH`) on a target lacking it:
    through its double helper, float arguments widened and the result rounded once.
    ``fdivide`` is plain division in the arguments' type."""
    if fn == "fdivide":
        return f"({args[0]} / {args[1]})"
    wide = ", ".join(args) if double else ", ".join(f"(double)({a})" for a in args)
    text = _CALLS[fn][1].format(wide)
    return text if double else f"((float){text})"
