"""benchmarks.gradients runs, checks every variant's gradients, and reports medians."""

from __future__ import annotations

from benchmarks import gradients


def test_quick_run_reports_every_variant(tmp_path, capsys) -> None:
    out = tmp_path / "g.md"
    assert gradients.main(["--quick", "--runs", "1", "--warmup", "0",
                           "--kernels", "fc_relu,softmax", "--out", str(out)]) == 0
    text = out.read_text()
    assert "| fc_relu | B=3 I=5 O=7 |" in text and "| softmax |" in text
    assert "WRONG" not in text and "tc hand-written" in text


def test_a_wrong_gradient_is_reported_not_timed(monkeypatch) -> None:
    real = gradients._step

    def broken(fn, inputs, weight):
        step = real(fn, inputs, weight)
        return lambda: [2 * g for g in step()] if fn.__class__.__name__ == "TcFunction" \
            else step()

    monkeypatch.setattr(gradients, "_step", broken)
    row = gradients.bench("matmul", {"M": 2, "K": 3, "N": 2}, 1, 0, "reference")
    assert str(row["tc derived"]).startswith("WRONG") and isinstance(row["torch"], float)
