"""Automatic differentiation of TC definitions: the backward as TC text."""

from tc.grad.backward import Backward, derive

__all__ = ["Backward", "derive"]
