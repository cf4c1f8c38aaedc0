"""examples/train_digits.py: short runs train, match the torch.nn twin, reuse the cache."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from example_scripts import EXAMPLES, load_example

SCRIPT = EXAMPLES / "train_digits.py"
pytest.importorskip("sklearn")


def _load_script():
    return load_example("train_digits")


@pytest.fixture(scope="module")
def train_digits():
    return _load_script()


@pytest.fixture(scope="module")
def cache_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One compilation cache for the module: the kernels compile once."""
    return str(tmp_path_factory.mktemp("train_digits") / "cache.sqlite")


# 2 epochs of 8 batches: 16 SGD steps, at a step size large enough for the loss to
# leave its initial plateau (ln 10) within them.
SHORT = ["--epochs", "2", "--max-batches", "8", "--batch-size", "32", "--lr", "0.2", "--quiet"]


def _check_run(result: dict) -> None:
    tc_losses = result["tc"]["batch_losses"]
    torch_losses = result["torch"]["batch_losses"]
    assert len(tc_losses) == len(torch_losses) == 16
    # Same initial weights and batch: the TC layers' loss is torch.nn's.
    assert tc_losses[0] == pytest.approx(torch_losses[0], abs=1e-5)
    # Every later loss depends on all earlier gradients: TC's must be torch's.
    assert tc_losses == pytest.approx(torch_losses, abs=2e-3)
    first, last = sum(tc_losses[:3]) / 3, sum(tc_losses[-3:]) / 3
    assert last < first - 0.3, tc_losses
    # Chance is 10%; 16 steps already do much better.
    assert result["tc"]["test_accuracy"] > 30.0
    assert abs(result["accuracy_difference"]) <= 3.0


def test_short_run_loss_decreases(train_digits, cache_file: str) -> None:
    _check_run(train_digits.main([*SHORT, "--cache", cache_file]))


def test_short_run_with_rescaling(train_digits, cache_file: str) -> None:
    result = train_digits.main([*SHORT, "--rescale", "--cache", cache_file])
    _check_run(result)
    # The rescaled run takes other steps than the plain one.
    plain = train_digits.main([*SHORT, "--cache", cache_file, "--no-torch"])
    assert result["tc"]["batch_losses"][1:] != pytest.approx(plain["tc"]["batch_losses"][1:],
                                                             abs=1e-4)


def test_second_process_compiles_nothing(train_digits, cache_file: str) -> None:
    args = ["--epochs", "1", "--max-batches", "2", "--rescale", "--no-torch", "--quiet",
            "--cache", cache_file]
    train_digits.main(args)  # fills the cache (or finds it filled by the tests above)
    out = subprocess.run([sys.executable, str(SCRIPT), *args], check=True,
                         capture_output=True, text=True, timeout=300).stdout
    m = re.search(r"tc kernels: (\d+) definitions compiled \((\d+) OpenCL kernels built\), "
                  r"(\d+) OpenCL kernels loaded",
                  out)
    assert m, out
    compiled, builds, loaded = map(int, m.groups())
    assert (compiled, builds) == (0, 0), out
    # conv_relu, fc_relu, fc, cross_entropy_mean, activation_stats and their backward.
    assert loaded >= 5, out
