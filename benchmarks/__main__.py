"""``python -m benchmarks``: the command line of the benchmark runner.

Parses the options into :class:`benchmarks.runner.Settings`, runs
:func:`benchmarks.runner.run`, prints the markdown report and writes it with its JSON
and chart (``--out``, default ``benchmarks/results/``; :mod:`benchmarks.report`). See
:mod:`benchmarks.runner`. Names are checked before anything runs, so that a typo in
``--kernels`` or ``--backends`` does not cost a probe and a row of error cells.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from benchmarks.report import write_report
from benchmarks.runner import BACKENDS, RESULTS_DIR, Settings, default_name, run
from tc import catalogue


def build_parser() -> argparse.ArgumentParser:
    """The options of ``python -m benchmarks``."""
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="tc against torch eager, torch.compile and the roofline bound")
    p.add_argument("--quick", action="store_true",
                   help="each kernel's first test size (small), few runs, tiny tuning")
    p.add_argument("--kernels", default="", help="comma-separated catalogue kernels (all)")
    p.add_argument("--backends", default="",
                   help=f"comma-separated: {', '.join(BACKENDS)} (default: cpu, and cuda "
                   "when a CUDA device is present; opencl only when named)")
    p.add_argument("--runs", type=int, help="timed calls per cell, median (20; quick 5)")
    p.add_argument("--warmup", type=int, help="untimed calls first (3; quick 1)")
    p.add_argument("--budget", type=float, default=10.0,
                   help="seconds of timed calls per cell at most (at least one call)")
    p.add_argument("--generations", type=int, help="tuner generations (5; quick 2)")
    p.add_argument("--pop-size", type=int, help="tuner population (10; quick 4)")
    p.add_argument("--no-tune", action="store_true", help="skip the tuned column")
    p.add_argument("--no-torch-compile", action="store_true", help="skip torch.compile")
    p.add_argument("--no-iree", action="store_true",
                   help="skip the iree column (the definition run by IREE: docs/mlir.md)")
    p.add_argument("--no-cache-latency", action="store_true",
                   help="skip the fresh-process cache latency")
    p.add_argument("--no-roofline", action="store_true",
                   help="skip the peak FLOP/s and bandwidth probe and the per-row bound")
    p.add_argument("--threads", type=int, help="torch.set_num_threads for torch eager, "
                   "torch.compile and the roofline probe (as is)")
    p.add_argument("--cache-file", help="the tuning cache (default: a temporary file)")
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="directory of the report")
    p.add_argument("--name", help="report file name without extension (a timestamp)")
    return p


def _split(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def settings_from_args(args: argparse.Namespace) -> Settings:
    """:class:`Settings` from parsed arguments, with the defaults of ``--quick``."""
    q = args.quick

    def pick(value: int | None, full: int, quick: int) -> int:
        return value if value is not None else quick if q else full

    return Settings(quick=q, kernels=_split(args.kernels), backends=_split(args.backends),
                    runs=pick(args.runs, 20, 5), warmup=pick(args.warmup, 3, 1),
                    budget_s=args.budget, generations=pick(args.generations, 5, 2),
                    pop_size=pick(args.pop_size, 10, 4), tune=not args.no_tune,
                    torch_compile=not args.no_torch_compile,
                    cache_latency=not args.no_cache_latency, cache_file=args.cache_file,
                    torch_threads=args.threads, roofline=not args.no_roofline,
                    iree=not args.no_iree)


def main(argv: Sequence[str] | None = None) -> int:
    """Run, print the markdown report and write it with its JSON and chart."""
    parser = build_parser()
    args = parser.parse_args(argv)
    s = settings_from_args(args)
    for name in s.kernels:
        if name not in catalogue.KERNELS:
            parser.error(f"unknown kernel {name!r}; the catalogue has "
                         f"{', '.join(catalogue.KERNELS)}")
    for backend in s.backends:
        if backend not in BACKENDS:
            parser.error(f"unknown backend {backend!r}; choose among {', '.join(BACKENDS)}")
    report = run(s)
    paths = write_report(report, args.out, args.name or default_name(s.quick))
    print(paths["md"].read_text())
    print("written: " + ", ".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(main())
