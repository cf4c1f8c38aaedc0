"""Tests of tc.options.MappingOptions: presets, setters, validation, serialization, repr."""

from __future__ import annotations

import copy
import json
import pickle
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tc.errors import TcError, TcOptionsError
from tc.options import MappingOptions

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# The naive values of the original TC, written out independently of the code.
NAIVE: dict[str, Any] = {
    "tile_sizes": (32, 32, 32),
    "threads": (32, 8),
    "blocks": (256, 256),
    "unroll_factor": 1,
    "outer_fusion": "Preserve3Coincident",
    "intra_fusion": "Preserve3Coincident",
    "outer_allow_skewing": False,
    "outer_positive_orthant": True,
    "intra_allow_skewing": False,
    "intra_positive_orthant": True,
    "fix_parameters": False,
    "tile_imperfectly_nested": False,
    "match_library_calls": False,
    "use_shared_memory": False,
    "use_private_memory": False,
    "unroll_copy_shared": False,
    "use_readonly_cache": False,
    "max_shared_memory": None,
    "private_depth": 0,
    "shared_depth": 0,
    "cpu_threads": 0,
    "cpu_parallel": True,
    "cpu_vectorize": True,
    "cpu_register_tile": 4,
}

PRESET_OVERRIDES: dict[str, dict[str, Any]] = {
    "naive": {},
    "single_thread": {"tile_sizes": (1,), "threads": (1,), "blocks": (1,), "unroll_factor": 1},
    "pointwise": {"threads": (32, 4, 4), "blocks": (100, 100, 100), "unroll_factor": 128},
    "mlp": {"outer_fusion": "Max", "tile_sizes": (1,), "threads": (128,), "blocks": (128,)},
    "conv": {
        "tile_sizes": (4, 8, 8, 0),
        "threads": (4, 16, 4),
        "blocks": (256, 256, 256),
        "unroll_factor": 16,
    },
    "group_conv": {
        "tile_sizes": (1, 1),
        "threads": (4, 16, 4),
        "blocks": (256, 256),
        "unroll_factor": 1,
    },
}

BOOL_SETTERS = {
    "outerScheduleAllowSkewing": "outer_allow_skewing",
    "outerSchedulePositiveOrthant": "outer_positive_orthant",
    "intraTileScheduleAllowSkewing": "intra_allow_skewing",
    "intraTileSchedulePositiveOrthant": "intra_positive_orthant",
    "fixParametersBeforeScheduling": "fix_parameters",
    "tileImperfectlyNested": "tile_imperfectly_nested",
    "matchLibraryCalls": "match_library_calls",
    "useSharedMemory": "use_shared_memory",
    "usePrivateMemory": "use_private_memory",
    "unrollCopyShared": "unroll_copy_shared",
    "useReadOnlyCache": "use_readonly_cache",
}

# (setter, property, smallest allowed value)
INT_SETTERS = [
    ("unroll", "unroll_factor", 1),
    ("maxSharedMemory", "max_shared_memory", 0),
    ("privateDepth", "private_depth", 0),
    ("sharedDepth", "shared_depth", 0),
]


# ----------------------------------------------------------------------------- presets


@pytest.mark.parametrize("preset", sorted(PRESET_OVERRIDES))
@pytest.mark.parametrize("field", sorted(NAIVE))
def test_preset_values(preset: str, field: str) -> None:
    expected = PRESET_OVERRIDES[preset].get(field, NAIVE[field])
    assert getattr(MappingOptions(preset), field) == expected


def test_default_preset_is_naive() -> None:
    assert MappingOptions() == MappingOptions("naive")


def test_presets_differ_from_each_other() -> None:
    keys = {MappingOptions(p).key() for p in PRESET_OVERRIDES}
    assert len(keys) == len(PRESET_OVERRIDES)


@pytest.mark.parametrize("name", ["Naive", "", "fast", "conv ", None, 3])
def test_bad_preset(name: object) -> None:
    with pytest.raises(TcOptionsError) as info:
        MappingOptions(name)  # type: ignore[arg-type]
    for valid in PRESET_OVERRIDES:
        assert valid in str(info.value)


# ----------------------------------------------------------------------------- setters


def test_setters_chain_and_mutate() -> None:
    o = MappingOptions("naive")
    assert o.tile(16, 8).mapToThreads(32).mapToBlocks(7, 3) is o
    assert o.tile_sizes == (16, 8)
    assert o.threads == (32,)
    assert o.blocks == (7, 3)
    o.unroll(4)
    assert o.unroll_factor == 4
    chained = MappingOptions("naive").tile(16, 8).mapToThreads(32)
    assert chained.tile_sizes == (16, 8) and chained.threads == (32,)


def test_every_setter_returns_self() -> None:
    o = MappingOptions()
    calls = [
        (o.tile, (1,)),
        (o.mapToThreads, (2,)),
        (o.mapToBlocks, (3,)),
        (o.unroll, (2,)),
        (o.outerScheduleFusionStrategy, ("Min",)),
        (o.intraTileScheduleFusionStrategy, ("Min",)),
        (o.scheduleFusionStrategy, ("Max",)),
        (o.maxSharedMemory, (None,)),
        (o.privateDepth, (1,)),
        (o.sharedDepth, (1,)),
    ] + [(getattr(o, name), (True,)) for name in BOOL_SETTERS]
    for setter, args in calls:
        assert setter(*args) is o


@pytest.mark.parametrize("args", [(32, 32), ([32, 32],), ((32, 32),)])
def test_sizes_as_ints_list_or_tuple(args: tuple[Any, ...]) -> None:
    o = MappingOptions().tile(*args).mapToThreads(*args).mapToBlocks(*args)
    assert o.tile_sizes == o.threads == o.blocks == (32, 32)
    assert MappingOptions().tile((32,)).tile_sizes == (32,)


def test_tile_zero_and_long() -> None:
    assert MappingOptions().tile(0).tile_sizes == (0,)
    assert MappingOptions().tile(1, 2, 3, 4, 5, 6, 7).tile_sizes == (1, 2, 3, 4, 5, 6, 7)


def test_thread_and_block_limits_accepted() -> None:
    assert MappingOptions().mapToThreads(1024).threads == (1024,)
    assert MappingOptions().mapToThreads(1, 1024).threads == (1, 1024)
    assert MappingOptions().mapToThreads(1, 16, 64).threads == (1, 16, 64)
    assert MappingOptions().mapToThreads(8, 8, 16).threads == (8, 8, 16)
    big = MappingOptions().mapToBlocks(2**31 - 1, 65535, 65535)
    assert big.blocks == (2**31 - 1, 65535, 65535)


@pytest.mark.parametrize("spelling", ["max", "MAX", "Max", "mAx"])
def test_fusion_strategy_any_case(spelling: str) -> None:
    o = MappingOptions().outerScheduleFusionStrategy(spelling)
    assert o.outer_fusion == "Max"
    assert o.intra_fusion == "Preserve3Coincident"
    o.intraTileScheduleFusionStrategy("min")
    assert o.intra_fusion == "Min"
    o.scheduleFusionStrategy("preserve3coincident")
    assert o.outer_fusion == o.intra_fusion == "Preserve3Coincident"


@pytest.mark.parametrize("setter,field", sorted(BOOL_SETTERS.items()))
def test_bool_setters(setter: str, field: str) -> None:
    o = MappingOptions()
    for value in (True, False, True):
        getattr(o, setter)(value)
        assert getattr(o, field) is value


@pytest.mark.parametrize("setter,field,minimum", INT_SETTERS)
def test_int_setters(setter: str, field: str, minimum: int) -> None:
    o = MappingOptions()
    for value in (minimum, minimum + 1, 4096):
        getattr(o, setter)(value)
        assert getattr(o, field) == value


def test_max_shared_memory_none() -> None:
    o = MappingOptions().maxSharedMemory(49152)
    assert o.max_shared_memory == 49152
    assert o.maxSharedMemory(None).max_shared_memory is None


def test_numpy_integers_are_stored_as_int() -> None:
    np = pytest.importorskip("numpy")
    o = MappingOptions().tile(np.int64(4), np.int32(0)).unroll(np.int64(8))
    assert o.tile_sizes == (4, 0) and type(o.tile_sizes[0]) is int
    assert o.unroll_factor == 8 and type(o.unroll_factor) is int
    with pytest.raises(TcOptionsError):
        MappingOptions().useSharedMemory(np.bool_(True))


def test_read_only_properties() -> None:
    o = MappingOptions()
    with pytest.raises(AttributeError):
        o.tile_sizes = (1,)  # type: ignore[misc]
    with pytest.raises(AttributeError):
        o.unroll_factor = 3  # type: ignore[misc]


# ----------------------------------------------------------------------------- invalid


INVALID_CALLS: list[tuple[str, tuple[Any, ...]]] = [
    ("tile", ()),
    ("tile", ([],)),
    ("tile", (-1,)),
    ("tile", (32, -1)),
    ("tile", (32.0,)),
    ("tile", (True,)),
    ("tile", ("32",)),
    ("tile", (None,)),
    ("tile", ([32], 32)),
    ("tile", ([[32]],)),
    ("mapToThreads", ()),
    ("mapToThreads", (0,)),
    ("mapToThreads", (-32,)),
    ("mapToThreads", (1, 1, 1, 1)),
    ("mapToThreads", (2048,)),
    ("mapToThreads", (1, 2048)),
    ("mapToThreads", (1, 1, 65)),
    ("mapToThreads", (64, 32)),
    ("mapToThreads", (16, 16, 8)),
    ("mapToThreads", (32.0,)),
    ("mapToThreads", (False,)),
    ("mapToBlocks", ()),
    ("mapToBlocks", (0,)),
    ("mapToBlocks", (1, 1, 1, 1)),
    ("mapToBlocks", (2**31,)),
    ("mapToBlocks", (1, 65536)),
    ("mapToBlocks", (1, 1, 65536)),
    ("mapToBlocks", (1.5,)),
    ("unroll", (0,)),
    ("unroll", (-1,)),
    ("unroll", (True,)),
    ("unroll", (2.0,)),
    ("unroll", ("4",)),
    ("unroll", (None,)),
    ("maxSharedMemory", (-1,)),
    ("maxSharedMemory", (1.0,)),
    ("maxSharedMemory", (False,)),
    ("privateDepth", (-1,)),
    ("privateDepth", (True,)),
    ("sharedDepth", (-2,)),
    ("sharedDepth", (0.0,)),
    ("outerScheduleFusionStrategy", ("Fast",)),
    ("outerScheduleFusionStrategy", ("",)),
    ("outerScheduleFusionStrategy", (None,)),
    ("outerScheduleFusionStrategy", (1,)),
    ("intraTileScheduleFusionStrategy", ("Maximum",)),
    ("scheduleFusionStrategy", ("Preserve3Coincidents",)),
] + [(name, (bad,)) for name in BOOL_SETTERS for bad in (1, 0, "True", "1", None, 1.0)]


@pytest.mark.parametrize("setter,args", INVALID_CALLS)
def test_invalid_values_raise(setter: str, args: tuple[Any, ...]) -> None:
    o = MappingOptions("conv")
    before = o.key()
    with pytest.raises(TcOptionsError) as info:
        getattr(o, setter)(*args)
    assert isinstance(info.value, TcError) and isinstance(info.value, ValueError)
    assert str(info.value).startswith(f"{setter}: ")
    assert o.key() == before, "a failed setter must leave the options unchanged"


def test_error_messages_name_value_and_limit() -> None:
    with pytest.raises(TcOptionsError) as info:
        MappingOptions().mapToThreads(64, 32)
    assert str(info.value) == (
        "mapToThreads: the product of block sizes 64*32 = 2048 exceeds 1024 threads per block"
    )
    with pytest.raises(TcOptionsError) as info:
        MappingOptions().mapToThreads(1, 1, 65)
    assert "z" in str(info.value) and "65" in str(info.value) and "64" in str(info.value)
    with pytest.raises(TcOptionsError) as info:
        MappingOptions().tile(8, -3)
    assert "-3" in str(info.value) and ">= 0" in str(info.value)
    with pytest.raises(TcOptionsError) as info:
        MappingOptions().scheduleFusionStrategy("fast")
    for name in ("Max", "Preserve3Coincident", "Min", "fast"):
        assert name in str(info.value)
    with pytest.raises(TcOptionsError) as info:
        MappingOptions().useSharedMemory(1)
    assert "useSharedMemory" in str(info.value) and "True or False" in str(info.value)


# ----------------------------------------------------------------------------- strategies


@st.composite
def thread_sizes(draw: st.DrawFn) -> tuple[int, ...]:
    x = draw(st.integers(1, 1024))
    dims = [x]
    if draw(st.booleans()):
        y = draw(st.integers(1, 1024 // x))
        dims.append(y)
        if draw(st.booleans()):
            dims.append(draw(st.integers(1, min(64, 1024 // (x * y)))))
    return tuple(dims)


block_sizes = st.tuples(st.integers(1, 2**31 - 1)) | st.lists(
    st.integers(1, 65535), min_size=1, max_size=3
).map(tuple)
strategy_names = st.sampled_from(["Max", "Preserve3Coincident", "Min", "max", "MIN"])


@st.composite
def mapping_options(draw: st.DrawFn) -> MappingOptions:
    o = MappingOptions(draw(st.sampled_from(sorted(PRESET_OVERRIDES))))
    if draw(st.booleans()):
        o.tile(draw(st.lists(st.integers(0, 4096), min_size=1, max_size=6)))
    if draw(st.booleans()):
        o.mapToThreads(*draw(thread_sizes()))
    if draw(st.booleans()):
        o.mapToBlocks(draw(block_sizes))
    if draw(st.booleans()):
        o.unroll(draw(st.integers(1, 512)))
    if draw(st.booleans()):
        o.outerScheduleFusionStrategy(draw(strategy_names))
    if draw(st.booleans()):
        o.intraTileScheduleFusionStrategy(draw(strategy_names))
    for name in BOOL_SETTERS:
        if draw(st.booleans()):
            getattr(o, name)(draw(st.booleans()))
    if draw(st.booleans()):
        o.maxSharedMemory(draw(st.none() | st.integers(0, 2**20)))
    if draw(st.booleans()):
        o.privateDepth(draw(st.integers(0, 8)))
    if draw(st.booleans()):
        o.sharedDepth(draw(st.integers(0, 8)))
    return o


# ----------------------------------------------------------------------------- serialization


@FAST
@given(mapping_options())
def test_serialize_round_trip(o: MappingOptions) -> None:
    text = o.serialize()
    back = MappingOptions.deserialize(text)
    assert back == o and back.key() == o.key()
    assert back.serialize() == text
    data = json.loads(text)
    assert data["version"] == 1
    assert list(data) == sorted(data)
    assert " " not in text and "\n" not in text


def test_serialize_is_stable() -> None:
    a = MappingOptions().useSharedMemory(True).tile(8, 8)
    b = MappingOptions().tile(8, 8).useSharedMemory(True)
    assert a.serialize() == b.serialize()
    assert MappingOptions.deserialize(a.serialize().encode()) == a


def test_deserialize_missing_fields_take_naive_defaults() -> None:
    assert MappingOptions.deserialize('{"version": 1}') == MappingOptions("naive")
    o = MappingOptions.deserialize('{"version": 1, "threads": [64], "use_shared_memory": true}')
    assert o == MappingOptions().mapToThreads(64).useSharedMemory(True)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not json",
        "{",
        "null",
        "1",
        '"naive"',
        "[1, 2]",
        "{}",
        '{"tile_sizes": [1]}',
        '{"version": 2}',
        '{"version": 0}',
        '{"version": "1"}',
        '{"version": 1.0}',
        '{"version": true}',
        '{"version": 1, "version": 1}',
        '{"version": 1, "tiles": [1]}',
        '{"version": 1, "tile_sizes": 32}',
        '{"version": 1, "tile_sizes": []}',
        '{"version": 1, "tile_sizes": [[32]]}',
        '{"version": 1, "tile_sizes": [-1]}',
        '{"version": 1, "tile_sizes": [1.5]}',
        '{"version": 1, "threads": [64, 32]}',
        '{"version": 1, "threads": [1, 1, 1, 1]}',
        '{"version": 1, "threads": "32"}',
        '{"version": 1, "blocks": [true]}',
        '{"version": 1, "unroll_factor": 0}',
        '{"version": 1, "unroll_factor": true}',
        '{"version": 1, "unroll_factor": NaN}',
        '{"version": 1, "outer_fusion": "Fast"}',
        '{"version": 1, "intra_fusion": 3}',
        '{"version": 1, "use_shared_memory": 1}',
        '{"version": 1, "use_shared_memory": "true"}',
        '{"version": 1, "max_shared_memory": -1}',
        '{"version": 1, "private_depth": null}',
        "[" * 100000,
    ],
)
def test_deserialize_rejects(text: str) -> None:
    with pytest.raises(TcOptionsError) as info:
        MappingOptions.deserialize(text)
    assert str(info.value).startswith("MappingOptions.deserialize: ")


def test_deserialize_rejects_non_text() -> None:
    with pytest.raises(TcOptionsError):
        MappingOptions.deserialize(None)  # type: ignore[arg-type]
    with pytest.raises(TcOptionsError):
        MappingOptions.deserialize(b"\xff\xfe")


def _deserialize_or_options_error(text: str | bytes) -> None:
    try:
        result = MappingOptions.deserialize(text)
    except TcOptionsError:
        return
    assert isinstance(result, MappingOptions)


@FAST
@given(st.text() | st.binary())
def test_deserialize_garbage_text(text: str | bytes) -> None:
    _deserialize_or_options_error(text)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)
field_names = st.sampled_from(sorted(NAIVE) + ["version", "tile", "Version"])


@FAST
@given(json_values)
def test_deserialize_json_of_wrong_shape(value: object) -> None:
    _deserialize_or_options_error(json.dumps(value))


@FAST
@given(st.dictionaries(field_names, json_values, max_size=5))
def test_deserialize_versioned_object_with_random_fields(fields: dict[str, object]) -> None:
    _deserialize_or_options_error(json.dumps({"version": 1, **fields}))


# ----------------------------------------------------------------------------- identity


@FAST
@given(mapping_options())
def test_repr_evaluates_back(o: MappingOptions) -> None:
    text = repr(o)
    assert text.startswith('MappingOptions("naive")')
    assert eval(text, {"MappingOptions": MappingOptions}) == o


def test_repr_lists_only_differences_from_naive() -> None:
    assert repr(MappingOptions()) == 'MappingOptions("naive")'
    assert repr(MappingOptions("conv")) == (
        'MappingOptions("naive").tile(4, 8, 8, 0).mapToThreads(4, 16, 4)'
        ".mapToBlocks(256, 256, 256).unroll(16)"
    )
    assert repr(MappingOptions("mlp")) == (
        'MappingOptions("naive").tile(1).mapToThreads(128).mapToBlocks(128)'
        '.outerScheduleFusionStrategy("Max")'
    )
    assert repr(MappingOptions().maxSharedMemory(0).useReadOnlyCache(True)) == (
        'MappingOptions("naive").useReadOnlyCache(True).maxSharedMemory(0)'
    )


def test_str_is_a_table_of_all_fields() -> None:
    text = str(MappingOptions("conv"))
    lines = text.splitlines()
    assert len(lines) == 1 + len(NAIVE)
    assert any(
        line.split()[0] == "tile" and line.split()[1:] == ["4", "8", "8", "0"] for line in lines[1:]
    )
    for name in ["mapToThreads", "useSharedMemory", "maxSharedMemory", "sharedDepth"]:
        assert any(line.split()[0] == name for line in lines[1:])


@FAST
@given(mapping_options())
def test_key_is_hashable_and_equal_for_equal_options(o: MappingOptions) -> None:
    other = MappingOptions.deserialize(o.serialize())
    assert other is not o
    assert hash(o.key()) == hash(other.key()) and o.key() == other.key()
    assert hash(o) == hash(other)
    assert {o.key(): 1}[other.key()] == 1


def test_key_is_a_snapshot() -> None:
    o = MappingOptions()
    k = o.key()
    o.tile(4)
    assert k != o.key()
    assert k == MappingOptions().key()
    with pytest.raises(AttributeError):
        k.tile_sizes = (1,)  # type: ignore[misc]


def test_copy_is_independent() -> None:
    o = MappingOptions("pointwise")
    c = o.copy()
    assert c == o and c is not o
    c.unroll(2)
    assert o.unroll_factor == 128 and c.unroll_factor == 2
    assert c != o
    assert copy.copy(o) == o and copy.deepcopy(o) == o
    assert pickle.loads(pickle.dumps(o)) == o


def test_equality() -> None:
    assert MappingOptions("conv") == MappingOptions().tile(4, 8, 8, 0).mapToThreads(
        4, 16, 4
    ).mapToBlocks(256, 256, 256).unroll(16)
    assert MappingOptions() != MappingOptions("mlp")
    assert MappingOptions() != "naive"
    assert MappingOptions().scheduleFusionStrategy("max") == (
        MappingOptions().outerScheduleFusionStrategy("Max").intraTileScheduleFusionStrategy("MAX")
    )
