# Lifeboat: `make run` sets up and starts a demo, `make test` sets up and runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 5000

.PHONY: install sysdeps test lint bench run clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,dev]'
	touch $@

sysdeps:
	@bash scripts/install-system-deps.sh

test: install sysdeps
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check storage portal tests benchmarks
	$(BIN)/mypy

bench: install sysdeps
	$(BIN)/python benchmarks/engine.py
	$(BIN)/python benchmarks/memory.py
	$(BIN)/python benchmarks/files.py
	$(BIN)/python benchmarks/rbd.py

run: install sysdeps
	$(BIN)/python scripts/demo.py

clean:
	rm -rf $(VENV) var build *.egg-info .pytest_cache .mypy_cache .ruff_cache
