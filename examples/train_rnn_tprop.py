"""A character-level RNN language model in TC, trained by BPTT and by target propagation.

The model reads text one character at a time and predicts the next one::

    x_t = Emb[c_t]                                  (torch: an embedding lookup)
    h_t = tanh(h_{t-1} Wh + x_t Wx + b)             (TC: rnn_cell)
    p(c_{t+1}) = softmax(h_t Wo + bo)               (torch: the output layer)

The corpus is the docstrings of a fixed list of standard-library modules (and of
their public classes, functions and methods), gathered at run time with ``inspect``
in sorted order: no download, the same text on every run of the same Python
(docstrings change between Python versions). Characters outside printable ASCII
become ``?``; the last 10% is the validation text. Both sets are cut into ``B``
parallel streams read ``T`` characters at a time; the hidden state is carried from
one window to the next (truncated training, the state detached).

Two training methods, each run twice from the same initial weights on the same
windows: with the TC definitions of :data:`LANG` (``tc.define(..., backend="cpu")``,
gradients derived by tc) and with the same computation written in plain torch:

* **BPTT**: the loss of a window, back-propagated through its ``T`` steps; tc's
  derived backward of ``rnn_cell`` gives every step's gradient.
* **TPROP**, difference target propagation (Lee, Zhang, Fischer, Bengio 2015) as
  applied to RNN language models by Wiseman, Chopra, Ranzato, Szlam, Sun, Chintala,
  Vasilache (2017, "Training language models using target-propagation",
  arXiv:1702.04770). A learned approximate inverse ``g(h_t, x_t) ~ h_{t-1}``
  (TC: ``rnn_inverse``, ``tanh(h_t Vh + x_t Vx + c)``) carries targets back in time:

  1. forward pass without gradients: ``h_1 .. h_T``;
  2. ``d_t`` = gradient of the step-t loss with respect to ``h_t`` through the output
     layer alone (which also gives the output layer's gradient);
  3. targets, from the last step back: ``th_T = h_T - eta d_T``, then
     ``th_t = h_t - eta d_t + g(th_{t+1}, x_{t+1}) - g(h_{t+1}, x_{t+1})``
     (the difference correction, fused with the step in the TC ``dtp_target``);
  4. the cell is trained locally, all steps in one batched call of ``rnn_cell``
     (batch ``T*B``): loss ``|f(h_{t-1}, x_t) - th_t|^2 / 2`` with ``h_{t-1}`` and
     the target held fixed (tc's derived backward gives Wh, Wx, b and the embedding's
     gradient);
  5. the inverse is trained to undo the cell around the visited states, with noise:
     ``|g(f(h~, x_t), x_t) - h~|^2 / 2``, ``h~ = h_{t-1} + sigma N(0, 1)``.

  No gradient crosses a time step. Every parameter uses Adam; gradients are clipped
  to norm ``--clip`` in both methods.
* **local** (``--methods ... local``, an ablation): TPROP with the targets
  ``th_t = h_t - eta d_t`` alone, no target crossing a time step (the inverse is
  still trained, only to report its error).

Each epoch prints, for every run, the mean training loss (nats per character), the
validation loss and perplexity (exp of the loss per character) and the time taken.
The end compares the tc and torch runs of each method and prints how many programs
tc compiled: each definition compiles once (the CPU kernels take sizes as arguments,
so the batched ``T*B`` call and the ``B`` calls share one kernel).

Usage::

    python examples/train_rnn_tprop.py                  # the full run (a few minutes)
    python examples/train_rnn_tprop.py --quick          # seconds: what the test runs
    python examples/train_rnn_tprop.py --methods bptt --no-torch --epochs 2
    python examples/train_rnn_tprop.py --cache /tmp/c.sqlite   # tc's kernels stored

What was observed
-----------------
``--methods bptt tprop local`` with the default settings (198,720 characters, 90% for
training: 175 windows of 32x32 per epoch; embedding 32, hidden 128, Adam 3e-3, 5
epochs), run on
2026-12-04 from 10:45 to 10:50 UTC on the 2 cores shared with other work (load
average 4.9 at the start, 4.4 at the end); ``local`` is an ablation: TPROP's training
with targets ``h_t - eta d_t`` alone, no target crossing a time step. Validation
perplexity after each epoch (character unigram: 25.12;
``benchmarks/results/rnn-tprop-2026-12-04.md``)::

    BPTT   10.44  8.33  7.56  7.22  7.02
    TPROP  10.99  9.06  8.37  8.07  7.93   (inverse error 0.72 -> 0.49)
    local  10.83  8.82  8.16  7.82  7.64

* tc against torch: the same numbers to every printed decimal. BPTT's window losses
  differ by at most 1.4e-6, the validation losses by 6e-8; TPROP's by 3.2e-4 and
  9e-6 (its target chain through the inverse amplifies rounding differences).
* TPROP trains (25 -> 7.9) but ends 13% above BPTT's perplexity, and also above the
  local ablation: the inverse reconstructs ``h_{t-1}`` with about 50% relative error,
  so its difference correction brings more noise than credit from later steps.
  Trials (the torch twin, 3 epochs, the same data): an inverse step size of 3e-3, 1e-3, 3e-4 gave
  9.39, 8.69, 8.37 (the slower the inverse learns, the better); ``eta`` 0.01, 0.03,
  0.1, 0.3, 1 gave 8.81, 8.69, 9.08, 9.47, 11.83 (inverse 1e-3); local 8.16, BPTT 7.56.
* Time for 5 epochs: tc BPTT 49 s, TPROP 95 s, local 77 s; torch 8, 12 and 9 s (an
  earlier run at load 7.4, with the same perplexities: tc 92, 133 and 75 s). The tc
  kernels run one thread, about 1 ms a call at these sizes; TPROP's sequential target
  pass costs as many calls as the forward pass, and its local losses and inverse
  train on batches of T*B.
* tc compiled each of the five programs (three definitions, two derived backwards)
  once; the batch-B and batch-T*B calls share the kernel.

The paper's abstract: "extensive experiments suggest that TPROP generally
underperforms BPTT" on its language-modelling tasks (it ends with an analysis of why).
This small run agrees in direction: target propagation trains, well below the
unigram perplexity, but stays behind BPTT. Only the tanh RNN cell is implemented (no
GRU), and ``eta``, ``sigma`` and the step sizes were set by the few trials above.
"""

from __future__ import annotations

import os

# One OpenMP thread, unless asked otherwise, set before torch loads the OpenMP runtime
# that tc's kernels share: on two cores busy with other work (load average 4 to 9),
# two threads made a call of rnn_cell 9 to 18x slower (5 to 16 ms against 0.6 to
# 0.9 ms), and torch.set_num_threads(1) alone left a training epoch up to 4x slower
# than OMP_NUM_THREADS=1.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import importlib  # noqa: E402
import inspect  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import string  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from dataclasses import asdict, dataclass, replace  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import tc  # noqa: E402
from codegen.stats import COUNTERS  # noqa: E402

#: The cell, its approximate inverse and the fused target step.
LANG = """
def rnn_cell(float(B, H) h, float(B, E) x, float(H, H) Wh, float(E, H) Wx, float(H) b)
    -> (hn) {
    pre(n, j) +=! h(n, k) * Wh(k, j)
    pre(n, j) += x(n, e) * Wx(e, j)
    hn(n, j) = tanh(pre(n, j) + b(j))
}

def rnn_inverse(float(B, H) h, float(B, E) x, float(H, H) Vh, float(E, H) Vx, float(H) c)
    -> (hp) {
    pre(n, j) +=! h(n, k) * Vh(k, j)
    pre(n, j) += x(n, e) * Vx(e, j)
    hp(n, j) = tanh(pre(n, j) + c(j))
}

def dtp_target(float(B, H) tnext, float(B, H) hnext, float(B, E) xnext, float(B, H) h,
               float(B, H) d, float(H, H) Vh, float(E, H) Vx, float(H) c, float eta)
    -> (target) {
    gt(n, j) +=! tnext(n, k) * Vh(k, j)
    gh(n, j) +=! hnext(n, k) * Vh(k, j)
    gx(n, j) +=! xnext(n, e) * Vx(e, j)
    target(n, j) = h(n, j) - eta * d(n, j)
        + tanh(gt(n, j) + gx(n, j) + c(j)) - tanh(gh(n, j) + gx(n, j) + c(j))
}
"""

#: Standard-library modules whose docstrings make the corpus, in this order.
MODULES = (
    "abc", "argparse", "ast", "base64", "bisect", "calendar", "collections",
    "contextlib", "copy", "csv", "dataclasses", "datetime", "decimal", "difflib",
    "enum", "fractions", "functools", "heapq", "inspect", "io", "ipaddress",
    "itertools", "json", "logging", "math", "operator", "os", "pathlib", "pickle",
    "pprint", "random", "re", "shutil", "statistics", "string", "struct",
    "subprocess", "tarfile", "textwrap", "threading", "typing", "unittest", "uuid",
    "zipfile",
)
ALPHABET = "".join(ch for ch in string.printable if ch not in "\t\r\x0b\x0c")


@dataclass(frozen=True)
class Config:
    """The run's settings (the command-line options)."""

    epochs: int = 5
    batch: int = 32
    steps: int = 32  # T, the window length
    embed: int = 32
    hidden: int = 128
    lr: float = 3e-3
    inverse_lr: float = 3e-4
    eta: float = 0.03
    sigma: float = 0.1
    clip: float = 1.0
    chars: int = 200_000
    methods: tuple[str, ...] = ("bptt", "tprop")
    torch_twin: bool = True
    seed: int = 0
    cache: str | None = None
    use_cache: bool = True
    quiet: bool = False
    json: str | None = None


QUICK = dict(epochs=2, batch=8, steps=8, embed=8, hidden=32, chars=6_000)


# -- the corpus ----------------------------------------------------------------------

def _docstrings(modules: Sequence[str]) -> list[str]:
    """Docstrings of the modules and of their public classes, functions, methods."""
    docs: list[str] = []
    seen: set[str] = set()

    def add(obj: object) -> None:
        doc = inspect.getdoc(obj)
        if doc and doc not in seen:
            seen.add(doc)
            docs.append(doc)

    for name in modules:
        module = importlib.import_module(name)
        add(module)
        for attr in sorted(vars(module)):
            obj = vars(module)[attr]
            if attr.startswith("_") or getattr(obj, "__module__", None) != name:
                continue
            add(obj)
            if inspect.isclass(obj):
                for member in sorted(vars(obj)):
                    if not member.startswith("_"):
                        add(vars(obj)[member])
    return docs


def corpus(chars: int) -> str:
    """The first ``chars`` characters of the docstrings, non-ASCII replaced by ``?``."""
    text = "\n\n".join(_docstrings(MODULES))[:chars]
    allowed = set(ALPHABET)
    return "".join(ch if ch in allowed else "?" for ch in text)


@dataclass(frozen=True)
class Data:
    """Train and validation streams: int64 (B, length) character ids."""

    train: torch.Tensor
    valid: torch.Tensor
    vocab: int
    unigram_ppl: float


def load_data(cfg: Config) -> Data:
    text = corpus(cfg.chars)
    ids = torch.tensor([ALPHABET.index(ch) for ch in text], dtype=torch.int64)
    cut = int(len(ids) * 0.9)

    def streams(part: torch.Tensor) -> torch.Tensor:
        # B rows, a whole number of windows plus the one character predicted last
        length = ((len(part) // cfg.batch - 1) // cfg.steps) * cfg.steps + 1
        return part[: cfg.batch * length].view(cfg.batch, length)

    counts = torch.bincount(ids[:cut], minlength=len(ALPHABET)).double() + 1
    p = counts / counts.sum()
    valid_p = p[ids[cut:]]
    return Data(streams(ids[:cut]), streams(ids[cut:]), len(ALPHABET),
                math.exp(-valid_p.log().mean().item()))


# -- the two implementations of the same three functions ---------------------------

@dataclass(frozen=True)
class Ops:
    """The cell, the inverse and the target step: TC entry points or torch code."""

    name: str
    cell: Callable[..., torch.Tensor]
    inverse: Callable[..., torch.Tensor]
    target: Callable[..., torch.Tensor]


def _torch_cell(h, x, Wh, Wx, b):
    return torch.tanh(h @ Wh + x @ Wx + b)


def _torch_target(tnext, hnext, xnext, h, d, Vh, Vx, c, eta):
    gx = xnext @ Vx
    return h - eta * d + torch.tanh(tnext @ Vh + gx + c) - torch.tanh(hnext @ Vh + gx + c)


TORCH_OPS = Ops("torch", _torch_cell, _torch_cell, _torch_target)


def tc_ops(cfg: Config) -> Ops:
    cache: bool | str | None = (cfg.cache or True) if cfg.use_cache else None
    T = tc.define(LANG, backend="cpu", cache=cache)
    return Ops("tc", T.rnn_cell, T.rnn_inverse, T.dtp_target)


# -- the model -----------------------------------------------------------------------

def init_params(cfg: Config, vocab: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(cfg.seed)
    H, E = cfg.hidden, cfg.embed

    def u(*shape: int, scale: float) -> torch.Tensor:
        return (torch.rand(*shape, generator=g) * 2 - 1) * scale

    return {
        "Emb": torch.randn(vocab, E, generator=g) * 0.5,
        "Wh": u(H, H, scale=H ** -0.5), "Wx": u(E, H, scale=E ** -0.5),
        "b": torch.zeros(H),
        "Wo": u(H, vocab, scale=H ** -0.5), "bo": torch.zeros(vocab),
        "Vh": u(H, H, scale=H ** -0.5), "Vx": u(E, H, scale=E ** -0.5),
        "c": torch.zeros(H),
    }


FORWARD = ("Emb", "Wh", "Wx", "b", "Wo", "bo")
INVERSE = ("Vh", "Vx", "c")


def output_loss(P: dict[str, torch.Tensor], hs: torch.Tensor, targets: torch.Tensor):
    """Mean cross-entropy of the (T, B, H) states predicting (B, T) next characters."""
    logits = hs @ P["Wo"] + P["bo"]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.t().reshape(-1))


def run_states(ops: Ops, P: dict[str, torch.Tensor], h: torch.Tensor,
               xs: torch.Tensor) -> torch.Tensor:
    """The (T, B, H) states of the window's (T, B, E) inputs, starting from h."""
    out = []
    for t in range(xs.shape[0]):
        h = ops.cell(h, xs[t], P["Wh"], P["Wx"], P["b"])
        out.append(h)
    return torch.stack(out)


def bptt_step(ops: Ops, P, h0: torch.Tensor, inputs, targets, cfg: Config):
    xs = P["Emb"][inputs.t()]  # (T, B, E)
    # h0 requires grad so that every step's call has the same backward signature
    hs = run_states(ops, P, h0.detach().requires_grad_(True), xs)
    loss = output_loss(P, hs, targets)
    loss.backward()
    return loss.item(), hs[-1].detach()


def tprop_step(ops: Ops, P, h0: torch.Tensor, inputs, targets, cfg: Config,
               noise: torch.Generator, propagate: bool = True):
    T, B = inputs.shape[1], inputs.shape[0]
    xs = P["Emb"][inputs.t()]  # (T, B, E), differentiable: the cell's local loss trains it
    with torch.no_grad():  # 1. forward
        hs = run_states(ops, P, h0, xs)
    prev = torch.cat([h0[None], hs[:-1]])  # h_{t-1} of each step
    # 2. the output layer's gradient and each step's d_t (of the summed loss)
    leaf = hs.clone().requires_grad_(True)
    loss = output_loss(P, leaf, targets)
    loss.backward()
    d = leaf.grad * (T * B)
    # 3. targets, from the last step back
    with torch.no_grad():
        xd = xs.detach()
        tgt = [hs[-1] - cfg.eta * d[-1]]
        for t in range(T - 2, -1, -1):
            if propagate:
                tgt.append(ops.target(tgt[-1], hs[t + 1], xd[t + 1], hs[t], d[t],
                                      P["Vh"], P["Vx"], P["c"], cfg.eta))
            else:  # the "local" ablation: no target crosses a time step
                tgt.append(hs[t] - cfg.eta * d[t])
        tgt = torch.stack(tgt[::-1])
    # 4. the cell's local loss, all steps in one call of batch T*B
    H = hs.shape[-1]
    flat_prev = prev.reshape(T * B, H).detach().requires_grad_(True)
    pred = ops.cell(flat_prev, xs.reshape(T * B, -1), P["Wh"], P["Wx"], P["b"])
    ((pred - tgt.reshape(T * B, H)).square().sum() / (2 * T * B)).backward()
    # 5. the inverse, around the visited states, with noise
    with torch.no_grad():
        noisy = prev.reshape(T * B, H) + cfg.sigma * torch.randn(T * B, H, generator=noise)
        fx = ops.cell(noisy, xd.reshape(T * B, -1), P["Wh"], P["Wx"], P["b"])
    rec = ops.inverse(fx, xd.reshape(T * B, -1), P["Vh"], P["Vx"], P["c"])
    inv_loss = (rec - noisy).square().sum() / (T * B)
    (inv_loss / 2).backward()
    # the inverse's relative reconstruction error, |g(f(h~)) - h~| / |h~|
    return loss.item(), hs[-1], math.sqrt(inv_loss.item() / noisy.square().mean().item() / H)


@torch.no_grad()
def evaluate(ops: Ops, P, stream: torch.Tensor, cfg: Config) -> float:
    """Mean cross-entropy per character of the validation streams."""
    h = torch.zeros(cfg.batch, cfg.hidden)
    total, n = 0.0, 0
    for k in range(0, stream.shape[1] - 1, cfg.steps):
        inputs, targets = stream[:, k:k + cfg.steps], stream[:, k + 1:k + cfg.steps + 1]
        hs = run_states(ops, P, h, P["Emb"][inputs.t()])
        total += output_loss(P, hs, targets).item() * targets.numel()
        n += targets.numel()
        h = hs[-1]
    return total / n


def train(method: str, ops: Ops, init: dict[str, torch.Tensor], data: Data,
          cfg: Config) -> dict:
    """Trains a copy of ``init``; returns the per-window and per-epoch losses."""
    P = {k: v.clone().requires_grad_(True) for k, v in init.items()}
    names = FORWARD + (INVERSE if method != "bptt" else ())
    opt = torch.optim.Adam([P[k] for k in FORWARD], lr=cfg.lr)
    inv_opt = torch.optim.Adam([P[k] for k in INVERSE], lr=cfg.inverse_lr)
    noise = torch.Generator().manual_seed(cfg.seed + 1)
    windows, epochs = [], []
    for epoch in range(cfg.epochs):
        start = time.perf_counter()
        h = torch.zeros(cfg.batch, cfg.hidden)
        losses, errors = [], []
        for k in range(0, data.train.shape[1] - 1, cfg.steps):
            inputs = data.train[:, k:k + cfg.steps]
            targets = data.train[:, k + 1:k + cfg.steps + 1]
            for name in names:
                P[name].grad = None
            if method == "bptt":
                loss, h = bptt_step(ops, P, h, inputs, targets, cfg)
            else:
                loss, h, err = tprop_step(ops, P, h, inputs, targets, cfg, noise,
                                          propagate=method == "tprop")
                errors.append(err)
                torch.nn.utils.clip_grad_norm_([P[k] for k in INVERSE], cfg.clip)
                inv_opt.step()
            torch.nn.utils.clip_grad_norm_([P[k] for k in FORWARD], cfg.clip)
            opt.step()
            losses.append(loss)
        valid = evaluate(ops, P, data.valid, cfg)
        row = {"epoch": epoch + 1, "train": sum(losses) / len(losses), "valid": valid,
               "ppl": math.exp(valid), "seconds": time.perf_counter() - start}
        row_err = ""
        if errors:
            row["inverse_error"] = sum(errors) / len(errors)
            row_err = f"  inverse error {row['inverse_error']:.3f}"
        windows += losses
        epochs.append(row)
        if not cfg.quiet:
            print(f"  {method:5s} {ops.name:5s} epoch {row['epoch']}: train {row['train']:.4f}"
                  f"  valid {valid:.4f}  ppl {row['ppl']:6.2f}{row_err}  ({row['seconds']:.1f} s)",
                  flush=True)
    return {"windows": windows, "epochs": epochs}


# -- the command line ----------------------------------------------------------------

def parse_args(argv: Sequence[str] | None) -> Config:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    d = Config()
    p.add_argument("--quick", action="store_true",
                   help="a tiny model on 6000 characters for 2 epochs (the test)")
    for name in ("epochs", "batch", "steps", "embed", "hidden", "chars", "seed"):
        p.add_argument(f"--{name}", type=int, default=None,
                       help=f"default {getattr(d, name)}"
                       + (f" (--quick: {QUICK[name]})" if name in QUICK else ""))
    for name in ("lr", "inverse_lr", "eta", "sigma", "clip"):
        p.add_argument(f"--{name.replace('_', '-')}", type=float, default=None,
                       dest=name, help=f"default {getattr(d, name)}")
    p.add_argument("--methods", nargs="+", choices=("bptt", "tprop", "local"), default=None,
                   help="default: bptt tprop; local: TPROP without the inverse (ablation)")
    p.add_argument("--no-torch", action="store_true", help="skip the plain-torch runs")
    p.add_argument("--cache", default=None, help="compilation cache file (default: tc's)")
    p.add_argument("--no-cache", action="store_true", help="no compilation cache")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--json", default=None, help="also write the results to this file")
    a = p.parse_args(argv)
    cfg = replace(d, **QUICK) if a.quick else d
    given = {k: v for k, v in vars(a).items()
             if v is not None and k in Config.__dataclass_fields__
             and k not in ("quiet", "json")}
    given["methods"] = tuple(a.methods) if a.methods else cfg.methods
    return replace(cfg, **given, torch_twin=not a.no_torch, use_cache=not a.no_cache,
                   quiet=a.quiet, json=a.json)


def main(argv: Sequence[str] | None = None) -> dict:
    cfg = parse_args(argv)
    torch.manual_seed(cfg.seed)
    t0 = time.perf_counter()
    data = load_data(cfg)
    say = (lambda *a: None) if cfg.quiet else print
    say(f"corpus: {data.train.numel() + data.valid.numel()} characters "
        f"({time.perf_counter() - t0:.2f} s), vocabulary {data.vocab}, "
        f"{data.train.shape[1] // cfg.steps} windows of {cfg.batch}x{cfg.steps} per epoch; "
        f"validation unigram perplexity {data.unigram_ppl:.2f}")
    say(f"model: embed {cfg.embed}, hidden {cfg.hidden}, Adam lr {cfg.lr}"
        + (f"; tprop eta {cfg.eta}, sigma {cfg.sigma}, inverse lr {cfg.inverse_lr}"
           if "tprop" in cfg.methods else ""))
    init = init_params(cfg, data.vocab)
    before = COUNTERS.copy()
    ops = [tc_ops(cfg)] + ([TORCH_OPS] if cfg.torch_twin else [])
    result: dict = {"config": cfg, "unigram_ppl": data.unigram_ppl}
    for method in cfg.methods:
        for op in ops:
            say(f"{method} with {op.name}:")
            result[f"{method}/{op.name}"] = train(method, op, init, data, cfg)
    compiled = COUNTERS["compile_program"] - before["compile_program"]
    loaded = COUNTERS["cc_load_binary"] - before["cc_load_binary"]
    result["compiled"], result["loaded"] = compiled, loaded
    say("\nsummary (validation perplexity per epoch):")
    for key, run in result.items():
        if isinstance(run, dict) and "epochs" in run:
            ppl = " ".join(f"{r['ppl']:.2f}" for r in run["epochs"])
            secs = sum(r["seconds"] for r in run["epochs"])
            say(f"  {key:12s} {ppl}   ({secs:.0f} s)")
    for method in cfg.methods:
        if cfg.torch_twin:
            a, b = result[f"{method}/tc"], result[f"{method}/torch"]
            gap = max(abs(x - y) for x, y in zip(a["windows"], b["windows"], strict=True))
            first = abs(a["windows"][0] - b["windows"][0])
            vgap = max(abs(x["valid"] - y["valid"])
                       for x, y in zip(a["epochs"], b["epochs"], strict=True))
            result[f"{method}/gap"] = {"first": first, "max_window": gap, "max_valid": vgap}
            say(f"  {method} tc vs torch: first window loss differs by {first:.1e}, "
                f"any window by at most {gap:.1e}, validation loss by at most {vgap:.1e}")
    say(f"tc kernels: {compiled} programs compiled, {loaded} loaded from the cache "
        f"({len(cfg.methods)} methods, batches {cfg.batch} and {cfg.batch * cfg.steps})")
    result["config"] = asdict(cfg)
    if cfg.json:
        with open(cfg.json, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
