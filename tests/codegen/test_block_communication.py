"""Threads of a block passing values through global memory (issue 12's softmax).

A fused softmax mapped to one block of 32x2 threads: thread (0, 0) reduces a row into
the temporaries ``mx`` and ``s`` in global memory, the other threads read them after a
barrier. PoCL gave NaN (a different count on every run) because the kernel's written
pointers were ``restrict`` (which lets the compiler keep a loaded value across the
barrier) and OpenCL barriers fenced local memory only. Written pointers are no longer
``restrict`` on the GPU targets, and OpenCL barriers fence global memory too.
"""

from __future__ import annotations

import json

import pytest
import torch
from kernel_checks import assert_same

import tc
from codegen.compiler import compile_program
from codegen.targets import TARGETS

SOFTMAX = """def softmax_tmp(float(N, D) X) -> (Y) {
    mx(n) max=! X(n, d)
    e(n, d) = exp(X(n, d) - mx(n))
    s(n) +=! e(n, d)
    Y(n, d) = e(n, d) / s(n)
}"""
#: The options of the report (threads (32, 32) at N=17: a block of 32 x 17).
OPTIONS = {"blocks": [1], "fix_parameters": False, "intra_allow_skewing": False,
           "intra_fusion": "Preserve3Coincident", "intra_positive_orthant": True,
           "match_library_calls": False, "max_shared_memory": None,
           "outer_allow_skewing": False, "outer_fusion": "Max",
           "outer_positive_orthant": True, "private_depth": 0, "shared_depth": 0,
           "threads": [32, 32], "tile_imperfectly_nested": False, "tile_sizes": [1, 4, 2, 8],
           "unroll_copy_shared": False, "unroll_factor": 8, "use_private_memory": True,
           "use_readonly_cache": False, "use_shared_memory": False, "version": 1}


def _options(**changes) -> tc.MappingOptions:
    return tc.MappingOptions.deserialize(json.dumps({**OPTIONS, **changes}))


@pytest.mark.skipif(not TARGETS["opencl"].available(), reason="no OpenCL device")
@pytest.mark.parametrize("threads", [[32, 32], [32, 2], [2, 17]])
def test_fused_softmax_in_one_block_matches_torch(threads: list[int]) -> None:
    X = torch.randn(17, 130, generator=torch.Generator().manual_seed(0))
    ex = tc.compile(SOFTMAX, "softmax_tmp", _options(threads=threads), X, backend="opencl")
    for _ in range(3):  # the race showed a different NaN count on every run
        assert_same(ex(X), (torch.softmax(X, 1),), 1e-5, 1e-6, what=f"threads {threads}")


def test_gpu_sources_keep_restrict_for_read_only_pointers_only() -> None:
    fn = tc.define(SOFTMAX, backend="reference").softmax_tmp.ir
    program = compile_program(fn, _options(), {"N": 17, "D": 130}, [(130, 1)], "gpu")
    (ck,) = program.kernels
    for source, word in ((ck.opencl_source, "restrict"), (ck.cuda_source, "__restrict__")):
        head = source[source.index("(", source.index("tc_softmax_tmp_0")):].split(")")[0]
        params = [p.strip() for p in head.split(",")]
        assert any("const" in p and word in p for p in params), head  # X
        assert all(word not in p for p in params if "const" not in p), head
    assert "barrier(CLK_LOCAL_MEM_FENCE | CLK_GLOBAL_MEM_FENCE);" in ck.opencl_source
