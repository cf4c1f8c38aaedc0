"""Differential fuzzing of the compiler (issue 12): random well-formed TC programs
(:mod:`tc.fuzz.generate`) run on the reference interpreter, the CPU target, PoCL and
NVRTC (:mod:`tc.fuzz.run`); ``python -m tc.fuzz --minutes N`` is the soak campaign.

Needs the ``dev`` extra (hypothesis draws the programs and shrinks the findings).
"""

from tc.fuzz.generate import Case, InputSpec, cases

__all__ = ["Case", "InputSpec", "cases"]
