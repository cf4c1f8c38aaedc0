"""Tests of the backend-neutral argument packing and launch checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from codegen.launch import (
    ArgKind,
    KernelArg,
    LaunchLimits,
    grid_block_check,
    number_lines,
    pack_args,
    scalar_type_of,
)
from tc.errors import TcBackendError
from tc.ir.types import ScalarType


def test_pack_args_default_types() -> None:
    t = torch.zeros(3, dtype=torch.float64)
    args = pack_args([t, 3, 2.5, True, np.int64(7), np.float64(0.5), np.uint8(4)])
    assert [a.kind for a in args] == [ArgKind.BUFFER] + [ArgKind.SCALAR] * 6
    assert args[0].tensor is t and args[0].dtype is ScalarType.FLOAT64 and args[0].written
    assert [a.dtype for a in args[1:]] == [
        ScalarType.INT32,
        ScalarType.FLOAT32,
        ScalarType.BOOL,
        ScalarType.INT64,
        ScalarType.FLOAT64,
        ScalarType.UINT8,
    ]
    assert args[4].value == 7 and isinstance(args[4].value, int)


def test_pack_args_explicit_types_and_written() -> None:
    a, b = torch.zeros(2), torch.zeros(2)
    local = KernelArg.local(64)
    args = pack_args(
        [a, b, 2**40, 1, local],
        scalar_types=[None, None, ScalarType.INT64, ScalarType.FLOAT64, None],
        written={1},
    )
    assert not args[0].written and args[1].written
    assert args[2].dtype is ScalarType.INT64 and args[2].value == 2**40
    assert args[3].dtype is ScalarType.FLOAT64 and args[3].value == 1.0
    assert args[4] is local and local.kind is ArgKind.LOCAL and local.nbytes == 64


def test_pack_args_errors() -> None:
    with pytest.raises(TcBackendError, match="does not fit int32"):
        pack_args([2**31])
    with pytest.raises(TcBackendError, match="cannot pass str"):
        pack_args(["x"])
    with pytest.raises(TcBackendError, match="scalar types given"):
        pack_args([1, 2], scalar_types=[None])
    with pytest.raises(TcBackendError, match="does not fit int8"):
        pack_args([300], scalar_types=[ScalarType.INT8])
    with pytest.raises(TcBackendError, match="not an integer"):
        KernelArg.scalar(1.5, ScalarType.INT32)
    with pytest.raises(TcBackendError, match="positive size"):
        KernelArg.local(0)
    with pytest.raises(TcBackendError, match="dtype"):
        pack_args([torch.zeros(2, dtype=torch.complex64)])


def test_numpy_scalar_sizes() -> None:
    cases = {
        ScalarType.BOOL: (True, np.bool_, 1),
        ScalarType.INT32: (-5, np.int32, 4),
        ScalarType.INT64: (2**40, np.int64, 8),
        ScalarType.UINT16: (65535, np.uint16, 2),
        ScalarType.FLOAT32: (0.5, np.float32, 4),
        ScalarType.FLOAT64: (1 / 3, np.float64, 8),
        ScalarType.FLOAT16: (1.5, np.float16, 2),
    }
    for st, (value, np_type, size) in cases.items():
        s = KernelArg.scalar(value, st).numpy_scalar()
        assert type(s) is np_type and s.itemsize == size and s == np_type(value)
    bf = KernelArg.scalar(1.0, ScalarType.BFLOAT16).numpy_scalar()
    assert type(bf) is np.uint16 and bf == 0x3F80


def test_scalar_type_of() -> None:
    assert scalar_type_of(torch.int64) is ScalarType.INT64
    assert scalar_type_of(torch.bfloat16) is ScalarType.BFLOAT16
    with pytest.raises(TcBackendError):
        scalar_type_of(torch.complex128)


def _check_span(t: torch.Tensor) -> None:
    span = KernelArg.buffer(t).span()
    assert span is not None and span.dim() == 1 and span.is_contiguous()
    assert span.data_ptr() == t.data_ptr()
    expected = 1 + sum((n - 1) * s for n, s in zip(t.shape, t.stride(), strict=True))
    assert span.numel() == expected
    # every element of the view is reachable from the span with the view's strides
    idx = torch.zeros(t.shape, dtype=torch.int64)
    for d in range(t.dim()):
        shape = [1] * t.dim()
        shape[d] = t.shape[d]
        idx = idx + (torch.arange(t.shape[d]) * t.stride(d)).view(shape)
    assert torch.equal(span[idx], t)


def test_span_of_views() -> None:
    base = torch.arange(60, dtype=torch.float32).view(6, 10)
    _check_span(base)
    _check_span(base.t())
    _check_span(base[1::2, 3::3])
    _check_span(base.narrow(0, 2, 3).narrow(1, 4, 5))
    _check_span(base[3])
    _check_span(torch.arange(4.0).view(4, 1).expand(4, 5))
    _check_span(torch.tensor(3.0))
    assert KernelArg.buffer(base[:, 10:]).span() is None


def test_span_needs_a_buffer() -> None:
    with pytest.raises(TcBackendError):
        KernelArg.scalar(1, ScalarType.INT32).span()
    with pytest.raises(TcBackendError):
        KernelArg.buffer(np.zeros(3))  # type: ignore[arg-type]


def test_grid_block_check() -> None:
    assert grid_block_check((4,), (128,)) == ((4, 1, 1), (128, 1, 1))
    assert grid_block_check([2, 3, 4], (8, 8, 16)) == ((2, 3, 4), (8, 8, 16))
    assert grid_block_check((np.int64(2),), (32, 32)) == ((2, 1, 1), (32, 32, 1))
    with pytest.raises(TcBackendError, match="1025 threads"):
        grid_block_check((1,), (1025,))
    with pytest.raises(TcBackendError, match="2048 threads"):
        grid_block_check((1,), (32, 64))
    with pytest.raises(TcBackendError, match=">= 1"):
        grid_block_check((0, 1, 1), (32,))
    with pytest.raises(TcBackendError, match=">= 1"):
        grid_block_check((1,), (32, -1))
    with pytest.raises(TcBackendError, match=">= 1"):
        grid_block_check((1.5,), (32,))
    with pytest.raises(TcBackendError, match="1 to 3"):
        grid_block_check((1, 1, 1, 1), (32,))
    with pytest.raises(TcBackendError, match="1 to 3"):
        grid_block_check((), (32,))
    with pytest.raises(TcBackendError, match="dimension 2"):
        grid_block_check((1,), (1, 1, 65))
    with pytest.raises(TcBackendError, match="dimension 1"):
        grid_block_check((1, 65536), (32,))


def test_grid_block_check_custom_limits() -> None:
    limits = LaunchLimits(4096, (4096, 4096, 4096), (2**31 - 1,) * 3)
    assert grid_block_check((1,), (4096,), limits)[1] == (4096, 1, 1)
    assert grid_block_check((1, 100000), (1,), limits)[0] == (1, 100000, 1)
    with pytest.raises(TcBackendError, match="4096 threads per block"):
        grid_block_check((1,), (64, 128), limits)


def test_number_lines() -> None:
    text = number_lines("a\nb\n" + "x\n" * 9)
    lines = text.splitlines()
    assert lines[0] == " 1 | a" and lines[10] == "11 | x"
