"""Automatic and hand-written gradients of the catalogue, checked by torch.autograd.gradcheck.

gradcheck compares the analytical Jacobian (the derived backward, compiled) with finite
differences of the forward in float64: an independent oracle. The catalogue's texts
are float32; their float64 twins are the same text with ``double`` for ``float``.

Compiled cases run on every target here (the ``target`` fixture): all of them on the
CPU target, and on OpenCL, whose PoCL builds of every case would cost this module some
ten seconds more (measured), a subset that covers each kind of backward (contractions,
reductions over several kernels, strided and max-selecting gathers, integer inputs,
gathers by index).
"""

from __future__ import annotations

import re

import pytest
import torch
from targets_here import over_targets

import tc
from tc import catalogue

# The kernels the issue names, compiled (forward and derived backward) on each target.
COMPILED = ("matmul", "fc_relu", "conv2d", "group_conv", "softmax", "layer_norm",
            "avgpool2x2", "maxpool2x2", "maxpool3x3", "cross_entropy_mean", "conv2d_s2")
COMPILED_OPENCL = ("matmul", "softmax", "maxpool2x2", "cross_entropy_mean", "conv2d_s2")
FLOAT32 = ("matmul", "fc_relu", "conv2d", "softmax", "layer_norm", "maxpool2x2", "group_conv",
           "embedding_sum")
FLOAT32_OPENCL = ("matmul", "conv2d", "maxpool2x2", "embedding_sum")
DIFFERENTIABLE = tuple(n for n, k in catalogue.KERNELS.items() if k.differentiable)


def double(text: str) -> str:
    return re.sub(r"\bfloat\(", "double(", text)


def inputs(kernel: catalogue.Kernel, sizes: dict[str, int], seed: int = 1) -> list:
    g = torch.Generator().manual_seed(seed)
    return [x.double().requires_grad_() if x.dtype.is_floating_point else x
            for x in kernel.make_inputs(sizes, g)]


def check(fn, args) -> None:
    assert torch.autograd.gradcheck(lambda *a: fn(*a), args, eps=1e-6, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", DIFFERENTIABLE)
def test_automatic_gradients_of_the_catalogue_on_the_interpreter(name: str) -> None:
    k = catalogue.get(name)
    fn = tc.define(double(k.tc), backend="reference")[k.entry]
    for sizes in k.test_sizes[:2]:
        check(fn, inputs(k, sizes))


@pytest.mark.parametrize(("name", "target"), over_targets(COMPILED, COMPILED_OPENCL),
                         indirect=["target"])
def test_automatic_gradients_compiled(name: str, target: str) -> None:
    k = catalogue.get(name)
    fn = tc.define(double(k.tc), backend=target)[k.entry]
    check(fn, inputs(k, k.test_sizes[0]))


@pytest.mark.parametrize("preset", ["mlp", "conv", "group_conv"])
def test_automatic_gradients_under_other_mapping_options(preset: str, target: str) -> None:
    # The backward compiles with the unit's options factory, like the forward.
    factory = lambda lang, entry, *a: tc.MappingOptions(preset).useSharedMemory(True)  # noqa: E731
    for name in ("matmul", "softmax"):
        k = catalogue.get(name)
        fn = tc.define(double(k.tc), factory, backend=target)[k.entry]
        check(fn, inputs(k, k.test_sizes[0]))


@pytest.mark.parametrize(("name", "target"), over_targets(FLOAT32, FLOAT32_OPENCL),
                         indirect=["target"])
def test_float32_gradients_equal_torch_autograd_of_the_reference(name: str, target: str) -> None:
    # An independent implementation: torch's own operators and autograd.
    k = catalogue.get(name)
    fn = tc.define(k.tc, backend=target)[k.entry]
    g = torch.Generator().manual_seed(3)
    xs = k.make_inputs(k.test_sizes[0], g)
    ours = [x.clone().requires_grad_(x.dtype.is_floating_point) for x in xs]
    theirs = [x.clone().requires_grad_(x.dtype.is_floating_point) for x in xs]
    out = fn(*ours)
    ref = k.reference(*theirs)
    weight = torch.randn(out.shape, generator=g)
    (out * weight).sum().backward()
    (ref * weight).sum().backward()
    for a, b in zip(ours, theirs, strict=True):
        if a.dtype.is_floating_point:
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-4)


# -- hand-written backwards (make_autograd), as in the original -------------------------------


def test_hand_written_backward_of_fc_relu(target: str) -> None:
    T = tc.define(double(catalogue.FC_RELU), backend=target)
    fc_relu = tc.make_autograd(T.fc_relu, T.fc_relu_backward)
    check(fc_relu, inputs(catalogue.get("fc_relu"), {"B": 3, "I": 5, "O": 7}))


def test_hand_written_backward_of_conv2d_from_two_definitions(target: str) -> None:
    T = tc.define(double(catalogue.CONV2D), backend=target)

    def backward(I, Wt, dO):  # noqa: E741
        return T.conv2d_dx(I, Wt, dO), T.conv2d_dw(I, Wt, dO)

    conv = tc.make_autograd(T.conv2d, backward)
    sizes = {"N": 1, "C": 2, "H": 5, "W": 4, "F": 3, "KH": 2, "KW": 3}
    check(conv, inputs(catalogue.get("conv2d"), sizes))


def test_hand_written_backward_may_skip_integer_inputs() -> None:
    # cross_entropy has an int64 label input: the backward returns the logits' gradient
    # only, and autograd gets None for the labels.
    text = double(catalogue.CROSS_ENTROPY) + """
def cross_entropy_backward(double(N, C) X, int64(N) label, double(N) dloss) -> (dX) {
    mx(n) max=! X(n, c)
    s(n) +=! exp(X(n, c) - mx(n))
    dX(n, c) = dloss(n) * (exp(X(n, c) - mx(n)) / s(n) - (c == label(n) ? 1.0 : 0.0))
}
"""
    T = tc.define(text, backend="reference")
    ce = tc.make_autograd(T.cross_entropy, T.cross_entropy_backward)
    check(ce, inputs(catalogue.get("cross_entropy"), {"N": 3, "C": 5}))


def test_hand_written_backward_with_a_wrong_number_of_gradients() -> None:
    T = tc.define(double(catalogue.MATMUL), backend="reference")
    bad = tc.make_autograd(T.matmul, lambda A, B, dC: (dC @ B.T,) * 3)
    A, B = (torch.randn(2, 2, dtype=torch.float64, requires_grad=True) for _ in range(2))
    with pytest.raises(tc.TcArgumentError, match="one per input"):
        bad(A, B).sum().backward()
    with pytest.raises(tc.TcArgumentTypeError):
        tc.make_autograd(T.matmul, "not a function")


# -- second derivatives: the derived backward is differentiated in turn ----------------------


@pytest.mark.parametrize("name", ["matmul", "fc_relu", "softmax", "layer_norm", "conv2d",
                                  "maxpool2x2", "cross_entropy_mean"])
def test_second_derivatives_on_the_interpreter(name: str) -> None:
    k = catalogue.get(name)
    fn = tc.define(double(k.tc), backend="reference")[k.entry]
    assert torch.autograd.gradgradcheck(lambda *a: fn(*a), inputs(k, k.test_sizes[0]),
                                        eps=1e-6, atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize(("name", "target"), over_targets(["matmul", "softmax"], ["matmul"]),
                         indirect=["target"])
def test_second_derivatives_compiled(name: str, target: str) -> None:
    k = catalogue.get(name)
    fn = tc.define(double(k.tc), backend=target)[k.entry]
    assert torch.autograd.gradgradcheck(lambda *a: fn(*a), inputs(k, k.test_sizes[0]),
                                        eps=1e-6, atol=1e-4, rtol=1e-3)


def test_second_derivatives_through_a_hand_written_backward() -> None:
    T = tc.define(double(catalogue.FC_RELU), backend="reference")
    fc_relu = tc.make_autograd(T.fc_relu, T.fc_relu_backward)
    assert torch.autograd.gradgradcheck(
        fc_relu, inputs(catalogue.get("fc_relu"), {"B": 2, "I": 3, "O": 4}),
        eps=1e-6, atol=1e-4, rtol=1e-3)
