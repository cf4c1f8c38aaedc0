"""The registry of targets: one instance of each, looked up by name.

A fourth target is one module under ``codegen/targets/`` and one line in
:data:`TARGETS`. See :mod:`codegen.targets.base` for the interface.
"""

from __future__ import annotations

import logging

from codegen.targets.base import STRATEGIES, KernelInfo, Target
from codegen.targets.c import CTarget
from codegen.targets.cuda import CudaTarget
from codegen.targets.opencl import OpenCLTarget
from tc.errors import TcBackendError

__all__ = ["STRATEGIES", "TARGETS", "KernelInfo", "Target", "default_target", "get_target",
           "target_names"]

log = logging.getLogger(__name__)

#: Every target, by name, in the order the CLI lists them.
TARGETS: dict[str, Target] = {t.name: t for t in (CTarget(), OpenCLTarget(), CudaTarget())}

_warned: set[str] = set()


def target_names() -> tuple[str, ...]:
    return tuple(TARGETS)


def get_target(name: str | Target) -> Target:
    """The target called ``name`` (a target passes through); ``TcBackendError`` for an
    unknown name."""
    if isinstance(name, Target):
        return name
    try:
        return TARGETS[name]
    except (KeyError, TypeError):
        raise TcBackendError(f"unknown target {name!r}; choose one of "
                             f"{', '.join(TARGETS)}") from None


def default_target(device_type: str) -> Target:
    """The target for tensors on ``device_type`` when none is named: ``cuda`` for CUDA
    tensors; for CPU tensors ``cpu`` where a C compiler exists, else ``opencl`` (with a
    warning, once)."""
    if device_type == "cuda":
        return TARGETS["cuda"]
    cpu = TARGETS["cpu"]
    if cpu.available():
        return cpu
    if "cpu" not in _warned:
        _warned.add("cpu")
        log.warning("%s; running CPU tensors on PoCL (backend='opencl'), which is much slower",
                    cpu.unavailable_reason())
    return TARGETS["opencl"]
