"""The interleaved default-vs-naive benchmark (:mod:`benchmarks.defaults_vs_naive`):
it checks results before timing, and its report states the ratios it measured."""

from __future__ import annotations

import json

from benchmarks import defaults_vs_naive as dvn


def test_one_small_layer_report(tmp_path) -> None:
    # A small layer at its test size keeps this fast; the method is the same.
    out = tmp_path / "r"
    assert dvn.main(["--kernels", "cross_entropy", "--small", "--seconds", "0.2",
                     "--pairs", "3", "--out", str(out)]) == 0
    data = json.loads((tmp_path / "r.json").read_text())
    row = data["rows"]["cross_entropy"]
    for label in ("as chosen", "serial"):
        cell = row[label]
        assert 1 <= cell["pairs"] <= 3
        for k in ("naive", "default"):
            median, fastest = cell[k]
            assert 0 < fastest <= median
    text = (tmp_path / "r.md").read_text()
    ratio = row["serial"]["default"][0] / row["serial"]["naive"][0]
    assert f"| {ratio:.2f} |" in text and "Geomean default / naive, serial" in text
