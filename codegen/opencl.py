"""Compile and launch OpenCL C kernels on PoCL (the CPU OpenCL implementation).

The source text comes from the OpenCL printer. Tensors are passed zero-copy: each
torch CPU tensor becomes a ``USE_HOST_PTR`` buffer over the memory its view spans,
starting at its first element, and the kernel indexes it with the tensor's strides.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator, Sequence

import numpy as np
import pyopencl as cl
import torch

from codegen import stats
from codegen.launch import (
    ArgKind,
    KernelArg,
    LaunchLimits,
    grid_block_check,
    number_lines,
    pack_args,
)
from tc.errors import TcBackendError

__all__ = [
    "build_program",
    "clear_program_cache",
    "device_limits",
    "find_pocl",
    "launch",
    "pocl_device",
    "program_binary",
    "program_from_binary",
]

log = logging.getLogger(__name__)

PROGRAM_CACHE_SIZE = 256

_launch_lock = threading.Lock()


def _is_pocl(platform: cl.Platform) -> bool:
    return "Portable Computing Language" in platform.name or "pocl" in platform.vendor.lower()


#: PoCL's devices as this module asks for them when the process has not chosen
#: (``POCL_DEVICES`` unset when PoCL is first read): the multi-threaded CPU device runs
#: every launch of several work-groups; the single-threaded ``basic`` device runs a
#: launch of one work-group in the calling thread. The pthread device's workers could
#: not share one group anyway, and waking them from idle cores is most of a small
#: call's cost (117 against 41 us per call on an idle machine; issue 13).
POCL_DEVICES = "pthread basic"
# Asked for when this module is imported (usually before anything reads PoCL; later it
# has no effect and every launch runs on the main device). A user's own POCL_DEVICES wins.
os.environ.setdefault("POCL_DEVICES", POCL_DEVICES)


def _is_basic(device: cl.Device) -> bool:
    return device.name.startswith("basic")


@functools.lru_cache(maxsize=1)
def _pocl() -> tuple[cl.Context, cl.CommandQueue, cl.CommandQueue | None]:
    """The PoCL context, the main device's in-order queue and, when PoCL offers its
    ``basic`` device beside it, that device's queue for one-work-group launches."""
    try:
        platforms = cl.get_platforms()
    except cl.Error as e:
        raise TcBackendError(
            f"no OpenCL platform found ({e}); install pocl-binary-distribution"
        ) from e
    device = find_pocl(platforms)
    small = next((d for d in device.platform.get_devices() if _is_basic(d) and d != device),
                 None)
    ctx = cl.Context([device] + ([small] if small is not None else []))
    if ctx.devices[0] != device:  # every module takes ctx.devices[0] as the main device
        ctx, small = cl.Context([device]), None
    log.info("using OpenCL device %s on %s%s", device.name, device.platform.version,
             f" (and {small.name} for one-work-group launches)" if small is not None else "")
    return ctx, cl.CommandQueue(ctx, device), (cl.CommandQueue(ctx, small)
                                               if small is not None else None)


def pocl_device() -> tuple[cl.Context, cl.CommandQueue]:
    """The PoCL context and the main device's in-order command queue of this process
    (created once; ``ctx.devices[0]`` is the main device).

    Other OpenCL platforms may be installed: PoCL is selected by name. Raises
    ``TcBackendError`` when PoCL is not available.
    """
    ctx, queue, _ = _pocl()
    return ctx, queue


def find_pocl(platforms: Sequence[cl.Platform]) -> cl.Device:
    """The main device of the PoCL platform among ``platforms`` (its first device that
    is not the single-threaded ``basic`` one, if any); ``TcBackendError`` if none."""
    for platform in platforms:
        if _is_pocl(platform):
            devices = platform.get_devices()
            if devices:
                return next((d for d in devices if not _is_basic(d)), devices[0])
    names = ", ".join(p.name for p in platforms) or "none"
    raise TcBackendError(
        f"the PoCL OpenCL platform is not available (platforms: {names}); "
        "install pocl-binary-distribution"
    )


@functools.lru_cache(maxsize=1)
def device_limits() -> LaunchLimits:
    """The work-group limits of the PoCL device (grid limits: 2**31 - 1 groups per axis)."""
    ctx, _ = pocl_device()
    dev = ctx.devices[0]
    sizes = tuple(dev.max_work_item_sizes) + (1, 1)
    return LaunchLimits(
        max_threads_per_block=dev.max_work_group_size,
        max_block=(sizes[0], sizes[1], sizes[2]),
        max_grid=(2**31 - 1,) * 3,
    )


def build_program(source: str, options: Sequence[str] = ()) -> cl.Program:
    """Build ``source`` for the PoCL device, once per (source, options).

    Raises ``TcBackendError`` with the build log and the numbered source on failure.
    """
    return _cached_build(source, tuple(options))


@functools.lru_cache(maxsize=PROGRAM_CACHE_SIZE)
def _cached_build(source: str, options: tuple[str, ...]) -> cl.Program:
    return _compile(source, options)


def clear_program_cache() -> None:
    """Forget every built program (the next build_program compiles again)."""
    _cached_build.cache_clear()


def _compile(source: str, options: tuple[str, ...]) -> cl.Program:
    stats.count("opencl_build")
    ctx, _ = pocl_device()
    dev = ctx.devices[0]
    program = cl.Program(ctx, source)
    try:
        # PoCL's compiler prints warnings ("loop not unrolled", "2 warnings generated")
        # on the process's stderr and pyopencl repeats them as CompilerWarning: for a
        # build that works they go to logging, not to the user's terminal. Built for
        # every device of the context (the basic one too: its one-work-group launches;
        # PoCL compiles the source once for both CPU devices).
        with _build_messages() as messages:
            program.build(options=list(options), devices=list(ctx.devices))
        program.__dict__["_tc_small"] = len(ctx.devices) > 1
    except cl.Error as e:
        try:
            build_log = program.get_build_info(dev, cl.program_build_info.LOG)
        except cl.Error:
            build_log = str(e)
        raise TcBackendError(
            f"OpenCL build failed (options: {' '.join(options) or 'none'}):\n"
            f"{build_log.strip()}\n--- source ---\n{number_lines(source)}"
        ) from e
    if messages:
        with contextlib.suppress(cl.Error):  # the warnings themselves are in the build log
            messages.insert(0, program.get_build_info(dev, cl.program_build_info.LOG).strip())
        log.debug("OpenCL compiler messages:\n%s", "\n".join(messages))
    log.debug("built OpenCL program (%d chars, options %s)", len(source), options)
    return program


_STDERR_LOCK = threading.Lock()


@contextlib.contextmanager
def _build_messages() -> Iterator[list[str]]:
    """Collects, into the yielded list, what a build prints on file descriptor 2 and
    the Python warnings it raises, instead of showing them. The descriptor is the
    process's: other threads' output in the meantime is collected too (and logged)."""
    messages: list[str] = []
    with _STDERR_LOCK, tempfile.TemporaryFile() as sink, \
            warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            os.dup2(sink.fileno(), 2)
            yield messages
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text = sink.read().decode(errors="replace").strip()
            messages.extend([text] if text else [])
            messages.extend(str(w.message).strip() for w in caught)


#: The start of a stored binary that holds a program for each PoCL device of the
#: context (main first), each preceded by its length in 8 little-endian bytes; a binary
#: without it is the main device's alone (stored before the basic device was used).
_BOTH = b"TC-POCL-2\n"


def program_binary(program: cl.Program) -> bytes:
    """The device binaries of a built program, which :func:`program_from_binary` loads
    back (in a process with the same PoCL version and devices) without compiling: the
    main device's, and the basic device's too when it was built for both."""
    ctx, _ = pocl_device()
    by_device = dict(zip(program.get_info(cl.program_info.DEVICES),
                         program.get_info(cl.program_info.BINARIES), strict=True))
    if ctx.devices[0] not in by_device:
        raise TcBackendError("the OpenCL program was not built for the PoCL device")
    if not program.__dict__.get("_tc_small") or any(d not in by_device for d in ctx.devices):
        return bytes(by_device[ctx.devices[0]])
    parts = [bytes(by_device[d]) for d in ctx.devices]
    return _BOTH + b"".join(len(b).to_bytes(8, "little") + b for b in parts)


def _split(binary: bytes) -> list[bytes] | None:
    """The per-device binaries of a :data:`_BOTH` container (None for a plain one)."""
    if not binary.startswith(_BOTH):
        return None
    parts, at = [], len(_BOTH)
    while at < len(binary):
        n = int.from_bytes(binary[at:at + 8], "little")
        parts.append(binary[at + 8:at + 8 + n])
        at += 8 + n
    return parts


def program_from_binary(binary: bytes) -> cl.Program:
    """A program for the PoCL device(s) from :func:`program_binary`'s bytes, without
    compiling its source; ``TcBackendError`` when PoCL rejects the binary."""
    stats.count("opencl_load_binary")
    ctx, _ = pocl_device()
    parts = _split(bytes(binary))
    both = parts is not None and len(parts) == len(ctx.devices) > 1
    devices = list(ctx.devices) if both else [ctx.devices[0]]
    binaries = parts if both else [parts[0] if parts else bytes(binary)]
    try:
        program = cl.Program(ctx, devices, binaries)
        program.build(devices=devices)
    except (cl.Error, ValueError, TypeError) as e:
        raise TcBackendError(f"PoCL cannot load the stored program binary: {e}") from e
    program.__dict__["_tc_small"] = both
    return program


def _kernel(program: cl.Program, name: str) -> cl.Kernel:
    kernels = program.__dict__.setdefault("_tc_kernels", {})
    kernel = kernels.get(name)
    if kernel is None:
        try:
            kernel = cl.Kernel(program, name)
        except cl.Error as e:
            raise TcBackendError(f"no kernel named {name!r} in the OpenCL program: {e}") from e
        kernels[name] = kernel
    return kernel


def launch(
    program: cl.Program,
    kernel_name: str,
    grid: Sequence[int],
    block: Sequence[int],
    args: Sequence[object],
) -> None:
    """Run ``kernel_name`` on ``grid`` work-groups of ``block`` work-items and wait for it.

    ``grid`` is counted in blocks (CUDA convention): the OpenCL global size is
    ``grid * block`` per axis. ``args`` are :class:`KernelArg` values, or tensors and
    scalars that :func:`pack_args` packs with its defaults. Tensors must be on the CPU;
    written buffers are synchronised back to the tensors' memory before this returns.
    """
    args = pack_args(args)  # KernelArg values pass through unchanged
    ctx, _ = pocl_device()
    values: list[object] = []
    synced: list[tuple[cl.Buffer, np.ndarray]] = []
    for i, arg in enumerate(args):
        if arg.kind is ArgKind.SCALAR:
            values.append(arg.numpy_scalar())
        elif arg.kind is ArgKind.LOCAL:
            values.append(cl.LocalMemory(arg.nbytes))
        else:
            buf, host = _buffer(ctx, arg, i)
            values.append(buf)
            if host is not None and arg.written:
                synced.append((buf, host))
    _run(program, kernel_name, grid, block, values, synced)


def launch_tensors(program: cl.Program, kernel_name: str, grid: Sequence[int],
                   block: Sequence[int], tensors: Sequence[torch.Tensor], n_inputs: int,
                   scalars: Sequence[np.generic]) -> None:
    """:func:`launch` for the executor's call path: buffers over ``tensors`` (the
    first ``n_inputs`` only read), then ``scalars`` already as the kernel's numpy
    types (prepared once per call signature). No :class:`KernelArg` per call: the
    per-call overhead is what a memoised call costs (issue 13)."""
    ctx, _ = pocl_device()
    flags = cl.mem_flags.READ_WRITE | cl.mem_flags.USE_HOST_PTR
    values: list[object] = []
    synced: list[tuple[cl.Buffer, np.ndarray]] = []
    for i, t in enumerate(tensors):
        if t.is_contiguous() and t.numel() and t.device.type == "cpu" and \
                t.nbytes <= _max_alloc(ctx):
            host = t.detach().reshape(-1).view(torch.uint8).numpy()
            buf = cl.Buffer(ctx, flags, hostbuf=host)
        else:  # strided views, empty tensors, errors: the general path
            buf, host = _buffer(ctx, KernelArg.buffer(t, written=i >= n_inputs), i)
        values.append(buf)
        if host is not None and i >= n_inputs:
            synced.append((buf, host))
    values.extend(scalars)
    _run(program, kernel_name, grid, block, values, synced)


@functools.cache
def _max_alloc(ctx: cl.Context) -> int:
    return ctx.devices[0].max_mem_alloc_size


def _run(program: cl.Program, kernel_name: str, grid: Sequence[int], block: Sequence[int],
         values: list[object], synced: list[tuple[cl.Buffer, np.ndarray]]) -> None:
    """Set the arguments, launch, and wait until ``synced`` buffers are in host memory."""
    _, queue, small = _pocl()
    if small is not None and program.__dict__.get("_tc_small") and all(g == 1 for g in grid):
        queue = small  # one work-group: run in this thread, no PoCL worker to wake
        stats.count("opencl_launch_basic")
    kernel = _kernel(program, kernel_name)
    global_size, b = _configuration(program, kernel, kernel_name, grid, block)
    try:
        with _launch_lock:
            kernel.set_args(*values)
            cl.enqueue_nd_range_kernel(queue, kernel, global_size, b)
            # Maps of the written buffers, waited for together: a blocking map per
            # buffer cost a round trip to PoCL's worker threads each (issue 13: the
            # per-call overhead).
            maps = [(cl.enqueue_map_buffer(queue, buf, cl.map_flags.READ, 0, host.shape,
                                           host.dtype, is_blocking=False)[0], host)
                    for buf, host in synced]
        queue.finish()
        for mapped, host in maps:
            _sync_to_host(queue, mapped, host)
    except cl.Error as e:
        raise TcBackendError(f"OpenCL launch of {kernel_name!r} failed: {e}") from e


def _configuration(program: cl.Program, kernel: cl.Kernel, name: str, grid: Sequence[int],
                   block: Sequence[int]) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """The global and local sizes of a launch, checked against the device's and the
    kernel's limits once per (kernel, grid, block): a prepared launch record."""
    records = program.__dict__.setdefault("_tc_launches", {})
    key = (name, tuple(grid), tuple(block))
    record = records.get(key)
    if record is None:
        g, b = grid_block_check(grid, block, device_limits())
        dev = pocl_device()[0].devices[0]
        kernel_max = kernel.get_work_group_info(cl.kernel_work_group_info.WORK_GROUP_SIZE, dev)
        if b[0] * b[1] * b[2] > kernel_max:
            raise TcBackendError(
                f"block {b} exceeds the work-group size limit {kernel_max} of {name!r}")
        record = records[key] = (tuple(g[i] * b[i] for i in range(3)), b)
    return record


def _buffer(ctx: cl.Context, arg: KernelArg, i: int) -> tuple[cl.Buffer, np.ndarray | None]:
    """A zero-copy buffer over the tensor's span, and the host bytes it wraps."""
    t = arg.tensor
    assert t is not None
    if t.device.type != "cpu":
        raise TcBackendError(f"argument {i}: OpenCL needs CPU tensors, got one on {t.device}")
    span = arg.span()
    if span is None:  # OpenCL has no empty buffers: a dummy the kernel never reads
        return cl.Buffer(ctx, cl.mem_flags.READ_WRITE, size=max(t.element_size(), 1)), None
    host = span.view(torch.uint8).numpy()
    limit = ctx.devices[0].max_mem_alloc_size
    if host.nbytes > limit:  # PoCL would refuse with a bare INVALID_BUFFER_SIZE
        raise TcBackendError(f"argument {i}: the tensor spans {host.nbytes} bytes, more than "
                             f"the OpenCL device allocates at once ({limit} bytes)")
    flags = cl.mem_flags.READ_WRITE | cl.mem_flags.USE_HOST_PTR
    return cl.Buffer(ctx, flags, hostbuf=host), host


def _sync_to_host(queue: cl.CommandQueue, mapped: np.ndarray, host: np.ndarray) -> None:
    """Make the kernel's writes visible in ``host`` from its completed read map.

    Mapping a USE_HOST_PTR buffer synchronises the host memory (PoCL writes it in
    place, so the map is free); if the implementation maps elsewhere, copy back.
    """
    try:
        if mapped.__array_interface__["data"][0] != host.__array_interface__["data"][0]:
            log.debug("USE_HOST_PTR not honoured: copying %d bytes back", host.nbytes)
            host[...] = mapped
    finally:
        mapped.base.release(queue)
