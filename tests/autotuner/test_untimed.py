"""Tuning what a script used (issue 17, item 3): a "script" run with ``tc.define(...,
cache=)`` leaves untimed entries; ``autotuner.untimed.tune_untimed`` (``python -m tc
tune --untimed``) tunes them all in one job, and the script's next run loads the tuned
kernels. Local executor only (the Ray flavour is in test_ray*.py)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

import tc
from autotuner import evaluate
from autotuner import tuner as tuner_mod
from autotuner.cache import (
    CacheKey,
    CompilationCache,
    TcCacheError,
    cache_key,
    device_text,
    versions_text,
)
from autotuner.tuner import TunerConfig, TuningResult
from autotuner.untimed import (
    entry_text,
    rebuild,
    script_text,
    skipped_keys,
    tune_untimed,
    untimed_keys,
)
from codegen.targets import get_target
from tc.arguments import bind
from tc.cli import main
from tc.lang.frontend import check_text
from tc.lang.printer import canonical_text

pytestmark = pytest.mark.skipif(not get_target("cpu").available(),
                                reason="the cpu target needs a C compiler")

ROOT = Path(__file__).resolve().parents[2]

TEXT = """
def mm(float(M, K) A, float(K, N) B) -> (C) { C(m, n) +=! A(m, k) * B(k, n) }
def axpy(float(N) x, float(N) y) -> (z) { z(i) = 2 * x(i) + y(i) }
"""


def _config(**values) -> TunerConfig:
    config = (TunerConfig().generations(1).pop_size(3).number_elites(1).threads(1).seed(0)
              .timing_runs(3).run_timeout(5.0).progress(False))
    for name, value in values.items():
        getattr(config, name)(value)
    return config


def _calls() -> list[tuple[str, tuple[torch.Tensor, ...]]]:
    """The script's calls: each definition at two signatures of different classes (a
    size-generic kernel serves every size of a class, so only a new class compiles and
    stores a kernel)."""
    g = torch.Generator().manual_seed(1)
    A, B = torch.randn(8, 6, generator=g), torch.randn(6, 5, generator=g)
    Bt = torch.randn(5, 6, generator=g).t()  # strides [1, 6]
    x, y = torch.randn(32, generator=g), torch.randn(32, generator=g)
    wide = torch.randn(64, generator=g)[::2]  # stride 2
    return [("mm", (A, B)), ("mm", (A, Bt)), ("axpy", (x, y)), ("axpy", (wide, y))]


def _expected(entry: str, args: tuple[torch.Tensor, ...]) -> torch.Tensor:
    return args[0] @ args[1] if entry == "mm" else 2 * args[0] + args[1]


def run_script(cache, calls=None) -> tc.TC:
    """The "training script": a fresh tc.define on the cache, every call checked
    against torch."""
    T = tc.define(TEXT, backend="cpu", cache=cache)
    for entry, args in calls or _calls():
        torch.testing.assert_close(T[entry](*args), _expected(entry, args))
    return T


def _key_of(text: str, entry: str, inputs, backend: str = "cpu") -> CacheKey:
    """The key tune() stores under for this call."""
    checked = check_text(text)
    return cache_key(canonical_text(checked.definition(entry)), entry,
                     bind(checked.functions[entry], inputs), backend)


@pytest.fixture
def script_cache(tmp_path) -> CompilationCache:
    """A cache holding the untimed kernels of one run of the script."""
    cache = CompilationCache(tmp_path / "script.sqlite")
    run_script(cache)
    return cache


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """The script's cache after one tune_untimed job, the keys it had, the results, and
    what the job's tune() calls saw (their bar positions, and how many ran at once)."""
    path = tmp_path_factory.mktemp("untimed") / "cache.sqlite"
    run_script(CompilationCache(path))
    before = untimed_keys(CompilationCache(path))
    seen = {"running": 0, "most": 0, "positions": []}
    lock = threading.Lock()
    real = tuner_mod.tune

    def tune(*args, **kwargs):
        with lock:
            seen["running"] += 1
            seen["most"] = max(seen["most"], seen["running"])
            seen["positions"].append(kwargs["position"])
        try:
            return real(*args, **kwargs)
        finally:
            with lock:
                seen["running"] -= 1

    start = time.perf_counter()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tuner_mod, "tune", tune)
        results = tune_untimed(CompilationCache(path), _config(progress=True),
                               max_in_flight=2)
    seen["seconds"] = time.perf_counter() - start
    return path, before, results, seen


# ---------------------------------------------------------------------- keys and calls


def test_the_script_leaves_one_untimed_key_per_definition_and_signature(script_cache,
                                                                        caplog) -> None:
    keys = untimed_keys(script_cache)
    signatures = sorted((k.entry, k.signature) for k in keys)
    assert signatures == [
        ("axpy", "float32[32]/[1]; float32[32]/[1]"),
        ("axpy", "float32[32]/[2]; float32[32]/[1]"),
        ("mm", "float32[8,6]/[6,1]; float32[6,5]/[1,6]"),
        ("mm", "float32[8,6]/[6,1]; float32[6,5]/[5,1]"),
    ]
    assert {k.backend for k in keys} == {"cpu"} and skipped_keys(script_cache) == []
    assert all(not e.timed for k in keys for e in script_cache.lookup(k))
    # Untimed entries are no tuned options: a second run keeps the default ones.
    with caplog.at_level(logging.INFO, logger="tc"):
        T = run_script(script_cache)
    assert caplog.text.count("loaded ") == 4 and "tuned options" not in caplog.text
    stored = {(k.entry, k.signature): script_cache.best(k).options for k in keys}
    used = {(k[0], _signature(k[1])): o for k, o in T._options.items() if len(k) == 2}
    assert used == stored


def test_a_call_rebuilt_from_a_key_has_that_very_key(script_cache) -> None:
    for key in untimed_keys(script_cache):
        # The script's identifiers, recovered from the kernel it stored.
        text = script_text(key, script_cache)
        assert text is not None and text.startswith(f"def {key.entry}(float32(")
        assert ("A, float32(K, N) B) -> (C)" in text) == (key.entry == "mm")
        # Without the cache: the canonical identifiers under the entry's name.
        plain = entry_text(key)
        assert plain.startswith(f"def {key.entry}(float32(v1") and plain != text
        for source in (text, plain):
            assert canonical_text(check_text(source).definition(key.entry)) == key.canonical
        for cache in (script_cache, None):
            lang, inputs = rebuild(key, 3, cache)
            assert lang == (text if cache is not None else plain)
            assert _key_of(lang, key.entry, inputs) == key  # every field, the name too


def test_rebuilding_keeps_index_inputs_in_range_and_odd_names() -> None:
    text = "def v3(float(N, D) T, int64(B) idx) -> (out) { out(b, d) = T(idx(b), d) }"
    T, idx = torch.randn(7, 3), torch.tensor([6, 0, 2, 5])
    key = _key_of(text, "v3", (T, idx))  # an entry named like a canonical identifier
    assert canonical_text(check_text(entry_text(key)).definition("v3")) == key.canonical
    lang, inputs = rebuild(key, 0)
    assert _key_of(lang, "v3", inputs) == key
    assert inputs[1].dtype == torch.int64 and 0 <= int(inputs[1].min())
    assert int(inputs[1].max()) < 3  # below the smallest extent: a valid index anywhere
    broken = CacheKey.create("def v0(", "f", key.signature, "cpu", key.device, key.versions)
    with pytest.raises(TcCacheError, match="does not check"):
        rebuild(broken)
    wrong = CacheKey.create(key.canonical, "v3", "float32[7,3]/[3,1]", "cpu", key.device,
                            key.versions)
    with pytest.raises(tc.TcError):  # a signature the definition does not take
        rebuild(wrong)


def test_an_untimed_store_keeps_the_times_of_the_same_options(tmp_path) -> None:
    cache = CompilationCache(tmp_path / "c.sqlite")
    key = _key_of(TEXT, "axpy", (torch.randn(4), torch.randn(4)))
    options = tc.MappingOptions("naive").tile(4)
    cache.store(key, options, [2e-3, 1e-3, 3e-3])
    cache.store(key, options, (), b"artefact")  # a script compiling the tuned options
    (entry,) = cache.lookup(key)
    assert entry.times == (2e-3, 1e-3, 3e-3) and entry.artifact == b"artefact"
    cache.store(key, options, [5e-3])  # new measurements still replace the old ones
    assert cache.best(key).times == (5e-3,)


# ---------------------------------------------------------------------- the job


def test_tune_untimed_tunes_every_key_several_at_once(tuned) -> None:
    path, before, results, seen = tuned
    assert len(before) == 4
    assert [r.key for r in results] == before  # in the cache's order
    assert [r.status for r in results] == ["tuned"] * 4, [r.reason for r in results]
    cache = CompilationCache(path)
    for r in results:
        best = cache.best(r.key)
        assert best.timed and best.options == r.options and best.median == r.time
        assert best.artifact is not None
    assert untimed_keys(cache) == [] and skipped_keys(cache) == []
    assert seen["most"] == 2  # two definitions in flight
    assert sorted(set(seen["positions"])) == [1, 2]  # a bar line each; 0 is the overall bar


def test_cache_list_shows_which_keys_are_tuned(tuned, script_cache, capsys) -> None:
    for path, want in ((tuned[0], "yes"), (script_cache.path, "no")):
        assert main(["cache", "--cache", str(path), "list"]) == 0
        head, *rows = capsys.readouterr().out.splitlines()
        assert head.split() == ["KEY", "ENTRY", "SIGNATURE", "BACKEND", "BEST", "TUNED",
                                "OPTIONS"]
        assert len(rows) == 4 and all(row.split()[-2] == want for row in rows)


def test_the_next_run_of_the_script_loads_the_tuned_kernels(tuned, caplog) -> None:
    path, before, results, _ = tuned
    cache = CompilationCache(path)
    with caplog.at_level(logging.INFO, logger="tc"):
        T = run_script(cache)
    log = caplog.text
    assert log.count("loaded ") == 4 and "compiling" not in log  # nothing compiled
    assert log.count("tuned options of") == 4
    for r in results:
        (options,) = [o for k, o in T._options.items() if len(k) == 2
                      and k[0] == r.key.entry and _signature(k[1]) == r.key.signature]
        assert options == r.options  # the tuned options, not the default ones
    assert untimed_keys(cache) == []  # and the run left them tuned


def _signature(sig) -> str:
    *inputs, _ = sig
    return "; ".join(f"{str(d).removeprefix('torch.')}[{','.join(map(str, s))}]/"
                     f"[{','.join(map(str, st))}]" for d, s, st in inputs)


def test_keys_of_other_versions_devices_and_iree_are_skipped(tmp_path, monkeypatch) -> None:
    cache = CompilationCache(tmp_path / "c.sqlite")
    here = _key_of(TEXT, "axpy", (torch.randn(4), torch.randn(4)))
    naive = tc.MappingOptions("naive")
    stale = {
        "other versions": CacheKey.create(here.canonical, "old", here.signature, "cpu",
                                          here.device, "tc 0.0.1+000000000000"),
        "another device": CacheKey.create(here.canonical, "away", here.signature, "cpu",
                                          "cpu Elsewhere 9000; 128 cores", here.versions),
        "IREE": CacheKey.create(here.canonical, "iree", here.signature, "iree-llvm-cpu",
                                "llvm-cpu", "iree"),
    }
    for key in stale.values():
        cache.store(key, naive, ())
    cache.store(here, naive, [1e-3])  # tuned already: not listed at all
    assert device_text("cpu") == here.device and versions_text("cpu") == here.versions
    assert untimed_keys(cache) == []
    reasons = {r.key.entry: r.reason for r in skipped_keys(cache)}
    assert set(reasons) == {"old", "away", "iree"}
    assert "other compiler versions" in reasons["old"]
    assert "another device" in reasons["away"] and "IREE" in reasons["iree"]

    def no_tuning(*args, **kwargs):
        raise AssertionError("a skipped key was tuned")

    monkeypatch.setattr(tuner_mod, "tune", no_tuning)
    results = tune_untimed(cache, _config())
    assert [r.status for r in results] == ["skipped"] * 3 and all(r.ok for r in results)
    assert all(not e.timed for k in stale.values() for e in cache.lookup(k))


def test_one_failing_key_does_not_stop_the_others(script_cache, monkeypatch) -> None:
    keys = untimed_keys(script_cache)
    boom, hopeless = keys[0], keys[1]

    def tune(lang, entry, *inputs, **kwargs):
        key = _key_of(lang, entry, inputs)
        if key == boom:
            raise RuntimeError("boom")
        if key == hopeless:
            return TuningResult(None, None)
        options = tc.MappingOptions("naive")
        kwargs["cache"].store(key, options, [1e-3])
        return TuningResult(options, 1e-3)

    monkeypatch.setattr(tuner_mod, "tune", tune)
    results = tune_untimed(script_cache, _config(), max_in_flight=2)
    assert [r.status for r in results] == ["failed", "failed", "tuned", "tuned"]
    assert "boom" in results[0].reason and "no valid candidate" in results[1].reason
    assert untimed_keys(script_cache) == [boom, hopeless]
    assert not any(r.ok for r in results[:2]) and all(r.ok for r in results[2:])
    with pytest.raises(TcCacheError, match="max_in_flight"):
        tune_untimed(script_cache, _config(), max_in_flight=0)


def test_ctrl_c_stores_the_best_so_far_and_starts_nothing_more(script_cache,
                                                               monkeypatch) -> None:
    keys = untimed_keys(script_cache)
    # The script's (default) options of the first key send SIGINT to this process when
    # they run: the search stops in its first generation with the best so far (the
    # naive options, run before them, or those options themselves when their run ends
    # before the search sees the flag).
    (trigger,) = [e.options for e in script_cache.lookup(keys[0])]
    monkeypatch.setattr(evaluate, "FAULTS", [evaluate.fault("interrupt", options=trigger,
                                                            pid=os.getpid())])
    results = tune_untimed(script_cache, _config(generations=3), max_in_flight=1)
    assert [r.status for r in results] == ["interrupted"] + ["not run"] * 3
    first = script_cache.best(keys[0])
    assert first.timed and first.options == results[0].options
    assert first.median == results[0].time
    assert untimed_keys(script_cache) == keys[1:]


# ---------------------------------------------------------------------- command line


def test_cli_tune_untimed_end_to_end(tmp_path, capsys) -> None:
    path = tmp_path / "cli.sqlite"
    cache = CompilationCache(path)
    calls = [c for c in _calls() if c[0] == "axpy"]
    run_script(cache, calls)
    stale = untimed_keys(cache)[0]
    cache.store(CacheKey.create(stale.canonical, "elsewhere", stale.signature, "cpu",
                                "cpu Elsewhere 9000; 128 cores", stale.versions),
                tc.MappingOptions("naive"), ())
    r = subprocess.run([sys.executable, "-m", "tc", "tune", "--untimed", "--cache", str(path),
                        "--generations", "1", "--pop-size", "3", "--threads", "1", "--seed",
                        "0"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    head, *rows = r.stdout.splitlines()
    assert head.split() == ["KEY", "ENTRY", "SIGNATURE", "BACKEND", "STATUS", "BEST"]
    assert sorted(row.split()[1] for row in rows) == ["axpy", "axpy", "elsewhere"]
    for row in rows:
        entry = row.split()[1]
        status = next(w for w in row.split() if w in ("tuned", "skipped", "failed"))
        assert status == ("tuned" if entry == "axpy" else "skipped")
        assert ("another device" in row) == (entry == "elsewhere")
    assert untimed_keys(cache) == [] and len(skipped_keys(cache)) == 1
    run_script(cache, calls)  # the script now runs the tuned options
    # Only skipped keys left: listed, nothing tuned, success.
    assert main(["tune", "--untimed", "--cache", str(path)]) == 0
    out = capsys.readouterr().out
    assert "skipped" in out and " tuned " not in out


def test_cli_tune_untimed_arguments(tmp_path, capsys) -> None:
    empty = tmp_path / "empty.sqlite"
    assert main(["tune", "--untimed", "--cache", str(empty)]) == 0
    assert "no untimed entries" in capsys.readouterr().out
    assert main(["tune", "--untimed", "k.tc", "--sizes", "N=3", "--cache", str(empty)]) == 1
    err = capsys.readouterr().err
    assert "--untimed" in err and "FILE, --sizes" in err
    assert main(["tune", "--untimed", "--in-flight", "0", "--cache", str(empty)]) == 1
    assert "--in-flight" in capsys.readouterr().err
    assert main(["tune", "k.tc"]) == 1  # neither --sizes nor --untimed
    err = capsys.readouterr().err
    assert "--sizes" in err and "--untimed" in err
