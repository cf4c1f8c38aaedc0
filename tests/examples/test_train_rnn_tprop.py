"""examples/train_rnn_tprop.py --quick: both methods train, tc matches torch, one build each."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "train_rnn_tprop.py"


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One --quick run in a fresh process (the script sets OMP_NUM_THREADS before
    torch loads OpenMP) with an empty compilation cache."""
    tmp = tmp_path_factory.mktemp("train_rnn_tprop")
    out = tmp / "result.json"
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    subprocess.run([sys.executable, str(SCRIPT), "--quick", "--quiet", "--json", str(out),
                    "--cache", str(tmp / "cache.sqlite")],
                   check=True, capture_output=True, text=True, timeout=300, env=env)
    return json.loads(out.read_text())


@pytest.mark.parametrize("method", ["bptt", "tprop"])
def test_tc_matches_torch(quick: dict, method: str) -> None:
    gap = quick[f"{method}/gap"]
    assert gap["first"] < 1e-5  # same initial weights and window
    assert gap["max_window"] < 1e-3  # every later window depends on all earlier steps
    assert gap["max_valid"] < 1e-3


@pytest.mark.parametrize("method", ["bptt", "tprop"])
def test_trains(quick: dict, method: str) -> None:
    run = quick[f"{method}/tc"]
    windows = run["windows"]
    assert sum(windows[-10:]) / 10 < sum(windows[:10]) / 10 - 0.3, windows
    # below the validation text's unigram (character frequency) perplexity
    assert run["epochs"][-1]["ppl"] < quick["unigram_ppl"]


def test_each_definition_compiles_once(quick: dict) -> None:
    # rnn_cell, rnn_inverse, dtp_target and the backward of the first two; the batch
    # B calls and the batch T*B calls share one kernel per definition
    assert quick["compiled"] == 5
