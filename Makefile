# feedback-ops: `make up` runs everything, `make test` checks everything.
PYTHON ?= python3
# Tests wait on PostgreSQL, S3, Prefect's API and the servers they start much of the
# time: three workers keep two cores busy (measured: 6 min against 8 with two; with
# the production stack's tests, 9 min against 11 with four).
PYTEST_WORKERS ?= 3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: up test lint typecheck pytest install install-dev tools test-tools browser clean

up: install tools
	$(BIN)/feedback-ops up

test: install-dev tools test-tools browser
	bash scripts/ensure-test-services.sh
	$(MAKE) lint
	@# mypy needs a core for half a minute while pytest mostly waits on servers.
	$(MAKE) -j2 typecheck pytest

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/hadolint docker/Dockerfile

typecheck:
	$(BIN)/mypy

pytest:
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadgroup

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# uv installs the same packages from PyPI as pip would, in a sixth of the time. It
# compiles them to bytecode once here: where PYTHONDONTWRITEBYTECODE is set, every
# process (each CLI call, each test worker) would otherwise compile Prefect anew, 5 s.
UV := $(BIN)/python -m uv pip install --quiet --compile-bytecode --python $(BIN)/python

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet 'uv>=0.5,<1'
	$(UV) -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	$(UV) -e '.[dev]'
	touch $@

# pg_dump and pg_restore must be installed for the backups themselves, redis-cli and
# redis-check-rdb for RDB snapshots of Redis; promtool (Debian's prometheus) checks the
# alerting rules and prometheus-pushgateway receives the flows' metrics in the tests.
tools:
	@command -v pg_dump >/dev/null && command -v pg_restore >/dev/null || { \
	  echo "installing postgresql-client"; \
	  apt-get update -qq && apt-get install -y -qq postgresql-client >/dev/null; }
	@command -v redis-cli >/dev/null && command -v redis-check-rdb >/dev/null || { \
	  echo "installing redis-tools"; \
	  apt-get update -qq && apt-get install -y -qq redis-tools >/dev/null; }

# For the tests only (`make up` does not need them): promtool checks and tests
# docker/prometheus/rules.yml, and a real Pushgateway receives the flows' metrics.
test-tools:
	@command -v promtool >/dev/null || { \
	  echo "installing prometheus"; \
	  apt-get update -qq && apt-get install -y -qq prometheus >/dev/null; }
	@command -v prometheus-pushgateway >/dev/null || { \
	  echo "installing prometheus-pushgateway"; \
	  apt-get update -qq && apt-get install -y -qq prometheus-pushgateway >/dev/null; }

# Debian's Chromium, for the test that walks the Prefect UI as an operator does
# (Playwright drives it by its path).
browser:
	@command -v chromium >/dev/null || { \
	  echo "installing chromium"; \
	  apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
