"""One statement's right-hand side as the scalar ops of a ``linalg.generic`` body.

Every IR expression becomes ``arith`` / ``math`` ops on scalars with the reference
interpreter's semantics (:mod:`tc.ir.interpret`), which is not always MLIR's:

* integer ``/`` and ``%`` round toward negative infinity (``arith.floordivsi``, and
  ``arith.remsi`` corrected to the divisor's sign); a zero divisor gives 0 and
  ``MIN / -1`` wraps, as in the interpreter, where MLIR's ops are undefined; float
  ``%`` is numpy's (the divisor's sign), ``arith.remf`` corrected;
* float ``min``/``max``/``fmin``/``fmax`` ignore a NaN operand (numpy's ``fmin``):
  ``arith.minnumf``/``arith.maxnumf``, not ``arith.minimumf``/``maximumf`` (which
  propagate NaN);
* comparisons are ordered (false on NaN) except ``!=`` (``une``: true on NaN);
* a float-to-integer cast maps NaN and infinities to 0 (``arith.fptosi`` alone
  gives poison); out-of-range finite values are undefined in both;
* bfloat16 values are converted through float32 (the interpreter rounds float32 to
  bfloat16), and half-precision math builtins compute in float32, as CUDA does;
* ``&&``/``||`` and ``?:`` evaluate both operands: harmless, since every read the
  exporter cannot prove in bounds is clamped (:mod:`tc.mlir.export`).

Builtins with no ``math`` op are expanded (``rsqrt``, ``sigmoid``, ``exp10``,
``log10``, ``fdim``, ``hypot``, ...; :data:`EXPANDED`), and so are ``asinh``,
``acosh``, ``cbrt``, ``atan2`` and ``pow``, whose ``math`` ops IREE lowers wrongly for large,
zero, negative or infinite arguments (``asinh(-inf)``, ``atan2(0, 0)`` and
``pow(-2, 3)`` are NaN there). The special functions (the gamma and Bessel
functions, the inverse error functions, ``erfcx``, ``nextafter``, ``remainder``) are
expanded by :mod:`tc.mlir.special`, for float and half (not float64, but
``nextafter``: a positioned :class:`TcExportError`). A builtin with no equivalent at
all would go in :data:`NOT_EXPORTABLE` (none today) and raise a positioned
:class:`TcExportError`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from tc.errors import TcError
from tc.ir import nodes as ir
from tc.ir.types import ScalarType
from tc.mlir.special import SPECIAL, float64_exportable
from tc.mlir.special import expand as expand_special
from tc.mlir.types import constant, element_type

__all__ = ["Body", "EXPANDED", "NOT_EXPORTABLE", "TcExportError", "math_ops"]

F32 = ScalarType.FLOAT32
BOOL = ScalarType.BOOL


class TcExportError(TcError):
    """A definition (or one construct of it) that the MLIR export cannot express."""


#: Builtins that map to one ``math`` (or ``arith``) op of the same semantics.
_DIRECT = {
    "exp": "math.exp", "exp2": "math.exp2", "expm1": "math.expm1", "log": "math.log",
    "log2": "math.log2", "log1p": "math.log1p", "sqrt": "math.sqrt",
    "sin": "math.sin", "cos": "math.cos", "tan": "math.tan", "asin": "math.asin",
    "acos": "math.acos", "atan": "math.atan",
    "tanh": "math.tanh", "atanh": "math.atanh",
    "erf": "math.erf", "erfc": "math.erfc", "fabs": "math.absf", "floor": "math.floor",
    "ceil": "math.ceil", "round": "math.round", "trunc": "math.trunc",
    "copysign": "math.copysign",
    "fmax": "arith.maxnumf", "fmin": "arith.minnumf", "fmod": "arith.remf", "fma": "math.fma",
}
#: Builtins written as several ops (see :meth:`Body._expand`).
EXPANDED = ("sinh", "cosh", "asinh", "acosh", "cbrt", "atan2", "pow", "exp10", "log10",
            "rsqrt", "rcbrt", "sigmoid", "fdim", "hypot", "rhypot", "fdivide", "norm3d",
            "norm4d", "rnorm3d", "rnorm4d", "cospi", "sinpi", "normcdf", "logb")
#: Builtins the export refuses (no MLIR op, no expansion): none today; a builtin added
#: to the language without an export belongs here until it has one.
NOT_EXPORTABLE: tuple[str, ...] = ()


def math_ops() -> dict[str, str]:
    """Builtin name -> the MLIR op it becomes (expanded ones: ``"expanded"``; the special
    functions of :mod:`tc.mlir.special`: ``"expanded (special)"``)."""
    return {**_DIRECT, **{n: "expanded" for n in EXPANDED},
            **{n: "expanded (special)" for n in SPECIAL}}


_CMP_F = {"<": "olt", "<=": "ole", ">": "ogt", ">=": "oge", "==": "oeq", "!=": "une"}
_CMP_S = {"<": "slt", "<=": "sle", ">": "sgt", ">=": "sge", "==": "eq", "!=": "ne"}
_CMP_U = {"<": "ult", "<=": "ule", ">": "ugt", ">=": "uge", "==": "eq", "!=": "ne"}


class Body:
    """Emits the scalar ops of one ``linalg.generic`` region into :attr:`lines`.

    ``fresh(hint)`` names SSA values (unique in the whole function); ``read(e, lets,
    env)`` returns the value of a tensor read and ``var(e)`` of an index or size
    symbol (the stage decides how: a block argument, ``tensor.extract``,
    ``linalg.index``); ``fail(message, span)`` raises the positioned error.
    """

    def __init__(self, fresh: Callable[[str], str], read, var, fail) -> None:
        self.lines: list[str] = []
        self._fresh = fresh
        self._read = read
        self._var = var
        self.fail = fail
        self._consts: dict[tuple, str] = {}

    # -- helpers -----------------------------------------------------------------
    def op(self, text: str, hint: str = "v") -> str:
        name = self._fresh(hint)
        self.lines.append(f"{name} = {text}")
        return name

    def const(self, value, t: ScalarType) -> str:
        key = (repr(value), t)
        name = self._consts.get(key)
        if name is None:
            name = self._consts[key] = self.op(constant(value, t), "c")
        return name

    def index_const(self, value: int) -> str:
        key = (value, "index")
        name = self._consts.get(key)
        if name is None:
            name = self._consts[key] = self.op(f"arith.constant {value} : index", "c")
        return name

    def bin(self, opname: str, a: str, b: str, t: ScalarType) -> str:
        return self.op(f"{opname} {a}, {b} : {element_type(t)}")

    def select(self, c: str, a: str, b: str, t: ScalarType) -> str:
        return self.op(f"arith.select {c}, {a}, {b} : {element_type(t)}")

    def cmp(self, pred: str, a: str, b: str, t: ScalarType) -> str:
        kind = "arith.cmpf" if t.is_float else "arith.cmpi"
        return self.op(f"{kind} {pred}, {a}, {b} : {element_type(t)}")

    # -- expressions ---------------------------------------------------------------
    def expr(self, e: ir.Expr, lets: dict[str, ir.Expr], env: dict[str, str]) -> str:
        """The SSA value of ``e``; ``lets`` holds the let-bound expressions in scope
        (for the affine analysis of reads), ``env`` their SSA values."""
        if isinstance(e, ir.IntImm):
            return self.const(e.value, e.type)
        if isinstance(e, ir.FloatImm):
            return self.const(e.value, e.type)
        if isinstance(e, ir.Var):
            if e.kind == "let":
                return env[e.name]
            return self._var(e)
        if isinstance(e, ir.Let):
            lets, env = dict(lets), dict(env)
            while isinstance(e, ir.Let):
                env[e.name] = self.expr(e.value, lets, env)
                lets[e.name] = e.value
                e = e.body
            return self.expr(e, lets, env)
        if isinstance(e, ir.Read):
            return self._read(e, lets, env)
        if isinstance(e, ir.Unary):
            return self._unary(e, self.expr(e.a, lets, env))
        if isinstance(e, ir.Cast):
            return self.cast(self.expr(e.a, lets, env), e.a.type, e.type)
        if isinstance(e, ir.Binary):
            a, b = self.expr(e.a, lets, env), self.expr(e.b, lets, env)
            return self._binary(e, a, b)
        if isinstance(e, ir.Select):
            c = self.expr(e.cond, lets, env)
            a, b = self.expr(e.a, lets, env), self.expr(e.b, lets, env)
            return self.select(c, a, b, e.type)
        if isinstance(e, ir.Call):
            return self._call(e, [self.expr(a, lets, env) for a in e.args])
        self.fail(f"cannot export {type(e).__name__}", e.span)
        raise AssertionError("unreachable")

    def _unary(self, e: ir.Unary, a: str) -> str:
        t = e.type
        if e.op == "!":
            return self.bin("arith.xori", a, self.const(True, BOOL), BOOL)
        if t.is_float:
            return self.op(f"arith.negf {a} : {element_type(t)}")
        if t.is_bool:
            return a  # -b is b in arithmetic modulo 2
        return self.bin("arith.subi", self.const(0, t), a, t)

    def _binary(self, e: ir.Binary, a: str, b: str) -> str:
        op, t = e.op, e.a.type
        if op in _CMP_F:
            table = _CMP_F if t.is_float else (_CMP_S if t.is_signed else _CMP_U)
            return self.cmp(table[op], a, b, t)
        if op in ("&&", "||"):
            return self.bin("arith.andi" if op == "&&" else "arith.ori", a, b, BOOL)
        if op in ("min", "max"):
            if t.is_float:
                name = "arith.minnumf" if op == "min" else "arith.maxnumf"
            elif t.is_signed:
                name = "arith.minsi" if op == "min" else "arith.maxsi"
            else:
                name = "arith.minui" if op == "min" else "arith.maxui"
            return self.bin(name, a, b, t)
        if t.is_bool:
            if op == "+":
                return self.bin("arith.ori", a, b, t)
            if op == "*":
                return self.bin("arith.andi", a, b, t)
            self.fail(f"cannot export '{op}' on bool operands", e.span)
        if t.is_float:
            if op == "%":
                return self._fmod_floor(a, b, t)
            name = {"+": "arith.addf", "-": "arith.subf", "*": "arith.mulf", "/": "arith.divf"}
            return self.bin(name[op], a, b, t)
        if op in ("+", "-", "*"):
            return self.bin({"+": "arith.addi", "-": "arith.subi", "*": "arith.muli"}[op], a, b,
                            t)
        return self._int_div(op, a, b, t)

    def _int_div(self, op: str, a: str, b: str, t: ScalarType) -> str:
        """Floor division / modulo; 0 for a zero divisor; ``MIN / -1`` wraps."""
        zero, one = self.const(0, t), self.const(1, t)
        bz = self.cmp("eq", b, zero, t)
        if not t.is_signed:
            safe = self.select(bz, one, b, t)
            r = self.bin("arith.divui" if op == "/" else "arith.remui", a, safe, t)
            return self.select(bz, zero, r, t)
        bm1 = self.cmp("eq", b, self.const(-1, t), t)
        safe = self.select(self.bin("arith.ori", bz, bm1, BOOL), one, b, t)
        if op == "/":
            q = self.bin("arith.floordivsi", a, safe, t)
            q = self.select(bm1, self.bin("arith.subi", zero, a, t), q, t)
            return self.select(bz, zero, q, t)
        r = self.bin("arith.remsi", a, safe, t)
        fix = self.bin("arith.andi", self.cmp("ne", r, zero, t),
                       self.bin("arith.xori", self.cmp("slt", r, zero, t),
                                self.cmp("slt", b, zero, t), BOOL), BOOL)
        r = self.select(fix, self.bin("arith.addi", r, b, t), r, t)
        return self.select(bz, zero, r, t)

    def _fmod_floor(self, a: str, b: str, t: ScalarType) -> str:
        """numpy's float remainder: the sign of the divisor; 0 for a zero divisor."""
        zero = self.const(0.0, t)
        r = self.bin("arith.remf", a, b, t)
        fix = self.bin("arith.andi", self.cmp("une", r, zero, t),
                       self.bin("arith.xori", self.cmp("olt", r, zero, t),
                                self.cmp("olt", b, zero, t), BOOL), BOOL)
        r = self.select(fix, self.bin("arith.addf", r, b, t), r, t)
        return self.select(self.cmp("oeq", b, zero, t), zero, r, t)

    # -- casts -------------------------------------------------------------------------
    def cast(self, a: str, s: ScalarType, t: ScalarType) -> str:
        """``a`` of type ``s`` converted to ``t`` as the interpreter's ``Cast``."""
        if s == t:
            return a
        es, et = element_type(s), element_type(t)
        if t.is_bool:
            if s.is_float:
                return self.cmp("une", a, self.const(0.0, s), s)
            return self.cmp("ne", a, self.const(0, s), s)
        if s.is_bool:
            if t.is_float:
                return self.cast(self.op(f"arith.uitofp {a} : i1 to f32"), F32, t)
            return self.op(f"arith.extui {a} : i1 to {et}")
        if s.is_float and t.is_float:
            if s is ScalarType.BFLOAT16 or t is ScalarType.BFLOAT16 or s.bits == t.bits:
                if s is not F32 and t is not F32:  # through float32, as the interpreter
                    return self.cast(self.cast(a, s, F32), F32, t)
            if t.bits > s.bits:
                return self.op(f"arith.extf {a} : {es} to {et}")
            return self.op(f"arith.truncf {a} : {es} to {et}")
        if t.is_float:  # integer to float
            if t is ScalarType.BFLOAT16:
                return self.cast(self.cast(a, s, F32), F32, t)
            conv = "arith.sitofp" if s.is_signed else "arith.uitofp"
            return self.op(f"{conv} {a} : {es} to {et}")
        if s.is_float:  # float to integer: NaN and infinities give 0
            if s is ScalarType.BFLOAT16:
                a, s, es = self.cast(a, s, F32), F32, "f32"
            conv = "arith.fptosi" if t.is_signed else "arith.fptoui"
            v = self.op(f"{conv} {a} : {es} to {et}")
            finite = self.cmp("olt", self.op(f"math.absf {a} : {es}"),
                              self.const(math.inf, s), s)
            return self.select(finite, v, self.const(0, t), t)
        if t.bits > s.bits:  # integer to integer
            return self.op(f"arith.{'extsi' if s.is_signed else 'extui'} {a} : {es} to {et}")
        if t.bits < s.bits:
            return self.op(f"arith.trunci {a} : {es} to {et}")
        return a  # same width: signless, the same bits

    # -- builtins ----------------------------------------------------------------------
    def _call(self, e: ir.Call, args: list[str]) -> str:
        t = e.type
        if e.fn in ("min", "max"):  # generic builtins: as the binary operators
            return self._binary(ir.Binary(e.fn, e.args[0], e.args[1], type=t, span=e.span),
                                *args)
        known = e.fn in _DIRECT or e.fn in EXPANDED or e.fn in SPECIAL
        if e.fn in NOT_EXPORTABLE or not known:
            self.fail(f"the builtin '{e.fn}' has no MLIR equivalent (no op of the math "
                      "dialect, no expansion): it cannot be exported", e.span)
        if e.fn in SPECIAL and t is ScalarType.FLOAT64 and not float64_exportable(e.fn):
            self.fail(f"the builtin '{e.fn}' cannot be exported for float64: its expansion "
                      "is float accurate and needs float64 math that IREE cannot link "
                      "(no libm); use float32", e.span)
        work = F32 if t in (ScalarType.FLOAT16, ScalarType.BFLOAT16) else t
        args = [self.cast(a, t, work) for a in args]
        if e.fn in SPECIAL:
            r = expand_special(self, e.fn, args, work)
        elif e.fn in _DIRECT:
            r = self._direct(e.fn, args, work)
        else:
            r = self._expand(e.fn, args, work)
        return self.cast(r, work, t)

    def _direct(self, fn: str, args: list[str], t: ScalarType) -> str:
        if t is ScalarType.FLOAT64 and fn in ("log1p", "expm1"):
            return self._log1p_expm1(fn, args[0], t)
        if t is ScalarType.FLOAT64 and fn == "atanh":
            # IREE's float64 math.atanh is float accurate: log1p(2a / (1 - a)) / 2 with
            # a = |x| (+-1: +-inf; beyond: NaN), then x's sign.
            x, one = args[0], self.const(1.0, t)
            a = self.op(f"math.absf {x} : f64")
            q = self.bin("arith.divf", self.bin("arith.addf", a, a, t),
                         self.bin("arith.subf", one, a, t), t)
            r = self.bin("arith.mulf", self.const(0.5, t), self._direct("log1p", [q], t), t)
            return self._direct("copysign", [r, x], t)
        return self.op(f"{_DIRECT[fn]} {', '.join(args)} : {element_type(t)}")

    def _log1p_expm1(self, fn: str, x: str, t: ScalarType) -> str:
        """Kahan's forms of float64 ``log1p``/``expm1`` through ``log``/``exp``: IREE's
        float64 ``math.log1p``/``math.expm1`` are only float accurate and give 0 below
        about 1e-17 (``log1p(1e-300)`` = 0), while its float64 log and exp are exact."""
        one, inf = self.const(1.0, t), self.const(math.inf, t)
        if fn == "log1p":  # x * log(u) / (u - 1), u = 1 + x; x itself where u rounds to 1
            u = self.bin("arith.addf", one, x, t)
            r = self.bin("arith.mulf", x, self.bin(
                "arith.divf", self._direct("log", [u], t),
                self.bin("arith.subf", u, one, t), t), t)
        else:  # (u - 1) * x / log(u), u = exp(x); x where u rounds to 1, -1 where u - 1 does
            u = self._direct("exp", [x], t)
            um1 = self.bin("arith.subf", u, one, t)
            r = self.bin("arith.mulf", um1, self.bin(
                "arith.divf", x, self._direct("log", [u], t), t), t)
            r = self.select(self.cmp("oeq", um1, self.const(-1.0, t), t),
                            self.const(-1.0, t), r, t)
        r = self.select(self.cmp("oeq", u, one, t), x, r, t)
        return self.select(self.cmp("oeq", u, inf, t), inf, r, t)  # x = inf (inf / inf)

    def _expand(self, fn: str, a: list[str], t: ScalarType) -> str:
        one = self.const(1.0, t)
        x = a[0]

        def mul(p: str, q: str) -> str:
            return self.bin("arith.mulf", p, q, t)

        def recip(p: str) -> str:
            return self.bin("arith.divf", one, p, t)

        et = element_type(t)
        if fn in ("asinh", "acosh"):  # math.asinh/acosh: overflow for large |x| in IREE
            big = self.const(2.0 ** 28, t)
            ax = self.op(f"math.absf {x} : {et}") if fn == "asinh" else x
            far = self.bin("arith.addf", self._direct("log", [ax], t),
                           self.const(math.log(2.0), t), t)
            sq = mul(ax, ax)
            if fn == "asinh":  # log1p(a + a^2 / (1 + sqrt(1 + a^2))), with x's sign
                root = self._direct("sqrt", [self.bin("arith.addf", one, sq, t)], t)
                near = self._direct("log1p", [self.bin(
                    "arith.addf", ax, self.bin("arith.divf", sq, self.bin(
                        "arith.addf", one, root, t), t), t)], t)
            else:  # log(x + sqrt(x^2 - 1)); NaN below 1
                near = self._direct("log", [self.bin("arith.addf", x, self._direct(
                    "sqrt", [self.bin("arith.subf", sq, one, t)], t), t)], t)
            r = self.select(self.cmp("ogt", ax, big, t), far, near, t)
            if fn == "asinh":
                return self._direct("copysign", [r, x], t)
            return self.select(self.cmp("olt", x, one, t), self.const(math.nan, t), r, t)
        if fn == "cbrt":  # math.cbrt gives NaN for infinities in IREE
            inf = self.cmp("oeq", self.op(f"math.absf {x} : {et}"), self.const(math.inf, t), t)
            return self.select(inf, x, self.op(f"math.cbrt {x} : {et}"), t)
        if fn == "atan2":  # IREE's math.atan2 is NaN at (0, 0) and at two infinities
            y, xx = a
            r = self.op(f"math.atan2 {y}, {xx} : {et}")
            zero, inf = self.const(0.0, t), self.const(math.inf, t)
            negx = self.cmp("olt", self._direct("copysign", [one, xx], t), zero, t)

            def signed(v: float) -> str:
                return self._direct("copysign", [self.const(v, t), y], t)

            at_zeros = self.select(negx, signed(math.pi), signed(0.0), t)
            at_infs = self.select(self.cmp("ogt", xx, zero, t), signed(math.pi / 4),
                                  signed(3 * math.pi / 4), t)
            both_zero = self.bin("arith.andi", self.cmp("oeq", y, zero, t),
                                 self.cmp("oeq", xx, zero, t), BOOL)
            both_inf = self.bin("arith.andi",
                                self.cmp("oeq", self._direct("fabs", [y], t), inf, t),
                                self.cmp("oeq", self._direct("fabs", [xx], t), inf, t), BOOL)
            r = self.select(both_inf, at_infs, r, t)
            return self.select(both_zero, at_zeros, r, t)
        if fn == "pow":
            return self._pow(a[0], a[1], t)
        if fn == "exp10":
            return self.op(f"math.powf {self.const(10.0, t)}, {x} : {et}")
        if fn == "log10":  # log2(x) * log10(2): math.log10 has no CPU lowering in IREE
            return mul(self._direct("log2", [x], t), self.const(math.log10(2.0), t))
        if fn == "rsqrt":
            return recip(self._direct("sqrt", [x], t))
        if fn == "rcbrt":
            return recip(self._expand("cbrt", [x], t))
        if fn == "sigmoid":
            neg = self.op(f"arith.negf {x} : {element_type(t)}")
            return recip(self.bin("arith.addf", one, self._direct("exp", [neg], t), t))
        if fn == "fdivide":
            return self.bin("arith.divf", a[0], a[1], t)
        if fn == "fdim":
            zero = self.const(0.0, t)
            diff = self.select(self.cmp("ogt", a[0], a[1], t),
                               self.bin("arith.subf", a[0], a[1], t), zero, t)
            nan = self.cmp("uno", a[0], a[1], t)
            return self.select(nan, self.bin("arith.addf", a[0], a[1], t), diff, t)
        if fn in ("hypot", "rhypot", "norm3d", "norm4d", "rnorm3d", "rnorm4d"):
            r = self._norm(a, t)
            return recip(r) if fn.startswith("r") else r
        if fn in ("sinh", "cosh"):  # IREE's overflow near the top of the range
            big = self.const(80.0 if t.bits <= 32 else 700.0, t)
            ax = self.op(f"math.absf {x} : {et}")
            root = self._direct("exp", [mul(ax, self.const(0.5, t))], t)
            half_exp = mul(mul(root, self.const(0.5, t)), root)  # exp(|x|) / 2, no overflow
            far = self._direct("copysign", [half_exp, x], t) if fn == "sinh" else half_exp
            if fn == "sinh" and t is ScalarType.FLOAT64:
                # IREE's float64 math.sinh is float accurate (1e-7 off near 0):
                # (e + e / (e + 1)) / 2 with e = expm1(|x|), then x's sign.
                e = self._direct("expm1", [ax], t)
                near = self._direct("copysign", [mul(self.const(0.5, t), self.bin(
                    "arith.addf", e, self.bin("arith.divf", e, self.bin(
                        "arith.addf", e, one, t), t), t)), x], t)
            else:
                near = self.op(f"math.{fn} {x} : {et}")
            return self.select(self.cmp("ogt", ax, big, t), far, near, t)
        if fn in ("cospi", "sinpi"):  # reduced exactly to [-1/2, 1/2] first
            two = self.const(2.0, t)
            r = self.bin("arith.subf", x, mul(two, self._direct("round", [mul(
                x, self.const(0.5, t))], t)), t)  # x - 2 round(x / 2): [-1, 1], exact
            if fn == "cospi":  # cospi(r) = sinpi(1/2 - |r|)
                r = self.bin("arith.subf", self.const(0.5, t), self._direct("fabs", [r], t), t)
            far = self.bin("arith.subf", self._direct("copysign", [one, r], t), r, t)
            r = self.select(self.cmp("ogt", self._direct("fabs", [r], t), self.const(0.5, t),
                                     t), far, r, t)
            big = self.cmp("oeq", self._direct("fabs", [x], t), self.const(math.inf, t), t)
            r = self.select(big, self.const(math.nan, t), r, t)
            return self._direct("sin", [mul(r, self.const(math.pi, t))], t)
        if fn == "normcdf":  # erfc(-x / sqrt(2)) / 2
            arg = mul(x, self.const(-math.sqrt(0.5), t))
            return mul(self._direct("erfc", [arg], t), self.const(0.5, t))
        if fn == "logb":  # floor(log2(|x|)): exact for normal numbers
            return self._direct("floor", [self._direct("log2", [self._direct("fabs", [x], t)],
                                                        t)], t)
        raise AssertionError(fn)

    def _pow(self, x: str, y: str, t: ScalarType) -> str:
        """C's ``pow``: ``math.powf`` on ``|x|`` (IREE's is NaN for every negative base),
        the sign of an odd integer power, NaN for a negative base and a non-integer
        power, 1 for ``pow(x, 0)`` and ``pow(1, y)`` (NaN included)."""
        et = element_type(t)
        zero, one = self.const(0.0, t), self.const(1.0, t)
        r = self.op(f"math.powf {self.op(f'math.absf {x} : {et}')}, {y} : {et}")
        y_int = self.cmp("oeq", self.op(f"math.trunc {y} : {et}"), y, t)
        half = self.bin("arith.mulf", y, self.const(0.5, t), t)
        y_odd = self.bin("arith.andi", y_int,
                         self.cmp("une", self.op(f"math.trunc {half} : {et}"), half, t), BOOL)
        negative = self.cmp("olt", self._direct("copysign", [one, x], t), zero, t)
        flip = self.bin("arith.andi", negative, y_odd, BOOL)
        r = self.select(flip, self.op(f"arith.negf {r} : {et}"), r, t)
        finite_neg = self.bin("arith.andi", self.cmp("olt", x, zero, t),
                              self.cmp("ogt", x, self.const(-math.inf, t), t), BOOL)
        nan_case = self.bin("arith.andi", finite_neg,
                            self.bin("arith.xori", y_int, self.const(True, BOOL), BOOL), BOOL)
        r = self.select(nan_case, self.const(math.nan, t), r, t)
        r = self.select(self.cmp("oeq", y, zero, t), one, r, t)
        return self.select(self.cmp("oeq", x, one, t), one, r, t)

    def _norm(self, vals: list[str], t: ScalarType) -> str:
        """sqrt(sum of squares) scaled by the largest magnitude, so that it neither
        overflows nor underflows; +inf when any argument is infinite."""
        et = element_type(t)
        mags = [self.op(f"math.absf {v} : {et}") for v in vals]
        big = mags[0]
        for m in mags[1:]:
            big = self.bin("arith.maximumf", big, m, t)
        zero = self.const(0.0, t)
        safe = self.select(self.cmp("oeq", big, zero, t), self.const(1.0, t), big, t)
        acc = None
        for m in mags:
            q = self.bin("arith.divf", m, safe, t)
            sq = self.bin("arith.mulf", q, q, t)
            acc = sq if acc is None else self.bin("arith.addf", acc, sq, t)
        r = self.bin("arith.mulf", big, self.op(f"math.sqrt {acc} : {et}"), t)
        inf = self.const(math.inf, t)
        for m in mags:
            r = self.select(self.cmp("oeq", m, inf, t), inf, r, t)
        return r
