"""isl computations that may not end, run in a forked child with a deadline.

isl's scheduler has inputs on which it searches for minutes or more (fuzz finding
21fcbbd5b946: clustering that maximises coincidence, on a five-statement program),
and neither isl's operation quota nor its abort flag is checked in those loops; a
thread cannot be stopped either. So a try that may run away runs in a child process
(``os.fork``: the isl objects are already in its memory, nothing is pickled), which
prints its result as text on a pipe; past the deadline the child is killed and the
try counts as failed, like an infeasible one.

Safety: the child only runs the given isl computation and ``os._exit`` s without
running Python's exit handlers, atexit hooks or OpenMP/PoCL teardown; the parent
never shares a file descriptor with it but the pipe. Where ``fork`` does not exist the
computation runs in the process, unbounded, as before.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

#: Seconds a bounded try may take (the catalogue's tries take well under one).
DEADLINE = 10.0


class TimedOut(Exception):
    """The computation did not finish before the deadline (its child was killed)."""


def bounded_text(compute: Callable[[], str | None], seconds: float = DEADLINE) -> str | None:
    """``compute()`` (a text, or None on failure) computed in a forked child within
    ``seconds``; raises :class:`TimedOut` past the deadline."""
    if not hasattr(os, "fork"):
        return compute()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: compute, write, leave without any clean-up of the parent's
        status = 1
        try:
            os.close(read)
            text = compute()
            data = b"\x00" if text is None else b"\x01" + text.encode()
            with os.fdopen(write, "wb") as out:
                out.write(data)
            status = 0
        finally:
            os._exit(status)
    os.close(write)
    chunks: list[bytes] = []
    end = time.monotonic() + seconds
    try:
        while True:
            left = end - time.monotonic()
            if left <= 0 or not select.select([read], [], [], left)[0]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                raise TimedOut(f"no result after {seconds:g} s")
            chunk = os.read(read, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read)
        os.waitpid(pid, 0)
    data = b"".join(chunks)
    if not data or data[:1] == b"\x00":
        return None
    return data[1:].decode()
