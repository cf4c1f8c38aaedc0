"""Helpers shared by the compiler tests (``tests/`` is on ``sys.path`` via its conftest).

* comparing compiled outputs with the reference interpreter's;
* static checks of the kernel AST that PoCL cannot make: PoCL runs the work-items of
  a work-group one after another, so a data race between threads of a block, or a
  barrier that only some threads reach, gives the right numbers on the CPU and wrong
  ones (or a hang) on a GPU. :func:`structure_problems` therefore checks, for every
  kernel of a compiled program, that

  - no barrier lies in thread-dependent control flow (below a loop distributed over
    threads, or an ``if`` whose condition reads a thread id);
  - every loop distributed over blocks or threads is the loop of a band member that
    the mapping marked with that id, and that member is coincident (no dependence
    between its iterations), so distributing it is race-free;
  - every statement runs on one id of each hardware axis that does not distribute it
    (it is under a loop mapped to that axis, or guarded by ``id == 0``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import islpy as isl
import torch

from codegen import kernel as k
from codegen.compiler import CompiledProgram
from codegen.lower import size_name
from polyhedral.dependences import compute_dependences
from polyhedral.schedule import band_coincidence
from tc.ir import nodes as ir


def as_tuple(value: torch.Tensor | Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """Outputs as a tuple, whether a call returned one tensor or several."""
    return (value,) if isinstance(value, torch.Tensor) else tuple(value)


def assert_same(got, want, rtol: float = 1e-5, atol: float = 1e-6, what: str = "") -> None:
    """Same number of outputs, dtypes and shapes; equal values (integers and booleans
    exactly, floats within the tolerances, NaN equal to NaN)."""
    got, want = as_tuple(got), as_tuple(want)
    assert len(got) == len(want), f"{what}: {len(got)} outputs, expected {len(want)}"
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g.dtype == w.dtype, f"{what}: output {i} has dtype {g.dtype}, expected {w.dtype}"
        assert g.shape == w.shape, f"{what}: output {i} has shape {g.shape}, expected {w.shape}"
        if g.is_floating_point():
            torch.testing.assert_close(g, w, rtol=rtol, atol=atol, equal_nan=True,
                                       msg=lambda m, i=i: f"{what}: output {i}: {m}")
        else:
            assert torch.equal(g, w), f"{what}: output {i} differs:\n{g}\nexpected\n{w}"


# -- static structure of the kernels ------------------------------------------------------------


@dataclass(frozen=True)
class MappedMember:
    """A band member that the mapping marked ``block.x`` / ``thread.y`` / ..."""

    kernel: int
    mapping: str
    depth: int  # its schedule depth: isl names its loop ``c<depth>``
    coincident: bool


def mapped_members(program: CompiledProgram) -> list[MappedMember]:
    """The band members that the mapping of ``program`` marked, with their schedule
    depth and whether they are coincident w.r.t. all dependences (reductions included,
    recomputed from the scop)."""
    assert program.mapped is not None, "the program keeps no mapped schedule"
    deps = compute_dependences(program.mapped.scop)
    schedule = program.mapped.schedule
    members: list[MappedMember] = []

    def walk(node: isl.ScheduleNode, kernel: int | None) -> None:
        if node.get_type() == isl.schedule_node_type.mark:
            name = node.mark_get_id().get_name()
            kind, _, rest = name.partition(".")
            if kind == "kernel":
                kernel = int(rest)
            elif kind in ("block", "thread"):
                band = node.child(0)
                assert band.get_type() == isl.schedule_node_type.band, name
                assert band.band_n_member() == 1, f"{name} marks a band of several members"
                assert kernel is not None, f"{name} outside any kernel"
                members.append(MappedMember(kernel, name, band.get_schedule_depth(),
                                            band_coincidence(band, deps.validity)[0]))
        for i in range(node.n_children()):
            walk(node.child(i), kernel)

    walk(schedule.get_root(), None)
    return members


def _thread_dependent(e: ir.Expr) -> bool:
    return any(isinstance(n, k.HwId) and n.kind == "thread" for n in ir.walk(e))


def _zero_guards(cond: ir.Expr) -> Iterator[tuple[str, str]]:
    """The ``(kind, axis)`` of every ``id == 0`` conjunct of ``cond``."""
    if isinstance(cond, ir.Binary) and cond.op == "&&":
        yield from _zero_guards(cond.a)
        yield from _zero_guards(cond.b)
    elif (isinstance(cond, ir.Binary) and cond.op == "==" and isinstance(cond.a, k.HwId)
          and isinstance(cond.b, ir.IntImm) and cond.b.value == 0):
        yield cond.a.kind, cond.a.axis


def _edge_barrier(s: k.Stmt, last: bool) -> bool:
    """Whether ``s`` begins (``last=False``) or ends with a barrier, statically."""
    if isinstance(s, k.Barrier):
        return True
    if isinstance(s, k.Block):
        return bool(s.body) and _edge_barrier(s.body[-1 if last else 0], last)
    if isinstance(s, k.For | k.Scope):
        return _edge_barrier(s.body, last)
    if isinstance(s, k.If):
        return _edge_barrier(s.then, last) or (
            s.otherwise is not None and _edge_barrier(s.otherwise, last))
    return False


def barrier_problems(kern: k.Kernel) -> list[str]:
    """Barriers in thread-dependent control flow (a hang or a race on a GPU), and two
    barriers with nothing between them (useless; PoCL 3.0 miscompiles a loop that ends
    in a barrier followed by a barrier)."""
    problems: list[str] = []
    for s in k.walk_stmts(kern.body):
        if isinstance(s, k.Block):
            for a, b in zip(s.body, s.body[1:], strict=False):
                if _edge_barrier(a, True) and _edge_barrier(b, False):
                    problems.append(f"{kern.name}: two barriers in a row")
        elif isinstance(s, k.For) and _edge_barrier(s.body, False) and _edge_barrier(
                s.body, True):
            problems.append(f"{kern.name}: loop {s.var} begins and ends with a barrier")

    def visit(s: k.Stmt, where: str | None) -> None:
        if isinstance(s, k.Barrier) and where is not None:
            problems.append(f"{kern.name}: barrier inside {where}")
        elif isinstance(s, k.Block):
            for c in s.body:
                visit(c, where)
        elif isinstance(s, k.For):
            if where is None and s.mapping is not None and s.mapping.startswith("thread"):
                where = f"the thread-distributed loop {s.var} ({s.mapping})"
            elif where is None and (_thread_dependent(s.init) or _thread_dependent(s.cond)):
                where = f"the loop {s.var} whose bounds read a thread id"
            visit(s.body, where)
        elif isinstance(s, k.If):
            if where is None and _thread_dependent(s.cond):
                where = "an if on a thread id"
            visit(s.then, where)
            if s.otherwise is not None:
                visit(s.otherwise, where)
        elif isinstance(s, k.Scope):
            visit(s.body, where)

    visit(kern.body, None)
    return problems


def distribution_problems(kern: k.Kernel, members: Sequence[MappedMember]) -> list[str]:
    """Loops distributed over ids that the mapping did not mark there or that carry a
    dependence, and statements that several ids run redundantly (``members``: the
    marked band members of this kernel)."""
    problems: list[str] = []
    sizes = {("block", a): n for a, n in zip(k.AXES, kern.grid, strict=True)}
    sizes |= {("thread", a): n for a, n in zip(k.AXES, kern.block, strict=True)}
    marked: dict[tuple[str, str], list[MappedMember]] = {}
    for m in members:
        marked.setdefault((m.mapping, f"c_c{m.depth}"), []).append(m)

    def visit(s: k.Stmt, ids: frozenset[tuple[str, str]]) -> None:
        if isinstance(s, k.Block):
            for c in s.body:
                visit(c, ids)
        elif isinstance(s, k.For):
            if s.mapping is not None:
                ms = marked.get((s.mapping, s.var))
                if not ms:
                    problems.append(f"{kern.name}: loop {s.var} is distributed over "
                                    f"{s.mapping}, but the mapping marked no band member at "
                                    f"that depth with {s.mapping}")
                elif not all(m.coincident for m in ms):
                    problems.append(f"{kern.name}: loop {s.var} is distributed over "
                                    f"{s.mapping} but carries a dependence (a race)")
                kind, axis = s.mapping.split(".")
                ids = ids | {(kind, axis)}
            elif _thread_dependent(s.init) and s.step == kern.block[0] * kern.block[1] * \
                    kern.block[2]:
                # A copy to or from shared memory: the block's threads share the range.
                ids = ids | {("thread", a) for a in k.AXES}
            visit(s.body, ids)
        elif isinstance(s, k.If):
            visit(s.then, ids | frozenset(_zero_guards(s.cond)))
            if s.otherwise is not None:
                visit(s.otherwise, ids)
        elif isinstance(s, k.Scope):
            visit(s.body, ids)
        elif isinstance(s, k.Store):
            shared = kern.buffer(s.buffer).space == "shared"
            for (kind, axis), n in sizes.items():
                if shared and kind == "block":
                    continue  # each block has its own copy
                if n > 1 and (kind, axis) not in ids:
                    problems.append(f"{kern.name}: the store to {s.buffer} runs on all {n} "
                                    f"{kind}.{axis} ids: neither distributed nor guarded")

    visit(kern.body, frozenset())
    return problems


def _pipeline_problems(program: CompiledProgram) -> list[str]:
    """Everything :mod:`kernel_checks` checks statically, for every kernel of a program."""
    members = mapped_members(program)
    problems: list[str] = []
    for index, ck in enumerate(program.kernels):
        problems += barrier_problems(ck.kernel)
        problems += distribution_problems(ck.kernel, [m for m in members if m.kernel == index])
    return problems


def _is_thread0(cond: ir.Expr) -> bool:
    return (isinstance(cond, ir.Binary) and cond.op == "==" and cond.a == k.hw("thread", "x")
            and isinstance(cond.b, ir.IntImm) and cond.b.value == 0)


def _unguarded_global_stores(kern: k.Kernel) -> list[str]:
    """Stores of a template kernel to global memory that not only thread 0 runs."""
    globals_ = {b.name for b in kern.arguments}
    out: list[str] = []

    def visit(s: k.Stmt, guarded: bool) -> None:
        if isinstance(s, k.Store) and s.buffer in globals_ and not guarded:
            out.append(f"{kern.name}: store to {s.buffer} on every thread")
        elif isinstance(s, k.If):
            visit(s.then, guarded or _is_thread0(s.cond))
            if s.otherwise is not None:
                visit(s.otherwise, guarded)
        elif isinstance(s, k.Block):
            for c in s.body:
                visit(c, guarded)
        elif isinstance(s, k.For | k.Scope):
            visit(s.body, guarded)

    visit(kern.body, False)
    return out


def structure_problems(program: CompiledProgram) -> list[str]:
    """The static checks of ``kernel_checks``, segment by segment: pipeline segments get
    them all (with their own mapped schedule); template kernels get the barrier checks
    (none in thread-dependent control flow) and a single writer per block."""
    if not program.segments:
        return _pipeline_problems(program)
    out: list[str] = []
    for seg in program.segments:
        kernels = program.kernels[seg.kernels.start:seg.kernels.stop]
        if seg.kind == "pipeline":
            part = dataclasses.replace(program, kernels=kernels, mapped=seg.mapped, segments=())
            out += _pipeline_problems(part)
        else:
            for ck in kernels:
                out += barrier_problems(ck.kernel) + _unguarded_global_stores(ck.kernel)
    return out


def _vars(e: ir.Expr) -> set[str]:
    return {n.name for n in ir.walk(e) if isinstance(n, ir.Var)}


_EVAL = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b,
         "<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b,
         ">=": lambda a, b: a >= b, "==": lambda a, b: a == b, "!=": lambda a, b: a != b,
         "&&": lambda a, b: a and b, "||": lambda a, b: a or b, "min": min, "max": max,
         # The IR's integer division and modulo round to minus infinity, as Python's.
         "/": lambda a, b: a // b if b else 0, "%": lambda a, b: a % b if b else 0}


def _value(e: ir.Expr, env: dict[str, int]) -> int | None:
    """``e`` evaluated with ``env`` (integer index arithmetic); None when it needs
    anything else."""
    if isinstance(e, ir.IntImm):
        return e.value
    if isinstance(e, ir.Var):
        return env.get(e.name)
    if isinstance(e, ir.Binary) and e.op in _EVAL:
        a, b = _value(e.a, env), _value(e.b, env)
        return None if a is None or b is None else int(_EVAL[e.op](a, b))
    if isinstance(e, ir.Unary) and e.op in ("-", "!"):
        a = _value(e.a, env)
        return None if a is None else (-a if e.op == "-" else int(not a))
    return None


def _iterations(loop: k.For, env: dict[str, int], limit: int = 1 << 16) -> list[int] | None:
    """The values of a parallel loop whose bounds depend on sizes only (``env``: their
    values; None otherwise)."""
    v = _value(loop.init, env)
    out = []
    while v is not None and len(out) <= limit:
        ok = _value(loop.cond, {**env, loop.var: v})
        if ok is None:
            return None
        if not ok:
            return out
        out.append(v)
        v += loop.step
    return None


def _pinned_stores(loop: k.For, env: dict[str, int]) -> set[int]:
    """The stores (by ``id``) below a parallel loop that guards restrict to a single
    iteration at the sizes ``env`` (isl's separate code for the last, partial tile:
    ``if (c0 >= 4) C[64 * N + n] = ...`` writes for ``c0 == 4`` only)."""
    values = _iterations(loop, env)
    out: set[int] = set()
    if values is None:
        return out

    def walk(s: k.Stmt, allowed: list[int]) -> None:
        if len(allowed) <= 1:
            out.update(id(d) for d in k.walk_stmts(s) if isinstance(d, k.Store))
            return
        if isinstance(s, k.If) and _vars(s.cond) <= {loop.var} | set(env):
            held = [v for v in allowed if _value(s.cond, {**env, loop.var: v})]
            walk(s.then, held)
            if s.otherwise is not None:
                walk(s.otherwise, [v for v in allowed if v not in held])
            return
        for c in k.children(s):
            walk(c, allowed)

    walk(loop.body, values)
    return out


def cpu_problems(program: CompiledProgram) -> list[str]:
    """Static checks of a CPU-mapped program that a run on few threads may not show:

    - no GPU construct (hardware id, barrier, shared buffer, loop mapped to an id);
    - every global store below a parallel (``omp``) loop subscripts with that loop's
      variable, directly or through an inner loop whose bounds depend on it, or is
      guarded into a single iteration of it at the program's sizes, so two
      iterations do not write one element (a reduction over the parallel loop would);
    - no local (scalar or array: a packed tile, a register row) declared outside a
      parallel loop is assigned inside it, but at elements of the loop's own
      iterations (split reductions' partial results).
    """
    out: list[str] = []
    sizes = {size_name(n): v for n, v in program.sizes.items()}
    for ck in program.kernels:
        kern = ck.kernel
        if any(b.space == "shared" for b in kern.buffers):
            out.append(f"{kern.name}: shared buffer on a CPU")
        for s in k.walk_stmts(kern.body):
            if isinstance(s, k.Barrier):
                out.append(f"{kern.name}: barrier on a CPU")
            if isinstance(s, k.For) and s.mapping not in (None, "omp"):
                out.append(f"{kern.name}: loop {s.var} mapped to {s.mapping} on a CPU")
            if isinstance(s, k.For) and s.mapping == "omp":
                inner = {d.var for d in k.walk_stmts(s.body) if isinstance(d, k.For)}
                inner |= {d.name for d in k.walk_stmts(s.body) if isinstance(d, k.Local)}
                dependent = {s.var}
                for d in k.walk_stmts(s.body):  # pre-order: outer loops first
                    if isinstance(d, k.For) and (_vars(d.init) | _vars(d.cond)) & dependent:
                        dependent.add(d.var)
                pinned = _pinned_stores(s, sizes)
                for st in k.walk_stmts(s.body):
                    if (isinstance(st, k.Store) and kern.buffer(st.buffer).space == "global"
                            and id(st) not in pinned):
                        used = set().union(*(_vars(i) for i in st.indices)) if st.indices \
                            else set()
                        if not used & dependent:
                            out.append(f"{kern.name}: store to {st.buffer} in parallel loop "
                                       f"{s.var} does not depend on it")
                    if isinstance(st, k.Assign) and st.name not in inner:
                        out.append(f"{kern.name}: parallel loop {s.var} assigns outer local "
                                   f"{st.name}")
                    if (isinstance(st, k.Store) and kern.buffer(st.buffer).space != "global"
                            and st.buffer not in inner and not any(
                                s.var in _vars(i) for i in st.indices)):
                        out.append(f"{kern.name}: parallel loop {s.var} stores to the outer "
                                   f"array {st.buffer}")
        for s in k.walk_stmts(kern.body):
            for e in k.own_exprs(s):
                if any(isinstance(n, k.HwId) for n in ir.walk(e)):
                    out.append(f"{kern.name}: hardware id on a CPU")
    return out


def program_problems(program: CompiledProgram) -> list[str]:
    """:func:`structure_problems` for a GPU-mapped program, :func:`cpu_problems` for a
    CPU-mapped one."""
    if program.strategy == "cpu":
        return cpu_problems(program)
    return structure_problems(program)
