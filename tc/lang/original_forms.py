"""Statements the original Tensor Comprehensions accepted with a warning, and tc too
(docs/language.md sections 2 and 5): valid, but probably not what was meant.

* **A reduction without ``!`` into a tensor no earlier statement wrote**
  (``C(m, n) += A(m, k) * B(k, n)``). It accumulates into what the tensor holds at the
  start: the caller's ``outputs=`` tensor when given (the original's in-place use,
  A·B + C), zeros when the runtime allocates the tensor (the original read
  uninitialised memory). Zeros for every operator, as the language says, so ``*=``
  into a fresh tensor gives zeros and ``max=`` clamps at 0 from below.
* **An empty range** (``where i in 8:4``, or a range inferred empty for literal
  sizes). The statement does nothing, as in the original: it writes no element (a
  ``!`` reduction whose reduction range alone is empty still sets its left-hand side
  to the identity, as the same statement does when sizes make that range empty at
  call time). Its sizes are not compared with the other statements' (when it writes
  a tensor first, the next statement that is not empty gives them), and a written
  tensor whose extent would be negative gets extent 0.

Ranges that are empty only for some sizes are not warned about: at call time they
also do nothing (:func:`tc.arguments.check_ranges`).
"""

from __future__ import annotations

from collections.abc import Sequence

from tc.errors import TcWarning
from tc.ir import nodes as ir
from tc.ir.span import Span
from tc.ir.sym import Sym
from tc.lang import ast


def unwritten_reduction(st: ast.Statement, temporary: bool, source: str) -> TcWarning:
    """The warning for a reduction without ``!`` into a tensor no earlier statement
    wrote (``temporary``: a tensor that is neither a parameter nor a result)."""
    name = st.tensor.name
    start = ("zeros (a temporary is allocated by the runtime)" if temporary else
             "the contents of the tensor passed as outputs=, or zeros when the runtime "
             "allocates it")
    return TcWarning(
        f"reduction '{st.op}' into '{name}', which no earlier statement wrote: it "
        f"accumulates into {start}; '{st.op}!' (which starts from the identity) may have "
        "been meant", line=st.op_span.line, column=st.op_span.column, source=source)


def empty_dims(domain: Sequence[ir.Dim]) -> list[ir.Dim]:
    """The dimensions of a statement's domain that are empty for every size."""
    out = []
    for d in domain:
        extent = d.hi - d.lo
        if extent.is_const and extent.const <= 0:
            out.append(d)
    return out


def empty_range(st: ast.Statement, d: ir.Dim, span: Span, source: str) -> TcWarning:
    """The warning for a statement whose index ``d`` (first named at ``span``) has an
    empty range; at its ``where`` range when it has one (the user's to fix)."""
    for c in st.clauses:
        if isinstance(c, ast.RangeClause) and c.index.name == d.name:
            span = c.span
    return TcWarning(
        f"index '{d.name}' ranges over {d.lo}:{d.hi}, which is empty: the statement "
        f"writing '{st.tensor.name}' does nothing; check the range", line=span.line,
        column=span.column, source=source)


def extent(hi: Sym) -> Sym:
    """The extent a written tensor gets from the upper bound of its left-hand index: 0
    rather than a negative literal (the index's range is then empty)."""
    return Sym.of(0) if hi.is_const and hi.const < 0 else hi
