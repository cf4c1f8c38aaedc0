"""Random valid mapping options on random catalogue kernels at odd sizes, on PoCL.

Every option value the compiler accepts must give the interpreter's results: tile
sizes of 0 (untiled), 1 and larger than the domain, 1 to 4 of them; 1 to 3 thread
dimensions (odd ones too) and 1 to 3 block dimensions; every fusion strategy for the
outer and the intra-tile schedule; skewing and orthant flags; fixed or symbolic
sizes; unrolling; shared-memory promotion at every depth and under small limits,
register promotion, the read-only cache, library reductions. Sizes are a kernel's
test sizes, possibly scaled down (to 1, to a prime, below a tile).

The kernels also pass the static structure checks of ``kernel_checks`` (PoCL runs a
work-group's items one after another, so it cannot show a race between threads).

Hypothesis runs derandomized (reproducible in CI): 40 examples by default (5 for each
of 8 groups of kernels), 20 times more with ``--fuzz-long``.
"""

from __future__ import annotations

import functools
import math

import pytest
from catalogue_cases import kernel_and_inputs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kernel_checks import assert_same, structure_problems

import tc
from tc.catalogue import KERNELS
from tc.options import FUSION_STRATEGIES, MappingOptions

#: The kernels are split into groups, each fuzzed on its own, so that the few examples
#: of the default run are spread over the whole catalogue (hypothesis explores around
#: its previous examples); EXAMPLES per group, 40 in all.
GROUPS = 8
EXAMPLES = 5
KERNEL_GROUPS = [sorted(KERNELS)[i::GROUPS] for i in range(GROUPS)]
#: Cap on (blocks x threads) launched: PoCL runs every work-item of every work-group on
#: the CPU, even those with nothing to do. Larger under ``--fuzz-long``.
WORK_ITEMS = 1 << 15
TILE_SIZES = (0, 1, 2, 3, 5, 7, 16, 32, 64)
THREAD_SIZES = (1, 2, 3, 4, 5, 7, 8, 13, 16, 32, 64, 128, 256, 1024)
BLOCK_SIZES = (1, 2, 3, 5, 7, 16, 64, 256)
THREAD_LIMITS = (1024, 1024, 64)


@functools.cache
def _reference(text: str) -> tc.TC:
    return tc.define(text, backend="reference")


def _bounded(draw, choices: tuple[int, ...], count: int, budget: int,
             limits: tuple[int, ...] = (1 << 31,) * 3) -> list[int]:
    """``count`` sizes from ``choices`` whose product stays within ``budget``."""
    out = []
    for axis in range(count):
        allowed = [c for c in choices if c <= budget and c <= limits[axis]]
        size = draw(st.sampled_from(allowed))
        out.append(size)
        budget //= size
    return out


@st.composite
def mapping_options(draw, work_items: int) -> MappingOptions:
    o = MappingOptions("naive")  # every field below is drawn
    o.tile(draw(st.lists(st.sampled_from(TILE_SIZES), min_size=1, max_size=4)))
    threads = _bounded(draw, THREAD_SIZES, draw(st.integers(1, 3)), 1024, THREAD_LIMITS)
    o.mapToThreads(threads)
    o.mapToBlocks(_bounded(draw, BLOCK_SIZES, draw(st.integers(1, 3)),
                           max(1, work_items // math.prod(threads))))
    o.outerScheduleFusionStrategy(draw(st.sampled_from(FUSION_STRATEGIES)))
    o.intraTileScheduleFusionStrategy(draw(st.sampled_from(FUSION_STRATEGIES)))
    o.outerScheduleAllowSkewing(draw(st.booleans()))
    o.outerSchedulePositiveOrthant(draw(st.booleans()))
    o.intraTileScheduleAllowSkewing(draw(st.booleans()))
    o.intraTileSchedulePositiveOrthant(draw(st.booleans()))
    o.fixParametersBeforeScheduling(draw(st.booleans()))
    o.tileImperfectlyNested(draw(st.booleans()))
    o.unroll(draw(st.integers(1, 8)))
    o.useSharedMemory(draw(st.booleans()))
    o.sharedDepth(draw(st.integers(0, 6)))
    o.maxSharedMemory(draw(st.sampled_from([None, None, 0, 64, 1024, 4096])))
    o.usePrivateMemory(draw(st.booleans()))
    o.privateDepth(draw(st.integers(0, 6)))
    o.unrollCopyShared(draw(st.booleans()))
    o.useReadOnlyCache(draw(st.booleans()))
    o.matchLibraryCalls(draw(st.booleans()))
    return o


@pytest.mark.parametrize("names", KERNEL_GROUPS, ids=[f"group{i}" for i in range(GROUPS)])
def test_random_options_match_the_interpreter(names: list[str], fuzz_examples,
                                              request: pytest.FixtureRequest) -> None:
    long_run = request.config.getoption("--fuzz-long")
    work_items = WORK_ITEMS * (8 if long_run else 1)

    @settings(max_examples=fuzz_examples(EXAMPLES), deadline=None, derandomize=True,
              database=None, suppress_health_check=[HealthCheck.too_slow])
    @given(case=kernel_and_inputs(names), options=mapping_options(work_items))
    def check(case, options: MappingOptions) -> None:
        kernel, sizes, inputs = case
        what = f"{kernel.name} {sizes} {options!r}"
        want = _reference(kernel.tc)[kernel.entry](*inputs)
        executor = tc.compile(kernel.tc, kernel.entry, options, *inputs, backend="opencl")
        assert_same(executor(*inputs), want, kernel.rtol, kernel.atol, what=what)
        assert structure_problems(executor.program) == [], what
        for ck, info in zip(executor.program.kernels, executor.kernels, strict=True):
            if ck.kernel.meta.get("template") == "reduction":
                continue  # a library reduction picks its own launch (codegen.reduction)
            assert all(g <= b for g, b in zip(info.grid, (*options.blocks, 1, 1, 1),
                                              strict=False)), what
            assert all(t <= b for t, b in zip(info.block, (*options.threads, 1, 1, 1),
                                              strict=False)), what

    check()
