"""Reductions into half-precision tensors accumulate in float32, as torch's do.

A float16 accumulator rounds after every addition: a sum of a few dozen terms near
100 is already off by several units, and the order of the additions (tiles, threads,
vector lanes: the options' choice) changes the result; a product overflows to
``inf`` after a handful of factors and ``0 * inf`` makes NaN, in some orders only.
So every ``+`` or ``*`` reduction (over at least one reduction index) into a
``float16`` or ``bfloat16`` tensor goes through a float32 temporary::

    y(r) +=! x(r, i)        becomes    y_acc(r) +=! float(x(r, i))
                                       y(r) = half(y_acc(r))

(and without ``!``, ``y_acc(r) = float(y(r))`` first). Each term is still a value of
the tensor's type (the statement's right-hand side is converted to it first); only the
accumulation is wider, and the result is rounded once per statement.

This is the language's semantics, not an optimisation: the reference interpreter and
every compiled target run the rewritten function, so they agree by construction
(fuzz findings a9ce0d3171ab, f3ca442c53f2). ``min``/``max`` are exact in any type and
are left alone. The float32 sum may itself be split (:mod:`tc.ir.split_sums`).
"""

from __future__ import annotations

import dataclasses

from tc.ir import nodes as ir
from tc.ir.types import ScalarType

__all__ = ["widen_accumulators"]

_NARROW = (ScalarType.FLOAT16, ScalarType.BFLOAT16)
_WIDE = ScalarType.FLOAT32
_INT32 = ScalarType.INT32


def _widened(fn: ir.Function, st: ir.Stage) -> bool:
    return (st.op in ("+", "*") and bool(st.reduction_dims)
            and fn.tensor(st.tensor).dtype in _NARROW)


def _read(tensor: str, lhs: tuple[str, ...], dtype: ScalarType) -> ir.Read:
    return ir.Read(tensor, tuple(ir.Var(n, "index", type=_INT32) for n in lhs), type=dtype)


def _widen(e: ir.Expr) -> ir.Expr:
    return ir.Cast(e, type=_WIDE)


def widen_accumulators(fn: ir.Function) -> ir.Function:
    """``fn`` with its half-precision ``+``/``*`` reductions accumulated in float32
    temporaries (see the module docstring); ``fn`` itself when it has none. Cached
    on ``fn``: every call of a compiled program asks."""
    done = fn.__dict__.get("_widened")
    if done is not None:
        return done
    if not any(_widened(fn, st) for st in fn.stages):
        object.__setattr__(fn, "_widened", fn)
        return fn
    taken = ir.names_in_use(fn)
    temps = list(fn.temps)
    stages: list[ir.Stage] = []
    for st in fn.stages:
        if not _widened(fn, st):
            stages.append(st)
            continue
        out = fn.tensor(st.tensor)
        acc = ir.TensorDecl(ir.fresh_name(f"{st.tensor}_acc", taken), _WIDE, out.shape, "temp",
                            st.span)
        temps.append(acc)
        if not st.init:  # accumulate onto what the tensor holds
            stages.append(ir.Stage(acc.name, st.lhs, st.lhs_dims,
                                   ir.Cast(_read(st.tensor, st.lhs, out.dtype), type=_WIDE),
                                   None, False, st.span))
        stages.append(dataclasses.replace(st, tensor=acc.name,
                                          rhs=ir.under_lets(st.rhs, _widen)))
        stages.append(ir.Stage(st.tensor, st.lhs, st.lhs_dims,
                               ir.Cast(_read(acc.name, st.lhs, _WIDE), type=out.dtype),
                               None, False, st.span))
    wide = dataclasses.replace(fn, temps=tuple(temps), stages=tuple(stages))
    object.__setattr__(fn, "_widened", wide)
    return wide
