"""The Halide-like IR: typed expression trees, stages over box domains, functions.

Every node is an immutable, hashable frozen dataclass. Spans are metadata: they do
not take part in equality, so two IRs that compute the same thing compare equal.
Operands of arithmetic are already converted to one type (sema inserts the casts),
so back ends never have to reason about promotion.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field

from tc.ir.span import Span
from tc.ir.sym import Sym
from tc.ir.types import ScalarType

# -- expressions ----------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Expr:
    type: ScalarType
    span: Span | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class IntImm(Expr):
    value: int


@dataclass(frozen=True)
class FloatImm(Expr):
    value: float


@dataclass(frozen=True)
class Var(Expr):
    """An index variable, a size symbol or a let-bound name."""

    name: str
    kind: str  # "index" | "size" | "let"


@dataclass(frozen=True)
class Read(Expr):
    """An element of a tensor; ``indices`` are int expressions (empty for a scalar)."""

    tensor: str
    indices: tuple[Expr, ...]


@dataclass(frozen=True)
class Unary(Expr):
    op: str  # "-" | "!"
    a: Expr


# Binary operators: arithmetic keeps the operands' type; comparisons give bool.
ARITH_OPS = ("+", "-", "*", "/", "%", "min", "max")
CMP_OPS = ("<", "<=", ">", ">=", "==", "!=")
LOGIC_OPS = ("&&", "||")


@dataclass(frozen=True)
class Binary(Expr):
    op: str
    a: Expr
    b: Expr


@dataclass(frozen=True)
class Select(Expr):
    """``cond ? a : b``; only the chosen branch is evaluated."""

    cond: Expr
    a: Expr
    b: Expr


@dataclass(frozen=True)
class Call(Expr):
    """A math builtin; its arguments have already been cast to the computation type."""

    fn: str
    args: tuple[Expr, ...]


@dataclass(frozen=True)
class Cast(Expr):
    a: Expr


@dataclass(frozen=True)
class Let(Expr):
    name: str
    value: Expr
    body: Expr


def fresh_name(base: str, taken: set[str]) -> str:
    """``base``, or ``base`` with the first number that makes it new, added to ``taken``
    (names of the temporaries a rewrite of the IR introduces)."""
    name, n = base, 0
    while name in taken:
        n += 1
        name = f"{base}{n}"
    taken.add(name)
    return name


def names_in_use(fn: Function) -> set[str]:
    """Every name of ``fn``: tensors, sizes and the stages' indices (what a rewrite's
    new temporaries and indices must not be called: :func:`fresh_name`)."""
    taken = {t.name for t in fn.tensors} | set(fn.size_names)
    for st in fn.stages:
        taken |= {d.name for d in st.domain}
    return taken


def under_lets(e: Expr, f) -> Expr:
    """``e`` with ``f`` applied to the body of its leading ``Let`` s (a statement's
    right-hand side keeps its ``where`` bindings on top, where lowering looks for them)."""
    if isinstance(e, Let):
        body = under_lets(e.body, f)
        return Let(e.name, e.value, body, type=body.type, span=e.span)
    return f(e)


def children(e: Expr) -> tuple[Expr, ...]:
    """The direct sub-expressions of ``e``."""
    if isinstance(e, Read):
        return e.indices
    if isinstance(e, Unary | Cast):
        return (e.a,)
    if isinstance(e, Binary):
        return (e.a, e.b)
    if isinstance(e, Select):
        return (e.cond, e.a, e.b)
    if isinstance(e, Call):
        return e.args
    if isinstance(e, Let):
        return (e.value, e.body)
    return ()


def with_children(e: Expr, kids: tuple[Expr, ...]) -> Expr:
    """``e`` with its direct sub-expressions replaced (same order as :func:`children`)."""
    if isinstance(e, Read):
        return dataclasses.replace(e, indices=kids)
    if isinstance(e, Unary | Cast):
        return dataclasses.replace(e, a=kids[0])
    if isinstance(e, Binary | Select):
        names = ("a", "b") if isinstance(e, Binary) else ("cond", "a", "b")
        return dataclasses.replace(e, **dict(zip(names, kids, strict=True)))
    if isinstance(e, Call):
        return dataclasses.replace(e, args=kids)
    if isinstance(e, Let):
        return dataclasses.replace(e, value=kids[0], body=kids[1])
    return e


def walk(e: Expr) -> Iterator[Expr]:
    """Every node of ``e``, pre-order."""
    stack = [e]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(reversed(children(node)))


class Mutator:
    """Rebuilds expressions bottom-up; override ``mutate_<ClassName>`` for the nodes to change.

    The one traversal pattern of the IR: analyses subclass it and return the node
    unchanged, rewrites return new nodes.
    """

    def mutate(self, e: Expr) -> Expr:
        method = getattr(self, f"mutate_{type(e).__name__}", None)
        if method is not None:
            return method(e)
        return self.generic(e)

    def generic(self, e: Expr) -> Expr:
        kids = children(e)
        if not kids:
            return e
        new = tuple(self.mutate(k) for k in kids)
        if all(a is b for a, b in zip(new, kids, strict=True)):
            return e
        return with_children(e, new)


# -- stages and functions ----------------------------------------------------------------


@dataclass(frozen=True)
class Dim:
    """An index variable of a stage and its half-open range ``lo:hi``."""

    name: str
    lo: Sym
    hi: Sym


REDUCTION_OPS = ("+", "*", "min", "max")


def identity(op: str, dtype: ScalarType) -> int | float | bool:
    """The identity element of a reduction operator in a type."""
    if op == "+":
        return False if dtype.is_bool else 0
    if op == "*":
        return True if dtype.is_bool else 1
    if op == "min":
        return dtype.max_value()
    if op == "max":
        return dtype.min_value()
    raise ValueError(f"not a reduction operator: {op}")


@dataclass(frozen=True)
class Stage:
    """One statement: ``tensor(lhs) op= rhs`` over ``domain``.

    ``domain`` lists the left-hand indices first (in the order of ``lhs``), then the
    reduction indices. ``op`` is None for a plain assignment; ``init`` is the ``!``
    form, which first sets the left-hand region to the operator's identity.
    """

    tensor: str
    lhs: tuple[str, ...]
    domain: tuple[Dim, ...]
    rhs: Expr
    op: str | None = None
    init: bool = False
    span: Span | None = field(default=None, compare=False, repr=False)

    @property
    def reduction_dims(self) -> tuple[Dim, ...]:
        return self.domain[len(self.lhs):]

    @property
    def lhs_dims(self) -> tuple[Dim, ...]:
        return self.domain[: len(self.lhs)]

    def dim(self, name: str) -> Dim:
        for d in self.domain:
            if d.name == name:
                return d
        raise KeyError(name)


@dataclass(frozen=True)
class TensorDecl:
    """A tensor of a function: an input, an output or a temporary."""

    name: str
    dtype: ScalarType
    shape: tuple[Sym, ...]
    role: str  # "input" | "output" | "temp"
    span: Span | None = field(default=None, compare=False, repr=False)

    @property
    def rank(self) -> int:
        return len(self.shape)


@dataclass(frozen=True)
class SizeSymbol:
    """A size symbol and the input dimension that binds it."""

    name: str
    tensor: str
    dim: int


@dataclass(frozen=True)
class Function:
    """One TC definition in IR form."""

    name: str
    inputs: tuple[TensorDecl, ...]
    outputs: tuple[TensorDecl, ...]
    temps: tuple[TensorDecl, ...]
    stages: tuple[Stage, ...]
    sizes: tuple[SizeSymbol, ...]
    span: Span | None = field(default=None, compare=False, repr=False)
    source: str = field(default="", compare=False, repr=False)

    def __hash__(self) -> int:
        # Functions key the executor memo on every call: hashing the whole tree each
        # time cost ~2 us. Equal functions have equal names and stage counts, so the
        # hash stays consistent with ==, which resolves the rare collisions.
        return hash((self.name, len(self.stages), len(self.inputs)))

    def __getstate__(self) -> dict:
        # Per-process caches kept on the function (``_bind_plan``: tc.arguments) are
        # not part of it: artefacts and worker processes get the fields alone.
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    @property
    def tensors(self) -> tuple[TensorDecl, ...]:
        return self.inputs + self.outputs + self.temps

    def tensor(self, name: str) -> TensorDecl:
        for t in self.tensors:
            if t.name == name:
                return t
        raise KeyError(name)

    @property
    def size_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.sizes)
