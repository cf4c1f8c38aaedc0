"""``python -m tc.fuzz --minutes 30``: the soak campaign (``make soak``).

Prints how many programs were tried, the runs per target and the findings; each
finding is written as a JSON repro under ``--out`` (replayed by
``tests/fuzz/test_findings.py`` once moved into ``tests/fuzz/findings/``).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from tqdm import tqdm

from tc.fuzz.campaign import Campaign


def main(argv: list[str] | None = None) -> int:
    """Run a campaign; exit status 1 when something was found."""
    p = argparse.ArgumentParser(prog="python -m tc.fuzz", description=__doc__)
    p.add_argument("--minutes", type=float, default=30.0, help="how long to run (default 30)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first round")
    p.add_argument("--out", default="fuzz-findings", help="where findings are written")
    p.add_argument("--examples", type=int, default=50, help="examples per hypothesis round")
    p.add_argument("--known", default="tests/fuzz/findings",
                   help="stored findings not to report again (default tests/fuzz/findings)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per case")
    p.add_argument("--targets", default=None,
                   help="comma-separated compiled targets (default: all available)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    targets = tuple(args.targets.split(",")) if args.targets else None
    known = args.known if Path(args.known).is_dir() else None
    campaign = Campaign(args.out, args.timeout, targets, known_dir=known)
    for sig in (signal.SIGINT, signal.SIGTERM):  # stop after the case under way, and report
        signal.signal(sig, lambda *_: campaign.stop())
    print(f"targets: reference, {', '.join(campaign.targets)}; {args.minutes:g} minutes")
    with tqdm(unit=" programs", file=sys.stderr) as bar:
        stats = campaign.run(args.minutes * 60, args.seed, args.examples, bar)
    print(stats.summary())
    if stats.findings:
        print(f"findings written to {args.out}/")
    return 1 if stats.findings else 0


if __name__ == "__main__":
    sys.exit(main())
