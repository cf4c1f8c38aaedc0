"""The catalogue through the compiler: every kernel, every preset on a subset.

* Every kernel of :mod:`tc.catalogue`, compiled with the naive options and run on
  PoCL (``backend="opencl"``), gives the outputs of the reference interpreter, leaves
  its inputs alone, and passes the static structure checks of :mod:`kernel_checks`
  (no barrier in thread-dependent code, only coincident loops distributed, no
  statement run redundantly by several ids).
* Every CUDA kernel of the catalogue compiles with NVRTC for sm_80 and sm_90 (no GPU
  needed) and, with the naive options, spills no register.
* Every preset compiles (OpenCL and CUDA) and runs correctly on PoCL for a
  representative subset of kernels.

Each kernel runs at its first test size; ``--fuzz-long`` runs all of them.
"""

from __future__ import annotations

import functools

import pytest
import torch
from kernel_checks import as_tuple, assert_same, structure_problems

import tc
from tc.catalogue import KERNELS, Kernel
from tc.options import PRESETS, MappingOptions

KERNEL_PARAMS = [pytest.param(kernel, id=name) for name, kernel in KERNELS.items()]
ARCHS = ("sm_80", "sm_90")
PRESET_SUBSET = ("matmul", "softmax", "conv2d", "group_conv", "embedding_sum", "moments")


@pytest.fixture
def all_sizes(request: pytest.FixtureRequest) -> bool:
    """Whether to run every test size of a kernel (``--fuzz-long``) or only the first."""
    return bool(request.config.getoption("--fuzz-long"))


def _sizes(kernel: Kernel, all_sizes: bool) -> tuple[dict[str, int], ...]:
    return kernel.test_sizes if all_sizes else kernel.test_sizes[:1]


def _inputs(kernel: Kernel, sizes: dict[str, int]) -> tuple[torch.Tensor, ...]:
    return kernel.make_inputs(sizes, torch.Generator().manual_seed(0))


@functools.cache
def _reference(text: str) -> tc.TC:
    return tc.define(text, backend="reference")


def _check_opencl(kernel: Kernel, sizes: dict[str, int], options: MappingOptions) -> None:
    """Compile for PoCL, run, compare with the interpreter, check the structure."""
    inputs = _inputs(kernel, sizes)
    saved = [t.clone() for t in inputs]
    want = _reference(kernel.tc)[kernel.entry](*inputs)
    executor = tc.compile(kernel.tc, kernel.entry, options, *inputs, backend="opencl")
    got = executor(*inputs)
    what = f"{kernel.name} {sizes} {options!r}"
    assert_same(got, want, kernel.rtol, kernel.atol, what=what)
    for before, after in zip(saved, inputs, strict=True):
        assert torch.equal(before, after), f"{what}: an input was modified"
    assert structure_problems(executor.program) == []
    assert len(as_tuple(got)) == len(executor.fn.outputs)


@pytest.mark.parametrize("kernel", KERNEL_PARAMS)
def test_naive_opencl_matches_the_interpreter(kernel: Kernel, all_sizes: bool) -> None:
    for sizes in _sizes(kernel, all_sizes):
        _check_opencl(kernel, sizes, MappingOptions("naive"))


@pytest.mark.parametrize("kernel", KERNEL_PARAMS)
def test_naive_cuda_compiles_for_sm80_and_sm90_without_spills(kernel: Kernel,
                                                              all_sizes: bool) -> None:
    for sizes in _sizes(kernel, all_sizes):
        inputs = _inputs(kernel, sizes)
        for arch in ARCHS:
            executor = tc.compile(kernel.tc, kernel.entry, MappingOptions("naive"), *inputs,
                                  backend="cuda", arch=arch)
            assert executor.kernels, f"{kernel.name}: no kernel"
            for info in executor.kernels:
                assert f".entry {info.name}" in info.ptx, f"{info.name}: not in the PTX"
                assert f".target {arch}" in info.ptx
                assert "registers" in info.resources, f"{info.name}: ptxas did not run"
                assert info.resources["spill_bytes"] == 0, (
                    f"{kernel.name} {sizes}: {info.name} spills on {arch}: {info.resources}")
                assert 1 <= info.block[0] * info.block[1] * info.block[2] <= 1024


PRESET_CASES = [
    pytest.param(name, preset, id=f"{name}-{preset}")
    for name in PRESET_SUBSET
    for preset in PRESETS
]


@pytest.mark.parametrize(("name", "preset"), PRESET_CASES)
def test_presets_compile_and_run_on_pocl(name: str, preset: str, all_sizes: bool) -> None:
    kernel = KERNELS[name]
    options = MappingOptions(preset)
    for sizes in _sizes(kernel, all_sizes):
        _check_opencl(kernel, sizes, options)
    inputs = _inputs(kernel, kernel.test_sizes[0])
    executor = tc.compile(kernel.tc, kernel.entry, options, *inputs, backend="cuda",
                          arch="sm_80")
    assert all(info.ptx and info.resources for info in executor.kernels)
    if preset == "single_thread":
        assert all(info.grid == (1, 1, 1) and info.block == (1, 1, 1)
                   for info in executor.kernels)
