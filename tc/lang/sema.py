"""Semantic analysis: AST to the Halide-like IR.

Resolves names, types every expression (inserting the casts of promotion), checks
reductions, reads and writes, runs range inference and builds one IR stage per
statement. Every error carries the position of the offending token.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tc.errors import (
    TcError,
    TcNameError,
    TcRangeError,
    TcSemanticError,
    TcSyntaxError,
    TcTypeError,
    TcWarning,
)
from tc.ir import nodes as ir
from tc.ir.affine import bounds, linearize
from tc.ir.span import Span
from tc.ir.sym import Sym, smax, smin
from tc.ir.types import (
    FLOAT_LITERAL_TYPE,
    INDEX_TYPE,
    INT_LITERAL_TYPE,
    TYPE_NAMES,
    ScalarType,
    can_assign,
    math_type,
    promote,
)
from tc.lang import ast
from tc.lang.builtins import BUILTINS, MATH_BUILTINS
from tc.lang.lint import Access, StatementFacts, lint_statement
from tc.lang.original_forms import empty_dims, empty_range, extent, unwritten_reduction
from tc.lang.ranges import Constraint, compared_terms, infer, proportional

_REDUCTIONS = {"+=": "+", "*=": "*", "min=": "min", "max=": "max"}
# Words the lexer reads as keywords or types where they can be, and as names elsewhere:
# a tensor, size, index or let with one of these names could never be used.
_RESERVED = frozenset(TYPE_NAMES) | {"def", "where", "in", "exists"}
_FLOAT32_MAX = 3.4028234663852886e38


def _double_literal(e: ast.Expr) -> float | None:
    """The value of a float literal (or a negated one) cast straight to float64: the
    decimal read as a double, not first rounded to float32 (how a double constant is
    written, e.g. by the derived backward of a double program)."""
    if isinstance(e, ast.Unary) and e.op == "-" and isinstance(e.operand, ast.FloatLit):
        return -e.operand.value
    return e.value if isinstance(e, ast.FloatLit) else None


@dataclass
class _Tensor:
    name: str
    dtype: ScalarType | None
    shape: tuple[Sym, ...] | None
    role: str
    span: Span
    typed: bool = False
    written_at: Span | None = None
    shaped_by_empty: bool = False  # only empty statements wrote it: a later one reshapes


@dataclass(frozen=True)
class _ReadUse:
    """A read of a statement: whether it is evaluated only under a condition (or never:
    ``exists``), and the conditions of the ``?:`` / ``&&`` / ``||`` guarding it."""

    read: ir.Read
    guarded: bool
    conds: tuple[ir.Expr, ...] = ()


@dataclass
class _Scope:
    """Names visible while typing one statement."""

    lets: dict[str, ScalarType] = field(default_factory=dict)
    all_lets: set[str] = field(default_factory=set)
    indices: dict[str, Span] = field(default_factory=dict)
    reads: list[_ReadUse] = field(default_factory=list)
    conds: list[ir.Expr] = field(default_factory=list)  # the conditions guarding here


def check_program(
    program: ast.Program, warnings: list[TcWarning] | None = None
) -> dict[str, ir.Function]:
    """Check every definition of a program; returns the IR functions by name.

    The warnings of the text (:mod:`tc.lang.lint`) are appended to ``warnings`` when
    given; they are not emitted here, so that texts tc derives itself stay silent.
    """
    if not program.definitions:
        # Accepting it would give a unit with no entry point: a later lookup fails far
        # from the cause (an empty file, a text passed in the wrong argument).
        raise TcSyntaxError("the text has no definition; write one such as 'def "
                            "scale(float(N) X) -> (Y) { Y(i) = 2 * X(i) }'", line=1,
                            column=1, source=program.source)
    out: dict[str, ir.Function] = {}
    for d in program.definitions:
        if d.name.name in out:
            raise _error(TcNameError, f"duplicate definition '{d.name.name}'", d.name.span,
                         program.source)
        checker = _DefChecker(d, program.source)
        out[d.name.name] = checker.run()
        if warnings is not None:
            warnings.extend(checker.warnings)
    return out


def _error(cls: type[TcError], msg: str, span: Span, source: str) -> TcError:
    return cls(msg, line=span.line, column=span.column, source=source)


class _DefChecker:
    def __init__(self, d: ast.Definition, source: str) -> None:
        self.d = d
        self.source = source
        self.tensors: dict[str, _Tensor] = {}
        self.sizes: dict[str, ir.SizeSymbol] = {}
        self.size_spans: dict[str, Span] = {}
        self.stages: list[ir.Stage] = []
        self.temp_order: list[str] = []
        # Every tensor some statement writes, so that a use before its first write is
        # reported as such rather than as an undefined name or an index.
        self.lhs_names = {st.tensor.name for st in d.statements}
        self.warnings: list[TcWarning] = []

    def fail(self, cls: type[TcError], msg: str, span: Span) -> TcError:
        return _error(cls, msg, span, self.source)

    # -- declarations -------------------------------------------------------------
    def check_reserved(self, ident: ast.Ident, what: str) -> None:
        """Builtin function names, type names and keywords cannot name anything."""
        name = ident.name
        if name in BUILTINS:
            raise self.fail(TcNameError, f"'{name}' is a builtin function and cannot name "
                            f"{what}", ident.span)
        if name in _RESERVED:
            raise self.fail(TcNameError, f"'{name}' is a reserved word and cannot name "
                            f"{what}", ident.span)

    def declare_name(self, ident: ast.Ident, what: str) -> None:
        name = ident.name
        self.check_reserved(ident, f"a {what}")
        if name in self.tensors or name in self.sizes:
            prev = self.tensors[name].span if name in self.tensors else self.size_spans[name]
            raise self.fail(TcNameError, f"duplicate name '{name}' (first declared at line "
                            f"{prev.line}, column {prev.column})", ident.span)

    def scalar_type(self, ident: ast.Ident) -> ScalarType:
        return TYPE_NAMES[ident.name]

    def dims(self, dims: tuple[ast.DimDecl, ...], tensor: str, bind: bool) -> tuple[Sym, ...]:
        shape = []
        for i, dim in enumerate(dims):
            if dim.value is not None:
                shape.append(Sym.of(dim.value))
                continue
            name = dim.name
            if name not in self.sizes:
                if not bind:
                    raise self.fail(TcNameError, f"undefined size symbol '{name}' (sizes are "
                                    "bound by the input parameters)", dim.span)
                self.declare_name(ast.Ident(name, dim.span), "size")
                self.sizes[name] = ir.SizeSymbol(name, tensor, i)
                self.size_spans[name] = dim.span
            shape.append(Sym.of(name))
        return tuple(shape)

    def run(self) -> ir.Function:
        if not self.d.results:
            # A definition computes its results; without any, nothing it does is visible.
            raise self.fail(TcSemanticError, f"definition '{self.d.name.name}' has no "
                            "results; name what it computes after '->', e.g. '-> (Y)', and "
                            "write it in the body", self.d.arrow or self.d.name.span)
        for p in self.d.params:
            # Dimensions first, so that `float(A) A` is a duplicate at the tensor's name.
            shape = self.dims(p.dims, p.name.name, bind=True)
            self.declare_name(p.name, "tensor")
            self.tensors[p.name.name] = _Tensor(p.name.name, self.scalar_type(p.type_name),
                                                shape, "input", p.name.span, typed=True)
        for r in self.d.results:
            self.declare_name(r.name, "tensor")
            if r.type_name is None:
                t = _Tensor(r.name.name, None, None, "output", r.name.span)
            else:
                shape = self.dims(r.dims, r.name.name, bind=False)
                t = _Tensor(r.name.name, self.scalar_type(r.type_name), shape, "output",
                            r.name.span, typed=True)
            self.tensors[r.name.name] = t
        for st in self.d.statements:
            self.stages.append(self.statement(st))
        for r in self.d.results:
            if self.tensors[r.name.name].written_at is None:
                raise self.fail(TcSemanticError, f"result '{r.name.name}' is never written",
                                r.name.span)
        return ir.Function(
            name=self.d.name.name,
            inputs=tuple(self.decl(p.name.name) for p in self.d.params),
            outputs=tuple(self.decl(r.name.name) for r in self.d.results),
            temps=tuple(self.decl(n) for n in self.temp_order),
            stages=tuple(self.stages),
            sizes=tuple(self.sizes.values()),
            span=self.d.span,
            source=self.source,
        )

    def decl(self, name: str) -> ir.TensorDecl:
        t = self.tensors[name]
        return ir.TensorDecl(name, t.dtype, t.shape, t.role, t.span)

    # -- statements ------------------------------------------------------------------
    def statement(self, st: ast.Statement) -> ir.Stage:
        name = st.tensor.name
        self.check_reserved(st.tensor, "a tensor")
        if name in self.sizes:
            raise self.fail(TcNameError, f"'{name}' is a size symbol, not a tensor",
                            st.tensor.span)
        target = self.tensors.get(name)
        if target is not None and target.role == "input":
            raise self.fail(TcSemanticError, f"cannot write input '{name}': inputs are "
                            "read-only", st.tensor.span)
        written = target is not None and target.written_at is not None
        if st.op.endswith("=") and st.op != "=" and not written:
            # It accumulates into what the tensor starts with (original_forms).
            self.warnings.append(unwritten_reduction(st, target is None, self.source))

        scope = _Scope()
        lhs_names: list[str] = []
        for ident in st.indices:
            self.check_index_name(ident, scope)
            if ident.name in lhs_names:
                raise self.fail(TcSemanticError, f"index '{ident.name}' appears twice on the "
                                "left-hand side", ident.span)
            lhs_names.append(ident.name)
            scope.indices.setdefault(ident.name, ident.span)
        if target is not None and target.shape is not None and len(target.shape) != len(
            lhs_names
        ):
            raise self.fail(TcTypeError, f"wrong number of subscripts for '{name}': expected "
                            f"{len(target.shape)}, got {len(lhs_names)}", st.tensor.span)

        lets = [c for c in st.clauses if isinstance(c, ast.LetClause)]
        scope.all_lets = {c.name.name for c in lets}
        fixed: dict[str, tuple[Sym, Sym]] = {}
        let_values: dict[str, ir.Expr] = {}
        for c in st.clauses:
            if isinstance(c, ast.RangeClause):
                self.check_index_name(c.index, scope)
                if c.index.name in fixed:
                    raise self.fail(TcNameError, f"duplicate range for index "
                                    f"'{c.index.name}'", c.index.span)
                fixed[c.index.name] = (self.sym(c.lo), self.sym(c.hi))
                scope.indices.setdefault(c.index.name, c.index.span)
        for c in lets:
            n = c.name.name
            self.check_reserved(c.name, "a let binding")
            if (n in self.tensors or n in self.lhs_names or n in self.sizes
                    or n in scope.indices or n in let_values):
                raise self.fail(TcNameError, f"duplicate name '{n}'", c.name.span)
            value = self.expr(c.expr, scope, guarded=False)
            let_values[n] = value
            scope.lets[n] = value.type
        rhs = self.expr(st.rhs, scope, guarded=False)
        exists_reads_start = len(scope.reads)
        exists_exprs = [self.expr(c.expr, scope, guarded=True) for c in st.clauses
                        if isinstance(c, ast.ExistsClause)]
        for n in let_values:
            if n in scope.indices:
                raise self.fail(TcNameError, f"'{n}' is both a let binding and an index",
                                scope.indices[n])

        reductions = [n for n in scope.indices if n not in lhs_names]
        op, init = self.operator(st, reductions)

        # Reads of the tensor being written.
        for read in (u.read for u in scope.reads[:exists_reads_start]):
            if read.tensor != name:
                continue
            if reductions and op is not None:
                raise self.fail(TcSemanticError, f"this reduction reads '{name}', the tensor "
                                "it reduces into", read.span)
            same = tuple(ir.Var(n, "index", type=INDEX_TYPE) for n in lhs_names)
            if read.indices != same:
                raise self.fail(TcSemanticError, f"'{name}' is read at other subscripts than "
                                "it is written; the result would depend on the order of "
                                "execution", read.span)

        # Range inference. A subscript compared in a condition guarding its read
        # (`i + k - 1 >= 0 && i + k - 1 < L ? x(i + k - 1) : 0.0`) is padded by hand: its
        # constraint is weak, used only for an index nothing else constrains; otherwise
        # it would shrink the ranges to the unpadded part (docs/language.md section 4). The
        # back ends evaluate it only where the condition holds, and check it there.
        accesses: list[Access] = []
        for no, use in enumerate(scope.reads):
            compared = compared_terms(use.conds, let_values)
            shape = self.tensors[use.read.tensor].shape
            for i, sub in enumerate(use.read.indices):
                aff = linearize(sub, let_values) if compared else None
                weak = aff is not None and any(proportional(dict(aff.coeffs), c)
                                               for c in compared)
                accesses.append(Access(use.read, i, sub, shape[i], no, weak))
        constraints = [Constraint(a.subscript, a.extent, a.weak) for a in accesses]
        if target is not None and target.shape is not None and not target.shaped_by_empty:
            constraints += [
                Constraint(ir.Var(n, "index", type=INDEX_TYPE), ext)
                for n, ext in zip(lhs_names, target.shape, strict=True)
            ]
        order = lhs_names + [n for n in scope.indices if n not in lhs_names]
        ranges, unsolved = infer(order, fixed, constraints, let_values)
        if unsolved:
            u = unsolved[0]
            if u.reason == "coupled":
                why = (f"it only appears in subscripts together with other unknown indices "
                       f"({', '.join(u.partners)})")
            else:
                why = "no subscript constrains it"
            raise self.fail(TcRangeError, f"cannot infer the range of index '{u.index}': "
                            f"{why}; add 'where {u.index} in LO:HI'", scope.indices[u.index])
        domain = tuple(ir.Dim(n, *ranges[n]) for n in order)
        empty = empty_dims(domain)  # the statement does nothing: warned, not checked
        self.warnings += [empty_range(st, d, scope.indices[d.name], self.source)
                          for d in empty[:1]]
        for d in domain[: len(lhs_names)] if not empty else ():
            if d.lo.is_const and d.lo.const < 0:
                raise self.fail(TcRangeError, f"left-hand index '{d.name}' takes negative "
                                f"values ({d.lo}:{d.hi})", scope.indices[d.name])

        # Types and extents of the written tensor.
        extents = tuple(extent(d.hi) for d in domain[: len(lhs_names)])
        if target is None:
            target = _Tensor(name, None, None, "temp", st.tensor.span)
            self.tensors[name] = target
            self.temp_order.append(name)
        if target.dtype is None:
            target.dtype = rhs.type
        if target.shape is None or (target.shaped_by_empty and not empty):
            target.shape, target.shaped_by_empty = extents, bool(empty)
        elif target.shape != extents and not empty:  # an empty statement writes nothing
            where = ("its declaration" if target.written_at is None else
                     f"the statement at line {target.written_at.line}")
            raise self.fail(TcRangeError, f"inconsistent sizes for '{name}': {where} gives "
                            f"({', '.join(map(str, target.shape))}), this statement "
                            f"({', '.join(map(str, extents))})", st.tensor.span)
        if not can_assign(rhs.type, target.dtype):
            raise self.fail(TcTypeError, f"cannot assign a {rhs.type} value to '{name}' of "
                            f"type {target.dtype} without a cast (write "
                            f"{target.dtype}(...))", st.op_span)
        if target.written_at is None:
            target.written_at = st.tensor.span
        rhs = _cast(rhs, target.dtype)
        for n in reversed(list(let_values)):
            rhs = ir.Let(n, let_values[n], rhs, type=rhs.type, span=rhs.span)

        if not empty:
            self.check_static_bounds(scope.reads[:exists_reads_start], domain, let_values)
            self.warnings += lint_statement(StatementFacts(
                accesses, constraints, ranges, set(fixed), lhs_names,
                reductions if op is not None else [],
                [rhs, *let_values.values(), *exists_exprs], let_values), self.source)
        return ir.Stage(name, tuple(lhs_names), domain, rhs, op, init, span=st.span)

    def operator(self, st: ast.Statement, reductions: list[str]) -> tuple[str | None, bool]:
        if st.op == "=":
            if reductions:
                raise self.fail(TcSemanticError, f"index '{reductions[0]}' is not on the "
                                "left-hand side, so it is a reduction index: use a reduction "
                                "operator such as '+=!'", self.first_use(st, reductions[0]))
            return None, False
        init = st.op.endswith("!")
        op = _REDUCTIONS[st.op.rstrip("!")]
        if init and not reductions:
            return None, False  # `+=!` without a reduction index is `=`
        return op, init

    def first_use(self, st: ast.Statement, index: str) -> Span:
        exprs = [st.rhs] + [c.expr for c in st.clauses
                            if isinstance(c, ast.LetClause | ast.ExistsClause)]
        for e in exprs:
            for node in ast.walk(e):
                if isinstance(node, ast.Name) and node.name == index:
                    return node.span
        for c in st.clauses:
            if isinstance(c, ast.RangeClause) and c.index.name == index:
                return c.index.span
        return st.span

    def check_index_name(self, ident: ast.Ident, scope: _Scope) -> None:
        n = ident.name
        self.check_reserved(ident, "an index")
        if n in self.tensors or n in self.lhs_names:
            raise self.fail(TcNameError, f"'{n}' is a tensor and cannot be used as an index",
                            ident.span)
        if n in self.sizes:
            raise self.fail(TcNameError, f"'{n}' is a size symbol and cannot be used as an "
                            "index", ident.span)
        if n in scope.all_lets:
            raise self.fail(TcNameError, f"'{n}' is a let binding and cannot be used as an "
                            "index", ident.span)

    def check_static_bounds(self, reads, domain, lets) -> None:
        """Reject reads that are out of bounds for every size (guarded reads are exempt)."""
        box = {d.name: (d.lo, d.hi) for d in domain}
        for use in reads:
            if use.guarded:
                continue
            read = use.read
            shape = self.tensors[read.tensor].shape
            for sub, ext in zip(read.indices, shape, strict=True):
                aff = linearize(sub, lets)
                if aff is None:
                    continue
                lo, hi = bounds(aff, box)
                over = hi - ext
                if (lo.is_const and lo.const < 0) or (over.is_const and over.const >= 0):
                    raise self.fail(TcRangeError, f"subscript of '{read.tensor}' goes out of "
                                    f"bounds: it ranges over {lo}..{hi}, the extent is {ext}",
                                    sub.span or read.span)

    # -- range bounds --------------------------------------------------------------------
    def sym(self, e: ast.Expr) -> Sym:
        if isinstance(e, ast.IntLit):
            return Sym.of(e.value)
        if isinstance(e, ast.Name):
            if e.name in self.sizes:
                return Sym.of(e.name)
            raise self.fail(TcNameError, f"'{e.name}' is not a size symbol; a range bound may "
                            "only use literals and size symbols", e.span)
        if isinstance(e, ast.Unary) and e.op == "-":
            return -self.sym(e.operand)
        if isinstance(e, ast.Binary) and e.op in ("+", "-", "*", "/"):
            a, b = self.sym(e.lhs), self.sym(e.rhs)
            if e.op == "+":
                return a + b
            if e.op == "-":
                return a - b
            if e.op == "*" and (a.is_const or b.is_const):
                return a * b
            if e.op == "/" and b.is_const and b.const > 0:
                return a.floordiv(b.const)
        if isinstance(e, ast.Call) and e.func.name in ("min", "max") and len(e.args) == 2:
            args = [self.sym(a) for a in e.args]
            return smin(args) if e.func.name == "min" else smax(args)
        raise self.fail(TcTypeError, "a range bound must be an affine expression of literals "
                        "and size symbols", e.span)

    # -- expressions -----------------------------------------------------------------------
    def expr(self, e: ast.Expr, scope: _Scope, guarded: bool) -> ir.Expr:
        if isinstance(e, ast.IntLit):
            if e.value < 2**31:
                return ir.IntImm(e.value, type=INT_LITERAL_TYPE, span=e.span)
            if e.value < 2**63:
                return ir.IntImm(e.value, type=ScalarType.INT64, span=e.span)
            raise self.fail(TcTypeError, f"integer literal {e.value} does not fit in int64",
                            e.span)
        if isinstance(e, ast.FloatLit):
            if abs(e.value) > _FLOAT32_MAX:
                raise self.fail(TcTypeError, f"float literal {e.text} is out of the range of "
                                "float32", e.span)
            return ir.FloatImm(e.value, type=FLOAT_LITERAL_TYPE, span=e.span)
        if isinstance(e, ast.Name):
            return self.name(e, scope)
        if isinstance(e, ast.Call):
            if e.func.name in BUILTINS:
                return self.builtin(e, scope, guarded)
            return self.read(e, scope, guarded)
        if isinstance(e, ast.Cast):
            if len(e.args) != 1:
                raise self.fail(TcTypeError, f"a cast to {e.type_name.name} takes one "
                                f"argument, got {len(e.args)}", e.type_name.span)
            to = TYPE_NAMES[e.type_name.name]
            exact = _double_literal(e.args[0]) if to is ScalarType.FLOAT64 else None
            if exact is not None:  # float64(0.1): the double nearest the decimal
                return ir.FloatImm(exact, type=to, span=e.span)
            a = self.expr(e.args[0], scope, guarded)
            return ir.Cast(a, type=to, span=e.span)
        if isinstance(e, ast.Unary):
            a = self.expr(e.operand, scope, guarded)
            if e.op == "!":
                self.need_bool(a, "'!'", e.op_span)
                return ir.Unary("!", a, type=ScalarType.BOOL, span=e.span)
            if a.type.is_bool:
                raise self.fail(TcTypeError, "unary '-' needs a number, not bool", e.op_span)
            return ir.Unary("-", a, type=a.type, span=e.span)
        if isinstance(e, ast.Binary):
            return self.binary(e, scope, guarded)
        if isinstance(e, ast.Select):
            cond = self.expr(e.cond, scope, guarded)
            self.need_bool(cond, "the condition of '?:'", e.op_span)
            scope.conds.append(cond)
            a = self.expr(e.if_true, scope, True)
            b = self.expr(e.if_false, scope, True)
            scope.conds.pop()
            t = promote(a.type, b.type)
            return ir.Select(cond, _cast(a, t), _cast(b, t), type=t, span=e.span)
        raise AssertionError(f"unknown AST node {type(e).__name__}")

    def need_bool(self, a: ir.Expr, what: str, span: Span) -> None:
        if not a.type.is_bool:
            raise self.fail(TcTypeError, f"{what} needs a bool operand, not {a.type} (compare "
                            "it, e.g. 'x != 0')", span)

    def name(self, e: ast.Name, scope: _Scope) -> ir.Expr:
        n = e.name
        if n in scope.lets:
            return ir.Var(n, "let", type=scope.lets[n], span=e.span)
        if n in scope.all_lets:
            raise self.fail(TcNameError, f"'{n}' is used before its let binding", e.span)
        if n in self.sizes:
            return ir.Var(n, "size", type=INDEX_TYPE, span=e.span)
        if n in BUILTINS:
            raise self.fail(TcNameError, f"'{n}' is a builtin function; call it as {n}(...)",
                            e.span)
        t = self.tensors.get(n)
        if t is not None or n in self.lhs_names:
            return self.read(ast.Call(e.span, ast.Ident(n, e.span), ()), scope, False,
                             bare=True)
        scope.indices.setdefault(n, e.span)
        return ir.Var(n, "index", type=INDEX_TYPE, span=e.span)

    def read(self, e: ast.Call, scope: _Scope, guarded: bool, bare: bool = False) -> ir.Expr:
        n = e.func.name
        t = self.tensors.get(n)
        if t is None:
            if n in self.sizes:
                raise self.fail(TcTypeError, f"'{n}' is a size symbol, not a tensor",
                                e.func.span)
            if n in self.lhs_names:
                raise self.fail(TcSemanticError, f"'{n}' is read before any statement "
                                "writes it", e.func.span)
            raise self.fail(TcNameError, f"undefined tensor '{n}'", e.func.span)
        if t.written_at is None and t.role != "input":
            raise self.fail(TcSemanticError, f"'{n}' is read before any statement writes it",
                            e.func.span)
        if len(e.args) != len(t.shape):
            how = "as a bare name" if bare else f"with {len(e.args)} subscripts"
            raise self.fail(TcTypeError, f"wrong number of subscripts for '{n}': it has "
                            f"{len(t.shape)} dimensions, used {how}", e.func.span)
        subs = []
        for i, a in enumerate(e.args):
            s = self.expr(a, scope, guarded)
            if not s.type.is_int:
                raise self.fail(TcTypeError, f"subscript {i + 1} of '{n}' must be an integer, "
                                f"not {s.type}", a.span)
            subs.append(s)
        r = ir.Read(n, tuple(subs), type=t.dtype, span=e.span)
        scope.reads.append(_ReadUse(r, guarded, tuple(scope.conds)))
        return r

    def builtin(self, e: ast.Call, scope: _Scope, guarded: bool) -> ir.Expr:
        n = e.func.name
        arity = BUILTINS[n]
        if len(e.args) != arity:
            plural = "" if arity == 1 else "s"
            raise self.fail(TcTypeError, f"builtin '{n}' takes {arity} argument{plural}, got "
                            f"{len(e.args)}", e.func.span)
        args = [self.expr(a, scope, guarded) for a in e.args]
        for a, src in zip(args, e.args, strict=True):
            if a.type.is_bool:
                raise self.fail(TcTypeError, f"builtin '{n}' needs numbers, not bool", src.span)
        t = args[0].type
        for a in args[1:]:
            t = promote(t, a.type)
        if n in MATH_BUILTINS:
            t = math_type(t)
            return ir.Call(n, tuple(_cast(a, t) for a in args), type=t, span=e.span)
        return ir.Binary(n, _cast(args[0], t), _cast(args[1], t), type=t, span=e.span)

    def binary(self, e: ast.Binary, scope: _Scope, guarded: bool) -> ir.Expr:
        a = self.expr(e.lhs, scope, guarded)
        logic = e.op in ("&&", "||")
        if logic:
            scope.conds.append(a)  # the right operand is evaluated only as `a` says
        b = self.expr(e.rhs, scope, guarded or logic)
        if logic:
            scope.conds.pop()
        if e.op in ("&&", "||"):
            self.need_bool(a, f"'{e.op}'", e.op_span)
            self.need_bool(b, f"'{e.op}'", e.op_span)
            return ir.Binary(e.op, a, b, type=ScalarType.BOOL, span=e.span)
        t = promote(a.type, b.type)
        if e.op in ir.CMP_OPS:
            return ir.Binary(e.op, _cast(a, t), _cast(b, t), type=ScalarType.BOOL, span=e.span)
        if a.type.is_bool and b.type.is_bool:
            raise self.fail(TcTypeError, f"'{e.op}' on two bool values; cast them first, e.g. "
                            "int32(x)", e.op_span)
        if e.op == "%" and t.is_float:
            raise self.fail(TcTypeError, "'%' needs integer operands; use fmod for floats",
                            e.op_span)
        return ir.Binary(e.op, _cast(a, t), _cast(b, t), type=t, span=e.span)


def _cast(e: ir.Expr, t: ScalarType) -> ir.Expr:
    if e.type == t:
        return e
    if isinstance(e, ir.IntImm) and t.is_int:
        return ir.IntImm(e.value, type=t, span=e.span)
    if isinstance(e, ir.IntImm | ir.FloatImm) and t.is_float:
        return ir.FloatImm(float(e.value), type=t, span=e.span)
    return ir.Cast(e, type=t, span=e.span)
