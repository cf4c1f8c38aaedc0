"""The static report for the CPU target (benchmarks.static_report --backend cpu).

Loops are checked against the pragmas of the C that the CPU executor really builds,
byte counts against counts worked out by hand from the sizes.
"""

from __future__ import annotations

import json

import pytest
import torch

import tc
from benchmarks import gpu_timing, static_report
from benchmarks.static_report import (
    CPU_COLUMNS,
    CpuKernelRow,
    markdown,
    report_kernel,
    tally,
)
from codegen.targets import TARGETS, default_target
from tc import catalogue
from tc.options import MappingOptions

pytestmark = pytest.mark.skipif(not TARGETS["cpu"].available(), reason="no C compiler")

NAIVE = MappingOptions("naive")
F4 = 4  # bytes of a float32


def _custom(name: str, text: str, sizes: dict[str, int]) -> catalogue.Kernel:
    """A suite-like kernel around ``text`` (only name, tc, entry and sizes are used)."""
    return catalogue.Kernel(name, text, name, lambda s, g: (), lambda *a: None,
                            (sizes,), (sizes,))


def _executor(kernel: catalogue.Kernel, sizes: dict[str, int]):
    inputs = kernel.make_inputs(dict(sizes), torch.Generator().manual_seed(0))
    return tc.compile(kernel.tc, kernel.entry, NAIVE, *inputs, backend="cpu")


def _pragmas(source: str) -> tuple[int, int, int]:
    """Parallel loops, SIMD loops and SIMD reductions of printed C."""
    lines = [line.strip() for line in source.splitlines()]
    parallel = [x for x in lines if x.startswith("#pragma omp parallel for")]
    simd = [x for x in lines if x.startswith("#pragma omp simd")
            or x.startswith("#pragma omp parallel for simd")]
    return len(parallel), len(simd), sum("reduction(" in x for x in simd)


@pytest.mark.parametrize("name", ["softmax", "cross_entropy_mean", "fc_relu", "layer_norm",
                                  "copy3d", "matmul"])
def test_loops_are_those_of_the_built_c(name: str) -> None:
    kernel = catalogue.get(name)
    sizes = kernel.test_sizes[0]
    row = report_kernel(kernel, sizes, NAIVE, target="cpu")
    assert row.error is None and row.target == "cpu" and row.strategy == "cpu"
    built = _executor(kernel, sizes).kernels
    assert [g.name for g in row.kernels] == [b.name for b in built]
    for g, b in zip(row.kernels, built, strict=True):
        assert isinstance(g, CpuKernelRow) and g.launches == 1
        simd_reductions = sum(s.endswith(" reduction") for s in g.simd_loops)
        assert (len(g.parallel_loops), len(g.simd_loops), simd_reductions) == _pragmas(b.source)


def test_source_bytes_are_the_built_library() -> None:
    kernel, sizes = catalogue.get("copy3d"), {"D0": 3, "D1": 5, "D2": 7}
    row = report_kernel(kernel, sizes, NAIVE, target="cpu")
    (built,) = _executor(kernel, sizes).kernels  # one kernel: its library is its source
    assert row.source_bytes == len(built.source.encode()) > 0


@pytest.mark.parametrize("name", ["copy3d", "transpose3d_210"])
def test_copy_moves_exactly_the_minimum(name: str) -> None:
    row = report_kernel(catalogue.get(name), {"D0": 3, "D1": 5, "D2": 7}, NAIVE, target="cpu")
    assert row.minimum_bytes == row.estimated_bytes == 2 * 3 * 5 * 7 * F4 == 840


@pytest.mark.parametrize("sizes", [{"M": 37, "N": 70}, {"M": 370, "N": 700}])
def test_broadcast_by_hand(sizes: dict[str, int]) -> None:
    text = "def bc(float(M, N) A, float(N) b) -> (O) { O(i, j) = A(i, j) + b(j) }"
    row = report_kernel(_custom("bc", text, sizes), sizes, NAIVE, target="cpu")
    m, n = sizes["M"], sizes["N"]
    (g,) = row.kernels
    assert (g.bytes_read, g.bytes_written) == (2 * m * n * F4, m * n * F4)  # b(j) per (i, j)
    assert g.parallel_loops and all(s.endswith(" lanes") for s in g.simd_loops)


def test_compilation_error_is_a_row() -> None:
    bad = _custom("bad", "def bad(float(N) A) -> (B) { B(i) = A(i) + W(i) }", {"N": 3})
    row = report_kernel(bad, {"N": 3}, NAIVE, target="cpu")
    assert row.error is not None and row.error.startswith("compilation failed")
    assert "compilation failed" in markdown([row])


def test_markdown_cpu_columns_and_one_strategy_per_table() -> None:
    softmax = catalogue.get("softmax")
    row = report_kernel(softmax, softmax.test_sizes[0], NAIVE, target="cpu")
    table = markdown([row]).splitlines()
    assert table[0] == "| " + " | ".join(CPU_COLUMNS) + " |"
    assert len(table) == 2 + len(row.kernels)
    first = [c.strip() for c in table[2].strip("|").split("|")]
    assert first[:6] == ["softmax", "M=3 N=7", "tc_softmax_0", "1",
                         tally(row.kernels[0].parallel_loops), tally(row.kernels[0].simd_loops)]
    assert first[CPU_COLUMNS.index("C source")] == static_report.human_bytes(row.source_bytes)
    gpu = report_kernel(softmax, softmax.test_sizes[0], NAIVE, nvrtc=False, target="opencl")
    assert gpu.strategy == "gpu" and markdown([gpu]).startswith("| kernel | sizes | GPU kernel")
    with pytest.raises(ValueError, match="several mapping strategies"):
        markdown([row, gpu])


def test_tally() -> None:
    assert tally([]) == "-"
    assert tally(["c_c5 lanes", "c_c3 reduction", "c_c5 lanes"]) == \
        "c_c5 lanes x2, c_c3 reduction"


def test_runner_cpu_backend(monkeypatch, capsys, tmp_path) -> None:
    monkeypatch.setattr(gpu_timing, "timing_available", lambda: True)  # not used for cpu
    monkeypatch.setattr(gpu_timing, "time_or_none", lambda *a: pytest.fail("timed a CPU run"))
    out_json = tmp_path / "report.json"
    assert static_report.main(["--backend", "cpu", "--kernels", "copy3d,softmax", "--sizes",
                               "test", "--first", "--time", "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    assert "cpu target: static report only (--time ignored)" in out
    assert "Static report for the cpu target" in out and "| parallel loops |" in out
    data = json.loads(out_json.read_text())
    assert [d["kernel"] for d in data] == ["copy3d", "softmax"]
    assert all(d["strategy"] == "cpu" and d["source_bytes"] > 0 for d in data)
    assert data[0]["estimated_bytes"] == data[0]["minimum_bytes"] == 840
    assert data[0]["kernels"][0]["parallel_loops"]


def test_runner_default_backend_without_a_device(monkeypatch, capsys) -> None:
    monkeypatch.setattr(gpu_timing, "timing_available", lambda: False)
    assert static_report.main(["--kernels", "copy3d", "--sizes", "test", "--first"]) == 0
    out = capsys.readouterr().out
    assert f"Static report for the {default_target('cpu').name} target" in out
