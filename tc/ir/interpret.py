"""The reference interpreter: evaluates IR functions with numpy, statement by statement.

It is the oracle of every kernel test, so it is written to be obviously right, not
fast: each stage is evaluated over its whole box domain at once with broadcasting.
Values have the declared types (bfloat16 is stored in float32 and rounded after
every operation); reductions accumulate in the type of the written tensor, except
half-precision sums and products, which accumulate in float32
(:mod:`tc.ir.wide_accumulators`). Only the
chosen branch of ``?:`` and the needed operand of ``&&``/``||`` are evaluated, so a
guarded read is never checked against the bounds it is guarded from; any other
out-of-bounds read raises a positioned :class:`TcRangeError`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch

from tc.errors import TcArgumentError, TcRangeError
from tc.ir import nodes as ir
from tc.ir.index_width import size_index_bits
from tc.ir.types import ScalarType
from tc.ir.wide_accumulators import widen_accumulators


def run(
    fn: ir.Function, inputs: Mapping[str, np.ndarray], sizes: Mapping[str, int],
    initial: Mapping[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Run ``fn``; returns every written tensor (outputs and temporaries) by name.

    ``inputs`` hold numpy arrays of the declared types (bfloat16 as float32);
    ``sizes`` gives the value of every size symbol. Outputs start zero-filled, so
    elements no statement writes are 0; those named in ``initial`` start as a copy of
    its array (the caller's ``outputs=`` that a reduction without ``!`` accumulates
    into: tc.ir.bounds.starts_from_contents).
    """
    # Half-precision sums and products accumulate in float32 (the language's semantics,
    # which every target runs the same way: tc.ir.wide_accumulators).
    declared = fn
    fn = widen_accumulators(fn)
    # Sizes and indices as int64 arrays where int32 cannot hold them (as the kernels'
    # index arithmetic: tc.ir.index_width); raises TcArgumentError beyond 64 bits.
    wide = all(isinstance(v, int | np.integer) for v in sizes.values()) and (
        size_index_bits(fn, sizes) == 64)
    store: dict[str, np.ndarray] = dict(inputs)
    for t in fn.outputs + fn.temps:
        shape = tuple(s.evaluate(sizes) for s in t.shape)
        if initial is not None and t.name in initial:
            store[t.name] = np.array(initial[t.name], dtype=t.dtype.numpy_dtype).reshape(shape)
        else:
            store[t.name] = np.zeros(shape, dtype=t.dtype.numpy_dtype)
    with np.errstate(all="ignore"):
        for stage in fn.stages:
            try:
                _run_stage(fn, stage, store, sizes, wide)
            except OverflowError as e:  # numpy refusing an index: say where, as a TcError
                raise TcArgumentError(f"{fn.name}: the statement writing '{stage.tensor}' "
                                      f"overflows its index arithmetic: {e}") from None
    return {t.name: store[t.name] for t in declared.outputs + declared.temps}


def _run_stage(fn: ir.Function, stage: ir.Stage, store: dict, sizes: Mapping[str, int],
               wide: bool = False) -> None:
    out = store[stage.tensor]
    dtype = fn.tensor(stage.tensor).dtype
    los = [d.lo.evaluate(sizes) for d in stage.domain]
    his = [d.hi.evaluate(sizes) for d in stage.domain]
    nd = len(stage.domain)
    nl = len(stage.lhs)
    region = tuple(slice(lo, max(lo, hi)) for lo, hi in zip(los[:nl], his[:nl], strict=True))
    if any(hi <= lo for lo, hi in zip(los[:nl], his[:nl], strict=True)):
        return
    if stage.init:
        out[region] = _const(ir.identity(stage.op, dtype), dtype)
    if any(hi <= lo for lo, hi in zip(los, his, strict=True)):
        return  # an empty reduction leaves the identity (or the old value)
    index = np.int64 if wide else np.int32
    env: dict[str, object] = {n: np.asarray(v, np.int64) for n, v in sizes.items()} if wide \
        else dict(sizes)
    for k, d in enumerate(stage.domain):
        shape = [1] * nd
        shape[k] = his[k] - los[k]
        env[d.name] = np.arange(los[k], his[k], dtype=index).reshape(shape)
    full = tuple(his[k] - los[k] for k in range(nd))
    value = np.broadcast_to(_Eval(store, env, stage, fn.source).eval(stage.rhs, None), full)
    value = value.astype(dtype.numpy_dtype, copy=False)
    if stage.op is None:
        out[region] = value
        return
    axes = tuple(range(nl, nd))
    reduced = _reduce(stage.op, dtype, value, axes)
    out[region] = _combine(stage.op, dtype, out[region], reduced)


def _reduce(op: str, dtype: ScalarType, value: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    npt = dtype.numpy_dtype
    if op == "+":
        r = np.add.reduce(value, axis=axes, dtype=npt)
    elif op == "*":
        r = np.multiply.reduce(value, axis=axes, dtype=npt)
    elif dtype.is_float:
        r = (np.fmin if op == "min" else np.fmax).reduce(value, axis=axes)
    else:
        r = (np.minimum if op == "min" else np.maximum).reduce(value, axis=axes)
    return _round(np.asarray(r, dtype=npt), dtype)


def _combine(op: str, dtype: ScalarType, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if op == "+":
        r = np.logical_or(a, b) if dtype.is_bool else a + b
    elif op == "*":
        r = np.logical_and(a, b) if dtype.is_bool else a * b
    elif dtype.is_float:
        r = np.fmin(a, b) if op == "min" else np.fmax(a, b)
    else:
        r = np.minimum(a, b) if op == "min" else np.maximum(a, b)
    return _round(np.asarray(r, dtype=dtype.numpy_dtype), dtype)


def _round(x: np.ndarray, t: ScalarType) -> np.ndarray:
    """Round float32 storage to bfloat16 precision (nearest, ties to even)."""
    if t is not ScalarType.BFLOAT16:
        return x
    x = np.asarray(x, dtype=np.float32)
    u = x.view(np.uint32).astype(np.uint64)
    rounded = ((u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000).astype(np.uint32).view(np.float32)
    return np.where(np.isnan(x), x, rounded)


def round_bfloat16(x: np.ndarray) -> np.ndarray:
    """Public helper: float32 values rounded to bfloat16 precision."""
    return _round(x, ScalarType.BFLOAT16)


def _const(value, t: ScalarType) -> np.ndarray:
    return _round(np.array(value, dtype=t.numpy_dtype), t)


def _c_round(x: np.ndarray) -> np.ndarray:
    """C's round: halfway cases away from zero. ``x - trunc(x)`` is exact, whereas
    ``floor(|x| + 0.5)`` rounds 0.49999997 up to 1."""
    t = np.trunc(x)
    away = np.abs(x - t) >= np.asarray(0.5, x.dtype)
    return np.where(away, t + np.copysign(np.asarray(1, x.dtype), x), t).astype(x.dtype)


def _torch_fn(f):
    def apply(*xs: np.ndarray) -> np.ndarray:
        dtype = np.result_type(*xs)
        work = np.float64 if dtype == np.float64 else np.float32
        # np.array, not np.ascontiguousarray: the latter turns a 0-d array into 1-d.
        out = f(*(torch.from_numpy(np.array(x, dtype=work)) for x in xs))
        return out.numpy().astype(dtype, copy=False)

    return apply


def _gamma(x: np.ndarray) -> np.ndarray:
    return np.vectorize(lambda v: _safe_gamma(float(v)), otypes=[x.dtype])(x)


def _safe_gamma(v: float) -> float:
    """C99's ``tgamma`` (what every target calls): +-inf at +-0, NaN at the negative
    integers and -inf, +inf at +inf, overflow to inf, underflow to 0."""
    if v == 0:
        return math.copysign(math.inf, v)
    if math.isinf(v):  # tgamma(+inf) = +inf; tgamma(-inf) is a domain error: NaN
        return v if v > 0 else math.nan
    try:
        return math.gamma(v)
    except (ValueError, OverflowError):
        if v > 0:
            return math.inf
        return math.nan if v == math.floor(v) else 0.0


def _fdim(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    # C99's: x - y when x > y, else +0 (so fdim(inf, inf) is 0, not inf - inf); NaN in,
    # NaN out.
    zero = np.zeros((), dtype=np.result_type(x, y))
    return np.where(np.isnan(x) | np.isnan(y), x + y, np.where(x > y, x - y, zero))


def _in_double(f):
    """``f`` computed in float64 and rounded once to the arguments' type: the
    definition of issue 14's builtins for float (and half, computed in float), which
    the targets without them natively compute the same way (codegen.math_helpers)."""
    def apply(*xs: np.ndarray) -> np.ndarray:
        dtype = np.result_type(*xs)
        return np.asarray(f(*(np.asarray(x, np.float64) for x in xs))).astype(dtype)

    return apply


def _torch64(f):
    return lambda x: f(torch.from_numpy(np.array(x, np.float64))).numpy()


def _sincospi(x: np.ndarray, want_cos: bool) -> np.ndarray:
    # Exact reduction: x = 2m + n/2 + f with |f| <= 1/4, so integers and half-integers
    # give exact zeros and ones (sin(pi * 0.5) would not).
    r = np.fmod(x, 2.0)
    n = np.rint(2.0 * r)
    f = r - 0.5 * n
    q = np.where(np.isfinite(n), n, 0).astype(np.int64) % 4
    s, c = np.sin(np.pi * f), np.cos(np.pi * f)
    if want_cos:
        return np.choose(q, [c, -s, -c, s]) + 0.0  # +0, not -0, at the half-integers
    v = np.choose(q, [s, c, -s, -c])
    return np.where(v == 0, np.copysign(0.0, x), v)


def _logb(x: np.ndarray) -> np.ndarray:
    # C's logb: the binary exponent of x as a float (of a subnormal too), -inf at 0.
    _, e = np.frexp(x)
    return np.where(x == 0, -np.inf, np.where(np.isfinite(x), e - 1.0, np.abs(x)))


def _c_remainder(v: float, w: float) -> float:
    """C99's ``remainder``: the quotient rounded to nearest, ties to even (numpy's
    ``remainder`` is Python's modulo); NaN where C gives NaN."""
    try:
        return math.remainder(v, w)
    except ValueError:  # remainder(inf, y) and remainder(x, 0)
        return math.nan


def _norm(*xs: np.ndarray) -> np.ndarray:
    # sqrt of the sum of squares, the components scaled by a power of two (exact) so
    # nothing overflows; an infinite component gives inf even with a NaN (as hypot).
    a = [np.abs(x) for x in np.broadcast_arrays(*xs)]
    m = np.fmax.reduce(a) if len(a) > 1 else a[0]
    _, e = np.frexp(np.where(np.isfinite(m) & (m > 0), m, 1.0))
    r = np.ldexp(np.sqrt(sum(np.ldexp(v, -e) ** 2 for v in a)), e)
    r = np.where(m == 0, 0.0, r)
    return np.where(np.logical_or.reduce([np.isinf(v) for v in a]), np.inf, r)


def _bessel_i(f, odd: bool):
    """I0 or I1 from torch's exponentially scaled one (torch's own overflows where
    exp(x) does, while I(x) is finite up to x = 713); +-inf at +-inf."""
    def apply(x: np.ndarray) -> np.ndarray:
        h = np.exp(0.5 * np.abs(x))
        return np.where(np.isinf(x), x if odd else np.abs(x), _torch64(f)(x) * h * h)

    return apply


def _bessel_jy(n: int, second: bool):
    """J or Y of order ``n`` (0 or 1) in float64, not torch's (whose J and Y are off by
    up to 4e-7 between 5 and 8, and lose the phase of large arguments): the power
    series below 1, Miller's backward recurrence (normalised by J0 + 2 sum J2k = 1)
    with the Neumann series of Y up to 25, Hankel's expansion above, with the phase
    from sin x and cos x. Absolute error below 5e-16 against mpmath (the tests)."""
    two_pi, gamma = 2 / math.pi, 0.5772156649015329

    def series(ax: np.ndarray) -> np.ndarray:
        y, hx = 0.25 * ax * ax, 0.5 * ax
        hk = 0.0
        if n == 0:
            t, j, ys = np.ones_like(ax), np.ones_like(ax), np.zeros_like(ax)
            for k in range(1, 30):
                t = -t * y / (k * k)
                hk += 1.0 / k
                j, ys = j + t, ys - hk * t
            return two_pi * ((np.log(hx) + gamma) * j + ys) if second else j
        t, j, ys = hx, hx, (1.0 - 2.0 * gamma) * hx
        for k in range(1, 30):
            t = -t * y / (k * (k + 1))
            hk += 1.0 / k
            j, ys = j + t, ys + (2.0 * hk + 1.0 / (k + 1) - 2.0 * gamma) * t
        return -two_pi / ax + two_pi * np.log(hx) * j - 0.5 * two_pi * ys if second else j

    def miller(ax: np.ndarray) -> np.ndarray:
        jp1, j = np.zeros_like(ax), np.ones_like(ax)
        norm, s0, s1 = np.zeros_like(ax), np.zeros_like(ax), np.zeros_like(ax)
        for m in range(60, 0, -1):  # J_60(x) < 1e-20 for x < 25
            if m % 2 == 0:
                k = m // 2
                norm, s0 = norm + 2.0 * j, s0 + (-j if k % 2 else j) / k
            elif m >= 3:
                k = (m - 1) // 2
                s1 = s1 + (-1.0 if k % 2 else 1.0) * (2 * k + 1) * j / (k * (k + 1))
            jp1, j = j, (2.0 * m / ax) * j - jp1
        norm = norm + j
        j0, j1 = j / norm, jp1 / norm
        if not second:
            return j1 if n else j0
        lg = np.log(0.5 * ax) + gamma
        if n == 0:
            return two_pi * (lg * j0 - 2.0 * s0 / norm)
        return -two_pi * j0 / ax + two_pi * ((lg - 1.0) * j1 - s1 / norm)

    def hankel(ax: np.ndarray) -> np.ndarray:
        p, q, t = np.ones_like(ax), np.zeros_like(ax), np.ones_like(ax)
        for k in range(1, 40):  # the terms decrease up to k = 2x >= 50
            t = t * (4.0 * n * n - (2 * k - 1) ** 2) / (8.0 * k * ax)
            if k % 2:
                q = q + (-t if (k // 2) % 2 else t)
            else:
                p = p + (-t if (k // 2) % 2 else t)
        c, s, h = np.cos(ax), np.sin(ax), math.sqrt(0.5)
        cw, sw = ((s - c) * h, -(s + c) * h) if n else ((c + s) * h, (s - c) * h)
        return np.sqrt(two_pi / ax) * ((p * sw + q * cw) if second else (p * cw - q * sw))

    def apply(x: np.ndarray) -> np.ndarray:
        ax = np.abs(x)
        r = np.where(ax < 1, series(np.clip(ax, 0.0, 1.0)),
                     np.where(ax < 25, miller(np.clip(ax, 1.0, 25.0)),
                              hankel(np.clip(ax, 25.0, np.inf))))
        r = np.where(np.isinf(x), 0.0, r)
        if second:
            return np.where(x < 0, np.nan, np.where(x == 0, -np.inf, r))
        return np.where(np.isnan(x), x, np.where(x < 0, -r, r) if n else r)

    return apply


def _erfcx(x: np.ndarray) -> np.ndarray:
    # Below 0, exp(x*x) * erfc(x) with x*x split into an exact high part (x rounded to
    # float32, squared) and a small low part: torch's erfcx rounds x*x and is off by
    # up to 6e-14 near -26.
    hi = x.astype(np.float32).astype(np.float64)
    neg = np.exp(hi * hi) * np.exp((x - hi) * (x + hi)) * _torch64(torch.special.erfc)(x)
    neg = np.where(x == -np.inf, np.inf, neg)
    return np.where(x < 0, neg, _torch64(torch.special.erfcx)(x))


def _normcdf(x: np.ndarray) -> np.ndarray:
    # Not torch's ndtr, which computes 1 + erf and gives 0 below -8.4.
    return 0.5 * _torch64(torch.special.erfc)(-math.sqrt(0.5) * x)


_MATH = {
    "exp": np.exp, "exp2": np.exp2, "exp10": lambda x: np.power(np.asarray(10, x.dtype), x),
    "expm1": np.expm1, "log": np.log, "log2": np.log2, "log10": np.log10, "log1p": np.log1p,
    "sqrt": np.sqrt, "rsqrt": lambda x: np.asarray(1, x.dtype) / np.sqrt(x), "cbrt": np.cbrt,
    "rcbrt": lambda x: np.asarray(1, x.dtype) / np.cbrt(x), "sin": np.sin, "cos": np.cos,
    "tan": np.tan, "asin": np.arcsin, "acos": np.arccos, "atan": np.arctan, "sinh": np.sinh,
    "cosh": np.cosh, "tanh": np.tanh, "asinh": np.arcsinh, "acosh": np.arccosh,
    "atanh": np.arctanh, "erf": _torch_fn(torch.special.erf),
    "erfc": _torch_fn(torch.special.erfc), "erfinv": _torch_fn(torch.special.erfinv),
    "erfcinv": _torch_fn(lambda x: torch.special.erfinv(1 - x)),
    "lgamma": _torch_fn(torch.lgamma), "tgamma": _gamma, "fabs": np.fabs, "floor": np.floor,
    "ceil": np.ceil, "round": _c_round, "trunc": np.trunc,
    "sigmoid": lambda x: np.asarray(1, x.dtype) / (np.asarray(1, x.dtype) + np.exp(-x)),
    "atan2": np.arctan2, "fmax": np.fmax, "fmin": np.fmin, "fmod": np.fmod, "fdim": _fdim,
    "hypot": np.hypot, "pow": np.power, "copysign": np.copysign,
    "fma": lambda x, y, z: (x.astype(np.float64) * y + z).astype(x.dtype),
    # Issue 14: the rest of the original's builtins, in float64 then rounded (_in_double).
    "cospi": _in_double(lambda x: _sincospi(x, True)),
    "sinpi": _in_double(lambda x: _sincospi(x, False)),
    "cyl_bessel_i0": _in_double(_bessel_i(torch.special.i0e, False)),
    "cyl_bessel_i1": _in_double(_bessel_i(torch.special.i1e, True)),
    "j0": _in_double(_bessel_jy(0, False)),
    "j1": _in_double(_bessel_jy(1, False)),
    "y0": _in_double(_bessel_jy(0, True)),
    "y1": _in_double(_bessel_jy(1, True)),
    "erfcx": _in_double(_erfcx),
    "normcdf": _in_double(_normcdf),
    "normcdfinv": _in_double(_torch64(torch.special.ndtri)),
    "logb": _in_double(_logb),
    "fdivide": lambda x, y: x / y, "nextafter": np.nextafter,
    "remainder": _in_double(np.vectorize(_c_remainder, otypes=[np.float64])),
    "rhypot": _in_double(lambda x, y: 1.0 / np.hypot(x, y)),
    "norm3d": _in_double(_norm), "norm4d": _in_double(_norm),
    "rnorm3d": _in_double(lambda *xs: 1.0 / _norm(*xs)),
    "rnorm4d": _in_double(lambda *xs: 1.0 / _norm(*xs)),
}


class _Eval:
    """Evaluates one stage's expression; ``mask`` marks the elements that are evaluated."""

    def __init__(
        self, store: Mapping[str, np.ndarray], env: dict, stage: ir.Stage, source: str
    ) -> None:
        self.source = source
        self.store = store
        self.env = env
        self.stage = stage

    def eval(self, e: ir.Expr, mask: np.ndarray | None) -> np.ndarray:
        return _round(getattr(self, type(e).__name__)(e, mask), e.type)

    def IntImm(self, e: ir.IntImm, mask) -> np.ndarray:
        return _const(e.value, e.type)

    def FloatImm(self, e: ir.FloatImm, mask) -> np.ndarray:
        return _const(e.value, e.type)

    def Var(self, e: ir.Var, mask) -> np.ndarray:
        v = self.env[e.name]
        return v if isinstance(v, np.ndarray) else np.asarray(v, dtype=e.type.numpy_dtype)

    def Let(self, e: ir.Let, mask) -> np.ndarray:
        while isinstance(e, ir.Let):  # a loop, not a recursion: a statement may have many lets
            self.env[e.name] = self.eval(e.value, mask)
            e = e.body
        return self.eval(e, mask)

    def Read(self, e: ir.Read, mask) -> np.ndarray:
        data = self.store[e.tensor]
        if not e.indices:
            return np.asarray(data)
        subs = np.broadcast_arrays(*(self.eval(s, mask).astype(np.int64) for s in e.indices))
        active = np.ones(subs[0].shape, bool) if mask is None else np.broadcast_to(
            mask, np.broadcast_shapes(subs[0].shape, mask.shape))
        subs = [np.broadcast_to(s, active.shape) for s in subs]
        clipped = []
        for k, (s, extent) in enumerate(zip(subs, data.shape, strict=True)):
            bad = active & ((s < 0) | (s >= extent))
            if bad.any():
                self.out_of_bounds(e, k, s, bad, extent)
            clipped.append(np.clip(s, 0, max(extent - 1, 0)))
        if data.size == 0:
            return np.zeros(active.shape, data.dtype)
        return data[tuple(clipped)]

    def out_of_bounds(self, e: ir.Read, k: int, s: np.ndarray, bad: np.ndarray, extent: int):
        pos = tuple(int(p[0]) for p in np.nonzero(np.atleast_1d(bad))) if bad.ndim else ()
        point = []
        for axis, d in enumerate(self.stage.domain):
            value = self.env[d.name]
            flat = np.asarray(value).reshape(-1)
            idx = pos[axis] if axis < len(pos) and flat.size > 1 else 0
            point.append(f"{d.name}={int(flat[min(idx, flat.size - 1)])}")
        span = e.span or self.stage.span
        source = self.source or None
        raise TcRangeError(
            f"read of '{e.tensor}' out of bounds: subscript {k + 1} is {int(s[pos])}, "
            f"outside 0:{extent}" + (f" (at {', '.join(point)})" if point else ""),
            line=span.line if span else None, column=span.column if span else None,
            source=source,
        )

    def Unary(self, e: ir.Unary, mask) -> np.ndarray:
        a = self.eval(e.a, mask)
        return np.logical_not(a) if e.op == "!" else np.negative(a)

    def Cast(self, e: ir.Cast, mask) -> np.ndarray:
        a = self.eval(e.a, mask)
        if e.type.is_bool:
            return a != 0
        if e.type.is_int and a.dtype.kind == "f":
            a = np.where(np.isfinite(a), np.trunc(a), 0)
        return a.astype(e.type.numpy_dtype)

    def Binary(self, e: ir.Binary, mask) -> np.ndarray:
        a = self.eval(e.a, mask)
        if e.op in ("&&", "||"):
            need = a if e.op == "&&" else np.logical_not(a)
            sub = need if mask is None else (mask & need)
            b = self.eval(e.b, sub)
            return np.logical_and(a, b) if e.op == "&&" else np.logical_or(a, b)
        b = self.eval(e.b, mask)
        op = e.op
        t = e.a.type
        if op == "+":
            return np.logical_or(a, b) if t.is_bool else a + b
        if op == "-":
            return a - b
        if op == "*":
            return np.logical_and(a, b) if t.is_bool else a * b
        if op == "/":
            if t.is_float:
                return a / b
            return np.where(b == 0, 0, np.floor_divide(a, np.where(b == 0, 1, b))).astype(a.dtype)
        if op == "%":
            return np.where(b == 0, 0, np.remainder(a, np.where(b == 0, 1, b))).astype(a.dtype)
        if op in ("min", "max"):
            if t.is_float:
                return np.fmin(a, b) if op == "min" else np.fmax(a, b)
            return np.minimum(a, b) if op == "min" else np.maximum(a, b)
        return {
            "<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal,
            "==": np.equal, "!=": np.not_equal,
        }[op](a, b)

    def Select(self, e: ir.Select, mask) -> np.ndarray:
        c = self.eval(e.cond, mask)
        not_c = np.logical_not(c)
        a = self.eval(e.a, c if mask is None else mask & c)
        b = self.eval(e.b, not_c if mask is None else mask & not_c)
        out = np.where(c, a, b)
        if out.dtype == np.int64 and e.type is ScalarType.INT32:
            return out  # 64-bit indices (wide sizes): not wrapped to the index type
        return out.astype(e.type.numpy_dtype)

    def Call(self, e: ir.Call, mask) -> np.ndarray:
        args = [self.eval(a, mask) for a in e.args]
        work = e.type.numpy_dtype
        if e.type in (ScalarType.FLOAT16, ScalarType.BFLOAT16):
            work = np.dtype(np.float32)  # half math is computed in float, as CUDA does
        out = _MATH[e.fn](*(np.asarray(a, dtype=work) for a in args))
        return np.asarray(out).astype(e.type.numpy_dtype)
