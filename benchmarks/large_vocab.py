"""``python -m benchmarks.large_vocab``: a fused multi-label softmax cross-entropy over a
large vocabulary, tc against torch, in time and peak memory.

The loss of Joulin et al. 2016 ("Learning visual features from large weakly supervised
data"): every example ``n`` has logits ``X(n, v)`` over a vocabulary of ``V`` words
and a bag of ``L`` word ids ``label(n, l)`` (its caption; repeats allowed), and the
target is the uniform distribution over the bag::

    loss = -1 / (N L) * sum over n, l of log softmax(X(n, :))[label(n, l)]

* ``torch``: ``-F.log_softmax(X, 1).gather(1, label).mean()`` and its autograd: the
  log-probabilities (N x V) are kept for the backward, which builds the gradient of
  the gather (N x V) and then of ``log_softmax`` (N x V).
* ``tc derived``: the definition ``bag_xent`` of :data:`BAG_XENT` (row max, sum of
  exponentials, sum of the gathered logits: nothing of size N x V but its input) with the
  backward tc derives from it, which writes the gradient (N x V) and temporaries of
  size N only.
* ``tc hand``: the same forward with the hand-written ``bag_xent_backward`` through
  :func:`tc.make_autograd`: the row max and sum again, the softmax written into the
  gradient, the bag's hits subtracted from it, the scaling.

Each configuration (variant, ``V``) runs in a fresh subprocess (``--worker``) on the
same seeded tensors: it checks the loss and the gradient against torch's (float64
on the same inputs), warms up (compiling, or loading from a compilation cache shared
by the run), then measures

* **peak memory**: the growth of the process's resident set during one training step
  (forward and ``.backward()``) from the step's start: the kernel's high-water mark
  ``VmHWM`` is reset to the current ``VmRSS`` by writing ``5`` to
  ``/proc/self/clear_refs`` right before the step, and read after it. torch's CPU
  allocator returns large blocks to the system at once (no caching), so this counts
  every tensor the step holds at its worst moment (glibc's malloc is set to map every
  block of 128 KiB or more and unmap it when freed, :func:`unmap_freed_blocks`, so
  that no block freed by the warm-up is silently reused): the gradient ``X.grad`` (N x V,
  which every variant must produce) and whatever else is alive with it. Reported in
  MiB and in units of one logits tensor (N x V floats). Without ``clear_refs`` the
  fallback is ``ru_maxrss`` minus the resident set before the step (an upper bound
  spoiled by an earlier, higher peak; the report says which method ran);
* **time**: the median of ``--runs`` training steps, and of ``--runs`` forwards.

``--quick`` runs one small configuration per variant in this process instead.

Results: ``benchmarks/results/NAME.{md,json}`` (``--name``, default ``large-vocab``).
"""

from __future__ import annotations

import os

# As in benchmarks.conv_regimes: two OpenMP runtimes (torch's, tc's kernels') must not
# spin against each other on a 2-core machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

#: The fused loss and its hand-written backward. ``loss`` is a scalar; the backward
#: takes the forward's inputs and the loss's gradient (``make_autograd``'s contract),
#: so it recomputes the row max and sum rather than keep them. The per-row gathered
#: sum ``picked`` is its own statement: folded into the scalar loss, it made the
#: scheduler fuse the whole forward into one serial row loop (measured 1.8x slower
#: at N = 64, V = 50k); the backward's softmax, bag hits (a reduction without ``!``
#: adds into what the first statement wrote) and scaling likewise (1.4x).
BAG_XENT = """
def bag_xent(float(N, V) X, int64(N, L) label) -> (loss) {
    mx(n) max=! X(n, v)
    se(n) +=! exp(X(n, v) - mx(n))
    picked(n) +=! X(n, label(n, l))
    loss +=! (mx(n) + log(se(n)) - picked(n) / L) / N
}

def bag_xent_backward(float(N, V) X, int64(N, L) label, float dloss) -> (dX) {
    mx(n) max=! X(n, v)
    se(n) +=! exp(X(n, v) - mx(n))
    dX(n, v) = exp(X(n, v) - mx(n)) / se(n)
    dX(n, v) += (label(n, l) == v) ? -1.0 / L : 0.0 where v in 0:V
    dX(n, v) = dX(n, v) * dloss / N
}
"""
VARIANTS = ("torch", "tc derived", "tc hand")
VOCABS = (10_000, 50_000, 100_000, 200_000)
QUICK_VOCABS = (2_000,)


def bag_xent_torch(X: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """The torch expression of the loss."""
    return -F.log_softmax(X, 1).gather(1, label).mean()


def loss_function(variant: str, backend: str = "cpu", cache: str | bool | None = None
                  ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The loss of ``variant`` (:data:`VARIANTS`), differentiable in ``X``."""
    if variant == "torch":
        return bag_xent_torch
    import tc

    T = tc.define(BAG_XENT, backend=backend, cache=cache)
    if variant == "tc derived":
        return T.bag_xent
    if variant == "tc hand":
        return tc.make_autograd(T.bag_xent, T.bag_xent_backward)
    raise ValueError(f"unknown variant {variant!r}; choose among {', '.join(VARIANTS)}")


def inputs(n: int, vocab: int, bag: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded logits (N, V) and bags of word ids (N, L)."""
    g = torch.Generator().manual_seed(seed)
    return (3 * torch.randn(n, vocab, generator=g),
            torch.randint(0, vocab, (n, bag), generator=g))


def _status() -> dict[str, int]:
    """VmRSS and VmHWM of this process, in bytes."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) * 1024
    return out


def peak_growth(step: Callable[[], object]) -> tuple[int, str]:
    """Bytes by which the resident set grows at most while ``step()`` runs, and the
    method (see the module docstring)."""
    try:
        rss0 = _status()["VmRSS"]
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        step()
        return _status()["VmHWM"] - rss0, "VmHWM reset by clear_refs"
    except OSError:
        rss0 = _status().get("VmRSS", 0)
        step()
        return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss0,
                "ru_maxrss minus VmRSS before the step")


def unmap_freed_blocks() -> bool:
    """Make glibc's malloc serve every block of 128 KiB or more by ``mmap`` and give it
    back to the system at ``free`` (``mallopt(M_MMAP_THRESHOLD)``, which also stops the
    threshold from growing after frees). Without it, a block freed by the warm-up step
    is reused from the heap by the measured one and the resident set does not grow:
    the peak would miss it. False where there is no glibc."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        M_MMAP_THRESHOLD, M_TRIM_THRESHOLD = -3, -1
        ok = libc.mallopt(M_MMAP_THRESHOLD, 128 * 1024) == 1
        return ok and libc.mallopt(M_TRIM_THRESHOLD, 128 * 1024) == 1
    except (OSError, AttributeError):
        return False


def worker(variant: str, n: int, vocab: int, bag: int, runs: int, cache: str | None) -> dict:
    """One configuration, in this (fresh) process: check, warm up, measure."""
    unmapped = unmap_freed_blocks()
    loss_fn = loss_function(variant, cache=cache)
    X0, label = inputs(n, vocab, bag)
    Xd = X0.double().requires_grad_(True)
    expected = bag_xent_torch(Xd, label)
    expected.backward()
    X = X0.clone().requires_grad_(True)

    def step() -> torch.Tensor:
        X.grad = None
        loss = loss_fn(X, label)
        loss.backward()
        return loss

    loss = step()  # compiles (or loads) and checks: not measured
    loss_err = abs(loss.item() - expected.item())
    grad_err = (X.grad.double() - Xd.grad).abs().max().item()
    ok = loss_err <= 1e-4 * max(1.0, abs(expected.item())) and grad_err <= 1e-6
    step()
    X.grad = None
    growth, method = peak_growth(step)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        step()
        times.append((time.perf_counter() - t0) * 1e3)
    fwd = []
    with torch.no_grad():
        for _ in range(runs):
            t0 = time.perf_counter()
            loss_fn(X, label)
            fwd.append((time.perf_counter() - t0) * 1e3)
    return {"variant": variant, "N": n, "V": vocab, "L": bag, "ok": ok,
            "loss_error": loss_err, "grad_error": grad_err, "peak_bytes": growth,
            "logits_bytes": n * vocab * 4,
            "memory_method": method + (", malloc's blocks of 128 KiB and more mmapped"
                                       if unmapped else ""),
            "step_ms": statistics.median(times), "step_min_ms": min(times),
            "forward_ms": statistics.median(fwd), "runs": runs}


def run_config(variant: str, n: int, vocab: int, bag: int, runs: int, cache: str) -> dict:
    """:func:`worker` in a fresh subprocess; its JSON result."""
    cmd = [sys.executable, "-m", "benchmarks.large_vocab", "--worker", variant, "--batch",
           str(n), "--vocabs", str(vocab), "--bag", str(bag), "--runs", str(runs),
           "--cache", cache]
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=root,
                         timeout=1800)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _in_process(variant: str, n: int, vocab: int, bag: int, runs: int, cache: str) -> dict:
    """:func:`worker` in this process (``--quick``: no interpreter start per row)."""
    return worker(variant, n, vocab, bag, runs, cache)


def to_markdown(rows: Sequence[dict], meta: dict) -> str:
    """The report: setup and one row per vocabulary size."""
    lines = ["# Multi-label softmax cross-entropy over a large vocabulary: tc vs torch", "",
             f"Machine: {meta['machine']}.", "",
             f"Batch N = {meta['N']}, bag L = {meta['L']} words; a training step is the "
             "loss and `.backward()` on logits that require grad (median of "
             f"{meta['runs']} steps, each configuration in a fresh process). Peak: the "
             f"growth of the resident set during one step ({meta['memory_method']}), in "
             "MiB and in logits tensors (N x V floats; the gradient itself is one). "
             "Every variant's loss and gradient are checked against torch's in float64 "
             "first.", "",
             "| V | logits MiB | variant | step ms | forward ms | peak MiB | peak / logits "
             "| step / torch | peak / torch |", "|---" * 9 + "|"]
    by_v: dict[int, dict[str, dict]] = {}
    for r in rows:
        by_v.setdefault(r["V"], {})[r["variant"]] = r
    mib = 2 ** 20
    for v, cells in by_v.items():
        t = cells.get("torch")
        for name in VARIANTS:
            r = cells.get(name)
            if r is None:
                continue
            if not r["ok"]:
                lines.append(f"| {v} | | {name} | WRONG (loss error {r['loss_error']:.2g}, "
                             f"gradient error {r['grad_error']:.2g}) | | | | | |")
                continue
            ratios = (f"{r['step_ms'] / t['step_ms']:.2f} | "
                      f"{r['peak_bytes'] / max(t['peak_bytes'], 1):.2f}") if t else " | "
            lines.append(f"| {v} | {r['logits_bytes'] / mib:.1f} | {name} | "
                         f"{r['step_ms']:.2f} | {r['forward_ms']:.2f} | "
                         f"{r['peak_bytes'] / mib:.1f} | "
                         f"{r['peak_bytes'] / r['logits_bytes']:.2f} | {ratios} |")
    return "\n".join(lines) + "\n"


def machine(load_before: Sequence[float], load_after: Sequence[float]) -> str:
    """The machine line, with the load averages around the run."""
    fmt = ", ".join
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"torch {torch.__version__} ({torch.get_num_threads()} threads), "
            f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}; load average (1, 5, 15 "
            f"min) {fmt(f'{x:.2f}' for x in load_before)} before, "
            f"{fmt(f'{x:.2f}' for x in load_after)} after")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.large_vocab",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="V 2000, batch 8, 3 runs, in this process (a smoke test)")
    p.add_argument("--vocabs", default="", help="comma-separated vocabulary sizes "
                   "(10000,50000,100000,200000)")
    p.add_argument("--batch", type=int, default=64, help="N")
    p.add_argument("--bag", type=int, default=5, help="L, words per caption")
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--out", type=Path, default=None,
                   help="directory of the report (default benchmarks/results/)")
    p.add_argument("--name", default="large-vocab")
    p.add_argument("--cache", help="compilation cache file (default: a temporary one)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run every configuration in its own subprocess; print and write the report."""
    args = build_parser().parse_args(argv)
    vocabs = tuple(int(x) for x in args.vocabs.split(",") if x) or (
        QUICK_VOCABS if args.quick else VOCABS)
    if args.quick:
        args.batch, args.runs = min(args.batch, 8), min(args.runs, 3)
    if args.worker:
        print(json.dumps(worker(args.worker, args.batch, vocabs[0], args.bag, args.runs,
                                args.cache)))
        return 0
    from benchmarks.runner import RESULTS_DIR

    out_dir = args.out or RESULTS_DIR
    variants = [v for v in args.variants.split(",") if v]
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        cache = args.cache or str(Path(tmp) / "cache.sqlite")
        run = _in_process if args.quick else run_config
        rows = [run(var, args.batch, v, args.bag, args.runs, cache)
                for v in vocabs for var in variants]
    meta = {"machine": machine(load_before, os.getloadavg()), "N": args.batch,
            "L": args.bag, "runs": args.runs, "memory_method": rows[0]["memory_method"],
            "load_before": load_before, "load_after": os.getloadavg()}
    text = to_markdown(rows, meta)
    print(text)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{args.name}.md").write_text(text)
    (out_dir / f"{args.name}.json").write_text(json.dumps({**meta, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
