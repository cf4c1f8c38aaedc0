"""TC definitions as torch custom operators (``torch.library``).

``register_op("mylib::fc_relu", LANG, "fc_relu")`` defines the operator
``torch.ops.mylib.fc_relu`` with one ``Tensor`` argument per input of the definition
and registers, through the public ``torch.library`` API:

* CPU and CUDA kernels that run the :class:`tc.TcFunction` (which picks its back end
  by the inputs' device);
* a fake (meta) kernel that builds empty outputs from the shapes tc infers, so that
  ``torch.compile(fullgraph=True)`` and ``torch.export`` trace through the op without
  running it;
* an autograd formula whose backward is a second operator,
  ``torch.ops.mylib.fc_relu_backward``, that runs the derived backward definition
  (``TcFunction.gradient()``). Being an operator, the backward is traced as one node
  too, so the backward graph of a compiled model has no graph break either.

The backward definition is derived on the first backward call, so a definition that
cannot be differentiated registers fine and raises ``tc.TcGradientError`` there.
"""

from __future__ import annotations

import keyword
import logging
import os
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from tc.api import OptionsFactory, TcFunction, define
from tc.arguments import TORCH_DTYPES
from tc.autograd import dense_gradients, meta, spread
from tc.errors import TcArgumentError, TcGradientError

if TYPE_CHECKING:
    from autotuner.cache import CompilationCache

_log = logging.getLogger(__name__)

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_QUALNAME = re.compile(rf"({_IDENT})::({_IDENT})")
#: Namespaces of torch's own operators, where a tc operator would only confuse.
_RESERVED_NAMESPACES = frozenset({
    "aten", "prim", "prims", "quantized", "_quantized", "profiler", "inductor", "mkl",
    "mkldnn", "onednn", "debugprims", "rngprims", "higher_order", "_native", "c10d",
    "_c10d_functional", "torch",
})
#: The type of ``torch.ops.<namespace>`` for a namespace of operators.
_OP_NAMESPACE = type(torch.ops.aten)
#: The suffix of the operator that computes a registered operator's gradients.
BACKWARD_SUFFIX = "_backward"


@dataclass(frozen=True)
class _Signature:
    """What an operator's schema says: argument names and dtypes, result dtypes."""

    inputs: tuple[tuple[str, torch.dtype], ...]
    outputs: tuple[torch.dtype, ...]

    def schema(self) -> str:
        """The schema without the operator name: ``(Tensor A, Tensor B) -> Tensor``."""
        args = ", ".join(f"Tensor {name}" for name, _ in self.inputs)
        if len(self.outputs) == 1:
            return f"({args}) -> Tensor"
        return f"({args}) -> ({', '.join('Tensor' for _ in self.outputs)})"

    @property
    def differentiable_inputs(self) -> tuple[int, ...]:
        return tuple(i for i, (_, d) in enumerate(self.inputs) if d.is_floating_point)

    @property
    def differentiable_outputs(self) -> tuple[int, ...]:
        return tuple(i for i, d in enumerate(self.outputs) if d.is_floating_point)


@dataclass(frozen=True)
class _Registration:
    """One registered definition: its operators, the text it came from, and the
    ``torch.library.Library`` that keeps its kernels registered."""

    qualname: str
    backward_qualname: str | None
    entry: str
    canonical: str
    schema: str
    library: torch.library.Library


class OperatorTarget:
    """The TcFunction an operator runs; re-registering the same definition (with other
    options, back end or cache) swaps it, and compiled graphs that call the operator
    pick the new one up. Also memoises the derived backward definition."""

    def __init__(self, fn: TcFunction) -> None:
        self._lock = threading.Lock()
        self._fn = fn
        self._gradient: TcFunction | None = None

    @property
    def fn(self) -> TcFunction:
        return self._fn

    def replace(self, fn: TcFunction) -> None:
        with self._lock:
            self._fn, self._gradient = fn, None

    def gradient(self) -> TcFunction:
        """The derived backward definition (raises tc.TcGradientError when there is none)."""
        with self._lock:
            if self._gradient is None:
                self._gradient = self._fn.gradient()
            return self._gradient


_LOCK = threading.Lock()
_REGISTRY: dict[str, tuple[_Registration, OperatorTarget]] = {}
#: Operator names taken by registrations, including their backward operators.
_TAKEN: dict[str, str] = {}


def register_op(
    qualname: str,
    lang: str,
    entry: str | None = None,
    options_factory: OptionsFactory | None = None,
    *,
    backend: str | None = None,
    cache: bool | str | os.PathLike | CompilationCache | None = None,
) -> torch._ops.OpOverloadPacket:
    """Register the definition ``entry`` of ``lang`` as the torch operator ``qualname``.

    ``qualname`` is ``"namespace::name"``; the operator is returned and is also
    ``torch.ops.namespace.name``. It takes one tensor per input of the definition (its
    arguments carry the definition's names, so keywords work too) and returns a tensor,
    or a tuple of tensors in the declared result order. ``entry`` may be None when
    ``lang`` holds one definition. ``options_factory``, ``backend`` and ``cache`` are
    those of :func:`tc.define`; with ``backend=None`` CPU tensors run on the native CPU
    target and CUDA tensors on CUDA.

    The operator has a fake kernel (for ``torch.compile`` and ``torch.export``) and an
    autograd formula: its backward calls the operator ``namespace::name_backward``,
    which takes the inputs and the gradients of the floating-point results and returns
    the gradients of the floating-point inputs, computed by the automatically derived
    backward definition. Integer inputs get no gradient.

    Registering a name again with the same definition returns the same operator (now
    running with the new options, back end and cache); another definition, a name torch
    already knows, or a malformed name raise ``tc.TcArgumentError``.
    """
    ns, name = _parse_qualname(qualname)
    unit = define(lang, options_factory, backend=backend, cache=cache)
    fn = _entry(unit, entry)
    sig = operator_signature(fn)
    schema = sig.schema()
    with _LOCK:
        known = _REGISTRY.get(qualname)
        if known is not None:
            reg, target = known
            if reg.canonical != fn.canonical or reg.schema != schema:
                raise TcArgumentError(
                    f"operator {qualname} is already registered for another definition "
                    f"({reg.entry}{reg.schema}); pick another name")
            target.replace(fn)
            return getattr(getattr(torch.ops, ns), name)
        backward = f"{ns}::{name}{BACKWARD_SUFFIX}" if needs_backward(sig) else None
        for q in (qualname, backward):
            if q is not None:
                _check_free(q, qualname)
        target = OperatorTarget(fn)
        lib = torch.library.Library(ns, "FRAGMENT")
        try:
            define_operators(lib, qualname, sig, target, backward)
        except RuntimeError as e:
            # Dropping the library undoes whatever part of the registration was made.
            lib = None
            raise TcArgumentError(f"torch refused to register {qualname}: {e}") from e
        reg = _Registration(qualname, backward, fn.name, fn.canonical, schema, lib)
        _REGISTRY[qualname] = (reg, target)
        _TAKEN[qualname] = qualname
        if backward is not None:
            _TAKEN[backward] = qualname
    _log.debug("registered %s%s", qualname, schema)
    return getattr(getattr(torch.ops, ns), name)


def _parse_qualname(qualname: object) -> tuple[str, str]:
    """``(namespace, name)`` of a valid ``"namespace::name"``."""
    if not isinstance(qualname, str):
        raise TcArgumentError(f"the operator name must be a string 'namespace::name', got "
                              f"{type(qualname).__name__}")
    m = _QUALNAME.fullmatch(qualname)
    if m is None:
        raise TcArgumentError(
            f"invalid operator name {qualname!r}: write 'namespace::name' with two "
            "identifiers (letters, digits, underscores; no overload suffix), e.g. "
            "'mylib::matmul'")
    ns, name = m.groups()
    if ns in _RESERVED_NAMESPACES:
        raise TcArgumentError(f"the namespace {ns!r} of {qualname!r} belongs to torch; "
                              "use your own, e.g. 'mylib'")
    if name.startswith("__") or ns.startswith("__"):
        raise TcArgumentError(f"invalid operator name {qualname!r}: names starting with "
                              "'__' clash with Python attributes of torch.ops")
    return ns, name


def _entry(unit, entry: str | None) -> TcFunction:
    if entry is not None:
        return unit[entry]
    if len(unit.entry_points) != 1:
        raise TcArgumentError(f"the text defines {', '.join(unit.entry_points)}: pass "
                              "entry= to say which one to register")
    return unit[unit.entry_points[0]]


def operator_signature(fn: TcFunction) -> _Signature:
    """The operator signature of a definition. Argument names that the schema parser
    refuses (Python keywords such as ``lambda``, which TC allows) get trailing
    underscores, as many as keep them distinct."""
    names = {d.name for d in fn.ir.inputs}
    inputs = []
    for d in fn.ir.inputs:
        name = d.name
        if keyword.iskeyword(name):
            name += "_"
            while name in names:
                name += "_"
            names.add(name)
        inputs.append((name, TORCH_DTYPES[d.dtype]))
    return _Signature(tuple(inputs), tuple(TORCH_DTYPES[d.dtype] for d in fn.ir.outputs))


def needs_backward(sig: _Signature) -> bool:
    return bool(sig.differentiable_inputs and sig.differentiable_outputs)


def _check_free(q: str, qualname: str) -> None:
    """Raise unless ``torch.ops.<ns>.<name>`` of ``q`` can become a new operator."""
    if q in _TAKEN:
        raise TcArgumentError(f"the operator name {q} is already taken by the tc operator "
                              f"{_TAKEN[q]}; pick another name for {qualname}")
    ns, name = q.split("::")
    space = getattr(torch.ops, ns)
    if not isinstance(space, _OP_NAMESPACE):
        raise TcArgumentError(f"torch.ops.{ns} is not a namespace of operators; pick another "
                              f"namespace for {qualname}")
    try:
        existing = getattr(space, name)
    except (AttributeError, RuntimeError):  # no such operator
        return
    # Attributes of the namespace object itself (such as .name) would hide an operator.
    what = ("an operator torch already knows" if isinstance(existing, torch._ops.OpOverloadPacket)
            else "an attribute of the namespace object")
    raise TcArgumentError(f"the operator name {q} is already taken (torch.ops.{ns}.{name} is "
                          f"{what}); pick another name for {qualname}")


def _backward_signature(sig: _Signature) -> _Signature:
    """Inputs, then one gradient per floating-point result; one result per
    floating-point input."""
    names = {n for n, _ in sig.inputs}
    grads = []
    for k in sig.differentiable_outputs:
        g = f"grad_{k}"
        while g in names:
            g += "_"
        names.add(g)
        grads.append((g, sig.outputs[k]))
    return _Signature(sig.inputs + tuple(grads),
                      tuple(sig.inputs[i][1] for i in sig.differentiable_inputs))


def _fresh(results: torch.Tensor | Sequence[torch.Tensor], inputs: Sequence[Any]
           ) -> torch.Tensor | tuple[torch.Tensor, ...]:
    """Results as the schema promises them: new contiguous tensors that share memory with
    no input and no other result (the fake kernel makes the same promise)."""
    outs = [results] if isinstance(results, torch.Tensor) else list(results)
    seen = {t.untyped_storage().data_ptr() for t in inputs
            if isinstance(t, torch.Tensor) and t.untyped_storage().nbytes()}
    for k, t in enumerate(outs):
        ptr = t.untyped_storage().data_ptr()
        if not t.is_contiguous() or t.storage_offset() or ptr in seen or ptr == 0:
            t = t.clone(memory_format=torch.contiguous_format)
            outs[k] = t
        seen.add(t.untyped_storage().data_ptr())
    return outs[0] if len(outs) == 1 else tuple(outs)


def _empty(shapes: Sequence[tuple[Sequence[Any], torch.dtype]], device: torch.device
           ) -> torch.Tensor | tuple[torch.Tensor, ...]:
    outs = [torch.empty(tuple(shape), dtype=dtype, device=device) for shape, dtype in shapes]
    return outs[0] if len(outs) == 1 else tuple(outs)


def _device(inputs: Sequence[torch.Tensor]) -> torch.device:
    return inputs[0].device if inputs else torch.device("cpu")


def define_operators(lib: torch.library.Library, qualname: str, sig: _Signature,
                     target: OperatorTarget, backward: str | None) -> None:
    """Define in ``lib`` the operator ``qualname`` running ``target.fn`` and, unless
    ``backward`` is None, the operator ``backward`` computing its gradients with
    ``target.gradient()`` (also used by :mod:`tc.traced`)."""
    _define_forward(lib, qualname, sig, target, backward)
    if backward is not None:
        _define_backward(lib, backward, sig, target)


def _define_forward(lib: torch.library.Library, qualname: str, sig: _Signature,
                    target: OperatorTarget, backward: str | None) -> None:
    torch.library.define(qualname, sig.schema(), lib=lib, tags=(torch.Tag.pt2_compliant_tag,))

    def kernel(*inputs: torch.Tensor):
        # Below the Autograd key the inputs still say requires_grad; no_grad keeps the
        # TcFunction from building its own autograd node.
        with torch.no_grad():
            return _fresh(target.fn(*inputs), inputs)

    def fake(*inputs: torch.Tensor):
        # output_shapes checks the arguments as a call would (tc.TcError otherwise).
        return _empty(target.fn.output_shapes(*inputs), _device(inputs))

    torch.library.register_kernel(qualname, ("cpu", "cuda"), kernel, lib=lib)
    torch.library.register_fake(qualname, fake, lib=lib)
    setup_context, backward_fn = _autograd_formula(sig, backward)
    torch.library.register_autograd(qualname, backward_fn, setup_context=setup_context,
                                    lib=lib)


def _autograd_formula(sig: _Signature, backward: str | None
                      ) -> tuple[Callable[..., None], Callable[..., tuple]]:
    """``setup_context`` and ``backward`` of the forward operator: the backward calls the
    backward operator, so that tracing it (AOT autograd) records one node."""
    diff_in, diff_out = sig.differentiable_inputs, sig.differentiable_outputs
    n_in = len(sig.inputs)

    def setup_context(ctx, inputs, output) -> None:
        ctx.save_for_backward(*inputs)
        # A result that took no part in the loss then arrives as None, and backward_fn
        # makes the zeros itself: one code path whether torch materialises them or not.
        ctx.set_materialize_grads(False)
        outs = (output,) if isinstance(output, torch.Tensor) else output
        # Shapes only (not the outputs) for the zero gradients of unused results.
        ctx.tc_result_meta = [meta(outs[k]) for k in diff_out]

    def backward_fn(ctx, *grads):
        if backward is None:
            return (None,) * n_in
        inputs = ctx.saved_tensors
        op_ns, op_name = backward.split("::")
        res = getattr(getattr(torch.ops, op_ns), op_name)(
            *inputs, *dense_gradients(grads, diff_out, ctx.tc_result_meta))
        out = spread(diff_in, res, n_in)
        return tuple(g if ctx.needs_input_grad[i] else None for i, g in enumerate(out))

    return setup_context, backward_fn


def _define_backward(lib: torch.library.Library, qualname: str, forward: _Signature,
                     target: OperatorTarget) -> None:
    sig = _backward_signature(forward)
    torch.library.define(qualname, sig.schema(), lib=lib, tags=(torch.Tag.pt2_compliant_tag,))
    diff_in = forward.differentiable_inputs

    def kernel(*args: torch.Tensor):
        grad_fn = target.gradient()  # derived on first use: raises TcGradientError here
        with torch.no_grad():
            return _fresh(grad_fn(*args), args)

    def fake(*args: torch.Tensor):
        # A gradient has its input's shape and dtype; deriving the backward definition is
        # left to the first real call, so that tracing never fails on it.
        return _empty([(args[i].shape, args[i].dtype) for i in diff_in], _device(args))

    def second_order(ctx, *grads):
        raise TcGradientError(f"{qualname}: second-order gradients of tc operators are not "
                              "supported (the backward operator has no backward)")

    torch.library.register_kernel(qualname, ("cpu", "cuda"), kernel, lib=lib)
    torch.library.register_fake(qualname, fake, lib=lib)
    torch.library.register_autograd(qualname, second_order, lib=lib)
