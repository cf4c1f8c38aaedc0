"""TC texts and helpers shared by the tests of the polyhedral package (imported by them)."""

from __future__ import annotations

from collections.abc import Mapping

import islpy as isl

from polyhedral.dependences import Dependences, compute_dependences
from polyhedral.scop import Scop, build_scop
from tc.ir import nodes as ir
from tc.lang.frontend import check_text

TEXTS: dict[str, str] = {
    "matmul": "def matmul(float(M, K) A, float(K, N) B) -> (C) { C(m, n) +=! A(m, k) * B(k, n) }",
    "fc_relu": """
        def fc_relu(float(B, I) x, float(O, I) W, float(O) bias) -> (y) {
            y(b, o) +=! x(b, i) * W(o, i)
            y(b, o) = fmax(y(b, o) + bias(o), 0)
        }""",
    "softmax": """
        def softmax(float(N, D) X) -> (Y) {
            mx(n) max=! X(n, d)
            e(n, d) = exp(X(n, d) - mx(n))
            s(n) +=! e(n, d)
            Y(n, d) = e(n, d) / s(n)
        }""",
    "conv": """
        def conv(float(N, C, H, W) I, float(F, C, KH, KW) Wt) -> (O) {
            O(n, f, h, w) +=! I(n, c, h + kh, w + kw) * Wt(f, c, kh, kw)
        }""",
    "indirect": "def indirect(float(E, D) T, int32(B, L) I) -> (O) { O(b, d) +=! T(I(b, l), d) }",
    "transpose": "def transpose(float(N, M) A) -> (B) { B(j, i) = A(i, j) }",
    "scalar": "def scalar(float(N) X) -> (s) { s +=! X(i) }",
    "accumulate": """
        def accumulate(float(N) X, float(N, K) Y) -> (O) {
            O(i) = X(i)
            O(i) += Y(i, j)
        }""",
    "select": """
        def select(float(N) X, float(N) Z) -> (Y) {
            Y(i) = X(i) > 0 ? Z(i) : X(i / 2) where i in 0:N
        }""",
    "pool": """
        def pool(float(B, C, H, W) I) -> (O) {
            O(b, c, h, w) +=! I(b, c, 2 * h + kh, 2 * w + kw) / 4.0 where kh in 0:2, kw in 0:2
        }""",
}

#: Small concrete sizes for every text, for counting and enumerating.
SIZES: dict[str, dict[str, int]] = {
    "matmul": {"M": 3, "K": 4, "N": 5},
    "fc_relu": {"B": 2, "I": 3, "O": 4},
    "softmax": {"N": 3, "D": 4},
    "conv": {"N": 2, "C": 3, "H": 5, "W": 4, "F": 2, "KH": 3, "KW": 2},
    "indirect": {"E": 5, "D": 3, "B": 2, "L": 3},
    "transpose": {"N": 3, "M": 4},
    "scalar": {"N": 6},
    "accumulate": {"N": 3, "K": 4},
    "select": {"N": 5},
    "pool": {"B": 1, "C": 2, "H": 6, "W": 5},
}


def function(name: str) -> ir.Function:
    return check_text(TEXTS[name]).functions[name]


def scop_and_deps(name: str, sizes: Mapping[str, int] | None = None) -> tuple[Scop, Dependences]:
    scop = build_scop(function(name), sizes)
    return scop, compute_dependences(scop)


def points(s: isl.UnionSet | isl.Set) -> list[tuple[str, tuple[int, ...]]]:
    """The points of a bounded set: (tuple name, coordinates), sorted."""
    out: list[tuple[str, tuple[int, ...]]] = []

    def add(p: isl.Point) -> None:
        space = p.get_space()
        n = space.dim(isl.dim_type.set)
        coords = tuple(p.get_coordinate_val(isl.dim_type.set, i).to_python() for i in range(n))
        out.append((space.get_tuple_name(isl.dim_type.set) or "", coords))

    if isinstance(s, isl.Set):
        s = isl.UnionSet.from_set(s)
    s.foreach_point(add)
    return sorted(out)


def pairs(m: isl.UnionMap) -> set[tuple[tuple[str, tuple[int, ...]], tuple[str, tuple[int, ...]]]]:
    """The pairs of a bounded union map, each side as (tuple name, coordinates)."""
    out = set()

    def add(x: isl.Map) -> None:
        src, dst = x.get_tuple_name(isl.dim_type.in_), x.get_tuple_name(isl.dim_type.out)
        n_in = x.dim(isl.dim_type.in_)
        for _, c in points(x.wrap()):
            out.add(((src, c[:n_in]), (dst, c[n_in:])))

    m.foreach_map(add)
    return out


def specialise(obj, scop: Scop):
    """A parametric set or map of ``scop`` with its parameters fixed to the kernel's SIZES."""
    values = SIZES[scop.function.name]
    cons = " and ".join(f"{scop.param_ids[p]} = {values[p]}" for p in scop.params)
    params = ", ".join(scop.param_ids[p] for p in scop.params)
    return obj.intersect_params(isl.Set.read_from_str(scop.ctx, f"[{params}] -> {{ : {cons} }}"))
