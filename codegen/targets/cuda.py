"""The CUDA target: CUDA C compiled by NVRTC (no GPU needed), launched by cupy on a GPU.

Compiling works everywhere (``codegen.nvrtc``); launching needs a CUDA device, and
without one :meth:`CudaTarget.launch` raises ``TcBackendError``. The launch path is
the executor's, shared with every target, so what the tests run is what runs on a GPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from codegen import kernel as k
from codegen.launch import CUDA_LIMITS, LaunchLimits
from codegen.printer import CFamilyPrinter
from codegen.targets.base import KernelInfo, Target
from tc.errors import TcBackendError

_HW = {
    "block": "blockIdx", "thread": "threadIdx", "grid": "gridDim", "block_dim": "blockDim",
}
#: Shared memory per block without opting in to more (every architecture since sm_20).
SHARED_BYTES = 48 * 1024


class CudaPrinter(CFamilyPrinter):
    name = "cuda"
    kernel_decl = 'extern "C" __global__ void'
    global_ptr = ""
    restrict = "__restrict__"
    shared = "__shared__"
    helper = "static __device__ __forceinline__"
    float_suffix_fns = True

    def hw_id(self, kind: str, axis: str) -> str:
        return f"{_HW[kind]}.{axis}"

    def barrier(self) -> str:
        b = self.k.block
        # The whole block is one warp: a warp barrier orders its shared memory.
        return "__syncwarp();" if b[0] * b[1] * b[2] <= 32 else "__syncthreads();"

    def bits_to_float(self, text: str) -> str:
        return f"__uint_as_float({text})"

    def float_to_bits(self, text: str) -> str:
        return f"__float_as_uint({text})"

    def global_load(self, buf: k.Buffer, raw: str) -> str:
        if buf.read_only and self.k.meta.get("readonly_cache"):
            return f"__ldg(&{raw})"  # useReadOnlyCache: through the read-only data cache
        return raw

    def preamble(self) -> list[str]:
        # No __launch_bounds__: with a maximum block size but no minimum of resident
        # blocks, ptxas trades spills for occupancy (32 registers and 16-60 bytes of
        # spills on sm_80/sm_90 for the convolutions and group norm). Without it, ptxas
        # budgets 64 registers (enough for 1024 threads, so any block launches).
        return ["#define isfinite(x) (!isinf(x) && !isnan(x))"]


class CudaTarget(Target):
    name = "cuda"
    device_type = "cuda"
    strategy = "gpu"
    printer = CudaPrinter
    # Sizes and strides are kernel arguments (unless the options fix them): one build
    # serves every shape, launched on the blocks each call needs (codegen.launch_config).
    symbolic_sizes = True

    def available(self) -> bool:
        from codegen.nvrtc import cuda_device_available

        return cuda_device_available()

    def unavailable_reason(self) -> str:
        return ("no CUDA device is present (or no CUDA driver): CUDA kernels compile with "
                "NVRTC but cannot run here; use backend='cpu' (or 'opencl') on the CPU")

    def limits(self) -> LaunchLimits:
        return CUDA_LIMITS

    def shared_memory_bytes(self) -> int:
        return SHARED_BYTES

    def build(self, kernels: Sequence[k.Kernel], binaries: Sequence[bytes | None] | None,
              arch: str | None) -> list[Any]:
        from codegen.nvrtc import compile_cuda, load_compiled, normalize_arch

        out = []
        for i, kern in enumerate(kernels):
            binary = None if binaries is None else binaries[i]
            if binary is None:
                out.append(compile_cuda(self.source(kern), kern.name, arch))
                continue
            cc = load_compiled(binary)
            if cc.name != kern.name or cc.arch != normalize_arch(arch):
                raise TcBackendError(f"the stored CUDA kernel is {cc.name!r} for {cc.arch}, "
                                     f"not {kern.name!r} for {normalize_arch(arch)}")
            out.append(cc)
        return out

    def binaries(self, handles: Sequence[Any]) -> list[bytes | None]:
        from codegen.nvrtc import dump_compiled

        return [dump_compiled(cc) for cc in handles]

    def info(self, kernel: k.Kernel, handle: Any) -> KernelInfo:
        return KernelInfo(kernel.name, self.source(kernel), kernel.grid, kernel.block,
                          handle.ptx, dict(handle.resources))

    def launch(self, handle: Any, kernel: k.Kernel, tensors: Sequence[Any], n_inputs: int,
               sizes: Sequence[int]) -> None:
        from codegen.nvrtc import launch_cuda

        launch_cuda(handle, kernel.grid, kernel.block,
                    self.packed(tensors, n_inputs, sizes, kernel))

    def check_device(self, device: Any) -> None:
        if device.type != "cuda" and not self.available():
            raise TcBackendError(f"backend 'cuda': {self.unavailable_reason()}")
        super().check_device(device)

    def device_text(self, arch: str | None = None, device_index: int | None = None) -> str:
        from codegen.nvrtc import normalize_arch

        code = normalize_arch(arch)
        if not self.available():
            return f"no CUDA device; code {code}"
        import cupy

        index = cupy.cuda.runtime.getDevice() if device_index is None else device_index
        props = cupy.cuda.runtime.getDeviceProperties(index)
        name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
        return f"{name} (cc {props['major']}.{props['minor']}); code {code}"

    def versions_text(self) -> str:
        from cupy.cuda import nvrtc

        return "NVRTC " + ".".join(map(str, nvrtc.getVersion()))

