"""``python -m benchmarks.conv_regimes``: direct against FFT convolution, by kernel size.

The question of Vasilache et al. 2015 ("Fast convolutional nets with fbfft: a GPU
performance evaluation"), asked on this machine's CPU: for a convolutional layer of
batch ``N``, ``C`` input and ``F`` output planes, ``H x W`` images and ``K x K``
kernels (stride 1, no padding: ``O(n, f, h, w) = sum over c, kh, kw of I(n, c, h + kh,
w + kw) * Wt(f, c, kh, kw)``, a cross-correlation as in torch), from which kernel
size on is the Fourier-domain computation faster than the direct one?

Three ways, on the same tensors in one process:

* ``tc direct``: ``CONV2D`` of :mod:`tc.catalogue` on the ``cpu`` target (C + OpenMP),
  with tuned options: :func:`tc.autotune` with a small budget (``--generations`` x
  ``--pop-size``, seeded with the default options of :mod:`tc.defaults`, so that the
  tuned kernel is never slower than the default one as the tuner measured them), once
  per layer and kernel size, then raced (3 calls each) against the default options
  and the options picked at the previous kernel size: a tuning of a few candidates is
  a lottery. ``--no-tune`` times the default options instead.
* ``fft + tc``: the fbfft recipe. ``torch.fft.rfft2`` of the images and of the weights
  zero-padded to the image size (a circular correlation of size ``H x W`` is exact on
  the ``(H - K + 1) x (W - K + 1)`` outputs a valid correlation keeps), the
  per-frequency complex multiply-accumulate over input planes as the TC definition
  :data:`CMAC` (real and imaginary parts as separate float tensors, the weights
  conjugated: a correlation), then ``torch.fft.irfft2`` and the crop. Every step is
  timed, the weights' transform included. The MAC's sizes do not depend on ``K``:
  it is tuned as the direct kernel, once per layer (``--no-tune``: default options).
* ``torch``: ``torch.nn.functional.conv2d`` (oneDNN / im2col + GEMM on this CPU).

Before timing, the three outputs of every configuration are checked against each
other (``torch.testing.assert_close`` with a tolerance scaled by the reduction length
``C * K * K``): a failing configuration stops the run. Timing interleaves the
variants (one call of each per round, ``--runs`` rounds after ``--warmup``), so that
the load of a shared machine falls on all of them alike; the median and the fastest
call are reported, with the load average before and after.

The crossover of a layer is the smallest swept kernel size from which ``fft + tc``
is faster (by median) than ``tc direct`` at that size and every larger one (None when
it never is). Results: ``benchmarks/results/NAME.{md,json,png}`` (``--name``, default
``conv-regimes``); the plot shows time against kernel size per layer, the crossover
marked.
"""

from __future__ import annotations

import os

# torch's OpenMP runtime and the one tc's kernels link are two thread pools; each
# spins after its parallel regions by default, and on 2 cores the spinning of one
# delays the other's next call by a scheduler tick (measured: torch's conv2d of a
# 2x4x16x16 image 28 ms instead of 0.1 ms right after a tc call). Idle threads sleep
# instead (set before torch and the first kernel load the runtimes; already set or
# already loaded: left as it is, and the report says which).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from dataclasses import asdict, dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import tc  # noqa: E402
from benchmarks.defaults import default_options_for  # noqa: E402
from benchmarks.runner import RESULTS_DIR  # noqa: E402
from tc import catalogue  # noqa: E402

log = logging.getLogger(__name__)

#: The per-frequency complex multiply-accumulate of FFT convolution (fbfft's "CGEMM"
#: step), real and imaginary parts apart, weights conjugated (a correlation).
CMAC = """
def cmac(float(N, C, U, V) Xr, float(N, C, U, V) Xi, float(F, C, U, V) Wr,
         float(F, C, U, V) Wi) -> (Or, Oi) {
    Or(n, f, u, v) +=! Xr(n, c, u, v) * Wr(f, c, u, v) + Xi(n, c, u, v) * Wi(f, c, u, v)
    Oi(n, f, u, v) +=! Xi(n, c, u, v) * Wr(f, c, u, v) - Xr(n, c, u, v) * Wi(f, c, u, v)
}
"""

#: Layers modelled on the fbfft paper's representative layers (batch S = 128, planes
#: f -> f', image n; shapes as recalled, not checked against the paper's table here):
#: L1 (3 -> 96, 128), L2 (64 -> 64, 64), L3 (128 -> 128, 32), L4 (128 -> 128, 16),
#: scaled down in batch, planes (and L1's image) to run in seconds on 2 cores.
LAYERS: dict[str, dict[str, int]] = {
    "L1": {"N": 4, "C": 3, "F": 24, "H": 64},
    "L2": {"N": 8, "C": 16, "F": 16, "H": 64},
    "L3": {"N": 8, "C": 32, "F": 32, "H": 32},
    "L4": {"N": 16, "C": 32, "F": 32, "H": 16},
}
QUICK_LAYERS: dict[str, dict[str, int]] = {"tiny": {"N": 2, "C": 4, "F": 4, "H": 16}}
KERNEL_SIZES = (3, 5, 7, 9, 11, 13)
QUICK_KERNEL_SIZES = (3, 7)
VARIANTS = ("tc direct", "fft + tc", "torch")


@dataclass
class Point:
    """One layer at one kernel size: medians and fastest calls (ms) per variant."""

    layer: str
    sizes: dict[str, int]
    k: int
    median_ms: dict[str, float] = field(default_factory=dict)
    min_ms: dict[str, float] = field(default_factory=dict)
    runs: int = 0
    max_error: dict[str, float] = field(default_factory=dict)
    tuning_s: float = 0.0
    options: dict[str, str] = field(default_factory=dict)
    direct_candidates: dict[str, float] = field(default_factory=dict)

    @property
    def gflops(self) -> float:
        """The direct convolution's arithmetic, 2 N F C HO WO K^2, in GFLOP."""
        s, ho = self.sizes, self.sizes["H"] - self.k + 1
        return 2 * s["N"] * s["F"] * s["C"] * ho * ho * self.k ** 2 / 1e9


def fft_conv(mac: Callable, I: torch.Tensor, Wt: torch.Tensor) -> torch.Tensor:
    """Valid cross-correlation of ``I`` with ``Wt`` through the Fourier domain, the
    complex MAC over input planes done by ``mac`` (an entry point of :data:`CMAC`)."""
    H, W = I.shape[-2:]
    KH, KW = Wt.shape[-2:]
    X = torch.fft.rfft2(I)
    Wf = torch.fft.rfft2(Wt, s=(H, W))
    Or, Oi = mac(X.real.contiguous(), X.imag.contiguous(), Wf.real.contiguous(),
                 Wf.imag.contiguous())
    out = torch.fft.irfft2(torch.complex(Or, Oi), s=(H, W))
    return out[..., :H - KH + 1, :W - KW + 1]


def _tuned(text: str, entry: str, inputs: Sequence[torch.Tensor], tune: bool,
           generations: int, pop_size: int) -> tuple[tc.MappingOptions, float]:
    """Options for ``entry`` on ``inputs``: the default ones, or those of a short tuning
    seeded with them; and the seconds the tuning took."""
    default, _ = default_options_for(text, entry, inputs, "cpu")
    if not tune:
        return default, 0.0
    config = (tc.TunerConfig().generations(generations).pop_size(pop_size)
              .number_elites(1).seed(0).progress(False))
    t0 = time.perf_counter()
    best = tc.autotune(text, entry, *inputs, starting_options=[default],
                       tuner_config=config, backend="cpu")
    return best, time.perf_counter() - t0


def _fixed(options: tc.MappingOptions) -> Callable:
    return lambda *_: options


def pick_direct(candidates: Sequence[tc.MappingOptions], I: torch.Tensor, Wt: torch.Tensor,
                calls: int = 3) -> tuple[tc.MappingOptions, Callable, dict[str, float]]:
    """The fastest of ``candidates`` for the direct convolution (median of ``calls``
    calls after a compiling one), its entry point, and every candidate's median (ms).
    A tuning of a few candidates is a lottery between kernel sizes; racing its pick
    against the default options and the previous size's pick keeps one bad draw from
    deciding a point."""
    seen: dict[object, tuple[tc.MappingOptions, Callable, float]] = {}
    for opts in candidates:
        if opts.key() in seen:
            continue
        fn = tc.define(catalogue.CONV2D, _fixed(opts), backend="cpu").conv2d
        fn(I, Wt)
        times = []
        for _ in range(calls):
            t0 = time.perf_counter()
            fn(I, Wt)
            times.append((time.perf_counter() - t0) * 1e3)
        seen[opts.key()] = (opts, fn, statistics.median(times))
    best = min(seen.values(), key=lambda x: x[2])
    return best[0], best[1], {repr(o): t for o, _, t in seen.values()}


def _check(outs: dict[str, torch.Tensor], reduction: int) -> dict[str, float]:
    """Every pair of outputs agrees (float32 sums of ``reduction`` terms); returns each
    output's largest difference from torch's."""
    tol = 1e-5 * max(1.0, reduction ** 0.5) * 10
    names = list(outs)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            torch.testing.assert_close(outs[a], outs[b], rtol=tol, atol=tol,
                                       msg=lambda m, a=a, b=b: f"{a} vs {b}: {m}")
    return {n: (outs[n] - outs["torch"]).abs().max().item() for n in names}


def interleaved(fns: dict[str, Callable[[], object]], warmup: int, runs: int,
                budget_s: float) -> dict[str, list[float]]:
    """Milliseconds per call of each function, timed in rounds of one call of each
    (``warmup`` untimed rounds first); stops after ``budget_s`` of timed rounds, after
    at least one."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    samples: dict[str, list[float]] = {k: [] for k in fns}
    t_start = time.perf_counter()
    for _ in range(max(1, runs)):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            samples[name].append((time.perf_counter() - t0) * 1e3)
        if time.perf_counter() - t_start >= budget_s:
            break
    return samples


def measure(layer: str, sizes: dict[str, int], k: int, args: argparse.Namespace,
            mac_cache: dict[str, tuple[tc.MappingOptions, float, Callable]],
            previous: dict[str, tc.MappingOptions]) -> Point:
    """Check and time the three variants on one layer at kernel size ``k``
    (``mac_cache``: the MAC's options per layer, filled on first use; ``previous``:
    the direct kernel's options picked at the layer's previous kernel size)."""
    g = torch.Generator().manual_seed(k)
    I = torch.randn(sizes["N"], sizes["C"], sizes["H"], sizes["H"], generator=g)
    Wt = torch.randn(sizes["F"], sizes["C"], k, k, generator=g) / k
    point = Point(layer, dict(sizes), k)
    conv_opts, t_conv = _tuned(catalogue.CONV2D, "conv2d", (I, Wt), args.tune,
                               args.generations, args.pop_size)
    X = torch.fft.rfft2(I)
    Wf = torch.fft.rfft2(Wt, s=I.shape[-2:])
    mac_in = (X.real.contiguous(), X.imag.contiguous(), Wf.real.contiguous(),
              Wf.imag.contiguous())
    if layer not in mac_cache:  # the MAC's sizes do not depend on K: tuned once a layer
        opts, secs = _tuned(CMAC, "cmac", mac_in, args.tune, args.generations,
                            args.pop_size)
        mac_cache[layer] = (opts, secs, tc.define(CMAC, _fixed(opts), backend="cpu").cmac)
    mac_opts, t_mac, mac = mac_cache[layer]
    t_mac = t_mac if k == min(args.ks) else 0.0
    point.tuning_s = t_conv + t_mac
    candidates = [conv_opts]
    if args.tune:
        candidates.append(default_options_for(catalogue.CONV2D, "conv2d", (I, Wt), "cpu")[0])
        if layer in previous:
            candidates.append(previous[layer])
    conv_opts, direct, point.direct_candidates = pick_direct(candidates, I, Wt)
    previous[layer] = conv_opts
    point.options = {"conv2d": repr(conv_opts), "cmac": repr(mac_opts)}
    fns = {"tc direct": lambda: direct(I, Wt), "fft + tc": lambda: fft_conv(mac, I, Wt),
           "torch": lambda: F.conv2d(I, Wt)}
    outs = {name: fn() for name, fn in fns.items()}  # also compiles: not timed
    point.max_error = _check(outs, sizes["C"] * k * k)
    samples = interleaved(fns, args.warmup, args.runs, args.budget)
    point.runs = len(samples["torch"])
    point.median_ms = {n: statistics.median(s) for n, s in samples.items()}
    point.min_ms = {n: min(s) for n, s in samples.items()}
    log.info("%s k=%d: %s", layer, k, point.median_ms)
    return point


def crossover(points: Sequence[Point]) -> int | None:
    """The smallest kernel size from which ``fft + tc`` beats ``tc direct`` (medians)
    at it and every larger swept size; None when it never does."""
    ordered = sorted(points, key=lambda p: p.k)
    best = None
    for p in reversed(ordered):
        if p.median_ms["fft + tc"] < p.median_ms["tc direct"]:
            best = p.k
        else:
            break
    return best


def _layers(points: Sequence[Point]) -> dict[str, list[Point]]:
    out: dict[str, list[Point]] = {}
    for p in points:
        out.setdefault(p.layer, []).append(p)
    return out


def machine(load_before: Sequence[float], load_after: Sequence[float]) -> str:
    """The machine line of the report, with the load averages around the run."""
    fmt = ", ".join
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"torch {torch.__version__} ({torch.get_num_threads()} threads); load average "
            f"(1, 5, 15 min) {fmt(f'{x:.2f}' for x in load_before)} before, "
            f"{fmt(f'{x:.2f}' for x in load_after)} after")


def to_markdown(points: Sequence[Point], meta: dict) -> str:
    """The report: setup, the table, the crossovers."""
    lines = ["# Convolution regimes: direct (tc) vs FFT (fbfft way, MAC in tc) vs torch",
             "", f"Machine: {meta['machine']}.", "",
             f"Options: {meta['options']}. OMP_WAIT_POLICY={meta['omp_wait_policy']}. "
             f"Medians of {meta['runs']} interleaved rounds "
             f"(fastest call in parentheses), milliseconds; all three outputs checked "
             "against each other first.", "",
             "| layer | N C->F HxW | K | GFLOP direct | tc direct | fft + tc | torch conv2d "
             "| fft / direct | direct / torch |", "|---" * 9 + "|"]
    for layer, pts in _layers(points).items():
        for p in sorted(pts, key=lambda p: p.k):
            s, m, lo = p.sizes, p.median_ms, p.min_ms
            cells = " | ".join(f"{m[v]:.2f} ({lo[v]:.2f})" for v in VARIANTS)
            lines.append(f"| {layer} | {s['N']} {s['C']}->{s['F']} {s['H']}x{s['H']} | "
                         f"{p.k} | {p.gflops:.3f} | {cells} | "
                         f"{m['fft + tc'] / m['tc direct']:.2f} | "
                         f"{m['tc direct'] / m['torch']:.2f} |")
    lines += ["", "Crossover (smallest K from which fft + tc beats tc direct at every "
              "larger swept K):", ""]
    for layer, pts in _layers(points).items():
        k = meta["crossover"].get(layer)
        wins = [p.k for p in sorted(pts, key=lambda p: p.k)
                if p.median_ms["fft + tc"] < p.median_ms["tc direct"]]
        lines.append(f"* {layer}: {'none' if k is None else f'K = {k}'} (fft + tc faster at "
                     f"K = {', '.join(map(str, wins)) or 'none'}; faster than torch at K = "
                     + (", ".join(str(p.k) for p in sorted(pts, key=lambda p: p.k)
                                  if p.median_ms["fft + tc"] < p.median_ms["torch"])
                        or "none") + ")")
    return "\n".join(lines) + "\n"


def plot(points: Sequence[Point], crossovers: dict[str, int | None], path: Path) -> None:
    """Time against kernel size, one panel per layer, the crossover marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = _layers(points)
    fig, axes = plt.subplots(1, len(layers), figsize=(4.2 * len(layers), 3.8), squeeze=False)
    for ax, (layer, pts) in zip(axes[0], layers.items(), strict=True):
        pts = sorted(pts, key=lambda p: p.k)
        ks = [p.k for p in pts]
        for v, style in zip(VARIANTS, ("o-", "s-", "^--"), strict=True):
            ax.plot(ks, [p.median_ms[v] for p in pts], style, label=v)
        k = crossovers.get(layer)
        if k is not None:
            ax.axvline(k, color="grey", linestyle=":")
            ax.annotate(f"FFT wins from K={k}", (k, ax.get_ylim()[1]), fontsize=8,
                        ha="left", va="top")
        s = pts[0].sizes
        ax.set_title(f"{layer}: N={s['N']} {s['C']}->{s['F']} {s['H']}x{s['H']}", fontsize=9)
        ax.set_xlabel("kernel size K")
        ax.set_yscale("log")
        ax.set_xticks(ks)
    axes[0][0].set_ylabel("median ms per call")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.conv_regimes",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="one tiny layer, K 3 and 7, no tuning")
    p.add_argument("--layers", default="", help=f"comma-separated subset of {', '.join(LAYERS)}")
    p.add_argument("--kernel-sizes", default="", help="comma-separated (3,5,7,9,11,13)")
    p.add_argument("--runs", type=int, default=7, help="timed rounds (median)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--budget", type=float, default=20.0, help="seconds of timed rounds at most")
    p.add_argument("--no-tune", dest="tune", action="store_false",
                   help="default options instead of a short tuning")
    p.add_argument("--generations", type=int, default=2, help="tuner generations")
    p.add_argument("--pop-size", type=int, default=4, help="tuner population")
    p.add_argument("--out", type=Path, default=RESULTS_DIR)
    p.add_argument("--name", default="conv-regimes")
    return p


def write(points: Sequence[Point], meta: dict, base: Path) -> str:
    """Write ``base``.md, .json and .png; return the markdown."""
    text = to_markdown(points, meta)
    base.parent.mkdir(parents=True, exist_ok=True)
    base.with_suffix(".md").write_text(text)
    base.with_suffix(".json").write_text(json.dumps(
        {**meta, "points": [{**asdict(p), "gflops": p.gflops} for p in points]}, indent=1))
    plot(points, meta["crossover"], base.with_suffix(".png"))
    return text


def rewrite(json_path: Path) -> str:
    """Regenerate the markdown and plot of a run from its JSON (no measuring)."""
    data = json.loads(json_path.read_text())
    fields = set(Point.__dataclass_fields__)
    points = [Point(**{k: v for k, v in p.items() if k in fields}) for p in data.pop("points")]
    return write(points, data, json_path.with_suffix(""))


def main(argv: Sequence[str] | None = None) -> int:
    """Sweep, check, time, write the markdown, JSON and plot; print the markdown."""
    p = build_parser()
    args = p.parse_args(argv)
    if args.quick:
        layers, ks = QUICK_LAYERS, QUICK_KERNEL_SIZES
        args.tune, args.runs = False, min(args.runs, 3)
    else:
        names = [x for x in args.layers.split(",") if x] or list(LAYERS)
        unknown = [n for n in names if n not in LAYERS]
        if unknown:
            p.error(f"unknown layers {', '.join(unknown)}; choose among {', '.join(LAYERS)}")
        layers = {n: LAYERS[n] for n in names}
        ks = tuple(int(x) for x in args.kernel_sizes.split(",") if x) or KERNEL_SIZES
    load_before = os.getloadavg()
    mac_cache: dict[str, tuple[tc.MappingOptions, float, Callable]] = {}
    previous: dict[str, tc.MappingOptions] = {}
    args.ks = ks
    points = [measure(name, sizes, k, args, mac_cache, previous)
              for name, sizes in layers.items() for k in ks if k <= sizes["H"]]
    crossovers = {layer: crossover(pts) for layer, pts in _layers(points).items()}
    options = (f"tc tuned with {args.generations} generations x {args.pop_size} "
               "candidates seeded with the default options (direct: per layer and K, then "
               "the fastest of the tuned, the default and the previous K's options by a "
               "3-call race; MAC: per layer); tuning times and race times in the JSON"
               if args.tune else "tc default options (no tuning)")
    meta = {"machine": machine(load_before, os.getloadavg()), "options": options,
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "runs": args.runs, "crossover": crossovers,
            "load_before": load_before, "load_after": os.getloadavg()}
    print(write(points, meta, args.out / args.name))
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    raise SystemExit(main())
