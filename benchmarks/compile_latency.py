"""Compile latency of every suite kernel, stage by stage (a benchmark, not a test).

    python -m benchmarks.compile_latency [--runs 5] [--no-nvrtc] [KERNEL ...]

For each kernel of tc.catalogue at its first benchmark size: the median time of
parse, sema (checks, range inference, IR), scop, dependences, schedule (isl + tiling),
map (kernels, blocks, threads, isl AST), lower (kernel AST), print (CUDA + OpenCL)
and NVRTC (sm_80), with the naive options. The aim: text to CUDA source under
100 ms per kernel, NVRTC excluded.
"""

from __future__ import annotations

import argparse
import statistics
import time

from codegen.compiler import PIPELINE, compile_program, contiguous_strides
from codegen.nvrtc import clear_compile_cache, compile_cuda
from tc import catalogue
from tc.ir.verify import verify
from tc.lang.parser import parse
from tc.lang.sema import check_program
from tc.options import MappingOptions

STAGES = ("parse", "sema", *PIPELINE, "print")


def measure(kernel: catalogue.Kernel, runs: int, nvrtc: bool) -> dict[str, float]:
    """Median seconds per stage for one kernel."""
    sizes = kernel.bench_sizes[0]
    samples: dict[str, list[float]] = {s: [] for s in (*STAGES, "nvrtc")}
    for _ in range(runs):
        t0 = time.perf_counter()
        program = parse(kernel.tc)
        t1 = time.perf_counter()
        fn = check_program(program)[kernel.entry]
        verify(fn)
        t2 = time.perf_counter()
        samples["parse"].append(t1 - t0)
        samples["sema"].append(t2 - t1)
        strides = [contiguous_strides([s.evaluate(sizes) for s in t.shape]) for t in fn.inputs]
        compiled = compile_program(fn, MappingOptions("naive"), sizes, strides)
        for stage, seconds in compiled.timings.items():
            samples[stage].append(seconds)
        # Kernels are printed for a target on demand: time printing them as CUDA C.
        t_print = time.perf_counter()
        for ck in compiled.kernels:
            ck.source("cuda")
        samples["print"].append(time.perf_counter() - t_print)
        if nvrtc:
            clear_compile_cache()
            t3 = time.perf_counter()
            for ck in compiled.kernels:
                compile_cuda(ck.cuda_source, ck.name, "sm_80")
            samples["nvrtc"].append(time.perf_counter() - t3)
    return {k: statistics.median(v) for k, v in samples.items() if v}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("kernels", nargs="*", help="kernel names (default: the whole catalogue)")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--no-nvrtc", action="store_true")
    args = p.parse_args(argv)
    names = args.kernels or list(catalogue.KERNELS)
    cols = (*STAGES, "total", "nvrtc")
    print("| kernel | " + " | ".join(cols) + " |  (milliseconds, median of "
          f"{args.runs} runs)")
    print("|---" * (len(cols) + 1) + "|")
    for name in names:
        m = measure(catalogue.get(name), args.runs, not args.no_nvrtc)
        m["total"] = sum(m[s] for s in STAGES)
        row = " | ".join(f"{m[c] * 1000:.1f}" if c in m else "-" for c in cols)
        flag = "" if m["total"] < 0.1 else " (over 100 ms)"
        print(f"| {name} | {row} |{flag}")


if __name__ == "__main__":
    main()
