"""Back ends: what runs a checked definition on bound arguments.

``reference`` is the numpy interpreter. Every other name is a compilation target
(:mod:`codegen.targets`): ``cpu`` (C + OpenMP by the system C compiler), ``opencl``
(the GPU mapping as OpenCL C on PoCL's CPU device, the GPU-faithful check) and
``cuda`` (CUDA C on a CUDA GPU; compiling works everywhere, launching needs a
device). With ``backend=None`` each call goes to the default target of its tensors'
device (:func:`codegen.targets.default_target`). Compiled executors are memoised per
(definition, input signature, options) in the back-end object, so repeated calls
never recompile.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Protocol

import torch

from tc.arguments import BoundCall, from_numpy, to_numpy
from tc.errors import TcBackendError, TcError
from tc.ir import interpret
from tc.ir import nodes as ir
from tc.ir.bounds import starts_from_contents
from tc.options import MappingOptions

log = logging.getLogger(__name__)



def backend_names() -> tuple[str, ...]:
    """``reference`` and the registered targets."""
    from codegen.targets import target_names

    return ("reference", *target_names(), "iree")

OptionsFor = Callable[[ir.Function, BoundCall], MappingOptions]


class Backend(Protocol):
    name: str

    def run(self, fn: ir.Function, call: BoundCall, options: OptionsFor,
            outputs: Sequence[torch.Tensor] | None = None) -> list[torch.Tensor]:
        """Compute ``fn``'s outputs for checked arguments. ``outputs`` (checked: the
        caller's ``outputs=``) are what a reduction without ``!`` into a tensor no
        earlier statement wrote accumulates into (otherwise zeros); they are not
        written here."""
        ...


class ReferenceBackend:
    """Runs the reference interpreter; inputs on any device, outputs on the inputs' device."""

    name = "reference"

    def run(self, fn: ir.Function, call: BoundCall, options: OptionsFor,
            outputs: Sequence[torch.Tensor] | None = None) -> list[torch.Tensor]:
        if call.device.type == "meta":
            raise TcBackendError(f"{fn.name}: meta tensors hold no data to compute on; pass "
                                 "CPU or CUDA tensors")
        arrays = {d.name: to_numpy(t) for d, t in zip(fn.inputs, call.inputs, strict=True)}
        initial = None
        if outputs is not None:
            wanted = starts_from_contents(fn)
            initial = {d.name: to_numpy(t) for d, t in zip(fn.outputs, outputs, strict=True)
                       if d.name in wanted}
        results = interpret.run(fn, arrays, call.sizes, initial)
        return [from_numpy(results[t.name], t.dtype, call.device) for t in fn.outputs]


class CompiledBackend:
    """Compiles through polyhedral/ and codegen/, memoising one executor per signature.

    With a compilation cache attached (:func:`attach_cache`), a signature whose options
    the cache holds with a compiled artefact runs that artefact: no scheduling, no
    compiling. Anything else (a miss, other options, an unusable artefact) compiles.
    """

    def __init__(self, name: str, arch: str | None = None) -> None:
        from codegen.targets import get_target

        self.target = get_target(name)
        self.name = self.target.name
        self.arch = arch
        self._executors: dict[tuple, object] = {}
        self._fast: dict[tuple, tuple] = {}  # see executor()
        self.cache = None  # an autotuner.cache.CompilationCache, or None
        self.canonicals: dict[ir.Function, str] = {}  # canonical texts, for cache keys
        self.store: set[ir.Function] = set()  # functions whose new kernels go to the cache
        self._unstored: set[tuple] = set()  # compiled here, stored after their first run

    def executor(self, fn: ir.Function, call: BoundCall, options: MappingOptions):
        """The executor for this call's signature (compiled on first use)."""
        # The per-call fast path: the exact signature seen before with the same options
        # object holding the same values (kept here, so their identity is sound). The
        # full key (a signature's class, split sums, index width) costs more than the
        # launch of a small kernel.
        fast = (fn, call.signature(), id(options))
        hit = self._fast.get(fast)
        if hit is not None and hit[0] is options.key():
            return hit[1]
        ex = self._executor(fn, call, options)
        if len(self._fast) >= 4096:
            self._fast.clear()
        self._fast[fast] = (options.key(), ex)
        return ex

    def _executor(self, fn: ir.Function, call: BoundCall, options: MappingOptions):
        from codegen.executor import build_executor, memo_key

        key = memo_key(fn, call, options, self.target)
        ex = self._executors.get(key)
        if ex is None:
            self.target.check_device(call.device)
            ex = self._from_cache(fn, call, options)
            if ex is None:
                log.info("compiling %s for %s on %s", fn.name, call.signature(), self.name)
                ex = build_executor(fn, call, options, self.target, self.arch)
                if self.cache is not None and fn in self.store:
                    self._unstored.add(key)
            self._executors[key] = ex
        return ex

    def _store(self, key: tuple, fn: ir.Function, call: BoundCall, options: MappingOptions,
               ex) -> None:
        """Write a kernel compiled here to the cache (after its first run, when the
        back end's binary is complete), as an untimed entry: tuning ranks it last."""
        self._unstored.discard(key)
        from autotuner.cache import cache_key

        try:
            ckey = cache_key(self.canonicals[fn], fn.name, call, self.name, self.arch)
            self.cache.store(ckey, options, (), ex.artifact())
        except TcError as e:
            log.warning("%s not stored in the compilation cache: %s", fn.name, e)
        else:
            log.info("stored %s for %s in %s", fn.name, call.signature(), self.cache.path)

    def _from_cache(self, fn: ir.Function, call: BoundCall, options: MappingOptions):
        """The executor of the cache's artefact for exactly these options, or None: the
        call's own key first; then, for a target that compiles these options for every
        size, the artefacts stored for other sizes of the definition (one serves the
        call when its class matches: checked by Executor.from_artifact)."""
        canonical = self.canonicals.get(fn)
        if self.cache is None or canonical is None:
            return None
        from autotuner.cache import cache_key
        from codegen.executor import uses_symbolic_sizes

        try:
            key = cache_key(canonical, fn.name, call, self.name, self.arch)
        except TcError as e:
            log.warning("compilation cache not consulted for %s: %s", fn.name, e)
            return None
        ex = self._load(fn, call, options, self.cache.lookup(key), exact=True)
        if ex is None and uses_symbolic_sizes(self.target, options):
            for _, entries in self.cache.related(key):
                ex = self._load(fn, call, options, entries, exact=False)
                if ex is not None:
                    break
        return ex

    def _load(self, fn: ir.Function, call: BoundCall, options: MappingOptions,
              entries, exact: bool):
        """The executor of the first of ``entries`` with these options and an artefact
        that serves ``call``, or None."""
        from codegen.artifact import ArtifactError, ArtifactMismatch
        from codegen.executor import Executor

        for entry in entries:
            if entry.options != options or entry.artifact is None:
                continue
            try:
                ex = Executor.from_artifact(entry.artifact, self.name, call.signature(),
                                            self.arch, fn=fn)
            except ArtifactMismatch as e:  # e.g. renamed identifiers: same options, recompile
                log.info("cached kernel of %s not reused (%s); compiling", fn.name, e)
            except ArtifactError as e:
                if exact:
                    log.warning("cached kernel of %s is unusable (%s); compiling", fn.name, e)
                else:  # stored for another size: of another class, or not size-generic
                    log.debug("cached kernel of %s does not serve this call (%s)", fn.name, e)
            except TcBackendError as e:
                log.warning("cached kernel of %s is unusable (%s); compiling", fn.name, e)
            else:
                if ex.program.options == options:
                    log.info("loaded %s for %s from the compilation cache%s", fn.name,
                             call.signature(), "" if exact else " (stored for other sizes)")
                    return ex
                log.warning("cached kernel of %s was compiled with other options than its "
                            "entry's; compiling", fn.name)
            return None
        return None

    def run(self, fn: ir.Function, call: BoundCall, options: OptionsFor,
            outputs: Sequence[torch.Tensor] | None = None) -> list[torch.Tensor]:
        opts = options(fn, call)
        ex = self.executor(fn, call, opts)
        results = ex.run(call, outputs)
        if self._unstored:  # only while a kernel compiled here awaits storing
            from codegen.executor import memo_key

            key = memo_key(fn, call, opts, self.target)
            if key in self._unstored:
                self._store(key, fn, call, opts, ex)
        return results


class AutoBackend:
    """``backend=None``: each call to the default target of its tensors' device."""

    name = "auto"

    def __init__(self) -> None:
        from codegen.targets import target_names

        self._by_name = {n: CompiledBackend(n) for n in target_names()}
        self._by_device: dict[str, CompiledBackend] = {}  # the default, per device type

    def pick(self, call: BoundCall) -> CompiledBackend:
        from codegen.targets import default_target

        kind = call.device.type
        backend = self._by_device.get(kind)
        if backend is None:
            backend = self._by_device[kind] = self._by_name[default_target(kind).name]
        return backend

    def run(self, fn: ir.Function, call: BoundCall, options: OptionsFor,
            outputs: Sequence[torch.Tensor] | None = None) -> list[torch.Tensor]:
        return self.pick(call).run(fn, call, options, outputs)


def attach_cache(backend: Backend, cache, canonicals: dict[ir.Function, str], *,
                 store: bool = False) -> None:
    """Let ``backend`` (compiled or auto) run the artefacts of compilation cache
    ``cache`` for the functions of ``canonicals`` (function -> canonical text), and with
    ``store`` write the kernels it compiles for them to the cache."""
    for b in getattr(backend, "_by_name", {}).values() or [backend]:
        if hasattr(b, "attach_cache"):  # the IREE back end: tc.mlir.backend
            b.attach_cache(cache, canonicals, store)
        elif isinstance(b, CompiledBackend):
            b.cache = cache
            b.canonicals.update(canonicals)
            if store:
                b.store.update(canonicals)


def get_backend(name: str | None, arch: str | None = None, *,
                target: str | None = None) -> Backend:
    """The back end called ``name`` (None: by the device of each call's tensors).

    ``"iree"`` exports to MLIR and runs with IREE (:mod:`tc.mlir.backend`) for the HAL
    ``target`` (default ``llvm-cpu``; ``"iree:TARGET"`` says the same)."""
    if isinstance(name, str) and (name == "iree" or name.startswith("iree:")):
        from tc.mlir.backend import IreeBackend

        return IreeBackend(target or name.partition(":")[2] or None)
    if target is not None:
        raise TcBackendError(f"target= names an IREE HAL target: it is for backend='iree', "
                             f"not {name!r}")
    if name is None:
        return AutoBackend()
    if name == "reference":
        return ReferenceBackend()
    if isinstance(name, str) and name in backend_names():
        return CompiledBackend(name, arch)
    raise TcBackendError(f"unknown backend {name!r}; choose one of "
                         f"{', '.join(backend_names())}")
