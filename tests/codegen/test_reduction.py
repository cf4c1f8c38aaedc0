"""Block-parallel reductions (``matchLibraryCalls``, :mod:`codegen.reduction`) on PoCL.

* A few long rows are split across blocks and combined by a second kernel; the
  softmax row reductions are block-parallel; both equal torch.
* The four operators in six dtypes, at prime sizes, below one block, beyond one
  block's share of a split, over several and unit dimensions, with and without ``!``,
  equal the interpreter (integers and products of powers of two exactly) and give
  bit-identical results when run twice.
* Lets, casts and indirect reads work in the template; an out-of-bounds read raises
  ``TcRangeError`` naming the right read, also in pipeline segments after a template.
* Every kernel compiles with NVRTC for sm_80 without spills.
* The catalogue under ``matchLibraryCalls`` equals the interpreter, with the template's
  threshold as shipped and lowered so that every reduction takes the template.

PoCL compiles each distinct kernel at its first launch (0.5-3 s), so the cases are
grouped into few definitions.
"""

from __future__ import annotations

import functools
import math

import pytest
import torch
from kernel_checks import assert_same, structure_problems

import codegen.reduction
import tc
from codegen import kernel as k
from codegen.compiler import CompiledProgram, compile_program, contiguous_strides
from tc.catalogue import KERNELS, SOFTMAX, Kernel
from tc.lang.frontend import check_text
from tc.options import MappingOptions


def _options() -> MappingOptions:
    return MappingOptions("naive").matchLibraryCalls(True)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@functools.cache
def _reference(text: str) -> tc.TC:
    return tc.define(text, backend="reference")


def _templates(program: CompiledProgram) -> list[k.Kernel]:
    return [ck.kernel for ck in program.kernels if ck.kernel.meta.get("template") == "reduction"]


def _threads(program: CompiledProgram) -> int:
    """Threads launched by the program's kernels in all."""
    return sum(math.prod(ck.grid) * math.prod(ck.block) for ck in program.kernels)


# -- plans -------------------------------------------------------------------------------------

PLAN_TEXT = """
def p(float(M, N) X, float(M, N, K) Y) -> (O, S, Q) {
    O(m) +=! X(m, n)
    S max=! X(m, n)
    Q(m, n) +=! Y(m, n, k)
}
"""


@pytest.mark.parametrize(("sizes", "threads", "stage", "expect"), [
    # (threads, splits, chunk): 4 rows of 65,536 get 64 splits of 256 threads
    ({"M": 4, "N": 65536, "K": 1}, (32, 8), 0, (256, 64, 1024)),
    # never fewer than 4 elements a thread per split
    ({"M": 4, "N": 3000, "K": 1}, (32, 8), 0, (256, 2, 1536)),
    # enough rows fill the device: no split
    ({"M": 4096, "N": 1024, "K": 1}, (32, 8), 0, (256, 1, 1024)),
    # a short reduction gets a smaller block; few threads in the options still give 32
    ({"M": 3, "N": 37, "K": 1}, (32, 8), 0, (64, 1, 37)),
    ({"M": 3, "N": 4096, "K": 1}, (3,), 0, (32, 32, 128)),
    ({"M": 1, "N": 1 << 20, "K": 1}, (1024,), 1, (1024, 147, 7168)),
    # not worth it: a short reduction, or outputs enough to fill the device by themselves
    ({"M": 3, "N": 31, "K": 1}, (32, 8), 0, None),
    ({"M": 512, "N": 512, "K": 64}, (32, 8), 2, None),
])
def test_plans(sizes: dict[str, int], threads: tuple[int, ...], stage: int,
               expect: tuple[int, int, int] | None) -> None:
    fn = check_text(PLAN_TEXT).functions["p"]
    plan = codegen.reduction.plan_reduction(fn, stage, sizes, _options().mapToThreads(*threads))
    if expect is None:
        assert plan is None
        return
    assert plan is not None
    assert (plan.threads, plan.splits, plan.chunk) == expect
    assert (plan.splits - 1) * plan.chunk < plan.extent <= plan.splits * plan.chunk
    assert plan.splits <= 65535


# -- few long rows; softmax ------------------------------------------------------------------

ROW_SUM = "def row_sum(float(M, N) X) -> (O) { O(m) +=! X(m, n) }"


def test_few_long_rows_are_split_across_blocks() -> None:
    x = torch.randn(4, 65536, generator=_gen())
    ex = tc.compile(ROW_SUM, "row_sum", _options(), x, backend="opencl")
    program = ex.program
    assert len(program.kernels) == 2 and len(_templates(program)) == 2
    assert _threads(program) >= 1024
    first, second = _templates(program)
    assert first.grid[1] > 1 and first.block[0] > 1, (first.grid, first.block)
    assert second.meta["part"] == 2
    assert [b.name for b in program.scratch] == ["tc_partial0"]
    assert program.buffers[-2:] == (program.scratch[0], program.buffers[-1])
    assert structure_problems(program) == []
    got = ex(x)
    torch.testing.assert_close(got, x.double().sum(1).float(), rtol=1e-5, atol=1e-4)
    assert torch.equal(got, ex(x)), "two runs differ"


def test_softmax_rows_are_reduced_by_blocks() -> None:
    fn = check_text(SOFTMAX).functions["softmax"]
    sizes = {"M": 4096, "N": 1024}
    program = compile_program(fn, _options(), sizes, [contiguous_strides((4096, 1024))])
    reductions = _templates(program)
    assert [kern.meta["stage"] for kern in reductions] == [0, 2]
    for kern in reductions:
        assert kern.block[0] > 1 and kern.grid[0] > 1, (kern.grid, kern.block)
    for ck in program.kernels:
        if ck.kernel in reductions:
            assert "__shared__" in ck.cuda_source and "__syncthreads();" in ck.cuda_source
    assert [s.kind for s in program.segments] == ["reduction", "pipeline"] * 2
    assert structure_problems(program) == []

    x = torch.randn(64, 1024, generator=_gen())
    ex = tc.compile(SOFTMAX, "softmax", _options(), x, backend="opencl")
    assert len(_templates(ex.program)) == 2
    torch.testing.assert_close(ex(x), torch.softmax(x, dim=1))


# -- the four operators in six dtypes ------------------------------------------------------------

DTYPES = ("float32", "float64", "int32", "int64", "float16", "bfloat16")
OPS = ("+", "*", "min", "max")
#: Sizes: A is 5 x 37 (a prime below one block of 64 threads); B 5 x 1031 (a prime
#: beyond the block); C 100003 x 1 (one output, split over blocks, each thread's share
#: of a split smaller than its split, a unit dimension); D 2 x 3 x 8 x 13 with the
#: reduction over q in 1:8 and r (two dimensions, a lower bound).
SHAPES = {"A": (5, 37), "B": (5, 1031), "C": (100003, 1), "D": (2, 3, 8, 13)}


def _ops_for(dtype: str) -> tuple[str, ...]:
    """The operators of the four statements, rotated per dtype so that every operator
    meets every statement shape across the dtypes."""
    i = DTYPES.index(dtype)
    return OPS[i % 4:] + OPS[:i % 4]


def _ops_text(dtype: str) -> str:
    a, b, c, d = _ops_for(dtype)
    return f"""
    def ops({dtype}(M, K) A, {dtype}(M, L) B, {dtype}(N, U) C, {dtype}(P, R, Q, S) D)
        -> (x, y, z) {{
        x(m) {a}=! A(m, k)
        x(m) {b}= B(m, l)
        y {c}=! C(n, u)
        z(p, r) {d}=! D(p, r, q, s) where q in 1:Q
    }}
    """


def _values(op: str, dtype: str, shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    """Inputs for ``op``: products of +-1 with a few +-2 and +-0.5 are exact in any
    order (and never overflow), integers stay small."""
    tdt = getattr(torch, dtype)
    n = math.prod(shape)
    if op == "*":
        v = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
        special = torch.randperm(n, generator=gen)[:6]
        v[special[:3]] *= 2.0
        v[special[3:]] *= 0.5 if tdt.is_floating_point else 1.0
        return v.reshape(shape).to(tdt)
    if tdt.is_floating_point:
        return torch.randn(shape, generator=gen).to(tdt)
    return torch.randint(-1000, 1000, shape, generator=gen, dtype=tdt)


def _ops_inputs(dtype: str) -> tuple[torch.Tensor, ...]:
    gen = _gen(DTYPES.index(dtype))
    ops = _ops_for(dtype)
    return tuple(_values(op, dtype, SHAPES[name], gen) for op, name in zip(ops, SHAPES,
                                                                             strict=True))


def _tolerance(dtype: str) -> tuple[float, float]:
    if dtype in ("float16", "bfloat16"):
        return 2e-2, 2e-2  # the type's precision (as in test_features)
    return KERNELS["softmax"].rtol, KERNELS["softmax"].atol  # the catalogue's defaults


@pytest.mark.parametrize("dtype", DTYPES)
def test_operators_and_dtypes_match_the_interpreter(dtype: str) -> None:
    text = _ops_text(dtype)
    inputs = _ops_inputs(dtype)
    ex = tc.compile(text, "ops", _options(), *inputs, backend="opencl")
    program = ex.program
    # Every statement is a template, the scalar one in two kernels (split, combined).
    kinds = [s.kind for s in program.segments]
    assert kinds.count("reduction") == 4
    if dtype in ("float16", "bfloat16"):
        # Half sums and products accumulate in float32 temporaries (tc.ir.wide_accumulators):
        # pointwise stages around those templates convert.
        a, b, c, d = _ops_for(dtype)
        assert kinds.count("pipeline") >= sum(op in "+*" for op in (a, b, c, d)) - 1
    else:
        assert kinds == ["reduction"] * 4
        assert len(program.kernels) == 5
    # The scalar statement's stage among the stages the kernels compute.
    scalar = next(k for k, st in enumerate(program.kernel_fn.stages)
                  if st.tensor.startswith("y") and st.op is not None)
    split = [kern for kern in _templates(program) if kern.meta["stage"] == scalar]
    assert len(split) == 2 and split[0].grid[1] > 1
    assert split[0].grid[1] * split[0].block[0] < SHAPES["C"][0]  # several rounds a split
    assert structure_problems(program) == []
    got = ex(*inputs)
    want = _reference(text).ops(*inputs)
    rtol, atol = _tolerance(dtype)
    assert_same(got, want, rtol, atol, what=f"ops {dtype} {_ops_for(dtype)}")
    a, b, c, d = _ops_for(dtype)
    for g, w, ops in zip(got, want, ((a, b), (c,), (d,)), strict=True):
        if "+" not in ops or not g.is_floating_point():  # exact in any order
            assert torch.equal(g, w), f"{dtype} {ops}: {g} != {w}"
    for first, second in zip(got, ex(*inputs), strict=True):
        assert torch.equal(first, second), f"{dtype}: two runs differ"


# -- lets, casts, indirect reads, bounds checks ------------------------------------------------

GATHER = """
def gather(float(E, D) T, int32(B, L) I, float(V) W, int32(B) J, float(V) Y, int32(B) K)
    -> (G, S, H) {
    G(b) = W(J(b))
    S(b, d) +=! T(I(b, l), d) * w where w = float(l + 1)
    H(b) = Y(K(b)) + G(b)
}
"""


def _gather_inputs(bad: str = "") -> tuple[torch.Tensor, ...]:
    g = _gen(5)
    i = torch.randint(0, 9, (3, 40), generator=g, dtype=torch.int32)
    j = torch.randint(0, 6, (3,), generator=g, dtype=torch.int32)
    kk = torch.randint(0, 6, (3,), generator=g, dtype=torch.int32)
    if bad == "I":
        i[1, 17] = 9
    elif bad == "J":
        j[2] = -1
    elif bad == "K":
        kk[0] = 6
    return (torch.randn(9, 4, generator=g), i, torch.randn(6, generator=g), j,
            torch.randn(6, generator=g), kk)


def test_lets_casts_and_indirect_reads() -> None:
    inputs = _gather_inputs()
    ex = tc.compile(GATHER, "gather", _options(), *inputs, backend="opencl")
    assert [s.kind for s in ex.program.segments] == ["pipeline", "reduction", "pipeline"]
    assert structure_problems(ex.program) == []
    assert len(ex.program.checks) == 3  # one indirect read per statement
    assert_same(ex(*inputs), _reference(GATHER).gather(*inputs), what="gather")


@pytest.mark.parametrize(("bad", "tensor", "line"), [("I", "T", 5), ("J", "W", 4), ("K", "Y", 6)])
def test_out_of_bounds_read_raises(bad: str, tensor: str, line: int) -> None:
    """The error names the failing read, in the template and in the pipeline segments
    before and after it (whose check numbers follow the template's)."""
    fn = tc.define(GATHER, lambda *_: _options(), backend="opencl").gather
    with pytest.raises(tc.TcRangeError, match=f"'{tensor}'") as info:
        fn(*_gather_inputs(bad))
    assert info.value.line == line
    assert_same(fn(*_gather_inputs()), _reference(GATHER).gather(*_gather_inputs()))


# -- NVRTC -------------------------------------------------------------------------------------

NVRTC_CASES = {
    "row_sum": (ROW_SUM, "row_sum", lambda: (torch.randn(4, 65536, generator=_gen()),)),
    "softmax": (SOFTMAX, "softmax", lambda: (torch.randn(64, 1024, generator=_gen()),)),
    "gather": (GATHER, "gather", _gather_inputs),
    **{f"ops_{d}": (_ops_text(d), "ops", functools.partial(_ops_inputs, d)) for d in DTYPES},
}


@pytest.mark.parametrize("case", list(NVRTC_CASES))
def test_kernels_compile_with_nvrtc_without_spills(case: str) -> None:
    text, entry, make = NVRTC_CASES[case]
    ex = tc.compile(text, entry, _options(), *make(), backend="cuda", arch="sm_80")
    assert _templates(ex.program)
    for info in ex.kernels:
        assert f".entry {info.name}" in info.ptx
        assert "registers" in info.resources, f"{info.name}: ptxas did not run"
        assert info.resources["spill_bytes"] == 0, f"{info.name} spills: {info.resources}"


# -- the catalogue ----------------------------------------------------------------------------

#: Kernels run with every reduction forced through the template by default (all of
#: them under ``--fuzz-long``): several reductions per definition, multi-dimensional
#: ones, an indirect read, a scalar output.
FORCED_SUBSET = ("group_norm", "embedding_sum", "cross_entropy_mean")


def _check_catalogue(kernel: Kernel) -> CompiledProgram:
    inputs = kernel.make_inputs(kernel.test_sizes[0], _gen())
    saved = [t.clone() for t in inputs]
    want = _reference(kernel.tc)[kernel.entry](*inputs)
    ex = tc.compile(kernel.tc, kernel.entry, _options(), *inputs, backend="opencl")
    assert_same(ex(*inputs), want, kernel.rtol, kernel.atol, what=kernel.name)
    for before, after in zip(saved, inputs, strict=True):
        assert torch.equal(before, after), f"{kernel.name}: an input was modified"
    assert structure_problems(ex.program) == []
    return ex.program


@pytest.mark.parametrize("kernel", [pytest.param(v, id=n) for n, v in KERNELS.items()])
def test_catalogue_matches_the_interpreter(kernel: Kernel) -> None:
    _check_catalogue(kernel)


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_catalogue_with_every_reduction_in_the_template(
        name: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    if name not in FORCED_SUBSET and not request.config.getoption("--fuzz-long"):
        pytest.skip("run with --fuzz-long")
    monkeypatch.setattr(codegen.reduction, "MIN_REDUCTION", 1)
    kernel = KERNELS[name]
    program = _check_catalogue(kernel)
    fn = check_text(kernel.tc).functions[kernel.entry]
    reductions = [i for i, st in enumerate(fn.stages)
                  if st.op is not None and len(st.domain) > len(st.lhs)]
    assert sorted({kern.meta["stage"] for kern in _templates(program)}) == reductions
