"""The MLIR export as text (no IREE needed): structure, indexing maps, iterator types,
dynamic shapes, the interpreter's semantics in the ops chosen, positioned errors."""

from __future__ import annotations

import re

import pytest
import torch

import tc
from tc.ir.types import ScalarType
from tc.lang.frontend import check_text
from tc.mlir.body import EXPANDED, NOT_EXPORTABLE, math_ops
from tc.mlir.types import constant, float_literal, tensor_type

MATMUL = """
def matmul(float(M, K) A, float(K, N) B) -> (C) {
    C(m, n) +=! A(m, k) * B(k, n)
}
"""


def _generics(text: str) -> list[str]:
    return [line for line in text.splitlines() if "linalg.generic" in line]


def test_matmul_is_one_generic_with_the_statement_maps() -> None:
    text = tc.to_mlir(MATMUL, "matmul", ((3, 5), "float32"), ((5, 7), torch.float32))
    assert "func.func @matmul(%A: tensor<3x5xf32>, %B: tensor<5x7xf32>) -> " \
           "(tensor<3x7xf32>)" in text
    assert text.count("module {") == 1
    (g,) = _generics(text)
    maps = re.findall(r"affine_map<\(([^)]*)\) -> \(([^)]*)\)>", g)
    assert ("d0, d1, d2", "d0, d2") in maps and ("d0, d1, d2", "d2, d1") in maps
    assert maps[-1] == ("d0, d1, d2", "d0, d1")  # the output
    assert 'iterator_types = ["parallel", "parallel", "reduction"]' in g
    # +=! starts from the identity, with linalg.fill
    assert re.search(r"arith.constant 0.0 : f32\n.*linalg.fill ins\(%c\.\d+ : f32\)", text)
    assert "arith.addf %out" in text and "arith.mulf" in text
    assert re.search(r"return %C\.\d+ : tensor<3x7xf32>", text)


def test_inputs_as_tensors_or_shapes_give_the_same_text() -> None:
    a, b = torch.randn(3, 5), torch.randn(5, 7)
    assert tc.to_mlir(MATMUL, "matmul", a, b) == tc.to_mlir(
        MATMUL, "matmul", ((3, 5), "float"), ((5, 7), torch.float32))


def test_dynamic_sizes_are_question_marks_read_with_tensor_dim() -> None:
    text = tc.to_mlir(MATMUL, "matmul", ((3, 5), "float"), ((5, 7), "float"), dynamic=True)
    assert "%A: tensor<?x?xf32>, %B: tensor<?x?xf32>) -> (tensor<?x?xf32>)" in text
    assert "tensor.dim %A" in text and "tensor.dim %B" in text
    assert re.search(r"tensor.empty\(%M\.\d+, %N\.\d+\) : tensor<\?x\?xf32>", text)


def test_literal_dimensions_stay_static_when_dynamic() -> None:
    text = tc.to_mlir("def f(float(C, 3) W) -> (O) { O(c) +=! W(c, k) }", "f",
                      ((4, 3), "float"), dynamic=True)
    assert "%W: tensor<?x3xf32>" in text


def test_sub_range_statement_uses_slices() -> None:
    text = tc.to_mlir("def f(float(N) A) -> (D) { D(i) = A(i + 1) - A(i - 1) }", "f",
                      ((7,), "float"))
    # D(i) over 1:6: computed on a slice of D, put back with insert_slice
    assert "tensor.extract_slice" in text and "tensor.insert_slice" in text
    assert re.search(r"tensor.extract_slice %A\[2\]\[5\]\[1\] : tensor<7xf32> to "
                     r"tensor<5xf32>", text)
    assert re.search(r"tensor.extract_slice %A\[0\]\[5\]\[1\]", text)
    assert re.search(r"tensor.insert_slice %D\.\d+ into %D\.\d+\[1\]\[5\]\[1\]", text)


def test_strided_reads_are_affine_maps_and_windows_give_the_reduction_extent() -> None:
    text = tc.to_mlir("def pool(float(H) I) -> (O) { O(h) max=! I(2 * h + kh) "
                      "where kh in 0:2 }", "pool", ((7,), "float"))
    (g,) = _generics(text)
    assert "affine_map<(d0, d1) -> (d0 * 2 + d1)>" in g
    assert "tensor<2xi8>" in g  # the window: kh's extent
    assert "arith.maxnumf %out" in text  # NaN-ignoring, as numpy's fmax
    assert "0xFF800000" in text  # max=! starts from -inf


def test_guarded_and_indirect_reads_are_clamped_extracts() -> None:
    text = tc.to_mlir("""
def f(float(N) A, int64(N) P) -> (O, G) {
    O(i) = A(P(i))
    G(i) = i >= 1 ? A(i - 1) : 0.0 where i in 0:N
}""", "f", ((5,), "float"), ((5,), "int64"))
    assert text.count("tensor.extract %A") == 2
    assert text.count("arith.maxsi") >= 2 and text.count("arith.minsi") >= 2
    assert "arith.index_cast" in text and "arith.select" in text


def test_integer_division_and_modulo_round_toward_negative_infinity() -> None:
    text = tc.to_mlir("def f(int32(N) a, int32(N) b, uint8(N) u) -> (q, r, v) {"
                      " q(i) = a(i) / b(i)  r(i) = a(i) % b(i)  v(i) = u(i) / uint8(3) }", "f",
                      ((4,), "int32"), ((4,), "int32"), ((4,), "uint8"))
    assert "arith.floordivsi" in text and "arith.remsi" in text
    assert "arith.divui" in text
    assert "arith.divsi" not in text


def test_min_max_and_fmin_fmax_ignore_nan() -> None:
    text = tc.to_mlir("def f(float(N) a, float(N) b, int32(N) c) -> (x, y) {"
                      " x(i) = fmax(a(i), b(i)) + min(a(i), b(i))  y(i) = max(c(i), 0) }", "f",
                      ((4,), "float"), ((4,), "float"), ((4,), "int32"))
    assert "arith.maxnumf" in text and "arith.minnumf" in text and "arith.maxsi" in text
    assert "arith.maximumf" not in text and "arith.minimumf" not in text


def test_casts_and_comparisons() -> None:
    text = tc.to_mlir("def f(float(N) a, uint8(N) u, bool(N) m) -> (x, y, z) {"
                      " x(i) = int32(a(i))  y(i) = float(u(i)) + float(m(i))"
                      " z(i) = a(i) != 0.0 && m(i) }", "f",
                      ((4,), "float"), ((4,), "uint8"), ((4,), "bool"))
    assert "arith.fptosi" in text and "math.absf" in text  # NaN/inf give 0
    assert "arith.uitofp" in text and "arith.cmpf une" in text and "arith.andi" in text
    assert "%m: tensor<4xi1>" in text


def test_half_reductions_accumulate_in_float32() -> None:
    text = tc.to_mlir("def f(half(N, K) X) -> (s) { s(n) +=! X(n, k) }", "f",
                      ((3, 5), "float16"))
    assert "tensor<3xf32>" in text  # the float32 accumulator
    assert "arith.extf" in text and "arith.truncf" in text


def test_scalars_and_temporaries() -> None:
    text = tc.to_mlir("""
def f(float(N) X, float alpha) -> (s) {
    t(i) = X(i) * alpha
    s +=! t(i)
}""", "f", ((5,), "float"), ((), "float"))
    assert "%alpha: tensor<f32>" in text and "-> (tensor<f32>)" in text
    assert "affine_map<(d0) -> ()>" in text
    assert "return" in text and text.count("linalg.generic") == 2


def test_unexportable_builtin_raises_a_positioned_error() -> None:
    # the special functions export for float, not for double (tc.mlir.special)
    text = "def f(double(N) X) -> (Y) {\n    Y(i) = X(i) + lgamma(X(i))\n}\n"
    with pytest.raises(tc.TcExportError) as e:
        tc.to_mlir(text, "f", ((3,), "double"))
    assert e.value.line == 2 and e.value.column == 19
    assert "lgamma" in str(e.value) and "^" in str(e.value)


def test_every_builtin_is_exported_or_refused() -> None:
    from tc.lang.builtins import MATH_BUILTINS

    known = set(math_ops()) | set(NOT_EXPORTABLE)
    assert set(MATH_BUILTINS) <= known
    assert not set(EXPANDED) & set(NOT_EXPORTABLE)
    for name, arity in MATH_BUILTINS.items():
        args = ", ".join(["X(i)"] * arity)
        text = f"def f(float(N) X) -> (Y) {{ Y(i) = {name}({args}) }}"
        if name in NOT_EXPORTABLE:
            with pytest.raises(tc.TcExportError):
                tc.to_mlir(text, "f", ((3,), "float"))
        else:
            assert "linalg.generic" in tc.to_mlir(text, "f", ((3,), "float"))


def test_constants_are_printed_exactly() -> None:
    assert float_literal(float("inf"), ScalarType.FLOAT32) == "0x7F800000"
    assert float_literal(float("-inf"), ScalarType.FLOAT16) == "0xFC00"
    assert float_literal(1e-5, ScalarType.FLOAT32) == "9.999999747378752e-06"
    assert float_literal(3.0, ScalarType.FLOAT64) == "3.0"
    assert constant(255, ScalarType.UINT8) == "arith.constant -1 : i8"
    assert constant(True, ScalarType.BOOL) == "arith.constant true"
    assert tensor_type([3, None], ScalarType.BFLOAT16) == "tensor<3x?xbf16>"
    assert tensor_type([], ScalarType.INT64) == "tensor<i64>"


def test_every_catalogue_definition_exports() -> None:
    from tc.catalogue import KERNELS

    for k in KERNELS.values():
        inputs = k.make_inputs(k.test_sizes[0], torch.Generator().manual_seed(0))
        text = tc.to_mlir(k.tc, k.entry, *inputs)
        assert f"func.func @{k.entry}(" in text and "linalg.generic" in text
        assert tc.to_mlir(k.tc, k.entry, *inputs, dynamic=True).count("func.func") == 1


def test_unknown_entry_and_bad_inputs() -> None:
    with pytest.raises(tc.TcArgumentError, match="no definition named 'mm'"):
        tc.to_mlir(MATMUL, "mm", ((3, 5), "float"), ((5, 7), "float"))
    with pytest.raises(tc.TcArgumentError, match="size 'K'"):
        tc.to_mlir(MATMUL, "matmul", ((3, 5), "float"), ((4, 7), "float"))
    with pytest.raises(tc.TcArgumentTypeError, match="not a dtype"):
        tc.to_mlir(MATMUL, "matmul", ((3, 5), "floaty"), ((5, 7), "float"))


def test_empty_ranges_export_without_generic() -> None:
    fn = check_text(MATMUL).functions["matmul"]
    from tc.mlir.export import export_function

    text = export_function(fn, {"M": 3, "K": 0, "N": 2})
    assert "linalg.generic" not in text and "linalg.fill" in text


def test_loops_of_one_iteration_are_constants_in_the_maps() -> None:
    text = tc.to_mlir("def f(int32(3, M) B) -> (T) { T(i, j) min=! B(0, 2 * i + c) "
                      "where c in 0:2, i in 0:1, j in 0:M }", "f", ((3, 3), "int32"))
    (g,) = _generics(text)
    assert "affine_map<(d0, d1, d2) -> (0, d2)>" in g and "d0 * 2" not in g
    assert re.search(r"tensor.extract_slice %B\[0, 0\]\[3, 2\]\[1, 1\]", text)
