"""Mapping options: how the polyhedral compiler tiles, fuses and maps a kernel to a GPU.

:class:`MappingOptions` mirrors the mapping options of the original Tensor
Comprehensions project, with the same Python API names. Options are built from a
preset and refined with fluent camelCase setters; each setter validates its
argument, mutates the object and returns it, so both styles work::

    o = MappingOptions("naive").tile(16, 8).mapToThreads(32)
    o.unroll(4)

Every invalid value raises :class:`~tc.errors.TcOptionsError` naming the option,
the value and what is allowed.

Presets
-------
``"naive"`` (the default), ``"single_thread"``, ``"pointwise"``, ``"mlp"``,
``"conv"`` and ``"group_conv"``, with the values of the original TC. Every preset
starts from ``"naive"`` and overrides a few fields.

Options
-------
Tiling and scheduling (implemented by the scheduling stage):

``tile(*sizes)``
    Tile sizes of the outermost permutable band, outermost first; one or more
    ints >= 0, where 0 leaves that band member untiled. Extra sizes beyond the
    band depth are ignored, missing ones mean "untiled".
``outerScheduleFusionStrategy(s)``
    Fusion strategy of the outer (inter-tile) schedule: ``"Max"`` (fuse as much as
    possible), ``"Preserve3Coincident"`` (fuse while keeping three outer coincident
    dimensions for the GPU mapping) or ``"Min"`` (fuse as little as possible). The
    name is accepted in any letter case and stored in this canonical spelling.
``intraTileScheduleFusionStrategy(s)``
    The same, for the schedule inside a tile.
``scheduleFusionStrategy(s)``
    Sets both strategies at once.
``outerScheduleAllowSkewing(b)``, ``intraTileScheduleAllowSkewing(b)``
    Let the scheduler skew loops (non-unit, non-zero schedule coefficients).
``outerSchedulePositiveOrthant(b)``, ``intraTileSchedulePositiveOrthant(b)``
    Restrict schedule coefficients to non-negative values.
``fixParametersBeforeScheduling(b)``
    Substitute the actual tensor sizes for the size symbols before scheduling
    (specialises the kernel to the input shapes).
``tileImperfectlyNested(b)``
    Also tile loops that are not perfectly nested.

GPU mapping (implemented by the GPU-mapping stage):

``mapToThreads(*sizes)``
    Block dimensions (x, y, z): one to three ints >= 1 with x <= 1024,
    y <= 1024, z <= 64 and a product of at most 1024 threads per block. The
    innermost coincident band member maps to x.
``mapToBlocks(*sizes)``
    Grid dimensions (x, y, z): one to three ints >= 1 with x <= 2**31 - 1 and
    y, z <= 65535.

The GPU-performance options (``polyhedral.mapping``, ``polyhedral.promotion``,
``codegen.private``, ``codegen.reduction``):

``unroll(n)``
    Unroll the sequential loops inside a thread's work that have at most ``n``
    iterations (int >= 1; 1 means no unrolling).
``useSharedMemory(b)``, ``maxSharedMemory(n)``, ``sharedDepth(n)``
    Promote tile footprints reused by several threads of a block to shared memory;
    ``maxSharedMemory`` bounds the bytes per block (int >= 0, or ``None`` for the
    device's limit, 48 KiB without a device); ``sharedDepth`` is the schedule depth
    at which to promote (int >= 0, 0 lets the compiler choose: one tile).
``unrollCopyShared(b)``
    Unroll the copies to and from shared memory.
``usePrivateMemory(b)``, ``privateDepth(n)``
    Promote a thread's elements to registers; ``privateDepth`` as ``sharedDepth``.
``useReadOnlyCache(b)``
    Load read-only tensors through the read-only data cache (``__ldg``).
``matchLibraryCalls(b)``
    Compile recognised patterns with hand-written templates: reductions become
    block-parallel tree reductions, split across blocks when the output is small.

CPU mapping (``polyhedral.cpu_mapping``, the ``cpu`` target; ignored by the GPU
targets, as the GPU fields are by the CPU target, except the generic ones: tiling,
fusion, skewing, orthant, fixed parameters, ``unroll``, ``usePrivateMemory``):

``cpuThreads(n)``
    OpenMP threads of the parallel loops (int >= 0; 0 = the OpenMP default).
``cpuParallel(b)``
    Run the outermost dependence-free loop of each kernel on OpenMP threads.
``cpuVectorize(b)``
    Make the innermost dependence-free loop a SIMD loop (``#pragma omp simd``),
    moving it innermost when its band is permutable.
``cpuRegisterTile(n)``
    Register tiling of contractions (int >= 1; 1 = off; default 4): ``n``
    accumulators per SIMD lane, from rows of the output that reuse each vector load
    (``polyhedral.register_tile``).

Booleans must be real ``bool`` values; ints must be ints (``bool`` is rejected where
an int is expected, and so are floats and strings; numpy integer scalars are
accepted and stored as plain ints).

Reading and persisting
----------------------
Every value is readable through a snake_case read-only property (``tile_sizes``,
``threads``, ``blocks``, ``unroll_factor``, ``outer_fusion``, ...; tuples for the
multi-valued ones). :meth:`MappingOptions.key` returns a hashable immutable
snapshot for cache keys; :meth:`MappingOptions.serialize` and
:meth:`MappingOptions.deserialize` convert to and from a stable JSON text.
"""

from __future__ import annotations

import dataclasses
import json
import numbers
from collections.abc import Callable
from typing import Any, ClassVar

from tc.errors import TcOptionsError

__all__ = ["FUSION_STRATEGIES", "PRESETS", "SERIALIZATION_VERSION", "MappingOptions"]

#: The fusion strategies, in their canonical spelling.
FUSION_STRATEGIES: tuple[str, ...] = ("Max", "Preserve3Coincident", "Min")

#: The preset names accepted by :class:`MappingOptions`.
PRESETS: tuple[str, ...] = ("naive", "single_thread", "pointwise", "mlp", "conv", "group_conv")

#: The ``"version"`` field written by :meth:`MappingOptions.serialize`.
SERIALIZATION_VERSION = 1

_MAX_THREADS = (1024, 1024, 64)
_MAX_THREADS_PER_BLOCK = 1024
_MAX_BLOCKS = (2**31 - 1, 65535, 65535)
_AXES = ("x", "y", "z")


@dataclasses.dataclass(frozen=True)
class _Values:
    """The immutable state of a :class:`MappingOptions` (defaults: the naive preset)."""

    tile_sizes: tuple[int, ...] = (32, 32, 32)
    threads: tuple[int, ...] = (32, 8)
    blocks: tuple[int, ...] = (256, 256)
    unroll_factor: int = 1
    outer_fusion: str = "Preserve3Coincident"
    outer_allow_skewing: bool = False
    outer_positive_orthant: bool = True
    intra_fusion: str = "Preserve3Coincident"
    intra_allow_skewing: bool = False
    intra_positive_orthant: bool = True
    fix_parameters: bool = False
    tile_imperfectly_nested: bool = False
    match_library_calls: bool = False
    use_shared_memory: bool = False
    use_private_memory: bool = False
    unroll_copy_shared: bool = False
    use_readonly_cache: bool = False
    max_shared_memory: int | None = None
    private_depth: int = 0
    shared_depth: int = 0
    cpu_threads: int = 0
    cpu_parallel: bool = True
    cpu_vectorize: bool = True
    cpu_register_tile: int = 4


_NAIVE = _Values()

# (field of _Values, setter name, kind); the order of repr, str and the docs.
_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("tile_sizes", "tile", "ints"),
    ("threads", "mapToThreads", "ints"),
    ("blocks", "mapToBlocks", "ints"),
    ("unroll_factor", "unroll", "int"),
    ("outer_fusion", "outerScheduleFusionStrategy", "str"),
    ("outer_allow_skewing", "outerScheduleAllowSkewing", "bool"),
    ("outer_positive_orthant", "outerSchedulePositiveOrthant", "bool"),
    ("intra_fusion", "intraTileScheduleFusionStrategy", "str"),
    ("intra_allow_skewing", "intraTileScheduleAllowSkewing", "bool"),
    ("intra_positive_orthant", "intraTileSchedulePositiveOrthant", "bool"),
    ("fix_parameters", "fixParametersBeforeScheduling", "bool"),
    ("tile_imperfectly_nested", "tileImperfectlyNested", "bool"),
    ("match_library_calls", "matchLibraryCalls", "bool"),
    ("use_shared_memory", "useSharedMemory", "bool"),
    ("use_private_memory", "usePrivateMemory", "bool"),
    ("unroll_copy_shared", "unrollCopyShared", "bool"),
    ("use_readonly_cache", "useReadOnlyCache", "bool"),
    ("max_shared_memory", "maxSharedMemory", "optint"),
    ("private_depth", "privateDepth", "int"),
    ("shared_depth", "sharedDepth", "int"),
    ("cpu_threads", "cpuThreads", "int"),
    ("cpu_parallel", "cpuParallel", "bool"),
    ("cpu_vectorize", "cpuVectorize", "bool"),
    ("cpu_register_tile", "cpuRegisterTile", "int"),
)
_KIND = {name: kind for name, _, kind in _FIELDS}
_SETTER = {name: setter for name, setter, _ in _FIELDS}


# --------------------------------------------------------------------------- checks


def _fail(option: str, message: str) -> TcOptionsError:
    return TcOptionsError(f"{option}: {message}")


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _describe(value: object) -> str:
    return f"{value!r} ({type(value).__name__})"


def _check_int(option: str, value: object, minimum: int) -> int:
    if not _is_int(value):
        raise _fail(option, f"expected an int >= {minimum}, got {_describe(value)}")
    result = int(value)  # type: ignore[call-overload]
    if result < minimum:
        raise _fail(option, f"expected an int >= {minimum}, got {result}")
    return result


def _check_bool(option: str, value: object) -> bool:
    if type(value) is not bool:
        raise _fail(option, f"expected True or False, got {_describe(value)}")
    return value


def _check_strategy(option: str, value: object) -> str:
    allowed = ", ".join(repr(s) for s in FUSION_STRATEGIES)
    if isinstance(value, str):
        for strategy in FUSION_STRATEGIES:
            if value.lower() == strategy.lower():
                return strategy
    raise _fail(option, f"expected one of {allowed} (any case), got {value!r}")


def _unpack(option: str, sizes: tuple[object, ...]) -> tuple[object, ...]:
    """Accept ``f(1, 2)``, ``f([1, 2])`` and ``f((1, 2))``."""
    if len(sizes) == 1 and isinstance(sizes[0], list | tuple):
        return tuple(sizes[0])
    for size in sizes:
        if isinstance(size, list | tuple):
            raise _fail(
                option, f"pass the sizes either as ints or as one list/tuple, got {sizes!r}"
            )
    return sizes


def _check_sizes(
    option: str, sizes: tuple[object, ...], minimum: int, maximum_count: int | None
) -> tuple[int, ...]:
    values = _unpack(option, sizes)
    what = "ints >= 0" if minimum == 0 else f"ints >= {minimum}"
    count = "1 or more" if maximum_count is None else f"1 to {maximum_count}"
    if not values or (maximum_count is not None and len(values) > maximum_count):
        raise _fail(option, f"expected {count} {what}, got {len(values)}: {values!r}")
    result = []
    for value in values:
        if not _is_int(value) or int(value) < minimum:  # type: ignore[call-overload]
            raise _fail(option, f"expected {count} {what}, got {_describe(value)} in {values!r}")
        result.append(int(value))  # type: ignore[call-overload]
    return tuple(result)


def _check_threads(sizes: tuple[object, ...]) -> tuple[int, ...]:
    option = "mapToThreads"
    threads = _check_sizes(option, sizes, 1, 3)
    for axis, size, limit in zip(_AXES, threads, _MAX_THREADS, strict=False):
        if size > limit:
            raise _fail(option, f"block size {axis} = {size} exceeds the limit of {limit}")
    product = 1
    for size in threads:
        product *= size
    if product > _MAX_THREADS_PER_BLOCK:
        factors = "*".join(str(s) for s in threads)
        raise _fail(
            option,
            f"the product of block sizes {factors} = {product} exceeds "
            f"{_MAX_THREADS_PER_BLOCK} threads per block",
        )
    return threads


def _check_blocks(sizes: tuple[object, ...]) -> tuple[int, ...]:
    option = "mapToBlocks"
    blocks = _check_sizes(option, sizes, 1, 3)
    for axis, size, limit in zip(_AXES, blocks, _MAX_BLOCKS, strict=False):
        if size > limit:
            raise _fail(option, f"grid size {axis} = {size} exceeds the limit of {limit}")
    return blocks


def _format_value(value: object) -> str:
    if isinstance(value, tuple):
        return ", ".join(str(v) for v in value)
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


# --------------------------------------------------------------------------- the class


class MappingOptions:
    """The mapping options of one kernel, built from a preset and fluent setters.

    ``MappingOptions(preset)`` starts from one of :data:`PRESETS` (``"naive"`` by
    default). Each camelCase setter validates its argument, updates the options in
    place and returns ``self``. Equality and hashing are by value; do not mutate an
    object while it is a dict key or set member (use :meth:`key` for cache keys).
    """

    __slots__ = ("_values",)

    _PRESETS: ClassVar[dict[str, Callable[[MappingOptions], object]]] = {
        "naive": lambda o: o,
        "single_thread": lambda o: o.tile(1).mapToThreads(1).mapToBlocks(1).unroll(1),
        "pointwise": lambda o: o.mapToThreads(32, 4, 4).mapToBlocks(100, 100, 100).unroll(128),
        "mlp": lambda o: (
            o.outerScheduleFusionStrategy("Max").tile(1).mapToThreads(128).mapToBlocks(128)
        ),
        "conv": lambda o: (
            o.tile(4, 8, 8, 0).mapToThreads(4, 16, 4).mapToBlocks(256, 256, 256).unroll(16)
        ),
        "group_conv": lambda o: o.tile(1, 1).mapToThreads(4, 16, 4).mapToBlocks(256, 256).unroll(1),
    }

    def __init__(self, preset: str = "naive") -> None:
        """Start from the named preset (see :data:`PRESETS`)."""
        self._values = _NAIVE
        if not isinstance(preset, str) or preset not in self._PRESETS:
            raise TcOptionsError(
                f"MappingOptions: unknown preset {preset!r}; "
                f"valid presets are {', '.join(repr(p) for p in PRESETS)}"
            )
        self._PRESETS[preset](self)

    @classmethod
    def _from_values(cls, values: _Values) -> MappingOptions:
        obj = cls.__new__(cls)
        obj._values = values
        return obj

    def _set(self, **changes: Any) -> MappingOptions:
        self._values = dataclasses.replace(self._values, **changes)
        return self

    # ------------------------------------------------------------------ setters

    def tile(self, *sizes: int | list[int] | tuple[int, ...]) -> MappingOptions:
        """Set the tile sizes (one or more ints >= 0; 0 leaves a dimension untiled)."""
        return self._set(tile_sizes=_check_sizes("tile", sizes, 0, None))

    def mapToThreads(self, *sizes: int | list[int] | tuple[int, ...]) -> MappingOptions:
        """Set the block dimensions x, y, z (1 to 3 ints >= 1, at most 1024 threads)."""
        return self._set(threads=_check_threads(sizes))

    def mapToBlocks(self, *sizes: int | list[int] | tuple[int, ...]) -> MappingOptions:
        """Set the grid dimensions x, y, z (1 to 3 ints >= 1; x < 2**31, y, z <= 65535)."""
        return self._set(blocks=_check_blocks(sizes))

    def unroll(self, factor: int) -> MappingOptions:
        """Set the unroll factor (int >= 1; 1 = no unrolling). Used by GPU mapping."""
        return self._set(unroll_factor=_check_int("unroll", factor, 1))

    def outerScheduleFusionStrategy(self, strategy: str) -> MappingOptions:
        """Set the fusion strategy of the outer schedule ("Max", "Preserve3Coincident", "Min")."""
        return self._set(outer_fusion=_check_strategy("outerScheduleFusionStrategy", strategy))

    def intraTileScheduleFusionStrategy(self, strategy: str) -> MappingOptions:
        """Set the fusion strategy of the intra-tile schedule."""
        return self._set(intra_fusion=_check_strategy("intraTileScheduleFusionStrategy", strategy))

    def scheduleFusionStrategy(self, strategy: str) -> MappingOptions:
        """Set both the outer and the intra-tile fusion strategies."""
        canonical = _check_strategy("scheduleFusionStrategy", strategy)
        return self._set(outer_fusion=canonical, intra_fusion=canonical)

    def outerScheduleAllowSkewing(self, allow: bool) -> MappingOptions:
        """Let the outer scheduler skew loops."""
        return self._set(outer_allow_skewing=_check_bool("outerScheduleAllowSkewing", allow))

    def outerSchedulePositiveOrthant(self, positive: bool) -> MappingOptions:
        """Restrict the outer schedule's coefficients to non-negative values."""
        return self._set(
            outer_positive_orthant=_check_bool("outerSchedulePositiveOrthant", positive)
        )

    def intraTileScheduleAllowSkewing(self, allow: bool) -> MappingOptions:
        """Let the intra-tile scheduler skew loops."""
        return self._set(intra_allow_skewing=_check_bool("intraTileScheduleAllowSkewing", allow))

    def intraTileSchedulePositiveOrthant(self, positive: bool) -> MappingOptions:
        """Restrict the intra-tile schedule's coefficients to non-negative values."""
        return self._set(
            intra_positive_orthant=_check_bool("intraTileSchedulePositiveOrthant", positive)
        )

    def fixParametersBeforeScheduling(self, fix: bool) -> MappingOptions:
        """Substitute the actual sizes for the size symbols before scheduling."""
        return self._set(fix_parameters=_check_bool("fixParametersBeforeScheduling", fix))

    def tileImperfectlyNested(self, tile: bool) -> MappingOptions:
        """Also tile loops that are not perfectly nested."""
        return self._set(tile_imperfectly_nested=_check_bool("tileImperfectlyNested", tile))

    def matchLibraryCalls(self, match: bool) -> MappingOptions:
        """Compile reductions as block-parallel tree reductions (see the module docs)."""
        return self._set(match_library_calls=_check_bool("matchLibraryCalls", match))

    def useSharedMemory(self, use: bool) -> MappingOptions:
        """Promote tile footprints reused by several threads to shared memory."""
        return self._set(use_shared_memory=_check_bool("useSharedMemory", use))

    def usePrivateMemory(self, use: bool) -> MappingOptions:
        """Keep elements that one thread updates across a loop in registers."""
        return self._set(use_private_memory=_check_bool("usePrivateMemory", use))

    def unrollCopyShared(self, unroll: bool) -> MappingOptions:
        """Unroll the copies to and from shared memory."""
        return self._set(unroll_copy_shared=_check_bool("unrollCopyShared", unroll))

    def useReadOnlyCache(self, use: bool) -> MappingOptions:
        """Load read-only tensors through the read-only cache (``__ldg`` in CUDA)."""
        return self._set(use_readonly_cache=_check_bool("useReadOnlyCache", use))

    def maxSharedMemory(self, size: int | None) -> MappingOptions:
        """Bound shared memory per block in bytes (int >= 0, or None for the device's limit)."""
        value = None if size is None else _check_int("maxSharedMemory", size, 0)
        return self._set(max_shared_memory=value)

    def privateDepth(self, depth: int) -> MappingOptions:
        """Set the schedule depth of private promotion (int >= 0; 0 = compiler's choice)."""
        return self._set(private_depth=_check_int("privateDepth", depth, 0))

    def sharedDepth(self, depth: int) -> MappingOptions:
        """Set the schedule depth of shared promotion (int >= 0; 0 = compiler's choice)."""
        return self._set(shared_depth=_check_int("sharedDepth", depth, 0))

    def cpuThreads(self, threads: int) -> MappingOptions:
        """Set the OpenMP threads of the CPU target's parallel loops (int >= 0; 0 = the
        OpenMP default, ``OMP_NUM_THREADS`` or every core)."""
        return self._set(cpu_threads=_check_int("cpuThreads", threads, 0))

    def cpuParallel(self, parallel: bool) -> MappingOptions:
        """Run each CPU kernel's outermost dependence-free loop on OpenMP threads."""
        return self._set(cpu_parallel=_check_bool("cpuParallel", parallel))

    def cpuVectorize(self, vectorize: bool) -> MappingOptions:
        """Make the innermost dependence-free loop of each CPU kernel a SIMD loop
        (moved innermost when its band is permutable)."""
        return self._set(cpu_vectorize=_check_bool("cpuVectorize", vectorize))

    def cpuRegisterTile(self, accumulators: int) -> MappingOptions:
        """Set the accumulators per SIMD lane of a CPU contraction's register tile
        (int >= 1; 1 = no register tiling): that many output rows share each vector
        load, unrolled inside the reduction loop."""
        return self._set(cpu_register_tile=_check_int("cpuRegisterTile", accumulators, 1))

    # ------------------------------------------------------------------ read access

    @property
    def tile_sizes(self) -> tuple[int, ...]:
        """The tile sizes (0 = untiled)."""
        return self._values.tile_sizes

    @property
    def threads(self) -> tuple[int, ...]:
        """The block dimensions (x, y, z), 1 to 3 entries."""
        return self._values.threads

    @property
    def blocks(self) -> tuple[int, ...]:
        """The grid dimensions (x, y, z), 1 to 3 entries."""
        return self._values.blocks

    @property
    def unroll_factor(self) -> int:
        """The unroll factor (1 = no unrolling)."""
        return self._values.unroll_factor

    @property
    def outer_fusion(self) -> str:
        """The fusion strategy of the outer schedule."""
        return self._values.outer_fusion

    @property
    def intra_fusion(self) -> str:
        """The fusion strategy of the intra-tile schedule."""
        return self._values.intra_fusion

    @property
    def outer_allow_skewing(self) -> bool:
        """Whether the outer scheduler may skew."""
        return self._values.outer_allow_skewing

    @property
    def outer_positive_orthant(self) -> bool:
        """Whether the outer schedule's coefficients are non-negative."""
        return self._values.outer_positive_orthant

    @property
    def intra_allow_skewing(self) -> bool:
        """Whether the intra-tile scheduler may skew."""
        return self._values.intra_allow_skewing

    @property
    def intra_positive_orthant(self) -> bool:
        """Whether the intra-tile schedule's coefficients are non-negative."""
        return self._values.intra_positive_orthant

    @property
    def fix_parameters(self) -> bool:
        """Whether sizes are fixed before scheduling."""
        return self._values.fix_parameters

    @property
    def tile_imperfectly_nested(self) -> bool:
        """Whether imperfectly nested loops are tiled."""
        return self._values.tile_imperfectly_nested

    @property
    def match_library_calls(self) -> bool:
        """Whether library calls are matched."""
        return self._values.match_library_calls

    @property
    def use_shared_memory(self) -> bool:
        """Whether shared-memory promotion is on."""
        return self._values.use_shared_memory

    @property
    def use_private_memory(self) -> bool:
        """Whether private (register) promotion is on."""
        return self._values.use_private_memory

    @property
    def unroll_copy_shared(self) -> bool:
        """Whether shared-memory copies are unrolled."""
        return self._values.unroll_copy_shared

    @property
    def use_readonly_cache(self) -> bool:
        """Whether read-only tensors go through the read-only cache."""
        return self._values.use_readonly_cache

    @property
    def max_shared_memory(self) -> int | None:
        """The shared-memory bound in bytes, or None for the device's limit."""
        return self._values.max_shared_memory

    @property
    def private_depth(self) -> int:
        """The private promotion depth (0 = compiler's choice)."""
        return self._values.private_depth

    @property
    def shared_depth(self) -> int:
        """The shared promotion depth (0 = compiler's choice)."""
        return self._values.shared_depth

    @property
    def cpu_threads(self) -> int:
        """The OpenMP thread count of CPU kernels (0 = the OpenMP default)."""
        return self._values.cpu_threads

    @property
    def cpu_parallel(self) -> bool:
        """Whether CPU kernels run a parallel loop on OpenMP threads."""
        return self._values.cpu_parallel

    @property
    def cpu_vectorize(self) -> bool:
        """Whether CPU kernels get a SIMD loop."""
        return self._values.cpu_vectorize

    @property
    def cpu_register_tile(self) -> int:
        """The accumulators per SIMD lane of a CPU contraction (1 = no register tile)."""
        return self._values.cpu_register_tile

    # ------------------------------------------------------------------ identity

    def key(self) -> _Values:
        """A hashable, immutable snapshot of the current values (for cache keys)."""
        return self._values

    def copy(self) -> MappingOptions:
        """An independent copy: setters on either object do not affect the other."""
        return MappingOptions._from_values(self._values)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MappingOptions):
            return NotImplemented
        return self._values == other._values

    def __hash__(self) -> int:
        return hash(self._values)

    def __repr__(self) -> str:
        text = 'MappingOptions("naive")'
        for name, setter, _ in _FIELDS:
            value = getattr(self._values, name)
            if value != getattr(_NAIVE, name):
                text += f".{setter}({_format_value(value)})"
        return text

    def __str__(self) -> str:
        width = max(len(setter) for _, setter, _ in _FIELDS)
        lines = ["MappingOptions:"]
        for name, setter, _ in _FIELDS:
            value = getattr(self._values, name)
            if isinstance(value, tuple):
                shown = " ".join(str(v) for v in value)
            elif value is None:
                shown = "None (device limit)"
            else:
                shown = str(value)
            lines.append(f"  {setter:<{width}}  {shown}")
        return "\n".join(lines)

    # ------------------------------------------------------------------ serialization

    def serialize(self) -> str:
        """A stable, compact JSON text of all values, with ``"version": 1`` and sorted keys."""
        data: dict[str, object] = {"version": SERIALIZATION_VERSION}
        for name, _, _ in _FIELDS:
            value = getattr(self._values, name)
            data[name] = list(value) if isinstance(value, tuple) else value
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    @classmethod
    def deserialize(cls, text: str | bytes) -> MappingOptions:
        """Rebuild options from :meth:`serialize`'s text; missing fields take naive values.

        Raises :class:`~tc.errors.TcOptionsError` on malformed JSON, a text that is
        not a serialized ``MappingOptions``, a wrong version, unknown fields or
        invalid values.
        """
        where = "MappingOptions.deserialize"
        if isinstance(text, bytes | bytearray):
            try:
                text = bytes(text).decode("utf-8")
            except UnicodeDecodeError as exc:
                raise TcOptionsError(f"{where}: the text is not valid UTF-8 ({exc})") from None
        if not isinstance(text, str):
            raise TcOptionsError(f"{where}: expected a str, got {_describe(text)}")

        def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
            result: dict[str, Any] = {}
            for k, v in pairs:
                if k in result:
                    raise TcOptionsError(f"{where}: duplicate field {k!r}")
                result[k] = v
            return result

        try:
            data = json.loads(text, object_pairs_hook=no_duplicates)
        except json.JSONDecodeError as exc:
            raise TcOptionsError(f"{where}: not valid JSON ({exc})") from None
        except RecursionError:
            raise TcOptionsError(f"{where}: not valid JSON (nested too deeply)") from None
        if not isinstance(data, dict):
            raise TcOptionsError(
                f"{where}: expected a JSON object of mapping options, got {type(data).__name__}"
            )
        if "version" not in data:
            raise TcOptionsError(f"{where}: not a serialized MappingOptions (no 'version' field)")
        version = data.pop("version")
        if type(version) is not int or version != SERIALIZATION_VERSION:
            raise TcOptionsError(
                f"{where}: unsupported version {version!r}; this tc reads version "
                f"{SERIALIZATION_VERSION}"
            )
        unknown = sorted(k for k in data if k not in _KIND)
        if unknown:
            raise TcOptionsError(
                f"{where}: unknown field(s) {', '.join(repr(k) for k in unknown)}; "
                f"known fields are {', '.join(sorted(_KIND))}"
            )
        options = cls("naive")
        for name, value in data.items():
            kind = _KIND[name]
            if kind == "ints" and not isinstance(value, list):
                raise TcOptionsError(
                    f"{where}: field {name!r} must be a list of ints, got {_describe(value)}"
                )
            setter = getattr(options, _SETTER[name])
            try:
                setter(tuple(value)) if kind == "ints" else setter(value)
            except TcOptionsError as exc:
                raise TcOptionsError(f"{where}: field {name!r}: {exc.message}") from None
        return options
