"""Random well-formed TC definitions, as a hypothesis strategy (:func:`cases`).

A :class:`Case` is a program text with one definition ``f``, its inputs (names,
dtypes, dimensions), the value of every size symbol and how to fill the inputs
(:mod:`tc.fuzz.run` makes the tensors from the seed). Every draw goes through
hypothesis, so a failing case shrinks to a small program at small sizes.

The programs are valid by construction (the generator believes them valid):

* Every index is *anchored*: a ``where i in 0:S`` clause, or an unguarded read (or
  ``exists``) with ``i`` as a whole subscript of a dimension of extent ``S``, the
  index's *key*. Keys are extents written as TC expressions: a size symbol, a literal,
  or a derived extent from a convolution (``(N - K + 1)``: ``X(i + c)``) or a strided
  pooling (``(N / 2)``: ``X(2 * i + c)``) whose index nothing else constrains.
* Every other subscript is in bounds for every value of its indices without narrowing
  them: ``i`` or ``S - 1 - i`` for an index of the dimension's key, ``i / 2``,
  ``(i + 1) % S``, ``min(i, S - 1)``, ``0``, and indirect reads ``P(...)`` through an
  integer tensor whose values are drawn in ``0:S``. Offset and strided subscripts
  (``i + 2``, ``2 * i - 1``) appear only in guarded reads whose ``?:`` condition keeps
  them in bounds (the weak subscripts of docs/language.md section 4), except in the rare
  cases meant to raise ``TcRangeError`` (:attr:`Case.expect_range_error`: a half
  guard, an index value out of range).
* A statement's right-hand side is cast to its tensor's type, so statements writing
  one tensor agree on it; a float is cast to an integer only from an input value (not
  a computed one) clamped to ``-100:100`` (``0:100`` for unsigned types): a computed
  value may differ by an ulp between targets, and truncation would magnify that.
  For the same reason the discontinuous operations (comparisons, ``floor``, ``round``,
  ``fmod``, ``%`` ...) take only exact operands: input values, literals, indices and
  integer arithmetic.
* A tensor is never read at another point by the statement that writes it (whether
  an in-place ``O(i) = O(N - 1 - i)`` reads old values is not what is fuzzed here).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from hypothesis import strategies as st

#: Size symbols, and the sizes drawn for them (1 and primes included).
SYMBOLS = ("N", "M", "K", "L")
SIZE_VALUES = (1, 2, 3, 4, 5, 7, 11, 13, 17, 32)
#: Cap on the points of one statement's domain (PoCL runs every work-item on the CPU).
WORK_LIMIT = 40_000
FLOAT_TYPES = ("float", "double", "half", "bfloat16")
INT_TYPES = ("int32", "int64", "int8", "int16", "uint8")
VALUE_TYPES = ("float", "float", "float", "double", "half", "bfloat16", "int32", "int64",
               "int8", "uint8")
INPUT_TYPES = (*VALUE_TYPES, "bool")
#: Builtins continuous on their domain: any float argument.
SMOOTH_1 = ("exp exp2 expm1 log log2 log10 log1p sqrt rsqrt cbrt rcbrt sin cos tan atan sinh "
            "cosh tanh asinh erf erfc sigmoid fabs asin acos atanh acosh erfinv lgamma "
            "tgamma exp10 erfcinv cospi sinpi cyl_bessel_i0 cyl_bessel_i1 erfcx j0 j1 y0 y1 "
            "normcdf normcdfinv").split()
SMOOTH_2 = ("fmax", "fmin", "fdim", "hypot", "fdivide", "rhypot")
#: Smooth builtins of 3 and 4 arguments.
SMOOTH_N = {"norm3d": 3, "rnorm3d": 3, "norm4d": 4, "rnorm4d": 4}
#: Builtins with jumps: exact arguments only.
JUMPY_1 = ("floor", "ceil", "round", "trunc", "logb")
JUMPY_2 = ("fmod", "atan2", "pow", "copysign", "remainder", "nextafter")
REDUCTIONS = ("+", "*", "min", "max")
LHS_VARS = ("i", "j", "k", "l")
RED_VARS = ("r", "q")


@dataclass(frozen=True)
class InputSpec:
    """One parameter: ``dims`` are size symbols or integer literals; an index tensor
    has ``bound`` (its values are drawn in ``0:bound``, one of them out of range when
    ``out_of_range``)."""

    name: str
    dtype: str
    dims: tuple[str, ...]
    bound: str | None = None
    out_of_range: bool = False


@dataclass(frozen=True)
class Case:
    """A generated program with its sizes and how to fill its inputs."""

    text: str
    inputs: tuple[InputSpec, ...]
    sizes: tuple[tuple[str, int], ...]
    seed: int
    special: bool  # some input values are NaN, infinities or large
    expect_range_error: bool  # the generator meant some read to go out of bounds
    entry: str = "f"

    def to_json(self) -> dict:
        """A JSON-able dict (:meth:`from_json` reads it back)."""
        d = asdict(self)
        d["sizes"] = dict(self.sizes)
        return d

    @classmethod
    def from_json(cls, d: dict) -> Case:
        """The case of a :meth:`to_json` dict."""
        return cls(text=d["text"], inputs=tuple(
            InputSpec(i["name"], i["dtype"], tuple(i["dims"]), i.get("bound"),
                      i.get("out_of_range", False)) for i in d["inputs"]),
            sizes=tuple(sorted(d["sizes"].items())), seed=d["seed"], special=d["special"],
            expect_range_error=d.get("expect_range_error", False), entry=d.get("entry", "f"))

    def digest(self) -> str:
        """A short stable hash of the case."""
        return hashlib.sha1(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()[:10]


def key_value(key: str, sizes: dict[str, int]) -> int:
    """The value of an extent written as a TC expression (division floors)."""
    return int(eval(key.replace("/", "//"), {"__builtins__": {}}, dict(sizes)))  # noqa: S307


def _plain(key: str) -> bool:
    return key.isdigit() or key in SYMBOLS


@dataclass
class _Tensor:
    name: str
    dtype: str
    dims: tuple[str, ...]
    bound: str | None = None  # index tensors


class _Gen:
    """One program, drawn piece by piece (``draw`` is hypothesis's)."""

    def __init__(self, draw) -> None:
        self.draw = draw
        self.tensors: dict[str, _Tensor] = {}
        self.constraints: list[tuple[str, str]] = []  # (symbol, at most its value)
        self.domains: list[list[str]] = []  # the keys of each statement's indices
        self.expect_error = False
        self.inputs: set[str] = set()
        # The statement being drawn: its indices (name -> key), its left-hand side, the
        # tensor it writes, whether it may read that tensor (at its own point), its lets.
        self.vars: dict[str, str] = {}
        self.lhs: list[str] = []
        self.target = ""
        self.pointwise = False
        self.lets: dict[str, list[str]] = {"f": [], "i": []}

    # -- small draws ------------------------------------------------------------------------

    def pick(self, seq):
        return self.draw(st.sampled_from(list(seq)))

    def chance(self, n: int) -> bool:
        """True with probability 1/n (shrinks to False)."""
        return self.draw(st.integers(0, n - 1)) == n - 1

    # -- reads -------------------------------------------------------------------------------

    def keys(self) -> list[str]:
        out = sorted({d for t in self.tensors.values() for d in t.dims})
        return out or ["2"]

    def safe_sub(self, dim: str, indirect: bool = True) -> str:
        """A subscript in ``0:dim`` for every value of the statement's indices, that
        narrows none of them."""
        own = [v for v, k in self.vars.items() if k == dim]
        choice = self.draw(st.integers(0, 7))
        if own and choice <= 3:
            v = self.pick(own)
            return [v, f"{dim} - 1 - {v}", f"{v} / 2", f"({v} + 1) % {dim}"][choice]
        if (choice <= 5 or (choice == 6 and not indirect)) and self.vars:
            return f"min({self.pick(sorted(self.vars))}, {dim} - 1)"
        index = [t for t in self.tensors.values() if t.bound == dim]
        if choice == 6 and index and indirect:
            t = self.pick(index)
            return f"{t.name}({', '.join(self.safe_sub(d, False) for d in t.dims)})"
        return "0"

    def read(self, t: _Tensor, anchor: tuple[int, str] | None = None) -> str:
        if not t.dims:
            return t.name
        if t.name == self.target:  # only at the point being written
            return f"{t.name}({', '.join(self.lhs)})"
        subs = [anchor[1] if anchor and anchor[0] == p else self.safe_sub(d)
                for p, d in enumerate(t.dims)]
        return f"{t.name}({', '.join(subs)})"

    def readable(self, kinds: str) -> list[_Tensor]:
        """Tensors that can be read here, of the dtype kinds ``kinds`` (f, i, b)."""
        def kind(t: _Tensor) -> str:
            return "f" if t.dtype in FLOAT_TYPES else "b" if t.dtype == "bool" else "i"

        return [t for t in self.tensors.values()
                if kind(t) in kinds and (t.name != self.target or self.pointwise)]

    def guarded_read(self, t: _Tensor, kind: str) -> str:
        """``cond ? t(offset subscripts) : other``, the condition keeping the offset
        subscripts in bounds (or, rarely, only half of them: a range error)."""
        subs, conds = [], []
        for d in t.dims:
            if self.vars and self.chance(2):
                v = self.pick(sorted(self.vars))
                c = self.draw(st.integers(-2, 2))
                sub = f"{self.pick(['', '2 * '])}{v} {'+' if c >= 0 else '-'} {abs(c)}"
                if self.chance(12):
                    self.expect_error = True  # only the wrong half of the bounds
                    conds.append(f"{sub} >= 0" if c >= 0 else f"{sub} < {d}")
                else:
                    conds.append(f"{sub} < {d}" if c >= 0 else f"{sub} >= 0 && {sub} < {d}")
                subs.append(sub)
            else:
                subs.append(self.safe_sub(d))
        if not conds or t.name == self.target:
            return self.read(t)
        other = self.leaf(kind)
        return f"(({' && '.join(conds)}) ? {t.name}({', '.join(subs)}) : {other})"

    # -- expressions -------------------------------------------------------------------------

    def clamp_int(self, e: str, dtype: str = "int32") -> str:
        lo = "0.0" if dtype.startswith("uint") else "-100.0"
        return f"{dtype}(fmax(fmin({e}, 100.0), {lo}))"

    def exact(self, kind: str) -> str:
        """An exact operand: an input value, a literal, an index or a size symbol."""
        if kind == "i":
            return self.int_leaf()
        floats = [t for t in self.readable("f") if t.name in self.inputs]
        choice = self.draw(st.integers(0, 3))
        if choice <= 1 and floats:
            return self.read(self.pick(floats))
        if choice == 2 and self.vars:
            return f"float({self.pick(sorted(self.vars))})"
        return self.pick(["0.5", "1.0", "-2.0", "0.0", "3.5", "1e-3"])

    def int_leaf(self) -> str:
        ints = self.readable("i")
        choice = self.draw(st.integers(0, 5))
        if choice <= 1 and ints:
            return self.read(self.pick(ints))
        if choice == 2 and self.vars:
            return self.pick(sorted(self.vars))
        if choice == 3:
            return self.pick(sorted({d for d in self.keys() if d in SYMBOLS} | {"1"}))
        floats = [t for t in self.readable("f") if t.name in self.inputs]
        if choice == 4 and floats:
            return self.clamp_int(self.read(self.pick(floats)))
        if self.lets["i"] and self.chance(2):
            return self.pick(self.lets["i"])
        return self.pick(["0", "1", "2", "3", "-1"])

    def leaf(self, kind: str) -> str:
        if kind == "i":
            return self.int_leaf()
        choice = self.draw(st.integers(0, 6))
        floats = self.readable("f")
        if choice <= 2 and floats:
            t = self.pick(floats)
            return self.guarded_read(t, "f") if choice == 2 and t.dims else self.read(t)
        if choice == 3:
            return self.int_leaf()
        if choice == 4 and self.lets["f"]:
            return self.pick(self.lets["f"])
        return self.exact("f")

    def cond(self, depth: int) -> str:
        choice = self.draw(st.integers(0, 4))
        bools = self.readable("b")
        if choice == 4 and bools:
            return self.read(self.pick(bools))
        if choice == 3 and depth < 2:
            a, b = self.cond(depth + 1), self.cond(depth + 1)
            return self.pick([f"({a} && {b})", f"({a} || {b})", f"!({a})"])
        kind = self.pick("fi")
        op = self.pick(["<", "<=", ">", ">=", "==", "!="])
        return f"{self.exact(kind)} {op} {self.exact(kind)}"

    def expr(self, kind: str, depth: int = 0) -> str:
        if depth >= 3 or self.chance(3):
            return self.leaf(kind)
        choice = self.draw(st.integers(0, 7))

        def sub(k: str = kind) -> str:
            return self.expr(k, depth + 1)

        if choice == 0:
            return f"({sub()} {self.pick('+-*/%' if kind == 'i' else '+-*/')} {sub()})"
        if choice == 1:
            return f"({self.cond(0)} ? {sub()} : {sub()})"
        if choice == 2:
            return f"{self.pick(['min', 'max'])}({sub()}, {sub()})"
        if choice == 3:
            return f"-{sub()}"
        if kind == "i":
            if choice == 4:
                return f"{self.pick(INT_TYPES)}({sub()})"
            return f"({sub()} {self.pick('+-*')} {sub()})"
        if choice == 4:
            return f"{self.pick(SMOOTH_1)}({sub()})"
        if choice == 5:
            return f"{self.pick(SMOOTH_2)}({sub()}, {sub()})"
        if choice == 6:
            if self.chance(2):
                return f"{self.pick(JUMPY_1)}({self.exact('f')})"
            return f"{self.pick(JUMPY_2)}({self.exact('f')}, {self.exact('f')})"
        if self.chance(2):
            if self.chance(3):
                fn = self.pick(sorted(SMOOTH_N))
                return f"{fn}({', '.join(sub() for _ in range(SMOOTH_N[fn]))})"
            return f"fma({sub()}, {sub()}, {sub()})"
        return f"{self.pick(FLOAT_TYPES)}({sub()})"

    # -- statements --------------------------------------------------------------------------

    def anchor(self, v: str, key: str, kind: str) -> tuple[str | None, str | None]:
        """A read (or exists clause) making ``v`` range over ``key``, or a where clause:
        (term of the right-hand side, clause)."""
        cands = [(t, p) for t in self.readable("fib") for p, d in enumerate(t.dims) if d == key]
        if self.target in self.tensors and not self.pointwise:
            cands = [(t, p) for t, p in cands if t.name != self.target]
        if not cands or (_plain(key) and self.chance(3)):
            lo = "1" if v in RED_VARS and key != "1" and self.chance(4) else "0"
            if lo == "1" and key in SYMBOLS:
                self.constraints.append((key, "2"))  # an empty range is a TcRangeError
            return None, f"{v} in {lo}:{key}"
        t, p = self.pick(cands)
        text = self.read(t, (p, v))
        if t.dtype == "bool" or self.chance(6):
            return None, f"exists {text}"
        if t.dtype in FLOAT_TYPES and kind == "i":
            text = self.clamp_int(text)
        return text, None

    def statement(self, n: int) -> str:
        written = [t for t in self.tensors.values() if t.name.startswith("T")]
        update = bool(written) and self.chance(3)
        template = "plain"
        derived = False
        if update:
            t = self.pick(written)
            name, dtype, keys = t.name, t.dtype, list(t.dims)
            # An extent no other tensor may have is anchored by the tensor itself.
            derived = not all(_plain(k) for k in keys)
        else:
            name = f"T{len(written)}"
            dtype = self.pick(VALUE_TYPES)
            rank = self.draw(st.integers(0, 3))
            keys = [self.pick(self.keys() + ["2", "3"]) for _ in range(rank)]
            if rank and self.chance(3):
                template = self.pick(["conv", "pool"])
        kind = "f" if dtype in FLOAT_TYPES else "i"
        nred = 0 if update and derived else self.draw(st.integers(0, 2))
        plain = sorted({k for k in self.keys() if _plain(k)} | {"2"})
        red_keys = [self.pick(plain) for _ in range(nred)]
        extra: list[str] = []  # terms of the right-hand side
        clauses: list[str] = []
        self.vars, self.target, self.pointwise = {}, name, False
        self.lets = {"f": [], "i": []}
        lhs = [("i" if template != "plain" and p == 0 else LHS_VARS[p]) for p in range(len(keys))]
        self.lhs = lhs
        if template != "plain":
            symbols = [(t, p, d) for t in self.readable("fi") for p, d in enumerate(t.dims)
                       if d in SYMBOLS and t.name in self.inputs]
            if not symbols:
                template = "plain"
            else:
                t, p, big = self.pick(symbols)
                if template == "conv":
                    small = self.pick([d for d in self.keys() if d in SYMBOLS and d != big]
                                      + ["3"])
                    keys[0] = f"({big} - {small} + 1)"
                    self.constraints.append((big, small))
                else:
                    small = "2"
                    keys[0] = f"({big} / 2)"
                    self.constraints.append((big, "2"))
                self.vars["c"] = small
                clauses.append(f"c in 0:{small}")
                self.vars["i"] = keys[0]
                sub = "i + c" if template == "conv" else "2 * i + c"
                term = self.read(t, (p, sub))
                extra.append(self.clamp_int(term) if kind == "i" and t.dtype in FLOAT_TYPES
                             else term)
        for v, key in zip(lhs, keys, strict=True):
            self.vars[v] = key
        for v, key in zip(RED_VARS, red_keys, strict=False):
            self.vars[v] = key
        reduction = [v for v in self.vars if v not in lhs]
        # A statement that writes its tensor over again may read it at the same point.
        self.pointwise = update and not reduction and (derived or not self.chance(2))
        for v in list(self.vars):
            if template != "plain" and v in ("i", "c"):
                continue
            if update and self.pointwise and not _plain(self.vars[v]):
                term, clause = self.read(self.tensors[name]), None
            else:
                term, clause = self.anchor(v, self.vars[v], kind)
            if term is None and clause is None:
                raise AssertionError(f"no anchor for {v} in {self.vars[v]}")
            elif term is not None:
                extra.append(term)
            else:
                clauses.append(clause)
        self.domains.append(list(self.vars.values()))
        for k in range(self.draw(st.integers(0, 2)) if self.chance(3) else 0):
            lk = self.pick("fi")
            # "w": y0 and y1 are builtins (Bessel functions)
            clauses.append(f"w{k} = {self.expr(lk, 1)}")
            self.lets[lk].append(f"w{k}")
        rhs = self.expr(kind)
        for term in extra:
            rhs = f"{term} {self.pick('+-*' if kind == 'i' else '+-*/')} {rhs}"
        if reduction:
            red = self.pick(REDUCTIONS)
            op = {"+": "+=", "*": "*=", "min": "min=", "max": "max="}[red]
            if not update or self.chance(3):
                op += "!"
        elif update:
            op = self.pick(["=", "+=", "*=", "min=", "max="])
        else:
            op = self.pick(["=", "=", "+=!", "max=!"])
        lhs_text = f"{name}({', '.join(lhs)})" if lhs else name
        where = f" where {', '.join(clauses)}" if clauses else ""
        self.tensors[name] = _Tensor(name, dtype, tuple(keys))
        return f"    {lhs_text} {op} {dtype}({rhs}){where}"

    # -- the program ---------------------------------------------------------------------------

    def program(self) -> Case:
        draw = self.draw
        symbols = SYMBOLS[:draw(st.integers(1, len(SYMBOLS)))]
        specs: list[InputSpec] = []
        for name in "ABCD"[:draw(st.integers(1, 4))]:
            rank = draw(st.integers(0, 4))
            dims = tuple(self.pick([*symbols, *symbols, "1", "3"]) for _ in range(rank))
            specs.append(InputSpec(name, self.pick(INPUT_TYPES), dims))
        if self.chance(3):
            plain = sorted({d for s in specs for d in s.dims}) or ["2"]
            dims = tuple(self.pick([*symbols, "3"]) for _ in range(draw(st.integers(1, 2))))
            bad = self.chance(8)
            self.expect_error |= bad
            specs.append(InputSpec("P", "int32", dims, self.pick(plain), bad))
        for s in specs:
            self.tensors[s.name] = _Tensor(s.name, s.dtype, s.dims, s.bound)
        self.inputs = {s.name for s in specs}
        body = [self.statement(n) for n in range(draw(st.integers(1, 5)))]
        written = [t for t in self.tensors if t.startswith("T")]
        results = [t for t in written[:-1] if self.chance(3)] + [written[-1]]
        params = ", ".join(f"{s.dtype}({', '.join(s.dims)}) {s.name}" if s.dims
                           else f"{s.dtype} {s.name}" for s in specs)
        text = f"def f({params}) -> ({', '.join(results)}) {{\n" + "\n".join(body) + "\n}\n"
        sizes = self.sizes(tuple(s for s in symbols if any(s in i.dims for i in specs)))
        return Case(text, tuple(specs), tuple(sorted(sizes.items())),
                    draw(st.integers(0, 2**16)), self.chance(3), self.expect_error)

    def sizes(self, symbols: tuple[str, ...]) -> dict[str, int]:
        sizes = {s: self.pick(SIZE_VALUES) for s in symbols}

        def settle() -> None:
            for big, small in self.constraints:  # a convolution's input is at least its kernel
                need = int(small) if small.isdigit() else sizes[small]
                sizes[big] = max(sizes[big], need)

        def work() -> int:
            worst = 0
            for keys in self.domains:
                n = 1
                for k in keys:
                    n *= max(1, key_value(k, sizes))
                worst = max(worst, n)
            return worst

        settle()
        while work() > WORK_LIMIT:
            big = max(sizes, key=sizes.get)
            sizes[big] = max(2, sizes[big] // 2)
            for b, s in self.constraints:
                if not s.isdigit():
                    sizes[s] = min(sizes[s], sizes[b])
            settle()
        return sizes


@st.composite
def cases(draw) -> Case:
    """A hypothesis strategy of random well-formed programs with sizes and inputs."""
    return _Gen(draw).program()
