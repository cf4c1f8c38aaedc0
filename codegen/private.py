"""Register promotion (``usePrivateMemory``): to be implemented."""

from __future__ import annotations

from codegen import kernel as k


def promote_private(body: k.Stmt) -> k.Stmt:
    """``body`` with elements that only one thread touches across a loop kept in
    registers (not yet implemented: returns ``body``)."""
    return body
