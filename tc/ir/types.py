"""Scalar types of the TC language and the promotion rules between them."""

from __future__ import annotations

import enum

import numpy as np


class ScalarType(enum.Enum):
    """A scalar type; the value is the canonical TC spelling."""

    BOOL = "bool"
    INT8 = "int8"
    INT16 = "int16"
    INT32 = "int32"
    INT64 = "int64"
    UINT8 = "uint8"
    UINT16 = "uint16"
    UINT32 = "uint32"
    UINT64 = "uint64"
    FLOAT16 = "float16"
    BFLOAT16 = "bfloat16"
    FLOAT32 = "float32"
    FLOAT64 = "float64"

    def __repr__(self) -> str:
        return f"ScalarType.{self.name}"

    def __str__(self) -> str:
        return self.value

    @property
    def is_bool(self) -> bool:
        return self is ScalarType.BOOL

    @property
    def is_float(self) -> bool:
        return self in _FLOATS

    @property
    def is_int(self) -> bool:
        """True for the integer types (bool excluded)."""
        return self in _BITS and not self.is_float and not self.is_bool

    @property
    def is_signed(self) -> bool:
        return self.is_float or self.value.startswith("int")

    @property
    def bits(self) -> int:
        return _BITS[self]

    @property
    def numpy_dtype(self) -> np.dtype:
        """The numpy dtype that stores values of this type (bfloat16 is kept in float32)."""
        return np.dtype(_NUMPY[self])

    def min_value(self) -> int | float | bool:
        """The smallest value of the type (-inf for floats)."""
        if self.is_bool:
            return False
        if self.is_float:
            return float("-inf")
        return int(np.iinfo(self.numpy_dtype).min)

    def max_value(self) -> int | float | bool:
        """The largest value of the type (+inf for floats)."""
        if self.is_bool:
            return True
        if self.is_float:
            return float("inf")
        return int(np.iinfo(self.numpy_dtype).max)


_FLOATS = {ScalarType.FLOAT16, ScalarType.BFLOAT16, ScalarType.FLOAT32, ScalarType.FLOAT64}
_BITS = {
    ScalarType.BOOL: 1,
    ScalarType.INT8: 8,
    ScalarType.INT16: 16,
    ScalarType.INT32: 32,
    ScalarType.INT64: 64,
    ScalarType.UINT8: 8,
    ScalarType.UINT16: 16,
    ScalarType.UINT32: 32,
    ScalarType.UINT64: 64,
    ScalarType.FLOAT16: 16,
    ScalarType.BFLOAT16: 16,
    ScalarType.FLOAT32: 32,
    ScalarType.FLOAT64: 64,
}
_NUMPY = {
    ScalarType.BOOL: "bool",
    ScalarType.INT8: "int8",
    ScalarType.INT16: "int16",
    ScalarType.INT32: "int32",
    ScalarType.INT64: "int64",
    ScalarType.UINT8: "uint8",
    ScalarType.UINT16: "uint16",
    ScalarType.UINT32: "uint32",
    ScalarType.UINT64: "uint64",
    ScalarType.FLOAT16: "float16",
    ScalarType.BFLOAT16: "float32",
    ScalarType.FLOAT32: "float32",
    ScalarType.FLOAT64: "float64",
}

# Spellings accepted in TC text, including the aliases.
TYPE_NAMES: dict[str, ScalarType] = {t.value: t for t in ScalarType}
TYPE_NAMES.update(
    {"float": ScalarType.FLOAT32, "double": ScalarType.FLOAT64, "half": ScalarType.FLOAT16}
)

# Types used for values that are not tensor elements.
INDEX_TYPE = ScalarType.INT32
INT_LITERAL_TYPE = ScalarType.INT32
FLOAT_LITERAL_TYPE = ScalarType.FLOAT32


def promote(a: ScalarType, b: ScalarType) -> ScalarType:
    """The type of a binary arithmetic operation on ``a`` and ``b`` (docs/language.md section 3).

    int with float gives the float; two floats give the wider (float16 with bfloat16
    gives float32, since neither holds the other); two integers give the wider, signed
    if either is signed; bool is the narrowest integer.
    """
    if a == b:
        return a
    if a.is_bool:
        return b
    if b.is_bool:
        return a
    if a.is_float and b.is_float:
        if a.bits == b.bits:  # float16 with bfloat16
            return ScalarType.FLOAT32
        return a if a.bits > b.bits else b
    if a.is_float:
        return a
    if b.is_float:
        return b
    bits = max(a.bits, b.bits)
    signed = a.is_signed or b.is_signed
    return TYPE_NAMES[f"{'' if signed else 'u'}int{bits}"]


def can_assign(value: ScalarType, target: ScalarType) -> bool:
    """Whether a value of type ``value`` may be stored into ``target`` without a cast."""
    return promote(value, target) == target


def math_type(t: ScalarType) -> ScalarType:
    """The type a math builtin computes in for an argument of type ``t``."""
    return t if t.is_float else ScalarType.FLOAT32
