"""CUDA C and OpenCL C from one kernel AST; the two differ only in a :class:`Dialect`.

Half-precision types (float16, bfloat16) are stored as 16-bit integers and computed
in float, rounded back after every operation (so results match the interpreter,
which computes in the declared type); bool is stored as one byte. Integer ``/`` and
``%`` round toward negative infinity and give 0 for a zero divisor, as in the IR.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from codegen import kernel as k
from tc.ir import nodes as ir
from tc.ir.types import ScalarType as T


@dataclass(frozen=True)
class Dialect:
    name: str
    kernel_decl: str
    global_ptr: str
    const_ptr: str
    restrict: str
    shared: str
    barrier: str
    hw: dict[tuple[str, str], str]
    types: dict[T, str]
    helper: str  # storage class of helper functions
    float_suffix_fns: bool  # CUDA spells float math expf, OpenCL overloads exp
    header: str


_C_TYPES = {
    T.BOOL: "bool", T.INT8: "signed char", T.INT16: "short", T.INT32: "int",
    T.INT64: "long long", T.UINT8: "unsigned char", T.UINT16: "unsigned short",
    T.UINT32: "unsigned int", T.UINT64: "unsigned long long", T.FLOAT16: "float",
    T.BFLOAT16: "float", T.FLOAT32: "float", T.FLOAT64: "double",
}
_CL_TYPES = {
    **_C_TYPES, T.INT8: "char", T.INT64: "long", T.UINT8: "uchar", T.UINT16: "ushort",
    T.UINT32: "uint", T.UINT64: "ulong",
}

CUDA = Dialect(
    name="cuda",
    kernel_decl='extern "C" __global__ void',
    global_ptr="",
    const_ptr="const ",
    restrict="__restrict__",
    shared="__shared__",
    barrier="__syncthreads();",
    hw={
        ("block", "x"): "blockIdx.x", ("block", "y"): "blockIdx.y", ("block", "z"): "blockIdx.z",
        ("thread", "x"): "threadIdx.x", ("thread", "y"): "threadIdx.y",
        ("thread", "z"): "threadIdx.z", ("grid", "x"): "gridDim.x", ("grid", "y"): "gridDim.y",
        ("grid", "z"): "gridDim.z", ("block_dim", "x"): "blockDim.x",
        ("block_dim", "y"): "blockDim.y", ("block_dim", "z"): "blockDim.z",
    },
    types=_C_TYPES,
    helper="static __device__ __forceinline__",
    float_suffix_fns=True,
    header="",
)

OPENCL = Dialect(
    name="opencl",
    kernel_decl="__kernel void",
    global_ptr="__global ",
    const_ptr="const ",
    restrict="restrict",
    shared="__local",
    barrier="barrier(CLK_LOCAL_MEM_FENCE);",
    hw={
        **{("block", a): f"((int)get_group_id({i}))" for i, a in enumerate(k.AXES)},
        **{("thread", a): f"((int)get_local_id({i}))" for i, a in enumerate(k.AXES)},
        **{("grid", a): f"((int)get_num_groups({i}))" for i, a in enumerate(k.AXES)},
        **{("block_dim", a): f"((int)get_local_size({i}))" for i, a in enumerate(k.AXES)},
    },
    types=_CL_TYPES,
    helper="static inline",
    float_suffix_fns=False,
    header="",
)

# The kernel AST as readable pseudo-C (``--stage kernel``): ids and barriers by name.
NEUTRAL = Dialect(
    name="kernel",
    kernel_decl="kernel",
    global_ptr="global ",
    const_ptr="const ",
    restrict="",
    shared="shared",
    barrier="barrier();",
    hw={(kind, a): f"{kind}.{a}" for kind in ("block", "thread", "grid", "block_dim")
        for a in k.AXES},
    types=_C_TYPES,
    helper="",
    float_suffix_fns=False,
    header="",
)

DIALECTS = {"cuda": CUDA, "opencl": OPENCL, "kernel": NEUTRAL}


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

# Storage types of buffer elements (what pointers point to).
_STORAGE = {T.BOOL: T.UINT8, T.FLOAT16: T.UINT16, T.BFLOAT16: T.UINT16}

# Math builtins whose CUDA/OpenCL names differ from the TC name.
_CUDA_ONLY = {"rcbrt", "erfinv", "erfcinv", "sigmoid"}


def _helpers(d: Dialect) -> dict[str, str]:
    h = d.helper
    u32, i32 = d.types[T.UINT32], d.types[T.INT32]
    out = {
        "h2f": f"""{h} float tc_h2f({d.types[T.UINT16]} h) {{
  {u32} s = ({u32})(h & 0x8000) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ff;
  if (e == 0) {{ float f = (float)m * 5.9604644775390625e-8f; return s ? -f : f; }}
  {u32} bits = e == 31 ? (s | 0x7f800000u | (m << 13)) : (s | ((e + 112) << 23) | (m << 13));
  return {"__uint_as_float" if d.name == "cuda" else "as_float"}(bits);
}}""",
        "f2h": f"""{h} {d.types[T.UINT16]} tc_f2h(float f) {{
  {u32} x = {"__float_as_uint" if d.name == "cuda" else "as_uint"}(f);
  {u32} s = (x >> 16) & 0x8000;
  {u32} a = x & 0x7fffffffu;
  if (a > 0x7f800000u) return ({d.types[T.UINT16]})(s | 0x7e00);
  if (a >= 0x477ff000u) return ({d.types[T.UINT16]})(s | 0x7c00);
  if (a < 0x38800000u) {{
    {u32} m = (a & 0x7fffff) | 0x800000; {i32} sh = 126 - ({i32})(a >> 23);
    if (sh > 24) return ({d.types[T.UINT16]})s;
    {u32} r = m >> (sh - 1); {u32} rest = m & ((1u << (sh - 1)) - 1);
    {u32} q = r >> 1; if ((r & 1) && (rest || (q & 1))) q++;
    return ({d.types[T.UINT16]})(s | q);
  }}
  {u32} q = ((a - 0x38000000u) >> 13); {u32} rem = a & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (q & 1))) q++;
  return ({d.types[T.UINT16]})(s | q);
}}""",
        "bf2f": f"""{h} float tc_bf2f({d.types[T.UINT16]} b) {{
  return {"__uint_as_float" if d.name == "cuda" else "as_float"}((({u32})b) << 16);
}}""",
        "f2bf": f"""{h} {d.types[T.UINT16]} tc_f2bf(float f) {{
  {u32} x = {"__float_as_uint" if d.name == "cuda" else "as_uint"}(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return ({d.types[T.UINT16]})((x >> 16) | 0x40);
  return ({d.types[T.UINT16]})((x + 0x7fffu + ((x >> 16) & 1)) >> 16);
}}""",
        "sigmoid_f": f"{h} float tc_sigmoid_f(float x) {{ return 1.0f / (1.0f + "
                     f"{'expf' if d.float_suffix_fns else 'exp'}(-x)); }}",
        "sigmoid_d": f"{h} double tc_sigmoid_d(double x) {{ return 1.0 / (1.0 + exp(-x)); }}",
        "oob": f"{h} int tc_oob({d.global_ptr}int* e, int id) {{ *e = id; return 0; }}",
    }
    unsigned = {T.INT8: T.UINT8, T.INT16: T.UINT16, T.INT32: T.UINT32, T.INT64: T.UINT64}
    for t in (T.INT8, T.INT16, T.INT32, T.INT64, T.UINT8, T.UINT16, T.UINT32, T.UINT64):
        c = d.types[t]
        tag = t.value
        if t.is_signed:
            # b == -1 apart: MIN / -1 and MIN % -1 overflow, which C leaves undefined (x86
            # traps); the IR wraps the quotient (-MIN == MIN) and the remainder is 0.
            u = d.types[unsigned[t]]
            out[f"div_{tag}"] = (
                f"{h} {c} tc_div_{tag}({c} a, {c} b) {{ if (b == 0) return 0;"
                f" if (b == -1) return ({c})(({u})0 - ({u})a); {c} q = ({c})(a / b);"
                f" if ((a % b != 0) && ((a < 0) != (b < 0))) q--; return q; }}")
            out[f"mod_{tag}"] = (
                f"{h} {c} tc_mod_{tag}({c} a, {c} b) {{ if (b == 0 || b == -1) return 0;"
                f" {c} r = ({c})(a % b); if (r != 0 && ((r < 0) != (b < 0))) r += b; return r; }}")
        else:
            for op, sym in (("div", "/"), ("mod", "%")):
                out[f"{op}_{tag}"] = (f"{h} {c} tc_{op}_{tag}({c} a, {c} b) "
                                      f"{{ return b ? ({c})(a {sym} b) : 0; }}")
    return out


_HELPERS = {name: _helpers(d) for name, d in DIALECTS.items() if name != "kernel"}


class _Printer:
    def __init__(self, kern: k.Kernel, d: Dialect) -> None:
        self.k = kern
        self.d = d
        self.used: list[str] = []
        self.lines: list[str] = []

    def use(self, helper: str) -> str:
        if helper not in self.used:
            self.used.append(helper)
        return f"tc_{helper}"

    # -- expressions ----------------------------------------------------------------------
    def ctype(self, t: T) -> str:
        return self.d.types[t]

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
            suffix = ("ULL" if self.d.name == "cuda" else "UL") if not e.type.is_signed else (
                "LL" if self.d.name == "cuda" else "L")
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
        return self.d.hw[(e.kind, e.axis)]

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
        if (self.d.name == "cuda" and buf.read_only and buf.space == "global"
                and self.k.meta.get("readonly_cache")):
            raw = f"__ldg(&{raw})"  # useReadOnlyCache: through the read-only data cache
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
            fin = "isfinite"
            return f"({fin}({a}) ? ({self.ctype(e.type)})({a}) : ({self.ctype(e.type)})0)"
        return f"(({self.ctype(e.type)})({a}))"

    def minmax(self, op: str, t: T, a: str, b: str) -> str:
        if t.is_float:
            fn = f"f{op}"
            if self.d.float_suffix_fns and t is not T.FLOAT64:
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
        args = ", ".join(self.expr(a) for a in e.args)
        double = e.type is T.FLOAT64
        fn = e.fn
        if fn == "tc_oob":
            return f"(({self.ctype(e.type)}){self.use('oob')}(tc_err, {args}))"
        if fn == "sigmoid":
            return f"{self.use('sigmoid_d' if double else 'sigmoid_f')}({args})"
        if fn == "rcbrt" and self.d.name == "opencl":
            return f"(1.0{'' if double else 'f'} / cbrt({args}))"
        if fn == "fabs" or not self.d.float_suffix_fns or double:
            name = fn
        else:
            name = fn + "f"
        if fn in _CUDA_ONLY and self.d.name == "opencl":
            raise NotImplementedError(f"builtin {fn} has no OpenCL implementation yet")
        if self.d.float_suffix_fns and not double and fn == "fabs":
            name = "fabsf"
        return f"{name}({args})"

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
        init, cond, v = self.expr(s.init), _bare(self.expr(s.cond)), s.var
        step = str(s.step)
        if s.mapping is None:
            start, inc = init, step
        else:
            kind, axis = s.mapping.split(".")
            hw_id = self.d.hw[(kind, axis)]
            count = self.d.hw[("grid" if kind == "block" else "block_dim", axis)]
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
        self.emit(f"for (int {v} = {start}; {cond}; {v} += {inc}) {{", depth)
        self.stmt(s.body, depth + 1)
        self.emit("}", depth)

    def s_Scope(self, s: k.Scope, depth: int) -> None:
        self.emit("{", depth)
        self.stmt(s.body, depth + 1)
        self.emit("}", depth)

    def s_If(self, s: k.If, depth: int) -> None:
        self.emit(f"if ({_bare(self.expr(s.cond))}) {{", depth)
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
        init = "" if s.init is None else f" = {self.expr(s.init)}"
        self.emit(f"{self.ctype(s.dtype)} {s.name}{init};", depth)

    def s_Assign(self, s: k.Assign, depth: int) -> None:
        self.emit(f"{s.name} = {self.expr(s.value)};", depth)

    def s_Barrier(self, s: k.Barrier, depth: int) -> None:
        b = self.k.block
        if self.d.name == "cuda" and b[0] * b[1] * b[2] <= 32:
            # The whole block is one warp: a warp barrier orders its shared memory.
            self.emit("__syncwarp();", depth)
        else:
            self.emit(self.d.barrier, depth)

    def s_Comment(self, s: k.Comment, depth: int) -> None:
        self.emit(f"// {s.text}", depth)

    # -- the kernel -------------------------------------------------------------------------
    def kernel(self) -> str:
        d = self.d
        params = []
        for b in self.k.arguments:
            ct = self.ctype(_STORAGE.get(b.dtype, b.dtype))
            const = d.const_ptr if b.read_only else ""
            params.append(f"{d.global_ptr}{const}{ct}* {d.restrict} {b.name}")
        params += [f"int {n}" for n in self.k.sizes]
        for b in self.k.buffers:
            if b.space == "shared":
                n = 1
                for s in b.shape:
                    n *= s.value
                ct = self.ctype(_STORAGE.get(b.dtype, b.dtype))
                self.emit(f"{d.shared} {ct} {b.name}[{n}];", 1)
            elif b.space == "private":
                n = 1
                for s in b.shape:
                    n *= s.value
                self.emit(f"{self.ctype(_STORAGE.get(b.dtype, b.dtype))} {b.name}[{n}];", 1)
        self.stmt(self.k.body, 1)
        body = "\n".join(self.lines)
        # No __launch_bounds__: with a maximum block size but no minimum of resident
        # blocks, ptxas trades spills for occupancy (32 registers and 16-60 bytes of spills
        # on sm_80/sm_90 for the convolutions and group norm). Without it, ptxas budgets 64
        # registers (enough for 1024 threads, so any block launches) and needs no spills.
        head = []
        if d.name == "opencl" and _uses_double(self.k):
            head.append("#pragma OPENCL EXTENSION cl_khr_fp64 : enable")
        if d.name == "cuda":
            head.append("#define isfinite(x) (!isinf(x) && !isnan(x))")
        helpers = [_HELPERS[d.name][h] for h in sorted(self.used)] if d.name != "kernel" else []
        sig = f"{d.kernel_decl} {self.k.name}({', '.join(params)})"
        return "\n".join(head + helpers + [f"{sig} {{", body, "}", ""])


def _uses_double(kern: k.Kernel) -> bool:
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


def print_kernel(kern: k.Kernel, dialect: str) -> str:
    """The kernel as CUDA C (``dialect="cuda"``) or OpenCL C (``"opencl"``)."""
    return _Printer(kern, DIALECTS[dialect]).kernel()
