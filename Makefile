# Set-up is part of every target: the first call creates .venv and installs everything.
# TORCH_SPEC picks the torch to install; `make test TORCH_SPEC=` keeps whatever torch
# the interpreter's environment would resolve (e.g. a CUDA build you already have).
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: setup demo test lint bench clean
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	@if [ -n "$(TORCH_SPEC)" ]; then $(BIN)/pip install -q "$(TORCH_SPEC)"; fi
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

demo: setup
	$(BIN)/ssps demo $(ARGS)

test: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -q $(ARGS)

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

clean:
	rm -rf $(VENV) ssps-demo .pytest_cache
