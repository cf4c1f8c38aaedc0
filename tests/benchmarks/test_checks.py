"""The runner's correctness check of a cell (``benchmarks.runner.checker``) and its
detection of references that return views (``aliases_input``)."""

from __future__ import annotations

import torch

from benchmarks.runner import aliases_input, checker


def _sums(n: int = 4096) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A long float32 reduction summed two ways, and its float64 truth."""
    x = torch.randn(8, n, generator=torch.Generator().manual_seed(0))
    eager = x.sum(1)
    other = x.flip(1).cumsum(1)[:, -1]  # another summation order
    return eager, other, x.double().sum(1)


def test_summation_order_noise_is_accepted_beyond_the_tolerance() -> None:
    eager, other, truth = _sums()
    check = checker(eager, (truth,), rtol=0.0, atol=0.0)  # a tolerance nothing meets
    bad, note = check(other)
    assert bad is None and "vs float64" in note


def test_a_wrong_result_is_still_wrong() -> None:
    eager, _, truth = _sums()
    check = checker(eager, (truth,), rtol=1e-4, atol=1e-5)
    bad, _ = check(eager + 1.0)
    assert bad is not None and "float64" in bad
    assert checker(eager, None, 1e-4, 1e-5)(eager + 1.0)[0] is not None  # no truth


def test_exact_results_pass_without_a_note() -> None:
    eager, _, truth = _sums()
    assert checker(eager, (truth,), 1e-4, 1e-5)(eager.clone()) == (None, "")


def test_views_of_inputs_are_detected() -> None:
    x = torch.randn(4, 5)
    assert aliases_input(x.t(), (x,)) and aliases_input((x[1:], x.clone()), (x,))
    assert not aliases_input(x.clone(), (x,))
