# authscale: the README's commands. Every target builds the venv it needs.
#
# Dependencies come from the committed lock (uv.lock), never resolved afresh: `uv sync --locked`
# installs exactly its versions and hashes, and refuses when pyproject.toml no longer matches it
# (then `make lock` and commit uv.lock). uv itself is a pinned tool in .uv/.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
UV_VERSION := 0.13.9
UV_DIR := .uv
UV := $(UV_DIR)/bin/uv
PYTEST_ARGS ?=
LOCK_ARGS ?=
# uv uses the machine's Python (never downloads one) and the machine's CA store.
export UV_PYTHON_DOWNLOADS := never
export UV_SYSTEM_CERTS := 1
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: venv up test lint lock check-lock bench bench-long microbench clean check-redis

venv: $(STAMP)

$(UV):
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "authscale needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(UV_DIR)
	$(UV_DIR)/bin/python -m pip install --quiet uv==$(UV_VERSION)

# --compile-bytecode: every package's .pyc at install time. Without it each module is compiled
# on its first import, by every process that imports it before a .pyc exists: the services of
# four stacks start at once, and a fresh clone's `make test` ran 40-50 s longer than a warm one.
$(STAMP): pyproject.toml uv.lock | $(UV)
	@$(MAKE) --no-print-directory check-lock
	$(UV) sync --locked --extra test --python $(PYTHON) --compile-bytecode --quiet
	@touch $(STAMP)

check-lock: $(UV)
	@$(UV) lock --check --python $(PYTHON) --quiet 2>/dev/null || { \
	  $(UV) lock --check --python $(PYTHON) 2>&1 | tail -3; \
	  echo "uv.lock does not match pyproject.toml: run 'make lock' and commit uv.lock"; exit 1; }

# Re-resolve after an edit to pyproject.toml (pins that still fit are kept);
# `make lock LOCK_ARGS=--upgrade` takes the newest releases the ranges allow.
lock: $(UV)
	$(UV) lock --python $(PYTHON) $(LOCK_ARGS)

check-redis:
	@command -v redis-server >/dev/null 2>&1 || { \
	  echo "redis-server was not found on PATH. Install it first:"; \
	  echo "  Debian/Ubuntu: sudo apt-get install -y redis-server"; \
	  echo "  macOS:         brew install redis"; exit 1; }

up: venv check-redis
	$(PY) -m devstack

test: venv check-redis
	$(PY) -m pytest $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check services loadtests devstack tests
	$(VENV)/bin/ruff format --check services loadtests devstack tests
	$(VENV)/bin/mypy

# The one instrument: every design, one results.json, one report (reports/<timestamp>/).
# BENCH_ARGS=--quick: every figure once, in about 3 minutes.
bench: venv check-redis
	$(PY) -m loadtests.measure $(BENCH_ARGS)

# The same run, then the longer experiments beside it (results.json's `long`): the session
# store as a Redis Cluster with a primary's failure under load, traced per-hop attribution, key
# rotation under load, and the nginx reference (a few minutes more than `make bench`).
bench-long: venv check-redis
	$(PY) -m loadtests.measure --long $(BENCH_ARGS)

microbench: venv check-redis
	$(PY) -m loadtests.microbench

clean:
	rm -rf $(VENV) $(UV_DIR) .stack .pytest_cache .mypy_cache .ruff_cache
