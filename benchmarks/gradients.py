"""``python -m benchmarks.gradients``: forward + backward of tc layers against torch.

For the layers of the training examples and the peers' suites, times one training
step of the layer: the forward call and ``.backward()`` of a weighted sum of its
outputs. tc's backward is the derived one (``tc.define`` entry points); for fc+relu
and the convolution, the hand-written backwards of the catalogue
(``tc.make_autograd``) are timed too. torch eager runs the catalogue's independent
reference on the same tensors in the same process. Before any timing, each variant's
gradients are compared with torch's: a wrong variant is reported, never timed.

Medians in milliseconds and ratios tc / torch; the machine and its load are printed
with the table, since timings on a shared CPU are noisy.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

import tc
from benchmarks.runner import time_ms
from tc import catalogue

#: (kernel, sizes) at a size where a naive kernel on PoCL takes milliseconds.
CASES: dict[str, dict[str, int]] = {
    "matmul": {"M": 64, "K": 64, "N": 64},
    "fc_relu": {"B": 64, "I": 256, "O": 128},
    "conv2d": {"N": 4, "C": 8, "H": 16, "W": 16, "F": 8, "KH": 3, "KW": 3},
    "softmax": {"M": 256, "N": 256},
    "layer_norm": {"M": 256, "N": 256},
    "maxpool2x2": {"N": 4, "C": 16, "H": 32, "W": 32},
    "cross_entropy_mean": {"N": 128, "C": 10},
}
QUICK: dict[str, dict[str, int]] = {k: dict(catalogue.get(k).test_sizes[0]) for k in CASES}

#: Hand-written backwards of the catalogue: kernel -> (text, forward, backward builder).
HAND = {
    "fc_relu": (catalogue.FC_RELU, lambda T: tc.make_autograd(T.fc_relu, T.fc_relu_backward)),
    "conv2d": (catalogue.CONV2D, lambda T: tc.make_autograd(
        T.conv2d, lambda I, Wt, dO: (T.conv2d_dx(I, Wt, dO), T.conv2d_dw(I, Wt, dO)))),
}

Step = Callable[[], list[torch.Tensor]]


def _step(fn: Callable, inputs: Sequence[torch.Tensor], weight: torch.Tensor) -> Step:
    """One training step of ``fn`` on fresh leaves; returns the inputs' gradients."""

    def run() -> list[torch.Tensor]:
        leaves = [x.detach().requires_grad_(x.dtype.is_floating_point) for x in inputs]
        out = fn(*leaves)
        out = out if isinstance(out, torch.Tensor) else out[0]
        (out * weight).sum().backward()
        return [x.grad for x in leaves if x.dtype.is_floating_point]

    return run


def _check(ours: list[torch.Tensor], ref: list[torch.Tensor], kernel: catalogue.Kernel
           ) -> str | None:
    for k, (a, b) in enumerate(zip(ours, ref, strict=True)):
        if not torch.allclose(a, b, rtol=max(kernel.rtol, 1e-3), atol=max(kernel.atol, 1e-3)):
            return f"gradient {k} differs by {(a - b).abs().max().item():.3g}"
    return None


def bench(name: str, sizes: dict[str, int], runs: int, warmup: int, backend: str
          ) -> dict[str, object]:
    """Medians (ms) of one training step of ``name`` per variant, with correctness."""
    kernel = catalogue.get(name)
    g = torch.Generator().manual_seed(0)
    inputs = kernel.make_inputs(sizes, g)
    out = kernel.reference(*inputs)
    out = out if isinstance(out, torch.Tensor) else out[0]
    weight = torch.randn(out.shape, generator=g)
    variants: dict[str, Step] = {
        "torch": _step(kernel.reference, inputs, weight),
        "tc derived": _step(tc.define(kernel.tc, backend=backend)[kernel.entry], inputs,
                            weight),
    }
    if name in HAND:
        text, make = HAND[name]
        variants["tc hand-written"] = _step(make(tc.define(text, backend=backend)), inputs,
                                            weight)
    expected = variants["torch"]()
    row: dict[str, object] = {"kernel": name, "sizes": sizes}
    for label, step in variants.items():
        problem = _check(step(), expected, kernel)  # also compiles: not timed
        if problem is not None:
            row[label] = f"WRONG ({problem})"
            continue
        row[label] = statistics.median(time_ms(step, "cpu", warmup, runs, budget_s=20.0))
    return row


def to_markdown(rows: Sequence[dict[str, object]]) -> str:
    labels = ["torch", "tc derived", "tc hand-written"]
    lines = ["| kernel | sizes | " + " | ".join(f"{lab} (ms)" for lab in labels)
             + " | derived / torch |", "|---" * (len(labels) + 3) + "|"]
    for r in rows:
        cells = []
        for lab in labels:
            v = r.get(lab, "")
            cells.append(f"{v:.3g}" if isinstance(v, float) else str(v))
        t, d = r.get("torch"), r.get("tc derived")
        ratio = f"{d / t:.1f}x" if isinstance(t, float) and isinstance(d, float) else ""
        sizes = " ".join(f"{k}={v}" for k, v in r["sizes"].items())  # type: ignore[union-attr]
        lines.append(f"| {r['kernel']} | {sizes} | " + " | ".join(cells) + f" | {ratio} |")
    return "\n".join(lines)


def machine() -> str:
    load = os.getloadavg() if hasattr(os, "getloadavg") else ()
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"torch {torch.__version__}, load average {', '.join(f'{x:.1f}' for x in load)}")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gradients", description=__doc__)
    p.add_argument("--quick", action="store_true", help="the catalogue's small test sizes")
    p.add_argument("--runs", type=int, default=10, help="timed steps per variant (median)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--backend", default="opencl", help="tc back end (opencl, cuda)")
    p.add_argument("--kernels", default="", help="comma-separated subset of " + ", ".join(CASES))
    p.add_argument("--out", type=Path, help="also write the markdown table to this file")
    args = p.parse_args(argv)
    cases = QUICK if args.quick else CASES
    names = [k for k in args.kernels.split(",") if k] or list(cases)
    unknown = [n for n in names if n not in cases]
    if unknown:
        p.error(f"unknown kernels {', '.join(unknown)}; choose among {', '.join(cases)}")
    rows = [bench(n, cases[n], args.runs, args.warmup, args.backend) for n in names]
    text = (f"# One training step (forward + backward), tc {args.backend} vs torch eager\n\n"
            f"Machine: {machine()}\n\n{to_markdown(rows)}\n")
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
