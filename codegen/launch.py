"""Backend-neutral kernel arguments and launch-configuration checks.

The OpenCL and CUDA launchers share this module: :func:`pack_args` turns torch tensors
and Python scalars into :class:`KernelArg` values, and :func:`grid_block_check`
validates a launch configuration (``grid`` counted in blocks, CUDA convention) against
the limits of a device.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from tc.arguments import SCALAR_TYPES
from tc.errors import TcBackendError
from tc.ir.types import ScalarType

__all__ = [
    "ArgKind",
    "CUDA_LIMITS",
    "KernelArg",
    "LaunchLimits",
    "grid_block_check",
    "number_lines",
    "pack_args",
    "scalar_type_of",
]

def scalar_type_of(dtype: torch.dtype) -> ScalarType:
    """The TC scalar type of a torch dtype; ``TcBackendError`` for unsupported ones."""
    try:
        return SCALAR_TYPES[dtype]
    except KeyError:
        raise TcBackendError(f"tensors of dtype {dtype} cannot be passed to a kernel") from None


class ArgKind(enum.Enum):
    """What a kernel argument is."""

    BUFFER = "buffer"  # a global-memory pointer to the first element of a tensor
    SCALAR = "scalar"  # a value passed by value
    LOCAL = "local"  # OpenCL __local scratch memory of ``nbytes`` bytes


@dataclass(frozen=True, eq=False)
class KernelArg:
    """One kernel argument: a tensor buffer, a scalar, or a ``__local`` scratch buffer.

    Build them with :meth:`buffer`, :meth:`scalar` and :meth:`local`. A buffer passes the
    address of the tensor's first element; the kernel indexes it with the tensor's own
    strides. ``written`` buffers are synchronised back to host memory after an OpenCL
    launch.
    """

    kind: ArgKind
    dtype: ScalarType | None = None
    tensor: torch.Tensor | None = None
    value: int | float | bool | None = None
    nbytes: int = 0
    written: bool = True

    @classmethod
    def buffer(cls, tensor: torch.Tensor, *, written: bool = True) -> KernelArg:
        """A tensor passed as a pointer to its first element."""
        if not isinstance(tensor, torch.Tensor):
            raise TcBackendError(f"a buffer argument must be a torch.Tensor, not {tensor!r}")
        return cls(ArgKind.BUFFER, scalar_type_of(tensor.dtype), tensor=tensor, written=written)

    @classmethod
    def scalar(cls, value: int | float | bool, dtype: ScalarType) -> KernelArg:
        """A scalar of type ``dtype``; integers are range-checked."""
        if dtype.is_int:
            if isinstance(value, float) and not float(value).is_integer():
                raise TcBackendError(f"scalar {value!r} is not an integer ({dtype})")
            v = int(value)
            if not dtype.min_value() <= v <= dtype.max_value():
                raise TcBackendError(f"scalar {v} does not fit {dtype}")
            value = v
        elif dtype.is_bool:
            value = bool(value)
        else:
            value = float(value)
        return cls(ArgKind.SCALAR, dtype, value=value)

    @classmethod
    def local(cls, nbytes: int) -> KernelArg:
        """An OpenCL ``__local`` scratch buffer of ``nbytes`` bytes (not supported by CUDA)."""
        if nbytes <= 0:
            raise TcBackendError(f"a local buffer needs a positive size, got {nbytes}")
        return cls(ArgKind.LOCAL, nbytes=int(nbytes))

    def numpy_scalar(self) -> np.generic:
        """The scalar as a numpy value of the exact size the kernel expects.

        bfloat16 is passed as its 16-bit pattern (``np.uint16``); bool as one byte.
        """
        if self.kind is not ArgKind.SCALAR or self.dtype is None:
            raise TcBackendError(f"{self.kind.value} argument has no scalar value")
        if self.dtype is ScalarType.BFLOAT16:
            bits = torch.tensor(self.value, dtype=torch.bfloat16).view(torch.int16).item()
            return np.uint16(bits & 0xFFFF)
        return self.dtype.numpy_dtype.type(self.value)

    def span(self) -> torch.Tensor | None:
        """A 1-d contiguous view of the memory the tensor spans, from its first element.

        ``None`` for a tensor with no elements. The span of a strided view covers
        ``1 + sum((size - 1) * stride)`` elements of its storage.
        """
        t = self.tensor
        if self.kind is not ArgKind.BUFFER or t is None:
            raise TcBackendError(f"{self.kind.value} argument has no tensor")
        if t.numel() == 0:
            return None
        if any(s < 0 for s in t.stride()):
            raise TcBackendError("tensors with negative strides cannot be passed to a kernel")
        n = 1 + sum((size - 1) * stride for size, stride in zip(t.shape, t.stride(), strict=True))
        return torch.as_strided(t.detach(), (n,), (1,), t.storage_offset())


def pack_args(
    values: Sequence[object],
    scalar_types: Sequence[ScalarType | None] | None = None,
    written: Collection[int] | None = None,
) -> list[KernelArg]:
    """Turn tensors and Python/numpy scalars into :class:`KernelArg` values, in order.

    ``scalar_types[i]``, when given and not None, is the type of scalar ``values[i]``.
    Otherwise a Python ``bool`` is ``BOOL``, an ``int`` is ``INT32`` (an error if it does not
    fit: pass ``INT64`` explicitly), a ``float`` is ``FLOAT32``, and a numpy scalar keeps
    its dtype. ``written`` lists the indices of the buffers the kernel writes (default:
    every buffer). ``KernelArg`` values pass through unchanged.
    """
    if scalar_types is not None and len(scalar_types) != len(values):
        raise TcBackendError(f"{len(scalar_types)} scalar types given for {len(values)} values")
    out: list[KernelArg] = []
    for i, v in enumerate(values):
        st = scalar_types[i] if scalar_types is not None else None
        if isinstance(v, KernelArg):
            out.append(v)
        elif isinstance(v, torch.Tensor):
            out.append(KernelArg.buffer(v, written=written is None or i in written))
        elif st is not None:
            out.append(KernelArg.scalar(_as_python(v, i), st))
        elif isinstance(v, bool | np.bool_):
            out.append(KernelArg.scalar(bool(v), ScalarType.BOOL))
        elif isinstance(v, np.generic):
            out.append(KernelArg.scalar(v.item(), _numpy_scalar_type(v, i)))
        elif isinstance(v, int):
            if not -(2**31) <= v < 2**31:
                raise TcBackendError(
                    f"argument {i}: {v} does not fit int32; pass it with ScalarType.INT64"
                )
            out.append(KernelArg.scalar(v, ScalarType.INT32))
        elif isinstance(v, float):
            out.append(KernelArg.scalar(v, ScalarType.FLOAT32))
        else:
            raise TcBackendError(f"argument {i}: cannot pass {type(v).__name__} to a kernel")
    return out


def _as_python(v: object, i: int) -> int | float | bool:
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, bool | int | float):
        return v
    raise TcBackendError(f"argument {i}: expected a scalar, got {type(v).__name__}")


def _numpy_scalar_type(v: np.generic, i: int) -> ScalarType:
    for st in ScalarType:
        if st is not ScalarType.BFLOAT16 and st.numpy_dtype == v.dtype:
            return st
    raise TcBackendError(f"argument {i}: numpy scalars of dtype {v.dtype} are not supported")


@dataclass(frozen=True)
class LaunchLimits:
    """The launch limits of a device: threads per block, block and grid extents per axis."""

    max_threads_per_block: int = 1024
    max_block: tuple[int, int, int] = (1024, 1024, 64)
    max_grid: tuple[int, int, int] = (2**31 - 1, 65535, 65535)


CUDA_LIMITS = LaunchLimits()


def grid_block_check(
    grid: Sequence[int], block: Sequence[int], limits: LaunchLimits = CUDA_LIMITS
) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """Validate a launch configuration and return it as two 3-tuples.

    ``grid`` (in blocks) and ``block`` (in threads) have 1 to 3 positive dimensions;
    missing ones are 1. Raises ``TcBackendError`` when a dimension is not a positive
    integer or exceeds ``limits``, or when the block has more threads than allowed.
    """
    g = _dims("grid", grid)
    b = _dims("block", block)
    threads = b[0] * b[1] * b[2]
    if threads > limits.max_threads_per_block:
        raise TcBackendError(
            f"block {b} has {threads} threads, more than the limit of "
            f"{limits.max_threads_per_block} threads per block"
        )
    for axis in range(3):
        if b[axis] > limits.max_block[axis]:
            raise TcBackendError(
                f"block {b}: dimension {axis} exceeds the device limit {limits.max_block[axis]}"
            )
        if g[axis] > limits.max_grid[axis]:
            raise TcBackendError(
                f"grid {g}: dimension {axis} exceeds the device limit {limits.max_grid[axis]}"
            )
    return g, b


def _dims(what: str, dims: Sequence[int]) -> tuple[int, int, int]:
    dims = tuple(dims)
    if not 1 <= len(dims) <= 3:
        raise TcBackendError(f"{what} {dims} must have 1 to 3 dimensions")
    for d in dims:
        if isinstance(d, bool) or not isinstance(d, int | np.integer) or d < 1:
            raise TcBackendError(f"{what} {dims}: every dimension must be an integer >= 1")
    full = tuple(int(d) for d in dims) + (1,) * (3 - len(dims))
    return full  # type: ignore[return-value]


def number_lines(source: str) -> str:
    """The source with 1-based line numbers, for error messages."""
    lines = source.splitlines()
    width = len(str(len(lines)))
    return "\n".join(f"{i:>{width}} | {line}" for i, line in enumerate(lines, 1))
