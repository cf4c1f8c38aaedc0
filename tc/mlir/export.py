"""A checked TC definition as MLIR: one ``func.func`` of ``linalg.generic`` ops on tensors.

The export works on the IR after sema, for bound sizes (static shapes) or, with
``dynamic=True``, with every size symbol a ``?`` dimension read back with
``tensor.dim`` (literal dimensions stay static). It follows the reference
interpreter (:mod:`tc.ir.interpret`) statement by statement:

* outputs and temporaries are SSA tensor values: a zero-filled ``tensor.empty``
  (``linalg.fill``), or a bare ``tensor.empty`` when the first statement writing the
  tensor overwrites all of it; only the outputs are returned;
* each statement is one ``linalg.generic`` over its domain: the left-hand indices are
  ``parallel``, the reduction indices ``reduction``; a statement on a sub-range
  (``where``, inferred offsets) computes on a ``tensor.extract_slice`` of the tensor
  and puts the result back with ``tensor.insert_slice``; ``!`` first fills the region
  with the operator's identity (``linalg.fill``), which the right-hand side's reads of
  the tensor see, as in the interpreter;
* a read whose subscripts are affine in the indices with non-negative coefficients
  and provably in bounds over the whole domain is an input of the generic with that
  affine indexing map (on a slice where a subscript is ``index + offset``: linalg
  requires a plain dimension to span the operand exactly); every other read (indirect,
  non-affine, guarded by ``?:``, or not provably in bounds) is a ``tensor.extract``
  inside the body with its indices clamped into the tensor, so that evaluating both
  branches of a ``?:`` never reads out of bounds;
* index variables are ``linalg.index`` plus the range's start; reduction indices that
  no read spans are given their extent by an unused ``tensor.empty`` input (the idiom
  of linalg's pooling ops);
* half-precision ``+``/``*`` reductions accumulate in float32
  (:mod:`tc.ir.wide_accumulators`, run first as the interpreter does).

Not exportable (a positioned :class:`TcExportError`): builtins with no MLIR
equivalent (:data:`tc.mlir.body.NOT_EXPORTABLE`, empty today) and the special
functions of :mod:`tc.mlir.special` on float64. Known differences: an indirect
read out of bounds is clamped (the interpreter raises, the compiled targets check at
run time: check the inputs with ``backend="reference"``); float reductions are summed
in loop order, where numpy sums pairwise (rounding differs in the last bits).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from tc.ir import nodes as ir
from tc.ir.affine import linearize
from tc.ir.sym import Sym
from tc.ir.types import ScalarType
from tc.ir.wide_accumulators import widen_accumulators
from tc.mlir.body import Body, TcExportError
from tc.mlir.types import constant, element_type, tensor_type

__all__ = ["TcExportError", "export_function"]


@dataclass(frozen=True)
class _Operand:
    """An input of a ``linalg.generic`` read through an indexing map."""

    value: str  # the SSA tensor (a slice, maybe)
    type: str  # its tensor type
    results: str  # the indexing map's results, e.g. "d0, d2 * 2 + d1"
    arg: str  # the block argument
    elem: ScalarType


def export_function(fn: ir.Function, sizes: Mapping[str, int], dynamic: bool = False) -> str:
    """The MLIR module (text) of ``fn`` for the bound ``sizes``.

    ``sizes`` must give every size symbol (even with ``dynamic``: the export checks
    reads in bounds at them). Raises a positioned :class:`TcExportError` for what
    cannot be expressed; never returns invalid MLIR on purpose.
    """
    return _Exporter(fn, dict(sizes), dynamic).module()


def _symbol_name(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$.]*", name) else f'"{name}"'


class _Exporter:
    def __init__(self, fn: ir.Function, sizes: dict[str, int], dynamic: bool) -> None:
        self.declared = fn
        self.fn = widen_accumulators(fn)
        self.sizes = sizes
        self.dynamic = dynamic
        self.lines: list[str] = []
        self._count = 0
        self.current: dict[str, str] = {t.name: f"%{t.name}" for t in fn.inputs}
        self._index: dict[object, str] = {}

    # -- naming and errors -------------------------------------------------------------
    def fresh(self, hint: str) -> str:
        self._count += 1
        hint = re.sub(r"[^A-Za-z0-9_]", "_", hint) or "v"
        return f"%{hint}.{self._count}"  # '.' is never in a TC name: no clash with args

    def op(self, text: str, hint: str = "t") -> str:
        name = self.fresh(hint)
        self.lines.append(f"{name} = {text}")
        return name

    def fail(self, message: str, span) -> None:
        span = span or None
        raise TcExportError(f"{self.fn.name}: {message}",
                            line=span.line if span else None,
                            column=span.column if span else None,
                            source=self.fn.source or None)

    # -- sizes ----------------------------------------------------------------------------
    def static(self, s: Sym) -> int | None:
        """The value of ``s`` when it is fixed in the exported function, else None."""
        if s.is_const:
            return s.const
        return None if self.dynamic else s.evaluate(self.sizes)

    def same(self, a: Sym, b: Sym) -> bool:
        """Whether ``a == b`` holds in the exported function (for every size if dynamic)."""
        if self.dynamic:
            return (a - b) == Sym.of(0)
        return a.evaluate(self.sizes) == b.evaluate(self.sizes)

    def nonneg(self, s: Sym) -> bool:
        """Whether ``s >= 0`` is sure (at the sizes; for every size if dynamic)."""
        if s.evaluate(self.sizes) < 0:
            return False
        return not self.dynamic or (s.is_const and s.const >= 0)

    def index(self, s: Sym) -> str:
        """An SSA ``index`` value of ``s`` at the function's top level."""
        v = self.static(s)
        key = v if v is not None else s
        name = self._index.get(key)
        if name is not None:
            return name
        if v is not None:
            name = self.op(f"arith.constant {v} : index", "c")
        else:
            name = self._dynamic_index(s)
        self._index[key] = name
        return name

    def _dynamic_index(self, s: Sym) -> str:
        acc = self.index(Sym.of(s.const)) if s.const else None
        for atom, c in s.terms:
            if atom.kind == "sym":
                v = self._size(atom.name)
            elif atom.kind == "div":
                v = self.op(f"arith.floordivsi {self.index(atom.args[0])}, "
                            f"{self.index(Sym.of(atom.divisor))} : index")
            else:
                args = [self.index(a) for a in atom.args]
                v = args[0]
                for a in args[1:]:
                    v = self.op(f"arith.{'minsi' if atom.kind == 'min' else 'maxsi'} {v}, {a}"
                                " : index")
            if c != 1:
                v = self.op(f"arith.muli {v}, {self.index(Sym.of(c))} : index")
            acc = v if acc is None else self.op(f"arith.addi {acc}, {v} : index")
        return acc if acc is not None else self.index(Sym.of(0))

    def _size(self, name: str) -> str:
        key = ("size", name)
        if key not in self._index:
            bind = next(s for s in self.fn.sizes if s.name == name)
            t = self.fn.tensor(bind.tensor)
            self._index[key] = self.op(f"tensor.dim %{t.name}, {self.index(Sym.of(bind.dim))}"
                                       f" : {self.ttype(t)}", name)
        return self._index[key]

    # -- tensors ------------------------------------------------------------------------
    def shape(self, shape: tuple[Sym, ...]) -> list[int | None]:
        return [self.static(s) for s in shape]

    def ttype(self, t: ir.TensorDecl) -> str:
        return tensor_type(self.shape(t.shape), t.dtype)

    def _mixed(self, syms: list[Sym]) -> str:
        """Offsets or sizes of a slice op: literals where static, SSA values otherwise."""
        return ", ".join(str(v) if (v := self.static(s)) is not None else self.index(s)
                         for s in syms)

    def empty(self, shape: tuple[Sym, ...], dtype: ScalarType, hint: str) -> str:
        dyn = [self.index(s) for s in shape if self.static(s) is None]
        return self.op(f"tensor.empty({', '.join(dyn)}) : "
                       f"{tensor_type(self.shape(shape), dtype)}", hint)

    def fill(self, value, shape: tuple[Sym, ...], dtype: ScalarType, into: str,
             hint: str) -> str:
        c = self.op(constant(value, dtype), "c")
        tt = tensor_type(self.shape(shape), dtype)
        return self.op(f"linalg.fill ins({c} : {element_type(dtype)}) outs({into} : {tt}) "
                       f"-> {tt}", hint)

    def value_of(self, name: str) -> str:
        """The current value of a tensor; an unwritten output or temporary is zeros."""
        if name not in self.current:
            t = self.fn.tensor(name)
            self.current[name] = self.fill(0, t.shape, t.dtype,
                                           self.empty(t.shape, t.dtype, name), name)
        return self.current[name]

    def extract_slice(self, value: str, full: tuple[Sym, ...], offsets: list[Sym],
                      sizes: list[Sym], dtype: ScalarType, hint: str) -> str:
        ones = ", ".join("1" for _ in sizes)
        return self.op(f"tensor.extract_slice {value}[{self._mixed(offsets)}]"
                       f"[{self._mixed(sizes)}][{ones}] : "
                       f"{tensor_type(self.shape(full), dtype)} to "
                       f"{tensor_type(self.shape(tuple(sizes)), dtype)}", hint)

    def insert_slice(self, part: str, value: str, full: tuple[Sym, ...], offsets: list[Sym],
                     sizes: list[Sym], dtype: ScalarType, hint: str) -> str:
        ones = ", ".join("1" for _ in sizes)
        return self.op(f"tensor.insert_slice {part} into {value}[{self._mixed(offsets)}]"
                       f"[{self._mixed(sizes)}][{ones}] : "
                       f"{tensor_type(self.shape(tuple(sizes)), dtype)} into "
                       f"{tensor_type(self.shape(full), dtype)}", hint)

    # -- the function ------------------------------------------------------------------
    def module(self) -> str:
        fn = self.fn
        for st in fn.stages:
            _Stage(self, st).emit()
        outs = [self.value_of(t.name) for t in fn.outputs]
        args = ", ".join(f"%{t.name}: {self.ttype(t)}" for t in fn.inputs)
        types = ", ".join(self.ttype(t) for t in fn.outputs)
        sizes = ", ".join(f"{n}={self.sizes[n]}" for n in fn.size_names)
        head = [f"// tc export of '{fn.name}'"
                + (f" ({'dynamic sizes; checked at ' if self.dynamic else 'sizes '}{sizes})"
                   if sizes else ""),
                "module {",
                f"  func.func @{_symbol_name(fn.name)}({args}) -> ({types}) {{"]
        body = ["    " + line for text in self.lines for line in text.split("\n")]
        tail = [f"    return {', '.join(outs)} : {types}", "  }", "}"]
        return "\n".join(head + body + tail) + "\n"


_COMBINE_F = {"+": "arith.addf", "*": "arith.mulf", "min": "arith.minnumf",
              "max": "arith.maxnumf"}
_COMBINE_S = {"+": "arith.addi", "*": "arith.muli", "min": "arith.minsi", "max": "arith.maxsi"}
_COMBINE_U = {"+": "arith.addi", "*": "arith.muli", "min": "arith.minui", "max": "arith.maxui"}
_COMBINE_B = {"+": "arith.ori", "*": "arith.andi", "min": "arith.andi", "max": "arith.ori"}


def _combine_op(op: str, t: ScalarType) -> str:
    if t.is_bool:
        return _COMBINE_B[op]
    if t.is_float:
        return _COMBINE_F[op]
    return (_COMBINE_S if t.is_signed else _COMBINE_U)[op]


class _Stage:
    """One statement as (fill,) ``linalg.generic`` (and ``tensor.insert_slice``)."""

    def __init__(self, ex: _Exporter, st: ir.Stage) -> None:
        self.ex = ex
        self.st = st
        self.decl = ex.fn.tensor(st.tensor)
        # Reduction indices the right-hand side never mentions repeat one term: they are
        # folded into a count (IREE's CPU code sums such a loop-invariant body once).
        used = {e.name for e in ir.walk(st.rhs) if isinstance(e, ir.Var) and e.kind == "index"}
        unused = [d for d in st.reduction_dims if d.name not in used]
        if unused and st.op == "*" and ex.dynamic and not self.decl.dtype.is_bool:
            unused = []  # a dynamic power needs math.ipowi/fpowi, which IREE cannot lower
        domain = [d for d in st.domain if d not in unused]
        self.repeat = [d.hi - d.lo for d in unused] or None
        self.dims = [d.name for d in domain]
        self.pos = {n: k for k, n in enumerate(self.dims)}
        self.los = [d.lo for d in domain]
        self.exts = [d.hi - d.lo for d in domain]
        self.all_exts = [d.hi - d.lo for d in st.domain]
        self.operands: dict[tuple, _Operand] = {}
        self.body: Body | None = None
        self._vars: dict[str, str] = {}

    def fail(self, message: str, span=None) -> None:
        self.ex.fail(message, span or self.st.span)

    def emit(self) -> None:
        ex, st, t = self.ex, self.st, self.decl
        nl = len(st.lhs)
        if not ex.dynamic and any(ex.static(e) <= 0 for e in self.exts[:nl]):
            return  # an empty region: the statement does nothing
        offsets, sizes = self.los[:nl], self.exts[:nl]
        covers = all(ex.same(lo, Sym.of(0)) and ex.same(e, s)
                     for lo, e, s in zip(offsets, sizes, t.shape, strict=True))
        if st.init:
            identity = ir.identity(st.op, t.dtype)
            if covers:
                base = ex.current.get(t.name) or ex.empty(t.shape, t.dtype, t.name)
                ex.current[t.name] = ex.fill(identity, t.shape, t.dtype, base, t.name)
            else:
                whole = ex.value_of(t.name)
                part = ex.extract_slice(whole, t.shape, offsets, sizes, t.dtype, t.name)
                part = ex.fill(identity, tuple(sizes), t.dtype, part, t.name)
                ex.current[t.name] = ex.insert_slice(part, whole, t.shape, offsets, sizes,
                                                     t.dtype, t.name)
        if not ex.dynamic and any(ex.static(e) <= 0 for e in self.all_exts[nl:]):
            return  # an empty reduction leaves the identity (or the old value)
        self._collect(st.rhs, {})  # the reads through indexing maps, before the target
        if covers and st.op is None:
            target = ex.empty(t.shape, t.dtype, t.name)
        elif covers:
            target = ex.value_of(t.name)
        else:
            target = ex.extract_slice(ex.value_of(t.name), t.shape, offsets, sizes, t.dtype,
                                      t.name)
        result = self._generic(target)
        if covers:
            ex.current[t.name] = result
        else:
            ex.current[t.name] = ex.insert_slice(result, ex.value_of(t.name), t.shape,
                                                 offsets, sizes, t.dtype, t.name)

    # -- the generic op ---------------------------------------------------------------
    def _generic(self, target: str) -> str:
        ex, st, t = self.ex, self.st, self.decl
        nl, nd = len(st.lhs), len(self.dims)
        body = self.body = Body(ex.fresh, self._read, self._var, self.fail)
        value = body.expr(st.rhs, {}, {})
        if self.repeat is not None:
            value = self._repeated(value)
        out_arg = ex.fresh("out")
        if st.op is not None:
            value = body.bin(_combine_op(st.op, t.dtype), out_arg, value, t.dtype)
        body.lines.append(f"linalg.yield {value} : {element_type(t.dtype)}")
        ins = list(self.operands.values())
        dims = ", ".join(f"d{k}" for k in range(nd))
        maps = [op.results for op in ins]
        args = [f"{op.arg}: {element_type(op.elem)}" for op in ins]
        values = [(op.value, op.type) for op in ins]
        if nd > nl:  # the reduction extents, for linalg's loop ranges
            window = ex.empty(tuple(self.exts[nl:]), ScalarType.INT8, "window")
            maps.append(", ".join(f"d{k}" for k in range(nl, nd)))
            args.append(f"{ex.fresh('w')}: i8")
            values.append((window, tensor_type(ex.shape(tuple(self.exts[nl:])),
                                               ScalarType.INT8)))
        maps.append(", ".join(f"d{k}" for k in range(nl)))
        args.append(f"{out_arg}: {element_type(t.dtype)}")
        out_type = tensor_type(ex.shape(tuple(self.exts[:nl])), t.dtype)
        iters = ", ".join(['"parallel"'] * nl + ['"reduction"'] * (nd - nl))
        attrs = (f"{{indexing_maps = [{', '.join(f'affine_map<({dims}) -> ({m})>' for m in maps)}]"
                 f", iterator_types = [{iters}]}}")
        ins_text = (f" ins({', '.join(v for v, _ in values)} : "
                    f"{', '.join(ty for _, ty in values)})") if values else ""
        lines = [f"linalg.generic {attrs}{ins_text} outs({target} : {out_type}) {{",
                 f"^bb0({', '.join(args)}):"]
        lines += ["  " + line for line in body.lines]
        lines.append(f"}} -> {out_type}")
        return ex.op("\n".join(lines), t.name)

    def _count(self) -> tuple[int | None, str]:
        """The number of repeated terms: its value when static, and an ``index`` value."""
        ex = self.ex
        assert self.repeat is not None
        values = [ex.static(e) for e in self.repeat]
        if all(v is not None for v in values):
            n = 1
            for v in values:
                n *= v
            return n, ex.index(Sym.of(n))
        name = ex.index(self.repeat[0])
        for e in self.repeat[1:]:
            name = ex.op(f"arith.muli {name}, {ex.index(e)} : index", "count")
        return None, name

    def _repeated(self, v: str) -> str:
        """The reduction of ``v`` over the repeated identical terms (:meth:`_count`)."""
        body, st, t = self.body, self.st, self.decl.dtype
        assert body is not None
        op = st.op
        n, count = self._count()
        if t.is_bool or op in ("min", "max"):
            r = v  # idempotent
        elif op == "+":
            c = body.cast(body.op(f"arith.index_cast {count} : index to i64"),
                          ScalarType.INT64, t)
            r = body.bin("arith.mulf" if t.is_float else "arith.muli", v, c, t)
        else:  # a power by squaring (a static count: see __init__)
            assert n is not None
            mul = "arith.mulf" if t.is_float else "arith.muli"
            r, base, k = None, v, n
            while k:
                if k & 1:
                    r = base if r is None else body.bin(mul, r, base, t)
                k >>= 1
                if k:
                    base = body.bin(mul, base, base, t)
            r = r if r is not None else body.const(ir.identity(op, t), t)
        if n is None:  # no term at all when the count is 0
            zero = body.op(f"arith.cmpi eq, {count}, {body.index_const(0)} : index")
            r = body.select(zero, body.const(ir.identity(op, t), t), r, t)
        return r

    # -- reads ----------------------------------------------------------------------------
    def _collect(self, e: ir.Expr, lets: dict[str, ir.Expr]) -> None:
        """Create the operands of the reads of ``e`` that go through indexing maps."""
        if isinstance(e, ir.Let):
            lets = dict(lets)
            while isinstance(e, ir.Let):
                self._collect(e.value, lets)
                lets[e.name] = e.value
                e = e.body
            self._collect(e, lets)
            return
        if isinstance(e, ir.Read) and self._operand(e, lets) is not None:
            return
        for c in ir.children(e):
            self._collect(c, lets)

    def _operand(self, e: ir.Read, lets: dict[str, ir.Expr]) -> _Operand | None:
        """The operand of a read through an indexing map, or None when it must be a
        ``tensor.extract`` (not affine, a negative coefficient, not provably in bounds)."""
        ex = self.ex
        t = ex.fn.tensor(e.tensor)
        forms = []
        for sub in e.indices:
            aff = linearize(sub, lets)
            if aff is None or any(n not in self.pos for n in aff.indices):
                return None
            coeffs = tuple(aff.coeff(n) for n in self.dims)
            if any(c < 0 for c in coeffs):
                return None  # IREE's tiling mishandles maps such as -d0 + 2 (conv2d_dx)
            const = aff.rest + sum((self.los[k] * c for k, c in enumerate(coeffs) if c),
                                   Sym.of(0))
            # A loop of one iteration is a constant (its start, in ``const``): IREE folds
            # such loops away, and d0 * 2 + d2 with d0 gone would become a plain d2
            # spanning more than its loop (found by the differential sample).
            coeffs = tuple(0 if ex.static(self.exts[k]) == 1 else c
                           for k, c in enumerate(coeffs))
            forms.append((coeffs, const))
        key = (e.tensor, tuple((c, str(k)) for c, k in forms))
        if key in self.operands:
            return self.operands[key]
        offsets, sizes, results = [], [], []
        for (coeffs, const), extent in zip(forms, t.shape, strict=True):
            lo = const + sum((self.exts[k] * c - c for k, c in enumerate(coeffs) if c < 0),
                             Sym.of(0))
            hi = const + sum((self.exts[k] * c - c for k, c in enumerate(coeffs) if c > 0),
                             Sym.of(0))
            if not (ex.nonneg(lo) and ex.nonneg(extent - 1 - hi)):
                return None
            used = [(k, c) for k, c in enumerate(coeffs) if c]
            if len(used) == 1 and used[0][1] == 1:  # index + offset: a slice
                k = used[0][0]
                offsets.append(const)
                sizes.append(self.exts[k])
                results.append(f"d{k}")
                continue
            k0 = ex.static(const)
            if k0 is None:
                return None  # a symbolic offset in a dynamic export
            offsets.append(Sym.of(0))
            sizes.append(extent)
            results.append(_affine_text(used, k0))
        value = ex.value_of(e.tensor)
        if not all(ex.same(o, Sym.of(0)) and ex.same(s, x)
                   for o, s, x in zip(offsets, sizes, t.shape, strict=True)):
            value = ex.extract_slice(value, t.shape, offsets, sizes, t.dtype, e.tensor)
        op = _Operand(value, tensor_type(ex.shape(tuple(sizes)), t.dtype), ", ".join(results),
                      ex.fresh(e.tensor), t.dtype)
        self.operands[key] = op
        return op

    def _read(self, e: ir.Read, lets: dict[str, ir.Expr], env: dict[str, str]) -> str:
        op = self._operand(e, lets)
        if op is not None:
            return op.arg
        ex, body = self.ex, self.body
        assert body is not None
        t = ex.fn.tensor(e.tensor)
        if not ex.dynamic and any(ex.static(s) == 0 for s in t.shape):
            return body.const(False if t.dtype.is_bool else 0, t.dtype)  # nothing to read
        whole = ex.value_of(e.tensor)
        idx = []
        zero = body.index_const(0)
        for sub, extent in zip(e.indices, t.shape, strict=True):
            v = body.expr(sub, lets, env)
            cast = "arith.index_cast" if sub.type.is_signed else "arith.index_castui"
            i = body.op(f"{cast} {v} : {element_type(sub.type)} to index", "i")
            i = body.op(f"arith.maxsi {i}, {zero} : index", "i")
            last = ex.index(extent - 1)
            idx.append(body.op(f"arith.minsi {i}, {last} : index", "i"))
        return body.op(f"tensor.extract {whole}[{', '.join(idx)}] : {ex.ttype(t)}", e.tensor)

    def _var(self, e: ir.Var) -> str:
        body = self.body
        assert body is not None
        name = self._vars.get(e.name)
        if name is not None:
            return name
        if e.kind == "size":
            v = self.ex.static(Sym.of(e.name))
            if v is not None:
                name = body.const(v, e.type)
            else:
                size = self.ex.index(Sym.of(e.name))
                name = body.op(f"arith.index_cast {size} : index to {element_type(e.type)}")
        elif self.pos.get(e.name, -1) >= len(self.st.lhs):
            name = self._iota(self.pos[e.name], e.type)
        else:
            k = self.pos.get(e.name)
            if k is None:
                self.fail(f"unknown index '{e.name}'", e.span)
            i = body.op(f"linalg.index {k} : index", e.name)
            lo = self.los[k]
            if not self.ex.same(lo, Sym.of(0)):
                v = self.ex.static(lo)
                off = body.index_const(v) if v is not None else self.ex.index(lo)
                i = body.op(f"arith.addi {i}, {off} : index", e.name)
            name = body.op(f"arith.index_cast {i} : index to {element_type(e.type)}", e.name)
        self._vars[e.name] = name
        return name


    def _iota(self, k: int, t: ScalarType) -> str:
        """The values of reduction index ``k`` as an input of the generic (``lo``,
        ``lo + 1``, ...): IREE's CPU code fails to vectorise a reduction whose body
        reads a reduction index through ``linalg.index`` alone (``+=! float(r)``)."""
        ex = self.ex
        ext, lo = self.exts[k], self.los[k]
        et = element_type(t)
        out = ex.empty((ext,), t, "iota")
        start = ex.static(lo)
        offset = f"arith.constant {start} : index" if start is not None else None
        lines = [f"linalg.generic {{indexing_maps = [affine_map<(d0) -> (d0)>], "
                 f"iterator_types = [\"parallel\"]}} outs({out} : "
                 f"{tensor_type(ex.shape((ext,)), t)}) {{"]
        arg, i, o, c = (ex.fresh(h) for h in ("o", "i", "i", "c"))
        lines.append(f"^bb0({arg}: {et}):")
        lines.append(f"  {i} = linalg.index 0 : index")
        off = c if offset is not None else ex.index(lo)
        if offset is not None:
            lines.append(f"  {c} = {offset}")
        lines.append(f"  {o} = arith.addi {i}, {off} : index")
        v = ex.fresh("v")
        lines.append(f"  {v} = arith.index_cast {o} : index to {et}")
        lines.append(f"  linalg.yield {v} : {et}")
        lines.append(f"}} -> {tensor_type(ex.shape((ext,)), t)}")
        value = ex.op("\n".join(lines), "iota")
        op = _Operand(value, tensor_type(ex.shape((ext,)), t), f"d{k}",
                      ex.fresh(self.dims[k]), t)
        self.operands[("iota", k)] = op
        return op.arg


def _affine_text(terms: list[tuple[int, int]], const: int) -> str:
    """``d2 * 2 + d1 - 1`` for terms (loop, coefficient) and a constant."""
    parts: list[str] = []
    for k, c in terms:
        mag = f"d{k}" if abs(c) == 1 else f"d{k} * {abs(c)}"
        if not parts:
            parts.append(mag if c > 0 else f"-{mag}" if abs(c) == 1 else f"d{k} * {c}")
        else:
            parts.append(f"{'+' if c > 0 else '-'} {mag}")
    if const or not parts:
        parts.append(str(const) if not parts else f"{'+' if const > 0 else '-'} {abs(const)}")
    return " ".join(parts)
