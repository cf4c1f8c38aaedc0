"""Shared by the tests that kill a parent process with SIGKILL and check that the
worker it started does not outlive it (tc.processes)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time


def assert_worker_dies_with_parent(script: str, what: str, settle: float = 3.0,
                                   wait: float = 15.0) -> None:
    """Run ``script`` (Python; it prints its worker's pid on its first line, then keeps
    the worker busy), kill it with SIGKILL after ``settle`` seconds and check that the
    worker is gone within ``wait`` seconds (else it is killed here and the test fails)."""
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                              text=True)
    try:
        worker = int(parent.stdout.readline())
        time.sleep(settle)  # the worker is set up and busy
        os.kill(worker, 0)  # alive
        parent.kill()
        parent.wait(10)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.kill(worker, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
        os.kill(worker, signal.SIGKILL)
        raise AssertionError(f"{what} outlived its parent")
    finally:
        parent.kill()
