"""Compiling an MLIR export with IREE and running it (the optional extra ``.[mlir]``).

``iree.compiler`` turns the text into a VM flatbuffer for a HAL target (``llvm-cpu``
by default, for the host's CPU features); ``iree.runtime`` loads it in a context of
the target's driver and calls the function on numpy arrays. Traps:

* IREE demotes float64 to float32 by default (``--iree-input-demote-f64-to-f32``):
  switched off, the export's types are the interpreter's;
* IREE's CPU code has no libm: a ``math`` op it cannot expand into polynomials
  (``math.erfc`` in float32, most float64 functions but ``exp``/``log``) fails to
  link; :func:`compile_module` raises :class:`TcBackendError` with the diagnostics;
* bfloat16 arrays cross the boundary as ``ml_dtypes.bfloat16`` (the interpreter keeps
  them in float32): :func:`to_device` and :func:`from_device` convert.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tc.errors import TcBackendError
from tc.ir.types import ScalarType

__all__ = ["IreeModule", "available", "compile_module", "driver_of", "load", "missing_reason"]

log = logging.getLogger(__name__)

#: IREE HAL target backend -> the runtime driver that runs its code.
_DRIVERS = {"llvm-cpu": "local-task", "vmvx": "local-task", "cuda": "cuda", "rocm": "hip",
            "vulkan-spirv": "vulkan", "metal-spirv": "metal"}


@functools.cache
def missing_reason() -> str | None:
    """None when ``iree.compiler`` and ``iree.runtime`` import, else why not."""
    try:
        import iree.compiler  # noqa: F401
        import iree.runtime  # noqa: F401
    except ImportError as e:
        return f"IREE is not installed ({e}); pip install '.[mlir]'"
    return None


def available() -> bool:
    """Whether IREE's compiler and runtime are installed."""
    return missing_reason() is None


def _require() -> None:
    reason = missing_reason()
    if reason is not None:
        raise TcBackendError(reason)


def driver_of(target: str) -> str:
    """The runtime driver for a HAL target backend (``llvm-cpu`` -> ``local-task``)."""
    return _DRIVERS.get(target, target)


def compile_flags(target: str = "llvm-cpu") -> list[str]:
    """The compiler flags of the export: host CPU features for ``llvm-cpu``, no f64
    demotion."""
    flags = ["--iree-input-demote-f64-to-f32=false"]
    if target == "llvm-cpu":
        flags.append("--iree-llvmcpu-target-cpu=host")
    return flags


def compile_module(text: str, target: str = "llvm-cpu") -> bytes:
    """The VM flatbuffer of MLIR ``text`` for HAL target ``target``; raises
    :class:`TcBackendError` with IREE's diagnostics when it does not compile."""
    _require()
    import iree.compiler as ic

    try:
        return ic.compile_str(text, target_backends=[target], extra_args=compile_flags(target))
    except ic.CompilerToolError as e:
        lines = [ln for ln in str(e).splitlines() if "error" in ln][:8]
        raise TcBackendError(f"IREE could not compile the export for {target}:\n"
                             + "\n".join(lines or str(e).splitlines()[:8])) from None


@functools.cache
def _config(driver: str):
    import iree.runtime as rt

    return rt.Config(driver)


@dataclass
class IreeModule:
    """A loaded module: call :meth:`run` with numpy arrays (in the declared order)."""

    entry: str
    context: object
    function: object
    output_types: tuple[ScalarType, ...]

    def run(self, arrays: Sequence[np.ndarray], input_types: Sequence[ScalarType]
            ) -> list[np.ndarray]:
        args = [to_device(a, t) for a, t in zip(arrays, input_types, strict=True)]
        out = self.function(*args)
        outs = list(out) if isinstance(out, tuple | list) else [out]
        return [from_device(o, t) for o, t in zip(outs, self.output_types, strict=True)]


def load(vmfb: bytes, entry: str, output_types: Sequence[ScalarType],
         target: str = "llvm-cpu") -> IreeModule:
    """Load a compiled module in a fresh context of the target's driver."""
    _require()
    import iree.runtime as rt

    try:
        ctx = rt.SystemContext(config=_config(driver_of(target)))
        ctx.add_vm_module(rt.VmModule.copy_buffer(ctx.instance, vmfb))
        fn = ctx.modules.module[entry]
    except (RuntimeError, ValueError, KeyError) as e:
        raise TcBackendError(f"IREE could not load {entry} for {target}: {e}") from None
    return IreeModule(entry, ctx, fn, tuple(output_types))


def to_device(a: np.ndarray, t: ScalarType) -> np.ndarray:
    """A numpy array of the interpreter's storage type as IREE wants it."""
    a = np.asarray(a, order="C")  # ascontiguousarray would make a 0-d array 1-d
    if t is ScalarType.BFLOAT16:
        import ml_dtypes

        return a.astype(np.float32).astype(ml_dtypes.bfloat16)
    return a


def from_device(value, t: ScalarType) -> np.ndarray:
    """An IREE result as a numpy array of the interpreter's storage type."""
    a = value.to_host() if hasattr(value, "to_host") else np.asarray(value)
    a = np.asarray(a)
    if t is ScalarType.BFLOAT16:
        return a.astype(np.float32)
    return a.astype(t.numpy_dtype, copy=False)
