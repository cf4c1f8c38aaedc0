"""tc.traced: ``tc.define`` entry points inside torch.compile and torch.export, with no
extra call, and one compile per definition for every batch size.

A small model (a fully connected layer with ReLU, then a linear layer, both tc
definitions called directly) trains under torch.compile next to the same model
written with torch operators; losses, gradients and parameters must stay equal.
Expected values come from torch, never from tc.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import tc
from codegen import stats
from tc.catalogue import FC_RELU

LINEAR = """
def linear(float(B, I) x, float(O, I) W) -> (y) {
    y(b, o) +=! x(b, i) * W(o, i)
}
"""


def randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


class Net(torch.nn.Module):
    """fc_relu then linear: through tc entry points (``T``), or torch when ``T`` is None."""

    def __init__(self, units=None) -> None:
        super().__init__()
        self.W1 = torch.nn.Parameter(randn(6, 5, seed=1) * 0.5)
        self.b1 = torch.nn.Parameter(randn(6, seed=2) * 0.1)
        self.W2 = torch.nn.Parameter(randn(3, 6, seed=3) * 0.5)
        self.units = units

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.units is None:
            return F.linear(torch.relu(F.linear(x, self.W1, self.b1)), self.W2)
        fc, lin = self.units
        return lin.linear(fc.fc_relu(x, self.W1, self.b1), self.W2)


def units(backend: str | None = None):
    return tc.define(FC_RELU, backend=backend), tc.define(LINEAR, backend=backend)


def train(model: torch.nn.Module, step_fn, batches: list[int]) -> list[torch.Tensor]:
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    losses = []
    for k, b in enumerate(batches):
        x, target = randn(b, 5, seed=10 + k), randn(b, 3, seed=50 + k)
        opt.zero_grad()
        loss = ((step_fn(x) - target) ** 2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.detach())
    return losses


def check_training(compile_kwargs: dict, batches: list[int], backend: str | None = None
                   ) -> None:
    torch._dynamo.reset()
    ref, net = Net(), Net(units(backend))
    want = train(ref, ref, batches)
    got = train(net, torch.compile(net, **compile_kwargs), batches)
    torch.testing.assert_close(torch.stack(got), torch.stack(want))
    for p, q in zip(net.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p, q)


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_trains_under_compile_fullgraph(backend: str) -> None:
    check_training({"fullgraph": True, "backend": backend}, [4, 4, 7])


def test_trains_under_default_compile() -> None:
    check_training({}, [5, 2, 9])


def test_trains_under_compile_on_every_target(target: str) -> None:
    check_training({"fullgraph": True, "backend": "aot_eager"}, [3, 5], backend=target)


def test_variable_batch_sizes_compile_each_definition_once() -> None:
    """20 batch sizes, torch.compile with dynamic shapes: the forward definitions and
    their derived backwards each compile once (the CPU target's kernels take the sizes
    as arguments)."""
    torch._dynamo.reset()
    net, ref = Net(units()), Net()
    batches = [1, 2, 3, 5, 7, 8, 11, 13, 16, 17, 19, 23, 29, 31, 32, 37, 41, 43, 47, 64]
    before = stats.snapshot()
    got = train(net, torch.compile(net, fullgraph=True, backend="aot_eager", dynamic=True),
                batches)
    compiled = stats.COUNTERS["compile_program"] - before.get("compile_program", 0)
    built = stats.COUNTERS["cc_compile"] - before.get("cc_compile", 0)
    # fc_relu, linear, and the backward derived from each.
    assert compiled == 4, compiled
    assert built <= 4, built
    want = train(ref, ref, batches)
    torch.testing.assert_close(torch.stack(got), torch.stack(want))


def test_eager_variable_batch_sizes_compile_once() -> None:
    net, ref = Net(units()), Net()
    before = stats.snapshot()
    got = train(net, net, [2, 9, 4, 13, 1])
    assert stats.COUNTERS["compile_program"] - before.get("compile_program", 0) == 4
    torch.testing.assert_close(torch.stack(got), torch.stack(train(ref, ref, [2, 9, 4, 13, 1])))


def test_export_forward_and_backward() -> None:
    net, ref = Net(units()), Net()
    x = randn(4, 5, seed=7)
    batch = torch.export.Dim("batch")
    ep = torch.export.export(net, (x,), dynamic_shapes=({0: batch},))
    called = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
    assert any(c.startswith("tc_private.") for c in called), called
    module = ep.module()
    for v in (x, randn(9, 5, seed=8)):
        module.zero_grad()
        ref.zero_grad()
        (module(v) ** 2).sum().backward()
        (ref(v) ** 2).sum().backward()
        torch.testing.assert_close(module(v), ref(v))
        for name, p in ref.named_parameters():
            torch.testing.assert_close(dict(module.named_parameters())[name].grad, p.grad)


def test_hand_written_backward_under_compile() -> None:
    """tc.make_autograd: the hand-written backward, not the derived one, runs in the
    compiled graph's backward (it is scaled by 2 here to tell them apart)."""
    torch._dynamo.reset()
    T = tc.define("""
    def sq(float(N) x) -> (y) { y(n) = x(n) * x(n) }
    def sq_backward(float(N) x, float(N) g) -> (gx) { gx(n) = 4 * x(n) * g(n) }
    """)
    sq = tc.make_autograd(T.sq, T.sq_backward)
    x = randn(7, seed=3).requires_grad_()
    y = torch.compile(lambda v: sq(v).sum(), fullgraph=True, backend="aot_eager")(x)
    y.backward()
    torch.testing.assert_close(y, (x.detach() ** 2).sum())
    torch.testing.assert_close(x.grad, 4 * x.detach())


def test_scalar_and_integer_inputs_and_outputs_keyword() -> None:
    torch._dynamo.reset()
    T = tc.define("""
    def gather_scale(float(N, D) X, int64(B) idx, float s) -> (Y) {
        Y(b, d) = s * X(idx(b), d)
    }
    """)
    X, idx = randn(5, 3, seed=4), torch.tensor([4, 0, 2])
    f = torch.compile(lambda X, idx: T.gather_scale(X, idx, 2.5), fullgraph=True,
                      backend="aot_eager")
    torch.testing.assert_close(f(X, idx), 2.5 * X[idx])
    out = torch.empty(3, 3)
    g = torch.compile(lambda X, idx, out: T.gather_scale(X, idx, 0.5, outputs=out),
                      fullgraph=True, backend="aot_eager")
    g(X, idx, out)
    torch.testing.assert_close(out, 0.5 * X[idx])


def test_bad_arguments_raise_tc_errors_while_tracing() -> None:
    torch._dynamo.reset()
    T = tc.define(LINEAR)
    f = torch.compile(lambda x, W: T.linear(x, W), fullgraph=True, backend="aot_eager")
    with pytest.raises(Exception, match="size 'I'"):
        f(randn(2, 3, seed=1), randn(4, 5, seed=2))


def test_issue_examples_softmax_and_pointwise() -> None:
    """The programs of the issue: a pointwise layer and a 4-statement softmax, both
    under torch.compile (default and fullgraph)."""
    torch._dynamo.reset()
    T = tc.define("""
    def ex(float(N, D) x) -> (y) { y(n, d) = exp(x(n, d)) }
    def softmax(float(N, D) X) -> (Y) {
        mx(n) max=! X(n, d)
        e(n, d) = exp(X(n, d) - mx(n))
        s(n) +=! e(n, d)
        Y(n, d) = e(n, d) / s(n)
    }
    """)
    x = randn(4, 5, seed=9)
    torch.testing.assert_close(torch.compile(lambda v: T.ex(v) * 2)(x), x.exp() * 2)
    f = torch.compile(lambda v: T.softmax(v) + 1, fullgraph=True)
    for n in (4, 6):
        x = randn(n, 5, seed=n)
        torch.testing.assert_close(f(x), torch.softmax(x, 1) + 1)
