"""The compiler pipeline: IR function + mapping options + concrete sizes -> kernels.

    scop -> dependences -> schedule (isl) -> tiling -> mapping -> isl AST
         -> kernel ASTs + host program -> CUDA C and OpenCL C

Every stage is a pure function of the previous one; :class:`CompiledProgram` keeps
the text of each (for ``python -m tc explain --stage ...``) and its duration.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import islpy as isl

from codegen import host as host_mod
from codegen import kernel as k
from codegen.lower import ERROR_BUFFER, buffer_name, lower_kernel, mark_depths
from codegen.printer import print_kernel
from polyhedral.dependences import compute_dependences
from polyhedral.intra_tile import reschedule_tiles
from polyhedral.mapping import MappedSchedule, build_ast, map_to_gpu
from polyhedral.schedule import compute_schedule, schedule_str, tile_schedule
from polyhedral.scop import build_scop
from tc.ir import nodes as ir
from tc.ir.types import INDEX_TYPE, ScalarType
from tc.options import MappingOptions


@dataclass(frozen=True)
class CompiledKernel:
    """One kernel: its AST, its CUDA and OpenCL text, and its launch configuration."""

    kernel: k.Kernel
    cuda_source: str
    opencl_source: str

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
                 input_strides: Sequence[Sequence[int]]) -> tuple[k.Buffer, ...]:
    """The global buffers: inputs with their real strides, outputs and temporaries
    contiguous, then the error flag."""
    out = []
    for t, strides in zip(fn.inputs, input_strides, strict=True):
        shape = tuple(s.evaluate(sizes) for s in t.shape)
        out.append(k.Buffer(buffer_name(t.name), t.dtype, tuple(map(_const, shape)),
                            tuple(map(_const, strides)), read_only=True))
    for t in fn.outputs + fn.temps:
        shape = tuple(s.evaluate(sizes) for s in t.shape)
        out.append(k.Buffer(buffer_name(t.name), t.dtype, tuple(map(_const, shape)),
                            tuple(map(_const, contiguous_strides(shape)))))
    out.append(k.Buffer(ERROR_BUFFER, ScalarType.INT32, (_const(1),), (_const(1),)))
    return tuple(out)


def dependence_pairs(deps: isl.UnionMap) -> frozenset[tuple[str, str]]:
    """The pairs of statements (source, sink) with some dependence between them."""
    pairs: set[tuple[str, str]] = set()
    deps.foreach_map(lambda m: pairs.add((m.get_tuple_name(isl.dim_type.in_),
                                          m.get_tuple_name(isl.dim_type.out))))
    return frozenset(pairs)


def compile_program(fn: ir.Function, options: MappingOptions, sizes: Mapping[str, int],
                    input_strides: Sequence[Sequence[int]]) -> CompiledProgram:
    """Compile ``fn`` for concrete sizes and input strides under ``options``."""
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
    tiled = reschedule_tiles(scop, deps, tile_schedule(schedule, options.tile_sizes), options)
    stages["schedule"] = schedule_str(tiled)
    lap("schedule")
    mapped = map_to_gpu(scop, deps, tiled, options)
    ast = build_ast(dataclasses.replace(mapped, schedule=mark_depths(mapped.schedule)))
    stages["mapped"] = schedule_str(mapped.schedule)
    stages["isl_ast"] = ast.to_C_str()
    lap("map")
    params = {isl_name: tc_name for tc_name, isl_name in scop.param_ids.items()}
    program, kernel_asts = host_mod.split_program(ast, params)
    buffers = make_buffers(fn, sizes, input_strides)
    shapes = {t.name: tuple(s.evaluate(sizes) for s in t.shape) for t in fn.tensors}
    checks: list[ir.Read] = []
    kernels = []
    pairs = dependence_pairs(deps.validity)
    for m in mapped.kernels:
        kern = lower_kernel(kernel_asts[m.index], fn, f"tc_{fn.name}_{m.index}", m.grid,
                            m.block, buffers, params, shapes, checks, pairs, options)
        kernels.append(kern)
    lap("lower")
    compiled = tuple(CompiledKernel(kern, print_kernel(kern, "cuda"),
                                    print_kernel(kern, "opencl")) for kern in kernels)
    lap("print")
    stages["host"] = host_mod.host_str(program)
    return CompiledProgram(fn, options.copy(), dict(sizes), buffers, compiled, program,
                           tuple(checks), stages, timings, mapped)
