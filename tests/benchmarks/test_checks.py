"""The runner's correctness check of a cell (``benchmarks.checks.checker``: against the
float64 truth, with eager's own error as the yardstick), its detection of references
that return views (``aliasing_outputs``) and the copy it times them with."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import tc
from benchmarks import report as report_mod
from benchmarks import runner
from benchmarks.checks import (
    EAGER_FACTOR,
    Accuracy,
    aliases_input,
    aliasing_outputs,
    checker,
    float64_truth,
    materialising,
)
from benchmarks.runner import Settings, bench_kernel
from tc import catalogue

FAST = Settings(runs=1, warmup=0, torch_compile=False, tune=False, cache_latency=False)


def _sums(n: int = 4096) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A long float32 reduction summed two ways, and its float64 truth."""
    x = torch.randn(8, n, generator=torch.Generator().manual_seed(0))
    eager = x.sum(1)
    other = x.flip(1).cumsum(1)[:, -1]  # another summation order
    return eager, other, x.double().sum(1)


def test_summation_order_noise_is_accepted_beyond_the_tolerance() -> None:
    eager, other, truth = _sums()
    check = checker(eager, (truth,), rtol=0.0, atol=0.0)  # a tolerance nothing meets
    bad, acc = check(other)
    assert bad is None and acc.rule == "4x eager"
    assert acc.errors[0] == pytest.approx((other.double() - truth).abs().max().item())
    assert acc.eager_errors[0] == pytest.approx((eager.double() - truth).abs().max().item())
    assert acc.errors[0] <= EAGER_FACTOR * acc.eager_errors[0]
    assert "vs float64: max |error|" in acc.describe() and "eager's" in acc.describe()


def test_a_wrong_result_is_still_wrong() -> None:
    eager, _, truth = _sums()
    check = checker(eager, (truth,), rtol=1e-4, atol=1e-5)
    bad, acc = check(eager + 1.0)
    assert bad.startswith("output 0: max |error| 1 ") and "vs float64" in bad
    assert acc.rule == "wrong" and acc.errors[0] == pytest.approx(1.0, abs=1e-3)
    assert checker(eager, None, 1e-4, 1e-5)(eager + 1.0)[0] is not None  # no truth


def test_more_than_4x_eager_error_outside_the_tolerance_is_wrong() -> None:
    truth = torch.zeros(4, dtype=torch.float64)
    eager = torch.tensor([1e-3, 0.0, 0.0, 0.0])  # eager's error: 1e-3
    check = checker(eager, (truth,), rtol=1e-4, atol=1e-5)
    assert check(torch.tensor([0.0, 4e-3, 0.0, 0.0]))[1].rule == "4x eager"
    bad, acc = check(torch.tensor([0.0, 5e-3, 0.0, 0.0]))
    assert bad is not None and acc.rule == "wrong"


def test_the_tolerance_is_tested_against_the_truth_not_eager() -> None:
    # Eager off the truth by more than the tolerance; the exact result is right.
    truth = torch.tensor([1.0, 2.0], dtype=torch.float64)
    eager = torch.tensor([1.0, 2.01])
    bad, acc = checker(eager, (truth,), 1e-4, 1e-5)(truth.float())
    assert bad is None and acc.rule == "tolerance" and acc.errors == (0.0,)


def test_exact_results_pass_within_the_tolerance() -> None:
    eager, _, truth = _sums()
    bad, acc = checker(eager, (truth,), 1e-4, 1e-5)(eager.clone())
    assert bad is None and acc.rule == "tolerance" and acc.errors == acc.eager_errors


def test_integer_outputs_are_compared_with_eager_exactly() -> None:
    eager, _, truth = _sums()
    idx = torch.arange(8)
    check = checker((eager, idx), (truth, idx), 1e-4, 1e-5)
    bad, acc = check((eager.clone(), idx.clone()))
    assert bad is None and acc.errors[1] is None and acc.eager_errors[1] is None
    bad, acc = check((eager.clone(), idx + 1))
    assert bad == "output 1: max |error| 1 (rtol 0.0001, atol 1e-05)" and acc.rule == "wrong"
    assert checker(idx, (idx,), 1e-4, 1e-5)(idx.clone()) == (None, None)  # nothing float


def test_shape_and_count_mismatches() -> None:
    eager, _, truth = _sums()
    check = checker(eager, (truth,), 1e-4, 1e-5)
    assert check(eager[:3])[0] == "output 0: shape (3,), expected (8,)"
    assert check((eager, eager))[0] == "2 outputs, expected 1"


def test_float64_truth_widens_float_inputs_only() -> None:
    seen = []

    def reference(x, h, i):
        seen.append((x.dtype, h.dtype, i.dtype))
        return x + h + i

    k = catalogue.Kernel("k", "", "k", lambda s, g: (), reference, (), ())
    x, h, i = torch.randn(3), torch.randn(3).half(), torch.arange(3)
    (t,) = float64_truth(k, (x, h, i))
    assert seen == [(torch.float64, torch.float64, torch.int64)] and t.dtype == torch.float64
    assert float64_truth(k, (x.double(), h.double(), i)) is None  # nothing to widen
    failing = catalogue.Kernel("k", "", "k", lambda s, g: (), lambda *a: 1 / 0, (), ())
    assert float64_truth(failing, (x,)) is None


def test_long_float32_reductions_are_right_and_output_plus_one_is_wrong(monkeypatch) -> None:
    # fc_relu at its benchmark size (784-term dot products) was WRONG against eager
    # at rtol 1e-4; against the float64 truth it is within eager's own error.
    kernel = catalogue.get("fc_relu")
    row = bench_kernel(kernel, kernel.bench_sizes[0], "cpu", FAST)
    naive, eager = row.cells["naive"], row.cells["eager"]
    assert naive.status == "ok", naive.note
    assert naive.accuracy.rule in ("tolerance", "4x eager")
    assert naive.accuracy.errors[0] <= EAGER_FACTOR * naive.accuracy.eager_errors[0] + 1e-5
    assert eager.accuracy.rule == "reference" and eager.accuracy.errors[0] > 0
    assert naive.accuracy.eager_errors == eager.accuracy.errors
    assert "vs float64: max |error|" in naive.note and "vs float64" in eager.note

    real = tc.compile

    def plus_one(*args, **kwargs):
        ex = real(*args, **kwargs)
        return lambda *inputs: ex(*inputs) + 1.0

    monkeypatch.setattr(tc, "compile", plus_one)
    wrong = bench_kernel(kernel, kernel.bench_sizes[0], "cpu", FAST).cells["naive"]
    assert wrong.status == "wrong" and wrong.ms is None
    assert "output 0: max |error| 1 " in wrong.note and "vs float64" in wrong.note
    assert wrong.accuracy.rule == "wrong"


def test_views_of_inputs_are_detected() -> None:
    x = torch.randn(4, 5)
    assert aliases_input(x.t(), (x,)) and aliases_input((x[1:], x.clone()), (x,))
    assert not aliases_input(x.clone(), (x,))
    assert aliasing_outputs((x.clone(), x, torch.empty(0)), (x,)) == (False, True, False)


def test_materialising_copies_only_the_aliasing_outputs() -> None:
    x = torch.randn(4, 5)
    other = torch.randn(3)
    ref = materialising(lambda a: (a.t(), other, a), (True, False, True))
    t, o, same = ref(x)
    assert not aliases_input((t, same), (x,)) and o is other
    assert t.is_contiguous() and torch.equal(t, x.t()) and torch.equal(same, x)
    plain = lambda a: a  # noqa: E731
    assert materialising(plain, (False,)) is plain
    single = materialising(plain, (True,))(x)
    assert isinstance(single, torch.Tensor) and not aliases_input(single, (x,))


def test_a_reference_returning_its_input_is_timed_with_a_copy(monkeypatch) -> None:
    base = catalogue.get("copy3d")
    made = []

    def make_inputs(sizes, g):
        made.append(base.make_inputs(sizes, g))
        return made[-1]

    kernel = dataclasses.replace(base, make_inputs=make_inputs)
    timed = []
    real = runner.time_ms

    def spy(fn, *args, **kwargs):
        timed.append(fn())
        return real(fn, *args, **kwargs)

    monkeypatch.setattr(runner, "time_ms", spy)
    row = bench_kernel(kernel, kernel.test_sizes[0], "cpu",
                       Settings(runs=1, warmup=0, tune=False, cache_latency=False))
    (inputs,) = made
    assert aliases_input(base.reference(*inputs), inputs)  # the catalogue's returns I
    eager, compiled = timed[0], timed[1]  # what eager and torch.compile return when timed
    for out in (eager, compiled):
        assert not aliases_input(out, inputs) and torch.equal(out, inputs[0])
    assert ".clone()" in row.note and "output 0" in row.note
    assert "timed with the copy" in row.cells["eager"].note
    assert row.cells["compile"].status == "ok", row.cells["compile"].note
    assert "timed with the copy" in row.cells["compile"].note
    assert row.cells["naive"].status == "ok"
    assert row.as_dict()["note"] == row.note
    md = report_mod.to_markdown(_report([row]))
    assert "- copy3d (cpu): the torch reference returns a view of its input" in md
    other = catalogue.get("transpose3d_021")  # its reference makes a copy itself
    plain = bench_kernel(other, other.test_sizes[0], "cpu", FAST)
    assert plain.note == "" and "copy" not in plain.cells["eager"].note


def _report(rows) -> dict:
    return {"name": "t", "date": "d", "elapsed_s": 1.0, "machine": runner.machine_facts(),
            "settings": {**vars(FAST), "quick": True}, "rows": [r.as_dict() for r in rows],
            "tuning": {"available": False, "note": "x"},
            "cache_latency": {"available": False, "note": "y"}}


def test_the_report_shows_the_cells_outside_the_tolerance() -> None:
    def cell(status, errors, eager_errors, rule, ms=1.0):
        return runner.Cell(status, ms if status == "ok" else None, 1,
                           accuracy=Accuracy(errors, eager_errors, rule))

    ok = runner.Row("plain", {"M": 1}, "cpu", {
        "eager": cell("ok", (1e-7,), (1e-7,), "reference"),
        "compile": cell("ok", (1e-7,), (1e-7,), "tolerance"),
        "naive": cell("ok", (2e-7,), (1e-7,), "tolerance"),
        "tuned": runner.Cell("skipped", note="--no-tune")})
    noisy = runner.Row("fc_relu", {"B": 128}, "cpu", {
        "eager": cell("ok", (6.8e-5,), (6.8e-5,), "reference"),
        "compile": cell("ok", (9.1e-5,), (6.8e-5,), "4x eager"),
        "naive": cell("wrong", (1.0,), (6.8e-5,), "wrong"),
        "tuned": runner.Cell("skipped", note="--no-tune")})
    lines = report_mod.accuracy_lines([r.as_dict() for r in (ok, noisy)])
    text = "\n".join(lines)
    assert "2 of 2 rows had the float64 truth" in text
    assert "| fc_relu | B=128 | cpu | 6.8e-05 | 9.1e-05 (4x) | 1 WRONG | - |" in text
    assert "| plain |" not in text
    assert "Every checked cell" in "\n".join(report_mod.accuracy_lines([ok.as_dict()]))
    md = report_mod.to_markdown(_report([ok, noisy]))
    assert "## Accuracy against float64" in md
    old = ok.as_dict()
    for c in old["cells"].values():
        del c["accuracy"]  # a report written before cells recorded their accuracy
    assert report_mod.accuracy_lines([old]) == []
