"""Learn image features from weak labels: bags of caption words over a large vocabulary.

The setting of Joulin et al. 2016 ("Learning visual features from large weakly
supervised data"), at toy scale: no class labels, only noisy captions, and a network
trained to predict the caption's words with a multi-label softmax cross-entropy over the
whole vocabulary; evaluated by precision@k of its word predictions.

Data: scikit-learn's handwritten digits (``sklearn.datasets.load_digits``: 1797 grey
8x8 images; shipped with scikit-learn, nothing is downloaded), pixels scaled to [0, 1],
split 80/20 (stratified, seeded). Each digit class owns a "topic": ``--topic`` words
drawn at random from a vocabulary of ``--vocab`` word ids, ranked, word ``r`` of a
topic drawn with probability proportional to ``1 / (r + 1)`` (Zipf). Each image gets a
caption of ``--bag`` words, each from its class's topic, or with probability ``--noise``
uniformly from the whole vocabulary (the weak, noisy part). The digit labels are used
only to make the captions and for the clean precision below.

Model: a small image encoder and a vocabulary head, every layer a TC definition of
:data:`LANG` on the ``cpu`` target (C + OpenMP)::

    x (N, 1, 8, 8) -> conv_relu: 3x3 convolution 1 -> 8 channels, + bias, ReLU
      -> flattened (N, 288) -> fc_relu: 288 -> --hidden, + bias, ReLU
      -> fc: --hidden -> V word logits (the head)
      -> bag_xent: -1/(N L) sum over n, l of log softmax(logits(n, :))[caption(n, l)]

``bag_xent`` is the fused loss of :mod:`benchmarks.large_vocab`: its forward keeps
nothing of size N x V but the logits, its backward (``--loss-backward hand``, the
hand-written ``bag_xent_backward`` through ``tc.make_autograd``, the faster one in that
benchmark; or ``derived``, the one tc derives) writes the logits' gradient and nothing
else that large. The other layers' backwards are derived by tc.

Next to it the same model from ``torch.nn`` (``Conv2d``, ``Linear``, ``ReLU``, the loss
as ``-F.log_softmax(logits, 1).gather(1, caption).mean()``) trains from a copy of the
same initial weights, on the same batches, with the same optimiser (SGD with momentum;
the last partial batch of an epoch is dropped). Each epoch prints both training losses
and, on the test images, precision@k for k in 1, 5, 10:

* ``P@k``: the fraction of the k top-scored words that occur in the image's (noisy)
  test caption, as in the paper;
* ``clean P@k``: the fraction of them in the image's class topic (the noise-free truth).

Usage::

    python examples/train_weak_labels.py                 # tc and torch.nn, V = 5000
    python examples/train_weak_labels.py --vocab 20000 --epochs 20
    python examples/train_weak_labels.py --quick         # a few steps (the test's run)

Compiled kernels, forward and backward, go to tc's default compilation cache
(``--cache PATH`` for another file, ``--no-cache`` for none): a second run compiles
nothing, and most of a first run's time is compilation (the first epoch's time).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

# tc's kernels and torch share torch's OpenMP runtime; on a small machine kept busy by
# other work its spinning idle threads delay every call, so they sleep instead
# (see benchmarks/conv_regimes.py and docs/training.md, "Threads on a busy machine").
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import tc  # noqa: E402
from benchmarks.large_vocab import BAG_XENT, bag_xent_torch  # noqa: E402

# The encoder and the digits come from the classification example beside this file.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_digits import (  # noqa: E402
    CHANNELS,
    CLASSES,
    ENCODER,
    KERNEL,
    digits,
    momentum_step,
    padded_batches,
)

#: The encoder and head; the loss (BAG_XENT) is appended.
LANG = ENCODER + BAG_XENT
KS = (1, 5, 10)


@dataclass(frozen=True)
class Config:
    """The run's settings (the command-line options)."""

    epochs: int = 15
    batch_size: int = 32
    lr: float = 0.2
    momentum: float = 0.9
    hidden: int = 64
    vocab: int = 5000
    topic: int = 20
    bag: int = 5
    noise: float = 0.3
    seed: int = 0
    loss_backward: str = "hand"
    cache: str | None = None  # a path; None: tc's default cache
    use_cache: bool = True
    max_batches: int | None = None
    torch_twin: bool = True
    quiet: bool = False


@dataclass(frozen=True)
class Data:
    """Images (N, 1, 8, 8), captions (N, bag) of word ids, digit classes and topics."""

    x_train: torch.Tensor
    cap_train: torch.Tensor
    x_test: torch.Tensor
    cap_test: torch.Tensor
    y_test: torch.Tensor
    topics: torch.Tensor  # (10, topic) word ids of each class


def make_data(c: Config) -> Data:
    """The digits with synthetic noisy captions (see the module docstring)."""
    x, y, i_train, i_test = digits(c.seed)
    g = torch.Generator().manual_seed(c.seed)
    topics = torch.stack([torch.randperm(c.vocab, generator=g)[:c.topic]
                          for _ in range(CLASSES)])
    zipf = 1.0 / torch.arange(1, c.topic + 1, dtype=torch.float64)
    rank = torch.multinomial(zipf.expand(len(y), -1), c.bag, replacement=True, generator=g)
    words = topics[y].gather(1, rank)
    noisy = torch.rand(len(y), c.bag, generator=g) < c.noise
    captions = torch.where(noisy, torch.randint(0, c.vocab, words.shape, generator=g), words)
    return Data(x[i_train], captions[i_train], x[i_test], captions[i_test], y[i_test],
                topics)


class TorchNet(nn.Module):
    """The reference model, from torch.nn."""

    def __init__(self, hidden: int, vocab: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, CHANNELS, KERNEL)
        self.fc1 = nn.Linear(CHANNELS * (8 - KERNEL + 1) ** 2, hidden)
        self.fc2 = nn.Linear(hidden, vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The word logits."""
        return self.fc2(F.relu(self.fc1(F.relu(self.conv(x)).flatten(1))))

    def loss(self, logits: torch.Tensor, captions: torch.Tensor) -> torch.Tensor:
        return bag_xent_torch(logits, captions)

    def parameter_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.named_parameters())


class TcNet:
    """The same model, every layer and the loss an entry point of :data:`LANG`."""

    def __init__(self, init: dict[str, torch.Tensor], loss_backward: str,
                 cache: str | bool | None) -> None:
        self.T = tc.define(LANG, backend="cpu", cache=cache)
        self.params = {k: v.detach().clone().requires_grad_(True) for k, v in init.items()}
        self.bag_xent = (tc.make_autograd(self.T.bag_xent, self.T.bag_xent_backward)
                         if loss_backward == "hand" else self.T.bag_xent)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.params
        h = self.T.conv_relu(x, p["conv.weight"], p["conv.bias"])
        h = self.T.fc_relu(h.reshape(h.shape[0], -1), p["fc1.weight"], p["fc1.bias"])
        return self.T.fc(h, p["fc2.weight"], p["fc2.bias"])

    def loss(self, logits: torch.Tensor, captions: torch.Tensor) -> torch.Tensor:
        return self.bag_xent(logits, captions)

    def parameter_dict(self) -> dict[str, torch.Tensor]:
        return self.params


def precision_at_k(logits: torch.Tensor, relevant: torch.Tensor, k: int) -> float:
    """Mean over rows of the fraction of the ``k`` top-scored words found in that
    row's ``relevant`` word ids (a bag, repeats allowed), in percent."""
    top = logits.topk(k, dim=1).indices
    hits = (top.unsqueeze(2) == relevant.unsqueeze(1)).any(2)
    return 100.0 * hits.float().mean().item()


class Trainer:
    """One model's optimiser state and history."""

    def __init__(self, net: TorchNet | TcNet, config: Config) -> None:
        self.net = net
        self.config = config
        self.velocity: dict[str, torch.Tensor] = {}
        self.batch_losses: list[float] = []
        self.epoch_losses: list[float] = []
        self.precisions: list[dict[str, float]] = []
        self.epoch_times: list[float] = []

    def step(self, x: torch.Tensor, captions: torch.Tensor) -> float:
        """One SGD step with momentum on a batch; returns the batch's loss."""
        loss = self.net.loss(self.net.forward(x), captions)
        loss.backward()
        momentum_step(self.net.parameter_dict(), self.velocity, self.config.lr,
                      self.config.momentum)
        value = float(loss.detach())
        self.batch_losses.append(value)
        return value

    def evaluate(self, data: Data) -> dict[str, float]:
        """P@k and clean P@k on the test images (batches of the training size, the
        last one padded with zero images)."""
        logits = padded_batches(self.net.forward, data.x_test, self.config.batch_size)
        out = {}
        for k in KS:
            out[f"P@{k}"] = precision_at_k(logits, data.cap_test, k)
            out[f"clean P@{k}"] = precision_at_k(logits, data.topics[data.y_test], k)
        return out


def parse_args(argv: Sequence[str] | None) -> Config:
    d = Config()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--momentum", type=float, default=d.momentum)
    p.add_argument("--hidden", type=int, default=d.hidden)
    p.add_argument("--vocab", type=int, default=d.vocab, help="V, words in the vocabulary")
    p.add_argument("--topic", type=int, default=d.topic, help="words of each class's topic")
    p.add_argument("--bag", type=int, default=d.bag, help="L, words per caption")
    p.add_argument("--noise", type=float, default=d.noise,
                   help="probability that a caption word is uniform over the vocabulary")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--loss-backward", choices=("hand", "derived"), default=d.loss_backward)
    p.add_argument("--cache", default=None,
                   help="compilation cache file (default: tc's default cache)")
    p.add_argument("--no-cache", action="store_true", help="no on-disk compilation cache")
    p.add_argument("--max-batches", type=int, default=None,
                   help="stop each epoch after this many batches")
    p.add_argument("--no-torch", action="store_true", help="do not train the torch.nn twin")
    p.add_argument("--quick", action="store_true",
                   help="2 epochs of 10 batches, V = 1000 (the test's run)")
    p.add_argument("--quiet", action="store_true", help="print only the summary")
    a = p.parse_args(argv)
    if a.quick:
        a.epochs, a.max_batches, a.vocab = 2, 10, 1000
    if min(a.epochs, a.batch_size, a.vocab, a.topic, a.bag) < 1 or a.topic > a.vocab:
        p.error("sizes must be positive and --topic at most --vocab")
    return Config(epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, momentum=a.momentum,
                  hidden=a.hidden, vocab=a.vocab, topic=a.topic, bag=a.bag, noise=a.noise,
                  seed=a.seed, loss_backward=a.loss_backward, cache=a.cache,
                  use_cache=not a.no_cache, max_batches=a.max_batches,
                  torch_twin=not a.no_torch, quiet=a.quiet)


def main(argv: Sequence[str] | None = None) -> dict:
    """Train both models; print progress and the final precisions; return them.

    The result holds, per model (``"tc"``, and ``"torch"`` unless ``--no-torch``):
    ``batch_losses``, ``epoch_losses``, ``precisions`` (one dict of P@k and clean P@k
    per epoch), ``epoch_times`` (seconds); and ``config``, ``chance`` (the clean P@k of
    random words, percent).
    """
    c = parse_args(argv)
    say = (lambda *a: None) if c.quiet else print
    data = make_data(c)
    torch.manual_seed(c.seed)
    twin = TorchNet(c.hidden, c.vocab)
    cache: str | bool | None = (c.cache or True) if c.use_cache else None
    trainers = {"tc": Trainer(TcNet(twin.parameter_dict(), c.loss_backward, cache), c)}
    if c.torch_twin:
        trainers["torch"] = Trainer(twin, c)
    n_train = len(data.x_train)
    n_batches = n_train // c.batch_size
    if c.max_batches is not None:
        n_batches = min(n_batches, c.max_batches)
    chance = 100.0 * c.topic / c.vocab
    say(f"digits with captions: {n_train} train / {len(data.x_test)} test images, "
        f"vocabulary {c.vocab}, {c.bag} words a caption ({c.noise:.0%} noise), topics of "
        f"{c.topic}; {c.epochs} epochs of {n_batches} batches of {c.batch_size}; lr {c.lr}, "
        f"momentum {c.momentum}; tc loss backward: {c.loss_backward}; chance clean P@k "
        f"{chance:.2f}%")
    order = torch.Generator().manual_seed(c.seed)
    for epoch in range(c.epochs):
        perm = torch.randperm(n_train, generator=order)
        times = dict.fromkeys(trainers, 0.0)
        losses = dict.fromkeys(trainers, 0.0)
        for i in range(n_batches):
            idx = perm[i * c.batch_size:(i + 1) * c.batch_size]
            x, cap = data.x_train[idx], data.cap_train[idx]
            for name, t in trainers.items():
                start = time.perf_counter()
                losses[name] += t.step(x, cap)
                times[name] += time.perf_counter() - start
        line = [f"epoch {epoch + 1:3d}"]
        for name, t in trainers.items():
            start = time.perf_counter()
            t.precisions.append(t.evaluate(data))
            t.epoch_times.append(times[name] + time.perf_counter() - start)
            t.epoch_losses.append(losses[name] / n_batches)
            p = t.precisions[-1]
            line.append(f"{name}: loss {t.epoch_losses[-1]:.4f} P@1 {p['P@1']:5.1f}% "
                        f"P@5 {p['P@5']:5.1f}% clean P@5 {p['clean P@5']:5.1f}% "
                        f"({t.epoch_times[-1]:.1f} s)")
        say("  ".join(line))
    result: dict = {"config": c, "chance": chance}
    for name, t in trainers.items():
        result[name] = {"batch_losses": t.batch_losses, "epoch_losses": t.epoch_losses,
                        "precisions": t.precisions, "epoch_times": t.epoch_times}
        final = t.precisions[-1]
        later = sorted(t.epoch_times[1:]) or t.epoch_times
        print(f"{name:5s} " + ", ".join(f"{k} {v:.1f}%" for k, v in final.items())
              + f" (first epoch {t.epoch_times[0]:.1f} s, then a median "
              f"{later[len(later) // 2]:.2f} s an epoch)")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
