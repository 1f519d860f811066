# Two commands on a fresh machine: `make demo` and `make test`.
# `make demo` writes only into $(DEMO_OUT), which git ignores, so the tree stays clean;
# `make readme-table` (for maintainers) remakes the demo's figures in figures/ and the
# README's demo table, which a deterministic demo leaves unchanged.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The CPU build of torch; a venv that already has a torch keeps it.
TORCH_SPEC ?= torch==2.13.0
DEMO_OUT ?= build/demo

.PHONY: demo demo-check readme-table test test-fast lint bench docs clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev,demo,docs,export,hf,lightning]"
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/landscape demo --out $(DEMO_OUT)

# CI on a fresh clone: the demo runs and leaves `git status` clean.
demo-check: demo
	@test -z "$$(git status --porcelain)" || \
		{ git status --short; echo "make demo changed the working tree"; exit 1; }

readme-table: $(VENV)/.installed
	$(VENV)/bin/landscape demo --out figures --readme README.md

# One pytest worker per core (at most 4): the suite's 6-minute budget is for 2 cores.
test: $(VENV)/.installed lint
	$(PY) -m pytest -q -n auto --maxprocesses 4

# The edit loop: the suite without the tests marked slow (make test runs them all).
test-fast: $(VENV)/.installed
	$(PY) -m pytest -q -n auto --maxprocesses 4 -m "not slow"

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check landscape tests examples benchmarks docs
	$(VENV)/bin/ruff format --check landscape tests examples benchmarks docs
	$(VENV)/bin/mypy  # over landscape/, configured in pyproject.toml

bench: $(VENV)/.installed
	$(PY) benchmarks/bench_surface.py
	$(PY) benchmarks/bench_hessian.py
	$(PY) benchmarks/bench_memory.py

docs: $(VENV)/.installed
	$(PY) docs/build.py build/docs

clean:
	rm -rf $(VENV) build *.egg-info
