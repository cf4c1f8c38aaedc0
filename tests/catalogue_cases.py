"""Hypothesis strategies over the kernel catalogue, shared by the compiler tests:
a kernel, sizes (its test sizes, possibly scaled down to 1, to a prime, below a tile)
and seeded inputs that the reference interpreter accepts."""

from __future__ import annotations

import functools

import torch
from hypothesis import strategies as st

import tc
from tc.catalogue import KERNELS, Kernel


@functools.cache
def _reference(text: str) -> tc.TC:
    return tc.define(text, backend="reference")


def scaled(value: int, how: str) -> int:
    return {"keep": value, "one": 1, "half": max(1, value // 2), "minus1": max(1, value - 1),
            "prime": max((p for p in (1, 2, 3, 5, 7) if p <= value), default=1)}[how]


@st.composite
def kernel_and_inputs(draw, names: list[str]
                      ) -> tuple[Kernel, dict[str, int], tuple[torch.Tensor, ...]]:
    """A kernel of ``names``, sizes and inputs. Scaled-down sizes that the kernel does
    not accept (a window larger than its image, ...) fall back to the test size."""
    kernel = KERNELS[draw(st.sampled_from(names))]
    base = draw(st.sampled_from(kernel.test_sizes))
    hows = draw(st.lists(st.sampled_from(["keep", "keep", "one", "half", "minus1", "prime"]),
                         min_size=len(base), max_size=len(base)))
    seed = draw(st.integers(0, 2**16))
    for sizes in ({s: scaled(v, h) for (s, v), h in zip(base.items(), hows, strict=True)},
                  base):
        try:
            inputs = kernel.make_inputs(sizes, torch.Generator().manual_seed(seed))
            _reference(kernel.tc)[kernel.entry].bind(*inputs)
        except (tc.TcError, RuntimeError, ValueError):
            assert sizes is not base, f"{kernel.name}: its test size {base} is invalid"
            continue
        return kernel, sizes, inputs
    raise AssertionError("unreachable")


