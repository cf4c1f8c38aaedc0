"""Running a compiled program: the launch path shared by every target.

Allocating outputs and temporaries, packing arguments, evaluating the host program
and reading the error flag are the same code for all of them; building the kernels
and launching one are the target's (:mod:`codegen.targets`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch

from codegen import host as host_mod
from codegen.compiler import CompiledProgram
from codegen.launch import KernelArg
from codegen.launch_config import call_kernel
from codegen.targets import KernelInfo, Target, get_target, target_names
from tc.arguments import TORCH_DTYPES, BoundCall
from tc.errors import TcArgumentError, TcBackendError, TcRangeError
from tc.ir.bounds import starts_from_contents
from tc.ir.index_width import call_index_bits
from tc.ir.split_sums import sum_splits
from tc.ir.types import ScalarType

log = logging.getLogger(__name__)

__all__ = ["BACKENDS", "CallShape", "Executor", "KernelInfo", "build_executor", "memo_key",
           "signature_class", "uses_symbolic_sizes"]

#: The compiled back ends (the registered targets).
BACKENDS = target_names()
#: Call signatures whose plans an executor keeps (a symbolic one serves many).
PLANS = 64


def signature_class(signature: tuple) -> tuple:
    """What a symbolic program depends on in a call signature (``BoundCall.signature``):
    per input its dtype, rank and which dimensions have unit stride (and more than one
    element), and the device; not the sizes, nor the other strides."""
    *inputs, device = signature
    return tuple((dtype, len(shape), tuple(st == 1 and n > 1 for n, st in zip(shape, strides,
                                                                          strict=True)))
                 for dtype, shape, strides in inputs) + (device,)


def uses_symbolic_sizes(target: Target, options) -> bool:
    """Whether ``target`` compiles ``options`` for every shape at once (the compiler's
    own rule: :func:`codegen.compiler.symbolic_options`)."""
    from codegen.compiler import symbolic_options

    return target.symbolic_sizes and symbolic_options(options, target.strategy)


def memo_key(fn, call: BoundCall, options, target: Target) -> tuple:
    """The key of an executor in a memo: the call's signature, or its class when the
    target compiles these options for every shape."""
    sig = call.signature()
    if uses_symbolic_sizes(target, options):
        # The sizes matter to a symbolic program only through its split sums.
        sig = (signature_class(sig), sum_splits(fn, call.sizes))
        # One build serves every size, but not with 32-bit indices for a call that
        # needs 64 (tc.ir.index_width): the width is part of the class.
        sig = (sig, call_index_bits(fn, call.sizes, call.signature()))
    return fn, sig, options.key()


class Executor:
    """A definition compiled for one input signature on one target.

    Call it with tensors of that signature: ``executor(*inputs, outputs=None)``.
    """

    def __init__(self, program: CompiledProgram, backend: str | Target, signature: tuple,
                 arch: str | None = None,
                 binaries: Sequence[bytes | None] | None = None) -> None:
        """Build ``program``'s kernels for target ``backend`` (a name or a target);
        with ``binaries`` (see :meth:`binaries`), a kernel whose binary is given is
        loaded from it instead of being compiled."""
        target = get_target(backend)
        if program.strategy != target.strategy:
            raise TcBackendError(f"the program was mapped for {program.strategy.upper()}s; the "
                                 f"{target.name} target runs {target.strategy.upper()} mappings")
        if binaries is not None and len(binaries) != len(program.kernels):
            raise TcBackendError(f"{len(binaries)} binaries for {len(program.kernels)} kernels")
        self.program = program
        self.target = target
        self.backend = target.name
        self.signature = signature
        kernels = [ck.kernel for ck in program.kernels]
        self._compiled = target.build(kernels, binaries, arch)
        # Shown with the launch configuration of the call compiled for (a kernel
        # serving every size launches on the blocks each call needs).
        self.kernels: list[KernelInfo] = [target.info(call_kernel(kern, program.sizes), h)
                                          for kern, h in zip(kernels, self._compiled, strict=True)]
        self._plans: dict[tuple, tuple] = {}  # per call signature: see _make_plan
        # The outputs that start from the caller's outputs= (tc.ir.bounds).
        from_contents = starts_from_contents(program.fn)
        self._from_contents = tuple(k for k, t in enumerate(program.fn.outputs)
                                    if t.name in from_contents)

    @classmethod
    def from_artifact(cls, blob: bytes, backend: str | Target, signature: tuple,
                      arch: str | None = None, fn=None) -> Executor:
        """An executor from a stored artefact (:func:`codegen.artifact.dump_program`),
        with no scheduling and no compiling.

        ``signature`` is the call's (``BoundCall.signature()``); with ``fn`` (an IR
        function), the stored program must compute exactly it. Raises
        :class:`codegen.artifact.ArtifactError` (a ``TcBackendError``) when the
        artefact is unreadable or does not match, and ``TcBackendError`` when the
        target rejects a stored binary: callers then compile instead.
        """
        from codegen.artifact import load_program, verify_program

        program, binaries = load_program(blob)
        # The stored fn keeps its own source text, which its spans (and so the bounds
        # checks' error messages) point into.
        verify_program(program, signature, fn)
        return cls(program, backend, signature, arch, binaries)

    def binaries(self) -> list[bytes | None]:
        """Per kernel, what :meth:`from_artifact` reloads it from (the target's)."""
        return self.target.binaries(self._compiled)

    def artifact(self) -> bytes:
        """This executor's program and binaries as an artefact for the compilation cache."""
        from codegen.artifact import dump_program

        return dump_program(self.program, self.binaries())

    @property
    def fn(self):
        return self.program.fn

    def __call__(self, *inputs: torch.Tensor, outputs: Sequence[torch.Tensor] | None = None):
        from tc.arguments import bind, check_outputs

        call = bind(self.fn, inputs)
        if outputs is not None:
            outputs = (outputs,) if isinstance(outputs, torch.Tensor) else tuple(outputs)
            check_outputs(self.fn, call, outputs)
        results = self.run(call, outputs)
        if outputs is not None:
            for dst, src in zip(outputs, results, strict=True):
                dst.copy_(src)
            results = list(outputs)
        return results[0] if len(results) == 1 else tuple(results)

    def run(self, call: BoundCall, outputs: Sequence[torch.Tensor] | None = None
            ) -> list[torch.Tensor]:
        """Run on checked arguments; returns the outputs in declared order. An output
        that a reduction without ``!`` accumulates into before anything writes it
        starts as a copy of its tensor in ``outputs`` (checked: the caller's
        ``outputs=``), else as zeros; ``outputs`` are not written here."""
        sig = call.signature()
        plan = self._plans.get(sig)
        if plan is None:
            if self.program.symbolic:
                if signature_class(sig) != signature_class(self.signature):
                    raise TcArgumentError(
                        f"{self.fn.name}: this executor was compiled for inputs of other "
                        "dtypes, ranks, unit strides or device; compile again (tc.define "
                        "does it for you)")
                if call_index_bits(self.fn, call.sizes, sig) > self.program.index_bits:
                    raise TcArgumentError(
                        f"{self.fn.name}: this executor was compiled with 32-bit index "
                        "arithmetic; these tensors need 64 bits: compile again for them "
                        "(tc.define does it for you)")
                if sum_splits(self.fn, call.sizes) != self.program.splits:
                    raise TcArgumentError(
                        f"{self.fn.name}: this executor was compiled for sums of another "
                        f"length class (tc.ir.split_sums); compile again for these sizes "
                        "(tc.define does it for you)")
            elif sig != self.signature:
                raise TcArgumentError(
                    f"{self.fn.name}: this executor was compiled for other input sizes, "
                    "strides or device; compile again (tc.define does it for you)")
            if len(self._plans) >= PLANS:
                self._plans.pop(next(iter(self._plans)))
            plan = self._plans[sig] = self._make_plan(call)
        shapes, scalars, launches, unused_err = plan
        dev = call.device
        made = [(torch.empty if written else torch.zeros)(shape, dtype=dtype, device=dev)
                for shape, dtype, written in shapes]
        if outputs is not None:
            for k in self._from_contents:
                made[k].copy_(outputs[k])
        err = unused_err if unused_err is not None else torch.zeros(1, dtype=torch.int32,
                                                                    device=dev)
        tensors = (*call.inputs, *made, err)
        n_in = len(call.inputs)
        for index, kern in launches:
            self._launch(index, kern, tensors, n_in, scalars)
        code = int(err.item()) if unused_err is None else 0
        if code:
            read = self.program.checks[code - 1]
            span = read.span
            raise TcRangeError(f"read of '{read.tensor}' out of bounds (found by the kernel)",
                               line=span.line if span else None,
                               column=span.column if span else None,
                               source=self.fn.source or None)
        return made[: len(self.fn.outputs)]

    def _make_plan(self, call: BoundCall) -> tuple:
        """What every call of this signature shares (its sizes are the signature's):
        the shapes and dtypes of the buffers to allocate (outputs, temporaries, the
        templates' scratch) and whether the kernels write all of each before reading
        it (then it need not be zero-filled: a pass over memory saved), the size
        arguments, and the kernels the host program launches. Checks the static bounds
        once."""
        from tc.ir.bounds import check_static_bounds, fully_written

        fn = self.program.kernel_fn  # with the temporaries of split sums
        check_static_bounds(fn, call.sizes)
        written = fully_written(fn, call.sizes)
        shapes = [(tuple(s.evaluate(call.sizes) for s in t.shape), TORCH_DTYPES[t.dtype],
                   t.name in written) for t in fn.outputs + fn.temps]
        # Scratch buffers of the templates (matchLibraryCalls), zero-filled.
        shapes += [(tuple(int(s.value) for s in b.shape), TORCH_DTYPES[b.dtype], False)
                   for b in self.program.scratch]
        named = [(f"size '{n}'", int(call.sizes[n])) for n in self.fn.size_names]
        if self.program.symbolic:
            from codegen.compiler import stride_arguments

            named += [(f"the stride of '{t}' along dimension {d}", st)
                      for t, d, st in stride_arguments(self.fn, call.sizes,
                                                       [t.stride() for t in call.inputs])]
        index = ScalarType.INT64 if self.program.index_bits == 64 else ScalarType.INT32
        scalars = [self._scalar(what, v, index) for what, v in named]
        # Kernels without a bounds check never write the error flag: one shared flag,
        # never read, saves an allocation and a read back per call.
        unused_err = (torch.zeros(1, dtype=torch.int32, device=call.device)
                      if not self.program.checks else None)
        # Each kernel with this call's launch configuration (a GPU kernel compiled for
        # every size launches the blocks the call needs: codegen.launch_config).
        kernels = self.program.kernels
        launches = tuple((i, call_kernel(kernels[i].kernel, call.sizes))
                         for i in host_mod.launches(self.program.host, call.sizes))
        return shapes, scalars, launches, unused_err

    def _scalar(self, what: str, value: int, index: ScalarType) -> int:
        """A size or stride argument, range-checked against the kernels' index type."""
        try:
            return KernelArg.scalar(value, index).value
        except TcBackendError:
            raise TcArgumentError(
                f"{self.fn.name}: {what} is {value}, which does not fit the kernels' {index} "
                "index arithmetic; compile again for these tensors (tc.define does it for "
                "you)") from None

    def _launch(self, index: int, kern, tensors: tuple, n_inputs: int, sizes: list[int]
                ) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("launch %s grid=%s block=%s", kern.name, kern.grid, kern.block)
        self.target.launch(self._compiled[index], kern, tensors, n_inputs, sizes)


@dataclass(frozen=True)
class CallShape:
    """What compiling needs of a call: its sizes, its inputs' strides and its
    signature (``BoundCall.signature()``); what a call is reduced to when it must
    travel to another process (the autotuner's compile workers have no tensors)."""

    sizes: Mapping[str, int]
    strides: tuple[tuple[int, ...], ...]
    signature: tuple

    @classmethod
    def of(cls, call: BoundCall) -> CallShape:
        """The shape of a bound call."""
        return cls(call.sizes, tuple(tuple(t.stride()) for t in call.inputs), call.signature())


def build_executor(fn, call: BoundCall | CallShape, options, target: str | Target,
                   arch: str | None = None,
                   check: Callable[[CompiledProgram], None] | None = None) -> Executor:
    """Compile ``fn`` for the signature of ``call`` under ``options`` with ``target``'s
    mapping strategy, and build it for ``target``: the one place where a program is
    compiled and turned into an executor.

    ``check`` sees the compiled program before the target builds it and may raise to
    stop there (the autotuner rejects programs its launch limits forbid without
    paying for the target's compiler)."""
    from codegen.compiler import compile_program

    shape = CallShape.of(call) if isinstance(call, BoundCall) else call
    target = get_target(target)
    program = compile_program(fn, options, shape.sizes, shape.strides, target.strategy,
                              uses_symbolic_sizes(target, options))
    if check is not None:
        check(program)
    return Executor(program, target, shape.signature, arch)
