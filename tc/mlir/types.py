"""Spelling TC's scalar types, tensor types and constants in MLIR's textual syntax.

MLIR integers are signless: ``int32`` and ``uint32`` are both ``i32`` and the ops
(``arith.divsi`` / ``arith.divui``, ``arith.extsi`` / ``arith.extui``, ...) carry the
signedness, so the exporter asks :attr:`ScalarType.is_signed` wherever it matters.
``bool`` is ``i1``. Constants are printed so that MLIR's parser gives exactly the
value the reference interpreter computes with: a float constant is first rounded to
its type the interpreter's way (bfloat16 through float32, as
:func:`tc.ir.interpret.round_bfloat16` does), then printed as the shortest decimal
that round-trips in double precision, which MLIR rounds to the same value; infinities
and NaN are printed as hexadecimal bit patterns (MLIR has no decimal spelling for
them). Integer constants are printed in the signed range of their width (MLIR's
signless attributes accept either, the signed one never overflows the parser).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from tc.ir.types import ScalarType

__all__ = ["constant", "element_type", "float_literal", "int_literal", "tensor_type"]

_ELEMENT = {
    ScalarType.BOOL: "i1",
    ScalarType.INT8: "i8",
    ScalarType.INT16: "i16",
    ScalarType.INT32: "i32",
    ScalarType.INT64: "i64",
    ScalarType.UINT8: "i8",
    ScalarType.UINT16: "i16",
    ScalarType.UINT32: "i32",
    ScalarType.UINT64: "i64",
    ScalarType.FLOAT16: "f16",
    ScalarType.BFLOAT16: "bf16",
    ScalarType.FLOAT32: "f32",
    ScalarType.FLOAT64: "f64",
}

# Bit patterns of +inf and of a quiet NaN, per float type.
_INF = {ScalarType.FLOAT16: 0x7C00, ScalarType.BFLOAT16: 0x7F80,
        ScalarType.FLOAT32: 0x7F800000, ScalarType.FLOAT64: 0x7FF0000000000000}
_NAN = {ScalarType.FLOAT16: 0x7E00, ScalarType.BFLOAT16: 0x7FC0,
        ScalarType.FLOAT32: 0x7FC00000, ScalarType.FLOAT64: 0x7FF8000000000000}
_SIGN = {ScalarType.FLOAT16: 0x8000, ScalarType.BFLOAT16: 0x8000,
         ScalarType.FLOAT32: 0x80000000, ScalarType.FLOAT64: 0x8000000000000000}


def element_type(t: ScalarType) -> str:
    """The MLIR element type of ``t`` (``i32``, ``f16``, ``i1``, ...)."""
    return _ELEMENT[t]


def tensor_type(shape: Sequence[int | None], t: ScalarType) -> str:
    """``tensor<3x?xf32>``; None is a dynamic dimension; ``tensor<f32>`` for rank 0."""
    dims = "".join(("?" if d is None else str(d)) + "x" for d in shape)
    return f"tensor<{dims}{element_type(t)}>"


def _rounded(value: float, t: ScalarType) -> float:
    """``value`` as the interpreter holds it in type ``t``."""
    if t is ScalarType.BFLOAT16:
        from tc.ir.interpret import round_bfloat16

        return float(round_bfloat16(np.array(value, dtype=np.float32)))
    return float(np.array(value, dtype=t.numpy_dtype))


def float_literal(value: float, t: ScalarType) -> str:
    """The attribute text of a float constant of type ``t`` (without the type)."""
    v = _rounded(value, t)
    if math.isnan(v):
        return f"0x{_NAN[t]:X}"
    if math.isinf(v):
        bits = _INF[t] | (_SIGN[t] if v < 0 else 0)
        return f"0x{bits:X}"
    text = repr(v)
    mantissa, e, exponent = text.partition("e")
    if "." not in mantissa:  # MLIR's float literals need a decimal point
        mantissa += ".0"
    return mantissa + (f"e{exponent}" if e else "")


def int_literal(value: int, t: ScalarType) -> str:
    """The attribute text of an integer (or bool) constant of type ``t``."""
    if t.is_bool:
        return "true" if value else "false"
    bits = t.bits
    v = int(value) & ((1 << bits) - 1)
    if v >= 1 << (bits - 1):
        v -= 1 << bits
    return str(v)


def constant(value: int | float | bool, t: ScalarType) -> str:
    """The operation text after ``=``: ``arith.constant 1.0 : f32``."""
    if t.is_bool:
        return f"arith.constant {int_literal(value, t)}"
    if t.is_float:
        return f"arith.constant {float_literal(value, t)} : {element_type(t)}"
    return f"arith.constant {int_literal(value, t)} : {element_type(t)}"
