"""The compiler pipeline: IR function + mapping options + concrete sizes -> kernels.

    scop -> dependences -> schedule (isl) -> tiling -> mapping (the target's
         strategy: GPU blocks/threads or CPU parallel/vector loops) -> isl AST
         -> kernel ASTs + host program

Every stage is a pure function of the previous one; :class:`CompiledProgram` keeps
the duration of each and its text (some only when traced: for ``python -m tc explain
--stage ...``). Kernels
are printed for a target only when asked (:meth:`CompiledKernel.source`): a program
mapped for GPUs prints as CUDA or OpenCL, one mapped for CPUs as C.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import islpy as isl

from codegen import host as host_mod
from codegen import kernel as k
from codegen import stats
from codegen.chunked_sums import chunk_sums
from codegen.launch_config import grid_spans, with_grid_spans
from codegen.lower import (
    ERROR_BUFFER,
    buffer_name,
    lower_kernel,
    mark_depths,
    promote_kernel,
    size_expr,
    synchronize_kernel,
)
from codegen.printer import print_kernel
from codegen.register_arrays import promote_rows
from codegen.segments import renumber_checks, shift_launches
from codegen.split_reductions import split_reductions
from codegen.wide_indices import widen_kernel
from polyhedral.cpu_mapping import PARALLEL_MIN_INSTANCES, map_to_cpu
from polyhedral.dependences import compute_dependences
from polyhedral.intra_tile import reschedule_tiles
from polyhedral.mapping import MappedSchedule, map_to_gpu, member_spans
from polyhedral.packing import DEFAULT_PACK_LIMIT, pack_tiles
from polyhedral.promotion import DEFAULT_SHARED_LIMIT, promote_shared
from polyhedral.promotion import build_ast as build_annotated_ast
from polyhedral.schedule import compute_schedule, schedule_str, tile_schedule
from polyhedral.scop import Scop, build_scop
from polyhedral.threads import prefix_schedules, thread_crossing_pairs
from tc.ir import nodes as ir
from tc.ir.index_width import index_bits
from tc.ir.split_sums import split_sums, sum_splits
from tc.ir.types import INDEX_TYPE, ScalarType
from tc.ir.wide_accumulators import widen_accumulators
from tc.options import MappingOptions

#: The compilation stages after the front end, in order: the keys of
#: ``CompiledProgram.timings`` (benchmarks/compile_latency.py reports them, with
#: ``parse`` and ``sema`` before and ``print`` after).
PIPELINE = ("scop", "dependences", "schedule", "map", "lower", "private", "barriers")
#: The stages whose text :func:`compile_program` records only when asked (``trace``):
#: printing the kernel AST after each kernel stage would cost every compilation some 7%
#: (measured over the catalogue), for the sake of ``python -m tc explain``.
TRACED = ("dependences", "map", "lower", "private", "barriers")


@dataclass(frozen=True)
class CompiledKernel:
    """One kernel: its AST and its launch configuration; printed on demand."""

    kernel: k.Kernel

    def source(self, target: str = "kernel") -> str:
        """The kernel as ``target``'s source text (a registered target's name, or
        ``"kernel"`` for the readable pseudo-C of the kernel AST)."""
        return print_kernel(self.kernel, target)

    @property
    def cuda_source(self) -> str:
        return self.source("cuda")

    @property
    def opencl_source(self) -> str:
        return self.source("opencl")

    @property
    def name(self) -> str:
        return self.kernel.name

    @property
    def grid(self) -> tuple[int, int, int]:
        return self.kernel.grid

    @property
    def block(self) -> tuple[int, int, int]:
        return self.kernel.block


@dataclass(frozen=True, eq=False)
class CompiledProgram:
    """Everything needed to run a definition for one input signature."""

    fn: ir.Function
    options: MappingOptions
    sizes: Mapping[str, int]
    buffers: tuple[k.Buffer, ...]  # kernel arguments, in order (the error flag last)
    kernels: tuple[CompiledKernel, ...]
    host: host_mod.HostNode
    checks: tuple[ir.Read, ...]  # the reads guarded in the kernels, numbered from 1
    stages: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    mapped: MappedSchedule | None = None  # the mapped schedule tree (for tools and tests)
    # matchLibraryCalls: global buffers of intermediate results (in ``buffers`` too,
    # before the error flag), which the executor allocates zero-filled ...
    scratch: tuple[k.Buffer, ...] = ()
    # ... and the program's parts, when some stages are compiled by a template (``mapped``
    # is then None: each pipeline segment has its own).
    segments: tuple[Segment, ...] = ()
    # The mapping strategy (a target's ``strategy``): "gpu" or "cpu".
    strategy: str = "gpu"
    # The width of the kernels' index arithmetic: 64 when a tensor, size or loop bound
    # of the compiled call needs it (tc.ir.index_width), else 32.
    index_bits: int = 32
    # Sizes and strides are kernel arguments (see compile_program): ``sizes`` and the
    # buffers' constant shapes then describe nothing but the first call.
    symbolic: bool = False
    # The function the kernels compute when it is not ``fn``: ``fn`` with its long
    # float sums split in two stages (tc.ir.split_sums), whose temporaries the
    # executor allocates; and which sums were split (a symbolic program serves only
    # the calls whose sizes split the same ones: codegen.executor.memo_key).
    compiled: ir.Function | None = None
    splits: tuple = ()

    @property
    def kernel_fn(self) -> ir.Function:
        """The function the kernels compute (``fn``, or ``fn`` with split sums)."""
        return self.compiled if self.compiled is not None else self.fn


def _const(v: int) -> ir.Expr:
    return ir.IntImm(int(v), type=INDEX_TYPE)


def contiguous_strides(shape: Sequence[int]) -> tuple[int, ...]:
    """The strides, in elements, of a dense row-major tensor of ``shape``."""
    strides, acc = [], 1
    for n in reversed(shape):
        strides.append(acc)
        acc *= max(n, 1)
    return tuple(reversed(strides))


def make_buffers(fn: ir.Function, sizes: Mapping[str, int],
                 input_strides: Sequence[Sequence[int]], symbolic: bool = False
                 ) -> tuple[k.Buffer, ...]:
    """The global buffers: inputs with their real strides, outputs and temporaries
    contiguous, then the error flag.

    ``symbolic``: shapes are expressions of the size arguments, and an input's
    strides are arguments too (:func:`stride_name`) except those equal to 1 (what
    :func:`unit_strides` records): they stay 1, so that the C compiler sees unit
    strides and vectorises. Outputs' strides are products of sizes."""
    out = []
    for t, strides in zip(fn.inputs, input_strides, strict=True):
        if symbolic:
            shape = tuple(size_expr(s) for s in t.shape)
            unit = unit_strides(t, sizes, strides)
            st = tuple(_const(1) if u else ir.Var(stride_name(t.name, d), "size", type=INDEX_TYPE)
                       for d, u in enumerate(unit))
        else:
            shape = tuple(map(_const, (s.evaluate(sizes) for s in t.shape)))
            st = tuple(map(_const, strides))
        out.append(k.Buffer(buffer_name(t.name), t.dtype, shape, st, read_only=True))
    for t in fn.outputs + fn.temps:
        if symbolic:
            shape = tuple(size_expr(s) for s in t.shape)
            st, acc = [], _const(1)
            for e in reversed(shape):
                st.append(acc)
                acc = _mul(acc, ir.Binary("max", e, _const(1), type=INDEX_TYPE))
            st = tuple(reversed(st))
        else:
            shape_v = tuple(s.evaluate(sizes) for s in t.shape)
            shape = tuple(map(_const, shape_v))
            st = tuple(map(_const, contiguous_strides(shape_v)))
        out.append(k.Buffer(buffer_name(t.name), t.dtype, shape, st))
    out.append(k.Buffer(ERROR_BUFFER, ScalarType.INT32, (_const(1),), (_const(1),)))
    return tuple(out)


def _mul(a: ir.Expr, b: ir.Expr) -> ir.Expr:
    if isinstance(a, ir.IntImm) and a.value == 1:
        return b
    return ir.Binary("*", a, b, type=INDEX_TYPE)


def stride_name(tensor: str, dim: int) -> str:
    """The kernel argument holding an input's stride along ``dim`` (symbolic mode)."""
    return f"st_{tensor}_{dim}"


def unit_strides(t: ir.TensorDecl, sizes: Mapping[str, int],
                 strides: Sequence[int]) -> tuple[bool, ...]:
    """Which dimensions of input ``t`` have stride 1 and more than one element (a
    dimension of one element has no meaningful stride)."""
    return tuple(st == 1 and s.evaluate(sizes) > 1 for s, st in zip(t.shape, strides,
                                                                     strict=True))


def stride_arguments(fn: ir.Function, sizes: Mapping[str, int],
                     input_strides: Sequence[Sequence[int]]) -> tuple[tuple[str, int, int], ...]:
    """The stride arguments of a symbolic program for a call: (input, dim, stride) of
    each stride that is not fixed to 1, in argument order."""
    return tuple((t.name, d, st)
                 for t, strides in zip(fn.inputs, input_strides, strict=True)
                 for d, (st, u) in enumerate(zip(strides, unit_strides(t, sizes, strides),
                                                 strict=True)) if not u)


def unit_dims(fn: ir.Function, sizes: Mapping[str, int],
              input_strides: Sequence[Sequence[int]]) -> dict[str, int | None]:
    """Each tensor's dimension of stride 1 (outputs and temporaries are dense: their
    last), None when none has (a scalar, or a view without one)."""
    out: dict[str, int | None] = {}
    for t, strides in zip(fn.inputs, input_strides, strict=True):
        ones = [d for d, u in enumerate(unit_strides(t, sizes, strides)) if u]
        out[t.name] = ones[-1] if ones else None
    for t in fn.outputs + fn.temps:
        out[t.name] = len(t.shape) - 1 if t.shape else None
    return out


def _instances(fn: ir.Function, statements: Sequence[str], sizes: Mapping[str, int]) -> int:
    """The number of instances of scop statements ``statements`` at ``sizes``."""
    total = 0
    for name in statements:
        st = fn.stages[int(name[1:].removesuffix("_init"))]
        dims = st.lhs_dims if name.endswith("_init") else st.domain
        total += math.prod(max(0, d.hi.evaluate(sizes) - d.lo.evaluate(sizes)) for d in dims)
    return total


def instance_count(fn: ir.Function, statements: Sequence[str]) -> ir.Expr:
    """The number of instances of scop statements ``statements`` as a 64-bit
    expression of the size arguments (a symbolic kernel's parallel loop runs on one
    thread below a threshold of it)."""
    total: ir.Expr | None = None
    for name in statements:
        st = fn.stages[int(name[1:].removesuffix("_init"))]
        dims = st.lhs_dims if name.endswith("_init") else st.domain
        count: ir.Expr = ir.IntImm(1, type=ScalarType.INT64)
        for d in dims:
            extent = ir.Cast(size_expr(d.hi - d.lo), type=ScalarType.INT64)
            count = ir.Binary("*", count, extent, type=ScalarType.INT64)
        total = count if total is None else ir.Binary("+", total, count,
                                                      type=ScalarType.INT64)
    return total if total is not None else ir.IntImm(0, type=ScalarType.INT64)


def dependence_pairs(deps: isl.UnionMap) -> frozenset[tuple[str, str]]:
    """The pairs of statements (source, sink) with some dependence between them."""
    pairs: set[tuple[str, str]] = set()
    deps.foreach_map(lambda m: pairs.add((m.get_tuple_name(isl.dim_type.in_),
                                          m.get_tuple_name(isl.dim_type.out))))
    return frozenset(pairs)


def _size_context(scop: Scop, sizes: Mapping[str, int]) -> isl.Set:
    """The scop's parameters fixed to the concrete sizes."""
    names = ", ".join(scop.param_ids[n] for n in scop.param_ids)
    cons = " and ".join(f"{scop.param_ids[n]} = {int(sizes[n])}" for n in scop.param_ids)
    return isl.Set.read_from_str(scop.context.get_ctx(),
                                 f"[{names}] -> {{ : {cons or 'true'} }}")


def compile_program(fn: ir.Function, options: MappingOptions, sizes: Mapping[str, int],
                    input_strides: Sequence[Sequence[int]], strategy: str = "gpu",
                    symbolic: bool = False, *, trace: bool = False) -> CompiledProgram:
    """Compile ``fn`` (see :func:`_compile`), with 64-bit index arithmetic when these
    sizes and strides need it (:func:`tc.ir.index_width.index_bits`). A symbolic
    program of 32-bit indices serves only the calls that need no more
    (:func:`codegen.executor.memo_key`)."""
    program = _compile(fn, options, sizes, input_strides, strategy, symbolic, trace=trace)
    if index_bits(fn, sizes, input_strides) == 32:
        return program
    # Every kernel, those of templates and segments too (widening is idempotent).
    kernels = tuple(CompiledKernel(widen_kernel(ck.kernel)) for ck in program.kernels)
    return dataclasses.replace(program, kernels=kernels, index_bits=64)


def symbolic_options(options: MappingOptions, strategy: str) -> bool:
    """Whether ``options`` let a program mapped with ``strategy`` serve every size.

    Fixed parameters ask for one shape. On GPUs, the reduction templates of
    ``matchLibraryCalls`` (``codegen.reduction``) plan their trees for one shape: such
    a program stays per shape (correct, it only compiles again for a new one), and so,
    to keep the executors' keys simple, does every program compiled with them."""
    if options.fix_parameters:
        return False
    return not (strategy == "gpu" and options.match_library_calls)


def _compile(fn: ir.Function, options: MappingOptions, sizes: Mapping[str, int],
             input_strides: Sequence[Sequence[int]], strategy: str = "gpu",
             symbolic: bool = False, *, trace: bool = False) -> CompiledProgram:
    """Compile ``fn`` for concrete sizes and input strides under ``options``, mapped
    with ``strategy`` ("gpu": blocks and threads; "cpu": parallel and vector loops;
    a target's ``strategy``).

    ``symbolic`` (with ``fixParametersBeforeScheduling`` off, and on GPUs without
    ``matchLibraryCalls``: :func:`symbolic_options`): the kernels take the sizes and the
    inputs' strides as arguments (strides of 1 stay 1), so the program serves every
    call of the same dtypes, ranks and unit strides
    (:func:`codegen.executor.signature_class`); ``sizes`` and ``input_strides`` then
    only guide choices that affect speed (the CPU's vector loop and tiles). On GPUs,
    block sizes, shared-memory boxes, unrolling and barriers are then decided for
    every size, and the grid per call (:mod:`codegen.launch_config`).

    ``trace``: ``stages`` holds a text for every name of :data:`PIPELINE` (the
    :data:`TRACED` ones are left out otherwise)."""
    stats.count("compile_program")
    if strategy not in ("gpu", "cpu"):
        raise ValueError(f"unknown mapping strategy {strategy!r}")
    symbolic = symbolic and symbolic_options(options, strategy)
    # Half-precision sums and products accumulate in float32 (tc.ir.wide_accumulators),
    # and long float sums run in two stages (tc.ir.split_sums): the kernels compute
    # ``fn`` so rewritten; the program still stands for ``fn``.
    splits = sum_splits(fn, sizes)
    source, base, fn = fn, widen_accumulators(fn), split_sums(fn, splits)
    split = {"compiled": None if fn is source else fn, "splits": splits}
    if options.match_library_calls and strategy == "gpu":
        # The templates reduce with trees, accurate at any length: the sums they take
        # need no split.
        segmented = _compile_segmented(base, options, sizes, input_strides, trace)
        if segmented is not None and fn is not base:
            taken = {i for seg in segmented.segments if seg.kind == "reduction"
                     for i in seg.stages}
            if any(levels and k not in taken for k, (_, levels) in enumerate(splits)):
                segmented = _compile_segmented(fn, options, sizes, input_strides, trace)
                if segmented is not None:
                    return dataclasses.replace(segmented, fn=source, **split)
                segmented = None
        if segmented is not None:
            return dataclasses.replace(segmented, fn=source,
                                       compiled=None if base is source else base,
                                       splits=splits)
    timings: dict[str, float] = {}
    stages: dict[str, str] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = now - clock
        clock = now

    scop = build_scop(fn, dict(sizes) if options.fix_parameters else None)
    stages["scop"] = str(scop)
    lap("scop")
    deps = compute_dependences(scop)
    lap("dependences")
    schedule = compute_schedule(scop, deps, options)
    context = _size_context(scop, sizes)
    # On a CPU, this call's sizes guide the tiling (speed only, as they guide the
    # vector loop): a loop no longer than its tile is not tiled.
    spans = (lambda node: member_spans(node, context)) if strategy == "cpu" else None
    tiled = reschedule_tiles(scop, deps, tile_schedule(schedule, options.tile_sizes, spans),
                             options)
    stages["schedule"] = schedule_str(tiled)
    lap("schedule")
    if strategy == "cpu":
        # The sizes of this call guide the choice of loops (their spans) even when
        # the kernel serves every size: that choice affects speed, never results.
        mapped = map_to_cpu(scop, deps, tiled, options, unit_dims(fn, sizes, input_strides),
                            context, sizes, threshold=not symbolic)
    else:
        # What the kernels' code depends on (block, shared boxes, barriers) must hold
        # at every size when they serve every size: decided under the scop's context.
        if symbolic:
            context = scop.context
        mapped = map_to_gpu(scop, deps, tiled, options, context, symbolic)
    plans: dict = {}
    if options.use_shared_memory and strategy == "gpu":
        limit = options.max_shared_memory
        marked, plans = promote_shared(mapped, sizes, context,
                                       DEFAULT_SHARED_LIMIT if limit is None else limit,
                                       options.shared_depth, symbolic)
        mapped = dataclasses.replace(mapped, schedule=marked)
    elif options.use_shared_memory:  # on a CPU, shared memory means packing
        limit = options.max_shared_memory
        marked, plans = pack_tiles(mapped, context,
                                   DEFAULT_PACK_LIMIT if limit is None else limit,
                                   options.shared_depth, symbolic)
        mapped = dataclasses.replace(mapped, schedule=marked)
    ast, annotations = build_annotated_ast(mark_depths(mapped.schedule), scop.context, plans)
    stages["mapped"] = schedule_str(mapped.schedule)
    stages["isl_ast"] = ast.to_C_str()
    lap("map")
    params = {isl_name: tc_name for tc_name, isl_name in scop.param_ids.items()}
    program, kernel_asts = host_mod.split_program(ast, params)
    if len(kernel_asts) < len(mapped.kernels):
        # isl leaves out a kernel whose statements all have empty domains (a literal
        # empty range: they do nothing, docs/language.md section 5); so does the program.
        new = {old: k for k, old in enumerate(sorted(kernel_asts))}
        mapped = dataclasses.replace(mapped, kernels=tuple(
            dataclasses.replace(m, index=new[m.index]) for m in mapped.kernels
            if m.index in new))
        program = host_mod.renumber_launches(program, new)
        kernel_asts = {new[i]: a for i, a in kernel_asts.items()}
    buffers = make_buffers(fn, sizes, input_strides, symbolic)
    if symbolic:
        shapes = {t.name: tuple(size_expr(s) for s in t.shape) for t in fn.tensors}
    else:
        shapes = {t.name: tuple(s.evaluate(sizes) for s in t.shape) for t in fn.tensors}
    checks: list[ir.Read] = []
    kernels = []
    prefixes = prefix_schedules(mapped.schedule)

    every = dependence_pairs(deps.validity)

    def pairs(places, threads):
        crossing = thread_crossing_pairs(prefixes, deps.validity, places, threads, context)
        copies = {(f"copy:{a}", f"copy:{b}") for a, b in every}  # see codegen.shared
        copies |= {(f"copy:{a}", b) for a, b in every} | {(a, f"copy:{b}") for a, b in every}
        return crossing | copies

    for m in mapped.kernels:
        kernels.append(lower_kernel(kernel_asts[m.index], fn, f"tc_{fn.name}_{m.index}", m.grid,
                                    m.block, buffers, params, shapes, checks, options, plans,
                                    annotations))
    if symbolic:
        strides = tuple(stride_name(t, d) for t, d, _ in
                        stride_arguments(fn, sizes, input_strides))
        kernels = [dataclasses.replace(kern, sizes=kern.sizes + strides) for kern in kernels]
        if strategy == "cpu":
            kernels = [dataclasses.replace(
                kern, meta={**kern.meta, "parallel_if": instance_count(fn, m.statements)})
                for kern, m in zip(kernels, mapped.kernels, strict=True)]
        else:
            kernels = [with_grid_spans(kern, grid_spans(m, context, params))
                       for kern, m in zip(kernels, mapped.kernels, strict=True)]
    lap("lower")
    lowered = kernels
    # On a CPU, a scalar in a register is always right (no occupancy to trade for it),
    # and vector reductions need their accumulators in scalars: promote regardless.
    if strategy == "cpu":
        kernels = [promote_rows(kern) for kern in kernels]
    if options.use_private_memory or strategy == "cpu":
        kernels = [promote_kernel(kern, options.private_depth) for kern in kernels]
    if strategy == "cpu" and options.cpu_parallel:
        # Full reductions over threads (the accumulators are locals by now); a kernel
        # too small for threads at these sizes stays serial, as the mapping decides.
        kernels = [split_reductions(kern) if symbolic or _instances(fn, m.statements, sizes)
                   >= PARALLEL_MIN_INSTANCES else kern
                   for kern, m in zip(kernels, mapped.kernels, strict=True)]
    # Long float sums in chunks, on every target and under every option: the error
    # of a float32 sum then stops growing with its length (codegen.chunked_sums).
    kernels = [chunk_sums(kern) for kern in kernels]
    lap("private")
    private = kernels
    kernels = [synchronize_kernel(kern, pairs) for kern in kernels]
    lap("barriers")
    compiled = tuple(CompiledKernel(kern) for kern in kernels)
    stages["host"] = host_mod.host_str(program)
    if trace:  # printed after the last lap, so that the timings leave printing out
        stages.update(dependences=str(deps), map=_map_text(stages), lower=kernels_text(lowered),
                      private=kernels_text(private), barriers=kernels_text(kernels))
    return CompiledProgram(source, options.copy(), dict(sizes), buffers, compiled, program,
                           tuple(checks), stages, timings, mapped, strategy=strategy,
                           symbolic=symbolic, **split)


# -- matchLibraryCalls: segments ----------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    """Consecutive stages compiled together in a program that ``matchLibraryCalls``
    split: one reduction stage compiled by :mod:`codegen.reduction`, or a maximal run of
    other stages compiled by the polyhedral pipeline as a function of its own."""

    kind: str  # "reduction" | "pipeline"
    stages: range  # positions in fn.stages
    kernels: range  # positions in CompiledProgram.kernels
    mapped: MappedSchedule | None = None  # a pipeline segment's (kernels numbered from 0)


def kernels_text(kernels: Sequence[k.Kernel]) -> str:
    """Kernel ASTs as readable pseudo-C, each under its launch configuration."""
    return "\n\n".join(f"# kernel {kern.name}: grid {kern.grid}, block {kern.block}\n"
                       f"{print_kernel(kern, 'kernel')}" for kern in kernels)


def _map_text(stages: Mapping[str, str]) -> str:
    """The ``map`` stage: the mapped schedule tree and the AST isl generates from it."""
    return f"{stages['mapped']}\n# isl AST:\n{stages['isl_ast']}"


def _compile_segmented(fn: ir.Function, options: MappingOptions, sizes: Mapping[str, int],
                       input_strides: Sequence[Sequence[int]],
                       trace: bool = False) -> CompiledProgram | None:
    """``fn`` compiled in segments (see :class:`Segment`), or None when no stage is a
    reduction that the template takes (the caller then compiles ``fn`` whole)."""
    from codegen import reduction

    plans = {i: p for i in range(len(fn.stages))
             if (p := reduction.plan_reduction(fn, i, sizes, options)) is not None}
    if not plans:
        return None
    # Every kernel takes every global buffer, so the scratch buffers exist up front.
    scratch = tuple(b for p in plans.values() if (b := reduction.scratch_buffer(p)) is not None)
    base = make_buffers(fn, sizes, input_strides)
    buffers = base[:-1] + scratch + base[-1:]
    shapes = {t.name: tuple(s.evaluate(sizes) for s in t.shape) for t in fn.tensors}
    plain = options.copy().matchLibraryCalls(False)
    kernels: list[k.Kernel] = []
    checks: list[ir.Read] = []  # numbered across the whole program
    hosts: list[host_mod.HostNode] = []
    segments: list[Segment] = []
    keys = ("scop", "schedule", "mapped", "isl_ast") + (TRACED if trace else ())
    texts: dict[str, list[str]] = {key: [] for key in keys}
    timings: dict[str, float] = {}
    start = 0
    while start < len(fn.stages):
        first = len(kernels)
        if start in plans:
            clock = time.perf_counter()
            plan, end = plans[start], start + 1
            names = [f"tc_{fn.name}_{first + j}" for j in range(2)]
            kernels += reduction.lower_reduction(fn, plan, names, buffers, shapes, checks,
                                                 readonly_cache=options.use_readonly_cache)
            timings["lower"] = timings.get("lower", 0.0) + time.perf_counter() - clock
            for key in texts:
                text = f"# {reduction.describe(plan)}"
                if key in ("lower", "private", "barriers"):  # the template's own kernels
                    text += "\n" + kernels_text(kernels[first:])
                texts[key].append(text)
            hosts.append(host_mod.HostBlock(tuple(map(host_mod.Launch,
                                                      range(first, len(kernels))))))
            segments.append(Segment("reduction", range(start, end), range(first, len(kernels))))
        else:
            end = start
            while end < len(fn.stages) and end not in plans:
                end += 1
            # A sub-function of the run: its scop names S0.. and lower.instantiate both
            # index the run's own stages, so the two agree.
            sub = compile_program(dataclasses.replace(fn, stages=fn.stages[start:end]), plain,
                                  sizes, input_strides, trace=trace)
            for ck in sub.kernels:
                kern = ck.kernel
                kernels.append(dataclasses.replace(
                    kern, name=f"tc_{fn.name}_{len(kernels)}",
                    buffers=buffers + tuple(b for b in kern.buffers if b.space != "global"),
                    body=renumber_checks(kern.body, len(checks))))
            checks += sub.checks
            hosts.append(shift_launches(sub.host, first))
            for key in texts:
                texts[key].append(f"# stages {start}..{end - 1}: polyhedral pipeline\n"
                                  f"{sub.stages[key]}")
            for key, seconds in sub.timings.items():
                timings[key] = timings.get(key, 0.0) + seconds
            segments.append(Segment("pipeline", range(start, end), range(first, len(kernels)),
                                    sub.mapped))
        start = end
    compiled = tuple(CompiledKernel(kern) for kern in kernels)
    program = host_mod.HostBlock(tuple(hosts))
    stages = {key: "\n".join(parts) for key, parts in texts.items()}
    stages["host"] = host_mod.host_str(program)
    return CompiledProgram(fn, options.copy(), dict(sizes), buffers, compiled, program,
                           tuple(checks), stages, timings, None, scratch, tuple(segments))
