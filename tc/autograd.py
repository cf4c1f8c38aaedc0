"""torch.autograd for TC definitions: derived backwards and ``tc.make_autograd``.

A ``tc.define`` entry point called on tensors that require grad goes through
:class:`_Derived`, whose backward runs the definition's derived backward
(:mod:`tc.grad`), compiled like any TC definition. ``make_autograd`` pairs a forward
with a hand-written backward, as in the original Tensor Comprehensions.

Higher derivatives come the same way: with ``create_graph=True`` the backward
definition runs on tensors that require grad, so its own call is recorded with the
backward derived from *its* text (and a hand-written backward is differentiated as
the function it is).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch

from tc.errors import TcArgumentError, TcArgumentTypeError

if TYPE_CHECKING:
    from tc.api import TcFunction
    from tc.arguments import BoundCall


def needs_grad(inputs: Sequence[Any]) -> bool:
    """Whether a call on ``inputs`` must record a graph for autograd."""
    return torch.is_grad_enabled() and any(
        isinstance(t, torch.Tensor) and t.requires_grad for t in inputs)


Meta = tuple[torch.Size, torch.dtype, torch.device]


def meta(t: torch.Tensor) -> Meta:
    """What a zero gradient for ``t`` needs (not ``t`` itself, which need not be kept)."""
    return (t.shape, t.dtype, t.device)


def dense_gradients(grads: Sequence[torch.Tensor | None], outputs: Sequence[int],
                    metas: Sequence[Meta]) -> list[torch.Tensor]:
    """The gradients of the results ``outputs`` (with ``metas``, in the same order), as
    a backward definition takes them: dense (a fixed signature, so the backward compiles
    once; ``.sum()`` sends an expanded one) and zeros for a result the loss did not use
    (torch passes None)."""
    return [torch.zeros(shape, dtype=dtype, device=device) if grads[k] is None
            else grads[k].contiguous()
            for k, (shape, dtype, device) in zip(outputs, metas, strict=True)]


def spread(wrt: Sequence[int], results: Any, n_inputs: int) -> list[torch.Tensor | None]:
    """The backward's results (one per input of ``wrt``) as one slot per input."""
    if isinstance(results, torch.Tensor):
        results = (results,)
    slots: list[torch.Tensor | None] = [None] * n_inputs
    for k, g in zip(wrt, results, strict=True):
        slots[k] = g
    return slots


class _Derived(torch.autograd.Function):
    """A TC definition whose backward is derived automatically."""

    @staticmethod
    def forward(ctx, fn: TcFunction, call: BoundCall, *inputs: torch.Tensor
                ):  # type: ignore[override]
        outputs = fn.run_bound(call)
        ctx.fn = fn
        ctx.metas = [meta(outputs[k]) for k in fn.differentiable_outputs]
        ctx.save_for_backward(*inputs)
        ctx.mark_non_differentiable(*(o for k, o in enumerate(outputs)
                                      if k not in fn.differentiable_outputs))
        return tuple(outputs)

    @staticmethod
    def backward(ctx, *grads: torch.Tensor | None):  # type: ignore[override]
        # Under create_graph=True the backward definition is itself called on tensors
        # that require grad, so it records its own derived backward: higher orders.
        fn: TcFunction = ctx.fn
        inputs = ctx.saved_tensors
        # Only the gradients autograd asks for: a layer's data input usually needs none.
        wrt = tuple(k for k in fn.differentiable_inputs if ctx.needs_input_grad[k + 2])
        if not wrt:
            return (None,) * (len(inputs) + 2)
        backward = fn.gradient(wrt)  # raises TcGradientError for a non-differentiable text
        results = backward(*inputs, *dense_gradients(grads, fn.differentiable_outputs,
                                                      ctx.metas))
        return (None, None, *spread(wrt, results, len(inputs)))


def run_differentiable(fn: TcFunction, call: BoundCall) -> list[torch.Tensor]:
    """Call ``fn`` on checked arguments, recording it for autograd."""
    return list(_Derived.apply(fn, call, *call.inputs))


class _HandWritten(torch.autograd.Function):
    @staticmethod
    def forward(ctx, forward: Callable, backward: Callable, *inputs: torch.Tensor
                ):  # type: ignore[override]
        with torch.no_grad():
            out = forward(*inputs)
        single = isinstance(out, torch.Tensor)
        outputs = (out,) if single else tuple(out)
        ctx.backward = backward
        ctx.float_outputs = [k for k, o in enumerate(outputs) if o.dtype.is_floating_point]
        ctx.metas = [meta(outputs[k]) for k in ctx.float_outputs]
        ctx.save_for_backward(*inputs)
        ctx.mark_non_differentiable(*(o for o in outputs if not o.dtype.is_floating_point))
        return outputs[0] if single else outputs

    @staticmethod
    def backward(ctx, *grads: torch.Tensor | None):  # type: ignore[override]
        inputs = ctx.saved_tensors
        result = ctx.backward(*inputs, *dense_gradients(grads, ctx.float_outputs, ctx.metas))
        return (None, None, *hand_written_slots(result, inputs))


def hand_written_slots(result: Any, inputs: Sequence[torch.Tensor]
                       ) -> list[torch.Tensor | None]:
    """A hand-written backward's result (one gradient per input, or one per
    floating-point input) as one slot per input, checked against the inputs' shapes."""
    result = (result,) if isinstance(result, torch.Tensor) else tuple(result)
    float_inputs = [k for k, t in enumerate(inputs) if t.dtype.is_floating_point]
    if len(result) == len(inputs):
        slots = list(result)
    elif len(result) == len(float_inputs):
        slots = spread(float_inputs, result, len(inputs))
    else:
        raise TcArgumentError(
            f"the backward returned {len(result)} gradient(s); it must return one per "
            f"input ({len(inputs)}) or one per floating-point input ({len(float_inputs)})")
    for k, (g, t) in enumerate(zip(slots, inputs, strict=True)):
        if g is not None and tuple(g.shape) != tuple(t.shape):
            raise TcArgumentError(f"the backward's gradient {k} has shape "
                                  f"{tuple(g.shape)}, input {k} has shape {tuple(t.shape)}")
    return slots


def float_input_gradients(result: Any, inputs: Sequence[torch.Tensor]
                          ) -> tuple[torch.Tensor, ...]:
    """A hand-written backward's result as the gradients of the floating-point inputs
    only, zeros where it gave None (what a tc backward operator returns)."""
    slots = hand_written_slots(result, inputs)
    return tuple(torch.zeros_like(t) if g is None else g
                 for g, t in zip(slots, inputs, strict=True) if t.dtype.is_floating_point)


def make_autograd(forward: Callable, backward: Callable) -> Callable[..., Any]:
    """A differentiable function from a forward and a hand-written backward.

    As in the original Tensor Comprehensions: ``backward(*inputs, *grad_outputs)``
    receives the forward's inputs and the gradients of its (floating-point) outputs and
    returns one gradient per input (or one per floating-point input). Both are
    typically entry points of ``tc.define``::

        T = tc.define(FC_RELU)
        fc_relu = tc.make_autograd(T.fc_relu, T.fc_relu_backward)
        y = fc_relu(x, W, b)        # y.backward(...) runs fc_relu_backward
    """
    if not callable(forward) or not callable(backward):
        raise TcArgumentTypeError("make_autograd(forward, backward) takes two callables, "
                                  "such as entry points of tc.define")

    from tc import traced
    from tc.api import TcFunction

    if isinstance(forward, TcFunction) and isinstance(backward, TcFunction):
        # Under torch.compile and torch.export, an operator differentiated by the
        # backward entry point (tc.traced): a node in both graphs, no graph break.
        key = traced.key_for(forward, forward.name, backward._key)

        def function(*inputs: Any):
            if traced.tracing(inputs):
                return traced.call(key, forward, inputs)
            return _HandWritten.apply(forward, backward, *inputs)
    else:
        def function(*inputs: Any):
            return _HandWritten.apply(forward, backward, *inputs)

    function.__name__ = getattr(forward, "name", getattr(forward, "__name__", "tc_function"))
    function.__doc__ = f"{function.__name__} with a hand-written backward (tc.make_autograd)"
    return function
