"""Instrumentation counters of the compiler and the back ends.

:data:`COUNTERS` counts the expensive steps that a warm compilation cache is meant to
skip, so that tests (and curious users) can check that loading a cached kernel really
did no scheduling and no compiling:

``compile_program``
    calls of :func:`codegen.compiler.compile_program` (the polyhedral pipeline; a
    program that ``matchLibraryCalls`` splits counts one more per pipeline segment);
``opencl_build``
    OpenCL programs built from source by PoCL (memoised rebuilds do not count);
``opencl_load_binary``
    OpenCL programs created from a stored program binary;
``nvrtc_compile``
    CUDA sources compiled by NVRTC (memoised recompiles do not count);
``nvrtc_load_binary``
    CUDA kernels rebuilt from a stored PTX/cubin without NVRTC;
``opencl_launch_basic``
    OpenCL launches of one work-group run on PoCL's single-threaded ``basic`` device
    (:data:`codegen.opencl.POCL_DEVICES`).

It is the only module-level mutable state meant for reading from outside: plain
instrumentation, per process, never consulted by the compiler itself. Reset it with
``COUNTERS.clear()``; read it with ``COUNTERS["compile_program"]`` (0 when never counted).
"""

from __future__ import annotations

from collections import Counter

__all__ = ["COUNTERS", "count", "snapshot"]

#: Calls of the expensive compilation steps in this process (see the module docstring).
COUNTERS: Counter[str] = Counter()


def count(event: str, n: int = 1) -> None:
    """Add ``n`` to the counter of ``event``."""
    COUNTERS[event] += n


def snapshot() -> dict[str, int]:
    """A copy of the counters (to diff before/after some work)."""
    return dict(COUNTERS)
