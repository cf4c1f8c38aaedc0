"""``python -m tc tune FILE --entry NAME --sizes M=64,N=32 --generations G --pop-size P``.

Tunes the mapping options of one definition on random inputs of the given sizes (on
the native CPU target by default, PoCL with ``--backend opencl``, the GPU with
``--backend cuda``) and prints the best options
as JSON (the text ``--options`` and ``MappingOptions.deserialize`` read) on stdout;
the search's log goes to stderr. ``--store`` keeps the result in the compilation
cache, ``--load`` returns the cached options without tuning when there are some.

``python -m tc tune --untimed [--cache FILE]`` tunes instead every untimed entry of the
cache, what a script run with ``tc.define(..., cache=)`` compiled (:mod:`tc.cli_untimed`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING

import torch

from tc.errors import TcError

if TYPE_CHECKING:
    from autotuner.tuner import TunerConfig


def random_inputs(fn, sizes: dict[str, int], device: str, seed: int = 0) -> list[torch.Tensor]:
    """Random contiguous inputs of ``fn`` for ``sizes``
    (:func:`autotuner.untimed.random_tensor`), integers in ``0 .. smallest extent - 1``
    (valid as indices into any dimension)."""
    from autotuner.untimed import random_tensor
    from tc.arguments import TORCH_DTYPES

    gen = torch.Generator().manual_seed(seed)
    shapes = [tuple(s.evaluate(sizes) for s in t.shape) for t in fn.inputs]
    extents = [n for shape in shapes for n in shape] + list(sizes.values())
    high = max(1, min(extents, default=1))
    out = []
    for t, shape in zip(fn.inputs, shapes, strict=True):
        strides, step = [], 1
        for n in reversed(shape):  # row-major, as torch lays out a new tensor
            strides.insert(0, step)
            step *= max(n, 1)
        out.append(random_tensor(TORCH_DTYPES[t.dtype], shape, tuple(strides), high, device,
                                 gen))
    return out


def tuner_config(args: argparse.Namespace) -> TunerConfig:
    """The ``TunerConfig`` of the command line's options."""
    from autotuner.tuner import TunerConfig

    config = (TunerConfig().generations(args.generations).pop_size(args.pop_size)
              .number_elites(min(args.elites, args.pop_size - 1)))
    for name in ("threads", "seed", "run_timeout", "compile_timeout",
                 "tuner_min_launch_total_threads"):
        value = getattr(args, name)
        if value is not None:
            getattr(config, name)(value)
    if args.devices:
        config.devices(args.devices)
    config.executor(args.executor, args.address)
    return config


def cmd_tune(args: argparse.Namespace) -> int:
    from autotuner.tuner import tune
    from tc.cli import _entry, _options, _read, parse_sizes
    from tc.lang.frontend import check_text

    if args.untimed:
        from tc.cli_untimed import cmd_untimed

        return cmd_untimed(args, tuner_config(args))
    if args.file is None or args.sizes is None:
        raise TcError("tune: give a TC FILE and --sizes (e.g. --sizes M=64,N=32), or "
                      "--untimed to tune the untimed entries of the compilation cache")
    lang = _read(args.file)
    checked = check_text(lang)
    entry = _entry(checked, args.entry)
    fn = checked.functions[entry]
    sizes = parse_sizes(args.sizes)
    unknown = sorted(set(sizes) - set(fn.size_names))
    missing = [n for n in fn.size_names if n not in sizes]
    if unknown or missing:
        raise TcError(f"--sizes: give exactly the sizes of {entry} "
                      f"({', '.join(fn.size_names) or 'none'}); "
                      + (f"unknown: {', '.join(unknown)}" if unknown else
                         f"missing: {', '.join(missing)}"))
    config = tuner_config(args)
    from codegen.targets import get_target

    device = get_target(args.backend).device_type
    inputs = random_inputs(fn, sizes, device, args.seed or 0)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    result = tune(lang, entry, *inputs, starting_options=_options(args.options),
                  tuner_config=config, cache_filename=args.cache, load_from_cache=args.load,
                  store_to_cache=args.store, backend=args.backend)
    if result.options is None:
        print(f"{entry}: no valid candidate among {len(result.candidates)}; see the log",
              file=sys.stderr)
        return 1
    how = ("from the cache" if result.from_cache else
           "interrupted, best so far" if result.interrupted else "tuned")
    print(f"# {entry}: median {result.time * 1e3:.4g} ms ({how}): {result.options!r}",
          file=sys.stderr)
    text = result.options.serialize()
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    print(text)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``tune`` on the top-level subparsers."""
    t = sub.add_parser("tune", help="autotune the mapping options of a definition and print "
                       "the best (JSON)")
    t.add_argument("file", metavar="FILE", nargs="?", help="TC text file ('-' for stdin); "
                   "none with --untimed")
    t.add_argument("--entry", help="the definition (needed when the file has several)")
    t.add_argument("--sizes", help="every size of the definition, e.g. "
                   "M=64,K=32,N=48 (the inputs are random; needed without --untimed)")
    t.add_argument("--untimed", action="store_true", help="tune every untimed entry of the "
                   "cache (what a script run with tc.define(..., cache=) compiled) at its "
                   "stored signature and target, several definitions at once, and store "
                   "the results under the same keys")
    t.add_argument("--in-flight", type=int, default=2, dest="in_flight",
                   help="with --untimed: definitions tuned at once (default 2)")
    t.add_argument("--generations", type=int, default=5, help="generations (default 5)")
    t.add_argument("--pop-size", type=int, default=10, dest="pop_size",
                   help="candidates per generation (default 10)")
    t.add_argument("--elites", type=int, default=2, help="best candidates kept (default 2)")
    t.add_argument("--options", help="starting options: a preset name, JSON text or a file "
                   "holding it (default naive)")
    t.add_argument("--threads", type=int, help="compile worker processes")
    t.add_argument("--devices", help="GPU ids to run on with --backend cuda, e.g. 0,1")
    t.add_argument("--seed", type=int, help="seed of the search and of the random inputs")
    t.add_argument("--min-threads", type=int, dest="tuner_min_launch_total_threads",
                   help="reject candidates launching fewer threads (default 64)")
    t.add_argument("--compile-timeout", type=float, dest="compile_timeout",
                   help="seconds per compile (default 120)")
    t.add_argument("--run-timeout", type=float, dest="run_timeout",
                   help="seconds per run (default 60)")
    from codegen.targets import target_names

    t.add_argument("--backend", choices=target_names(), default="cpu",
                   help="cpu: C + OpenMP (default); opencl: the GPU kernels on PoCL; "
                        "cuda: the GPU")
    t.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="where candidates are compiled and timed: local worker processes "
                        "(default) or a Ray cluster (pip install 'tc[ray]')")
    t.add_argument("--address", help="with --executor ray: the cluster ('auto', host:port "
                   "or ray://host:port; default: a local Ray started for this job)")
    t.add_argument("--cache", metavar="FILE", help="the compilation cache file (default: "
                   "the user cache directory's, with --load or --store)")
    t.add_argument("--load", action="store_true", help="return the cached options when the "
                   "cache holds some")
    t.add_argument("--store", action="store_true", help="store the best options (and "
                   "compiled kernel) in the cache")
    t.add_argument("--output", metavar="FILE", help="also write the JSON to FILE")
    t.set_defaults(func=cmd_tune)
