"""Tests of the NVRTC back end: compilation needs no GPU; launching is checked to refuse."""

from __future__ import annotations

import pytest
import torch

from codegen import nvrtc as nv
from codegen.launch import pack_args
from codegen.nvrtc import compile_cuda, cuda_device_available, launch_cuda, parse_ptxas_log
from tc.errors import TcBackendError

ADD = r"""
extern "C" __global__ void vadd(const float* a, const float* b, float* c, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) c[i] = a[i] + b[i];
}
"""

SHARED = r"""
extern "C" __global__ void block_sum(const float* x, float* partial, int n) {
  __shared__ float s[256];
  int i = blockIdx.x * 256 + threadIdx.x;
  s[threadIdx.x] = i < n ? x[i] : 0.0f;
  __syncthreads();
  for (int k = 128; k > 0; k >>= 1) {
    if (threadIdx.x < k) s[threadIdx.x] += s[threadIdx.x + k];
    __syncthreads();
  }
  if (threadIdx.x == 0) partial[blockIdx.x] = s[0];
}
"""

SPILL = r"""
extern "C" __global__ void spill(float* a) {
  float v[48];
#pragma unroll
  for (int j = 0; j < 48; ++j) v[j] = a[j * 1024 + threadIdx.x];
  float acc = 0.f;
#pragma unroll
  for (int j = 0; j < 48; ++j) acc += v[j] * v[47 - j] * v[(j * 7) % 48];
  a[threadIdx.x] = acc;
}
"""

# A -Xptxas -v log of CUDA 12.9 for sm_80 (two kernels), and an older-style line.
LOG = """\
ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function 'k2' for 'sm_80'
ptxas info    : Function properties for k2
ptxas         .     2384 bytes stack frame, 1956 bytes spill stores, 2420 bytes spill loads
ptxas info    : Used 64 registers, used 0 barriers, 2384 bytes cumulative stack size, \
368 bytes cmem[0]
ptxas info    : Compile time = 202.876 ms
ptxas info    : Compiling entry function 'k1' for 'sm_80'
ptxas info    : Function properties for k1
ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 10 registers, used 1 barriers, 1024 bytes smem, 372 bytes cmem[0]
ptxas info    : Compile time = 1.739 ms
ptxas info    : Compiling entry function 'old' for 'sm_70'
ptxas info    : Used 12 registers, 16 bytes lmem, 512 bytes smem, 360 bytes cmem[0]
"""


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_compiles_for_real_archs(arch: str) -> None:
    c = compile_cuda(ADD, "vadd", arch=arch)
    assert c.arch == arch and c.entry == "vadd"
    assert ".entry vadd(" in c.ptx and f".target {arch}" in c.ptx
    assert c.cubin is not None and c.cubin[:4] == b"\x7fELF"
    assert f"Compiling entry function 'vadd' for '{arch}'" in c.log
    assert c.options[:3] == (f"-arch={arch}", "-Xptxas", "-v")
    r = c.resources
    assert 0 < r["registers"] <= 255
    assert r["spill_bytes"] == 0 and r["shared_bytes"] == 0 and r["stack_bytes"] == 0


def test_default_arch_without_a_gpu() -> None:
    c = compile_cuda(ADD, "vadd")
    assert c.arch == "sm_80"
    assert compile_cuda(ADD, "vadd", arch="90").arch == "sm_90"


def test_shared_memory_is_reported() -> None:
    for arch in ("sm_80", "sm_90"):
        r = compile_cuda(SHARED, "block_sum", arch=arch).resources
        assert r["shared_bytes"] == 1024
        assert r["barriers"] == 1
        assert r["spill_bytes"] == 0


def test_spills_are_reported() -> None:
    free = compile_cuda(SPILL, "spill", arch="sm_80").resources
    tight = compile_cuda(SPILL, "spill", arch="sm_80", extra_options=("-maxrregcount=32",))
    assert free["spill_bytes"] == 0
    r = tight.resources
    assert r["registers"] <= 32
    assert r["spill_stores"] > 0 and r["spill_loads"] > 0
    assert r["spill_bytes"] == r["spill_stores"] + r["spill_loads"]
    assert r["stack_bytes"] > 0 and r["local_bytes"] == r["stack_bytes"]


def test_mangled_kernel_name_and_several_kernels() -> None:
    src = ADD + "__global__ void cxx(float* a) { a[threadIdx.x] *= 2.0f; }\n" + SHARED
    c = compile_cuda(src, "cxx", arch="sm_80")
    assert c.entry == "_Z3cxxPf" and c.resources["registers"] > 0
    assert set(c.functions) == {"vadd", "_Z3cxxPf", "block_sum"}
    assert compile_cuda(src, "block_sum", arch="sm_80").resources["shared_bytes"] == 1024
    with pytest.raises(TcBackendError, match="no kernel 'missing'"):
        compile_cuda(src, "missing", arch="sm_80")


def test_virtual_arch_gives_ptx_only() -> None:
    c = compile_cuda(ADD, "vadd", arch="compute_80")
    assert c.cubin is None and c.resources == {} and ".entry vadd(" in c.ptx


def test_bad_arch() -> None:
    with pytest.raises(TcBackendError, match="cannot compile for 'sm_12'"):
        compile_cuda(ADD, "vadd", arch="sm_12")
    with pytest.raises(TcBackendError, match="bad CUDA architecture"):
        compile_cuda(ADD, "vadd", arch="ampere")


def test_syntax_error_has_log_and_numbered_source() -> None:
    src = 'extern "C" __global__ void bad(float* a) {\n  a[0] = undefined_name\n}\n'
    with pytest.raises(TcBackendError) as info:
        compile_cuda(src, "bad", arch="sm_80")
    text = str(info.value)
    assert "NVRTC_ERROR_COMPILATION" in text and "error" in text
    assert "undefined_name" in text and "2 |   a[0] = undefined_name" in text


def test_compile_is_memoised(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = nv._compile

    def counting(source: str, name: str, arch: str, options: tuple[str, ...]) -> nv.CompiledCuda:
        calls.append(arch)
        return real(source, name, arch, options)

    monkeypatch.setattr(nv, "_compile", counting)
    nv.clear_compile_cache()
    a = compile_cuda(ADD, "vadd", arch="sm_80")
    assert compile_cuda(ADD, "vadd", arch="sm_80") is a
    assert compile_cuda(ADD, "vadd", arch="80") is a
    assert len(calls) == 1
    compile_cuda(ADD, "vadd", arch="sm_90")
    compile_cuda(ADD, "vadd", arch="sm_80", extra_options=["--use_fast_math"])
    assert calls == ["sm_80", "sm_90", "sm_80"]


def test_parse_ptxas_log() -> None:
    f = parse_ptxas_log(LOG)
    assert f["k2"] == {
        "registers": 64,
        "barriers": 0,
        "stack_bytes": 2384,
        "spill_stores": 1956,
        "spill_loads": 2420,
        "spill_bytes": 4376,
        "cumulative_stack_bytes": 2384,
        "const_bytes": 368,
        "shared_bytes": 0,
        "local_bytes": 2384,
    }
    assert f["k1"]["shared_bytes"] == 1024 and f["k1"]["spill_bytes"] == 0
    assert f["k1"]["registers"] == 10 and f["k1"]["barriers"] == 1
    assert f["old"]["local_bytes"] == 16 and f["old"]["shared_bytes"] == 512
    assert parse_ptxas_log("") == {}


def test_no_cuda_device_here() -> None:
    assert cuda_device_available() is False
    c = compile_cuda(ADD, "vadd", arch="sm_80")
    a = torch.zeros(4)
    with pytest.raises(TcBackendError, match="no CUDA device"):
        launch_cuda(c, (1,), (4,), pack_args([a, a, a, 4]))
