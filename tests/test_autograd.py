"""tc.define entry points under autograd: calls, outputs=, recompilation, the cache;
compiled for every target here (the ``target`` fixture)."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import textwrap

import pytest
import torch
from targets_here import but_opencl

import tc
from codegen.stats import COUNTERS, snapshot
from tc import catalogue

#: What each target counts when it builds a kernel from source (codegen.stats).
BUILDS = {"opencl": "opencl_build", "cpu": "cc_compile"}


@functools.cache
def _unit(target: str) -> tc.TC:
    # One unit per target for the whole module, so that its kernels compile once.
    return tc.define(catalogue.MATMUL + catalogue.FC_RELU, backend=target)


@pytest.fixture
def T(target: str) -> tc.TC:
    return _unit(target)


def test_gradients_flow_through_tc_and_torch_ops(T: tc.TC) -> None:
    A = torch.randn(3, 5, requires_grad=True)
    B = torch.randn(5, 4)  # only A requires grad: B gets none
    C = T.matmul(A * 2, B)
    assert C.requires_grad and C.grad_fn is not None
    (C.relu() ** 2).sum().backward()
    At = A.detach().clone().requires_grad_()
    ((At * 2) @ B).relu().pow(2).sum().backward()
    torch.testing.assert_close(A.grad, At.grad, rtol=1e-4, atol=1e-5)
    assert B.grad is None


def test_no_graph_without_grad(T: tc.TC) -> None:
    A = torch.randn(3, 5, requires_grad=True)
    with torch.no_grad():
        assert not T.matmul(A, torch.randn(5, 4)).requires_grad
    assert not T.matmul(A.detach(), torch.randn(5, 4)).requires_grad


def test_expanded_and_strided_gradients(T: tc.TC) -> None:
    # .sum() sends an expanded (stride 0) gradient; .t() a transposed one.
    x, W, b = (torch.randn(3, 5, requires_grad=True), torch.randn(4, 5, requires_grad=True),
               torch.randn(4, requires_grad=True))
    T.fc_relu(x, W, b).sum().backward()
    T.fc_relu(x, W, b).t().contiguous().mul(2).sum().backward()
    xs, Ws, bs = (t.detach().clone().requires_grad_() for t in (x, W, b))
    y = torch.relu(xs @ Ws.T + bs)
    (y.sum() + (2 * y).sum()).backward()
    for ours, ref in ((x, xs), (W, Ws), (b, bs)):
        torch.testing.assert_close(ours.grad, ref.grad, rtol=1e-4, atol=1e-5)


def test_outputs_and_autograd(T: tc.TC) -> None:
    A, B = torch.randn(3, 5, requires_grad=True), torch.randn(5, 4)
    out = torch.empty(3, 4)
    with pytest.raises(tc.TcArgumentError, match="outputs= cannot be used"):
        T.matmul(A, B, outputs=[out])
    with torch.no_grad():
        res = T.matmul(A, B, outputs=[out])
    assert res is out
    torch.testing.assert_close(out, A.detach() @ B, rtol=1e-4, atol=1e-5)


def test_argument_errors_are_tc_errors(T: tc.TC) -> None:
    A = torch.randn(3, 5, requires_grad=True)
    with pytest.raises(tc.TcArgumentTypeError, match="dtype"):
        T.matmul(A, torch.randn(5, 4, dtype=torch.float64))
    with pytest.raises(tc.TcArgumentError, match="size 'K'"):
        T.matmul(A, torch.randn(6, 4))
    with pytest.raises(tc.TcArgumentError, match="dimension"):
        T.matmul(A, torch.randn(5))
    with pytest.raises(tc.TcArgumentError, match="takes 2 inputs"):
        T.matmul(A)


def test_repeated_calls_compile_nothing(T: tc.TC, target: str) -> None:
    x, W, b = (torch.randn(2, 3, requires_grad=True), torch.randn(5, 3, requires_grad=True),
               torch.randn(5, requires_grad=True))
    T.fc_relu(x, W, b).sum().backward()
    before = snapshot()
    for _ in range(3):
        T.fc_relu(x, W, b).sum().backward()
    assert COUNTERS["compile_program"] == before.get("compile_program", 0)
    assert COUNTERS[BUILDS[target]] == before.get(BUILDS[target], 0)


SCRIPT = textwrap.dedent("""
    import json, sys, torch, tc
    from codegen.stats import COUNTERS
    from tc import catalogue
    T = tc.define(catalogue.FC_RELU, backend=sys.argv[2], cache=sys.argv[1])
    g = torch.Generator().manual_seed(0)
    x, W, b = (torch.randn(*s, generator=g).requires_grad_() for s in ((3, 4), (2, 4), (2,)))
    T.fc_relu(x, W, b).sum().backward()
    print(json.dumps({"compiled": COUNTERS["compile_program"],
                      "built": COUNTERS[sys.argv[3]],
                      "grads": [t.grad.tolist() for t in (x, W, b)]}))
""")


# Two fresh processes per target: not on OpenCL, whose stored kernels a fresh process
# reloads in tests/autotuner/test_cache.py (what is new here, the derived backward in
# the cache, does not depend on the target).
@pytest.mark.parametrize("target", but_opencl(), indirect=True)
def test_define_cache_lets_a_second_process_compile_nothing(tmp_path, target: str) -> None:
    path = str(tmp_path / "cache.sqlite")

    def run() -> dict:
        out = subprocess.run([sys.executable, "-c", SCRIPT, path, target, BUILDS[target]],
                             capture_output=True, text=True, check=True).stdout
        return json.loads(out.strip().splitlines()[-1])

    first, second = run(), run()
    assert first["compiled"] >= 2  # the forward and its derived backward
    assert first["built"] >= 1 and second["compiled"] == 0 and second["built"] == 0
    assert first["grads"] == second["grads"]


def test_backward_computes_only_the_gradients_autograd_asks_for() -> None:
    T = tc.define(catalogue.FC_RELU, backend="reference")
    x = torch.randn(3, 4)  # data: no gradient wanted
    W, b = torch.randn(5, 4, requires_grad=True), torch.randn(5, requires_grad=True)
    T.fc_relu(x, W, b).sum().backward()
    fn = T.fc_relu
    assert list(fn._gradient) == [(1, 2)]  # the backward derived without d_x
    xs, Ws, bs = x.clone(), W.detach().clone().requires_grad_(), b.detach().clone()
    bs.requires_grad_()
    torch.relu(xs @ Ws.T + bs).sum().backward()
    torch.testing.assert_close(W.grad, Ws.grad)
    torch.testing.assert_close(b.grad, bs.grad)
