# rrg — the two commands a newcomer needs are `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test soak cluster lint bench openapi clean

# Re-install whenever pyproject.toml changes; the stamp file records the last install.
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

run: $(VENV)/.installed
	mkdir -p var
	$(BIN)/rrg migrate
	$(BIN)/rrg demo
	$(BIN)/rrg serve --host $(HOST) --port $(PORT)

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict app

# The suite runs in TEST_WORKERS processes (pytest-xdist), each on a PostgreSQL database of
# its own beside RRG_TEST_POSTGRES_URL's; the tests wait on databases, servers and browsers
# more than they compute, so more workers than cores pays. TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= 4
test: lint
	$(BIN)/pytest -n $(TEST_WORKERS) --dist worksteal

# The reliability suite (tests marked soak) on real replicas and workers; PostgreSQL only.
SOAK_POSTGRES_URL ?= postgresql://postgres@127.0.0.1:5432/rrg_soak
soak: $(VENV)/.installed
	$(BIN)/python -c "import asyncio, deploy.cluster as c; asyncio.run(c.ensure_database('$(SOAK_POSTGRES_URL)'))"
	RRG_TEST_POSTGRES_URL=$(SOAK_POSTGRES_URL) RRG_REQUIRE_POSTGRES=1 \
		$(BIN)/pytest -p no:cacheprovider -m soak -s -q tests/ops/test_cluster.py

# Replicas and workers on loopback against the local PostgreSQL (deploy/README.md).
CLUSTER_ARGS ?=
cluster: $(VENV)/.installed
	$(BIN)/python -m deploy.cluster $(CLUSTER_ARGS)

bench: $(VENV)/.installed
	$(BIN)/python -m bench

openapi: $(VENV)/.installed
	$(BIN)/rrg openapi

clean:
	rm -rf $(VENV) var/*.db var/*.db-* .pytest_cache .mypy_cache .ruff_cache
