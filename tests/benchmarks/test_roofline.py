"""The roofline of the benchmark runner (benchmarks.roofline), its report and CLI checks.

FLOP and byte counts are worked out by hand from the TC texts, independently of the
counter; the bound is checked on made-up peaks, so that nothing here depends on how
fast this machine is. One smoke test runs the real command line (probe included).
"""

from __future__ import annotations

import json
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

import tc
from benchmarks import report, roofline, runner
from benchmarks.__main__ import build_parser, main, settings_from_args
from benchmarks.roofline import Peaks, Roofline
from benchmarks.runner import Cell, Row, Settings
from benchmarks.traffic import compulsory_bytes
from tc import catalogue
from tc.lang.frontend import check_text

F4 = 4  # bytes of a float32


def _fn(name: str):
    k = catalogue.get(name)
    return check_text(k.tc).functions[k.entry]


def _peaks(flops_per_s: float, bytes_per_s: float) -> Peaks:
    return Peaks(flops_per_s, bytes_per_s, threads=2, matmul_n=0, copy_bytes=0, runs=0,
                 matmul_ms=[], copy_ms=[])


# -- counting ------------------------------------------------------------------------------


@pytest.mark.parametrize("m, n, k", [(3, 7, 5), (64, 32, 16)])
def test_matmul_flops_are_2mnk(m: int, n: int, k: int) -> None:
    flops = roofline.count_flops(_fn("matmul"), {"M": m, "N": n, "K": k})
    assert abs(flops - 2 * m * n * k) <= m * n  # a multiply and an add per (m, n, k)
    assert flops == 2 * m * n * k  # the initialisation to 0 is not arithmetic


def test_softmax_and_layer_norm_flops_by_hand() -> None:
    # softmax: max, (sub, exp), add, div per element
    assert roofline.count_flops(_fn("softmax"), {"M": 3, "N": 7}) == 5 * 3 * 7
    # layer_norm: mean (div, add) + var (2 sub, mul, div, add) + Y (sub, add, rsqrt, 2 mul,
    # add): each sub-expression as often as the text writes it
    assert roofline.count_flops(_fn("layer_norm"), {"M": 4, "N": 6}) == 13 * 4 * 6


def test_index_and_integer_arithmetic_are_not_flops() -> None:
    # conv2d_s2 subscripts are 2 * h + kh: only the multiply-add of the values counts
    s = {"N": 1, "C": 3, "H": 9, "W": 11, "F": 2, "KH": 3, "KW": 3}
    ho, wo = (9 - 3) // 2 + 1, (11 - 3) // 2 + 1
    assert roofline.count_flops(_fn("conv2d_s2"), s) == 2 * 1 * 2 * ho * wo * 3 * 3 * 3
    # group_norm divides by D * H * W: an integer product of sizes, not a FLOP
    s = {"N": 2, "G": 3, "D": 2, "H": 5, "W": 3}
    points = 2 * 3 * 2 * 5 * 3
    assert roofline.count_flops(_fn("group_norm"), s) == (2 + 4 + 6) * points + 2 * 3


def test_fused_layers_and_selects() -> None:
    b, i, o = 3, 5, 7
    sizes = {"B": b, "I": i, "O": o}
    assert roofline.count_flops(_fn("fc_relu"), sizes) == 2 * b * o * i + 2 * b * o
    # db(o) +=! y + bias > 0 ? dy : 0: the add, the float comparison and the accumulation
    assert roofline.count_flops(_fn("fc_relu_db"), sizes) == 2 * b * o * i + 3 * b * o
    assert roofline.count_flops(_fn("copy3d"), {"D0": 2, "D1": 3, "D2": 4}) == 0


def test_compulsory_traffic_counts_gathers_by_their_reads() -> None:
    fn = _fn("matmul")
    s = {"M": 3, "K": 5, "N": 7}
    assert roofline.compulsory_traffic(fn, s) == compulsory_bytes(fn, s) == (15 + 35 + 21) * F4
    # embedding_sum reads B * L rows of D floats out of E rows: the table counts 24 floats
    s = {"E": 1000, "D": 4, "B": 2, "L": 3}
    fn = _fn("embedding_sum")
    assert roofline.compulsory_traffic(fn, s) == 2 * 3 * 4 * F4 + 2 * 3 * 8 + 2 * 4 * F4
    assert compulsory_bytes(fn, s) == 1000 * 4 * F4 + 2 * 3 * 8 + 2 * 4 * F4
    # wavenet reads its `dilation` input for its size only
    k = catalogue.get("wavenet")
    s = dict(k.test_sizes[0])
    fn = _fn("wavenet")
    assert roofline.compulsory_traffic(fn, s) == compulsory_bytes(fn, s) - s["DF"] * F4


def test_counts_declared_by_the_catalogue_win() -> None:
    matmul = catalogue.get("matmul")
    declared = SimpleNamespace(name="m", tc=matmul.tc, entry="matmul",
                               flops=lambda s: 7 * s["M"], compulsory_bytes=None)
    work = roofline.kernel_work(declared, {"M": 3, "K": 5, "N": 7})
    assert (work.flops, work.flops_from) == (21, "catalogue")
    assert (work.bytes, work.bytes_from) == (284, "ir")
    broken = SimpleNamespace(name="broken", tc="def f(float(N) A) -> (B) {", entry="f")
    work = roofline.safe_kernel_work(broken, {"N": 3})
    assert work.flops is None and work.note.startswith("work not counted: ")


# -- the bound -----------------------------------------------------------------------------


def test_bound_on_a_fake_peak() -> None:
    peaks = _peaks(flops_per_s=1e9, bytes_per_s=1e8)
    # matmul 256^3: 33.6 MFLOP -> 33.6 ms; 786 kB -> 7.9 ms: compute-bound
    seconds, limit = roofline.bound_s(2 * 256**3, 3 * 256 * 256 * F4, peaks)
    assert seconds == pytest.approx(2 * 256**3 / 1e9) and limit == "compute"
    seconds, limit = roofline.bound_s(0, 1e6, peaks)
    assert seconds == pytest.approx(1e-2) and limit == "memory"
    work = roofline.with_bound(Roofline(100, 1000, "ir", "ir"), peaks)
    assert work.bound_ms == pytest.approx(1000 / 1e8 * 1e3) and work.limit == "memory"
    assert roofline.with_bound(Roofline(100, 1000), None).bound_ms is None


def test_rows_ratios_to_the_bound_and_gpu_rows_have_none() -> None:
    work = Roofline(100, 1000, "ir", "ir")
    peaks = _peaks(1e9, 1e8)  # bound 0.01 ms
    cpu = runner.row_roofline(work, "cpu", peaks, "")
    assert cpu.bound_ms == pytest.approx(0.01)
    gpu = runner.row_roofline(work, "cuda", peaks, "")
    assert gpu.bound_ms is None and "CPU" in gpu.note and gpu.flops == 100
    assert runner.row_roofline(work, "opencl", None, "--no-roofline").note == \
        "no bound: --no-roofline"
    ok = Cell("ok", ms=0.04, runs=3, min_ms=0.04)
    cells = {"eager": Cell("ok", ms=0.02, runs=3, min_ms=0.02), "compile": Cell("skipped"),
             "naive": ok, "tuned": Cell("ok", ms=0.01, runs=3, min_ms=0.01)}
    ratios = Row("matmul", {}, "cpu", cells, roofline=cpu).as_dict()["ratios"]
    assert ratios["naive/bound"] == pytest.approx(4.0)
    assert ratios["tuned/bound"] == pytest.approx(1.0)
    assert ratios["eager/bound"] == pytest.approx(2.0)
    assert ratios["compile/bound"] is None
    assert ratios["naive/tuned"] == pytest.approx(4.0)
    assert Row("matmul", {}, "cuda", cells, roofline=gpu).ratio("naive", "bound") is None


def test_best_of_probes() -> None:
    start = replace(_peaks(3e9, 1e8), when="start", copy_ms=[9.0])
    end = replace(_peaks(2e9, 4e8), when="end", copy_ms=[1.0])
    best = roofline.best_of([start, end])
    assert (best.flops_per_s, best.bytes_per_s, best.copy_ms, best.when) == \
        (3e9, 4e8, [1.0], "best")
    assert roofline.best_of([start]) == start


def test_measure_peaks_small() -> None:
    p = roofline.measure_peaks(matmul_n=128, copy_mib=4, runs=2, warmup=1)
    assert p.flops_per_s > 0 and p.bytes_per_s > 0 and p.threads == torch.get_num_threads()
    assert p.copy_bytes == 2 * 4 * 2**20 and len(p.matmul_ms) == len(p.copy_ms) == 2
    assert p.flops_per_s == pytest.approx(2 * 128**3 / (sorted(p.matmul_ms)[0] / 1e3), rel=1)


def test_a_failing_probe_is_recorded(monkeypatch) -> None:
    def fail() -> None:
        raise MemoryError("no room for 512 MiB")

    monkeypatch.setattr(roofline, "measure_peaks", fail)
    assert runner.probe_peaks(Settings()) == (None, "the probe failed: MemoryError: no room "
                                                    "for 512 MiB")
    assert runner.probe_peaks(Settings(roofline=False)) == (None, "--no-roofline")


# -- geomeans ------------------------------------------------------------------------------


def _row(kernel: str, backend: str, **ratios: float | None) -> dict:
    return {"kernel": kernel, "backend": backend,
            "ratios": {k.replace("_", "/"): v for k, v in ratios.items()}}


def test_geomean() -> None:
    assert report.geomean([2.0, 8.0]) == pytest.approx(4.0)
    assert report.geomean([None, 0.0, 3.0]) == pytest.approx(3.0)
    assert report.geomean([]) is None


def test_geomeans_per_backend_and_subset() -> None:
    rows = [_row("matmul", "cpu", tuned_eager=4.0, naive_tuned=2.0),
            _row("softmax", "cpu", tuned_eager=1.0, naive_tuned=8.0),
            _row("layer_norm", "cpu", tuned_eager=0.25, naive_tuned=None),
            _row("copy3d", "cpu", tuned_eager=0.25),
            _row("matmul", "cuda", tuned_eager=100.0)]
    g = report.geomeans(rows, ratios=("tuned/eager", "naive/tuned"))
    assert set(g) == {"cpu", "cuda"}
    te = g["cpu"]["tuned/eager"]
    assert te["all kernels"] == {"geomean": pytest.approx(4 ** -0.25), "n": 4}
    assert te["fused layers"] == {"geomean": pytest.approx(0.5), "n": 2}
    assert te["matmul-like"] == {"geomean": pytest.approx(4.0), "n": 1}
    nt = g["cpu"]["naive/tuned"]
    assert nt["fused layers"] == {"geomean": pytest.approx(8.0), "n": 1}
    assert nt["all kernels"] == {"geomean": pytest.approx(4.0), "n": 2}
    assert g["cuda"]["tuned/eager"]["all kernels"]["geomean"] == pytest.approx(100.0)
    assert g["cuda"]["tuned/eager"]["fused layers"] == {"geomean": None, "n": 0}


def test_subsets_name_catalogue_kernels() -> None:
    for names in report.SUBSETS.values():
        assert names is None or set(names) <= set(catalogue.KERNELS)
    assert not set(report.FUSED_LAYERS) & set(report.MATMUL_LIKE)


# -- the command line ----------------------------------------------------------------------


def test_cli_rejects_an_unknown_backend(capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--backends", "cpu,vulkan"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert f"unknown backend 'vulkan'; choose among {', '.join(runner.BACKENDS)}" in err
    assert set(runner.BACKENDS) >= {"cpu", "opencl", "cuda"}
    assert runner.BACKEND_DEVICES["cpu"] == runner.BACKEND_DEVICES["opencl"] == "cpu"
    assert runner.BACKEND_DEVICES["cuda"] == "cuda"


def test_default_backends(monkeypatch) -> None:
    import codegen.nvrtc

    assert settings_from_args(build_parser().parse_args([])).backends == ()
    assert settings_from_args(build_parser().parse_args(["--backends", "cpu, opencl"])
                              ).backends == ("cpu", "opencl")
    monkeypatch.setattr(codegen.nvrtc, "cuda_device_available", lambda: False)
    assert runner.default_backends() == ("cpu",)
    monkeypatch.setattr(codegen.nvrtc, "cuda_device_available", lambda: True)
    assert runner.default_backends() == ("cpu", "cuda")
    assert set(runner.default_backends()) <= set(runner.BACKENDS)


def test_run_with_a_stub_compiler_and_fake_peaks(monkeypatch, tmp_path) -> None:
    """The whole run on the "cpu" back end, its compiler replaced by the torch
    reference, so the roofline columns are checked whatever the compiler's state."""
    def stub_compile(lang, entry, options, *inputs, backend):
        assert backend == "cpu"
        return lambda *args: catalogue.get(entry).reference(*args)

    monkeypatch.setattr(tc, "compile", stub_compile)
    probes = [_peaks(1e9, 5e8), _peaks(2e9, 1e8)]  # at the start, at the end
    monkeypatch.setattr(roofline, "measure_peaks", lambda: probes.pop(0))
    s = Settings(quick=True, kernels=("matmul", "softmax"), backends=("cpu",), runs=2,
                 warmup=0, tune=False, torch_compile=False, cache_latency=False)
    doc = runner.run(s, progress=False)
    peaks = doc["machine"]["peaks"]  # the best of the two probes
    assert (peaks["flops_per_s"], peaks["bytes_per_s"], peaks["when"]) == (2e9, 5e8, "best")
    assert [(q["when"], q["flops_per_s"]) for q in peaks["probes"]] == [("start", 1e9),
                                                                         ("end", 2e9)]
    (mm, sm) = doc["rows"]
    assert mm["roofline"]["flops"] == 210 and mm["roofline"]["bytes"] == 284
    assert mm["roofline"]["bound_ms"] == pytest.approx(max(210 / 2e9, 284 / 5e8) * 1e3)
    assert sm["roofline"]["flops"] == 105 and sm["roofline"]["limit"] == "memory"
    for r in (mm, sm):
        assert r["cells"]["naive"]["status"] == "ok"
        assert r["ratios"]["naive/bound"] == pytest.approx(
            r["cells"]["naive"]["ms"] / r["roofline"]["bound_ms"])
    g = doc["geomeans"]["cpu"]["naive/eager"]
    assert g["all kernels"]["n"] == 2 and g["fused layers"]["n"] == g["matmul-like"]["n"] == 1
    paths = report.write_report(doc, tmp_path, "stub")
    md = paths["md"].read_text()
    assert "**2 GFLOP/s**" in md and "**0.5 GB/s**" in md
    assert "(start: 1 GFLOP/s, 0.5 GB/s; end: 2 GFLOP/s, 0.1 GB/s)" in md
    assert "| matmul | M=3 K=5 N=7 | cpu | 210 | 284 B | 0.739 |" in md
    assert "| cpu | naive/eager |" in md and "| cpu | naive/bound |" in md
    assert paths["png"].read_bytes()[:4] == b"\x89PNG"


def test_quick_smoke_run_has_the_roofline(tmp_path) -> None:
    assert main(["--quick", "--kernels", "matmul", "--backends", "opencl", "--no-tune",
                 "--no-torch-compile", "--no-cache-latency", "--runs", "2", "--out",
                 str(tmp_path), "--name", "smoke"]) == 0
    doc = json.loads((tmp_path / "smoke.json").read_text())
    peaks = doc["machine"]["peaks"]
    assert peaks["flops_per_s"] > 1e8 and peaks["bytes_per_s"] > 1e8
    assert peaks["threads"] == doc["machine"]["torch_threads"] >= 1
    assert all(len(v) == 3 for v in doc["machine"]["load_average"].values())
    (row,) = doc["rows"]
    work = row["roofline"]
    assert (work["flops"], work["bytes"], work["flops_from"]) == (210, 284, "ir")
    assert work["bound_ms"] == pytest.approx(max(210 / peaks["flops_per_s"],
                                                 284 / peaks["bytes_per_s"]) * 1e3)
    assert row["ratios"]["eager/bound"] == pytest.approx(
        row["cells"]["eager"]["ms"] / work["bound_ms"])
    naive = row["cells"]["naive"]
    assert (row["ratios"]["naive/bound"] is None) == (naive["status"] != "ok")
    md = (tmp_path / "smoke.md").read_text()
    for text in ("GFLOP/s", "GB/s", "## Against the roofline bound", "## Geomeans",
                 "| matmul | M=3 K=5 N=7 | opencl | 210 | 284 B |", "load average"):
        assert text in md
    assert (tmp_path / "smoke.png").read_bytes()[:4] == b"\x89PNG"
