"""The kernel code of CPU packing (plans from :mod:`polyhedral.packing`).

At a ``pack.N`` mark, each packed tensor's box gets a per-thread array declared right
there (inside the OpenMP parallel loop's body, so each thread has its own: the
safety model of :mod:`codegen.targets.c`), filled by plain nested loops before the
body runs; below the mark the tensor's reads go to the array::

    {
      float pk0_B[32 * 32];
      for (i0 ...) for (i1 ...) pk0_B[i1 * 32 + i0] = B[(o0 + i0) * K + o1 + i1];
      ... body, reading pk0_B[(k - o0) + (n - o1) * 32] ...
    }

Layout: the dimension that the body's vector loops walk is made the contiguous one
(GEMM packing's transposition: ``B(n, k)`` read along ``n`` becomes a unit-stride
read); without a vector loop the box keeps the tensor's row-major order. The copy
loops run the array's dimensions in its own order, so the stores are consecutive.

Bounds: a box is clipped to the tensor (the copy loops' bounds), so nothing outside
the tensor is read; elements of the array left unwritten are outside the footprint
of the reads below the mark, which are unconditional and in bounds.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

from codegen import kernel as k
from codegen.shared import _b, _c
from polyhedral.promotion import Promoted, SharedPlan
from tc.ir import nodes as ir
from tc.ir.types import INDEX_TYPE


def contiguous_dim(body: k.Stmt, buffer: str, rank: int) -> int:
    """The dimension of ``buffer`` that the vector loops of ``body`` walk most (the
    one to make contiguous); the last one when no vector loop reads it."""
    votes: Counter[int] = Counter()

    def walk(s: k.Stmt, lanes: frozenset[str]) -> None:
        if isinstance(s, k.For) and s.vector is not None:
            lanes = lanes | {s.var}
        if lanes:
            for e in k.own_exprs(s):
                for r in ir.walk(e):
                    if isinstance(r, ir.Read) and r.tensor == buffer:
                        for j, idx in enumerate(r.indices):
                            if any(isinstance(v, ir.Var) and v.name in lanes
                                   for v in ir.walk(idx)):
                                votes[j] += 1
        for c in k.children(s):
            walk(c, lanes)

    walk(body, frozenset())
    if not votes:
        return rank - 1
    best = max(votes.values())
    return max(j for j, v in votes.items() if v == best)


def packed_buffer(p: Promoted, inner: int) -> k.Buffer:
    """The per-thread array of ``p``'s box with dimension ``inner`` contiguous (the
    others row-major around it)."""
    order = [j for j in range(len(p.sizes)) if j != inner] + [inner]  # slowest first
    strides = [0] * len(p.sizes)
    acc = 1
    for j in reversed(order):
        strides[j] = acc
        acc *= p.sizes[j]
    return k.Buffer(p.buffer, p.dtype, tuple(map(_c, p.sizes)), tuple(map(_c, strides)),
                    space="register")


def _copy(p: Promoted, buf: k.Buffer, inner: int, offsets: Sequence[ir.Expr],
          shape: Sequence[ir.Expr], global_name: str) -> k.Stmt:
    """Nested loops filling ``buf`` from the global tensor, clipped to the tensor."""
    n = len(p.sizes)
    order = [j for j in range(n) if j != inner] + [inner]
    names = [f"{p.buffer}_i{j}" for j in range(n)]
    var = [ir.Var(x, "loop", type=INDEX_TYPE) for x in names]
    origin = "|".join(f"copy:{s}" for s in sorted(p.readers))
    value = ir.Read(global_name, tuple(_b("+", offsets[j], var[j]) for j in range(n)),
                    type=p.dtype)
    stmt: k.Stmt = k.Store(p.buffer, tuple(var), value, origin=origin)
    shape = [e if isinstance(e, ir.Expr) else _c(int(e)) for e in shape]
    for j in reversed(order):
        # i in [max(0, -o), min(size, extent - o)): the box's elements in the tensor.
        lo = _b("max", _c(0), _b("-", _c(0), offsets[j]))
        hi = _b("min", _c(p.sizes[j]), _b("-", shape[j], offsets[j]))
        stmt = k.For(names[j], lo, _b("<", var[j], hi), stmt, 1)
    return stmt


def packed_region(plan: SharedPlan, offsets: Mapping[str, Sequence[ir.Expr]], body: k.Stmt,
                  shapes: Mapping[str, Sequence[ir.Expr]], global_names: Mapping[str, str],
                  known: Mapping[str, k.Buffer] | None = None
                  ) -> tuple[k.Stmt, tuple[k.Buffer, ...]]:
    """``body`` (the code below the mark) in a scope that declares and fills the packed
    arrays first; also the arrays' buffers (for the kernel's buffer list). ``known``:
    the arrays of an earlier copy of the same region (isl emits one for full tiles
    and one for the rest), whose layout this one keeps: one name, one layout."""
    decls: list[k.Stmt] = []
    copies: list[k.Stmt] = []
    buffers: list[k.Buffer] = []
    for p in plan.tensors:
        if known and p.buffer in known:
            buf = known[p.buffer]
            inner = [s.value for s in buf.strides].index(1)
        else:
            inner = contiguous_dim(body, p.buffer, len(p.sizes))
            buf = packed_buffer(p, inner)
        buffers.append(buf)
        decls.append(k.Local(p.buffer, p.dtype, size=p.elements))
        copies.append(_copy(p, buf, inner, offsets[p.tensor], shapes[p.tensor],
                            global_names[p.tensor]))
    return k.Scope(k.seq(*decls, *copies, body)), tuple(buffers)
