"""Is a benchmark cell right? Its outputs against the float64 truth, with eager's own
error as the yardstick, and the references that return views of their inputs.

:func:`checker` accepts a cell whose outputs are within the kernel's rtol/atol of the
float64 truth (the torch reference run on the inputs widened to float64), or at most
:data:`EAGER_FACTOR` times as far from it as eager is (plus atol): a long float32
reduction moves with its summation order, and eager is not exact either. Integer and
bool outputs, and kernels without that truth, are compared with eager's within the
tolerance. Each check records the cell's error and eager's (:class:`Accuracy`).

A reference returning a view of its input copies nothing while tc writes its result:
:func:`aliasing_outputs` finds those outputs and :func:`materialising` times the
reference followed by the copy, so the comparison is fair.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from tc import catalogue

log = logging.getLogger(__name__)

Outputs = torch.Tensor | tuple[torch.Tensor, ...]


#: The dtypes whose inputs the float64 truth widens (integer inputs stay as they are).
WIDENED = (torch.float32, torch.float16, torch.bfloat16)
#: How many times eager's distance to the float64 truth a cell may be (plus ``atol``).
EAGER_FACTOR = 4.0


@dataclass(frozen=True)
class Accuracy:
    """How far a cell's outputs are from the float64 truth, per output, next to how
    far torch eager's are: ``errors[i]`` = max |cell - truth| and ``eager_errors[i]``
    = max |eager - truth| of output ``i`` (None for an output compared with eager's
    within the tolerance, as without a truth: an integer or bool one). ``rule``: what
    accepted the cell: ``"tolerance"`` (the catalogue's rtol/atol against the truth),
    ``"4x eager"`` (at most ``EAGER_FACTOR`` x eager's error + atol, outside the
    tolerance: summation order) or ``"wrong"``; ``"reference"`` for the eager cell."""

    errors: tuple[float | None, ...]
    eager_errors: tuple[float | None, ...]
    rule: str

    def describe(self) -> str:
        """``vs float64: max |error| 8.9e-05 (eager's 6.8e-05)``, per float output."""
        parts = []
        for i, (err, ee) in enumerate(zip(self.errors, self.eager_errors, strict=True)):
            if err is None:
                continue
            what = (f"{err:.3g}" if self.rule == "reference"
                    else f"{err:.3g} (eager's {ee:.3g})")
            parts.append(f"output {i} {what}" if len(self.errors) > 1 else what)
        if not parts:
            return ""
        text = "vs float64: max |error| " + ", ".join(parts)
        if self.rule == "4x eager":
            text += (f"; outside the tolerance, within {EAGER_FACTOR:g}x eager's error "
                     "+ atol (summation order)")
        return text


def _tuple(outputs: Outputs) -> tuple[torch.Tensor, ...]:
    return (outputs,) if isinstance(outputs, torch.Tensor) else tuple(outputs)


def mismatch(actual: Outputs, expected: Outputs, rtol: float, atol: float) -> str | None:
    """None when ``actual`` matches ``expected`` within ``|a - e| <= atol + rtol |e|``
    (NaN where both are NaN); else what differs: output count, shape or largest error."""
    got, want = _tuple(actual), _tuple(expected)
    if len(got) != len(want):
        return f"{len(got)} outputs, expected {len(want)}"
    for i, (a, e) in enumerate(zip(got, want, strict=True)):
        a, e = a.detach().cpu().double(), e.detach().cpu().double()
        if a.shape != e.shape:
            return f"output {i}: shape {tuple(a.shape)}, expected {tuple(e.shape)}"
        if not torch.allclose(a, e, rtol=rtol, atol=atol, equal_nan=True):
            # NaN where both are NaN agrees; NaN on one side only is an infinite error.
            diff = (a - e).abs().masked_fill(a.isnan() & e.isnan(), 0.0)
            err = diff.nan_to_num(nan=float("inf")).max().item()
            return f"output {i}: max |error| {err:.3g} (rtol {rtol:g}, atol {atol:g})"
    return None


def aliasing_outputs(outputs: Outputs, inputs: Sequence[torch.Tensor]) -> tuple[bool, ...]:
    """Per output, whether it shares memory with an input (a view or the input itself,
    rather than a result written to memory of its own)."""
    storages = {t.untyped_storage().data_ptr() for t in inputs if t.numel()}
    return tuple(bool(o.numel()) and o.untyped_storage().data_ptr() in storages
                 for o in _tuple(outputs))


def aliases_input(outputs: Outputs, inputs: Sequence[torch.Tensor]) -> bool:
    """Whether an output shares memory with an input (a view rather than a result)."""
    return any(aliasing_outputs(outputs, inputs))


def _materialise(t: torch.Tensor) -> torch.Tensor:
    """A copy of ``t`` in memory of its own, laid out as tc writes its results: the
    contiguous copy of a strided view, else a clone."""
    return t.clone() if t.is_contiguous() else t.contiguous()


def materialising(reference: Callable[..., Outputs], alias: Sequence[bool]
                  ) -> Callable[..., Outputs]:
    """``reference`` followed by a copy of each output flagged in ``alias`` (see
    :func:`aliasing_outputs`): a reference that returns a view of its input does no
    work, while tc writes every result, so torch is timed making that copy too."""
    if not any(alias):
        return reference

    def materialised(*args: torch.Tensor) -> Outputs:
        out = reference(*args)
        if isinstance(out, torch.Tensor):
            return _materialise(out) if alias[0] else out
        return type(out)(_materialise(o) if a else o for o, a in zip(out, alias, strict=True))

    return materialised


def _short(e: BaseException) -> str:
    """The exception's first line; when that line only introduces what follows (a C
    compiler's command ending in ":"), with the first diagnostic that says "error"."""
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    first = lines[0] if lines else ""
    if first.endswith(":") and len(lines) > 1:
        first += " " + next((ln for ln in lines[1:] if "error" in ln), lines[1])
    return f"{type(e).__name__}: {first}"[:400]


def _widen(t: torch.Tensor) -> torch.Tensor:
    return t.double() if t.dtype in WIDENED else t


def float64_truth(kernel: catalogue.Kernel, inputs: Sequence[torch.Tensor]
                  ) -> tuple[torch.Tensor, ...] | None:
    """The torch reference computed on the inputs converted to float64 (float32,
    float16 and bfloat16 ones; integer inputs as they are): the exact result, to
    float64 rounding. None where the reference does not run so, or when no input is
    widened (then the truth would be eager itself)."""
    if not any(t.dtype in WIDENED for t in inputs):
        return None
    try:
        return _tuple(kernel.reference(*(_widen(t) for t in inputs)))
    except Exception as e:  # a reference tied to its dtypes: no ground truth
        log.debug("%s: no float64 reference: %s", kernel.name, _short(e))
        return None


def _max_error(a: torch.Tensor, e: torch.Tensor) -> float:
    """max |a - e| in float64 (0 where both are NaN; a NaN on one side only is inf)."""
    a, e = a.detach().cpu().double(), e.detach().cpu().double()
    diff = (a - e).abs().masked_fill(a.isnan() & e.isnan(), 0.0)
    return diff.nan_to_num(nan=float("inf")).max().item() if diff.numel() else 0.0


def _close(a: torch.Tensor, e: torch.Tensor, rtol: float, atol: float) -> bool:
    return torch.allclose(a.detach().cpu().double(), e.detach().cpu().double(), rtol=rtol,
                          atol=atol, equal_nan=True)


Check = Callable[[Outputs], tuple[str | None, Accuracy | None]]


def checker(expected: Outputs, truth: Sequence[torch.Tensor] | None, rtol: float,
            atol: float) -> Check:
    """A check of a cell's outputs against torch eager's (``expected``) and the float64
    ``truth`` (:func:`float64_truth`): ``(why wrong or None, accuracy or None)``.

    Per output: a float output with a truth is right when it is within the kernel's
    tolerance of the truth, or at most ``EAGER_FACTOR`` times as far from it as eager
    is (plus ``atol``): a float32 reduction over hundreds of terms differs from eager's
    by its summation order, and eager is not exact either. Other outputs (integer,
    bool, or no truth) are compared with eager's within the tolerance, as always."""
    want = _tuple(expected)
    if truth is not None and (len(truth) != len(want) or any(
            t.shape != e.shape for t, e in zip(truth, want, strict=True))):
        truth = None
    use_truth = tuple(truth is not None and e.is_floating_point() and t.is_floating_point()
                      for e, t in zip(want, truth or want, strict=True))
    eager_err = tuple(_max_error(e, t) if u else None
                      for e, t, u in zip(want, truth or want, use_truth, strict=True))

    def check(actual: Outputs) -> tuple[str | None, Accuracy | None]:
        got = _tuple(actual)
        if len(got) != len(want):
            return f"{len(got)} outputs, expected {len(want)}", None
        for i, (a, e) in enumerate(zip(got, want, strict=True)):
            if a.shape != e.shape:
                return f"output {i}: shape {tuple(a.shape)}, expected {tuple(e.shape)}", None
        errors: list[float | None] = []
        wrong: list[str] = []
        beyond = False
        for i, (a, e, u) in enumerate(zip(got, want, use_truth, strict=True)):
            if not u:
                errors.append(None)
                bad = mismatch(a, e, rtol, atol)
                if bad:
                    wrong.append(bad.replace("output 0", f"output {i}", 1))
                continue
            t, ee = truth[i], eager_err[i]
            err = _max_error(a, t)
            errors.append(err)
            if _close(a, t, rtol, atol):
                continue
            if err <= EAGER_FACTOR * ee + atol:
                beyond = True
                continue
            vs_eager = mismatch(a, e, rtol, atol) or f"output {i}: within the tolerance of eager"
            wrong.append(f"{vs_eager.replace('output 0', f'output {i}', 1)}; vs float64: max "
                         f"|error| {err:.3g}, over the tolerance and {EAGER_FACTOR:g}x "
                         f"eager's {ee:.3g} + atol")
        rule = "wrong" if wrong else "4x eager" if beyond else "tolerance"
        accuracy = Accuracy(tuple(errors), eager_err, rule) if any(use_truth) else None
        return ("; ".join(wrong) or None), accuracy

    return check


def reference_accuracy(expected: Outputs, truth: Sequence[torch.Tensor] | None
                       ) -> Accuracy | None:
    """Torch eager's own distance to the float64 truth (the eager cell's record)."""
    want = _tuple(expected)
    if truth is None or len(truth) != len(want):
        return None
    errors = tuple(_max_error(e, t) if e.is_floating_point() and t.is_floating_point()
                   and e.shape == t.shape else None for e, t in zip(want, truth, strict=True))
    if all(err is None for err in errors):
        return None
    return Accuracy(errors, errors, "reference")
