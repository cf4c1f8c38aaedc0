"""Long float sums split in two stages (rfactor): a partial sum per chunk, then the sum
of the partials.

However a schedule orders a reduction, its accumulator gets one addition per
iteration of the reduction (or per tile of it, when tiling puts the reduction's tile
loop outside the others and the sum goes through memory). In float32 the error grows
with that count: ``y +=! x(i)`` over 2**25 ones gives 2**24, a row mean of 4M values
near 100 gives 97.9. Splitting the longest reduction index ``i`` of a long ``+``
reduction into ``i = lo + C*j + t``::

    y(r) +=! x(r, i)         becomes    y_part(r, j) +=! lo + C*j + t < hi ? x(r, lo + C*j + t) : 0
                                        y(r) +=! y_part(r, j)

bounds every sum by :data:`CHUNK` terms (and the sum of the partials by
``ceil(n / CHUNK)``, split again when that is still long), on every target and under
every option, since each stage is an ordinary reduction. The first stage is also
parallel along ``j``: a full reduction no longer has to run on one thread.

When: a ``+`` reduction into a float tensor whose longest reduction index spans more
than :data:`CHUNK` values at the call's sizes. A kernel compiled for every shape (the
CPU target) depends on that choice: :func:`sum_splits` is part of what such a
program's reuse is keyed by (:func:`codegen.executor.memo_key`). Reductions over
several indices are split along the longest one only: their other indices still add
up (a 2-index reduction of 4096 x 4096 terms keeps 4096 x 4096 / CHUNK per partial).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from tc.ir import nodes as ir
from tc.ir.sym import Sym, smax
from tc.ir.types import ScalarType
from tc.ir.wide_accumulators import widen_accumulators

INT32 = ScalarType.INT32

__all__ = ["CHUNK", "MAX_LEVELS", "split_sums", "sum_splits"]

#: Terms per partial sum.
CHUNK = 4096
#: Splits of one reduction at most (CHUNK ** (MAX_LEVELS + 1) terms stay bounded).
MAX_LEVELS = 2
_FLOATS = (ScalarType.FLOAT16, ScalarType.BFLOAT16, ScalarType.FLOAT32, ScalarType.FLOAT64)

#: Per stage: (position of the split index among the stage's reduction indices, number
#: of splits); (-1, 0) for a stage left alone.
Splits = tuple[tuple[int, int], ...]


def _candidates(fn: ir.Function) -> tuple[int, ...]:
    """The stages of ``fn`` that may be split (float ``+`` reductions), cached on ``fn``:
    :func:`sum_splits` runs on every call of a kernel compiled for every shape."""
    found = fn.__dict__.get("_sum_candidates")
    if found is None:
        found = tuple(k for k, st in enumerate(fn.stages) if st.op == "+"
                      and st.reduction_dims and fn.tensor(st.tensor).dtype in _FLOATS)
        object.__setattr__(fn, "_sum_candidates", found)  # dropped by pickling (ir.Function)
    return found


def sum_splits(fn: ir.Function, sizes: Mapping[str, int]) -> Splits:
    """Which reductions of ``fn`` to split at ``sizes``, and how many times (positions
    among the stages of ``fn`` with its accumulators widened: what the kernels run)."""
    fn = widen_accumulators(fn)
    candidates = _candidates(fn)
    out = [(-1, 0)] * len(fn.stages)
    for k in candidates:
        st = fn.stages[k]
        spans = [max(0, d.hi.evaluate(sizes) - d.lo.evaluate(sizes)) for d in st.reduction_dims]
        longest = max(range(len(spans)), key=lambda i: (spans[i], i))
        n, levels = spans[longest], 0
        while n > CHUNK and levels < MAX_LEVELS:
            n, levels = -(-n // CHUNK), levels + 1
        if levels:
            out[k] = (longest, levels)
    return tuple(out)


def _sym_expr(s: Sym) -> ir.Expr:
    """A size expression as an index expression of the IR (size variables)."""
    out: ir.Expr | None = ir.IntImm(s.const, type=INT32) if s.const or not s.terms else None
    for atom, coeff in s.terms:
        if atom.kind == "sym":
            term: ir.Expr = ir.Var(atom.name, "size", type=INT32)
        elif atom.kind == "div":
            term = ir.Binary("/", _sym_expr(atom.args[0]),
                             ir.IntImm(atom.divisor, type=INT32), type=INT32)
        else:
            term = _sym_expr(atom.args[0])
            for a in atom.args[1:]:
                term = ir.Binary(atom.kind, term, _sym_expr(a), type=INT32)
        if coeff != 1:
            term = ir.Binary("*", ir.IntImm(coeff, type=INT32), term, type=INT32)
        out = term if out is None else ir.Binary("+", out, term, type=INT32)
    return out if out is not None else ir.IntImm(0, type=INT32)


class _Substitute(ir.Mutator):
    def __init__(self, name: str, value: ir.Expr) -> None:
        self.name, self.value = name, value

    def mutate_Var(self, e: ir.Var) -> ir.Expr:
        return self.value if e.kind == "index" and e.name == self.name else e


def _zero(t: ScalarType) -> ir.Expr:
    return ir.FloatImm(0.0, type=t) if t.is_float else ir.IntImm(0, type=t)


def _guarded(e: ir.Expr, inside: ir.Expr, zero: ir.Expr) -> ir.Expr:
    """``inside ? e : zero``, with the ``where`` bindings of ``e`` kept on top (where
    lowering looks for them) and each bound value guarded too: the last chunk's
    padding iterations must read nothing."""
    if isinstance(e, ir.Let):
        value = ir.Select(inside, e.value, _zero(e.value.type), type=e.value.type)
        body = _guarded(e.body, inside, zero)
        return ir.Let(e.name, value, body, type=body.type, span=e.span)
    return ir.Select(inside, e, zero, type=e.type)


def _split_stage(fn: ir.Function, st: ir.Stage, which: int, taken: set[str]
                 ) -> tuple[ir.TensorDecl, ir.Stage, ir.Stage]:
    """The partial-sum temporary and the two stages replacing ``st`` (split along its
    reduction index number ``which``)."""
    d = st.reduction_dims[which]
    out = fn.tensor(st.tensor)
    j, t = ir.fresh_name(f"{d.name}_chunk", taken), ir.fresh_name(f"{d.name}_in", taken)
    count = smax([0, (d.hi - d.lo).ceildiv(CHUNK)])  # an empty range: no chunk
    temp = ir.TensorDecl(ir.fresh_name(f"{st.tensor}_part", taken), out.dtype,
                         (*out.shape, count), "temp", st.span)
    jv, tv = ir.Var(j, "index", type=INT32), ir.Var(t, "index", type=INT32)
    i = ir.Binary("+", _sym_expr(d.lo), ir.Binary(
        "+", ir.Binary("*", ir.IntImm(CHUNK, type=INT32), jv, type=INT32), tv, type=INT32),
        type=INT32)
    inside = ir.Binary("<", i, _sym_expr(d.hi), type=ScalarType.BOOL)
    zero = ir.FloatImm(0.0, type=st.rhs.type)
    rhs = _guarded(_Substitute(d.name, i).mutate(st.rhs), inside, zero)
    others = tuple(x for x in st.reduction_dims if x.name != d.name)
    first = ir.Stage(temp.name, (*st.lhs, j),
                     (*st.lhs_dims, ir.Dim(j, Sym.of(0), count), *others,
                      ir.Dim(t, Sym.of(0), Sym.of(CHUNK))),
                     rhs, "+", True, st.span)
    read = ir.Read(temp.name, tuple(ir.Var(n, "index", type=INT32) for n in (*st.lhs, j)),
                   type=st.rhs.type)
    second = ir.Stage(st.tensor, st.lhs, (*st.lhs_dims, ir.Dim(j, Sym.of(0), count)), read,
                      "+", st.init, st.span)
    return temp, first, second


def split_sums(fn: ir.Function, splits: Sequence[tuple[int, int]]) -> ir.Function:
    """``fn`` (its half-precision accumulators widened: :mod:`tc.ir.wide_accumulators`)
    with the reductions ``splits`` names (:func:`sum_splits`) split; ``fn`` itself when
    there is nothing to change."""
    fn = widen_accumulators(fn)
    if all(levels == 0 for _, levels in splits):
        return fn
    taken = ir.names_in_use(fn)
    temps = list(fn.temps)
    stages: list[ir.Stage] = []
    for st, (which, levels) in zip(fn.stages, splits, strict=True):
        for _ in range(levels):
            temp, first, st = _split_stage(fn if not temps else dataclasses.replace(
                fn, temps=tuple(temps)), st, which, taken)
            temps.append(temp)
            stages.append(first)
            which = 0  # the second stage reduces over the chunk index alone
        stages.append(st)
    return dataclasses.replace(fn, temps=tuple(temps), stages=tuple(stages))
