"""The OpenCL target: the GPU mapping printed as OpenCL C and run by PoCL on the CPU.

It is the GPU-faithful check of the CUDA kernels (real work-groups, local memory and
barriers), not a fast way to run on a CPU: that is the ``cpu`` target.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from codegen import kernel as k
from codegen import math_helpers
from codegen.launch import LaunchLimits
from codegen.printer import C_TYPES, CFamilyPrinter, uses_double
from codegen.targets.base import Target
from tc.ir.types import ScalarType as T

_HW = {"block": "get_group_id", "thread": "get_local_id", "grid": "get_num_groups",
       "block_dim": "get_local_size"}
_AXIS = {"x": 0, "y": 1, "z": 2}
#: The local memory tuned kernels may use: CUDA's default, so that a kernel checked
#: here also fits a GPU (PoCL itself allows more).
SHARED_BYTES = 48 * 1024


def _has_barrier(s: k.Stmt) -> bool:
    return any(isinstance(n, k.Barrier) for n in k.walk_stmts(s))


def _ends_with_barrier(s: k.Stmt) -> bool:
    """Whether the printed ``s`` ends with a barrier: a loop holding one is printed
    with one at the end of its body (PoCL also rejects back-to-back barriers)."""
    while isinstance(s, k.Block) and s.body:
        s = s.body[-1]
    return isinstance(s, k.Barrier) or isinstance(s, k.For) and _has_barrier(s.body)


class OpenCLPrinter(CFamilyPrinter):
    name = "opencl"
    types = {
        **C_TYPES, T.INT8: "char", T.INT64: "long", T.UINT8: "uchar", T.UINT16: "ushort",
        T.UINT32: "uint", T.UINT64: "ulong",
    }
    kernel_decl = "__kernel void"
    global_ptr = "__global "
    restrict = "restrict"
    shared = "__local"
    helper = "static inline"
    # OpenCL C's built-in math; the rest of issue 14's builtins are helpers.
    native_extra = frozenset("cospi sinpi logb nextafter remainder".split())

    def hw_id(self, kind: str, axis: str) -> str:
        return f"((int){_HW[kind]}({_AXIS[axis]}))"

    def barrier(self) -> str:
        # Threads of a block also communicate through global memory (a temporary one
        # thread writes and others read: softmax's row maximum). CUDA's __syncthreads
        # orders both spaces; OpenCL's barrier orders only the spaces it names, and
        # PoCL does move global loads across a local-only barrier.
        return "barrier(CLK_LOCAL_MEM_FENCE | CLK_GLOBAL_MEM_FENCE);"

    def minmax(self, op: str, t: T, a: str, b: str) -> str:
        # OpenCL's integer min/max rather than C's ternary: PoCL (5.x, every work-group
        # method but "repl") miscompiles a grid-stride loop bounded by a ternary min and
        # stores past the loop's end (fuzz finding 80dc5d29c77e: heap corruption).
        if t.is_int:
            return f"{op}(({self.ctype(t)})({a}), ({self.ctype(t)})({b}))"
        return super().minmax(op, t, a, b)

    def int64_suffix(self, signed: bool) -> str:
        return "L" if signed else "UL"

    def s_For(self, s: k.For, depth: int) -> None:
        # PoCL (5.x) aborts compiling some loops that hold a barrier ("Could not find a
        # dominating alternative variable", fuzz finding a13bf4c580e0: a barrier
        # between two pieces of a fused loop body) unless the body also ends with a
        # barrier. A loop holding a barrier is uniform across the work-group (barriers
        # are only placed in uniform code), so every work-item reaches the extra one.
        if _ends_with_barrier(s.body) or not _has_barrier(s.body):
            super().s_For(s, depth)
            return
        self.emit(self.loop_header(s, depth), depth)
        self.stmt(s.body, depth + 1)
        self.emit(self.barrier(), depth + 1)
        self.emit("}", depth)

    def math_call(self, fn: str, args: str, double: bool) -> str:
        if fn == "rcbrt":
            return f"(1.0{'' if double else 'f'} / cbrt({args}))"
        if fn in ("erfinv", "erfcinv"):
            return self.erfinv_call(fn, args, double)
        return super().math_call(fn, args, double)

    def preamble(self) -> list[str]:
        # tc_erfinv and the helpers of codegen.math_helpers compute in double.
        double = uses_double(self.k) or any(
            h == "erfinv" or h in math_helpers.TEXTS for h in self.used)
        return ["#pragma OPENCL EXTENSION cl_khr_fp64 : enable"] if double else []


class OpenCLTarget(Target):
    name = "opencl"
    device_type = "cpu"
    strategy = "gpu"
    printer = OpenCLPrinter
    # Sizes and strides are kernel arguments (unless the options fix them): one build
    # serves every shape, launched on the blocks each call needs (codegen.launch_config).
    symbolic_sizes = True

    def available(self) -> bool:
        from codegen.opencl import pocl_device
        from tc.errors import TcBackendError

        try:
            pocl_device()
        except TcBackendError:
            return False
        return True

    def unavailable_reason(self) -> str:
        return "PoCL is not available; install pocl-binary-distribution"

    def limits(self) -> LaunchLimits:
        from codegen.opencl import device_limits

        return device_limits()

    def shared_memory_bytes(self) -> int:
        return SHARED_BYTES

    def build(self, kernels: Sequence[k.Kernel], binaries: Sequence[bytes | None] | None,
              arch: str | None) -> list[Any]:
        from codegen.opencl import build_program, program_from_binary

        return [build_program(self.source(kern)) if binaries is None or binaries[i] is None
                else program_from_binary(binaries[i]) for i, kern in enumerate(kernels)]

    def binaries(self, handles: Sequence[Any]) -> list[bytes | None]:
        from codegen.opencl import program_binary

        return [program_binary(p) for p in handles]

    def launch(self, handle: Any, kernel: k.Kernel, tensors: Sequence[Any], n_inputs: int,
               sizes: Sequence[int]) -> None:
        from codegen.opencl import launch_tensors

        # The size arguments as numpy scalars of the kernel's index type, prepared once
        # per (kernel, sizes): the executor passes the same sizes tuple for a signature.
        prepared = handle.__dict__.setdefault("_tc_scalars", {})
        key = (kernel.name, tuple(sizes))
        scalars = prepared.get(key)
        if scalars is None:
            if len(prepared) >= 256:
                prepared.clear()
            scalars = prepared[key] = [a.numpy_scalar() for a in
                                       self.packed([], 0, sizes, kernel)]
        launch_tensors(handle, kernel.name, kernel.grid, kernel.block, tensors, n_inputs,
                       scalars)

    def device_text(self, arch: str | None = None, device_index: int | None = None) -> str:
        from codegen.opencl import pocl_device
        from codegen.targets.c import cpu_model

        dev = pocl_device()[0].devices[0]
        return f"{dev.name} ({dev.version}); cpu {cpu_model()}"

    def versions_text(self) -> str:
        import pyopencl

        from codegen.opencl import pocl_device

        platform = pocl_device()[0].devices[0].platform
        return f"pyopencl {pyopencl.VERSION_TEXT}; {platform.version.strip()}"
