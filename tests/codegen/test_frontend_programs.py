"""Every valid program of the front-end tests, compiled with the naive options and run
on PoCL, equals the reference interpreter."""

from __future__ import annotations

import pytest
import torch
from programs import EVERYTHING, OWN_PROGRAMS

import tc
from tc.arguments import TORCH_DTYPES
from tc.lang.frontend import check_text

PROGRAMS = [*OWN_PROGRAMS, EVERYTHING]
SIZES = {"KH": 2, "KW": 3}  # every other size symbol is 5


def _cases() -> list[tuple[str, str]]:
    out = []
    for text in PROGRAMS:
        for name in check_text(text).functions:
            out.append((text, name))
    return out


def _inputs(fn, g: torch.Generator) -> list[torch.Tensor]:
    sizes = {s.name: SIZES.get(s.name, 5) for s in fn.sizes}
    out = []
    for t in fn.inputs:
        shape = tuple(s.evaluate(sizes) for s in t.shape)
        dtype = TORCH_DTYPES[t.dtype]
        if t.dtype.is_float:
            x = torch.randn(shape, generator=g).to(dtype)
        elif t.dtype.is_bool:
            x = torch.rand(shape, generator=g) > 0.5
        elif t.dtype.is_signed:
            x = torch.randint(-7, 8, shape, generator=g).to(dtype)
        else:
            x = torch.randint(0, 9, shape, generator=g).to(dtype)
        out.append(x)
    return out


@pytest.mark.parametrize("text, name", _cases(), ids=lambda v: v if len(v) < 20 else None)
def test_program_on_pocl_equals_reference(text: str, name: str) -> None:
    fn = check_text(text).functions[name]
    inputs = _inputs(fn, torch.Generator().manual_seed(3))
    ref = tc.define(text, backend="reference")[name](*inputs)
    out = tc.define(text, backend="opencl")[name](*inputs)
    ref = ref if isinstance(ref, tuple) else (ref,)
    out = out if isinstance(out, tuple) else (out,)
    assert len(out) == len(ref) == len(fn.outputs)
    for a, b in zip(out, ref, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        if a.dtype in (torch.float16, torch.bfloat16):
            torch.testing.assert_close(a.float(), b.float(), rtol=2e-2, atol=2e-2)
        else:
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
