"""Tests of the OpenCL back end on PoCL, with hand-written OpenCL C kernels."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pyopencl as cl
import pytest
import torch

import tc
from codegen import opencl
from codegen.launch import KernelArg, pack_args
from codegen.opencl import build_program, device_limits, find_pocl, launch, pocl_device
from tc.errors import TcBackendError
from tc.ir.types import ScalarType

ADD2D = r"""
__kernel void add2d(__global const float* a, __global const float* b, __global float* c,
                    int n0, int n1, long as0, long as1, long bs0, long bs1,
                    long cs0, long cs1) {
  int i = get_global_id(1);
  int j = get_global_id(0);
  if (i < n0 && j < n1)
    c[i * cs0 + j * cs1] = a[i * as0 + j * as1] + b[i * bs0 + j * bs1];
}
"""

TREE_SUM = r"""
__kernel void sum_dyn(__global const double* x, __global double* partial, int n,
                      __local double* scratch) {
  int lid = get_local_id(0);
  int gid = get_global_id(0);
  scratch[lid] = gid < n ? x[gid] : 0.0;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (int s = get_local_size(0) / 2; s > 0; s >>= 1) {
    if (lid < s) scratch[lid] += scratch[lid + s];
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  if (lid == 0) partial[get_group_id(0)] = scratch[0];
}

__kernel void sum_static(__global const float* x, __global float* partial, int n) {
  __local float s[128];
  int lid = get_local_id(0);
  int gid = get_group_id(0) * 128 + lid;
  s[lid] = gid < n ? x[gid] : 0.0f;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (int k = 64; k > 0; k >>= 1) {
    if (lid < k) s[lid] += s[lid + k];
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  if (lid == 0) partial[get_group_id(0)] = s[0];
}
"""

SCALARS = r"""
__kernel void scalars(__global long* out, __global double* outd, int a, long b, double c,
                      float d, uchar e) {
  if (get_global_id(0) == 0) {
    out[0] = a;
    out[1] = b;
    out[2] = a + b;
    out[3] = e;
    outd[0] = c;
    outd[1] = d;
    outd[2] = c * 3.0;
  }
}
"""


def _add2d(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> None:
    n0, n1 = c.shape
    values = [a, b, c, n0, n1, *a.stride(), *b.stride(), *c.stride()]
    types = [None] * 5 + [ScalarType.INT64] * 6
    args = pack_args(values, scalar_types=types, written={2})
    block = (16, 4, 1)
    grid = (max(1, (n1 + 15) // 16), max(1, (n0 + 3) // 4), 1)
    launch(build_program(ADD2D), "add2d", grid, block, args)


def test_pocl_device_is_pocl_and_memoised() -> None:
    ctx, queue = pocl_device()
    assert pocl_device() == (ctx, queue)
    platform = ctx.devices[0].platform
    assert "Portable Computing Language" in platform.name or "pocl" in platform.vendor.lower()
    assert device_limits().max_threads_per_block == ctx.devices[0].max_work_group_size


def test_one_work_group_runs_on_the_basic_device() -> None:
    """A launch of one work-group goes to PoCL's basic device (no worker thread to
    wake); a launch of several to the multi-threaded one; both give the same result."""
    from codegen import stats
    from codegen.opencl import _pocl

    if _pocl()[2] is None:
        pytest.skip("PoCL was read before tc asked for its basic device (POCL_DEVICES set)")
    text = "def f(float(N) X) -> (Y) { Y(i) = X(i) * 2.0 + 1.0 }"
    for n, groups in ((5, 1), (3000, 2)):
        x = torch.randn(n)
        options = tc.MappingOptions("naive").mapToThreads(64).mapToBlocks(groups)
        ex = tc.compile(text, "f", options, x, backend="opencl")
        before = stats.snapshot().get("opencl_launch_basic", 0)
        torch.testing.assert_close(ex(x), x * 2.0 + 1.0)
        on_basic = stats.snapshot().get("opencl_launch_basic", 0) - before
        assert on_basic == (1 if groups == 1 else 0), (n, groups)


def test_stored_binaries_keep_the_basic_device() -> None:
    """A program stored and loaded back (the compilation cache's path) still runs its
    one-work-group launches on the basic device; a binary of the main device alone (as
    stored before) still loads, for the main device."""
    from codegen import stats
    from codegen.opencl import _pocl, program_binary, program_from_binary

    if _pocl()[2] is None:
        pytest.skip("PoCL was read before tc asked for its basic device (POCL_DEVICES set)")
    source = ("__kernel void twice(__global float* x, int n) {"
              " int i = get_global_id(0); if (i < n) x[i] = 2.0f * x[i]; }")
    stored = program_binary(build_program(source))
    for binary, small in ((stored, True), (opencl._split(stored)[0], False)):
        program = program_from_binary(binary)
        x = torch.arange(5, dtype=torch.float32)
        before = stats.snapshot().get("opencl_launch_basic", 0)
        launch(program, "twice", (1, 1, 1), (8, 1, 1), [x, np.int32(5)])
        assert torch.equal(x, 2 * torch.arange(5, dtype=torch.float32))
        assert stats.snapshot().get("opencl_launch_basic", 0) - before == int(small)


def test_find_pocl_picks_pocl_among_platforms() -> None:
    def fake(name: str, vendor: str, devices: list[str]) -> SimpleNamespace:
        devs = [SimpleNamespace(name=d) for d in devices]
        return SimpleNamespace(name=name, vendor=vendor, get_devices=lambda: devs)

    other = fake("NVIDIA CUDA", "NVIDIA Corporation", ["gpu"])
    pocl = fake("Portable Computing Language", "The pocl project", ["cpu"])
    assert find_pocl([other, pocl]).name == "cpu"
    assert find_pocl([fake("x", "The pocl project", ["cpu2"])]).name == "cpu2"
    # the multi-threaded device is the main one, even listed after the basic one
    both = fake("Portable Computing Language", "The pocl project", ["basic-x", "pthread-x"])
    assert find_pocl([both]).name == "pthread-x"
    assert find_pocl([fake("p", "pocl", ["basic-x"])]).name == "basic-x"
    with pytest.raises(TcBackendError, match="PoCL.*not available.*NVIDIA CUDA"):
        find_pocl([other])
    with pytest.raises(TcBackendError, match="platforms: none"):
        find_pocl([])


def test_pocl_honours_use_host_ptr() -> None:
    """Verified fact: PoCL writes USE_HOST_PTR buffers in place (even unaligned ones)."""
    ctx, queue = pocl_device()
    prg = build_program("__kernel void w(__global int* a) { a[get_global_id(0)] = 7; }")
    base = torch.zeros(17, dtype=torch.int32)
    host = base[1:].numpy()  # 4 bytes past an aligned allocation
    buf = cl.Buffer(ctx, cl.mem_flags.READ_WRITE | cl.mem_flags.USE_HOST_PTR, hostbuf=host)
    kernel = cl.Kernel(prg, "w")
    kernel.set_args(buf)
    cl.enqueue_nd_range_kernel(queue, kernel, (16,), (4,))
    queue.finish()
    assert base.tolist() == [0] + [7] * 16  # visible without any map or copy
    mapped, _ = cl.enqueue_map_buffer(queue, buf, cl.map_flags.READ, 0, (16,), np.int32)
    assert mapped.__array_interface__["data"][0] == host.__array_interface__["data"][0]
    mapped.base.release(queue)
    queue.finish()


def test_vector_add_contiguous() -> None:
    a, b = torch.randn(5, 37), torch.randn(5, 37)
    c = torch.empty(5, 37)
    _add2d(a, b, c)
    torch.testing.assert_close(c, a + b)


def test_vector_add_on_strided_views() -> None:
    torch.manual_seed(0)
    a = torch.randn(33, 7).t()  # transposed: 7 x 33
    b = torch.randn(20, 100)[3::2, 1::3][:7]  # steps and offset: 7 x 33
    big = torch.full((12, 40), -1.0)
    c = big.narrow(0, 3, 7).narrow(1, 5, 33)  # offset view with a row stride of 40
    assert a.shape == b.shape == c.shape == (7, 33)
    _add2d(a, b, c)
    torch.testing.assert_close(c, a + b)
    mask = torch.ones_like(big, dtype=torch.bool)
    mask[3:10, 5:38] = False
    assert torch.all(big[mask] == -1.0)  # memory in the span but outside the view untouched


def test_vector_add_into_transposed_output() -> None:
    a = torch.randn(9, 13)
    b = torch.randn(13, 9).t()
    out = torch.zeros(13, 9)
    c = out.t()
    _add2d(a, b, c)
    torch.testing.assert_close(out, (a + b).t())


@pytest.mark.parametrize("n, block", [(1000, 64), (4096, 256), (77, 32)])
def test_tree_sum_in_local_memory(n: int, block: int) -> None:
    x = torch.rand(n, dtype=torch.float64)
    groups = (n + block - 1) // block
    partial = torch.zeros(groups, dtype=torch.float64)
    args = [*pack_args([x, partial, n], written={1}), KernelArg.local(block * 8)]
    launch(build_program(TREE_SUM), "sum_dyn", (groups,), (block,), args)
    padded = torch.zeros(groups * block, dtype=torch.float64)
    padded[:n] = x
    torch.testing.assert_close(partial, padded.view(groups, block).sum(1))


def test_tree_sum_static_local_array() -> None:
    n = 1000
    x = torch.rand(n)
    groups = (n + 127) // 128
    partial = torch.zeros(groups)
    launch(build_program(TREE_SUM), "sum_static", (groups,), (128,), pack_args([x, partial, n]))
    padded = torch.zeros(groups * 128)
    padded[:n] = x
    torch.testing.assert_close(partial, padded.view(groups, 128).sum(1))


def test_int32_int64_double_float_uchar_arguments() -> None:
    out = torch.zeros(4, dtype=torch.int64)
    outd = torch.zeros(3, dtype=torch.float64)
    big = 2**40 + 3
    args = pack_args(
        [out, outd, -7, big, 1 / 3, 0.25, 200],
        scalar_types=[
            None,
            None,
            None,
            ScalarType.INT64,
            ScalarType.FLOAT64,
            None,
            ScalarType.UINT8,
        ],
    )
    launch(build_program(SCALARS), "scalars", (1,), (1,), args)
    assert out.tolist() == [-7, big, big - 7, 200]
    assert outd.tolist() == [1 / 3, 0.25, 1 / 3 * 3.0]


def test_wrong_scalar_size_is_a_backend_error() -> None:
    out = torch.zeros(4, dtype=torch.int64)
    outd = torch.zeros(3, dtype=torch.float64)
    args = pack_args([out, outd, 1, 2, 3.0, 4.0, 5])  # 2 passed as int32 to a long
    with pytest.raises(TcBackendError, match="scalars"):
        launch(build_program(SCALARS), "scalars", (1,), (1,), args)


def test_empty_tensor_argument() -> None:
    a = torch.zeros(0, 37)
    c = torch.zeros(0, 37)
    _add2d(a, a, c)  # n0 = 0: the kernel touches nothing


def test_build_error_has_log_and_numbered_source() -> None:
    src = "__kernel void bad(__global float* a) {\n  a[0] = undefined_name;\n}\n"
    with pytest.raises(TcBackendError) as info:
        build_program(src)
    text = str(info.value)
    assert "undefined_name" in text and "undeclared" in text
    assert "2 |   a[0] = undefined_name;" in text


def test_build_is_memoised(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, ...]] = []
    real = opencl._compile

    def counting(source: str, options: tuple[str, ...]) -> cl.Program:
        calls.append(options)
        return real(source, options)

    monkeypatch.setattr(opencl, "_compile", counting)
    opencl.clear_program_cache()
    src = "__kernel void m(__global float* a) { a[0] = X; }"
    p1 = build_program(src, ("-DX=1",))
    p2 = build_program(src, ["-DX=1"])
    assert p1 is p2 and len(calls) == 1
    p3 = build_program(src, ("-DX=2",))
    assert p3 is not p1 and len(calls) == 2
    a = torch.zeros(1)
    launch(p3, "m", (1,), (1,), pack_args([a]))
    assert a.item() == 2.0


def test_launch_errors() -> None:
    prg = build_program(ADD2D)
    x = torch.zeros(4)
    with pytest.raises(TcBackendError, match="no kernel named 'nope'"):
        launch(prg, "nope", (1,), (1,), pack_args([x]))
    too_big = device_limits().max_threads_per_block * 2
    with pytest.raises(TcBackendError, match="threads per block"):
        launch(prg, "add2d", (1,), (too_big,), pack_args([x]))
    with pytest.raises(TcBackendError, match=">= 1"):
        launch(prg, "add2d", (0,), (1,), pack_args([x]))


def test_sync_copies_back_when_the_map_is_elsewhere() -> None:
    """The fallback of _sync_to_host: a buffer whose map is not the host array."""
    ctx, queue = pocl_device()
    device_data = np.arange(8, dtype=np.uint8)
    buf = cl.Buffer(ctx, cl.mem_flags.READ_WRITE | cl.mem_flags.COPY_HOST_PTR, hostbuf=device_data)
    host = np.zeros(8, dtype=np.uint8)
    mapped, _ = cl.enqueue_map_buffer(queue, buf, cl.map_flags.READ, 0, host.shape, host.dtype,
                                      is_blocking=True)
    opencl._sync_to_host(queue, mapped, host)
    queue.finish()
    assert host.tolist() == list(range(8))


def test_build_warnings_go_to_logging_not_the_terminal(capfd, caplog) -> None:
    """PoCL's compiler prints warnings on stderr and pyopencl repeats them as a
    CompilerWarning: a build that works logs them (debug) and shows nothing."""
    import logging
    import uuid
    import warnings

    src = (f'#warning "tc-test {uuid.uuid4().hex}"\n'  # a fresh source: no PoCL cache hit
           "__kernel void k(__global float* a) { a[0] = 1.0f; }")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a CompilerWarning reaching the user would raise
        with caplog.at_level(logging.DEBUG, logger="codegen.opencl"):
            build_program(src)
    out, err = capfd.readouterr()
    assert "tc-test" not in out + err and "warning" not in err.lower()
    assert "tc-test" in caplog.text
