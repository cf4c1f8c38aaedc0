"""The catalogue of standard kernels: TC texts with independent torch references.

Every row of ``KERNELS.md`` is here as a :class:`Kernel`: the TC text (one or more
definitions), the definition to call, a function that builds random inputs for a
given binding of the size symbols, an independent torch implementation that returns
the same outputs in the same order as the definition's results, small odd sizes for
the tests and the sizes of ``KERNELS.md`` for the benchmarks.

The references are written with torch's own operators (``F.conv2d``,
``F.group_norm``, ``F.embedding_bag``, ``torch.autograd`` for the gradients, ...),
never as loops transcribing the TC text, so that a test comparing the two checks the
compiler against something that shares none of its semantics.

Conventions:

* Sizes are dicts from the size symbols of the entry definition's parameters to
  integers; :func:`signature` and :func:`input_shapes` read the parameters from the
  TC text, so that benchmarks can allocate inputs of the right shapes themselves.
* Backward definitions of the training examples take the forward inputs followed by
  the gradient of the forward output (the convention of ``make_autograd`` in the
  original Tensor Comprehensions) and recompute what they need.
* The convolutions and pools are "valid" (no padding); the ResNet-18 benchmark sizes
  of ``KERNELS.md`` therefore give slightly smaller outputs than the padded layers.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = [
    "KERNELS",
    "Kernel",
    "Param",
    "get",
    "input_shapes",
    "results",
    "signature",
]

Sizes = dict[str, int]
Inputs = tuple[torch.Tensor, ...]
Outputs = torch.Tensor | tuple[torch.Tensor, ...]


@dataclass(frozen=True)
class Kernel:
    """One kernel of the suite.

    ``reference`` takes the tensors that ``make_inputs`` returns and gives the same
    outputs, in the same order, as the TC definition ``entry`` of ``tc``.
    ``differentiable`` says whether the outputs are differentiable functions of the
    floating-point inputs (index inputs never are).
    """

    name: str
    tc: str
    entry: str
    make_inputs: Callable[[Sizes, torch.Generator], Inputs]
    reference: Callable[..., Outputs]
    test_sizes: tuple[Sizes, ...]
    bench_sizes: tuple[Sizes, ...]
    differentiable: bool = True
    rtol: float = 1e-4
    atol: float = 1e-5


@dataclass(frozen=True)
class Param:
    """A parameter of a TC definition as written: ``float(M, 3) A``."""

    name: str
    dtype: str
    dims: tuple[str | int, ...]


# --------------------------------------------------------------------------------------
# Reading the signature of a definition (independent of the front end, for the tests
# and the benchmarks).

_DEF_RE = re.compile(r"\bdef\s+(\w+)\s*\((.*?)\)\s*->\s*\((.*?)\)\s*\{", re.S)
_PARAM_RE = re.compile(r"^(\w+)\s*(?:\(([^()]*)\))?\s+(\w+)$")

_DTYPES: dict[str, torch.dtype] = {
    "bool": torch.bool,
    "int8": torch.int8,
    "int16": torch.int16,
    "int32": torch.int32,
    "int64": torch.int64,
    "uint8": torch.uint8,
    "float16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "float": torch.float32,
    "float32": torch.float32,
    "float64": torch.float64,
    "double": torch.float64,
}


def _split_top(text: str) -> list[str]:
    """Split ``text`` at the commas that are not inside parentheses."""
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    for ch in text:
        if ch == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
            continue
        depth += ch == "("
        depth -= ch == ")"
        current.append(ch)
    if "".join(current).strip():
        parts.append("".join(current).strip())
    return parts


def _find_def(text: str, entry: str) -> tuple[str, str]:
    """Return the parameter list and the result list of definition ``entry``."""
    text = re.sub(r"#[^\n]*", "", text)
    for match in _DEF_RE.finditer(text):
        if match.group(1) == entry:
            return match.group(2), match.group(3)
    raise KeyError(f"no definition {entry!r} in the text")


def signature(kernel: Kernel) -> tuple[Param, ...]:
    """The parameters of the kernel's entry definition, in order."""
    params_text, _ = _find_def(kernel.tc, kernel.entry)
    params = []
    for part in _split_top(params_text):
        match = _PARAM_RE.match(" ".join(part.split()))
        if match is None:
            raise ValueError(f"cannot read parameter {part!r} of {kernel.entry}")
        dtype, dims_text, name = match.groups()
        dims: tuple[str | int, ...] = ()
        if dims_text is not None:
            dims = tuple(
                int(d) if d.isdigit() else d for d in (x.strip() for x in dims_text.split(","))
            )
        params.append(Param(name, dtype, dims))
    return tuple(params)


def results(kernel: Kernel) -> tuple[str, ...]:
    """The names of the results of the kernel's entry definition, in order."""
    _, results_text = _find_def(kernel.tc, kernel.entry)
    return tuple(part.split()[-1] for part in _split_top(results_text))


def input_shapes(kernel: Kernel, sizes: Sizes) -> tuple[tuple[tuple[int, ...], torch.dtype], ...]:
    """The (shape, dtype) of each input of ``kernel`` for the binding ``sizes``."""
    return tuple(
        (tuple(d if isinstance(d, int) else sizes[d] for d in p.dims), _DTYPES[p.dtype])
        for p in signature(kernel)
    )


# --------------------------------------------------------------------------------------
# Helpers.


def _randn(g: torch.Generator, *shape: int) -> torch.Tensor:
    """A float32 tensor of standard normal values."""
    return torch.randn(*shape, generator=g, dtype=torch.float32)


def _randint(g: torch.Generator, high: int, *shape: int) -> torch.Tensor:
    """An int64 tensor of values in ``0 .. high - 1``."""
    return torch.randint(0, high, shape, generator=g, dtype=torch.int64)


def _grads(
    fn: Callable[..., torch.Tensor], inputs: Inputs, wrt: tuple[int, ...], grad_out: torch.Tensor
) -> tuple[torch.Tensor, ...]:
    """Gradients of ``fn(*inputs)`` w.r.t. ``inputs[i]`` for ``i in wrt``, by autograd."""
    with torch.enable_grad():
        leaves = [x.detach().clone().requires_grad_(i in wrt) for i, x in enumerate(inputs)]
        out = fn(*leaves)
        grads = torch.autograd.grad(out, [leaves[i] for i in wrt], grad_out)
    return tuple(g.detach() for g in grads)


def _sizes(spec: str) -> Sizes:
    """Parse ``"M=3 N=5 K=7"`` into a dict (keeps the tables below short)."""
    out = {}
    for item in spec.split():
        key, value = item.split("=")
        out[key] = int(value)
    return out


def _table(*specs: str) -> tuple[Sizes, ...]:
    """A tuple of size dicts from their ``"A=1 B=2"`` spellings."""
    return tuple(_sizes(s) for s in specs)


KERNELS: dict[str, Kernel] = {}


def _add(kernel: Kernel) -> None:
    """Register ``kernel`` (names are unique)."""
    if kernel.name in KERNELS:
        raise ValueError(f"duplicate kernel {kernel.name!r}")
    KERNELS[kernel.name] = kernel


def get(name: str) -> Kernel:
    """The kernel called ``name``; raises ``KeyError`` listing the known names."""
    try:
        return KERNELS[name]
    except KeyError:
        raise KeyError(f"unknown kernel {name!r}; known: {', '.join(sorted(KERNELS))}") from None


# ======================================================================================
# TC's own benchmark layers.

TMM = """
def tmm(float(M, K) A, float(N, K) B) -> (C) {
    C(m, n) +=! A(m, k) * B(n, k)
}
"""

_add(
    Kernel(
        name="tmm",
        tc=TMM,
        entry="tmm",
        make_inputs=lambda s, g: (_randn(g, s["M"], s["K"]), _randn(g, s["N"], s["K"])),
        reference=lambda A, B: A @ B.T,
        test_sizes=_table("M=3 N=5 K=7", "M=1 N=1 K=1", "M=13 N=1 K=5", "M=2 N=7 K=13"),
        bench_sizes=_table("M=128 N=256 K=32", "M=128 N=1024 K=1024", "M=128 N=16384 K=4096"),
    )
)

TBMM = """
def tbmm(float(B, N, M) X, float(B, K, M) Y) -> (Z) {
    Z(b, n, k) +=! X(b, n, m) * Y(b, k, m)
}
"""

_add(
    Kernel(
        name="tbmm",
        tc=TBMM,
        entry="tbmm",
        make_inputs=lambda s, g: (
            _randn(g, s["B"], s["N"], s["M"]),
            _randn(g, s["B"], s["K"], s["M"]),
        ),
        reference=lambda X, Y: torch.bmm(X, Y.transpose(1, 2)),
        test_sizes=_table("B=3 N=5 M=7 K=2", "B=1 N=1 M=1 K=1", "B=2 N=3 M=13 K=5"),
        bench_sizes=_table("B=500 N=26 M=72 K=26"),
    )
)

GROUP_CONV = """
def group_conv(float(N, G, C, H, W) I, float(G, F, C, KH, KW) W1, float(G, F) B) -> (O) {
    O(n, g, f, h, w) +=! I(n, g, c, h + kh, w + kw) * W1(g, f, c, kh, kw)
    O(n, g, f, h, w) = O(n, g, f, h, w) + B(g, f)
}
"""


def _group_conv_ref(I: torch.Tensor, W1: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """Grouped convolution through ``F.conv2d(groups=G)`` on the flattened channels."""
    n, g, c, h, w = I.shape
    _, f, _, kh, kw = W1.shape
    out = F.conv2d(
        I.reshape(n, g * c, h, w), W1.reshape(g * f, c, kh, kw), B.reshape(g * f), groups=g
    )
    return out.reshape(n, g, f, out.shape[-2], out.shape[-1])


_add(
    Kernel(
        name="group_conv",
        tc=GROUP_CONV,
        entry="group_conv",
        make_inputs=lambda s, g: (
            _randn(g, s["N"], s["G"], s["C"], s["H"], s["W"]),
            _randn(g, s["G"], s["F"], s["C"], s["KH"], s["KW"]),
            _randn(g, s["G"], s["F"]),
        ),
        reference=_group_conv_ref,
        test_sizes=_table(
            "N=2 G=3 C=2 F=3 H=7 W=5 KH=3 KW=3",
            "N=1 G=1 C=1 F=1 H=1 W=1 KH=1 KW=1",
            "N=1 G=2 C=3 F=1 H=5 W=7 KH=2 KW=3",
        ),
        bench_sizes=tuple(
            {"N": 32, "G": 32, "C": c, "F": c, "H": h, "W": h, "KH": 3, "KW": 3}
            for c, h in ((4, 56), (8, 28), (16, 14), (32, 7))
        ),
    )
)

KRU3 = """
def kru3(float(M, N0, N1, N2) X, float(D0, N0) W0, float(D1, N1) W1, float(D2, N2) W2) -> (Y) {
    # XW2 and XW2W1 are temporaries holding the first two contractions
    XW2(m, n0, n1, d2) +=! X(m, n0, n1, n2) * W2(d2, n2)
    XW2W1(m, n0, d1, d2) +=! XW2(m, n0, n1, d2) * W1(d1, n1)
    Y(m, d0, d1, d2) +=! XW2W1(m, n0, d1, d2) * W0(d0, n0)
}
"""


def _kru3_ref(
    X: torch.Tensor, W0: torch.Tensor, W1: torch.Tensor, W2: torch.Tensor
) -> torch.Tensor:
    """The three contractions as chained ``einsum`` calls."""
    t = torch.einsum("mabc,zc->mabz", X, W2)
    t = torch.einsum("mabz,yb->mayz", t, W1)
    return torch.einsum("mayz,xa->mxyz", t, W0)


_add(
    Kernel(
        name="kru3",
        tc=KRU3,
        entry="kru3",
        make_inputs=lambda s, g: (
            _randn(g, s["M"], s["N0"], s["N1"], s["N2"]),
            _randn(g, s["D0"], s["N0"]),
            _randn(g, s["D1"], s["N1"]),
            _randn(g, s["D2"], s["N2"]),
        ),
        reference=_kru3_ref,
        test_sizes=_table(
            "M=3 N0=2 N1=3 N2=5 D0=2 D1=3 D2=5",
            "M=1 N0=1 N1=1 N2=1 D0=1 D1=1 D2=1",
            "M=5 N0=3 N1=2 N2=7 D0=5 D1=1 D2=3",
        ),
        bench_sizes=tuple(
            {"M": 256, "N0": n, "N1": n, "N2": n, "D0": 16, "D1": 16, "D2": 16} for n in (32, 64)
        ),
    )
)

MLP3 = """
def mlp3(float(B, N) x, float(O, N) W1, float(O) b1, float(P, O) W2, float(P) b2,
         float(Q, P) W3, float(Q) b3) -> (y) {
    # h1 and h2 are temporaries
    h1(b, o) +=! x(b, n) * W1(o, n)
    h1(b, o) = fmax(h1(b, o) + b1(o), 0.0)
    h2(b, p) +=! h1(b, o) * W2(p, o)
    h2(b, p) = fmax(h2(b, p) + b2(p), 0.0)
    y(b, q) +=! h2(b, p) * W3(q, p)
    y(b, q) = fmax(y(b, q) + b3(q), 0.0)
}
"""


def _mlp3_ref(x: torch.Tensor, *params: torch.Tensor) -> torch.Tensor:
    """Three ``nn.Linear`` layers, each followed by ``nn.ReLU``."""
    layers = []
    for weight, bias in zip(params[0::2], params[1::2], strict=True):
        linear = torch.nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            linear.weight.copy_(weight)
            linear.bias.copy_(bias)
        layers += [linear, torch.nn.ReLU()]
    with torch.no_grad():
        return torch.nn.Sequential(*layers)(x)


_add(
    Kernel(
        name="mlp3",
        tc=MLP3,
        entry="mlp3",
        make_inputs=lambda s, g: (
            _randn(g, s["B"], s["N"]),
            _randn(g, s["O"], s["N"]),
            _randn(g, s["O"]),
            _randn(g, s["P"], s["O"]),
            _randn(g, s["P"]),
            _randn(g, s["Q"], s["P"]),
            _randn(g, s["Q"]),
        ),
        reference=_mlp3_ref,
        test_sizes=_table("B=5 N=7 O=3 P=13 Q=2", "B=1 N=1 O=1 P=1 Q=1", "B=3 N=13 O=7 P=5 Q=1"),
        bench_sizes=_table("B=128 N=128 O=64 P=32 Q=2"),
    )
)

MOMENTS = """
def moments(float(N, K) X) -> (mean, var) {
    # one pass over X: the sums of X and of its square, then E[x^2] - E[x]^2
    mean(n) +=! X(n, k)
    var(n) +=! X(n, k) * X(n, k)
    mean(n) = mean(n) / K
    var(n) = var(n) / K - mean(n) * mean(n)
}
"""

_add(
    Kernel(
        name="moments",
        tc=MOMENTS,
        entry="moments",
        make_inputs=lambda s, g: (_randn(g, s["N"], s["K"]),),
        reference=lambda X: (X.mean(1), X.var(1, unbiased=False)),
        test_sizes=_table("N=3 K=7", "N=1 K=1", "N=5 K=13", "N=13 K=1"),
        bench_sizes=_table("N=128 K=2304", "N=1024 K=36864"),
    )
)

GROUP_NORM = """
def group_norm(float(N, G, D, H, W) X, float(G, D) gamma, float(G, D) beta) -> (Y) {
    # the channels C = G * D are split into G groups of D; mean and var are temporaries
    mean(n, g) +=! X(n, g, d, h, w) / (D * H * W)
    var(n, g) +=! (X(n, g, d, h, w) - mean(n, g)) * (X(n, g, d, h, w) - mean(n, g))
    var(n, g) = var(n, g) / (D * H * W)
    Y(n, g, d, h, w) = gamma(g, d) * (X(n, g, d, h, w) - mean(n, g))
        * rsqrt(var(n, g) + 1e-5) + beta(g, d)
}
"""


def _group_norm_ref(X: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """``F.group_norm`` on the (N, G*D, H, W) view of X."""
    n, g, d, h, w = X.shape
    out = F.group_norm(
        X.reshape(n, g * d, h, w), g, gamma.reshape(g * d), beta.reshape(g * d), eps=1e-5
    )
    return out.reshape(n, g, d, h, w)


_add(
    Kernel(
        name="group_norm",
        tc=GROUP_NORM,
        entry="group_norm",
        make_inputs=lambda s, g: (
            _randn(g, s["N"], s["G"], s["D"], s["H"], s["W"]),
            _randn(g, s["G"], s["D"]),
            _randn(g, s["G"], s["D"]),
        ),
        reference=_group_norm_ref,
        # F.group_norm rejects groups of a single value, hence W=2 in the tiny case.
        test_sizes=_table(
            "N=2 G=3 D=2 H=5 W=3",
            "N=1 G=1 D=1 H=1 W=2",
            "N=1 G=2 D=3 H=1 W=7",
            "N=3 G=1 D=1 H=3 W=1",
        ),
        # (N, C, G, H, W) = (4, 512, 32, 12, 12) and (32, 512, 32, 48, 48): D = C / G.
        bench_sizes=_table("N=4 G=32 D=16 H=12 W=12", "N=32 G=32 D=16 H=48 W=48"),
        atol=1e-4,  # rsqrt of a small variance amplifies rounding (fast-math backends)
    )
)

EMBEDDING_SUM = """
def embedding_sum(float(E, D) T, int64(B, L) I) -> (O) {
    O(b, d) +=! T(I(b, l), d)
}
"""

_add(
    Kernel(
        name="embedding_sum",
        tc=EMBEDDING_SUM,
        entry="embedding_sum",
        make_inputs=lambda s, g: (
            _randn(g, s["E"], s["D"]),
            _randint(g, s["E"], s["B"], s["L"]),
        ),
        reference=lambda T, I: F.embedding_bag(I, T, mode="sum"),
        test_sizes=_table("E=13 D=5 B=3 L=7", "E=1 D=1 B=1 L=1", "E=7 D=3 B=5 L=2"),
        bench_sizes=_table("E=1000000 D=64 B=128 L=50"),
    )
)

WAVENET = """
def wavenet(float(B, RES, RF) data,
            float(DIL, RES, 2) filter_w, float(DIL) filter_b,
            float(DIL, RES, 2) gate_w, float(DIL) gate_b,
            float(RES, DIL) res_w, float(RES) res_b,
            float(SKIP, DIL) skip_w, float(SKIP) skip_b,
            float(DF) dilation) -> (res, skip) {
    # `dilation` is only read for its size: DF is the dilation factor.
    # Causal two-tap convolutions: tap 1 at t, tap 0 at t - DF (zero before the start).
    filt(b, c, t) +=! data(b, r, t) * filter_w(c, r, 1)
        + (t >= DF ? data(b, r, t - DF) * filter_w(c, r, 0) : 0.0)
        where t in 0:RF
    gate(b, c, t) +=! data(b, r, t) * gate_w(c, r, 1)
        + (t >= DF ? data(b, r, t - DF) * gate_w(c, r, 0) : 0.0)
        where t in 0:RF
    z(b, c, t) = tanh(filt(b, c, t) + filter_b(c)) * sigmoid(gate(b, c, t) + gate_b(c))
    # 1x1 convolutions: residual (added to the input) and skip
    res(b, r, t) +=! z(b, c, t) * res_w(r, c)
    res(b, r, t) = res(b, r, t) + res_b(r) + data(b, r, t)
    skip(b, s, t) +=! z(b, c, t) * skip_w(s, c)
    skip(b, s, t) = skip(b, s, t) + skip_b(s)
}
"""


def _wavenet_ref(
    data: torch.Tensor,
    filter_w: torch.Tensor,
    filter_b: torch.Tensor,
    gate_w: torch.Tensor,
    gate_b: torch.Tensor,
    res_w: torch.Tensor,
    res_b: torch.Tensor,
    skip_w: torch.Tensor,
    skip_b: torch.Tensor,
    dilation: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A WaveNet block from ``F.pad`` and dilated ``F.conv1d``."""
    df = dilation.shape[0]
    padded = F.pad(data, (df, 0))
    filt = F.conv1d(padded, filter_w, filter_b, dilation=df)
    gate = F.conv1d(padded, gate_w, gate_b, dilation=df)
    z = torch.tanh(filt) * torch.sigmoid(gate)
    res = data + F.conv1d(z, res_w.unsqueeze(-1), res_b)
    skip = F.conv1d(z, skip_w.unsqueeze(-1), skip_b)
    return res, skip


_add(
    Kernel(
        name="wavenet",
        tc=WAVENET,
        entry="wavenet",
        make_inputs=lambda s, g: (
            _randn(g, s["B"], s["RES"], s["RF"]),
            _randn(g, s["DIL"], s["RES"], 2),
            _randn(g, s["DIL"]),
            _randn(g, s["DIL"], s["RES"], 2),
            _randn(g, s["DIL"]),
            _randn(g, s["RES"], s["DIL"]),
            _randn(g, s["RES"]),
            _randn(g, s["SKIP"], s["DIL"]),
            _randn(g, s["SKIP"]),
            torch.zeros(s["DF"]),
        ),
        reference=_wavenet_ref,
        test_sizes=_table(
            "B=1 RES=3 DIL=5 SKIP=7 RF=13 DF=1",
            "B=2 RES=2 DIL=3 SKIP=5 RF=11 DF=3",
            "B=1 RES=1 DIL=1 SKIP=1 RF=1 DF=1",
            "B=1 RES=2 DIL=3 SKIP=2 RF=3 DF=5",
        ),
        bench_sizes=tuple(
            {"B": 1, "RES": 32, "DIL": 32, "SKIP": 256, "RF": 4000, "DF": df} for df in (1, 32)
        ),
    )
)

# ======================================================================================
# The peers' single-operator suites.

MATMUL = """
def matmul(float(M, K) A, float(K, N) B) -> (C) {
    C(m, n) +=! A(m, k) * B(k, n)
}
"""

_add(
    Kernel(
        name="matmul",
        tc=MATMUL,
        entry="matmul",
        make_inputs=lambda s, g: (_randn(g, s["M"], s["K"]), _randn(g, s["K"], s["N"])),
        reference=lambda A, B: A @ B,
        test_sizes=_table("M=3 K=5 N=7", "M=1 K=1 N=1", "M=13 K=2 N=3"),
        bench_sizes=tuple({"M": 128 * i, "K": 128 * i, "N": 128 * i} for i in range(2, 33)),
    )
)

SOFTMAX = """
def softmax(float(M, N) X) -> (Y) {
    mx(m) max=! X(m, n)
    e(m, n) = exp(X(m, n) - mx(m))
    s(m) +=! e(m, n)
    Y(m, n) = e(m, n) / s(m)
}
"""

_add(
    Kernel(
        name="softmax",
        tc=SOFTMAX,
        entry="softmax",
        make_inputs=lambda s, g: (_randn(g, s["M"], s["N"]),),
        reference=lambda X: F.softmax(X, dim=1),
        test_sizes=_table("M=3 N=7", "M=1 N=1", "M=5 N=13"),
        bench_sizes=tuple({"M": 4096, "N": n} for n in (256, 1024, 4096)),
    )
)

LAYER_NORM = """
def layer_norm(float(M, N) X, float(N) gamma, float(N) beta) -> (Y) {
    mean(m) +=! X(m, n) / N
    var(m) +=! (X(m, n) - mean(m)) * (X(m, n) - mean(m)) / N
    Y(m, n) = (X(m, n) - mean(m)) * rsqrt(var(m) + 1e-5) * gamma(n) + beta(n)
}
"""

_add(
    Kernel(
        name="layer_norm",
        tc=LAYER_NORM,
        entry="layer_norm",
        make_inputs=lambda s, g: (
            _randn(g, s["M"], s["N"]),
            _randn(g, s["N"]),
            _randn(g, s["N"]),
        ),
        reference=lambda X, gamma, beta: F.layer_norm(X, (X.shape[1],), gamma, beta, eps=1e-5),
        test_sizes=_table("M=3 N=7", "M=1 N=1", "M=5 N=13", "M=2 N=2"),
        bench_sizes=tuple({"M": 4096, "N": n} for n in (1024, 4096)),
        atol=1e-4,  # rsqrt of a small variance amplifies rounding (fast-math backends)
    )
)

# The training examples' forward convolution is the peers' stride-1 convolution; the
# gradients follow it in the same text (they take the forward inputs and dO).
CONV2D = """
def conv2d(float(N, C, H, W) I, float(F, C, KH, KW) Wt) -> (O) {
    O(n, f, h, w) +=! I(n, c, h + kh, w + kw) * Wt(f, c, kh, kw)
}

def conv2d_dx(float(N, C, H, W) I, float(F, C, KH, KW) Wt, float(N, F, HO, WO) dO) -> (dI) {
    # full correlation of dO with the flipped kernel; the guard keeps dO's reads in bounds
    dI(n, c, h, w) +=!
        (h + kh >= KH - 1 && h + kh < HO + KH - 1 && w + kw >= KW - 1 && w + kw < WO + KW - 1)
        ? dO(n, f, h + kh - (KH - 1), w + kw - (KW - 1)) * Wt(f, c, KH - 1 - kh, KW - 1 - kw)
        : 0.0
        where h in 0:HO+KH-1, w in 0:WO+KW-1, kh in 0:KH, kw in 0:KW
}

def conv2d_dw(float(N, C, H, W) I, float(F, C, KH, KW) Wt, float(N, F, HO, WO) dO) -> (dW) {
    dW(f, c, kh, kw) +=! dO(n, f, h, w) * I(n, c, h + kh, w + kw) where kh in 0:KH, kw in 0:KW
}
"""

CONV2D_S2 = """
def conv2d_s2(float(N, C, H, W) I, float(F, C, KH, KW) Wt) -> (O) {
    O(n, f, h, w) +=! I(n, c, 2 * h + kh, 2 * w + kw) * Wt(f, c, kh, kw)
}
"""


def _conv_inputs(s: Sizes, g: torch.Generator) -> Inputs:
    """Input image and weights of a convolution."""
    return (
        _randn(g, s["N"], s["C"], s["H"], s["W"]),
        _randn(g, s["F"], s["C"], s["KH"], s["KW"]),
    )


def _conv_grad_inputs(s: Sizes, g: torch.Generator) -> Inputs:
    """Image, weights and output gradient of a stride-1 convolution."""
    return (*_conv_inputs(s, g), _randn(g, s["N"], s["F"], s["HO"], s["WO"]))


def _conv_sizes(spec: str) -> Sizes:
    """Sizes of a stride-1 convolution, with the output sizes HO and WO added."""
    s = _sizes(spec)
    return {**s, "HO": s["H"] - s["KH"] + 1, "WO": s["W"] - s["KW"] + 1}


def _resnet(stride: int, grads: bool = False) -> tuple[Sizes, ...]:
    """The ResNet-18 layers of KERNELS.md with the given stride (no padding)."""
    layers = ((3, 224, 64, 7, 2), (64, 56, 64, 3, 1), (128, 28, 128, 3, 1))
    layers += ((256, 14, 256, 3, 1), (512, 7, 512, 3, 1))
    out = []
    for c, h, f, k, st in layers:
        if st == stride:
            spec = f"N=1 C={c} H={h} W={h} F={f} KH={k} KW={k}"
            out.append(_conv_sizes(spec) if grads else _sizes(spec))
    return tuple(out)


_CONV_TEST = (
    "N=1 C=3 H=7 W=5 F=2 KH=3 KW=3",
    "N=1 C=1 H=1 W=1 F=1 KH=1 KW=1",
    "N=2 C=2 H=5 W=6 F=3 KH=2 KW=1",
)

_add(
    Kernel(
        name="conv2d",
        tc=CONV2D,
        entry="conv2d",
        make_inputs=_conv_inputs,
        reference=lambda I, Wt: F.conv2d(I, Wt),
        test_sizes=_table(*_CONV_TEST),
        bench_sizes=_resnet(1),
    )
)

_add(
    Kernel(
        name="conv2d_s2",
        tc=CONV2D_S2,
        entry="conv2d_s2",
        make_inputs=_conv_inputs,
        reference=lambda I, Wt: F.conv2d(I, Wt, stride=2),
        test_sizes=_table(
            "N=1 C=3 H=7 W=9 F=2 KH=3 KW=3",
            "N=1 C=1 H=1 W=1 F=1 KH=1 KW=1",
            "N=2 C=2 H=8 W=5 F=3 KH=2 KW=3",
            "N=1 C=1 H=13 W=13 F=2 KH=7 KW=7",
        ),
        bench_sizes=_resnet(2),
    )
)

DEPTHWISE_CONV = """
def depthwise_conv(float(N, C, H, W) I, float(C, 3, 3) Wt) -> (O) {
    O(n, c, h, w) +=! I(n, c, h + kh, w + kw) * Wt(c, kh, kw)
}
"""

_add(
    Kernel(
        name="depthwise_conv",
        tc=DEPTHWISE_CONV,
        entry="depthwise_conv",
        make_inputs=lambda s, g: (
            _randn(g, s["N"], s["C"], s["H"], s["W"]),
            _randn(g, s["C"], 3, 3),
        ),
        reference=lambda I, Wt: F.conv2d(I, Wt.unsqueeze(1), groups=I.shape[1]),
        test_sizes=_table("N=1 C=3 H=5 W=7", "N=1 C=1 H=3 W=3", "N=2 C=5 H=3 W=4"),
        bench_sizes=tuple(
            {"N": 1, "C": c, "H": h, "W": h}
            for c, h in ((32, 112), (64, 56), (128, 28), (256, 14), (512, 7))
        ),
    )
)

BMM = """
def bmm(float(B, M, K) X, float(B, K, N) Y) -> (Z) {
    Z(b, m, n) +=! X(b, m, k) * Y(b, k, n)
}
"""

_add(
    Kernel(
        name="bmm",
        tc=BMM,
        entry="bmm",
        make_inputs=lambda s, g: (
            _randn(g, s["B"], s["M"], s["K"]),
            _randn(g, s["B"], s["K"], s["N"]),
        ),
        reference=torch.bmm,
        test_sizes=_table("B=3 M=5 K=7 N=2", "B=1 M=1 K=1 N=1", "B=2 M=3 K=13 N=5"),
        bench_sizes=tuple({"B": 16, "M": n, "K": n, "N": n} for n in (128, 256, 512, 1024)),
    )
)

_POOL_BENCH = _table("N=32 C=64 H=56 W=56")


def _pool_inputs(s: Sizes, g: torch.Generator) -> Inputs:
    """The input of a pooling layer."""
    return (_randn(g, s["N"], s["C"], s["H"], s["W"]),)


def _pool_text(name: str, k: int, op: str) -> str:
    """A k x k, stride-2 pooling definition: average (``op == "avg"``) or maximum."""
    if op == "avg":
        body = f"O(n, c, h, w) +=! I(n, c, 2 * h + kh, 2 * w + kw) / {float(k * k)}"
    else:
        body = "O(n, c, h, w) max=! I(n, c, 2 * h + kh, 2 * w + kw)"
    return f"""
def {name}(float(N, C, H, W) I) -> (O) {{
    {body} where kh in 0:{k}, kw in 0:{k}
}}
"""


for _k, _tests in (
    (2, ("N=1 C=3 H=5 W=7", "N=1 C=1 H=2 W=2", "N=2 C=2 H=8 W=3")),
    (3, ("N=1 C=3 H=7 W=5", "N=1 C=1 H=3 W=3", "N=2 C=2 H=8 W=4")),
):
    _add(
        Kernel(
            name=f"avgpool{_k}x{_k}",
            tc=_pool_text(f"avgpool{_k}x{_k}", _k, "avg"),
            entry=f"avgpool{_k}x{_k}",
            make_inputs=_pool_inputs,
            reference=lambda I, k=_k: F.avg_pool2d(I, k, stride=2),
            test_sizes=_table(*_tests),
            bench_sizes=_POOL_BENCH,
        )
    )
    _add(
        Kernel(
            name=f"maxpool{_k}x{_k}",
            tc=_pool_text(f"maxpool{_k}x{_k}", _k, "max"),
            entry=f"maxpool{_k}x{_k}",
            make_inputs=_pool_inputs,
            reference=lambda I, k=_k: F.max_pool2d(I, k, stride=2),
            test_sizes=_table(*_tests),
            bench_sizes=_POOL_BENCH,
        )
    )


def _permute_text(name: str, perm: tuple[int, ...]) -> str:
    """A definition writing ``O = I.permute(perm)`` (a copy for the identity)."""
    rank = len(perm)
    idx = "ijkl"[:rank]
    dims = ", ".join(f"D{d}" for d in range(rank))
    lhs = ", ".join(idx[p] for p in perm)
    rhs = ", ".join(idx)
    return f"""
def {name}(float({dims}) I) -> (O) {{
    O({lhs}) = I({rhs})
}}
"""


for _perm, _tests, _bench in (
    ((0, 1, 2), ("D0=3 D1=5 D2=7", "D0=1 D1=1 D2=1"), ("D0=256 D1=256 D2=256",)),
    ((0, 2, 1), ("D0=3 D1=5 D2=7", "D0=13 D1=1 D2=2"), ("D0=256 D1=256 D2=256",)),
    ((2, 1, 0), ("D0=3 D1=5 D2=7", "D0=1 D1=13 D2=2"), ("D0=256 D1=256 D2=256",)),
    ((1, 2, 0), ("D0=3 D1=5 D2=7", "D0=2 D1=1 D2=13"), ("D0=4096 D1=64 D2=64",)),
    ((0, 1, 2, 3), ("D0=2 D1=3 D2=5 D3=7", "D0=1 D1=1 D2=1 D3=1"), ("D0=64 D1=64 D2=64 D3=64",)),
    ((0, 2, 3, 1), ("D0=2 D1=3 D2=5 D3=7", "D0=1 D1=13 D2=1 D3=3"), ("D0=16 D1=256 D2=64 D3=64",)),
    ((0, 3, 1, 2), ("D0=2 D1=3 D2=5 D3=7", "D0=3 D1=1 D2=5 D3=1"), ("D0=16 D1=64 D2=64 D3=256",)),
    ((3, 2, 1, 0), ("D0=2 D1=3 D2=5 D3=7", "D0=7 D1=2 D2=1 D3=1"), ("D0=64 D1=64 D2=64 D3=64",)),
):
    _rank = len(_perm)
    _name = (
        f"copy{_rank}d"
        if _perm == tuple(range(_rank))
        else f"transpose{_rank}d_{''.join(map(str, _perm))}"
    )
    _add(
        Kernel(
            name=_name,
            tc=_permute_text(_name, _perm),
            entry=_name,
            make_inputs=lambda s, g, r=_rank: (_randn(g, *(s[f"D{d}"] for d in range(r))),),
            reference=lambda I, p=_perm: I.permute(*p).contiguous(),
            test_sizes=_table(*_tests),
            bench_sizes=_table(*_bench),
        )
    )

# ======================================================================================
# The layers of the training examples.

FC_RELU = """
def fc_relu(float(B, I) x, float(O, I) W, float(O) bias) -> (y) {
    y(b, o) +=! x(b, i) * W(o, i)
    y(b, o) = fmax(y(b, o) + bias(o), 0)
}

# The gradients take the forward inputs and dy, and recompute the ReLU mask.
def fc_relu_dx(float(B, I) x, float(O, I) W, float(O) bias, float(B, O) dy) -> (dx) {
    y(b, o) +=! x(b, i) * W(o, i)
    g(b, o) = y(b, o) + bias(o) > 0.0 ? dy(b, o) : 0.0
    dx(b, i) +=! g(b, o) * W(o, i)
}

def fc_relu_dw(float(B, I) x, float(O, I) W, float(O) bias, float(B, O) dy) -> (dW) {
    y(b, o) +=! x(b, i) * W(o, i)
    g(b, o) = y(b, o) + bias(o) > 0.0 ? dy(b, o) : 0.0
    dW(o, i) +=! g(b, o) * x(b, i)
}

def fc_relu_db(float(B, I) x, float(O, I) W, float(O) bias, float(B, O) dy) -> (db) {
    y(b, o) +=! x(b, i) * W(o, i)
    db(o) +=! y(b, o) + bias(o) > 0.0 ? dy(b, o) : 0.0
}

def fc_relu_backward(float(B, I) x, float(O, I) W, float(O) bias, float(B, O) dy)
    -> (dx, dW, db)
{
    y(b, o) +=! x(b, i) * W(o, i)
    g(b, o) = y(b, o) + bias(o) > 0.0 ? dy(b, o) : 0.0
    dx(b, i) +=! g(b, o) * W(o, i)
    dW(o, i) +=! g(b, o) * x(b, i)
    db(o) +=! g(b, o)
}
"""


def _fc_relu_ref(x: torch.Tensor, W: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``relu(linear(x))``."""
    return F.relu(F.linear(x, W, bias))


def _fc_relu_grad_ref(*wrt: int) -> Callable[..., Outputs]:
    """Reference gradients of fc + relu w.r.t. the inputs ``wrt`` (0 = x, 1 = W, 2 = bias)."""

    def reference(
        x: torch.Tensor, W: torch.Tensor, bias: torch.Tensor, dy: torch.Tensor
    ) -> Outputs:
        grads = _grads(_fc_relu_ref, (x, W, bias), wrt, dy)
        return grads[0] if len(grads) == 1 else grads

    return reference


def _fc_inputs(s: Sizes, g: torch.Generator) -> Inputs:
    """x, W and bias of a fully connected layer."""
    return (_randn(g, s["B"], s["I"]), _randn(g, s["O"], s["I"]), _randn(g, s["O"]))


def _fc_grad_inputs(s: Sizes, g: torch.Generator) -> Inputs:
    """x, W, bias and dy of a fully connected layer."""
    return (*_fc_inputs(s, g), _randn(g, s["B"], s["O"]))


_FC_TEST = _table("B=3 I=5 O=7", "B=1 I=1 O=1", "B=13 I=2 O=3")
_FC_BENCH = _table("B=128 I=784 O=512", "B=128 I=512 O=10")

_add(
    Kernel(
        name="fc_relu",
        tc=FC_RELU,
        entry="fc_relu",
        make_inputs=_fc_inputs,
        reference=_fc_relu_ref,
        test_sizes=_FC_TEST,
        bench_sizes=_FC_BENCH,
    )
)

for _entry, _wrt in (
    ("fc_relu_dx", (0,)),
    ("fc_relu_dw", (1,)),
    ("fc_relu_db", (2,)),
    ("fc_relu_backward", (0, 1, 2)),
):
    _add(
        Kernel(
            name=_entry,
            tc=FC_RELU,
            entry=_entry,
            make_inputs=_fc_grad_inputs,
            reference=_fc_relu_grad_ref(*_wrt),
            test_sizes=_FC_TEST,
            bench_sizes=_FC_BENCH,
        )
    )

_CONV_GRAD_TEST = tuple(_conv_sizes(s) for s in _CONV_TEST)


def _conv2d_grad_ref(wrt: int) -> Callable[..., torch.Tensor]:
    """Reference gradient of ``F.conv2d`` w.r.t. the image (0) or the weights (1)."""

    def reference(I: torch.Tensor, Wt: torch.Tensor, dO: torch.Tensor) -> torch.Tensor:
        return _grads(F.conv2d, (I, Wt), (wrt,), dO)[0]

    return reference


for _entry, _wrt in (("conv2d_dx", 0), ("conv2d_dw", 1)):
    _add(
        Kernel(
            name=_entry,
            tc=CONV2D,
            entry=_entry,
            make_inputs=_conv_grad_inputs,
            reference=_conv2d_grad_ref(_wrt),
            test_sizes=_CONV_GRAD_TEST,
            bench_sizes=_resnet(1, grads=True),
        )
    )

CROSS_ENTROPY = """
def cross_entropy(float(N, C) X, int64(N) label) -> (loss) {
    # loss(n) = -log_softmax(X)(n, label(n)); lse is the log of the row's sum of exp
    mx(n) max=! X(n, c)
    lse(n) +=! exp(X(n, c) - mx(n))
    lse(n) = log(lse(n)) + mx(n)
    loss(n) = lse(n) - X(n, label(n))
}

def cross_entropy_mean(float(N, C) X, int64(N) label) -> (loss) {
    mx(n) max=! X(n, c)
    lse(n) +=! exp(X(n, c) - mx(n))
    logp(n, c) = X(n, c) - mx(n) - log(lse(n))
    loss +=! -logp(n, label(n)) / N
}
"""


def _ce_inputs(s: Sizes, g: torch.Generator) -> Inputs:
    """Logits and int64 labels."""
    return (_randn(g, s["N"], s["C"]), _randint(g, s["C"], s["N"]))


_CE_TEST = _table("N=3 C=7", "N=1 C=1", "N=5 C=13")
_CE_BENCH = _table("N=128 C=10", "N=128 C=1000")

_add(
    Kernel(
        name="cross_entropy",
        tc=CROSS_ENTROPY,
        entry="cross_entropy",
        make_inputs=_ce_inputs,
        reference=lambda X, label: F.cross_entropy(X, label, reduction="none"),
        test_sizes=_CE_TEST,
        bench_sizes=_CE_BENCH,
    )
)

_add(
    Kernel(
        name="cross_entropy_mean",
        tc=CROSS_ENTROPY,
        entry="cross_entropy_mean",
        make_inputs=_ce_inputs,
        reference=lambda X, label: F.cross_entropy(X, label),
        test_sizes=_CE_TEST,
        bench_sizes=_CE_BENCH,
    )
)

ACTIVATION_STATS = """
def activation_stats(float(B, U) A) -> (mean, meansq) {
    mean(u) +=! A(b, u) / B
    meansq(u) +=! A(b, u) * A(b, u) / B
}
"""

_add(
    Kernel(
        name="activation_stats",
        tc=ACTIVATION_STATS,
        entry="activation_stats",
        make_inputs=lambda s, g: (_randn(g, s["B"], s["U"]),),
        reference=lambda A: (A.mean(0), A.square().mean(0)),
        test_sizes=_table("B=3 U=7", "B=1 U=1", "B=13 U=5"),
        bench_sizes=_table("B=128 U=512", "B=1024 U=4096"),
    )
)
