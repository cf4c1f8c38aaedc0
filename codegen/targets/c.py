"""The CPU target: the CPU mapping printed as C11 + OpenMP, built by the system C
compiler into a shared library and called through ctypes on the tensors' memory.

Parallel loops (``For.mapping == "omp"``) become ``#pragma omp parallel for``, vector
loops ``#pragma omp simd``; the mapping marks only loops that carry no dependence
(``polyhedral.cpu_mapping``). Every kernel of a program goes into one library, one
exported function per kernel; a call passes the tensors' data pointers (zero-copy:
views keep their strides, which the kernel was compiled for) and the sizes.

Safety: OpenMP runs a parallel loop's iterations on several threads, so a variable
declared outside it and assigned inside would be shared between them. The mapping
never makes that happen (such a variable is carried across the loop, so the loop
carries a dependence); :func:`check_parallel` verifies it and the build refuses a
kernel that breaks it. The bounds-check report (``tc_oob``) stores atomically, since
several threads may find out-of-bounds reads at once.
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform
import re
from collections.abc import Sequence
from typing import Any

from codegen import kernel as k
from codegen.cc import MVEC_CANDIDATES, vector_math
from codegen.launch import LaunchLimits
from codegen.printer import CFamilyPrinter, _bare
from codegen.targets.base import Target
from polyhedral.cpu_mapping import PARALLEL_MIN_INSTANCES
from polyhedral.packing import DEFAULT_PACK_LIMIT
from tc.errors import TcBackendError, TcInternalError
from tc.ir import nodes as ir
from tc.ir.types import ScalarType as T

_CANONICAL = ("<", "<=", ">", ">=")


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _canonical(s: k.For) -> bool:
    """Whether OpenMP accepts the loop: ``var OP bound`` with a constant step."""
    c = s.cond
    return (isinstance(c, ir.Binary) and c.op in _CANONICAL and isinstance(c.a, ir.Var)
            and c.a.name == s.var)


_UNSIGNED = {T.INT32: "unsigned int", T.INT64: "unsigned long long"}
_INDEX_VARS = ("loop", "size", "index")


def _indexing(e: ir.Expr) -> bool:
    """Whether ``e`` is index arithmetic written in a value (``h + kh >= KH - 1`` in a
    guard): loop variables, sizes and constants only, never a tensor's value; it is
    printed as indices are (plain signed C: no overflow below 2**31)."""
    return all(isinstance(n, ir.IntImm | ir.Binary | ir.Unary)
               or (isinstance(n, ir.Var) and n.kind in _INDEX_VARS) for n in ir.walk(e))


class CPrinter(CFamilyPrinter):
    """C11. Signed 32- and 64-bit arithmetic on values wraps, as in the IR, through
    unsigned arithmetic; index arithmetic (subscripts, loop bounds, isl's conditions)
    stays plain signed C, whose overflow is undefined, so that the compiler can prove
    consecutive subscripts consecutive and vectorise loads (``-fwrapv`` would turn
    them into gathers). Index arithmetic never overflows at sizes below 2**31."""

    name = "cpu"
    kernel_decl = "void"
    global_ptr = ""
    restrict = "restrict"
    # One call runs every iteration of a parallel loop: an object written through a
    # pointer is only ever accessed through it, as C's restrict requires.
    restrict_written = True
    shared = ""
    helper = "static inline"
    float_suffix_fns = True
    # glibc's libm (with _GNU_SOURCE); the rest of issue 14's builtins are helpers.
    native_extra = frozenset("j0 j1 y0 y1 logb nextafter remainder".split())

    _index = 0  # > 0 while printing index arithmetic

    def index(self, e: ir.Expr) -> str:
        self._index += 1
        try:
            return self.expr(e)
        finally:
            self._index -= 1

    def offset(self, buf: k.Buffer, indices: tuple[ir.Expr, ...]) -> str:
        self._index += 1
        try:
            return super().offset(buf, indices)
        finally:
            self._index -= 1

    def e_Binary(self, e: ir.Binary) -> str:
        t = e.a.type
        if self._index == 0 and e.op in ("+", "-", "*") and t in _UNSIGNED and not _indexing(e):
            u, c = _UNSIGNED[t], self.ctype(t)
            return f"(({c})(({u})({self.expr(e.a)}) {e.op} ({u})({self.expr(e.b)})))"
        return super().e_Binary(e)

    def e_Unary(self, e: ir.Unary) -> str:
        if self._index == 0 and e.op == "-" and e.type in _UNSIGNED and not _indexing(e):
            u, c = _UNSIGNED[e.type], self.ctype(e.type)
            return f"(({c})(({u})0 - ({u})({self.expr(e.a)})))"
        return super().e_Unary(e)

    def condition(self, e: ir.Expr) -> str:
        return self.index(e)  # isl's conditions and the lowering's guards: indices

    def helper_text(self, name: str) -> str:
        if name.startswith("red_"):
            return declare_reduction(name.removeprefix("red_"))
        if name.startswith("simd_"):
            fn = name.removeprefix("simd_")
            ctype = "float" if fn.endswith("f") and fn[:-1] in MVEC_CANDIDATES else "double"
            # libmvec's lanes for vector loops (codegen.cc.vector_math).
            return f"#pragma omp declare simd notinbranch\nextern {ctype} {fn}({ctype});"
        return super().helper_text(name)

    def hw_id(self, kind: str, axis: str) -> str:
        raise TcInternalError(f"a CPU kernel refers to the GPU id {kind}.{axis}")

    def barrier(self) -> str:
        raise TcInternalError("a CPU kernel has a block barrier")

    def bits_to_float(self, text: str) -> str:
        return f"((union {{ unsigned int u; float f; }}){{ .u = ({text}) }}).f"

    def float_to_bits(self, text: str) -> str:
        return f"((union {{ float f; unsigned int u; }}){{ .f = ({text}) }}).u"

    def oob_body(self) -> str:
        return "__atomic_store_n(e, id, __ATOMIC_RELAXED);"

    def math_call(self, fn: str, args: str, double: bool) -> str:
        text = self._math_call(fn, args, double)
        name = text.partition("(")[0].lstrip("(")
        if name in vector_math():
            self.use(f"simd_{name}")
        return text

    def _math_call(self, fn: str, args: str, double: bool) -> str:
        one = "1.0" if double else "1.0f"
        if fn == "rsqrt":
            return f"({one} / {super().math_call('sqrt', args, double)})"
        if fn == "rcbrt":
            return f"({one} / {super().math_call('cbrt', args, double)})"
        if fn in ("erfinv", "erfcinv"):
            return self.erfinv_call(fn, args, double)
        return super().math_call(fn, args, double)

    def loop_header(self, s: k.For, depth: int) -> str:
        if s.mapping not in (None, "omp"):
            raise TcInternalError(f"a CPU kernel has a loop mapped to {s.mapping}")
        ok = _canonical(s)
        threads = self.k.meta.get("omp_threads", 0)
        clause = f" num_threads({threads})" if threads else ""
        if "parallel_if" in self.k.meta:
            # Compiled for every shape: small calls stay on one thread at run time.
            count = self.index(self.k.meta["parallel_if"])
            clause += f" if({count} >= {PARALLEL_MIN_INSTANCES}LL)"
        simd = simd_clause(s) if ok else None
        for name in re.findall(r"reduction\((tc_\w+):", simd or ""):
            self.use(f"red_{name}")
        if s.mapping == "omp" and ok:
            lanes = " simd" + simd if simd is not None and s.vector == "lanes" else ""
            self.emit(f"#pragma omp parallel for{lanes} schedule(static){clause}", depth)
        elif simd is not None:
            self.emit(f"#pragma omp simd{simd}", depth)
        if s.unroll:
            self.emit("#pragma GCC unroll 16", depth)
        init, cond = self.index(s.init), _bare(self.index(s.cond))
        ctype = self.ctype(self.k.index_type)
        return f"for ({ctype} {s.var} = {init}; {cond}; {s.var} += {s.step}) {{"

    def preamble(self) -> list[str]:
        return ["#define _GNU_SOURCE", "#include <math.h>", "#include <stdbool.h>"]

    def signature(self, params: list[str]) -> str:
        return f"__attribute__((visibility(\"default\"))) void {self.k.name}({', '.join(params)})"


_REDUCIBLE = (T.FLOAT32, T.FLOAT64, T.INT32, T.INT64, T.UINT32, T.UINT64)


def simd_clause(s: k.For) -> str | None:
    """The clauses of ``#pragma omp simd`` for a vector loop (``""`` for independent
    lanes, ``" reduction(+:acc)"`` ...), or None when the loop must stay sequential.

    A loop of independent iterations (``vector == "lanes"``) assigns no scalar declared
    outside it. A reduction loop qualifies when its only effects are updates
    ``acc = acc + v`` or ``acc = acc * v`` of scalars declared outside it, each read
    nowhere else in the loop, in types whose reassociation is allowed (float32 and
    float64 as in any vectorised reduction; 32- and 64-bit integers, exactly): no
    store, since the accumulation did not become a scalar (or another statement
    shares the loop). Half types are rounded after every addition: never reassociated.
    """
    if s.vector is None:
        return None
    inner = {d.name for d in k.walk_stmts(s.body) if isinstance(d, k.Local)}
    ops: dict[str, str] = {}
    updates: list[k.Assign] = []
    for st in k.walk_stmts(s.body):
        if isinstance(st, k.Assign) and st.name not in inner:
            v = st.value
            if (s.vector != "reduction" or not isinstance(v, ir.Binary) or v.op not in _OPS
                    or v.a != ir.Var(st.name, "local", type=v.type) or v.type not in _REDUCIBLE
                    or ops.setdefault(st.name, v.op) != v.op):
                return None
            updates.append(st)
        elif isinstance(st, k.Store) and s.vector == "reduction":
            return None
    if s.vector == "reduction" and not ops:
        return None
    # An accumulator read anywhere but as its own update's left operand would see a
    # partial sum.
    for st in k.walk_stmts(s.body):
        for e in k.own_exprs(st):
            if st in updates and e is st.value:
                e = st.value.b
            if any(isinstance(n, ir.Var) and n.name in ops for n in ir.walk(e)):
                return None
    types = {u.name: u.value.type for u in updates}
    return "".join(f" reduction({_reduction_name(op, types[name])}:{name})"
                   for name, op in ops.items())


_OPS = ("+", "*", "max", "min")
_FLOAT_SUFFIX = {T.FLOAT32: "f", T.FLOAT64: ""}


def _reduction_name(op: str, t: T) -> str:
    """The OpenMP reduction identifier of ``acc = acc op v`` in type ``t``: the
    built-in ones, and for float min/max our own (:func:`declare_reduction`), since
    the IR's min/max ignore NaN as ``fmaxf`` does and OpenMP's ``max`` does not say."""
    if op in ("max", "min") and t.is_float:
        return f"tc_f{op}{_FLOAT_SUFFIX[t]}"
    return op


def declare_reduction(name: str) -> str:
    """The ``declare reduction`` of one of :func:`_reduction_name`'s own identifiers:
    combined with ``fmaxf``/``fminf``; each lane starts from the identity (-inf for
    max), so partial results combine to what the sequential loop gives."""
    fn = name.removeprefix("tc_")
    ctype = "float" if fn.endswith("f") else "double"
    identity = "-INFINITY" if "max" in fn else "INFINITY"
    return (f"#pragma omp declare reduction({name} : {ctype} : omp_out = {fn}(omp_out, "
            f"omp_in)) initializer(omp_priv = {identity})")


def check_parallel(body: k.Stmt, buffers: Sequence[k.Buffer] = ()) -> None:
    """``TcInternalError`` if a parallel loop assigns a local, or stores to a local
    array (``buffers``: the kernel's), declared outside it (the OpenMP threads would
    share it: a race)."""
    kernel_buffers = {b.name: b.space for b in buffers}
    for s in k.walk_stmts(body):
        if isinstance(s, k.For) and s.mapping == "omp":
            inside = {d.name for d in k.walk_stmts(s.body) if isinstance(d, k.Local)}
            for d in k.walk_stmts(s.body):
                if isinstance(d, k.Assign) and d.name not in inside:
                    raise TcInternalError(f"parallel loop {s.var} assigns {d.name}, which is "
                                          "declared outside it")
                # An outer array is shared by the threads: each may only store to
                # elements of its own iterations (split reductions' partials[t]).
                if isinstance(d, k.Store) and d.buffer not in inside and (
                        kernel_buffers.get(d.buffer, "global") != "global") and not any(
                        isinstance(n, ir.Var) and n.name == s.var
                        for i in d.indices for n in ir.walk(i)):
                    raise TcInternalError(f"parallel loop {s.var} stores to the array "
                                          f"{d.buffer}, which is declared outside it, at "
                                          "an element that does not depend on the loop")


class CTarget(Target):
    name = "cpu"
    device_type = "cpu"
    strategy = "cpu"
    printer = CPrinter
    has_barriers = False
    symbolic_sizes = True

    def available(self) -> bool:
        from codegen.cc import compiler

        return compiler() is not None

    def unavailable_reason(self) -> str:
        return ("no C compiler found ($CC, cc, gcc, clang); install one (e.g. `apt-get install "
                "gcc`) or use backend='opencl'")

    def limits(self) -> LaunchLimits:
        return LaunchLimits(max_threads_per_block=1, max_block=(1, 1, 1), max_grid=(1, 1, 1))

    def shared_memory_bytes(self) -> int:
        # Packed tiles per thread (polyhedral.packing), on the thread's stack.
        return DEFAULT_PACK_LIMIT

    def build(self, kernels: Sequence[k.Kernel], binaries: Sequence[bytes | None] | None,
              arch: str | None) -> list[Any]:
        from codegen.cc import build_library, load_library

        if not kernels:
            return []
        if binaries is not None and binaries[0] is not None:
            lib = load_library(binaries[0])
        else:
            for kern in kernels:
                check_parallel(kern.body, kern.buffers)
            lib = build_library(self.library_source(kernels))
        return [_Function(lib, kern) for kern in kernels]

    def library_source(self, kernels: Sequence[k.Kernel]) -> str:
        """One translation unit with every kernel: the preamble and each helper once."""
        functions, helpers = [], {}
        printer = None
        for kern in kernels:
            printer = CPrinter(kern)
            functions.append(printer.function())
            helpers.update((h, printer.helper_text(h)) for h in printer.used)
        head = printer.preamble() if printer is not None else []
        return "\n".join(head + [helpers[h] for h in sorted(helpers)] + functions)

    def binaries(self, handles: Sequence[Any]) -> list[bytes | None]:
        # One library holds every kernel: stored once, with the first kernel.
        return [h.library.binary if i == 0 else None for i, h in enumerate(handles)]

    def launch(self, handle: Any, kernel: k.Kernel, tensors: Sequence[Any], n_inputs: int,
               sizes: Sequence[int]) -> None:
        handle(tensors, sizes)

    def device_text(self, arch: str | None = None, device_index: int | None = None) -> str:
        return f"cpu {cpu_model()}; {os.cpu_count()} cores"

    def versions_text(self) -> str:
        from codegen.cc import identity

        return identity()


class _Function:
    """One exported kernel of a loaded library, with its ctypes signature."""

    def __init__(self, library: Any, kernel: k.Kernel) -> None:
        self.library = library
        try:
            self.fn = getattr(library.handle, kernel.name)
        except AttributeError:
            raise TcBackendError(f"the CPU library defines no kernel {kernel.name!r}") from None
        self.fn.restype = None
        size = ctypes.c_longlong if kernel.index_bits == 64 else ctypes.c_int
        self.fn.argtypes = [ctypes.c_void_p] * len(kernel.arguments) + [size] * len(kernel.sizes)

    def __call__(self, tensors: Sequence[Any], sizes: Sequence[int]) -> None:
        # The hot path of every call: data pointers (the views' first elements; the
        # kernel was compiled for their strides) and the sizes. The backend checked
        # that the tensors are CPU tensors.
        self.fn(*[t.data_ptr() for t in tensors], *sizes)
