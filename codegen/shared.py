"""The kernel code of a shared-memory promotion (plans from ``polyhedral.promotion``).

At a ``shared.N`` mark every thread of the block takes part in the copies: the box of
each promoted tensor is walked as one linear range, thread ``t`` taking elements
``t, t + threads, ...``, so consecutive threads touch consecutive elements of the
box's last dimension (coalesced for row-major tensors). Elements of the box outside
the tensor are skipped: a box may stick out of the tensor at its edges, and accesses
there are guarded reads that never happen.

    copy in (tensors read below)   ; barrier ; body ; barrier ; copy back (written ones)

The barrier after the body also separates the body's last reads from the next
copy-in when the mark is inside a loop; barrier placement (``codegen.barriers``)
adds the ones the global accesses of the copies need: a copy of statement ``S``'s
accesses is named ``copy:S`` and has all of ``S``'s dependences, thread-crossing or
not, since its threads are not ``S``'s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from codegen import kernel as k
from polyhedral.promotion import Promoted, SharedPlan
from tc.ir import nodes as ir
from tc.ir.types import INDEX_TYPE

_I = INDEX_TYPE


def _c(v: int) -> ir.Expr:
    return ir.IntImm(v, type=_I)


def _b(op: str, a: ir.Expr, b: ir.Expr) -> ir.Expr:
    t = ir.ScalarType.BOOL if op in ir.CMP_OPS or op in ir.LOGIC_OPS else _I
    return ir.Binary(op, a, b, type=t)


def _strides(sizes: Sequence[int]) -> list[int]:
    out, acc = [], 1
    for s in reversed(sizes):
        out.append(acc)
        acc *= s
    return out[::-1]


def shared_buffer(p: Promoted) -> k.Buffer:
    """The block-local buffer of a promoted tensor (its box, row-major)."""
    return k.Buffer(p.buffer, p.dtype, tuple(map(_c, p.sizes)),
                    tuple(map(_c, _strides(p.sizes))), space="shared")


def linear_thread(block: tuple[int, int, int]) -> ir.Expr:
    """The thread's rank in its block (x fastest)."""
    e: ir.Expr = k.hw("thread", "x")
    scale = block[0]
    for axis, n in zip(("y", "z"), block[1:], strict=True):
        if n > 1:
            e = _b("+", e, _b("*", k.hw("thread", axis), _c(scale)))
        scale *= n
    return e


def _copy(p: Promoted, offsets: Sequence[ir.Expr], shape: Sequence[int | ir.Expr],
          global_name: str, block: tuple[int, int, int], into_shared: bool,
          unroll: bool) -> k.Stmt:
    threads = block[0] * block[1] * block[2]
    var = f"{p.buffer}_e"
    e = ir.Var(var, "loop", type=_I)
    locals_: list[k.Stmt] = []
    local_idx, global_idx = [], []
    cond: ir.Expr | None = None
    for j, (size, stride) in enumerate(zip(p.sizes, _strides(p.sizes), strict=True)):
        idx: ir.Expr = e if stride == 1 else _b("/", e, _c(stride))
        if j > 0:
            idx = _b("%", idx, _c(size))
        name = f"{p.buffer}_g{j}"
        locals_.append(k.Local(name, _I, _b("+", offsets[j], idx)))
        g = ir.Var(name, "local", type=_I)
        local_idx.append(_b("-", g, offsets[j]))
        global_idx.append(g)
        # A kernel compiled for every size has its extents as expressions of the sizes.
        extent = shape[j] if isinstance(shape[j], ir.Expr) else _c(shape[j])
        ok = _b("&&", _b(">=", g, _c(0)), _b("<", g, extent))
        cond = ok if cond is None else _b("&&", cond, ok)
    # The copies move the promoted accesses to other threads: they get names of their
    # own, "copy:S", with every dependence of S (codegen.barriers, codegen.compiler).
    origin = "|".join(f"copy:{s}" for s in sorted(p.readers if into_shared else p.writers))
    if into_shared:
        value = ir.Read(global_name, tuple(global_idx), type=p.dtype)
        store = k.Store(p.buffer, tuple(local_idx), value, origin=origin)
    else:
        value = ir.Read(p.buffer, tuple(local_idx), type=p.dtype)
        store = k.Store(global_name, tuple(global_idx), value, origin=origin)
    body = k.Scope(k.seq(*locals_, k.If(cond, store) if cond is not None else store))
    return k.For(var, linear_thread(block), _b("<", e, _c(p.elements)), body, threads,
                 None, unroll)


def shared_region(plan: SharedPlan, offsets: Mapping[str, Sequence[ir.Expr]],
                  body: k.Stmt, shapes: Mapping[str, Sequence[int | ir.Expr]],
                  global_names: Mapping[str, str], block: tuple[int, int, int],
                  unroll: bool) -> k.Stmt:
    """``body`` (the code below the mark) with the copies and barriers around it;
    ``offsets`` are the boxes' first elements as expressions of the loop variables."""
    ins = [_copy(p, offsets[p.tensor], shapes[p.tensor], global_names[p.tensor], block,
                 True, unroll) for p in plan.tensors if p.copy_in]
    outs = [_copy(p, offsets[p.tensor], shapes[p.tensor], global_names[p.tensor], block,
                  False, unroll) for p in plan.tensors if p.copy_out]
    # One scope per direction: barrier placement sees the copies as one piece of
    # thread work (copies to different buffers never wait for each other).
    return k.seq(k.Scope(k.seq(*ins)) if ins else None, k.Barrier() if ins else None, body,
                 k.Barrier(), k.Scope(k.seq(*outs)) if outs else None)
