"""Estimated global-memory traffic of a kernel AST, without running it.

The traffic is an estimate made from the kernel AST (``codegen.kernel``), without
interpreting instances. No cache is modelled: every global access that the kernel
executes counts, once per executing thread and iteration.

* An executed ``Store`` moves the bytes of the distinct global ``Read`` nodes of its
  value and indices (equal reads in one statement count once, as a compiler loads
  them once; both sides of a ``?:`` count) and the bytes it writes; a ``Store`` with
  ``op`` (``+=``, ``max=``...) also reads its target. ``Local`` initialisers and
  ``Assign`` values count their global reads. Shared and private buffers
  (``Buffer.space != "global"``) count zero, so a copy between global and shared
  memory counts its global side only.
* A loop multiplies its body's bytes by its trip count, computed from its bounds with
  the enclosing variables bound. A loop mapped to hardware ids (``mapping`` set,
  wrap-around) counts its whole range once across the launch, not once per thread.
  When the body's bytes depend on the loop variable (``min(31, M - 32 * c0 - 1)``
  bounds, an ``if (c2 == 0)`` initialisation) the body is summed exactly up to 5
  iterations, and otherwise interpolated linearly between the first two, middle and
  last two iterations: exact for constant or linear bodies and for full tiles with a
  partial last one.
* Code outside the loops mapped to an axis runs on every id of that axis; where a
  bound or a condition reads an id (``if (thread.x == 0)`` guards, strided per-thread
  loops), the bytes are summed over the ids in the same way. Integer locals (the
  global coordinates of a shared-memory copy) are evaluated for the conditions that
  follow them; a condition that cannot be evaluated (data) counts as taken.

The compulsory minimum reads every input once and writes every output once
(temporaries excluded); a gather (``embedding_sum``) can move less than it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping

from codegen import kernel as k
from tc.ir import nodes as ir
from tc.ir.types import ScalarType

log = logging.getLogger(__name__)

EXACT_TRIPS = 5  # a sum over a variable body is exact up to this many terms
MAX_SCAN = 1 << 20  # iterations scanned for a loop condition of an unknown form
Bytes = tuple[float, float]  # (read, written)
_ZERO: Bytes = (0, 0)
_BINARY: dict[str, Callable[[int, int], int | bool]] = {
    "/": lambda a, b: a // b if b else 0, "%": lambda a, b: a % b if b else 0,  # isl floors
    "+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b, "min": min,
    "max": max, "<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b, "==": lambda a, b: a == b, "!=": lambda a, b: a != b,
    "&&": lambda a, b: bool(a and b), "||": lambda a, b: bool(a or b),
}


def element_bytes(dtype: ScalarType) -> int:
    """Bytes of one element in memory (bool is stored as a byte)."""
    return max(1, dtype.bits // 8)


class _Unknown(Exception):
    """An expression whose value the estimator cannot compute (a read, a call...)."""


def _add(a: Bytes, b: Bytes) -> Bytes:
    return (a[0] + b[0], a[1] + b[1])


def _scale(a: Bytes, f: float) -> Bytes:
    return (a[0] * f, a[1] * f)


def _variables(e: ir.Expr) -> set[str]:
    """The loop variables, locals and hardware ids (``"thread.x"``) that ``e`` reads."""
    return {n.name if isinstance(n, ir.Var) else f"{n.kind}.{n.axis}" for n in ir.walk(e)
            if (isinstance(n, ir.Var) and n.kind in ("loop", "local"))
            or (isinstance(n, k.HwId) and n.kind in ("block", "thread"))}


def _conjuncts(e: ir.Expr) -> list[ir.Expr]:
    if isinstance(e, ir.Binary) and e.op == "&&":
        return _conjuncts(e.a) + _conjuncts(e.b)
    return [e]


def sum_samples(f: Callable[[int], Bytes], n: int) -> Bytes:
    """``f(0) + ... + f(n - 1)``: exact up to EXACT_TRIPS terms, else interpolated
    linearly between the values of ``f`` at 0, 1, n // 2, n - 2 and n - 1."""
    total: Bytes = _ZERO
    if n <= EXACT_TRIPS:
        for i in range(n):
            total = _add(total, f(i))
        return total
    points = sorted({0, 1, n // 2, n - 2, n - 1})
    values = [f(i) for i in points]
    total = values[-1]
    for j in range(len(points) - 1):
        (p, fa), (q, fb) = (points[j], values[j]), (points[j + 1], values[j + 1])
        m = q - p  # the terms p .. q-1, on the line from (p, fa) to (q, fb)
        total = _add(total, (m * fa[0] + (fb[0] - fa[0]) * (m - 1) / 2,
                             m * fa[1] + (fb[1] - fa[1]) * (m - 1) / 2))
    return total


class TrafficEstimator:
    """Estimated global bytes (read, written) of one launch of a kernel for ``sizes``.

    The environment of the walk binds loop variables and, once summed over, the
    hardware ids (``"thread.x"``); ``replicated`` holds the hardware axes (of more than
    one id) whose every id runs the statement at hand, each id counting once."""

    def __init__(self, kernel: k.Kernel, sizes: Mapping[str, int]) -> None:
        self.kernel = kernel
        self.sizes = {f"s_{n}": v for n, v in sizes.items()}
        self.elem = {b.name: element_bytes(b.dtype) if b.space == "global" else 0
                     for b in kernel.buffers}
        self.hw = {f"block.{a}": g for a, g in zip(k.AXES, kernel.grid, strict=True)}
        self.hw |= {f"thread.{a}": b for a, b in zip(k.AXES, kernel.block, strict=True)}
        self.int_locals = {s.name for s in k.walk_stmts(kernel.body)
                           if isinstance(s, k.Local) and s.dtype.is_int}
        self._free: dict[int, frozenset[str]] = {}
        self._own: dict[int, frozenset[str]] = {}
        self._static: dict[int, Bytes] = {}
        self._memo: dict[tuple, Bytes] = {}

    # -- expressions -------------------------------------------------------------------------
    def value(self, e: ir.Expr, env: Mapping[str, int]) -> int:
        """An integer or boolean index expression; unbound hardware ids are 0."""
        if isinstance(e, ir.IntImm):
            return e.value
        if isinstance(e, ir.Var):
            table = self.sizes if e.kind == "size" else env  # loop variables, int locals
            if e.name not in table:
                raise _Unknown(e.name)
            return table[e.name]
        if isinstance(e, k.HwId):  # a count (gridDim, blockDim) or an id
            count = {"grid": "block", "block_dim": "thread"}.get(e.kind)
            return self.hw[f"{count}.{e.axis}"] if count else env.get(f"{e.kind}.{e.axis}", 0)
        if isinstance(e, ir.Cast):
            return self.value(e.a, env)
        if isinstance(e, ir.Unary):
            v = self.value(e.a, env)
            return -v if e.op == "-" else int(not v)
        if isinstance(e, ir.Select):
            return self.value(e.a if self.value(e.cond, env) else e.b, env)
        if isinstance(e, ir.Binary) and e.op in _BINARY:
            return int(_BINARY[e.op](self.value(e.a, env), self.value(e.b, env)))
        raise _Unknown(type(e).__name__)

    def trips(self, s: k.For, env: Mapping[str, int]) -> tuple[int, int]:
        """The first value of the loop variable and the number of iterations."""
        first = self.value(s.init, env)
        upper = self._upper(s.cond, s.var, env) if s.step > 0 else None
        if upper is not None:
            return first, max(0, (upper - first) // s.step + 1)
        n = 0  # a condition of another form: scan it (up to MAX_SCAN iterations)
        while n < MAX_SCAN and self.value(s.cond, {**env, s.var: first + n * s.step}):
            n += 1
        return first, n

    def _upper(self, cond: ir.Expr, var: str, env: Mapping[str, int]) -> int | None:
        """The last value allowed by ``var <= e``, ``var < e`` or a conjunction of them."""
        bounds = []
        for c in _conjuncts(cond):
            if not isinstance(c, ir.Binary):
                return None
            flipped = {">=": "<=", ">": "<"}.get(c.op)
            lhs, op, rhs = (c.b, flipped, c.a) if flipped else (c.a, c.op, c.b)
            if op not in ("<=", "<") or not (isinstance(lhs, ir.Var) and lhs.name == var):
                return None
            bounds.append(self.value(rhs, env) - (op == "<"))
        return min(bounds)

    # -- statements --------------------------------------------------------------------------
    def _int_local(self, s: k.Stmt) -> bool:
        return isinstance(s, k.Local | k.Assign) and s.name in self.int_locals

    def _bind(self, s: k.Local | k.Assign, env: dict[str, int]) -> dict[str, int]:
        try:
            value = s.init if isinstance(s, k.Local) else s.value
            if value is None:
                raise _Unknown(s.name)
            return {**env, s.name: self.value(value, env)}
        except _Unknown:
            return {n: v for n, v in env.items() if n != s.name}

    def own(self, s: k.For | k.If) -> frozenset[str]:
        """The variables and ids a loop's bounds or a condition read."""
        if id(s) not in self._own:
            exprs = (s.init, s.cond) if isinstance(s, k.For) else (s.cond,)
            self._own[id(s)] = frozenset().union(*map(_variables, exprs))
        return self._own[id(s)]

    def free(self, s: k.Stmt) -> frozenset[str]:
        """The variables and ids the bytes of ``s`` depend on (bounds and conditions)."""
        if id(s) not in self._free:
            inner: frozenset[str] = frozenset()
            defined: set[str] = set()
            for c in k.children(s):  # in a block, an int local stands for its value
                if self._int_local(c):
                    value = c.init if isinstance(c, k.Local) else c.value
                    inner |= (_variables(value) if value else set()) - defined
                    defined.add(c.name)
                else:
                    inner |= self.free(c) - defined
            if isinstance(s, k.For):
                inner = self.own(s) | (inner - {s.var})
            self._free[id(s)] = self.own(s) | inner if isinstance(s, k.If) else inner
        return self._free[id(s)]

    def static_bytes(self, s: k.Store | k.Local | k.Assign) -> Bytes:
        """The bytes one execution of a statement moves."""
        if id(s) not in self._static:
            reads: set[ir.Read] = set()
            if isinstance(s, k.Store) and s.op is not None:
                reads.add(ir.Read(s.buffer, s.indices, type=s.value.type))
            exprs = ((s.value, *s.indices) if isinstance(s, k.Store) else
                     (s.value,) if isinstance(s, k.Assign) else (s.init,) if s.init else ())
            reads |= {n for e in exprs for n in ir.walk(e) if isinstance(n, ir.Read)}
            written = self.elem.get(s.buffer, 0) if isinstance(s, k.Store) else 0
            self._static[id(s)] = (sum(self.elem.get(r.tensor, 0) for r in reads), written)
        return self._static[id(s)]

    def count(self, s: k.Stmt, env: dict[str, int], replicated: frozenset[str]) -> Bytes:
        """The bytes ``s`` moves across the launch for the bindings of ``env``."""
        if isinstance(s, k.Store | k.Local | k.Assign):
            copies = math.prod(self.hw[a] for a in replicated)
            return _scale(self.static_bytes(s), copies)
        if isinstance(s, k.Block):
            total: Bytes = _ZERO
            for c in s.body:
                total = _add(total, self.count(c, env, replicated))
                if self._int_local(c):  # later statements see its value (if computable)
                    env = self._bind(c, env)
            return total
        if isinstance(s, k.Scope):
            return self.count(s.body, env, replicated)
        if not isinstance(s, k.For | k.If):
            return _ZERO  # Barrier, Comment
        ids = sorted(self.own(s) & replicated)
        if ids:  # bounds or a condition depending on an id: sum over that id's values
            axis, rest = ids[0], replicated - {ids[0]}
            return sum_samples(lambda h: self.count(s, {**env, axis: h}, rest), self.hw[axis])
        if isinstance(s, k.If):
            try:
                taken = self.value(s.cond, env)
            except _Unknown:  # a data-dependent condition: count the then branch
                taken = True
            branch = s.then if taken else s.otherwise
            return self.count(branch, env, replicated) if branch is not None else _ZERO
        key = (id(s), replicated, tuple(env.get(v) for v in sorted(self.free(s))))
        if key not in self._memo:
            self._memo[key] = self._loop(s, env, replicated)
        return self._memo[key]

    def _loop(self, s: k.For, env: dict[str, int], replicated: frozenset[str]) -> Bytes:
        try:
            first, n = self.trips(s, env)
        except _Unknown as e:  # bounds read data: count one iteration
            log.warning("%s: loop %s has unknown bounds (%s)", self.kernel.name, s.var, e)
            first, n = 0, 1
        if s.mapping is not None:  # the whole range runs once across the axis's ids
            replicated = replicated - {s.mapping}

        def body(i: int) -> Bytes:
            return self.count(s.body, {**env, s.var: first + i * s.step}, replicated)

        if n > 0 and s.var not in self.free(s.body):
            return _scale(body(0), n)
        return sum_samples(body, n)


def estimate_traffic(kernel: k.Kernel, sizes: Mapping[str, int]) -> tuple[int, int]:
    """Estimated global bytes (read, written) of one launch of ``kernel``."""
    est = TrafficEstimator(kernel, sizes)
    read, written = est.count(kernel.body, {}, frozenset(a for a, n in est.hw.items() if n > 1))
    return round(read), round(written)


def compulsory_bytes(fn: ir.Function, sizes: Mapping[str, int]) -> int:
    """Every input read once and every output written once (no temporaries)."""
    return sum(math.prod(s.evaluate(sizes) for s in t.shape) * element_bytes(t.dtype)
               for t in fn.inputs + fn.outputs)
