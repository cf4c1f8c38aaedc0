"""The special functions' expansions (:mod:`tc.mlir.special`) compiled by IREE
(``llvm-cpu``) and run against the reference interpreter: one module per dtype whose
outputs are the 14 builtins on one tensor of arguments (special values, poles, zeros,
the ends of each regime, and a seeded draw over the whole float range)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import tc
from tc.cli import main
from tc.ir import interpret
from tc.lang.frontend import check_text
from tc.mlir import run as iree

pytestmark = pytest.mark.skipif(not iree.available(), reason=iree.missing_reason() or "")

ONE_ARG = ("erfinv", "erfcinv", "normcdfinv", "lgamma", "tgamma", "cyl_bessel_i0",
           "cyl_bessel_i1", "erfcx", "j0", "j1", "y0", "y1")
TWO_ARGS = ("nextafter", "remainder")
ALL = ONE_ARG + TWO_ARGS

#: Hand-picked arguments: special values; +-1 and beyond (erfinv); 0, 1 and near
#: (normcdfinv); the poles and zeros of lgamma/tgamma; the zeros of j0 j1 y0 y1; the
#: ends of the pieces (5, 25, 8, 0.5, ...); overflow thresholds; huge arguments.
SPECIAL_VALUES = [
    0.0, -0.0, math.inf, -math.inf, math.nan, 1.0, -1.0, 0.5, -0.5, 2.0, -2.0, 3.0, -3.0,
    1e-30, -1e-30, 1e-37, 1 - 2**-24, -(1 - 2**-24), 1 - 2**-23, 2**-24, 0.25, 0.75, 0.9999,
    1.0001, 1e30, -1e30, 3e38, -3e38, 5.0, 4.999, 5.001, 8.0, 7.99, 8.01, 25.0, 24.99, 25.01,
    35.0, 35.04, 35.1, 36.0, -35.5, -41.5, -44.9, -2.5, -2.457024, -2.7476826, -2.4618165,
    -0.9, -1.5,
    -1e-7, 0.99, 1.01, 1.99, 2.01, 2.4048255, 3.8317060, 5.5200781, 0.8935770, 2.1971413,
    3.9576784, 7.0155867, 10.0, 88.7, 89.0, 713.0, -9.38, -9.4, -26.0, -27.0, 1e5, 123456.7,
    2**40, 2**60 + 2**37, 1e20, 1e-38, 2e-38, 0.4999, 0.5001, 1.5, -1.0001, 2 - 2**-22,
    4.05e36,
]

#: Where the interpreter's float lgamma (torch's) overflows though lgamma is finite
#: (up to 4.085e36): the export gives the finite value (test_lgamma_... below).
LGAMMA_EARLY_INF = (4.0371103e36, 4.0846e36)


def _arguments(n: int = 1500) -> np.ndarray:
    """The hand-picked values and a seeded draw: uniform in (-1, 1), in (-40, 40), in
    (0, 1) (probabilities), and log-uniform magnitudes from 1e-37 to 3e38 of both
    signs."""
    rng = np.random.default_rng(15)
    k = n // 5
    mags = np.exp(rng.uniform(math.log(1e-37), math.log(3e38), k)) * rng.choice([-1, 1], k)
    return np.concatenate([SPECIAL_VALUES, rng.uniform(-1, 1, k), rng.uniform(-40, 40, k),
                           rng.uniform(0, 1, k), rng.uniform(0, 1, k) ** 12, mags])


def _definition(dtype: str) -> str:
    outs = ", ".join(f"O{k}" for k in range(len(ALL)))
    lines = [f"    O{k}(i) = {fn}(X(i))" for k, fn in enumerate(ONE_ARG)]
    lines += [f"    O{k + len(ONE_ARG)}(i) = {fn}(X(i), Z(i))" for k, fn in enumerate(TWO_ARGS)]
    body = "\n".join(lines)
    return f"def special({dtype}(N) X, {dtype}(N) Z) -> ({outs}) {{\n{body}\n}}\n"


_NP = {"float": np.float32, "half": np.float16, "bfloat16": np.float32}


@pytest.fixture(scope="module", params=["float", "half", "bfloat16"])
def results(request) -> tuple[str, np.ndarray, np.ndarray, dict, dict]:
    """(dtype, X, Z, IREE's outputs, the interpreter's outputs) by builtin name."""
    dtype = request.param
    text = _definition(dtype)
    fn = check_text(text).functions["special"]
    with np.errstate(over="ignore"):  # half: the large values become +-inf, as meant
        x = _arguments().astype(_NP[dtype])
    if dtype == "bfloat16":  # the interpreter keeps bfloat16 in float32, rounded
        x = interpret.round_bfloat16(x)
    z = np.concatenate([x[7:], x[:7]])  # second arguments: the same values, shifted
    z[: len(SPECIAL_VALUES)] = np.resize(np.asarray([0.5, -2.0, 1.0, math.inf, 0.0, 1e-30,
                                                     math.nan, -0.0, 3.0], x.dtype),
                                         len(SPECIAL_VALUES))
    n = len(x)
    mlir = tc.to_mlir(text, "special", ((n,), dtype), ((n,), dtype))
    mod = iree.load(iree.compile_module(mlir), "special", [o.dtype for o in fn.outputs])
    got = mod.run([x, z], [d.dtype for d in fn.inputs])
    want = interpret.run(fn, {"X": x, "Z": z}, {"N": n})
    return (dtype, x, z, {f: np.asarray(got[k], np.float64) for k, f in enumerate(ALL)},
            {f: np.asarray(want[f"O{k}"], np.float64) for k, f in enumerate(ALL)})


def _normal(v: np.ndarray, tiny: float) -> np.ndarray:
    return (np.abs(v) >= tiny) | (v == 0) | ~np.isfinite(v)


@pytest.mark.parametrize("name", ALL)
def test_special_function_on_iree_equals_the_interpreter(results, name: str) -> None:
    dtype, x, z, got, want = results
    g, w = got[name], want[name]
    tiny = float(np.finfo(np.float32).tiny)  # IREE flushes subnormals (float32's)
    keep = _normal(x.astype(np.float64), tiny) & _normal(w, tiny)
    if name in TWO_ARGS:
        keep &= _normal(z.astype(np.float64), tiny)
    if name == "lgamma":
        x64 = x.astype(np.float64)
        keep &= ~((x64 >= LGAMMA_EARLY_INF[0]) & (x64 < LGAMMA_EARLY_INF[1]))
    assert keep.sum() > 0.9 * len(x)
    g, w = g[keep], w[keep]
    assert np.array_equal(np.isnan(g), np.isnan(w)), x[keep][np.isnan(g) != np.isnan(w)]
    inf = np.isinf(w)
    assert np.array_equal(g[inf], w[inf]), x[keep][inf][g[inf] != w[inf]]
    # float: within 2 ulp of the interpreter (erfinv and erfcinv are torch's float
    # approximations there; the rest the float64 value rounded); half and bfloat16:
    # the same float32 computation rounded once more, so a unit of their last place
    rtol = {"float": 2.4e-7, "half": 1e-3, "bfloat16": 8e-3}[dtype]
    atol = np.zeros_like(w)
    if name in ("j0", "j1", "y0", "y1"):  # near their zeros: absolute, of the amplitude
        ax = np.maximum(np.abs(x[keep].astype(np.float64)), 1.0)
        atol = 1e-12 / np.sqrt(ax)
    if name == "lgamma":  # near its negative zeros the interpreter's float lgamma (torch's)
        atol = np.full_like(w, 4e-9)  # is off by up to 1.4e-9 (test_lgamma_near_its_zeros)
    with np.errstate(invalid="ignore"):  # inf - inf: equal, caught by g == w
        err = np.abs(g - w)
    fine = (err <= rtol * np.abs(w) + atol) | (g == w) | (np.isnan(g) & np.isnan(w))
    assert fine.all(), (name, dtype, x[keep][~fine], g[~fine], w[~fine])
    # and the zeros of the special values have the interpreter's sign (tgamma(-0),
    # nextafter(0, -0), remainder(-4, 2), erfinv(-0) ...)
    zero = w == 0
    assert np.array_equal(np.signbit(g[zero]), np.signbit(w[zero])), name


def test_subnormal_results_and_arguments(results) -> None:
    """What IREE's flushing of subnormals does (docs/mlir.md): nextafter, on the bits,
    returns subnormals exactly; a subnormal argument of float arithmetic is 0."""
    dtype, x, z, got, want = results
    if dtype != "float":
        pytest.skip("float32's subnormals")
    i = SPECIAL_VALUES.index(0.0)  # nextafter(0, 0.5) is the smallest subnormal
    assert z[i] == np.float32(0.5)
    assert got["nextafter"][i] == want["nextafter"][i] == 2.0**-149
    j = SPECIAL_VALUES.index(2e-38)  # normal: as the interpreter
    assert got["normcdfinv"][j] == want["normcdfinv"][j] < -12.9
    k = SPECIAL_VALUES.index(1e-38)  # subnormal: taken as 0, where the interpreter is finite
    assert got["normcdfinv"][k] == -math.inf and math.isfinite(want["normcdfinv"][k])
    assert got["tgamma"][k] == math.inf and math.isfinite(want["tgamma"][k])


def test_nextafter_exports_in_double_and_steps_into_the_subnormals() -> None:
    text = "def f(double(N) X, double(N) Z) -> (Y) {\n    Y(i) = nextafter(X(i), Z(i))\n}\n"
    x = np.array([0.0, -0.0, 1.0, 1.0, math.inf, -math.inf, math.nan, 5e-324, 2.0, 0.0])
    z = np.array([1.0, -1.0, 2.0, 0.0, 0.0, 0.0, 1.0, 0.0, 2.0, -0.0])
    fn = check_text(text).functions["f"]
    mlir = tc.to_mlir(text, "f", ((len(x),), "double"), ((len(x),), "double"))
    mod = iree.load(iree.compile_module(mlir), "f", [fn.outputs[0].dtype])
    got = mod.run([x, z], [d.dtype for d in fn.inputs])[0]
    want = np.nextafter(x, z)
    assert np.array_equal(got, want, equal_nan=True)
    assert np.array_equal(np.signbit(got), np.signbit(want))


@pytest.mark.parametrize("name", [f for f in ALL if f != "nextafter"])
def test_special_function_in_double_raises_a_positioned_error(name: str) -> None:
    args = "X(i)" if name in ONE_ARG else "X(i), X(i)"
    text = f"def f(double(N) X) -> (Y) {{\n    Y(i) = 1.0 + {name}({args})\n}}\n"
    with pytest.raises(tc.TcExportError) as e:
        tc.to_mlir(text, "f", ((3,), "double"))
    assert (e.value.line, e.value.column) == (2, 18)
    assert name in str(e.value) and "float64" in str(e.value)


def test_export_command_writes_a_special_function(tmp_path, capsys) -> None:
    src = tmp_path / "special.tc"
    src.write_text("def f(float(N) X) -> (Y) {\n    Y(i) = lgamma(X(i)) + j0(X(i))\n}\n")
    out = tmp_path / "f.mlir"
    assert main(["export", str(src), "--entry", "f", "--sizes", "N=4", "-o", str(out)]) == 0
    text = out.read_text()
    assert "func.func @f(%X: tensor<4xf32>)" in text and "math.log" in text
    x = np.array([0.5, 3.0, -2.5, 30.0], np.float32)
    fn = check_text(src.read_text()).functions["f"]
    mod = iree.load(iree.compile_module(text), "f", [fn.outputs[0].dtype])
    got = mod.run([x], [fn.inputs[0].dtype])[0]
    want = interpret.run(fn, {"X": x}, {"N": 4})["Y"]
    np.testing.assert_allclose(got, want, rtol=3e-7)


def test_lgamma_near_its_zeros_is_closer_to_the_truth_than_the_interpreter(results) -> None:
    """Where the test above allows 1e-9 for lgamma: near its zeros at -2.457 and -2.748
    the export (float64 inside) is within two ulp of the exact value (mpmath), the
    interpreter's float lgamma up to 1.4e-9 away; and at 4.05e36 the export is finite and
    right, the interpreter inf."""
    mpmath = pytest.importorskip("mpmath")
    dtype, x, z, got, want = results
    if dtype != "float":
        pytest.skip("float32")
    for v in (-2.457024, -2.7476826, -2.4618165):
        i = SPECIAL_VALUES.index(v)
        exact = float(mpmath.log(abs(mpmath.gamma(float(x[i])))))
        assert abs(got["lgamma"][i] - exact) <= 2 * np.spacing(np.float32(abs(exact)))
        assert abs(want["lgamma"][i] - exact) > 1e-10
    i = SPECIAL_VALUES.index(4.05e36)
    exact = float(mpmath.loggamma(float(x[i])))
    assert abs(got["lgamma"][i] - exact) <= 2 * np.spacing(np.float32(exact))
    assert want["lgamma"][i] == math.inf
