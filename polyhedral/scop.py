"""The polyhedral model of an IR function: iteration domains and access relations.

:func:`build_scop` turns an :class:`tc.ir.nodes.Function` into a :class:`Scop`, the
static control part that the scheduler works on:

* one isl parameter per size symbol of the function (in ``fn.size_names`` order),
  with the context ``P >= 1`` for each, or ``P = value`` when the caller fixes the
  sizes (``fixParametersBeforeScheduling``: the symbols stay parameters, equal to
  constants, so that every later step reads the same spaces);
* one statement ``S{k}`` per stage ``k`` over the stage's box domain, and for a stage
  with ``init`` (the ``!`` form) one more statement ``S{k}_init`` over the box of the
  left-hand indices, which writes the identity of the reduction operator;
* the access relations of each statement: the must-write of the left-hand element,
  every tensor read of the right-hand side, and for an update (``op`` not None) the
  read of the left-hand element. Non-affine subscripts (indirect reads, ``/``, ``%``)
  are over-approximated by the whole extent of that tensor dimension, and such reads,
  as well as reads under a ``?:`` branch or the right operand of ``&&``/``||``, are
  *may*-reads. Every relation is restricted to its statement's domain.

Names in isl. Statement tuples are ``S{k}`` / ``S{k}_init``; tensor tuples, index
and parameter names are the TC names, except that a name isl's parser would read
as a keyword (``and``, ``mod``, ``floor``, ...) or that clashes with another name of
the same role gets a ``_`` suffix: :attr:`Scop.tensor_ids` and :attr:`Scop.param_ids`
map the TC names to the isl names (:meth:`Scop.tensor_of` maps back).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import islpy as isl

from tc.ir import nodes as ir
from tc.ir.affine import linearize
from tc.ir.sym import Sym
from tc.ir.types import ScalarType

__all__ = ["Access", "Statement", "Scop", "build_scop"]

# Words isl's lexer reads as keywords (case-insensitively), so never as identifiers.
_ISL_KEYWORDS = frozenset(
    "exists and or implies not infty infinity nan min max rat true false ceild floord "
    "mod ceil floor".split()
)
_STATEMENT_NAME = re.compile(r"S\d+(_init)?")


@dataclass(frozen=True, eq=False)
class Access:
    """One access of a statement to a tensor element.

    ``relation`` maps the statement's instances to the tensor elements (restricted to
    the statement's domain). ``exact`` is False when a subscript is not affine and its
    dimension was over-approximated; ``conditional`` when the read happens only on
    some executions (under a select). ``read`` is the IR node of the access, None for
    the write and for the implicit read of the left-hand element of an update.
    """

    tensor: str
    kind: str  # "read" | "write"
    relation: isl.Map
    exact: bool = True
    conditional: bool = False
    read: ir.Read | None = None

    @property
    def is_may(self) -> bool:
        """A may-access: it may touch fewer elements than ``relation`` says."""
        return not self.exact or self.conditional


@dataclass(frozen=True, eq=False)
class Statement:
    """A statement of the scop: one stage (``compute``) or its initialisation (``init``)."""

    name: str
    stage: int
    kind: str  # "init" | "compute"
    tensor: str
    order: int  # textual position: S0_init, S0, S1_init, S1, ...
    dims: tuple[str, ...]  # TC names of the domain variables, in order
    domain: isl.Set
    write: Access
    reads: tuple[Access, ...]
    op: str | None  # the reduction/update operator of the stage (None for "=")

    lhs: tuple[str, ...]  # TC names of the left-hand indices (a prefix of dims)

    @property
    def is_reduction(self) -> bool:
        """A compute statement that reduces over reduction dimensions with ``op``."""
        reduces = self.op in ir.REDUCTION_OPS and len(self.dims) > len(self.lhs)
        return self.kind == "compute" and reduces


@dataclass(frozen=True, eq=False)
class Scop:
    """The polyhedral model of one function (see the module docstring)."""

    ctx: isl.Context
    function: ir.Function
    params: tuple[str, ...]  # TC size names, in the order of fn.size_names
    param_ids: Mapping[str, str]  # TC size name -> isl parameter name
    tensor_ids: Mapping[str, str]  # TC tensor name -> isl tuple name
    sizes: Mapping[str, int] | None  # the fixed sizes, if any
    context: isl.Set
    statements: tuple[Statement, ...]
    domain: isl.UnionSet
    must_writes: isl.UnionMap
    may_writes: isl.UnionMap
    reads: isl.UnionMap  # every read (may and must)
    must_reads: isl.UnionMap  # the exact, unconditional reads
    original_schedule: isl.Schedule

    @property
    def original_schedule_map(self) -> isl.UnionMap:
        """The textual order as a union map from statement instances to time."""
        return self.original_schedule.get_map()

    def statement(self, name: str) -> Statement:
        for s in self.statements:
            if s.name == name:
                return s
        raise KeyError(name)

    def tensor_of(self, tuple_name: str) -> str:
        """The TC name of a tensor from its isl tuple name."""
        for tc_name, isl_name in self.tensor_ids.items():
            if isl_name == tuple_name:
                return tc_name
        raise KeyError(tuple_name)

    def stage(self, statement: str) -> ir.Stage:
        """The IR stage of a statement."""
        return self.function.stages[self.statement(statement).stage]

    def __str__(self) -> str:
        lines = [f"scop of {self.function.name}", f"context: {self.context}"]
        for s in self.statements:
            what = "initialises" if s.kind == "init" else "computes"
            op = f" (reduction {s.op})" if s.is_reduction else ""
            lines.append(f"{s.name}: stage {s.stage}, {what} {s.tensor}{op}")
            lines.append(f"  domain:     {s.domain}")
            lines.append(f"  must-write: {s.write.relation}")
            for a in s.reads:
                kind = "may-read:  " if a.is_may else "read:      "
                lines.append(f"  {kind} {a.relation}")
        lines.append("original schedule:")
        smap = self.original_schedule_map
        for s in self.statements:
            lines.append(f"  {smap.intersect_domain(isl.UnionSet.from_set(s.domain))}")
        return "\n".join(lines)


# -- names ---------------------------------------------------------------------------


def _safe(name: str, taken: set[str]) -> str:
    """``name`` made readable by isl and distinct from ``taken`` (which it joins)."""
    out = name
    while out.lower() in _ISL_KEYWORDS or out in taken:
        out += "_"
    taken.add(out)
    return out


def _sym(s: Sym, param_ids: Mapping[str, str]) -> str:
    return s.substitute({k: Sym.of(v) for k, v in param_ids.items() if k != v}).to_isl()


# -- reads of an expression ---------------------------------------------------------------


def _reads(
    e: ir.Expr, lets: Mapping[str, ir.Expr], conditional: bool
) -> Iterator[tuple[ir.Read, Mapping[str, ir.Expr], bool]]:
    """Every tensor read in ``e`` with the lets in scope and whether it is conditional."""
    if isinstance(e, ir.Let):
        yield from _reads(e.value, lets, conditional)
        yield from _reads(e.body, {**lets, e.name: e.value}, conditional)
        return
    if isinstance(e, ir.Read):
        yield e, lets, conditional
    if isinstance(e, ir.Select):
        yield from _reads(e.cond, lets, conditional)
        yield from _reads(e.a, lets, True)
        yield from _reads(e.b, lets, True)
        return
    if isinstance(e, ir.Binary) and e.op in ir.LOGIC_OPS:
        yield from _reads(e.a, lets, conditional)
        yield from _reads(e.b, lets, True)  # short-circuit: maybe not evaluated
        return
    for kid in ir.children(e):
        yield from _reads(kid, lets, conditional)


# -- construction ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Env:
    ctx: isl.Context
    fn: ir.Function
    prefix: str  # "[N, M] -> "
    param_ids: Mapping[str, str]
    tensor_ids: Mapping[str, str]


def _domain(env: _Env, name: str, dims: tuple[ir.Dim, ...], var_ids: Mapping[str, str]) -> str:
    tup = f"{name}[{', '.join(var_ids[d.name] for d in dims)}]"
    cons = [
        f"{_sym(d.lo, env.param_ids)} <= {var_ids[d.name]} < {_sym(d.hi, env.param_ids)}"
        for d in dims
    ]
    return tup + (f" : {' and '.join(cons)}" if cons else "")


def _access(
    env: _Env,
    domain: isl.Set,
    stmt_tuple: str,
    tensor: str,
    indices: tuple[ir.Expr, ...],
    lets: Mapping[str, ir.Expr],
    var_ids: Mapping[str, str],
) -> tuple[isl.Map, bool]:
    """The relation ``stmt -> tensor[indices]`` over ``domain`` and whether it is exact."""
    shape = env.fn.tensor(tensor).shape
    taken = set(var_ids.values()) | set(env.param_ids.values())
    outs: list[str] = []
    cons: list[str] = []
    exact = True
    for d, e in enumerate(indices):
        aff = linearize(e, lets)
        if aff is not None:
            terms = [f"{c} * {var_ids[n]}" for n, c in aff.coeffs]
            terms.append(f"({_sym(aff.rest, env.param_ids)})")
            outs.append(" + ".join(terms))
            continue
        exact = False
        v = _safe(f"o{d}", taken)
        outs.append(v)
        cons.append(f"0 <= {v} < {_sym(shape[d], env.param_ids)}")
    text = f"{stmt_tuple} -> {env.tensor_ids[tensor]}[{', '.join(outs)}]"
    if cons:
        text += f" : {' and '.join(cons)}"
    rel = isl.Map.read_from_str(env.ctx, f"{env.prefix}{{ {text} }}")
    return rel.intersect_domain(domain), exact


def _statements(
    env: _Env, k: int, stage: ir.Stage, order: int, context: isl.Set
) -> list[Statement]:
    taken = set(env.param_ids.values())
    var_ids = {d.name: _safe(d.name, taken) for d in stage.domain}
    lhs_vars = tuple(ir.Var(type=ScalarType.INT32, name=n, kind="index") for n in stage.lhs)
    out: list[Statement] = []

    def make_domain(name: str, dims: tuple[ir.Dim, ...]) -> isl.Set:
        text = f"{env.prefix}{{ {_domain(env, name, dims, var_ids)} }}"
        return isl.Set.read_from_str(env.ctx, text).intersect_params(context)

    if stage.init:
        name = f"S{k}_init"
        dom = make_domain(name, stage.lhs_dims)
        tup = f"{name}[{', '.join(var_ids[n] for n in stage.lhs)}]"
        rel, _ = _access(env, dom, tup, stage.tensor, lhs_vars, {}, var_ids)
        write = Access(stage.tensor, "write", rel)
        out.append(Statement(name, k, "init", stage.tensor, order, stage.lhs, dom, write, (),
                             stage.op, stage.lhs))
    name = f"S{k}"
    dom = make_domain(name, stage.domain)
    tup = f"{name}[{', '.join(var_ids[d.name] for d in stage.domain)}]"
    rel, _ = _access(env, dom, tup, stage.tensor, lhs_vars, {}, var_ids)
    write = Access(stage.tensor, "write", rel)
    reads: list[Access] = []
    if stage.op is not None:
        reads.append(Access(stage.tensor, "read", rel))
    for read, lets, conditional in _reads(stage.rhs, {}, False):
        r, exact = _access(env, dom, tup, read.tensor, read.indices, lets, var_ids)
        reads.append(Access(read.tensor, "read", r, exact, conditional, read))
    dims = tuple(d.name for d in stage.domain)
    out.append(Statement(name, k, "compute", stage.tensor, order + len(out), dims, dom, write,
                         tuple(reads), stage.op, stage.lhs))
    return out


def _context(env: _Env, params: tuple[str, ...], sizes: Mapping[str, int] | None) -> isl.Set:
    cons = []
    for p in params:
        pid = env.param_ids[p]
        if sizes is not None and p in sizes:
            cons.append(f"{pid} = {int(sizes[p])}")
        else:
            cons.append(f"{pid} >= 1")
    # "{ : }" is the universe parameter set; "{ }" would read as an empty union set
    # (a definition without size symbols: literal shapes, scalars only).
    return isl.Set.read_from_str(env.ctx, f"{env.prefix}{{ : {' and '.join(cons)} }}")


def _original_schedule(statements: list[Statement], domain: isl.UnionSet) -> isl.Schedule:
    """A sequence of the statements in textual order, each with its own loop nest."""
    parts: list[isl.Schedule] = []
    for s in statements:
        sched = isl.Schedule.from_domain(isl.UnionSet.from_set(s.domain))
        n = s.domain.dim(isl.dim_type.set)
        if n:
            identity = isl.MultiAff.identity_on_domain_space(s.domain.get_space())
            mupa = isl.MultiUnionPwAff.from_multi_pw_aff(
                isl.MultiPwAff.from_multi_aff(identity).intersect_domain(s.domain)
            )
            sched = sched.insert_partial_schedule(mupa)
        parts.append(sched)
    if not parts:
        return isl.Schedule.from_domain(domain)
    result = parts[0]
    for p in parts[1:]:
        result = result.sequence(p)
    return result


def build_scop(fn: ir.Function, sizes: Mapping[str, int] | None = None) -> Scop:
    """The scop of ``fn``; ``sizes`` (size name -> value) fixes the parameters.

    Every key of ``sizes`` must be a size symbol of ``fn`` and every value an int >= 1
    (a ValueError says which is not); symbols absent from ``sizes`` stay free.
    """
    params = fn.size_names
    if sizes is not None:
        unknown = sorted(set(sizes) - set(params))
        if unknown:
            raise ValueError(f"not size symbols of {fn.name}: {', '.join(unknown)}")
        bad = sorted(k for k, v in sizes.items() if int(v) < 1 or int(v) != v)
        if bad:
            raise ValueError(f"sizes must be ints >= 1: {', '.join(bad)}")
    ctx = isl.Context()
    taken: set[str] = set()
    param_ids = {p: _safe(p, taken) for p in params}
    taken_t: set[str] = set()
    tensor_ids = {}
    for t in fn.tensors:
        base = t.name + "_" if _STATEMENT_NAME.fullmatch(t.name) else t.name
        tensor_ids[t.name] = _safe(base, taken_t)
    prefix = f"[{', '.join(param_ids[p] for p in params)}] -> "
    env = _Env(ctx, fn, prefix, param_ids, tensor_ids)
    context = _context(env, params, sizes)

    statements: list[Statement] = []
    for k, stage in enumerate(fn.stages):
        statements.extend(_statements(env, k, stage, len(statements), context))

    domain = isl.UnionSet.read_from_str(ctx, f"{prefix}{{ }}").intersect_params(context)
    empty = isl.UnionMap.read_from_str(ctx, f"{prefix}{{ }}")
    must_writes, reads, must_reads = empty, empty, empty
    for s in statements:
        domain = domain.union(isl.UnionSet.from_set(s.domain))
        must_writes = must_writes.union(isl.UnionMap.from_map(s.write.relation))
        for a in s.reads:
            reads = reads.union(isl.UnionMap.from_map(a.relation))
            if not a.is_may:
                must_reads = must_reads.union(isl.UnionMap.from_map(a.relation))

    return Scop(
        ctx=ctx,
        function=fn,
        params=params,
        param_ids=param_ids,
        tensor_ids=tensor_ids,
        sizes=dict(sizes) if sizes is not None else None,
        context=context,
        statements=tuple(statements),
        domain=domain,
        must_writes=must_writes,
        may_writes=must_writes,
        reads=reads,
        must_reads=must_reads,
        original_schedule=_original_schedule(statements, domain),
    )
