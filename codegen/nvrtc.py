"""Compile CUDA C kernels with NVRTC and, on a machine with a GPU, launch them.

Compilation needs no GPU and no driver: ``cupy.cuda.nvrtc`` drives the NVRTC library
of the ``nvidia-cuda-nvrtc-cu12`` package. Compiling for a real architecture
(``-arch=sm_XX``) makes NVRTC run ptxas, which gives a cubin and, with ``-Xptxas -v``,
the register, spill and shared-memory usage of every kernel.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from cupy.cuda import nvrtc

from codegen import stats
from codegen.launch import (
    CUDA_LIMITS,
    ArgKind,
    grid_block_check,
    number_lines,
    pack_args,
)
from tc.errors import TcBackendError

__all__ = [
    "CompiledCuda",
    "DEFAULT_ARCH",
    "clear_compile_cache",
    "compile_cuda",
    "cuda_device_available",
    "dump_compiled",
    "load_compiled",
    "normalize_arch",
    "launch_cuda",
    "parse_ptxas_log",
]

log = logging.getLogger(__name__)

DEFAULT_ARCH = "sm_80"
COMPILE_CACHE_SIZE = 256


@dataclass(frozen=True, eq=False)
class CompiledCuda:
    """The result of compiling one CUDA source with NVRTC.

    ``resources`` describes kernel ``name`` as ptxas reported it: ``registers``,
    ``spill_stores``, ``spill_loads``, ``spill_bytes`` (stores + loads), ``shared_bytes``
    (static ``__shared__``), ``stack_bytes`` (stack frame), ``local_bytes`` (``lmem`` when
    reported, else the stack frame, which lives in local memory), and when reported
    ``barriers``, ``const_bytes`` (cmem[0]) and ``cumulative_stack_bytes``. It is empty
    for a virtual architecture (``compute_XX``), where ptxas does not run and ``cubin`` is
    None. ``functions`` holds the same for every function in the log. ``entry`` is the
    kernel's name in the PTX (``name``, or its mangled name without ``extern "C"``).
    """

    name: str
    ptx: str
    cubin: bytes | None
    arch: str
    log: str
    resources: dict[str, int]
    entry: str = ""
    options: tuple[str, ...] = ()
    functions: dict[str, dict[str, int]] = field(default_factory=dict)


@functools.lru_cache(maxsize=1)
def cuda_device_available() -> bool:
    """Whether a CUDA device can run kernels here (cupy sees one and torch.cuda works).

    Never raises; the answer is computed once per process.
    """
    try:
        import cupy
        import torch

        return cupy.cuda.runtime.getDeviceCount() > 0 and torch.cuda.is_available()
    except Exception as e:  # no driver, no library, broken install: no device
        log.debug("no CUDA device: %s", e)
        return False


@functools.lru_cache(maxsize=1)
def _default_arch() -> str:
    """The architecture of the current CUDA device, else DEFAULT_ARCH."""
    if not cuda_device_available():
        return DEFAULT_ARCH
    try:
        import cupy

        return f"sm_{cupy.cuda.Device().compute_capability}"
    except Exception as e:
        log.debug("cannot query the CUDA device (%s): compiling for %s", e, DEFAULT_ARCH)
        return DEFAULT_ARCH


@functools.lru_cache(maxsize=1)
def _supported_archs() -> tuple[int, ...]:
    try:
        return tuple(nvrtc.getSupportedArchs())
    except Exception:  # old NVRTC without the query: let compileProgram decide
        return ()


def _normalize_arch(arch: str | None) -> str:
    if arch is None:
        return _default_arch()
    m = re.fullmatch(r"(sm_|compute_)?(\d+)([af]?)", arch.strip())
    if m is None:
        raise TcBackendError(f"bad CUDA architecture {arch!r}: expected e.g. 'sm_80' or '90'")
    prefix, number, suffix = m.group(1) or "sm_", int(m.group(2)), m.group(3)
    supported = _supported_archs()
    if supported and number not in supported:
        raise TcBackendError(
            f"NVRTC {nvrtc.getVersion()} cannot compile for {arch!r}; supported: "
            + ", ".join(f"sm_{a}" for a in supported)
        )
    return f"{prefix}{number}{suffix}"


def normalize_arch(arch: str | None) -> str:
    """``arch`` as NVRTC takes it (``"90"`` -> ``"sm_90"``); None: the current device's
    architecture, or ``sm_80`` without a GPU."""
    return _normalize_arch(arch)


def compile_cuda(
    source: str, name: str, arch: str | None = None, extra_options: Sequence[str] = ()
) -> CompiledCuda:
    """Compile ``source`` (which defines ``extern "C" __global__`` kernel ``name``).

    ``arch`` defaults to the current device's architecture, or ``sm_80`` without a
    GPU. A real architecture (``sm_XX``) gives PTX, a cubin and the ptxas resource
    usage; a virtual one (``compute_XX``) gives PTX only. Memoised per (source, name,
    arch, options). Raises ``TcBackendError`` with NVRTC's log and the numbered source.
    """
    return _cached_compile(source, name, _normalize_arch(arch), tuple(extra_options))


@functools.lru_cache(maxsize=COMPILE_CACHE_SIZE)
def _cached_compile(
    source: str, name: str, arch: str, extra_options: tuple[str, ...]
) -> CompiledCuda:
    return _compile(source, name, arch, extra_options)


def clear_compile_cache() -> None:
    """Forget every compiled source (the next compile_cuda compiles again)."""
    _cached_compile.cache_clear()


def _compile(source: str, name: str, arch: str, extra_options: tuple[str, ...]) -> CompiledCuda:
    stats.count("nvrtc_compile")
    real = arch.startswith("sm_")
    options = (f"-arch={arch}",) + (("-Xptxas", "-v") if real else ()) + extra_options
    try:
        prog = nvrtc.createProgram(source, f"{name}.cu", [], [])
    except nvrtc.NVRTCError as e:
        raise TcBackendError(f"NVRTC cannot create a program for {name!r}: {e}") from e
    try:
        try:
            nvrtc.compileProgram(prog, options)
        except nvrtc.NVRTCError as e:
            text = _program_log(prog)
            raise TcBackendError(
                f"NVRTC compilation of {name!r} failed ({e}; options: {' '.join(options)}):\n"
                f"{text.strip()}\n--- source ---\n{number_lines(source)}"
            ) from e
        text = _program_log(prog)
        ptx = nvrtc.getPTX(prog)
        ptx_text = (ptx.decode() if isinstance(ptx, bytes) else ptx).rstrip("\x00")
        cubin = bytes(nvrtc.getCUBIN(prog)) if real else None
    finally:
        nvrtc.destroyProgram(prog)
    entry = _entry_name(ptx_text, name)
    functions = parse_ptxas_log(text)
    resources = dict(functions.get(entry, {})) if real else {}
    log.debug("NVRTC compiled %s for %s: %s", name, arch, resources)
    return CompiledCuda(name, ptx_text, cubin, arch, text, resources, entry, options, functions)


_BLOB_MAGIC = b"TCCUDA1\0"


def dump_compiled(compiled: CompiledCuda) -> bytes:
    """``compiled`` as bytes (its PTX, cubin and ptxas report) for :func:`load_compiled`."""
    head = json.dumps({
        "name": compiled.name, "ptx": compiled.ptx, "arch": compiled.arch,
        "log": compiled.log, "resources": compiled.resources, "entry": compiled.entry,
        "options": list(compiled.options), "functions": compiled.functions,
        "has_cubin": compiled.cubin is not None,
    }, sort_keys=True).encode()
    return _BLOB_MAGIC + struct.pack("<Q", len(head)) + head + (compiled.cubin or b"")


def load_compiled(blob: bytes) -> CompiledCuda:
    """The :class:`CompiledCuda` that :func:`dump_compiled` wrote, without running NVRTC;
    ``TcBackendError`` on bytes it did not write."""
    stats.count("nvrtc_load_binary")
    blob = bytes(blob)
    start = len(_BLOB_MAGIC) + 8
    if len(blob) < start or not blob.startswith(_BLOB_MAGIC):
        raise TcBackendError("not a stored CUDA kernel (bad magic)")
    (n,) = struct.unpack_from("<Q", blob, len(_BLOB_MAGIC))
    try:
        h = json.loads(blob[start:start + n].decode())
        cubin = blob[start + n:] if h["has_cubin"] else None
        functions = {f: {k: int(v) for k, v in r.items()} for f, r in h["functions"].items()}
        return CompiledCuda(str(h["name"]), str(h["ptx"]), cubin, str(h["arch"]), str(h["log"]),
                            {k: int(v) for k, v in h["resources"].items()}, str(h["entry"]),
                            tuple(map(str, h["options"])), functions)
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise TcBackendError(f"not a stored CUDA kernel: {e}") from e


def _program_log(prog: Any) -> str:
    text = nvrtc.getProgramLog(prog)
    return (text.decode() if isinstance(text, bytes) else text).rstrip("\x00")


def _entry_name(ptx: str, name: str) -> str:
    """The PTX entry of kernel ``name``: itself, or its C++-mangled name."""
    entries = re.findall(r"\.entry\s+([\w$]+)", ptx)
    if name in entries:
        return name
    mangled = [e for e in entries if e.startswith("_Z") and f"{len(name)}{name}" in e]
    if len(mangled) == 1:
        return mangled[0]
    raise TcBackendError(f"the CUDA source defines no kernel {name!r} (entries: {entries})")


_FUNC = re.compile(r"(?:Compiling entry function|Function properties for) '?([\w$.]+)'?")
_NUMBERS = re.compile(
    r"(\d+) bytes (stack frame|spill stores|spill loads|smem|lmem|cmem\[0\]"
    r"|cumulative stack size)"
)
_KEYS = {
    "stack frame": "stack_bytes",
    "spill stores": "spill_stores",
    "spill loads": "spill_loads",
    "smem": "shared_bytes",
    "lmem": "lmem_bytes",
    "cmem[0]": "const_bytes",
    "cumulative stack size": "cumulative_stack_bytes",
}


def parse_ptxas_log(text: str) -> dict[str, dict[str, int]]:
    """Per-function resources from a ``-Xptxas -v`` log (see :class:`CompiledCuda`).

    The format (CUDA 12) is, per kernel::

        ptxas info    : Compiling entry function 'k' for 'sm_80'
        ptxas info    : Function properties for k
        ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
        ptxas info    : Used 10 registers, used 1 barriers, 1024 bytes smem, 372 bytes cmem[0]
    """
    functions: dict[str, dict[str, int]] = {}
    current: dict[str, int] | None = None
    for line in text.splitlines():
        m = _FUNC.search(line)
        if m:
            current = functions.setdefault(m.group(1), {})
            continue
        if current is None:
            continue
        if m := re.search(r"Used (\d+) registers", line):
            current["registers"] = int(m.group(1))
        if m := re.search(r"used (\d+) barriers", line):
            current["barriers"] = int(m.group(1))
        for value, what in _NUMBERS.findall(line):
            current[_KEYS[what]] = int(value)
    for res in functions.values():
        res.setdefault("spill_stores", 0)
        res.setdefault("spill_loads", 0)
        res["spill_bytes"] = res["spill_stores"] + res["spill_loads"]
        res.setdefault("stack_bytes", 0)
        res.setdefault("local_bytes", res.get("lmem_bytes", res["stack_bytes"]))
        if "registers" in res:
            res.setdefault("shared_bytes", 0)
    return functions


_modules: dict[tuple[int, int], tuple[CompiledCuda, Any]] = {}
_modules_lock = threading.Lock()


def _cuda_function(compiled: CompiledCuda, device: int) -> Any:
    """The loaded kernel of ``compiled`` on ``device`` (cubin if it matches, else PTX)."""
    import cupy

    key = (id(compiled), device)
    with _modules_lock:
        hit = _modules.get(key)
        if hit is not None and hit[0] is compiled:
            return hit[1]
    cc = int(cupy.cuda.Device(device).compute_capability)
    arch = int(re.sub(r"\D", "", compiled.arch))
    if compiled.cubin is not None and arch == cc:
        image = compiled.cubin
    elif arch <= cc:
        image = compiled.ptx.encode()  # the driver JIT-compiles PTX for newer devices
    else:
        raise TcBackendError(f"kernel compiled for {compiled.arch} cannot run on sm_{cc}")
    module = cupy.cuda.function.Module()
    module.load(image)
    function = module.get_function(compiled.entry or compiled.name)
    with _modules_lock:
        _modules[key] = (compiled, function)
    return function


def launch_cuda(
    compiled: CompiledCuda,
    grid: Sequence[int],
    block: Sequence[int],
    args: Sequence[object],
    shared_mem: int = 0,
) -> None:
    """Launch ``compiled`` on torch CUDA tensors, asynchronously on torch's current stream.

    ``grid`` is in blocks; ``args`` as for the OpenCL ``launch``. Buffers pass
    ``data_ptr()`` (zero-copy, first element of the view); ``shared_mem`` is the dynamic
    shared memory in bytes (``__local`` arguments are OpenCL-only).
    Raises ``TcBackendError`` when no CUDA device is present.
    """
    if not cuda_device_available():
        raise TcBackendError(
            "no CUDA device is present (or no CUDA driver): CUDA kernels can be compiled "
            "with compile_cuda but not launched here; use the OpenCL backend"
        )
    import cupy
    import torch

    args = pack_args(args)  # KernelArg values pass through unchanged
    g, b = grid_block_check(grid, block, CUDA_LIMITS)
    device = torch.cuda.current_device()
    tensors = [a.tensor for a in args if a.kind is ArgKind.BUFFER and a.tensor is not None]
    if tensors:
        device = tensors[0].device.index if tensors[0].is_cuda else device
    params: list[np.generic] = []
    for i, arg in enumerate(args):
        if arg.kind is ArgKind.SCALAR:
            params.append(arg.numpy_scalar())
        elif arg.kind is ArgKind.LOCAL:
            raise TcBackendError(f"argument {i}: CUDA kernels take no __local arguments")
        else:
            t = arg.tensor
            assert t is not None
            if not t.is_cuda or t.device.index != device:
                raise TcBackendError(f"argument {i}: expected a tensor on cuda:{device}")
            params.append(np.uint64(t.data_ptr()))
    with cupy.cuda.Device(device):
        function = _cuda_function(compiled, device)
        torch_stream = torch.cuda.current_stream(device)
        try:
            stream = cupy.cuda.Stream.from_external(torch_stream)
        except (AttributeError, TypeError):
            stream = cupy.cuda.ExternalStream(torch_stream.cuda_stream)
        try:
            function(g, b, tuple(params), shared_mem=shared_mem, stream=stream)
        except Exception as e:
            raise TcBackendError(f"CUDA launch of {compiled.name!r} failed: {e}") from e
