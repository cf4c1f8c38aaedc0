"""Features of the compiled path, on every target that runs here (PoCL and the native
CPU target: the ``target`` fixture), each against the reference interpreter.

Non-contiguous inputs, several outputs, scalar inputs and outputs, every dtype family,
temporaries, multi-kernel definitions, preallocated outputs, the executor cache,
in-kernel bounds checks, and the errors of the compiled back ends.
"""

from __future__ import annotations

import functools

import pytest
import torch
from kernel_checks import as_tuple, assert_same, program_problems

import codegen.cc
import codegen.compiler
import codegen.opencl
import tc
from codegen.nvrtc import cuda_device_available
from codegen.targets import default_target, get_target
from tc.options import MappingOptions


@functools.cache
def _define(text: str, backend: str) -> tc.TC:
    return tc.define(text, backend=backend)


_TARGET = ["opencl"]


@pytest.fixture(autouse=True)
def _on_every_target(target: str):
    """Every test of this module runs once per target (``_compare`` compiles for it)."""
    _TARGET[0] = target
    yield
    _TARGET[0] = "opencl"


def _compare(text: str, entry: str, *inputs, rtol: float = 1e-5, atol: float = 1e-6,
             options: MappingOptions | None = None):
    """Run ``entry`` on the current target and on the interpreter; returns the compiled
    outputs."""
    want = _define(text, "reference")[entry](*inputs)
    executor = tc.compile(text, entry, options, *inputs, backend=_TARGET[0])
    got = executor(*inputs)
    assert_same(got, want, rtol, atol, what=f"{entry} on {_TARGET[0]}")
    assert program_problems(executor.program) == []
    return got


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# -- non-contiguous inputs ----------------------------------------------------------------------

ADD = "def add(float(M, N) A, float(M, N) B) -> (C) { C(m, n) = A(m, n) + 2.0 * B(m, n) }"

VIEWS = {
    "transposed": lambda x: (x.t()[:5, :6], x[:5, 1:7]),
    "sliced with steps": lambda x: (x[::2, 1::3], x[::2, 2::3]),
    "offset by narrow": lambda x: (x.narrow(0, 3, 4).narrow(1, 2, 5), x.narrow(1, 4, 5)[2:6]),
    "expanded (stride 0)": lambda x: (x[2].expand(7, 9), x[:, 3:4].expand(7, 9)),
}


@pytest.mark.parametrize("view", list(VIEWS), ids=list(VIEWS))
def test_non_contiguous_inputs(view: str) -> None:
    x = torch.randn(9, 9, generator=_gen())[:7]
    a, b = VIEWS[view](x)
    assert not (a.is_contiguous() and b.is_contiguous())
    got = _compare(ADD, "add", a, b)
    torch.testing.assert_close(got, a + 2.0 * b)
    assert got.is_contiguous()


def test_strides_are_part_of_the_signature() -> None:
    """The same shapes with other strides compile again, and both executors are right."""
    x = torch.randn(6, 6, generator=_gen())
    ex = tc.compile(ADD, "add", None, x, x, backend=_TARGET[0])
    with pytest.raises(tc.TcError, match="strides"):
        ex(x.t(), x)
    fn = tc.define(ADD, backend=_TARGET[0]).add
    torch.testing.assert_close(fn(x, x), 3.0 * x)
    torch.testing.assert_close(fn(x.t(), x), x.t() + 2.0 * x)


def test_inputs_are_never_written() -> None:
    text = "def f(float(N) X) -> (Y) { Y(i) = X(i) * 2.0 }"
    x = torch.randn(5, generator=_gen())
    saved = x.clone()
    _compare(text, "f", x)
    assert torch.equal(x, saved)


# -- outputs ------------------------------------------------------------------------------------

def test_multiple_outputs_come_in_declared_order() -> None:
    """The results are returned in the order of the ``->`` list, not of the statements."""
    text = """
    def two(float(N) X) -> (B, A, C) {
        A(i) = X(i) + 1.0
        B(i) = X(i) * 2.0
        C +=! X(i)
    }
    """
    x = torch.randn(7, generator=_gen())
    b, a, c = _compare(text, "two", x)
    torch.testing.assert_close(a, x + 1.0)
    torch.testing.assert_close(b, x * 2.0)
    torch.testing.assert_close(c, x.sum())


def test_scalar_inputs_and_scalar_outputs() -> None:
    text = """
    def axpy(float a, float(N) X, float(N) Y) -> (Z, total) {
        Z(i) = a * X(i) + Y(i)
        total +=! Z(i)
    }
    """
    x, y = torch.randn(6, generator=_gen()), torch.randn(6, generator=_gen(1))
    z, total = _compare(text, "axpy", torch.tensor(2.5), x, y)
    assert total.dim() == 0 and z.shape == (6,)
    torch.testing.assert_close(z, 2.5 * x + y)
    torch.testing.assert_close(total, (2.5 * x + y).sum())
    # a Python number is accepted for a scalar parameter
    z2, _ = tc.define(text, backend=_TARGET[0]).axpy(2.5, x, y)
    torch.testing.assert_close(z2, z)


def test_preallocated_outputs() -> None:
    text = "def f(float(N) X) -> (A, B) { A(i) = X(i) + 1.0\n B(i) = X(i) - 1.0 }"
    x = torch.randn(5, generator=_gen())
    a, b = torch.full((5,), 7.0), torch.full((5,), 7.0)
    ex = tc.compile(text, "f", None, x, backend=_TARGET[0])
    ra, rb = ex(x, outputs=[a, b])
    assert ra is a and rb is b
    torch.testing.assert_close(a, x + 1.0)
    torch.testing.assert_close(b, x - 1.0)
    out = torch.empty(5)
    fn = tc.define("def g(float(N) X) -> (Y) { Y(i) = X(i) * 3.0 }", backend=_TARGET[0]).g
    assert fn(x, outputs=out) is out
    torch.testing.assert_close(out, x * 3.0)
    with pytest.raises(tc.TcError):
        ex(x, outputs=[torch.empty(4), torch.empty(5)])


# -- dtypes ------------------------------------------------------------------------------------

INT_DIV = """
def divmod(T(N) A, T(N) B) -> (Q, R) {
    Q(i) = A(i) / B(i)
    R(i) = A(i) % B(i)
}
"""


@pytest.mark.parametrize("dtype", ["int32", "int64"])
def test_integer_floor_division_and_modulo(dtype: str) -> None:
    """Floor semantics with negative operands, 0 for a zero divisor, and the overflowing
    MIN / -1 (which wraps) and MIN % -1 (which is 0)."""
    tdt = getattr(torch, dtype)
    lo, hi = torch.iinfo(tdt).min, torch.iinfo(tdt).max
    a = torch.tensor([7, -7, 7, -7, 0, 5, -1, 9, lo, lo, hi, lo, 6], dtype=tdt)
    b = torch.tensor([2, 2, -2, -2, 3, 0, 3, -3, -1, 1, -1, 7, -4], dtype=tdt)
    q, r = _compare(INT_DIV.replace("T(", f"{dtype}("), "divmod", a, b)
    assert q[:4].tolist() == [3, -4, -4, 3] and r[:4].tolist() == [1, 1, -1, -1]
    assert q[8] == lo and r[8] == 0


def test_uint8_wraps_and_divides() -> None:
    text = """
    def u(uint8(N) A, uint8(N) B) -> (S, D, Q, R, M) {
        S(i) = A(i) + B(i)
        D(i) = A(i) - B(i)
        Q(i) = A(i) / B(i)
        R(i) = A(i) % B(i)
        M max=! A(i)
    }
    """
    a = torch.tensor([250, 3, 100, 0, 255], dtype=torch.uint8)
    b = torch.tensor([10, 4, 200, 5, 0], dtype=torch.uint8)
    s, d, q, r, m = _compare(text, "u", a, b)
    assert s[0] == 4 and d[1] == 255 and q[4] == 0 and m == 255


def test_bool_select_logic_and_reductions() -> None:
    text = """
    def b(bool(N, K) M, float(N, K) X) -> (O, P, any, all) {
        O(i, k) = M(i, k) ? X(i, k) : -1.0
        P(i, k) = M(i, k) && X(i, k) > 0.0 || !M(i, k) && X(i, k) < -1.0
        any(i) +=! M(i, k)
        all(i) *=! M(i, k)
    }
    """
    m = torch.rand(5, 4, generator=_gen()) > 0.5
    m[0] = True
    m[1] = False
    _compare(text, "b", m, torch.randn(5, 4, generator=_gen(1)))


def test_float64_math() -> None:
    text = """
    def f(double(N) X) -> (O, S, lo) {
        O(i) = exp(X(i)) / 3.0 + tanh(X(i)) * sqrt(fabs(X(i)))
        S +=! X(i) * X(i)
        lo min=! X(i)
    }
    """
    _compare(text, "f", torch.randn(11, dtype=torch.float64, generator=_gen()),
             rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision(dtype: str) -> None:
    """Elementwise results round like the interpreter's, exactly; reductions may
    accumulate in another order, so they are compared with the type's precision."""
    text = f"""
    def h({dtype}(N) X, {dtype}(N) Y) -> (O, E, C, M) {{
        O(i) = X(i) * Y(i) + X(i)
        E(i) = exp(X(i))
        C(i) = float(X(i))
        M max=! X(i)
    }}
    def s({dtype}(N) X) -> (S) {{
        S +=! X(i)
    }}
    """
    tdt = getattr(torch, dtype)
    x = torch.randn(13, generator=_gen()).to(tdt)
    y = torch.randn(13, generator=_gen(1)).to(tdt)
    o, e, c, m = _compare(text, "h", x, y, rtol=0, atol=0)
    assert o.dtype == tdt and c.dtype == torch.float32
    _compare(text, "s", x, rtol=2e-2, atol=2e-2)


def test_casts() -> None:
    text = """
    def c(float(N) X, int32(N) I) -> (A, B, C, D, E) {
        A(i) = int32(X(i))
        B(i) = float(I(i)) / 2.0
        C(i) = int64(I(i)) * 3
        D(i) = bool(X(i))
        E(i) = float16(X(i))
    }
    """
    x = torch.tensor([1.7, -1.7, 2.5, float("nan"), float("inf"), -0.2, 0.0])
    i = torch.tensor([1, -3, 5, 7, 0, -1, 2**31 - 1], dtype=torch.int32)
    _compare(text, "c", x, i)


def test_integer_min_max_reductions_and_select() -> None:
    text = """
    def mm(int32(N, K) A) -> (lo, hi, sel) {
        lo(i) min=! A(i, k)
        hi(i) max=! A(i, k)
        sel(i, k) = A(i, k) % 2 == 0 ? A(i, k) : -A(i, k)
    }
    """
    _compare(text, "mm", torch.randint(-100, 100, (5, 7), generator=_gen(), dtype=torch.int32))


# -- temporaries and several kernels ----------------------------------------------------------

def test_temporaries() -> None:
    text = """
    def t(float(N, K) X) -> (O) {
        t(i) +=! X(i, k) * X(i, k)
        u(i) = sqrt(t(i)) + 1.0
        O(i, k) = X(i, k) / u(i)
    }
    """
    x = torch.randn(4, 6, generator=_gen())
    o = _compare(text, "t", x)
    torch.testing.assert_close(o, x / (x.norm(dim=1, keepdim=True) + 1.0))


def test_softmax_is_four_kernels_and_correct() -> None:
    text = """
    def softmax(float(N, D) X) -> (Y) {
        mx(n) max=! X(n, d)
        e(n, d) = exp(X(n, d) - mx(n))
        s(n) +=! e(n, d)
        Y(n, d) = e(n, d) / s(n)
    }
    """
    x = torch.randn(5, 13, generator=_gen())
    ex = tc.compile(text, "softmax", MappingOptions("naive"), x, backend=_TARGET[0])
    assert len(ex.kernels) == 4
    assert len({k.name for k in ex.kernels}) == 4
    torch.testing.assert_close(ex(x), torch.softmax(x, dim=1))


# -- the executor cache -----------------------------------------------------------------------

def test_repeated_calls_do_not_recompile(monkeypatch: pytest.MonkeyPatch) -> None:
    compiles: list[str] = []
    builds: list[int] = []
    real_compile = codegen.compiler.compile_program
    real_build = codegen.opencl.build_program

    def counting_compile(fn, *args, **kwargs):
        compiles.append(fn.name)
        return real_compile(fn, *args, **kwargs)

    def counting_build(source, *args, **kwargs):
        builds.append(1)
        return real_build(source, *args, **kwargs)

    real_library = codegen.cc.build_library

    def counting_library(source, *args, **kwargs):
        builds.append(1)
        return real_library(source, *args, **kwargs)

    monkeypatch.setattr(codegen.compiler, "compile_program", counting_compile)
    monkeypatch.setattr(codegen.opencl, "build_program", counting_build)
    monkeypatch.setattr(codegen.cc, "build_library", counting_library)
    text = "def f(float(N) X) -> (Y) { Y(i) = X(i) + 1.0 }"
    for backend in ("opencl", "cpu", None):
        compiles.clear()
        builds.clear()
        fn = tc.define(text, backend=backend).f
        x = torch.randn(6, generator=_gen())
        for _ in range(3):
            torch.testing.assert_close(fn(x), x + 1.0)
            torch.testing.assert_close(fn(x.clone()), x + 1.0)  # same signature
        assert compiles == ["f"] and len(builds) == 1, backend
        fn(torch.randn(7, generator=_gen()))  # a new size: compiled once more ...
        fn(torch.randn(7, generator=_gen(1)))
        # ... except where the kernels take the sizes as arguments (the cpu target)
        symbolic = (get_target(backend) if backend else default_target("cpu")).symbolic_sizes
        again = 1 if symbolic else 2
        assert compiles == ["f"] * again and len(builds) == again, backend


# -- bounds checks ----------------------------------------------------------------------------

GATHER = "def gather(float(N) A, int32(M) idx) -> (O) { O(i) = A(idx(i)) }"


@pytest.mark.parametrize("bad", [6, -1, 1000])
@pytest.mark.parametrize("backend", ["reference", "opencl", "cpu"])
def test_out_of_bounds_indirect_read_raises(backend: str, bad: int) -> None:
    a = torch.randn(6, generator=_gen())
    fn = tc.define(GATHER, backend=backend).gather
    with pytest.raises(tc.TcRangeError, match="'A'") as info:
        fn(a, torch.tensor([0, bad, 2], dtype=torch.int32))
    assert info.value.line == 1
    # the error does not stick to the executor: a good call afterwards works
    torch.testing.assert_close(fn(a, torch.tensor([5, 0, 2], dtype=torch.int32)), a[[5, 0, 2]])


def test_guarded_read_is_not_checked() -> None:
    text = "def shift(float(N) A) -> (O) { O(i) = i > 0 ? A(i - 1) : 0.0 where i in 0:N }"
    a = torch.randn(6, generator=_gen())
    o = _compare(text, "shift", a)
    torch.testing.assert_close(o, torch.cat([torch.zeros(1), a[:-1]]))


# -- errors of the compiled back ends ---------------------------------------------------------

@pytest.mark.skipif(cuda_device_available(), reason="a CUDA device is present")
def test_cuda_executor_without_a_device_raises() -> None:
    x = torch.randn(3, 4, generator=_gen())
    ex = tc.compile(ADD, "add", None, x, x, backend="cuda")
    assert ex.kernels and ex.kernels[0].ptx
    with pytest.raises(tc.TcBackendError, match="no CUDA device"):
        ex(x, x)
    with pytest.raises(tc.TcBackendError, match="no CUDA device"):
        tc.define(ADD, backend="cuda").add(x, x)


@pytest.mark.parametrize("change", ["size", "strides", "dtype", "arity"])
def test_executor_called_with_another_signature_raises(change: str) -> None:
    x = torch.randn(3, 4, generator=_gen())
    ex = tc.compile(ADD, "add", None, x, x, backend=_TARGET[0])
    args = {
        "size": (torch.randn(3, 5), torch.randn(3, 5)),
        "strides": (torch.randn(4, 3).t(), x),
        "dtype": (x.double(), x.double()),
        "arity": (x,),
    }[change]
    if change == "size" and ex.program.symbolic:
        # kernels that take the sizes as arguments serve every size
        torch.testing.assert_close(ex(*args), args[0] + 2.0 * args[1])
    else:
        with pytest.raises(tc.TcError):
            ex(*args)
    torch.testing.assert_close(as_tuple(ex(x, x))[0], 3.0 * x)
