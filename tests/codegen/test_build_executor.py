"""``build_executor``: the one place a program is compiled and built, from a bound call
or from the shape of one (what the autotuner's compile workers have), with a check
between compiling and the target's build."""

from __future__ import annotations

import pytest
import torch

import tc
from codegen.compiler import CompiledProgram
from codegen.executor import CallShape, build_executor
from codegen.targets import get_target
from tc.options import MappingOptions

MATMUL = "def matmul(float(M,K) A, float(K,N) B) -> (C) { C(m,n) +=! A(m,k) * B(k,n) }"


def _call():
    fn = tc.define(MATMUL, backend="reference")["matmul"]
    a = torch.randn(5, 7, generator=torch.Generator().manual_seed(0))
    b = torch.randn(7, 3, generator=torch.Generator().manual_seed(1))
    return fn.ir, fn.bind(a, b), a @ b


def test_call_shape_of_a_bound_call() -> None:
    _, call, _ = _call()
    shape = CallShape.of(call)
    assert shape.sizes == {"M": 5, "K": 7, "N": 3}
    assert shape.strides == ((7, 1), (3, 1))
    assert shape.signature == call.signature()


def test_a_call_and_its_shape_build_the_same_program(target: str) -> None:
    fn, call, want = _call()
    options = MappingOptions("naive")
    from_call = build_executor(fn, call, options, target)
    from_shape = build_executor(fn, CallShape.of(call), options, target)
    assert from_shape.signature == from_call.signature == call.signature()
    assert [k.source for k in from_shape.kernels] == [k.source for k in from_call.kernels]
    torch.testing.assert_close(from_shape.run(call)[0], want, rtol=1e-5, atol=1e-5)


class _Stop(Exception):
    pass


def test_check_sees_the_program_and_stops_before_the_build(target: str, monkeypatch) -> None:
    fn, call, _ = _call()
    seen: list[CompiledProgram] = []
    builds: list[int] = []
    t = get_target(target)
    real_build = t.build
    monkeypatch.setattr(t, "build", lambda *a: builds.append(1) or real_build(*a))

    def stop(program: CompiledProgram) -> None:
        seen.append(program)
        raise _Stop

    with pytest.raises(_Stop):
        build_executor(fn, call, MappingOptions("naive"), target, check=stop)
    assert len(seen) == 1 and seen[0].strategy == t.strategy and seen[0].kernels
    assert builds == []  # the target's compiler never ran
    ex = build_executor(fn, call, MappingOptions("naive"), target, check=seen.append)
    assert builds == [1] and seen[1] is ex.program
