"""The public API: ``tc.define`` and the callable entry points it returns."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch

from tc import traced
from tc.arguments import TORCH_DTYPES, BoundCall, bind, check_outputs, output_shapes
from tc.backend import Backend, get_backend
from tc.errors import TcArgumentError, TcArgumentTypeError, TcError, TcGradientError
from tc.grad import Backward, derive
from tc.ir import nodes as ir
from tc.ir.bounds import starts_from_contents
from tc.lang.frontend import check_text
from tc.lang.printer import canonical_text
from tc.options import MappingOptions

if TYPE_CHECKING:
    from autotuner.cache import CompilationCache

OptionsFactory = Callable[..., MappingOptions]

_log = logging.getLogger(__name__)


def make_naive_options_factory() -> OptionsFactory:
    """An options factory that always returns ``MappingOptions("naive")``.

    Factories are called as ``factory(lang, entry_point, *inputs)``, as in the
    original Tensor Comprehensions.
    """

    def factory(lang: str, entry_point: str, *inputs: torch.Tensor) -> MappingOptions:
        return MappingOptions("naive")

    return factory


def make_load_from_cache_options_factory(cache_filename: str | os.PathLike | CompilationCache
                                         | None = None, *,
                                         backend: str | None = None,
                                         arch: str | None = None) -> OptionsFactory:
    """An options factory giving the best options of the compilation cache
    ``cache_filename`` (a path, None for the default cache, or an open
    ``CompilationCache``) for each input signature; for a signature the cache does not
    hold, the best options tuned for the nearest other sizes of the same definition
    (same dtypes and ranks), else naive options (with a logged warning).

    Its ``cache`` attribute (an ``autotuner.cache.CompilationCache``) is what
    ``tc.define(lang, factory)`` hands to its back end, so that a kernel stored with
    its compiled artefact runs with no scheduling and no compiling. ``backend`` (a
    target: "cpu", "opencl" or "cuda"; None: the default of the inputs' device) and
    ``arch`` (the CUDA architecture) pick the cache key's target.
    """
    from autotuner.cache import CompilationCache, cache_key

    cache = (cache_filename if isinstance(cache_filename, CompilationCache)
             else CompilationCache(cache_filename))

    from codegen.targets import default_target

    def factory(lang: str, entry_point: str, *inputs: Any) -> MappingOptions:
        fn = TC(lang, None, get_backend("reference"))[entry_point]
        call = fn.bind(*inputs)
        name = backend or default_target(call.device.type).name
        try:
            key = cache_key(fn.canonical, entry_point, call, name, arch)
            best = cache.best(key)
        except TcError as e:
            _log.warning("compilation cache not consulted for %s (%s): naive options",
                         entry_point, e)
            return MappingOptions("naive")
        if best is None:
            # Options tuned for other sizes of the definition (nearest first) suit this
            # one too, and with size-generic kernels the kernel itself may be reused.
            for other, entries in cache.related(key):
                if entries:
                    _log.info("options of %s tuned for inputs %s reused for %s", entry_point,
                              other.signature, call.signature()[:-1])
                    return entries[0].options.copy()
            _log.warning("no tuned options for %s with inputs %s in %s: naive options",
                         entry_point, call.signature()[:-1], cache.path)
            return MappingOptions("naive")
        return best.options.copy()

    factory.cache = cache  # type: ignore[attr-defined]
    return factory


class TcFunction:
    """One entry point of a TC text; call it on torch tensors."""

    def __init__(self, unit: TC, fn: ir.Function, canonical: str) -> None:
        self._unit = unit
        self.ir = fn
        self.canonical = canonical
        self._backward: dict[tuple[int, ...] | None, Backward | TcGradientError] = {}
        self._gradient: dict[tuple[int, ...] | None, TcFunction] = {}
        #: The name of the torch operator this entry point becomes when torch traces
        #: it (tc.traced): a string, which Dynamo treats as a constant.
        self._key = traced.key_for(self, fn.name)

    @property
    def name(self) -> str:
        return self.ir.name

    def __repr__(self) -> str:
        ins = ", ".join(t.name for t in self.ir.inputs)
        outs = ", ".join(t.name for t in self.ir.outputs)
        return f"<tc function {self.name}({ins}) -> ({outs})>"

    def bind(self, *inputs: Any) -> BoundCall:
        """Check the arguments and bind the size symbols, without running anything."""
        return bind(self.ir, inputs)

    def _reads_outputs(self) -> bool:
        """Whether a reduction without ``!`` accumulates into an output's contents."""
        names = starts_from_contents(self.ir)
        return any(t.name in names for t in self.ir.outputs)

    @property
    def differentiable_inputs(self) -> tuple[int, ...]:
        """Indices of the inputs that get a gradient (the floating-point ones)."""
        return tuple(k for k, t in enumerate(self.ir.inputs) if t.dtype.is_float)

    @property
    def differentiable_outputs(self) -> tuple[int, ...]:
        """Indices of the results that carry a gradient (the floating-point ones)."""
        return tuple(k for k, t in enumerate(self.ir.outputs) if t.dtype.is_float)

    def output_shapes(self, *inputs: Any) -> list[tuple[tuple[int, ...], torch.dtype]]:
        """The results' shapes and dtypes for these inputs, computing nothing (the
        arguments are checked as by a call; meta and fake tensors are fine)."""
        call = bind(self.ir, inputs)
        return [(shape, TORCH_DTYPES[t.dtype])
                for shape, t in zip(output_shapes(self.ir, call.sizes), self.ir.outputs,
                                    strict=True)]

    def _wrt(self, wrt: Sequence[int | str] | None) -> tuple[int, ...] | None:
        """``wrt`` (input names or indices, as ``python -m tc grad --wrt``) as indices
        of floating-point inputs; None for all of them."""
        if wrt is None:
            return None
        if isinstance(wrt, str | int):
            wrt = [wrt]
        names = [t.name for t in self.ir.inputs]
        floats = [names[k] for k in self.differentiable_inputs]
        wanted = set()
        for w in wrt:
            if isinstance(w, str):
                if w not in names:
                    raise TcGradientError(f"{self.name}: wrt names {w!r}, which is not an "
                                          f"input; the inputs are {', '.join(names)}")
                w = names.index(w)
            elif not isinstance(w, int) or isinstance(w, bool) or not 0 <= w < len(names):
                raise TcGradientError(f"{self.name}: wrt={list(wrt)}: give input names or "
                                      f"indices 0..{len(names) - 1}")
            if w not in self.differentiable_inputs:
                raise TcGradientError(f"{self.name}: input {names[w]!r} is not floating-point "
                                      f"and has no gradient; choose among {', '.join(floats)}")
            wanted.add(w)
        chosen = tuple(k for k in self.differentiable_inputs if k in wanted)
        if not chosen:
            raise TcGradientError(f"{self.name}: wrt is empty; choose among "
                                  f"{', '.join(floats)}")
        return None if chosen == self.differentiable_inputs else chosen

    def _derived(self, wrt: tuple[int, ...] | None) -> Backward:
        bw = self._backward.get(wrt)
        if bw is None:
            try:
                bw = derive(self.ir, wrt=wrt)
            except TcGradientError as e:
                bw = e
            self._backward[wrt] = bw
        if isinstance(bw, TcGradientError):
            raise bw
        return bw

    def gradient_text(self, wrt: Sequence[int | str] | None = None) -> str:
        """The TC text of the derived backward definition (see :meth:`gradient`)."""
        return self._derived(self._wrt(wrt)).text

    def gradient(self, wrt: Sequence[int | str] | None = None) -> TcFunction:
        """The automatically derived backward definition, as an entry point.

        It takes the inputs, then the gradient of each floating-point result, and
        returns the gradient of each floating-point input (of those ``wrt`` names, by
        input name or index, when given); it compiles (and uses the cache) like any
        definition of this unit, its options asked of the unit's options factory with
        the backward's text and name. Raises :class:`tc.TcGradientError`, naming the
        statement, when the definition cannot be differentiated.
        """
        key = self._wrt(wrt)
        fn = self._gradient.get(key)
        if fn is None:
            bw = self._derived(key)
            fn = self._gradient[key] = self._unit.derived_unit(bw.text)[bw.name]
        return fn

    def run_bound(self, call: BoundCall, outputs: Sequence[torch.Tensor] | None = None
                  ) -> list[torch.Tensor]:
        """The results of checked arguments (:meth:`bind`) as a list, without recording
        anything for autograd; ``outputs`` (checked) are what a reduction without ``!``
        into an unwritten output accumulates into (see :meth:`__call__`)."""
        if outputs is not None and self._reads_outputs():
            return self._unit.backend.run(self.ir, call, self._unit.options_for, outputs)
        return self._unit.backend.run(self.ir, call, self._unit.options_for)

    def __call__(
        self, *inputs: Any, outputs: Sequence[torch.Tensor] | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """Run the definition; returns one tensor, or a tuple in the declared result order.

        ``outputs=`` gives preallocated tensors to write into (and return); a reduction
        without ``!`` into an output no earlier statement wrote (``C(m, n) += A(m, k) *
        B(k, n)``) accumulates into their contents (A·B + C), and into zeros without
        ``outputs=`` (docs/language.md section 2). When grad
        mode is on and a floating-point input requires grad, the call is recorded for
        autograd: its backward runs the derived backward (:meth:`gradient`).
        """
        from tc.autograd import needs_grad, run_differentiable

        if traced.tracing(inputs):  # torch.compile, torch.export: an operator node
            if outputs is not None and self._reads_outputs():
                raise TcArgumentError(
                    f"{self.name}: a reduction without '!' accumulates into outputs=, "
                    "which a traced call (torch.compile, torch.export) cannot pass to tc's "
                    "operator; add the outputs' contents after the call, or call it "
                    "eagerly")
            results = traced.call(self._key, self, inputs)
            if outputs is None:
                return results
            outs = [outputs] if isinstance(outputs, torch.Tensor) else list(outputs)
            for dst, src in zip(outs, [results] if isinstance(results, torch.Tensor)
                                else results, strict=True):
                dst.copy_(src)
            return outs[0] if len(outs) == 1 else tuple(outs)
        call = bind(self.ir, inputs)
        if outputs is not None:
            if isinstance(outputs, torch.Tensor):
                outputs = (outputs,)
            check_outputs(self.ir, call, list(outputs))
        if needs_grad(call.inputs) and self.differentiable_inputs:
            if outputs is not None:
                raise TcArgumentError(f"{self.name}: outputs= cannot be used when an input "
                                      "requires grad (autograd needs fresh outputs); call it "
                                      "under torch.no_grad() or drop outputs=")
            results = run_differentiable(self, call)
        else:
            results = self.run_bound(call, outputs)
        if outputs is not None:
            for dst, src in zip(outputs, results, strict=True):
                dst.copy_(src)
            results = list(outputs)
        return results[0] if len(results) == 1 else tuple(results)


class TC:
    """The entry points of a TC text: ``T.name(...)`` or ``T["name"](...)``."""

    def __init__(self, lang: str, options_factory: OptionsFactory | None, backend: Backend,
                 cache: CompilationCache | None = None, *, store: bool = False) -> None:
        self.lang = lang
        self.options_factory = options_factory
        self.backend = backend
        self.cache = cache
        self.store = store  # whether compiled kernels are written to the cache
        self._options: dict[tuple, MappingOptions] = {}
        checked = check_text(lang)
        #: The text's :class:`tc.TcWarning` s; :func:`define` emits them.
        self.warnings = checked.warnings
        self._functions = {
            name: TcFunction(self, fn, canonical_text(checked.definition(name)))
            for name, fn in checked.functions.items()
        }
        self._derived: dict[str, TC] = {}
        if cache is not None:
            from tc.backend import attach_cache

            attach_cache(backend, cache, {f.ir: f.canonical for f in self._functions.values()},
                         store=store)

    def derived_unit(self, text: str) -> TC:
        """A unit for a text derived from this one (a backward): same options factory,
        back end (so compiled kernels are shared) and compilation cache."""
        unit = self._derived.get(text)
        if unit is None:
            unit = TC(text, self.options_factory, self.backend, self.cache, store=self.store)
            self._derived[text] = unit
        return unit

    def options_for(self, fn: ir.Function, call: BoundCall) -> MappingOptions:
        """The mapping options of an entry point for a call's signature: asked of the
        options factory once per signature; without a factory, the tuned options of
        the compilation cache (``cache=``) for exactly this signature when it holds
        some (:meth:`_tuned`), else the target's default
        (:func:`tc.defaults.default_options`), chosen once per signature class from
        the first call's sizes, so that a kernel compiled for every size serves the
        later batch sizes too."""
        key = (fn.name, call.signature())
        opts = self._options.get(key)
        if opts is None:
            if self.options_factory is None:
                from codegen.executor import signature_class

                wide = (fn.name, "default", signature_class(call.signature()))
                opts = self._tuned(fn, call)
                if opts is None:
                    opts = self._options.get(wide)
                if opts is None:
                    opts = self._options[wide] = self._default(fn, call)
            else:
                opts = self.options_factory(self.lang, fn.name, *call.inputs)
                if not isinstance(opts, MappingOptions):
                    raise TcArgumentTypeError(
                        f"the options factory returned {type(opts).__name__}, not "
                        "tc.MappingOptions")
            self._options[key] = opts
        return opts

    def _tuned(self, fn: ir.Function, call: BoundCall) -> MappingOptions | None:
        """The best options of the compilation cache for this exact call when they were
        tuned (a timed entry: ``tc.autotune(..., store_to_cache=True)`` or ``python -m
        tc tune --untimed``), else None. Untimed entries (kernels stored as compiled
        with the default options) and other sizes do not count."""
        from tc.backend import CompiledBackend

        function = self._functions.get(fn.name)
        if self.cache is None or function is None or function.ir is not fn:
            return None
        from autotuner.cache import cache_key

        try:
            pick = getattr(self.backend, "pick", None)  # backend=None: by the call's device
            backend = pick(call) if pick is not None else self.backend
            if not isinstance(backend, CompiledBackend):
                return None
            key = cache_key(function.canonical, fn.name, call, backend.name, backend.arch)
        except TcError as e:  # the default path reports what is wrong with the call
            _log.debug("compilation cache not consulted for the options of %s: %s", fn.name,
                       e)
            return None
        best = self.cache.best(key)
        if best is None or not best.timed:
            return None
        _log.info("tuned options of %s for %s from %s", fn.name, call.signature()[:-1],
                  self.cache.path)
        return best.options.copy()

    def _default(self, fn: ir.Function, call: BoundCall) -> MappingOptions:
        from tc.defaults import default_options

        pick = getattr(self.backend, "pick", None)  # backend=None: by the call's device
        target = pick(call).target if pick is not None else getattr(self.backend, "target",
                                                                     None)
        if target is None:  # the reference interpreter takes no options
            return MappingOptions("naive")
        return default_options(fn, call, target)

    @property
    def entry_points(self) -> tuple[str, ...]:
        return tuple(self._functions)

    def __getitem__(self, name: str) -> TcFunction:
        try:
            return self._functions[name]
        except (KeyError, TypeError):
            raise TcArgumentError(
                f"no definition named {name!r}; the text defines "
                f"{', '.join(self._functions) or 'nothing'}"
            ) from None

    def __getattr__(self, name: str) -> TcFunction:
        if name.startswith("_"):
            raise AttributeError(name)
        return self[name]

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(self._functions))

    def __repr__(self) -> str:
        return f"<tc.TC entry points: {', '.join(self._functions)}>"


def define(lang: str, options_factory: OptionsFactory | None = None, *,
           backend: str | None = None,
           cache: bool | str | os.PathLike | CompilationCache | None = None,
           target: str | None = None) -> TC:
    """Parse and check every definition of ``lang``; an invalid text raises here.

    ``backend`` is ``"reference"`` (the numpy interpreter), ``"cpu"`` (C + OpenMP
    kernels built by the system C compiler), ``"opencl"`` (the GPU kernels on PoCL's
    CPU device: the GPU-faithful check), ``"cuda"`` (kernels on a CUDA GPU), ``"iree"``
    (exported to MLIR and run by IREE for the IREE HAL ``target``, default ``llvm-cpu``:
    docs/mlir.md), or None:
    CUDA tensors go to ``"cuda"``, CPU tensors to ``"cpu"`` (``"opencl"`` where no C
    compiler exists). ``options_factory(lang, entry_point, *inputs)`` supplies the
    mapping options of compiled back ends; without one, a cheap per-target default
    (:func:`tc.defaults.default_options`) is used, and
    ``tc.make_naive_options_factory()`` gives the naive options.

    ``cache`` (True for the default file, a path, or an
    ``autotuner.cache.CompilationCache``) is an on-disk compilation cache that the
    kernels of this text, and of the backwards derived from it, are loaded from and
    stored into: a second process with the same cache compiles nothing. Without an
    options factory, a call whose key the cache holds tuned options for (stored by
    ``tc.autotune(..., store_to_cache=True)`` or ``python -m tc tune --untimed``) runs
    with them instead of the default options. Without ``cache``, a
    factory with a ``cache`` attribute (as from
    :func:`make_load_from_cache_options_factory`) lends its cached kernels read-only.

    A text that is valid but probably not what was meant emits a :class:`tc.TcWarning`
    with its position (docs/language.md section 5); ``warnings.simplefilter("error",
    tc.TcWarning)`` makes it raise instead.
    """
    if cache is not None and cache is not False:
        from autotuner.cache import CompilationCache

        store = (cache if isinstance(cache, CompilationCache)
                 else CompilationCache(None if cache is True else cache))
        unit = TC(lang, options_factory, get_backend(backend, target=target), store,
                  store=True)
    else:
        unit = TC(lang, options_factory, get_backend(backend, target=target),
                  getattr(options_factory, "cache", None))
    # Emitted here, not by the front end: the texts tc derives and re-checks itself
    # (backwards, cache look-ups) must not repeat them.
    for w in unit.warnings:
        warnings.warn(w, stacklevel=2)
    return unit


def compile(lang: str, entry_point: str, mapping_options: MappingOptions | None,  # noqa: A001
            *inputs: Any, backend: str | None = None, arch: str | None = None):
    """Compile one definition for the signature of ``inputs``; returns an executor.

    ``executor(*inputs, outputs=None)`` runs it; ``executor.kernels`` lists each kernel
    with ``.source``, ``.grid``, ``.block`` and, for CUDA, ``.ptx`` and ``.resources``.
    ``backend`` is a target, ``"cpu"``, ``"opencl"`` or ``"cuda"`` (None: the default of
    the inputs' device); ``arch`` picks the CUDA architecture (default: the device's, or
    sm_80 without one). CUDA kernels compile without a GPU; running them needs one.
    ``mapping_options=None`` takes the target's default options for these sizes
    (:func:`tc.defaults.default_options`), as ``tc.define`` does without a factory.
    """
    from codegen.targets import get_target, target_names
    from tc.backend import CompiledBackend

    if mapping_options is not None and not isinstance(mapping_options, MappingOptions):
        raise TcArgumentTypeError("mapping_options must be a tc.MappingOptions or None")
    fn = TC(lang, None, get_backend("reference"))[entry_point].ir
    call = bind(fn, inputs)
    if backend is None:
        from codegen.targets import default_target

        backend = default_target(call.device.type).name
    try:
        target = get_target(backend)
    except TcError:
        raise TcArgumentError(f"tc.compile needs a compiled backend "
                              f"({', '.join(target_names())}), "
                              f"not {backend!r}") from None
    if mapping_options is None:
        from tc.defaults import default_options

        mapping_options = default_options(fn, call, target)
    if not target.available():
        # Compiling needs no device (NVRTC works without a GPU); only running does.
        from codegen.executor import build_executor

        return build_executor(fn, call, mapping_options, target, arch)
    return CompiledBackend(backend, arch).executor(fn, call, mapping_options)
