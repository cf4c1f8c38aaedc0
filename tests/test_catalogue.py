"""The kernel catalogue: every TC text against its independent torch reference.

Each kernel of :mod:`tc.catalogue` runs on the reference interpreter at each of its
small test sizes and must agree with its torch reference in the number, shapes,
dtypes and values of its outputs. Cheaper checks keep the catalogue itself honest:
inputs match the declared parameters, and the benchmark sizes bind every size symbol.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import pytest
import torch

import tc
from tc import catalogue
from tc.catalogue import KERNELS, Kernel


def _case_id(kernel: Kernel, sizes: dict[str, int]) -> str:
    """A readable test id such as ``tmm-M3-N5-K7``."""
    return "-".join([kernel.name, *(f"{key}{value}" for key, value in sizes.items())])


CASES = [
    pytest.param(kernel, sizes, id=_case_id(kernel, sizes))
    for kernel in KERNELS.values()
    for sizes in kernel.test_sizes
]

KERNEL_PARAMS = [pytest.param(kernel, id=kernel.name) for kernel in KERNELS.values()]


def _as_tuple(value: Any) -> tuple[torch.Tensor, ...]:
    """Outputs as a tuple, whether a definition returned one tensor or several."""
    if isinstance(value, torch.Tensor):
        return (value,)
    return tuple(value)


@functools.cache
def _define(text: str) -> Any:
    """The compiled definitions of ``text`` for the reference backend (once per text)."""
    return tc.define(text, backend="reference")


def _symbols(kernel: Kernel) -> set[str]:
    """The size symbols of the kernel's entry definition."""
    return {d for p in catalogue.signature(kernel) for d in p.dims if isinstance(d, str)}


# --------------------------------------------------------------------------------------
# The catalogue itself (no compiler needed).


def test_every_kernel_is_registered_under_its_name() -> None:
    """Names are the dict keys, ``get`` finds each one and rejects unknown names."""
    assert len(KERNELS) >= 30
    for name, kernel in KERNELS.items():
        assert kernel.name == name
        assert catalogue.get(name) is kernel
    with pytest.raises(KeyError, match="unknown kernel"):
        catalogue.get("no_such_kernel")


def test_kernels_md_rows_are_covered() -> None:
    """Every row of KERNELS.md has at least one kernel."""
    expected = {
        "tmm", "tbmm", "group_conv", "kru3", "mlp3", "moments", "group_norm",
        "embedding_sum", "wavenet", "matmul", "softmax", "layer_norm", "conv2d",
        "conv2d_s2", "depthwise_conv", "bmm", "avgpool2x2", "avgpool3x3", "maxpool2x2",
        "maxpool3x3", "copy3d", "copy4d", "fc_relu", "fc_relu_dx", "fc_relu_dw",
        "fc_relu_db", "conv2d_dx", "conv2d_dw", "cross_entropy", "activation_stats",
    }  # fmt: skip
    assert expected <= set(KERNELS)
    assert any(name.startswith("transpose3d") for name in KERNELS)
    assert any(name.startswith("transpose4d") for name in KERNELS)


@pytest.mark.parametrize("kernel", KERNEL_PARAMS)
def test_sizes_bind_every_size_symbol(kernel: Kernel) -> None:
    """Test and benchmark sizes bind exactly the size symbols of the entry, positively."""
    symbols = _symbols(kernel)
    assert kernel.test_sizes and kernel.bench_sizes
    for sizes in kernel.test_sizes + kernel.bench_sizes:
        assert set(sizes) == symbols
        assert all(isinstance(v, int) and v >= 1 for v in sizes.values())
        # the shapes are computable without allocating anything
        assert len(catalogue.input_shapes(kernel, sizes)) == len(catalogue.signature(kernel))


@pytest.mark.parametrize("kernel", KERNEL_PARAMS)
def test_test_sizes_are_small(kernel: Kernel) -> None:
    """Each test case stays tiny: a size 1 somewhere, and a bounded product of sizes."""
    assert any(1 in sizes.values() for sizes in kernel.test_sizes)
    for sizes in kernel.test_sizes:
        assert math.prod(sizes.values()) <= 50_000, sizes


@pytest.mark.parametrize(("kernel", "sizes"), CASES)
def test_inputs_match_the_signature(kernel: Kernel, sizes: dict[str, int]) -> None:
    """``make_inputs`` gives tensors of the declared shapes and dtypes, deterministically."""
    inputs = kernel.make_inputs(sizes, torch.Generator().manual_seed(0))
    expected = catalogue.input_shapes(kernel, sizes)
    assert [(tuple(x.shape), x.dtype) for x in inputs] == list(expected)
    again = kernel.make_inputs(sizes, torch.Generator().manual_seed(0))
    for x, y in zip(inputs, again, strict=True):
        assert torch.equal(x, y)
    for x in inputs:
        if not x.dtype.is_floating_point:
            assert x.numel() == 0 or int(x.min()) >= 0
    outputs = _as_tuple(kernel.reference(*inputs))
    assert len(outputs) == len(catalogue.results(kernel))


# --------------------------------------------------------------------------------------
# The TC texts on the reference interpreter.


@pytest.mark.parametrize(("kernel", "sizes"), CASES)
def test_kernel_matches_reference(kernel: Kernel, sizes: dict[str, int]) -> None:
    """The TC definition agrees with the torch reference in shape, dtype and value."""
    inputs = kernel.make_inputs(sizes, torch.Generator().manual_seed(0))
    saved = [x.clone() for x in inputs]
    expected = _as_tuple(kernel.reference(*inputs))

    got = _as_tuple(_define(kernel.tc)[kernel.entry](*inputs))

    assert len(got) == len(expected)
    for out, ref in zip(got, expected, strict=True):
        assert isinstance(out, torch.Tensor)
        assert out.shape == ref.shape
        assert out.dtype == ref.dtype
        torch.testing.assert_close(out, ref, rtol=kernel.rtol, atol=kernel.atol)
    for x, before in zip(inputs, saved, strict=True):
        assert torch.equal(x, before), "an input was modified"
