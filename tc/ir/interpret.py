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
