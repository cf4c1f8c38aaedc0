"""Train a small convolutional network written in TC on scikit-learn's handwritten digits.

The data set is ``sklearn.datasets.load_digits`` (1797 grey 8x8 images, 10 classes; it
ships inside scikit-learn, nothing is downloaded), pixels scaled to [0, 1], split 80/20
into train and test sets, stratified, with a fixed seed.

The network, every layer of it a TC definition of :data:`LANG` called through
``tc.define(...)`` entry points::

    x (N, 1, 8, 8) -> conv_relu: 3x3 "valid" convolution, 1 -> 8 channels, + bias, ReLU
      -> (N, 8, 6, 6), flattened (a torch view) to (N, 288)
      -> fc_relu: fully connected 288 -> 64, + bias, ReLU
      -> fc: fully connected 64 -> 10, + bias (the logits)
      -> cross_entropy_mean: the mean over the batch of -log softmax(logits)[label]

The entry points are differentiable: ``loss.backward()`` runs the backward definitions
that tc derives from these texts (compiled by the same back end and stored in the same
compilation cache), so every gradient comes from TC kernels; torch only holds the
parameters and applies the SGD update.

Next to it the script trains the same network built from ``torch.nn`` (``Conv2d``,
``Linear``, ``ReLU``, ``F.cross_entropy``), starting from a copy of the same initial
weights, on the same batches in the same order, with the same optimiser, and prints
per-epoch training loss and test accuracy of both and their final test accuracies.

Optimiser: SGD with momentum, ``v <- momentum * v + s * g``, ``p <- p - lr * v``, where
``g`` is the parameter's gradient of the batch loss and ``s`` its step-size scale
(1 without ``--rescale``). The last partial batch of every epoch is dropped so that
every call has the same shapes (each new shape costs a compilation); the test set is
evaluated in batches of the same size, the last one padded with zero images.

Per-unit step-size rescaling (``--rescale``)
--------------------------------------------
The diagonal rescaling of second-order training methods: every weight's step is
divided by the running root mean square of the input unit it reads, which amounts to
training the layer on normalised input activations. Precisely, for each layer with
input activations ``a(b, u)`` (b runs over the batch, u over the layer's input units):

* conv_relu: the input image's channels ``u = c`` (here one) over every batch element
  and position: ``a = x.permute(0, 2, 3, 1).reshape(N * 8 * 8, C)``;
* fc_relu: the 288 flattened outputs of conv_relu, ``a`` of shape ``(N, 288)``;
* fc: the 64 outputs of fc_relu, ``a`` of shape ``(N, 64)``.

Every training step computes ``mean(u)`` and ``meansq(u) = mean over b of a(b, u)^2``
of the batch with the TC kernel ``activation_stats`` (the torch twin with
``a.square().mean(0)``), updates the running average ``r(u) <- decay * r(u) + (1 -
decay) * meansq(u)`` (``r`` starts at the first batch's ``meansq``; ``--decay``,
default 0.9), and scales the gradient of every weight that reads input unit ``u``
(conv ``Wt(f, c, kh, kw)``: ``u = c``; fc ``W(o, i)``: ``u = i``) by
``s = 1 / sqrt(r(u) + eps)`` (``--eps``, default 0.01). A bias reads the constant
input 1, whose mean square is 1: its scale is ``1 / sqrt(1 + eps)``. The scale
multiplies the gradient before the momentum accumulation above. The means are
computed by the same kernel but do not enter the step. With ``--rescale`` each
epoch's line also shows the running root mean square of each layer's inputs
(averaged over its units).

Usage::

    python examples/train_digits.py                    # TC (PoCL) and torch.nn nets
    python examples/train_digits.py --rescale          # with per-unit rescaling
    python examples/train_digits.py --epochs 3 --max-batches 5 --cache /tmp/c.sqlite
    python examples/train_digits.py --backend reference --no-torch
    python examples/train_digits.py --print-gradients  # the derived backward TC

A second run with the same cache file (``--cache``, default: tc's default compilation
cache; ``--no-cache``: none) loads every compiled kernel, forward and backward, from it
instead of compiling: the script ends by printing how many definitions it compiled
(``codegen.stats.COUNTERS``: polyhedral compilations and OpenCL builds) and how many
OpenCL kernels it loaded from the cache.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

import tc
from codegen.stats import COUNTERS

#: The network's layers (the loss and statistics follow in :data:`LANG`); fc_relu as in
#: tc.catalogue. examples/train_weak_labels.py uses the same encoder.
ENCODER = """
def conv_relu(float(N, C, H, W) I, float(F, C, KH, KW) Wt, float(F) bias) -> (O) {
    O(n, f, h, w) +=! I(n, c, h + kh, w + kw) * Wt(f, c, kh, kw)
    O(n, f, h, w) = fmax(O(n, f, h, w) + bias(f), 0)
}

def fc_relu(float(B, I) x, float(O, I) W, float(O) bias) -> (y) {
    y(b, o) +=! x(b, i) * W(o, i)
    y(b, o) = fmax(y(b, o) + bias(o), 0)
}

def fc(float(B, I) x, float(O, I) W, float(O) bias) -> (y) {
    y(b, o) +=! x(b, i) * W(o, i)
    y(b, o) = y(b, o) + bias(o)
}
"""

#: The network's definitions; cross_entropy_mean as in tc.catalogue.
LANG = ENCODER + """
def cross_entropy_mean(float(N, C) X, int64(N) label) -> (loss) {
    mx(n) max=! X(n, c)
    lse(n) +=! exp(X(n, c) - mx(n))
    logp(n, c) = X(n, c) - mx(n) - log(lse(n))
    loss +=! -logp(n, label(n)) / N
}

def activation_stats(float(B, U) A) -> (mean, meansq) {
    mean(u) +=! A(b, u) / B
    meansq(u) +=! A(b, u) * A(b, u) / B
}
"""

CHANNELS, KERNEL, CLASSES = 8, 3, 10
#: The layers whose input activations --rescale normalises, in forward order.
INPUTS = ("conv", "fc1", "fc2")


@dataclass(frozen=True)
class Config:
    """The run's settings (the command-line options)."""

    epochs: int = 12
    batch_size: int = 32
    lr: float = 0.05
    momentum: float = 0.9
    hidden: int = 64
    seed: int = 0
    rescale: bool = False
    decay: float = 0.9
    eps: float = 0.01
    backend: str = "opencl"
    cache: str | None = None  # a path; None: tc's default cache
    use_cache: bool = True
    max_batches: int | None = None
    torch_twin: bool = True
    quiet: bool = False


@dataclass(frozen=True)
class Data:
    """Train and test images (N, 1, 8, 8) in [0, 1] and int64 labels."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def digits(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """sklearn's digits: images (N, 1, 8, 8) in [0, 1], int64 labels, and the indices
    of an 80/20 split (stratified, ``seed``)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = torch.tensor(data.data, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0
    y = torch.tensor(data.target, dtype=torch.int64)
    i_train, i_test = train_test_split(torch.arange(len(y)).numpy(), test_size=0.2,
                                       stratify=y.numpy(), random_state=seed)
    return x, y, torch.from_numpy(i_train), torch.from_numpy(i_test)


def load_data(seed: int) -> Data:
    """The digits, split 80/20 (stratified, ``seed``)."""
    x, y, i_train, i_test = digits(seed)
    return Data(x[i_train], y[i_train], x[i_test], y[i_test])


class TorchNet(nn.Module):
    """The reference network, from torch.nn."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, CHANNELS, KERNEL)
        self.fc1 = nn.Linear(CHANNELS * (8 - KERNEL + 1) ** 2, hidden)
        self.fc2 = nn.Linear(hidden, CLASSES)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The logits and the input activations of the three layers."""
        h1 = F.relu(self.conv(x)).flatten(1)
        h2 = F.relu(self.fc1(h1))
        return self.fc2(h2), [x, h1, h2]

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, labels)

    @staticmethod
    def stats(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-unit mean and mean square over the rows of ``a``."""
        return a.mean(0), a.square().mean(0)

    def parameter_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.named_parameters())


class TcNet:
    """The same network, every layer an entry point of :data:`LANG`."""

    def __init__(self, init: dict[str, torch.Tensor], backend: str,
                 cache: str | bool | None) -> None:
        self.T = tc.define(LANG, backend=backend, cache=cache)
        # A copy of the torch net's initial weights, so that both start identical.
        self.params = {k: v.detach().clone().requires_grad_(True) for k, v in init.items()}

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        p = self.params
        h1 = self.T.conv_relu(x, p["conv.weight"], p["conv.bias"])
        h1 = h1.reshape(h1.shape[0], -1)  # flatten: a view, no layer math
        h2 = self.T.fc_relu(h1, p["fc1.weight"], p["fc1.bias"])
        return self.T.fc(h2, p["fc2.weight"], p["fc2.bias"]), [x, h1, h2]

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.T.cross_entropy_mean(logits, labels)

    def stats(self, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.T.activation_stats(a)

    def parameter_dict(self) -> dict[str, torch.Tensor]:
        return self.params


def stats_rows(layer: int, a: torch.Tensor) -> torch.Tensor:
    """The input activations of ``layer`` as rows (batch) x input units: the image's
    channels over batch and positions for the convolution."""
    a = a.detach()
    if layer == 0:
        return a.permute(0, 2, 3, 1).reshape(-1, a.shape[1])
    return a


def momentum_step(params: dict[str, torch.Tensor], velocity: dict[str, torch.Tensor],
                  lr: float, mu: float, scales: dict[str, torch.Tensor] | None = None) -> None:
    """SGD with momentum on the parameters' gradients (each times its ``scales`` entry,
    if any): ``v = mu v + grad``, ``p -= lr v``; the gradients are cleared."""
    with torch.no_grad():
        for name, p in params.items():
            d = p.grad * scales[name] if scales and name in scales else p.grad
            v = velocity.get(name)
            if v is None:
                v = velocity[name] = torch.zeros_like(p)
            v.mul_(mu).add_(d)
            p.sub_(lr * v)
            p.grad = None


def padded_batches(forward, x: torch.Tensor, batch: int) -> torch.Tensor:
    """``forward`` over ``x`` in batches of ``batch`` rows, the last one padded with zero
    rows so that no new shape is compiled; the results of ``x``'s rows only."""
    xp = torch.cat([x, x.new_zeros((-len(x) % batch, *x.shape[1:]))])
    with torch.no_grad():
        return torch.cat([forward(xp[i:i + batch].contiguous())
                          for i in range(0, len(xp), batch)])[:len(x)]


class Trainer:
    """One network's optimiser state (momentum buffers, running mean squares) and
    its history (losses, accuracies, times)."""

    def __init__(self, net: TorchNet | TcNet, config: Config) -> None:
        self.net = net
        self.config = config
        self.velocity: dict[str, torch.Tensor] = {}
        self.running: list[torch.Tensor | None] = [None] * len(INPUTS)
        self.batch_losses: list[float] = []
        self.epoch_losses: list[float] = []
        self.accuracies: list[float] = []
        self.epoch_times: list[float] = []

    def step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """One SGD step on a batch; returns the batch's loss."""
        logits, inputs = self.net.forward(x)
        loss = self.net.loss(logits, y)
        loss.backward()
        scales = self.scales(inputs) if self.config.rescale else {}
        momentum_step(self.net.parameter_dict(), self.velocity, self.config.lr,
                      self.config.momentum, scales)
        value = float(loss.detach())
        self.batch_losses.append(value)
        return value

    def scales(self, inputs: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Update the running mean squares with this batch's layer inputs; return the
        step-size scale of each parameter (see the module docstring)."""
        c = self.config
        with torch.no_grad():
            for layer, a in enumerate(inputs):
                _, meansq = self.net.stats(stats_rows(layer, a))
                r = self.running[layer]
                self.running[layer] = meansq.clone() if r is None else (
                    c.decay * r + (1 - c.decay) * meansq)
            s = [torch.rsqrt(r + c.eps) for r in self.running]
        bias = torch.tensor(1.0 / math.sqrt(1.0 + c.eps))
        return {"conv.weight": s[0].view(1, -1, 1, 1), "conv.bias": bias,
                "fc1.weight": s[1].view(1, -1), "fc1.bias": bias,
                "fc2.weight": s[2].view(1, -1), "fc2.bias": bias}

    def accuracy(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """Test accuracy (percent), in batches of the training batch size: the last
        batch is padded with zero images so that no new shape is compiled."""
        logits = padded_batches(lambda b: self.net.forward(b)[0], x, self.config.batch_size)
        return 100.0 * (logits.argmax(1) == y).float().mean().item()


def print_gradients() -> None:
    """Print the derived backward definition of each layer (with respect to what
    training differentiates: the parameters, and the activations of later layers)."""
    T = tc.define(LANG, backend="reference")
    for name, wrt in (("conv_relu", (1, 2)), ("fc_relu", None), ("fc", None),
                      ("cross_entropy_mean", None)):
        print(T[name].gradient_text(wrt))


def parse_args(argv: Sequence[str] | None) -> Config:
    d = Config()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--momentum", type=float, default=d.momentum)
    p.add_argument("--hidden", type=int, default=d.hidden, help="units of the hidden layer")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--rescale", action="store_true",
                   help="per-unit step-size rescaling (see the module docstring)")
    p.add_argument("--decay", type=float, default=d.decay,
                   help="decay of the running mean squares of --rescale")
    p.add_argument("--eps", type=float, default=d.eps, help="epsilon of --rescale")
    p.add_argument("--backend", choices=("opencl", "reference"), default=d.backend)
    p.add_argument("--cache", default=None,
                   help="compilation cache file (default: tc's default cache)")
    p.add_argument("--no-cache", action="store_true", help="no on-disk compilation cache")
    p.add_argument("--max-batches", type=int, default=None,
                   help="stop each epoch after this many batches")
    p.add_argument("--no-torch", action="store_true", help="do not train the torch.nn twin")
    p.add_argument("--quiet", action="store_true", help="print only the summary")
    p.add_argument("--print-gradients", action="store_true",
                   help="print the backward TC definitions that tc derives, and exit")
    a = p.parse_args(argv)
    if a.print_gradients:
        print_gradients()
        p.exit()
    if a.batch_size < 1 or a.epochs < 1 or (a.max_batches is not None and a.max_batches < 1):
        p.error("--epochs, --batch-size and --max-batches must be positive")
    return Config(epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, momentum=a.momentum,
                  hidden=a.hidden, seed=a.seed, rescale=a.rescale, decay=a.decay, eps=a.eps,
                  backend=a.backend, cache=a.cache, use_cache=not a.no_cache,
                  max_batches=a.max_batches, torch_twin=not a.no_torch, quiet=a.quiet)


def main(argv: Sequence[str] | None = None) -> dict:
    """Train both networks; print progress; return the final metrics.

    The result holds, per network (``"tc"`` and, unless ``--no-torch``, ``"torch"``):
    ``test_accuracy`` (percent), ``batch_losses``, ``epoch_losses``, ``accuracies``
    and ``epoch_times`` (seconds); and ``accuracy_difference`` (tc - torch, points),
    ``counters`` (this run's ``codegen.stats.COUNTERS`` increments), ``config``.
    """
    c = parse_args(argv)
    # The layers are tiny: torch's intra-op threads only contend with each other and
    # with PoCL's (up to 15 times slower on 2 busy cores); one thread, restored after.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(c)
    finally:
        torch.set_num_threads(threads)


def _train(c: Config) -> dict:
    """Train as :func:`main` describes."""
    say = (lambda *a: None) if c.quiet else print
    data = load_data(c.seed)
    torch.manual_seed(c.seed)
    twin = TorchNet(c.hidden)
    cache: str | bool | None = (c.cache or True) if c.use_cache else None
    if c.backend == "reference":
        cache = None  # the interpreter compiles nothing
    before = COUNTERS.copy()
    trainers = {"tc": Trainer(TcNet(twin.parameter_dict(), c.backend, cache), c)}
    if c.torch_twin:
        trainers["torch"] = Trainer(twin, c)
    n_train = len(data.y_train)
    n_batches = n_train // c.batch_size
    if c.max_batches is not None:
        n_batches = min(n_batches, c.max_batches)
    say(f"digits: {n_train} train / {len(data.y_test)} test images; {c.epochs} epochs of "
        f"{n_batches} batches of {c.batch_size}; lr {c.lr}, momentum {c.momentum}"
        f"{f', rescaled (decay {c.decay}, eps {c.eps})' if c.rescale else ''}; "
        f"tc backend {c.backend}")
    order = torch.Generator().manual_seed(c.seed)
    for epoch in range(c.epochs):
        perm = torch.randperm(n_train, generator=order)
        times = dict.fromkeys(trainers, 0.0)
        losses = {k: 0.0 for k in trainers}
        for i in range(n_batches):
            idx = perm[i * c.batch_size:(i + 1) * c.batch_size]
            x, y = data.x_train[idx], data.y_train[idx]
            for name, t in trainers.items():
                start = time.perf_counter()
                losses[name] += t.step(x, y)
                times[name] += time.perf_counter() - start
        line = [f"epoch {epoch + 1:3d}"]
        for name, t in trainers.items():
            start = time.perf_counter()
            t.accuracies.append(t.accuracy(data.x_test, data.y_test))
            t.epoch_times.append(times[name] + time.perf_counter() - start)
            t.epoch_losses.append(losses[name] / n_batches)
            line.append(f"{name}: loss {t.epoch_losses[-1]:.4f} test acc "
                        f"{t.accuracies[-1]:5.1f}% ({t.epoch_times[-1]:.1f} s)")
            if c.rescale and name == "tc":
                rms = ", ".join(f"{layer} {r.sqrt().mean().item():.3f}"
                                for layer, r in zip(INPUTS, t.running, strict=True))
                line.append(f"[input rms {rms}]")
        say("  ".join(line))
    counters = {k: COUNTERS[k] - before.get(k, 0) for k in
                ("compile_program", "opencl_build", "opencl_load_binary")}
    result: dict = {"config": c, "counters": counters}
    for name, t in trainers.items():
        result[name] = {"test_accuracy": t.accuracies[-1], "batch_losses": t.batch_losses,
                        "epoch_losses": t.epoch_losses, "accuracies": t.accuracies,
                        "epoch_times": t.epoch_times}
    print(f"tc test accuracy {result['tc']['test_accuracy']:.2f}% "
          f"(training {sum(result['tc']['epoch_times']):.1f} s)")
    if c.torch_twin:
        diff = result["tc"]["test_accuracy"] - result["torch"]["test_accuracy"]
        result["accuracy_difference"] = diff
        print(f"torch.nn test accuracy {result['torch']['test_accuracy']:.2f}% "
              f"(training {sum(result['torch']['epoch_times']):.1f} s); "
              f"tc - torch = {diff:+.2f} points")
    print(f"tc kernels: {counters['compile_program']} definitions compiled "
          f"({counters['opencl_build']} OpenCL kernels built), "
          f"{counters['opencl_load_binary']} OpenCL kernels loaded from the compilation cache")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
