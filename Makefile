# The two commands of the README: `make demo` and `make test` (both set up first).
PY      ?= python3
VENV    := .venv
VPY     := $(VENV)/bin/python
STAMP   := $(VENV)/.installed

.PHONY: setup demo test lint fuzz soak clean

setup: $(STAMP)

# torch is pinned to the local CPU build first, so that the project's own `torch`
# requirement is already satisfied and pip never pulls a multi-GB CUDA build.
$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(VPY) -m pip install --quiet --upgrade pip
	$(VPY) -m pip install --quiet torch==2.13.0
	$(VPY) -m pip install --quiet -e '.[dev,mlir,ray]'
	touch $(STAMP)

demo: setup
	$(VPY) examples/demo.py

# Two workers (pytest-xdist), one per core of the 2-core machines: 10 min instead of 17.
# Tests that need one process's order keep it inside their own module or fixture;
# tests marked xdist_group(NAME) share one worker (the Ray tests: one cluster).
test: setup
	$(VPY) -m ruff check .
	$(VPY) -m pytest -n $${TEST_WORKERS:-2} --dist loadgroup

fuzz: setup
	$(VPY) -m pytest tests/lang/test_fuzz.py --fuzz-long

# The differential soak campaign (issue 12): random programs on every target for
# SOAK_MINUTES (default 30); findings are written to fuzz-findings/.
soak: setup
	$(VPY) -m tc.fuzz --minutes $${SOAK_MINUTES:-30}

lint: setup
	$(VPY) -m ruff check .

clean:
	rm -rf $(VENV) build *.egg-info
