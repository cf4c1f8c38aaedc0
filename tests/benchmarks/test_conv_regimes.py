"""benchmarks.conv_regimes: the quick sweep checks the three convolutions against each
other, times them and writes the table, JSON and plot; the crossover rule."""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks import conv_regimes as cr

pytest.importorskip("matplotlib")


def test_quick_run_writes_table_json_and_plot(tmp_path, capsys) -> None:
    assert cr.main(["--quick", "--out", str(tmp_path), "--name", "q"]) == 0
    text = (tmp_path / "q.md").read_text()
    assert "| tiny | 2 4->4 16x16 | 3 |" in text and "| tiny | 2 4->4 16x16 | 7 |" in text
    data = json.loads((tmp_path / "q.json").read_text())
    assert [p["k"] for p in data["points"]] == [3, 7]
    for p in data["points"]:
        assert set(p["median_ms"]) == set(cr.VARIANTS)
        assert max(p["max_error"].values()) < 1e-3
    assert len(data["load_before"]) == 3
    assert (tmp_path / "q.png").stat().st_size > 1000
    assert cr.rewrite(tmp_path / "q.json") == text  # the report again from its JSON


def test_fft_conv_is_a_valid_cross_correlation() -> None:
    import tc

    g = torch.Generator().manual_seed(1)
    I, Wt = torch.randn(2, 3, 11, 9, generator=g), torch.randn(4, 3, 5, 3, generator=g)
    mac = tc.define(cr.CMAC, backend="cpu").cmac
    torch.testing.assert_close(cr.fft_conv(mac, I, Wt), torch.nn.functional.conv2d(I, Wt),
                               rtol=1e-4, atol=1e-4)


def _point(k: int, direct: float, fft: float) -> cr.Point:
    return cr.Point("x", {"N": 1, "C": 1, "F": 1, "H": 16}, k,
                    median_ms={"tc direct": direct, "fft + tc": fft, "torch": 1.0})


def test_crossover_is_where_fft_wins_from_then_on() -> None:
    pts = [_point(3, 1, 5), _point(5, 2, 1), _point(7, 4, 5), _point(9, 8, 5),
           _point(11, 9, 5)]
    assert cr.crossover(pts) == 9
    assert cr.crossover([_point(3, 1, 5)]) is None
    assert cr.crossover([_point(3, 5, 1), _point(5, 6, 1)]) == 3
