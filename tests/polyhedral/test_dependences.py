"""Tests of polyhedral.dependences: dataflow, reductions, soundness against brute force."""

from __future__ import annotations

from collections import defaultdict

import islpy as isl
import pytest
import torch
from poly_cases import SIZES, TEXTS, pairs, scop_and_deps, specialise
from targets_here import runnable_targets

import tc
from polyhedral.dependences import reduction_statements


def _umap(scop, text: str) -> isl.UnionMap:
    params = ", ".join(scop.param_ids[p] for p in scop.params)
    return isl.UnionMap.read_from_str(scop.ctx, f"[{params}] -> {{ {text} }}")


def _statement_edges(m: isl.UnionMap) -> set[tuple[str, str]]:
    edges: set[tuple[str, str]] = set()
    m.foreach_map(lambda x: edges.add((x.get_tuple_name(isl.dim_type.in_),
                                       x.get_tuple_name(isl.dim_type.out))))
    return edges


def test_matmul_dependences():
    scop, deps = scop_and_deps("matmul")
    chain = _umap(scop, "S0[m, n, k] -> S0[m, n, k + 1] : 0 <= m < M and 0 <= n < N and "
                        "0 <= k < K - 1")
    init = _umap(scop, "S0_init[m, n] -> S0[m, n, 0] : 0 <= m < M and 0 <= n < N and K > 0")
    assert deps.flow.is_equal(chain.union(init))
    assert deps.output.is_equal(chain.union(init))
    assert deps.anti.is_equal(chain)
    assert deps.reduction.is_equal(chain)
    assert deps.validity.is_equal(chain.union(init))
    assert deps.proximity.is_equal(deps.validity)
    assert deps.coincidence.is_equal(init)
    # Reordering the reduction, the init still precedes every update of its element,
    # not only the first (the chain that ordered the others may be reordered).
    every = _umap(scop, "S0_init[m, n] -> S0[m, n, k] : 0 <= m < M and 0 <= n < N and "
                        "0 <= k < K")
    assert deps.reordering.is_equal(every)
    assert reduction_statements(scop) == ("S0",)


def test_fc_relu_dependences():
    scop, deps = scop_and_deps("fc_relu")
    assert _statement_edges(deps.validity) == {("S0_init", "S0"), ("S0", "S0"), ("S0", "S1")}
    last = _umap(scop, "S0[b, o, i] -> S1[b, o] : i = I - 1 and 0 <= b < B and 0 <= o < O")
    assert last.intersect_domain(scop.domain).is_subset(deps.flow)
    assert _statement_edges(deps.reduction) == {("S0", "S0")}
    assert reduction_statements(scop) == ("S0",)  # S1 is an update, not a reduction


def test_softmax_dependence_graph():
    scop, deps = scop_and_deps("softmax")
    assert _statement_edges(deps.validity) == {
        ("S0_init", "S0"), ("S0", "S0"), ("S0", "S1"), ("S1", "S2"), ("S1", "S3"),
        ("S2_init", "S2"), ("S2", "S2"), ("S2", "S3"),
    }
    assert _statement_edges(deps.reduction) == {("S0", "S0"), ("S2", "S2")}
    assert _statement_edges(deps.coincidence) == _statement_edges(deps.validity) - {
        ("S0", "S0"), ("S2", "S2")}


def test_independent_statements_have_no_dependences():
    _, deps = scop_and_deps("transpose")
    for m in (deps.flow, deps.anti, deps.output, deps.reduction):
        assert m.is_empty()


def test_indirect_and_scalar_reductions():
    scop, deps = scop_and_deps("indirect")
    assert _statement_edges(deps.validity) == {("S0_init", "S0"), ("S0", "S0")}
    same = deps.reduction.intersect(_umap(scop, "S0[b, d, l] -> S0[b, d, l2]"))
    assert deps.reduction.is_equal(same)
    scop, deps = scop_and_deps("scalar")
    assert deps.reduction.is_equal(_umap(scop, "S0[i] -> S0[i + 1] : 0 <= i < N - 1"))
    assert deps.coincidence.is_equal(_umap(scop, "S0_init[] -> S0[0] : N > 0"))


def test_accumulation_without_init_is_a_reduction_after_the_write():
    scop, deps = scop_and_deps("accumulate")
    assert _statement_edges(deps.validity) == {("S0", "S1"), ("S1", "S1")}
    assert _statement_edges(deps.reduction) == {("S1", "S1")}


def test_fixed_sizes_specialise_the_dependences():
    scop, deps = scop_and_deps("matmul", SIZES["matmul"])
    assert len(pairs(deps.reduction)) == 3 * 5 * 3
    assert len(pairs(deps.validity)) == 3 * 5 * 3 + 3 * 5


def _memory_dependences(scop) -> set:
    """Every pair of accesses to one element, one a write, in the original order."""
    w, r = scop.may_writes, scop.reads
    same = (w.apply_range(w.reverse())
            .union(w.apply_range(r.reverse()))
            .union(r.apply_range(w.reverse())))
    order = scop.original_schedule_map
    return pairs(specialise(same.intersect(order.lex_lt_union_map(order)), scop))


@pytest.mark.parametrize("name", sorted(TEXTS))
def test_validity_covers_every_memory_dependence(name):
    """Each memory-based dependence is implied by a chain of the computed ones."""
    scop, deps = scop_and_deps(name)
    edges: dict = defaultdict(set)
    for a, b in pairs(specialise(deps.validity, scop)):
        edges[a].add(b)
    memo: dict = {}

    def reach(a):
        if a not in memo:
            seen, todo = set(), [a]
            while todo:
                for b in edges[todo.pop()]:
                    if b not in seen:
                        seen.add(b)
                        todo.append(b)
            memo[a] = seen
        return memo[a]

    memory = _memory_dependences(scop)
    missing = [(a, b) for a, b in memory if b not in reach(a)]
    assert not missing, missing[:5]
    # ... and every computed dependence is a memory dependence of the original order.
    assert pairs(specialise(deps.validity, scop)) <= memory


def test_printer():
    _, deps = scop_and_deps("fc_relu")
    text = str(deps)
    for piece in ("flow (RAW):", "anti (WAR):", "output (WAW):", "reduction:", "S0_init[b, o]"):
        assert piece in text
    _, deps = scop_and_deps("transpose")
    assert "flow (RAW): none" in str(deps)


@pytest.mark.skipif("cpu" not in runnable_targets(), reason="no C compiler here")
def test_a_reduction_loop_is_not_moved_past_its_init_and_reader() -> None:
    """The CPU mapping once moved the tile loop of a reduction inside its point loop
    (for a vector reduction): the init then ran after some updates and the reader
    before others, because the last-writer dependences minus the reduction chain no
    longer ordered them. ``Dependences.reordering`` keeps that order."""
    text = "def rs(float(R, N) x) -> (y) {\n  acc(r) +=! x(r, i)\n  y(r) = acc(r) * 2.0\n}"
    x = torch.rand(5, 200) * 100 + 50
    for tiles in ([4, 8], [4, 8, 8], [2, 3]):
        options = tc.MappingOptions("naive").tile(tiles)
        y = tc.define(text, lambda *a, o=options: o, backend="cpu").rs(x)
        torch.testing.assert_close(y, x.sum(1) * 2, rtol=1e-4, atol=0)
