# authscale: the README's commands. Every target builds the venv it needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: venv up test lint bench microbench clean check-redis

venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "authscale needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

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

bench: venv check-redis
	$(PY) -m loadtests.bench $(BENCH_ARGS)
	$(PY) -m loadtests.crossover $(CROSSOVER_ARGS)

microbench: venv check-redis
	$(PY) -m loadtests.microbench

clean:
	rm -rf $(VENV) .stack .pytest_cache .mypy_cache .ruff_cache
