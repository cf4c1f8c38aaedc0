"""``python -m tc cache list | show KEY | clear | export FILE | import FILE``.

Every subcommand takes ``--cache FILE`` (default: the default cache,
``$TC_CACHE_DIR/tc-cache.sqlite`` or the user cache directory's).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from autotuner.cache import CompilationCache

DIGEST_WIDTH = 12


def _open(args: argparse.Namespace) -> CompilationCache:
    from autotuner.cache import CompilationCache

    return CompilationCache(args.cache)


def _seconds(t: float) -> str:
    """A duration with a readable unit ("untimed" for a kernel stored as compiled)."""
    from autotuner.cache import UNTIMED

    if t >= UNTIMED:  # an entry stored as compiled (its median is UNTIMED, or inf)
        return "untimed"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if t >= scale:
            return f"{t / scale:.3g} {unit}"
    return f"{t / 1e-9:.3g} ns"


def cmd_list(args: argparse.Namespace) -> int:
    cache = _open(args)
    from autotuner.cache import UNTIMED

    # TUNED: whether the key has a timed entry (its best median is a measured time).
    rows = [(k.digest[:DIGEST_WIDTH], k.entry, k.signature, k.backend, _seconds(m),
             "yes" if m < UNTIMED else "no", str(n)) for k, m, n in cache.summary()]
    if not rows:
        print(f"no entries in {cache.path}")
        return 0
    head = ("KEY", "ENTRY", "SIGNATURE", "BACKEND", "BEST", "TUNED", "OPTIONS")
    print("\n".join(aligned(head, rows)))
    return 0


def aligned(head: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    """``head`` and ``rows`` as lines of left-aligned columns, two spaces apart."""
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
            for r in [head, *rows]]


def cmd_show(args: argparse.Namespace) -> int:
    key, entries = _open(args).show(args.key)
    print(f"key        {key.digest}\nentry      {key.entry}\nsignature  {key.signature}\n"
          f"backend    {key.backend}\ndevice     {key.device}\nversions   {key.versions}\n"
          f"definition (canonical):\n{key.canonical}")
    for rank, e in enumerate(entries, 1):
        times = ", ".join(_seconds(t) for t in e.times)
        artefact = f"{len(e.artifact)} bytes" if e.artifact is not None else "none"
        print(f"\n#{rank}: median {_seconds(e.median)} (times: {times}); compiled artefact: "
              f"{artefact}\n{e.options!r}\n{e.options.serialize()}")
    return 0


def cmd_clear(args: argparse.Namespace) -> int:
    cache = _open(args)
    n = sum(count for _, _, count in cache.summary())
    cache.clear()
    print(f"removed {n} entries from {cache.path}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    cache = _open(args)
    n = cache.export(args.file)
    print(f"exported {n} entries from {cache.path} to {args.file}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    cache = _open(args)
    n = cache.import_(args.file)
    print(f"imported {n} entries from {args.file} into {cache.path}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``cache`` and its subcommands on the top-level subparsers."""
    p = sub.add_parser("cache", help="list, show, clear, export or import the compilation "
                       "cache")
    p.add_argument("--cache", metavar="FILE", default=None,
                   help="the cache file (default: the user cache directory's, or "
                   "$TC_CACHE_DIR)")
    # Also accepted after the subcommand; SUPPRESS keeps the value given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--cache", metavar="FILE", default=argparse.SUPPRESS,
                        help="the cache file")
    cs = p.add_subparsers(dest="cache_command", required=True)
    cs.add_parser("list", parents=[common], help="one line per key: digest prefix, "
                  "entry, signature, backend, best median time, whether it is tuned, "
                  "number of options").set_defaults(func=cmd_list)
    s = cs.add_parser("show", parents=[common], help="a key's options and measured times")
    s.add_argument("key", metavar="KEY", help="the key's digest or a unique prefix of it")
    s.set_defaults(func=cmd_show)
    cs.add_parser("clear", parents=[common], help="remove every entry"
                  ).set_defaults(func=cmd_clear)
    e = cs.add_parser("export", parents=[common], help="copy the entries into another "
                      "cache file (created or merged into)")
    e.add_argument("file", metavar="FILE")
    e.set_defaults(func=cmd_export)
    i = cs.add_parser("import", parents=[common], help="copy the entries of another cache "
                      "file into this one")
    i.add_argument("file", metavar="FILE")
    i.set_defaults(func=cmd_import)
