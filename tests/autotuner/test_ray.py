"""The Ray executor on a simulated cluster of this machine (ray.cluster_utils.Cluster,
on 127.0.0.1 only): results as the local executor's, lost tasks, nodes and actors,
crashing and hanging candidates, Ctrl-C, and the command line on a local Ray."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest
import torch

# Every Ray process of these tests binds to the loopback interface: read by Ray when
# it is imported, and inherited by the nodes and workers it starts.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
ray = pytest.importorskip("ray", reason="Ray is not installed (pip install '.[ray]')")
from evaluations import evaluate_all, scale_problem  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

import tc  # noqa: E402
from autotuner import evaluate  # noqa: E402
from autotuner.local import LocalEvaluator  # noqa: E402
from autotuner.ray_executor import RayEvaluator, RayPool  # noqa: E402
from autotuner.tuner import TunerConfig, tune  # noqa: E402
from tc.options import MappingOptions  # noqa: E402

# One pytest-xdist worker runs them all (make test: --dist loadgroup), on one cluster.
pytestmark = pytest.mark.xdist_group("ray")

N = 1000
MM = "def mm(float(M,K) A, float(K,N) B) -> (C) { C(m, n) +=! A(m, k) * B(k, n) }"
NODE = {"num_cpus": 1, "object_store_memory": 80 * 2**20}


@pytest.fixture(scope="module")
def cluster():
    c = Cluster(initialize_head=True, connect=True, head_node_args={
        **NODE, "include_dashboard": False,
        # A removed node is seen as dead within a second, not after half a minute.
        "_system_config": {"health_check_period_ms": 300, "health_check_failure_threshold": 3,
                           "health_check_initial_delay_ms": 0}})
    c.add_node(**NODE)
    c.wait_for_nodes()
    pool = RayPool("auto")  # joins the connected cluster
    assert not pool.started
    assert {h for h, _ in pool.nodes.values()} == {"127.0.0.1"}
    yield c, pool
    pool.close()
    ray.shutdown()
    c.shutdown()


def _problem(timing_runs: int = 3):
    return scale_problem("cpu", N, 1 << 20, timing_runs=timing_runs)


def _tile(n: int) -> MappingOptions:
    return MappingOptions("naive").tile(n)


def _ray_evaluator(pool, **kwargs) -> RayEvaluator:
    space, cs, rs = _problem(kwargs.pop("timing_runs", 3))
    # Microsecond kernels on a busy machine: no pruning (a hiccup is 100 x such a time).
    settings = {"compile_timeout": 60.0, "run_timeout": 2.0, "prune_factor": 1e9} | kwargs
    return RayEvaluator(space, cs, rs, pool=pool, **settings)


def test_same_outcomes_as_the_local_executor(cluster) -> None:
    _, pool = cluster
    candidates = [_tile(n) for n in (1, 7, 64, 1000)] + [MappingOptions("naive")]
    with _ray_evaluator(pool) as ev:
        remote = evaluate_all(ev, candidates)
        device = ev.device
    space, cs, rs = _problem()
    with LocalEvaluator(space, cs, rs, threads=2, compile_timeout=60.0, run_timeout=2.0,
                        prune_factor=1e9) as ev:
        local = evaluate_all(ev, candidates)
    assert [o.status for o in remote] == [o.status for o in local] == ["ok"] * 5
    assert all(o.device == device and device.startswith("cpu ") for o in remote)
    assert all(len(o.times) == 3 and o.time > 0 for o in remote)


def test_tune_with_a_seed_draws_what_the_local_executor_draws(cluster) -> None:
    """One generation: the seed decides the candidates, timing decides nothing."""
    a, b = torch.randn(7, 5), torch.randn(5, 3)
    results = {}
    for kind in ("local", "ray"):
        config = (TunerConfig().generations(1).pop_size(4).seed(3).progress(False).prune_factor(1e9)
                  .threads(2).executor(kind, "auto" if kind == "ray" else None))
        results[kind] = tune(MM, "mm", a, b, tuner_config=config)
    local, remote = results["local"], results["ray"]
    assert [c.options for c in local.candidates] == [c.options for c in remote.candidates]
    assert [c.outcome.status for c in local.candidates] == \
        [c.outcome.status for c in remote.candidates]
    assert remote.options is not None
    got = tc.compile(MM, "mm", remote.options, a, b)(a, b)
    torch.testing.assert_close(got, a @ b)


def test_crash_hang_and_wrong_candidates_cost_one_candidate_each(cluster, monkeypatch) -> None:
    _, pool = cluster
    good, crash_c, crash_r, hang, wrong = (_tile(n) for n in (4, 8, 16, 32, 64))
    monkeypatch.setattr(evaluate, "FAULTS", [
        evaluate.fault("crash", "compile", options=crash_c),
        evaluate.fault("crash", options=crash_r), evaluate.fault("hang", options=hang),
        evaluate.fault("wrong", options=wrong)])
    retried = pool.retried
    with _ray_evaluator(pool, compile_timeout=30.0, run_timeout=1.0, timing_runs=1) as ev:
        outcomes = evaluate_all(ev, [good, crash_c, crash_r, hang, wrong])
        # the hung actor was replaced: a later candidate still runs
        after = evaluate_all(ev, [_tile(2)])
    assert [o.status for o in outcomes] == ["ok", "crash", "crash", "timeout", "wrong"]
    assert pool.retried - retried == 2  # each crash was retried once, then given up
    assert after[0].status == "ok"


def test_a_node_removed_mid_tuning_costs_no_candidate(cluster, monkeypatch) -> None:
    c, pool = cluster
    extra = c.add_node(**NODE)
    c.wait_for_nodes()
    pool.refresh()
    assert len(pool.nodes) == 3
    # Every compile takes 3 s, so that the third node has one in flight when it goes.
    monkeypatch.setattr(evaluate, "FAULTS", [evaluate.fault("hang", "compile", seconds=3.0)])
    retried = pool.retried
    candidates = [_tile(n) for n in (2, 3, 5, 9, 17, 33)]

    def remove() -> None:
        time.sleep(1.5)
        c.remove_node(extra)

    remover = threading.Thread(target=remove)
    remover.start()
    with _ray_evaluator(pool) as ev:
        outcomes = evaluate_all(ev, candidates)
    remover.join()
    assert [o.status for o in outcomes] == ["ok"] * len(candidates)
    assert pool.retried > retried
    assert len(pool.nodes) == 2


def test_the_timing_actors_node_removed_mid_run(cluster, monkeypatch) -> None:
    """The actor's node goes while it times: the candidate is retried on a new actor on
    another node of the same machine."""
    c, pool = cluster
    extra = c.add_node(**NODE)
    c.wait_for_nodes()
    pool.refresh()
    ev = _ray_evaluator(pool)
    slot = ev._timing_slots()[0]
    moved = pool.replace("cpu", slot, node=extra.node_id)  # the actor on the new node
    assert moved.node == extra.node_id
    monkeypatch.setattr(evaluate, "FAULTS", [evaluate.fault("slow", seconds=1.0)])
    retried = pool.retried
    remover = threading.Timer(2.5, c.remove_node, args=(extra,))
    remover.start()
    with _ray_evaluator(pool) as ev:
        outcomes = evaluate_all(ev, [_tile(2), _tile(3)])
    remover.join()
    assert [o.status for o in outcomes] == ["ok", "ok"]
    assert pool.retried >= retried + 1  # the run (and maybe a compile) on the lost node
    assert all(s.node != extra.node_id for s in pool.slots("cpu", False))


def test_ctrl_c_returns_the_best_so_far(cluster, monkeypatch) -> None:
    a, b = torch.randn(6, 4), torch.randn(4, 5)
    trigger = MappingOptions("naive").tile(2, 2)
    monkeypatch.setattr(evaluate, "FAULTS", [evaluate.fault("interrupt", tile_sizes=[2, 2],
                                                            pid=os.getpid())])
    config = (TunerConfig().generations(3).pop_size(4).seed(0).progress(False)
              .executor("ray", "auto"))
    result = tune(MM, "mm", a, b, starting_options=[MappingOptions("naive"), trigger],
                  tuner_config=config)
    assert result.interrupted
    assert len(result.generations) == 1  # stopped in the first generation
    oks = [c.options.serialize() for c in result.candidates if c.outcome.status == "ok"]
    # The candidates run in order on the one timing actor: the naive options, then the
    # trigger (whose run may still finish); the two after it never ran.
    assert 1 <= len(oks) <= 2 and result.options.serialize() in oks
    assert result.time is not None


def test_tune_on_a_local_ray_from_the_command_line(tmp_path) -> None:
    """``python -m tc tune --executor ray`` starts a local Ray (on 127.0.0.1), tunes and
    stops it."""
    src = tmp_path / "mm.tc"
    src.write_text(MM)
    env = {**os.environ, "TC_CACHE_DIR": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "tc", "tune", str(src), "--sizes",
                           "M=5,K=3,N=7", "--generations", "1", "--pop-size", "3",
                           "--seed", "0", "--executor", "ray", "--store"],
                          capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    options = MappingOptions.deserialize(proc.stdout.strip().splitlines()[-1])
    a, b = torch.randn(5, 3), torch.randn(3, 7)
    torch.testing.assert_close(tc.compile(MM, "mm", options, a, b)(a, b), a @ b)
    assert "started a local Ray at 127.0.0.1:" in proc.stderr  # loopback only
    assert "1 timing actor(s) for cpu" in proc.stderr
    listing = subprocess.run([sys.executable, "-m", "tc", "cache", "list"], capture_output=True,
                             text=True, timeout=120, env=env)
    assert "mm" in listing.stdout and "untimed" not in listing.stdout


SCRIPT = """
def mm(float(M, K) A, float(K, N) B) -> (C) { C(m, n) +=! A(m, k) * B(k, n) }
def axpy(float(N) x, float(N) y) -> (z) { z(i) = 2 * x(i) + y(i) }
"""


def _script(cache) -> None:
    """A "training script": each definition called once, on the CPU target, checked."""
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(6, 4, generator=g), torch.randn(4, 3, generator=g)
    x, y = torch.randn(17, generator=g), torch.randn(17, generator=g)
    T = tc.define(SCRIPT, backend="cpu", cache=cache)
    torch.testing.assert_close(T.mm(a, b), a @ b)
    torch.testing.assert_close(T.axpy(x, y), 2 * x + y)


def test_untimed_entries_of_a_script_tuned_on_the_cluster(cluster, tmp_path) -> None:
    from autotuner.cache import CompilationCache
    from autotuner.executors import Session
    from autotuner.untimed import tune_untimed, untimed_keys

    cache = CompilationCache(tmp_path / "script.sqlite")
    _script(cache)
    keys = untimed_keys(cache)
    assert sorted(k.entry for k in keys) == ["axpy", "mm"]
    config = (TunerConfig().generations(1).pop_size(3).seed(0).progress(False)
              .executor("ray", "auto"))
    with Session("ray", "auto") as session:
        results = tune_untimed(cache, config, session=session, max_in_flight=2)
    assert [r.status for r in results] == ["tuned", "tuned"], [r.reason for r in results]
    assert untimed_keys(cache) == []
    for key in keys:  # stored under the script's own keys, with the kernel
        best = cache.best(key)
        assert best.timed and best.artifact is not None
    _script(cache)  # the next run of the script, on the tuned kernels
    assert untimed_keys(cache) == []


def test_an_address_nobody_answers_at_is_an_error_at_once() -> None:
    from autotuner.ray_executor import _reachable
    from tc.errors import TcBackendError

    start = time.monotonic()
    with pytest.raises(TcBackendError, match="no Ray cluster answers at '127.0.0.1:1'"):
        _reachable("127.0.0.1:1")
    with pytest.raises(TcBackendError, match="ray start --head"):
        _reachable("ray://127.0.0.1:1")
    assert time.monotonic() - start < 10
