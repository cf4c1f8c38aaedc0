"""Worker processes that do not outlive the process that started them.

A worker blocked in ``recv`` notices its parent's end (EOF on the pipe), but a worker
busy in a long case (a runaway isl search, a hanging kernel) would go on for as long
as the case lasts if its parent was killed with SIGKILL, which runs no clean-up. On
Linux, :func:`die_with_parent` asks the kernel to send the worker SIGKILL when its
parent thread exits (``prctl(PR_SET_PDEATHSIG)``); elsewhere it does nothing.

A server that forks the workers (multiprocessing's forkserver) does not end with the
process that started it; :func:`exit_with_parent` makes it, and its workers' death
signal then follows.

Trap: the death signal follows the *thread* that forked the worker. Workers started
from a short-lived thread would die with that thread: start them from a thread that
lives as long as the parent needs them (the fuzzer's and the tuner's do), and pass
the parent's pid so that a parent already gone before the call is seen too.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

__all__ = ["die_with_parent", "exit_with_parent"]

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """Have this process killed when its parent ends (Linux; a no-op elsewhere); exit at
    once if the parent ``parent_pid`` is already gone."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:  # the parent ended before the request was made
        os._exit(1)


def exit_with_parent(period: float = 0.5) -> None:
    """Exit this process (at once, no clean-up) when its parent ends: a daemon thread
    polls the parent pid every ``period`` seconds. For a process that idles in Python
    (a fork server); a process busy in C code holding the GIL is
    :func:`die_with_parent`'s case."""
    import threading
    import time

    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(period)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
