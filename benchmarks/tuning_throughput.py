"""``python -m benchmarks.tuning_throughput``: tuning candidates per minute, by executor.

The same search (one layer, one seed, ``--generations`` x ``--pop-size``) with

* ``local``: this machine's worker processes (``TunerConfig().executor("local")``,
  ``threads`` compile workers);
* ``ray-1``: a Ray cluster of one node with this machine's CPUs;
* ``ray-2``: a simulated two-node cluster of this machine (``ray.cluster_utils.Cluster``
  on 127.0.0.1, the CPUs split between the nodes): what the executor's own scheduling
  costs when the work spreads over nodes. It cannot be faster than ``ray-1`` here (the
  same cores); on a real cluster the compile phase scales with the nodes' CPUs, and the
  timings with the machines (one timing actor each).

Each configuration runs in a fresh subprocess (``--worker``). It tunes twice in one
:class:`~autotuner.executors.Session`: a first, short search ("cold": worker and Ray
start-up, actors, imports) and then the measured one ("warm"). Reported: the warm
search's evaluated candidates per minute (every candidate the search evaluated,
including those rejected or failed, over the wall time), its wall time, the cold
search's wall time, and the fastest median found (a check that the searches are
alike, not a comparison: timing decides the later generations).

Results: ``benchmarks/results/NAME.{md,json}`` (``--name``, default
``tuning-throughput``). ``--quick`` is a small run for the tests.
"""

from __future__ import annotations

import os

# Ray binds to the loopback interface only (read when ray is imported).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import argparse  # noqa: E402
import collections  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

CONFIGS = ("local", "ray-1", "ray-2")
LAYER = "def mm(float(M,K) A, float(K,N) B) -> (C) { C(m, n) +=! A(m, k) * B(k, n) }"
RESULTS = Path(__file__).parent / "results"


def _cluster(config: str):
    """A Ray cluster of this machine for ``config`` (connected), or None."""
    if config == "local":
        return None
    from ray.cluster_utils import Cluster

    cpus = os.cpu_count() or 1
    nodes = 1 if config == "ray-1" else 2
    per_node = [cpus // nodes + (1 if i < cpus % nodes else 0) for i in range(nodes)]
    common = {"object_store_memory": 100 * 2**20}
    cluster = Cluster(initialize_head=True, connect=True, head_node_args={
        "num_cpus": max(1, per_node[0]), "include_dashboard": False, **common})
    for n in per_node[1:]:
        cluster.add_node(num_cpus=max(1, n), **common)
    cluster.wait_for_nodes()
    return cluster


def worker(config: str, generations: int, pop_size: int, sizes: tuple[int, int, int]) -> dict:
    """One configuration in this process: the cold and the warm search."""
    import torch

    from autotuner.executors import Session
    from autotuner.tuner import TunerConfig, tune

    m, k, n = sizes
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(m, k, generator=gen), torch.randn(k, n, generator=gen)
    threads = os.cpu_count() or 1
    clock = time.perf_counter()
    cluster = _cluster(config)
    kind, address = ("local", None) if cluster is None else ("ray", "auto")
    row: dict = {"config": config, "cluster_start_s": time.perf_counter() - clock}
    try:
        with Session(kind, address) as session:
            def search(g: int, seed: int):
                settings = (TunerConfig().generations(g).pop_size(pop_size).seed(seed)
                            .threads(threads).progress(False).executor(kind, address))
                start = time.perf_counter()
                result = tune(LAYER, "mm", a, b, tuner_config=settings, session=session)
                return result, time.perf_counter() - start

            _, row["cold_s"] = search(1, 1)
            result, wall = search(generations, 0)
    finally:
        if cluster is not None:
            import ray

            ray.shutdown()
            cluster.shutdown()
    evaluated = len(result.candidates)
    statuses = collections.Counter(c.outcome.status for c in result.candidates)
    row.update(warm_s=wall, candidates=evaluated, per_minute=60.0 * evaluated / wall,
               ok=result.count("ok"), statuses=dict(sorted(statuses.items())),
               best_ms=None if result.time is None else result.time * 1e3)
    return row


def _run_worker(config: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.tuning_throughput", "--worker", config,
           "--generations", str(args.generations), "--pop-size", str(args.pop_size),
           "--sizes", args.sizes]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"{config} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def report(rows: list[dict], meta: dict) -> str:
    """The Markdown report of ``rows``."""
    lines = [f"# Tuning throughput by executor ({meta['date']})", "",
             f"Machine: {meta['machine']}; load average {meta['load_before']} before, "
             f"{meta['load_after']} after. Layer `mm` at M,K,N = {meta['sizes']}; "
             f"{meta['generations']} generations of {meta['pop_size']} (seed 0), after a "
             "cold search of one generation in the same session.", "",
             "| executor | candidates / min | warm search (s) | candidates | valid | "
             "cold search (s) | cluster start (s) | best (ms) | outcomes |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        best = "-" if r["best_ms"] is None else f"{r['best_ms']:.4g}"
        lines.append(f"| {r['config']} | {r['per_minute']:.1f} | {r['warm_s']:.1f} | "
                     f"{r['candidates']} | {r['ok']} | {r['cold_s']:.1f} | "
                     f"{r['cluster_start_s']:.1f} | {best} | "
                     + ", ".join(f"{n} {s}" for s, n in r.get("statuses", {}).items()) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--worker", choices=CONFIGS, help=argparse.SUPPRESS)
    p.add_argument("--configs", default=",".join(CONFIGS))
    p.add_argument("--generations", type=int, default=5)
    p.add_argument("--pop-size", type=int, default=24, dest="pop_size")
    p.add_argument("--sizes", default="128,256,96", help="M,K,N")
    p.add_argument("--name", default="tuning-throughput")
    p.add_argument("--quick", action="store_true", help="2 generations of 3, tiny sizes, "
                   "local and ray-1, no files written")
    args = p.parse_args(argv)
    if args.quick:
        args.generations, args.pop_size, args.sizes = 2, 3, "9,7,5"
        args.configs = "local,ray-1"
    sizes = tuple(int(v) for v in args.sizes.split(","))
    if args.worker:
        print(json.dumps(worker(args.worker, args.generations, args.pop_size, sizes)))
        return 0
    meta = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.node()}, "
            f"{os.cpu_count()} cores, Python {platform.python_version()}",
            "load_before": " ".join(f"{v:.2f}" for v in os.getloadavg()),
            "generations": args.generations, "pop_size": args.pop_size,
            "sizes": args.sizes}
    rows = [_run_worker(c, args) for c in args.configs.split(",")]
    meta["load_after"] = " ".join(f"{v:.2f}" for v in os.getloadavg())
    text = report(rows, meta)
    print(text)
    if not args.quick:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / f"{args.name}.md").write_text(text)
        (RESULTS / f"{args.name}.json").write_text(json.dumps({"meta": meta, "rows": rows},
                                                              indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
