# Two commands on a fresh machine: `make run` and `make test`. Everything else is set up by these targets.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help venv run test lint typecheck pytest bench bench-quick clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)  ## create .venv and install the project with its dev tools

run: $(STAMP)  ## start PostgreSQL, Redis and the whole stack (embedded unless DATABASE_URL/REDIS_URL are set)
	$(BIN)/scalable-api up $(ARGS)

bench: $(STAMP)  ## the load benchmark (wrk; about 4 minutes); `make bench ARGS=--quick` for about a minute
	$(BIN)/scalable-api bench $(ARGS)

bench-quick: $(STAMP)  ## the same as `make bench ARGS=--quick`
	$(BIN)/scalable-api bench --quick $(ARGS)

lint: $(STAMP)  ## ruff
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)  ## mypy --strict
	$(BIN)/mypy

pytest: $(STAMP)  ## the test suite against real PostgreSQL and Redis started by fixtures
	$(BIN)/pytest $(PYTEST_ARGS)

test: lint typecheck pytest  ## every check: ruff, mypy, pytest

clean:  ## remove the virtualenv, caches and local data
	rm -rf $(VENV) .data .mypy_cache .ruff_cache .pytest_cache *.egg-info
