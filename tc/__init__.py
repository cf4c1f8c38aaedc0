"""tc: Tensor Comprehensions in Python.

Write a layer in index notation, ``C(m, n) +=! A(m, k) * B(k, n)``, and run it on
torch tensors::

    import tc
    T = tc.define(TEXT)
    C = T.matmul(A, B)
"""

from tc.api import (
    TC,
    TcFunction,
    compile,
    define,
    make_load_from_cache_options_factory,
    make_naive_options_factory,
)
from tc.autograd import make_autograd
from tc.errors import (
    TcArgumentError,
    TcArgumentTypeError,
    TcBackendError,
    TcError,
    TcGradientError,
    TcInternalError,
    TcNameError,
    TcOptionsError,
    TcRangeError,
    TcSemanticError,
    TcSyntaxError,
    TcTypeError,
    TcWarning,
)
from tc.mlir import TcExportError, to_mlir
from tc.options import MappingOptions
from tc.torch_ops import register_op

__version__ = "0.1.0"

# The autotuner (autotuner.tuner) imports tc's modules, so it is loaded on first use:
# importing it here would leave it half-initialised when autotuner is imported first.
_AUTOTUNER = ("TunerConfig", "autotune", "make_autotuned_options_factory")


def __getattr__(name: str):
    if name in _AUTOTUNER:
        from autotuner import tuner

        return getattr(tuner, name)
    raise AttributeError(f"module 'tc' has no attribute {name!r}")


__all__ = [
    "TC",
    "MappingOptions",
    "TcArgumentError",
    "TcArgumentTypeError",
    "TcBackendError",
    "TcError",
    "TcExportError",
    "TcFunction",
    "TcGradientError",
    "TcInternalError",
    "TcNameError",
    "TcOptionsError",
    "TcRangeError",
    "TcSemanticError",
    "TcSyntaxError",
    "TcTypeError",
    "TcWarning",
    "TunerConfig",
    "autotune",
    "compile",
    "define",
    "make_autograd",
    "make_autotuned_options_factory",
    "make_load_from_cache_options_factory",
    "make_naive_options_factory",
    "register_op",
    "to_mlir",
]
