"""benchmarks.large_vocab: the fused bag cross-entropy matches torch's expression (loss
and gradient, both backwards), and the quick run reports time and peak memory."""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks import large_vocab as lv


@pytest.mark.parametrize("variant", ["tc derived", "tc hand"])
def test_loss_and_gradient_match_torch(variant: str) -> None:
    X, label = lv.inputs(5, 37, 4, seed=3)
    label[0] = label[0, 0]  # a bag of one word repeated
    Xt, Xc = X.clone().requires_grad_(True), X.clone().requires_grad_(True)
    expected = lv.bag_xent_torch(Xt, label)
    (2.5 * expected).backward()
    got = lv.loss_function(variant)(Xc, label)
    (2.5 * got).backward()
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(Xc.grad, Xt.grad, rtol=1e-5, atol=1e-6)


def test_peak_growth_sees_a_large_temporary() -> None:
    growth, method = lv.peak_growth(lambda: torch.ones(16 * 2 ** 20 // 4).sum())
    assert growth >= 15 * 2 ** 20, (growth, method)


def test_quick_run_reports_every_variant(tmp_path, capsys) -> None:
    assert lv.main(["--quick", "--out", str(tmp_path), "--name", "q"]) == 0
    text = (tmp_path / "q.md").read_text()
    for variant in lv.VARIANTS:
        assert f"| 2000 | 0.1 | {variant} |" in text
    assert "WRONG" not in text
    data = json.loads((tmp_path / "q.json").read_text())
    assert all(r["ok"] for r in data["rows"]) and len(data["load_before"]) == 3
