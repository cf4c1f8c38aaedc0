"""tc.torch_ops: TC definitions as torch custom operators.

Expected values come from torch (``A @ B``, ``F.linear``, ``F.cross_entropy``) or from
formulas written here, never from tc. Kernels run on every target here (the ``target``
fixture: PoCL and the CPU target) where tc's compiled path matters, each under an
operator name of its own (registering a name again would swap its back end), and on
the reference interpreter where only the torch plumbing is under test; sizes are tiny
and few signatures are used, since each target compiles each new kernel.
"""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F

import tc
from tc.catalogue import ACTIVATION_STATS, CROSS_ENTROPY, FC_RELU, MATMUL
from tc.errors import TcArgumentError, TcError, TcGradientError
from tc.torch_ops import _fresh, register_op

NS = "tc_test_ops"


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g)


@functools.cache
def compiled_op(kind: str, target: str):
    """The operator ``kind`` (matmul, fc_relu) compiled for ``target``, registered once
    as ``tc_test_ops::{kind}_{target}``."""
    lang = {"matmul": MATMUL, "fc_relu": FC_RELU}[kind]
    return register_op(f"{NS}::{kind}_{target}", lang, kind, backend=target)


@pytest.fixture
def matmul(target: str):
    return compiled_op("matmul", target)


@pytest.fixture
def fc_relu(target: str):
    return compiled_op("fc_relu", target)


@pytest.fixture(scope="module")
def matmul_op():
    """A compiled operator for the tests of registration, schemas and fake kernels,
    which run no kernel: on one target only."""
    return compiled_op("matmul", "opencl")


@pytest.fixture(scope="module")
def stats_ref():
    return register_op(f"{NS}::activation_stats", ACTIVATION_STATS, backend="reference")


@pytest.fixture(scope="module")
def xent_ref():
    return register_op(f"{NS}::cross_entropy_mean", CROSS_ENTROPY, "cross_entropy_mean",
                       backend="reference")


@pytest.fixture(scope="module")
def matmul_ref():
    return register_op(f"{NS}::matmul_ref", MATMUL, "matmul", backend="reference")


def fc_inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    # relu(x W^T + b) of these values has both signs before the ReLU.
    return randn(4, 5, seed=1), randn(3, 5, seed=2), randn(3, seed=3)


class FcNet(torch.nn.Module):
    """One fully connected layer with ReLU through the op, then a sum of squares."""

    def __init__(self, op) -> None:
        super().__init__()
        _, W, b = fc_inputs()
        self.W = torch.nn.Parameter(W.clone())
        self.b = torch.nn.Parameter(b.clone())
        self.op = op

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.op(x, self.W, self.b) ** 2).sum()


def fc_expected(x: torch.Tensor, W: torch.Tensor, b: torch.Tensor):
    """loss = sum(relu(x W^T + b)^2) and its gradients in W and b, by hand."""
    y = torch.clamp(x @ W.T + b, min=0)
    dz = 2 * y  # zero where the ReLU is off
    return (y ** 2).sum(), dz.T @ x, dz.sum(0)


# -- forward, schema, fake ---------------------------------------------------------------------


def test_matmul_forward(matmul, target: str) -> None:
    A, B = randn(3, 5, seed=1), randn(5, 7, seed=2)
    C = matmul(A, B)
    torch.testing.assert_close(C, A @ B)
    assert C.is_contiguous() and C.shape == (3, 7)
    assert matmul is getattr(torch.ops.tc_test_ops, f"matmul_{target}")


def test_fc_relu_forward_with_keywords(fc_relu) -> None:
    x, W, b = fc_inputs()
    y = fc_relu(x=x, W=W, bias=b)
    torch.testing.assert_close(y, F.relu(F.linear(x, W, b)))
    assert (y == 0).any() and (y > 0).any()


def test_schemas(matmul_op, stats_ref, xent_ref) -> None:
    assert str(matmul_op.default._schema) == (
        "tc_test_ops::matmul_opencl(Tensor A, Tensor B) -> Tensor")
    assert str(torch.ops.tc_test_ops.matmul_opencl_backward.default._schema) == (
        "tc_test_ops::matmul_opencl_backward(Tensor A, Tensor B, Tensor grad_0) -> "
        "(Tensor, Tensor)")
    assert str(stats_ref.default._schema).endswith("(Tensor A) -> (Tensor, Tensor)")
    assert str(torch.ops.tc_test_ops.activation_stats_backward.default._schema).endswith(
        "(Tensor A, Tensor grad_0, Tensor grad_1) -> Tensor")
    # The labels get no gradient: one result, for X.
    assert str(torch.ops.tc_test_ops.cross_entropy_mean_backward.default._schema).endswith(
        "(Tensor X, Tensor label, Tensor grad_0) -> Tensor")
    assert torch.Tag.pt2_compliant_tag in matmul_op.default.tags


def test_cpu_and_cuda_kernels(matmul_op) -> None:
    # Both device keys go to the same TcFunction, which picks its back end by device.
    for name in ("tc_test_ops::matmul_opencl", "tc_test_ops::matmul_opencl_backward"):
        assert torch._C._dispatch_has_kernel_for_dispatch_key(name, "CPU")
        assert torch._C._dispatch_has_kernel_for_dispatch_key(name, "CUDA")
        assert not torch._C._dispatch_has_kernel_for_dispatch_key(name, "XPU")


KEYWORD_NAMES = """
def keyword_names(float(N) lambda, float(N) lambda_, float(N) None, float(N) self) -> (out) {
    out(i) = lambda(i) + lambda_(i) * None(i) * self(i)
}
"""


def test_python_keywords_as_argument_names() -> None:
    # TC accepts them; the schema parser does not: they get trailing underscores.
    op = register_op(f"{NS}::keyword_names", KEYWORD_NAMES, backend="reference")
    assert str(op.default._schema).endswith(
        "(Tensor lambda__, Tensor lambda_, Tensor None_, Tensor self) -> Tensor")
    a, b, c, d = (torch.tensor([1.0, 2.0]) * k for k in (1, 2, 3, 5))
    torch.testing.assert_close(op(lambda__=a, lambda_=b, None_=c, self=d), a + b * c * d)


def test_fake_kernel_shapes(matmul_op, stats_ref) -> None:
    C = matmul_op(torch.empty(3, 5, device="meta"), torch.empty(5, 7, device="meta"))
    assert C.device.type == "meta" and C.shape == (3, 7) and C.dtype == torch.float32
    mean, meansq = stats_ref(torch.empty(6, 2, device="meta"))
    assert mean.shape == meansq.shape == (2,)
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        C = matmul_op(torch.empty(2, 9), torch.empty(9, 4))
    assert C.shape == (2, 4)


def test_argument_errors_at_call(matmul) -> None:
    A, B = randn(3, 5), randn(5, 7)
    with pytest.raises(tc.TcArgumentTypeError, match="dtype"):
        matmul(A.double(), B.double())
    with pytest.raises(TcArgumentError, match="dimension"):
        matmul(A, B[0])
    with pytest.raises(TcArgumentError, match="size 'K'"):
        matmul(A, randn(4, 7))
    # The fake kernel checks like a call does.
    with pytest.raises(TcError, match="size 'K'"):
        matmul(torch.empty(3, 5, device="meta"), torch.empty(4, 7, device="meta"))


# -- registration ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["matmul", "a::b::c", "1ns::op", "ns::na-me", "ns::op.out",
                                  "ns::", "::op", "aten::tc_matmul", "ns::__call__", 3,
                                  "ns::name", "loaded_libraries::op"])
def test_bad_qualname(name) -> None:
    with pytest.raises(TcArgumentError):
        register_op(name, MATMUL, backend="reference")


def test_registering_again(matmul_op) -> None:
    name = f"{NS}::matmul_opencl"
    assert register_op(name, MATMUL, "matmul", backend="opencl") is matmul_op
    renamed = MATMUL.replace("A", "X")  # same canonical text, other argument names
    with pytest.raises(TcArgumentError, match="already registered"):
        register_op(name, renamed, "matmul", backend="opencl")
    with pytest.raises(TcArgumentError, match="already registered"):
        register_op(name, FC_RELU, "fc_relu", backend="opencl")
    # The backward operator's name is taken too.
    with pytest.raises(TcArgumentError, match="taken by the tc operator"):
        register_op(f"{name}_backward", FC_RELU, "fc_relu", backend="opencl")


def test_name_torch_already_knows() -> None:
    lib = torch.library.Library(NS, "FRAGMENT")  # the definition lives as long as lib
    lib.define("defined_elsewhere(Tensor x) -> Tensor")
    with pytest.raises(TcArgumentError, match="already taken"):
        register_op(f"{NS}::defined_elsewhere", MATMUL, backend="reference")
    del lib


def test_registering_again_swaps_options_and_backend(target: str) -> None:
    A, B = randn(3, 5, seed=1), randn(5, 7, seed=2)
    op = register_op(f"{NS}::swap_{target}", MATMUL, backend="reference")
    torch.testing.assert_close(op(A, B), A @ B)
    asked = []

    def factory(lang, entry, *inputs):
        asked.append(entry)
        return tc.MappingOptions("naive")

    # Same definition, now compiled (same signature as the matmul fixture's kernel).
    assert register_op(f"{NS}::swap_{target}", MATMUL, options_factory=factory,
                       backend=target) is op
    torch.testing.assert_close(op(A, B), A @ B)
    assert asked == ["matmul"]


#: What each target counts when it builds a kernel from source, and when it loads a
#: stored one (codegen.stats).
BUILDS = {"opencl": ("opencl_build", "opencl_load_binary"),
          "cpu": ("cc_compile", "cc_load_binary")}


def test_cache_is_passed_on(tmp_path, target: str) -> None:
    from codegen.stats import COUNTERS

    build, load = BUILDS[target]
    path = tmp_path / "cache.sqlite"
    A, B = randn(3, 5, seed=1), randn(5, 7, seed=2)
    first = register_op(f"{NS}::cached_first_{target}", MATMUL, backend=target, cache=path)
    torch.testing.assert_close(first(A, B), A @ B)
    COUNTERS.clear()
    # Another registration (a fresh back end, no memoised executor) loads the stored kernel.
    second = register_op(f"{NS}::cached_second_{target}", MATMUL, backend=target, cache=path)
    torch.testing.assert_close(second(A, B), A @ B)
    assert COUNTERS["compile_program"] == 0 and COUNTERS[build] == 0
    assert COUNTERS[load] >= 1


def test_entry_must_be_named_for_several_definitions() -> None:
    with pytest.raises(TcArgumentError, match="entry="):
        register_op(f"{NS}::two", MATMUL + ACTIVATION_STATS, backend="reference")
    with pytest.raises(TcArgumentError, match="no definition named"):
        register_op(f"{NS}::two", MATMUL, "nope", backend="reference")


# -- torch.library.opcheck ---------------------------------------------------------------------


def test_opcheck(matmul_ref, stats_ref, xent_ref) -> None:
    A, B = randn(3, 5, seed=1), randn(5, 7, seed=2)
    torch.library.opcheck(matmul_ref, (A, B))
    torch.library.opcheck(matmul_ref, (A.clone().requires_grad_(), B.clone().requires_grad_()))
    # (The backward operator refuses second-order gradients: no requires_grad here.)
    torch.library.opcheck(torch.ops.tc_test_ops.matmul_ref_backward, (A, B, randn(3, 7)))
    torch.library.opcheck(stats_ref, (randn(6, 2).requires_grad_(),))
    X, label = randn(4, 3).requires_grad_(), torch.tensor([0, 2, 1, 2])
    torch.library.opcheck(xent_ref, (X, label))


# -- autograd ----------------------------------------------------------------------------------


def test_eager_gradients(matmul) -> None:
    A, B = randn(3, 5, seed=1).requires_grad_(), randn(5, 7, seed=2).requires_grad_()
    G = randn(3, 7, seed=3)
    (matmul(A, B) * G).sum().backward()
    torch.testing.assert_close(A.grad, G @ B.detach().T)
    torch.testing.assert_close(B.grad, A.detach().T @ G)
    # Only the inputs that need a gradient get one.
    C = matmul(A, B.detach())
    assert C.grad_fn.apply(G)[1] is None


def test_results_never_alias_inputs() -> None:
    # What the schema promises whatever a back end returns: fresh contiguous tensors.
    x = torch.arange(6.0)
    outs = _fresh([x, x[::2], x[1:]], [x])
    for t in outs:
        assert t.is_contiguous() and t.storage_offset() == 0
        assert t.untyped_storage().data_ptr() != x.untyped_storage().data_ptr()
    torch.testing.assert_close(outs[1], torch.tensor([0.0, 2.0, 4.0]))
    y = torch.ones(2)
    assert _fresh(y, [x]) is y


def test_multiple_outputs_and_unused_result(stats_ref) -> None:
    A = randn(6, 2, seed=4).requires_grad_()
    mean, meansq = stats_ref(A)
    torch.testing.assert_close(mean, A.detach().mean(0))
    torch.testing.assert_close(meansq, (A.detach() ** 2).mean(0))
    # meansq takes no part: its gradient is None (or zeros) on the way back.
    (grad,) = torch.autograd.grad((mean * torch.tensor([1.0, -2.0])).sum(), A)
    torch.testing.assert_close(grad, torch.tensor([1.0, -2.0]).expand(6, 2) / 6)


def test_integer_input_gets_no_gradient(xent_ref) -> None:
    X, label = randn(4, 3, seed=5).requires_grad_(), torch.tensor([0, 2, 1, 2])
    loss = xent_ref(X, label)
    torch.testing.assert_close(loss, F.cross_entropy(X.detach(), label))
    # The formula itself returns None for the labels (the last None is torch's own).
    grads = loss.grad_fn.apply(torch.tensor(1.0))
    assert len(grads) == 3 and grads[1] is None and grads[0].shape == (4, 3)
    loss.backward()
    expected = (torch.softmax(X.detach(), 1) - F.one_hot(label, 3)) / 4
    torch.testing.assert_close(X.grad, expected)


NON_DIFFERENTIABLE = """
def rowlg(float(N, M) X) -> (P) {
    P(i) +=! lgamma(X(i, j))
}
"""


def test_non_differentiable_definition_fails_at_backward() -> None:
    op = register_op(f"{NS}::rowlg", NON_DIFFERENTIABLE, backend="reference")
    X = torch.tensor([[1.0, 2.0], [3.0, 0.5]], requires_grad=True)
    P = op(X)  # registering and the forward call are fine
    torch.testing.assert_close(P, torch.lgamma(X.detach()).sum(1))
    with pytest.raises(TcGradientError, match=r"P\(i\) \+=! lgamma\(X\(i, j\)\)"):
        P.sum().backward()
    # Compiling traces the backward operator without deriving it: the error comes at the
    # backward call there too.
    torch._dynamo.reset()
    loss = torch.compile(lambda X: op(X).sum(), fullgraph=True, backend="aot_eager")(X)
    torch.testing.assert_close(loss, torch.lgamma(X.detach()).sum())
    with pytest.raises(TcGradientError):
        loss.backward()


def test_second_order_gradients_are_refused(matmul_ref) -> None:
    A, B = randn(3, 5).requires_grad_(), randn(5, 7).requires_grad_()
    (gA,) = torch.autograd.grad(matmul_ref(A, B).sum(), A, create_graph=True)
    with pytest.raises(TcGradientError, match="second-order"):
        gA.sum().backward()


# -- torch.compile and torch.export ------------------------------------------------------------


def test_export_dynamic_batch(matmul_ref) -> None:
    class Net(torch.nn.Module):
        def forward(self, a, b):
            return matmul_ref(a, b)

    A, B = randn(3, 5, seed=1), randn(5, 7, seed=2)
    batch = torch.export.Dim("batch")
    ep = torch.export.export(Net(), (A, B), dynamic_shapes=({0: batch}, None))
    A4 = randn(4, 5, seed=3)
    torch.testing.assert_close(ep.module()(A4, B), A4 @ B)


def check_fc_net(net: FcNet, run) -> None:
    x = fc_inputs()[0]
    loss = run(x)
    loss.backward()
    want, dW, db = fc_expected(x, net.W.detach(), net.b.detach())
    torch.testing.assert_close(loss, want)
    torch.testing.assert_close(net.W.grad, dW)
    torch.testing.assert_close(net.b.grad, db)


def test_compile_fullgraph_aot_eager(fc_relu) -> None:
    torch._dynamo.reset()
    net = FcNet(fc_relu)
    check_fc_net(net, torch.compile(net, fullgraph=True, backend="aot_eager"))


def test_compile_fullgraph_inductor(fc_relu) -> None:
    torch._dynamo.reset()
    net = FcNet(fc_relu)
    check_fc_net(net, torch.compile(net, fullgraph=True))


def test_compile_unused_result(stats_ref) -> None:
    torch._dynamo.reset()

    def f(A):
        mean, _ = stats_ref(A)
        return (mean * torch.tensor([1.0, -2.0])).sum()

    A = randn(6, 2, seed=4).requires_grad_()
    torch.compile(f, fullgraph=True, backend="aot_eager")(A).backward()
    torch.testing.assert_close(A.grad, torch.tensor([1.0, -2.0]).expand(6, 2) / 6)


def test_export(fc_relu, target: str) -> None:
    net = FcNet(fc_relu)
    x = fc_inputs()[0]
    ep = torch.export.export(net, (x,))
    called = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
    assert f"tc_test_ops.fc_relu_{target}.default" in called
    want, _, _ = fc_expected(x, net.W.detach(), net.b.detach())
    torch.testing.assert_close(ep.module()(x), want)
