"""Shared pytest configuration: the ``--fuzz-long`` option of the fuzz tests, and the
``target`` fixture (every target that runs here; see ``targets_here.py``)."""

from __future__ import annotations

import pytest
from targets_here import runnable_targets

#: How many times more examples the fuzz tests run under ``--fuzz-long``.
FUZZ_LONG_FACTOR = 20


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--fuzz-long",
        action="store_true",
        default=False,
        help="run the hypothesis fuzz tests with thousands of examples instead of hundreds",
    )


@pytest.fixture
def fuzz_examples(request: pytest.FixtureRequest):
    """``fuzz_examples(n)``: the number of hypothesis examples for a fuzz test whose
    default run uses ``n`` (``n * FUZZ_LONG_FACTOR`` under ``--fuzz-long``)."""
    long_run = request.config.getoption("--fuzz-long")

    def examples(n: int) -> int:
        return n * FUZZ_LONG_FACTOR if long_run else n

    return examples


@pytest.fixture(params=runnable_targets())
def target(request: pytest.FixtureRequest) -> str:
    """Each target that can run here: target-independent tests take it to run on all."""
    return request.param
