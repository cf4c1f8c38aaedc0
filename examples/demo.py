"""`make demo`: define a matmul and an fc+relu in TC, run them on torch tensors, check them."""

from __future__ import annotations

import torch

import tc
from tc.ir.printer import function_str

LANG = """
def matmul(float(M, K) A, float(K, N) B) -> (C) {
    C(m, n) +=! A(m, k) * B(k, n)
}

def fc_relu(float(B, I) x, float(O, I) W, float(O) bias) -> (y) {
    y(b, o) +=! x(b, i) * W(o, i)
    y(b, o) = fmax(y(b, o) + bias(o), 0)
}
"""


def main() -> None:
    torch.manual_seed(0)
    T = tc.define(LANG, backend="reference")
    print(f"defined {', '.join(T.entry_points)} (backend: reference interpreter)\n")

    A, B = torch.randn(37, 19), torch.randn(19, 23)
    C = T.matmul(A, B)
    print(function_str(T.matmul.ir, {"M": 37, "K": 19, "N": 23}))
    err = (C - A @ B).abs().max().item()
    print(f"matmul {tuple(A.shape)} x {tuple(B.shape)} -> {tuple(C.shape)}; "
          f"max |tc - torch| = {err:.2e}\n")

    x, W, bias = torch.randn(8, 19), torch.randn(5, 19), torch.randn(5)
    y = T.fc_relu(x, W, bias)
    print(function_str(T.fc_relu.ir, {"B": 8, "I": 19, "O": 5}))
    ref = torch.relu(x @ W.T + bias)
    err = (y - ref).abs().max().item()
    print(f"fc_relu -> {tuple(y.shape)}; max |tc - torch| = {err:.2e}\n")

    # A transposed view works as it is: strides are respected.
    Ct = T.matmul(A, B.t().contiguous().t())
    assert torch.allclose(Ct, A @ B, atol=1e-5)

    # Errors point at the text.
    try:
        tc.define("def bad(float(N) A) -> (B) {\n    B(i) = A(i) + W(i)\n}")
    except tc.TcError as e:
        print("an invalid text is rejected:\n" + str(e) + "\n")
    try:
        T.matmul(A, A)
    except tc.TcError as e:
        print(f"a bad call is rejected: {e}")
    assert torch.allclose(C, A @ B, atol=1e-4) and torch.allclose(y, ref, atol=1e-4)
    print("\ndemo ok")


if __name__ == "__main__":
    main()
