"""The benchmark runner (benchmarks.runner, python -m benchmarks) and its cache latency.

The end-to-end test runs the command line on the smallest kernel with one timed call
per cell; the others drive ``bench_kernel`` with a tc that returns wrong results or
crashes, or with a stub tuner, so that they stay fast and do not depend on the
autotuner being present.
"""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import pytest
import torch

import tc
from benchmarks import cache_latency, runner
from benchmarks import report as report_mod
from benchmarks.__main__ import main
from benchmarks.runner import Settings, bench_kernel, mismatch, time_ms
from tc import catalogue
from tc.errors import TcBackendError
from tc.options import MappingOptions

FAST = Settings(runs=2, warmup=0, torch_compile=False, tune=False, cache_latency=False,
                iree=False)


def test_quick_run_writes_markdown_json_and_chart(tmp_path) -> None:
    start = time.perf_counter()
    assert main(["--quick", "--kernels", "tmm", "--backends", "opencl", "--runs", "1",
                 "--warmup", "0", "--no-tune", "--no-cache-latency", "--no-roofline",
                 "--out", str(tmp_path), "--name", "t"]) == 0
    report = json.loads((tmp_path / "t.json").read_text())
    assert set(report) >= {"schema", "date", "machine", "settings", "rows", "geomeans",
                           "tuning", "cache_latency", "elapsed_s", "name"}
    assert set(report["machine"]) >= {"cpu", "cores", "torch", "pocl_device", "cuda_gpu"}
    assert report["machine"]["torch"] == torch.__version__
    assert 0 < report["elapsed_s"] < time.perf_counter() - start + 1
    rows = report["rows"]
    assert [(r["kernel"], r["backend"]) for r in rows][0] == ("tmm", "opencl")
    row = rows[0]
    assert row["sizes"] == {"M": 3, "N": 5, "K": 7}
    for col in ("eager", "compile", "naive"):
        cell = row["cells"][col]
        assert cell["status"] == "ok", cell
        assert cell["ms"] > 0 and cell["runs"] == 1
    assert row["cells"]["tuned"]["status"] == "skipped"
    cells = row["cells"]
    assert row["ratios"]["naive/eager"] == pytest.approx(
        cells["naive"]["ms"] / cells["eager"]["ms"])
    assert row["ratios"]["naive/compile"] == pytest.approx(
        cells["naive"]["ms"] / cells["compile"]["ms"])
    assert row["ratios"]["tuned/eager"] is None and row["ratios"]["tuned/compile"] is None
    assert report["tuning"]["available"] is False
    assert report["cache_latency"] == {"available": False, "note": "--no-cache-latency"}
    md = (tmp_path / "t.md").read_text()
    assert "| kernel | sizes | backend | eager ms |" in md
    line = next(ln for ln in md.splitlines() if ln.startswith("| tmm | M=3 N=5 K=7 | opencl | "))
    shown = [c.strip() for c in line.strip("|").split("|")]
    assert len(shown) == 15 and shown[7] == "-"  # no tuned time
    for col, value in zip(("eager", "compile", "naive", "default"), shown[3:7], strict=True):
        assert float(value) == pytest.approx(cells[col]["ms"], rel=0.01, abs=1e-4)
    assert float(shown[8]) == pytest.approx(row["ratios"]["naive/eager"], rel=0.01, abs=0.01)
    assert float(shown[9]) == pytest.approx(row["ratios"]["naive/compile"], rel=0.01, abs=0.01)
    assert shown[10:14] == ["-", "-", "-", "-"]  # tuned/eager, tuned/compile, naive/tuned,
    # default/tuned; then default/naive
    assert float(shown[14]) == pytest.approx(row["ratios"]["default/naive"], rel=0.01,
                                             abs=0.01)
    assert report["machine"]["peaks"] == {"available": False, "note": "--no-roofline"}
    assert row["roofline"] is None and row["ratios"]["naive/bound"] is None
    assert "## Against the roofline bound" not in md
    assert (tmp_path / "t.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_wrong_tc_result_is_reported_and_not_timed(monkeypatch) -> None:
    real = tc.compile
    calls = []

    def wrong_compile(*args, **kwargs):
        ex = real(*args, **kwargs)

        def call(*inputs):
            calls.append(1)
            mean, var = ex(*inputs)
            return mean + 1.0, var  # off by one everywhere: max |error| is 1

        return call

    monkeypatch.setattr(tc, "compile", wrong_compile)
    kernel = catalogue.get("moments")
    row = bench_kernel(kernel, kernel.test_sizes[0], "opencl", FAST)
    naive = row.cells["naive"]
    assert naive.status == "wrong"
    assert naive.ms is None and naive.runs == 0
    assert "output 0: max |error| 1 " in naive.note
    assert row.cells["default"].status == "wrong"  # the default options' cell too
    assert len(calls) == 2  # the checking calls only: nothing was timed
    assert row.cells["eager"].status == "ok" and row.cells["eager"].runs == 2
    assert row.ratio("naive", "eager") is None
    report = {"name": "w", "date": "d", "elapsed_s": 1.0,
              "machine": runner.machine_facts(), "settings": {**vars(FAST), "quick": True},
              "rows": [row.as_dict()], "tuning": {"available": False, "note": "x"},
              "cache_latency": {"available": False, "note": "y"}}
    md = report_mod.to_markdown(report)
    assert "| moments | N=3 K=7 | opencl | " in md and "WRONG" in md
    assert "moments (opencl), naive: wrong: output 0: max |error| 1" in md


def test_a_crashing_tc_compile_is_an_error_cell(monkeypatch) -> None:
    def crash(*args, **kwargs):
        raise TcBackendError("no kernel today")

    monkeypatch.setattr(tc, "compile", crash)
    kernel = catalogue.get("tmm")
    row = bench_kernel(kernel, kernel.test_sizes[0], "opencl", FAST)
    assert row.cells["naive"] == runner.Cell("error", note="TcBackendError: no kernel today")
    assert row.cells["compile"].status == "skipped"


def test_tuned_column_with_a_stub_tuner(monkeypatch, tmp_path) -> None:
    from autotuner import tuner

    seen = {}
    tuned = MappingOptions("naive").tile(2)
    ok, bad = SimpleNamespace(status="ok"), SimpleNamespace(status="compile_error")
    candidates = tuple(SimpleNamespace(outcome=o) for o in (ok, bad, ok, ok, bad))

    def fake_tune(lang, entry, *inputs, tuner_config, backend, cache_filename,
                  store_to_cache):
        seen.update(entry=entry, backend=backend, cache=cache_filename, store=store_to_cache,
                    settings=tuner_config.settings, n=len(inputs))
        time.sleep(0.05)
        return tuner.TuningResult(tuned, 1e-3, candidates=candidates)

    monkeypatch.setattr(tuner, "tune", fake_tune)
    kernel = catalogue.get("tmm")
    s = Settings(quick=True, runs=2, warmup=0, torch_compile=False, generations=3,
                 pop_size=5, cache_latency=False)
    cache = str(tmp_path / "c.cache")
    row = bench_kernel(kernel, kernel.test_sizes[0], "opencl", s, cache)
    settings = seen.pop("settings")
    assert seen == {"entry": "tmm", "backend": "opencl", "cache": cache, "store": True, "n": 2}
    assert (settings.generations, settings.pop_size) == (3, 5)
    assert settings.tuner_min_launch_total_threads == 1  # tiny --quick sizes
    assert row.cells["tuned"].status == "ok" and row.cells["tuned"].ms > 0
    assert (row.tuning.candidates, row.tuning.valid) == (5, 3)
    assert MappingOptions.deserialize(row.tuning.options) == tuned
    assert row.tuning.seconds >= 0.05
    t = runner.tuning_throughput([row, row], s)
    assert (t["candidates"], t["valid"], t["tunings"]) == (10, 6, 2)
    assert t["candidates_per_minute"] == pytest.approx(60 * 10 / (2 * row.tuning.seconds))


def test_a_tuner_without_valid_candidates_is_an_error_cell(monkeypatch) -> None:
    from autotuner import tuner

    monkeypatch.setattr(tuner, "tune", lambda *a, **k: tuner.TuningResult(None, None))
    kernel = catalogue.get("tmm")
    row = bench_kernel(kernel, kernel.test_sizes[0], "opencl",
                       Settings(runs=1, warmup=0, torch_compile=False), "c.cache")
    assert row.cells["tuned"].status == "error" and row.tuning is None
    assert "no valid candidate among 0" in row.cells["tuned"].note


def test_without_a_tuner_the_tuned_column_is_skipped(monkeypatch) -> None:
    monkeypatch.setattr(runner, "tuner_available", lambda: False)
    kernel = catalogue.get("tmm")
    row = bench_kernel(kernel, kernel.test_sizes[0], "opencl",
                       Settings(runs=1, warmup=0, torch_compile=False), "unused.cache")
    assert row.cells["tuned"] == runner.Cell("skipped", note="the autotuner is not available")
    assert row.tuning is None


def test_mismatch() -> None:
    a = torch.tensor([1.0, 2.0, float("nan")])
    assert mismatch(a, a.clone(), 1e-4, 1e-5) is None
    assert mismatch((a,), a.clone(), 1e-4, 1e-5) is None
    assert mismatch(a, torch.tensor([1.0, 2.5, float("nan")]), 1e-4, 1e-5) == \
        "output 0: max |error| 0.5 (rtol 0.0001, atol 1e-05)"
    assert mismatch(torch.tensor([1.0 + 1e-6]), torch.tensor([1.0]), 1e-4, 0) is None
    assert mismatch(torch.tensor([1.001]), torch.tensor([1.0]), 1e-4, 0) is not None
    assert mismatch(a, torch.tensor([1.0, 2.0, 3.0]), 1e-4, 1e-5) == \
        "output 0: max |error| inf (rtol 0.0001, atol 1e-05)"
    assert mismatch(a, torch.zeros(2), 1, 1) == "output 0: shape (3,), expected (2,)"
    assert mismatch((a, a), a, 1, 1) == "2 outputs, expected 1"


def test_a_median_far_above_the_fastest_call_is_flagged_noisy() -> None:
    assert runner.Cell("ok", ms=10.0, runs=5, min_ms=1.0).noisy
    assert not runner.Cell("ok", ms=4.0, runs=5, min_ms=1.0).noisy
    assert not runner.Cell("ok", ms=10.0, runs=2, min_ms=1.0).noisy  # too few calls to tell
    assert not runner.Cell("wrong", runs=0).noisy
    eager = runner.Cell("ok", ms=30.0, runs=5, min_ms=0.01)
    naive = runner.Cell("ok", ms=1.5, runs=5, min_ms=1.2)
    row = runner.Row("tmm", {"M": 3}, "opencl", {"eager": eager, "compile": eager,
                                                  "naive": naive, "tuned": naive})
    d = row.as_dict()
    assert d["cells"]["eager"]["noisy"] and not d["cells"]["naive"]["noisy"]
    assert d["ratios"]["naive/eager"] == pytest.approx(0.05)


def test_time_ms_warmup_runs_and_budget() -> None:
    calls = []
    samples = time_ms(lambda: calls.append(1), "cpu", warmup=2, runs=5)
    assert len(calls) == 7 and len(samples) == 5 and all(s >= 0 for s in samples)
    slow = time_ms(lambda: time.sleep(0.03), "cpu", warmup=0, runs=100, budget_s=0.05)
    assert 1 <= len(slow) <= 3 and min(slow) >= 30.0


def test_cache_latency_medians_and_speedup(monkeypatch) -> None:
    firsts = {"cold": [4.0, 2.0, 3.0], "hit": [0.5, 0.4, 0.6], "hit-warm": [0.2, 0.2, 0.2]}
    spawned = []

    def fake_spawn(kind, kernel, sizes, backend, cache_file, options, pocl_cache, timeout):
        spawned.append((kind, pocl_cache))
        return {"import_s": 1.0, "device_init_s": 0.1, "second_call_s": 0.01,
                "first_result_s": firsts[kind].pop(0), "correct": kind != "hit-warm",
                "compiled": int(kind == "cold")}

    monkeypatch.setattr(cache_latency, "_spawn", fake_spawn)
    lat = cache_latency.measure("tmm", {"M": 3}, "opencl", "c.cache", "{}", repeats=3)
    assert lat.samples["cold"].first_result_s == 3.0
    assert lat.samples["hit"].first_result_s == 0.5
    assert lat.speedup == 6.0
    assert lat.samples["cold"].correct and not lat.samples["hit-warm"].correct
    # Each repetition: its own empty PoCL cache for cold and for hit; hit-warm reuses hit's.
    dirs = [d for _, d in spawned]
    assert len(set(dirs)) == 6 and all(dirs[i + 1] == dirs[i + 2] for i in range(0, 9, 3))
    text = cache_latency.describe(lat.as_dict())
    assert lat.samples["cold"].compiled == 1 and lat.samples["hit"].compiled == 0
    assert "| cold | 3.000 | 0.0100 | 1.00 | 0 | 1 | 0 | yes |" in text
    assert "6.0x faster" in text and "| NO |" in text
    assert "programs compiled (PoCL)" in text and "empty PoCL cache" in text
    assert "did not load" not in text  # the hit compiled nothing


def test_cache_latency_wording_per_target() -> None:
    sample = {"first_result_s": 0.1, "second_call_s": 0.001, "import_s": 1.0, "correct": True,
              "compiled": 0, "loaded": 1, "scheduled": 0}
    lat = {"kernel": "tmm", "sizes": {"M": 3}, "backend": "cpu", "speedup": 2.0,
           "samples": {"cold": {**sample, "compiled": 1, "loaded": 0, "scheduled": 1},
                       "hit": sample, "hit-warm": sample}}
    text = cache_latency.describe(lat)
    assert "PoCL" not in text and "programs compiled (C compiler)" in text
    assert "| hit | 0.100 | 0.0010 | 1.00 | 0 | 0 | 1 | yes |" in text
    assert "shared library" in text
    bad = {**lat, "samples": {**lat["samples"], "hit": {**sample, "compiled": 1}}}
    assert "did not load its build from the cache" in cache_latency.describe(bad)
    old = {**lat, "samples": {k: {f: v for f, v in s.items() if f not in ("loaded", "scheduled")}
                              for k, s in lat["samples"].items()}}
    assert "| hit | 0.100 | 0.0010 | 1.00 | - | 0 | - | yes |" in cache_latency.describe(old)


def test_cache_latency_on_cpu_a_fresh_process_loads_the_stored_library(tmp_path) -> None:
    # Real processes: a tiny tuning stores tmm's build, then cold, hit and hit-warm.
    kernel = catalogue.get("tmm")
    sizes = dict(kernel.test_sizes[0])
    cache = str(tmp_path / "tuning.cache")
    options = cache_latency._fill_cache("tmm", sizes, "cpu", cache)
    lat = cache_latency.measure("tmm", sizes, "cpu", cache, options, repeats=1, timeout=120)
    cold, hit, warm = (lat.samples[k] for k in cache_latency.KINDS)
    assert (cold.scheduled, cold.compiled, cold.loaded) == (1, 1, 0)
    for s in (hit, warm):
        assert (s.scheduled, s.compiled, s.loaded) == (0, 0, 1)
    assert cold.correct and hit.correct and warm.correct
    text = cache_latency.describe(lat.as_dict())
    assert "PoCL" not in text and "| hit |" in text and "did not load" not in text


def test_report_says_cache_not_available_without_the_factory(monkeypatch) -> None:
    monkeypatch.delattr(tc, "make_load_from_cache_options_factory", raising=False)
    out = runner._cache_latency([], Settings(), "c.cache")
    assert out["available"] is False and out["note"].startswith("cache not available")


def test_short_error_shows_the_compiler_diagnostic() -> None:
    e = TcBackendError("C compilation failed (cc -O3 -fopenmp):\n/tmp/k.c:25:19: note: x\n"
                       "/tmp/k.c:4:19: error: redefinition of 'f'\n")
    assert runner._short(e) == ("TcBackendError: C compilation failed (cc -O3 -fopenmp): "
                                "/tmp/k.c:4:19: error: redefinition of 'f'")
    assert runner._short(ValueError("one line")) == "ValueError: one line"
    assert runner._short(ValueError()) == "ValueError: "
