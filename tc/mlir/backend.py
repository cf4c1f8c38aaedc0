"""``backend="iree"``: a definition exported to MLIR and run by IREE.

Per input signature (dtypes and shapes; the export takes contiguous copies, so
strides do not matter) the definition is exported with static shapes
(:mod:`tc.mlir.export`), compiled by ``iree.compiler`` for a HAL target (``llvm-cpu``
for the host's CPU features by default) and loaded once; later calls of the
signature only convert the tensors. With a compilation cache attached
(``tc.define(..., cache=...)``) the compiled module (the VM flatbuffer) is stored under
a key of its own backend name, ``iree-<target>``, so a second process compiles
nothing. Mapping options do not apply: IREE schedules the code itself.

Not supported: ``outputs=`` whose contents a reduction without ``!`` would accumulate
into (the export starts every output from zeros); meta tensors.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import pathlib
import platform
from collections.abc import Callable, Sequence

import torch

from tc.arguments import BoundCall, from_numpy, to_numpy
from tc.errors import TcBackendError, TcError
from tc.ir import nodes as ir
from tc.mlir import run as iree
from tc.mlir.export import export_function

__all__ = ["IreeBackend", "data_dependent_reads", "reads_output_contents"]

log = logging.getLogger(__name__)


def reads_output_contents(fn: ir.Function) -> bool:
    """Whether a reduction without ``!`` accumulates into an output no earlier
    statement wrote (its contents would come from ``outputs=``)."""
    written: set[str] = set()
    outputs = {t.name for t in fn.outputs}
    for st in fn.stages:
        if st.tensor in outputs and st.tensor not in written and st.op is not None \
                and not st.init:
            return True
        written.add(st.tensor)
    return False


@functools.cache
def _fingerprint() -> str:
    """A digest of the sources that shape an export (front end, IR, the exporter)."""
    root = pathlib.Path(__file__).parent.parent
    h = hashlib.sha256()
    for folder in ("lang", "ir", "mlir"):
        for p in sorted((root / folder).rglob("*")):
            if p.suffix in (".py", ".lark"):
                h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:12]


@functools.cache
def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


class IreeBackend:
    """Runs definitions through IREE (see the module docstring)."""

    def __init__(self, target: str | None = None) -> None:
        self.hal_target = target or "llvm-cpu"
        self.name = "iree"
        self._modules: dict[tuple, iree.IreeModule] = {}
        self.cache = None  # an autotuner.cache.CompilationCache, or None
        self.canonicals: dict[ir.Function, str] = {}
        self.store: set[ir.Function] = set()

    def attach_cache(self, cache, canonicals: dict[ir.Function, str], store: bool) -> None:
        """Load compiled modules from ``cache`` (and store new ones with ``store``)."""
        self.cache = cache
        self.canonicals.update(canonicals)
        if store:
            self.store.update(canonicals)

    def module(self, fn: ir.Function, call: BoundCall) -> iree.IreeModule:
        """The loaded module of ``fn`` for the call's signature (compiled on first use)."""
        key = (fn, tuple((t.dtype, tuple(t.shape)) for t in call.inputs))
        mod = self._modules.get(key)
        if mod is None:
            vmfb = self._cached(fn, call)
            if vmfb is None:
                log.info("compiling %s for %s with IREE (%s)", fn.name, call.signature(),
                         self.hal_target)
                vmfb = iree.compile_module(export_function(fn, call.sizes), self.hal_target)
                self._store(fn, call, vmfb)
            mod = iree.load(vmfb, fn.name, [t.dtype for t in fn.outputs], self.hal_target)
            self._modules[key] = mod
        return mod

    def run(self, fn: ir.Function, call: BoundCall, options: Callable | None = None,
            outputs: Sequence[torch.Tensor] | None = None) -> list[torch.Tensor]:
        """Compute ``fn``'s outputs; ``options`` (mapping options) do not apply."""
        if call.device.type == "meta":
            raise TcBackendError(f"{fn.name}: meta tensors hold no data to compute on; pass "
                                 "CPU tensors")
        if outputs is not None and reads_output_contents(fn):
            raise TcBackendError(f"{fn.name}: backend='iree' starts every output from zeros; "
                                 "it cannot accumulate into the contents of outputs= (add "
                                 "them after the call, or use another backend)")
        mod = self.module(fn, call)
        if data_dependent_reads(fn):
            # The module clamps subscripts it cannot prove in bounds; a subscript read
            # from data is checked first by the reference (a positioned TcRangeError),
            # so a wrong index never becomes a plausible answer. It costs a run of the
            # interpreter: such definitions are better run on the compiled targets,
            # whose kernels check their own reads.
            from tc.backend import ReferenceBackend

            ReferenceBackend().run(fn, call, None)
        arrays = [to_numpy(t) for t in call.inputs]
        outs = mod.run(arrays, [t.dtype for t in fn.inputs])
        return [from_numpy(o, t.dtype, call.device) for o, t in zip(outs, fn.outputs,
                                                                      strict=True)]

    # -- the on-disk cache -------------------------------------------------------------
    def _key(self, fn: ir.Function, call: BoundCall):
        from importlib.metadata import version

        from autotuner.cache import CacheKey, signature_text

        canonical = self.canonicals[fn]
        device = f"{self.hal_target} on {_cpu_model()} ({platform.machine()}), cpu=host"
        versions = (f"tc export {_fingerprint()}; iree-compiler "
                    f"{version('iree-base-compiler')}; flags "
                    f"{' '.join(iree.compile_flags(self.hal_target))}")
        return CacheKey.create(canonical, fn.name, signature_text(call),
                               f"iree-{self.hal_target}", device, versions)

    def _cached(self, fn: ir.Function, call: BoundCall) -> bytes | None:
        if self.cache is None or fn not in self.canonicals:
            return None
        try:
            entries = self.cache.lookup(self._key(fn, call))
        except TcError as e:
            log.warning("compilation cache not consulted for %s: %s", fn.name, e)
            return None
        for entry in entries:
            if entry.artifact:
                log.info("loaded %s for %s from the compilation cache", fn.name,
                         call.signature())
                return entry.artifact
        return None

    def _store(self, fn: ir.Function, call: BoundCall, vmfb: bytes) -> None:
        if self.cache is None or fn not in self.store:
            return
        from tc.options import MappingOptions

        try:
            self.cache.store(self._key(fn, call), MappingOptions("naive"), (), vmfb)
        except TcError as e:
            log.warning("%s not stored in the compilation cache: %s", fn.name, e)


def data_dependent_reads(fn: ir.Function) -> bool:
    """Whether a subscript of ``fn`` reads a tensor (``X(idx(i))``): the reads whose
    bounds depend on data, which no analysis of the text can prove."""
    return any(isinstance(r, ir.Read) and any(isinstance(n, ir.Read) and n.indices
                                              for i in r.indices for n in ir.walk(i))
               for st in fn.stages for r in ir.walk(st.rhs))
