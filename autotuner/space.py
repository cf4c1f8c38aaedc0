"""The search space of the autotuner: every mapping option, with values drawn for the sizes.

A point of the space is a :data:`Genome`: one value per :class:`Parameter`, in the
order of :attr:`SearchSpace.parameters`. :meth:`SearchSpace.options` turns it into
:class:`~tc.options.MappingOptions` and :meth:`SearchSpace.genome` reads options back,
so the genetic search (``autotuner.genetic``) works on plain tuples and never on the
option setters.

Sizes (tile sizes, block and grid dimensions) are drawn from the powers of two up to
the largest extent and from ``ceil(size / 2**k)`` of every actual tensor size, as in
the original Tensor Comprehensions. Before anything is compiled, :meth:`SearchSpace.
rejection` turns away points that cannot be valid or useful: too many threads per
block, block or grid dimensions beyond the device limits, and fewer launched threads
than ``min_threads`` even in the best case. After compiling, :func:`compiled_rejection`
checks what only the compiled program knows: the threads it really launches (grids
and blocks are tightened to the mapped loops) and its shared memory per block.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from codegen.launch import CUDA_LIMITS, LaunchLimits
from polyhedral.promotion import DEFAULT_SHARED_LIMIT
from tc.ir import nodes as ir
from tc.options import FUSION_STRATEGIES, MappingOptions

__all__ = [
    "BOOL_FIELDS",
    "Genome",
    "Parameter",
    "SearchSpace",
    "compiled_rejection",
    "launched_threads",
    "required_threads",
    "shared_bytes",
]

#: A point of the space: one value per parameter of :attr:`SearchSpace.parameters`.
Genome = tuple

#: The boolean mapping options every strategy uses, as (MappingOptions property, setter).
GENERIC_BOOL_FIELDS: tuple[tuple[str, str], ...] = (
    ("outer_allow_skewing", "outerScheduleAllowSkewing"),
    ("outer_positive_orthant", "outerSchedulePositiveOrthant"),
    ("intra_allow_skewing", "intraTileScheduleAllowSkewing"),
    ("intra_positive_orthant", "intraTileSchedulePositiveOrthant"),
    ("fix_parameters", "fixParametersBeforeScheduling"),
    ("tile_imperfectly_nested", "tileImperfectlyNested"),
    ("use_private_memory", "usePrivateMemory"),
)
#: The boolean options of each mapping strategy (a target's ``strategy``).
STRATEGY_BOOL_FIELDS: dict[str, tuple[tuple[str, str], ...]] = {
    "gpu": (
        ("match_library_calls", "matchLibraryCalls"),
        ("use_shared_memory", "useSharedMemory"),
        ("unroll_copy_shared", "unrollCopyShared"),
        ("use_readonly_cache", "useReadOnlyCache"),
    ),
    "cpu": (
        ("use_shared_memory", "useSharedMemory"),  # packing (polyhedral.packing)
        ("cpu_parallel", "cpuParallel"),
        ("cpu_vectorize", "cpuVectorize"),
    ),
}
#: Every boolean option the GPU strategy searches (the original TC's).
BOOL_FIELDS = GENERIC_BOOL_FIELDS + STRATEGY_BOOL_FIELDS["gpu"]

UNROLL_FACTORS = (1, 2, 4, 8, 16, 32, 64, 128)
#: Accumulators per SIMD lane of a CPU register tile (1: none); 8 x 2 vectors fill 16 of
#: AVX-512's 32 registers, leaving room for the loads.
REGISTER_TILES = (1, 2, 4, 8)
_AXES = 3  # x, y, z


@dataclass(frozen=True)
class Parameter:
    """One gene: a name and the values that random draws and mutations pick from.

    A genome may hold a value outside ``choices`` (the starting options are kept
    exactly); only new draws are restricted to them.
    """

    name: str
    choices: tuple


def _halvings(n: int) -> set[int]:
    """``ceil(n / 2**k)`` for k = 0, 1, ... down to 1."""
    out = set()
    while n > 1:
        out.add(n)
        n = -(-n // 2)
    out.add(1)
    return out


def _powers_of_two(limit: int) -> set[int]:
    """1, 2, 4, ... up to the first power of two >= ``limit``."""
    out, p = {1}, 1
    while p < limit:
        p *= 2
        out.add(p)
    return out


def size_values(extents: Iterable[int], limit: int) -> tuple[int, ...]:
    """Candidate sizes: powers of two up to the largest extent and the halvings of each
    extent, capped at ``limit``, sorted."""
    extents = [int(e) for e in extents if int(e) > 0] or [1]
    values = _powers_of_two(max(extents))
    for e in extents:
        values |= _halvings(e)
    return tuple(sorted(v for v in values if v <= limit))


def stage_points(fn: ir.Function, sizes: Mapping[str, int], parallel_only: bool) -> list[int]:
    """Per stage, the number of points of its domain (only the left-hand, parallel,
    dimensions with ``parallel_only``)."""
    out = []
    for st in fn.stages:
        dims = st.lhs_dims if parallel_only else st.domain
        n = 1
        for d in dims:
            n *= max(0, d.hi.evaluate(sizes) - d.lo.evaluate(sizes))
        out.append(n)
    return out


def required_threads(fn: ir.Function, sizes: Mapping[str, int], min_threads: int) -> int:
    """The launched threads a candidate must reach: ``min_threads``, or less when the
    definition has fewer parallel points than that (a tiny problem cannot be rejected for
    using few threads)."""
    return max(1, min(min_threads, max(stage_points(fn, sizes, True), default=1)))


@dataclass(frozen=True)
class SearchSpace:
    """The mapping options of one definition at concrete sizes, as parameters to draw."""

    parameters: tuple[Parameter, ...]
    tile_depth: int  # how many tile sizes matter (the deepest statement's loop count)
    limits: LaunchLimits
    min_threads: int  # launched threads (grid x block) a candidate needs at least
    strategy: str = "gpu"  # the target's mapping strategy: which options exist
    cpu_threads: int = 0  # the CPU strategy's thread count, fixed while tuning

    @property
    def bool_fields(self) -> tuple[tuple[str, str], ...]:
        return GENERIC_BOOL_FIELDS + STRATEGY_BOOL_FIELDS[self.strategy]

    @classmethod
    def build(cls, fn: ir.Function, sizes: Mapping[str, int], *, min_threads: int = 64,
              limits: LaunchLimits = CUDA_LIMITS,
              shared_limit: int = DEFAULT_SHARED_LIMIT, strategy: str = "gpu",
              cpu_threads: int = 0) -> SearchSpace:
        """The space of ``fn`` at ``sizes``: sizes drawn from the tensor extents. The
        ``strategy`` ("gpu" or "cpu", the target's) decides which options are genes:
        the GPU's threads, blocks and shared memory, or the CPU's parallel and vector
        switches (its thread count stays ``cpu_threads``: timings compare at one)."""
        extents = {int(s.evaluate(sizes)) for t in fn.tensors for s in t.shape}
        extents |= {int(v) for v in sizes.values()}
        for st in fn.stages:
            extents |= {d.hi.evaluate(sizes) - d.lo.evaluate(sizes) for d in st.domain}
        extents = {e for e in extents if e > 0} or {1}
        depth = max((len(st.domain) for st in fn.stages), default=1) or 1
        tiles = (0,) + size_values(extents, max(extents))
        threads = [size_values(extents, min(limits.max_block[a], limits.max_threads_per_block))
                   for a in range(_AXES)]
        blocks = [size_values(extents, limits.max_grid[a]) for a in range(_AXES)]
        shared = (None,) + tuple(v for v in _powers_of_two(shared_limit)
                                 if 1024 <= v <= shared_limit)
        gpu = strategy == "gpu"
        params = [Parameter("tile_count", tuple(range(1, depth + 1)))]
        params += [Parameter(f"tile_{i}", tiles) for i in range(depth)]
        if gpu:
            params.append(Parameter("threads_count", (1, 2, 3)))
            params += [Parameter(f"threads_{a}", threads[a]) for a in range(_AXES)]
            params.append(Parameter("blocks_count", (1, 2, 3)))
            params += [Parameter(f"blocks_{a}", blocks[a]) for a in range(_AXES)]
        params.append(Parameter("unroll", UNROLL_FACTORS))
        params.append(Parameter("outer_fusion", FUSION_STRATEGIES))
        params.append(Parameter("intra_fusion", FUSION_STRATEGIES))
        params += [Parameter(name, (False, True))
                   for name, _ in GENERIC_BOOL_FIELDS + STRATEGY_BOOL_FIELDS[strategy]]
        # Shared memory per block on a GPU, packed tiles per thread on a CPU.
        params.append(Parameter("max_shared_memory", shared))
        # Promotion depths count schedule members: tile loops and point loops.
        params.append(Parameter("private_depth", tuple(range(0, 2 * depth + 1))))
        params.append(Parameter("shared_depth", tuple(range(0, 2 * depth + 1))))
        if not gpu:
            # One value: new draws time at the fixed count; starting options keep theirs.
            params.append(Parameter("cpu_threads", (cpu_threads,)))
            params.append(Parameter("cpu_register_tile", REGISTER_TILES))
        need = required_threads(fn, sizes, min_threads) if gpu else 1
        return cls(tuple(params), depth, limits, need, strategy, cpu_threads)

    # ------------------------------------------------------------------ genomes

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parameters)

    def index(self, name: str) -> int:
        """The position of parameter ``name`` in a genome."""
        return self.names.index(name)

    def random_genome(self, rng: random.Random) -> Genome:
        """A uniformly drawn genome (possibly rejected by :meth:`rejection`)."""
        return tuple(rng.choice(p.choices) for p in self.parameters)

    def random_valid_genome(self, rng: random.Random, attempts: int = 200) -> Genome | None:
        """A random genome that :meth:`rejection` accepts, or None after ``attempts``."""
        for _ in range(attempts):
            g = self.random_genome(rng)
            if self.rejection(g) is None:
                return g
        return None

    def genome(self, options: MappingOptions) -> Genome:
        """The genome of ``options`` (tile sizes beyond :attr:`tile_depth` dropped: the
        compiler ignores them)."""
        values: dict[str, object] = {}
        tiles = options.tile_sizes[: self.tile_depth]
        values["tile_count"] = len(tiles)
        for i in range(self.tile_depth):
            values[f"tile_{i}"] = tiles[i] if i < len(tiles) else 0
        for kind, dims in (("threads", options.threads), ("blocks", options.blocks)):
            values[f"{kind}_count"] = len(dims)
            for a in range(_AXES):
                values[f"{kind}_{a}"] = dims[a] if a < len(dims) else 1
        values["unroll"] = options.unroll_factor
        values["outer_fusion"] = options.outer_fusion
        values["intra_fusion"] = options.intra_fusion
        for name, _ in self.bool_fields:
            values[name] = getattr(options, name)
        values["max_shared_memory"] = options.max_shared_memory
        values["private_depth"] = options.private_depth
        values["shared_depth"] = options.shared_depth
        values["cpu_threads"] = options.cpu_threads
        values["cpu_register_tile"] = options.cpu_register_tile
        return tuple(values[name] for name in self.names)

    def options(self, genome: Genome) -> MappingOptions:
        """The mapping options of ``genome`` (raises TcOptionsError on impossible values)."""
        v = dict(zip(self.names, genome, strict=True))
        o = MappingOptions("naive")
        o.tile([v[f"tile_{i}"] for i in range(v["tile_count"])])
        if self.strategy == "gpu":
            o.mapToThreads([v[f"threads_{a}"] for a in range(v["threads_count"])])
            o.mapToBlocks([v[f"blocks_{a}"] for a in range(v["blocks_count"])])
        else:
            o.cpuThreads(v["cpu_threads"])
            o.cpuRegisterTile(v["cpu_register_tile"])
        o.unroll(v["unroll"])
        o.outerScheduleFusionStrategy(v["outer_fusion"])
        o.intraTileScheduleFusionStrategy(v["intra_fusion"])
        for name, setter in self.bool_fields:
            getattr(o, setter)(v[name])
        o.privateDepth(v["private_depth"])
        o.maxSharedMemory(v["max_shared_memory"])
        o.sharedDepth(v["shared_depth"])
        return o

    def dims(self, genome: Genome, kind: str) -> tuple[int, ...]:
        """The block (``kind="threads"``) or grid (``"blocks"``) dimensions of a genome."""
        v = dict(zip(self.names, genome, strict=True))
        return tuple(v[f"{kind}_{a}"] for a in range(v[f"{kind}_count"]))

    # ------------------------------------------------------------------ validity

    def rejection(self, genome: Genome) -> str | None:
        """Why ``genome`` is rejected before compiling, or None when it may be valid."""
        if self.strategy != "gpu":
            try:
                self.options(genome)
            except Exception as e:  # noqa: BLE001 - any option error rejects the point
                return f"invalid options: {e}"
            return None
        threads, blocks = self.dims(genome, "threads"), self.dims(genome, "blocks")
        lim = self.limits
        if math.prod(threads) > lim.max_threads_per_block:
            return (f"{math.prod(threads)} threads per block exceed "
                    f"{lim.max_threads_per_block}")
        pad = (1,) * _AXES
        for a, t, b in zip(range(_AXES), threads + pad, blocks + pad, strict=False):
            if t > lim.max_block[a]:
                return f"block dimension {'xyz'[a]} = {t} exceeds {lim.max_block[a]}"
            if b > lim.max_grid[a]:
                return f"grid dimension {'xyz'[a]} = {b} exceeds {lim.max_grid[a]}"
        # The grid and block are upper bounds (the compiler tightens them to the mapped
        # loops), so a product below the minimum can never reach it.
        best_case = math.prod(threads) * math.prod(blocks)
        if best_case < self.min_threads:
            return (f"at most {best_case} threads launched, fewer than the "
                    f"{self.min_threads} required")
        try:
            self.options(genome)
        except Exception as e:  # noqa: BLE001 - any option error rejects the point
            return f"invalid options: {e}"
        return None


# ---------------------------------------------------------------------- compiled checks


def launched_threads(grids_blocks: Sequence[tuple[Sequence[int], Sequence[int]]]) -> int:
    """The most threads (grid x block) any kernel of a program launches."""
    return max((math.prod(g) * math.prod(b) for g, b in grids_blocks), default=0)


def shared_bytes(kernel) -> int:
    """The static shared memory of a :class:`codegen.kernel.Kernel`, in bytes."""
    total = 0
    for b in kernel.buffers:
        if b.space == "shared":
            n = 1
            for s in b.shape:
                n *= int(s.value)
            total += n * max(1, b.dtype.bits // 8)
    return total


def compiled_rejection(program, min_threads: int, shared_limit: int,
                       limits: LaunchLimits = CUDA_LIMITS) -> str | None:
    """Why a compiled program (``codegen.compiler.CompiledProgram``) is rejected, or None.

    Every kernel must fit the device's block limits and shared memory per block, and
    the program must launch at least ``min_threads`` threads in one of its kernels.
    """
    for ck in program.kernels:
        threads = math.prod(ck.block)
        if threads > limits.max_threads_per_block:
            return f"kernel {ck.name}: {threads} threads per block"
        used = shared_bytes(ck.kernel)
        if used > shared_limit:
            return f"kernel {ck.name}: {used} bytes of shared memory exceed {shared_limit}"
    launched = launched_threads([(ck.grid, ck.block) for ck in program.kernels])
    if launched < min_threads:
        return f"{launched} threads launched, fewer than the {min_threads} required"
    return None
