"""``tc.to_mlir``: the user's entry to the MLIR export (inputs as tensors or shapes)."""

from __future__ import annotations

from typing import Any

import torch

from tc.arguments import TORCH_DTYPES, bind
from tc.errors import TcArgumentError, TcArgumentTypeError
from tc.ir import nodes as ir
from tc.ir.types import TYPE_NAMES, ScalarType
from tc.lang.frontend import check_text
from tc.mlir.export import export_function

__all__ = ["to_mlir", "placeholder"]


def _dtype(value: Any) -> torch.dtype:
    if isinstance(value, torch.dtype):
        return value
    if isinstance(value, ScalarType):
        return TORCH_DTYPES[value]
    if isinstance(value, str) and value in TYPE_NAMES:
        return TORCH_DTYPES[TYPE_NAMES[value]]
    raise TcArgumentTypeError(f"not a dtype: {value!r} (give a torch.dtype or a TC type name "
                              "such as 'float32')")


def placeholder(value: Any) -> Any:
    """A tensor as it is; ``(shape, dtype)`` as a meta tensor of that shape and dtype
    (``dtype``: a torch dtype or a TC type name); anything else (a Python scalar for a
    scalar parameter) as it is."""
    if (isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], tuple | list)
            and not isinstance(value, torch.Tensor)):
        shape, dtype = value
        return torch.empty(tuple(int(d) for d in shape), dtype=_dtype(dtype), device="meta")
    return value


def function(lang: str, entry: str) -> ir.Function:
    """The checked IR of definition ``entry`` of ``lang``."""
    functions = check_text(lang).functions
    if entry not in functions:
        raise TcArgumentError(f"no definition named {entry!r}; the text defines "
                              f"{', '.join(functions) or 'nothing'}")
    return functions[entry]


def to_mlir(lang: str, entry: str, *inputs: Any, dynamic: bool = False) -> str:
    """The definition ``entry`` of ``lang`` as an MLIR module (text): one ``func.func``
    of ``linalg.generic`` ops on tensors, in the builtin, func, linalg, tensor, arith
    and math dialects (``docs/mlir.md``).

    ``inputs`` are the call's arguments (torch tensors) or ``(shape, dtype)`` pairs;
    they bind the sizes, as a call would. With ``dynamic=True`` every size symbol is a
    dynamic (``?``) dimension and the function serves every size (literal dimensions
    stay static). Raises a positioned :class:`tc.mlir.TcExportError` for a construct
    that cannot be expressed (``docs/mlir.md`` lists them).
    """
    fn = function(lang, entry)
    call = bind(fn, [placeholder(x) for x in inputs])
    return export_function(fn, call.sizes, dynamic)
