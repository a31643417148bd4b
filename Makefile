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

# The whole suite on SQLite; then the portal tests again on PostgreSQL when LIFEBOAT_TEST_DATABASE_URL is set.
test: install sysdeps
	env -u LIFEBOAT_TEST_DATABASE_URL $(BIN)/pytest
	@if [ -n "$$LIFEBOAT_TEST_DATABASE_URL" ]; then \
	  echo "== portal tests on $$LIFEBOAT_TEST_DATABASE_URL"; $(BIN)/pytest tests/portal; fi

lint: install
	$(BIN)/ruff check storage portal tests benchmarks
	$(BIN)/mypy

bench: install sysdeps
	$(BIN)/python benchmarks/engine.py
	$(BIN)/python benchmarks/memory.py
	$(BIN)/python benchmarks/files.py
	$(BIN)/python benchmarks/rbd.py

# The portal with demo data on http://127.0.0.1:$(PORT) (SQLite and repositories under ./var).
run: install sysdeps
	LIFEBOAT_DEMO=true $(BIN)/lifeboat db upgrade
	LIFEBOAT_DEMO=true $(BIN)/lifeboat demo seed
	@echo "Lifeboat demo on http://127.0.0.1:$(PORT)  (logins above, password: demo; Ctrl-C stops it)"
	LIFEBOAT_DEMO=true $(BIN)/flask --app wsgi run --host 127.0.0.1 --port $(PORT)

clean:
	rm -rf $(VENV) var build *.egg-info .pytest_cache .mypy_cache .ruff_cache
