"""Checking call arguments against a definition, binding its sizes, and dtype mapping.

Shared by every back end, so that the code path tested on the CPU is the one that
runs on a GPU.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from tc.errors import TcArgumentError, TcArgumentTypeError, TcRangeError
from tc.ir import nodes as ir
from tc.ir.index_width import size_index_bits
from tc.ir.sym import Sym
from tc.ir.types import ScalarType

TORCH_DTYPES: dict[ScalarType, torch.dtype] = {
    ScalarType.BOOL: torch.bool,
    ScalarType.INT8: torch.int8,
    ScalarType.INT16: torch.int16,
    ScalarType.INT32: torch.int32,
    ScalarType.INT64: torch.int64,
    ScalarType.UINT8: torch.uint8,
    ScalarType.UINT16: torch.uint16,
    ScalarType.UINT32: torch.uint32,
    ScalarType.UINT64: torch.uint64,
    ScalarType.FLOAT16: torch.float16,
    ScalarType.BFLOAT16: torch.bfloat16,
    ScalarType.FLOAT32: torch.float32,
    ScalarType.FLOAT64: torch.float64,
}
SCALAR_TYPES: dict[torch.dtype, ScalarType] = {v: k for k, v in TORCH_DTYPES.items()}


@dataclass(frozen=True)
class BoundCall:
    """Checked inputs of one call, the sizes they bind, and their device."""

    inputs: tuple[torch.Tensor, ...]
    sizes: dict[str, int]
    device: torch.device

    def signature(self) -> tuple:
        """What a compiled kernel depends on: dtypes, shapes and strides, device
        (computed once per call: the memo lookup and the executor both ask)."""
        sig = self.__dict__.get("_signature")
        if sig is None:
            sig = tuple((t.dtype, tuple(t.shape), tuple(t.stride())) for t in self.inputs) + (
                str(self.device),)
            object.__setattr__(self, "_signature", sig)
        return sig


def _as_tensor(value, decl: ir.TensorDecl, fn: ir.Function) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    if decl.rank == 0 and isinstance(value, bool | int | float | np.generic):
        if isinstance(value, float) and not decl.dtype.is_float:
            raise TcArgumentTypeError(f"{fn.name}: argument '{decl.name}' is {decl.dtype}; got "
                                      f"the float {value!r}")
        return torch.tensor(value, dtype=TORCH_DTYPES[decl.dtype])
    raise TcArgumentTypeError(f"{fn.name}: argument '{decl.name}' must be a torch.Tensor, got "
                              f"{type(value).__name__}")


def _plan(fn: ir.Function) -> tuple:
    """Per input of ``fn``: its declaration, torch dtype, rank and, per dimension, its
    constant extent or size name; kept on ``fn`` (a call's argument checks are the
    per-call overhead of every back end, so they read this rather than the IR)."""
    plan = fn.__dict__.get("_bind_plan")
    if plan is None:
        plan = tuple((decl, TORCH_DTYPES[decl.dtype], decl.rank,
                      tuple((k, sym.const if sym.is_const else None,
                             None if sym.is_const else next(iter(sym.symbols())))
                            for k, sym in enumerate(decl.shape)))
                     for decl in fn.inputs)
        object.__setattr__(fn, "_bind_plan", plan)
    return plan


def bind(fn: ir.Function, args: Sequence[object]) -> BoundCall:
    """Check ``args`` against ``fn``'s parameters and bind its size symbols."""
    plan = _plan(fn)
    if len(args) != len(plan):
        names = ", ".join(t.name for t in fn.inputs)
        raise TcArgumentError(f"{fn.name} takes {len(fn.inputs)} input"
                              f"{'' if len(fn.inputs) == 1 else 's'} ({names}), got {len(args)}")
    tensors = []
    sizes: dict[str, int] = {}
    origin: dict[str, str] = {}
    device = None
    one_device = True
    for value, (decl, want, rank, dims) in zip(args, plan, strict=True):
        t = _as_tensor(value, decl, fn)
        if t.dtype != want:
            raise TcArgumentTypeError(f"{fn.name}: argument '{decl.name}' must have dtype "
                                      f"{want}, got {t.dtype}")
        shape = t.shape
        if len(shape) != rank:
            text = ", ".join(map(str, decl.shape))
            raise TcArgumentError(f"{fn.name}: argument '{decl.name}' must have {decl.rank} "
                                  f"dimension{'' if decl.rank == 1 else 's'} ({text}), got "
                                  f"shape {tuple(t.shape)}")
        for k, const, name in dims:
            extent = shape[k]
            if const is not None:
                if extent != const:
                    raise TcArgumentError(f"{fn.name}: dimension {k} of '{decl.name}' must be "
                                          f"{const}, got {extent}")
                continue
            if name in sizes:
                if sizes[name] != extent:
                    raise TcArgumentError(f"{fn.name}: size '{name}' is {sizes[name]} from "
                                          f"{origin[name]} but {extent} from '{decl.name}' "
                                          f"(dimension {k})")
                continue
            # A symbolic size (torch.SymInt, when torch.export or torch.compile traces with
            # dynamic shapes) stays symbolic, so that output shapes follow it.
            sizes[name] = extent if isinstance(extent, torch.SymInt) else int(extent)
            origin[name] = f"'{decl.name}' (dimension {k})"
        if device is None:
            device = t.device
        elif t.device != device:
            one_device = False
        tensors.append(t)
    if not one_device:
        where = ", ".join(f"{d.name} on {t.device}" for d, t in zip(fn.inputs, tensors,
                                                                     strict=True))
        raise TcArgumentError(f"{fn.name}: all tensors must be on one device; got {where}")
    if not all(type(v) is int for v in sizes.values()):
        check_ranges(fn, sizes)  # symbolic sizes (torch.compile tracing)
    else:
        key = tuple(sizes.items())
        checked = fn.__dict__.get("_checked_ranges")
        if checked is None:
            checked = set()
            object.__setattr__(fn, "_checked_ranges", checked)
        if key not in checked:
            check_ranges(fn, sizes)
            # Sizes beyond 64-bit index arithmetic, named here for every back end.
            size_index_bits(fn, sizes)
            if len(checked) < 4096:
                checked.add(key)  # these sizes passed: later calls with them need not redo it
    return BoundCall(tuple(tensors), sizes, device or torch.device("cpu"))


def check_ranges(fn: ir.Function, sizes: Mapping[str, int]) -> None:
    """Reject, with the statement's position, a left-hand index that takes negative
    values and a tensor whose extent is negative for these sizes. A range that is empty
    for these sizes is fine: its statement does nothing (docs/language.md section 5)."""
    for st in fn.stages:
        bounds = [(d, d.lo.evaluate(sizes), d.hi.evaluate(sizes)) for d in st.domain]
        if any(hi <= lo for _, lo, hi in bounds):
            continue
        for d, lo, hi in bounds[: len(st.lhs)]:
            if lo < 0:
                _range_error(fn, st, f"index '{d.name}' of '{st.tensor}' ranges over "
                             f"{d.lo}:{d.hi} = {lo}:{hi}{_given(d.lo, d.hi, sizes)}, which is "
                             "negative; check the input sizes")
    for t in fn.outputs + fn.temps:
        for k, ext in enumerate(t.shape):
            v = ext.evaluate(sizes)
            if v < 0:
                st = next(s for s in fn.stages if s.tensor == t.name)
                _range_error(fn, st, f"'{t.name}' would have extent {ext} = {v}"
                             f"{_given(ext, ext, sizes)} in dimension {k}, which is "
                             "negative: its left-hand range is empty for these sizes and "
                             "ends below 0; check the input sizes")


def _given(lo: Sym, hi: Sym, sizes: Mapping[str, int]) -> str:
    names = sorted(lo.symbols() | hi.symbols())
    return " with " + ", ".join(f"{n}={sizes[n]}" for n in names) if names else ""


def _range_error(fn: ir.Function, st: ir.Stage, msg: str) -> None:
    span = st.span
    raise TcRangeError(msg, line=span.line if span else None,
                       column=span.column if span else None, source=fn.source or None)


def output_shapes(fn: ir.Function, sizes: Mapping[str, int]) -> list[tuple[int, ...]]:
    """The shapes of ``fn``'s outputs for concrete sizes."""
    return [tuple(s.evaluate(sizes) for s in t.shape) for t in fn.outputs]


def check_outputs(fn: ir.Function, call: BoundCall, outputs: Sequence[object]) -> None:
    """Check preallocated ``outputs=`` tensors (count, dtype, shape, device)."""
    if len(outputs) != len(fn.outputs):
        raise TcArgumentError(f"{fn.name} has {len(fn.outputs)} outputs, got "
                              f"{len(outputs)} in outputs=")
    for t, decl, shape in zip(outputs, fn.outputs, output_shapes(fn, call.sizes), strict=True):
        if not isinstance(t, torch.Tensor):
            raise TcArgumentTypeError(f"{fn.name}: output '{decl.name}' must be a tensor")
        if t.dtype != TORCH_DTYPES[decl.dtype]:
            raise TcArgumentTypeError(f"{fn.name}: output '{decl.name}' must have dtype "
                                      f"{TORCH_DTYPES[decl.dtype]}, got {t.dtype}")
        if tuple(t.shape) != shape:
            raise TcArgumentError(f"{fn.name}: output '{decl.name}' must have shape {shape}, "
                                  f"got {tuple(t.shape)}")
        if t.device != call.device:
            raise TcArgumentError(f"{fn.name}: output '{decl.name}' is on {t.device}, the "
                                  f"inputs on {call.device}")


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """A tensor's values as numpy (bfloat16 widened to float32), respecting its strides."""
    t = t.detach().cpu()
    if t.dtype is torch.bfloat16:
        t = t.float()
    return t.numpy()


def from_numpy(a: np.ndarray, dtype: ScalarType, device: torch.device) -> torch.Tensor:
    """A numpy array as a tensor of ``dtype`` on ``device``."""
    t = torch.from_numpy(np.asarray(a, order="C"))  # ascontiguousarray would make 0-d 1-d
    if dtype is ScalarType.BFLOAT16:
        t = t.to(torch.bfloat16)
    return t.to(device)
