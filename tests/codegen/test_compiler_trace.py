"""``compile_program(trace=True)`` records a text for every stage of the pipeline (what
``python -m tc explain`` prints); without it, the kernel stages are not printed."""

from __future__ import annotations

import pytest

from codegen.compiler import PIPELINE, TRACED, compile_program, contiguous_strides
from tc.lang.frontend import check_text
from tc.options import MappingOptions

ROWSUM = """
def rowsum(float(M, N) X) -> (S, T) {
    S(m) +=! X(m, n)
    T(m) = S(m) * 2
}
"""
SIZES = {"M": 3, "N": 40}


def _compile(options: MappingOptions, strategy: str, trace: bool):
    fn = check_text(ROWSUM).functions["rowsum"]
    return compile_program(fn, options, SIZES, [contiguous_strides((3, 40))], strategy,
                           trace=trace)


@pytest.mark.parametrize("strategy", ["cpu", "gpu"])
def test_trace_records_every_pipeline_stage(strategy: str) -> None:
    program = _compile(MappingOptions("naive"), strategy, trace=True)
    assert all(program.stages.get(stage, "").strip() for stage in PIPELINE)
    for stage in ("lower", "private", "barriers"):
        assert program.stages[stage].count("# kernel tc_rowsum_") == len(program.kernels)
    assert "flow (RAW):" in program.stages["dependences"]


def test_without_trace_the_traced_stages_are_left_out() -> None:
    program = _compile(MappingOptions("naive"), "cpu", trace=False)
    assert not set(TRACED) & set(program.stages)
    assert {"scop", "schedule"} <= set(program.stages)


def test_trace_covers_segmented_programs() -> None:
    program = _compile(MappingOptions("naive").matchLibraryCalls(True), "gpu", trace=True)
    assert program.segments, "the reduction template should split this program"
    for stage in PIPELINE:
        assert program.stages[stage].strip(), stage
    # the template's kernels and the pipeline segment's all show in the kernel stages
    assert program.stages["barriers"].count("# kernel ") == len(program.kernels)
