"""Latency of a cache hit in a fresh process against a cold compile.

    python -m benchmarks.cache_latency [--kernel tmm] [--quick] [--backend cpu]
        [--repeats 3] [--cache-file FILE --options JSON]

A training script that reuses a tuned kernel starts a new process, defines the TC and
calls it: with ``tc.make_load_from_cache_options_factory(cache_file)`` the options (and
the compiled artefact) come from the on-disk cache; without a cache the definition is
scheduled and compiled from scratch. Each measurement here is such a fresh Python
process (``--child``) that builds the catalogue's inputs, initialises the device, then
times ``tc.define(...)`` plus the first call up to its result (checked against the
torch reference as the runner checks a cell), and a second call for comparison. It
also counts, from :data:`codegen.stats.COUNTERS`, the programs scheduled
(``compile_program``), compiled by the back end (:data:`BUILDS`: the C compiler on the
cpu target, PoCL on opencl, NVRTC on cuda) and loaded from a stored binary: a real
cache hit schedules and compiles nothing and loads the stored build. Three kinds of
process:

* ``cold``: no tc cache, the same options as the cached entry;
* ``hit``: options and build from the tc cache;
* ``hit-warm``: the same as ``hit`` again. On opencl ``cold`` and ``hit`` also start
  with an empty PoCL cache (so that PoCL's own kernel cache cannot hide a compile that
  tc's cache should have saved) and ``hit-warm`` has PoCL's cache as ``hit`` left it;
  the cpu and cuda targets have no such second cache, so there it is a second hit.

Without ``tc.make_load_from_cache_options_factory`` (being written in
``autotuner/cache.py``) it reports "cache not available". Standalone, it fills a
temporary cache with a tiny ``tc.autotune`` first (or uses ``--cache-file`` and the
``--options`` stored in it).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

MARKER = "CACHE_LATENCY_RESULT "
KINDS = ("cold", "hit", "hit-warm")
#: Per target: the counters of :mod:`codegen.stats` of a program compiled by the back
#: end and of one loaded from a stored binary, and what compiles there.
BUILDS = {"cpu": ("cc_compile", "cc_load_binary", "C compiler"),
          "opencl": ("opencl_build", "opencl_load_binary", "PoCL"),
          "cuda": ("nvrtc_compile", "nvrtc_load_binary", "NVRTC")}


@dataclass(frozen=True)
class Sample:
    """Medians over the fresh processes of one kind, in seconds."""

    processes: int
    import_s: float
    device_init_s: float
    first_result_s: float
    second_call_s: float
    correct: bool
    # In the timed part, the most of any process: programs compiled by the back end
    # (the C compiler, PoCL, NVRTC), loaded from a stored binary, and scheduled.
    compiled: int
    loaded: int = 0
    scheduled: int = 0


@dataclass(frozen=True)
class Latency:
    """Cold compile against cache hits for one kernel; ``speedup`` = cold / hit of the
    time to first result."""

    kernel: str
    sizes: dict[str, int]
    backend: str
    samples: dict[str, Sample]

    @property
    def speedup(self) -> float:
        return self.samples["cold"].first_result_s / self.samples["hit"].first_result_s

    def as_dict(self) -> dict[str, Any]:
        return {"available": True, **asdict(self), "speedup": self.speedup}


def cache_available() -> bool:
    """Whether this tc has ``make_load_from_cache_options_factory``."""
    import tc

    return hasattr(tc, "make_load_from_cache_options_factory")


def _child(kind: str, kernel_name: str, sizes: dict[str, int], backend: str,
           cache_file: str, options: str) -> dict[str, Any]:
    """Run in the fresh process: import, build inputs, initialise the device, then time
    ``define`` + first call, and a second call."""
    t0 = time.perf_counter()
    import torch

    import tc
    from tc import catalogue
    from tc.options import MappingOptions

    imported = time.perf_counter() - t0
    from benchmarks.runner import BACKEND_DEVICES

    kernel = catalogue.get(kernel_name)
    device = BACKEND_DEVICES[backend]
    inputs = tuple(t.to(device) for t in
                   kernel.make_inputs(sizes, torch.Generator().manual_seed(0)))
    expected = kernel.reference(*inputs)
    from benchmarks.checks import checker, float64_truth

    check = checker(expected, float64_truth(kernel, inputs), kernel.rtol, kernel.atol)
    t1 = time.perf_counter()
    if backend == "cuda":
        torch.cuda.synchronize()
    elif backend == "opencl":  # the native CPU target has no device to set up
        from codegen.opencl import pocl_device

        pocl_device()
    device_init = time.perf_counter() - t1

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    # Count the programs scheduled, compiled and loaded: a real cache hit schedules and
    # compiles none and loads the stored build.
    from codegen import stats

    build, load, _ = BUILDS.get(backend, ("", "", ""))
    before = stats.snapshot()
    t2 = time.perf_counter()
    if kind == "cold":
        fixed = MappingOptions.deserialize(options)
        T = tc.define(kernel.tc, lambda *a: fixed, backend=backend)
    else:
        factory = tc.make_load_from_cache_options_factory(cache_file, backend=backend)
        T = tc.define(kernel.tc, factory, backend=backend)
    out = T[kernel.entry](*inputs)
    sync()
    first = time.perf_counter() - t2
    t3 = time.perf_counter()
    T[kernel.entry](*inputs)
    sync()
    second = time.perf_counter() - t3
    after = stats.snapshot()

    def delta(counter: str) -> int:
        return after.get(counter, 0) - before.get(counter, 0) if counter else 0

    ok = check(out)[0] is None
    return {"import_s": imported, "device_init_s": device_init, "first_result_s": first,
            "second_call_s": second, "correct": ok, "compiled": delta(build),
            "loaded": delta(load), "scheduled": delta("compile_program")}


def _spawn(kind: str, kernel: str, sizes: Mapping[str, int], backend: str, cache_file: str,
           options: str, scratch: str, timeout: float) -> dict[str, Any]:
    """One fresh ``--child`` process; ``scratch``: its PoCL cache directory and the
    parent of an empty default tc cache."""
    cmd = [sys.executable, "-m", "benchmarks.cache_latency", "--child", kind,
           "--kernel", kernel, "--sizes", json.dumps(dict(sizes)), "--backend", backend,
           "--cache-file", cache_file, "--options", options]
    # An empty default tc cache too, so that only the cache file given can hit.
    env = dict(os.environ, POCL_CACHE_DIR=scratch,
               TC_CACHE_DIR=str(Path(scratch) / "tc-default-cache"))
    root = Path(__file__).resolve().parent.parent
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout,
                          cwd=root)
    for line in proc.stdout.splitlines():
        if line.startswith(MARKER):
            return json.loads(line[len(MARKER):])
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    raise RuntimeError(f"the {kind} process failed (exit {proc.returncode}): {tail}")


def measure(kernel: str, sizes: Mapping[str, int], backend: str, cache_file: str,
            options: str, repeats: int = 1, timeout: float = 600.0) -> Latency:
    """Time ``repeats`` fresh processes of each kind for ``kernel`` at ``sizes``, whose
    entry in ``cache_file`` holds ``options`` (serialized ``MappingOptions``)."""
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in KINDS}
    with tempfile.TemporaryDirectory(prefix="tc-cache-latency-") as tmp:
        for r in range(repeats):
            cold_dir, hit_dir = Path(tmp, f"cold{r}"), Path(tmp, f"hit{r}")
            cold_dir.mkdir()
            hit_dir.mkdir()
            for kind, scratch in (("cold", cold_dir), ("hit", hit_dir), ("hit-warm", hit_dir)):
                runs[kind].append(_spawn(kind, kernel, sizes, backend, cache_file, options,
                                         str(scratch), timeout))
    samples = {}
    for kind, results in runs.items():
        med = {f: statistics.median(r[f] for r in results)
               for f in ("import_s", "device_init_s", "first_result_s", "second_call_s")}
        counts = {f: max(r.get(f, 0) for r in results)
                  for f in ("compiled", "loaded", "scheduled")}
        samples[kind] = Sample(len(results), **med, correct=all(r["correct"] for r in results),
                               **counts)
    return Latency(kernel, dict(sizes), backend, samples)


def describe(lat: Mapping[str, Any]) -> str:
    """Markdown lines for :meth:`Latency.as_dict` (also of a report written before the
    loaded and scheduled counts: those show "-")."""
    sizes = " ".join(f"{k}={v}" for k, v in lat["sizes"].items())
    backend = lat["backend"]
    compiler = BUILDS.get(backend, ("", "", "the back end"))[2]
    lines = [f"{lat['kernel']} ({sizes}) on {backend}, in fresh processes; time to "
             "first result = `tc.define` + first call (after imports and device set-up):", "",
             "| process | time to first result (s) | second call (s) | import (s) "
             f"| programs scheduled | programs compiled ({compiler}) | builds loaded from "
             "the cache | correct |", "|---|---|---|---|---|---|---|---|"]
    for kind, s in lat["samples"].items():
        lines.append(f"| {kind} | {s['first_result_s']:.3f} | {s['second_call_s']:.4f} | "
                     f"{s['import_s']:.2f} | {s.get('scheduled', '-')} | {s['compiled']} | "
                     f"{s.get('loaded', '-')} | {'yes' if s['correct'] else 'NO'} |")
    if backend == "opencl":
        how = ("cold: no tc cache and an empty PoCL cache; hit: tc cache, empty PoCL cache; "
               "hit-warm: PoCL's cache left by the hit")
    elif backend == "cpu":
        how = ("cold: no tc cache, scheduled and compiled by the C compiler; hit: the tc "
               "cache, whose entry holds the compiled shared library, loaded without "
               "compiling; hit-warm: a second such process (the cpu target has no other "
               "cache)")
    else:
        how = "cold: no tc cache; hit and hit-warm: the tc cache, which holds the build"
    lines += ["", f"Cache hit {lat['speedup']:.1f}x faster than a cold compile ({how})."]
    hit = lat["samples"].get("hit", {})
    if hit.get("compiled") or hit.get("scheduled"):
        lines.append(f"**The hit process compiled {hit['compiled']} and scheduled "
                     f"{hit.get('scheduled', '-')} programs: it did not load its build from "
                     "the cache.**")
    return "\n".join(lines)


def _fill_cache(kernel_name: str, sizes: dict[str, int], backend: str, cache_file: str
                ) -> str:
    """A tiny tuning of the kernel stored in ``cache_file``; returns its best options."""
    import torch

    from benchmarks.runner import BACKEND_DEVICES, Settings, autotune
    from tc import catalogue

    kernel = catalogue.get(kernel_name)
    device = BACKEND_DEVICES[backend]
    inputs = tuple(t.to(device) for t in
                   kernel.make_inputs(sizes, torch.Generator().manual_seed(0)))
    # quick: no minimum of launched threads, so that tiny sizes have valid candidates.
    tiny = Settings(quick=True, generations=1, pop_size=2)
    _, tuning = autotune(kernel, inputs, backend, tiny, cache_file)
    return tuning.options


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kernel", default="tmm")
    p.add_argument("--quick", action="store_true", help="the first test size (else bench)")
    p.add_argument("--sizes", help="JSON sizes (overrides --quick)")
    p.add_argument("--backend", default="cpu", help="cpu, opencl or cuda (cpu)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--cache-file", help="an existing cache (with --options)")
    p.add_argument("--options", help="serialized MappingOptions of the cached entry")
    p.add_argument("--child", choices=KINDS, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.sizes:
        sizes = json.loads(args.sizes)
    else:
        from tc import catalogue

        k = catalogue.get(args.kernel)
        sizes = dict(k.test_sizes[0] if args.quick else k.bench_sizes[0])
    if args.child:
        result = _child(args.child, args.kernel, sizes, args.backend, args.cache_file,
                        args.options)
        print(MARKER + json.dumps(result))
        return 0
    if not cache_available():
        print("cache not available (tc.make_load_from_cache_options_factory does not exist)")
        return 1
    with tempfile.TemporaryDirectory(prefix="tc-cache-") as tmp:
        cache_file, options = args.cache_file, args.options
        if cache_file is None:
            cache_file = str(Path(tmp) / "tuning.cache")
            options = _fill_cache(args.kernel, sizes, args.backend, cache_file)
        elif options is None:
            p.error("--cache-file needs the --options of its entry")
        lat = measure(args.kernel, sizes, args.backend, cache_file, options, args.repeats)
    print(describe(lat.as_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
