"""Which reads can go out of bounds, and checking the others for concrete sizes.

A read that is evaluated unconditionally and whose subscripts are affine is checked
once per call, on the host, from the concrete sizes (its extreme values over the box
domain). Every other read (under a ``?:`` branch or the right operand of ``&&`` /
``||``, or with a non-affine subscript such as an indirect ``T(idx(i))``) is checked
where it happens: by the interpreter, or by a guard in the generated kernel.
"""

from __future__ import annotations

from collections.abc import Mapping

from tc.errors import TcRangeError
from tc.ir import nodes as ir
from tc.ir.affine import bounds, linearize
from tc.ir.sym import Sym


def guarded_reads(e: ir.Expr, guarded: bool = False) -> set[ir.Read]:
    """The reads of ``e`` evaluated only under a condition."""
    out: set[ir.Read] = set()
    if isinstance(e, ir.Read) and guarded:
        out.add(e)
    if isinstance(e, ir.Select):
        out |= guarded_reads(e.cond, guarded)
        out |= guarded_reads(e.a, True) | guarded_reads(e.b, True)
        return out
    if isinstance(e, ir.Binary) and e.op in ir.LOGIC_OPS:
        return out | guarded_reads(e.a, guarded) | guarded_reads(e.b, True)
    for c in ir.children(e):
        out |= guarded_reads(c, guarded)
    return out


def _lets(e: ir.Expr) -> dict[str, ir.Expr]:
    lets = {}
    while isinstance(e, ir.Let):
        lets[e.name] = e.value
        e = e.body
    return lets


def needs_runtime_check(stage: ir.Stage) -> set[ir.Read]:
    """The reads of a stage that only a check at the access itself can keep in bounds."""
    lets = _lets(stage.rhs)
    out = guarded_reads(stage.rhs)
    for n in ir.walk(stage.rhs):
        if isinstance(n, ir.Read) and any(linearize(s, lets) is None for s in n.indices):
            out.add(n)
    return out


def check_static_bounds(fn: ir.Function, sizes: Mapping[str, int]) -> None:
    """Raise a positioned TcRangeError if an unconditional affine read leaves its tensor."""
    for st in fn.stages:
        box = {d.name: (Sym.of(d.lo.evaluate(sizes)), Sym.of(d.hi.evaluate(sizes)))
               for d in st.domain}
        if any(hi.const <= lo.const for lo, hi in box.values()):
            continue
        lets = _lets(st.rhs)
        skip = needs_runtime_check(st)
        for n in ir.walk(st.rhs):
            if not isinstance(n, ir.Read) or n in skip:
                continue
            shape = fn.tensor(n.tensor).shape
            for k, (sub, ext) in enumerate(zip(n.indices, shape, strict=True)):
                lo, hi = bounds(linearize(sub, lets), box)
                lo_v, hi_v, ext_v = lo.evaluate(sizes), hi.evaluate(sizes), ext.evaluate(sizes)
                if lo_v < 0 or hi_v >= ext_v:
                    span = n.span or st.span
                    raise TcRangeError(
                        f"read of '{n.tensor}' out of bounds: subscript {k + 1} ranges over "
                        f"{lo_v}..{hi_v}, outside 0:{ext_v}",
                        line=span.line if span else None,
                        column=span.column if span else None, source=fn.source or None)


def starts_from_contents(fn: ir.Function) -> frozenset[str]:
    """The outputs and temporaries whose first writing stage reduces without ``!``: it
    accumulates into what the tensor holds at the start, the caller's ``outputs=``
    tensor or zeros (docs/language.md section 2; tc.lang.original_forms)."""
    out: set[str] = set()
    seen: set[str] = set()
    for st in fn.stages:
        if st.tensor not in seen and st.op is not None and not st.init:
            out.add(st.tensor)
        seen.add(st.tensor)
    return frozenset(out)


def fully_written(fn: ir.Function, sizes: Mapping[str, int]) -> frozenset[str]:
    """The outputs and temporaries whose every element is written before anything reads
    it: the first stage touching the tensor writes it without reading it (a plain
    assignment, or a reduction with ``!`` whose initialisation comes first) over its
    whole extent. The executor need not zero-fill those (everything else starts at
    0, as the language says)."""
    out: set[str] = set()
    seen: set[str] = set()
    for st in fn.stages:
        read = {n.tensor for n in ir.walk(st.rhs) if isinstance(n, ir.Read)}
        t = st.tensor
        if t not in seen and t not in read and (st.op is None or st.init):
            shape = fn.tensor(t).shape
            covered = all(
                d.lo.evaluate(sizes) == 0 and d.hi.evaluate(sizes) == ext.evaluate(sizes)
                for d, ext in zip(st.lhs_dims, shape, strict=True))
            if covered and len(st.lhs) == len(shape):
                out.add(t)
        seen |= read | {t}
    inputs = {t.name for t in fn.inputs}
    return frozenset(out - inputs)
