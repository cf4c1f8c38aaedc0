"""Tests of polyhedral.scop: statements, domains, accesses, context, original order."""

from __future__ import annotations

import math

import islpy as isl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from poly_cases import SIZES, TEXTS, function, points, specialise

from polyhedral.scop import build_scop
from tc.lang.frontend import check_text

FEW = settings(max_examples=15, deadline=None)


def _umap(scop, text: str) -> isl.UnionMap:
    params = ", ".join(scop.param_ids[p] for p in scop.params)
    return isl.UnionMap.read_from_str(scop.ctx, f"[{params}] -> {{ {text} }}")


def _box_size(dims, sizes) -> int:
    return math.prod(max(0, d.hi.evaluate(sizes) - d.lo.evaluate(sizes)) for d in dims)


# -- statements ---------------------------------------------------------------------------


def test_matmul_statements_and_parameters():
    scop = build_scop(function("matmul"))
    assert [s.name for s in scop.statements] == ["S0_init", "S0"]
    assert [s.kind for s in scop.statements] == ["init", "compute"]
    assert [s.order for s in scop.statements] == [0, 1]
    assert all(s.tensor == "C" and s.stage == 0 for s in scop.statements)
    assert scop.params == ("M", "K", "N")
    assert scop.domain.get_space().get_var_names(isl.dim_type.param) == ["M", "K", "N"]
    assert scop.statements[1].is_reduction and not scop.statements[0].is_reduction
    assert scop.statements[1].dims == ("m", "n", "k")
    expected = isl.Set.read_from_str(scop.ctx, "[M, K, N] -> { : M >= 1 and K >= 1 and N >= 1 }")
    assert scop.context.is_equal(expected)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("fc_relu", [("S0_init", "init"), ("S0", "compute"), ("S1", "compute")]),
        ("softmax", [("S0_init", "init"), ("S0", "compute"), ("S1", "compute"),
                     ("S2_init", "init"), ("S2", "compute"), ("S3", "compute")]),
        ("accumulate", [("S0", "compute"), ("S1", "compute")]),
        ("transpose", [("S0", "compute")]),
        ("scalar", [("S0_init", "init"), ("S0", "compute")]),
    ],
)
def test_init_statements_only_for_bang_reductions(name, expected):
    scop = build_scop(function(name))
    assert [(s.name, s.kind) for s in scop.statements] == expected
    assert [s.order for s in scop.statements] == list(range(len(expected)))
    for s in scop.statements:
        stage = scop.function.stages[s.stage]
        assert (s.kind == "init") == (stage.init and s.name.endswith("_init"))


# -- domains -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(TEXTS))
def test_domains_count_the_box_points(name):
    fn = function(name)
    sizes = SIZES[name]
    for scop in (build_scop(fn, sizes), build_scop(fn)):
        for s in scop.statements:
            stage = fn.stages[s.stage]
            dims = stage.lhs_dims if s.kind == "init" else stage.domain
            domain = specialise(s.domain, scop)
            assert len(points(domain)) == _box_size(dims, sizes), s.name


@FEW
@given(st.integers(1, 4), st.integers(1, 3), st.integers(3, 6), st.integers(2, 5),
       st.integers(1, 3), st.integers(1, 3), st.integers(1, 2))
def test_conv_domain_counts(n, c, h, w, f, kh, kw):
    if kh > h or kw > w:
        return
    scop = build_scop(function("conv"), {"N": n, "C": c, "H": h, "W": w, "F": f, "KH": kh,
                                         "KW": kw})
    out = n * f * (h - kh + 1) * (w - kw + 1)
    assert scop.statement("S0_init").domain.count_val().to_python() == out
    assert scop.statement("S0").domain.count_val().to_python() == out * c * kh * kw


def test_fixed_sizes_stay_parameters():
    scop = build_scop(function("matmul"), {"M": 3, "K": 4, "N": 5})
    assert scop.params == ("M", "K", "N")
    expected = isl.Set.read_from_str(scop.ctx, "[M, K, N] -> { : M = 3 and K = 4 and N = 5 }")
    assert scop.context.is_equal(expected)
    assert scop.statement("S0").domain.count_val().to_python() == 60
    partial = build_scop(function("matmul"), {"K": 7})
    assert partial.context.is_equal(
        isl.Set.read_from_str(partial.ctx, "[M, K, N] -> { : M >= 1 and K = 7 and N >= 1 }"))


@pytest.mark.parametrize("sizes", [{"Q": 3}, {"M": 0}, {"M": -2}])
def test_bad_sizes_are_rejected(sizes):
    with pytest.raises(ValueError):
        build_scop(function("matmul"), sizes)


def test_scalar_output_is_zero_dimensional():
    scop = build_scop(function("scalar"), {"N": 6})
    init = scop.statement("S0_init")
    assert init.domain.dim(isl.dim_type.set) == 0
    assert init.domain.count_val().to_python() == 1
    assert init.write.relation.is_equal(
        _umap(scop, "S0_init[] -> s[]").intersect_domain(
            isl.UnionSet.from_set(init.domain)).extract_map(init.write.relation.get_space()))


# -- accesses ----------------------------------------------------------------------------------


def _reads(scop, name: str) -> isl.UnionMap:
    s = scop.statement(name)
    out = isl.UnionMap.empty(scop.reads.get_space())
    for a in s.reads:
        out = out.union(isl.UnionMap.from_map(a.relation))
    return out


def _restricted(scop, name: str, text: str) -> isl.UnionMap:
    return _umap(scop, text).intersect_domain(isl.UnionSet.from_set(scop.statement(name).domain))


def test_matmul_accesses():
    scop = build_scop(function("matmul"))
    s = scop.statement("S0")
    assert isl.UnionMap.from_map(s.write.relation).is_equal(
        _restricted(scop, "S0", "S0[m, n, k] -> C[m, n]"))
    assert _reads(scop, "S0").is_equal(_restricted(
        scop, "S0", "S0[m, n, k] -> C[m, n]; S0[m, n, k] -> A[m, k]; S0[m, n, k] -> B[k, n]"))
    assert [a.tensor for a in s.reads] == ["C", "A", "B"]
    assert s.reads[0].read is None and s.reads[1].read is not None
    assert not any(a.is_may for a in s.reads)
    assert scop.statement("S0_init").reads == ()
    assert scop.must_writes.is_equal(scop.may_writes)


def test_conv_reads_are_affine():
    scop = build_scop(function("conv"))
    expected = "S0[n, f, h, w, c, kh, kw] -> I[n, c, h + kh, w + kw]"
    assert isl.UnionMap.from_map(scop.statement("S0").reads[1].relation).is_equal(
        _restricted(scop, "S0", expected))


def test_indirect_read_is_over_approximated():
    scop = build_scop(function("indirect"))
    reads = {a.tensor: a for a in scop.statement("S0").reads}
    t, i = reads["T"], reads["I"]
    assert not t.exact and t.is_may and i.exact and not i.is_may
    assert isl.UnionMap.from_map(t.relation).is_equal(
        _restricted(scop, "S0", "S0[b, d, l] -> T[x, d] : 0 <= x < E"))
    assert isl.UnionMap.from_map(i.relation).is_equal(
        _restricted(scop, "S0", "S0[b, d, l] -> I[b, l]"))
    assert not scop.must_reads.is_equal(scop.reads)
    assert "may-read" in str(scop)


def test_select_branches_are_may_reads():
    scop = build_scop(function("select"))
    reads = scop.statement("S0").reads
    cond = [a for a in reads if not a.conditional]
    branches = [a for a in reads if a.conditional]
    assert [a.tensor for a in cond] == ["X"]
    assert sorted(a.tensor for a in branches) == ["X", "Z"]
    division = [a for a in reads if not a.exact]
    assert len(division) == 1 and division[0].tensor == "X"


def test_transpose_and_lets():
    scop = build_scop(function("transpose"))
    s = scop.statement("S0")
    assert isl.UnionMap.from_map(s.reads[0].relation).is_equal(
        _restricted(scop, "S0", "S0[j, i] -> A[i, j]"))
    fn = check_text("def f(float(N) X) -> (Y) { Y(i) = X(j) where j = i + 1, i in 0:N-1 }")
    scop = build_scop(fn.functions["f"])
    assert scop.statement("S0").reads[0].exact
    assert isl.UnionMap.from_map(scop.statement("S0").reads[0].relation).is_equal(
        _restricted(scop, "S0", "S0[i] -> X[i + 1]"))


@pytest.mark.parametrize("name", sorted(TEXTS))
def test_accesses_are_restricted_to_their_domains(name):
    scop = build_scop(function(name))
    for s in scop.statements:
        for a in (s.write, *s.reads):
            assert a.relation.domain().is_subset(s.domain)
            assert a.relation.domain().is_equal(s.domain) or not a.exact


def test_update_reads_its_left_hand_element():
    scop = build_scop(function("fc_relu"))
    s1 = scop.statement("S1")
    assert [a.tensor for a in s1.reads] == ["y", "bias"]  # explicit read of y(b, o)
    acc = build_scop(function("accumulate"))
    assert [a.tensor for a in acc.statement("S1").reads] == ["O", "Y"]
    assert acc.statement("S1").is_reduction


# -- names and the original order ----------------------------------------------------------


def test_names_isl_cannot_read_are_renamed():
    text = """def f(float(Max, rat) S0, float(Max) X) -> (Or) {
        Or(mod, i) +=! S0(mod, i) * X(mod) where i in 0:rat
    }"""
    scop = build_scop(check_text(text).functions["f"], {"Max": 3, "rat": 2})
    assert scop.param_ids == {"Max": "Max_", "rat": "rat_"}
    assert scop.tensor_ids["Or"] == "Or_" and scop.tensor_ids["S0"] == "S0_"
    assert scop.tensor_of("S0_") == "S0"
    assert scop.statement("S0").domain.count_val().to_python() == 6
    assert scop.statement("S0").domain.get_space().get_var_names(isl.dim_type.set)[0] == "mod_"


@pytest.mark.parametrize("name", ["softmax", "fc_relu", "accumulate", "matmul"])
def test_original_schedule_is_textual_order(name):
    scop = build_scop(function(name), SIZES[name])
    smap = scop.original_schedule_map
    assert smap.domain().is_equal(scop.domain)
    assert smap.is_injective() and smap.is_single_valued()
    # Each statement's instances come after all of the previous statement's.
    ordered = [s.domain for s in scop.statements]
    for a, b in zip(ordered, ordered[1:], strict=False):
        ua, ub = isl.UnionSet.from_set(a), isl.UnionSet.from_set(b)
        later = smap.intersect_domain(ua).lex_lt_union_map(smap.intersect_domain(ub))
        assert later.is_equal(isl.UnionMap.from_domain_and_range(ua, ub))


def test_printer_shows_domains_accesses_and_context():
    text = str(build_scop(function("softmax")))
    for piece in ("context:", "S0_init", "S2_init", "must-write", "read:", "domain:",
                  "original schedule", "reduction max"):
        assert piece in text
