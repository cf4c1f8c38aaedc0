"""The on-disk compilation cache: keys, ranking, robustness (corrupt and foreign files,
processes killed mid-write, concurrent writers), loading compiled kernels in a fresh
process, and the ``python -m tc cache`` commands."""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
import warnings
from pathlib import Path

import platformdirs
import pytest
import torch

import tc
from autotuner import cache as cache_mod
from autotuner.cache import (
    KEEP,
    CacheKey,
    CacheWarning,
    CompilationCache,
    TcCacheError,
    cache_key,
    default_cache_path,
)
from codegen import stats
from codegen.targets import default_target
from tc.cli import main

ROOT = Path(__file__).resolve().parents[2]

FC = """
def fc_relu(float(B, I) x, float(O, I) W, float(O) bias) -> (y) {
    y(b, o) +=! x(b, i) * W(o, i)
    y(b, o) = fmax(y(b, o) + bias(o), 0)
}
"""
# FC with every identifier renamed and the text reformatted.
FC_RENAMED = """
def dense(float(N, C) inp, float(K, C) weight, float(K) b0) -> (out) {
  out(n, k) +=! inp(n, c) * weight(k, c)   # comments do not matter either
  out(n, k) = fmax(out(n, k) + b0(k), 0)
}
"""
TUNED = tc.MappingOptions("naive").tile(4, 4).mapToThreads(4, 2).unroll(2)


def _inputs(seed: int = 0, dtype=torch.float32) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(*s, generator=g, dtype=dtype) for s in ((5, 6), (3, 6), (3,)))


def _expected(x, W, bias) -> torch.Tensor:
    return torch.relu(x @ W.T + bias)


#: What ``backend=None`` runs CPU tensors on (the cpu target where a C compiler exists).
DEFAULT = default_target("cpu").name


def _key(text: str = FC, inputs=None, backend: str = DEFAULT, arch=None) -> CacheKey:
    fn = tc.define(text)[tc.define(text).entry_points[0]]
    return cache_key(fn.canonical, fn.name, fn.bind(*(inputs or _inputs())), backend, arch)


def _fake_key(i: int | str) -> CacheKey:
    return CacheKey.create(f"canonical {i}", "f", "float32[4]/[1]", "opencl", "dev", "v1")


@pytest.fixture(scope="module")
def tuned_artifact() -> bytes:
    """The artefact of FC under TUNED for ``_inputs()`` (what a tuner would store)."""
    return tc.compile(FC, "fc_relu", TUNED, *_inputs(), backend=DEFAULT).artifact()


@pytest.fixture(autouse=True)
def fresh_versions():
    """Keys computed now: the versions part holds a fingerprint of the compiler's
    sources, memoised per process, which a concurrent edit of them would change."""
    cache_mod._VERSIONS.clear()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "cache.sqlite"


@pytest.fixture
def no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        yield


# -- location and keys ------------------------------------------------------------------------


def test_default_path(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("TC_CACHE_DIR", str(tmp_path / "here"))
    assert default_cache_path() == tmp_path / "here" / "tc-cache.sqlite"
    cache = CompilationCache()
    assert cache.path == tmp_path / "here" / "tc-cache.sqlite" and cache.path.exists()
    monkeypatch.delenv("TC_CACHE_DIR")
    assert default_cache_path() == Path(platformdirs.user_cache_dir("tc")) / "tc-cache.sqlite"


def test_renaming_hits_and_any_change_of_the_call_misses(path, no_warnings) -> None:
    key = _key()
    renamed = _key(FC_RENAMED)
    assert renamed.digest == key.digest and renamed.entry == "dense" and key.entry == "fc_relu"
    x, W, bias = _inputs()
    others = {
        "shape": _key(inputs=(torch.randn(4, 6), W, bias)),
        "dtype": _key(FC.replace("float", "double"), _inputs(dtype=torch.float64)),
        "strides": _key(inputs=(torch.randn(6, 5).T, W, bias)),
        "backend": _key(backend="cuda"),
        "arch": _key(backend="cuda", arch="sm_90"),
        "definition": _key(FC.replace("+ bias(o)", "- bias(o)")),
    }
    assert len({k.digest for k in others.values()} | {key.digest}) == len(others) + 1
    cache = CompilationCache(path)
    cache.store(key, TUNED, [0.002])
    assert cache.best(renamed).options == TUNED
    for what, k in others.items():
        assert cache.lookup(k) == [], what
    assert others["strides"].signature.startswith("float32[5,6]/[1,5];")
    assert key.signature == "float32[5,6]/[6,1]; float32[3,6]/[6,1]; float32[3]/[1]"


# -- storing and ranking ----------------------------------------------------------------------


def test_entries_are_ranked_and_only_the_best_kept(path, no_warnings) -> None:
    cache = CompilationCache(path)
    key = _fake_key(0)
    assert cache.lookup(key) == [] and cache.best(key) is None
    medians = [5.0, 3.0, 9.0, 1.0, 7.0, 2.0, 8.0]
    for i, m in enumerate(medians):
        cache.store(key, tc.MappingOptions("naive").tile(i + 1), [m, m - 0.5, m + 4.0],
                    artifact=bytes([i]))
    got = cache.lookup(key)
    assert [e.median for e in got] == [1.0, 2.0, 3.0, 5.0, 7.0]
    assert len(got) == KEEP
    assert [e.options.tile_sizes for e in got] == [(4,), (6,), (2,), (1,), (5,)]
    assert [e.artifact for e in got] == [bytes([3]), bytes([5]), bytes([1]), bytes([0]),
                                         bytes([4])]
    # Same options again: times replaced, the artefact kept when none is given.
    cache.store(key, tc.MappingOptions("naive").tile(1), [0.5])
    best = cache.best(key)
    assert best.options.tile_sizes == (1,) and best.times == (0.5,)
    assert best.artifact == bytes([0])
    assert cache.lookup(_fake_key(1)) == []


def test_bad_times_are_refused(path) -> None:
    cache = CompilationCache(path)
    for times in ([float("nan")], [-1.0], ["fast"], None):
        with pytest.raises(TcCacheError, match="times"):
            cache.store(_fake_key(0), TUNED, times)


def test_untimed_entries_rank_after_timed_ones(path) -> None:
    # tc.define(..., cache=) stores kernels as compiled, with no time: a tuned entry of
    # the same key must win, and the tuner must not take an untimed entry as tuned.
    cache = CompilationCache(path)
    naive = tc.MappingOptions("naive")
    cache.store(_fake_key(0), naive, [])
    assert cache.best(_fake_key(0)).options == naive
    assert not cache.best(_fake_key(0)).timed and cache.best(_fake_key(0)).median == float("inf")
    cache.store(_fake_key(0), TUNED, [2.0])
    assert [e.options for e in cache.lookup(_fake_key(0))] == [TUNED, naive]


# -- corrupt and foreign files ----------------------------------------------------------------


def _filled(path: Path, n: int = 3) -> CompilationCache:
    cache = CompilationCache(path)
    for i in range(n):
        cache.store(_fake_key(i), TUNED, [0.001 * (i + 1)], os.urandom(50_000))
    return cache


def _assert_empty_and_harmless(path: Path) -> None:
    with pytest.warns(CacheWarning):
        cache = CompilationCache(path)
    assert not cache.usable
    assert cache.lookup(_fake_key(0)) == [] and cache.keys() == []
    cache.store(_fake_key(0), TUNED, [1.0])  # dropped, no exception


def test_random_bytes_are_ignored_with_a_warning(path) -> None:
    data = os.urandom(10_000)
    path.write_bytes(data)
    _assert_empty_and_harmless(path)
    with pytest.warns(CacheWarning), pytest.raises(TcCacheError, match="not a tc cache"):
        CompilationCache(path).clear()
    assert path.read_bytes() == data  # never touched


def test_a_foreign_sqlite_file_is_ignored_and_left_alone(path) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE entries (digest TEXT, options TEXT)")
    db.execute("INSERT INTO entries VALUES ('x', 'y')")
    db.commit()
    db.close()
    data = path.read_bytes()
    _assert_empty_and_harmless(path)
    assert path.read_bytes() == data


def test_another_schema_version_is_ignored_until_cleared(path) -> None:
    _filled(path)
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = '999' WHERE name = 'schema_version'")
    db.commit()
    db.close()
    _assert_empty_and_harmless(path)
    with pytest.warns(CacheWarning):
        CompilationCache(path).clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        cache = CompilationCache(path)
        assert cache.usable and cache.keys() == []
        cache.store(_fake_key(0), TUNED, [1.0])
        assert cache.best(_fake_key(0)).options == TUNED


@pytest.mark.parametrize("damage", ["truncate", "overwrite"])
def test_a_damaged_cache_never_raises(path, damage) -> None:
    _filled(path, 6)
    size = path.stat().st_size
    assert not Path(f"{path}-wal").exists()  # checkpointed when the last connection closed
    with open(path, "r+b") as f:
        if damage == "truncate":
            f.truncate(size // 3)
        else:
            f.seek(size // 2)
            f.write(os.urandom(size // 4))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cache = CompilationCache(path)
        found = [cache.lookup(_fake_key(i)) for i in range(6)] + [cache.summary()]
        cache.store(_fake_key(9), TUNED, [1.0])
    assert all(isinstance(x, list) for x in found)
    assert all(issubclass(w.category, CacheWarning) for w in caught)


def test_unreadable_and_mismatched_rows_are_skipped(path) -> None:
    cache = _filled(path)
    db = sqlite3.connect(path)
    db.execute("UPDATE entries SET options = 'garbage' WHERE canonical = 'canonical 0'")
    db.execute("UPDATE entries SET device = 'other' WHERE canonical = 'canonical 1'")
    db.commit()
    db.close()
    with pytest.warns(CacheWarning, match="unreadable"):
        assert cache.lookup(_fake_key(0)) == []
    with pytest.warns(CacheWarning, match="does not match"):
        assert cache.lookup(_fake_key(1)) == []
    assert cache.best(_fake_key(2)).options == TUNED


def test_a_directory_is_not_a_cache(tmp_path) -> None:
    _assert_empty_and_harmless(tmp_path)


# -- processes --------------------------------------------------------------------------------

WRITER = r"""
import hashlib, os, sys, time
from autotuner.cache import CacheKey, CompilationCache
from tc.options import MappingOptions

path, tag, n, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
print("ready", flush=True)
while not os.path.exists(go):
    time.sleep(0.01)
cache = CompilationCache(path)
i = 0
while n < 0 or i < n:
    key = CacheKey.create(f"canonical {tag} {i}", "f", "sig", "opencl", "dev", "v1")
    blob = hashlib.sha256(f"{tag} {i}".encode()).digest() * 2048  # 64 KiB: many pages
    cache.store(key, MappingOptions("naive").tile(i + 1), [0.001 * (i + 1)], blob)
    if i < 2:  # one key shared by every writer
        shared = CacheKey.create("shared", "f", "sig", "opencl", "dev", "v1")
        cache.store(shared, MappingOptions("naive").mapToThreads(i + 1, len(tag)), [i + 1.0])
    print(i, flush=True)
    i += 1
"""


def _writers(path: Path, tags: list[str], n: int, go: Path) -> list[subprocess.Popen]:
    """Writer processes, started together, each ready to write when ``go`` exists."""
    ps = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), tag, str(n), str(go)],
                           cwd=ROOT, stdout=subprocess.PIPE, text=True) for tag in tags]
    for p in ps:
        assert p.stdout.readline().strip() == "ready"
    return ps


def _check_entry(cache: CompilationCache, tag: str, i: int) -> None:
    import hashlib

    key = CacheKey.create(f"canonical {tag} {i}", "f", "sig", "opencl", "dev", "v1")
    (entry,) = cache.lookup(key)
    assert entry.options.tile_sizes == (i + 1,)
    assert entry.artifact == hashlib.sha256(f"{tag} {i}".encode()).digest() * 2048


def test_a_writer_killed_mid_write_leaves_a_readable_cache(path, tmp_path, no_warnings) -> None:
    go = tmp_path / "go"
    (p,) = _writers(path, ["k"], -1, go)
    go.touch()
    try:
        for _ in range(12):
            p.stdout.readline()
        time.sleep(0.013)  # somewhere inside a later store
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    assert p.returncode == -signal.SIGKILL
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    db.close()
    cache = CompilationCache(path)
    keys = [k for k in cache.keys() if k.canonical.startswith("canonical")]
    assert len(keys) >= 12
    done = sorted(int(k.canonical.split()[-1]) for k in keys)
    assert done == list(range(len(done)))  # whole transactions only, in order
    for i in done:
        _check_entry(cache, "k", i)
    cache.store(_fake_key("after"), TUNED, [1.0])  # still writable
    assert cache.best(_fake_key("after")) is not None


def test_two_processes_writing_at_once_both_land(path, tmp_path, no_warnings) -> None:
    go, n = tmp_path / "go", 15
    writers = _writers(path, ["a", "bb"], n, go)
    go.touch()  # both create the file and write at the same time
    for p in writers:
        p.communicate(timeout=120)
        assert p.returncode == 0
    cache = CompilationCache(path)
    for tag in ("a", "bb"):
        for i in range(n):
            _check_entry(cache, tag, i)
    shared = cache.lookup(CacheKey.create("shared", "f", "sig", "opencl", "dev", "v1"))
    assert sorted(e.options.threads for e in shared) == [(1, 1), (1, 2), (2, 1), (2, 2)]


FRESH = r"""
import json, sys, torch, tc
from codegen.stats import COUNTERS

text, path, backend = sys.argv[1], sys.argv[2], sys.argv[3] or None
g = torch.Generator().manual_seed(0)
x, W, bias = (torch.randn(*s, generator=g) for s in ((5, 6), (3, 6), (3,)))
T = tc.define(text, tc.make_load_from_cache_options_factory(path, backend=backend),
              backend=backend)
fn = T[T.entry_points[0]]
y = fn(x, W, bias)
again = fn(x, W, bias)
print(json.dumps({
    "counters": dict(COUNTERS),
    "error": (y - torch.relu(x @ W.T + bias)).abs().max().item(),
    "same": bool(torch.equal(y, again)),
    "options": T.options_for(fn.ir, fn.bind(x, W, bias)).serialize(),
}))
"""


def _fresh(text: str, path: Path, backend: str = "") -> dict:
    r = subprocess.run([sys.executable, "-c", FRESH, text, str(path), backend], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("backend, build, load", [
    ("opencl", "opencl_build", "opencl_load_binary"),
    ("", "cc_compile", "cc_load_binary"),  # backend=None: the cpu target
])
def test_a_fresh_process_runs_the_stored_kernel_without_compiling(path, backend: str,
                                                                  build: str, load: str) -> None:
    target = backend or "cpu"
    artifact = tc.compile(FC, "fc_relu", TUNED, *_inputs(), backend=target).artifact()
    CompilationCache(path).store(_key(backend=target), TUNED, [0.001], artifact)
    out = _fresh(FC, path, backend)
    assert out["error"] < 1e-5 and out["same"]
    assert tc.MappingOptions.deserialize(out["options"]) == TUNED
    counters = out["counters"]
    assert counters.get("compile_program", 0) == 0
    assert counters.get(build, 0) == 0
    assert counters.get(load, 0) >= 1


def _run_with_factory(text: str, path: Path) -> tuple[torch.Tensor, int, tc.MappingOptions]:
    T = tc.define(text, tc.make_load_from_cache_options_factory(path))
    fn = T[T.entry_points[0]]
    before = stats.COUNTERS["compile_program"]
    y = fn(*_inputs())
    return y, stats.COUNTERS["compile_program"] - before, T.options_for(fn.ir, fn.bind(*_inputs()))


def test_renamed_definition_gets_the_tuned_options(path, tuned_artifact) -> None:
    CompilationCache(path).store(_key(), TUNED, [0.001], tuned_artifact)
    y, compiled, options = _run_with_factory(FC_RENAMED, path)
    assert options == TUNED
    assert compiled == 1  # the stored kernel computes `fc_relu`, not `dense`
    torch.testing.assert_close(y, _expected(*_inputs()))
    y, compiled, _ = _run_with_factory(FC, path)
    assert compiled == 0
    torch.testing.assert_close(y, _expected(*_inputs()))


def test_a_bad_artifact_is_never_run(path, tmp_path, tuned_artifact, caplog) -> None:
    """A corrupt artefact, or one compiled for other inputs under this key, compiles."""
    other = tc.compile(FC, "fc_relu", TUNED, torch.randn(4, 6), torch.randn(3, 6),
                       torch.randn(3), backend="opencl").artifact()
    flipped = bytearray(tuned_artifact)
    flipped[-100] ^= 1
    for bad in (bytes(flipped), other, b"junk"):
        CompilationCache(path).store(_key(), TUNED, [0.001], bad)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="tc.backend"):
            y, compiled, _ = _run_with_factory(FC, path)
        assert compiled == 1
        assert "unusable" in caplog.text
        torch.testing.assert_close(y, _expected(*_inputs()))
    # An artefact compiled under other options than its entry's.
    naive = tmp_path / "naive.sqlite"
    CompilationCache(naive).store(_key(), tc.MappingOptions("naive"), [0.001], tuned_artifact)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="tc.backend"):
        y, compiled, options = _run_with_factory(FC, naive)
    assert options == tc.MappingOptions("naive") and compiled == 1
    assert "other options" in caplog.text
    torch.testing.assert_close(y, _expected(*_inputs()))


def test_a_miss_gives_naive_options_and_a_warning(path, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="tc.api"):
        factory = tc.make_load_from_cache_options_factory(path)
        options = factory(FC, "fc_relu", *_inputs())
    assert options == tc.MappingOptions("naive")
    assert "no tuned options for fc_relu" in caplog.text
    assert isinstance(factory.cache, CompilationCache) and factory.cache.path == path


# -- export, import and the command line ------------------------------------------------------


def test_export_and_import(path, tmp_path, no_warnings) -> None:
    _filled(path, 3)
    out = tmp_path / "out.sqlite"
    assert CompilationCache(path).export(out) == 3
    mine = CompilationCache(tmp_path / "mine.sqlite")
    mine.store(_fake_key(7), TUNED, [1.0])
    assert mine.import_(out) == 3
    assert sorted(k.canonical for k in mine.keys()) == [f"canonical {i}" for i in (0, 1, 2, 7)]
    a = CompilationCache(path).best(_fake_key(1))
    b = mine.best(_fake_key(1))
    assert (a.options, a.times, a.artifact) == (b.options, b.times, b.artifact)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(os.urandom(4096))
    with pytest.warns(CacheWarning), pytest.raises(TcCacheError, match="cannot import"):
        mine.import_(junk)


def test_cli(path, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("TC_CACHE_DIR", str(tmp_path / "default"))
    cache = CompilationCache(path)
    key = _key()
    cache.store(key, TUNED, [0.003, 0.002, 0.004])
    cache.store(key, tc.MappingOptions("naive"), [0.010])
    assert main(["cache", "--cache", str(path), "list"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith(key.digest[:12]))
    assert "fc_relu" in row and "float32[5,6]/[6,1]" in row and DEFAULT in row
    assert "3 ms" in row and row.split()[-1] == "2"
    assert main(["cache", "show", key.digest[:8], "--cache", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.index(repr(TUNED)) < out.index('\nMappingOptions("naive")\n')
    assert "2 ms" in out and "10 ms" in out
    assert main(["cache", "--cache", str(path), "show", "ffffffffff"]) == 1
    assert "no cache entry" in capsys.readouterr().err
    copy = tmp_path / "copy.sqlite"
    assert main(["cache", "--cache", str(path), "export", str(copy)]) == 0
    assert "exported 2 entries" in capsys.readouterr().out
    assert main(["cache", "--cache", str(path), "clear"]) == 0
    assert CompilationCache(path).keys() == []
    assert main(["cache", "import", str(copy)]) == 0  # into the default cache
    assert len(CompilationCache(tmp_path / "default" / "tc-cache.sqlite").lookup(key)) == 2
    r = subprocess.run([sys.executable, "-m", "tc", "cache", "--cache", str(copy), "list"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and key.digest[:12] in r.stdout


def test_schema_constants() -> None:
    assert isinstance(cache_mod.SCHEMA_VERSION, int) and cache_mod.SCHEMA_VERSION >= 1


# -- other sizes of a tuned definition (issue 13: one compile for all batch sizes) -----------


def _batch(b: int, seed: int = 5) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(*s, generator=g) for s in ((b, 6), (3, 6), (3,)))


def test_related_keys_are_the_same_definition_at_other_sizes_nearest_first(path) -> None:
    cache = CompilationCache(path)
    for b in (2, 40, 9):
        cache.store(_key(inputs=_batch(b)), TUNED.unroll(b), [0.001 * b])
    cache.store(_key(inputs=_batch(9), backend="opencl"), TUNED, [0.001])  # other target
    k9 = _key(inputs=_batch(9))
    other_dtype = CacheKey.create(k9.canonical, k9.entry, k9.signature.replace("float32",
                                                                                "float64"),
                                  k9.backend, k9.device, k9.versions)
    cache.store(other_dtype, TUNED, [0.001])  # not related
    related = cache.related(_key(inputs=_batch(7)))
    assert [k.signature.split(";")[0] for k, _ in related] == [
        "float32[9,6]/[6,1]", "float32[2,6]/[6,1]", "float32[40,6]/[6,1]"]
    assert related[0][1][0].options == TUNED.unroll(9)
    assert all(k.backend == DEFAULT for k, _ in related)
    assert len(cache.related(k9)) == 2  # itself excluded


def test_a_new_batch_size_reuses_tuned_options_and_the_generic_kernel(path) -> None:
    """Options tuned at batch 5 serve batch 13 (nearest tuned size), and on a target
    whose kernels take the sizes as arguments the stored kernel itself runs: nothing
    is compiled, in a fresh unit as in a fresh process."""
    if not default_target("cpu").symbolic_sizes:
        pytest.skip("the default CPU target compiles per size")
    artifact = tc.compile(FC, "fc_relu", TUNED, *_batch(5), backend=DEFAULT).artifact()
    CompilationCache(path).store(_key(inputs=_batch(5)), TUNED, [0.001], artifact)
    T = tc.define(FC, tc.make_load_from_cache_options_factory(path))
    before = stats.snapshot()
    for b in (13, 1, 5, 64):
        x, W, bias = _batch(b, seed=b)
        torch.testing.assert_close(T.fc_relu(x, W, bias), _expected(x, W, bias))
        assert T.options_for(T.fc_relu.ir, T.fc_relu.bind(x, W, bias)) == TUNED
    assert stats.COUNTERS["compile_program"] == before.get("compile_program", 0)
    assert stats.COUNTERS["cc_compile"] == before.get("cc_compile", 0)
