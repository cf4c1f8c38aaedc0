"""Back ends: what runs a checked definition on bound arguments.

Only the reference back end (the numpy interpreter) exists at this stage; the OpenCL
and CUDA back ends plug into the same interface.
"""

from __future__ import annotations

from typing import Protocol

import torch

from tc.arguments import BoundCall, from_numpy, to_numpy
from tc.errors import TcBackendError
from tc.ir import interpret
from tc.ir import nodes as ir

BACKENDS = ("reference", "opencl", "cuda")


class Backend(Protocol):
    name: str

    def run(self, fn: ir.Function, call: BoundCall, options: object | None
            ) -> list[torch.Tensor]:
        """Compute ``fn``'s outputs for checked arguments."""
        ...


class ReferenceBackend:
    """Runs the reference interpreter; inputs on any device, outputs on the inputs' device."""

    name = "reference"

    def run(self, fn: ir.Function, call: BoundCall, options: object | None
            ) -> list[torch.Tensor]:
        arrays = {d.name: to_numpy(t) for d, t in zip(fn.inputs, call.inputs, strict=True)}
        results = interpret.run(fn, arrays, call.sizes)
        return [from_numpy(results[t.name], t.dtype, call.device) for t in fn.outputs]


def get_backend(name: str | None) -> Backend:
    """The back end called ``name`` (None picks the default)."""
    if name is None or name == "reference":
        return ReferenceBackend()
    if name in BACKENDS:
        raise TcBackendError(f"backend '{name}' is not available yet; use backend='reference'")
    raise TcBackendError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
