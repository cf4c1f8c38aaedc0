"""TC definitions as MLIR (``linalg`` on tensors), and running them with IREE.

:func:`to_mlir` exports one entry point (:mod:`tc.mlir.export`); :mod:`tc.mlir.run`
compiles and runs an export with IREE (the optional extra ``pip install .[mlir]``).
See ``docs/mlir.md``.
"""

from tc.mlir.api import to_mlir
from tc.mlir.body import TcExportError

__all__ = ["TcExportError", "to_mlir"]
