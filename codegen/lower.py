"""isl's AST of a mapped schedule to kernel ASTs and a host program.

The mapping step (``polyhedral.mapping``) marks, in the schedule tree, each kernel
(``kernel.N``) and each band member distributed over the hardware (``block.x``,
``thread.y``, ...). isl generates ordinary loops and knows nothing of the hardware
ids, so every condition it writes is uniform across a block. This module turns a
marked loop into a wrap-around loop over the ids, guards statements that no mapped
loop distributes (only id 0 runs them), and puts barriers where threads hand data
to each other: only in code outside any thread-distributed region, so always in
uniform control flow.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

import islpy as isl

from codegen import kernel as k
from codegen.barriers import place_barriers
from codegen.packing import packed_region
from codegen.private import promote_private
from codegen.shared import shared_buffer, shared_region
from polyhedral.guards import proven_in_bounds
from polyhedral.promotion import Annotations, SharedPlan
from tc.errors import TcInternalError
from tc.ir import nodes as ir
from tc.ir.bounds import needs_runtime_check
from tc.ir.sym import Sym
from tc.ir.types import INDEX_TYPE, ScalarType
from tc.options import MappingOptions

_I = INDEX_TYPE


def buffer_name(tensor: str) -> str:
    """Kernel names are prefixed, so no TC name can collide with C or with isl's loops."""
    return f"t_{tensor}"


def size_name(size: str) -> str:
    return f"s_{size}"


def size_expr(s: Sym) -> ir.Expr:
    """A size expression (``N``, ``N - KH + 1``, ``floor(N / 2)``, ...) as an index
    expression of the kernel's size arguments."""
    out = _int(s.const) if s.const or not s.terms else None
    for atom, coeff in s.terms:
        if atom.kind == "sym":
            term: ir.Expr = ir.Var(size_name(atom.name), "size", type=_I)
        elif atom.kind == "div":
            term = _bin("/", size_expr(atom.args[0]), _int(atom.divisor))
        else:  # min, max
            term = size_expr(atom.args[0])
            for a in atom.args[1:]:
                term = _bin(atom.kind, term, size_expr(a))
        if coeff != 1:
            term = _bin("*", _int(coeff), term)
        out = term if out is None else _bin("+", out, term)
    return out if out is not None else _int(0)


def _int(v: int) -> ir.Expr:
    if -(2**31) <= v < 2**31:
        return ir.IntImm(v, type=_I)
    return ir.IntImm(v, type=ScalarType.INT64)


def _bin(op: str, a: ir.Expr, b: ir.Expr) -> ir.Expr:
    if a.type != b.type:
        t = ScalarType.INT64 if ScalarType.INT64 in (a.type, b.type) else a.type
        a = a if a.type == t else ir.Cast(a, type=t)
        b = b if b.type == t else ir.Cast(b, type=t)
    out = ScalarType.BOOL if op in ir.CMP_OPS or op in ir.LOGIC_OPS else a.type
    return ir.Binary(op, a, b, type=out)


_BIN = {
    "add": "+", "sub": "-", "mul": "*", "div": "/", "fdiv_q": "/", "pdiv_q": "/",
    "pdiv_r": "%", "zdiv_r": "%", "and_": "&&", "and_then": "&&", "or_": "||",
    "or_else": "||", "eq": "==", "le": "<=", "lt": "<", "ge": ">=", "gt": ">",
    "max": "max", "min": "min",
}


def loop_name(isl_name: str) -> str:
    return f"c_{isl_name}"


def expr(e: isl.AstExpr, params: Mapping[str, str]) -> ir.Expr:
    """An isl AST expression (integer or boolean) as an IR expression.

    ``params`` maps isl parameter names to the TC size names; other ids are loops.
    """
    t = e.get_type()
    if t == isl.ast_expr_type.int:
        return _int(e.get_val().to_python())
    if t == isl.ast_expr_type.id:
        name = e.get_id().get_name()
        if name in params:
            return ir.Var(size_name(params[name]), "size", type=_I)
        return ir.Var(loop_name(name), "loop", type=_I)
    op = e.get_op_type()
    args = [expr(e.get_op_arg(i), params) for i in range(e.get_op_n_arg())]
    opname = _op_name(op)
    if opname == "minus":
        return ir.Unary("-", args[0], type=args[0].type)
    if opname in ("cond", "select"):
        a, b = args[1], args[2]
        return ir.Select(args[0], a, b, type=a.type)
    if opname in _BIN:
        out = args[0]
        for a in args[1:]:
            out = _bin(_BIN[opname], out, a)
        return out
    raise TcInternalError(f"unsupported isl AST operation {opname}")


def _op_name(op) -> str:
    for name in dir(isl.ast_expr_op_type):
        if not name.startswith("_") and getattr(isl.ast_expr_op_type, name) == op:
            return name
    raise TcInternalError(f"unknown isl AST operation {op}")


# -- statements ---------------------------------------------------------------------------------


ERROR_BUFFER = "tc_err"


class _Subst(ir.Mutator):
    """Index variables to loop expressions, names to kernel names, and an in-kernel
    bounds check on each read in ``checked`` (recorded in ``checks`` for the error)."""

    def __init__(self, env: Mapping[str, ir.Expr], lets: Mapping[str, str],
                 checked: set[ir.Read], shapes: Mapping[str, tuple[int, ...]],
                 checks: list[ir.Read],
                 promoted: Mapping[str, tuple[str, tuple[ir.Expr, ...]]] | None = None) -> None:
        self.env = env
        self.lets = lets
        self.checked = checked
        self.shapes = shapes
        self.checks = checks
        self.promoted = promoted or {}

    def mutate_Var(self, e: ir.Var) -> ir.Expr:
        if e.kind == "index":
            return self.env[e.name]
        if e.kind == "size":
            return ir.Var(size_name(e.name), "size", type=e.type)
        if e.kind == "let":
            return ir.Var(self.lets[e.name], "local", type=e.type)
        return e

    def mutate_Read(self, e: ir.Read) -> ir.Expr:
        idx = tuple(self.mutate(i) for i in e.indices)
        read = ir.Read(*target(e.tensor, idx, self.promoted), type=e.type, span=e.span)
        if e not in self.checked:
            return read
        cond: ir.Expr | None = None
        for i, extent in zip(idx, self.shapes[e.tensor], strict=True):
            if isinstance(extent, int) and isinstance(i, ir.IntImm) and 0 <= i.value < extent:
                continue  # a constant subscript in bounds needs no check
            bound = _int(extent) if isinstance(extent, int) else extent
            ok = _bin("&&", _bin(">=", i, _int(0)), _bin("<", i, bound))
            cond = ok if cond is None else _bin("&&", cond, ok)
        if cond is None:
            return read
        self.checks.append(e)
        report = ir.Call("tc_oob", (_int(len(self.checks)),), type=e.type)
        return ir.Select(cond, read, report, type=e.type, span=e.span)


def target(tensor: str, idx: tuple[ir.Expr, ...],
           promoted: Mapping[str, tuple[str, tuple[ir.Expr, ...]]]
           ) -> tuple[str, tuple[ir.Expr, ...]]:
    """The buffer and indices of a tensor element: its global buffer, or the shared
    copy of a promoted tensor (indices relative to the box's first element)."""
    if tensor not in promoted:
        return buffer_name(tensor), idx
    buf, offsets = promoted[tensor]
    return buf, tuple(_bin("-", i, o) for i, o in zip(idx, offsets, strict=True))


@functools.lru_cache(maxsize=256)
def _proven(fn: ir.Function, k: int) -> frozenset[ir.Read]:
    """Stage ``k``'s guarded reads that their guards keep in bounds (no check needed)."""
    return frozenset(proven_in_bounds(fn, fn.stages[k]))


def instantiate(fn: ir.Function, name: str, args: list[ir.Expr],
                shapes: Mapping[str, tuple[int, ...]], checks: list[ir.Read],
                promoted: Mapping[str, tuple[str, tuple[ir.Expr, ...]]] | None = None
                ) -> k.Stmt:
    """The kernel statement for one instance of scop statement ``S<k>`` / ``S<k>_init``.

    Reads that no host check covers are guarded; a failing guard reports the read's
    number (its position in ``checks``, from 1) in the error buffer."""
    init = name.endswith("_init")
    stage = fn.stages[int(name[1:].removesuffix("_init"))]
    dims = stage.lhs_dims if init else stage.domain
    if len(args) != len(dims):
        raise TcInternalError(f"statement {name} has {len(dims)} indices, isl gave {len(args)}")
    env = {d.name: a for d, a in zip(dims, args, strict=True)}
    indices = tuple(env[n] for n in stage.lhs)
    dtype = fn.tensor(stage.tensor).dtype
    where, indices = target(stage.tensor, indices, promoted or {})
    if init:
        v = ir.identity(stage.op, dtype)
        value: ir.Expr = (ir.FloatImm(float(v), type=dtype) if dtype.is_float
                          else ir.IntImm(int(v), type=dtype))
        return k.Store(where, indices, value, origin=name)
    body, lets = stage.rhs, []
    while isinstance(body, ir.Let):
        lets.append(body)
        body = body.body
    names = {let.name: f"l_{let.name}" for let in lets}
    checked = needs_runtime_check(stage) - _proven(fn, int(name[1:].removesuffix("_init")))
    sub = _Subst(env, names, checked, shapes, checks, promoted)
    locals_ = [k.Local(names[let.name], let.value.type, sub.mutate(let.value)) for let in lets]
    store = k.Store(where, indices, sub.mutate(body), op=stage.op, origin=name)
    return k.Scope(k.seq(*locals_, store)) if locals_ else store


# -- nodes ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Ctx:
    blocks: frozenset[str] = frozenset()
    threads: frozenset[str] = frozenset()


class _KernelLowering:
    def __init__(self, fn: ir.Function, grid: tuple[int, ...], block: tuple[int, ...],
                 params: Mapping[str, str], shapes: Mapping[str, tuple[int, ...]],
                 checks: list[ir.Read], shared: Mapping[str, SharedPlan] | None = None,
                 annotations: Annotations | None = None, unroll_copies: bool = False) -> None:
        self.fn = fn
        self.shared = shared or {}
        self.annotations = annotations or {}
        self.unroll_copies = unroll_copies
        self.used: list[SharedPlan] = []  # the promotions met in this kernel
        self.packed: list[k.Buffer] = []  # the CPU packing arrays met (codegen.packing)
        self.params = params
        self.shapes = shapes
        self.checks = checks
        self.grid = dict(zip(k.AXES, grid, strict=True))
        self.block = dict(zip(k.AXES, block, strict=True))
        # CPU marks waiting for their loop: loop name -> {"parallel", "vector"}
        self.cpu_marks: dict[str, set[str]] = {}

    def expr(self, e: isl.AstExpr) -> ir.Expr:
        return expr(e, self.params)

    def node(self, n: isl.AstNode, ctx: _Ctx) -> k.Stmt:
        t = n.get_type()
        if t == isl.ast_node_type.block:
            kids = n.block_get_children()
            return k.seq(*(self.node(kids.get_at(i), ctx) for i in range(kids.n_ast_node())))
        if t == isl.ast_node_type.for_:
            return self.loop(n, ctx, None)
        if t == isl.ast_node_type.if_:
            other = self.node(n.if_get_else_node(), ctx) if n.if_has_else_node() else None
            return k.If(self.expr(n.if_get_cond()), self.node(n.if_get_then_node(), ctx), other)
        if t == isl.ast_node_type.user:
            return self.user(n, ctx)
        if t == isl.ast_node_type.mark:
            return self.mark(n, ctx)
        raise TcInternalError(f"unexpected isl AST node {t}")

    def loop(self, n: isl.AstNode, ctx: _Ctx, mapping: str | None) -> k.Stmt:
        inc = self.expr(n.for_get_inc())
        if not isinstance(inc, ir.IntImm):
            raise TcInternalError("isl produced a loop with a non-constant step")
        var = loop_name(n.for_get_iterator().get_id().get_name())
        if mapping is not None:
            kind, axis = mapping.split(".")
            ctx = _Ctx(ctx.blocks | {axis}, ctx.threads) if kind == "block" else _Ctx(
                ctx.blocks, ctx.threads | {axis})
        cpu = self.cpu_marks.pop(var, set())
        if "parallel" in cpu:
            mapping = "omp"
        body = self.node(n.for_get_body(), ctx)
        vector = "lanes" if "vector" in cpu else "reduction" if "reduce" in cpu else None
        return k.For(var, self.expr(n.for_get_init()), self.expr(n.for_get_cond()), body, inc.value,
                     mapping, vector=vector)

    def mark(self, n: isl.AstNode, ctx: _Ctx) -> k.Stmt:
        name = n.mark_get_id().get_name()
        inner = n.mark_get_node()
        if name in self.shared:
            if name.startswith("pack."):
                return self.packing(n, ctx)
            return self.promotion(n, ctx)
        hw_name, _, depth = name.partition("@")
        kind, _, axis = hw_name.partition(".")
        if kind == "cpu" and depth.isdigit():
            # polyhedral.cpu_mapping: the loop of depth ``depth`` below is parallel or
            # vector; a degenerate band has no loop, and the mark then marks nothing.
            var = loop_name(f"c{depth}")
            self.cpu_marks.setdefault(var, set()).add(axis)
            try:
                return self.node(inner, ctx)
            finally:
                self.cpu_marks.pop(var, None)
        if kind not in ("block", "thread") or axis not in k.AXES or not depth.isdigit():
            return self.node(inner, ctx)
        mapped = ctx.blocks if kind == "block" else ctx.threads
        size = (self.grid if kind == "block" else self.block)[axis]
        return self.mapped(inner, ctx, hw_name if axis not in mapped and size > 1 else None,
                           loop_name(f"c{depth}"))

    def offsets(self, n: isl.AstNode) -> tuple[SharedPlan | None, dict[str, tuple[ir.Expr, ...]]]:
        """The plan and box offsets isl annotated ``n`` with (``polyhedral.promotion``)."""
        try:
            key = n.get_annotation().get_name()
        except isl.Error:
            return None, {}
        if key not in self.annotations:
            return None, {}
        mark, exprs = self.annotations[key]
        return self.shared[mark], {t: tuple(self.expr(e) for e in es) for t, es in exprs.items()}

    def promotion(self, n: isl.AstNode, ctx: _Ctx) -> k.Stmt:
        plan = self.shared[n.mark_get_id().get_name()]
        if plan not in self.used:
            self.used.append(plan)
        _, offsets = self.offsets(n)
        body = self.node(n.mark_get_node(), ctx)
        names = {p.tensor: buffer_name(p.tensor) for p in plan.tensors}
        written = {names[p.tensor] for p in plan.tensors if p.copy_out}
        for st in k.walk_stmts(body):
            # Below the mark a written tensor lives in shared memory only: a global
            # access there would miss the block's updates (or be overwritten by them).
            touched = {st.buffer} if isinstance(st, k.Store) else set()
            for e in k.own_exprs(st):
                touched |= {r.tensor for r in ir.walk(e) if isinstance(r, ir.Read)}
            if touched & written:
                raise TcInternalError(f"{plan.mark}: a global access to a promoted tensor "
                                      f"({', '.join(sorted(touched & written))}) remains")
        return shared_region(plan, offsets, body, self.shapes, names,
                             (self.block["x"], self.block["y"], self.block["z"]),
                             self.unroll_copies)

    def packing(self, n: isl.AstNode, ctx: _Ctx) -> k.Stmt:
        """A CPU packing point (:mod:`codegen.packing`): its arrays are the thread's own,
        declared in the region rather than with the kernel."""
        plan = self.shared[n.mark_get_id().get_name()]
        _, offsets = self.offsets(n)
        body = self.node(n.mark_get_node(), ctx)
        names = {p.tensor: buffer_name(p.tensor) for p in plan.tensors}
        known = {b.name: b for b in self.packed}
        region, buffers = packed_region(plan, offsets, body, self.shapes, names, known)
        self.packed += [b for b in buffers if b.name not in known]
        return region

    def mapped(self, n: isl.AstNode, ctx: _Ctx, mapping: str | None, var: str) -> k.Stmt:
        """The loop right below a mapping mark, distributed over the ids. The marked
        band's loop is the one named ``var``: a degenerate loop (single-valued given the
        outer ones) isl does not emit, and the loop found below the mark then belongs to
        a deeper band, which may carry a dependence; it stays sequential, and the
        statements below are guarded so that only id 0 runs them."""
        t = n.get_type()
        if mapping is not None and t == isl.ast_node_type.for_:
            if loop_name(n.for_get_iterator().get_id().get_name()) == var:
                return self.loop(n, ctx, mapping)
            return self.node(n, ctx)
        if mapping is not None and t == isl.ast_node_type.if_ and not n.if_has_else_node():
            return k.If(self.expr(n.if_get_cond()),
                        self.mapped(n.if_get_then_node(), ctx, mapping, var))
        return self.node(n, ctx)

    def user(self, n: isl.AstNode, ctx: _Ctx) -> k.Stmt:
        call = n.user_get_expr()
        name = call.get_op_arg(0).get_id().get_name()
        args = [self.expr(call.get_op_arg(i)) for i in range(1, call.get_op_n_arg())]
        plan, offsets = self.offsets(n)
        promoted = {} if plan is None else {
            p.tensor: (p.buffer, offsets[p.tensor]) for p in plan.tensors if p.tensor in offsets}
        stmt = instantiate(self.fn, name, args, self.shapes, self.checks, promoted)
        guards = [
            _bin("==", k.hw(kind, a), _int(0))
            for kind, sizes, mapped in (("block", self.grid, ctx.blocks),
                                        ("thread", self.block, ctx.threads))
            for a in k.AXES
            if sizes[a] > 1 and a not in mapped
        ]
        if not guards:
            return stmt
        cond = guards[0]
        for g in guards[1:]:
            cond = _bin("&&", cond, g)
        return k.If(cond, stmt)


# -- marks ---------------------------------------------------------------------------


def mark_depths(schedule: isl.Schedule) -> isl.Schedule:
    """Every ``block.x`` / ``thread.y`` / ... mark renamed ``block.x@D``, where ``D`` is
    the schedule depth of the band it marks (isl names that band's loop ``cD``).

    The lowering needs it: isl emits no loop for a degenerate band, and the first loop
    below the mark is then another band's. Marks without a depth are not mapped."""

    def walk(node: isl.ScheduleNode) -> isl.ScheduleNode:
        if node.get_type() == isl.schedule_node_type.mark:
            name = node.mark_get_id().get_name()
            kind, _, axis = name.partition(".")
            if kind in ("block", "thread") and axis in k.AXES or kind == "cpu":
                depth = node.get_schedule_depth()
                node = node.delete().insert_mark(
                    isl.Id(f"{name}@{depth}", context=node.get_ctx()))
        for i in range(node.n_children()):
            node = walk(node.child(i)).parent()
        return node

    return walk(schedule.get_root()).get_schedule()


def placements(body: k.Stmt, block: tuple[int, int, int]
               ) -> dict[str, tuple[int | None, ...] | None]:
    """For each statement of a lowered kernel: along each thread axis with more than
    one thread, the schedule depth of the thread-mapped loop around it (None: it runs
    on thread 0 of that axis). None for a statement placed in two different ways or
    under a strided mapped loop (whose thread is not ``value mod threads``)."""
    axes = [a for a, n in zip(k.AXES, block, strict=True) if n > 1]
    out: dict[str, tuple[int | None, ...] | None] = {}

    def walk(s: k.Stmt, around: dict[str, int | None]) -> None:
        if isinstance(s, k.Store):
            if None in around.values():
                place = None
            else:
                place = tuple(around.get(a) for a in axes)
            if s.origin in out and out[s.origin] != place:
                place = None
            out[s.origin] = place
            return
        if isinstance(s, k.For) and s.mapping and s.mapping.startswith("thread"):
            axis = s.mapping.split(".")[1]
            depth = s.var.removeprefix("c_c")
            around = {**around, axis: int(depth) if s.step == 1 and depth.isdigit() else None}
        for c in k.children(s):
            walk(c, around)

    walk(body, {})
    return out


Crossing = Callable[[Mapping[str, tuple[int | None, ...] | None], tuple[int, ...]],
                    AbstractSet[tuple[str, str]]]


def lower_kernel(ast: isl.AstNode, fn: ir.Function, name: str, grid: tuple[int, int, int],
                 block: tuple[int, int, int], buffers: tuple[k.Buffer, ...],
                 params: Mapping[str, str], shapes: Mapping[str, tuple[int, ...]],
                 checks: list[ir.Read], options: MappingOptions | None = None,
                 shared: Mapping[str, SharedPlan] | None = None,
                 annotations: Annotations | None = None) -> k.Kernel:
    """One kernel from the isl AST under its ``kernel.N`` mark; ``params`` maps isl
    parameter names to TC size names, ``shapes`` gives the tensors' concrete shapes.
    Register promotion and barriers are the pipeline's next stages
    (:func:`promote_kernel`, :func:`synchronize_kernel`)."""
    lowering = _KernelLowering(fn, grid, block, params, shapes, checks, shared, annotations,
                               bool(options is not None and options.unroll_copy_shared))
    body = lowering.node(ast, _Ctx())
    meta = {"readonly_cache": bool(options is not None and options.use_readonly_cache),
            "omp_threads": options.cpu_threads if options is not None else 0}
    local = tuple(shared_buffer(p) for plan in lowering.used for p in plan.tensors)
    local += tuple(lowering.packed)
    return k.Kernel(name, buffers + local, tuple(size_name(s) for s in fn.size_names), body,
                    grid, block, meta)


def promote_kernel(kern: k.Kernel, depth: int = 0) -> k.Kernel:
    """The kernel with register promotion (:func:`codegen.private.promote_private`)."""
    return dataclasses.replace(kern, body=promote_private(kern.body, depth))


def synchronize_kernel(kern: k.Kernel, deps: AbstractSet[tuple[str, str]] | Crossing
                       ) -> k.Kernel:
    """The kernel with the barriers its threads need (none for one-thread blocks).

    ``deps`` decides them: the pairs of statements with a dependence, or a function of
    the statements' :func:`placements` and the thread counts returning the pairs whose
    dependences cross threads (``polyhedral.threads``)."""
    block = kern.block
    if block[0] * block[1] * block[2] == 1:
        return kern
    if callable(deps):
        deps = deps(placements(kern.body, block), tuple(n for n in block if n > 1))
    return dataclasses.replace(kern, body=place_barriers(kern.body, deps))
