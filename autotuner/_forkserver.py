"""Imported by the local executor's forkserver, and only there (its preload list in
:mod:`autotuner.local`): the server exits when the tuner that started it ends, even
by SIGKILL, and its workers then die with it (:func:`tc.processes.die_with_parent`).
Without this, a worker hanging in a candidate outlives a killed tuner."""

from tc.processes import exit_with_parent

exit_with_parent()
