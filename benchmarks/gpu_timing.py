"""Timing suite kernels on a CUDA device: tc's kernels against torch's own.

Used by ``python -m benchmarks.static_report`` when a CUDA device is present (or with
``--time``). For one suite kernel and one size binding, :func:`time_kernel` builds
the catalogue's inputs on the device, compiles the definition for the CUDA back end
(``tc.compile``) and times, with CUDA events on the current stream, a call of the tc
executor and a call of the catalogue's torch reference (cuBLAS, cuDNN and torch's
own kernels): a few warm-up calls, then the median of many timed calls.

The tc time is that of a whole executor call as a user makes it: output allocation,
every kernel launch of the host program and the read of the error flag. References
of gradients go through ``torch.autograd``, whose overhead their time includes.
Nothing here runs without a GPU; :func:`summarize` and :func:`time_events` take
plain numbers and injected event objects, so they are tested anywhere.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from tc import catalogue
from tc.options import MappingOptions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Timing:
    """Median milliseconds of tc and of torch, and their ratio (tc / torch)."""

    tc_ms: float
    torch_ms: float
    ratio: float
    runs: int

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def summarize(tc_ms: Sequence[float], torch_ms: Sequence[float]) -> Timing:
    """The medians of two samples of milliseconds and the ratio tc / torch
    (``inf`` when torch's median is 0)."""
    if not tc_ms or not torch_ms:
        raise ValueError("summarize needs at least one timing of each")
    a, b = statistics.median(tc_ms), statistics.median(torch_ms)
    return Timing(a, b, a / b if b > 0 else float("inf"), min(len(tc_ms), len(torch_ms)))


def timing_available() -> bool:
    """Whether kernels can be timed here (a CUDA device that torch and cupy see)."""
    from codegen.nvrtc import cuda_device_available

    return cuda_device_available()


def time_events(fn: Callable[[], object], warmup: int, runs: int,
                event: Callable[..., Any] | None = None,
                synchronize: Callable[[], object] | None = None) -> list[float]:
    """Milliseconds of each of ``runs`` calls of ``fn``, after ``warmup`` untimed calls.

    Each call is bracketed by two events recorded on the current stream (defaults:
    ``torch.cuda.Event(enable_timing=True)`` and ``torch.cuda.synchronize``); the
    device is synchronized once, after the last call, before reading them."""
    if event is None or synchronize is None:
        import torch

        event = event or (lambda: torch.cuda.Event(enable_timing=True))
        synchronize = synchronize or torch.cuda.synchronize
    for _ in range(warmup):
        fn()
    synchronize()
    pairs = []
    for _ in range(runs):
        start, end = event(), event()
        start.record()
        fn()
        end.record()
        pairs.append((start, end))
    synchronize()
    return [float(start.elapsed_time(end)) for start, end in pairs]


def time_kernel(kernel: catalogue.Kernel, sizes: Mapping[str, int], options: MappingOptions,
                arch: str | None = None, warmup: int = 10, runs: int = 100) -> Timing:
    """Median times of the tc executor and of the torch reference on the same tensors."""
    import torch

    import tc

    gen = torch.Generator().manual_seed(0)
    inputs = tuple(t.cuda() for t in kernel.make_inputs(dict(sizes), gen))
    executor = tc.compile(kernel.tc, kernel.entry, options, *inputs, backend="cuda", arch=arch)
    log.info("timing %s %s", kernel.name, dict(sizes))
    tc_ms = time_events(lambda: executor(*inputs), warmup, runs)
    with torch.no_grad():
        torch_ms = time_events(lambda: kernel.reference(*inputs), warmup, runs)
    return summarize(tc_ms, torch_ms)


def time_or_none(kernel: catalogue.Kernel, sizes: Mapping[str, int], options: MappingOptions,
                 warmup: int = 10, runs: int = 100) -> dict[str, float] | None:
    """:func:`time_kernel` for the device's own architecture, as a dict; None (and a
    logged warning) when compiling or running fails, so one kernel cannot stop a report."""
    try:
        return time_kernel(kernel, sizes, options, None, warmup, runs).as_dict()
    except Exception as e:  # a failed kernel is reported as "-", the others still run
        log.warning("timing %s %s failed: %s", kernel.name, dict(sizes), e)
        return None
