"""``tc.define`` entry points inside ``torch.compile`` and ``torch.export``.

A traced call cannot run tc's launch path: the tensors are fake (no data), Dynamo
would trace into pyopencl or ctypes, and AOT autograd needs a graph node with known
output shapes and a backward. So an entry point called while torch traces becomes a
call of a torch custom operator of its own, registered on first need in the private
namespace :data:`NAMESPACE` with the machinery of :func:`tc.register_op` (a kernel
that runs the entry point, a fake kernel from tc's inferred shapes, an autograd
formula whose backward is a second operator running the derived backward, or a
hand-written one given to :func:`tc.make_autograd`). Eager calls never pay for it:
they take the direct path, so the operator is only a tracing device.

Traps:

* Dynamo must not trace the registration (``torch.library`` calls are not
  traceable). :func:`qualname` is marked ``torch.compiler.assume_constant_result``:
  Dynamo runs it once at trace time and bakes the returned name into the graph; its
  argument is the entry point's key, a string Dynamo treats as a constant.
* One operator per :class:`tc.TcFunction` (a definition of one ``tc.define`` unit,
  with that unit's options factory, back end and cache), not per text: two units of
  the same text with different options must not share a compiled graph's node. The
  operators live as long as the process (a compiled graph may outlive the unit).
* The schema has one ``Tensor`` per input: tc's size symbols become the fake tensors'
  (possibly symbolic) sizes, so one traced graph serves every batch size whenever
  torch marks the dimension dynamic.
"""

from __future__ import annotations

import itertools
import threading
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from tc.api import TcFunction

#: The torch.library namespace of the operators behind traced entry points.
NAMESPACE = "tc_private"

_LOCK = threading.Lock()
_COUNTER = itertools.count()
#: key -> the entry point it stands for. Weak: a unit no one traced is freed as usual;
#: a registered operator's kernels hold their entry point (a compiled graph may
#: outlive the unit).
_FUNCTIONS: weakref.WeakValueDictionary[str, TcFunction] = weakref.WeakValueDictionary()
#: key -> (operator name, its library); the library keeps the registration alive.
_OPS: dict[str, tuple[str, torch.library.Library]] = {}
#: key -> the key of a hand-written backward (tc.make_autograd).
_HAND_BACKWARD: dict[str, str] = {}
_PLAIN = (torch.Tensor, torch.nn.Parameter)


def key_for(fn: TcFunction, name: str, backward: str | None = None) -> str:
    """A fresh key (and operator name) for the entry point ``fn`` called ``name``;
    ``backward``: the key of a hand-written backward (``backward(*inputs,
    *grad_outputs)``, tc.make_autograd) to differentiate with instead of the derived one."""
    key = f"{name}_{next(_COUNTER)}"
    with _LOCK:
        _FUNCTIONS[key] = fn
        if backward is not None:
            _HAND_BACKWARD[key] = backward
    return key


def tracing(inputs: Sequence[Any]) -> bool:
    """Whether a call on ``inputs`` is being traced by torch (Dynamo, export, or a
    tracer handing tensor subclasses such as fake tensors) rather than run."""
    if torch.compiler.is_compiling():
        return True
    return any(isinstance(t, torch.Tensor) and type(t) not in _PLAIN for t in inputs)


@torch.compiler.assume_constant_result
def qualname(key: str) -> str:
    """The operator standing for the entry point of ``key``, registered on first use."""
    with _LOCK:
        known = _OPS.get(key)
        if known is not None:
            return known[0]
        name = f"{NAMESPACE}::{key}"
        _OPS[key] = (name, _register(name, key))
        return name


def call(key: str, fn: TcFunction, inputs: Sequence[Any]
         ) -> torch.Tensor | tuple[torch.Tensor, ...]:
    """The traced call of the entry point ``fn`` (of ``key``) on ``inputs``."""
    decls = fn.ir.inputs
    tensors = ([_tensor(v, d) for v, d in zip(inputs, decls, strict=True)]
               if len(inputs) == len(decls) else list(inputs))
    ns, name = qualname(key).split("::")
    return getattr(getattr(torch.ops, ns), name)(*tensors)


def _tensor(value: Any, decl) -> Any:
    """A Python number for a scalar input as the 0-d tensor the schema takes."""
    if isinstance(value, bool | int | float) and decl.rank == 0:
        from tc.arguments import TORCH_DTYPES

        return torch.tensor(value, dtype=TORCH_DTYPES[decl.dtype])
    return value


class _HandTarget:
    """What the operators of a forward with a hand-written backward run: the backward
    operator returns the gradients of the floating-point inputs, which a hand-written
    backward may give as one per input (tc.make_autograd allows both)."""

    def __init__(self, fn: TcFunction, backward: TcFunction) -> None:
        self.fn = fn
        self._backward = backward

    def gradient(self):
        fn, backward = self.fn, self._backward

        def grads(*args: torch.Tensor):
            from tc.autograd import float_input_gradients

            n = len(fn.ir.inputs)
            return float_input_gradients(backward(*args), args[:n])

        return grads


def _register(name: str, key: str) -> torch.library.Library:
    from tc import torch_ops

    fn = _FUNCTIONS[key]
    hand = _HAND_BACKWARD.get(key)
    sig = torch_ops.operator_signature(fn)
    target = (_HandTarget(fn, _FUNCTIONS[hand]) if hand is not None
              else torch_ops.OperatorTarget(fn))
    backward = f"{name}{torch_ops.BACKWARD_SUFFIX}" if torch_ops.needs_backward(sig) else None
    lib = torch.library.Library(NAMESPACE, "FRAGMENT")
    torch_ops.define_operators(lib, name, sig, target, backward)
    return lib
