"""The static benchmark report (benchmarks.static_report) and its timing helpers.

Expected byte counts are worked out by hand from the sizes, independently of the
estimator; the minimum is recomputed from the tensors the catalogue builds.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from benchmarks import gpu_timing, static_report
from benchmarks.static_report import COLUMNS, markdown, report_kernel
from benchmarks.traffic import estimate_traffic, sum_samples
from codegen import kernel as k
from tc import catalogue
from tc.ir import nodes as ir
from tc.ir.types import INDEX_TYPE, ScalarType
from tc.options import MappingOptions

NAIVE = MappingOptions("naive")
F4 = 4  # bytes of a float32


def _nbytes(tensors: torch.Tensor | tuple[torch.Tensor, ...]) -> int:
    if isinstance(tensors, torch.Tensor):
        tensors = (tensors,)
    return sum(t.numel() * t.element_size() for t in tensors)


def _custom(name: str, text: str, sizes: dict[str, int]) -> catalogue.Kernel:
    """A suite-like kernel around ``text`` (only name, tc, entry and sizes are used)."""
    return catalogue.Kernel(name, text, name, lambda s, g: (), lambda *a: None,
                            (sizes,), (sizes,))


@pytest.mark.parametrize("name", ["copy3d", "softmax", "matmul"])
def test_report_rows_resources_and_minimum(name: str) -> None:
    kernel = catalogue.get(name)
    sizes = kernel.test_sizes[0]
    row = report_kernel(kernel, sizes, NAIVE, "sm_80")
    assert row.error is None and row.kernels
    inputs = kernel.make_inputs(dict(sizes), torch.Generator().manual_seed(0))
    minimum = _nbytes(inputs) + _nbytes(kernel.reference(*inputs))  # no temporaries
    assert row.minimum_bytes == minimum > 0
    assert row.estimated_bytes >= row.minimum_bytes
    for g in row.kernels:
        assert g.registers is not None and g.registers > 0
        assert g.spill_bytes == 0 and g.shared_bytes == 0
        assert g.threads_per_block >= 1 and g.blocks >= 1 and g.launches == 1
    assert row.estimated_bytes == sum(g.bytes_read + g.bytes_written for g in row.kernels)
    table = markdown([row]).splitlines()
    assert table[0] == "| " + " | ".join(COLUMNS) + " |"
    for column in ("registers", "spill B", "shared B", "threads/block", "blocks",
                   "est. bytes/call", "minimum bytes", "est./min"):
        assert column in table[0]
    assert len(table) == 2 + len(row.kernels)
    assert table[2].startswith(f"| {name} | ")


@pytest.mark.parametrize("name", ["copy3d", "transpose3d_210"])
def test_copy_moves_exactly_the_minimum(name: str) -> None:
    sizes = {"D0": 3, "D1": 5, "D2": 7}
    row = report_kernel(catalogue.get(name), sizes, NAIVE, nvrtc=False)
    expected = 2 * 3 * 5 * 7 * F4  # every element read once and written once
    assert row.minimum_bytes == row.estimated_bytes == expected == 840
    assert row.ratio == 1.0
    assert row.kernels[0].registers is None  # no NVRTC asked


def test_elementwise_reads_each_element_once() -> None:
    text = "def ew(float(M, N) A, float(M, N) B) -> (O) { O(i, j) = A(i, j) * B(i, j) + A(i, j) }"
    sizes = {"M": 37, "N": 70}  # partial tiles along both axes
    row = report_kernel(_custom("ew", text, sizes), sizes, NAIVE, nvrtc=False)
    # A(i, j) twice in one statement is one load: 2 reads + 1 write per element
    assert row.estimated_bytes == row.minimum_bytes == 3 * 37 * 70 * F4


def test_broadcast_reads_more_than_the_minimum() -> None:
    text = "def bc(float(M, N) A, float(N) b) -> (O) { O(i, j) = A(i, j) + b(j) }"
    sizes = {"M": 37, "N": 70}
    row = report_kernel(_custom("bc", text, sizes), sizes, NAIVE, nvrtc=False)
    assert row.minimum_bytes == (37 * 70 + 70 + 37 * 70) * F4
    assert row.estimated_bytes == 3 * 37 * 70 * F4  # b(j) read once per output element
    assert row.estimated_bytes > row.minimum_bytes


@pytest.mark.parametrize("options, sizes", [
    (NAIVE, {"M": 3, "K": 5, "N": 7}),
    (NAIVE, {"M": 70, "K": 40, "N": 33}),
    # more than 5 tiles per loop and several blocks and threads per axis: the
    # interpolated sums and the wrap-around mapping
    (MappingOptions("naive").tile(4, 4, 4).mapToThreads(4, 2).mapToBlocks(3, 2),
     {"M": 29, "K": 26, "N": 23}),
])
def test_matmul_traffic_by_hand(options: MappingOptions, sizes: dict[str, int]) -> None:
    m, kk, n = sizes["M"], sizes["K"], sizes["N"]
    row = report_kernel(catalogue.get("matmul"), sizes, options, nvrtc=False)
    # C = 0 once per (m, n); C += A * B reads C, A, B and writes C once per (m, n, k)
    assert row.estimated_bytes == m * n * F4 + 4 * m * n * kk * F4
    assert row.minimum_bytes == (m * kk + kk * n + m * n) * F4


def _int(v: int) -> ir.Expr:
    return ir.IntImm(v, type=INDEX_TYPE)


def _bin(op: str, a: ir.Expr, b: ir.Expr) -> ir.Expr:
    cmp = op in ("<", "<=", "==")
    return ir.Binary(op, a, b, type=ScalarType.BOOL if cmp else INDEX_TYPE)


def test_hardware_guards_strided_loops_and_shared_memory() -> None:
    """A block-per-row reduction written by hand: a strided per-thread loop over global
    memory, a partial in shared memory, and thread 0 writing the row's result."""
    f32 = ScalarType.FLOAT32
    loop = ir.Var("c_i", "loop", type=INDEX_TYPE)
    row = ir.Var("c_r", "loop", type=INDEX_TYPE)
    size_n = ir.Var("s_N", "size", type=INDEX_TYPE)
    tx = k.hw("thread", "x")
    acc = ir.Var("acc", "local", type=f32)
    x = ir.Read("t_X", (_bin("+", _bin("*", row, size_n), loop),), type=f32)
    body = k.Block((
        k.Local("acc", f32, ir.FloatImm(0.0, type=f32)),
        k.For("c_i", tx, _bin("<", loop, size_n),
              k.Assign("acc", ir.Binary("+", acc, x, type=f32)), step=32),
        k.Store("partial", (tx,), acc),
        k.Barrier(),
        k.If(_bin("==", tx, _int(0)), k.Store("t_Y", (row,), ir.Read("partial", (_int(0),),
                                                                      type=f32))),
    ))
    buffers = (k.Buffer("t_X", f32, (_int(0),), (_int(1),), read_only=True),
               k.Buffer("t_Y", f32, (_int(0),), (_int(1),)),
               k.Buffer("partial", f32, (_int(32),), (_int(1),), space="shared"))
    rows = ir.Var("s_M", "size", type=INDEX_TYPE)
    kernel = k.Kernel("rows", buffers, ("s_N", "s_M"),
                      k.For("c_r", _int(0), _bin("<", row, rows), body, mapping="block.x"),
                      (8, 1, 1), (32, 1, 1))
    # every X element read once by one thread; one Y element written per row; shared
    # memory moves nothing
    assert estimate_traffic(kernel, {"N": 320, "M": 10}) == (10 * 320 * F4, 10 * F4)
    assert estimate_traffic(kernel, {"N": 64, "M": 3}) == (3 * 64 * F4, 3 * F4)


def test_sum_samples() -> None:
    def const(i: int) -> tuple[float, float]:
        return (3.0, 1.0)

    assert sum_samples(const, 0) == (0, 0)
    assert sum_samples(const, 1000) == (3000, 1000)
    assert sum_samples(lambda i: (i, 2 * i + 1), 101) == (5050, 10201)
    # full tiles of 32 with a partial last tile of 4
    assert sum_samples(lambda i: (32 if i < 9 else 4, 0), 10) == (9 * 32 + 4, 0)
    assert sum_samples(lambda i: (1 if i == 0 else 0, 0), 256) == (1, 0)  # an id-0 guard


def test_summarize_medians_and_ratio() -> None:
    t = gpu_timing.summarize([3.0, 1.0, 2.0, 100.0, 2.5], [1.0, 1.0, 0.5])
    assert (t.tc_ms, t.torch_ms, t.runs) == (2.5, 1.0, 3)
    assert t.ratio == pytest.approx(2.5)
    assert gpu_timing.summarize([1.0], [0.0]).ratio == math.inf
    with pytest.raises(ValueError):
        gpu_timing.summarize([], [1.0])


def test_time_events_with_fake_events() -> None:
    clock = {"now": 0.0, "syncs": 0}

    class FakeEvent:
        def record(self) -> None:
            self.at = clock["now"]

        def elapsed_time(self, end: FakeEvent) -> float:
            return end.at - self.at

    calls = []

    def work() -> None:
        calls.append(1)
        clock["now"] += len(calls)  # the i-th call takes i ms

    def sync() -> None:
        clock["syncs"] += 1

    times = gpu_timing.time_events(work, 2, 4, event=FakeEvent, synchronize=sync)
    assert times == [3.0, 4.0, 5.0, 6.0] and len(calls) == 6 and clock["syncs"] == 2


def test_runner_without_device(monkeypatch, capsys, tmp_path) -> None:
    monkeypatch.setattr(gpu_timing, "timing_available", lambda: False)
    out_json = tmp_path / "report.json"
    assert static_report.main(["--backend", "cuda", "--kernels", "copy3d,moments", "--sizes",
                               "test", "--first", "--time", "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    assert "no CUDA device: static report only" in out
    assert "tc ms" not in out and "| copy3d | D0=3 D1=5 D2=7 |" in out
    data = json.loads(out_json.read_text())
    assert [d["kernel"] for d in data] == ["copy3d", "moments"]
    assert data[0]["estimated_bytes"] == data[0]["minimum_bytes"] == 840
    assert data[0]["ratio"] == 1.0 and data[0]["timing"] is None


def test_runner_with_a_device_times_each_kernel(monkeypatch, capsys) -> None:
    monkeypatch.setattr(gpu_timing, "timing_available", lambda: True)
    timed = []

    def fake_time(kernel, sizes, options, warmup, runs):
        timed.append((kernel.name, warmup, runs))
        return {"tc_ms": 0.5, "torch_ms": 0.25, "ratio": 2.0, "runs": runs}

    monkeypatch.setattr(gpu_timing, "time_or_none", fake_time)
    assert static_report.main(["--kernels", "copy3d", "--sizes", "test", "--first",
                               "--no-nvrtc", "--runs", "7", "--warmup", "1"]) == 0
    out = capsys.readouterr().out
    assert "no CUDA device" not in out and "| tc ms | torch ms | tc/torch |" in out
    assert "| 0.500 | 0.250 | 2.00 |" in out and timed == [("copy3d", 1, 7)]
    assert static_report.main(["--kernels", "copy3d", "--sizes", "test", "--first",
                               "--no-nvrtc", "--no-time"]) == 0
    assert "timing skipped" in capsys.readouterr().out and len(timed) == 1


def test_runner_rejects_unknown_kernel(capsys) -> None:
    assert static_report.main(["--kernels", "nope"]) == 2
    assert "unknown kernel 'nope'" in capsys.readouterr().err


def test_conditions_on_integer_locals() -> None:
    """``int g = 2 * i; if (g < M) Y[i] = X[g];`` over i in 0..4: 4 of 5 run."""
    f32, i32 = ScalarType.FLOAT32, ScalarType.INT32
    i = ir.Var("c_i", "loop", type=INDEX_TYPE)
    g = ir.Var("g", "local", type=i32)
    body = k.Block((
        k.Local("g", i32, _bin("*", _int(2), i)),
        k.If(_bin("<", g, ir.Var("s_M", "size", type=INDEX_TYPE)),
             k.Store("t_Y", (i,), ir.Read("t_X", (g,), type=f32))),
    ))
    buffers = (k.Buffer("t_X", f32, (_int(7),), (_int(1),), read_only=True),
               k.Buffer("t_Y", f32, (_int(5),), (_int(1),)))
    kernel = k.Kernel("gather", buffers, ("s_M",),
                      k.For("c_i", _int(0), _bin("<=", i, _int(4)), body, mapping="thread.x"),
                      (1, 1, 1), (4, 1, 1))
    assert estimate_traffic(kernel, {"M": 7}) == (4 * F4, 4 * F4)
