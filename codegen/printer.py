"""C-family text from the kernel AST: one printer class per target, one method per
difference.

:class:`CFamilyPrinter` prints everything the targets share (expressions, loops,
stores, the integer and half-precision helpers); the target printers
(``codegen.targets.cuda.CudaPrinter``, ``codegen.targets.opencl.OpenCLPrinter``,
``codegen.targets.c.CPrinter``) override the few methods where CUDA C, OpenCL C and
C11 + OpenMP differ: hardware ids, address spaces, barriers, math names, 64-bit
literal suffixes, bit casts, the preamble. :class:`KernelPrinter` prints the kernel
AST as readable pseudo-C (``--stage kernel``).

Traps the base keeps for every target:

* Half-precision types (float16, bfloat16) are stored as 16-bit integers and
  computed in float, rounded back after every operation, so results match the
  interpreter (which computes in the declared type); bool is stored as one byte.
* Integer ``/`` and ``%`` round toward negative infinity and give 0 for a zero
  divisor, as in the IR; ``MIN / -1`` wraps instead of trapping.
* Integer arithmetic below 32 bits is cast back after each operation (C promotes
  to int); float-to-int casts of NaN and infinities give 0.
"""

from __future__ import annotations

import dataclasses
import math

from codegen import kernel as k
from codegen import math_helpers
from tc.ir import nodes as ir
from tc.ir.types import ScalarType as T

C_TYPES = {
    T.BOOL: "bool", T.INT8: "signed char", T.INT16: "short", T.INT32: "int",
    T.INT64: "long long", T.UINT8: "unsigned char", T.UINT16: "unsigned short",
    T.UINT32: "unsigned int", T.UINT64: "unsigned long long", T.FLOAT16: "float",
    T.BFLOAT16: "float", T.FLOAT32: "float", T.FLOAT64: "double",
}

# Storage types of buffer elements (what pointers point to).
STORAGE = {T.BOOL: T.UINT8, T.FLOAT16: T.UINT16, T.BFLOAT16: T.UINT16}

_UNSIGNED = {T.INT8: T.UINT8, T.INT16: T.UINT16, T.INT32: T.UINT32, T.INT64: T.UINT64}


def _bare(text: str) -> str:
    """``text`` without one pair of enclosing parentheses (compilers warn on ``((a == b))``)."""
    if not (text.startswith("(") and text.endswith(")")):
        return text
    depth = 0
    for i, ch in enumerate(text):
        depth += ch == "("
        depth -= ch == ")"
        if depth == 0 and i < len(text) - 1:
            return text
    return text[1:-1]


#: The inverse error function in double precision: Giles' single-precision polynomial
#: ("Approximating the erfinv function", GPU Computing Gems, 2011) as a first guess,
#: then two Newton steps on erf, which give double accuracy; +-1 give +-inf and
#: arguments outside [-1, 1] or NaN give NaN, as torch's erfinv.
ERFINV = """static inline double tc_erfinv(double y) {
  if (!(y >= -1.0 && y <= 1.0)) return NAN;
  if (y == 1.0 || y == -1.0) return y * INFINITY;
  double w = -log((1.0 - y) * (1.0 + y)), p;
  if (w < 5.0) {
    w = w - 2.5;
    p = 2.81022636e-08;
    p = 3.43273939e-07 + p * w; p = -3.5233877e-06 + p * w; p = -4.39150654e-06 + p * w;
    p = 0.00021858087 + p * w; p = -0.00125372503 + p * w; p = -0.00417768164 + p * w;
    p = 0.246640727 + p * w; p = 1.50140941 + p * w;
  } else {
    w = sqrt(w) - 3.0;
    p = -0.000200214257;
    p = 0.000100950558 + p * w; p = 0.00134934322 + p * w; p = -0.00367342844 + p * w;
    p = 0.00573950773 + p * w; p = -0.0076224613 + p * w; p = 0.00943887047 + p * w;
    p = 1.00167406 + p * w; p = 2.83297682 + p * w;
  }
  double x = p * y;
  for (int i = 0; i < 2; i++) x -= (erf(x) - y) / (1.1283791670955126 * exp(-x * x));
  return x;
}"""


class CFamilyPrinter:
    """The printer every target shares; subclasses override the class attributes and
    the hook methods below (``hw_id``, ``bits_to_float``, ``math_call``, ...)."""

    #: The target's name, as the registry knows it ("kernel" for the neutral printer).
    name = "kernel"
    types: dict[T, str] = C_TYPES
    kernel_decl = "kernel"
    global_ptr = "global "
    const_ptr = "const "
    restrict = ""
    #: Whether pointers the kernel writes are ``restrict`` too. Not on a GPU: threads
    #: of a block pass values through global memory across barriers (a temporary one
    #: thread writes and the others read), which ``restrict`` lets the compiler cache
    #: across the barrier; PoCL does, and gives NaN for softmax. Read-only inputs are
    #: never written by anyone, so they stay ``restrict``.
    restrict_written = False
    shared = "shared"
    #: storage class of helper functions
    helper = ""
    #: CUDA and C spell float math ``expf``; OpenCL overloads ``exp``
    float_suffix_fns = False
    #: The builtins of :data:`codegen.math_helpers.EXTRA_MATH` the target's library has;
    #: the others are printed as calls of helpers (:func:`codegen.math_helpers.call_text`).
    #: ``fdivide`` is ``/`` everywhere: CUDA's ``fdividef`` may be the approximate
    #: ``__fdividef`` (2 ulp, 0 for huge divisors), and the language defines x / y.
    native_extra: frozenset[str] = math_helpers.EXTRA_MATH - {"fdivide"}

    def __init__(self, kern: k.Kernel) -> None:
        self.k = kern
        self.used: list[str] = []
        self.lines: list[str] = []

    # -- hooks: what differs between targets -------------------------------------------------
    def hw_id(self, kind: str, axis: str) -> str:
        """A hardware id (``block``/``thread``/``grid``/``block_dim`` along x, y, z)."""
        return f"{kind}.{axis}"

    def barrier(self) -> str:
        return "barrier();"

    def bits_to_float(self, text: str) -> str:
        """The float whose bits are the 32-bit unsigned ``text``."""
        return f"as_float({text})"

    def float_to_bits(self, text: str) -> str:
        return f"as_uint({text})"

    def int64_suffix(self, signed: bool) -> str:
        return "LL" if signed else "ULL"

    def global_load(self, buf: k.Buffer, raw: str) -> str:
        """A load of a global element (CUDA may route it through ``__ldg``)."""
        return raw

    def math_call(self, fn: str, args: str, double: bool) -> str:
        """A float math builtin (not ``sigmoid``, which has a helper everywhere)."""
        if fn == "fabs" and self.float_suffix_fns and not double:
            return f"fabsf({args})"
        if fn == "fabs" or not self.float_suffix_fns or double:
            return f"{fn}({args})"
        return f"{fn}f({args})"

    def loop_header(self, s: k.For, depth: int) -> str:
        """The ``for (...)`` line of a loop (pragmas may be emitted before it)."""
        init, cond, v = self.expr(s.init), _bare(self.expr(s.cond)), s.var
        step = str(s.step)
        if s.mapping is None:
            start, inc = init, step
        else:
            kind, axis = s.mapping.split(".")
            hw_id = self.hw_id(kind, axis)
            count = self.hw_id("grid" if kind == "block" else "block_dim", axis)
            if kind == "thread" and s.step == 1 and s.init == ir.IntImm(0, type=s.init.type):
                start = hw_id
            elif kind == "thread" and s.step == 1:
                # Value v runs on thread v mod count, whatever the loop's start: the
                # barrier placement relies on it (polyhedral.threads).
                start = f"{init} + ((({hw_id} - {init}) % {count} + {count}) % {count})"
            else:
                start = f"{init} + {hw_id}" + (f" * {step}" if s.step != 1 else "")
            inc = count + (f" * {step}" if s.step != 1 else "")
        if s.unroll:
            self.emit("#pragma unroll", depth)
        return f"for ({self.ctype(self.k.index_type)} {v} = {start}; {cond}; {v} += {inc}) {{"

    def preamble(self) -> list[str]:
        """Lines before the helpers (pragmas, includes, macros)."""
        return []

    def oob_pointer(self) -> str:
        return f"{self.global_ptr}int*"

    def oob_body(self) -> str:
        return "*e = id;"

    def local_buffers(self) -> None:
        """Declare the kernel's shared and private arrays at the top of its body."""
        for b in self.k.buffers:
            if b.space not in ("shared", "private"):
                continue
            n = 1
            for s in b.shape:
                n *= s.value
            ct = self.ctype(STORAGE.get(b.dtype, b.dtype))
            prefix = f"{self.shared} " if b.space == "shared" else ""
            self.emit(f"{prefix}{ct} {b.name}[{n}];", 1)

    def signature(self, params: list[str]) -> str:
        return f"{self.kernel_decl} {self.k.name}({', '.join(params)})"

    def size_param(self, name: str) -> str:
        return f"{self.ctype(self.k.index_type)} {name}"

    # -- helpers -------------------------------------------------------------------------------
    def use(self, helper: str) -> str:
        if helper not in self.used:
            self.used.append(helper)
        return f"tc_{helper}"

    def erfinv_call(self, fn: str, args: str, double: bool) -> str:
        """``erfinv`` / ``erfcinv`` where the target's library has neither (C, OpenCL):
        computed in double by :data:`ERFINV`; ``erfcinv(x)`` is ``erfinv(1 - x)`` with
        ``1 - x`` in the value's type, as the interpreter defines it."""
        f = self.use("erfinv")
        if fn == "erfcinv":
            args = f"(1.0 - ({args}))" if double else f"(1.0f - ({args}))"
        return f"{f}({args})" if double else f"((float){f}((double)({args})))"

    def helper_text(self, name: str) -> str:
        """The C text of helper ``name`` (see :meth:`use`)."""
        h, u32, i32, u16 = (self.helper, self.types[T.UINT32], self.types[T.INT32],
                            self.types[T.UINT16])
        if name == "erfinv":
            return ERFINV.replace("static inline", h)
        if name in math_helpers.TEXTS:
            return math_helpers.TEXTS[name].replace("static inline", h)
        if name == "h2f":
            return f"""{h} float tc_h2f({u16} h) {{
  {u32} s = ({u32})(h & 0x8000) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ff;
  if (e == 0) {{ float f = (float)m * 5.9604644775390625e-8f; return s ? -f : f; }}
  {u32} bits = e == 31 ? (s | 0x7f800000u | (m << 13)) : (s | ((e + 112) << 23) | (m << 13));
  return {self.bits_to_float("bits")};
}}"""
        if name == "f2h":
            return f"""{h} {u16} tc_f2h(float f) {{
  {u32} x = {self.float_to_bits("f")};
  {u32} s = (x >> 16) & 0x8000;
  {u32} a = x & 0x7fffffffu;
  if (a > 0x7f800000u) return ({u16})(s | 0x7e00);
  if (a >= 0x477ff000u) return ({u16})(s | 0x7c00);
  if (a < 0x38800000u) {{
    {u32} m = (a & 0x7fffff) | 0x800000; {i32} sh = 126 - ({i32})(a >> 23);
    if (sh > 24) return ({u16})s;
    {u32} r = m >> (sh - 1); {u32} rest = m & ((1u << (sh - 1)) - 1);
    {u32} q = r >> 1; if ((r & 1) && (rest || (q & 1))) q++;
    return ({u16})(s | q);
  }}
  {u32} q = ((a - 0x38000000u) >> 13); {u32} rem = a & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (q & 1))) q++;
  return ({u16})(s | q);
}}"""
        if name == "bf2f":
            return f"""{h} float tc_bf2f({u16} b) {{
  return {self.bits_to_float(f"(({u32})b) << 16")};
}}"""
        if name == "f2bf":
            return f"""{h} {u16} tc_f2bf(float f) {{
  {u32} x = {self.float_to_bits("f")};
  if ((x & 0x7fffffffu) > 0x7f800000u) return ({u16})((x >> 16) | 0x40);
  return ({u16})((x + 0x7fffu + ((x >> 16) & 1)) >> 16);
}}"""
        if name == "sigmoid_f":
            return (f"{h} float tc_sigmoid_f(float x) {{ return 1.0f / (1.0f + "
                    f"{self.math_call('exp', '-x', False)}); }}")
        if name == "sigmoid_d":
            return f"{h} double tc_sigmoid_d(double x) {{ return 1.0 / (1.0 + exp(-x)); }}"
        if name == "oob":
            return (f"{h} int tc_oob({self.oob_pointer()} e, int id) "
                    f"{{ {self.oob_body()} return 0; }}")
        op, _, tag = name.partition("_")
        t = T(tag)
        c = self.types[t]
        if t.is_signed and op == "div":
            # b == -1 apart: MIN / -1 overflows, which C leaves undefined (x86 traps);
            # the IR wraps the quotient (-MIN == MIN).
            u = self.types[_UNSIGNED[t]]
            return (f"{h} {c} tc_div_{tag}({c} a, {c} b) {{ if (b == 0) return 0;"
                    f" if (b == -1) return ({c})(({u})0 - ({u})a); {c} q = ({c})(a / b);"
                    f" if ((a % b != 0) && ((a < 0) != (b < 0))) q--; return q; }}")
        if t.is_signed:
            return (f"{h} {c} tc_mod_{tag}({c} a, {c} b) {{ if (b == 0 || b == -1) return 0;"
                    f" {c} r = ({c})(a % b); if (r != 0 && ((r < 0) != (b < 0))) r += b;"
                    " return r; }")
        sym = "/" if op == "div" else "%"
        return f"{h} {c} tc_{op}_{tag}({c} a, {c} b) {{ return b ? ({c})(a {sym} b) : 0; }}"

    # -- expressions ----------------------------------------------------------------------
    def ctype(self, t: T) -> str:
        return self.types[t]

    def round_half(self, text: str, t: T) -> str:
        if t is T.FLOAT16:
            return f"{self.use('h2f')}({self.use('f2h')}({text}))"
        if t is T.BFLOAT16:
            return f"{self.use('bf2f')}({self.use('f2bf')}({text}))"
        return text

    def expr(self, e: ir.Expr) -> str:
        text = getattr(self, f"e_{type(e).__name__}")(e)
        if e.type in (T.FLOAT16, T.BFLOAT16) and not isinstance(
            e, ir.Read | ir.FloatImm | ir.Var | ir.Select | ir.Let
        ):
            text = self.round_half(text, e.type)
        return text

    def e_IntImm(self, e: ir.IntImm) -> str:
        v = e.value
        if e.type is T.BOOL:
            return "true" if v else "false"
        if e.type.bits == 64:
            suffix = self.int64_suffix(e.type.is_signed)
            if v == -(2**63):
                return f"(-9223372036854775807{suffix} - 1)"
            return f"({v}{suffix})"
        if e.type is T.INT32 and v == -(2**31):
            return "(-2147483647 - 1)"
        text = f"{v}{'u' if not e.type.is_signed else ''}"
        if e.type.bits < 32:
            text = f"(({self.ctype(e.type)}){text})"
        return f"({text})" if v < 0 else text

    def e_FloatImm(self, e: ir.FloatImm) -> str:
        v = float(e.value)
        double = e.type is T.FLOAT64
        if math.isinf(v):
            text = "(1.0/0.0)" if double else "(1.0f/0.0f)"
            return text if v > 0 else f"(-{text})"
        if math.isnan(v):
            return "(0.0/0.0)" if double else "(0.0f/0.0f)"
        text = repr(v)
        if "e" not in text and "." not in text:
            text += ".0"
        return f"({text})" if double else f"({text}f)" if v < 0 else f"{text}f"

    def e_Var(self, e: ir.Var) -> str:
        return e.name

    def e_HwId(self, e: k.HwId) -> str:
        text = self.hw_id(e.kind, e.axis)
        # 64-bit indices (codegen.wide_indices): widen before any arithmetic on the id.
        return f"(({self.ctype(e.type)}){text})" if e.type is T.INT64 else text

    def offset(self, buf: k.Buffer, indices: tuple[ir.Expr, ...]) -> str:
        terms = []
        for idx, stride in zip(indices, buf.strides, strict=True):
            if isinstance(stride, ir.IntImm) and stride.value == 0:
                continue
            s = self.expr(stride)
            terms.append(f"({self.expr(idx)})" if s == "1" else f"({self.expr(idx)}) * {s}")
        return " + ".join(terms) or "0"

    def load(self, buf: k.Buffer, offset: str) -> str:
        raw = f"{buf.name}[{offset}]"
        if buf.space == "global":
            raw = self.global_load(buf, raw)
        if buf.dtype is T.BOOL:
            return f"({raw} != 0)"
        if buf.dtype is T.FLOAT16:
            return f"{self.use('h2f')}({raw})"
        if buf.dtype is T.BFLOAT16:
            return f"{self.use('bf2f')}({raw})"
        return raw

    def store_value(self, buf: k.Buffer, text: str) -> str:
        if buf.dtype is T.BOOL:
            return f"(({self.ctype(T.UINT8)})({text}))"
        if buf.dtype is T.FLOAT16:
            return f"{self.use('f2h')}({text})"
        if buf.dtype is T.BFLOAT16:
            return f"{self.use('f2bf')}({text})"
        return text

    def e_Read(self, e: ir.Read) -> str:
        buf = self.k.buffer(e.tensor)
        return self.load(buf, self.offset(buf, e.indices))

    def e_Unary(self, e: ir.Unary) -> str:
        text = f"({e.op}{self.expr(e.a)})"
        if e.op == "-" and e.type.is_int and e.type.bits < 32:
            text = f"(({self.ctype(e.type)}){text})"
        return text

    def e_Cast(self, e: ir.Cast) -> str:
        a = self.expr(e.a)
        if e.type is T.BOOL:
            return f"(({a}) != 0)"
        if e.type.is_int and e.a.type.is_float:
            # NaN and infinities become 0, as in the interpreter (C leaves them undefined).
            return f"(isfinite({a}) ? ({self.ctype(e.type)})({a}) : ({self.ctype(e.type)})0)"
        return f"(({self.ctype(e.type)})({a}))"

    def minmax(self, op: str, t: T, a: str, b: str) -> str:
        if t.is_float:
            fn = f"f{op}"
            if self.float_suffix_fns and t is not T.FLOAT64:
                fn += "f"
            return f"{fn}({a}, {b})"
        return f"(({a}) {'<' if op == 'min' else '>'} ({b}) ? ({a}) : ({b}))"

    def e_Binary(self, e: ir.Binary) -> str:
        a, b = self.expr(e.a), self.expr(e.b)
        t = e.a.type
        if e.op in ("min", "max"):
            return self.minmax(e.op, t, a, b)
        if e.op in ("/", "%") and t.is_int:
            fn = self.use(f"{'div' if e.op == '/' else 'mod'}_{t.value}")
            return f"{fn}({a}, {b})"
        if e.op in ("+", "-", "*") and t.is_bool:
            op = {"+": "||", "*": "&&", "-": "!="}[e.op]
            return f"({a} {op} {b})"
        text = f"({a} {e.op} {b})"
        if e.op in ("+", "-", "*") and t.is_int and t.bits < 32:
            text = f"(({self.ctype(t)}){text})"  # C promotes to int: wrap like the IR does
        return text

    def e_Select(self, e: ir.Select) -> str:
        return f"({self.expr(e.cond)} ? {self.expr(e.a)} : {self.expr(e.b)})"

    def e_Call(self, e: ir.Call) -> str:
        double = e.type is T.FLOAT64
        if e.fn in math_helpers.EXTRA_MATH and e.fn not in self.native_extra:
            for h in math_helpers.helpers_of(e.fn):
                self.use(h)
            return math_helpers.call_text(e.fn, [self.expr(a) for a in e.args], double)
        args = ", ".join(self.expr(a) for a in e.args)
        if e.fn == "tc_oob":
            return f"(({self.ctype(e.type)}){self.use('oob')}(tc_err, {args}))"
        if e.fn == "sigmoid":
            return f"{self.use('sigmoid_d' if double else 'sigmoid_f')}({args})"
        return self.math_call(e.fn, args, double)

    def e_Let(self, e: ir.Let) -> str:
        raise ValueError("lets must be hoisted into Local statements before printing")

    # -- statements -----------------------------------------------------------------------
    def emit(self, text: str, depth: int) -> None:
        self.lines.append("  " * depth + text)

    def stmt(self, s: k.Stmt, depth: int) -> None:
        getattr(self, f"s_{type(s).__name__}")(s, depth)

    def s_Block(self, s: k.Block, depth: int) -> None:
        for c in s.body:
            self.stmt(c, depth)

    def s_For(self, s: k.For, depth: int) -> None:
        self.emit(self.loop_header(s, depth), depth)
        self.stmt(s.body, depth + 1)
        self.emit("}", depth)

    def s_Scope(self, s: k.Scope, depth: int) -> None:
        self.emit("{", depth)
        self.stmt(s.body, depth + 1)
        self.emit("}", depth)

    def condition(self, e: ir.Expr) -> str:
        """The condition of an ``if`` statement (isl's conditions and the lowering's
        guards)."""
        return self.expr(e)

    def s_If(self, s: k.If, depth: int) -> None:
        self.emit(f"if ({_bare(self.condition(s.cond))}) {{", depth)
        self.stmt(s.then, depth + 1)
        if s.otherwise is not None:
            self.emit("} else {", depth)
            self.stmt(s.otherwise, depth + 1)
        self.emit("}", depth)

    def s_Store(self, s: k.Store, depth: int) -> None:
        buf = self.k.buffer(s.buffer)
        off = self.offset(buf, s.indices)
        value = self.expr(s.value)
        if s.op is not None:
            old = self.load(buf, off)
            t = s.value.type
            if s.op in ("min", "max"):
                value = self.minmax(s.op, t, old, value)
            elif t.is_bool:
                value = f"({old} {'||' if s.op == '+' else '&&'} {value})"
            else:
                value = self.round_half(f"({old} {s.op} {value})", t)
                if t.is_int and t.bits < 32:
                    value = f"(({self.ctype(t)}){value})"
        self.emit(f"{buf.name}[{off}] = {self.store_value(buf, value)};", depth)

    def s_Local(self, s: k.Local, depth: int) -> None:
        if s.size:
            self.emit(f"{self.ctype(STORAGE.get(s.dtype, s.dtype))} {s.name}[{s.size}];", depth)
            return
        init = "" if s.init is None else f" = {self.expr(s.init)}"
        self.emit(f"{self.ctype(s.dtype)} {s.name}{init};", depth)

    def s_Assign(self, s: k.Assign, depth: int) -> None:
        self.emit(f"{s.name} = {self.expr(s.value)};", depth)

    def s_Barrier(self, s: k.Barrier, depth: int) -> None:
        self.emit(self.barrier(), depth)

    def s_Comment(self, s: k.Comment, depth: int) -> None:
        self.emit(f"// {s.text}", depth)

    # -- the kernel -------------------------------------------------------------------------
    def function(self) -> str:
        """The kernel's function alone; :attr:`used` then lists the helpers it needs."""
        params = []
        for b in self.k.arguments:
            ct = self.ctype(STORAGE.get(b.dtype, b.dtype))
            const = self.const_ptr if b.read_only else ""
            restrict = (f" {self.restrict}" if self.restrict
                        and (b.read_only or self.restrict_written) else " ")
            params.append(f"{self.global_ptr}{const}{ct}*{restrict} {b.name}".replace("  ", " "))
        params += [self.size_param(n) for n in self.k.sizes]
        self.local_buffers()
        self.stmt(self.k.body, 1)
        body = "\n".join(self.lines)
        return "\n".join([f"{self.signature(params)} {{", body, "}", ""])

    def helpers(self) -> list[str]:
        """The text of the helpers :meth:`function` used."""
        return [self.helper_text(h) for h in sorted(self.used)] if self.helper else []

    def kernel(self) -> str:
        """The whole translation unit of one kernel: preamble, helpers, function."""
        function = self.function()
        return "\n".join(self.preamble() + self.helpers() + [function])


class KernelPrinter(CFamilyPrinter):
    """The kernel AST as readable pseudo-C (``--stage kernel``): ids and barriers by
    name, parallel and vector loops marked, no helpers."""

    def loop_header(self, s: k.For, depth: int) -> str:
        if s.mapping == "omp":
            self.emit("// parallel", depth)
            s = dataclasses.replace(s, mapping=None)
        if s.vector:
            self.emit(f"// vector ({s.vector})", depth)
        return super().loop_header(s, depth)


def uses_double(kern: k.Kernel) -> bool:
    """Whether the kernel computes or stores anything in double precision."""
    if any(b.dtype is T.FLOAT64 for b in kern.buffers):
        return True
    for s in k.walk_stmts(kern.body):
        exprs: list[ir.Expr] = []
        if isinstance(s, k.Store):
            exprs = [s.value, *s.indices]
        elif isinstance(s, k.Local):
            if s.dtype is T.FLOAT64:
                return True
            exprs = [s.init] if s.init is not None else []
        elif isinstance(s, k.Assign):
            exprs = [s.value]
        for e in exprs:
            if any(n.type is T.FLOAT64 for n in ir.walk(e)):
                return True
    return False


def print_kernel(kern: k.Kernel, target: str) -> str:
    """The kernel as the source text of ``target`` (a registered target's name, or
    ``"kernel"`` for the neutral pseudo-C)."""
    if target == "kernel":
        return KernelPrinter(kern).kernel()
    from codegen.targets import get_target

    return get_target(target).source(kern)
