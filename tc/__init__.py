"""tc: Tensor Comprehensions in Python.

Write a layer in index notation, ``C(m, n) +=! A(m, k) * B(k, n)``, and run it on
torch tensors::

    import tc
    T = tc.define(TEXT)
    C = T.matmul(A, B)
"""

from tc.api import TC, TcFunction, compile, define, make_naive_options_factory
from tc.errors import (
    TcArgumentError,
    TcArgumentTypeError,
    TcBackendError,
    TcError,
    TcInternalError,
    TcNameError,
    TcOptionsError,
    TcRangeError,
    TcSemanticError,
    TcSyntaxError,
    TcTypeError,
)
from tc.options import MappingOptions

__version__ = "0.1.0"

__all__ = [
    "TC",
    "MappingOptions",
    "TcArgumentError",
    "TcArgumentTypeError",
    "TcBackendError",
    "TcError",
    "TcFunction",
    "TcInternalError",
    "TcNameError",
    "TcOptionsError",
    "TcRangeError",
    "TcSemanticError",
    "TcSyntaxError",
    "TcTypeError",
    "compile",
    "define",
    "make_naive_options_factory",
]
