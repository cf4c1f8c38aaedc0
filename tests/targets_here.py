"""The targets that run on CPU tensors here, and test cases spread over them.

The ``target`` fixture (``conftest.py``) runs a test once per target. PoCL builds a
kernel several times slower than the C compiler, so a module with many compiled cases
may run all of them on the other targets and a representative subset on OpenCL:
:func:`over_targets` makes those ``(case, target)`` pairs, and :func:`but_opencl` the
targets of a test left out of the subset, for ``pytest.mark.parametrize(...,
indirect=["target"])``. Where OpenCL is the only target, it runs everything.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pytest


def runnable_targets() -> list[str]:
    """The registered targets that run on CPU tensors here (the GPU-faithful PoCL
    check and the native CPU target, where a C compiler exists)."""
    from codegen.targets import TARGETS

    return [name for name, t in TARGETS.items() if t.device_type == "cpu" and t.available()]


def but_opencl() -> list[str]:
    """The runnable targets other than OpenCL (OpenCL when it is the only one)."""
    targets = runnable_targets()
    return [t for t in targets if t != "opencl"] or targets


def over_targets(cases: Iterable[str], opencl: Sequence[str] | None = None) -> list:
    """``(case, target)`` parameters: every case on every runnable target, except that
    ``opencl`` (when given) lists the only cases run on OpenCL."""
    cases = list(cases)
    unknown = set(opencl or ()) - set(cases)
    if unknown:  # a renamed case must not silently drop out of the OpenCL run
        raise ValueError(f"OpenCL cases that are not cases: {sorted(unknown)}")
    others = but_opencl()
    return [pytest.param(case, target, id=f"{target}-{case}")
            for target in runnable_targets() for case in cases
            if target in others or opencl is None or case in opencl]
