"""Default mapping options: a cheap per-target heuristic, used when no options factory
is given.

:func:`default_options` reads the definition (its stages, their iteration domains at
the call's sizes, what each statement reads) and the target (its mapping strategy, its
launch limits and its shared memory), and returns :class:`~tc.options.MappingOptions`
without scheduling, compiling or timing anything: a few dozen arithmetic operations
per stage (well under a millisecond). Options never decide whether a result is right
(every option set must give the reference interpreter's results; the scheduler
decides which fusions and tilings are legal), only how fast it comes. The rules below
start from the naive options (on the CPU target already parallel, vectorised and
register-tiled) and change what the tuner's picks in ``benchmarks/results/`` pointed
at and single-thread timings against naive confirmed, one rule at a time (the
factors quoted are those timings at the benchmark sizes); they keep the structure that
makes one kernel serve every shape (sizes stay symbolic:
``fixParametersBeforeScheduling`` off). Options change with the sizes only at
thresholds (a loop longer than a tile, enough work for threads or packing), so a
smaller last batch usually gets the same options and compiles nothing.

Both strategies
    * **Fusion**: ``Max`` for the outer schedule when a pointwise statement walks
      again, over more loops, data a reduction before it read (``softmax``,
      ``layer_norm``, ``group_norm``: the row is still in cache for the second pass;
      measured 1.3-1.4x alone); on the CPU only when the reduction reads more than a
      core's cache holds (:data:`CPU_FUSE_MIN_INSTANCES`) or the kernel runs on one
      thread. Otherwise the naive ``Preserve3Coincident``: a
      contraction scheduled with ``Max`` loses its register-tile form (its
      initialisation and update are two statements to isl), and two reductions of
      the same data fused (``moments``) vectorise worse.
    * **Tiles from the sizes**, in the loop order of the deepest statement (its
      output indices, then its reduction indices, as the scheduler orders them): a
      loop no longer than its tile is left untiled (a tile of 0).

The CPU strategy (C + OpenMP)
    * tiles of :data:`CPU_TILE` (32) on the first :data:`CPU_TILED_LOOPS` (3) loops,
      as the naive options, and on a fourth output loop in a contraction whose outputs
      each reduce over :data:`CPU_DEEP_TILE_WORK` points or more, when that loop is
      :data:`CPU_DEEP_TILE_EXTENT` long or more (``conv2d_s2``'s ``w``: 4-10x; not
      ``conv2d``'s 54, whose partial tile is 40% of it: 2.7x slower with two
      threads); a guarded statement (a select: ``conv2d_dx``) keeps the naive
      tiles (measured 2x slower with the fourth);
    * the outermost free loop parallel (``cpuParallel``), except for definitions of
      fewer than :data:`CPU_SERIAL_WORK` statement instances in all (tens of
      microseconds: waking the OpenMP team costs more, far more on a busy machine);
    * vector lanes (``cpuVectorize``) and the naive register tile of
      :data:`CPU_REGISTER_TILE` rows;
    * packing (``useSharedMemory``) for a contraction whose every operand is walked
      along a reduction index (``A(m, k) * B(n, k)``: only dot products exist without
      it; packing transposes ``B``'s tile so that the vector loop runs over outputs
      as in GEMM libraries: ``fc_relu`` 2.3x, ``tmm`` 2.2x alone), when the output
      extents it packs are at least :data:`PACK_MIN_EXTENT` and the reduction
      :data:`PACK_MIN_REDUCTION`, within ``target.shared_memory_bytes()`` per thread.
      With a unit-stride operand (``matmul``) the GEMM form exists unpacked and
      packing only copies (measured slower).

The GPU strategy (CUDA, OpenCL)
    * threads: ``x`` along the innermost output index, a multiple of 32 (a warp)
      when it is that long, up to :data:`GPU_THREADS_X`; ``y`` along the next output
      index with the remaining threads of a block of at most :data:`GPU_BLOCK_THREADS`
      (within ``target.limits()``); a reduction loop stays in each thread;
    * tiles equal to the threads on those loops (one point per thread and tile);
      outer output loops untiled;
    * blocks: enough to cover each tiled loop once (``ceil(extent / tile)``), within
      the grid limits (a grid-stride loop covers the rest), the outer output loops on
      the remaining grid axis;
    * shared memory for contractions with a long enough reduction, within
      ``target.shared_memory_bytes()``; private (register) promotion on; unrolling of
      short loops by 4. (Checked for correctness on PoCL; not timed: no GPU here.)

Measured on the catalogue (``benchmarks/results/cpu-2026-12-04-defaults*.md``, timed
with :mod:`benchmarks.defaults_vs_naive`): 0.86x naive's time (geomean), no layer more
than 10% slower; against tuned options 1.34x by the fastest call (1.62x by the median
in the full report).

:func:`tc.make_naive_options_factory` stays available for the original TC's naive
options.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tc.ir import nodes as ir
from tc.options import MappingOptions

if TYPE_CHECKING:
    from codegen.launch import LaunchLimits
    from codegen.targets.base import Target
    from tc.arguments import BoundCall

__all__ = [
    "CPU_DEEP_TILE_EXTENT",
    "CPU_DEEP_TILE_WORK",
    "CPU_FUSE_MIN_INSTANCES",
    "CPU_REDUCTION_TILE",
    "CPU_REGISTER_TILE",
    "CPU_SERIAL_WORK",
    "CPU_TILED_LOOPS",
    "CPU_TILE",
    "GPU_BLOCK_THREADS",
    "GPU_THREADS_X",
    "PACK_MIN_EXTENT",
    "PACK_MIN_REDUCTION",
    "StageShape",
    "default_options",
    "second_pass",
    "stage_shapes",
]

#: Tile size of the CPU's output loops.
CPU_TILE = 32
#: Tile size of the CPU's reduction loops, tiled only up to :data:`CPU_TILED_LOOPS`.
CPU_REDUCTION_TILE = 32
#: Loops tiled, outermost first, output loops then reduction loops (the naive
#: options' three: ``matmul``'s ``k``, ``moments``' row); four output loops in a
#: contraction whose outputs each reduce over at least :data:`CPU_DEEP_TILE_WORK`
#: points (``conv2d``: its ``w`` loop tiled too).
CPU_TILED_LOOPS = 3
CPU_DEEP_TILE_WORK = 64
#: ... and whose fourth output loop is at least this long (three tiles: the partial
#: tile at most a quarter of it).
CPU_DEEP_TILE_EXTENT = 3 * 32
#: Below this many statement instances in all, a CPU kernel runs on one thread.
CPU_SERIAL_WORK = 1 << 17
#: A second pass is fused (``Max``) on the CPU when a reduction before it reads at
#: least this many points (2 MiB of float32: a core's L2 on the machines measured).
CPU_FUSE_MIN_INSTANCES = 1 << 19
#: Output rows of a CPU contraction's register tile.
CPU_REGISTER_TILE = 4
#: Packing needs the packed operands' output extents at least this long...
PACK_MIN_EXTENT = 64
#: ... and the reduction at least this long.
PACK_MIN_REDUCTION = 32
#: Threads along x of a GPU block (a multiple of the 32-thread warp).
GPU_THREADS_X = 128
#: Threads of a GPU block at most.
GPU_BLOCK_THREADS = 256
_WARP = 32
#: A GPU contraction's reduction loop is tiled (and its tiles go to shared memory)
#: when it is at least this long.
GPU_SHARED_MIN_REDUCTION = 32


@dataclass(frozen=True)
class StageShape:
    """One statement at the call's sizes: the extents of its output and reduction
    loops, and whether it is a contraction whose operands are all walked along a
    reduction index (``A(m, k) * B(n, k)``), with the shortest output extent such an
    operand spans."""

    lhs: tuple[int, ...]
    reduction: tuple[int, ...]
    contraction: bool
    dot_only: bool
    dot_extent: int
    reduces: bool = False  # an update over reduction loops (``+=``, ``max=``, ...)
    guarded: bool = False  # its right-hand side selects (``c ? a : b``): guarded reads
    reads: frozenset[str] = frozenset()  # the tensors its right-hand side reads

    @property
    def instances(self) -> int:
        """Statement instances (points of the iteration domain)."""
        return math.prod(self.lhs) * math.prod(self.reduction)

    @property
    def extents(self) -> tuple[int, ...]:
        """Loop extents in domain order: outputs, then reductions."""
        return self.lhs + self.reduction


def _extent(d: ir.Dim, sizes: Mapping[str, int]) -> int:
    return max(0, d.hi.evaluate(sizes) - d.lo.evaluate(sizes))


def _reads(e: ir.Expr) -> list[ir.Read]:
    return [n for n in ir.walk(e) if isinstance(n, ir.Read) and n.indices]


def _index_name(e: ir.Expr) -> str | None:
    """The index a subscript is (``k``), or None (``h + kh``, a constant, ...)."""
    return e.name if isinstance(e, ir.Var) and e.kind == "index" else None


def _shape(st: ir.Stage, fn: ir.Function, sizes: Mapping[str, int]) -> StageShape:
    extent = {d.name: _extent(d, sizes) for d in st.domain}
    lhs = tuple(extent[d.name] for d in st.lhs_dims)
    red = tuple(extent[d.name] for d in st.reduction_dims)
    reduced = {d.name for d in st.reduction_dims}
    outputs = {d.name for d in st.lhs_dims}
    # A contraction: a sum of a product of two factors, each reading a tensor and
    # each missing an output index the other has (``A(m, k) * B(k, n)``).
    factors = ([st.rhs.a, st.rhs.b] if isinstance(st.rhs, ir.Binary) and st.rhs.op == "*"
               else [])
    operands = [max(_reads(f), key=lambda r: len(r.indices), default=None) for f in factors]
    used = [{_index_name(i) for i in r.indices} if r is not None else set() for r in operands]
    contraction = (st.op == "+" and bool(red) and len(operands) == 2
                   and all(r is not None for r in operands)
                   and bool(outputs - used[0]) and bool(outputs - used[1]))
    dot_only, dot_extent = False, 0
    if contraction:
        dot_only = all(_index_name(r.indices[-1]) in reduced for r in operands)
        spans = [extent[n] for u in used for n in u if n in outputs]
        dot_extent = min(spans, default=0)
    return StageShape(
        lhs, red, contraction, dot_only, dot_extent, reduces=st.op is not None and bool(red),
        guarded=any(isinstance(n, ir.Select) for n in ir.walk(st.rhs)),
        reads=frozenset(r.tensor for r in _reads(st.rhs) if r.tensor != st.tensor))


def stage_shapes(fn: ir.Function, sizes: Mapping[str, int]) -> list[StageShape]:
    """The :class:`StageShape` of each statement of ``fn`` at ``sizes``."""
    return [_shape(st, fn, sizes) for st in fn.stages]


def second_pass(shapes: list[StageShape]) -> bool:
    """Whether a pointwise statement walks again, over more loops than a reduction's
    result has, data that reduction read (``layer_norm``'s ``Y(m, n)`` after
    ``mean(m) +=! X(m, n)``): fused, the row is still in cache for the second pass."""
    return any(p.reads & r.reads and len(p.lhs) > len(r.lhs)
               for i, r in enumerate(shapes) if r.reduces
               for p in shapes[i + 1:] if not p.reduces and not p.reduction)


def _deepest(shapes: list[StageShape]) -> StageShape:
    """The statement with the most loops (the most instances among those)."""
    return max(shapes, key=lambda s: (len(s.extents), s.instances))


def _trim(tiles: list[int]) -> tuple[int, ...]:
    """Tile sizes without trailing zeros (at least one entry)."""
    while len(tiles) > 1 and tiles[-1] == 0:
        tiles.pop()
    return tuple(tiles) or (0,)


def _cpu(options: MappingOptions, shapes: list[StageShape], target: Target) -> None:
    deep = _deepest(shapes)
    if deep.guarded:
        tiles = list(MappingOptions("naive").tile_sizes)
    else:
        # A fourth output loop only where each output has enough work to amortise its
        # tile (conv2d's 3x3 window over 64 channels, not a depthwise 3x3).
        # And only on a loop of several tiles: the partial tiles of a loop barely longer
        # than one (conv2d's 54 = 32 + 22) run the guarded form, which lost 2.7x with
        # two threads (conv2d at 56x56: 15.4 against 5.7 ms; alone equal).
        deep_tile = (deep.contraction and len(deep.lhs) > CPU_TILED_LOOPS
                     and math.prod(deep.reduction) >= CPU_DEEP_TILE_WORK
                     and deep.lhs[CPU_TILED_LOOPS] >= CPU_DEEP_TILE_EXTENT)
        positions = (deep.lhs[: CPU_TILED_LOOPS + 1] if deep_tile
                     else (deep.lhs + deep.reduction)[:CPU_TILED_LOOPS])
        tiles = [0 if n <= CPU_TILE else CPU_TILE for n in positions]
    options.tile(_trim(tiles))
    work = sum(s.instances for s in shapes)
    options.cpuParallel(work >= CPU_SERIAL_WORK).cpuVectorize(True)
    options.cpuRegisterTile(CPU_REGISTER_TILE)
    pack = any(s.dot_only and s.dot_extent >= PACK_MIN_EXTENT
               and max(s.reduction) >= PACK_MIN_REDUCTION for s in shapes)
    limit = target.shared_memory_bytes()
    if pack and limit > 0:
        options.useSharedMemory(True).maxSharedMemory(limit)


def _cpu_fuses(shapes: list[StageShape]) -> bool:
    """Whether the CPU gains from ``Max`` fusion of a second pass: on one thread (fewer
    passes and loops), or when a reduction reads at least :data:`CPU_FUSE_MIN_INSTANCES`
    points (its data no longer in a core's cache for the second pass). Between the two,
    the unfused passes run from cache and the fused nest vectorises worse
    (``group_norm`` at 4x32x16x12x12: 6% slower fused)."""
    if sum(s.instances for s in shapes) < CPU_SERIAL_WORK:
        return True
    return any(s.reduces and s.instances >= CPU_FUSE_MIN_INSTANCES for s in shapes)


def _pow2_floor(n: int) -> int:
    return 1 << (max(1, n).bit_length() - 1)


#: The grid extents MappingOptions accepts (CUDA's), whatever a device allows.
_OPTION_GRID = (2**31 - 1, 65535, 65535)


def _grid(limits: LaunchLimits, axis: int) -> int:
    return min(limits.max_grid[axis], _OPTION_GRID[axis])


def _gpu(options: MappingOptions, shapes: list[StageShape], target: Target) -> None:
    limits = target.limits()
    deep = _deepest(shapes)
    per_block = max(1, min(GPU_BLOCK_THREADS, limits.max_threads_per_block))
    inner = deep.lhs[-1] if deep.lhs else 1
    # x: a multiple of the warp when the loop is that long, else the loop rounded up
    # to a power of two (idle threads only cost a guard).
    cap_x = min(GPU_THREADS_X, per_block, limits.max_block[0], 1024)
    if inner >= _WARP and cap_x >= _WARP:
        tx = min(cap_x, inner) // _WARP * _WARP
    else:
        tx = min(cap_x, 1 << max(0, (inner - 1).bit_length()))
    threads = [max(1, tx)]
    if len(deep.lhs) >= 2 and len(limits.max_block) > 1:
        second = deep.lhs[-2]
        room = min(per_block // threads[0], limits.max_block[1], 1024)
        ty = min(_pow2_floor(room), 1 << max(0, (second - 1).bit_length()))
        if ty > 1:
            threads.append(ty)
    # Tiles in domain order: outer output loops untiled, the threaded ones one point
    # per thread, a contraction's long reduction tiled for shared memory.
    tiles = [0] * len(deep.lhs)
    # A scalar result (no output loop) has one thread and nothing to tile or cover.
    threads = threads[: len(deep.lhs)] or [1]
    for axis, t in enumerate(threads[: len(deep.lhs)]):
        pos = len(deep.lhs) - 1 - axis
        tiles[pos] = t if deep.lhs[pos] > t else 0
    shared = (deep.contraction and max(deep.reduction, default=0) >= GPU_SHARED_MIN_REDUCTION
              and target.shared_memory_bytes() > 0)
    if deep.contraction:
        tiles += [_WARP if shared and n > _WARP else 0 for n in deep.reduction]
    options.tile(_trim(tiles))
    options.mapToThreads(*threads)
    blocks = []
    for axis, t in enumerate(threads[: len(deep.lhs)]):
        pos = len(deep.lhs) - 1 - axis
        blocks.append(max(1, min(_grid(limits, axis), -(-deep.lhs[pos] // t))))
    outer = math.prod(deep.lhs[: max(0, len(deep.lhs) - len(threads))])
    if outer > 1 and len(blocks) < 3:
        blocks.append(max(1, min(_grid(limits, len(blocks)), outer)))
    options.mapToBlocks(*(blocks or [1]))
    options.unroll(4).usePrivateMemory(True)
    if shared:
        options.useSharedMemory(True).maxSharedMemory(target.shared_memory_bytes())


def default_options(fn: ir.Function, call: BoundCall, target: Target) -> MappingOptions:
    """Mapping options for ``fn`` called with ``call``'s sizes on ``target``, from the
    sizes and the target's limits alone (see the module docstring); pure and cheap."""
    shapes = stage_shapes(fn, call.sizes)
    options = MappingOptions("naive")
    if not shapes:
        return options
    if second_pass(shapes) and not any(s.contraction for s in shapes) and (
            target.strategy != "cpu" or _cpu_fuses(shapes)):
        options.outerScheduleFusionStrategy("Max")
    if target.strategy == "cpu":
        _cpu(options, shapes, target)
    else:
        _gpu(options, shapes, target)
    return options
