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
    T_cl = tc.define(LANG, backend="opencl")

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

    # The compiler: isl schedules the definition, maps it to blocks and threads, and
    # prints one kernel AST as CUDA C (compiled by NVRTC) and as OpenCL C (run on PoCL).
    options = tc.MappingOptions("naive")
    cuda = tc.compile(LANG, "fc_relu", options, x, W, bias, backend="cuda", arch="sm_80")
    k = cuda.kernels[0]
    print(f"\nfc_relu as CUDA ({len(cuda.kernels)} kernel, grid {k.grid}, block {k.block}):")
    print(k.source)
    r = k.resources
    print(f"NVRTC sm_80: {r['registers']} registers, {r['spill_bytes']} spill bytes, "
          f"{r['shared_bytes']} shared bytes")
    y_cl = T_cl.fc_relu(x, W, bias)
    err = (y_cl - ref).abs().max().item()
    print(f"the same kernel as OpenCL on PoCL (CPU): max |tc - torch| = {err:.2e}")
    assert torch.allclose(y_cl, ref, atol=1e-5)
    C_cl = T_cl.matmul(A, B)
    assert torch.allclose(C_cl, A @ B, atol=1e-4)
    print(f"matmul on PoCL: max |tc - torch| = {(C_cl - A @ B).abs().max().item():.2e}")
    gradients(T_cl, x, W, bias)
    cpu_target()
    tune_and_reuse(A, B)
    print("\ndemo ok")


def cpu_target() -> None:
    """The native CPU target (C + OpenMP), what ``backend=None`` uses for CPU tensors:
    fc_relu beside torch eager on the same tensors, medians of one run."""
    import statistics
    import time

    x, W, bias = torch.randn(128, 512), torch.randn(512, 512), torch.randn(512)
    T = tc.define(LANG)  # backend=None: CPU tensors go to the cpu target
    y = T.fc_relu(x, W, bias)
    ref = torch.relu(x @ W.T + bias)
    assert torch.allclose(y, ref, atol=1e-3), (y - ref).abs().max()

    def median(f, runs: int = 30) -> float:
        f()
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            f()
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    t_tc = median(lambda: T.fc_relu(x, W, bias))
    t_torch = median(lambda: torch.relu(x @ W.T + bias))
    src = tc.compile(LANG, "fc_relu", None, x, W, bias, backend="cpu").kernels[0].source
    print(f"\nfc_relu 128x512x512 on the cpu target (C + OpenMP, naive options; "
          f"{'parallel' if 'omp parallel' in src else 'serial'} loops): "
          f"{t_tc * 1e3:.3f} ms, torch eager {t_torch * 1e3:.3f} ms, "
          f"tc / torch = {t_tc / t_torch:.1f}x (untuned; see python -m benchmarks)")


def gradients(T: tc.TC, x: torch.Tensor, W: torch.Tensor, bias: torch.Tensor) -> None:
    """Entry points are differentiable: the backward is derived from the TC text."""
    print("\nthe backward tc derives for fc_relu's weights (python -m tc grad ... --wrt W,bias):")
    print(T.fc_relu.gradient_text(wrt=[1, 2]))
    Wg, bg = W.clone().requires_grad_(), bias.clone().requires_grad_()
    T.fc_relu(x, Wg, bg).square().sum().backward()
    Wt, bt = W.clone().requires_grad_(), bias.clone().requires_grad_()
    torch.relu(x @ Wt.T + bt).square().sum().backward()
    err = max((Wg.grad - Wt.grad).abs().max().item(), (bg.grad - bt.grad).abs().max().item())
    assert err < 1e-3, err
    print(f"fc_relu gradients on PoCL: max |tc - torch autograd| = {err:.2e}")


# A fresh process: it runs the tuned matmul from the cache (no scheduling, no compiling).
REUSE = """
import sys, torch, tc
from codegen.stats import COUNTERS
torch.manual_seed(0)
A, B = torch.randn(32, 48), torch.randn(48, 40)
T = tc.define(sys.argv[1],
              tc.make_load_from_cache_options_factory(sys.argv[2], backend="opencl"),
              backend="opencl")
C = T.matmul(A, B)
assert torch.allclose(C, A @ B, atol=1e-4)
print(f"second process: matmul from the cache, {COUNTERS['compile_program']} compilations, "
      f"{COUNTERS['opencl_build']} OpenCL builds")
"""


def tune_and_reuse(A: torch.Tensor, B: torch.Tensor) -> None:
    """Tune matmul for a few generations, store it, and run it from a second process."""
    import subprocess
    import sys
    import tempfile

    torch.manual_seed(0)
    A, B = torch.randn(32, 48), torch.randn(48, 40)
    with tempfile.TemporaryDirectory() as tmp:
        cache = f"{tmp}/tc-cache.sqlite"
        config = tc.TunerConfig().generations(2).pop_size(4).seed(0)
        best = tc.autotune(LANG, "matmul", A, B, tuner_config=config, cache_filename=cache,
                           store_to_cache=True, backend="opencl")
        print(f"\ntuned matmul options: {best!r}")
        out = subprocess.run([sys.executable, "-c", REUSE, LANG, cache], check=True,
                             capture_output=True, text=True)
        print(out.stdout.strip())


if __name__ == "__main__":
    main()
