"""Register tiles and full-tile isolation on the CPU target (polyhedral.register_tile,
polyhedral.full_tiles, codegen.register_arrays): the loops they give, and results
equal to an independent float64 torch computation at odd sizes and many options."""

from __future__ import annotations

import islpy as isl
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tc
from codegen import kernel as k
from codegen.targets import TARGETS
from polyhedral.full_tiles import full_tiles
from tc.ir import nodes as ir
from tc.options import MappingOptions

pytestmark = pytest.mark.skipif(not TARGETS["cpu"].available(), reason="no C compiler")

MATMUL = "def mm(float(M, K) A, float(K, N) B) -> (C) { C(m, n) +=! A(m, k) * B(k, n) }"
TMM = "def tmm(float(M, K) A, float(N, K) B) -> (C) { C(m, n) +=! A(m, k) * B(n, k) }"
BMM = ("def bmm(float(B, M, K) X, float(B, K, N) Y) -> (Z) "
       "{ Z(b, m, n) +=! X(b, m, k) * Y(b, k, n) }")
CONV = """def conv(float(N, C, H, W) I, float(F, C, KH, KW) W1) -> (O) {
    O(n, f, h, w) +=! I(n, c, h + kh, w + kw) * W1(f, c, kh, kw)
}"""
FC_RELU = """def fc(float(B, I) x, float(O, I) w, float(O) b) -> (y) {
    y(n, o) +=! x(n, i) * w(o, i)
    y(n, o) = fmax(y(n, o) + b(o), 0)
}"""


def _kernels(ex) -> list[k.Kernel]:
    return [ck.kernel for ck in ex.program.kernels]


def _stmts(ex):
    return [s for kern in _kernels(ex) for s in k.walk_stmts(kern.body)]


def test_matmul_rows_stay_in_arrays_across_the_reduction() -> None:
    a, b = torch.randn(64, 48), torch.randn(48, 96)
    options = MappingOptions("naive").tile(32, 32, 16).cpuRegisterTile(4)
    ex = tc.compile(MATMUL, "mm", options, a, b, backend="cpu")
    rows = [s for s in _stmts(ex) if isinstance(s, k.Local) and s.size]
    assert rows and len(rows) % 4 == 0 and all(r.size == 32 for r in rows)  # 4 per tile kind
    # inside the reduction loop, a SIMD loop updates the four rows without touching C
    names = {r.name for r in rows}
    updates = [s for s in _stmts(ex) if isinstance(s, k.For) and s.vector == "lanes"
               and any(isinstance(t, k.Store) and t.buffer in names and (t.op == "+" or any(
                   isinstance(n, ir.Read) and n.tensor == t.buffer for n in ir.walk(t.value)))
                       for t in k.walk_stmts(s.body))]
    assert updates
    for s in updates:
        touched = {t.buffer for t in k.walk_stmts(s.body) if isinstance(t, k.Store)}
        touched |= {n.tensor for t in k.walk_stmts(s.body) for e in k.own_exprs(t)
                    for n in ir.walk(e) if isinstance(n, ir.Read)}
        assert "t_C" not in touched and len(names & touched) == 4
    torch.testing.assert_close(ex(a, b), (a.double() @ b.double()).float(),
                               rtol=1e-4, atol=1e-4)


def test_without_register_tile_a_reduction_keeps_one_row() -> None:
    a, b = torch.randn(64, 48), torch.randn(48, 96)
    options = MappingOptions("naive").tile(32, 32, 16).cpuRegisterTile(1)
    ex = tc.compile(MATMUL, "mm", options, a, b, backend="cpu")
    for s in _stmts(ex):
        if isinstance(s, k.Scope):
            arrays = [t for t in k.walk_stmts(s.body) if isinstance(t, k.Local) and t.size]
            assert len(arrays) <= 1


def test_dot_products_share_loads_in_a_simd_reduction() -> None:
    a, b = torch.randn(32, 64), torch.randn(32, 64)
    options = MappingOptions("naive").tile(16, 16, 64).cpuRegisterTile(4)
    ex = tc.compile(TMM, "tmm", options, a, b, backend="cpu")
    src = ex.kernels[0].source
    clauses = [line for line in src.splitlines() if "omp simd reduction" in line]
    assert clauses and max(line.count("reduction(") for line in clauses) == 4
    torch.testing.assert_close(ex(a, b), (a.double() @ b.double().T).float(),
                               rtol=1e-4, atol=1e-4)


def test_full_tiles_get_constant_point_loops() -> None:
    a, b = torch.randn(70, 40), torch.randn(40, 70)
    options = MappingOptions("naive").tile(32, 32, 32).cpuRegisterTile(4)
    ex = tc.compile(MATMUL, "mm", options, a, b, backend="cpu")
    simd = [s for s in _stmts(ex) if isinstance(s, k.For) and s.vector is not None]
    constant = [s for s in simd if isinstance(s.cond, ir.Binary)
                and isinstance(s.cond.b, ir.IntImm)]
    assert constant and len(constant) < len(simd)  # full tiles, and partial ones too


def test_full_tiles_of_a_tiled_band() -> None:
    ctx = isl.Context()
    sched = isl.Schedule.from_domain(isl.UnionSet("[N] -> { S[i] : 0 <= i < N }", context=ctx))
    node = sched.get_root().child(0).insert_partial_schedule(
        isl.MultiUnionPwAff("[N] -> [{ S[i] -> [(floor(i/4))] }]", context=ctx))
    full = full_tiles(node)
    want = isl.Set("[N] -> { [t] : t >= 0 and 4t + 3 < N }", context=ctx)
    assert full is not None and full.is_equal(want)


@settings(max_examples=25, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(which=st.sampled_from(["mm", "tmm", "bmm", "conv", "fc"]),
       sizes=st.lists(st.sampled_from([1, 2, 3, 5, 7, 13, 17, 33]), min_size=3, max_size=3),
       tiles=st.lists(st.sampled_from([0, 1, 3, 4, 8, 16, 32]), min_size=1, max_size=4),
       accumulators=st.sampled_from([1, 2, 3, 4, 8]),
       fixed=st.booleans(), fusion=st.sampled_from(["Max", "Preserve3Coincident", "Min"]))
def test_register_tiles_match_torch(which, sizes, tiles, accumulators, fixed, fusion) -> None:
    p, q, r = sizes
    g = torch.Generator().manual_seed(p * 1000 + q * 10 + r)

    def rnd(*shape):
        return torch.randn(*shape, generator=g)

    if which == "mm":
        text, args = MATMUL, (rnd(p, q), rnd(q, r))
        want = args[0].double() @ args[1].double()
    elif which == "tmm":
        text, args = TMM, (rnd(p, q), rnd(r, q))
        want = args[0].double() @ args[1].double().T
    elif which == "bmm":
        text, args = BMM, (rnd(2, p, q), rnd(2, q, r))
        want = args[0].double() @ args[1].double()
    elif which == "fc":
        text, args = FC_RELU, (rnd(p, q), rnd(r, q), rnd(r))
        want = torch.relu(args[0].double() @ args[1].double().T + args[2].double())
    else:
        text, args = CONV, (rnd(1, 2, p + 2, q + 2), rnd(r, 2, 3, 3))
        want = torch.nn.functional.conv2d(args[0].double(), args[1].double())
    options = (MappingOptions("naive").tile(tiles).cpuRegisterTile(accumulators)
               .fixParametersBeforeScheduling(fixed).outerScheduleFusionStrategy(fusion))
    entry = text.split("(")[0].split()[-1]
    ex = tc.compile(text, entry, options, *args, backend="cpu")
    torch.testing.assert_close(ex(*args), want.float(), rtol=1e-4, atol=1e-4)
