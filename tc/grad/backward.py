"""Deriving the backward definition of a TC definition, as TC text.

The derivation works on the checked IR and writes a new definition that the front
end checks and the compiler compiles like any other:

1. **Versions.** A tensor written by several statements gets one name per write
   (``y`` then ``y_1``...), so that the backward can read the value each statement
   saw. The statements that compute the versions the gradients need are recomputed
   at the top of the backward (the forward's outputs become temporaries).
2. **Adjoints, statement by statement in reverse.** The adjoint of a version is
   complete once every later statement has been processed. For a statement
   ``V(lhs) op= rhs`` the adjoint of each floating-point read ``X(s(i))`` of ``rhs``
   is ``dV(lhs) * d rhs / d X(s(i))`` (:mod:`tc.grad.derivatives`), summed into
   ``dX`` at ``s(i)``: a scatter, written in TC as a gather by inverting the
   subscripts (:func:`_scatter`). ``max=!`` / ``min=!`` pass the gradient to the
   first element (in the order of the reduction indices) that attains the result,
   which a recomputed ``min=!`` of the linear index finds.
   A product reduction gives each factor the product of the others, recomputed
   as such (a zero factor never turns into NaN).
3. **What cannot be differentiated** (a builtin with no expressible derivative such
   as ``lgamma``, an overwrite of part of a tensor) raises
   :class:`tc.TcGradientError` naming the statement: never a wrong gradient.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from tc.errors import TcGradientError
from tc.grad import build as b
from tc.grad.derivatives import NotDifferentiable, partials
from tc.grad.gather import Range, gather
from tc.ir import nodes as ir
from tc.ir.printer import expr_str, stage_str
from tc.ir.sym import Sym


@dataclass(frozen=True)
class Backward:
    """A derived backward definition.

    ``text`` defines ``name``, whose parameters are the forward's inputs followed by
    the gradients of the outputs ``grad_outputs`` (indices into the forward's
    results), and whose results are the gradients of the inputs ``grad_inputs``
    (indices into the forward's inputs), in order.
    """

    name: str
    text: str
    grad_inputs: tuple[int, ...]
    grad_outputs: tuple[int, ...]


@dataclass
class _Stmt:
    tensor: str
    lhs: tuple[str, ...]
    op: str
    rhs: ir.Expr
    ranges: tuple[Range, ...]

    def text(self) -> str:
        lhs = self.tensor + (f"({', '.join(self.lhs)})" if self.lhs else "")
        where = ", ".join(f"{n} in {lo}:{hi}" for n, lo, hi in self.ranges)
        return f"    {lhs} {self.op} {expr_str(self.rhs)}" + (f" where {where}" if where else "")


@dataclass
class _Version:
    """One value of a tensor: what stage ``stage`` wrote."""

    decl: ir.TensorDecl
    stage: int


@dataclass
class _Adjoint:
    """The tensor holding a version's adjoint so far. ``owned`` is True once the
    backward writes it, False while it is still an output's gradient parameter, None
    for an input's gradient result that nothing has written yet."""

    name: str
    owned: bool | None


@dataclass
class _State:
    fn: ir.Function
    taken: set[str]
    versions: dict[str, _Version] = field(default_factory=dict)
    recompute: dict[int, list[_Stmt]] = field(default_factory=dict)  # stage -> statements
    select: dict[int, _Stmt] = field(default_factory=dict)  # stage -> argmax/argmin index
    adjoint: dict[str, _Adjoint] = field(default_factory=dict)
    body: list[_Stmt] = field(default_factory=list)
    results: dict[str, str] = field(default_factory=dict)  # input -> gradient result
    # stage -> (name of the version it writes, renamed rhs, version it accumulates into)
    stage_rhs: dict[int, tuple[str, ir.Expr, str | None]] = field(default_factory=dict)
    stored: dict[int, ir.Expr] = field(default_factory=dict)  # stage -> its stored values
    extra: dict[int, list[_Stmt]] = field(default_factory=dict)  # stage -> products

    def fresh(self, base: str) -> str:
        name, k = base, 0
        while name in self.taken:
            k += 1
            name = f"{base}_{k}"
        self.taken.add(name)
        return name


def _names(fn: ir.Function) -> set[str]:
    names = {fn.name, *fn.size_names, *(t.name for t in fn.tensors)}
    for st in fn.stages:
        names.update(d.name for d in st.domain)
        names.update(n.name for n in ir.walk(st.rhs) if isinstance(n, ir.Let | ir.Var))
    return names


def _fail(fn: ir.Function, k: int, reason: str) -> TcGradientError:
    st = fn.stages[k]
    text = stage_str(st).split("\n")[0]
    where = {}
    if st.span is not None and fn.source:
        where = {"line": st.span.line, "column": st.span.column, "source": fn.source}
    return TcGradientError(f"{fn.name}: statement {k + 1} ({text}) cannot be differentiated: "
                           f"{reason}", **where)


def derive(fn: ir.Function, name: str | None = None,
           wrt: tuple[int, ...] | None = None) -> Backward:
    """The backward definition of ``fn`` (see the module docstring).

    ``wrt`` (indices of inputs; None: every floating-point input) limits the results
    to those inputs' gradients, and the body to the statements they need: a layer's
    backward need not compute the gradient of its data input.

    Raises :class:`TcGradientError` when ``fn`` cannot be differentiated or has no
    floating-point input and output to differentiate.
    """
    fn = _from_zeros(fn)
    s = _State(fn, _names(fn))
    grad_in = tuple(k for k, t in enumerate(fn.inputs) if t.dtype.is_float)
    grad_out = tuple(k for k, t in enumerate(fn.outputs) if t.dtype.is_float)
    if not grad_in or not grad_out:
        raise TcGradientError(f"{fn.name} has no floating-point "
                              f"{'input' if not grad_in else 'output'} to differentiate")
    wanted = grad_in if wrt is None else tuple(k for k in grad_in if k in wrt)
    if not wanted:
        raise TcGradientError(f"{fn.name}: none of the inputs {list(wrt or ())} is a "
                              "floating-point input to differentiate")
    suffix = "" if wanted == grad_in else "_" + "_".join(fn.inputs[k].name for k in wanted)
    bname = name or s.fresh(f"{fn.name}_grad{suffix}")
    s.taken.add(bname)
    final = _versions(s)
    params = [_decl(t.dtype, t.shape, t.name) for t in fn.inputs]
    for k in grad_out:
        out = fn.outputs[k]
        gname = s.fresh(f"d_{out.name}")
        dims = tuple(d if _plain(d) else Sym.of(s.fresh(f"{gname}_dim{j}"))
                     for j, d in enumerate(out.shape))
        params.append(_decl(out.dtype, dims, gname))
        s.adjoint[final[out.name]] = _Adjoint(gname, owned=False)
    for k in grad_in:
        x = fn.inputs[k]
        s.results[x.name] = s.fresh(f"d_{x.name}")
        s.adjoint[x.name] = _Adjoint(s.results[x.name], owned=None)
    for k in reversed(range(len(fn.stages))):
        _stage_adjoint(s, k)
    s.body = _live(s.body, {s.results[fn.inputs[k].name] for k in wanted})
    results = []
    for k in wanted:
        x = fn.inputs[k]
        gname = s.results[x.name]
        if s.adjoint[x.name].owned is None:  # no path from the outputs: a zero gradient
            lhs = tuple(s.fresh(f"i{j}") for j in range(x.rank))
            s.body.append(_Stmt(gname, lhs, "=", b.const(0, x.dtype), _whole(lhs, x.shape)))
        results.append(_decl(x.dtype, x.shape, gname))
    lines = [f"def {bname}({', '.join(params)})", f"    -> ({', '.join(results)})", "{"]
    lines += [st.text() for st in _needed_recompute(s)]
    lines += [st.text() for st in s.body]
    lines.append("}")
    return Backward(bname, "\n".join(lines) + "\n", wanted, grad_out)


def _from_zeros(fn: ir.Function) -> ir.Function:
    """``fn`` with each reduction without ``!`` into a tensor no earlier statement wrote
    made a ``!`` reduction, which it equals: differentiated calls get fresh outputs
    (outputs= is refused when an input requires grad), so such a tensor starts at 0,
    the identity of ``+``. Any other operator from 0 (``*=`` stays 0, ``max=`` clamps at
    0) raises: it is almost certainly not what was meant."""
    stages = list(fn.stages)
    written: set[str] = set()
    for k, st in enumerate(stages):
        if st.tensor not in written and st.op is not None and not st.init:
            if st.op != "+":
                raise _fail(fn, k, f"'{st.op}=' without '!' accumulates into the zeros "
                            f"'{st.tensor}' starts with; write '{st.op}=!' to start from "
                            "the identity")
            stages[k] = dataclasses.replace(st, init=True)
        written.add(st.tensor)
    return dataclasses.replace(fn, stages=tuple(stages)) if stages != list(fn.stages) else fn


def _live(body: list[_Stmt], wanted: set[str]) -> list[_Stmt]:
    """The statements of ``body`` that the tensors ``wanted`` depend on. Every write of
    an adjoint precedes every read of it (it is complete once read), so one pass from
    the end finds them all."""
    live, out = set(wanted), []
    for st in reversed(body):
        if st.tensor in live:
            out.append(st)
            live.update(r.tensor for r in b.reads(st.rhs))
    return out[::-1]


def _plain(d: Sym) -> bool:
    """Whether a parameter may declare dimension ``d`` as it is: a literal or one size
    symbol (``H - KH + 1`` may not)."""
    return d.is_const or str(d).isidentifier()


def _decl(dtype, shape: tuple[Sym, ...], name: str) -> str:
    if not shape:
        return f"{dtype} {name}"
    return f"{dtype}({', '.join(str(d) for d in shape)}) {name}"


def _full(st: ir.Stage) -> tuple[Range, ...]:
    return _ranges(st.domain)


def _ranges(dims) -> tuple[Range, ...]:
    return tuple((d.name, d.lo, d.hi) for d in dims)


def _whole(names: tuple[str, ...], shape: tuple[Sym, ...]) -> tuple[Range, ...]:
    """Ranges covering a whole tensor of ``shape`` with the indices ``names``."""
    return tuple((n, Sym.of(0), d) for n, d in zip(names, shape, strict=True))


def _versions(s: _State) -> dict[str, str]:
    """Names every version, renames the stages' reads, and prepares their recompute
    statements; returns tensor -> name of its final version."""
    fn = s.fn
    current = {t.name: t.name for t in fn.inputs}
    writes: dict[str, list[int]] = {}
    for k, st in enumerate(fn.stages):
        writes.setdefault(st.tensor, []).append(k)
    for k, st in enumerate(fn.stages):
        decl = fn.tensor(st.tensor)
        ks = writes[st.tensor]
        name = st.tensor if k == ks[-1] else s.fresh(f"{st.tensor}_v{ks.index(k)}")
        rhs = b.Substitute(tensors=current).mutate(b.inline_lets(st.rhs))
        prev = current.get(st.tensor)
        lhs_full = all(d.lo == Sym.of(0) and d.hi == ext
                       for d, ext in zip(st.lhs_dims, decl.shape, strict=True))
        if prev is not None and not lhs_full:
            raise _fail(fn, k, f"it writes only part of '{st.tensor}' after an earlier "
                        "statement wrote it; write the whole tensor or use a new temporary")
        accumulates = st.op is not None and not st.init
        stmts = []
        lhs_ranges = _ranges(st.lhs_dims)
        lhs_reads = tuple(b.var(n) for n in st.lhs)
        if accumulates:
            stmts.append(_Stmt(name, st.lhs, "=", b.read(prev, lhs_reads, decl.dtype),
                               lhs_ranges))
        op = "=" if st.op is None else f"{st.op}={'' if accumulates else '!'}"
        reduced = rhs
        if st.op in ("min", "max") and st.reduction_dims and not _stored(rhs):
            # The gradient of a max goes to the point whose value equals the max. Two
            # kernels may round one expression differently (contracting a * b + c into
            # an fma or not), so the values are stored once and both the max and the
            # comparison read them.
            arg = s.fresh(f"{name}_arg")
            every = tuple(d.name for d in st.domain)
            stmts.append(_Stmt(arg, every, "=", rhs, _full(st)))
            reduced = b.read(arg, tuple(map(b.var, every)), rhs.type)
            s.stored[k] = reduced
        stmts.append(_Stmt(name, st.lhs, op, reduced, _full(st)))
        s.recompute[k] = stmts
        s.versions[name] = _Version(decl, k)
        s.stage_rhs[k] = (name, rhs, prev)
        current[st.tensor] = name
    return current


def _add(s: _State, version: str, lhs: tuple[str, ...], expr: ir.Expr,
         ranges: tuple[Range, ...], dtype, shape: tuple[Sym, ...]) -> None:
    """Accumulate ``expr`` (over ``ranges``) into the adjoint of ``version`` at ``lhs``."""
    adj = s.adjoint.get(version)
    if adj is None and _is_copy(expr, lhs, ranges, shape):
        # ``O = O + bias`` passes O's adjoint through unchanged: name it, do not copy it.
        s.adjoint[version] = _Adjoint(expr.tensor, owned=False)
        return
    if adj is None:  # a temporary's first contribution
        adj = s.adjoint[version] = _Adjoint(s.fresh(f"d_{version}"), owned=True)
        s.body.append(_Stmt(adj.name, lhs, "+=!", expr, ranges))
        return
    if adj.owned is None:  # an input's gradient result, first written here
        adj.owned = True
        s.body.append(_Stmt(adj.name, lhs, "+=!", expr, ranges))
        return
    if not adj.owned:  # an output's gradient parameter: accumulate into a copy of it
        idx = tuple(s.fresh(f"i{j}") for j in range(len(shape)))
        total = s.fresh(f"{adj.name}_total")
        s.body.append(_Stmt(total, idx, "=", b.read(adj.name, tuple(map(b.var, idx)), dtype),
                            _whole(idx, shape)))
        s.adjoint[version] = adj = _Adjoint(total, owned=True)
    s.body.append(_Stmt(adj.name, lhs, "+=", expr, ranges))


def _is_copy(expr: ir.Expr, lhs: tuple[str, ...], ranges: tuple[Range, ...],
             shape: tuple[Sym, ...]) -> bool:
    """Whether ``expr`` over ``ranges`` is another adjoint read at ``lhs``, whole."""
    return (isinstance(expr, ir.Read) and len(lhs) == len(shape)
            and expr.indices == tuple(b.var(n) for n in lhs) and ranges == _whole(lhs, shape))


def _stage_adjoint(s: _State, k: int) -> None:
    fn = s.fn
    st = fn.stages[k]
    name, rhs, prev = s.stage_rhs[k]
    version = s.versions[name]
    decl = version.decl
    adj = s.adjoint.get(name)
    if not decl.dtype.is_float or adj is None:
        return  # nothing depends on this value
    lhs_vars = tuple(b.var(n) for n in st.lhs)
    g = b.read(adj.name, lhs_vars, decl.dtype)
    reducing = bool(st.reduction_dims)
    accumulates = st.op is not None and not st.init
    guard = None
    lhs_ranges = _ranges(st.lhs_dims)
    if st.op == "*" and (reducing or accumulates):
        # V = old * prod_r e(r): d old = g * prod_r e(r), d e(r) = g * old * prod_{r' != r}
        # e(r'). The products leaving one factor out are computed as such (never as
        # V / e(r), which a zero factor would turn into NaN).
        others = _products(s, k, rhs) if reducing else None
        if accumulates:
            old = b.read(prev, lhs_vars, decl.dtype)
            whole = _products(s, k, rhs, leave_out=False) if reducing else rhs
            _add(s, prev, st.lhs, b.mul(g, whole), lhs_ranges, decl.dtype, decl.shape)
            g = b.mul(g, old)
        if others is not None:
            g = b.mul(g, others)
    elif st.op in ("min", "max") and (reducing or accumulates):
        value = b.read(name, lhs_vars, decl.dtype)
        if reducing:
            guard = _selection(s, k, name, rhs)
        if accumulates:
            old = b.read(prev, lhs_vars, decl.dtype)
            _add(s, prev, st.lhs, b.select(b.cmp("==", old, value), g, b.const(0, decl.dtype)),
                 lhs_ranges, decl.dtype, decl.shape)
            guard = b.land(b.cmp("!=", old, value), guard)
    elif accumulates:  # +=: the old value passes its adjoint through
        _add(s, prev, st.lhs, g, lhs_ranges, decl.dtype, decl.shape)
    try:
        contributions = partials(rhs, g)
    except NotDifferentiable as e:
        raise _fail(fn, k, str(e)) from None
    grouped: dict[tuple[str, tuple[ir.Expr, ...]], ir.Expr] = {}
    for r, p in contributions:
        key = (r.tensor, r.indices)
        grouped[key] = b.add(grouped[key], p) if key in grouped else p
    for (tensor, indices), p in grouped.items():
        target = s.versions[tensor].decl if tensor in s.versions else fn.tensor(tensor)
        _scatter(s, k, tensor, indices, b.select(guard, p, b.const(0, p.type)), target)


def _products(s: _State, k: int, rhs: ir.Expr, leave_out: bool = True) -> ir.Expr:
    """Recompute, for a product reduction, ``prod_{r' != r} rhs(r')`` at every point
    (``leave_out``) or ``prod_r rhs(r)`` per output; returns the read of it."""
    st = s.fn.stages[k]
    name = s.stage_rhs[k][0]
    red = st.reduction_dims
    primed = {d.name: s.fresh(f"{d.name}_o") for d in red}
    other = b.Substitute({d.name: b.var(primed[d.name]) for d in red}).mutate(rhs)
    ranges = tuple((primed[d.name], d.lo, d.hi) for d in red)
    if leave_out:
        same = None
        for d in red:
            same = b.land(same, b.cmp("==", b.var(primed[d.name]), b.var(d.name)))
        lhs = tuple(d.name for d in st.domain)
        tensor = s.fresh(f"{name}_others")
        body = b.select(same, b.const(1, rhs.type), other)
        ranges = _full(st) + ranges
    else:
        lhs = st.lhs
        tensor = s.fresh(f"{name}_prod")
        body = other
        ranges = _ranges(st.lhs_dims) + ranges
    s.extra.setdefault(k, []).append(_Stmt(tensor, lhs, "*=!", body, ranges))
    return b.read(tensor, tuple(map(b.var, lhs)), rhs.type)


def _stored(e: ir.Expr) -> bool:
    """Whether ``e`` reads a stored value exactly (every evaluation gives the same bits)."""
    while isinstance(e, ir.Cast | ir.Unary):
        e = e.a
    return isinstance(e, ir.Read)


def _selection(s: _State, k: int, name: str, rhs: ir.Expr) -> ir.Expr:
    """Recompute the linear index of the first reduction point attaining ``name``'s
    value; returns the condition "this point is the selected one"."""
    st = s.fn.stages[k]
    lin: ir.Expr | None = None
    for d in st.reduction_dims:
        pos = b.cast(b.sub(b.var(d.name), b.sym(d.lo)), b.INT64)
        lin = pos if lin is None else b.add(b.mul(lin, b.cast(b.sym(d.hi - d.lo), b.INT64)), pos)
    assert lin is not None
    count: ir.Expr = b.const(1, b.INT64)
    for d in st.reduction_dims:
        count = b.mul(count, b.cast(b.sym(d.hi - d.lo), b.INT64))
    sel = s.fresh(f"{name}_at")
    decl = s.versions[name].decl
    value = b.read(name, tuple(b.var(n) for n in st.lhs), decl.dtype)
    values = s.stored.get(k, rhs)
    s.select[k] = _Stmt(sel, st.lhs, "min=!",
                        b.select(b.cmp("==", values, value), lin, count), _full(st))
    return b.cmp("==", lin, b.read(sel, tuple(b.var(n) for n in st.lhs), b.INT64))


def _scatter(s: _State, k: int, tensor: str, indices: tuple[ir.Expr, ...], expr: ir.Expr,
             target: ir.TensorDecl) -> None:
    """Add ``expr`` (over stage ``k``'s domain) into ``d tensor`` at ``indices``."""
    lhs, ranges, body = gather(s.fn.stages[k], indices, expr, target.shape, s.taken)
    _add(s, tensor, lhs, body, ranges, target.dtype, target.shape)


def _needed_recompute(s: _State) -> list[_Stmt]:
    """The recomputed statements the backward's body reads (and what they read), in
    the forward's order: versions, max/min selections, products."""
    aux = {st.tensor: st for st in s.select.values()}
    aux.update((st.tensor, st) for sts in s.extra.values() for st in sts)
    needed: set[str] = set()
    pending = [r.tensor for st in s.body for r in b.reads(st.rhs)]
    while pending:
        name = pending.pop()
        if name in needed or (name not in s.versions and name not in aux):
            continue
        needed.add(name)
        stmts = [aux[name]] if name in aux else s.recompute[s.versions[name].stage]
        pending.extend(r.tensor for stmt in stmts for r in b.reads(stmt.rhs))
    out = []
    for k in range(len(s.fn.stages)):
        if s.stage_rhs[k][0] in needed:
            out.extend(s.recompute[k])
        extra = ([s.select[k]] if k in s.select else []) + s.extra.get(k, [])
        out.extend(st for st in extra if st.tensor in needed)
    return out
