"""``python -m tc tune --untimed [--cache FILE] [--in-flight N] [--executor ray ...]``.

Tunes every untimed entry of the compilation cache, which is what a script run with
``tc.define(..., cache=)`` compiled: each (definition, input signature, target) at
the signature stored, several definitions at once, the results stored under the same
keys, so the script's next run loads the tuned kernels (:mod:`autotuner.untimed`).
Prints one line per key: entry point, signature, target, status (``tuned``,
``interrupted``, ``failed``, ``not run`` or ``skipped``), best median time, and the
reason of a status other than ``tuned``. Exit status 0 when every key was tuned
(skipped ones are listed but do not count), 1 otherwise.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING

from tc.errors import TcError

if TYPE_CHECKING:
    from autotuner.tuner import TunerConfig
    from autotuner.untimed import KeyResult

__all__ = ["cmd_untimed", "result_table"]


def result_table(results: list[KeyResult]) -> list[str]:
    """One aligned line per result (with a header line)."""
    from tc.cli_cache import DIGEST_WIDTH, _seconds, aligned

    rows = [(r.key.digest[:DIGEST_WIDTH], r.key.entry, r.key.signature, r.key.backend,
             r.status, "-" if r.time is None else _seconds(r.time), r.reason)
            for r in results]
    return aligned(("KEY", "ENTRY", "SIGNATURE", "BACKEND", "STATUS", "BEST", ""), rows)


def cmd_untimed(args: argparse.Namespace, config: TunerConfig) -> int:
    """``tune --untimed`` with the tuner configuration of the other options."""
    from autotuner.cache import CompilationCache
    from autotuner.untimed import skipped_keys, tune_untimed, untimed_keys

    given = [name for name, value in (("FILE", args.file), ("--entry", args.entry),
                                      ("--sizes", args.sizes), ("--options", args.options),
                                      ("--load", args.load), ("--output", args.output))
             if value]
    if given:
        raise TcError(f"--untimed tunes the untimed entries of the cache (--cache FILE) at "
                      f"the signatures they were stored with: give no {', '.join(given)}")
    if args.in_flight < 1:
        raise TcError(f"--in-flight: give the number of definitions tuned at once (>= 1), "
                      f"not {args.in_flight}")
    cache = CompilationCache(args.cache)
    if not cache.usable:
        raise TcError(f"cannot tune the entries of {str(cache.path)!r}: {cache.problem}")
    if not untimed_keys(cache) and not skipped_keys(cache):
        n = len(cache.keys())
        print(f"no untimed entries in {cache.path}: " + (
            f"all {n} keys are tuned" if n else "it is empty (run the script with "
            "tc.define(..., cache=FILE) first)"))
        return 0
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    from tqdm.contrib.logging import logging_redirect_tqdm

    with logging_redirect_tqdm():  # log lines above the progress bars, not through them
        results = tune_untimed(cache, config, max_in_flight=args.in_flight, seed=args.seed)
    for line in result_table(results):
        print(line)
    tuned = sum(r.status == "tuned" for r in results)
    skipped = sum(r.status == "skipped" for r in results)
    print(f"# {tuned} tuned, {skipped} skipped, {len(results) - tuned - skipped} not "
          f"tuned, in {cache.path}", file=sys.stderr)
    return 0 if all(r.ok for r in results) else 1
